//! The compute miner: serves `/Specs`, `/Challenge` and `/Allocate` behind Epistula and the
//! caller policy, solves challenges with the built-in solver (or hashcat), runs allocations
//! in the sandbox, and publishes its axon.
//!
//! Concurrency: challenges run in parallel on the solver pool, which shares the cores
//! fairly among them; a global cap and a per-caller cap bound the work any number of
//! validators (or a flooding caller that passed the policy) can queue.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ganglion_chain::{Chain, Metagraph};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_protocol::epistula::{self, Caller, Verifier, VerifierConfig};
use ganglion_protocol::policy::SharedDirectory;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::access::{self, AccessConfig};
use crate::allocation::{Allocations, Machine};
use crate::error::{ComputeError, Result};
use crate::hashcat::{self, HashcatConfig};
use crate::metrics::Metrics;
use crate::protocol::{self, Allocate, Challenge, ChallengeOutput, Specs, route};
use crate::sandbox::{self, SandboxConfig, Sandboxes};
use crate::solver::{Solver, SolverConfig};
use crate::specs::{self, MeasureConfig};

/// Miner settings (TOML section `[miner]`; flags in `ganglion miner compute --help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerConfig {
    /// `--netuid`.
    pub netuid: u16,
    /// `--axon.ip`: address to bind.
    pub axon_ip: IpAddr,
    /// `--axon.port` (0: any free port).
    pub axon_port: u16,
    /// `--axon.external_ip`: address published on chain (default: the bind address, or
    /// 127.0.0.1 when binding all interfaces).
    pub external_ip: Option<IpAddr>,
    /// `--axon.external_port`.
    pub external_port: Option<u16>,
    /// Publish the axon on chain at startup when it differs.
    pub serve_axon: bool,
    /// Where the miner keeps its state (`allocations-<netuid>-<hotkey>.json`, so that several
    /// miners can share the default directory) and measures its disk.
    pub data_dir: PathBuf,
    /// The built-in solver.
    pub solver: SolverConfig,
    /// Use hashcat instead of the built-in solver.
    pub hashcat: Option<HashcatConfig>,
    /// The allocation sandbox.
    pub sandbox: SandboxConfig,
    /// Who may call.
    pub access: AccessConfig,
    /// Longest the miner works on one challenge, seconds (the original's 30).
    pub challenge_timeout_s: f64,
    /// Most challenges in flight at once.
    pub max_concurrent_challenges: usize,
    /// Most challenges in flight per caller.
    pub max_challenges_per_caller: usize,
    /// How often the specs are measured again, seconds.
    pub specs_refresh_s: u64,
    /// Size of the RAM and disk speed tests, MiB.
    pub specs_sample_mib: u64,
    /// How often the metagraph (and so the caller table) is refreshed, seconds.
    pub metagraph_refresh_s: u64,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            netuid: 27,
            axon_ip: IpAddr::from([0, 0, 0, 0]),
            axon_port: 8091,
            external_ip: None,
            external_port: None,
            serve_axon: true,
            data_dir: default_data_dir(),
            solver: SolverConfig::default(),
            hashcat: None,
            sandbox: SandboxConfig::default(),
            access: AccessConfig { require_registered: true, require_validator_permit: true, ..AccessConfig::default() },
            challenge_timeout_s: 30.0,
            max_concurrent_challenges: 32,
            max_challenges_per_caller: 4,
            specs_refresh_s: 900,
            specs_sample_mib: 64,
            metagraph_refresh_s: 12,
        }
    }
}

/// `~/.ganglion/compute`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".ganglion").join("compute")
}

/// The axon version published on chain: `major·10⁶ + minor·10³ + patch` of this crate.
pub fn version_as_int() -> u32 {
    let mut parts = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major * 1_000_000 + minor * 1_000 + patch
}

struct MinerState {
    hotkey: PublicKey,
    solver: Arc<Solver>,
    hashcat: Option<HashcatConfig>,
    allocations: Arc<Allocations>,
    specs: RwLock<Arc<String>>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    in_flight: Mutex<(usize, HashMap<PublicKey, usize>)>,
    max_total: usize,
    max_per_caller: usize,
}

/// Releases a challenge slot when dropped.
struct Slot<'a> {
    state: &'a MinerState,
    caller: PublicKey,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut guard = match self.state.in_flight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.0 = guard.0.saturating_sub(1);
        if let Some(count) = guard.1.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                guard.1.remove(&self.caller);
            }
        }
    }
}

impl MinerState {
    fn slot(&self, caller: PublicKey) -> Option<Slot<'_>> {
        let mut guard = match self.in_flight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mine = guard.1.get(&caller).copied().unwrap_or(0);
        if guard.0 >= self.max_total || mine >= self.max_per_caller {
            return None;
        }
        guard.0 += 1;
        *guard.1.entry(caller).or_insert(0) += 1;
        Some(Slot { state: self, caller })
    }
}

fn error_response(status: StatusCode, err: &ComputeError) -> Response {
    let body = serde_json::json!({ "error": { "code": err.code(), "message": err.to_string() } });
    (status, axum::Json(body)).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|err| ComputeError::invalid("body", format!("not a valid request: {err}")))
}

async fn specs_route(State(state): State<Arc<MinerState>>, _caller: Caller, body: Bytes) -> Response {
    let request: Specs = match parse(&body) {
        Ok(r) => r,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err),
    };
    if request.specs_input.len() > 1024 {
        return error_response(StatusCode::BAD_REQUEST, &ComputeError::invalid("specs_input", "must be empty or short"));
    }
    state.metrics.inc("compute_miner_specs_requests_total", "Specs requests answered.", &[], 1.0);
    let specs = match state.specs.read() {
        Ok(guard) => Arc::clone(&guard),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    };
    axum::Json(Specs { specs_input: String::new(), specs_output: specs.as_str().to_string() }).into_response()
}

async fn challenge_route(State(state): State<Arc<MinerState>>, caller: Caller, body: Bytes) -> Response {
    let mut request: Challenge = match parse(&body) {
        Ok(r) => r,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err),
    };
    let spec = match request.spec() {
        Ok(spec) => spec,
        Err(err) => {
            state.metrics.inc("compute_miner_challenges_total", "Challenges by outcome.", &[("outcome", "invalid")], 1.0);
            return error_response(StatusCode::BAD_REQUEST, &err);
        }
    };
    let Some(_slot) = state.slot(caller.hotkey) else {
        state.metrics.inc("compute_miner_challenges_total", "Challenges by outcome.", &[("outcome", "busy")], 1.0);
        let err = ComputeError::Peer { peer: "miner".into(), reason: "too many challenges in flight; retry later".into() };
        return error_response(StatusCode::SERVICE_UNAVAILABLE, &err);
    };
    let started = Instant::now();
    let deadline = started + state.timeout;
    let outcome = match &state.hashcat {
        Some(config) => hashcat::solve(config, &spec, deadline).await,
        None => match state.solver.solve(&spec, deadline) {
            Ok(future) => future.await.map(|solution| solution.password),
            Err(err) => Err(err),
        },
    };
    let elapsed = started.elapsed().as_secs_f64();
    let (label, output) = match outcome {
        Ok(password) => ("solved", ChallengeOutput { password: Some(password), local_execution_time: Some(elapsed), error: None }),
        Err(err) => ("failed", ChallengeOutput { password: None, local_execution_time: Some(elapsed), error: Some(err.to_string()) }),
    };
    state.metrics.inc("compute_miner_challenges_total", "Challenges by outcome.", &[("outcome", label)], 1.0);
    state.metrics.inc("compute_miner_solve_seconds_total", "Seconds spent solving.", &[], elapsed);
    state.metrics.set("compute_miner_hashes_total", "Candidates hashed by the built-in solver.", &[], state.solver.hashed() as f64);
    request.output = output;
    axum::Json(request).into_response()
}

async fn allocate_route(State(state): State<Arc<MinerState>>, caller: Caller, body: Bytes) -> Response {
    let mut request: Allocate = match parse(&body) {
        Ok(r) => r,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err),
    };
    let validated = match request.validate() {
        Ok(v) => v,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err),
    };
    state.metrics.inc("compute_miner_allocate_requests_total", "Allocate requests.", &[], 1.0);
    request.output = state.allocations.handle(&caller.hotkey, validated).await;
    let active = state.allocations.active().await.len();
    state.metrics.set("compute_miner_allocations_active", "Active allocations.", &[], active as f64);
    // The request echoes back (as a bittensor synapse does), minus the renter's key material.
    request.public_key.clear();
    axum::Json(request).into_response()
}

async fn metrics_route(State(state): State<Arc<MinerState>>) -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn health_route(State(state): State<Arc<MinerState>>) -> Response {
    axum::Json(serde_json::json!({ "hotkey": state.hotkey.to_ss58(), "ok": true })).into_response()
}

/// A running miner.
pub struct MinerHandle {
    /// Where the axon listens.
    pub addr: SocketAddr,
    /// The miner's uid.
    pub uid: u16,
    allocations: Arc<Allocations>,
    stop_on_exit: bool,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MinerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinerHandle").field("addr", &self.addr).field("uid", &self.uid).finish_non_exhaustive()
    }
}

impl MinerHandle {
    /// The allocation manager (tests, status).
    pub fn allocations(&self) -> &Arc<Allocations> {
        &self.allocations
    }

    /// Stops serving; tears allocations down if `sandbox.stop_on_exit`.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if self.stop_on_exit {
            self.allocations.stop_all().await;
        }
    }
}

fn validate(config: &MinerConfig) -> Result<()> {
    if !(config.challenge_timeout_s.is_finite() && config.challenge_timeout_s > 0.0 && config.challenge_timeout_s <= 600.0) {
        return Err(ComputeError::Config("the challenge timeout must be between 0 and 600 seconds".into()));
    }
    if config.max_concurrent_challenges == 0 || config.max_challenges_per_caller == 0 {
        return Err(ComputeError::Config("challenge concurrency limits must be at least 1".into()));
    }
    if let Some(hashcat) = &config.hashcat {
        hashcat.validate()?;
    }
    config.access.policy_config()?;
    Ok(())
}

fn collect_specs(config: &MinerConfig, sandboxes: &Sandboxes, solver: &Solver) -> Result<specs::Specs> {
    let measure = MeasureConfig { sample_bytes: (config.specs_sample_mib.clamp(1, 1024) << 20) as usize, skip_speed_tests: false };
    let mut collected = specs::collect(&config.data_dir, &measure)?;
    collected.has_docker = sandboxes.capabilities().usable;
    collected.sandbox = Some(sandboxes.capabilities().report(sandboxes.config()));
    collected.solver = Some(specs::SolverSpecs {
        kernel: solver.kernel().name().to_string(),
        threads: solver.threads() as u32,
        hashcat: config.hashcat.is_some(),
    });
    Ok(collected)
}

fn sandbox_free_bytes(config: &SandboxConfig) -> u64 {
    // The sandbox directory may not exist yet: measure its nearest existing ancestor.
    let mut dir = config.dir.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return 0,
        }
    }
    specs::disk_usage(dir).map(|d| d.free).unwrap_or(0)
}

/// Starts the miner: checks registration, measures specs, re-adopts allocations, binds the
/// axon, publishes it, and starts the background refreshes.
pub async fn spawn(config: MinerConfig, hotkey: Keypair, chain: Arc<dyn Chain>) -> Result<MinerHandle> {
    validate(&config)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|err| ComputeError::io("creating", &config.data_dir, err))?;
    let metagraph = Metagraph::fetch(chain.as_ref(), config.netuid).await?;
    let uid = metagraph.uid_of(&hotkey.public()).ok_or_else(|| {
        ComputeError::Config(format!(
            "hotkey {} is not registered on subnet {}; register it first (`ganglion neuron register --netuid {}`)",
            hotkey.public(),
            config.netuid,
            config.netuid
        ))
    })?;
    let directory = Arc::new(SharedDirectory::default());
    directory.replace(access::directory_entries(&metagraph));
    let policy = config.access.policy(Arc::clone(&directory))?;
    let solver = Arc::new(Solver::new(&config.solver)?);
    if let Some(hashcat) = &config.hashcat
        && hashcat::find_binary(&hashcat.path).is_none() {
            return Err(ComputeError::Hashcat(format!(
                "{} not found; install it (scripts/install-hashcat) or drop the hashcat flags to use the built-in solver",
                hashcat.path.display()
            )));
        }
    let caps = sandbox::probe(&config.sandbox);
    if !caps.usable {
        tracing::warn!(target: "compute::miner", problems = ?caps.problems, "allocations are unavailable on this miner");
    }
    let sandboxes = Arc::new(Sandboxes::new(config.sandbox.clone(), caps));
    let collected = {
        let (config, sandboxes, solver) = (config.clone(), Arc::clone(&sandboxes), Arc::clone(&solver));
        tokio::task::spawn_blocking(move || collect_specs(&config, &sandboxes, &solver))
            .await
            .map_err(|err| ComputeError::Sandbox(format!("specs task failed: {err}")))??
    };
    let machine = Machine::from_specs(&collected, sandbox_free_bytes(&config.sandbox));
    let allocations = Allocations::open(Arc::clone(&sandboxes), config.data_dir.join(format!("allocations-{}-{}.json", config.netuid, hotkey.public().to_ss58())), machine).await?;
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(MinerState {
        hotkey: hotkey.public(),
        solver: Arc::clone(&solver),
        hashcat: config.hashcat.clone(),
        allocations: Arc::clone(&allocations),
        specs: RwLock::new(Arc::new(serde_json::to_string(&collected)?)),
        metrics: Arc::clone(&metrics),
        timeout: Duration::from_secs_f64(config.challenge_timeout_s),
        in_flight: Mutex::new((0, HashMap::new())),
        max_total: config.max_concurrent_challenges,
        max_per_caller: config.max_challenges_per_caller,
    });
    let verifier = Arc::new(Verifier::new(
        VerifierConfig { receiver: Some(hotkey.public()), max_body_bytes: protocol::MAX_REQUEST_BYTES, ..VerifierConfig::default() },
        policy,
    ));
    let protected = Router::new()
        .route(route::SPECS, post(specs_route))
        .route(route::CHALLENGE, post(challenge_route))
        .route(route::ALLOCATE, post(allocate_route));
    let router = epistula::protect(protected, verifier)
        .merge(Router::new().route("/metrics", get(metrics_route)).route("/health", get(health_route)))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.axon_ip, config.axon_port))
        .await
        .map_err(|err| ComputeError::io("binding the axon on", format!("{}:{}", config.axon_ip, config.axon_port), err))?;
    let addr = listener.local_addr().map_err(|err| ComputeError::io("reading the bound address of", "the axon", err))?;
    if config.serve_axon {
        publish_axon(chain.as_ref(), &hotkey, &config, &metagraph, uid, addr).await;
    }
    tracing::info!(target: "compute::miner", %addr, uid, netuid = config.netuid, kernel = solver.kernel().name(), threads = solver.threads(), "compute miner serving");

    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut stop = shutdown.subscribe();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(err) = served.await {
            tracing::error!(target: "compute::miner", %err, "server stopped");
        }
    }));
    let mut stop = shutdown.subscribe();
    let expiry = Arc::clone(&allocations);
    tasks.push(tokio::spawn(async move {
        expiry
            .run_expiry(Duration::from_secs(1), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    }));
    let mut stop = shutdown.subscribe();
    let refresh = {
        let (config, chain, directory, state, sandboxes) =
            (config.clone(), Arc::clone(&chain), Arc::clone(&directory), Arc::clone(&state), Arc::clone(&sandboxes));
        async move {
            let mut metagraph = metagraph;
            let mut last_specs = Instant::now();
            let tick = Duration::from_secs(config.metagraph_refresh_s.max(1));
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(tick) => {}
                }
                match metagraph.sync(chain.as_ref()).await {
                    Ok(true) => directory.replace(access::directory_entries(&metagraph)),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(target: "compute::miner", %err, "metagraph refresh failed"),
                }
                if last_specs.elapsed() >= Duration::from_secs(config.specs_refresh_s.max(60)) {
                    last_specs = Instant::now();
                    let (c, s, solver) = (config.clone(), Arc::clone(&sandboxes), Arc::clone(&state.solver));
                    if let Ok(Ok(fresh)) = tokio::task::spawn_blocking(move || collect_specs(&c, &s, &solver)).await {
                        state.allocations.set_machine(Machine::from_specs(&fresh, sandbox_free_bytes(&config.sandbox)));
                        if let Ok(text) = serde_json::to_string(&fresh) {
                            match state.specs.write() {
                                Ok(mut guard) => *guard = Arc::new(text),
                                Err(poisoned) => *poisoned.into_inner() = Arc::new(text),
                            }
                        }
                    }
                }
            }
        }
    };
    tasks.push(tokio::spawn(refresh));
    Ok(MinerHandle { addr, uid, allocations, stop_on_exit: config.sandbox.stop_on_exit, shutdown, tasks })
}

async fn publish_axon(chain: &dyn Chain, hotkey: &Keypair, config: &MinerConfig, metagraph: &Metagraph, uid: u16, addr: SocketAddr) {
    let ip = config.external_ip.unwrap_or_else(|| {
        if addr.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { addr.ip() }
    });
    let port = config.external_port.unwrap_or(addr.port());
    let current = metagraph.neuron(uid).and_then(|n| n.axon.clone());
    if current.as_ref().is_some_and(|a| a.ip == ip && a.port == port && a.version == version_as_int()) {
        return;
    }
    match chain.serve_axon(hotkey, config.netuid, ip, port, version_as_int(), 4).await {
        Ok(_) => tracing::info!(target: "compute::miner", %ip, port, "axon published"),
        Err(err) => tracing::warn!(target: "compute::miner", %err, "could not publish the axon; validators will not find this miner"),
    }
}

/// Runs the miner until `shutdown` resolves.
pub async fn run(config: MinerConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let handle = spawn(config, hotkey, chain).await?;
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}
