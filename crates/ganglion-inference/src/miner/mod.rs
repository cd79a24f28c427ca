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
//!   with the miner's hotkey as receiver; `GET /` health check and `GET /metrics`
//!   (loopback callers only) without authentication.
//! - Responses stream through byte for byte as they arrive (never buffered), under
//!   first-byte, idle and total deadlines; the request body is size-limited.
//! - Caller policy from the metagraph (registered, stake, validator permit, black and white
//!   lists), refreshed every `sync_interval` via [`Metagraph::sync`]; the axon is served at
//!   start and re-served whenever the chain's copy differs from the configured address.
//! - Without a chain (`start(config, None)`) the miner serves with whatever policy it is
//!   given and an empty directory: for benchmarks and tests.

pub mod config;

mod adversary;
mod proxy;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ganglion_chain::{Chain, Metagraph};
use ganglion_core::keys::PublicKey;
use ganglion_protocol::epistula::{Verifier, VerifierConfig};
use ganglion_protocol::policy::{CallerInfo, SharedDirectory, StandardPolicy};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

pub use config::{Adversary, MinerConfig, MinerFile, UpstreamConfig};

use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;
use crate::openai::join_url;

/// Axon version published on chain: `major·10⁶ + minor·10³ + patch` of this crate.
pub fn axon_version() -> u32 {
    let mut parts = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major * 1_000_000 + minor * 1_000 + patch
}

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
}

impl MinerState {
    fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = self.upstreams.keys().cloned().collect();
        names.sort();
        names
    }
}

/// A running miner.
#[derive(Debug)]
pub struct MinerHandle {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    sync: Option<JoinHandle<()>>,
}

impl MinerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The miner's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops serving (in-flight streams get two seconds) and the chain sync.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(sync) = self.sync.take() {
            sync.abort();
        }
        let abort = self.server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server).await.is_err() {
            abort.abort();
        }
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
        if let Some(sync) = self.sync.take() {
            sync.abort();
        }
    }
}

fn describe(metrics: &Metrics) {
    metrics.describe("ganglion_miner_requests_total", "counter", "Requests handled, by route and status.");
    metrics.describe("ganglion_miner_upstream_errors_total", "counter", "Upstream failures, by model and kind.");
    metrics.describe("ganglion_miner_active_streams", "gauge", "Responses currently streaming.");
    metrics.describe("ganglion_miner_refused_total", "counter", "Requests refused by the miner's limits, by reason.");
    metrics.describe("ganglion_miner_axon_served_total", "counter", "serve_axon transactions accepted.");
    metrics.describe("ganglion_miner_metagraph_syncs_total", "counter", "Metagraph refreshes, by result.");
}

/// Asks an OpenAI-compatible server which models it serves (`GET /v1/models`) and makes
/// an upstream entry for each: the `--upstream URL` shortcut.
pub async fn upstreams_from_url(url: &str, api_key: Option<String>, max_concurrency: usize) -> Result<Vec<UpstreamConfig>> {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().map_err(|e| InferenceError::Http(e.to_string()))?;
    let mut request = http.get(join_url(url, "/v1/models")).timeout(Duration::from_secs(15));
    if let Some(key) = &api_key {
        request = request.bearer_auth(key);
    }
    let fail = |why: String| InferenceError::Config(format!("--upstream {url}: {why}; is the server running?"));
    let response = request.send().await.map_err(|e| fail(e.to_string()))?;
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

/// Starts the miner: binds, serves, and (with a chain) syncs the metagraph and serves the axon.
pub async fn start(config: MinerConfig, chain: Option<Arc<dyn Chain>>) -> Result<MinerHandle> {
    // Even the random-token demo needs its model list: that is what it claims to serve.
    if config.upstreams.is_empty() {
        return Err(InferenceError::Config("no upstream: give --upstream URL or [[models]] in the config file".into()));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| InferenceError::Bind { addr: config.listen, reason: e.to_string() })?;
    let addr = listener.local_addr().map_err(|e| InferenceError::Bind { addr: config.listen, reason: e.to_string() })?;
    let directory = Arc::new(SharedDirectory::default());
    let policy = Arc::new(StandardPolicy::new(config.policy.clone(), directory.clone()));
    let verifier = Arc::new(Verifier::new(
        VerifierConfig {
            receiver: Some(config.hotkey.public()),
            max_age: config.epistula_max_age,
            max_future: config.epistula_max_age,
            max_body_bytes: config.max_request_bytes,
            ..VerifierConfig::default()
        },
        policy,
    ));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| InferenceError::Http(e.to_string()))?;
    let mut upstreams = HashMap::new();
    for up in &config.upstreams {
        upstreams.insert(up.name.clone(), Upstream { config: up.clone(), slots: Arc::new(Semaphore::new(up.max_concurrency.max(1))) });
    }
    let metrics = Arc::new(Metrics::default());
    describe(&metrics);
    let state = Arc::new(MinerState {
        callers: CallerLimiter { limit: config.per_caller_concurrency.max(1), table: Mutex::new(HashMap::new()) },
        config: config.clone(),
        upstreams,
        http,
        metrics: metrics.clone(),
        validator_models: Mutex::new(Vec::new()),
    });
    let sync = match chain {
        Some(chain) => {
            // The first sync happens before serving, so that callers are judged against the
            // metagraph from the first request on.
            let mut metagraph = Metagraph::fetch(chain.as_ref(), config.netuid).await?;
            directory.replace(directory_entries(&metagraph));
            let external = external_address(&config, addr);
            if config.serve_axon {
                serve_axon_if_needed(chain.as_ref(), &config, &metagraph, external, &metrics).await;
            }
            let state = state.clone();
            Some(tokio::spawn(async move {
                sync_loop(chain, state, directory, &mut metagraph, external).await;
            }))
        }
        None => None,
    };
    let app = proxy::router(state.clone(), verifier);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(target: "ganglion::miner", "server failed: {e}");
        }
    });
    tracing::info!(target: "ganglion::miner", %addr, hotkey = %config.hotkey.public(), models = ?state.models(), adversary = ?config.adversary, "inference miner serving");
    Ok(MinerHandle { addr, metrics, stop: Some(stop_tx), server, sync })
}

fn directory_entries(metagraph: &Metagraph) -> HashMap<PublicKey, CallerInfo> {
    metagraph
        .neurons()
        .iter()
        .map(|n| (n.hotkey, CallerInfo { coldkey: n.coldkey, stake_rao: n.stake, validator_permit: n.validator_permit }))
        .collect()
}

/// The address to publish: the configured external one, else the listen address, else
/// loopback (with a warning: a public miner must set `--axon.external_ip`).
fn external_address(config: &MinerConfig, bound: SocketAddr) -> SocketAddr {
    let ip = config.external_ip.unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            tracing::warn!(target: "ganglion::miner", "listening on all interfaces without --axon.external_ip: publishing 127.0.0.1 (only local validators can reach it)");
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        }
    });
    SocketAddr::new(ip, config.external_port.unwrap_or(bound.port()))
}

async fn serve_axon_if_needed(chain: &dyn Chain, config: &MinerConfig, metagraph: &Metagraph, external: SocketAddr, metrics: &Metrics) {
    let hotkey = config.hotkey.public();
    let Some(neuron) = metagraph.by_hotkey(&hotkey) else {
        tracing::warn!(target: "ganglion::miner", %hotkey, netuid = config.netuid, "hotkey is not registered on the subnet; register it (ganglion neuron register) and the axon will be served");
        return;
    };
    if neuron.axon.as_ref().is_some_and(|a| a.ip == external.ip() && a.port == external.port()) {
        return;
    }
    match chain.serve_axon(&config.hotkey, config.netuid, external.ip(), external.port(), axon_version(), 4).await {
        Ok(receipt) => {
            metrics.inc("ganglion_miner_axon_served_total", &[]);
            tracing::info!(target: "ganglion::miner", %external, block = receipt.block, "axon served");
        }
        Err(e) => tracing::warn!(target: "ganglion::miner", %external, "serve_axon refused: {e}; retrying at the next sync"),
    }
}

async fn sync_loop(chain: Arc<dyn Chain>, state: Arc<MinerState>, directory: Arc<SharedDirectory>, metagraph: &mut Metagraph, external: SocketAddr) {
    let mut interval = tokio::time::interval(state.config.sync_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    // After a failure the next refresh is a full fetch: the chain may have restarted with
    // other revisions, and an incremental sync would then never see a change.
    let mut refetch = false;
    loop {
        interval.tick().await;
        let synced = if refetch {
            Metagraph::fetch(chain.as_ref(), state.config.netuid).await.map(|fresh| {
                *metagraph = fresh;
                true
            })
        } else {
            metagraph.sync(chain.as_ref()).await
        };
        match synced {
            Ok(changed) => {
                refetch = false;
                state.metrics.inc("ganglion_miner_metagraph_syncs_total", &[("result", "ok")]);
                if changed {
                    directory.replace(directory_entries(metagraph));
                }
                if state.config.serve_axon {
                    serve_axon_if_needed(chain.as_ref(), &state.config, metagraph, external, &state.metrics).await;
                }
            }
            Err(e) => {
                refetch = true;
                state.metrics.inc("ganglion_miner_metagraph_syncs_total", &[("result", "error")]);
                tracing::warn!(target: "ganglion::miner", "metagraph sync failed: {e}; keeping the last caller table");
            }
        }
    }
}
