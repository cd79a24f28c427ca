//! Miners that misbehave at the stream level, each a fake miner on 127.0.0.1: the validator
//! spends bounded time and memory on each, records the cause, and keeps working (an honest
//! miner in the same round still verifies).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use common::{MODEL, content_chunk, engine, fake, key, sse, tail, target};
use futures::StreamExt;
use ganglion_inference::cause::Cause;
use ganglion_inference::openai::{Endpoint, InferenceRequest, Message, Prompt, Sampling};
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::validator::{Dendrite, Target, run_round};
use ganglion_inference::verify::VerifyConfig;

const FIRST: Duration = Duration::from_millis(1500);
const TOTAL: Duration = Duration::from_secs(3);

fn request(max_tokens: u32) -> InferenceRequest {
    InferenceRequest {
        model: MODEL.into(),
        endpoint: Endpoint::Chat,
        prompt: Prompt::Chat(vec![Message { role: "user".into(), content: "Name a colour.".into() }]),
        sampling: Sampling { temperature: 0.0, top_p: 0.9, max_tokens, seed: Some(7), ..Sampling::default() },
    }
}

/// Token ids and texts of a short plain sentence, one token per chunk.
fn sentence_tokens(words: usize) -> Vec<(u32, String)> {
    let e = engine();
    let text: String = (0..words).map(|i| format!(" word{}", i % 10)).collect();
    e.tokenizer().encode(&text).into_iter().map(|id| (id, e.tokenizer().token_text(id))).collect()
}

async fn round(targets: &[Target], max_tokens: u32, config: &VerifyConfig) -> Vec<ganglion_inference::validator::RoundResult> {
    let dendrite = Dendrite::new(key("//Validator"), Duration::from_millis(500)).unwrap();
    // The model is loaded (once per process) before any deadline is measured.
    let reference = LocalReference::new(engine(), MODEL);
    let limits = common::limits(max_tokens, FIRST, TOTAL);
    run_round(&dendrite, Some(&reference as &dyn Reference), config, &request(max_tokens), targets, limits).await
}

async fn cause_of(addr: std::net::SocketAddr) -> (Cause, String, Duration, usize) {
    // Load the model first (each test process loads it once): only the round is timed.
    let _ = engine();
    let started = Instant::now();
    let results = round(&[target(1, "M", addr)], 16, &VerifyConfig::default()).await;
    let r = &results[0];
    let failure = r.failure().unwrap_or_else(|| panic!("expected a failure, got {:?}", r.verdict));
    (failure.cause, failure.detail.clone(), started.elapsed(), r.streamed().bytes)
}

#[tokio::test]
async fn garbage_is_malformed() {
    let addr = fake(|| sse(futures::stream::iter(vec![Ok(Bytes::from_static(b"data: {{{ this is not json\n\n"))]))).await;
    let (cause, detail, elapsed, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::Malformed, "{detail}");
    assert!(elapsed < TOTAL + Duration::from_secs(5));
    // Not SSE at all: plain text lines carry no event.
    let addr = fake(|| Response::new(Body::from("hello there\nthis is no stream\n"))).await;
    assert_eq!(cause_of(addr).await.0, Cause::Malformed);
}

#[tokio::test]
async fn never_ending_streams_are_cut() {
    // Keep-alive comments forever after one token: the total deadline ends it.
    let addr = fake(|| {
        let first = futures::stream::once(async { Ok(Bytes::from(content_chunk("Hi", None))) });
        let pings = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok(Bytes::from_static(b": ping\n\n")), ()))
        });
        sse(first.chain(pings))
    })
    .await;
    let (cause, detail, elapsed, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::Timeout, "{detail}");
    assert!(detail.contains("total"), "{detail}");
    assert!(elapsed < TOTAL + Duration::from_secs(5), "{elapsed:?}");
    // Content chunks forever: the event budget ends it well before the deadline.
    let addr = fake(|| {
        sse(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Some((Ok(Bytes::from(content_chunk("la", None))), ()))
        }))
    })
    .await;
    let (cause, detail, _, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::TooLarge, "{detail}");
}

#[tokio::test]
async fn a_hundred_megabytes_are_never_read() {
    const CHUNK: usize = 64 * 1024;
    let addr = fake(|| {
        let line = Bytes::from(format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n", "x".repeat(CHUNK - 50)));
        sse(futures::stream::iter((0..(100 << 20) / CHUNK).map(move |_| Ok(line.clone()))))
    })
    .await;
    let (cause, detail, elapsed, bytes) = cause_of(addr).await;
    assert!(cause == Cause::TooLarge || cause == Cause::Malformed, "{cause}: {detail}");
    assert!(bytes < 2 << 20, "read {bytes} bytes of 100 MB");
    assert!(elapsed < TOTAL + Duration::from_secs(5));
    // One 100 MB line without a newline: the line budget cuts it.
    let addr = fake(|| sse(futures::stream::iter((0..(100 << 20) / CHUNK).map(|_| Ok(Bytes::from(vec![b'a'; CHUNK]))))))
    .await;
    let (cause, _, _, bytes) = cause_of(addr).await;
    assert_eq!(cause, Cause::TooLarge);
    assert!(bytes < 2 << 20);
}

#[tokio::test]
async fn invalid_utf8_is_named() {
    let addr = fake(|| sse(futures::stream::iter(vec![Ok(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"\xc3\x28\"}}]}\n\n"))]))).await;
    assert_eq!(cause_of(addr).await.0, Cause::InvalidUtf8);
}

#[tokio::test]
async fn a_stall_after_the_first_byte_times_out() {
    let addr = fake(|| {
        let first = futures::stream::once(async { Ok(Bytes::from_static(b"d")) });
        sse(first.chain(futures::stream::pending()))
    })
    .await;
    let (cause, detail, elapsed, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::Timeout, "{detail}");
    assert!(elapsed < TOTAL + Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn refusals_and_dead_miners() {
    let addr = fake(|| {
        let mut r = Response::new(Body::from("upstream exploded"));
        *r.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
    .await;
    let (cause, detail, _, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::HttpStatus);
    assert!(detail.contains("500") && detail.contains("exploded"), "{detail}");
    // A miner whose policy refuses this validator: recorded, but not held against it.
    let addr = fake(|| {
        let mut r = Response::new(Body::from(r#"{"error":{"code":"caller_denied"}}"#));
        *r.status_mut() = axum::http::StatusCode::FORBIDDEN;
        r
    })
    .await;
    let (cause, _, _, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::Refused);
    assert!(!cause.counts_against_miner(false) && cause.counts_against_miner(true) && Cause::HttpStatus.counts_against_miner(false));
    // Nothing listens: connect fails.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_eq!(cause_of(closed).await.0, Cause::Connect);
    // Accepts but never answers: the header deadline.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (cause, _, elapsed, _) = cause_of(silent_addr).await;
    assert_eq!(cause, Cause::Timeout);
    assert!(elapsed < FIRST + Duration::from_secs(5));
}

#[tokio::test]
async fn wrong_token_ids_and_bad_bookkeeping() {
    // Ids that decode to other text.
    let addr = fake(|| {
        let body = format!("{}{}{}{}", content_chunk(" red", Some(5000)), content_chunk(" blue", Some(6000)), content_chunk(" green", Some(7000)), tail("stop", 3));
        sse(futures::stream::iter(vec![Ok(Bytes::from(body))]))
    })
    .await;
    let (cause, detail, _, _) = cause_of(addr).await;
    assert_eq!(cause, Cause::WrongTokenIds, "{detail}");
    // Ids outside the vocabulary.
    let addr = fake(|| {
        let body = format!("{}{}{}{}", content_chunk("a", Some(4_000_000)), content_chunk("b", Some(1)), content_chunk("c", Some(2)), tail("stop", 3));
        sse(futures::stream::iter(vec![Ok(Bytes::from(body))]))
    })
    .await;
    assert_eq!(cause_of(addr).await.0, Cause::WrongTokenIds);
    // No ids at all.
    let addr = fake(|| sse(futures::stream::iter(vec![Ok(Bytes::from(format!("{}{}", content_chunk("plain text", None), tail("stop", 2))))]))).await;
    assert_eq!(cause_of(addr).await.0, Cause::MissingTokenIds);

    // Consistent ids, but the usage is inflated, or missing, or the finish is missing.
    fn consistent(finish: Option<&str>, usage: Option<usize>) -> Response {
        let tokens = sentence_tokens(6);
        let mut body: String = tokens.iter().map(|(id, text)| content_chunk(text, Some(*id))).collect();
        if let Some(finish) = finish {
            body.push_str(&format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{finish}\"}}]}}\n\n"));
        }
        if let Some(n) = usage {
            body.push_str(&format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":20,\"completion_tokens\":{n}}}}}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        sse(futures::stream::iter(vec![Ok(Bytes::from(body))]))
    }
    let n = sentence_tokens(6).len();
    assert!(n >= 6);
    assert_eq!(cause_of(fake(|| consistent(Some("stop"), Some(40))).await).await.0, Cause::UsageMismatch);
    assert_eq!(cause_of(fake(|| consistent(Some("stop"), None)).await).await.0, Cause::MissingUsage);
    assert_eq!(cause_of(fake(|| consistent(None, Some(12))).await).await.0, Cause::MissingFinish);
}

#[tokio::test]
async fn a_pre_generated_burst_is_a_bad_stream() {
    let addr = fake(|| {
        let tokens = sentence_tokens(40);
        let n = tokens.len();
        let mut body: String = tokens.iter().map(|(id, text)| content_chunk(text, Some(*id))).collect();
        body.push_str(&tail("length", n));
        let wait = futures::stream::once(async { Ok(Bytes::from_static(b": thinking\n\n")) });
        let burst = futures::stream::once(async move {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            Ok(Bytes::from(body))
        });
        sse(wait.chain(burst))
    })
    .await;
    let n = sentence_tokens(40).len() as u32;
    let config = VerifyConfig { bad_stream_min_tokens: 32, ..VerifyConfig::default() };
    let results = round(&[target(1, "M", addr)], n, &config).await;
    let failure = results[0].failure().unwrap();
    assert_eq!(failure.cause, Cause::BadStream, "{}", failure.detail);
}

#[tokio::test]
async fn the_validator_keeps_working_next_to_all_of_them() {
    let honest = common::engine_server(engine()).await;
    let garbage = fake(|| sse(futures::stream::iter(vec![Ok(Bytes::from_static(b"data: nope\n\n"))]))).await;
    let staller = fake(|| sse(futures::stream::once(async { Ok(Bytes::from_static(b"d")) }).chain(futures::stream::pending()))).await;
    let flood = fake(|| sse(futures::stream::iter((0..2000).map(|_| Ok(Bytes::from(vec![b'z'; 64 * 1024]))))))
    .await;
    let targets = vec![target(1, "Honest", honest), target(2, "Garbage", garbage), target(3, "Staller", staller), target(4, "Flood", flood)];
    let config = VerifyConfig::default();
    let dendrite = Dendrite::new(key("//Validator"), Duration::from_millis(500)).unwrap();
    let reference = LocalReference::new(engine(), MODEL);
    let started = Instant::now();
    // Generous deadlines: the honest miner runs the real model on a shared CPU.
    let mut limits = common::limits(8, Duration::from_secs(60), Duration::from_secs(120));
    limits.idle_timeout = Duration::from_secs(10);
    let results = run_round(&dendrite, Some(&reference as &dyn Reference), &config, &request(8), &targets, limits).await;
    assert!(results[0].verdict.verified(), "{:?}", results[0].verdict);
    assert!(results[0].tps().unwrap() > 0.0);
    assert_eq!(results[1].failure().unwrap().cause, Cause::Malformed);
    assert_eq!(results[3].failure().unwrap().cause, Cause::TooLarge);
    let stall = results[2].failure().unwrap();
    assert_eq!(stall.cause, Cause::Timeout);
    assert!(stall.detail.contains("idle"), "{}", stall.detail);
    assert!(started.elapsed() < Duration::from_secs(125));
}
