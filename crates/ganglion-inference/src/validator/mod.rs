//! The validator: each step it picks a model, samples miners that serve it, runs a loaded
//! round ([`round::run_loaded_round`]: for a fixed window every miner has `concurrency`
//! synthetic requests in flight, each with its own prompt, seed and drawn sampling
//! parameters), verifies the answers and records per miner the verified tokens it
//! delivered within the window per second; the runtime's loop ([`ganglion_neuron::validator`])
//! syncs the metagraph, sets weights through the runtime's [`WeightSetter`], saves the
//! scores and publishes the status around it.
//!
//! ```text
//!  runtime loop: MetagraphSync ─▶ on_hotkey_change (reset that uid) ─▶ permit?
//!        │
//!   step: model ─▶ targets (axon served, not self, not a big validator, serve model)
//!        │                           │ a prompt per request (corpus topics) + sampling
//!        │                           ▼
//!        │    loaded round: signed streams, `concurrency` in flight per miner for a window
//!        │                           ▼ bounded reads ─▶ verify (logprob | ground truth)
//!        └── WeightSetter ◀── scoreboard (windowed tokens/s) ──▶ scores.json, records
//!                                        └──▶ NodeStatus (/status, status.json), /metrics
//! ```
//!
//! Selection follows the original: miners without a served axon, the validator itself, and
//! validator-permit holders with more than `vpermit_tao_limit` stake are skipped; the sample
//! is reshuffled every step. Unlike the original, weights are proportional to scores (no
//! min-max), are set when the chain's rate limit and the epoch length allow, and a refusal
//! is retried when the chain's answer says (the runtime's policy). Every failure is
//! recorded with its cause and counts as a zero in the miner's window — `REFUSED` too once
//! this validator holds a permit (every miner's default policy admits permitted validators,
//! so a miner cannot refuse exactly the requests it would do badly on); only refusals of a
//! validator without a permit and answers the validator could not judge do not count.
//!
//! Integrity measures (issue 12's red team): every sampled miner gets its own prompt and
//! seed, so one engine cannot answer for several hotkeys and a cached answer fits no other
//! prompt; completions shared across miners where fair draws would differ are `DUPLICATE`;
//! a miner that stops answering `GET /models` keeps the models it served and is still
//! queried (its failures count), and results older than `score_ttl` leave the windows; the
//! verifier's evidence is accumulated per miner ([`Scoreboard::accumulate`]).

pub mod config;
pub mod models;
pub mod query;
pub mod round;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ganglion_chain::{Chain, Metagraph, RAO_PER_TAO};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_engine::tokenizer::{ChatMessage, Tokenizer};
use ganglion_neuron::metrics::LATENCY_BUCKETS;
use ganglion_neuron::state::{StateError, StateFile};
use ganglion_neuron::status::{Failure, MinerStatus, NodeStatus, Role, Speed, StatusBoard};
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{ValidatorCrashed, LoopSettings, StepContext, Validator, ValidatorNode, ValidatorTask};
use ganglion_neuron::weights::{PlainWeights, WeightSetter};
use ganglion_neuron::{Metrics, Shutdown};
use ganglion_records::{InferenceRecord, Records, ScoreRecord};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;

pub use config::{ReferenceSpec, ValidatorFile};
pub use models::ModelSource;
pub use query::{Dendrite, Target};
pub use round::{Load, LoadedRound, RoundResult, run_loaded_round, run_round, run_round_each, run_round_timed};

use crate::error::{InferenceError, Result};
use crate::openai::{Endpoint, InferenceRequest, Prompt, Sampling};
use crate::organic::OrganicConfig;
use crate::prompts::{PromptBank, PromptSeed, accept_variation, to_prompt, variation_request};
use crate::records::{Record, RecordWriter};
use crate::reference::Reference;
use crate::scoring::Scoreboard;
use crate::stream::StreamLimits;
use crate::verify::{Outcome, VerifyConfig};

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsTarget {
    /// Nowhere.
    Disabled,
    /// A store URL (`sqlite:…` or `postgres://…`).
    Url(String),
}

/// Everything [`start`] needs.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// Subnet.
    pub netuid: u16,
    /// The validator's hotkey (signs requests and weights).
    pub hotkey: Keypair,
    /// Where `scores.json`, `status.json` and the default records database live.
    pub data_dir: PathBuf,
    /// Blocks between weight settings (`--neuron.epoch_length`, 360).
    pub epoch_length: u64,
    /// Miners per round (`--neuron.sample_size`, 256: all of a full subnet). A round
    /// measures the work a miner delivers in a fixed time while every sampled miner is
    /// loaded at once; a miner left out of a round is measured in another one, so with a
    /// sample smaller than the subnet a machine behind N hotkeys is mostly measured for
    /// each of them alone, at the whole machine's speed, and paid about N times.
    pub sample_size: usize,
    /// Requests in flight at each sampled miner during a round (`--neuron.concurrency`, 4;
    /// at most a default miner's per-caller limit, 8): enough that an honest miner's engine
    /// never idles between answers. See [`round::Load`].
    pub concurrency: usize,
    /// How long a round sends requests (`--neuron.round_window`, 20 s); a miner's score for
    /// the round is the verified tokens it delivered within it per second.
    pub round_window: Duration,
    /// At most this many requests per miner and round (`--neuron.max_requests`, 32): bounds
    /// the verification work a fast (or lying) miner can cause.
    pub max_requests: usize,
    /// Model list source.
    pub models: ModelSource,
    /// Verification settings.
    pub verify: VerifyConfig,
    /// Largest `max_tokens` drawn.
    pub max_tokens: u32,
    /// Smallest `max_tokens` drawn.
    pub min_tokens: u32,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Deadline for the first token.
    pub first_token_timeout: Duration,
    /// Deadline for a whole response.
    pub total_timeout: Duration,
    /// Shortest time between the starts of two steps.
    pub step_interval: Duration,
    /// Validator-permit holders with more stake than this (rao) are not queried (4096 TAO).
    pub vpermit_tao_limit_rao: u64,
    /// Score window length per model (30).
    pub window: usize,
    /// Reword seed instructions with the reference model.
    pub vary_prompts: bool,
    /// Token budget of a rewording.
    pub vary_max_tokens: u32,
    /// Records store.
    pub records: RecordsTarget,
    /// Where to serve `/metrics` and `/status` (None: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Organic endpoint for the validator's own users.
    pub organic: Option<OrganicConfig>,
    /// How often the model list and the miners' served models are refreshed.
    pub models_refresh: Duration,
    /// `version_key` sent with weights (`None`: the runtime's, the SDK's `version_as_int`).
    pub version_key: Option<u64>,
    /// False-positive budget of the per-miner accumulated test (over a miner's whole
    /// sequence of checks; see [`Scoreboard::accumulate`]).
    pub miner_alpha: f64,
    /// Results older than this drop out of the score windows, so a miner that stops
    /// answering (or stops being reachable) loses its score even if nobody queries it.
    pub score_ttl: Duration,
    /// How `https://` endpoints (`--models.endpoint`) are verified: the system's roots,
    /// plus `[tls] ca_file`.
    pub tls: ganglion_tls::ClientTls,
}

impl ValidatorConfig {
    /// The defaults of the original where they carry over (epoch 360 blocks, 4096 TAO
    /// permit limit, window 30), every miner in every round (the original samples 48), CPU-sized token budgets (64–256) and deadlines
    /// (5 s connect, 30 s first token, 120 s total).
    pub fn new(netuid: u16, hotkey: Keypair, data_dir: PathBuf) -> ValidatorConfig {
        let records = RecordsTarget::Url(Records::default_url(&data_dir));
        ValidatorConfig {
            netuid,
            hotkey,
            data_dir,
            epoch_length: 360,
            sample_size: 256,
            concurrency: 4,
            round_window: Duration::from_secs(20),
            max_requests: 32,
            models: ModelSource::Default,
            verify: VerifyConfig::default(),
            max_tokens: 256,
            min_tokens: 64,
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
            step_interval: Duration::from_secs(2),
            vpermit_tao_limit_rao: 4_096 * RAO_PER_TAO,
            window: 30,
            vary_prompts: true,
            vary_max_tokens: 24,
            records,
            metrics_listen: None,
            organic: None,
            models_refresh: Duration::from_secs(600),
            version_key: None,
            miner_alpha: 1e-4,
            score_ttl: Duration::from_secs(3600),
            tls: ganglion_tls::ClientTls::system(),
        }
    }

    pub(crate) fn limits(&self, max_tokens: u32) -> StreamLimits {
        let mut limits = StreamLimits::for_tokens(max_tokens, self.first_token_timeout, self.total_timeout);
        limits.idle_timeout = self.first_token_timeout.min(self.total_timeout);
        limits
    }
}


/// What the models a miner said it serves were, and when asked.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) models: Vec<String>,
    pub(crate) asked: Instant,
    pub(crate) answered: bool,
}

/// State shared by the validator's step and the organic endpoint.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ValidatorConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) scoreboard: Mutex<Scoreboard>,
    pub(crate) metagraph: RwLock<Option<Metagraph>>,
    pub(crate) served: RwLock<HashMap<PublicKey, Served>>,
    pub(crate) references: HashMap<String, Arc<dyn Reference>>,
    pub(crate) dendrite: Dendrite,
    pub(crate) records: RecordWriter,
    pub(crate) models: RwLock<Vec<String>>,
}

impl Shared {
    /// The block of the last metagraph the step saw.
    pub(crate) fn block(&self) -> u64 {
        self.metagraph.read().ok().and_then(|m| m.as_ref().map(Metagraph::block)).unwrap_or(0)
    }

    pub(crate) fn reference(&self, model: &str) -> Option<Arc<dyn Reference>> {
        self.references.get(model).cloned()
    }

    pub(crate) fn scoreboard(&self) -> std::sync::MutexGuard<'_, Scoreboard> {
        self.scoreboard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this validator holds a validator permit in the last metagraph seen (every
    /// miner's default policy admits permitted validators, so a refusal then counts).
    pub(crate) fn permitted(&self) -> bool {
        let me = self.config.hotkey.public();
        self.metagraph.read().ok().and_then(|m| m.as_ref().and_then(|m| m.by_hotkey(&me).map(|n| n.validator_permit))).unwrap_or(false)
    }

    /// Records answers one by one (organic traffic): scores (verifiable models only; each
    /// answer a window entry of its tokens/s), metrics, records. `weight` is how many
    /// results one counts for (organic answers verified with probability `f` count `1/f`
    /// times, so an unverified one carries its share of risk).
    pub(crate) fn account(&self, results: &[RoundResult], block: u64, organic: bool, weight: usize) {
        for (result, judged) in results.iter().zip(self.judge(results, block, organic)) {
            let model = &result.request.model;
            let mut board = self.scoreboard();
            match judged {
                Judged::Unscored => {}
                Judged::Condemned(f) => board.condemn(result.target.uid, &result.target.hotkey, model, (f.cause.name(), &f.detail)),
                Judged::Verified { .. } => board.record(result.target.uid, &result.target.hotkey, model, result.tps(), None, organic),
                Judged::Failed(f) => {
                    for _ in 0..weight.max(1) {
                        board.record(result.target.uid, &result.target.hotkey, model, None, Some((f.cause.name(), &f.detail)), organic);
                    }
                }
            }
        }
    }

    /// Records a loaded round ([`run_loaded_round`]): metrics and records per answer, and
    /// per miner one window entry, the verified tokens it delivered per second of the
    /// window, less `max_tokens` for every answer that failed and counts (a failed answer
    /// costs what it claimed to be, so mixing cheap fakes into real work loses). A miner
    /// that completed nothing within the window gets a zero (`TIMEOUT`); one whose answers
    /// all did not count (refusals before this validator's permit, unverifiable models)
    /// gets no entry.
    pub(crate) fn account_round(&self, model: &str, targets: &[Target], round: &LoadedRound, window: Duration, block: u64) {
        let judged = self.judge(&round.results, block, false);
        let secs = window.as_secs_f64().max(1e-3);
        for (i, target) in targets.iter().enumerate() {
            let mine: Vec<(&RoundResult, &Judged)> = round.results.iter().zip(&judged).filter(|(r, _)| r.target.hotkey == target.hotkey).collect();
            if mine.is_empty() {
                if round.dropped.get(i).copied().unwrap_or(0) > 0 && self.references.contains_key(model) {
                    // Nothing came back within the window: too slow for the round.
                    let detail = format!("no answer completed within the {window:?} window");
                    self.scoreboard().record(target.uid, &target.hotkey, model, None, Some((crate::cause::Cause::Timeout.name(), &detail)), false);
                }
                continue;
            }
            let mut board = self.scoreboard();
            if let Some(Judged::Condemned(f)) = mine.iter().map(|(_, j)| *j).find(|j| matches!(j, Judged::Condemned(_))) {
                board.condemn(target.uid, &target.hotkey, model, (f.cause.name(), &f.detail));
                continue;
            }
            let (mut tokens, mut penalty, mut counted, mut verified, mut failure) = (0.0, 0.0, 0u64, 0u64, None);
            for (result, judged) in &mine {
                match judged {
                    Judged::Verified { tokens: t } => {
                        tokens += f64::from(*t);
                        counted += 1;
                        verified += 1;
                    }
                    Judged::Failed(f) => {
                        penalty += f64::from(result.request.sampling.max_tokens);
                        counted += 1;
                        failure.get_or_insert(f);
                    }
                    Judged::Unscored | Judged::Condemned(_) => {}
                }
            }
            if counted == 0 {
                continue;
            }
            let value = (tokens - penalty).max(0.0) / secs;
            let round = crate::scoring::RoundEntry { value, verified, failed: counted - verified };
            board.record_round(target.uid, &target.hotkey, model, round, failure.map(|f| (f.cause.name(), f.detail.as_str())));
        }
    }

    /// Metrics, records and the accumulated evidence of each answer, and what it counts for.
    fn judge(&self, results: &[RoundResult], block: u64, organic: bool) -> Vec<Judged> {
        let permitted = self.permitted();
        let mut judged = Vec::with_capacity(results.len());
        for result in results {
            let request = &result.request;
            let scored = self.references.contains_key(&request.model);
            // Every judged answer's evidence joins the miner's sums, failed ones too: under
            // an honest miner all of them are fair draws (leaving the failures out would test
            // a selected sample), and a miner whose answers mostly fail is condemned — its
            // few lucky passes wiped — as soon as the sums say so.
            let mut failure_override = None;
            if scored
                && let Some(evidence) = &result.verdict.evidence
                && let Some(detail) = self.scoreboard().accumulate(&result.target.hotkey, &request.model, &evidence.families, self.config.miner_alpha)
            {
                failure_override = Some(crate::cause::Failure::new(crate::cause::Cause::SamplingMismatch, detail));
            }
            let (outcome, cause) = match (&failure_override, &result.verdict.outcome) {
                (Some(f), _) => ("failed", f.cause.name()),
                (None, Outcome::Verified) => ("verified", "none"),
                (None, Outcome::Failed(f)) => ("failed", f.cause.name()),
                (None, Outcome::Unverifiable(_)) => ("unverifiable", "none"),
            };
            self.metrics.inc("ganglion_inference_verifications_total", &[("outcome", outcome), ("cause", cause)]);
            let streamed = result.streamed();
            if !streamed.total.is_zero() {
                self.metrics.observe("ganglion_inference_request_seconds", &[], streamed.total.as_secs_f64());
            }
            if let Some(ttft) = streamed.ttft {
                self.metrics.observe("ganglion_inference_ttft_seconds", &[], ttft.as_secs_f64());
            }
            let mut record = inference_record(&self.config, request, result, block, organic);
            if let Some(f) = &failure_override {
                record.verified = false;
                record.cause = Some(f.cause.name().to_string());
                record.detail["failure"] = json!(f.detail);
            }
            self.records.send(Record::Inference(Box::new(record)));
            judged.push(match (failure_override, &result.verdict.outcome) {
                (_, _) if !scored => Judged::Unscored,
                (Some(f), _) => Judged::Condemned(f),
                (None, Outcome::Verified) => Judged::Verified { tokens: result.verdict.tokens },
                (None, Outcome::Failed(f)) if f.cause.counts_against_miner(permitted) => Judged::Failed(f.clone()),
                (None, Outcome::Failed(_) | Outcome::Unverifiable(_)) => Judged::Unscored,
            });
        }
        judged
    }
}

/// What one answer counts for in the scores.
#[derive(Debug, Clone)]
enum Judged {
    /// Verified, with its verified tokens.
    Verified { tokens: u32 },
    /// Failed, and held against the miner.
    Failed(crate::cause::Failure),
    /// The miner's accumulated evidence condemned it with this answer.
    Condemned(crate::cause::Failure),
    /// Not scored: a model without a reference, an answer that could not be judged, or a
    /// refusal that is the miner's right.
    Unscored,
}

/// The record of one result (what the loop and the organic endpoint store).
pub fn inference_record(config: &ValidatorConfig, request: &InferenceRequest, result: &RoundResult, block: u64, organic: bool) -> InferenceRecord {
    let streamed = result.streamed();
    let total = streamed.total.as_secs_f64();
    let tokens = if result.verdict.tokens > 0 { result.verdict.tokens } else { streamed.tokens.len() as u32 };
    let response: String = streamed.text.chars().take(64 * 1024).collect();
    let (cause, detail) = match &result.verdict.outcome {
        Outcome::Verified => (None, json!({"stats": result.verdict.stats})),
        Outcome::Failed(f) => (Some(f.cause.name().to_string()), json!({"failure": f.detail, "stats": result.verdict.stats})),
        Outcome::Unverifiable(reason) => (None, json!({"unverifiable": reason})),
    };
    InferenceRecord {
        id: uuid::Uuid::new_v4().to_string(),
        created_at_ms: ganglion_records::now_ms(),
        netuid: config.netuid,
        block,
        validator_hotkey: config.hotkey.public().to_ss58(),
        miner_uid: result.target.uid,
        miner_hotkey: result.target.hotkey.to_ss58(),
        miner_coldkey: result.target.coldkey.to_ss58(),
        model: request.model.clone(),
        endpoint: request.endpoint.name().to_string(),
        organic,
        sampling: json!(request.sampling),
        seed: request.sampling.seed,
        prompt: request.prompt_json(),
        response,
        ttft_ms: streamed.ttft.map(|d| d.as_secs_f64() * 1000.0),
        total_ms: total * 1000.0,
        tokens,
        tps: result.tps().unwrap_or(if total > 0.0 { f64::from(tokens) / total } else { 0.0 }),
        verified: result.verdict.verified(),
        cause,
        similarity: result.verdict.similarity,
        detail,
    }
}


/// The inference validator as the runtime runs it (see the module doc).
pub struct InferenceValidator {
    shared: Arc<Shared>,
    state: StateFile,
    bank: PromptBank,
    rng: StdRng,
    models_due: Instant,
    steps: u64,
    resynced: bool,
    verifiable: Vec<String>,
    records_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for InferenceValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceValidator").field("netuid", &self.shared.config.netuid).field("steps", &self.steps).finish_non_exhaustive()
    }
}

impl InferenceValidator {
    /// The score board (a copy).
    pub fn scoreboard(&self) -> Scoreboard {
        self.shared.scoreboard().clone()
    }

    fn my_uid(&self, metagraph: &Metagraph) -> Option<u16> {
        metagraph.uid_of(&self.shared.config.hotkey.public())
    }
}

/// Reads the saved scores; a file of the format before the runtime's state files (a bare
/// board) is ignored with a warning, anything else unreadable is an error.
fn restore_scores(file: &StateFile, netuid: u16, window: usize) -> Result<Scoreboard> {
    let restored = match file.load::<Scoreboard>() {
        Ok(board) => board,
        Err(StateError::Corrupt { path, reason }) => {
            let old = ganglion_core::fsutil::read_bounded(&path, 256 << 20).ok().and_then(|b| serde_json::from_slice::<Scoreboard>(&b).ok());
            if old.is_none() {
                return Err(StateError::Corrupt { path, reason }.into());
            }
            tracing::warn!(target: "ganglion::inference", path = %path.display(), "ignoring a score state in the old format; starting from empty scores");
            None
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match restored {
        Some(mut board) => {
            board.window = window.max(1);
            board.netuid = netuid;
            tracing::info!(target: "ganglion::inference", miners = board.miners.len(), block = board.block, "score state restored");
            board
        }
        None => Scoreboard::new(netuid, window),
    })
}

#[async_trait]
impl Validator for InferenceValidator {
    async fn step(&mut self, ctx: &StepContext<'_>) -> std::result::Result<(), String> {
        let shared = self.shared.clone();
        let metagraph = ctx.metagraph;
        let me = shared.config.hotkey.public();
        if !self.resynced {
            // Hotkeys that left or moved while the validator was down.
            let dropped = shared.scoreboard().sync(metagraph);
            if !dropped.is_empty() {
                tracing::info!(target: "ganglion::inference", ?dropped, "scores reset for hotkeys that left or changed uid while stopped");
            }
            self.resynced = true;
        }
        if let Ok(mut m) = shared.metagraph.write() {
            *m = Some(metagraph.clone());
        }
        // Models and who serves them.
        let refresh_all = Instant::now() >= self.models_due;
        if refresh_all {
            match models::load(&shared.config.models, &self.verifiable, &shared.config.tls).await {
                Ok(list) => {
                    if let Ok(mut m) = shared.models.write() {
                        *m = list;
                    }
                }
                Err(e) => tracing::warn!(target: "ganglion::inference", "model list: {e}; keeping the last one"),
            }
            self.models_due = Instant::now() + shared.config.models_refresh;
        }
        refresh_served(&shared, metagraph, &me, refresh_all).await;
        let models = shared.models.read().map(|m| m.clone()).unwrap_or_default();
        // Every third step a model the validator can verify, so verified work keeps flowing.
        let pool: Vec<&String> =
            if self.steps.is_multiple_of(3) { models.iter().filter(|m| shared.references.contains_key(*m)).collect() } else { models.iter().collect() };
        let model = pool.choose(&mut self.rng).map(|m| (*m).clone()).or_else(|| models.first().cloned());
        self.steps += 1;
        let Some(model) = model else { return Ok(()) };
        let mut targets = candidates(&shared, metagraph, &me, Some(&model));
        targets.shuffle(&mut self.rng);
        targets.truncate(shared.config.sample_size.max(1));
        if targets.is_empty() {
            tracing::debug!(target: "ganglion::inference", %model, "no miner serves the model yet");
            return Ok(());
        }
        // Every request gets its own prompt and seed, drawn independently: one engine cannot
        // answer for several hotkeys, and an answer cached for one prompt fits no other.
        // One of them (the first) is reworded by the reference when `vary_prompts` is on.
        // All of a round's requests ask for the same number of tokens: streams of unequal
        // length would give whoever picks which to serve first something to choose.
        let (low, high) = (shared.config.min_tokens.max(1), shared.config.max_tokens.max(shared.config.min_tokens.max(1)));
        let round_tokens = self.rng.gen_range(low..=high);
        let load = Load { concurrency: shared.config.concurrency.max(1), window: shared.config.round_window, max_requests: shared.config.max_requests.max(1) };
        let mut queues = Vec::with_capacity(targets.len());
        for i in 0..targets.len() {
            let mut queue = Vec::with_capacity(load.max_requests);
            for j in 0..load.max_requests {
                queue.push(build_request(&shared, &self.bank, &mut self.rng, &model, i == 0 && j == 0, (round_tokens, round_tokens)).await);
            }
            queues.push(queue);
        }
        tracing::debug!(target: "ganglion::inference", %model, miners = targets.len(), max_tokens = round_tokens, window = ?load.window, concurrency = load.concurrency, "querying");
        shared.metrics.add("ganglion_inference_miners_queried_total", &[], targets.len() as f64);
        let reference = shared.reference(&model);
        let limits = shared.config.limits(round_tokens);
        // A stop during the round abandons it: its answers are neither scored nor recorded
        // (a half-verified round would be unfair to the miners not yet judged), and the
        // process exits well within its stop timeout.
        let mut stop = ctx.shutdown.clone();
        let round = run_loaded_round(&shared.dendrite, reference.as_deref(), &shared.config.verify, queues, &targets, limits, load);
        let round = tokio::select! {
            done = round => done,
            () = stop.wait() => {
                tracing::info!(target: "ganglion::inference", %model, miners = targets.len(), "stopping: the round in progress is abandoned");
                return Ok(());
            }
        };
        if let Some(elapsed) = round.verification {
            shared.metrics.observe("ganglion_inference_verification_seconds", &[], elapsed.as_secs_f64());
        }
        for r in &round.results {
            match r.failure() {
                Some(f) => tracing::info!(target: "ganglion::inference", uid = r.target.uid, %model, cause = %f.cause, detail = %f.detail, "response failed"),
                None => tracing::debug!(target: "ganglion::inference", uid = r.target.uid, %model, tps = r.tps().unwrap_or(0.0), verified = r.verdict.verified(), "response"),
            }
        }
        shared.account_round(&model, &targets, &round, load.window, ctx.block);
        let ttl_ms = i64::try_from(shared.config.score_ttl.as_millis()).unwrap_or(i64::MAX);
        shared.scoreboard().expire(ganglion_core::clock::now_ms_i64().saturating_sub(ttl_ms));
        Ok(())
    }

    fn scores(&self, metagraph: &Metagraph) -> Vec<(u16, f32)> {
        let me = self.my_uid(metagraph);
        let board = self.shared.scoreboard();
        metagraph.neurons().iter().filter(|n| Some(n.uid) != me).map(|n| (n.uid, board.score(&n.hotkey) as f32)).filter(|(_, s)| *s > 0.0).collect()
    }

    fn on_hotkey_change(&mut self, change: &HotkeyChange) {
        let dropped = self.shared.scoreboard().reset_uid(change.uid, change.old.as_ref());
        if !dropped.is_empty() {
            tracing::info!(target: "ganglion::inference", uid = change.uid, ?dropped, "scores reset: the uid changed hands");
        }
    }

    async fn on_weights_set(&mut self, metagraph: &Metagraph, weights: &[(u16, f32)], block: u64) {
        let shared = &self.shared;
        let rows: Vec<ScoreRecord> = {
            let board = shared.scoreboard();
            weights
                .iter()
                .filter_map(|&(uid, weight)| {
                    let neuron = metagraph.neuron(uid)?;
                    let entry = board.miners.get(&neuron.hotkey.to_ss58())?;
                    Some(ScoreRecord {
                        created_at_ms: ganglion_records::now_ms(),
                        netuid: shared.config.netuid,
                        block,
                        validator_hotkey: shared.config.hotkey.public().to_ss58(),
                        uid,
                        hotkey: neuron.hotkey.to_ss58(),
                        score: entry.score(),
                        components: json!({
                            "weight": weight,
                            "models": entry.models.keys().map(|m| (m.clone(), entry.model_score(m))).collect::<HashMap<_, _>>(),
                            "verified": entry.verified, "failed": entry.failed, "organic_verified": entry.organic_verified,
                        }),
                    })
                })
                .collect()
        };
        shared.records.send(Record::Scores(rows));
    }

    fn status(&self, metagraph: &Metagraph, weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        let me = self.my_uid(metagraph);
        let share: HashMap<u16, f64> = weights.iter().map(|&(uid, w)| (uid, f64::from(w))).collect();
        let board = self.shared.scoreboard();
        let miners = metagraph
            .neurons()
            .iter()
            .filter(|n| Some(n.uid) != me)
            .map(|n| {
                let entry = board.miners.get(&n.hotkey.to_ss58());
                MinerStatus {
                    uid: n.uid,
                    hotkey: n.hotkey.to_ss58(),
                    score: entry.map_or(0.0, |e| e.score()),
                    weight: share.get(&n.uid).copied().unwrap_or(0.0),
                    verified_share: entry.and_then(|e| e.verified_percent()).map(|p| p / 100.0),
                    last_failure: entry
                        .and_then(|e| e.last_cause.clone().map(|cause| Failure { cause, detail: e.last_detail.clone().unwrap_or_default() })),
                    speed: entry.and_then(|e| e.verified_tps()).map(|tps| Speed { value: tps, unit: "tok/s".into(), context: String::new() }),
                    details: json!({
                        "verified": entry.map_or(0, |e| e.verified),
                        "failed": entry.map_or(0, |e| e.failed),
                        "organic_verified": entry.map_or(0, |e| e.organic_verified),
                        "models": entry.map(|e| e.models.keys().map(|m| (m.clone(), e.model_score(m))).collect::<std::collections::BTreeMap<_, _>>()).unwrap_or_default(),
                    }),
                }
            })
            .collect();
        let models = self.shared.models.read().map(|m| m.clone()).unwrap_or_default();
        (miners, json!({"verify_mode": self.shared.config.verify.mode.name(), "models": models}))
    }

    fn save(&mut self) -> std::result::Result<(), StateError> {
        let block = self.shared.block();
        let board = {
            let mut board = self.shared.scoreboard();
            board.block = block;
            board.clone()
        };
        self.state.save(&board)
    }

    async fn shutdown(&mut self) {
        self.shared.records.close();
        if let Some(task) = self.records_task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!(target: "ganglion::inference", "the records store did not finish writing within 10 s; the rest is lost");
                abort.abort();
            }
        }
    }
}

/// A running validator.
#[derive(Debug)]
pub struct ValidatorHandle {
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    organic_addr: Option<SocketAddr>,
    total_timeout: Duration,
    task: ValidatorTask<InferenceValidator>,
    servers: Vec<JoinHandle<()>>,
}

impl ValidatorHandle {
    /// The current status (what `/status` serves and `status.json` holds).
    pub fn status(&self) -> NodeStatus {
        self.board.get()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `/metrics` and `/status` are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the organic endpoint listens.
    pub fn organic_addr(&self) -> Option<SocketAddr> {
        self.organic_addr
    }

    /// A token that fires when the validator is asked to stop.
    pub fn token(&self) -> Shutdown {
        self.task.token()
    }

    /// Stops after the current step (its requests are bounded by the deadlines), saves the
    /// scores, flushes the records and stops the servers.
    pub async fn shutdown(self) -> std::result::Result<(), ValidatorCrashed> {
        let limit = self.total_timeout + Duration::from_secs(30);
        let ValidatorHandle { task, servers, .. } = self;
        let stopped = task.stop(limit).await.map(drop);
        stop_servers(servers).await;
        stopped
    }

    /// Waits until the validator stopped (after its shutdown token fired), saved and flushed;
    /// an error if its loop panicked.
    pub async fn wait(self) -> std::result::Result<(), ValidatorCrashed> {
        let ValidatorHandle { task, servers, .. } = self;
        let stopped = task.wait().await.map(drop);
        stop_servers(servers).await;
        stopped
    }
}

async fn stop_servers(servers: Vec<JoinHandle<()>>) {
    for server in servers {
        let abort = server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
            abort.abort();
        }
    }
}

fn describe(metrics: &Metrics) {
    metrics.counter("ganglion_inference_miners_queried_total", "Miner requests sent.");
    metrics.counter("ganglion_inference_verifications_total", "Responses by outcome and cause.");
    metrics.counter("ganglion_inference_organic_requests_total", "Organic requests, by result.");
    metrics.histogram("ganglion_inference_request_seconds", "Total time of miners' responses (synthetic and organic), failed ones included.", LATENCY_BUCKETS);
    metrics.histogram("ganglion_inference_ttft_seconds", "Time to the first token of miners' responses.", LATENCY_BUCKETS);
    metrics.histogram("ganglion_inference_verification_seconds", "Time to verify one round's responses against the reference.", LATENCY_BUCKETS);
}

/// Starts the validator: opens the records store, restores the scores, serves `/metrics`
/// and `/status` (and the organic endpoint), and runs the runtime's loop until `shutdown`
/// fires or [`ValidatorHandle::shutdown`] is called. `references` are the models it can
/// verify (by [`Reference::model`]).
pub async fn start(config: ValidatorConfig, chain: Arc<dyn Chain>, references: Vec<Arc<dyn Reference>>, shutdown: Option<Shutdown>) -> Result<ValidatorHandle> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| InferenceError::io("creating", &config.data_dir, e))?;
    let metrics = Arc::new(Metrics::new());
    describe(&metrics);
    let state = StateFile::new(config.data_dir.join("scores.json"), config.netuid);
    let scoreboard = restore_scores(&state, config.netuid, config.window)?;
    let (records, records_task) = match &config.records {
        RecordsTarget::Disabled => (RecordWriter::disabled(metrics.clone()), None),
        RecordsTarget::Url(url) => {
            let store = Records::open(url).await.map_err(|e| InferenceError::Records(e.to_string()))?;
            tracing::info!(target: "ganglion::inference", url = %store.display_url(), "records store open");
            let (writer, task) = RecordWriter::spawn(store, 4096, metrics.clone());
            (writer, Some(task))
        }
    };
    let references: HashMap<String, Arc<dyn Reference>> = references.into_iter().map(|r| (r.model().to_string(), r)).collect();
    let verifiable: Vec<String> = references.keys().cloned().collect();
    let dendrite = Dendrite::new(config.hotkey.clone(), config.connect_timeout)?;
    let hotkey = config.hotkey.public().to_ss58();
    let mut initial = NodeStatus::new("inference", Role::Validator, config.netuid, hotkey);
    initial.details = json!({"verify_mode": config.verify.mode.name(), "models": []});
    let board = Arc::new(StatusBoard::new(initial, Some(config.data_dir.join("status.json"))));
    let shared = Arc::new(Shared {
        config: config.clone(),
        metrics: metrics.clone(),
        scoreboard: Mutex::new(scoreboard),
        metagraph: RwLock::new(None),
        served: RwLock::new(HashMap::new()),
        references,
        dendrite,
        records,
        models: RwLock::new(Vec::new()),
    });
    let validator = InferenceValidator {
        shared: shared.clone(),
        state,
        bank: PromptBank::locate(),
        rng: StdRng::from_entropy(),
        models_due: Instant::now(),
        steps: 0,
        resynced: false,
        verifiable,
        records_task,
    };
    let weights = WeightSetter::new(config.netuid, config.hotkey.clone(), config.epoch_length, config.version_key, Box::new(PlainWeights), metrics.clone())
        .with_state_file(config.data_dir.join("weight_commits.json"));
    let node = ValidatorNode {
        chain,
        netuid: config.netuid,
        hotkey: config.hotkey.clone(),
        metrics: metrics.clone(),
        board: board.clone(),
        weights,
        settings: LoopSettings { step_interval: config.step_interval, idle_interval: Duration::from_secs(1) },
    };
    // The servers first (a port in use fails the start before the loop runs).
    let (trigger, token) = Shutdown::new();
    let mut servers = Vec::new();
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let router = ganglion_neuron::server::routes(board.clone(), metrics.clone());
            let (bound, task) = ganglion_neuron::server::serve(addr, router, token.clone()).await.map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
            servers.push(task);
            tracing::info!(target: "ganglion::inference", addr = %bound, "serving /metrics and /status");
            Some(bound)
        }
        None => None,
    };
    let organic_addr = match &config.organic {
        Some(organic) => {
            let router = crate::organic::router(shared.clone(), organic.clone());
            let served = ganglion_neuron::server::serve_tls(organic.listen, router, organic.tls.as_ref(), token.clone()).await.map_err(|e| InferenceError::Bind { addr: organic.listen, reason: e.to_string() });
            let (bound, task) = match served {
                Ok(v) => v,
                Err(e) => {
                    trigger.trigger();
                    return Err(e);
                }
            };
            servers.push(task);
            let scheme = if organic.tls.is_some() { "https" } else { "http" };
            tracing::info!(target: "ganglion::inference", addr = %bound, scheme, "serving the organic OpenAI endpoint");
            Some(bound)
        }
        None => None,
    };
    let task = ValidatorTask::spawn(node, validator, shutdown);
    // The servers stop with the loop.
    let mut stopped = task.token();
    tokio::spawn(async move {
        stopped.wait().await;
        trigger.trigger();
    });
    Ok(ValidatorHandle { board, metrics, metrics_addr, organic_addr, total_timeout: config.total_timeout, task, servers })
}

/// Miners worth querying for `model`; see the module doc.
pub(crate) fn candidates(shared: &Shared, metagraph: &Metagraph, me: &PublicKey, model: Option<&str>) -> Vec<Target> {
    let served = shared.served.read().map(|s| s.clone()).unwrap_or_default();
    metagraph
        .neurons()
        .iter()
        .filter(|n| n.hotkey != *me)
        .filter(|n| !(n.validator_permit && n.stake > shared.config.vpermit_tao_limit_rao))
        .filter_map(|n| {
            let axon = n.axon.as_ref()?;
            if axon.port == 0 || axon.ip.is_unspecified() {
                return None;
            }
            if let Some(model) = model
                && !served.get(&n.hotkey).is_some_and(|s| s.models.iter().any(|m| m == model))
            {
                return None;
            }
            Some(Target { uid: n.uid, hotkey: n.hotkey, coldkey: n.coldkey, addr: SocketAddr::new(axon.ip, axon.port) })
        })
        .collect()
}

/// Asks miners which models they serve (after telling them ours): all of them when `all`,
/// else only those whose last answer failed more than [`SERVED_RETRY`] ago.
/// How soon a miner that did not answer `GET /models` is asked again. Short, because the
/// usual reason is transient: the miner refused us before our validator permit arrived (the
/// first epoch after registration, or before its own metagraph sync saw the permit), or it
/// was still starting. The asks are concurrent and bounded by a 3 s timeout, so retrying
/// dead axons costs little (in practice once a step: a round outlasts this).
const SERVED_RETRY: Duration = Duration::from_secs(5);

async fn refresh_served(shared: &Shared, metagraph: &Metagraph, me: &PublicKey, all: bool) {
    let models = shared.models.read().map(|m| m.clone()).unwrap_or_default();
    let now = Instant::now();
    let due: Vec<Target> = {
        let served = shared.served.read().map(|s| s.clone()).unwrap_or_default();
        candidates(shared, metagraph, me, None)
            .into_iter()
            .filter(|t| all || served.get(&t.hotkey).is_none_or(|s| !s.answered && now.duration_since(s.asked) > SERVED_RETRY))
            .collect()
    };
    if due.is_empty() {
        return;
    }
    let timeout = Duration::from_secs(3);
    let answers = futures::future::join_all(due.iter().map(|t| {
        let models = &models;
        async move {
            shared.dendrite.announce_models(t, models, timeout).await;
            shared.dendrite.served_models(t, timeout).await
        }
    }))
    .await;
    let answered = answers.iter().filter(|a| a.is_some()).count();
    tracing::debug!(target: "ganglion::inference", asked = due.len(), answered, "asked miners which models they serve");
    if let Ok(mut served) = shared.served.write() {
        for (target, answer) in due.iter().zip(answers) {
            let answered = answer.is_some();
            // A miner that stops answering keeps the models it last said it serves, so it is
            // still queried — and its failures count — instead of silently dropping out of
            // the sample with its score intact.
            let models = match answer {
                Some(models) => models,
                None => served.get(&target.hotkey).map(|s| s.models.clone()).unwrap_or_default(),
            };
            served.insert(target.hotkey, Served { models, asked: now, answered });
        }
    }
}

/// Draws sampling parameters across the whole range the verifier covers: a quarter greedy,
/// the rest temperature 0.3–1.0 and top_p 0.85–0.99 (as the original), half of them with a
/// top_k, and — when the reference has full logits — half with a repetition penalty.
fn draw_sampling(rng: &mut StdRng, tokens: (u32, u32), exact_reference: bool) -> Sampling {
    let two_places = |v: f64| (v * 100.0).round() / 100.0;
    let temperature = if rng.gen_bool(0.25) { 0.0 } else { two_places(rng.gen_range(0.3..1.0)) };
    let (low, high) = (tokens.0.max(1), tokens.1.max(tokens.0.max(1)));
    let top_k = if rng.gen_bool(0.5) { 0 } else { [20, 40, 50, 100][rng.gen_range(0..4)] };
    let repetition_penalty = if exact_reference && rng.gen_bool(0.5) { two_places(rng.gen_range(1.0..1.2)) } else { 1.0 };
    Sampling {
        temperature,
        top_p: two_places(rng.gen_range(0.85..0.99)),
        top_k,
        repetition_penalty,
        max_tokens: rng.gen_range(low..=high),
        seed: Some(rng.gen_range(10_000..=10_000_000)),
    }
}

/// One synthetic request as the validator's step draws it (without rewording): a prompt from
/// `bank`, chat or completion at even odds, and sampling from [`draw_sampling`] with
/// `max_tokens` in `tokens`. `tokenizer` (the reference's) renders completion prompts
/// through the model's chat template when it has one. `exact`: the reference has full
/// logits (repetition penalties are drawn only then).
pub fn synthetic_request(bank: &PromptBank, rng: &mut StdRng, model: &str, tokenizer: Option<&Tokenizer>, tokens: (u32, u32), exact: bool) -> InferenceRequest {
    let seed = bank.draw(rng);
    let instruction = seed.instruction.clone();
    shape_request(&seed, &instruction, rng, model, tokenizer, tokens, exact)
}

fn shape_request(seed: &PromptSeed, instruction: &str, rng: &mut StdRng, model: &str, tokenizer: Option<&Tokenizer>, tokens: (u32, u32), exact: bool) -> InferenceRequest {
    let endpoint = if rng.gen_bool(0.5) { Endpoint::Chat } else { Endpoint::Completion };
    let chat = to_prompt(Endpoint::Chat, seed, instruction);
    // An instruct model given a bare completion prompt often ends at once; when the
    // reference knows the model's chat template, completion prompts are that template
    // rendered as text (what the model expects; special tokens in it are parsed).
    let templated = match (&chat, tokenizer) {
        (Prompt::Chat(messages), Some(tokenizer)) if endpoint == Endpoint::Completion && tokenizer.has_chat_template() => {
            let messages: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
            tokenizer.apply_chat_template(&messages, true).ok().map(|text| Prompt::Text(without_leading_bos(tokenizer, text)))
        }
        _ => None,
    };
    let prompt = match endpoint {
        Endpoint::Chat => chat,
        Endpoint::Completion => templated.unwrap_or_else(|| to_prompt(Endpoint::Completion, seed, instruction)),
    };
    InferenceRequest { model: model.to_string(), endpoint, prompt, sampling: draw_sampling(rng, tokens, exact) }
}

/// `text` without the BOS token text it starts with, when the model's servers add BOS to a
/// completion prompt themselves (`add_bos_token`, Gemma): a template that writes BOS (Gemma's
/// does) rendered into a completion prompt would otherwise reach the model with two.
fn without_leading_bos(tokenizer: &Tokenizer, text: String) -> String {
    if !tokenizer.adds_bos() {
        return text;
    }
    match tokenizer.bos_token().map(|id| tokenizer.token_text(id)) {
        Some(bos) if !bos.is_empty() && text.starts_with(&bos) => text[bos.len()..].to_string(),
        _ => text,
    }
}

/// Builds one miner's request: a drawn instruction, reworded by the reference if enabled
/// and `reword`.
async fn build_request(shared: &Shared, bank: &PromptBank, rng: &mut StdRng, model: &str, reword: bool, tokens: (u32, u32)) -> InferenceRequest {
    let seed = bank.draw(rng);
    let mut instruction = seed.instruction.clone();
    if reword
        && shared.config.vary_prompts
        && let Some(reference) = shared.reference(model).or_else(|| shared.references.values().next().cloned())
    {
        let (prompt, sampling) = variation_request(&seed, rng, shared.config.vary_max_tokens.max(4));
        let varied = match crate::openai::prompt_tokens(&prompt, reference.tokenizer()) {
            Ok(ids) => reference.generate(ids, sampling).await.ok().and_then(|g| accept_variation(&g.text)),
            Err(_) => None,
        };
        if let Some(v) = varied {
            instruction = v;
        }
    }
    let reference = shared.reference(model);
    let exact = reference.as_ref().is_some_and(|r| r.exact());
    shape_request(&seed, &instruction, rng, model, reference.as_ref().map(|r| r.tokenizer()), tokens, exact)
}

