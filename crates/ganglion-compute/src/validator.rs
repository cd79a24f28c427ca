//! The compute validator: rounds of challenges, specs collection and scoring, run by the
//! runtime's validator loop ([`ganglion_neuron::validator::run_validator`]: metagraph sync,
//! permit wait, weights through the runtime's `WeightSetter`, status, shutdown).
//!
//! A round runs every `randint(round_blocks_min, round_blocks_max)` blocks (the original's
//! 50–80), counted from the end of the previous round, and at least once per epoch (the
//! range is shortened to `epoch_length` when it is longer); the loop's step
//! ([`ComputeValidator`]'s `Validator::step`) decides from the block whether one is due. Until
//! the validator holds a validator permit it challenges nobody (miners would refuse it;
//! `needs_permit` follows `wait_for_permit`). A round queries every serving, non-validator,
//! non-allocated uid that the access policy admits, in parallel (at most `batch_size` at
//! once), each with a CSPRNG challenge at that miner's adapted difficulty, and measures the
//! round trip itself. Every challenge is stored in the records store (`ChallengeRecord`, its
//! `cause` the typed failure's name: `timeout`, `refused`, `connect`, `wrong_answer`,
//! `no_answer` …); specs are fetched on the first round and every `specs_every_rounds`
//! rounds after (`SpecsRecord`); after each round every uid is scored ([`crate::scoring`])
//! and the scores are stored (`ScoreRecord`, components in JSON for the hub's difficulty and
//! score series). The scores handed to the weight setter are those of the last round after
//! the weight rules: validators get zero, only one uid per IP counts (configurable, because
//! a local network runs every miner on 127.0.0.1; loopback axons are exempt), the rest is
//! L1-normalised.
//!
//! Allocated miners are the ones with an active reservation in this validator's records
//! store (made by `ganglion compute allocate`); they are not challenged and get the
//! allocation score. Reservations past their end are marked `expired` there. When the
//! renter is this validator's own hotkey, each round also asks the miner whether the
//! sandbox still runs and marks the reservation `ended` if not.
//!
//! The challenge history lives in the records store (committed after every round, read back
//! per miner on first use), so a restarted validator resumes with the same history and
//! difficulties. On shutdown a round in progress stops waiting for outstanding answers,
//! stores what has come in, and the store is closed.
//!
//! Status: the runtime's `NodeStatus` (`subnet: "compute"`), served at `/status` with
//! `/metrics` on `[metrics]` and written to `<data_dir>/status.json`; per miner `score`,
//! `weight`, `verified_share` (success rate), `last_failure`, `speed` (mean seconds of the
//! successful challenges at the current difficulty) and `details` (`total`, `attempts`,
//! `difficulty`, `difficulty_avg`, `next_difficulty`, `allocated`, `has_sandbox`,
//! `is_validator`); the node's `details`: `rounds`, `last_round_block`, `next_round_block`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use ganglion_chain::{Chain, Metagraph, NeuronInfo, RAO_PER_TAO};
use ganglion_core::clock::now_ms_i64 as now_ms;
use ganglion_core::keys::Keypair;
use ganglion_neuron::metrics::LATENCY_BUCKETS;
use ganglion_neuron::peer::{PeerClient, axon_url};
use ganglion_neuron::state::StateError;
use ganglion_neuron::status::{Failure, MinerStatus, Role, Speed};
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{ValidatorCrashed, LoopSettings, StepContext, Validator, ValidatorNode, ValidatorTask};
use ganglion_neuron::weights::{PlainWeights, WeightSetter};
use ganglion_neuron::{Metrics, NodeStatus, PeerFailure, Shutdown, StatusBoard};
use ganglion_protocol::policy::SharedDirectory;
use ganglion_records::{AllocationRecord, ChallengeRecord, Records, ScoreRecord, SpecsRecord};
use rand::Rng;

pub use crate::config::ValidatorConfig;
use crate::config::ComputeConfig;
use crate::error::{ComputeError, Result};
use crate::pow::{self, ChallengeStats, Outcome, STATS_WINDOW};
use crate::protocol::{Allocate, Challenge, Specs, route};
use crate::scoring::{self, Components, ScoreInput, UidScore};

/// How long a miner has to send its specs (it serves a cached document).
const SPECS_TIMEOUT: Duration = Duration::from_secs(10);

/// For this long after the validator first holds its permit, a miner's refusal for lack of
/// a permit or registration is not held against the miner: miners learn of permits when
/// they next refresh their metagraph (every 12 s by default), so the first challenges can
/// be refused through no fault of theirs.
const PERMIT_GRACE: Duration = Duration::from_secs(60);

/// The original's rule (a permit and at least `stake_tao`), narrowed to neurons that
/// actually validate (they earn dividends or validator trust): a miner's own emission is
/// staked on its hotkey, and on a small subnet every neuron holds a permit, so a long-lived
/// honest miner would otherwise cross the threshold and drop to zero.
fn counts_as_validator(neuron: &NeuronInfo, stake_tao: f64) -> bool {
    neuron.validator_permit && neuron.stake as f64 >= stake_tao * RAO_PER_TAO as f64 && (neuron.dividends > 0 || neuron.validator_trust > 0)
}

/// Whether a failed challenge is excused during [`PERMIT_GRACE`]: the miner's caller policy
/// refused this validator for its standing (no permit or not registered yet, read from the
/// Epistula 403's `error.reason`), which is not the miner's fault.
fn excused_in_grace(failure: &PeerFailure, in_grace: bool) -> bool {
    in_grace && failure.refused_for_standing()
}

fn records_error(err: ganglion_records::RecordsError) -> ComputeError {
    ComputeError::Records(err.to_string())
}

/// The last challenge of a miner.
#[derive(Debug, Clone, PartialEq)]
struct LastChallenge {
    success: bool,
    difficulty: u8,
    /// The failure's stable name.
    cause: Option<String>,
    /// The failure's specifics.
    detail: String,
}

/// One uid as the last scoring saw it (status rows).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    hotkey: String,
    score: f64,
    total: f64,
    stats: ChallengeStats,
    difficulty: u8,
    next_difficulty: u8,
    allocated: bool,
    has_sandbox: bool,
    is_validator: bool,
}

/// The compute validator (implements the runtime's [`Validator`]).
pub struct ComputeValidator {
    config: ValidatorConfig,
    netuid: u16,
    hotkey: Keypair,
    chain: Arc<dyn Chain>,
    records: Records,
    client: PeerClient,
    metrics: Arc<Metrics>,
    history: HashMap<String, VecDeque<Outcome>>,
    last: HashMap<String, LastChallenge>,
    has_sandbox: HashMap<String, bool>,
    /// Hotkeys that sent their specs since the last full refresh: the others (new, or
    /// unreachable so far) are asked every round.
    specs_received: HashSet<String>,
    rounds: u64,
    last_round_block: Option<u64>,
    next_round_block: Option<u64>,
    rows: BTreeMap<u16, Row>,
    /// Normalised weights of the last scoring, after the weight rules.
    weights: BTreeMap<u16, f64>,
    /// When this process first ran a round (holding its permit, unless `wait_for_permit` is off).
    permit_since: Option<Instant>,
}

impl std::fmt::Debug for ComputeValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputeValidator").field("netuid", &self.netuid).field("rounds", &self.rounds).finish_non_exhaustive()
    }
}

fn describe_metrics(metrics: &Metrics) {
    metrics.counter("compute_validator_challenges_total", "Challenges sent, by outcome (solved or failed).");
    metrics.histogram("compute_validator_challenge_seconds", "Round trip of challenges as the validator measures it, by outcome.", LATENCY_BUCKETS);
    metrics.gauge("compute_validator_rounds", "Rounds run.");
}

impl ComputeValidator {
    /// Validates the settings, creates the data directory and opens the records store.
    pub async fn open(config: &ComputeConfig, hotkey: Keypair, chain: Arc<dyn Chain>, metrics: Arc<Metrics>) -> Result<ComputeValidator> {
        config.validate()?;
        let mut settings = config.validator.clone();
        settings.validate(config.neuron.epoch_length)?;
        let data_dir = config.data_dir();
        std::fs::create_dir_all(&data_dir).map_err(|err| ComputeError::io("creating", &data_dir, err))?;
        let url = settings.records_url.clone().unwrap_or_else(|| Records::default_url(&data_dir));
        let records = Records::open(&url).await.map_err(records_error)?;
        describe_metrics(&metrics);
        let client = crate::protocol::client(hotkey.clone())?;
        Ok(ComputeValidator {
            config: settings,
            netuid: config.netuid,
            hotkey,
            chain,
            records,
            client,
            metrics,
            history: HashMap::new(),
            last: HashMap::new(),
            has_sandbox: HashMap::new(),
            specs_received: HashSet::new(),
            rounds: 0,
            last_round_block: None,
            next_round_block: None,
            rows: BTreeMap::new(),
            weights: BTreeMap::new(),
            permit_since: None,
        })
    }

    /// The records store.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The window of challenge outcomes of a miner, newest first (read from the records
    /// store on first use).
    pub async fn history(&mut self, hotkey: &str) -> Vec<Outcome> {
        self.load_history(hotkey).await;
        self.history.get(hotkey).map(|h| h.iter().copied().collect()).unwrap_or_default()
    }

    /// The difficulty of the next challenge to a miner.
    pub async fn next_difficulty(&mut self, hotkey: &str) -> u8 {
        self.load_history(hotkey).await;
        pow::next_difficulty(&self.stats(hotkey), self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max)
    }

    /// Rounds run by this process.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    fn is_validator(&self, neuron: &NeuronInfo, own: Option<u16>) -> bool {
        Some(neuron.uid) == own || counts_as_validator(neuron, self.config.validator_stake_tao)
    }

    async fn load_history(&mut self, hotkey: &str) {
        if self.history.contains_key(hotkey) {
            return;
        }
        let rows = self.records.recent_challenges(self.netuid, hotkey, STATS_WINDOW as u32).await.unwrap_or_default();
        let me = self.hotkey.public().to_ss58();
        let outcomes: VecDeque<Outcome> = rows
            .iter()
            .filter(|r| r.validator_hotkey == me)
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
        let rows = match self.records.allocations(self.netuid).await {
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
        let Ok(rows) = self.records.allocations(self.netuid).await else { return };
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

    async fn fetch_specs(&mut self, targets: &[NeuronInfo], shutdown: &Shutdown) {
        let client = self.client.clone();
        let netuid = self.netuid;
        let mut stop = shutdown.clone();
        let results: Vec<(NeuronInfo, std::result::Result<Specs, PeerFailure>)> = futures::stream::iter(targets.iter().cloned())
            .map(|neuron| {
                let client = client.clone();
                async move {
                    let Some(axon) = neuron.axon.clone() else {
                        return (neuron, Err(PeerFailure::NoAxon));
                    };
                    let reply = client.call::<_, Specs>(&axon_url(&axon), &neuron.hotkey, route::SPECS, &Specs::default(), SPECS_TIMEOUT).await;
                    (neuron, reply.map(|r| r.body))
                }
            })
            .buffer_unordered(self.config.batch_size)
            .take_until(async move { stop.wait().await })
            .collect()
            .await;
        let answered: HashSet<String> = results.iter().map(|(n, _)| n.hotkey.to_ss58()).collect();
        for neuron in targets.iter().filter(|n| !answered.contains(&n.hotkey.to_ss58())) {
            // Cut short by a shutdown: ask again next time.
            self.specs_received.remove(&neuron.hotkey.to_ss58());
        }
        for (neuron, result) in results {
            let hotkey = neuron.hotkey.to_ss58();
            let parsed = result.map_err(ComputeError::from).and_then(|specs| serde_json::from_str::<serde_json::Value>(&specs.specs_output).map_err(ComputeError::from));
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
    /// dropped instead of recorded (see [`PERMIT_GRACE`]). When `shutdown` fires, answers
    /// still outstanding are dropped (neither success nor failure) and the rest returned.
    async fn challenge_all(&mut self, targets: &[NeuronInfo], in_grace: bool, shutdown: &Shutdown) -> Vec<ChallengeRecord> {
        let mut plans = Vec::new();
        for neuron in targets {
            let hotkey = neuron.hotkey.to_ss58();
            self.load_history(&hotkey).await;
            let difficulty = pow::next_difficulty(&self.stats(&hotkey), self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max);
            let (spec, _password) = pow::generate(difficulty, &mut rand::rngs::OsRng);
            plans.push((neuron.clone(), spec));
        }
        let client = self.client.clone();
        let timeout = self.config.challenge_timeout;
        let netuid = self.netuid;
        let me = self.hotkey.public().to_ss58();
        let mut stop = shutdown.clone();
        let results: Vec<(ChallengeRecord, String)> = futures::stream::iter(plans)
            .map(|(neuron, spec)| {
                let client = client.clone();
                let me = me.clone();
                async move {
                    let created_at_ms = now_ms();
                    let started = Instant::now();
                    let request = Challenge::from_spec(&spec);
                    let outcome = match &neuron.axon {
                        // One second of grace for the network on top of the miner's budget.
                        Some(axon) => client
                            .call::<_, Challenge>(&axon_url(axon), &neuron.hotkey, route::CHALLENGE, &request, timeout + Duration::from_secs(1))
                            .await
                            .map(|r| r.body.output),
                        None => Err(PeerFailure::NoAxon),
                    };
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                    let (success, cause, detail) = match outcome {
                        Ok(output) => match output.password {
                            Some(password) if spec.is_solved_by(&password) => (true, None, String::new()),
                            Some(_) => (false, Some("wrong_answer".to_string()), "the password does not hash to the challenge".to_string()),
                            None => (false, Some("no_answer".to_string()), output.error.unwrap_or_default().chars().take(200).collect()),
                        },
                        Err(failure) => {
                            if excused_in_grace(&failure, in_grace) {
                                tracing::debug!(target: "compute::validator", uid = neuron.uid, %failure, "refused before the miner saw our permit; not counted");
                                return None;
                            }
                            (false, Some(failure.name().to_string()), failure.to_string())
                        }
                    };
                    let record = ChallengeRecord {
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
                    };
                    Some((record, detail))
                }
            })
            .buffer_unordered(self.config.batch_size)
            .take_until(async move { stop.wait().await })
            .filter_map(std::future::ready)
            .collect()
            .await;
        let mut records = Vec::with_capacity(results.len());
        for (record, detail) in results {
            let history = self.history.entry(record.miner_hotkey.clone()).or_default();
            history.push_front(Outcome { success: record.success, difficulty: record.difficulty, elapsed_s: record.elapsed_ms / 1000.0 });
            history.truncate(STATS_WINDOW);
            self.last.insert(record.miner_hotkey.clone(), LastChallenge { success: record.success, difficulty: record.difficulty, cause: record.cause.clone(), detail });
            let outcome = if record.success { "solved" } else { "failed" };
            self.metrics.inc("compute_validator_challenges_total", &[("outcome", outcome)]);
            self.metrics.observe("compute_validator_challenge_seconds", &[("outcome", outcome)], record.elapsed_ms / 1000.0);
            records.push(record);
        }
        records
    }

    /// Scores every uid: keeps the status rows and the weights; returns the records to store.
    async fn score_all(&mut self, metagraph: &Metagraph, allocated: &HashSet<String>, block: u64) -> Vec<ScoreRecord> {
        let own = metagraph.uid_of(&self.hotkey.public());
        let mut rows = Vec::new();
        let mut uid_scores = Vec::new();
        let mut table = BTreeMap::new();
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
            table.insert(
                neuron.uid,
                Row {
                    hotkey: hotkey.clone(),
                    score,
                    total: components.total,
                    stats,
                    difficulty: self.last.get(&hotkey).map_or(next_difficulty, |last| last.difficulty),
                    next_difficulty,
                    allocated: is_allocated,
                    has_sandbox,
                    is_validator,
                },
            );
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
                    netuid: self.netuid,
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
        self.rows = table;
        rows
    }

    /// Runs a round on `metagraph` and returns how many miners it challenged.
    async fn round(&mut self, metagraph: &Metagraph, own: u16, block: u64, shutdown: &Shutdown) -> Result<usize> {
        let permit_since = *self.permit_since.get_or_insert_with(Instant::now);
        let in_grace = permit_since.elapsed() < PERMIT_GRACE;
        let directory = Arc::new(SharedDirectory::default());
        directory.replace(ganglion_neuron::axon::caller_table(metagraph));
        let policy = self.config.access.policy(directory)?;
        let allocated = self.allocated().await;
        self.check_own_allocations(metagraph).await;
        let serving: Vec<NeuronInfo> = metagraph
            .neurons()
            .iter()
            .filter(|n| !self.is_validator(n, Some(own)))
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
            self.fetch_specs(&missing, shutdown).await;
        }
        let targets: Vec<NeuronInfo> = serving.into_iter().filter(|n| !allocated.contains(&n.hotkey.to_ss58())).collect();
        let challenges = self.challenge_all(&targets, in_grace, shutdown).await;
        if let Err(err) = self.records.insert_challenges(&challenges).await {
            tracing::warn!(target: "compute::validator", %err, "cannot store challenges");
        }
        let scores = self.score_all(metagraph, &allocated, block).await;
        if let Err(err) = self.records.insert_scores(&scores).await {
            tracing::warn!(target: "compute::validator", %err, "cannot store scores");
        }
        self.rounds += 1;
        self.last_round_block = Some(block);
        let solved = challenges.iter().filter(|c| c.success).count();
        tracing::info!(target: "compute::validator", block, queried = challenges.len(), solved, stopped = shutdown.is_set(), "round done");
        self.metrics.set("compute_validator_rounds", &[], self.rounds as f64);
        Ok(challenges.len())
    }

    fn forget(&mut self, hotkey: &str) {
        self.history.remove(hotkey);
        self.last.remove(hotkey);
        self.has_sandbox.remove(hotkey);
        self.specs_received.remove(hotkey);
    }

    fn miner_status(&self, uid: u16, row: &Row, weight: f64) -> MinerStatus {
        let stats = row.stats;
        let last = self.last.get(&row.hotkey);
        MinerStatus {
            uid,
            hotkey: row.hotkey.clone(),
            score: row.score,
            weight,
            verified_share: (stats.attempts > 0).then(|| f64::from(stats.successes) / f64::from(stats.attempts)),
            last_failure: last
                .filter(|l| !l.success)
                .map(|l| Failure { cause: l.cause.clone().unwrap_or_else(|| "failed".into()), detail: l.detail.clone() }),
            speed: (stats.successes > 0).then(|| Speed { value: stats.mean_success_elapsed_s, unit: "s".into(), context: format!("@d{}", row.difficulty) }),
            details: serde_json::json!({
                "total": row.total,
                "attempts": stats.attempts,
                "difficulty": row.difficulty,
                "difficulty_avg": stats.last20_difficulty_avg,
                "next_difficulty": row.next_difficulty,
                "allocated": row.allocated,
                "has_sandbox": row.has_sandbox,
                "is_validator": row.is_validator,
            }),
        }
    }
}

#[async_trait]
impl Validator for ComputeValidator {
    async fn step(&mut self, ctx: &StepContext<'_>) -> std::result::Result<(), String> {
        let block = ctx.block;
        if self.next_round_block.is_some_and(|at| block < at) {
            return Ok(());
        }
        let outcome = self.round(ctx.metagraph, ctx.uid, block, &ctx.shutdown).await;
        let full_gap = rand::rngs::OsRng.gen_range(self.config.round_blocks_min..=self.config.round_blocks_max);
        // When nobody was serving, soon (a miner that just started should not wait a whole round).
        let gap = match &outcome {
            Ok(0) => full_gap.min(5),
            _ => full_gap,
        };
        // Spacing counts from the end of the round (a round can last longer than a short epoch).
        let end = if ctx.shutdown.is_set() { block } else { self.chain.block_number().await.unwrap_or(block).max(block) };
        self.next_round_block = Some(end + gap);
        outcome.map(|_| ()).map_err(|err| format!("round failed: {err}"))
    }

    fn scores(&self, metagraph: &Metagraph) -> Vec<(u16, f32)> {
        self.weights.iter().filter(|(uid, _)| **uid < metagraph.n()).map(|(uid, w)| (*uid, *w as f32)).collect()
    }

    fn on_hotkey_change(&mut self, change: &HotkeyChange) {
        if let Some(old) = change.old {
            self.forget(&old.to_ss58());
        }
        self.rows.remove(&change.uid);
        self.weights.remove(&change.uid);
    }

    fn status(&self, _metagraph: &Metagraph, weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        let weight_of: HashMap<u16, f64> = weights.iter().map(|(u, w)| (*u, f64::from(*w))).collect();
        let miners = self.rows.iter().map(|(uid, row)| self.miner_status(*uid, row, weight_of.get(uid).copied().unwrap_or(0.0))).collect();
        let details = serde_json::json!({
            "rounds": self.rounds,
            "last_round_block": self.last_round_block,
            "next_round_block": self.next_round_block,
        });
        (miners, details)
    }

    /// The history is committed to the records store after every round: nothing to write.
    fn save(&mut self) -> std::result::Result<(), StateError> {
        Ok(())
    }

    fn needs_permit(&self) -> bool {
        self.config.wait_for_permit
    }

    async fn shutdown(&mut self) {
        self.records.close().await;
    }
}

/// A running validator.
pub struct ValidatorHandle {
    /// Where `/status` and `/metrics` are served.
    pub addr: Option<SocketAddr>,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    task: ValidatorTask<ComputeValidator>,
    server: Option<tokio::task::JoinHandle<()>>,
    stop_limit: Duration,
}

impl std::fmt::Debug for ValidatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl ValidatorHandle {
    /// The current status (also at `GET /status` and in `<data_dir>/status.json`).
    pub fn status(&self) -> NodeStatus {
        self.board.get()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A token that fires when the validator is asked to stop.
    pub fn token(&self) -> Shutdown {
        self.task.token()
    }

    /// Stops the validator: a round in progress stores what has come in, the records store
    /// is closed. Returns the validator (None if it did not stop in time).
    pub async fn shutdown(self) -> std::result::Result<ComputeValidator, ValidatorCrashed> {
        let validator = self.task.stop(self.stop_limit).await;
        if let Some(server) = self.server {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        validator
    }

    /// Waits until the validator has stopped (after the shutdown token given to [`spawn`] fired);
    /// an error if its loop panicked.
    pub async fn wait(self) -> std::result::Result<ComputeValidator, ValidatorCrashed> {
        let validator = self.task.wait().await;
        if let Some(server) = self.server {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        validator
    }
}

/// Starts the validator: opens the records store, serves `/status` and `/metrics` on
/// `[metrics]` (when a port is set) and runs the runtime's loop until `shutdown` (or
/// [`ValidatorHandle::shutdown`]).
pub async fn spawn(config: &ComputeConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: Option<Shutdown>) -> Result<ValidatorHandle> {
    let metrics = Arc::new(Metrics::new());
    let validator = ComputeValidator::open(config, hotkey.clone(), chain.clone(), metrics.clone()).await?;
    let board = Arc::new(StatusBoard::new(
        NodeStatus::new("compute", Role::Validator, config.netuid, hotkey.public().to_ss58()),
        Some(config.data_dir().join("status.json")),
    ));
    let weights = WeightSetter::new(config.netuid, hotkey.clone(), config.neuron.epoch_length, config.neuron.version_key, Box::new(PlainWeights), metrics.clone());
    let poll = validator.config.block_poll;
    let stop_limit = validator.config.challenge_timeout + Duration::from_secs(15);
    tracing::info!(target: "compute::validator", netuid = config.netuid, records = %validator.records.display_url(), "compute validator starting");
    let node = ValidatorNode {
        chain,
        netuid: config.netuid,
        hotkey,
        metrics: metrics.clone(),
        board: board.clone(),
        weights,
        settings: LoopSettings { step_interval: poll, idle_interval: poll.max(Duration::from_millis(100)) },
    };
    let task = ValidatorTask::spawn(node, validator, shutdown);
    let (addr, server) = match config.metrics.listen() {
        Some(listen) => {
            let router = ganglion_neuron::server::routes(board.clone(), metrics.clone());
            match ganglion_neuron::server::serve(listen, router, task.token()).await {
                Ok((addr, server)) => (Some(addr), Some(server)),
                Err(err) => {
                    let _ = task.stop(stop_limit).await;
                    return Err(ComputeError::io("binding the status server on", listen.to_string(), err));
                }
            }
        }
        None => (None, None),
    };
    Ok(ValidatorHandle { addr, board, metrics, task, server, stop_limit })
}

/// Runs the validator until `shutdown` fires.
pub async fn run(config: &ComputeConfig, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: Shutdown) -> Result<()> {
    let handle = spawn(config, hotkey, chain, Some(shutdown)).await?;
    handle.wait().await.map_err(|e| ComputeError::Config(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ganglion_neuron::peer::Deadline;

    use super::*;

    #[test]
    fn rounds_fit_in_a_short_epoch_and_bad_ranges_are_refused() {
        let mut short = ValidatorConfig::default();
        assert!(short.validate(20).is_ok());
        assert_eq!((short.round_blocks_min, short.round_blocks_max), (20, 20));
        let mut custom = ValidatorConfig { round_blocks_min: 5, round_blocks_max: 50, ..ValidatorConfig::default() };
        assert!(custom.validate(30).is_ok());
        assert_eq!((custom.round_blocks_min, custom.round_blocks_max), (5, 30));
        let mut long = ValidatorConfig::default();
        assert!(long.validate(100).is_ok());
        assert_eq!((long.round_blocks_min, long.round_blocks_max), (50, 80), "the original's spacing when the epoch allows it");
        assert_eq!(long.scoring.timeout_s, 30.0, "the score's time term uses the challenge timeout");
        for (bad, epoch) in [
            (ValidatorConfig { difficulty_min: 9, difficulty_max: 8, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { difficulty_max: 13, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig::default(), 0),
            (ValidatorConfig { challenge_timeout: Duration::ZERO, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { challenge_timeout: Duration::from_secs(601), ..ValidatorConfig::default() }, 100),
        ] {
            let mut bad = bad;
            assert!(matches!(bad.validate(epoch), Err(ComputeError::Config(_))), "{bad:?}");
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
        let refusal = |reason: &str| {
            PeerFailure::from_status(
                403,
                format!(r#"{{"error":{{"code":"caller_denied","reason":"{reason}","message":"caller refused: hotkey 5F… {reason}"}}}}"#).as_bytes(),
            )
        };
        let (permit, unregistered) = (refusal("no_validator_permit"), refusal("not_registered"));
        assert!(excused_in_grace(&permit, true) && excused_in_grace(&unregistered, true));
        assert!(!excused_in_grace(&permit, false), "after the grace period a refusal counts");
        for counted in [
            refusal("blacklisted"),
            PeerFailure::Timeout { deadline: Deadline::Total, limit_ms: 31_000 },
            // A 500 that happens to mention permits is not a refusal.
            PeerFailure::from_status(500, b"has no validator permit"),
            // A 403 without the Epistula reason is not excused either.
            PeerFailure::from_status(403, b"has no validator permit"),
        ] {
            assert!(!excused_in_grace(&counted, true), "{counted:?}");
        }
        assert_eq!(permit.name(), "refused");
    }
}
