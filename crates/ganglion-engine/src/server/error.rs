//! `ApiError`: OpenAI-style error JSON (`{"error":{"message","type","param","code"}}`) with the
//! right HTTP status. Internal details of 5xx errors are logged, never sent to clients.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::EngineError;

/// An error as the OpenAI API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message saying what was wrong and what to do.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, `authentication_error`, …).
    pub kind: &'static str,
    /// The request field at fault, if any.
    pub param: Option<Cow<'static, str>>,
    /// Machine-readable code, if any.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 with a field name.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), kind: "invalid_request_error", param: Some(Cow::Borrowed(param)), code: None }
    }

    /// 400 without a specific field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), kind: "invalid_request_error", param: None, code: None }
    }

    /// 400 for a request field this server does not implement, named so that the client
    /// knows it was not silently ignored.
    pub fn unsupported_field(field: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("`{field}` is not supported by this server; remove it from the request"),
            kind: "invalid_request_error",
            param: Some(Cow::Owned(field.to_string())),
            code: Some("unsupported_parameter"),
        }
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API key; send `Authorization: Bearer <key>` with the key the server was started with".into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404 for an unknown model name.
    pub fn unknown_model(asked: &str, served: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("the model `{asked}` does not exist on this server; use `{served}` (see GET /v1/models)"),
            kind: "invalid_request_error",
            param: Some(Cow::Borrowed("model")),
            code: Some("model_not_found"),
        }
    }

    /// 404 for an unknown route.
    pub fn not_found(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("no route {path}; this server has /v1/chat/completions, /v1/completions, /v1/models, /metrics"),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
        }
    }

    /// 503 when the request queue is full: the client should retry later.
    pub fn busy(message: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), kind: "server_error", param: None, code: Some("server_busy") }
    }

    /// 500/503: the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(target: "ganglion::engine::server", error = %detail, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal server error; see the server log".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// Maps an engine error for a request whose prompt field is `prompt_param`.
    pub fn from_engine(err: EngineError, prompt_param: &'static str) -> Self {
        match err {
            EngineError::ContextOverflow { .. } => Self {
                code: Some("context_length_exceeded"),
                ..Self::invalid(prompt_param, err.to_string())
            },
            EngineError::InvalidInput(_) | EngineError::Template(_) => Self::bad_request(err.to_string()),
            other => Self::internal(other),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
