//! The dishonest upstream: an OpenAI-compatible server on loopback that the unmodified
//! production miner (`ganglion_inference::miner`) proxies to. Honest work comes from the
//! built-in engine's own server (the `honest` URL); each [`Behaviour`] decides what of it
//! reaches the miner, and how.
//!
//! ```text
//!  validator ──Epistula──▶ production miner ──▶ dishonest upstream ──▶ engine server (honest work)
//!                                                      │ relay: Epistula-signed ──▶ another miner's axon
//! ```
//!
//! The prompting strategies (against the reward-pipeline validator, `ganglion validator
//! reward`) answer in the shape asked for (a JSON body, or an SSE stream when `stream` is
//! set) with text made by [`prompting_text`]: the prompt itself, another context, the one
//! honest answer shared by several hotkeys, or an honest answer in another task's format.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use ganglion_chain::{Chain, Metagraph};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_engine::Engine;
use ganglion_inference::openai::{Endpoint, join_url, parse_request};
use ganglion_neuron::Shutdown;
use ganglion_protocol::epistula::SignedHeaders;
use serde_json::{Value, json};

use super::sse::{self, Answer, EventSplitter};
use crate::error::{RedteamError, Result};

/// How `early-eos` games the end of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EosMode {
    /// Generate only a fraction of `max_tokens` and call the cut a natural stop.
    Stop,
    /// Skip the natural end: pad the answer to `max_tokens` with its own tokens.
    Pad,
}

/// What the dishonest upstream does with each request.
#[allow(clippy::large_enum_variant, reason = "one per process, made once")]
pub enum Behaviour {
    /// Passes every request to the honest engine.
    Honest,
    /// No model at all: random vocabulary tokens with made-up logprobs.
    RandomTokens {
        /// Source of the vocabulary (its weights are not used).
        vocabulary: Arc<Engine>,
    },
    /// One greedy answer and one low-temperature sample per prompt, replayed for any
    /// sampling parameters, cut at `max_tokens` and streamed evenly at `tps`.
    Cached {
        /// Tokens per second of the replay.
        tps: f64,
        /// Temperature of the cached sample.
        temperature: f64,
        /// Tokens generated per cached answer (the longest `max_tokens` it can serve in full).
        max_tokens: u32,
    },
    /// `sybil`: identical requests (the same body sent to each of its hotkeys) are generated
    /// once and the one answer is streamed to every hotkey at `tps`.
    Fanout {
        /// Tokens per second of each copy.
        tps: f64,
    },
    /// 403 for hot or long requests, the rest served honestly.
    SelectiveRefusal {
        /// Refuse above this temperature.
        max_temperature: f64,
        /// Refuse above this `max_tokens`.
        max_tokens: u32,
    },
    /// Honest tokens, usage counts multiplied.
    UsageLies {
        /// Factor on `completion_tokens`.
        factor: f64,
    },
    /// An empty chunk at once, then the honest tokens `factor` times slower than produced.
    TtftFake {
        /// Slow-down of the real tokens.
        factor: f64,
    },
    /// End games (see [`EosMode`]).
    EarlyEos {
        /// Which game.
        mode: EosMode,
        /// Share of `max_tokens` generated in `stop` mode.
        fraction: f64,
    },
    /// `prompt-echo`: the prompt (the last user message, or the completion prompt) as the
    /// answer.
    PromptEcho,
    /// `off-topic`: fluent text of another context (sentences of random corpus senses),
    /// unrelated to the prompt.
    OffTopic {
        /// Where the other contexts come from.
        corpus: Arc<ganglion_corpus::Corpus>,
        /// Sentences per answer.
        sentences: usize,
    },
    /// `duplicate`: one honest answer per prompt, the same text returned to every hotkey
    /// that is asked it (each hotkey's output is another's).
    Duplicate,
    /// `rule-breaker`: the honest answer in a transcript format whose keywords belong to
    /// other tasks (`Question: … Answer: …`), which the task validator forbids in every step.
    RuleBreaker,
    /// Another miner's answers: Epistula-signed requests (with this miner's hotkey) to the
    /// victim's axon, streamed back.
    Relay {
        /// Signs the relayed requests.
        hotkey: Keypair,
        /// Where the victim's axon is published.
        chain: Arc<dyn Chain>,
        /// Subnet.
        netuid: u16,
        /// The miner whose answers are relayed.
        victim: PublicKey,
    },
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Behaviour::Honest => "Honest",
            Behaviour::RandomTokens { .. } => "RandomTokens",
            Behaviour::Cached { .. } => "Cached",
            Behaviour::Fanout { .. } => "Fanout",
            Behaviour::SelectiveRefusal { .. } => "SelectiveRefusal",
            Behaviour::UsageLies { .. } => "UsageLies",
            Behaviour::TtftFake { .. } => "TtftFake",
            Behaviour::EarlyEos { .. } => "EarlyEos",
            Behaviour::Relay { .. } => "Relay",
            Behaviour::PromptEcho => "PromptEcho",
            Behaviour::OffTopic { .. } => "OffTopic",
            Behaviour::Duplicate => "Duplicate",
            Behaviour::RuleBreaker => "RuleBreaker",
        };
        f.write_str(name)
    }
}

/// The two cached answers of one prompt.
#[derive(Debug)]
struct Cached {
    greedy: Answer,
    sample: Answer,
}

/// One answer shared by the requests with the same body.
type SharedAnswer = Arc<tokio::sync::OnceCell<std::result::Result<Answer, String>>>;

/// One honest text shared by the requests with the same prompt (`duplicate`).
type SharedText = Arc<tokio::sync::OnceCell<std::result::Result<String, String>>>;

struct Upstream {
    fanout: tokio::sync::Mutex<HashMap<Bytes, (Instant, SharedAnswer)>>,
    texts: tokio::sync::Mutex<HashMap<String, (Instant, SharedText)>>,
    honest: String,
    model: String,
    behaviour: Behaviour,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<HashMap<String, Arc<Cached>>>,
    victim_axon: Mutex<Option<(Instant, SocketAddr)>>,
}

type Shared = Arc<Upstream>;

/// Serves the dishonest upstream on `127.0.0.1:0` in front of the honest engine server at
/// `honest` (a base URL), under the model name `model`, until `shutdown` fires.
pub async fn start(honest: String, model: String, behaviour: Behaviour, shutdown: Shutdown) -> Result<SocketAddr> {
    let http = ganglion_tls::ClientTls::system().http_builder().connect_timeout(Duration::from_secs(5)).build().map_err(|e| RedteamError::Http(e.to_string()))?;
    let state = Arc::new(Upstream {
        fanout: tokio::sync::Mutex::new(HashMap::new()),
        texts: tokio::sync::Mutex::new(HashMap::new()),
        honest,
        model,
        behaviour,
        http,
        cache: tokio::sync::Mutex::new(HashMap::new()),
        victim_axon: Mutex::new(None),
    });
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(complete))
        .route("/v1/completions", post(complete))
        .with_state(state);
    serve_loopback(app, shutdown).await
}

/// Serves `app` on a free loopback port until `shutdown` fires.
pub async fn serve_loopback(app: Router, mut shutdown: Shutdown) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| RedteamError::Io("binding a loopback port".into(), e))?;
    let addr = listener.local_addr().map_err(|e| RedteamError::Io("reading the bound address".into(), e))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
    });
    Ok(addr)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    response
}

async fn models(State(up): State<Shared>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": up.model, "object": "model", "owned_by": "ganglion"}]}))
}

async fn complete(State(up): State<Shared>, uri: Uri, body: Bytes) -> Response {
    let Some(endpoint) = Endpoint::from_path(uri.path()) else {
        return error(StatusCode::NOT_FOUND, "not_found", uri.path().to_string());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_body", "the body is not JSON");
    };
    let sampling = parse_request(endpoint, &value).map(|(_, s)| s);
    match &up.behaviour {
        Behaviour::Honest => forward_raw(&up, endpoint, &value).await,
        Behaviour::RandomTokens { vocabulary } => {
            let events = sse::random_token_events(vocabulary, endpoint, &value);
            sse_response(Body::from_stream(futures::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>))))
        }
        Behaviour::SelectiveRefusal { max_temperature, max_tokens } => match sampling {
            Some(s) if sse::would_refuse(&s, *max_temperature, *max_tokens) => {
                error(StatusCode::FORBIDDEN, "refused", "this miner does not serve such requests")
            }
            _ => forward_raw(&up, endpoint, &value).await,
        },
        Behaviour::UsageLies { factor } => {
            let factor = *factor;
            match forward(&up, endpoint, &value).await {
                Ok(response) => sse_response(Body::from_stream(mapped(response, move |mut chunk| {
                    sse::inflate_usage(&mut chunk, factor);
                    chunk
                }))),
                Err(response) => response,
            }
        }
        Behaviour::EarlyEos { mode: EosMode::Stop, fraction } => {
            sse::truncate_request(&mut value, *fraction);
            match forward(&up, endpoint, &value).await {
                Ok(response) => sse_response(Body::from_stream(mapped(response, |mut chunk| {
                    if sse::finish_reason(&chunk) == Some("length") {
                        sse::set_finish_reason(&mut chunk, "stop");
                    }
                    chunk
                }))),
                Err(response) => response,
            }
        }
        Behaviour::EarlyEos { mode: EosMode::Pad, .. } => {
            let max_tokens = sampling.map_or(16, |s| s.max_tokens as usize);
            match collect(&up, endpoint, &value).await {
                Ok(answer) => even(answer.pad(max_tokens, &up.model), 0.0),
                Err(response) => response,
            }
        }
        Behaviour::TtftFake { factor } => match forward(&up, endpoint, &value).await {
            Ok(response) => sse_response(Body::from_stream(delayed(response, endpoint, up.model.clone(), *factor))),
            Err(response) => response,
        },
        Behaviour::Cached { tps, temperature, max_tokens } => {
            let Some(sampling) = sampling else {
                return error(StatusCode::BAD_REQUEST, "invalid_body", "unsupported request shape");
            };
            let key = format!("{}:{}", endpoint.path(), value.get("messages").or_else(|| value.get("prompt")).cloned().unwrap_or(Value::Null));
            let cached = {
                let mut cache = up.cache.lock().await;
                match cache.get(&key) {
                    Some(hit) => hit.clone(),
                    None => {
                        let mut greedy = value.clone();
                        greedy["max_tokens"] = json!(max_tokens);
                        greedy["temperature"] = json!(0.0);
                        greedy["top_p"] = json!(1.0);
                        let mut sample = greedy.clone();
                        sample["temperature"] = json!(temperature);
                        sample["seed"] = json!(1);
                        let (greedy, sample) = match (collect(&up, endpoint, &greedy).await, collect(&up, endpoint, &sample).await) {
                            (Ok(g), Ok(s)) => (g, s),
                            (Err(response), _) | (_, Err(response)) => return response,
                        };
                        let entry = Arc::new(Cached { greedy, sample });
                        cache.insert(key, entry.clone());
                        entry
                    }
                }
            };
            let answer = if sse::use_greedy(&sampling) { &cached.greedy } else { &cached.sample };
            even(answer.cut(sampling.max_tokens as usize, &up.model), *tps)
        }
        Behaviour::Fanout { tps } => {
            let max_tokens = sampling.map_or(16, |s| s.max_tokens as usize);
            let cell = {
                let mut table = up.fanout.lock().await;
                // Validators send one body to every sampled miner within seconds.
                table.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(120));
                table.entry(body.clone()).or_insert_with(|| (Instant::now(), Arc::new(tokio::sync::OnceCell::new()))).1.clone()
            };
            let answer = cell.get_or_init(|| async { collect(&up, endpoint, &value).await.map_err(|r| r.status().to_string()) }).await;
            match answer {
                Ok(answer) => even(answer.cut(max_tokens, &up.model), *tps),
                Err(status) => error(StatusCode::BAD_GATEWAY, "upstream", status.clone()),
            }
        }
        Behaviour::Relay { hotkey, chain, netuid, victim } => relay(&up, hotkey, chain.as_ref(), *netuid, victim, endpoint, &body).await,
        Behaviour::PromptEcho | Behaviour::OffTopic { .. } | Behaviour::Duplicate | Behaviour::RuleBreaker => {
            let stream = value.get("stream").and_then(Value::as_bool).unwrap_or(false);
            match prompting_answer(&up, endpoint, &value).await {
                Ok(text) => text_response(endpoint, &up.model, &text, stream),
                Err(response) => response,
            }
        }
    }
}

/// The text a prompting strategy answers `body` with.
async fn prompting_answer(up: &Upstream, endpoint: Endpoint, body: &Value) -> std::result::Result<String, Response> {
    let prompt = prompt_text(endpoint, body);
    match &up.behaviour {
        Behaviour::OffTopic { corpus, sentences } => Ok(off_topic(corpus, *sentences, &mut rand::thread_rng())),
        Behaviour::Duplicate => {
            let max_tokens = body.get("max_tokens").cloned().unwrap_or(Value::Null);
            let key = format!("{}:{max_tokens}:{prompt}", endpoint.path());
            let cell = {
                let mut table = up.texts.lock().await;
                // Validators ask every sampled uid the same prompt within seconds.
                table.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(120));
                table.entry(key).or_insert_with(|| (Instant::now(), Arc::new(tokio::sync::OnceCell::new()))).1.clone()
            };
            let text = cell.get_or_init(|| async { honest_text(up, endpoint, body).await.map_err(|r| r.status().to_string()) }).await;
            text.clone().map_err(|status| error(StatusCode::BAD_GATEWAY, "upstream", status))
        }
        Behaviour::RuleBreaker => Ok(prompting_text(&up.behaviour, &prompt, &honest_text(up, endpoint, body).await?)),
        _ => Ok(prompting_text(&up.behaviour, &prompt, "")),
    }
}

/// What a prompting strategy makes of the `prompt` and the `honest` answer (the text
/// strategies that need neither the corpus nor the engine; the others give the honest text).
pub fn prompting_text(behaviour: &Behaviour, prompt: &str, honest: &str) -> String {
    match behaviour {
        Behaviour::PromptEcho => prompt.to_string(),
        Behaviour::RuleBreaker => {
            // The prompt's last line is the task; restating it as the "question" and the
            // honest text as the "answer" is a transcript, the format the task rules forbid.
            let task = prompt.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            format!("Question: {task}\nAnswer: {}", honest.trim())
        }
        _ => honest.to_string(),
    }
}

/// `off-topic`: `sentences` sentences of random corpus senses (definitions and examples, no
/// headwords, so no colons), a text about nothing the prompt asked.
pub fn off_topic(corpus: &ganglion_corpus::Corpus, sentences: usize, rng: &mut impl rand::Rng) -> String {
    let mut out: Vec<String> = Vec::new();
    while out.len() < sentences.max(1) {
        let entry = corpus.draw(rng);
        let mut gloss = entry.gloss.replace(':', ",");
        if let Some(first) = gloss.get(..1) {
            gloss = first.to_uppercase() + &gloss[1..];
        }
        out.push(format!("{gloss}."));
        if let Some(example) = entry.examples.first() {
            out.push(format!("{}.", example.replace(':', ",")));
        }
    }
    out.truncate(sentences.max(1));
    out.join(" ")
}

/// The prompt of a request: the last user message of a chat (its text parts), or the
/// completion prompt.
pub fn prompt_text(endpoint: Endpoint, body: &Value) -> String {
    let text = |content: &Value| match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""),
        _ => String::new(),
    };
    match endpoint {
        Endpoint::Chat => body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
            .and_then(|m| m.get("content"))
            .map(text)
            .unwrap_or_default(),
        Endpoint::Completion => body.get("prompt").map(text).unwrap_or_default(),
    }
}

/// The honest engine's whole answer text to `body` (asked without streaming).
async fn honest_text(up: &Upstream, endpoint: Endpoint, body: &Value) -> std::result::Result<String, Response> {
    let mut body = body.clone();
    body["stream"] = json!(false);
    if let Some(map) = body.as_object_mut() {
        map.remove("stream_options");
    }
    let response = forward(up, endpoint, &body).await?;
    let value: Value = response.json().await.map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream_broke", e.to_string()))?;
    let choice = value.get("choices").and_then(|c| c.get(0));
    let text = match endpoint {
        Endpoint::Chat => choice.and_then(|c| c.get("message")).and_then(|m| m.get("content")).and_then(Value::as_str),
        Endpoint::Completion => choice.and_then(|c| c.get("text")).and_then(Value::as_str),
    };
    text.map(str::to_string).ok_or_else(|| error(StatusCode::BAD_GATEWAY, "upstream_broke", "the engine's answer has no text"))
}

/// `text` as an OpenAI answer of `endpoint`: a JSON body, or (when `stream`) one content
/// chunk, a stop chunk and `[DONE]`.
pub fn text_response(endpoint: Endpoint, model: &str, text: &str, stream: bool) -> Response {
    let id = format!("redteam-{}", uuid::Uuid::new_v4().simple());
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let usage = json!({"prompt_tokens": 0, "completion_tokens": text.split_whitespace().count(), "total_tokens": text.split_whitespace().count()});
    let (object, choice, chunk_object, content_choice, stop_choice) = match endpoint {
        Endpoint::Chat => (
            "chat.completion",
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}),
            "chat.completion.chunk",
            json!({"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}),
            json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
        ),
        Endpoint::Completion => (
            "text_completion",
            json!({"index": 0, "text": text, "finish_reason": "stop"}),
            "text_completion",
            json!({"index": 0, "text": text, "finish_reason": null}),
            json!({"index": 0, "text": "", "finish_reason": "stop"}),
        ),
    };
    if !stream {
        return Json(json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice], "usage": usage})).into_response();
    }
    let chunk = |choice: Value| json!({"id": id, "object": chunk_object, "created": created, "model": model, "choices": [choice]});
    let mut events = vec![sse::event(&chunk(content_choice)), sse::event(&chunk(stop_choice))];
    events.push(Bytes::from_static(sse::DONE));
    sse_response(Body::from_stream(futures::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>))))
}

/// Posts `body` to the honest engine.
async fn forward(up: &Upstream, endpoint: Endpoint, body: &Value) -> std::result::Result<reqwest::Response, Response> {
    let request = up.http.post(join_url(&up.honest, endpoint.path())).json(body).timeout(Duration::from_secs(600));
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(response),
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            Err(error(status, "upstream", "the engine refused the request"))
        }
        Err(e) => Err(error(StatusCode::BAD_GATEWAY, "upstream_unreachable", e.to_string())),
    }
}

/// The honest engine's answer, byte for byte.
async fn forward_raw(up: &Upstream, endpoint: Endpoint, body: &Value) -> Response {
    match forward(up, endpoint, body).await {
        Ok(response) => sse_response(Body::from_stream(response.bytes_stream().map(|r| r.map_err(std::io::Error::other)))),
        Err(response) => response,
    }
}

/// The honest engine's whole answer to `body` (streamed, with usage), read into an [`Answer`].
async fn collect(up: &Upstream, endpoint: Endpoint, body: &Value) -> std::result::Result<Answer, Response> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = forward(up, endpoint, &body).await?;
    let mut splitter = EventSplitter::default();
    let mut events = Vec::new();
    let mut stream = response.bytes_stream();
    // Bounded by the request's own timeout and by the engine's max_tokens.
    while let Some(item) = stream.next().await {
        let bytes = item.map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream_broke", e.to_string()))?;
        events.extend(splitter.push(&bytes));
    }
    events.extend(splitter.finish());
    Ok(Answer::from_events(&events))
}

/// The upstream's stream with every JSON chunk passed through `f` (other events unchanged).
fn mapped(response: reqwest::Response, f: impl FnMut(Value) -> Value + Send + 'static) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let stream = response.bytes_stream();
    futures::stream::unfold((Box::pin(stream), EventSplitter::default(), f, false), |(mut stream, mut split, mut f, done)| async move {
        if done {
            return None;
        }
        let remap = |event: String, f: &mut dyn FnMut(Value) -> Value| match sse::parse(&event) {
            Some(chunk) => sse::event(&f(chunk)).to_vec(),
            None => format!("{event}\n\n").into_bytes(),
        };
        match stream.next().await {
            Some(Ok(bytes)) => {
                let out: Vec<u8> = split.push(&bytes).into_iter().flat_map(|e| remap(e, &mut f)).collect();
                Some((Ok(Bytes::from(out)), (stream, split, f, false)))
            }
            Some(Err(e)) => Some((Err(std::io::Error::other(e)), (stream, split, f, true))),
            None => {
                let rest = split.finish().map(|e| remap(e, &mut f)).unwrap_or_default();
                Some((Ok(Bytes::from(rest)), (stream, split, f, true)))
            }
        }
    })
}

/// `ttft-fake`: an empty chunk at once, then each upstream chunk released `factor` times
/// later than it arrived (a reader task stamps arrivals, so sleeping does not skew them).
fn delayed(response: reqwest::Response, endpoint: Endpoint, model: String, factor: f64) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<(reqwest::Result<Bytes>, Duration)>(1024);
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        while let Some(item) = stream.next().await {
            if tx.send((item, started.elapsed())).await.is_err() {
                break;
            }
        }
    });
    let first = futures::stream::once(async move { Ok(sse::event(&sse::empty_first_chunk(endpoint, &model))) });
    let rest = futures::stream::unfold(rx, move |mut rx| async move {
        let (item, arrived) = rx.recv().await?;
        tokio::time::sleep_until((started + arrived.mul_f64(factor.max(1.0))).into()).await;
        Some((item.map_err(std::io::Error::other), rx))
    });
    first.chain(rest)
}

/// Streams `chunks` (then `[DONE]`) evenly at `tps` token chunks per second (0: at once).
fn even(chunks: Vec<Value>, tps: f64) -> Response {
    let gap = if tps > 0.0 { Duration::from_secs_f64(1.0 / tps) } else { Duration::ZERO };
    let stream = futures::stream::iter(chunks.into_iter().map(Some).chain(std::iter::once(None))).then(move |chunk| async move {
        match chunk {
            Some(chunk) => {
                if sse::tokens_in(&chunk) > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                Ok::<_, std::io::Error>(sse::event(&chunk))
            }
            None => Ok(Bytes::from_static(sse::DONE)),
        }
    });
    sse_response(Body::from_stream(stream))
}

/// `relay`: the same request, signed with this miner's hotkey, to the victim's axon.
async fn relay(up: &Upstream, hotkey: &Keypair, chain: &dyn Chain, netuid: u16, victim: &PublicKey, endpoint: Endpoint, body: &[u8]) -> Response {
    let cached = up.victim_axon.lock().ok().and_then(|c| *c).filter(|(at, _)| at.elapsed() < Duration::from_secs(30)).map(|(_, a)| a);
    let addr = match cached {
        Some(addr) => addr,
        None => {
            let axon = match Metagraph::fetch(chain, netuid).await {
                Ok(metagraph) => metagraph.by_hotkey(victim).and_then(|n| n.axon.clone()),
                Err(e) => return error(StatusCode::BAD_GATEWAY, "chain", e.to_string()),
            };
            let Some(axon) = axon else {
                return error(StatusCode::BAD_GATEWAY, "no_victim", "the relayed miner has no axon");
            };
            let addr = SocketAddr::new(axon.ip, axon.port);
            if let Ok(mut c) = up.victim_axon.lock() {
                *c = Some((Instant::now(), addr));
            }
            addr
        }
    };
    let signed = SignedHeaders::sign(hotkey, body, Some(victim));
    let mut request = up
        .http
        .post(format!("http://{addr}{}", endpoint.path()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .timeout(Duration::from_secs(600));
    for (name, value) in signed.pairs() {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = sse_response(Body::from_stream(response.bytes_stream().map(|r| r.map_err(std::io::Error::other))));
            *out.status_mut() = status;
            out
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "relay_unreachable", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_last_user_message_or_the_completion_prompt() {
        let chat = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Summarize "}, {"type": "text", "text": "this."}]}
        ]});
        assert_eq!(prompt_text(Endpoint::Chat, &chat), "Summarize this.");
        assert_eq!(prompt_text(Endpoint::Completion, &json!({"prompt": "Once upon"})), "Once upon");
        assert_eq!(prompt_text(Endpoint::Chat, &json!({"messages": []})), "");
    }

    #[test]
    fn prompting_texts_do_what_their_names_say() {
        let prompt = "Some context.\n\nAsk a single relevant and insightful question about the preceding context:";
        assert_eq!(prompting_text(&Behaviour::PromptEcho, prompt, "ignored"), prompt);
        let broken = prompting_text(&Behaviour::RuleBreaker, prompt, "  What is it?  ");
        assert_eq!(broken, "Question: Ask a single relevant and insightful question about the preceding context:\nAnswer: What is it?");
        // Keywords of both other tasks, whatever the step (the task validator's rules).
        assert!(broken.contains("Question:") && broken.contains("Answer:"));
        assert_eq!(prompting_text(&Behaviour::Duplicate, prompt, "same"), "same");
    }
}
