//! The miner's HTTP surface: routing, limits, upstream calls and the guarded byte stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use ganglion_protocol::epistula::{Caller, Verifier, protect};
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::MinerState;
use crate::openai::{Endpoint, MODEL_HEADER, join_url};

type AppState = State<Arc<MinerState>>;

pub(super) fn router(state: Arc<MinerState>, verifier: Arc<Verifier>) -> Router {
    let protected = Router::new()
        .route("/v1/chat/completions", post(proxy))
        .route("/v1/completions", post(proxy))
        .route("/models", get(list_models).post(receive_models));
    // Refusals by the Epistula layer (bad or replayed signatures, denied callers, …) never
    // reach a handler: `mark_verified`, inside the layer, tells `count_refusals`, outside
    // it, that a request got through; the others are counted as refused.
    let protected = protect(protected.layer(axum::middleware::from_fn(mark_verified)), verifier)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_refusals));
    // The operator's figures: loopback callers only (the runtime's rule for every miner).
    let operator = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .layer(axum::middleware::from_fn(ganglion_neuron::server::loopback_only));
    Router::new().route("/", get(health)).merge(operator).merge(protected).with_state(state)
}

/// Set by [`mark_verified`] once the Epistula layer let a request through.
#[derive(Clone)]
struct Verified(Arc<AtomicBool>);

async fn mark_verified(request: Request, next: Next) -> Response {
    if let Some(verified) = request.extensions().get::<Verified>() {
        verified.0.store(true, Ordering::Relaxed);
    }
    next.run(request).await
}

async fn count_refusals(State(state): AppState, mut request: Request, next: Next) -> Response {
    let verified = Verified(Arc::new(AtomicBool::new(false)));
    request.extensions_mut().insert(verified.clone());
    let response = next.run(request).await;
    if !verified.0.load(Ordering::Relaxed) {
        let reason = match response.status() {
            StatusCode::BAD_REQUEST => "epistula_invalid",
            StatusCode::UNAUTHORIZED => "epistula_bad_signature",
            StatusCode::FORBIDDEN => "epistula_denied",
            StatusCode::CONFLICT => "epistula_replayed",
            StatusCode::PAYLOAD_TOO_LARGE => "epistula_body_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "epistula_overloaded",
            _ => "epistula_other",
        };
        state.metrics.inc("ganglion_miner_refused_total", &[("reason", reason)]);
    }
    response
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

async fn health(State(state): AppState) -> Json<Value> {
    Json(json!({"status": "ok", "hotkey": state.config.hotkey.public().to_ss58(), "models": state.models()}))
}

async fn metrics(State(state): AppState) -> Response {
    ([(header::CONTENT_TYPE, ganglion_neuron::metrics::CONTENT_TYPE)], state.metrics.render()).into_response()
}

async fn status(State(state): AppState) -> Response {
    Json(state.status()).into_response()
}

async fn list_models(State(state): AppState) -> Json<Vec<String>> {
    state.metrics.inc("ganglion_miner_requests_total", &[("route", "/models"), ("status", "200")]);
    Json(state.models())
}

async fn receive_models(State(state): AppState, caller: Caller, body: Bytes) -> Response {
    let Ok(models) = serde_json::from_slice::<Vec<String>>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_body", "expected a JSON list of model names");
    };
    let models: Vec<String> = models.into_iter().take(256).map(|m| m.chars().take(256).collect()).collect();
    let missing: Vec<&String> = models.iter().filter(|m| !state.upstreams.contains_key(*m)).collect();
    if !missing.is_empty() {
        tracing::info!(target: "ganglion::miner", validator = %caller.hotkey, ?missing, "validator asks for models this miner does not serve");
    }
    if let Ok(mut list) = state.validator_models.lock() {
        *list = models;
    }
    Json(json!({"ok": true})).into_response()
}

/// Reads the model from `X-Targon-Model`, else from the body's `model`.
fn requested_model(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(model) = headers.get(MODEL_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|m| !m.is_empty()) {
        return Some(model.to_string());
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("model")?.as_str().map(str::to_string)
}

async fn proxy(State(state): AppState, caller: Caller, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let count = |status: StatusCode| {
        state.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        state.metrics.inc("ganglion_miner_requests_total", &[("route", path.as_str()), ("status", status.as_str())]);
    };
    let Some(endpoint) = Endpoint::from_path(&path) else {
        count(StatusCode::NOT_FOUND);
        return error(StatusCode::NOT_FOUND, "not_found", format!("no route {path}"));
    };
    let Some(caller_permit) = state.callers.acquire(&caller.hotkey) else {
        state.metrics.inc("ganglion_miner_refused_total", &[("reason", "per_caller_limit")]);
        count(StatusCode::TOO_MANY_REQUESTS);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("at most {} requests in flight per caller", state.config.per_caller_concurrency),
        );
    };
    let Some(model) = requested_model(&headers, &body) else {
        count(StatusCode::BAD_REQUEST);
        return error(StatusCode::BAD_REQUEST, "missing_model", "name the model in X-Targon-Model or the body's `model`");
    };
    let Some(upstream) = state.upstreams.get(&model) else {
        count(StatusCode::NOT_FOUND);
        return error(StatusCode::NOT_FOUND, "model_not_found", format!("this miner does not serve `{model}`; GET /models lists what it serves"));
    };
    let slot = match tokio::time::timeout(state.config.queue_timeout, upstream.slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            state.metrics.inc("ganglion_miner_refused_total", &[("reason", "upstream_busy")]);
            count(StatusCode::SERVICE_UNAVAILABLE);
            return error(StatusCode::SERVICE_UNAVAILABLE, "upstream_busy", format!("all {} upstream slots for `{model}` are busy", upstream.config.max_concurrency));
        }
    };
    let mut request = state
        .http
        .post(join_url(&upstream.config.url, endpoint.path()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = &upstream.config.api_key {
        request = request.bearer_auth(key);
    }
    let started = Instant::now();
    let response = match tokio::time::timeout(state.config.upstream_first_byte_timeout, request.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            count(StatusCode::BAD_GATEWAY);
            if ganglion_tls::certificate_problem(&e).is_some() {
                state.metrics.inc("ganglion_miner_upstream_errors_total", &[("model", model.as_str()), ("kind", "tls")]);
                tracing::warn!(target: "ganglion::miner", %model, "upstream failed: {}", ganglion_tls::describe_http_error(&e));
                return error(StatusCode::BAD_GATEWAY, "upstream_certificate", "the upstream model server's TLS certificate was not accepted");
            }
            state.metrics.inc("ganglion_miner_upstream_errors_total", &[("model", model.as_str()), ("kind", "connect")]);
            tracing::warn!(target: "ganglion::miner", %model, "upstream failed: {}", ganglion_tls::describe_http_error(&e));
            return error(StatusCode::BAD_GATEWAY, "upstream_unreachable", "the upstream model server could not be reached");
        }
        Err(_) => {
            state.metrics.inc("ganglion_miner_upstream_errors_total", &[("model", model.as_str()), ("kind", "timeout")]);
            count(StatusCode::GATEWAY_TIMEOUT);
            return error(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "the upstream model server did not answer in time");
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    count(status);
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    state.streams(1);
    let guard = Guard { _caller: caller_permit, _slot: slot, state: state.clone(), model: model.clone(), started };
    let limits = Deadlines {
        started,
        idle: state.config.upstream_idle_timeout,
        total: state.config.upstream_total_timeout,
    };
    let stream = guarded(Box::pin(response.bytes_stream()), limits, guard);
    sse_response(status, content_type, Body::from_stream(stream))
}

fn sse_response(status: StatusCode, content_type: Option<HeaderValue>, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let content_type = content_type.unwrap_or_else(|| HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Held for the life of a streamed response: the caller's and the upstream's slots; its
/// end is the end of the request (active streams, request latency).
struct Guard {
    _caller: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
    state: Arc<MinerState>,
    model: String,
    started: Instant,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.state.streams(-1);
        self.state.metrics.observe("ganglion_miner_request_seconds", &[("model", self.model.as_str())], self.started.elapsed().as_secs_f64());
    }
}

#[derive(Clone, Copy)]
struct Deadlines {
    started: Instant,
    idle: Duration,
    total: Duration,
}

type UpstreamStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Pipe {
    upstream: UpstreamStream,
    deadlines: Deadlines,
    _guard: Guard,
    done: bool,
}

/// The upstream byte stream under idle and total deadlines, holding the slots until it
/// ends, passed through byte for byte. A deadline ends the response with an error, which
/// aborts the connection so the caller sees a broken stream, not a silently truncated one.
fn guarded(upstream: UpstreamStream, deadlines: Deadlines, guard: Guard) -> impl Stream<Item = std::io::Result<Bytes>> {
    let pipe = Pipe { upstream, deadlines, _guard: guard, done: false };
    futures::stream::unfold(pipe, |mut pipe| async move {
        if pipe.done {
            return None;
        }
        let d = pipe.deadlines;
        let deadline = (Instant::now() + d.idle).min(d.started + d.total);
        match tokio::time::timeout_at(deadline.into(), pipe.upstream.next()).await {
            Err(_) => {
                pipe.done = true;
                Some((Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream deadline passed")), pipe))
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => {
                pipe.done = true;
                Some((Err(std::io::Error::other(format!("upstream stream broke: {e}"))), pipe))
            }
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), pipe)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_comes_from_the_header_first() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested_model(&headers, br#"{"model":"body"}"#).as_deref(), Some("body"));
        headers.insert(MODEL_HEADER, HeaderValue::from_static("header"));
        assert_eq!(requested_model(&headers, br#"{"model":"body"}"#).as_deref(), Some("header"));
        assert_eq!(requested_model(&HeaderMap::new(), b"not json"), None);
    }
}
