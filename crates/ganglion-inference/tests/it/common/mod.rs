//! Helpers shared by the end-to-end tests: the real model (loaded once per test binary),
//! the engine's OpenAI server on loopback, fake miners, and keys. A subnet on a local chain
//! comes from `ganglion_chain_node::testkit`.
#![allow(dead_code, clippy::unwrap_used)]

pub(crate) mod dishonest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ganglion_core::keys::Keypair;
use ganglion_engine::Engine;
use ganglion_inference::stream::StreamLimits;
use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use ganglion_inference::validator::Target;

/// The model name everything in the tests serves and verifies.
pub(crate) const MODEL: &str = "smollm2";

/// The pulled SmolLM2 GGUF; fails the test with the command to run when it is absent.
pub(crate) fn smollm2_path() -> PathBuf {
    let dir = ganglion_engine::store::models_dir().expect("HOME or GANGLION_HOME must be set");
    let known = ganglion_engine::store::known_model("smollm2").unwrap();
    let path = dir.join(known.file_name);
    assert!(path.is_file(), "{} is missing: run `ganglion model pull smollm2`", path.display());
    path
}

/// The model, loaded once per test binary and shared by every test in it.
pub(crate) fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| Arc::new(Engine::load(&smollm2_path()).unwrap())).clone()
}

/// `ganglion engine serve` in-process on 127.0.0.1:0, serving [`MODEL`].
pub(crate) async fn engine_server(engine: Arc<Engine>) -> SocketAddr {
    let config = ganglion_engine::server::ServerConfig { model_id: MODEL.into(), api_key: None };
    let server = ganglion_engine::server::Server::start(engine, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    addr
}

/// Serves `router` on 127.0.0.1:0.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A key from a dev URI.
pub(crate) fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).unwrap()
}

/// A target at `addr` owned by `//<name>`.
pub(crate) fn target(uid: u16, name: &str, addr: SocketAddr) -> Target {
    let hotkey = key(&format!("//{name}")).public();
    Target { uid, hotkey, coldkey: hotkey, addr }
}

/// Stream limits for short test responses.
pub(crate) fn limits(max_tokens: u32, first: Duration, total: Duration) -> StreamLimits {
    StreamLimits::for_tokens(max_tokens, first, total)
}

/// Waits (bounded) until `check` holds.
pub(crate) async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A miner whose every completion is `make()`.
pub(crate) async fn fake(make: fn() -> Response) -> std::net::SocketAddr {
    let handler = move || async move { make() };
    serve(axum::Router::new().route("/v1/chat/completions", post(handler)).route("/v1/completions", post(handler))).await
}

pub(crate) fn sse(stream: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static) -> Response {
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
    r
}

pub(crate) fn content_chunk(text: &str, token: Option<u32>) -> String {
    let logprobs = match token {
        Some(id) => serde_json::json!({"content": [{"token": format!("token_id:{id}"), "logprob": -0.1}]}),
        None => serde_json::Value::Null,
    };
    let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

pub(crate) fn tail(finish: &str, completion_tokens: usize) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{finish}\"}}]}}\n\ndata: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":20,\"completion_tokens\":{completion_tokens}}}}}\n\ndata: [DONE]\n\n"
    )
}


/// A miner that answers every completion with the fixed SSE `body`.
pub(crate) async fn canned(body: String) -> std::net::SocketAddr {
    let body = std::sync::Arc::new(body);
    let handler = move || {
        let body = body.clone();
        async move { sse(futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(body.as_str().to_owned()))])) }
    };
    serve(axum::Router::new().route("/v1/chat/completions", post(handler.clone())).route("/v1/completions", post(handler))).await
}

/// A chat SSE body streaming `ids` one token per chunk (text decoded as the engine does),
/// then `finish`, a usage chunk with `prompt_tokens` and `[DONE]`.
pub(crate) fn chat_body(engine: &Engine, ids: &[u32], finish: &str, prompt_tokens: usize) -> String {
    let tok = engine.tokenizer();
    let mut decoder = ganglion_engine::tokenizer::StreamDecoder::default();
    let ends = ganglion_inference::reference::end_tokens(tok);
    let mut body = String::new();
    for &id in ids {
        let text = if ends.contains(&id) { decoder.finish() } else { decoder.push(tok, id) };
        body.push_str(&content_chunk(&text, Some(id)));
    }
    body.push_str(&format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{finish}\"}}]}}\n\ndata: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        ids.len()
    ));
    body
}

/// A count from a miner row's inference `details` (`verified`, `failed`, `organic_verified`).
pub(crate) fn detail(m: &ganglion_neuron::status::MinerStatus, key: &str) -> u64 {
    m.details.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// Weight submissions the chain accepted, from a validator's status.
pub(crate) fn weights_set(status: &ganglion_neuron::NodeStatus) -> u64 {
    status.weights.as_ref().map_or(0, |w| w.set_count)
}

/// The cause name of a miner row's last failure.
pub(crate) fn last_cause(m: &ganglion_neuron::status::MinerStatus) -> Option<&str> {
    m.last_failure.as_ref().map(|f| f.cause.as_str())
}

/// The scores a validator saved in `data_dir` (through the runtime's state file).
pub(crate) fn saved_scores(data_dir: &std::path::Path, netuid: u16) -> ganglion_inference::scoring::Scoreboard {
    ganglion_neuron::state::StateFile::new(data_dir.join("scores.json"), netuid).load().unwrap().expect("no saved scores")
}
