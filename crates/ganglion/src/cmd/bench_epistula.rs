//! `ganglion bench epistula`: what Epistula costs.
//!
//! 1. sr25519 signatures made and verified per second on one core;
//! 2. the full per-request verification (headers, body hash, signature, replay cache);
//! 3. the latency the axum layer adds: two echo servers on loopback, one plain and one
//!    behind the layer, driven by the same concurrent clients with requests interleaved
//!    between them, so both are measured side by side in one run under the same load.
//!    Requests are signed before timing starts: signing is the client's cost, not the layer's.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::post;
use ganglion_core::keys::Keypair;
use ganglion_protocol::epistula::{self, SignedHeaders, Verifier, VerifierConfig};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct EpistulaBenchArgs {
    /// Seconds spent on each single-core measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Concurrent clients in the latency comparison.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per server in the latency comparison.
    #[arg(long, default_value_t = 4000)]
    requests: usize,
    /// Body size in bytes of each request.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

struct Rate {
    per_second: f64,
    micros_each: f64,
}

fn measure(seconds: f64, mut op: impl FnMut(u64)) -> Rate {
    let budget = Duration::from_secs_f64(seconds.max(0.05));
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            op(done);
            done += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Rate { per_second: done as f64 / elapsed, micros_each: elapsed * 1e6 / done as f64 }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn run(args: EpistulaBenchArgs) -> anyhow::Result<ExitCode> {
    let signer = Keypair::from_uri("//BenchValidator")?;
    let receiver = Keypair::from_uri("//BenchMiner")?.public();
    let body = vec![b'x'; args.body_bytes];
    let message = epistula::signing_message(&body, "6f6c6c6f-0000-4000-8000-000000000001", 1, Some(&receiver.to_ss58()));

    let sign = measure(args.seconds, |_| {
        std::hint::black_box(signer.sign(message.as_bytes()));
    });
    let signature = signer.sign(message.as_bytes());
    let public = signer.public();
    let verify = measure(args.seconds, |_| {
        assert!(public.verify(std::hint::black_box(message.as_bytes()), &signature));
    });

    // Full verification: fresh UUIDs (the replay cache sees each once), pre-signed.
    let window = VerifierConfig {
        receiver: Some(receiver),
        max_age: Duration::from_secs(3600),
        max_future: Duration::from_secs(3600),
        ..VerifierConfig::default()
    };
    let verifier = Verifier::allow_all(window.clone());
    let now = epistula::now_ms();
    let presigned: Vec<http::HeaderMap> = (0..20_000)
        .map(|_| {
            let mut headers = http::HeaderMap::new();
            SignedHeaders::sign(&signer, &body, Some(&receiver)).apply(&mut headers);
            headers
        })
        .collect();
    let full = measure(args.seconds, |i| {
        let headers = &presigned[(i as usize) % presigned.len()];
        // Past the first lap every UUID is a replay; either way the whole pipeline runs.
        let _ = std::hint::black_box(verifier.verify(headers, &body, now));
    });

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let latency = runtime.block_on(compare_latency(&args, &signer, window, &body))?;

    let report = json!({
        "sign_per_second_one_core": sign.per_second,
        "sign_us": sign.micros_each,
        "verify_per_second_one_core": verify.per_second,
        "verify_us": verify.micros_each,
        "full_request_verification_us": full.micros_each,
        "latency": latency,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Epistula benchmark (one core for the first three rows; body {} bytes)", args.body_bytes);
    println!("{:<44} {:>14} {:>12}", "measure", "per second", "µs each");
    println!("{:<44} {:>14.0} {:>12.1}", "sr25519 sign", sign.per_second, sign.micros_each);
    println!("{:<44} {:>14.0} {:>12.1}", "sr25519 verify", verify.per_second, verify.micros_each);
    println!("{:<44} {:>14.0} {:>12.1}", "full request verification (layer logic)", 1e6 / full.micros_each, full.micros_each);
    println!();
    println!(
        "Loopback echo, {} concurrent clients, {} requests per server, interleaved:",
        args.concurrency, args.requests
    );
    println!("{:<20} {:>10} {:>10} {:>12}", "server", "p50 µs", "p99 µs", "req/s");
    for name in ["plain", "epistula"] {
        let row = &latency[name];
        println!(
            "{:<20} {:>10.0} {:>10.0} {:>12.0}",
            name,
            row["p50_us"].as_f64().unwrap_or(f64::NAN),
            row["p99_us"].as_f64().unwrap_or(f64::NAN),
            row["requests_per_second"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "{:<20} {:>10.0} {:>10.0}",
        "added by the layer",
        latency["added_p50_us"].as_f64().unwrap_or(f64::NAN),
        latency["added_p99_us"].as_f64().unwrap_or(f64::NAN)
    );
    Ok(ExitCode::SUCCESS)
}

async fn echo(body: axum::body::Bytes) -> axum::body::Bytes {
    body
}

async fn spawn_echo(protected: Option<Arc<Verifier>>) -> anyhow::Result<String> {
    let router = axum::Router::new().route("/echo", post(echo));
    let router = match protected {
        Some(verifier) => epistula::protect(router, verifier),
        None => router,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let url = format!("http://{}/echo", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(url)
}

async fn compare_latency(
    args: &EpistulaBenchArgs,
    signer: &Keypair,
    config: VerifierConfig,
    body: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let receiver = config.receiver;
    let plain_url = spawn_echo(None).await?;
    let protected_url = spawn_echo(Some(Arc::new(Verifier::allow_all(config)))).await?;
    let body = bytes::Bytes::copy_from_slice(body);
    let per_client = args.requests.div_ceil(args.concurrency.max(1));
    // Pre-sign every protected request (unique UUIDs) so client-side signing is not timed.
    let mut signed: Vec<Vec<http::HeaderMap>> = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let mut mine = Vec::with_capacity(per_client);
        for _ in 0..per_client {
            let mut headers = http::HeaderMap::new();
            SignedHeaders::sign(signer, &body, receiver.as_ref()).apply(&mut headers);
            mine.push(headers);
        }
        signed.push(mine);
    }
    let client = ganglion_tls::ClientTls::system().http_builder().pool_max_idle_per_host(args.concurrency * 2).build()?;
    // Warm up connections on both servers.
    for _ in 0..args.concurrency {
        let _ = client.post(&plain_url).body(body.clone()).send().await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for headers_list in signed {
        let client = client.clone();
        let (plain_url, protected_url, body) = (plain_url.clone(), protected_url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut plain = Vec::with_capacity(headers_list.len());
            let mut protected = Vec::with_capacity(headers_list.len());
            for headers in headers_list {
                let start = Instant::now();
                let response = client.post(&plain_url).body(body.clone()).send().await?;
                response.bytes().await?;
                plain.push(start.elapsed().as_secs_f64() * 1e6);

                let start = Instant::now();
                let response = client.post(&protected_url).headers(headers).body(body.clone()).send().await?;
                anyhow::ensure!(response.status().is_success(), "protected echo refused a request: {}", response.status());
                response.bytes().await?;
                protected.push(start.elapsed().as_secs_f64() * 1e6);
            }
            anyhow::Ok((plain, protected))
        }));
    }
    let mut plain = Vec::new();
    let mut protected = Vec::new();
    for task in tasks {
        let (p, q) = task.await??;
        plain.extend(p);
        protected.extend(q);
    }
    let elapsed = started.elapsed().as_secs_f64();
    plain.sort_by(f64::total_cmp);
    protected.sort_by(f64::total_cmp);
    let row = |samples: &[f64]| {
        json!({
            "p50_us": percentile(samples, 50.0),
            "p99_us": percentile(samples, 99.0),
            // Each server got half of the wall time's requests.
            "requests_per_second": samples.len() as f64 / elapsed,
        })
    };
    Ok(json!({
        "plain": row(&plain),
        "epistula": row(&protected),
        "added_p50_us": percentile(&protected, 50.0) - percentile(&plain, 50.0),
        "added_p99_us": percentile(&protected, 99.0) - percentile(&plain, 99.0),
        "concurrency": args.concurrency,
        "requests_per_server": plain.len(),
    }))
}
