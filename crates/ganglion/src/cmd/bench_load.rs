//! `ganglion bench load`: the inference miner under many concurrent streams.
//!
//! Everything runs in this process, on loopback, and stops by itself:
//!
//! 1. a fast fake OpenAI-compatible upstream streaming `--tokens` SSE chunks, one every
//!    `--token-delay-ms`;
//! 2. a local chain with `--hotkeys` staked validators holding permits, and the real
//!    inference miner (its default caller policy: registered, staked, permit) in front of
//!    the upstream, syncing its caller table from that chain;
//! 3. `--streams` concurrent clients, each sending Epistula-signed streaming requests one
//!    after another, stream `i` signing with validator `i % hotkeys`; the same load is
//!    driven straight at the upstream (signed too, so that the clients' own work is the
//!    same), in alternating rounds, so both targets are measured side by side in one run.
//!
//! The miner's own cost is also measured request by request: every request carries an id
//! (`"user": "bench-N"`), the fake upstream notes when it received that request and when it
//! produced its last chunk, and the request's *overhead* is the client's whole latency less
//! that span (the way there plus the way back of the last chunk). Direct requests have an
//! overhead too (client, loopback, scheduling); the miner's added overhead is the difference of
//! the two distributions' quantiles. Unlike the difference of whole latencies, this does not
//! carry the upstream's timer jitter, which at hundreds of streams is larger than the miner.
//!
//! `--target engine` drives the built-in engine's OpenAI server (`ganglion engine serve`) with a
//! real model instead (`--model`, default SmolLM2): no chain, no miner, unsigned requests; its
//! 503 `server_busy` answers (more than 256 requests in flight) are its back-pressure and are
//! counted as `busy`, not as errors, and a client that got one waits 100 ms before its next.
//!
//! A 429 from the miner's per-caller limit is counted as `limited`, not as an error. Each
//! stream's first request in a round opens its connection and is left out of the latency
//! figures (its errors still count). Memory is the whole process's (clients, upstream,
//! chain and miner share it): its peak RSS (`VmHWM`, reset before each round through
//! `/proc/self/clear_refs`) in the direct rounds and the miner rounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use ganglion_chain::{Chain, ChainError, HyperparamUpdate, LocalChain, Metagraph, RAO_PER_TAO};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_engine::bench::reset_peak_rss;
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_protocol::epistula::SignedHeaders;

use super::bench::{cpu_seconds, percentile};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct LoadBenchArgs {
    /// What to load: the inference miner in front of a fake upstream (side by side with the
    /// upstream alone), or the built-in engine's OpenAI server with a real model.
    #[arg(long, value_enum, default_value_t = LoadTarget::Miner)]
    target: LoadTarget,
    /// The engine's model with `--target engine`: a name from `ganglion model list`, a path, or
    /// `hf:REPO[@REV]`.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Concurrent streams (clients each sending one request after another).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Seconds of load on each target (miner and direct), split over the rounds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Also stop a target's load after this many requests in all (0: --seconds only).
    #[arg(long, default_value_t = 0)]
    requests: usize,
    /// Rounds: direct, miner, direct, miner, … (the targets alternate so that a change in
    /// the machine's load hits both).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Validator hotkeys signing the requests (0: enough that no caller has more than the
    /// miner's per-caller limit in flight, and at least 64).
    #[arg(long, default_value_t = 0)]
    hotkeys: usize,
    /// Tokens (SSE chunks) in each streamed completion.
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Milliseconds between two tokens of the fake upstream (and before the first).
    #[arg(long, default_value_t = 5.0)]
    token_delay_ms: f64,
    /// Client deadline for a whole request, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Worker threads of the one runtime everything shares (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No chain: the miner admits every correctly signed caller (no caller policy, no
    /// metagraph sync), to see what the chain and the policy cost.
    #[arg(long)]
    no_chain: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `ganglion bench load` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoadTarget {
    /// The inference miner in front of a fast fake upstream, and the upstream alone.
    Miner,
    /// The built-in engine's OpenAI server (`ganglion engine serve`) with a real model.
    Engine,
}

/// The model the fake upstream serves.
const MODEL: &str = "bench";
/// The miner's own default (`[miner] per_caller_concurrency`).
const PER_CALLER: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Direct,
    Miner,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Miner => "miner",
        }
    }
}

/// What the streams of one target recorded.
#[derive(Default)]
struct Tally {
    latency_us: Vec<f64>,
    ttfb_us: Vec<f64>,
    /// Latency less the upstream's own span for the same request (see the module docs).
    overhead_us: Vec<f64>,
    ok: u64,
    limited: u64,
    /// 503 `server_busy` from the engine server's bounded queue.
    busy: u64,
    errors: BTreeMap<String, u64>,
    seconds: f64,
    cpu_seconds: f64,
    /// Connections the upstream accepted.
    upstream_connections: u64,
    peak_rss_kib: u64,
    baseline_rss_kib: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latency_us.extend(other.latency_us);
        self.ttfb_us.extend(other.ttfb_us);
        self.overhead_us.extend(other.overhead_us);
        self.ok += other.ok;
        self.limited += other.limited;
        self.busy += other.busy;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.seconds += other.seconds;
        self.cpu_seconds += other.cpu_seconds;
        self.upstream_connections += other.upstream_connections;
        self.peak_rss_kib = self.peak_rss_kib.max(other.peak_rss_kib);
        if self.baseline_rss_kib == 0 || other.baseline_rss_kib < self.baseline_rss_kib {
            self.baseline_rss_kib = other.baseline_rss_kib;
        }
    }

    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
}

/// `VmHWM` and `VmRSS` of this process, in KiB (0 where the platform does not say).
fn memory_kib() -> (u64, u64) {
    use ganglion_engine::bench::{peak_rss_bytes, rss_bytes};
    (peak_rss_bytes().unwrap_or(0) / 1024, rss_bytes().unwrap_or(0) / 1024)
}

pub(crate) fn run(args: LoadBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.streams > 0, "--streams must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.seconds > 0.0 || args.requests > 0, "give --seconds or --requests");
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    let runtime = runtime.enable_all().build()?;
    let report = match args.target {
        LoadTarget::Miner => runtime.block_on(bench(&args))?,
        LoadTarget::Engine => runtime.block_on(bench_engine(&args))?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.target == LoadTarget::Engine {
        print_engine_table(&report);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// One SSE chunk of the fake upstream.
fn chunk(i: usize) -> Bytes {
    Bytes::from(format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"))
}

const TAIL: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";

/// When the fake upstream received each request and produced its last chunk, by request id.
#[derive(Default)]
struct Spans(std::sync::Mutex<std::collections::HashMap<u64, (Instant, Option<Instant>)>>);

impl Spans {
    fn start(&self, id: u64) {
        if let Ok(mut spans) = self.0.lock() {
            spans.insert(id, (Instant::now(), None));
        }
    }

    fn end(&self, id: u64) {
        if let Ok(mut spans) = self.0.lock()
            && let Some(span) = spans.get_mut(&id)
        {
            span.1 = Some(Instant::now());
        }
    }

    /// The upstream's span for request `id` (forgotten once taken), if it completed.
    fn take(&self, id: u64) -> Option<Duration> {
        let (start, end) = self.0.lock().ok()?.remove(&id)?;
        Some(end?.saturating_duration_since(start))
    }

    fn clear(&self) {
        if let Ok(mut spans) = self.0.lock() {
            spans.clear();
        }
    }
}

/// The request id in a body made by [`request_body`].
fn request_id(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"user\":\"bench-";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits]).ok()?.parse().ok()
}

/// The fake upstream: every completion is `tokens` chunks, `delay` apart, then `[DONE]`.
/// Also returns the count of connections it accepted, and the spans it noted.
async fn spawn_upstream(tokens: usize, delay: Duration) -> anyhow::Result<(SocketAddr, Arc<AtomicUsize>, Arc<Spans>)> {
    let spans = Arc::new(Spans::default());
    let noted = spans.clone();
    let handler = move |body: Bytes| {
        let spans = noted.clone();
        async move {
            let id = request_id(&body);
            if let Some(id) = id {
                spans.start(id);
            }
            let body = futures::stream::unfold(0usize, move |i| {
                let spans = spans.clone();
                async move {
                    if i > tokens {
                        return None;
                    }
                    if i == tokens {
                        if let Some(id) = id {
                            spans.end(id);
                        }
                        return Some((Ok::<_, std::io::Error>(Bytes::from_static(TAIL.as_bytes())), i + 1));
                    }
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(chunk(i)), i + 1))
                }
            });
            let mut response = Response::new(Body::from_stream(body));
            response.headers_mut().insert("content-type", "text/event-stream".parse().expect("static header"));
            response
        }
    };
    let router = axum::Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the upstream")?;
    let addr = listener.local_addr()?;
    // TCP_NODELAY as the miner's axon sets it: small chunks are not held back.
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, accepted, spans))
}

/// Registers `n` validators (funded, 2,000 TAO staked) on a fresh subnet and waits until
/// every one holds a validator permit.
async fn set_up_validators(chain: &Arc<dyn Chain>, n: usize) -> anyhow::Result<(u16, Vec<Keypair>)> {
    let owner = Keypair::from_uri("//BenchLoadOwner")?;
    chain.faucet(&owner, 10_000 * RAO_PER_TAO).await.context("funding the subnet owner")?;
    let receipt = chain.register_network(&owner, &Keypair::from_uri("//BenchLoadOwner/hot")?.public(), None).await.context("creating a subnet")?;
    let netuid = receipt.netuid.context("no netuid in the receipt")?;
    let slots = u16::try_from(n + 8).context("too many --hotkeys")?;
    let update = HyperparamUpdate {
        tempo: Some(2),
        max_allowed_uids: Some(slots),
        max_allowed_validators: Some(slots),
        max_registrations_per_block: Some(slots),
        ..HyperparamUpdate::default()
    };
    chain.set_hyperparams(&owner, netuid, update).await.context("tuning the subnet")?;
    let keys: Vec<(Keypair, Keypair)> = (0..n)
        .map(|i| Ok((Keypair::from_uri(&format!("//BenchLoadCold{i}"))?, Keypair::from_uri(&format!("//BenchLoadHot{i}"))?)))
        .collect::<anyhow::Result<_>>()?;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(keys.iter())
        .map(|(cold, hot)| async move {
            chain.faucet(cold, 3_000 * RAO_PER_TAO).await.context("faucet")?;
            let mut registered = false;
            for _ in 0..100 {
                match chain.register(cold, netuid, &hot.public()).await {
                    Ok(_) => {
                        registered = true;
                        break;
                    }
                    Err(ChainError::Rejected { name, .. }) if name == "TooManyRegistrationsThisBlock" => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(e) => return Err(e).context("register"),
                }
            }
            anyhow::ensure!(registered, "registration never got a slot");
            chain.add_stake(cold, netuid, &hot.public(), 2_000 * RAO_PER_TAO).await.context("add_stake")?;
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result?;
    }
    let hotkeys: Vec<PublicKey> = keys.iter().map(|(_, h)| h.public()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metagraph = Metagraph::fetch(chain.as_ref(), netuid).await?;
        if hotkeys.iter().all(|h| metagraph.by_hotkey(h).is_some_and(|n| n.validator_permit)) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "validator permits did not arrive within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((netuid, keys.into_iter().map(|(_, h)| h).collect()))
}

struct Setup {
    /// Validator hotkeys signing the requests (none: unsigned requests).
    keys: Arc<Vec<Keypair>>,
    miner_key: PublicKey,
    model: String,
    tokens: usize,
    /// Time each stream's first request too (its connection's opening is noise next to the
    /// engine's generation time, and at the engine's pace a stream makes few requests).
    time_first: bool,
    /// Request ids, unique over the run.
    next_id: AtomicUsize,
    spans: Arc<Spans>,
}

/// The body of request `id`: a streaming chat completion whose `user` field carries the id.
fn request_body(model: &str, id: u64, tokens: usize) -> Bytes {
    Bytes::from(format!(
        "{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Say something.\"}}],\"stream\":true,\"max_tokens\":{tokens},\"user\":\"bench-{id}\"}}"
    ))
}

async fn bench(args: &LoadBenchArgs) -> anyhow::Result<serde_json::Value> {
    let hotkeys = if args.hotkeys > 0 { args.hotkeys } else { args.streams.div_ceil(PER_CALLER).max(64) };
    let (_, rss_at_start) = memory_kib();
    let (upstream, upstream_connections, spans) = spawn_upstream(args.tokens, Duration::from_secs_f64(args.token_delay_ms.max(0.0) / 1000.0)).await?;

    let data_dir = std::env::temp_dir().join(format!("ganglion-bench-load-{}", std::process::id()));
    let setup_started = Instant::now();
    let (node, chain, netuid, keys) = if args.no_chain {
        let keys = (0..hotkeys).map(|i| Keypair::from_uri(&format!("//BenchLoadHot{i}"))).collect::<Result<Vec<_>, _>>()?;
        (None, None, 1, keys)
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
        let node_config = ganglion_chain_node::NodeConfig {
            data_dir: data_dir.join("chain"),
            block_time: Duration::from_millis(100),
            chain: ganglion_chain_node::ChainConfig { default_tempo: 2, ..Default::default() },
        };
        let node = ganglion_chain_node::spawn_node(node_config, "127.0.0.1:0".parse()?).await.context("starting the local chain")?;
        let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&node.url())?);
        let (netuid, keys) = set_up_validators(&chain, hotkeys).await?;
        (Some(node), Some(chain), netuid, keys)
    };
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let miner_key = Keypair::from_uri("//BenchLoadMiner")?;
    let upstreams = vec![UpstreamConfig {
        name: MODEL.into(),
        url: format!("http://{upstream}/v1"),
        api_key: None,
        // The operator's setting: one slot per stream, so that the upstream's queue is not
        // what is measured (the default, 8, suits one GPU).
        max_concurrency: args.streams,
    }];
    let mut config = MinerConfig::new(netuid, miner_key.clone(), "127.0.0.1:0".parse()?, upstreams);
    config.axon.serve = false;
    config.per_caller_concurrency = PER_CALLER;
    if args.no_chain {
        config.policy = ganglion_protocol::policy::PolicyConfig::default();
    }
    let handle = miner::start(config, chain, None).await.context("starting the miner")?;
    let miner_url = format!("http://{}/v1/chat/completions", handle.addr());
    let direct_url = format!("http://{upstream}/v1/chat/completions");

    let setup = Arc::new(Setup { keys: Arc::new(keys), miner_key: miner_key.public(), model: MODEL.into(), tokens: args.tokens, time_first: false, next_id: AtomicUsize::new(0), spans });
    let client = |_: Target| {
        ganglion_tls::ClientTls::system()
            .http_builder()
            .pool_max_idle_per_host(args.streams)
            .timeout(Duration::from_secs_f64(args.timeout))
            .build()
    };
    let clients = [client(Target::Direct)?, client(Target::Miner)?];

    let (_, baseline_rss) = memory_kib();
    let can_reset = reset_peak_rss();
    let mut direct = Tally::default();
    let mut through = Tally::default();
    let slice = args.seconds / args.rounds as f64;
    let budget = args.requests.div_ceil(args.rounds);
    for round in 0..args.rounds {
        for target in [Target::Direct, Target::Miner] {
            let (url, http) = match target {
                Target::Direct => (&direct_url, &clients[0]),
                Target::Miner => (&miner_url, &clients[1]),
            };
            let (_, before) = memory_kib();
            reset_peak_rss();
            let cpu_before = cpu_seconds();
            let connections_before = upstream_connections.load(Ordering::Relaxed);
            setup.spans.clear();
            let mut tally = drive(args, &setup, http, url, slice, budget).await;
            tally.cpu_seconds = cpu_seconds() - cpu_before;
            tally.upstream_connections = (upstream_connections.load(Ordering::Relaxed) - connections_before) as u64;
            tally.peak_rss_kib = memory_kib().0;
            tally.baseline_rss_kib = before;
            tracing::debug!(target: "ganglion::bench", round, target = target.name(), ok = tally.ok, "round done");
            match target {
                Target::Direct => direct.merge(tally),
                Target::Miner => through.merge(tally),
            }
        }
    }
    let refused = handle.metrics().render();
    let refused: Vec<String> = refused.lines().filter(|l| l.starts_with("ganglion_miner_refused_total{")).map(str::to_string).collect();
    handle.shutdown().await;
    if let Some(node) = node {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);

    let row = |t: &mut Tally| {
        t.latency_us.sort_by(f64::total_cmp);
        t.ttfb_us.sort_by(f64::total_cmp);
        t.overhead_us.sort_by(f64::total_cmp);
        let errors: u64 = t.errors.values().sum();
        json!({
            "requests_ok": t.ok,
            "requests_per_second": t.ok as f64 / t.seconds.max(1e-9),
            "latency_p50_ms": percentile(&t.latency_us, 50.0) / 1e3,
            "latency_p99_ms": percentile(&t.latency_us, 99.0) / 1e3,
            "latency_p999_ms": percentile(&t.latency_us, 99.9) / 1e3,
            "ttfb_p50_ms": percentile(&t.ttfb_us, 50.0) / 1e3,
            "ttfb_p99_ms": percentile(&t.ttfb_us, 99.0) / 1e3,
            "ttfb_p999_ms": percentile(&t.ttfb_us, 99.9) / 1e3,
            "overhead_p50_ms": percentile(&t.overhead_us, 50.0) / 1e3,
            "overhead_p99_ms": percentile(&t.overhead_us, 99.0) / 1e3,
            "overhead_p999_ms": percentile(&t.overhead_us, 99.9) / 1e3,
            "overhead_samples": t.overhead_us.len(),
            "timed_samples": t.latency_us.len(),
            "upstream_connections_opened": t.upstream_connections,
            "process_cpu_cores": t.cpu_seconds / t.seconds.max(1e-9),
            "process_cpu_ms_per_request": t.cpu_seconds * 1e3 / (t.ok.max(1) as f64),
            "limited_429": t.limited,
            "errors": errors,
            "errors_by_kind": t.errors,
            "peak_rss_mib": t.peak_rss_kib as f64 / 1024.0,
            "rss_before_mib": t.baseline_rss_kib as f64 / 1024.0,
        })
    };
    let direct_row = row(&mut direct);
    let miner_row = row(&mut through);
    let added = |key: &str| miner_row[key].as_f64().unwrap_or(f64::NAN) - direct_row[key].as_f64().unwrap_or(f64::NAN);
    let per_stream = |peak: u64| (peak.saturating_sub(baseline_rss) as f64) / args.streams as f64;
    Ok(json!({
        "streams": args.streams,
        "hotkeys": hotkeys,
        "per_caller_limit": PER_CALLER,
        "tokens": args.tokens,
        "token_delay_ms": args.token_delay_ms,
        "rounds": args.rounds,
        "seconds_per_target": args.seconds,
        "requests_budget": args.requests,
        "worker_threads": if args.threads > 0 { args.threads } else { std::thread::available_parallelism().map_or(1, usize::from) },
        "chain": !args.no_chain,
        "chain_setup_seconds": setup_seconds,
        "direct": direct_row,
        "miner": miner_row,
        "added_latency_p50_ms": added("latency_p50_ms"),
        "added_latency_p99_ms": added("latency_p99_ms"),
        "added_latency_p999_ms": added("latency_p999_ms"),
        "added_ttfb_p99_ms": added("ttfb_p99_ms"),
        "added_overhead_p50_ms": added("overhead_p50_ms"),
        "added_overhead_p99_ms": added("overhead_p99_ms"),
        "added_overhead_p999_ms": added("overhead_p999_ms"),
        "memory": {
            "scope": "whole process: clients, fake upstream, local chain and miner share it",
            "peak_reset_per_round": can_reset,
            "rss_at_start_mib": rss_at_start as f64 / 1024.0,
            "rss_baseline_mib": baseline_rss as f64 / 1024.0,
            "peak_direct_rounds_mib": direct.peak_rss_kib as f64 / 1024.0,
            "peak_miner_rounds_mib": through.peak_rss_kib as f64 / 1024.0,
            "per_stream_direct_kib": per_stream(direct.peak_rss_kib),
            "per_stream_miner_kib": per_stream(through.peak_rss_kib),
            "miner_share_per_stream_kib": (through.peak_rss_kib as f64 - direct.peak_rss_kib as f64) / args.streams as f64,
        },
        "miner_refused_metrics": refused,
    }))
}

/// `--target engine`: the built-in engine's OpenAI server with a real model, `--rounds` rounds
/// of `--streams` concurrent unsigned streaming requests.
async fn bench_engine(args: &LoadBenchArgs) -> anyhow::Result<serde_json::Value> {
    let path = super::engine::resolve_model(&args.model)?;
    let loaded = Instant::now();
    let engine = tokio::task::spawn_blocking({
        let path = path.clone();
        move || ganglion_engine::Engine::load(&path)
    })
    .await
    .context("loading the model")??;
    let load_seconds = loaded.elapsed().as_secs_f64();
    let model = "bench-engine".to_string();
    let config = ganglion_engine::server::ServerConfig { model_id: model.clone(), api_key: None };
    let server = ganglion_engine::server::Server::start(Arc::new(engine), config).context("starting the engine worker thread")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the engine server")?;
    let url = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let setup = Arc::new(Setup {
        keys: Arc::new(Vec::new()),
        miner_key: Keypair::from_uri("//BenchLoadMiner")?.public(),
        model,
        tokens: args.tokens,
        time_first: true,
        next_id: AtomicUsize::new(0),
        spans: Arc::new(Spans::default()),
    });
    let http = ganglion_tls::ClientTls::system()
        .http_builder()
        .pool_max_idle_per_host(args.streams)
        .timeout(Duration::from_secs_f64(args.timeout))
        .build()?;
    let (_, baseline_rss) = memory_kib();
    let can_reset = reset_peak_rss();
    let mut total = Tally::default();
    let slice = args.seconds / args.rounds as f64;
    let budget = args.requests.div_ceil(args.rounds);
    for _ in 0..args.rounds {
        let cpu_before = cpu_seconds();
        let mut tally = drive(args, &setup, &http, &url, slice, budget).await;
        tally.cpu_seconds = cpu_seconds() - cpu_before;
        tally.peak_rss_kib = memory_kib().0;
        total.merge(tally);
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), serving).await;
    total.latency_us.sort_by(f64::total_cmp);
    total.ttfb_us.sort_by(f64::total_cmp);
    let errors: u64 = total.errors.values().sum();
    Ok(json!({
        "target": "engine",
        "model": path.display().to_string(),
        "model_load_seconds": load_seconds,
        "streams": args.streams,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "worker_threads": if args.threads > 0 { args.threads } else { std::thread::available_parallelism().map_or(1, usize::from) },
        "engine": {
            "requests_ok": total.ok,
            "requests_per_second": total.ok as f64 / total.seconds.max(1e-9),
            "latency_p50_ms": percentile(&total.latency_us, 50.0) / 1e3,
            "latency_p99_ms": percentile(&total.latency_us, 99.0) / 1e3,
            "latency_p999_ms": percentile(&total.latency_us, 99.9) / 1e3,
            "ttfb_p50_ms": percentile(&total.ttfb_us, 50.0) / 1e3,
            "ttfb_p99_ms": percentile(&total.ttfb_us, 99.0) / 1e3,
            "timed_samples": total.latency_us.len(),
            "busy_503": total.busy,
            "errors": errors,
            "errors_by_kind": total.errors,
            "process_cpu_cores": total.cpu_seconds / total.seconds.max(1e-9),
        },
        "memory": {
            "scope": "whole process: clients and the engine server (the model's weights included)",
            "peak_reset_per_round": can_reset,
            "rss_baseline_mib": baseline_rss as f64 / 1024.0,
            "peak_mib": total.peak_rss_kib as f64 / 1024.0,
            "per_stream_kib": (total.peak_rss_kib.saturating_sub(baseline_rss) as f64) / args.streams as f64,
        },
    }))
}

fn print_engine_table(report: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let e = &report["engine"];
    println!(
        "Load on the engine server: {} concurrent streams, {} tokens each, {} s in {} rounds, {} worker threads; model {} (loaded in {:.1} s)",
        report["streams"], report["tokens"], report["seconds"], report["rounds"], report["worker_threads"], report["model"].as_str().unwrap_or("?"), f(&report["model_load_seconds"])
    );
    println!(
        "ok {}  req/s {:.2}  latency p50 {:.1} / p99 {:.1} / p999 {:.1} ms  ttfb p50 {:.1} / p99 {:.1} ms  busy (503 server_busy) {}  errors {}  cores {:.2}",
        e["requests_ok"].as_u64().unwrap_or(0),
        f(&e["requests_per_second"]),
        f(&e["latency_p50_ms"]),
        f(&e["latency_p99_ms"]),
        f(&e["latency_p999_ms"]),
        f(&e["ttfb_p50_ms"]),
        f(&e["ttfb_p99_ms"]),
        e["busy_503"].as_u64().unwrap_or(0),
        e["errors"].as_u64().unwrap_or(0),
        f(&e["process_cpu_cores"])
    );
    if let Some(kinds) = e["errors_by_kind"].as_object().filter(|k| !k.is_empty()) {
        let list: Vec<String> = kinds.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("errors: {}", list.join(", "));
    }
    let m = &report["memory"];
    println!(
        "memory (whole process, weights included): baseline {:.0} MiB, peak {:.0} MiB, (peak - baseline) / streams {:.1} KiB",
        f(&m["rss_baseline_mib"]),
        f(&m["peak_mib"]),
        f(&m["per_stream_kib"])
    );
}

/// `streams` concurrent clients against `url` for `seconds` (and at most `budget`
/// requests in all, when non-zero).
async fn drive(args: &LoadBenchArgs, setup: &Arc<Setup>, http: &reqwest::Client, url: &str, seconds: f64, budget: usize) -> Tally {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds.max(0.0));
    let unbounded_time = seconds <= 0.0;
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(args.streams);
    for stream in 0..args.streams {
        let (setup, http, url, issued) = (setup.clone(), http.clone(), url.to_string(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let key = setup.keys.get(stream % setup.keys.len().max(1));
            let mut tally = Tally::default();
            let mut first = true;
            loop {
                if !unbounded_time && Instant::now() >= deadline {
                    break;
                }
                if budget > 0 && issued.fetch_add(1, Ordering::Relaxed) >= budget {
                    break;
                }
                one_request(&http, &url, key, &setup, &mut tally, !first || setup.time_first).await;
                first = false;
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        if let Ok(tally) = task.await {
            total.merge(tally);
        } else {
            total.error("client task panicked");
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// One signed streaming request, read to the end; recorded in `tally` (timed if `timed`).
async fn one_request(http: &reqwest::Client, url: &str, key: Option<&Keypair>, setup: &Setup, tally: &mut Tally, timed: bool) {
    let id = setup.next_id.fetch_add(1, Ordering::Relaxed) as u64;
    let body = request_body(&setup.model, id, setup.tokens);
    let mut headers = http::HeaderMap::new();
    if let Some(key) = key {
        SignedHeaders::sign(key, &body, Some(&setup.miner_key)).apply(&mut headers);
    }
    let start = Instant::now();
    let response = match http.post(url).headers(headers).header("content-type", "application/json").body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            tally.error(if e.is_connect() {
                "connect"
            } else if e.is_timeout() {
                "timeout"
            } else {
                "request"
            });
            return;
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        tally.limited += 1;
        let _ = response.bytes().await;
        return;
    }
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        let body = response.bytes().await.unwrap_or_default();
        if String::from_utf8_lossy(&body).contains("server_busy") {
            tally.busy += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            tally.error("http 503");
        }
        return;
    }
    if !status.is_success() {
        tally.error(format!("http {}", status.as_u16()));
        let _ = response.bytes().await;
        return;
    }
    let mut stream = response.bytes_stream();
    let mut ttfb = None;
    let mut tail: Vec<u8> = Vec::with_capacity(64);
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(bytes) => {
                if ttfb.is_none() && !bytes.is_empty() {
                    ttfb = Some(start.elapsed());
                }
                tail.extend_from_slice(&bytes);
                if tail.len() > 32 {
                    tail.drain(..tail.len() - 32);
                }
            }
            Err(e) => {
                tally.error(if e.is_timeout() { "timeout" } else { "truncated stream" });
                return;
            }
        }
    }
    let elapsed = start.elapsed();
    if !tail.ends_with(b"data: [DONE]\n\n") {
        tally.error("truncated stream");
        return;
    }
    tally.ok += 1;
    let span = setup.spans.take(id);
    if timed {
        tally.latency_us.push(elapsed.as_secs_f64() * 1e6);
        tally.ttfb_us.push(ttfb.unwrap_or(elapsed).as_secs_f64() * 1e6);
        if let Some(span) = span {
            tally.overhead_us.push(elapsed.saturating_sub(span).as_secs_f64() * 1e6);
        }
    }
}

fn print_table(report: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "Load: {} concurrent streams, {} validator hotkeys (miner's per-caller limit {}), {} tokens {} ms apart, {} s per target in {} alternating rounds, {} worker threads",
        report["streams"], report["hotkeys"], report["per_caller_limit"], report["tokens"], report["token_delay_ms"], report["seconds_per_target"], report["rounds"], report["worker_threads"]
    );
    println!("(loopback, one process: fake upstream, local chain, miner and clients share the cores; `cores` and `cpu ms/r` are the whole process's CPU)");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10} {:>8} {:>7} {:>7} {:>9}",
        "target", "ok", "req/s", "p50 ms", "p99 ms", "p999 ms", "ttfb p50", "ttfb p99", "ttfb p999", "limited", "errors", "cores", "cpu ms/r"
    );
    for name in ["direct", "miner"] {
        let row = &report[name];
        println!(
            "{:<8} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>10.2} {:>9.2} {:>9.2} {:>10.2} {:>8} {:>7} {:>7.2} {:>9.3}",
            name,
            row["requests_ok"].as_u64().unwrap_or(0),
            f(&row["requests_per_second"]),
            f(&row["latency_p50_ms"]),
            f(&row["latency_p99_ms"]),
            f(&row["latency_p999_ms"]),
            f(&row["ttfb_p50_ms"]),
            f(&row["ttfb_p99_ms"]),
            f(&row["ttfb_p999_ms"]),
            row["limited_429"].as_u64().unwrap_or(0),
            row["errors"].as_u64().unwrap_or(0),
            f(&row["process_cpu_cores"]),
            f(&row["process_cpu_ms_per_request"])
        );
    }
    println!(
        "added by the miner: p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms; time to first byte p99 {:.2} ms",
        f(&report["added_latency_p50_ms"]),
        f(&report["added_latency_p99_ms"]),
        f(&report["added_latency_p999_ms"]),
        f(&report["added_ttfb_p99_ms"])
    );
    println!(
        "overhead (latency less the upstream's own span, same request): direct p50 {:.3} / p99 {:.3} / p999 {:.3} ms, miner p50 {:.3} / p99 {:.3} / p999 {:.3} ms; added by the miner p50 {:.3}, p99 {:.3}, p999 {:.3} ms",
        f(&report["direct"]["overhead_p50_ms"]),
        f(&report["direct"]["overhead_p99_ms"]),
        f(&report["direct"]["overhead_p999_ms"]),
        f(&report["miner"]["overhead_p50_ms"]),
        f(&report["miner"]["overhead_p99_ms"]),
        f(&report["miner"]["overhead_p999_ms"]),
        f(&report["added_overhead_p50_ms"]),
        f(&report["added_overhead_p99_ms"]),
        f(&report["added_overhead_p999_ms"])
    );
    for name in ["direct", "miner"] {
        if let Some(kinds) = report[name]["errors_by_kind"].as_object().filter(|k| !k.is_empty()) {
            let list: Vec<String> = kinds.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!("errors ({name}): {}", list.join(", "));
        }
    }
    println!(
        "upstream connections opened: {} direct, {} by the miner",
        report["direct"]["upstream_connections_opened"].as_u64().unwrap_or(0),
        report["miner"]["upstream_connections_opened"].as_u64().unwrap_or(0)
    );
    let m = &report["memory"];
    println!(
        "memory (whole process, not the miner alone; VmHWM {}): start {:.0} MiB, baseline before load {:.0} MiB, peak in direct rounds {:.0} MiB, in miner rounds {:.0} MiB",
        if m["peak_reset_per_round"].as_bool() == Some(true) { "reset before each round" } else { "never reset" },
        f(&m["rss_at_start_mib"]),
        f(&m["rss_baseline_mib"]),
        f(&m["peak_direct_rounds_mib"]),
        f(&m["peak_miner_rounds_mib"])
    );
    println!(
        "per stream, (peak - baseline) / streams: {:.1} KiB direct, {:.1} KiB through the miner; the miner's share (miner peak - direct peak) / streams: {:.1} KiB",
        f(&m["per_stream_direct_kib"]),
        f(&m["per_stream_miner_kib"]),
        f(&m["miner_share_per_stream_kib"])
    );
    if let Some(lines) = report["miner_refused_metrics"].as_array().filter(|l| !l.is_empty()) {
        println!("miner /metrics refusals:");
        for line in lines {
            println!("  {}", line.as_str().unwrap_or_default());
        }
    }
    if report["chain"].as_bool() == Some(true) {
        println!("chain setup (validators registered, staked, permitted): {:.1} s", f(&report["chain_setup_seconds"]));
    } else {
        println!("no chain (--no-chain): the miner admitted every correctly signed caller");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_reads_back_the_request_id() {
        assert_eq!(request_id(&request_body(MODEL, 0, 32)), Some(0));
        assert_eq!(request_id(&request_body(MODEL, 123_456_789, 8)), Some(123_456_789));
        assert_eq!(request_id(b"{\"model\":\"bench\"}"), None);
        let body: serde_json::Value = serde_json::from_slice(&request_body("some-model", 7, 16)).expect("valid JSON");
        assert_eq!(body["model"], "some-model");
        assert_eq!(body["user"], "bench-7");
        assert_eq!(body["max_tokens"], 16);
    }
}
