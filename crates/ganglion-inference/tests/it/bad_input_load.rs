//! Bad input at load: honest signed streaming clients keep their latency while 500 bad
//! clients hammer the same miner on loopback (slowloris headers, responses never read,
//! oversized headers, replayed Epistula requests); every bad request is cut off or
//! refused in bounded time, and each is counted in the miner's `/metrics`.
//!
//! The honest clients' p99 is measured without the bad clients, with them, and without
//! them again, in the same test; the bound is 2× the larger of the two quiet p99s, so a
//! drift in the machine's load (a shared 2-core CI runner) is not taken for the attack.
#![allow(clippy::unwrap_used)]

use crate::common::{key, serve, sse};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use futures::StreamExt;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_protocol::epistula::SignedHeaders;
use ganglion_protocol::policy::PolicyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HONEST_STREAMS: usize = 16;
const PHASE: Duration = Duration::from_secs(5);
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Bad clients: 500 in all.
const SLOWLORIS: usize = 200;
const NEVER_READ: usize = 100;
/// Of which this many ask for a response larger than the socket buffers.
const NEVER_READ_BIG: usize = 10;
const WRITE_STALL: Duration = Duration::from_secs(2);
const OVERSIZED: usize = 100;
const REPLAYERS: usize = 100;
/// How long past its deadline the miner may take to cut a bad client off (a loaded runner).
const SLACK: Duration = Duration::from_secs(5);
const BODY: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":8}"#;

/// An upstream streaming 8 tokens, 2 ms apart, then `[DONE]`; and under `/big`, 64 MiB
/// in 64 KiB chunks (more than the sockets between it and a client can buffer).
async fn upstream() -> SocketAddr {
    let big = || async {
        let chunk = Bytes::from(format!("data: {}\n\n", "x".repeat(64 * 1024 - 8)));
        sse(futures::stream::iter((0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))))
    };
    let handler = || async {
        let chunks = futures::stream::iter(0..9).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let text = if i < 8 { format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i}\"}}}}]}}\n\n") } else { "data: [DONE]\n\n".to_string() };
            Ok::<_, std::io::Error>(Bytes::from(text))
        });
        sse(chunks)
    };
    serve(axum::Router::new().route("/v1/chat/completions", post(handler)).route("/big/v1/chat/completions", post(big))).await
}

fn signed_request(caller: &Keypair, miner: &PublicKey, extra_headers: &str) -> Vec<u8> {
    let mut text = String::from("POST /v1/chat/completions HTTP/1.1\r\nhost: miner\r\ncontent-type: application/json\r\n");
    for (name, value) in SignedHeaders::sign(caller, BODY.as_bytes(), Some(miner)).pairs() {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(extra_headers);
    text.push_str(&format!("content-length: {}\r\n\r\n{BODY}", BODY.len()));
    text.into_bytes()
}

/// Honest streams for `PHASE`: the latency of every complete request (ms), and the failures.
async fn honest_phase(http: &reqwest::Client, url: &str, keys: &[Keypair], miner: &PublicKey) -> (Vec<f64>, Vec<String>) {
    let deadline = Instant::now() + PHASE;
    let tasks: Vec<_> = keys
        .iter()
        .map(|caller| {
            let (http, url, caller, miner) = (http.clone(), url.to_string(), caller.clone(), *miner);
            tokio::spawn(async move {
                let (mut latencies, mut failures) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let mut headers = http::HeaderMap::new();
                    SignedHeaders::sign(&caller, BODY.as_bytes(), Some(&miner)).apply(&mut headers);
                    let start = Instant::now();
                    let response = http.post(&url).headers(headers).header("content-type", "application/json").body(BODY).send().await;
                    match response {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(body) if body.ends_with(b"data: [DONE]\n\n") => latencies.push(start.elapsed().as_secs_f64() * 1e3),
                            Ok(_) => failures.push("truncated stream".to_string()),
                            Err(e) => failures.push(format!("body: {e}")),
                        },
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(format!("request: {e}")),
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures.extend(f);
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, failures)
}

fn p99(sorted: &[f64]) -> f64 {
    sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize]
}

/// Sends headers a byte at a time, 100 ms apart, until the miner closes the connection;
/// returns how long that took (panics past the header timeout plus slack).
async fn slowloris(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = async move {
        // Cheap to make (the attacker's own CPU must not be what slows the honest clients).
        let line = b"POST /v1/chat/completions HTTP/1.1\r\n".iter();
        let head = line.chain(b"x-slow: a\r\n".iter().cycle()).copied();
        for byte in head {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed = async move {
        let mut buf = [0u8; 1024];
        // The miner sends nothing but (at most) an error before closing: read until EOF.
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let cut = async {
        tokio::select! {
            () = closed => {}
            () = trickle => {}
        }
    };
    tokio::time::timeout(HEADER_TIMEOUT + SLACK, cut).await.unwrap_or_else(|_| panic!("a slowloris connection was never cut off"));
    started.elapsed()
}

/// A 40 KiB header: answered 431 (or the connection closed), in bounded time.
async fn oversized(addr: SocketAddr) {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: miner\r\nx-pad: {}\r\ncontent-length: 0\r\n\r\n", "a".repeat(40 * 1024));
        // The miner may close before the whole head is written: that is a refusal too.
        let _ = stream.write_all(request.as_bytes()).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        assert!(response.is_empty() || text.starts_with("HTTP/1.1 431"), "an oversized head got: {}", text.lines().next().unwrap_or_default());
    };
    tokio::time::timeout(SLACK, attempt).await.unwrap_or_else(|_| panic!("an oversized head was neither refused nor cut off"));
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("ganglion_miner_refused_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_latency_holds_while_bad_clients_are_cut_off() {
    let up = upstream().await;
    let miner_key = key("//BadLoadMiner");
    let miner_pub = miner_key.public();
    let upstream = UpstreamConfig { name: "m".into(), url: format!("http://{up}/v1"), api_key: None, max_concurrency: 512 };
    let big = UpstreamConfig { name: "big".into(), url: format!("http://{up}/big/v1"), api_key: None, max_concurrency: 512 };
    let mut config = MinerConfig::new(1, miner_key, "127.0.0.1:0".parse().unwrap(), vec![upstream, big]);
    config.policy = PolicyConfig::default();
    config.axon.serve = false;
    config.header_read_timeout = HEADER_TIMEOUT;
    config.write_stall_timeout = WRITE_STALL;
    let handle = miner::start(config, None, None).await.unwrap();
    let addr = handle.addr();
    let url = format!("http://{addr}/v1/chat/completions");
    // The miner closes connections idle for its header timeout (hyper's header timer also runs
    // between keep-alive requests): a client keeps idle connections for less than that, or a
    // request sent just as the miner closes one fails (the usual keep-alive race).
    let http = ganglion_tls::ClientTls::system()
        .http_builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(HEADER_TIMEOUT / 2)
        .build()
        .unwrap();
    let honest: Vec<Keypair> = (0..HONEST_STREAMS).map(|i| key(&format!("//Honest{i}"))).collect();

    // Warm-up (connections, the signer cache), then the quiet baseline.
    let _ = honest_phase(&http, &url, &honest[..2], &miner_pub).await;
    let (quiet, failures) = honest_phase(&http, &url, &honest, &miner_pub).await;
    assert!(failures.is_empty(), "honest requests failed without bad clients: {failures:?}");

    // The bad clients, for the length of one phase.
    let stop = Arc::new(AtomicBool::new(false));
    let mut bad = Vec::new();
    let slow_cuts = Arc::new(AtomicU64::new(0));
    for _ in 0..SLOWLORIS {
        let (stop, cuts) = (stop.clone(), slow_cuts.clone());
        bad.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let took = slowloris(addr).await;
                assert!(took >= HEADER_TIMEOUT - Duration::from_millis(200), "cut off after {took:?}, before the header timeout");
                cuts.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let oversized_sent = Arc::new(AtomicU64::new(0));
    // Oversized heads: one a second from each client.
    for _ in 0..OVERSIZED {
        let (stop, sent) = (stop.clone(), oversized_sent.clone());
        bad.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                oversized(addr).await;
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // Never-reading clients: a signed request each, its response left unread on a connection
    // held open until the end of the test; a few ask for a response too big to buffer.
    let mut unread = Vec::new();
    for i in 0..NEVER_READ {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let model = if i < NEVER_READ_BIG { "x-targon-model: big\r\n" } else { "" };
        stream.write_all(&signed_request(&key(&format!("//NeverRead{i}")), &miner_pub, model)).await.unwrap();
        unread.push(stream);
    }
    // Replayers: one honest request each (served), then the same signed bytes again, all
    // together once a second (bursts of 100 replays; within the 8 s freshness window, so
    // each is refused as a replay, not as stale).
    let replays = Arc::new(AtomicU64::new(0));
    for i in 0..REPLAYERS {
        let (stop, replays, http, url) = (stop.clone(), replays.clone(), http.clone(), url.clone());
        let caller = key(&format!("//Replayer{i}"));
        bad.push(tokio::spawn(async move {
            let mut headers = http::HeaderMap::new();
            SignedHeaders::sign(&caller, BODY.as_bytes(), Some(&miner_pub)).apply(&mut headers);
            let first = http.post(&url).headers(headers.clone()).body(BODY).send().await.unwrap();
            assert_eq!(first.status(), 200);
            first.bytes().await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let r = tokio::time::timeout(SLACK, http.post(&url).headers(headers.clone()).body(BODY).send()).await.unwrap().unwrap();
                assert_eq!(r.status(), 409, "a replay was not refused as one");
                replays.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // Measured once every bad client is at work (the big unread responses have filled
    // their socket buffers, a one-off burst of copying, and are waiting to be cut off).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (attacked, failures) = honest_phase(&http, &url, &honest, &miner_pub).await;
    assert!(failures.is_empty(), "honest requests failed beside the bad clients: {failures:?}");
    stop.store(true, Ordering::Relaxed);
    for task in bad {
        // Each slowloris client finishes its current connection: bounded by the header timeout.
        tokio::time::timeout(HEADER_TIMEOUT + 2 * SLACK, task).await.expect("a bad client did not stop").unwrap();
    }

    // The small unread responses went into the socket buffers; the big ones stalled and were
    // cut off: the miner holds no stream for any of them although their connections are
    // still open.
    crate::common::wait_until("the miner's streams to end", Duration::from_secs(10), || handle.status().details["active_streams"].as_i64() == Some(0)).await;
    let (quiet_after, failures) = honest_phase(&http, &url, &honest, &miner_pub).await;
    assert!(failures.is_empty(), "honest requests failed after the bad clients: {failures:?}");
    drop(unread);

    let (q, a, q2) = (p99(&quiet), p99(&attacked), p99(&quiet_after));
    eprintln!(
        "honest p99: {q:.1} ms quiet ({} samples), {a:.1} ms beside {} bad clients ({} samples), {q2:.1} ms quiet again ({} samples)",
        quiet.len(),
        SLOWLORIS + NEVER_READ + OVERSIZED + REPLAYERS,
        attacked.len(),
        quiet_after.len()
    );
    for (name, samples) in [("quiet", &quiet), ("attacked", &attacked), ("quiet again", &quiet_after)] {
        assert!(samples.len() >= 500, "too few honest samples {name}: {}", samples.len());
    }
    assert!(a <= 2.0 * q.max(q2), "honest p99 went from {q:.1}/{q2:.1} ms to {a:.1} ms beside the bad clients");

    // Every bad request is in /metrics.
    let (cuts, big, replayed) = (slow_cuts.load(Ordering::Relaxed), oversized_sent.load(Ordering::Relaxed), replays.load(Ordering::Relaxed));
    assert!(cuts >= SLOWLORIS as u64 && big >= OVERSIZED as u64 && replayed >= REPLAYERS as u64, "{cuts} {big} {replayed}");
    let metrics = http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    eprintln!("{}", metrics.lines().filter(|l| l.starts_with("ganglion_miner_refused_total{")).collect::<Vec<_>>().join("\n"));
    assert_eq!(refused(&metrics, "header_timeout"), cuts, "slowloris cut-offs counted: {metrics}");
    assert_eq!(refused(&metrics, "header_too_large"), big, "oversized heads counted: {metrics}");
    assert_eq!(refused(&metrics, "epistula_replayed"), replayed, "replays counted: {metrics}");
    assert_eq!(refused(&metrics, "write_stalled"), NEVER_READ_BIG as u64, "stalled responses counted: {metrics}");
    handle.shutdown().await;
}
