//! The OpenAI-compatible HTTP server: routes, auth, handlers, SSE streaming and `/metrics`.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models` (Bearer key
//! when configured), `GET /metrics`, `GET /health`. Handlers validate and tokenize the request
//! (cheap, on the async runtime), then hand a [`Generation`](crate::engine::Generation) to the
//! single engine worker thread and turn its events into JSON or SSE. Dropping the response
//! stream (client disconnect) drops the event receiver, which cancels the generation.

pub mod config;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod worker;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use self::config::ServeConfig;
use self::error::ApiError;
use self::metrics::Metrics;
use self::openai::{ChatRequest, CompletionRequest, ResponseOptions};
use self::worker::{Event, WorkerHandle};
use crate::engine::{Engine, GenerateRequest, TokenScore};

/// Largest request body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The model name clients must send (`GET /v1/models` lists it).
    pub model_id: String,
    /// If set, `/v1/*` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

/// Shared state of all handlers.
#[derive(Debug)]
pub struct App {
    /// The loaded engine (tokenizer used by handlers; model used by the worker only).
    pub engine: Arc<Engine>,
    /// Settings.
    pub config: ServerConfig,
    /// Other names accepted in `model` (the GGUF's `general.name`).
    pub aliases: Vec<String>,
    /// Queue to the engine worker thread.
    pub worker: WorkerHandle,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Unix time the server started (the `created` of the model object).
    pub started: u64,
}

/// A running server (worker thread started); turn it into a router or serve it.
#[derive(Debug, Clone)]
pub struct Server {
    app: Arc<App>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Server {
    /// Starts the engine worker thread with continuous batching ([`worker::Schedule::Batched`]).
    pub fn start(engine: Arc<Engine>, config: ServerConfig) -> std::io::Result<Self> {
        Self::start_with(engine, config, worker::WorkerOptions::default())
    }

    /// Starts the engine worker thread with at most `turns_per_second` worker turns (one
    /// prompt chunk or one token each) per second: a device of that speed whatever else runs
    /// on the machine. The red team gives every miner the same pace, so that miners sharing
    /// a CPU compare as miners on equal hardware would (see [`worker::Pace`]).
    pub fn start_paced(engine: Arc<Engine>, config: ServerConfig, turns_per_second: Option<f64>) -> std::io::Result<Self> {
        Self::start_scheduled(engine, config, turns_per_second, worker::Schedule::RoundRobin)
    }

    /// [`Server::start_paced`] with an order of service ([`worker::Schedule`]).
    pub fn start_scheduled(engine: Arc<Engine>, config: ServerConfig, turns_per_second: Option<f64>, schedule: worker::Schedule) -> std::io::Result<Self> {
        let pace = turns_per_second.and_then(worker::Pace::per_second);
        Self::start_with(engine, config, worker::WorkerOptions { pace, schedule, ..worker::WorkerOptions::default() })
    }

    /// Starts the engine worker thread with `options` (schedule, batch size, queue bound).
    pub fn start_with(engine: Arc<Engine>, config: ServerConfig, options: worker::WorkerOptions) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let worker = WorkerHandle::spawn_with(engine.clone(), metrics.clone(), options)?;
        let aliases = vec![engine.name().to_string()];
        Ok(Self { app: Arc::new(App { engine, config, aliases, worker, metrics, started: now() }) })
    }

    /// The axum router (usable in tests with `tower::ServiceExt::oneshot`).
    pub fn router(&self) -> Router {
        let v1 = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/completions", post(completions))
            .route("/v1/models", get(list_models))
            .route_layer(axum::middleware::from_fn_with_state(self.app.clone(), require_key));
        Router::new()
            .merge(v1)
            .route("/metrics", get(metrics_text))
            .route("/health", get(|| async { "ok" }))
            .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()) })
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.app.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

async fn require_key(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.config.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            app.metrics.record_request(req.uri().path(), 401);
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics_text(State(app): State<Arc<App>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, ganglion_metrics::CONTENT_TYPE)], app.metrics.render())
}

async fn list_models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": app.config.model_id,
            "object": "model",
            "created": app.started,
            "owned_by": "ganglion",
            "max_model_len": app.engine.context_length(),
        }]
    }))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| ApiError {
        status: e.status(),
        ..ApiError::bad_request(format!("cannot read the request body: {}; send at most {MAX_BODY_BYTES} bytes of JSON", e.body_text()))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}; see the OpenAI API reference for the request shape")))
}

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Chat => "/v1/chat/completions",
            Kind::Completion => "/v1/completions",
        }
    }
    fn prompt_param(self) -> &'static str {
        match self {
            Kind::Chat => "messages",
            Kind::Completion => "prompt",
        }
    }
}

async fn chat_completions(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let prepared = parse_body::<ChatRequest>(body).and_then(|req| {
        req.common.check_model(&app.config.model_id, &app.aliases)?;
        req.to_engine(app.engine.tokenizer(), app.engine.context_length())
    });
    respond(app, Kind::Chat, prepared).await
}

async fn completions(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let prepared = parse_body::<CompletionRequest>(body).and_then(|req| {
        req.common.check_model(&app.config.model_id, &app.aliases)?;
        req.to_engine(app.engine.tokenizer(), app.engine.context_length())
    });
    respond(app, Kind::Completion, prepared).await
}

async fn respond(app: Arc<App>, kind: Kind, prepared: Result<(GenerateRequest, ResponseOptions), ApiError>) -> Response {
    let result = async {
        let (req, opts) = prepared?;
        let generation = app.engine.start(req).map_err(|e| ApiError::from_engine(e, kind.prompt_param()))?;
        let events = app.worker.submit(generation).map_err(|e| match e {
            worker::SubmitError::Busy { .. } => ApiError::busy(e.to_string()),
            worker::SubmitError::Stopped => ApiError::internal(e),
        })?;
        Ok::<_, ApiError>((events, opts))
    }
    .await;
    let (events, opts) = match result {
        Ok(ok) => ok,
        Err(err) => {
            app.metrics.record_request(kind.endpoint(), err.status.as_u16());
            return err.into_response();
        }
    };
    let ctx = ResponseCtx {
        id: format!("{}-{}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, uuid::Uuid::new_v4().simple()),
        created: now(),
        kind,
        opts,
        app: app.clone(),
    };
    if opts.stream {
        app.metrics.record_request(kind.endpoint(), 200);
        let stream = sse_stream(ctx, events);
        Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
    } else {
        let response = collect_response(ctx, events).await;
        app.metrics.record_request(kind.endpoint(), response.status().as_u16());
        response
    }
}

struct ResponseCtx {
    id: String,
    created: u64,
    kind: Kind,
    opts: ResponseOptions,
    app: Arc<App>,
}

impl ResponseCtx {
    fn logprobs_json(&self, scores: &[TokenScore], offset: usize) -> Value {
        if !self.opts.logprobs {
            return Value::Null;
        }
        let tok = self.app.engine.tokenizer();
        match self.kind {
            Kind::Chat => json!({"content": openai::chat_logprobs(tok, scores, self.opts.token_ids), "refusal": null}),
            Kind::Completion => openai::completion_logprobs(tok, scores, self.opts.token_ids, offset),
        }
    }

    fn prompt_logprobs(&self, scores: &Option<Vec<TokenScore>>) -> Value {
        match scores {
            Some(s) => openai::prompt_logprobs_json(self.app.engine.tokenizer(), s, self.opts.token_ids),
            None => Value::Null,
        }
    }

    fn chunk(&self, choice: Value) -> Value {
        let object = if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.app.config.model_id, "choices": [choice]})
    }
}

async fn collect_response(ctx: ResponseCtx, mut events: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    let mut scores = Vec::new();
    let mut prompt_scores = None;
    let wants_prompt = ctx.opts.prompt_logprobs;
    while let Some(event) = events.recv().await {
        match event {
            Event::PromptDone(s) => prompt_scores = wants_prompt.then_some(s),
            Event::Step { out, .. } => {
                text.push_str(&out.text);
                scores.extend(out.tokens.into_iter().map(|t| t.score));
            }
            Event::Failed(err) => return ApiError::from_engine(err, ctx.kind.prompt_param()).into_response(),
            Event::Done { finish, prompt_tokens, completion_tokens } => {
                let usage = openai::usage(prompt_tokens, completion_tokens);
                let logprobs = ctx.logprobs_json(&scores, 0);
                let finish = openai::finish_reason(finish);
                let model = &ctx.app.config.model_id;
                let body = match ctx.kind {
                    Kind::Chat => json!({
                        "id": ctx.id, "object": "chat.completion", "created": ctx.created, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": finish}],
                        "usage": usage,
                        "prompt_logprobs": ctx.prompt_logprobs(&prompt_scores),
                    }),
                    Kind::Completion => json!({
                        "id": ctx.id, "object": "text_completion", "created": ctx.created, "model": model,
                        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish,
                                     "prompt_logprobs": ctx.prompt_logprobs(&prompt_scores)}],
                        "usage": usage,
                    }),
                };
                return (StatusCode::OK, Json(body)).into_response();
            }
        }
    }
    ApiError::internal("the engine worker dropped a request without finishing it").into_response()
}

fn data(value: &Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}

fn sse_stream(ctx: ResponseCtx, events: mpsc::UnboundedReceiver<Event>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct St {
        ctx: ResponseCtx,
        events: mpsc::UnboundedReceiver<Event>,
        offset: usize,
        sent_role: bool,
        done: bool,
    }
    let state = St { ctx, events, offset: 0, sent_role: false, done: false };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let mut out: Vec<SseEvent> = Vec::new();
        if !st.sent_role && st.ctx.kind == Kind::Chat {
            st.sent_role = true;
            out.push(data(&st.ctx.chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))));
            return Some((out, st));
        }
        match st.events.recv().await {
            Some(Event::PromptDone(scores)) => {
                if st.ctx.opts.prompt_logprobs {
                    let pl = st.ctx.prompt_logprobs(&Some(scores));
                    let mut chunk = match st.ctx.kind {
                        Kind::Chat => st.ctx.chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": null})),
                        Kind::Completion => st.ctx.chunk(json!({"index": 0, "text": "", "logprobs": null, "finish_reason": null, "prompt_logprobs": pl.clone()})),
                    };
                    if st.ctx.kind == Kind::Chat {
                        chunk["prompt_logprobs"] = pl;
                    }
                    out.push(data(&chunk));
                }
            }
            Some(Event::Step { out: step, .. }) => {
                let scores: Vec<TokenScore> = step.tokens.into_iter().map(|t| t.score).collect();
                let logprobs = st.ctx.logprobs_json(&scores, st.offset);
                st.offset += step.text.len();
                let choice = match st.ctx.kind {
                    Kind::Chat => json!({"index": 0, "delta": {"content": step.text}, "logprobs": logprobs, "finish_reason": null}),
                    Kind::Completion => json!({"index": 0, "text": step.text, "logprobs": logprobs, "finish_reason": null}),
                };
                out.push(data(&st.ctx.chunk(choice)));
            }
            Some(Event::Done { finish, prompt_tokens, completion_tokens }) => {
                let finish = openai::finish_reason(finish);
                let choice = match st.ctx.kind {
                    Kind::Chat => json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}),
                    Kind::Completion => json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish}),
                };
                out.push(data(&st.ctx.chunk(choice)));
                if st.ctx.opts.include_usage {
                    let mut usage = st.ctx.chunk(Value::Null);
                    usage["choices"] = json!([]);
                    usage["usage"] = openai::usage(prompt_tokens, completion_tokens);
                    out.push(data(&usage));
                }
                out.push(SseEvent::default().data("[DONE]"));
                st.done = true;
            }
            Some(Event::Failed(err)) => {
                out.push(data(&ApiError::from_engine(err, st.ctx.kind.prompt_param()).body()));
                out.push(SseEvent::default().data("[DONE]"));
                st.done = true;
            }
            None => {
                out.push(data(&ApiError::internal("the engine worker dropped a request").body()));
                out.push(SseEvent::default().data("[DONE]"));
                st.done = true;
            }
        }
        Some((out, st))
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok)))
}
