//! The compute miner: serves `/Specs`, `/Challenge` and `/Allocate` behind Epistula and the
//! caller policy, solves challenges with the built-in solver (or hashcat) and runs
//! allocations in the sandbox. The runtime provides the rest: the axon
//! ([`ganglion_neuron::axon::Axon`]: bind, Epistula verifier over a caller table refreshed
//! from the metagraph, `serve_axon` at start and whenever the chain's copy differs, full
//! refetch after sync errors), `/status` (a `NodeStatus` with `role: "miner"`; `details`:
//! `challenges_solved`, `challenges_failed`, `allocations_active`, `solver`) and `/metrics`
//! on the axon's address for loopback callers only, and the [`Shutdown`] token: on it the miner stops accepting
//! requests, lets a challenge being solved finish (up to the challenge timeout), and stops
//! its background tasks. Allocations keep running (and are re-adopted on restart) unless
//! `sandbox.stop_on_exit`.
//!
//! Concurrency: challenges of different callers run in parallel on the solver pool, which
//! shares the cores fairly among the callers and searches one caller's challenges one after
//! another (a validator sends a round's challenges together with one deadline, see
//! [`crate::solver`]); a global cap and a per-caller cap bound the work any number of
//! validators (or a flooding caller that passed the policy) can queue. The per-caller cap's
//! default ([`crate::config::DEFAULT_MAX_CHALLENGES_PER_CALLER`]) admits the most
//! challenges a validator keeps in flight ([`crate::config::MAX_CHALLENGES_PER_ROUND`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ganglion_chain::Chain;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_neuron::axon::{Axon, attach_chain};
use ganglion_neuron::metrics::LATENCY_BUCKETS;
use ganglion_neuron::signals::ShutdownTrigger;
use ganglion_neuron::status::{Phase, Role};
use ganglion_neuron::{Metrics, NodeStatus, Shutdown, StatusBoard};
use ganglion_protocol::epistula::{self, Caller, VerifierConfig};

use crate::allocation::{Allocations, Machine};
pub use crate::config::MinerConfig;
pub use crate::config::default_data_dir;
use crate::config::ComputeConfig;
use crate::error::{ComputeError, Result};
use crate::hashcat::{self, HashcatConfig};
use crate::protocol::{self, Allocate, AllocateOutput, AllocateRequest, Challenge, ChallengeOutput, Specs, route};
use crate::sandbox::{self, SandboxConfig, Sandboxes};
use crate::solver::Solver;
use crate::specs::{self, MeasureConfig};

/// Post-processes the measured specs before the miner serves them. The production miner
/// serves them as measured; the seam exists so that tools built on this library (the red
/// team's dishonest miners, tests) can change what is served without a fork of the miner.
pub trait SpecsSource: Send + Sync {
    /// The document to serve, given what was measured.
    fn specs(&self, measured: specs::Specs) -> specs::Specs;
}

/// Answers a validated `/Allocate` request. The production miner uses the sandbox
/// allocation manager ([`Allocations`]); the seam lets tools replace the answerer.
#[async_trait::async_trait]
pub trait AllocateService: Send + Sync {
    /// Serves one validated request from `caller`.
    async fn handle(&self, caller: &PublicKey, request: AllocateRequest) -> AllocateOutput;
}

#[async_trait::async_trait]
impl AllocateService for Allocations {
    async fn handle(&self, caller: &PublicKey, request: AllocateRequest) -> AllocateOutput {
        Allocations::handle(self, caller, request).await
    }
}

/// Answers a validated challenge by `deadline` with the password. The production miner uses
/// the built-in solver (or hashcat); the seam lets tools replace the work.
#[async_trait::async_trait]
pub trait ChallengeSolver: Send + Sync {
    /// The password of `spec`, or why there is none.
    async fn solve(&self, spec: &crate::pow::ChallengeSpec, deadline: Instant) -> Result<String>;
}

/// Parts of a miner supplied from outside ([`spawn_with`]); `Default` is the production miner.
#[derive(Default, Clone)]
pub struct MinerParts {
    /// The solver (None: a new one from `[miner.solver]`). Miners given the same solver share
    /// its threads fairly, as one machine would.
    pub solver: Option<Arc<Solver>>,
    /// Changes the served specs (None: served as measured).
    pub specs: Option<Arc<dyn SpecsSource>>,
    /// Answers `/Allocate` (None: the sandbox allocation manager).
    pub allocate: Option<Arc<dyn AllocateService>>,
    /// Answers `/Challenge` (None: the solver above, or hashcat when configured).
    pub challenge: Option<Arc<dyn ChallengeSolver>>,
}

impl std::fmt::Debug for MinerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinerParts")
            .field("solver", &self.solver.is_some())
            .field("specs", &self.specs.is_some())
            .field("allocate", &self.allocate.is_some())
            .field("challenge", &self.challenge.is_some())
            .finish()
    }
}

struct MinerState {
    hotkey: PublicKey,
    solver: Arc<Solver>,
    hashcat: Option<HashcatConfig>,
    allocations: Arc<Allocations>,
    allocate: Arc<dyn AllocateService>,
    challenge: Option<Arc<dyn ChallengeSolver>>,
    specs: RwLock<Arc<String>>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    in_flight: Mutex<(usize, HashMap<PublicKey, usize>)>,
    max_total: usize,
    max_per_caller: usize,
    /// Challenges answered with a password / without one (status).
    solved: AtomicU64,
    failed: AtomicU64,
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
    state.metrics.inc("compute_miner_specs_requests_total", &[]);
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
            state.metrics.inc("compute_miner_challenges_total", &[("outcome", "invalid")]);
            return error_response(StatusCode::BAD_REQUEST, &err);
        }
    };
    let Some(_slot) = state.slot(caller.hotkey) else {
        state.metrics.inc("compute_miner_challenges_total", &[("outcome", "busy")]);
        let err = ComputeError::Peer { peer: "miner".into(), reason: "too many challenges in flight; retry later".into() };
        return error_response(StatusCode::SERVICE_UNAVAILABLE, &err);
    };
    let started = Instant::now();
    let deadline = started + state.timeout;
    let outcome = match (&state.challenge, &state.hashcat) {
        (Some(solver), _) => solver.solve(&spec, deadline).await,
        (None, Some(config)) => hashcat::solve(config, &spec, deadline).await,
        // One caller's challenges are searched one after another (see `solver`).
        (None, None) => match state.solver.solve_in(Solver::group_of(caller.hotkey.as_bytes()), &spec, deadline) {
            Ok(future) => future.await.map(|solution| solution.password),
            Err(err) => Err(err),
        },
    };
    let elapsed = started.elapsed().as_secs_f64();
    let (label, output) = match outcome {
        Ok(password) => ("solved", ChallengeOutput { password: Some(password), local_execution_time: Some(elapsed), error: None }),
        Err(err) => ("failed", ChallengeOutput { password: None, local_execution_time: Some(elapsed), error: Some(err.to_string()) }),
    };
    state.metrics.inc("compute_miner_challenges_total", &[("outcome", label)]);
    state.metrics.observe("compute_miner_solve_seconds", &[("outcome", label)], elapsed);
    state.metrics.set("compute_miner_hashes", &[], state.solver.hashed() as f64);
    let counter = if label == "solved" { &state.solved } else { &state.failed };
    counter.fetch_add(1, Ordering::Relaxed);
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
    state.metrics.inc("compute_miner_allocate_requests_total", &[]);
    request.output = state.allocate.handle(&caller.hotkey, validated).await;
    let active = state.allocations.active().await.len();
    state.metrics.set("compute_miner_allocations_active", &[], active as f64);
    // The request echoes back (as a bittensor synapse does), minus the renter's key material.
    request.public_key.clear();
    axum::Json(request).into_response()
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
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    stop_on_exit: bool,
    trigger: ShutdownTrigger,
    server: tokio::task::JoinHandle<()>,
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

    /// The current status (also at `GET /status` on the axon).
    pub fn status(&self) -> NodeStatus {
        self.board.get()
    }

    /// The metrics registry (also at `GET /metrics` on the axon).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A token that fires when the miner is asked to stop.
    pub fn token(&self) -> Shutdown {
        self.trigger.token()
    }

    /// Stops the miner (see [`MinerHandle::wait`]).
    pub async fn shutdown(self) {
        self.trigger.trigger();
        self.wait().await;
    }

    /// Waits until the miner has stopped (after the shutdown token given to [`spawn`]
    /// fired): in-flight requests drain, background tasks end, allocations are torn down
    /// only with `sandbox.stop_on_exit`.
    pub async fn wait(self) {
        let mut token = self.trigger.token();
        token.wait().await;
        let _ = self.server.await;
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if self.stop_on_exit {
            self.allocations.stop_all().await;
        }
        let active = self.allocations.active().await.len();
        self.board.update(|s| {
            s.phase = Phase::Stopping;
            s.details["allocations_active"] = active.into();
        });
        tracing::info!(target: "compute::miner", uid = self.uid, "compute miner stopped");
    }
}

fn collect_specs(data_dir: &std::path::Path, config: &MinerConfig, sandboxes: &Sandboxes, solver: &Solver) -> Result<specs::Specs> {
    let measure = MeasureConfig { sample_bytes: (config.specs_sample_mib.clamp(1, 1024) << 20) as usize, skip_speed_tests: false };
    let mut collected = specs::collect(data_dir, &measure)?;
    collected.has_docker = sandboxes.capabilities().usable;
    collected.sandbox = Some(sandboxes.capabilities().report(sandboxes.config()));
    collected.solver = Some(specs::SolverSpecs {
        kernel: solver.kernel().name().to_string(),
        threads: solver.threads() as u32,
        hashcat: config.hashcat().is_some(),
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

fn describe_metrics(metrics: &Metrics) {
    metrics.counter("compute_miner_challenges_total", "Challenges by outcome (solved, failed, invalid, busy).");
    metrics.histogram("compute_miner_solve_seconds", "Time spent solving a challenge, by outcome.", LATENCY_BUCKETS);
    metrics.gauge("compute_miner_hashes", "Candidates hashed by the built-in solver since start.");
    metrics.counter("compute_miner_specs_requests_total", "Specs requests answered.");
    metrics.counter("compute_miner_allocate_requests_total", "Allocate requests.");
    metrics.gauge("compute_miner_allocations_active", "Active allocations.");
}

/// Starts the miner: checks registration, measures specs, re-adopts allocations, binds the
/// axon, and runs the chain task (caller table, `serve_axon`), the specs refresh and the
/// allocation expiry in the background until `shutdown` (or [`MinerHandle::shutdown`]).
pub async fn spawn(config: &ComputeConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: Option<Shutdown>) -> Result<MinerHandle> {
    spawn_with(config, hotkey, chain, shutdown, MinerParts::default()).await
}

/// [`spawn`] with some parts supplied from outside ([`MinerParts`]).
pub async fn spawn_with(config: &ComputeConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: Option<Shutdown>, parts: MinerParts) -> Result<MinerHandle> {
    config.validate()?;
    let miner = config.miner.clone();
    miner.validate()?;
    let netuid = config.netuid;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|err| ComputeError::io("creating", &data_dir, err))?;
    let metrics = Arc::new(Metrics::new());
    describe_metrics(&metrics);
    // Refuse early (before measuring the machine): allocations are bound to the uid.
    let registered = ganglion_chain::Metagraph::fetch(chain.as_ref(), netuid).await?.uid_of(&hotkey.public());
    let Some(uid) = registered else {
        return Err(ComputeError::Config(format!(
            "hotkey {} is not registered on subnet {netuid}; register it first (`ganglion neuron register --netuid {netuid}`)",
            hotkey.public(),
        )));
    };
    let solver = match &parts.solver {
        Some(solver) => Arc::clone(solver),
        None => Arc::new(Solver::new(&miner.solver)?),
    };
    let specs_source = parts.specs.clone();
    let hashcat = miner.hashcat();
    if let Some(h) = &hashcat
        && hashcat::find_binary(&h.path).is_none()
    {
        return Err(ComputeError::Hashcat(format!(
            "{} not found; install it (scripts/install-hashcat) or drop the hashcat flags to use the built-in solver",
            h.path.display()
        )));
    }
    let caps = sandbox::probe(&miner.sandbox);
    if !caps.usable {
        tracing::warn!(target: "compute::miner", problems = ?caps.problems, "allocations are unavailable on this miner");
    }
    let sandboxes = Arc::new(Sandboxes::new(miner.sandbox.clone(), caps));
    let collected = {
        let (dir, m, sandboxes, solver) = (data_dir.clone(), miner.clone(), Arc::clone(&sandboxes), Arc::clone(&solver));
        tokio::task::spawn_blocking(move || collect_specs(&dir, &m, &sandboxes, &solver))
            .await
            .map_err(|err| ComputeError::Sandbox(format!("specs task failed: {err}")))??
    };
    // Allocations are admitted against what was measured; only the served document changes.
    let machine = Machine::from_specs(&collected, sandbox_free_bytes(&miner.sandbox));
    let collected = match &specs_source {
        Some(source) => source.specs(collected),
        None => collected,
    };
    let allocations = Allocations::open(Arc::clone(&sandboxes), data_dir.join(format!("allocations-{netuid}-{}.json", hotkey.public().to_ss58())), machine).await?;
    let axon = Axon::bind(
        &config.axon,
        &hotkey,
        miner.access.policy_config()?,
        VerifierConfig { max_body_bytes: protocol::MAX_REQUEST_BYTES, ..VerifierConfig::default() },
    )
    .await
    .map_err(|err| ComputeError::Config(err.to_string()))?;
    let addr = axon.addr();
    let state = Arc::new(MinerState {
        hotkey: hotkey.public(),
        solver: Arc::clone(&solver),
        hashcat: hashcat.clone(),
        allocations: Arc::clone(&allocations),
        allocate: parts.allocate.clone().unwrap_or_else(|| Arc::clone(&allocations) as Arc<dyn AllocateService>),
        challenge: parts.challenge.clone(),
        specs: RwLock::new(Arc::new(serde_json::to_string(&collected)?)),
        metrics: Arc::clone(&metrics),
        timeout: miner.challenge_timeout,
        in_flight: Mutex::new((0, HashMap::new())),
        max_total: miner.max_concurrent_challenges,
        max_per_caller: miner.max_challenges_per_caller,
        solved: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let active = allocations.active().await.len();
    metrics.set("compute_miner_allocations_active", &[], active as f64);
    let mut status = NodeStatus::new("compute", Role::Miner, netuid, hotkey.public().to_ss58());
    status.details = serde_json::json!({
        "challenges_solved": 0,
        "challenges_failed": 0,
        "allocations_active": active,
        "axon": axon.external().to_string(),
        "solver": { "kernel": solver.kernel().name(), "threads": solver.threads(), "hashcat": hashcat.is_some() },
    });
    let board = Arc::new(StatusBoard::new(status, None));

    let protected = Router::new()
        .route(route::SPECS, post(specs_route))
        .route(route::CHALLENGE, post(challenge_route))
        .route(route::ALLOCATE, post(allocate_route));
    let router = epistula::protect(protected, axon.verifier())
        .merge(Router::new().route("/health", get(health_route)))
        .with_state(Arc::clone(&state))
        .merge(ganglion_neuron::server::loopback_routes(board.clone(), metrics.clone()));

    let (trigger, token) = Shutdown::linked(shutdown);
    tracing::info!(target: "compute::miner", %addr, external = %axon.external(), uid, netuid, kernel = solver.kernel().name(), threads = solver.threads(), "compute miner serving");
    let mut tasks = Vec::new();
    // The status follows each metagraph sync (the runtime fills uid, block and phase; the
    // subnet its counters and allocations).
    let on_sync = {
        let (board, state) = (board.clone(), state.clone());
        move |_: &ganglion_chain::Metagraph, _: &ganglion_neuron::sync::SyncOutcome| {
            let (board, state) = (board.clone(), state.clone());
            tokio::spawn(async move {
                let active = state.allocations.active().await.len();
                state.metrics.set("compute_miner_allocations_active", &[], active as f64);
                let (solved, failed) = (state.solved.load(Ordering::Relaxed), state.failed.load(Ordering::Relaxed));
                board.update(|s| {
                    s.steps = solved + failed;
                    s.details["challenges_solved"] = solved.into();
                    s.details["challenges_failed"] = failed.into();
                    s.details["allocations_active"] = active.into();
                });
            });
        }
    };
    let link = attach_chain(&axon, chain, netuid, &hotkey, config.axon.serve, config.neuron.sync_interval, metrics.clone(), board.clone(), token.clone(), on_sync).await?;
    tasks.push(link.task);
    // A challenge being solved gets its whole budget to finish.
    let server = axon.serve(router, token.clone(), miner.challenge_timeout + Duration::from_secs(1));
    let expiry = Arc::clone(&allocations);
    let mut stop = token.clone();
    tasks.push(tokio::spawn(async move {
        expiry.run_expiry(Duration::from_secs(1), async move { stop.wait().await }).await;
    }));
    let refresh = {
        let (miner, state, sandboxes, mut stop, specs_source) = (miner.clone(), Arc::clone(&state), Arc::clone(&sandboxes), token.clone(), specs_source.clone());
        async move {
            let every = miner.specs_refresh.max(Duration::from_secs(60));
            while !stop.sleep(every).await {
                let (dir, m, s, solver) = (data_dir.clone(), miner.clone(), Arc::clone(&sandboxes), Arc::clone(&state.solver));
                if let Ok(Ok(fresh)) = tokio::task::spawn_blocking(move || collect_specs(&dir, &m, &s, &solver)).await {
                    state.allocations.set_machine(Machine::from_specs(&fresh, sandbox_free_bytes(&miner.sandbox)));
                    let fresh = match &specs_source {
                        Some(source) => source.specs(fresh),
                        None => fresh,
                    };
                    if let Ok(text) = serde_json::to_string(&fresh) {
                        match state.specs.write() {
                            Ok(mut guard) => *guard = Arc::new(text),
                            Err(poisoned) => *poisoned.into_inner() = Arc::new(text),
                        }
                    }
                }
            }
        }
    };
    tasks.push(tokio::spawn(refresh));
    Ok(MinerHandle { addr, uid, allocations, board, metrics, stop_on_exit: miner.sandbox.stop_on_exit, trigger, server, tasks })
}

/// Runs the miner until `shutdown` fires.
pub async fn run(config: &ComputeConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: Shutdown) -> Result<()> {
    let handle = spawn(config, hotkey, chain, Some(shutdown)).await?;
    handle.wait().await;
    Ok(())
}
