//! The validator loop every subnet runs ([`run_validator`]); a subnet implements only
//! [`Validator`]: its step (query, verify, score), its scores, what to forget when a uid
//! changes hands, its status rows and how to save its state.
//!
//! ```text
//!  loop until Shutdown:
//!    MetagraphSync::sync ─► on_hotkey_change(uid) for every uid that changed hands
//!    registered? permit? ─► (else: status phase, wait)
//!    Validator::step(ctx)                 (bounded by the subnet's deadlines; ctx.shutdown
//!          │                               lets a long step end early)
//!    WeightSetter::maybe_set(scores)  ─► on_weights_set
//!    Validator::save (atomic) ─► StatusBoard::update (/status, status.json)
//!    sleep(step_interval − elapsed)
//!  on Shutdown: finish the step in progress, save, Validator::shutdown (flush), final status
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ganglion_chain::{Chain, Metagraph};
use ganglion_core::keys::Keypair;

use crate::metrics::{LATENCY_BUCKETS, Metrics};
use crate::signals::{Shutdown, ShutdownTrigger};
use crate::state::StateError;
use crate::status::{MinerStatus, Phase, StatusBoard};
use crate::sync::{HotkeyChange, MetagraphSync};
use crate::weights::{WeightSetter, WeightsOutcome};

/// What a step sees.
pub struct StepContext<'a> {
    /// The chain.
    pub chain: &'a Arc<dyn Chain>,
    /// The metagraph, synced just before the step.
    pub metagraph: &'a Metagraph,
    /// The validator's uid.
    pub uid: u16,
    /// The best block.
    pub block: u64,
    /// Set when the node is stopping: a long step should wrap up.
    pub shutdown: Shutdown,
    /// The node's metrics.
    pub metrics: &'a Arc<Metrics>,
}

/// A subnet's validator.
#[async_trait]
pub trait Validator: Send {
    /// One step: query miners, verify, update scores. Errors are logged and the loop goes on.
    async fn step(&mut self, ctx: &StepContext<'_>) -> Result<(), String>;

    /// Raw scores (≥ 0) by uid: what weights are made of.
    fn scores(&self, metagraph: &Metagraph) -> Vec<(u16, f32)>;

    /// A uid changed hands (or appeared, or left): forget what was learned about it.
    fn on_hotkey_change(&mut self, change: &HotkeyChange);

    /// Weights were accepted at `block` (processed float weights by uid).
    async fn on_weights_set(&mut self, _metagraph: &Metagraph, _weights: &[(u16, f32)], _block: u64) {}

    /// The status: rows per miner and the subnet's own section.
    fn status(&self, metagraph: &Metagraph, weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value);

    /// Saves the state atomically (after every step and at shutdown).
    fn save(&mut self) -> Result<(), StateError>;

    /// Waits for a validator permit before stepping (miners refuse callers without one).
    fn needs_permit(&self) -> bool {
        true
    }

    /// Flushes what is buffered (records) before the process exits.
    async fn shutdown(&mut self) {}
}

/// The shortest pause between two steps.
const MIN_PAUSE: Duration = Duration::from_millis(10);
/// How often pending weight reveals are checked while a step runs (one block-number read
/// per check, the commit reads only once a reveal window may be open; short enough for a
/// local chain's reveal window of a few seconds).
const REVEAL_POLL: Duration = Duration::from_millis(250);

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Shortest time between the starts of two steps.
    pub step_interval: Duration,
    /// Wait after a failed sync or while unregistered.
    pub idle_interval: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings { step_interval: Duration::from_secs(2), idle_interval: Duration::from_secs(2) }
    }
}

/// The pieces of a running validator node the loop uses.
pub struct ValidatorNode {
    /// The chain.
    pub chain: Arc<dyn Chain>,
    /// Subnet.
    pub netuid: u16,
    /// The validator's hotkey.
    pub hotkey: Keypair,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Its status.
    pub board: Arc<StatusBoard>,
    /// Its weight setter.
    pub weights: WeightSetter,
    /// Loop settings.
    pub settings: LoopSettings,
}

/// Normalised weights that `scores` would give now (for status rows).
pub fn preview_weights(scores: &[(u16, f32)]) -> Vec<(u16, f32)> {
    let total: f32 = scores.iter().map(|(_, s)| if s.is_finite() && *s > 0.0 { *s } else { 0.0 }).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    scores.iter().filter(|(_, s)| s.is_finite() && *s > 0.0).map(|(u, s)| (*u, s / total)).collect()
}

fn publish<V: Validator>(node: &ValidatorNode, validator: &V, metagraph: &Metagraph, uid: Option<u16>, phase: Phase, steps: u64) {
    let preview = preview_weights(&validator.scores(metagraph));
    let (miners, details) = validator.status(metagraph, &preview);
    let weights = node.weights.status().clone();
    node.board.update(|s| {
        s.uid = uid;
        s.phase = phase;
        s.block = metagraph.block();
        s.steps = steps;
        s.weights = Some(weights);
        s.miners = miners;
        s.details = details;
    });
}

/// Runs `validator` until `shutdown`, then saves and flushes it and returns it.
pub async fn run_validator<V: Validator>(mut node: ValidatorNode, mut validator: V, mut shutdown: Shutdown) -> V {
    let metrics = node.metrics.clone();
    metrics.counter("ganglion_validator_steps_total", "Validator steps completed, by result.");
    metrics.histogram("ganglion_validator_step_seconds", "Duration of validator steps.", LATENCY_BUCKETS);
    let Some(mut sync) = MetagraphSync::connect(node.chain.clone(), node.netuid, metrics.clone(), &mut shutdown).await else {
        // Stopped before the chain answered: still save and flush what was loaded.
        if let Err(e) = validator.save() {
            tracing::error!(target: "ganglion::neuron", "cannot save the validator state at shutdown: {e}");
        }
        validator.shutdown().await;
        return validator;
    };
    let me = node.hotkey.public();
    let mut steps = 0u64;
    let mut warned = Phase::Starting;
    while !shutdown.is_set() {
        let started = Instant::now();
        match sync.sync().await {
            Ok(outcome) => {
                for change in &outcome.hotkey_changes {
                    validator.on_hotkey_change(change);
                }
                if outcome.changed {
                    node.weights.invalidate();
                }
            }
            Err(_) => {
                if shutdown.sleep(node.settings.idle_interval).await {
                    break;
                }
                continue;
            }
        }
        let metagraph = sync.metagraph().clone();
        let Some(uid) = metagraph.uid_of(&me) else {
            if warned != Phase::Unregistered {
                tracing::warn!(target: "ganglion::neuron", hotkey = %me, netuid = node.netuid, "this hotkey is not registered on the subnet; register it and stake (miners refuse unregistered callers)");
                warned = Phase::Unregistered;
            }
            publish(&node, &validator, &metagraph, None, Phase::Unregistered, steps);
            if shutdown.sleep(node.settings.idle_interval).await {
                break;
            }
            continue;
        };
        let permitted = metagraph.neuron(uid).is_some_and(|n| n.validator_permit);
        if validator.needs_permit() && !permitted {
            if warned != Phase::WaitingForPermit {
                tracing::info!(target: "ganglion::neuron", uid, netuid = node.netuid, "waiting for a validator permit (given to staked validators at an epoch); miners refuse callers without one");
                warned = Phase::WaitingForPermit;
            }
            publish(&node, &validator, &metagraph, Some(uid), Phase::WaitingForPermit, steps);
            if shutdown.sleep(node.settings.idle_interval).await {
                break;
            }
            continue;
        }
        warned = Phase::Running;
        let ctx = StepContext { chain: &node.chain, metagraph: &metagraph, uid, block: metagraph.block(), shutdown: shutdown.clone(), metrics: &metrics };
        // A step can outlast a reveal window (a long round on a short tempo): pending
        // reveals are polled beside it, so they go out while their window is open.
        let result = {
            let step = validator.step(&ctx);
            tokio::pin!(step);
            let mut reveals = tokio::time::interval(REVEAL_POLL);
            reveals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            reveals.tick().await;
            let mut last_polled = None;
            loop {
                tokio::select! {
                    result = &mut step => break result,
                    _ = reveals.tick(), if node.weights.has_pending_reveals() => {
                        match node.chain.block_number().await {
                            Ok(block) if last_polled != Some(block) => {
                                last_polled = Some(block);
                                node.weights.poll(node.chain.as_ref(), block).await;
                            }
                            _ => {}
                        }
                    }
                }
            }
        };
        steps += 1;
        metrics.observe("ganglion_validator_step_seconds", &[], started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => metrics.inc("ganglion_validator_steps_total", &[("result", "ok")]),
            Err(e) => {
                metrics.inc("ganglion_validator_steps_total", &[("result", "error")]);
                tracing::warn!(target: "ganglion::neuron", "step failed: {e}");
            }
        }
        let scores = validator.scores(&metagraph);
        if let WeightsOutcome::Set { block, weights, .. } = node.weights.maybe_set(node.chain.as_ref(), &metagraph, &scores).await {
            validator.on_weights_set(&metagraph, &weights, block).await;
        }
        if let Err(e) = validator.save() {
            tracing::warn!(target: "ganglion::neuron", "cannot save the validator state: {e}");
        }
        publish(&node, &validator, &metagraph, Some(uid), Phase::Running, steps);
        // Never a busy loop, whatever the configured interval.
        if shutdown.sleep(node.settings.step_interval.saturating_sub(started.elapsed()).max(MIN_PAUSE)).await {
            break;
        }
    }
    let metagraph = sync.metagraph().clone();
    let uid = metagraph.uid_of(&me);
    publish(&node, &validator, &metagraph, uid, Phase::Stopping, steps);
    if let Err(e) = validator.save() {
        tracing::error!(target: "ganglion::neuron", "cannot save the validator state at shutdown: {e}");
    }
    validator.shutdown().await;
    tracing::info!(target: "ganglion::neuron", steps, "validator stopped; state saved");
    validator
}

/// The validator loop ended without saving: it panicked, or did not stop in time. The
/// process should exit non-zero so that a supervisor (systemd's `Restart=on-failure`)
/// restarts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the validator loop {0}")]
pub struct ValidatorCrashed(String);

/// A validator loop running in the background.
#[derive(Debug)]
pub struct ValidatorTask<V> {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<V>,
}

impl<V: Validator + 'static> ValidatorTask<V> {
    /// Spawns [`run_validator`], stopping on `shutdown` or [`ValidatorTask::stop`].
    pub fn spawn(node: ValidatorNode, validator: V, shutdown: Option<Shutdown>) -> ValidatorTask<V> {
        let (trigger, token) = Shutdown::linked(shutdown);
        ValidatorTask { trigger, task: tokio::spawn(run_validator(node, validator, token)) }
    }

    /// A token that fires when this task is asked to stop.
    pub fn token(&self) -> Shutdown {
        self.trigger.token()
    }

    /// Asks the loop to stop and waits (at most `limit`) for it to save and flush.
    pub async fn stop(self, limit: Duration) -> Result<V, ValidatorCrashed> {
        self.trigger.trigger();
        let abort = self.task.abort_handle();
        match tokio::time::timeout(limit, self.task).await {
            Ok(joined) => joined.map_err(crashed),
            Err(_) => {
                tracing::error!(target: "ganglion::neuron", "the validator did not stop within {limit:?}; aborting it");
                abort.abort();
                Err(ValidatorCrashed(format!("did not stop within {limit:?}")))
            }
        }
    }

    /// Waits until the loop ends (after its shutdown token fired); an error if it panicked.
    pub async fn wait(self) -> Result<V, ValidatorCrashed> {
        let trigger = self.trigger;
        let joined = self.task.await;
        // Whatever serves alongside the loop (status server) follows it down.
        trigger.trigger();
        joined.map_err(crashed)
    }
}

/// How a validator process runs around its [`Validator`]: what [`run_node`] needs.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The subnet's name in the status (`"reward"`, `"evaluation"` …).
    pub subnet: &'static str,
    /// Subnet.
    pub netuid: u16,
    /// Blocks between weight settings.
    pub epoch_length: u64,
    /// `version_key` sent with weights (`None`: this build's).
    pub version_key: Option<u64>,
    /// Where `/status` and `/metrics` are served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Shortest time between the starts of two steps.
    pub step_interval: Duration,
    /// Wait after a failed sync or while unregistered.
    pub idle_interval: Duration,
    /// `status.json` and the pending weight commits (`weight_commits.json`) go here.
    pub data_dir: std::path::PathBuf,
}

/// Why [`run_node`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The status server could not bind.
    #[error("binding the status server on {addr}: {reason}")]
    Bind {
        /// Where.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The loop crashed.
    #[error(transparent)]
    Crashed(#[from] ValidatorCrashed),
}

/// Runs `validator` as a whole node until `shutdown`: the runtime's loop ([`run_validator`]:
/// metagraph sync, steps, weights through a [`WeightSetter`] that picks plain or
/// commit-reveal from the chain and keeps pending reveals in `weight_commits.json` across
/// restarts), its status in `status.json`, and `/status` and `/metrics` when asked. Returns
/// the validator once it has stopped and saved.
pub async fn run_node<V: Validator + 'static>(
    node: NodeSettings,
    hotkey: Keypair,
    chain: Arc<dyn Chain>,
    validator: V,
    shutdown: Shutdown,
) -> Result<V, NodeError> {
    use crate::status::{NodeStatus, Role};
    use crate::weights::PlainWeights;
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(StatusBoard::new(
        NodeStatus::new(node.subnet, Role::Validator, node.netuid, hotkey.public().to_ss58()),
        Some(node.data_dir.join("status.json")),
    ));
    let weights = WeightSetter::new(node.netuid, hotkey.clone(), node.epoch_length, node.version_key, Box::new(PlainWeights), metrics.clone())
        .with_state_file(node.data_dir.join("weight_commits.json"));
    let runtime_node = ValidatorNode {
        chain,
        netuid: node.netuid,
        hotkey,
        metrics: metrics.clone(),
        board: board.clone(),
        weights,
        settings: LoopSettings { step_interval: node.step_interval, idle_interval: node.idle_interval },
    };
    let task = ValidatorTask::spawn(runtime_node, validator, Some(shutdown));
    let _server = match node.metrics_listen {
        Some(listen) => {
            let router = crate::server::routes(board, metrics);
            match crate::server::serve(listen, router, task.token()).await {
                Ok((addr, server)) => {
                    tracing::info!(target: "ganglion::neuron", subnet = node.subnet, %addr, "status at /status, metrics at /metrics");
                    Some(server)
                }
                Err(e) => {
                    let _ = task.stop(Duration::from_secs(30)).await;
                    return Err(NodeError::Bind { addr: listen, reason: e.to_string() });
                }
            }
        }
        None => None,
    };
    Ok(task.wait().await?)
}

fn crashed(e: tokio::task::JoinError) -> ValidatorCrashed {
    let reason = if e.is_panic() {
        let payload = e.into_panic();
        let text = payload.downcast_ref::<&str>().map(|s| (*s).to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default();
        format!("panicked: {text}")
    } else {
        "was cancelled".to_string()
    };
    tracing::error!(target: "ganglion::neuron", "the validator loop {reason}");
    ValidatorCrashed(reason)
}
