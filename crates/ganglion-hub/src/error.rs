//! Errors: [`HubError`] for the library API (starting the hub), [`ApiError`] for HTTP answers.
//!
//! Every API error is JSON `{"error": {"code": "...", "message": "..."}}` with a 4xx/5xx
//! status; messages say what was wrong with the request and what to send instead.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ganglion_records::RecordsError;

/// Result alias for [`HubError`].
pub type HubResult<T> = Result<T, HubError>;

/// Why the hub could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The listening socket could not be bound or read.
    #[error("cannot listen on {addr}: {reason}; pick another --port or stop the process using it")]
    Bind {
        /// Address asked for.
        addr: String,
        /// Underlying error.
        reason: String,
    },
    /// The records store failed.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// A benchmarked page did not answer 200.
    #[error("benchmark page failed: {0}")]
    Bench(String),
}

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`bad_request`, `not_found`, …).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }

    /// 503 with `message` (e.g. too many live-feed clients).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message: message.into() }
    }
}

impl From<RecordsError> for ApiError {
    fn from(err: RecordsError) -> ApiError {
        match err {
            RecordsError::InvalidInput { .. } => ApiError::bad_request(err.to_string()),
            other => {
                tracing::warn!(target: "ganglion::hub", "records store error: {other}");
                ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "store_error", message: other.to_string() }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}
