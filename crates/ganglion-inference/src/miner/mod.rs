//! The miner: an Epistula-protected OpenAI proxy in front of one or more upstream servers.
//!
//! ```text
//!  validator ──Epistula──▶ [verify: signature, freshness, replay, policy] ──▶ proxy
//!                                                                           │ X-Targon-Model
//!                                                  per-caller limit ◀───────┤ (else body.model)
//!                                                  per-model slots  ◀───────┤
//!                                                                           ▼
//!                                        upstream (engine serve, vLLM, …) bytes ──▶ caller
//! ```
//!
//! - Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /models` (the models
//!   served, a JSON list) and `POST /models` (the validator's list), all behind Epistula
//!   with the miner's hotkey as receiver; `GET /` health check, and `GET /metrics` (the
//!   runtime's registry) and `GET /status` (the runtime's [`NodeStatus`], role `miner`)
//!   for loopback callers only, without authentication.
//! - Responses stream through byte for byte as they arrive (never buffered), under
//!   first-byte, idle and total deadlines; the request body is size-limited.
//! - The axon is the runtime's ([`Axon`]): bind, Epistula verifier with the caller policy
//!   (registered, stake, validator permit, black and white lists) over a directory that
//!   the runtime's chain task ([`ganglion_neuron::axon::run_chain_sync`]) refreshes every `sync_interval`,
//!   publishing the axon at start and whenever the chain's copy differs.
//! - Stops on a [`Shutdown`] token (SIGINT/SIGTERM in the binary, or
//!   [`MinerHandle::shutdown`]): no new connections, in-flight streams get
//!   `drain_timeout` to finish.
//! - Without a chain (`start(config, None, …)`) the miner serves with whatever policy it is
//!   given and an empty directory: for benchmarks and tests.

pub mod config;

mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ganglion_chain::Chain;
use ganglion_core::keys::PublicKey;
use ganglion_neuron::axon::{Axon, ServeLimits, attach_chain};
use ganglion_neuron::metrics::LATENCY_BUCKETS;
use ganglion_neuron::signals::ShutdownTrigger;
use ganglion_neuron::status::{NodeStatus, Phase, Role, StatusBoard};
use ganglion_neuron::{Metrics, Shutdown};
use ganglion_protocol::epistula::VerifierConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use config::{MinerConfig, MinerFile, UpstreamConfig};

use crate::error::{InferenceError, Result};
use crate::openai::join_url;

/// One upstream with its slots.
#[derive(Debug)]
struct Upstream {
    config: UpstreamConfig,
    slots: Arc<Semaphore>,
}

/// Per-caller in-flight limits. Entries exist only for admitted callers (the policy runs
/// first), and the table is pruned of idle entries when it grows large.
#[derive(Debug)]
struct CallerLimiter {
    limit: usize,
    table: Mutex<HashMap<PublicKey, Arc<Semaphore>>>,
}

const MAX_CALLER_ENTRIES: usize = 4096;

impl CallerLimiter {
    fn acquire(&self, caller: &PublicKey) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            if table.len() >= MAX_CALLER_ENTRIES && !table.contains_key(caller) {
                table.retain(|_, s| s.available_permits() < self.limit);
                if table.len() >= MAX_CALLER_ENTRIES {
                    return None;
                }
            }
            table.entry(*caller).or_insert_with(|| Arc::new(Semaphore::new(self.limit))).clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

/// Shared state of the miner's handlers.
#[derive(Debug)]
struct MinerState {
    config: MinerConfig,
    upstreams: HashMap<String, Upstream>,
    http: reqwest::Client,
    callers: CallerLimiter,
    metrics: Arc<Metrics>,
    /// The model list the validators last sent (`POST /models`).
    validator_models: Mutex<Vec<String>>,
    /// Responses streaming now.
    active_streams: AtomicI64,
    /// Requests answered (any status).
    requests: AtomicU64,
    /// The status `/status` serves.
    board: Arc<StatusBoard>,
}

impl MinerState {
    fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = self.upstreams.keys().cloned().collect();
        names.sort();
        names
    }

    /// Counts a stream starting (+1) or ending (−1), mirrored in the gauge.
    fn streams(&self, delta: i64) {
        let now = self.active_streams.fetch_add(delta, Ordering::Relaxed) + delta;
        self.metrics.set("ganglion_miner_active_streams", &[], now.max(0) as f64);
    }

    /// The status with the live figures (active streams, requests) filled in.
    fn status(&self) -> NodeStatus {
        let active = self.active_streams.load(Ordering::Relaxed).max(0);
        let requests = self.requests.load(Ordering::Relaxed);
        let models = self.models();
        // Memory only: a polled `/status` must not cost a file write each time.
        self.board.update_in_memory(|s| {
            s.steps = requests;
            s.details = serde_json::json!({"models": models, "active_streams": active});
        })
    }
}

/// A running miner.
#[derive(Debug)]
pub struct MinerHandle {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    state: Arc<MinerState>,
    trigger: ShutdownTrigger,
    drain: Duration,
    server: JoinHandle<()>,
    sync: Option<JoinHandle<()>>,
}

impl MinerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The miner's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current status (what `/status` serves).
    pub fn status(&self) -> NodeStatus {
        self.state.status()
    }

    /// A token that fires when the miner is asked to stop.
    pub fn token(&self) -> Shutdown {
        self.trigger.token()
    }

    /// Stops: no new requests, in-flight streams get `drain_timeout`, the chain task ends.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        self.wait().await;
    }

    /// Waits until the miner stopped (after its shutdown token fired), then writes the
    /// final status.
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
        if let Some(sync) = self.sync.take() {
            let abort = sync.abort_handle();
            if tokio::time::timeout(self.drain + Duration::from_secs(5), sync).await.is_err() {
                abort.abort();
            }
        }
        self.state.board.update(|s| s.phase = Phase::Stopping);
        let _ = self.state.status();
        tracing::info!(target: "ganglion::miner", "inference miner stopped");
    }
}

fn describe(metrics: &Metrics) {
    metrics.counter("ganglion_miner_requests_total", "Requests handled, by route and status.");
    metrics.counter("ganglion_miner_upstream_errors_total", "Upstream failures, by model and kind.");
    metrics.gauge("ganglion_miner_active_streams", "Responses currently streaming.");
    metrics.counter(
        "ganglion_miner_refused_total",
        "Requests refused by the miner's limits (per_caller_limit, upstream_busy), by its Epistula layer (epistula_<code>), or cut off before a request was read (header_timeout, header_too_large, bad_request, incomplete_request, write_stalled), by reason.",
    );
    metrics.histogram("ganglion_miner_request_seconds", "Time from a request's arrival to the end of its streamed response, by model.", LATENCY_BUCKETS);
}

/// Asks an OpenAI-compatible server which models it serves (`GET /v1/models`) and makes
/// an upstream entry for each: the `--upstream URL` shortcut (`https://` verified with `tls`).
pub async fn upstreams_from_url(url: &str, api_key: Option<String>, max_concurrency: usize, tls: &ganglion_tls::ClientTls) -> Result<Vec<UpstreamConfig>> {
    let http = tls.http_builder().connect_timeout(Duration::from_secs(5)).build().map_err(|e| InferenceError::Http(e.to_string()))?;
    let mut request = http.get(join_url(url, "/v1/models")).timeout(Duration::from_secs(15));
    if let Some(key) = &api_key {
        request = request.bearer_auth(key);
    }
    let fail = |why: String| InferenceError::Config(format!("--upstream {url}: {why}; is the server running?"));
    let response = request.send().await.map_err(|e| fail(ganglion_tls::describe_http_error(&e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("GET /v1/models answered {}", response.status())));
    }
    let body = crate::reference::read_limited(response, 1 << 20).await.map_err(fail)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| fail(format!("GET /v1/models is not JSON: {e}")))?;
    let names: Vec<String> = value
        .get("data")
        .and_then(serde_json::Value::as_array)
        .map(|models| models.iter().filter_map(|m| m.get("id").and_then(serde_json::Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Err(fail("it lists no models".into()));
    }
    Ok(names
        .into_iter()
        .map(|name| UpstreamConfig { name, url: url.to_string(), api_key: api_key.clone(), max_concurrency: max_concurrency.max(1) })
        .collect())
}

/// Starts the miner: binds the axon, syncs the metagraph and serves the axon (with a
/// chain), and serves until `shutdown` fires or [`MinerHandle::shutdown`] is called.
pub async fn start(config: MinerConfig, chain: Option<Arc<dyn Chain>>, shutdown: Option<Shutdown>) -> Result<MinerHandle> {
    if config.upstreams.is_empty() {
        return Err(InferenceError::Config("no upstream: give --upstream URL or [[models]] in the config file".into()));
    }
    let verifier = VerifierConfig {
        max_age: config.epistula_max_age,
        max_future: config.epistula_max_age,
        max_body_bytes: config.max_request_bytes,
        ..VerifierConfig::default()
    };
    let axon = Axon::bind(&config.axon, &config.hotkey, config.policy.clone(), verifier).await?;
    let addr = axon.addr();
    let http = config
        .tls
        .http_builder()
        .connect_timeout(Duration::from_secs(5))
        // Keep as many idle connections as the upstreams allow requests in flight (a host
        // may serve several models): with a fixed 64, every stream past the 64th opened a
        // new upstream connection for each request (seen with `ganglion bench load`).
        .pool_max_idle_per_host(config.upstreams.iter().map(|u| u.max_concurrency).sum::<usize>().clamp(64, 4096))
        .build()
        .map_err(|e| InferenceError::Http(e.to_string()))?;
    let mut upstreams = HashMap::new();
    for up in &config.upstreams {
        upstreams.insert(up.name.clone(), Upstream { config: up.clone(), slots: Arc::new(Semaphore::new(up.max_concurrency.max(1))) });
    }
    let metrics = Arc::new(Metrics::new());
    describe(&metrics);
    if let Some(dir) = &config.data_dir {
        std::fs::create_dir_all(dir).map_err(|e| InferenceError::io("creating", dir, e))?;
    }
    let board = Arc::new(StatusBoard::new(
        NodeStatus::new("inference", Role::Miner, config.netuid, config.hotkey.public().to_ss58()),
        config.data_dir.as_ref().map(|d| d.join("status.json")),
    ));
    let state = Arc::new(MinerState {
        callers: CallerLimiter { limit: config.per_caller_concurrency.max(1), table: Mutex::new(HashMap::new()) },
        config: config.clone(),
        upstreams,
        http,
        metrics: metrics.clone(),
        validator_models: Mutex::new(Vec::new()),
        active_streams: AtomicI64::new(0),
        requests: AtomicU64::new(0),
        board: board.clone(),
    });
    let (trigger, token) = Shutdown::linked(shutdown);
    let sync = match chain {
        // The first sync (and the first serve_axon) happen before serving, so that callers
        // are judged against the metagraph from the first request on.
        Some(chain) => {
            let link = attach_chain(&axon, chain, config.netuid, &config.hotkey, config.axon.serve, config.sync_interval, metrics.clone(), board.clone(), token.clone(), |_, _| {}).await?;
            Some(link.task)
        }
        None => {
            board.update(|s| s.phase = Phase::Running);
            None
        }
    };
    let app = proxy::router(state.clone(), axon.verifier());
    // Connections cut off before a request was read (slowloris, oversized or malformed
    // headers) or whose caller stopped reading the response are refusals too: counted with
    // the handlers' and the Epistula layer's.
    let refused = metrics.clone();
    let limits = ServeLimits {
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes,
        write_stall_timeout: config.write_stall_timeout,
        on_refused: Some(Arc::new(move |reason| refused.inc("ganglion_miner_refused_total", &[("reason", reason)]))),
    };
    let server = axon.serve_with(app, token, config.drain_timeout, limits);
    tracing::info!(target: "ganglion::miner", %addr, hotkey = %config.hotkey.public(), models = ?state.models(), "inference miner serving");
    Ok(MinerHandle { addr, metrics, state, trigger, drain: config.drain_timeout, server, sync })
}

