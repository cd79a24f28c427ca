//! `ganglion bench inference`: measurements, side by side in one run.
//! - [`proxy_overhead`]: the same streaming requests sent straight to an upstream and
//!   through the miner proxy (with Epistula signing and verification), from N concurrent
//!   clients: p50/p99 latency, the latency the proxy adds, and requests per second.
//! - [`verification_throughput`]: responses of a given length verified per minute on the
//!   built-in engine, in logprob mode (all miners' answers to one prompt scored in one
//!   call, sharing the prompt) and in ground-truth mode (one regeneration per round).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use ganglion_core::keys::Keypair;
use ganglion_engine::Engine;
use ganglion_protocol::epistula::EpistulaRequestExt;
use ganglion_protocol::policy::PolicyConfig;
use serde::Serialize;
use serde_json::json;

use crate::error::{InferenceError, Result};
use crate::miner::{self, MinerConfig, UpstreamConfig};
use crate::openai::{Endpoint, InferenceRequest, Message, Prompt, Sampling};
use crate::reference::{LocalReference, Reference, end_tokens};
use crate::stream::{Streamed, StreamedToken, Usage};
use crate::verify::{VerifyConfig, VerifyMode, verify_round};

/// Latency figures of one series.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Requests completed.
    pub requests: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Median latency of a full response, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Requests per second over the series.
    pub rps: f64,
}

/// Direct versus proxied, for one upstream.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRow {
    /// What the upstream was.
    pub upstream: String,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Straight to the upstream.
    pub direct: Latency,
    /// Through the miner proxy.
    pub proxied: Latency,
    /// `proxied.p50 − direct.p50`.
    pub added_p50_ms: f64,
    /// `proxied.p99 − direct.p99`.
    pub added_p99_ms: f64,
}

/// Settings of [`proxy_overhead`].
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Requests per series.
    pub requests: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// SSE chunks the fake upstream streams per response.
    pub chunks: usize,
    /// Also measure with the real engine as upstream (requests, max_tokens).
    pub engine: Option<(Arc<Engine>, usize, u32)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn fake_upstream_router(chunks: usize) -> axum::Router {
    let handler = move || async move {
        let mut body = String::with_capacity(chunks * 200);
        for i in 0..chunks {
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": format!(" w{i}")}, "logprobs": {"content": [{"token": format!("token_id:{}", 100 + i), "logprob": -0.5}]}, "finish_reason": null}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n");
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("text/event-stream"));
        response
    };
    axum::Router::new().route("/v1/chat/completions", post(handler))
}

async fn serve(router: axum::Router) -> Result<SocketAddr> {
    let addr: SocketAddr = "127.0.0.1:0".parse().map_err(|_| InferenceError::Config("address".into()))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
    let bound = listener.local_addr().map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(bound)
}

/// Samples of one series.
#[derive(Default)]
struct Samples {
    latencies: Vec<f64>,
    errors: usize,
    seconds: f64,
}

impl Samples {
    fn summary(mut self) -> Latency {
        self.latencies.sort_by(f64::total_cmp);
        Latency {
            requests: self.latencies.len(),
            errors: self.errors,
            p50_ms: percentile(&self.latencies, 50.0),
            p99_ms: percentile(&self.latencies, 99.0),
            rps: self.latencies.len() as f64 / self.seconds.max(1e-9),
        }
    }
}

/// Runs `requests` requests from `concurrency` clients into `into`; `signer` signs them
/// for the receiver.
async fn series(url: &str, body: Bytes, requests: usize, concurrency: usize, signer: Option<(Keypair, ganglion_core::keys::PublicKey)>, into: &mut Samples) {
    let http = match ganglion_tls::ClientTls::system().http_builder().pool_max_idle_per_host(concurrency * 2).build() {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(target: "ganglion::bench", "cannot build the HTTP client: {e}");
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency.max(1)).map(|_| {
        let (http, next, body, signer, url) = (http.clone(), next.clone(), body.clone(), signer.clone(), url.to_string());
        async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t0 = Instant::now();
                let mut request = http.post(&url).header("content-type", "application/json").header(crate::openai::MODEL_HEADER, "bench");
                request = match &signer {
                    Some((key, receiver)) => request.epistula(key, Some(receiver), body.clone()),
                    None => request.body(body.clone()),
                };
                let ok = match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let mut stream = r.bytes_stream();
                        let mut fine = true;
                        while let Some(chunk) = stream.next().await {
                            fine &= chunk.is_ok();
                        }
                        fine
                    }
                    _ => false,
                };
                if ok {
                    latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }
    });
    for (latencies, errors) in futures::future::join_all(workers).await {
        into.latencies.extend(latencies);
        into.errors += errors;
    }
    into.seconds += started.elapsed().as_secs_f64();
}

async fn compare(label: String, upstream: SocketAddr, requests: usize, concurrency: usize, body: Bytes) -> Result<ProxyRow> {
    let miner_key = Keypair::from_uri("//BenchMiner").map_err(|e| InferenceError::Config(e.to_string()))?;
    let client_key = Keypair::from_uri("//BenchValidator").map_err(|e| InferenceError::Config(e.to_string()))?;
    let upstreams = vec![UpstreamConfig { name: "bench".into(), url: format!("http://{upstream}"), api_key: None, max_concurrency: concurrency * 2 }];
    let mut config = MinerConfig::new(0, miner_key.clone(), "127.0.0.1:0".parse().map_err(|_| InferenceError::Config("address".into()))?, upstreams);
    config.policy = PolicyConfig::default();
    config.axon.serve = false;
    config.per_caller_concurrency = concurrency * 2;
    config.epistula_max_age = Duration::from_secs(60);
    let miner = miner::start(config, None, None).await?;
    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let proxied_url = format!("http://{}/v1/chat/completions", miner.addr());
    let signer = Some((client_key, miner_key.public()));
    // Warm both paths (connections, caches) before measuring, then alternate batches of
    // the two so that a change in machine load hits both alike.
    let warm = (concurrency * 2).min(requests);
    series(&direct_url, body.clone(), warm, concurrency, None, &mut Samples::default()).await;
    series(&proxied_url, body.clone(), warm, concurrency, signer.clone(), &mut Samples::default()).await;
    let (mut direct, mut proxied) = (Samples::default(), Samples::default());
    let rounds = 4.min(requests).max(1);
    for round in 0..rounds {
        let batch = requests / rounds + usize::from(round < requests % rounds);
        series(&direct_url, body.clone(), batch, concurrency, None, &mut direct).await;
        series(&proxied_url, body.clone(), batch, concurrency, signer.clone(), &mut proxied).await;
    }
    let (direct, proxied) = (direct.summary(), proxied.summary());
    miner.shutdown().await;
    Ok(ProxyRow {
        upstream: label,
        concurrency,
        added_p50_ms: proxied.p50_ms - direct.p50_ms,
        added_p99_ms: proxied.p99_ms - direct.p99_ms,
        direct,
        proxied,
    })
}

/// The miner proxy's overhead; see the module doc.
pub async fn proxy_overhead(options: &ProxyOptions) -> Result<Vec<ProxyRow>> {
    let fake = serve(fake_upstream_router(options.chunks)).await?;
    let body = Bytes::from(json!({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": true}).to_string());
    let mut rows = vec![compare(format!("fake upstream, {} chunks", options.chunks), fake, options.requests, options.concurrency, body).await?];
    if let Some((engine, requests, max_tokens)) = &options.engine {
        let server = ganglion_engine::server::Server::start(engine.clone(), ganglion_engine::server::ServerConfig { model_id: "bench".into(), api_key: None })
            .map_err(|e| InferenceError::Reference(e.to_string()))?;
        let addr: SocketAddr = "127.0.0.1:0".parse().map_err(|_| InferenceError::Config("address".into()))?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
        let bound = listener.local_addr().map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
        tokio::spawn(async move {
            let _ = server.serve(listener, std::future::pending()).await;
        });
        let body = Bytes::from(
            json!({"model": "bench", "messages": [{"role": "user", "content": "Count to ten."}], "stream": true, "max_tokens": max_tokens, "temperature": 0}).to_string(),
        );
        // One at a time: the engine serves requests round-robin on one thread, so
        // concurrent ones only measure its queue.
        let concurrency = 1;
        rows.push(compare(format!("engine, {max_tokens} tokens"), bound, *requests, concurrency, body).await?);
    }
    Ok(rows)
}

/// One verification throughput figure.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyRow {
    /// What was measured.
    pub mode: String,
    /// Responses verified per round.
    pub responses: usize,
    /// Tokens per response.
    pub tokens: usize,
    /// Wall time of the round, seconds.
    pub seconds: f64,
    /// Responses verified per minute.
    pub per_minute: f64,
    /// How many passed (the variants carry one foreign token each, so logprob mode
    /// rejects most of them; the figure is the work, not the verdict).
    pub verified: usize,
}

/// Settings of [`verification_throughput`].
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Miners answering the same prompt.
    pub miners: usize,
    /// Tokens per answer.
    pub tokens: u32,
}

fn streamed_from(engine: &Engine, ids: &[u32], logprobs: &[f64]) -> Streamed {
    let tok = engine.tokenizer();
    let ends = end_tokens(tok);
    let plain: Vec<u32> = ids.iter().copied().filter(|t| !ends.contains(t)).collect();
    let tokens = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| StreamedToken {
            id: Some(id),
            raw: format!("token_id:{id}"),
            logprob: Some(logprobs.get(i).copied().unwrap_or(-1.0)),
            at: Duration::from_millis(10 * (i as u64 + 1)),
        })
        .collect();
    Streamed {
        text: tok.decode(&plain, false),
        tokens,
        content_times: Vec::new(),
        finish_reason: Some(if ids.last().is_some_and(|t| ends.contains(t)) { "stop".into() } else { "length".into() }),
        usage: Some(Usage { prompt_tokens: None, completion_tokens: Some(ids.len() as u64) }),
        ttft: Some(Duration::from_millis(10)),
        total: Duration::from_millis(10 * (ids.len() as u64 + 1)),
        bytes: 0,
        events: ids.len() + 2,
        done: true,
    }
}

/// Verification throughput on `engine`; see the module doc.
pub async fn verification_throughput(engine: Arc<Engine>, options: VerifyOptions) -> Result<Vec<VerifyRow>> {
    let reference = LocalReference::new(engine.clone(), "bench");
    let request = InferenceRequest {
        model: "bench".into(),
        endpoint: Endpoint::Chat,
        prompt: Prompt::Chat(vec![Message { role: "user".into(), content: "Write a long, detailed story about a lighthouse keeper and a storm.".into() }]),
        sampling: Sampling { temperature: 0.8, top_p: 0.95, max_tokens: options.tokens, seed: Some(20_24), ..Sampling::default() },
    };
    let prompt = request.prompt_tokens(engine.tokenizer())?;
    let honest = reference.generate(prompt.clone(), request.sampling).await?;
    // The logprobs an honest miner reports with its tokens (not timed).
    let reported: Vec<f64> = reference
        .score(prompt, vec![honest.tokens.clone()], 0)
        .await?
        .first()
        .map(|s| s.iter().map(|t| f64::from(t.logprob)).collect())
        .unwrap_or_default();
    let n = honest.tokens.len();
    let vocab = engine.tokenizer().vocab_size() as u32;
    // Distinct answers (one token changed each), so no two can share a scoring pass.
    let variants: Vec<Streamed> = (0..options.miners.max(1))
        .map(|i| {
            let mut ids = honest.tokens.clone();
            let at = (i * 37 + 5) % n.max(1);
            if i > 0 && !ids.is_empty() {
                ids[at] = (ids[at] + 1 + i as u32) % vocab;
            }
            streamed_from(&engine, &ids, &reported)
        })
        .collect();
    let identical: Vec<Streamed> = (0..options.miners.max(1)).map(|_| streamed_from(&engine, &honest.tokens, &reported)).collect();
    let mut rows = Vec::new();
    for (label, set, mode) in [
        (format!("logprob, {} distinct answers (all but one altered), shared prompt", variants.len()), &variants, VerifyMode::Logprob),
        (format!("logprob, {} identical answers (deduplicated)", identical.len()), &identical, VerifyMode::Logprob),
        (format!("ground truth, {} answers, one regeneration", identical.len()), &identical, VerifyMode::GroundTruth),
    ] {
        let config = VerifyConfig { mode, ..VerifyConfig::default() };
        let refs: Vec<Option<&Streamed>> = set.iter().map(Some).collect();
        let started = Instant::now();
        let verdicts = verify_round(&reference as &dyn Reference, &request, &refs, &config).await;
        let seconds = started.elapsed().as_secs_f64();
        let verified = verdicts.iter().flatten().filter(|v| v.verified()).count();
        rows.push(VerifyRow { mode: label, responses: set.len(), tokens: n, seconds, per_minute: set.len() as f64 * 60.0 / seconds.max(1e-9), verified });
    }
    Ok(rows)
}
