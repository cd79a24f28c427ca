//! Inference strategies: each dishonest upstream's transformation over HTTP (against a fake
//! engine, no model needed), then bounded runs of `ganglion-redteam run` against the real
//! validator asserting what each strategy earns relative to an honest miner.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use ganglion_neuron::Shutdown;
use ganglion_redteam::inference::sse::{self, EventSplitter};
use ganglion_redteam::inference::upstream::{self, Behaviour, EosMode};
use serde_json::{Value, json};

use crate::support;

/// A fake engine: `min(5, max_tokens)` token chunks 50 ms apart, then the finish (`length`
/// when cut) and usage chunks; counts the requests it served.
async fn fake_engine() -> (String, Arc<AtomicUsize>, Shutdown) {
    async fn complete(State(count): State<Arc<AtomicUsize>>, body: Bytes) -> Response {
        count.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&body).unwrap();
        let max = body["max_tokens"].as_u64().unwrap_or(16);
        let n = max.min(5);
        let finish = if max <= 5 { "length" } else { "stop" };
        let mut events = vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})];
        for i in 0..n {
            events.push(json!({"choices": [{"index": 0, "delta": {"content": format!(" w{i}")}, "finish_reason": null,
                "logprobs": {"content": [{"token": format!("token_id:{}", 100 + i), "logprob": -0.5}]}}]}));
        }
        events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}));
        events.push(json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n}}));
        let stream = futures::stream::iter(events.into_iter().map(Some).chain(std::iter::once(None))).then(|e| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, std::io::Error>(match e {
                Some(e) => sse::event(&e),
                None => Bytes::from_static(sse::DONE),
            })
        });
        let mut response = Response::new(Body::from_stream(stream));
        response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
        response
    }
    use futures::StreamExt;
    let count = Arc::new(AtomicUsize::new(0));
    let (trigger, shutdown) = Shutdown::new();
    std::mem::forget(trigger);
    let app = axum::Router::new().route("/v1/chat/completions", post(complete)).with_state(count.clone());
    let addr = upstream::serve_loopback(app, shutdown.clone()).await.unwrap();
    (format!("http://{addr}/v1"), count, shutdown)
}

/// Starts `behaviour` in front of a fake engine.
async fn dishonest(behaviour: Behaviour) -> (String, Arc<AtomicUsize>) {
    let (engine, count, shutdown) = fake_engine().await;
    let addr = upstream::start(engine, "smollm2".into(), behaviour, shutdown).await.unwrap();
    (format!("http://{addr}"), count)
}

fn request(temperature: f64, max_tokens: u32) -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": "Say something."}], "stream": true,
        "stream_options": {"include_usage": true}, "logprobs": true, "temperature": temperature, "top_p": 0.95,
        "max_tokens": max_tokens, "seed": 42})
}

/// Posts `body`; returns the status, the parsed chunks and when each event arrived.
async fn ask(url: &str, body: &Value) -> (u16, Vec<Value>, Vec<Duration>) {
    let started = Instant::now();
    let response = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}")).post(format!("{url}/v1/chat/completions")).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let mut stream = response.bytes_stream();
    let (mut split, mut chunks, mut times) = (EventSplitter::default(), Vec::new(), Vec::new());
    use futures::StreamExt;
    while let Some(bytes) = stream.next().await {
        for event in split.push(&bytes.unwrap()) {
            if let Some(chunk) = sse::parse(&event) {
                chunks.push(chunk);
                times.push(started.elapsed());
            }
        }
    }
    (status, chunks, times)
}

fn tokens(chunks: &[Value]) -> usize {
    chunks.iter().map(sse::tokens_in).sum()
}

fn usage(chunks: &[Value]) -> Value {
    chunks.iter().find(|c| sse::is_usage(c)).map(|c| c["usage"].clone()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn usage_lies_multiply_the_reported_tokens() {
    let (url, _) = dishonest(Behaviour::UsageLies { factor: 3.0 }).await;
    let (status, chunks, _) = ask(&url, &request(0.7, 16)).await;
    assert_eq!(status, 200);
    assert_eq!(tokens(&chunks), 5, "the tokens are the honest ones");
    assert_eq!(usage(&chunks)["completion_tokens"], 15, "but usage claims three times as many: {chunks:?}");
}

#[tokio::test]
async fn ttft_fake_answers_at_once_then_slowly() {
    let (url, _) = dishonest(Behaviour::TtftFake { factor: 3.0 }).await;
    let (status, chunks, times) = ask(&url, &request(0.7, 16)).await;
    assert_eq!(status, 200);
    assert_eq!(sse::tokens_in(&chunks[0]), 0, "the first chunk is empty");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    assert!(times[0] < Duration::from_millis(40), "and immediate: {:?}", times[0]);
    let first_token = chunks.iter().position(|c| sse::tokens_in(c) > 0).unwrap();
    // The fake engine's first token comes after 100 ms; three times later here.
    assert!(times[first_token] >= Duration::from_millis(280), "the real tokens are slowed: {times:?}");
    assert_eq!(tokens(&chunks), 5);
}

#[tokio::test]
async fn selective_refusal_refuses_hot_and_long_requests_only() {
    let (url, count) = dishonest(Behaviour::SelectiveRefusal { max_temperature: 0.5, max_tokens: 32 }).await;
    assert_eq!(ask(&url, &request(0.9, 16)).await.0, 403, "hot");
    assert_eq!(ask(&url, &request(0.2, 64)).await.0, 403, "long");
    assert_eq!(count.load(Ordering::SeqCst), 0, "a refusal costs no work");
    let (status, chunks, _) = ask(&url, &request(0.2, 16)).await;
    assert_eq!((status, tokens(&chunks)), (200, 5), "the rest is served honestly");
}

#[tokio::test]
async fn early_eos_cuts_and_calls_it_a_stop() {
    let (url, _) = dishonest(Behaviour::EarlyEos { mode: EosMode::Stop, fraction: 0.25 }).await;
    let (_, chunks, _) = ask(&url, &request(0.7, 16)).await;
    assert_eq!(tokens(&chunks), 4, "a quarter of max_tokens");
    let finish: Vec<&str> = chunks.iter().filter_map(sse::finish_reason).collect();
    assert_eq!(finish, vec!["stop"], "the length cut is reported as a natural stop");
}

#[tokio::test]
async fn early_eos_pads_past_the_natural_end() {
    let (url, _) = dishonest(Behaviour::EarlyEos { mode: EosMode::Pad, fraction: 1.0 }).await;
    let (_, chunks, _) = ask(&url, &request(0.7, 12)).await;
    assert_eq!(tokens(&chunks), 12, "the 5-token answer repeated up to max_tokens");
    let finish: Vec<&str> = chunks.iter().filter_map(sse::finish_reason).collect();
    assert_eq!(finish, vec!["length"]);
    assert_eq!(usage(&chunks)["completion_tokens"], 12);
}

#[tokio::test]
async fn cached_answers_serve_any_sampling_without_new_work() {
    let (url, count) = dishonest(Behaviour::Cached { tps: 200.0, temperature: 0.3, max_tokens: 64 }).await;
    let (_, first, _) = ask(&url, &request(0.9, 16)).await;
    assert_eq!(count.load(Ordering::SeqCst), 2, "a miss fetches one greedy answer and one sample");
    let (_, again, _) = ask(&url, &request(0.4, 3)).await;
    let (_, greedy, _) = ask(&url, &request(0.0, 16)).await;
    assert_eq!(count.load(Ordering::SeqCst), 2, "hits cost no work, whatever the sampling");
    assert_eq!(tokens(&first), 5);
    assert_eq!(tokens(&again), 3, "cut at max_tokens");
    assert_eq!(again.iter().filter_map(sse::finish_reason).collect::<Vec<_>>(), vec!["length"]);
    assert_eq!(usage(&again)["completion_tokens"], 3);
    assert_eq!(tokens(&greedy), 5);
}

fn check(failures: &mut Vec<String>, what: &str, value: Option<f64>, at_most: f64) {
    match value {
        Some(v) if v <= at_most => {}
        Some(v) => failures.push(format!("{what}: {:.2}% of an honest miner (goal ≤ {:.2}%)", v * 100.0, at_most * 100.0)),
        None => failures.push(format!("{what}: no honest reward to compare with")),
    }
}

/// The strategies the validator beats within a bounded run (1 honest miner, 4 epochs of
/// tempo 10, 16-token answers): each fails every request it answers, so three requests
/// are enough to show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_strategies_earn_nothing_against_the_real_validator() {
    let args = [
        "--strategies",
        "random-tokens,usage-lies,ttft-fake,early-eos,relay",
        "--ttft.factor",
        "6",
        "--honest",
        "1",
        "--epochs",
        "4",
        "--tempo",
        "10",
        "--max-tokens",
        "16",
    ];
    let Some(report) = support::run(&args, Duration::from_secs(420)).await else { return };
    assert!(report["honest_mean_tao"].as_f64().is_some_and(|t| t > 0.0), "the honest miner earns: {report}");
    let mut failures = Vec::new();
    for strategy in ["random-tokens", "usage-lies", "early-eos", "relay"] {
        check(&mut failures, strategy, support::share(support::row(&report, strategy), "share_of_honest"), 0.01);
    }
    // Real tokens six times slower than produced: the immediate empty chunk must buy nothing
    // beyond that speed (an honest miner of its real speed earns about a sixth; 0.5 leaves
    // room for the noise of six requests on a loaded CI machine, where a factor of three
    // measured 0.33-0.43 here and once passed 0.5 in CI).
    check(&mut failures, "ttft-fake", support::share(support::row(&report, "ttft-fake"), "share_of_honest"), 0.5);
    let random = support::row(&report, "random-tokens");
    assert!(random["causes"].as_array().is_some_and(|c| !c.is_empty()), "the validator recorded why: {random}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}

/// The strategies that do some real work, or spread it over several hotkeys, in a bounded
/// run (1 honest miner, every engine paced to the same 8 turns/s — equal hardware on a
/// shared CPU, with headroom on a slower one — 8 epochs of tempo 10, 16-token answers, rounds of 8 s with two requests in
/// flight per miner), judged in the final epoch: what the brief asks, with room for the
/// spread of a few rounds.
/// - `other-model` (a cheaper model is not the work asked for) and `go-dark` (dark one
///   epoch after its first answer, its rounds older than the score TTL of three epochs by
///   the last one even when its first answer came in the third epoch, as on a slow CI
///   machine, where two epochs of work left it 22 % in the last one): nothing.
/// - `cached` makes two answers (greedy and a sample) for every one it sends, so its work
///   earns half an honest miner's; caching buys nothing because no prompt comes twice.
/// - `selective-refusal` earns at most what it serves: a refusal (once the validator holds
///   its permit) costs the tokens it was asked for and ends the miner's round.
/// - `sybil`: three hotkeys on one engine that serves their requests one after another
///   (the order that paid 1.83× under per-request speed) together earn one honest miner's
///   share, since a round scores the tokens delivered within a fixed window.
///
/// Measured on this machine (2026-12-03, pace 8): cached 0.28 and 0.28, selective-refusal
/// 0.08 and 0.09 (served 4 of 11, 6 of 13), sybil 0.83 and 0.85, other-model 0, go-dark in
/// its last epoch 0 (sybil's whole-run share 0.89 and 1.02). At pace 15 the CPU was the bottleneck (sybil 1.00, and over 1.1 once in
/// CI), so every engine's share depended on the scheduler rather than on its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_strategies_earn_no_more_than_their_work() {
    let args = [
        "--strategies",
        "cached,selective-refusal,sybil,other-model,go-dark",
        "--go-dark.epochs",
        "1",
        "--honest",
        "1",
        "--sybils",
        "3",
        "--epochs",
        "8",
        "--tempo",
        "10",
        "--max-tokens",
        "16",
        "--pace",
        "8",
    ];
    let Some(report) = support::run(&args, Duration::from_secs(480)).await else { return };
    assert!(report["honest_mean_tao"].as_f64().is_some_and(|t| t > 0.0), "the honest miner earns: {report}");
    let mut failures = Vec::new();
    let final_share = |strategy: &str| support::share(support::row(&report, strategy), "final_share");
    check(&mut failures, "other-model (final epoch)", final_share("other-model"), 0.01);
    check(&mut failures, "go-dark (final epoch)", final_share("go-dark"), 0.01);
    check(&mut failures, "cached (final epoch; its work earns 0.5)", final_share("cached"), 0.6);
    let refusing = support::row(&report, "selective-refusal");
    // What it served is itself a sample of ~10 requests: the bound is its upper two-sigma
    // binomial limit (a strategy whose refusals were free would earn ≈ 1 whatever it served).
    let asked = refusing["requests"].as_f64().unwrap_or(1.0).max(1.0);
    let served = refusing["verified"].as_f64().unwrap_or(0.0) / asked;
    let spread = 2.0 * (served.clamp(0.1, 0.9) * (1.0 - served.clamp(0.1, 0.9)) / asked).sqrt();
    check(
        &mut failures,
        &format!("selective-refusal (final epoch; served {:.0}% of {asked})", served * 100.0),
        final_share("selective-refusal"),
        served + spread + 0.05,
    );
    // The Sybil's claim (its hotkeys together earn no more than one honest miner) is checked
    // over the whole run; its final epoch alone holds a few of the run's requests, so that
    // one gets on top the two-sigma spread of a share measured on the run's request count
    // (smaller than the final epoch's own; the 1.83× that serving in turn once paid stays
    // far outside it). CI once measured 1.16 in the final epoch of a
    // run whose whole share was 1.02.
    let sybil = support::row(&report, "sybil");
    check(&mut failures, "sybil, three hotkeys together (whole run)", support::share(sybil, "share_of_honest"), 1.1);
    let sybil_requests = sybil["requests"].as_f64().unwrap_or(1.0).max(1.0);
    check(
        &mut failures,
        &format!("sybil, three hotkeys together (final epoch; {sybil_requests} requests)"),
        final_share("sybil"),
        1.1 + 2.0 * (0.25 / sybil_requests).sqrt(),
    );
    let dark = support::row(&report, "go-dark");
    assert!(dark["verified"].as_u64().is_some_and(|v| v > 0), "go-dark worked before it went dark: {dark}");
    let other = support::row(&report, "other-model");
    assert!(other["causes"].as_array().is_some_and(|c| !c.is_empty()), "the validator recorded why: {other}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}
