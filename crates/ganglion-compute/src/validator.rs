//! The compute validator: rounds of challenges, specs collection, scoring, weights.
//!
//! A round runs every `randint(round_blocks_min, round_blocks_max)` blocks (the original's
//! 50–80), counted from the end of the previous round, and at least once per epoch (the
//! range is shortened to `epoch_length` when it is longer). Until the validator holds a
//! validator permit it challenges nobody (miners would refuse it). A round queries every serving, non-validator, non-allocated uid that the access
//! policy admits, in parallel (at most `batch_size` at once), each with a CSPRNG challenge
//! at that miner's adapted difficulty, and measures the round trip itself. Every challenge
//! is stored in the records store (`ChallengeRecord`); specs are fetched on the first round
//! and every `specs_every_rounds` rounds after (`SpecsRecord`); after each round every uid
//! is scored ([`crate::scoring`]) and the scores are stored (`ScoreRecord`, components in
//! JSON for the hub's difficulty and score series). Weights are set once `epoch_length`
//! blocks have passed since the last time: scores of validators are zero, only one uid
//! per IP counts (configurable, because a local network runs every miner on 127.0.0.1),
//! the rest is L1-normalised and converted with `ganglion_yuma::weights`.
//!
//! Allocated miners are the ones with an active reservation in this validator's records
//! store (made by `ganglion compute allocate`); they are not challenged and get the
//! allocation score. Reservations past their end are marked `expired` there. When the
//! renter is this validator's own hotkey, each round also asks the miner whether the
//! sandbox still runs and marks the reservation `ended` if not.
//!
//! `GET /status` ([`ValidatorStatus`] as JSON: per-uid `score`, `success_rate`,
//! `difficulty`, `mean_elapsed_s`, weights) and `GET /metrics` are served on `metrics_port`.
//! Loopback axons are exempt from the one-uid-per-IP rule (a local network).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use ganglion_chain::{Chain, Metagraph, NeuronInfo, RAO_PER_TAO};
use ganglion_core::keys::Keypair;
use ganglion_protocol::policy::SharedDirectory;
use ganglion_records::{AllocationRecord, ChallengeRecord, Records, ScoreRecord, SpecsRecord};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::access::{self, AccessConfig};
use crate::client::{MinerClient, axon_url};
use crate::error::{ComputeError, Result};
use crate::metrics::Metrics;
use crate::pow::{self, AdaptRule, ChallengeStats, Outcome, STATS_WINDOW};
use crate::protocol::{Allocate, Challenge, Specs, route};
use crate::scoring::{self, Components, ScoreInput, ScoringConfig, UidScore};

/// Validator settings (TOML section `[validator]`; flags in `ganglion validator compute --help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// `--netuid`.
    pub netuid: u16,
    /// Where the status file (and by default the records store) lives.
    pub data_dir: PathBuf,
    /// `--database.url`: the records store (default `sqlite:<data_dir>/records.db`).
    pub records_url: Option<String>,
    /// `--validator.difficulty.min`.
    pub difficulty_min: u8,
    /// `--validator.difficulty.max`.
    pub difficulty_max: u8,
    /// `--validator.difficulty.rule`: a or b.
    pub adapt_rule: AdaptRule,
    /// `--validator.challenge.timeout`, seconds (the original's 30).
    pub challenge_timeout_s: f64,
    /// `--validator.round.blocks.min`.
    pub round_blocks_min: u64,
    /// `--validator.round.blocks.max`.
    pub round_blocks_max: u64,
    /// `--neuron.epoch_length`: blocks between weight settings.
    pub epoch_length: u64,
    /// Scoring version and weights.
    pub scoring: ScoringConfig,
    /// Count only the best uid of each IP.
    pub one_uid_per_ip: bool,
    /// Neurons with a permit, at least this stake (TAO) and dividends or validator trust
    /// are validators and score zero.
    pub validator_stake_tao: f64,
    /// Fetch specs every this many rounds (and on the first).
    pub specs_every_rounds: u32,
    /// Which miners to query (hotkey/coldkey lists).
    pub access: AccessConfig,
    /// `--metrics.port`: `/status` and `/metrics` (None: not served).
    pub metrics_port: Option<u16>,
    /// Address of the status server.
    pub metrics_ip: IpAddr,
    /// Most miners queried at once.
    pub batch_size: usize,
    /// `version_key` of `set_weights` (default: the subnet's `weights_version`).
    pub version_key: Option<u64>,
    /// How often the chain's block number is polled, milliseconds.
    pub block_poll_ms: u64,
    /// Challenge nobody until this validator holds a validator permit: miners refuse
    /// callers without one by default, and those refusals would be stored as the miners'
    /// failures.
    pub wait_for_permit: bool,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            netuid: 27,
            data_dir: crate::miner::default_data_dir(),
            records_url: None,
            difficulty_min: pow::DEFAULT_DIFFICULTY_RANGE.0,
            difficulty_max: pow::DEFAULT_DIFFICULTY_RANGE.1,
            adapt_rule: AdaptRule::B,
            challenge_timeout_s: 30.0,
            round_blocks_min: 50,
            round_blocks_max: 80,
            epoch_length: 100,
            scoring: ScoringConfig::default(),
            one_uid_per_ip: true,
            validator_stake_tao: 1024.0,
            specs_every_rounds: 10,
            access: AccessConfig::default(),
            metrics_port: None,
            metrics_ip: IpAddr::from([127, 0, 0, 1]),
            batch_size: 256,
            version_key: None,
            block_poll_ms: 1000,
            wait_for_permit: true,
        }
    }
}

impl ValidatorConfig {
    fn validate(&mut self) -> Result<()> {
        let (min, max) = (self.difficulty_min, self.difficulty_max);
        if !(pow::MIN_DIFFICULTY..=pow::MAX_DIFFICULTY).contains(&min) || !(pow::MIN_DIFFICULTY..=pow::MAX_DIFFICULTY).contains(&max) || min > max {
            return Err(ComputeError::Config(format!("the difficulty range must lie within 1..=12 with min ≤ max, not {min}..={max}")));
        }
        if !(self.challenge_timeout_s.is_finite() && self.challenge_timeout_s > 0.0 && self.challenge_timeout_s <= 600.0) {
            return Err(ComputeError::Config("the challenge timeout must be between 0 and 600 seconds".into()));
        }
        if self.round_blocks_min == 0 || self.round_blocks_min > self.round_blocks_max {
            return Err(ComputeError::Config("round blocks: need 1 ≤ min ≤ max".into()));
        }
        if self.batch_size == 0 || self.epoch_length == 0 {
            return Err(ComputeError::Config("batch size and epoch length must be at least 1".into()));
        }
        // At least one round per epoch, so that every weight setting reflects fresh
        // challenges (with a short local epoch the default 50–80 blocks would not).
        if self.round_blocks_max > self.epoch_length {
            self.round_blocks_max = self.epoch_length;
            self.round_blocks_min = self.round_blocks_min.min(self.round_blocks_max);
            tracing::info!(target: "compute::validator", min = self.round_blocks_min, max = self.round_blocks_max, "round spacing shortened to fit the epoch");
        }
        self.scoring.effective_weights().validate().map_err(ComputeError::Config)?;
        self.access.policy_config()?;
        // The score's time and difficulty terms use this validator's own timeout and range.
        self.scoring.timeout_s = self.challenge_timeout_s;
        self.scoring.min_difficulty = min;
        self.scoring.max_difficulty = max;
        Ok(())
    }
}

/// The last challenge of a miner, for the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastChallenge {
    /// Solved in time.
    pub success: bool,
    /// Difficulty.
    pub difficulty: u8,
    /// Round trip, ms.
    pub elapsed_ms: f64,
    /// Failure cause.
    pub cause: Option<String>,
}

/// One uid in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerStatus {
    /// Uid.
    pub uid: u16,
    /// Hotkey.
    pub hotkey: String,
    /// Normalised score in [0, 1].
    pub score: f64,
    /// The score before normalisation.
    pub total: f64,
    /// Weight of the last computation (after the IP and validator rules).
    pub weight: f64,
    /// Successes / attempts in the window (0–1).
    pub success_rate: f64,
    /// Challenges in the window.
    pub attempts: u32,
    /// The difficulty this miner is challenged at: that of its last challenge (before any,
    /// the one it will get first).
    pub difficulty: u8,
    /// Mean difficulty of the last 20 successes.
    pub difficulty_avg: f64,
    /// Difficulty of the next challenge.
    pub next_difficulty: u8,
    /// Mean seconds of the successful challenges.
    pub mean_elapsed_s: f64,
    /// The last challenge.
    pub last: Option<LastChallenge>,
    /// Allocated through this validator's records store.
    pub allocated: bool,
    /// Reports a working sandbox.
    pub has_sandbox: bool,
    /// Counted as a validator (scores zero).
    pub is_validator: bool,
}

/// What `GET /status` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidatorStatus {
    /// Subnet.
    pub netuid: u16,
    /// This validator's hotkey.
    pub hotkey: String,
    /// Its uid.
    pub uid: Option<u16>,
    /// Last block seen.
    pub block: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Block of the last round.
    pub last_round_block: Option<u64>,
    /// Block of the next round.
    pub next_round_block: Option<u64>,
    /// Block of the last successful `set_weights`.
    pub last_weights_block: Option<u64>,
    /// Last `set_weights` error, if the last attempt failed.
    pub last_weights_error: Option<String>,
    /// No round yet because this validator has no validator permit.
    pub waiting_for_permit: bool,
    /// Per uid.
    pub miners: Vec<MinerStatus>,
}

/// A running validator.
pub struct ValidatorHandle {
    /// Where `/status` and `/metrics` are served.
    pub addr: Option<SocketAddr>,
    status: Arc<RwLock<ValidatorStatus>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ValidatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl ValidatorHandle {
    /// The current status (per-uid scores for the localnet table).
    pub fn status(&self) -> ValidatorStatus {
        match self.status.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stops the validator (the round in progress is abandoned).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

struct Validator {
    config: ValidatorConfig,
    hotkey: Keypair,
    chain: Arc<dyn Chain>,
    records: Records,
    client: MinerClient,
    history: HashMap<String, VecDeque<Outcome>>,
    last: HashMap<String, LastChallenge>,
    has_sandbox: HashMap<String, bool>,
    /// Hotkeys that sent their specs since the last full refresh: the others (new, or
    /// unreachable so far) are asked every round.
    specs_received: HashSet<String>,
    status: Arc<RwLock<ValidatorStatus>>,
    metrics: Arc<Metrics>,
    rounds: u64,
    last_weights_block: Option<u64>,
    last_weights_attempt: Option<u64>,
    weights: HashMap<u16, f64>,
    /// When this process first saw its validator permit.
    permit_since: Option<std::time::Instant>,
}

/// How long a miner has to send its specs (it serves a cached document).
const SPECS_TIMEOUT: Duration = Duration::from_secs(10);

/// For this long after the validator first holds its permit, a miner's refusal for lack of
/// a permit or registration is not held against the miner: miners learn of permits when
/// they next refresh their metagraph (every 12 s by default), so the first challenges can
/// be refused through no fault of theirs.
const PERMIT_GRACE: Duration = Duration::from_secs(60);

/// Whether a call failed because the miner does not (yet) know this validator's permit or
/// registration (HTTP 403 from its caller policy).
fn refused_for_standing(error: &str) -> bool {
    error.contains("HTTP 403") && (error.contains("no validator permit") || error.contains("not registered"))
}

/// The original's rule (a permit and at least `stake_tao`), narrowed to neurons that
/// actually validate (they earn dividends or validator trust): a miner's own emission is
/// staked on its hotkey, and on a small subnet every neuron holds a permit, so a long-lived
/// honest miner would otherwise cross the threshold and drop to zero.
fn counts_as_validator(neuron: &NeuronInfo, stake_tao: f64) -> bool {
    neuron.validator_permit
        && neuron.stake as f64 >= stake_tao * RAO_PER_TAO as f64
        && (neuron.dividends > 0 || neuron.validator_trust > 0)
}

fn now_ms() -> i64 {
    ganglion_protocol::epistula::now_ms() as i64
}

fn records_error(err: ganglion_records::RecordsError) -> ComputeError {
    ComputeError::Records(err.to_string())
}

impl Validator {
    fn is_validator(&self, neuron: &NeuronInfo, own: Option<u16>) -> bool {
        Some(neuron.uid) == own || counts_as_validator(neuron, self.config.validator_stake_tao)
    }

    async fn load_history(&mut self, hotkey: &str) {
        if self.history.contains_key(hotkey) {
            return;
        }
        let rows = self.records.recent_challenges(self.config.netuid, hotkey, STATS_WINDOW as u32).await.unwrap_or_default();
        let outcomes: VecDeque<Outcome> = rows
            .iter()
            .filter(|r| r.validator_hotkey == self.hotkey.public().to_ss58())
            .map(|r| Outcome { success: r.success, difficulty: r.difficulty, elapsed_s: r.elapsed_ms / 1000.0 })
            .collect();
        self.history.insert(hotkey.to_string(), outcomes);
    }

    fn stats(&self, hotkey: &str) -> ChallengeStats {
        let outcomes: Vec<Outcome> = self.history.get(hotkey).map(|h| h.iter().copied().collect()).unwrap_or_default();
        ChallengeStats::from_outcomes(&outcomes)
    }

    /// Active reservations in the records store (marking ended ones), by miner hotkey.
    async fn allocated(&self) -> HashSet<String> {
        let rows = match self.records.allocations(self.config.netuid).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(target: "compute::validator", %err, "cannot read allocations");
                return HashSet::new();
            }
        };
        let now = now_ms();
        let mut active = HashSet::new();
        for row in rows.into_iter().filter(|r| r.status == "active") {
            if row.expires_at_ms <= now {
                let expired = AllocationRecord { status: "expired".into(), ended_at_ms: Some(row.expires_at_ms), ..row };
                if let Err(err) = self.records.upsert_allocation(&expired).await {
                    tracing::warn!(target: "compute::validator", %err, "cannot mark an allocation expired");
                }
            } else {
                active.insert(row.miner_hotkey.clone());
            }
        }
        active
    }

    /// For reservations this validator made itself: ask the miner whether it still runs.
    async fn check_own_allocations(&self, metagraph: &Metagraph) {
        let me = self.hotkey.public().to_ss58();
        let Ok(rows) = self.records.allocations(self.config.netuid).await else { return };
        for row in rows.into_iter().filter(|r| r.status == "active" && r.renter == me) {
            let Some(neuron) = row.miner_hotkey.parse().ok().and_then(|hk| metagraph.by_hotkey(&hk)).cloned() else { continue };
            let Some(axon) = &neuron.axon else { continue };
            let check = Allocate { timeline: 0, checking: true, ..Allocate::default() };
            let answer = self.client.call::<_, Allocate>(&axon_url(axon), &neuron.hotkey, route::ALLOCATE, &check, Duration::from_secs(10)).await;
            if let Ok(reply) = answer {
                let output = reply.body.output;
                let unknown = !output.status && output.error.as_deref().is_some_and(|e| e.contains("no active allocation"));
                if unknown {
                    let ended = AllocationRecord { status: "ended".into(), ended_at_ms: Some(now_ms()), ..row };
                    let _ = self.records.upsert_allocation(&ended).await;
                }
            }
        }
    }

    async fn fetch_specs(&mut self, targets: &[NeuronInfo]) {
        let client = self.client.clone();
        let netuid = self.config.netuid;
        let results: Vec<(NeuronInfo, Result<Specs>)> = futures::stream::iter(targets.iter().cloned())
            .map(|neuron| {
                let client = client.clone();
                async move {
                    let Some(axon) = neuron.axon.clone() else {
                        return (neuron, Err(ComputeError::Config("no axon".into())));
                    };
                    let request = Specs::default();
                    let reply = client.call::<_, Specs>(&axon_url(&axon), &neuron.hotkey, route::SPECS, &request, SPECS_TIMEOUT).await;
                    (neuron, reply.map(|r| r.body))
                }
            })
            .buffer_unordered(self.config.batch_size)
            .collect()
            .await;
        for (neuron, result) in results {
            let hotkey = neuron.hotkey.to_ss58();
            let parsed = result.and_then(|specs| serde_json::from_str::<serde_json::Value>(&specs.specs_output).map_err(ComputeError::from));
            match parsed {
                Ok(specs) if specs.is_object() => {
                    self.has_sandbox.insert(hotkey.clone(), specs.get("has_docker").and_then(serde_json::Value::as_bool).unwrap_or(false));
                    let row = SpecsRecord { netuid, miner_uid: neuron.uid, miner_hotkey: hotkey, updated_at_ms: now_ms(), specs };
                    if let Err(err) = self.records.upsert_specs(&row).await {
                        tracing::warn!(target: "compute::validator", %err, "cannot store specs");
                    }
                }
                Ok(_) => tracing::debug!(target: "compute::validator", uid = neuron.uid, "specs are not a JSON object"),
                Err(err) => {
                    // Not reachable yet (just started) or not aware of our permit yet: ask
                    // again next round. A silent miner costs at most SPECS_TIMEOUT per round.
                    self.specs_received.remove(&hotkey);
                    tracing::debug!(target: "compute::validator", uid = neuron.uid, %err, "no specs");
                }
            }
        }
    }

    /// Challenges `targets`; with `in_grace`, refusals for the validator's standing are
    /// dropped instead of recorded (see [`PERMIT_GRACE`]).
    async fn challenge_all(&mut self, targets: &[NeuronInfo], in_grace: bool) -> Vec<ChallengeRecord> {
        let mut plans = Vec::new();
        for neuron in targets {
            let hotkey = neuron.hotkey.to_ss58();
            self.load_history(&hotkey).await;
            let difficulty =
                pow::next_difficulty(&self.stats(&hotkey), self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max);
            let (spec, _password) = pow::generate(difficulty, &mut rand::rngs::OsRng);
            plans.push((neuron.clone(), spec));
        }
        let client = self.client.clone();
        let timeout = Duration::from_secs_f64(self.config.challenge_timeout_s);
        let netuid = self.config.netuid;
        let me = self.hotkey.public().to_ss58();
        let records: Vec<ChallengeRecord> = futures::stream::iter(plans)
            .map(|(neuron, spec)| {
                let client = client.clone();
                let me = me.clone();
                async move {
                    let created_at_ms = now_ms();
                    let started = std::time::Instant::now();
                    let request = Challenge::from_spec(&spec);
                    let outcome = match &neuron.axon {
                        // One second of grace for the network on top of the miner's budget.
                        Some(axon) => client
                            .call::<_, Challenge>(&axon_url(axon), &neuron.hotkey, route::CHALLENGE, &request, timeout + Duration::from_secs(1))
                            .await
                            .map(|r| r.body.output),
                        None => Err(ComputeError::Config("no axon".into())),
                    };
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                    let (success, cause) = match outcome {
                        Ok(output) => match output.password {
                            Some(password) if spec.is_solved_by(&password) => (true, None),
                            Some(_) => (false, Some("wrong_answer".to_string())),
                            None => (false, Some(format!("no_answer: {}", output.error.unwrap_or_default().chars().take(200).collect::<String>()))),
                        },
                        Err(err) => {
                            let text = err.to_string();
                            if in_grace && refused_for_standing(&text) {
                                tracing::debug!(target: "compute::validator", uid = neuron.uid, %text, "refused before the miner saw our permit; not counted");
                                return None;
                            }
                            let cause = if text.contains("no answer within") { "timeout".to_string() } else { format!("error: {}", text.chars().take(200).collect::<String>()) };
                            (false, Some(cause))
                        }
                    };
                    Some(ChallengeRecord {
                        id: uuid::Uuid::new_v4().to_string(),
                        created_at_ms,
                        netuid,
                        validator_hotkey: me,
                        miner_uid: neuron.uid,
                        miner_hotkey: neuron.hotkey.to_ss58(),
                        success,
                        elapsed_ms,
                        difficulty: spec.difficulty,
                        cause,
                    })
                }
            })
            .buffer_unordered(self.config.batch_size)
            .filter_map(std::future::ready)
            .collect()
            .await;
        for record in &records {
            let history = self.history.entry(record.miner_hotkey.clone()).or_default();
            history.push_front(Outcome { success: record.success, difficulty: record.difficulty, elapsed_s: record.elapsed_ms / 1000.0 });
            history.truncate(STATS_WINDOW);
            self.last.insert(
                record.miner_hotkey.clone(),
                LastChallenge { success: record.success, difficulty: record.difficulty, elapsed_ms: record.elapsed_ms, cause: record.cause.clone() },
            );
            let outcome = if record.success { "solved" } else { "failed" };
            self.metrics.inc("compute_validator_challenges_total", "Challenges sent, by outcome.", &[("outcome", outcome)], 1.0);
        }
        records
    }

    /// Scores every uid; returns the status rows and the records to store.
    async fn score_all(&mut self, metagraph: &Metagraph, allocated: &HashSet<String>, block: u64) -> (Vec<MinerStatus>, Vec<ScoreRecord>) {
        let own = metagraph.uid_of(&self.hotkey.public());
        let mut statuses = Vec::new();
        let mut rows = Vec::new();
        let mut uid_scores = Vec::new();
        for neuron in metagraph.neurons().to_vec() {
            let hotkey = neuron.hotkey.to_ss58();
            self.load_history(&hotkey).await;
            let stats = self.stats(&hotkey);
            let is_validator = self.is_validator(&neuron, own);
            let is_allocated = allocated.contains(&hotkey);
            let has_sandbox = self.has_sandbox.get(&hotkey).copied().unwrap_or(false);
            let components: Components = scoring::score(&self.config.scoring, &ScoreInput::from_stats(&stats, is_allocated, has_sandbox));
            let score = if is_validator { 0.0 } else { components.normalised };
            let next_difficulty = pow::next_difficulty(&stats, self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max);
            // Loopback axons are exempt from the one-uid-per-IP rule: they only occur on a
            // local network, where every miner runs on one host (no validator elsewhere can
            // reach a miner's loopback, so there is nothing to gain from it on a real one).
            let ip = neuron.axon.as_ref().map(|a| a.ip).filter(|ip| !ip.is_loopback());
            uid_scores.push(UidScore { uid: neuron.uid, score, ip, is_validator });
            statuses.push(MinerStatus {
                uid: neuron.uid,
                hotkey: hotkey.clone(),
                score,
                total: components.total,
                weight: 0.0,
                success_rate: if stats.attempts == 0 { 0.0 } else { f64::from(stats.successes) / f64::from(stats.attempts) },
                attempts: stats.attempts,
                difficulty: self.last.get(&hotkey).map_or(next_difficulty, |last| last.difficulty),
                difficulty_avg: stats.last20_difficulty_avg,
                next_difficulty,
                mean_elapsed_s: stats.mean_success_elapsed_s,
                last: self.last.get(&hotkey).cloned(),
                allocated: is_allocated,
                has_sandbox,
                is_validator,
            });
            if !is_validator && (stats.attempts > 0 || is_allocated) {
                let mut detail = serde_json::to_value(components).unwrap_or_default();
                if let Some(map) = detail.as_object_mut() {
                    map.insert("stats".into(), serde_json::to_value(stats).unwrap_or_default());
                    map.insert("difficulty_avg".into(), stats.last20_difficulty_avg.into());
                    map.insert("next_difficulty".into(), next_difficulty.into());
                    map.insert("success_rate".into(), (f64::from(stats.successes) / f64::from(stats.attempts.max(1))).into());
                    map.insert("has_sandbox".into(), has_sandbox.into());
                }
                rows.push(ScoreRecord {
                    created_at_ms: now_ms(),
                    netuid: self.config.netuid,
                    block,
                    validator_hotkey: self.hotkey.public().to_ss58(),
                    uid: neuron.uid,
                    hotkey,
                    score,
                    components: detail,
                });
            }
        }
        self.weights = scoring::weights(&uid_scores, self.config.one_uid_per_ip).into_iter().collect();
        for status in &mut statuses {
            status.weight = self.weights.get(&status.uid).copied().unwrap_or(0.0);
        }
        (statuses, rows)
    }

    /// Runs a round and returns how many miners it challenged (`None`: it waited for a
    /// validator permit instead).
    async fn round(&mut self, block: u64) -> Result<Option<usize>> {
        let metagraph = Metagraph::fetch(self.chain.as_ref(), self.config.netuid).await?;
        let own = metagraph.uid_of(&self.hotkey.public());
        let Some(own_neuron) = own.and_then(|uid| metagraph.neuron(uid)) else {
            return Err(ComputeError::Config(format!(
                "hotkey {} is not registered on subnet {}",
                self.hotkey.public(),
                self.config.netuid
            )));
        };
        if self.config.wait_for_permit && !own_neuron.validator_permit {
            let already = self.status.read().map(|s| s.waiting_for_permit).unwrap_or(true);
            if already {
                tracing::debug!(target: "compute::validator", block, "still waiting for a validator permit");
            } else {
                tracing::info!(target: "compute::validator", block, "waiting for a validator permit (the next epoch gives one to staked validators); miners refuse callers without one");
                self.update_status(|status| status.waiting_for_permit = true);
            }
            return Ok(None);
        }
        let permit_since = *self.permit_since.get_or_insert_with(std::time::Instant::now);
        let in_grace = permit_since.elapsed() < PERMIT_GRACE;
        let directory = Arc::new(SharedDirectory::default());
        directory.replace(access::directory_entries(&metagraph));
        let policy = self.config.access.policy(directory)?;
        let allocated = self.allocated().await;
        self.check_own_allocations(&metagraph).await;
        let serving: Vec<NeuronInfo> = metagraph
            .neurons()
            .iter()
            .filter(|n| !self.is_validator(n, own))
            .filter(|n| n.axon.as_ref().is_some_and(|a| a.port != 0 && !a.ip.is_unspecified()))
            .filter(|n| policy.check(&n.hotkey).is_ok())
            .cloned()
            .collect();
        if self.rounds.is_multiple_of(u64::from(self.config.specs_every_rounds.max(1))) {
            self.specs_received.clear();
        }
        let missing: Vec<NeuronInfo> = serving.iter().filter(|n| !self.specs_received.contains(&n.hotkey.to_ss58())).cloned().collect();
        if !missing.is_empty() {
            self.specs_received.extend(missing.iter().map(|n| n.hotkey.to_ss58()));
            self.fetch_specs(&missing).await;
        }
        let targets: Vec<NeuronInfo> = serving.into_iter().filter(|n| !allocated.contains(&n.hotkey.to_ss58())).collect();
        let challenges = self.challenge_all(&targets, in_grace).await;
        if let Err(err) = self.records.insert_challenges(&challenges).await {
            tracing::warn!(target: "compute::validator", %err, "cannot store challenges");
        }
        let (miners, scores) = self.score_all(&metagraph, &allocated, block).await;
        if let Err(err) = self.records.insert_scores(&scores).await {
            tracing::warn!(target: "compute::validator", %err, "cannot store scores");
        }
        self.rounds += 1;
        let solved = challenges.iter().filter(|c| c.success).count();
        tracing::info!(target: "compute::validator", block, queried = challenges.len(), solved, "round done");
        self.metrics.set("compute_validator_rounds", "Rounds run.", &[], self.rounds as f64);
        self.update_status(|status| {
            status.uid = own;
            status.waiting_for_permit = false;
            status.rounds += 1;
            status.last_round_block = Some(block);
            status.miners = miners;
        });
        Ok(Some(challenges.len()))
    }

    async fn set_weights(&mut self, block: u64) {
        self.last_weights_attempt = Some(block);
        let (uids, values): (Vec<u16>, Vec<f64>) = {
            let mut pairs: Vec<(u16, f64)> = self.weights.iter().map(|(u, w)| (*u, *w)).collect();
            pairs.sort_by_key(|(u, _)| *u);
            pairs.into_iter().unzip()
        };
        let converted = match ganglion_yuma::weights::convert_weights_and_uids_for_emit(&uids, &values) {
            Ok((uids, values)) if !uids.is_empty() => (uids, values),
            Ok(_) => {
                tracing::debug!(target: "compute::validator", "no miner has a score yet; weights not set");
                return;
            }
            Err(err) => {
                tracing::error!(target: "compute::validator", %err, "weights cannot be converted");
                return;
            }
        };
        let version_key = match self.config.version_key {
            Some(key) => key,
            None => self.chain.hyperparams(self.config.netuid).await.map(|h| h.weights_version).unwrap_or(0),
        };
        match self.chain.set_weights(&self.hotkey, self.config.netuid, converted.0.clone(), converted.1, version_key).await {
            Ok(_) => {
                self.last_weights_block = Some(block);
                tracing::info!(target: "compute::validator", block, uids = ?converted.0, "weights set");
                self.metrics.inc("compute_validator_weights_set_total", "Successful set_weights.", &[], 1.0);
                self.update_status(|s| {
                    s.last_weights_block = Some(block);
                    s.last_weights_error = None;
                });
            }
            Err(err) => {
                tracing::warn!(target: "compute::validator", %err, "set_weights refused; retrying later");
                let message = err.to_string();
                self.update_status(|s| s.last_weights_error = Some(message));
            }
        }
    }

    fn update_status(&self, f: impl FnOnce(&mut ValidatorStatus)) {
        let snapshot = {
            let mut guard = match self.status.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut guard);
            guard.clone()
        };
        if let Ok(bytes) = serde_json::to_vec_pretty(&snapshot) {
            let path = self.config.data_dir.join(format!("validator-status-{}.json", self.config.netuid));
            if let Err(err) = ganglion_core::fsutil::write_atomic(&path, &bytes, 0o644) {
                tracing::debug!(target: "compute::validator", %err, "cannot write the status file");
            }
        }
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut next_round: Option<u64> = None;
        loop {
            let block = match self.chain.block_number().await {
                Ok(block) => block,
                Err(err) => {
                    tracing::warn!(target: "compute::validator", %err, "chain unreachable");
                    0
                }
            };
            if block > 0 {
                self.update_status(|s| s.block = block);
                if next_round.is_none_or(|at| block >= at) {
                    let round = self.round(block);
                    let outcome = tokio::select! {
                        outcome = round => Some(outcome),
                        _ = shutdown.wait_for(|s| *s) => None,
                    };
                    let full_gap = rand::rngs::OsRng.gen_range(self.config.round_blocks_min..=self.config.round_blocks_max);
                    // Without a permit yet, try again next block; when nobody was serving,
                    // soon (a miner that just started should not wait a whole round).
                    let gap = match outcome {
                        None => return,
                        Some(Err(err)) => {
                            tracing::warn!(target: "compute::validator", %err, "round failed");
                            full_gap
                        }
                        Some(Ok(None)) => 1,
                        Some(Ok(Some(0))) => full_gap.min(5),
                        Some(Ok(Some(_))) => full_gap,
                    };
                    // Spacing counts from the end of the round (a round can last longer
                    // than a short epoch).
                    let end = self.chain.block_number().await.unwrap_or(block).max(block);
                    let at = end + gap;
                    next_round = Some(at);
                    self.update_status(|s| s.next_round_block = Some(at));
                }
                let due = match self.last_weights_block {
                    None => !self.weights.is_empty(),
                    Some(last) => block >= last + self.config.epoch_length,
                };
                // After a refusal, wait a few blocks before trying again.
                let cooled = self.last_weights_attempt.is_none_or(|at| block >= at + 3 || Some(at) == self.last_weights_block);
                if due && cooled && self.rounds > 0 {
                    self.set_weights(block).await;
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(Duration::from_millis(self.config.block_poll_ms.max(10))) => {}
            }
        }
    }
}

#[derive(Clone)]
struct StatusState {
    status: Arc<RwLock<ValidatorStatus>>,
    metrics: Arc<Metrics>,
}

async fn status_route(State(state): State<StatusState>) -> Response {
    let status = match state.status.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    axum::Json(status).into_response()
}

async fn metrics_route(State(state): State<StatusState>) -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Starts the validator: opens the records store, serves `/status` and `/metrics`, and
/// runs rounds and weight settings in the background.
pub async fn spawn(mut config: ValidatorConfig, hotkey: Keypair, chain: Arc<dyn Chain>) -> Result<ValidatorHandle> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|err| ComputeError::io("creating", &config.data_dir, err))?;
    let url = config.records_url.clone().unwrap_or_else(|| Records::default_url(&config.data_dir));
    let records = Records::open(&url).await.map_err(records_error)?;
    let metagraph = Metagraph::fetch(chain.as_ref(), config.netuid).await?;
    if metagraph.uid_of(&hotkey.public()).is_none() {
        return Err(ComputeError::Config(format!(
            "hotkey {} is not registered on subnet {}; register it first (`ganglion neuron register --netuid {}`)",
            hotkey.public(),
            config.netuid,
            config.netuid
        )));
    }
    let status = Arc::new(RwLock::new(ValidatorStatus {
        netuid: config.netuid,
        hotkey: hotkey.public().to_ss58(),
        uid: metagraph.uid_of(&hotkey.public()),
        ..ValidatorStatus::default()
    }));
    let metrics = Arc::new(Metrics::default());
    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut addr = None;
    if let Some(port) = config.metrics_port {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.metrics_ip, port))
            .await
            .map_err(|err| ComputeError::io("binding the status server on", format!("{}:{port}", config.metrics_ip), err))?;
        addr = listener.local_addr().ok();
        let router = Router::new()
            .route("/status", get(status_route))
            .route("/metrics", get(metrics_route))
            .with_state(StatusState { status: Arc::clone(&status), metrics: Arc::clone(&metrics) });
        let mut stop = shutdown.subscribe();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    let client = MinerClient::new(hotkey.clone())?;
    tracing::info!(target: "compute::validator", netuid = config.netuid, records = %records.display_url(), status = ?addr, "compute validator running");
    let validator = Validator {
        config,
        hotkey,
        chain,
        records,
        client,
        history: HashMap::new(),
        last: HashMap::new(),
        has_sandbox: HashMap::new(),
        specs_received: HashSet::new(),
        status: Arc::clone(&status),
        metrics,
        rounds: 0,
        last_weights_block: None,
        last_weights_attempt: None,
        weights: HashMap::new(),
        permit_since: None,
    };
    tasks.push(tokio::spawn(validator.run(shutdown.subscribe())));
    Ok(ValidatorHandle { addr, status, shutdown, tasks })
}

/// Runs the validator until `shutdown` resolves.
pub async fn run(config: ValidatorConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let handle = spawn(config, hotkey, chain).await?;
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_fit_in_a_short_epoch_and_bad_ranges_are_refused() {
        let mut short = ValidatorConfig { epoch_length: 20, ..ValidatorConfig::default() };
        assert!(short.validate().is_ok());
        assert_eq!((short.round_blocks_min, short.round_blocks_max), (20, 20));
        let mut custom = ValidatorConfig { epoch_length: 30, round_blocks_min: 5, round_blocks_max: 50, ..ValidatorConfig::default() };
        assert!(custom.validate().is_ok());
        assert_eq!((custom.round_blocks_min, custom.round_blocks_max), (5, 30));
        let mut long = ValidatorConfig::default();
        assert!(long.validate().is_ok());
        assert_eq!((long.round_blocks_min, long.round_blocks_max), (50, 80), "the original's spacing when the epoch allows it");
        for bad in [
            ValidatorConfig { difficulty_min: 9, difficulty_max: 8, ..ValidatorConfig::default() },
            ValidatorConfig { difficulty_max: 13, ..ValidatorConfig::default() },
            ValidatorConfig { epoch_length: 0, ..ValidatorConfig::default() },
            ValidatorConfig { challenge_timeout_s: f64::NAN, ..ValidatorConfig::default() },
        ] {
            let mut bad = bad;
            assert!(matches!(bad.validate(), Err(ComputeError::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn rich_miners_are_not_mistaken_for_validators() {
        let key = Keypair::from_uri("//Rich").unwrap_or_else(|e| panic!("{e}")).public();
        let miner = NeuronInfo {
            uid: 3,
            hotkey: key,
            coldkey: key,
            stake: 2_000 * RAO_PER_TAO,
            active: true,
            validator_permit: true,
            validator_trust: 0,
            consensus: 0,
            incentive: 30_000,
            dividends: 0,
            emission: 1,
            last_update: 0,
            block_at_registration: 0,
            axon: None,
        };
        assert!(!counts_as_validator(&miner, 1024.0), "stake from its own emission, no dividends");
        let validator = NeuronInfo { dividends: 65_535, ..miner.clone() };
        assert!(counts_as_validator(&validator, 1024.0));
        assert!(!counts_as_validator(&NeuronInfo { validator_permit: false, ..validator.clone() }, 1024.0));
        assert!(!counts_as_validator(&NeuronInfo { stake: 1_000 * RAO_PER_TAO, ..validator }, 1024.0));
    }

    #[test]
    fn only_policy_refusals_of_our_standing_are_excused() {
        let permit = "peer http://127.0.0.1:1/Challenge: HTTP 403 Forbidden: hotkey 5F… has no validator permit";
        let unregistered = "peer http://x/Challenge: HTTP 403 Forbidden: hotkey 5F… is not registered on this subnet";
        assert!(refused_for_standing(permit) && refused_for_standing(unregistered));
        for counted in [
            "peer http://x/Challenge: HTTP 403 Forbidden: hotkey 5F… is blacklisted",
            "peer http://x/Challenge: no answer within 31s",
            "peer http://x/Challenge: HTTP 500: has no validator permit",
        ] {
            assert!(!refused_for_standing(counted), "{counted}");
        }
    }
}
