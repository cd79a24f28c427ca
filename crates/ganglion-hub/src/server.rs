//! The router ([`router`], testable with `oneshot`) and the running server ([`serve`],
//! [`HubHandle`]) with its background tasks (chain watcher, live-feed poller).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{ApiError, HubError, HubResult};
use crate::state::{HubConfig, HubState};
use crate::{api, assets, chain_watch, feed, openapi};

/// The API routes; [`openapi::ROUTES`] documents exactly these paths (checked by a test).
pub(crate) fn api_routes() -> Vec<(&'static str, MethodRouter<HubState>)> {
    vec![
        ("/api/status", get(api::status)),
        ("/api/subnets", get(api::subnets)),
        ("/api/subnets/{netuid}/overview", get(api::overview)),
        ("/api/subnets/{netuid}/miners/{hotkey}", get(api::miner)),
        ("/api/subnets/{netuid}/validators/{hotkey}", get(api::validator)),
        ("/api/subnets/{netuid}/requests", get(api::requests)),
        ("/api/requests/{id}", get(api::request)),
        ("/api/subnets/{netuid}/compute", get(api::compute)),
        ("/api/subnets/{netuid}/compute/miners/{hotkey}", get(api::compute_miner)),
        ("/api/subnets/{netuid}/reward", get(api::reward)),
        ("/api/subnets/{netuid}/reward/uids/{uid}", get(api::reward_uid)),
        ("/api/subnets/{netuid}/evaluation", get(api::evaluation)),
        ("/api/subnets/{netuid}/evaluation/uids/{uid}", get(api::evaluation_uid)),
        ("/api/events", get(feed::events)),
        ("/api/openapi.json", get(openapi_json)),
        ("/metrics", get(metrics)),
    ]
}

/// The hub's HTTP application over `state`: API, dashboard assets, `/metrics`.
pub fn router(state: HubState) -> Router {
    let mut router = Router::new();
    for (path, route) in api_routes() {
        router = router.route(path, route);
    }
    router
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        ApiError::not_found(format!("no API route {}; see /api/openapi.json", request.uri().path())).into_response()
    } else {
        // Unknown page paths get the dashboard (it routes on the URL fragment).
        assets::index().await.into_response()
    }
}

/// Counts requests by route and status, and sets the security headers: the dashboard loads
/// nothing from anywhere but the hub.
async fn track(State(state): State<HubState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    state.count_request(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(openapi::document())
}

async fn metrics(State(state): State<HubState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, ganglion_metrics::CONTENT_TYPE)], render_metrics(&state))
}

/// The metrics exposition text (gauges read from the state at scrape time).
pub fn render_metrics(state: &HubState) -> String {
    let registry = state.metrics().registry();
    let chain = state.chain_status();
    registry.set("ganglion_hub_live_clients", &[], state.sse_clients() as f64);
    registry.set("ganglion_hub_chain_reachable", &[], f64::from(u8::from(chain.reachable)));
    registry.set("ganglion_hub_chain_block", &[], chain.block.unwrap_or(0) as f64);
    registry.render()
}

/// A running hub. Dropping it stops the background tasks; call [`HubHandle::shutdown`] to
/// also close connections gracefully.
#[derive(Debug)]
pub struct HubHandle {
    url: String,
    addr: SocketAddr,
    state: HubState,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl HubHandle {
    /// `http://host:port/` (`https://` with TLS) of the dashboard.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (metagraph cache, chain status).
    pub fn state(&self) -> &HubState {
        &self.state
    }

    /// Stops the background tasks, ends live-feed streams and waits (at most 5 s) for open
    /// requests to finish.
    pub async fn shutdown(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let _ = self.state.inner.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.state.inner.shutdown.send(true);
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// Serves the hub on `listener` and starts its background tasks (chain watcher when a
/// chain is configured, live-feed poller).
pub async fn serve(config: HubConfig, listener: TcpListener) -> HubResult<HubHandle> {
    let addr = listener.local_addr().map_err(|e| HubError::Bind { addr: "the given listener".into(), reason: e.to_string() })?;
    let state = HubState::new(config);
    let mut tasks = vec![tokio::spawn(feed::run(state.clone()))];
    if let Some(chain) = state.config().chain.clone() {
        tasks.push(tokio::spawn(chain_watch::run(state.clone(), chain)));
    }
    let app = router(state.clone());
    let mut stop = state.inner.shutdown.subscribe();
    let tls = state.config().tls.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = ganglion_tls::serve(listener, app, tls.as_ref(), false, shutdown).await {
            tracing::error!(target: "ganglion::hub", "hub server failed: {e}");
        }
    });
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() { format!("[{host}]") } else { host };
    let url = format!("{scheme}://{host}:{}/", addr.port());
    tracing::info!(target: "ganglion::hub", %url, store = state.records().display_url(), "hub listening");
    Ok(HubHandle { url, addr, state, server: Some(server), tasks })
}

/// Binds `addr` and [`serve`]s.
pub async fn bind(config: HubConfig, addr: SocketAddr) -> HubResult<HubHandle> {
    let listener = TcpListener::bind(addr).await.map_err(|e| HubError::Bind { addr: addr.to_string(), reason: e.to_string() })?;
    serve(config, listener).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn openapi_documents_exactly_the_routes() {
        let routed: BTreeSet<&str> = api_routes().iter().map(|(path, _)| *path).collect();
        let documented: BTreeSet<&str> = openapi::ROUTES.iter().map(|r| r.path).collect();
        assert_eq!(routed, documented);
        let doc = openapi::document();
        for path in &routed {
            let op = &doc["paths"][*path]["get"];
            assert!(op["summary"].is_string(), "{path}");
            // Every `{param}` in the path is declared as a path parameter.
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"].as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{path}: {name}");
            }
        }
        let ids: BTreeSet<String> = routed.iter().map(|p| doc["paths"][*p]["get"]["operationId"].to_string()).collect();
        assert_eq!(ids.len(), routed.len(), "operation ids are unique");
    }
}
