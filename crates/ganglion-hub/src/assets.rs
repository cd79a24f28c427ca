//! The dashboard's static files, embedded in the binary: no CDN, no build step, no network
//! at run time. `index.html` loads `app.js` (vanilla JS, hand-drawn SVG plots) and `style.css`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// `GET /`: the single-page dashboard (it routes on the URL fragment).
pub(crate) async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX_HTML).into_response()
}

/// `GET /assets/{file}`.
pub(crate) async fn file(Path(file): Path<String>) -> Response {
    let (body, media_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON_SVG, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, media_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
