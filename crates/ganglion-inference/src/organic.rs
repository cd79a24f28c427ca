//! Organic traffic: an OpenAI-compatible endpoint the validator serves to its own users
//! (Bearer API keys). Each request goes to a well-scored miner for the model, signed with
//! Epistula; the answer streams back to the user as it arrives while a bounded decoder
//! reads along. Afterwards the exchange is recorded (`organic = true`) and, for a sampled
//! fraction, verified like synthetic traffic — verified organic work counts in the score
//! windows, failures count against the miner.
//!
//! The forwarded request forces `stream`, `logprobs`, `return_tokens_as_token_ids` and
//! `stream_options.include_usage` (as the Targon hub forced `logprobs` and `include_usage`)
//! so that it can be verified; a user who asked for a non-streamed answer gets one JSON
//! response assembled from the stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use crate::openai::{Endpoint, InferenceRequest, Prompt, Sampling, parse_request};
use crate::stream::{StreamError, Streamed, read_stream_tee};
use crate::validator::round::RoundResult;
use crate::validator::{Shared, Target, candidates};
use crate::verify::{Outcome, Verdict, verify_round};

/// Settings of the organic endpoint.
#[derive(Debug, Clone)]
pub struct OrganicConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Accepted API keys (`Authorization: Bearer <key>`); at least one.
    pub api_keys: Vec<String>,
    /// Share of organic responses verified (0..=1).
    pub verify_fraction: f64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Miners tried per request before giving up.
    pub attempts: usize,
    /// Serve HTTPS with this certificate (`[tls] cert`, `key`); `None`: plain HTTP.
    pub tls: Option<ganglion_tls::ServerTls>,
}

impl OrganicConfig {
    /// Defaults: verify a quarter, 1 MiB bodies, two miners tried.
    pub fn new(listen: SocketAddr, api_keys: Vec<String>) -> OrganicConfig {
        OrganicConfig { listen, api_keys, verify_fraction: 0.25, max_body_bytes: 1 << 20, attempts: 2, tls: None }
    }
}

#[derive(Debug, Clone)]
struct Organic {
    shared: Arc<Shared>,
    config: OrganicConfig,
}

pub(crate) fn router(shared: Arc<Shared>, config: OrganicConfig) -> Router {
    let limit = config.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(complete))
        .route("/v1/completions", post(complete))
        .route("/v1/models", get(models))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(Organic { shared, config }))
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}}))).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorised(organic: &Organic, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // Every key is compared, so the time taken does not tell which one nearly matched.
    organic.config.api_keys.iter().fold(false, |ok, key| ok | constant_time_eq(key.as_bytes(), given.as_bytes()))
}

async fn models(State(organic): State<Arc<Organic>>, headers: HeaderMap) -> Response {
    if !authorised(&organic, &headers) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "give a valid API key as `Authorization: Bearer <key>`");
    }
    let models = organic.shared.models.read().map(|m| m.clone()).unwrap_or_default();
    let data: Vec<Value> = models.iter().map(|m| json!({"id": m, "object": "model", "owned_by": "ganglion-subnet"})).collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Miners for `model`, best first: up to three scored miners in random order (spreading the
/// load over the best), then the other scored ones, then unscored ones as a last resort.
fn pick_miners(shared: &Shared, model: &str) -> Vec<(Target, f64)> {
    let Some(metagraph) = shared.metagraph.read().ok().and_then(|m| m.clone()) else { return Vec::new() };
    let me = shared.config.hotkey.public();
    let scores: std::collections::HashMap<String, f64> = {
        let board = shared.scoreboard();
        board.miners.iter().map(|(hotkey, m)| (hotkey.clone(), m.model_score(model))).collect()
    };
    let mut ranked: Vec<(Target, f64)> = candidates(shared, &metagraph, &me, Some(model))
        .into_iter()
        .map(|t| {
            let score = scores.get(&t.hotkey.to_ss58()).copied().unwrap_or(0.0);
            (t, score)
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let scored = ranked.iter().filter(|(_, s)| *s > 0.0).count();
    ranked[..scored.min(3)].shuffle(&mut rand::thread_rng());
    ranked
}

/// The user's body as forwarded: streaming with what verification needs, and every sampling
/// parameter written explicitly (`sampling`, as parsed from the user's body with the OpenAI
/// defaults), so every honest server samples from the distribution the verifier assumes.
fn forwarded_body(endpoint: Endpoint, body: &Value, sampling: &Sampling) -> Value {
    let mut body = body.clone();
    sampling.write_into(&mut body);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body["return_tokens_as_token_ids"] = json!(true);
    match endpoint {
        Endpoint::Chat => body["logprobs"] = json!(true),
        Endpoint::Completion => {
            if body.get("logprobs").and_then(Value::as_u64).is_none() {
                body["logprobs"] = json!(0);
            }
        }
    }
    body
}

async fn complete(State(organic): State<Arc<Organic>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let shared = organic.shared.clone();
    let count = |result: &str| shared.metrics.inc("ganglion_inference_organic_requests_total", &[("result", result)]);
    if !authorised(&organic, &headers) {
        count("unauthorised");
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "give a valid API key as `Authorization: Bearer <key>`");
    }
    let Some(endpoint) = Endpoint::from_path(uri.path()) else {
        return error(StatusCode::NOT_FOUND, "invalid_request_error", "unknown endpoint");
    };
    let Ok(user_body) = serde_json::from_slice::<Value>(&body) else {
        count("bad_request");
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "the body is not JSON");
    };
    let Some(model) = user_body.get("model").and_then(Value::as_str).map(str::to_string) else {
        count("bad_request");
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "`model` is required; GET /v1/models lists them");
    };
    let wants_stream = user_body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let (prompt, sampling) = parse_request(endpoint, &user_body).unwrap_or_else(|| {
        (Prompt::Text(String::new()), Sampling { max_tokens: 512, ..Sampling::default() })
    });
    let verifiable = parse_request(endpoint, &user_body).is_some();
    let request = InferenceRequest { model: model.clone(), endpoint, prompt, sampling };
    let forwarded = serde_json::to_vec(&forwarded_body(endpoint, &user_body, &sampling)).unwrap_or_default();
    let limits = shared.config.limits(sampling.max_tokens.min(8192));
    let miners = pick_miners(&shared, &model);
    if miners.is_empty() {
        count("no_miner");
        return error(StatusCode::SERVICE_UNAVAILABLE, "server_error", format!("no miner serves `{model}` right now"));
    }
    // Try miners until one answers 200; each refusal is recorded against that miner.
    for (target, _) in miners.into_iter().take(organic.config.attempts.max(1)) {
        let url = format!("http://{}{}", target.addr, endpoint.path());
        let started = Instant::now();
        let response = match shared.dendrite.send(&target, &url, &model, forwarded.clone(), limits.first_token_timeout).await {
            Ok(r) => r,
            Err(failure) => {
                let result = RoundResult {
                    target: target.clone(),
                    request: request.clone(),
                    response: Err(StreamError { failure: failure.clone(), partial: Box::new(Streamed { total: started.elapsed(), ..Default::default() }) }),
                    verdict: Verdict::failed(failure, 0, json!({"stage": "organic"})),
                };
                shared.account(std::slice::from_ref(&result), shared.block(), true, 1);
                continue;
            }
        };
        count("forwarded");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
        let finish = {
            let shared = shared.clone();
            let request = request.clone();
            let fraction = organic.config.verify_fraction;
            move |result: Result<Streamed, StreamError>| async move {
                let verdict = organic_verdict(&shared, &request, &result, verifiable, fraction).await;
                // Only a sampled share `fraction` of answers is verified, so a failure found
                // counts 1/fraction times: an unverified answer carries its share of the risk.
                let weight = (1.0 / fraction.clamp(0.01, 1.0)).round() as usize;
                let result = RoundResult { target, request, response: result, verdict };
                shared.account(std::slice::from_ref(&result), shared.block(), true, weight);
            }
        };
        if wants_stream {
            tokio::spawn(async move {
                let mut tee = |bytes: &Bytes| {
                    let _ = tx.send(Ok(bytes.clone()));
                };
                let result = read_stream_tee(response.bytes_stream(), endpoint, limits, started, &mut tee).await;
                drop(tx);
                finish(result).await;
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
            let mut reply = Response::new(Body::from_stream(stream));
            reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            return reply;
        }
        drop(rx);
        let result = read_stream_tee(response.bytes_stream(), endpoint, limits, started, &mut |_| {}).await;
        let reply = match &result {
            Ok(streamed) => Json(assembled(endpoint, &model, streamed)).into_response(),
            Err(e) => error(StatusCode::BAD_GATEWAY, "server_error", format!("the miner's answer failed: {}", e.failure)),
        };
        tokio::spawn(finish(result));
        return reply;
    }
    count("all_failed");
    error(StatusCode::BAD_GATEWAY, "server_error", "no miner answered; try again")
}

async fn organic_verdict(shared: &Shared, request: &InferenceRequest, result: &Result<Streamed, StreamError>, verifiable: bool, fraction: f64) -> Verdict {
    let unverified = |why: &str| Verdict { outcome: Outcome::Unverifiable(why.into()), tokens: 0, similarity: None, stats: Value::Null, evidence: None };
    let streamed = match result {
        Ok(s) => s,
        Err(e) => return Verdict::failed(e.failure.clone(), e.partial.tokens.len() as u32, json!({"stage": "organic stream"})),
    };
    if !verifiable {
        return unverified("request shape not verifiable");
    }
    if !rand::thread_rng().gen_bool(fraction.clamp(0.0, 1.0)) {
        return unverified("not sampled for verification");
    }
    let Some(reference) = shared.reference(&request.model) else { return unverified("no reference for this model") };
    // Organic requests carry the user's sampling; only logprob mode can judge them (they
    // may have no seed, and ground truth needs one).
    let mut config = shared.config.verify.clone();
    config.mode = crate::verify::VerifyMode::Logprob;
    let started = Instant::now();
    let verdicts = tokio::time::timeout(Duration::from_secs(300), verify_round(reference.as_ref(), request, &[Some(streamed)], &config)).await;
    shared.metrics.observe("ganglion_inference_verification_seconds", &[], started.elapsed().as_secs_f64());
    match verdicts {
        Ok(mut v) => v.pop().flatten().unwrap_or_else(|| unverified("no verdict")),
        Err(_) => unverified("verification timed out"),
    }
}

fn assembled(endpoint: Endpoint, model: &str, streamed: &Streamed) -> Value {
    let usage = streamed.usage.map(|u| {
        json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
               "total_tokens": u.prompt_tokens.unwrap_or(0) + u.completion_tokens.unwrap_or(0)})
    });
    let id = format!("organic-{}", uuid::Uuid::new_v4().simple());
    match endpoint {
        Endpoint::Chat => json!({
            "id": id, "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": streamed.text}, "finish_reason": streamed.finish_reason}],
            "usage": usage,
        }),
        Endpoint::Completion => json!({
            "id": id, "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": streamed.text, "finish_reason": streamed.finish_reason}],
            "usage": usage,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_requests_ask_for_what_verification_needs() {
        let body = json!({"model": "m", "messages": [], "stream": false, "logprobs": false});
        let f = forwarded_body(Endpoint::Chat, &body, &Sampling::default());
        assert_eq!((f["top_k"].clone(), f["min_p"].clone(), f["repeat_penalty"].clone()), (json!(0), json!(0.0), json!(1.0)), "server defaults are overridden");
        assert_eq!((f["stream"].clone(), f["logprobs"].clone(), f["return_tokens_as_token_ids"].clone()), (json!(true), json!(true), json!(true)));
        let f = forwarded_body(Endpoint::Completion, &json!({"model": "m", "prompt": "x", "logprobs": 3}), &Sampling::default());
        assert_eq!(f["logprobs"], json!(3));
        assert_eq!(f["stream_options"]["include_usage"], json!(true));
    }
}
