//! Helpers shared by the end-to-end tests: the real model (loaded once per test binary),
//! the engine's OpenAI server on loopback, fake miners, and keys.
#![allow(dead_code, clippy::unwrap_used)]

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

/// Funds `cold` with `tao` from the faucet and registers `hot` under it, retrying while the
/// subnet's one-registration-per-block limit is taken.
pub(crate) async fn register(chain: &dyn ganglion_chain::Chain, cold: &Keypair, netuid: u16, hot: &Keypair, tao: u64) -> u16 {
    chain.faucet(cold, tao * ganglion_chain::RAO_PER_TAO).await.unwrap();
    for _ in 0..200 {
        match chain.register(cold, netuid, &hot.public()).await {
            Ok(r) => return r.uid.unwrap(),
            Err(e) if e.name() == Some("TooManyRegistrationsThisBlock") => tokio::time::sleep(Duration::from_millis(30)).await,
            Err(e) => panic!("register: {e}"),
        }
    }
    panic!("registration never got a slot");
}

/// Waits (bounded) until `uid` holds a validator permit.
pub(crate) async fn wait_for_permit(chain: &dyn ganglion_chain::Chain, netuid: u16, uid: u16) {
    for _ in 0..600 {
        let mg = ganglion_chain::Metagraph::fetch(chain, netuid).await.unwrap();
        if mg.neuron(uid).is_some_and(|n| n.validator_permit) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("uid {uid} never got a validator permit");
}

/// A chain node in `dir` on 127.0.0.1 (blocks every `block_time`, new subnets with
/// `tempo`), reached over HTTP, with one subnet owned by `//Alice` and `update` applied.
pub(crate) async fn subnet(
    dir: &std::path::Path,
    block_time: Duration,
    tempo: u16,
    update: ganglion_chain::HyperparamUpdate,
) -> (ganglion_chain::NodeHandle, Arc<dyn ganglion_chain::Chain>, u16) {
    let config = ganglion_chain::NodeConfig {
        data_dir: dir.to_path_buf(),
        block_time,
        chain: ganglion_chain::ChainConfig { default_tempo: tempo, ..ganglion_chain::ChainConfig::default() },
    };
    let node = ganglion_chain::spawn_node(config, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let chain: Arc<dyn ganglion_chain::Chain> = Arc::new(ganglion_chain::LocalChain::new(&node.url()).unwrap());
    let owner = key("//Alice");
    let netuid = chain.register_network(&owner, &key("//Alice/owner").public(), None).await.unwrap().netuid.unwrap();
    chain.set_hyperparams(&owner, netuid, update).await.unwrap();
    (node, chain, netuid)
}
