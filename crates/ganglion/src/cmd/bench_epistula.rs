//! `ganglion bench epistula`: what Epistula costs.
//!
//! 1. sr25519 signatures made and verified per second on one core;
//! 2. the full per-request verification (headers, body hash, signature, replay cache);
//! 3. the latency the axum layer adds: two echo servers on loopback, one plain and one
//!    behind the layer, driven by the same concurrent clients with requests interleaved
//!    between them, so both are measured side by side in one run under the same load.
//!    Requests are signed before timing starts: signing is the client's cost, not the layer's.
//!    `--clients 1,4,16` repeats the comparison at several client counts; `--verification`
//!    picks how the layer checks signatures (inline, the layer's default, or batched).
//!    By default each client sends its next request as soon as the last one is answered
//!    (closed loop: the two cores are saturated and a request's latency includes its share of
//!    everyone's CPU). `--rate R` paces the clients instead (open loop: together R requests a
//!    second to each server, evenly spread, each timed from its send), which shows what the layer
//!    adds to one request when the machine is not saturated; the process's CPU use is printed
//!    with it.
//! 4. the layer's verification throughput with concurrent requests and no HTTP around it,
//!    inline and batched, to show what batching saves in CPU.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::post;
use ganglion_core::keys::Keypair;
use ganglion_protocol::epistula::{self, BatchConfig, Driver, SignedHeaders, Verifier, VerifierConfig};
use serde_json::json;

use super::bench::{cpu_seconds, percentile};

#[derive(Debug, clap::Args)]
pub(crate) struct EpistulaBenchArgs {
    /// Seconds spent on each single-core measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Concurrent clients in the latency comparison.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Several client counts to compare, e.g. `1,4,16` (default: `--concurrency` alone).
    /// The JSON's `latency` is the run at `--concurrency` (or the last one); `latency_runs`
    /// has them all.
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// How the layer checks signatures in the latency comparison.
    #[arg(long, value_enum, default_value_t = Verification::Inline)]
    verification: Verification,
    /// How long the batcher waits for more requests, in µs (0: take what is queued).
    #[arg(long, default_value_t = 0)]
    batch_window_us: u64,
    /// Most signatures per batch.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Tasks verifying batches in parallel with `--verification task` (default: one per core).
    #[arg(long)]
    verifiers: Option<usize>,
    /// Pace the clients: together this many requests a second to each server (0: closed loop,
    /// each client sending as soon as its last request is answered).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
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

/// How the layer checks signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Verification {
    /// On the async worker that received the request (the layer's default).
    Inline,
    /// Batched by a task on the async runtime.
    Task,
    /// Batched by a dedicated OS thread.
    Thread,
}

impl Verification {
    fn name(self) -> &'static str {
        match self {
            Verification::Inline => "inline",
            Verification::Task => "batched (runtime task)",
            Verification::Thread => "batched (OS thread)",
        }
    }
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

    let batching = |driver| BatchConfig {
        window: Duration::from_micros(args.batch_window_us),
        max_batch: args.max_batch.max(1),
        driver,
        verifiers: args.verifiers.unwrap_or(BatchConfig::default().verifiers),
        ..BatchConfig::default()
    };
    let layer = VerifierConfig {
        batch: match args.verification {
            Verification::Inline => None,
            Verification::Task => Some(batching(Driver::Task)),
            Verification::Thread => Some(batching(Driver::Thread)),
        },
        ..window.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Verification throughput with `concurrency` requests in flight, no HTTP: inline, then
    // batched by runtime tasks, then by an OS thread, over the same pre-signed requests.
    let mut concurrent = Vec::new();
    for (name, batch) in [
        ("inline", None),
        ("batched, runtime tasks", Some(batching(Driver::Task))),
        ("batched, OS thread", Some(batching(Driver::Thread))),
    ] {
        let config = VerifierConfig { batch, ..window.clone() };
        let (micros, mean_batch) = runtime.block_on(verification_throughput(&args, config, &presigned, &body, now));
        concurrent.push((name, micros, mean_batch));
    }
    let clients = if args.clients.is_empty() { vec![args.concurrency] } else { args.clients.clone() };
    let mut runs = Vec::new();
    for &concurrency in &clients {
        runs.push(runtime.block_on(compare_latency(&args, concurrency.max(1), &signer, layer.clone(), &body))?);
    }
    let latency = runs
        .iter()
        .find(|run| run["concurrency"].as_u64() == Some(args.concurrency as u64))
        .or(runs.last())
        .cloned()
        .unwrap_or_default();

    let report = json!({
        "sign_per_second_one_core": sign.per_second,
        "sign_us": sign.micros_each,
        "verify_per_second_one_core": verify.per_second,
        "verify_us": verify.micros_each,
        "full_request_verification_us": full.micros_each,
        "latency": latency,
        "latency_runs": runs,
        "layer_verification": args.verification.name(),
        "concurrent_verification": concurrent
            .iter()
            .map(|(name, micros, mean_batch)| json!({ "mode": name, "us_per_request": micros, "mean_batch": mean_batch }))
            .collect::<Vec<_>>(),
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
    println!("layer logic, {} requests in flight on 2 async workers (wall-clock µs per request):", args.concurrency);
    for (name, micros, mean_batch) in &concurrent {
        let name = match mean_batch {
            Some(mean) => format!("  {name} (mean batch {mean:.1})"),
            None => format!("  {name}"),
        };
        println!("{:<44} {:>14.0} {:>12.1}", name, 1e6 / micros, micros);
    }
    let at = |row: &serde_json::Value, key: &str| row[key].as_f64().unwrap_or(f64::NAN);
    for run in &runs {
        println!();
        let pacing = match run["rate_per_server"].as_f64() {
            Some(rate) => format!("paced at {rate:.0} req/s per server (open loop)"),
            None => "closed loop".to_string(),
        };
        println!(
            "Loopback echo, {} concurrent clients, {} requests per server, interleaved, {pacing}, process CPU {:.2} cores (verification: {}):",
            run["concurrency"],
            run["requests_per_server"],
            at(run, "process_cpu_cores"),
            args.verification.name()
        );
        println!("{:<20} {:>10} {:>10} {:>10} {:>12}", "server", "p50 µs", "p99 µs", "p99.9 µs", "req/s");
        for name in ["plain", "epistula"] {
            let row = &run[name];
            println!(
                "{:<20} {:>10.0} {:>10.0} {:>10.0} {:>12.0}",
                name,
                at(row, "p50_us"),
                at(row, "p99_us"),
                at(row, "p999_us"),
                at(row, "requests_per_second")
            );
        }
        println!(
            "{:<20} {:>10.0} {:>10.0} {:>10.0}",
            "added by the layer",
            at(run, "added_p50_us"),
            at(run, "added_p99_us"),
            at(run, "added_p999_us")
        );
        if let Some(batches) = run.get("batches").filter(|b| !b.is_null()) {
            println!(
                "signature checks: {} in {} batches (mean {:.1}), {} single, {} failed batches",
                batches["batched"],
                batches["batches"],
                at(batches, "mean_batch"),
                batches["single"],
                batches["failed_batches"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Wall-clock µs per verified request with `args.concurrency` tasks verifying pre-signed
/// requests (fresh UUIDs, so every one is admitted) for `args.seconds` or until the requests
/// run out, and the mean batch size if batching.
async fn verification_throughput(
    args: &EpistulaBenchArgs,
    config: VerifierConfig,
    presigned: &[http::HeaderMap],
    body: &[u8],
    now: u64,
) -> (f64, Option<f64>) {
    let verifier = Arc::new(Verifier::allow_all(config));
    let presigned: Arc<Vec<http::HeaderMap>> = Arc::new(presigned.to_vec());
    let body = bytes::Bytes::copy_from_slice(body);
    let tasks = args.concurrency.max(1);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let budget = Duration::from_secs_f64(args.seconds.max(0.05));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (verifier, presigned, body, next) =
                (Arc::clone(&verifier), Arc::clone(&presigned), body.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut admitted = 0u64;
                while started.elapsed() < budget {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(headers) = presigned.get(i) else { break };
                    if verifier.verify_batched(headers, &body, now).await.is_ok() {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0u64;
    for worker in workers {
        admitted += worker.await.unwrap_or(0);
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / admitted.max(1) as f64;
    (micros, verifier.batch_stats().map(|stats| stats.batched as f64 / stats.batches.max(1) as f64))
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
    concurrency: usize,
    signer: &Keypair,
    config: VerifierConfig,
    body: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let receiver = config.receiver;
    let plain_url = spawn_echo(None).await?;
    let verifier = Arc::new(Verifier::allow_all(config));
    let protected_url = spawn_echo(Some(Arc::clone(&verifier))).await?;
    let body = bytes::Bytes::copy_from_slice(body);
    let per_client = args.requests.div_ceil(concurrency);
    // Pre-sign every protected request (unique UUIDs) so client-side signing is not timed.
    let mut signed: Vec<Vec<http::HeaderMap>> = Vec::new();
    for _ in 0..concurrency {
        let mut mine = Vec::with_capacity(per_client);
        for _ in 0..per_client {
            let mut headers = http::HeaderMap::new();
            SignedHeaders::sign(signer, &body, receiver.as_ref()).apply(&mut headers);
            mine.push(headers);
        }
        signed.push(mine);
    }
    let client = ganglion_tls::ClientTls::system().http_builder().pool_max_idle_per_host(concurrency * 2).build()?;
    // Warm up one connection per client on both servers, concurrently (one after the other
    // would reuse a single connection, and the timed requests would pay for opening the
    // rest). Unsigned requests suffice: the protected server refuses them on a kept-alive
    // connection.
    for _ in 0..3 {
        let warm = (0..concurrency).flat_map(|_| [&plain_url, &protected_url]).map(|url| {
            let request = client.post(url).body(body.clone());
            async move {
                if let Ok(response) = request.send().await {
                    let _ = response.bytes().await;
                }
            }
        });
        futures::future::join_all(warm).await;
    }
    // With `--rate`, each client sends one request every `interval` (to the plain server and
    // the protected one in turn), the clients' schedules staggered across one interval.
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(concurrency as f64 / (2.0 * args.rate)));
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let mut tasks = Vec::new();
    for (client_index, headers_list) in signed.into_iter().enumerate() {
        let client = client.clone();
        let (plain_url, protected_url, body) = (plain_url.clone(), protected_url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut plain = Vec::with_capacity(headers_list.len());
            let mut protected = Vec::with_capacity(headers_list.len());
            let mut next = interval.map(|i| tokio::time::Instant::now() + i.mul_f64(client_index as f64 / concurrency as f64));
            let mut pace = async || {
                if let (Some(at), Some(interval)) = (next.as_mut(), interval) {
                    tokio::time::sleep_until(*at).await;
                    *at += interval;
                }
            };
            for headers in headers_list {
                pace().await;
                let start = Instant::now();
                let response = client.post(&plain_url).body(body.clone()).send().await?;
                response.bytes().await?;
                plain.push(start.elapsed().as_secs_f64() * 1e6);

                pace().await;
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
    let cpu_cores = (cpu_seconds() - cpu_before) / elapsed.max(1e-9);
    plain.sort_by(f64::total_cmp);
    protected.sort_by(f64::total_cmp);
    let row = |samples: &[f64]| {
        json!({
            "p50_us": percentile(samples, 50.0),
            "p99_us": percentile(samples, 99.0),
            "p999_us": percentile(samples, 99.9),
            // Each server got half of the wall time's requests.
            "requests_per_second": samples.len() as f64 / elapsed,
        })
    };
    Ok(json!({
        "plain": row(&plain),
        "epistula": row(&protected),
        "added_p50_us": percentile(&protected, 50.0) - percentile(&plain, 50.0),
        "added_p99_us": percentile(&protected, 99.0) - percentile(&plain, 99.0),
        "added_p999_us": percentile(&protected, 99.9) - percentile(&plain, 99.9),
        "batches": verifier.batch_stats().map(|stats| json!({
            "batches": stats.batches,
            "batched": stats.batched,
            "single": stats.single,
            "failed_batches": stats.failed_batches,
            "mean_batch": stats.batched as f64 / stats.batches.max(1) as f64,
        })),
        "concurrency": concurrency,
        "requests_per_server": plain.len(),
        "rate_per_server": (args.rate > 0.0).then_some(args.rate),
        "process_cpu_cores": cpu_cores,
    }))
}

