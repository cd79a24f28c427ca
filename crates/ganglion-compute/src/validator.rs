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
//! non-allocated uid that the access policy admits, in parallel (at most `batch_size` miners
//! at once), each with `challenges_per_round` CSPRNG challenges at that miner's adapted
//! difficulty, and measures the round trips itself. A miner's round counts as one attempt
//! in its statistics, solved when any of its challenges was (the quality terms and the
//! difficulty rule see what the original's one challenge per round showed), and every
//! solved challenge counts in its work estimate. Every challenge is stored in the records store (`ChallengeRecord`, its
//! `cause` the typed failure's name: `timeout`, `refused`, `connect`, `wrong_answer`,
//! `no_answer` …); specs are fetched on the first round and every `specs_every_rounds`
//! rounds after (`SpecsRecord`); after each round every uid is scored ([`crate::scoring`])
//! and the scores are stored (`ScoreRecord`, components in JSON for the hub's difficulty and
//! score series). The scores handed to the weight setter are those of the last round after
//! the weight rules: validators get zero, only one uid per IP counts (configurable, because
//! a local network runs every miner on 127.0.0.1; loopback axons are exempt), the rest is
//! L1-normalised.
//!
//! Allocated miners are the ones with an active reservation *made by this validator's own
//! hotkey* (`ganglion compute allocate` with the validator's wallet) that is **proven alive
//! this round**: the validator connects to the sandbox's SSH server at the address the miner
//! gave and has it sign a fresh key exchange with the host key pinned at reservation time
//! ([`crate::liveness`]). Proven ones are not challenged and get the allocation score (times
//! their work estimate, see [`crate::scoring`]); an own reservation that cannot be proven
//! counts as a failed challenge with the proof's cause (`allocation_unreachable`,
//! `allocation_wrong_host_key`, …), so a claimed allocation without a live sandbox scores
//! like a miner that fails its challenges. Two reservations pinning the same host key count
//! once, and the SSH host must be the miner's own axon address.
//!
//! Reservations by other renters (rows in a shared records store) are **not paid**: the
//! validator cannot tell a real third-party rental from a miner renting itself or a
//! colluding renter writing a row, so those miners are challenged like everyone else and
//! earn what their work earns. Reservations past their end are marked `expired`; for its own
//! reservations each round also asks the miner whether the sandbox still runs and marks the
//! reservation `ended` if the miner no longer has it.
//!
//! Specs are checked where the validator can check them: a miner whose specs claim GPUs gets
//! a GPU probe ([`crate::specs::GpuProbe`]) instead of its regular challenge on its first
//! rounds and every third round after; it is paid nothing until a probe checks the claim and
//! nothing while most of its newest probes fail (cause `false_specs`). `has_docker` is only
//! recorded: version B's sandbox factor uses sandboxes this validator proved itself.
//!
//! Every challenge of a round goes out at once with one common deadline (the round's start
//! plus the timeout), so one machine behind several hotkeys shares one deadline's worth of
//! hashing among them, and a miner that solves a challenge early goes on with the next of
//! its round, as a machine split across hotkeys would (see `scoring`'s work estimate).
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
//! `difficulty`, `difficulty_avg`, `next_difficulty`, `allocated`, `has_sandbox` (proven),
//! `claims_sandbox`, `gpus_claimed`, `gpu_claim`, `work`, `is_validator`); the node's
//! `details`: `rounds`, `last_round_block`, `next_round_block`. `last_failure` is the reason
//! pay is withheld (`false_specs`, `specs_unchecked`) when there is one, else the last
//! challenge's or liveness proof's failure; score records carry the same `rejection`.

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
use crate::liveness::{self, LivenessFailure};
use crate::pow::{self, ChallengeStats, ChallengeSpec, Outcome, STATS_WINDOW};
use crate::specs::{GpuProbe, gpu_claim_verdict};
use crate::protocol::{Allocate, Challenge, Specs, route};
use crate::scoring::{self, Components, ScoreInput, UidScore};

/// How long a miner has to send its specs (it serves a cached document).
const SPECS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the SSH key exchange of an allocation's liveness proof may take.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a proven sandbox counts for version B's sandbox factor.
const SANDBOX_PROOF_TTL: Duration = Duration::from_secs(86_400);

/// A GPU claim is probed on the first rounds after it is made and then every this many rounds.
const GPU_PROBE_EVERY_ROUNDS: u64 = 3;

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

/// What a miner's specs claim (recorded; checked where the validator can).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Claims {
    /// `has_docker`.
    has_docker: bool,
    /// `gpu.count` (at most 64).
    gpus: u32,
}

/// The GPU probes of one claim.
#[derive(Debug, Clone, Default)]
struct GpuProbes {
    /// The claim probed (a new claim starts over).
    gpus: u32,
    /// Passed, newest first.
    results: VecDeque<bool>,
    /// Round of the last probe.
    last_round: Option<u64>,
    /// What the last probe showed.
    detail: String,
}

/// A finished challenge: its record, the failure's specifics and, for a GPU probe, the probe
/// and the GPUs it checked.
type Answered = (ChallengeRecord, String, Option<(GpuProbe, u32)>);

/// A challenge of a round: the regular one, or a probe of a GPU claim.
#[derive(Debug, Clone)]
enum Plan {
    Regular(ChallengeSpec),
    Probe(ChallengeSpec, GpuProbe, u32),
}

/// What every challenge of a round shares.
#[derive(Clone)]
struct Ask {
    client: PeerClient,
    me: String,
    netuid: u16,
    /// The round's start, stored as every challenge's `created_at_ms`.
    round_ms: i64,
    /// When the round's first challenges went out: elapsed times count from here, for
    /// replacements too (what the time term and the difficulty rule read is how far into
    /// the round a solve came).
    sent: Instant,
    deadline: Instant,
    in_grace: bool,
    /// Replacements climb a level when a miner solved `climb_after` challenges at the
    /// current one before `climb_before` (a quarter of the timeout), up to `difficulty_max`.
    climb_after: u32,
    climb_before: Instant,
    difficulty_max: u8,
}

/// One miner's round as a stream of answers: its first challenges go out together, and each
/// one solved before the deadline is replaced by a fresh challenge, at most `max` in all. A
/// miner that solves early thus goes on hashing to the deadline, as every part of a machine
/// split across hotkeys would: the work a round credits is bounded by the miner's hashing,
/// never by the number of challenges (see `scoring`). Replacements climb a level when the
/// miner solved `climb_after` challenges at the current one within the first quarter of the
/// timeout (it searches at least ten times that by the deadline), so a new or fast miner is
/// measured near its own difficulty from its first round rather than capped at `max` solves
/// of a keyspace far below it.
fn miner_round(ask: Ask, neuron: NeuronInfo, plans: Vec<Plan>, max: u32) -> futures::stream::BoxStream<'static, Option<Answered>> {
    let pending = futures::stream::FuturesUnordered::new();
    let sent = plans.len() as u32;
    let difficulty = plans.iter().find_map(|p| match p {
        Plan::Regular(spec) => Some(spec.difficulty),
        Plan::Probe(..) => None,
    });
    for plan in plans {
        pending.push(ask_one(ask.clone(), neuron.clone(), plan));
    }
    let climb = Climb { difficulty: difficulty.unwrap_or(0), solved_at: 0 };
    futures::stream::unfold((pending, sent, climb), move |(mut pending, mut sent, mut climb)| {
        let (ask, neuron) = (ask.clone(), neuron.clone());
        async move {
            let (answered, solved) = pending.next().await?;
            if let Some(solved) = solved {
                climb.solved(solved, &ask);
                if sent < max && Instant::now() < ask.deadline {
                    sent += 1;
                    pending.push(ask_one(ask, neuron, Plan::Regular(pow::generate(climb.difficulty, &mut rand::rngs::OsRng).0)));
                }
            }
            Some((answered, (pending, sent, climb)))
        }
    })
    .boxed()
}

/// The difficulty of a round's replacements.
#[derive(Debug, Clone, Copy)]
struct Climb {
    difficulty: u8,
    /// Solved at `difficulty` so far.
    solved_at: u32,
}

impl Climb {
    fn solved(&mut self, difficulty: u8, ask: &Ask) {
        if difficulty != self.difficulty {
            return;
        }
        self.solved_at += 1;
        if self.solved_at >= ask.climb_after && self.difficulty < ask.difficulty_max && Instant::now() < ask.climb_before {
            self.difficulty += 1;
            self.solved_at = 0;
        }
    }
}

/// Sends one challenge and judges the answer; with it, the difficulty to replace it at when
/// it was a regular challenge that was solved.
async fn ask_one(ask: Ask, neuron: NeuronInfo, plan: Plan) -> (Option<Answered>, Option<u8>) {
    let started = Instant::now();
    let (spec, limit, probe) = match plan {
        Plan::Regular(spec) => (spec, ask.deadline.saturating_duration_since(started), None),
        Plan::Probe(spec, probe, gpus) => (spec, probe.deadline, Some((probe, gpus))),
    };
    let request = Challenge::from_spec(&spec);
    let outcome = match &neuron.axon {
        Some(_) if limit.is_zero() => Err(PeerFailure::Timeout { deadline: ganglion_neuron::peer::Deadline::Total, limit_ms: 0 }),
        Some(axon) => ask.client.call::<_, Challenge>(&axon_url(axon), &neuron.hotkey, route::CHALLENGE, &request, limit).await.map(|r| r.body.output),
        None => Err(PeerFailure::NoAxon),
    };
    // A probe's time is its own; a regular challenge's counts from the round's first sends.
    let elapsed_ms = if probe.is_some() { started.elapsed() } else { ask.sent.elapsed() }.as_secs_f64() * 1000.0;
    let (success, cause, detail) = match outcome {
        Ok(output) => match output.password {
            Some(password) if spec.is_solved_by(&password) => (true, None, String::new()),
            Some(_) => (false, Some("wrong_answer".to_string()), "the password does not hash to the challenge".to_string()),
            None => (false, Some("no_answer".to_string()), output.error.unwrap_or_default().chars().take(200).collect()),
        },
        Err(failure) => {
            if excused_in_grace(&failure, ask.in_grace) {
                tracing::debug!(target: "compute::validator", uid = neuron.uid, %failure, "refused before the miner saw our permit; not counted");
                return (None, None);
            }
            (false, Some(failure.name().to_string()), failure.to_string())
        }
    };
    let replace = (success && probe.is_none()).then_some(spec.difficulty);
    let record = ChallengeRecord {
        id: uuid::Uuid::new_v4().to_string(),
        created_at_ms: ask.round_ms,
        netuid: ask.netuid,
        validator_hotkey: ask.me,
        miner_uid: neuron.uid,
        miner_hotkey: neuron.hotkey.to_ss58(),
        success,
        elapsed_ms,
        difficulty: spec.difficulty,
        cause,
    };
    (Some((record, detail, probe)), replace)
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
    claims: Claims,
    gpu_claim: Option<&'static str>,
    work: f64,
    rejection: Option<Failure>,
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
    /// What each miner's specs claim.
    claims: HashMap<String, Claims>,
    /// GPU probes per miner.
    gpu_probes: HashMap<String, GpuProbes>,
    /// When a sandbox of the miner was last proven alive (one of our reservations).
    sandbox_proven: HashMap<String, Instant>,
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
    metrics.counter("compute_validator_gpu_probes_total", "GPU-claim probes, by outcome (passed or failed).");
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
            claims: HashMap::new(),
            gpu_probes: HashMap::new(),
            sandbox_proven: HashMap::new(),
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
        // The window's rounds (and a spare one) of this validator, whole; a round's
        // challenges share their `created_at_ms` (the round's start).
        let me = self.hotkey.public().to_ss58();
        let rows = match self.records.recent_challenge_rounds(self.netuid, &me, hotkey, STATS_WINDOW as u32 + 1).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(target: "compute::validator", %hotkey, %err, "reading the challenge history; starting this miner afresh");
                Vec::new()
            }
        };
        let mut outcomes: VecDeque<Outcome> = VecDeque::new();
        for group in rows.chunk_by(|a, b| a.created_at_ms == b.created_at_ms) {
            let challenges: Vec<(bool, u8, f64)> = group.iter().map(|r| (r.success, r.difficulty, r.elapsed_ms / 1000.0)).collect();
            outcomes.extend(Outcome::of_round(&challenges));
        }
        outcomes.truncate(STATS_WINDOW);
        self.history.insert(hotkey.to_string(), outcomes);
    }

    fn stats(&self, hotkey: &str) -> ChallengeStats {
        let outcomes: Vec<Outcome> = self.history.get(hotkey).map(|h| h.iter().copied().collect()).unwrap_or_default();
        let mut stats = ChallengeStats::from_outcomes(&outcomes);
        let quarter = self.config.challenge_timeout.as_secs_f64() / 4.0;
        stats.newest_solved_fast = outcomes.first().is_some_and(|o| o.success && o.elapsed_s < quarter);
        stats.newest_capped = outcomes.first().is_some_and(|o| o.solved >= self.config.challenges_max_per_round);
        stats
    }

    /// This validator's own active reservations (marking expired ones), each checked with
    /// the liveness proof: the hotkeys proven alive, and the failures of the others.
    async fn prove_allocations(&mut self, metagraph: &Metagraph) -> (HashSet<String>, Vec<(NeuronInfo, LivenessFailure)>) {
        let rows = match self.records.allocations(self.netuid).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(target: "compute::validator", %err, "cannot read allocations");
                return (HashSet::new(), Vec::new());
            }
        };
        let now = now_ms();
        let me = self.hotkey.public().to_ss58();
        let mut active = Vec::new();
        for row in rows.into_iter().filter(|r| r.status == "active") {
            if row.expires_at_ms <= now {
                let expired = AllocationRecord { status: "expired".into(), ended_at_ms: Some(row.expires_at_ms), ..row };
                if let Err(err) = self.records.upsert_allocation(&expired).await {
                    tracing::warn!(target: "compute::validator", %err, "cannot mark an allocation expired");
                }
            } else if row.renter != me {
                tracing::debug!(target: "compute::validator", miner = %row.miner_hotkey, renter = %row.renter, "a third-party reservation is not paid (it cannot be told from a self-rental)");
            } else {
                active.push(row);
            }
        }
        active.sort_by_key(|r| r.created_at_ms);
        let mut pinned = HashSet::new();
        let mut checks = Vec::new();
        for row in active {
            let Some(neuron) = row.miner_hotkey.parse().ok().and_then(|hk| metagraph.by_hotkey(&hk)).cloned() else { continue };
            let access = &row.access;
            let pin = access.get("host_key").and_then(serde_json::Value::as_str).map(str::to_string);
            let host = access.get("host").and_then(serde_json::Value::as_str).map(str::to_string);
            let port = access.get("port").and_then(serde_json::Value::as_u64).and_then(|p| u16::try_from(p).ok());
            let plan = match (pin, host, port) {
                (Some(pin), Some(host), Some(port)) => {
                    let axon_ip = neuron.axon.as_ref().map(|a| a.ip);
                    let wrong_host = match (host.parse::<std::net::IpAddr>(), axon_ip) {
                        (Ok(ip), Some(axon)) => ip != axon && !(ip.is_loopback() && axon.is_loopback()),
                        _ => false,
                    };
                    if wrong_host {
                        Err(LivenessFailure::WrongHost { host, axon: axon_ip.map(|ip| ip.to_string()).unwrap_or_default() })
                    } else if !pinned.insert(pin.clone()) {
                        Err(LivenessFailure::Duplicate)
                    } else {
                        Ok((host, port, pin))
                    }
                }
                _ => Err(LivenessFailure::NoPin(format!("reservation {} has no host key, host or port in its access record", row.id))),
            };
            checks.push((neuron, plan));
        }
        let results = futures::future::join_all(checks.into_iter().map(|(neuron, plan)| async move {
            let result = match plan {
                Ok((host, port, pin)) => liveness::prove(&host, port, &pin, LIVENESS_TIMEOUT).await,
                Err(failure) => Err(failure),
            };
            (neuron, result)
        }))
        .await;
        let mut proven = HashSet::new();
        let mut failed = Vec::new();
        for (neuron, result) in results {
            let hotkey = neuron.hotkey.to_ss58();
            match result {
                Ok(()) => {
                    self.sandbox_proven.insert(hotkey.clone(), Instant::now());
                    proven.insert(hotkey);
                }
                Err(failure) => {
                    tracing::info!(target: "compute::validator", uid = neuron.uid, cause = failure.cause(), %failure, "allocation not proven alive");
                    failed.push((neuron, failure));
                }
            }
        }
        // A miner with one proven reservation is allocated even if another one failed.
        failed.retain(|(n, _)| !proven.contains(&n.hotkey.to_ss58()));
        for (neuron, _) in &failed {
            self.sandbox_proven.remove(&neuron.hotkey.to_ss58());
        }
        (proven, failed)
    }

    /// Own reservations that could not be proven alive count as failed challenges (history,
    /// status and records, with the proof's cause).
    async fn record_unproven(&mut self, unproven: &[(NeuronInfo, LivenessFailure)]) -> Vec<ChallengeRecord> {
        let mut records = Vec::new();
        for (neuron, failure) in unproven {
            let hotkey = neuron.hotkey.to_ss58();
            self.load_history(&hotkey).await;
            let difficulty = pow::next_difficulty(&self.stats(&hotkey), self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max);
            let elapsed_s = self.config.challenge_timeout.as_secs_f64();
            let history = self.history.entry(hotkey.clone()).or_default();
            history.push_front(Outcome::single(false, difficulty, elapsed_s));
            history.truncate(STATS_WINDOW);
            let cause = failure.cause().to_string();
            self.last.insert(hotkey.clone(), LastChallenge { success: false, difficulty, cause: Some(cause.clone()), detail: failure.to_string() });
            self.metrics.inc("compute_validator_challenges_total", &[("outcome", "failed")]);
            records.push(ChallengeRecord {
                id: uuid::Uuid::new_v4().to_string(),
                created_at_ms: now_ms(),
                netuid: self.netuid,
                validator_hotkey: self.hotkey.public().to_ss58(),
                miner_uid: neuron.uid,
                miner_hotkey: hotkey,
                success: false,
                elapsed_ms: elapsed_s * 1000.0,
                difficulty,
                cause: Some(cause),
            });
        }
        records
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
                    let claims = Claims {
                        has_docker: specs.get("has_docker").and_then(serde_json::Value::as_bool).unwrap_or(false),
                        gpus: specs.pointer("/gpu/count").and_then(serde_json::Value::as_u64).map_or(0, |n| n.min(64) as u32),
                    };
                    self.claims.insert(hotkey.clone(), claims);
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

    /// Whether a miner's GPU claim is due for a probe this round (and which probe).
    fn gpu_probe_due(&mut self, hotkey: &str) -> Option<(GpuProbe, u32)> {
        let gpus = self.claims.get(hotkey).map_or(0, |c| c.gpus);
        let probe = GpuProbe::for_claim(gpus, self.config.challenge_timeout)?;
        let probes = self.gpu_probes.entry(hotkey.to_string()).or_default();
        if probes.gpus != gpus {
            *probes = GpuProbes { gpus, ..GpuProbes::default() };
        }
        let due = probes.results.len() < 2 || probes.last_round.is_none_or(|r| self.rounds >= r + GPU_PROBE_EVERY_ROUNDS);
        due.then_some((probe, gpus))
    }

    /// Challenges `targets`: `challenges_per_round` challenges each at the miner's
    /// difficulty, every challenge at once with the deadline `round_started` + the timeout
    /// (a miner claiming GPUs may get one GPU probe instead, with the probe's own deadline);
    /// with `in_grace`, refusals for the validator's standing are dropped instead of recorded
    /// (see [`PERMIT_GRACE`]). A miner's challenges of the round are stored with the round's
    /// start as `created_at_ms` and enter its history as one [`Outcome`]. When `shutdown`
    /// fires, answers still outstanding are dropped (neither success nor failure) and the
    /// rest returned.
    async fn challenge_all(&mut self, targets: &[NeuronInfo], in_grace: bool, shutdown: &Shutdown, round_started: Instant) -> Vec<ChallengeRecord> {
        let round_ms = now_ms();
        let per_round = self.config.challenges_per_round.max(1);
        let mut plans: Vec<(NeuronInfo, Vec<Plan>)> = Vec::new();
        for neuron in targets {
            let hotkey = neuron.hotkey.to_ss58();
            self.load_history(&hotkey).await;
            let round = match self.gpu_probe_due(&hotkey) {
                Some((probe, gpus)) => vec![Plan::Probe(pow::generate(probe.difficulty, &mut rand::rngs::OsRng).0, probe, gpus)],
                None => {
                    let difficulty = pow::next_difficulty(&self.stats(&hotkey), self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max);
                    (0..per_round).map(|_| Plan::Regular(pow::generate(difficulty, &mut rand::rngs::OsRng).0)).collect()
                }
            };
            plans.push((neuron.clone(), round));
        }
        // One second of grace for the network on top of the miner's budget, counted from the
        // start of the round for every miner alike.
        let deadline = round_started + self.config.challenge_timeout + Duration::from_secs(1);
        let ask = Ask {
            client: self.client.clone(),
            me: self.hotkey.public().to_ss58(),
            netuid: self.netuid,
            round_ms,
            sent: Instant::now(),
            deadline,
            in_grace,
            climb_after: per_round,
            climb_before: Instant::now() + self.config.challenge_timeout / 4,
            difficulty_max: self.config.difficulty_max,
        };
        let max = self.config.challenges_max_per_round.max(per_round);
        let mut stop = shutdown.clone();
        let results: Vec<Answered> = futures::stream::iter(plans)
            .map(|(neuron, plans)| miner_round(ask.clone(), neuron, plans, max))
            // `batch_size` miners at once, each with its whole round.
            .flatten_unordered(self.config.batch_size)
            .take_until(async move { stop.wait().await })
            .filter_map(std::future::ready)
            .collect()
            .await;
        let mut records = Vec::with_capacity(results.len());
        let mut rounds: BTreeMap<String, Vec<(ChallengeRecord, String)>> = BTreeMap::new();
        for (record, detail, probe) in results {
            if let Some((probe, gpus)) = probe {
                // A probe checks the claim; it is not part of the challenge history.
                let seconds = record.elapsed_ms / 1000.0;
                let detail = if record.success {
                    format!("solved a 10^{}-candidate GPU probe in {seconds:.2} s", probe.difficulty)
                } else {
                    format!(
                        "claims {gpus} GPU(s) but did not solve a 10^{}-candidate probe within {:.1} s (GPUs at ≥ {:.0} MH/s search all of it in {:.1} s): {} {}",
                        probe.difficulty,
                        probe.deadline.as_secs_f64(),
                        crate::specs::GPU_FLOOR_HASHES_PER_S / 1e6,
                        10f64.powi(i32::from(probe.difficulty)) / (f64::from(gpus) * crate::specs::GPU_FLOOR_HASHES_PER_S),
                        record.cause.as_deref().unwrap_or("failed"),
                        detail,
                    )
                };
                let rounds = self.rounds;
                let probes = self.gpu_probes.entry(record.miner_hotkey.clone()).or_default();
                probes.results.push_front(record.success);
                probes.results.truncate(crate::specs::GPU_PROBE_WINDOW);
                probes.last_round = Some(rounds);
                probes.detail = detail;
                self.metrics.inc("compute_validator_gpu_probes_total", &[("outcome", if record.success { "passed" } else { "failed" })]);
                continue;
            }
            let outcome = if record.success { "solved" } else { "failed" };
            self.metrics.inc("compute_validator_challenges_total", &[("outcome", outcome)]);
            self.metrics.observe("compute_validator_challenge_seconds", &[("outcome", outcome)], record.elapsed_ms / 1000.0);
            rounds.entry(record.miner_hotkey.clone()).or_default().push((record.clone(), detail));
            records.push(record);
        }
        // Each miner's round enters its history as one outcome.
        for (hotkey, answered) in rounds {
            let challenges: Vec<(bool, u8, f64)> = answered.iter().map(|(r, _)| (r.success, r.difficulty, r.elapsed_ms / 1000.0)).collect();
            let Some(outcome) = Outcome::of_round(&challenges) else { continue };
            let history = self.history.entry(hotkey.clone()).or_default();
            history.push_front(outcome);
            history.truncate(STATS_WINDOW);
            // The last challenge shown: a solved one, else the first failure's cause.
            let shown = answered.iter().find(|(r, _)| r.success).or_else(|| answered.first());
            if let Some((record, detail)) = shown {
                self.last.insert(hotkey, LastChallenge { success: record.success, difficulty: record.difficulty, cause: record.cause.clone(), detail: detail.clone() });
            }
        }
        records
    }

    /// Why a miner's claims withhold its pay, if they do: an unchecked or contradicted GPU
    /// claim. Returns the rejection and the claim's state for the status.
    fn claim_rejection(&self, hotkey: &str) -> (Option<Failure>, Option<&'static str>) {
        let gpus = self.claims.get(hotkey).map_or(0, |c| c.gpus);
        if gpus == 0 {
            return (None, None);
        }
        let probes = self.gpu_probes.get(hotkey).filter(|p| p.gpus == gpus);
        let results: Vec<bool> = probes.map(|p| p.results.iter().copied().collect()).unwrap_or_default();
        match gpu_claim_verdict(&results) {
            Some(true) => (None, Some("verified")),
            Some(false) => (
                Some(Failure { cause: "false_specs".into(), detail: probes.map(|p| p.detail.clone()).unwrap_or_default() }),
                Some("contradicted"),
            ),
            None => (
                Some(Failure { cause: "specs_unchecked".into(), detail: format!("claims {gpus} GPU(s); nothing is paid until a GPU probe checks the claim") }),
                Some("unchecked"),
            ),
        }
    }

    /// Scores every uid: keeps the status rows and the weights; returns the records to store.
    async fn score_all(&mut self, metagraph: &Metagraph, allocated: &HashSet<String>, block: u64) -> Vec<ScoreRecord> {
        let own = metagraph.uid_of(&self.hotkey.public());
        let mut table = BTreeMap::new();
        let mut parts = Vec::new();
        for neuron in metagraph.neurons().to_vec() {
            let hotkey = neuron.hotkey.to_ss58();
            self.load_history(&hotkey).await;
            let stats = self.stats(&hotkey);
            let is_validator = self.is_validator(&neuron, own);
            let is_allocated = allocated.contains(&hotkey);
            let has_sandbox = self.sandbox_proven.get(&hotkey).is_some_and(|at| at.elapsed() < SANDBOX_PROOF_TTL);
            let claims = self.claims.get(&hotkey).copied().unwrap_or_default();
            let (rejection, gpu_claim) = self.claim_rejection(&hotkey);
            let components: Components = scoring::score(&self.config.scoring, &ScoreInput::from_stats(&stats, is_allocated, has_sandbox));
            let quality = if is_validator || rejection.is_some() { 0.0 } else { components.normalised };
            let outcomes: Vec<Outcome> = self.history.get(&hotkey).map(|h| h.iter().copied().collect()).unwrap_or_default();
            let work = scoring::work_per_round(&outcomes);
            let next_difficulty = pow::next_difficulty(&stats, self.config.adapt_rule, self.config.difficulty_min, self.config.difficulty_max);
            table.insert(
                neuron.uid,
                Row {
                    hotkey: hotkey.clone(),
                    score: 0.0,
                    total: components.total,
                    stats,
                    difficulty: self.last.get(&hotkey).map_or(next_difficulty, |last| last.difficulty),
                    next_difficulty,
                    allocated: is_allocated,
                    has_sandbox,
                    claims,
                    gpu_claim,
                    work,
                    rejection,
                    is_validator,
                },
            );
            parts.push((neuron, quality, components));
        }
        let max_work = parts.iter().filter(|(_, q, _)| *q > 0.0).filter_map(|(n, _, _)| table.get(&n.uid).map(|r| r.work)).fold(0.0, f64::max);
        let mut rows = Vec::new();
        let mut uid_scores = Vec::new();
        for (neuron, quality, components) in parts {
            let Some(row) = table.get_mut(&neuron.uid) else { continue };
            let score = scoring::combine(quality, row.work, max_work);
            row.score = score;
            // Loopback axons are exempt from the one-uid-per-IP rule: they only occur on a
            // local network, where every miner runs on one host (no validator elsewhere can
            // reach a miner's loopback, so there is nothing to gain from it on a real one).
            let ip = neuron.axon.as_ref().map(|a| a.ip).filter(|ip| !ip.is_loopback());
            uid_scores.push(UidScore { uid: neuron.uid, score, ip, is_validator: row.is_validator });
            let stats = row.stats;
            if !row.is_validator && (stats.attempts > 0 || row.allocated || row.rejection.is_some()) {
                let mut detail = serde_json::to_value(components).unwrap_or_default();
                if let Some(map) = detail.as_object_mut() {
                    map.insert("stats".into(), serde_json::to_value(stats).unwrap_or_default());
                    map.insert("difficulty_avg".into(), stats.last20_difficulty_avg.into());
                    map.insert("next_difficulty".into(), row.next_difficulty.into());
                    map.insert("success_rate".into(), (f64::from(stats.successes) / f64::from(stats.attempts.max(1))).into());
                    map.insert("has_sandbox".into(), row.has_sandbox.into());
                    map.insert("claims_sandbox".into(), row.claims.has_docker.into());
                    map.insert("gpus_claimed".into(), row.claims.gpus.into());
                    map.insert("gpu_claim".into(), row.gpu_claim.into());
                    map.insert("quality".into(), quality.into());
                    map.insert("work".into(), row.work.into());
                    map.insert("rejection".into(), serde_json::to_value(&row.rejection).unwrap_or_default());
                }
                rows.push(ScoreRecord {
                    created_at_ms: now_ms(),
                    netuid: self.netuid,
                    block,
                    validator_hotkey: self.hotkey.public().to_ss58(),
                    uid: neuron.uid,
                    hotkey: row.hotkey.clone(),
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
        let (allocated, unproven) = self.prove_allocations(metagraph).await;
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
        let unproven_keys: HashSet<String> = unproven.iter().map(|(n, _)| n.hotkey.to_ss58()).collect();
        let targets: Vec<NeuronInfo> =
            serving.into_iter().filter(|n| !allocated.contains(&n.hotkey.to_ss58()) && !unproven_keys.contains(&n.hotkey.to_ss58())).collect();
        let mut challenges = self.challenge_all(&targets, in_grace, shutdown, Instant::now()).await;
        challenges.extend(self.record_unproven(&unproven).await);
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
        self.claims.remove(hotkey);
        self.gpu_probes.remove(hotkey);
        self.sandbox_proven.remove(hotkey);
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
            // A withheld pay (false specs) is the failure that matters most; then the last challenge.
            last_failure: row.rejection.clone().or_else(|| {
                last.filter(|l| !l.success).map(|l| Failure { cause: l.cause.clone().unwrap_or_else(|| "failed".into()), detail: l.detail.clone() })
            }),
            speed: (stats.successes > 0).then(|| Speed { value: stats.mean_success_elapsed_s, unit: "s".into(), context: format!("@d{}", row.difficulty) }),
            details: serde_json::json!({
                "total": row.total,
                "attempts": stats.attempts,
                "difficulty": row.difficulty,
                "difficulty_avg": stats.last20_difficulty_avg,
                "next_difficulty": row.next_difficulty,
                "allocated": row.allocated,
                "has_sandbox": row.has_sandbox,
                "claims_sandbox": row.claims.has_docker,
                "gpus_claimed": row.claims.gpus,
                "gpu_claim": row.gpu_claim,
                "work": row.work,
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
    // Pending commit-reveal commits survive a restart (even `kill -9`) and are still revealed.
    let weights = WeightSetter::new(config.netuid, hotkey.clone(), config.neuron.epoch_length, config.neuron.version_key, Box::new(PlainWeights), metrics.clone())
        .with_state_file(config.data_dir().join("weight_commits.json"));
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
        assert!(
            long.challenges_per_round as usize <= crate::config::MinerConfig::default().max_challenges_per_caller,
            "a miner's default per-caller limit admits a whole round"
        );
        for (bad, epoch) in [
            (ValidatorConfig { difficulty_min: 9, difficulty_max: 8, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { difficulty_max: 13, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig::default(), 0),
            (ValidatorConfig { challenge_timeout: Duration::ZERO, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { challenge_timeout: Duration::from_secs(601), ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { challenges_per_round: 0, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { challenges_per_round: crate::config::MAX_CHALLENGES_PER_ROUND + 1, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { challenges_per_round: 8, challenges_max_per_round: 7, ..ValidatorConfig::default() }, 100),
            (ValidatorConfig { challenges_max_per_round: crate::config::MAX_CHALLENGES_MAX_PER_ROUND + 1, ..ValidatorConfig::default() }, 100),
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
