//! Dishonest upstreams on the test side: the production miner proxies to them unchanged, so
//! the cheating lives here (and in `ganglion-redteam`), never in the miner. Each is an
//! OpenAI-compatible server on loopback in front of an honest engine server.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use futures::StreamExt;
use ganglion_engine::Engine;
use ganglion_inference::openai::{Endpoint, parse_request, prompt_tokens};
use rand::Rng;
use serde_json::{Value, json};

use super::{serve, sse};

/// What the upstream does with a request.
#[derive(Clone)]
pub(crate) enum Cheat {
    /// Honest tokens, each chunk held until `factor` times the time the honest engine took.
    Slow(f64),
    /// Asks for `fraction` of `max_tokens` and reports the cut as a natural stop.
    Truncate(f64),
    /// Random printable vocabulary tokens claiming logprob −1, `finish_reason: length`.
    RandomTokens,
}

#[derive(Clone)]
struct Upstream {
    honest: SocketAddr,
    engine: Arc<Engine>,
    cheat: Cheat,
    http: reqwest::Client,
}

/// Starts a dishonest upstream in front of the honest engine server at `honest`.
pub(crate) async fn upstream(honest: SocketAddr, engine: Arc<Engine>, cheat: Cheat) -> SocketAddr {
    let state = Upstream { honest, engine, cheat, http: ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}")) };
    serve(
        axum::Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(complete))
            .route("/v1/completions", post(complete))
            .with_state(state),
    )
    .await
}

async fn models(State(up): State<Upstream>) -> Response {
    let body = up.http.get(format!("http://{}/v1/models", up.honest)).send().await.unwrap().bytes().await.unwrap();
    Response::new(Body::from(body))
}

async fn complete(State(up): State<Upstream>, uri: Uri, body: Bytes) -> Response {
    let endpoint = Endpoint::from_path(uri.path()).unwrap();
    let mut value: Value = serde_json::from_slice(&body).unwrap();
    match up.cheat {
        Cheat::RandomTokens => {
            let events = random_token_events(&up.engine, endpoint, &value);
            sse(futures::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>)))
        }
        Cheat::Truncate(fraction) => {
            let max = value.get("max_tokens").and_then(Value::as_u64).unwrap_or(16);
            value["max_tokens"] = json!(((max as f64 * fraction).ceil() as u64).clamp(1, max));
            let text = forward(&up, endpoint, &value).await.text().await.unwrap();
            let text = text.replace("\"finish_reason\":\"length\"", "\"finish_reason\":\"stop\"");
            sse(futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(text))]))
        }
        Cheat::Slow(factor) => {
            let started = Instant::now();
            let response = forward(&up, endpoint, &value).await;
            // A reader task stamps each chunk when it really arrived; the stream releases it
            // `factor` times later.
            let (tx, rx) = tokio::sync::mpsc::channel::<(Bytes, Duration)>(1024);
            tokio::spawn(async move {
                let mut stream = response.bytes_stream();
                while let Some(Ok(bytes)) = stream.next().await {
                    if tx.send((bytes, started.elapsed())).await.is_err() {
                        break;
                    }
                }
            });
            let stream = futures::stream::unfold(rx, move |mut rx| async move {
                let (bytes, arrived) = rx.recv().await?;
                tokio::time::sleep_until((started + arrived.mul_f64(factor.max(1.0))).into()).await;
                Some((Ok::<_, std::io::Error>(bytes), rx))
            });
            sse(stream)
        }
    }
}

async fn forward(up: &Upstream, endpoint: Endpoint, body: &Value) -> reqwest::Response {
    up.http.post(format!("http://{}{}", up.honest, endpoint.path())).json(body).send().await.unwrap()
}

/// `max_tokens` random printable tokens, each claiming logprob −1, then `length` and a usage
/// chunk that counts the prompt with the real tokenizer: only the tokens betray it.
fn random_token_events(vocabulary: &Engine, endpoint: Endpoint, body: &Value) -> Vec<Bytes> {
    let tokenizer = vocabulary.tokenizer();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("model").to_string();
    let (prompt, sampling) = parse_request(endpoint, body).unwrap();
    let prompt_len = prompt_tokens(&prompt, tokenizer).map_or(1, |p| p.len());
    let max_tokens = sampling.max_tokens.clamp(1, 4096);
    let mut rng = rand::thread_rng();
    let vocab = tokenizer.vocab_size().max(1) as u32;
    let object = if endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = |choice: Value| json!({"id": "cmpl-random", "object": object, "created": 0, "model": model, "choices": [choice]});
    let event = |v: &Value| Bytes::from(format!("data: {v}\n\n"));
    let mut events = Vec::new();
    let mut offset = 0usize;
    for _ in 0..max_tokens {
        let token = loop {
            let t = rng.gen_range(0..vocab);
            if !tokenizer.is_special(t) && std::str::from_utf8(tokenizer.token_bytes(t)).is_ok() {
                break t;
            }
        };
        let text = tokenizer.token_text(token);
        let choice = match endpoint {
            Endpoint::Chat => json!({
                "index": 0, "delta": {"content": text}, "finish_reason": null,
                "logprobs": {"content": [{"token": format!("token_id:{token}"), "logprob": -1.0, "top_logprobs": []}]},
            }),
            Endpoint::Completion => json!({
                "index": 0, "text": text, "finish_reason": null,
                "logprobs": {"tokens": [format!("token_id:{token}")], "token_logprobs": [-1.0], "top_logprobs": [{}], "text_offset": [offset]},
            }),
        };
        offset += text.len();
        events.push(event(&chunk(choice)));
    }
    let finish = match endpoint {
        Endpoint::Chat => json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}),
        Endpoint::Completion => json!({"index": 0, "text": "", "logprobs": null, "finish_reason": "length"}),
    };
    events.push(event(&chunk(finish)));
    let mut usage = chunk(Value::Null);
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": prompt_len, "completion_tokens": max_tokens, "total_tokens": prompt_len as u32 + max_tokens});
    events.push(event(&usage));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}
