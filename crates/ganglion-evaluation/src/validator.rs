//! The model-evaluation validator on the neuron runtime: [`ModelValidator`] is the runtime's
//! [`Validator`]. One step (spec A4/A5):
//!
//! ```text
//!  competition = schedule[step % len]                         (round robin)
//!  every uid's chain commitment ─► new or changed? ─► parse, pick the store (axon / hub),
//!        fetch with the competition's byte cap and a deadline, hash-checked ─► tracked
//!        (or rejected with its cause; network failures are retried next step, the rest
//!        only when the commitment changes)
//!  fresh samples (the corpus, or the inference subnet's verified records)
//!  round::evaluate: duplicates by plain hash → earliest commit; GGUF checks; loss per sample
//!        on the engine; iswin with the competition's epsilon; win rates
//!  softmax(win_rate / T) ─► CompetitionTracker (EMA per competition) ─► subnet weights
//!  one records row per uid (evaluated / duplicate / rejected + cause); state saved
//! ```
//!
//! The runtime sets the weights from [`Validator::scores`] and saves the state after each
//! step ([`StateFile`]: atomic, so a `kill -9` loses at most the step in progress). Unlike the
//! original (which kept nothing), a restarted validator keeps its EMA weights and the models it
//! already downloaded and verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ganglion_chain::{Chain, Metagraph};
use ganglion_engine::tokenizer::Tokenizer;
use ganglion_neuron::peer::axon_url;
use ganglion_neuron::state::{StateError, StateFile};
use ganglion_neuron::status::{Failure, MinerStatus};
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{StepContext, Validator};
use ganglion_records::{ModelEvaluationRecord, Records};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::commitment::ModelCommitment;
use crate::loss::Sample;
use crate::round::{Candidate, Competition, RoundOutcome, evaluate, select_candidates};
use crate::scoring::{CompetitionTracker, EvalResult, should_retry, softmax, top_by_win_rate};
use crate::store::{FetchLimits, FetchRequest, ModelStore, StoreError, is_miner_served};

/// Deadline of one commitment read.
const COMMITMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the validator cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The data directory or the state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file operation.
    #[error("{what} {path}: {reason}")]
    Io {
        /// What was done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
}

/// Where each step's evaluation samples come from.
#[derive(Clone)]
pub enum DataSource {
    /// The shared corpus (standalone use).
    Corpus(Arc<ganglion_corpus::Corpus>),
    /// The inference subnet's verified records (`netuid` of the inference subnet), newest
    /// first within `window`.
    Records {
        /// The records store.
        records: Records,
        /// The inference subnet.
        netuid: u16,
        /// How far back records are taken.
        window: Duration,
    },
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Corpus(c) => write!(f, "Corpus({} entries)", c.entries().len()),
            DataSource::Records { netuid, window, .. } => write!(f, "Records(netuid {netuid}, {window:?})"),
        }
    }
}

impl DataSource {
    /// The shared corpus from its standard locations (`GANGLION_CORPUS_DIR`, /usr/share/wordnet,
    /// ~/.ganglion/corpus/wordnet).
    pub fn locate_corpus() -> Result<DataSource, ValidatorError> {
        ganglion_corpus::Corpus::locate().map(|c| DataSource::Corpus(Arc::new(c))).map_err(|e| ValidatorError::Config(format!("the evaluation corpus: {e}")))
    }

    async fn draw(&self, rng: &mut StdRng, n: usize) -> Result<Vec<Sample>, String> {
        match self {
            DataSource::Corpus(corpus) => Ok(crate::data::corpus_samples(corpus, rng, n)),
            DataSource::Records { records, netuid, window } => {
                let since = ganglion_records::now_ms().saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
                crate::data::record_samples(records, *netuid, Some(since), n).await.map_err(|e| format!("reading the inference records: {e}"))
            }
        }
    }
}

/// Evaluations kept per model for the retry rule.
pub const MAX_HISTORY: usize = 8;

/// Settings of the validator.
#[derive(Debug, Clone)]
pub struct EvaluationSettings {
    /// Subnet.
    pub netuid: u16,
    /// State, downloaded models.
    pub data_dir: PathBuf,
    /// The competitions (shares sum to 1).
    pub competitions: Vec<Competition>,
    /// Samples per step (the original: 400).
    pub samples: usize,
    /// EMA weight of the old value (finetuning: 0.9; pretraining: 0.5).
    pub alpha: f64,
    /// Download bounds (the byte cap is also the competition's `max_bytes`, whichever is smaller).
    pub fetch: FetchLimits,
    /// Seed of the data draws (`None`: from the OS).
    pub seed: Option<u64>,
    /// Models kept for the next step, the best by win rate (finetuning's top 5).
    pub keep: usize,
    /// Most models one step evaluates: the kept ones, then those new in their commitment or
    /// worth a retry ([`should_retry`]), earliest commit first (pretraining's cap: 25).
    pub max_models: usize,
}

impl EvaluationSettings {
    /// The originals' `sample_min`.
    pub const DEFAULT_KEEP: usize = 5;
    /// Pretraining's `updated_models_limit` (5·3 + 10).
    pub const DEFAULT_MAX_MODELS: usize = 25;

    fn check(&self) -> Result<(), ValidatorError> {
        if self.competitions.is_empty() {
            return Err(ValidatorError::Config("no competitions".into()));
        }
        let total: f64 = self.competitions.iter().map(|c| c.share).sum();
        if (total - 1.0).abs() > 1e-6 || self.competitions.iter().any(|c| !(c.share.is_finite() && c.share >= 0.0)) {
            return Err(ValidatorError::Config(format!("competition shares must be ≥ 0 and sum to 1, they sum to {total}")));
        }
        for c in &self.competitions {
            if c.id.is_empty() || c.id.len() > crate::commitment::MAX_COMPETITION_ID_LENGTH {
                return Err(ValidatorError::Config(format!("competition id `{}` must be 1–2 characters", c.id)));
            }
            if !(c.temperature.is_finite() && c.temperature > 0.0) || c.sequence_length < 2 {
                return Err(ValidatorError::Config(format!("competition {}: temperature must be > 0 and sequence_length ≥ 2", c.id)));
            }
        }
        if !(0.0..1.0).contains(&self.alpha) {
            return Err(ValidatorError::Config(format!("alpha must be in [0, 1), got {}", self.alpha)));
        }
        if self.samples == 0 {
            return Err(ValidatorError::Config("samples must be at least 1".into()));
        }
        if self.max_models == 0 || self.keep > self.max_models {
            return Err(ValidatorError::Config(format!("need 1 ≤ max_models and keep ≤ max_models, got keep {} and max_models {}", self.keep, self.max_models)));
        }
        Ok(())
    }
}

/// What is known of a uid's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    /// Downloaded and verified against the commitment.
    Ready {
        /// The directory.
        dir: PathBuf,
        /// What the engine loads: the GGUF file in it, or the directory itself for Hugging Face
        /// safetensors (`gguf` in state files of earlier versions).
        #[serde(alias = "gguf")]
        model: PathBuf,
        /// Plain directory hash.
        hash: String,
        /// Bytes.
        bytes: u64,
    },
    /// Refused, with the cause; `retry`: fetched again next step (network failures).
    Rejected {
        /// Why.
        cause: String,
        /// Plain hash of the files, if they were downloaded.
        hash: Option<String>,
        /// Try again next step.
        retry: bool,
    },
}

/// A uid's commitment and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedModel {
    /// The hotkey (SS58) that committed.
    pub hotkey: String,
    /// The committed string.
    pub commitment: String,
    /// Its block.
    pub block: u64,
    /// Its competition, when it parsed.
    pub competition: Option<String>,
    /// The model.
    pub state: ModelState,
    /// Its evaluations since this commitment was fetched, the last [`MAX_HISTORY`]: a model
    /// that is neither kept nor worth a retry by them ([`should_retry`]) is not evaluated
    /// again until it changes.
    #[serde(default)]
    pub history: Vec<EvalResult>,
}

/// One uid's last evaluation, for the status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastEvaluation {
    /// Step.
    pub step: u64,
    /// `evaluated`, `duplicate` or `rejected`.
    pub status: String,
    /// Mean loss.
    pub mean_loss: Option<f64>,
    /// Win rate.
    pub win_rate: Option<f64>,
    /// Cause of a rejection.
    pub reason: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    step: u64,
    tracker: CompetitionTracker,
    models: BTreeMap<u16, TrackedModel>,
    #[serde(default)]
    last: BTreeMap<u16, LastEvaluation>,
    /// The uids each competition keeps for its next step.
    #[serde(default)]
    kept: BTreeMap<String, Vec<u16>>,
}

/// The summary of the last step (status, tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step counter (after the step).
    pub step: u64,
    /// Competition evaluated.
    pub competition: String,
    /// Samples drawn.
    pub samples: usize,
    /// Models evaluated.
    pub evaluated: usize,
    /// Seconds of the whole step.
    pub seconds: f64,
    /// Seconds fetching models.
    pub fetch_seconds: f64,
    /// Seconds of the round (checks and losses).
    pub round_seconds: f64,
    /// Samples scored per second of round.
    pub samples_per_second: f64,
}

/// The model-evaluation validator.
pub struct ModelValidator {
    settings: EvaluationSettings,
    hotkey: String,
    data: DataSource,
    miner_store: Arc<dyn ModelStore>,
    hub_store: Option<Arc<dyn ModelStore>>,
    records: Option<Records>,
    saved: Saved,
    state: StateFile,
    rng: StdRng,
    summary: Option<StepSummary>,
    /// Each competition's own tokenizer, by id (those that fix one), loaded once.
    tokenizers: BTreeMap<String, Arc<Tokenizer>>,
}

impl std::fmt::Debug for ModelValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelValidator").field("step", &self.saved.step).field("data", &self.data).finish_non_exhaustive()
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ValidatorError + 'a {
    move |e| ValidatorError::Io { what, path: path.to_path_buf(), reason: e.to_string() }
}

/// The model in a downloaded directory: its one `.gguf` file, or the directory itself when it
/// holds Hugging Face safetensors + `config.json` + `tokenizer.json`.
fn find_model(dir: &Path) -> Result<PathBuf, String> {
    ganglion_engine::hf_model::locate(dir).map(|m| m.path().to_path_buf()).map_err(|e| e.to_string())
}

/// Network trouble is worth another try; a wrong or oversized model is not.
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Network(_) | StoreError::Deadline(_) | StoreError::Io(_) | StoreError::NoAxon)
}

impl ModelValidator {
    /// A validator signing as `hotkey` (SS58 for the records); loads the saved state from
    /// `settings.data_dir`.
    pub fn new(
        settings: EvaluationSettings,
        hotkey: String,
        data: DataSource,
        miner_store: Arc<dyn ModelStore>,
        hub_store: Option<Arc<dyn ModelStore>>,
        records: Option<Records>,
    ) -> Result<ModelValidator, ValidatorError> {
        settings.check()?;
        std::fs::create_dir_all(&settings.data_dir).map_err(io("creating", &settings.data_dir))?;
        let state = StateFile::new(settings.data_dir.join("evaluation-state.json"), settings.netuid);
        let saved: Saved = state.load()?.unwrap_or_default();
        let rng = match settings.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let mut tokenizers = BTreeMap::new();
        for c in &settings.competitions {
            if let Some(t) = c.load_tokenizer().map_err(ValidatorError::Config)? {
                tokenizers.insert(c.id.clone(), Arc::new(t));
            }
        }
        Ok(ModelValidator { settings, hotkey, data, miner_store, hub_store, records, saved, state, rng, summary: None, tokenizers })
    }

    /// The tracked models by uid.
    pub fn models(&self) -> &BTreeMap<u16, TrackedModel> {
        &self.saved.models
    }

    /// Each uid's last evaluation.
    pub fn last_evaluations(&self) -> &BTreeMap<u16, LastEvaluation> {
        &self.saved.last
    }

    /// Steps done (survives restarts).
    pub fn steps(&self) -> u64 {
        self.saved.step
    }

    /// The last step's summary.
    pub fn summary(&self) -> Option<&StepSummary> {
        self.summary.as_ref()
    }

    /// The subnet weights now (sum 1 over uids with weight).
    pub fn weights(&self) -> BTreeMap<u16, f64> {
        let shares: Vec<(String, f64)> = self.settings.competitions.iter().map(|c| (c.id.clone(), c.share)).collect();
        self.saved.tracker.subnet_weights(&shares)
    }

    fn model_dir(&self, uid: u16) -> PathBuf {
        self.settings.data_dir.join("models").join(format!("uid{uid}"))
    }

    fn forget_uid(&mut self, uid: u16) {
        self.saved.tracker.forget(uid);
        self.saved.models.remove(&uid);
        self.saved.last.remove(&uid);
        for kept in self.saved.kept.values_mut() {
            kept.retain(|&u| u != uid);
        }
        let dir = self.model_dir(uid);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(target: "evaluation::validator", uid, "cannot remove {}: {e}", dir.display());
        }
    }

    /// Reads every uid's commitment and fetches what is new or changed.
    pub async fn sync_models(&mut self, chain: &Arc<dyn Chain>, metagraph: &Metagraph, own_uid: Option<u16>) {
        let present: Vec<u16> = metagraph.neurons().iter().map(|n| n.uid).collect();
        let gone: Vec<u16> = self.saved.models.keys().copied().filter(|u| !present.contains(u)).collect();
        for uid in gone {
            self.forget_uid(uid);
        }
        for neuron in metagraph.neurons() {
            if Some(neuron.uid) == own_uid {
                continue;
            }
            let hotkey = neuron.hotkey.to_ss58();
            // Changed hands while this validator was down (the runtime reports changes only
            // between its own syncs): the old owner's weight and model go.
            if self.saved.models.get(&neuron.uid).is_some_and(|m| m.hotkey != hotkey) {
                self.forget_uid(neuron.uid);
            }
            let read = tokio::time::timeout(COMMITMENT_TIMEOUT, chain.commitment(self.settings.netuid, &neuron.hotkey)).await;
            let commitment = match read {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(target: "evaluation::validator", uid = neuron.uid, "cannot read the commitment: {e}");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(target: "evaluation::validator", uid = neuron.uid, "the commitment read timed out");
                    continue;
                }
            };
            let Some(commitment) = commitment else {
                if self.saved.models.contains_key(&neuron.uid) {
                    self.forget_uid(neuron.uid);
                }
                continue;
            };
            if let Some(known) = self.saved.models.get(&neuron.uid) {
                let same = known.hotkey == hotkey && known.commitment == commitment.data && known.block == commitment.block;
                let usable = match &known.state {
                    ModelState::Ready { model, .. } => model.exists(),
                    ModelState::Rejected { retry, .. } => !retry,
                };
                if same && usable {
                    continue;
                }
            }
            let tracked = self.fetch_model(neuron, &hotkey, &commitment.data, commitment.block).await;
            if let ModelState::Rejected { cause, .. } = &tracked.state {
                tracing::info!(target: "evaluation::validator", uid = neuron.uid, %cause, "model rejected");
            } else {
                tracing::info!(target: "evaluation::validator", uid = neuron.uid, commitment = %commitment.data, "model fetched and verified");
            }
            self.saved.models.insert(neuron.uid, tracked);
        }
    }

    async fn fetch_model(&self, neuron: &ganglion_chain::NeuronInfo, hotkey: &str, data: &str, block: u64) -> TrackedModel {
        let mut tracked = TrackedModel {
            hotkey: hotkey.to_string(),
            commitment: data.to_string(),
            block,
            competition: None,
            state: ModelState::Rejected { cause: String::new(), hash: None, retry: false },
            history: Vec::new(),
        };
        let reject = |cause: String, retry: bool| ModelState::Rejected { cause, hash: None, retry };
        let parsed = match ModelCommitment::parse(data) {
            Ok(c) => c,
            Err(e) => {
                tracked.state = reject(format!("bad commitment: {e}"), false);
                return tracked;
            }
        };
        tracked.competition = Some(parsed.competition().to_string());
        let Some(competition) = self.settings.competitions.iter().find(|c| c.id == parsed.competition()) else {
            tracked.state = reject(format!("unknown competition `{}`", parsed.competition()), false);
            return tracked;
        };
        let store = if is_miner_served(&parsed) {
            self.miner_store.clone()
        } else {
            match &self.hub_store {
                Some(s) => s.clone(),
                None => {
                    tracked.state = reject("a Hugging Face Hub model, and this validator has no hub store".into(), false);
                    return tracked;
                }
            }
        };
        let limits = FetchLimits { max_bytes: self.settings.fetch.max_bytes.min(competition.limits.max_bytes), ..self.settings.fetch };
        let request = FetchRequest {
            commitment: parsed,
            hotkey: neuron.hotkey,
            axon: neuron.axon.as_ref().map(axon_url),
            dest: self.model_dir(neuron.uid),
            limits,
        };
        tracked.state = match store.fetch(&request).await {
            Ok(fetched) => match find_model(&fetched.dir) {
                Ok(model) => ModelState::Ready { dir: fetched.dir, model, hash: fetched.hash, bytes: fetched.bytes },
                Err(cause) => ModelState::Rejected { cause, hash: Some(fetched.hash), retry: false },
            },
            Err(e) => reject(e.to_string(), retryable(&e)),
        };
        tracked
    }

    /// One step at `block`: sync the models, draw samples, run the round of the scheduled
    /// competition, update the weights and record every uid.
    pub async fn run_step(
        &mut self,
        chain: &Arc<dyn Chain>,
        metagraph: &Metagraph,
        own_uid: Option<u16>,
        block: u64,
        shutdown: ganglion_neuron::Shutdown,
    ) -> Result<StepSummary, String> {
        let started = Instant::now();
        let index = usize::try_from(self.saved.step % self.settings.competitions.len() as u64).unwrap_or(0);
        let competition = self.settings.competitions[index].clone();
        self.sync_models(chain, metagraph, own_uid).await;
        let fetch_seconds = started.elapsed().as_secs_f64();
        let samples = self.data.draw(&mut self.rng, self.settings.samples).await?;
        if samples.is_empty() {
            return Err("no evaluation data: the source gave no usable samples".into());
        }
        let ready: Vec<Candidate> = self
            .saved
            .models
            .iter()
            .filter(|(_, m)| m.competition.as_deref() == Some(competition.id.as_str()))
            .filter_map(|(&uid, m)| match &m.state {
                ModelState::Ready { model, hash, .. } => Some(Candidate { uid, block: m.block, hash: hash.clone(), model: model.clone() }),
                ModelState::Rejected { .. } => None,
            })
            .collect();
        let kept = self.saved.kept.get(&competition.id).cloned().unwrap_or_default();
        let models = &self.saved.models;
        let settled = |uid: u16| models.get(&uid).is_some_and(|m| !should_retry(&competition.epsilon, block, &m.history));
        let (candidates, copies) = select_candidates(&ready, &kept, &settled, self.settings.max_models);
        if candidates.len() < ready.len() - copies.len() {
            tracing::info!(
                target: "evaluation::validator",
                selected = candidates.len(),
                ready = ready.len() - copies.len(),
                "evaluating the kept models and the new ones; the rest keep their standing until they change"
            );
        }
        let round_started = Instant::now();
        let outcome: RoundOutcome = {
            let (comp, cands, samples, stop) = (competition.clone(), candidates.clone(), samples.clone(), shutdown.clone());
            let tokenizer = self.tokenizers.get(&competition.id).cloned();
            tokio::task::spawn_blocking(move || evaluate(&comp, tokenizer.as_deref(), &cands, &samples, block, &|| stop.is_set()))
                .await
                .map_err(|e| format!("the evaluation task failed: {e}"))?
        };
        let round_seconds = round_started.elapsed().as_secs_f64();
        if shutdown.is_set() {
            // A partial round would compare models on different sample counts: drop it.
            return Err("stopped during the round; its results are dropped".into());
        }
        let mut outcome = outcome;
        outcome.duplicates.extend(copies);
        outcome.duplicates.sort_unstable();
        outcome.duplicates.dedup();
        // Each evaluated model's result against the round's winner (the best win rate), for
        // the retry rule.
        let winner = outcome.wins.iter().max_by(|a, b| a.1.win_rate.total_cmp(&b.1.win_rate).then(b.0.cmp(a.0))).map(|(&uid, _)| uid);
        let winner_block = winner.and_then(|u| candidates.iter().find(|c| c.uid == u)).map_or(block, |c| c.block);
        let winner_score = winner.and_then(|u| outcome.mean_loss(u)).unwrap_or(f64::INFINITY);
        for &uid in outcome.losses.keys() {
            let score = outcome.mean_loss(uid).unwrap_or(f64::INFINITY);
            if let Some(m) = self.saved.models.get_mut(&uid) {
                m.history.push(EvalResult { block, score, winning_model_block: winner_block, winning_model_score: winner_score });
                let excess = m.history.len().saturating_sub(MAX_HISTORY);
                m.history.drain(..excess);
            }
        }
        // Models the checks refused are not loaded again until they change.
        for (uid, cause) in &outcome.rejected {
            if let Some(m) = self.saved.models.get_mut(uid) {
                let hash = match &m.state {
                    ModelState::Ready { hash, .. } => Some(hash.clone()),
                    ModelState::Rejected { hash, .. } => hash.clone(),
                };
                m.state = ModelState::Rejected { cause: cause.clone(), hash, retry: false };
            }
        }
        let uids: Vec<u16> = outcome.wins.keys().copied().collect();
        let rates: Vec<f64> = outcome.wins.values().map(|w| w.win_rate).collect();
        let soft = softmax(&rates, competition.temperature);
        let fresh: BTreeMap<u16, f64> = uids.into_iter().zip(soft).collect();
        self.saved.tracker.record(&competition.id, &fresh, self.settings.alpha);
        self.saved.kept.insert(competition.id.clone(), top_by_win_rate(&outcome.wins, self.settings.keep));
        self.saved.step += 1;
        let weights = self.weights();
        self.record(&competition, &outcome, metagraph, block, &weights).await;
        let summary = StepSummary {
            step: self.saved.step,
            competition: competition.id.clone(),
            samples: samples.len(),
            evaluated: outcome.losses.len(),
            seconds: started.elapsed().as_secs_f64(),
            fetch_seconds,
            round_seconds,
            samples_per_second: if round_seconds > 0.0 { outcome.scored_samples as f64 / round_seconds } else { 0.0 },
        };
        tracing::info!(target: "evaluation::validator", step = summary.step, competition = %summary.competition, evaluated = summary.evaluated, samples = summary.samples, seconds = summary.seconds, "step done");
        self.summary = Some(summary.clone());
        Ok(summary)
    }

    async fn record(&mut self, competition: &Competition, outcome: &RoundOutcome, metagraph: &Metagraph, block: u64, weights: &BTreeMap<u16, f64>) {
        let now = ganglion_records::now_ms();
        let step = self.saved.step;
        let mut rows = Vec::new();
        for (&uid, m) in &self.saved.models {
            // Rejections are recorded whatever the competition; the rest only in their own.
            let rejected_early = matches!(m.state, ModelState::Rejected { .. }) && !outcome.rejected.contains_key(&uid);
            if m.competition.as_deref() != Some(competition.id.as_str()) && !rejected_early {
                continue;
            }
            let (status, reason, hash) = if let Some(cause) = outcome.rejected.get(&uid) {
                ("rejected", Some(cause.clone()), None)
            } else if outcome.duplicates.contains(&uid) {
                let hash = match &m.state {
                    ModelState::Ready { hash, .. } => Some(hash.clone()),
                    ModelState::Rejected { hash, .. } => hash.clone(),
                };
                let original = self
                    .saved
                    .models
                    .iter()
                    .filter(|(u, o)| **u != uid && matches!(&o.state, ModelState::Ready { hash: h, .. } if Some(h) == hash.as_ref()) && o.block <= m.block)
                    .map(|(u, _)| *u)
                    .min();
                ("duplicate", Some(match original {
                    Some(o) => format!("a copy of uid {o}'s earlier commit"),
                    None => "a copy of an earlier commit".to_string(),
                }), hash)
            } else {
                match &m.state {
                    ModelState::Ready { hash, .. } => {
                        if !outcome.losses.contains_key(&uid) {
                            continue;
                        }
                        ("evaluated", None, Some(hash.clone()))
                    }
                    ModelState::Rejected { cause, hash, .. } => ("rejected", Some(cause.clone()), hash.clone()),
                }
            };
            let win = outcome.wins.get(&uid);
            let mean_loss = outcome.mean_loss(uid);
            let last = LastEvaluation { step, status: status.to_string(), mean_loss, win_rate: win.map(|w| w.win_rate), reason: reason.clone() };
            self.saved.last.insert(uid, last);
            let hotkey = metagraph.neuron(uid).map(|n| n.hotkey.to_ss58()).unwrap_or_else(|| m.hotkey.clone());
            rows.push(ModelEvaluationRecord {
                id: format!("{}-{}-{step}-{uid}", self.hotkey, self.settings.netuid),
                created_at_ms: now,
                netuid: self.settings.netuid,
                block,
                validator_hotkey: self.hotkey.clone(),
                step,
                competition: m.competition.clone().unwrap_or_default(),
                uid,
                miner_hotkey: hotkey,
                commitment: m.commitment.chars().take(1024).collect(),
                commit_block: m.block,
                model_hash: hash,
                status: status.to_string(),
                reason: reason.map(|r| r.chars().take(2000).collect()),
                mean_loss,
                win_rate: win.map(|w| w.win_rate),
                wins: win.map_or(0, |w| w.wins),
                matches: win.map_or(0, |w| w.matches),
                weight: weights.get(&uid).copied().unwrap_or(0.0),
                samples: outcome.losses.get(&uid).map_or(0, |l| l.len() as u64),
            });
        }
        if let Some(records) = &self.records
            && let Err(e) = records.insert_model_evaluations(&rows).await
        {
            tracing::warn!(target: "evaluation::validator", "cannot record the step's evaluations: {e}");
        }
    }
}

#[async_trait]
impl Validator for ModelValidator {
    async fn step(&mut self, ctx: &StepContext<'_>) -> Result<(), String> {
        self.run_step(ctx.chain, ctx.metagraph, Some(ctx.uid), ctx.block, ctx.shutdown.clone()).await.map(|_| ())
    }

    fn scores(&self, metagraph: &Metagraph) -> Vec<(u16, f32)> {
        let weights = self.weights();
        (0..metagraph.n())
            .map(|uid| {
                let w = weights.get(&uid).copied().unwrap_or(0.0);
                (uid, if w.is_finite() && w > 0.0 { w as f32 } else { 0.0 })
            })
            .collect()
    }

    fn on_hotkey_change(&mut self, change: &HotkeyChange) {
        self.forget_uid(change.uid);
    }

    fn status(&self, metagraph: &Metagraph, weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        let weight: BTreeMap<u16, f32> = weights.iter().copied().collect();
        let scores = self.weights();
        let rows = metagraph
            .neurons()
            .iter()
            .map(|n| {
                let model = self.saved.models.get(&n.uid);
                let last = self.saved.last.get(&n.uid);
                let rejected = match model.map(|m| &m.state) {
                    Some(ModelState::Rejected { cause, .. }) => Some(cause.clone()),
                    _ => None,
                };
                let last_failure = rejected.clone().map(|cause| Failure { cause: "rejected".into(), detail: cause });
                // Why the uid has no weight: its rejection, or the earlier commit it copies.
                let reason = rejected.or_else(|| last.filter(|l| l.status != "evaluated").and_then(|l| l.reason.clone()));
                MinerStatus {
                    uid: n.uid,
                    hotkey: n.hotkey.to_ss58(),
                    score: scores.get(&n.uid).copied().unwrap_or(0.0),
                    weight: f64::from(weight.get(&n.uid).copied().unwrap_or(0.0)),
                    verified_share: last.and_then(|l| l.win_rate),
                    last_failure,
                    speed: None,
                    details: serde_json::json!({
                        "commitment": model.map(|m| m.commitment.clone()),
                        "commit_block": model.map(|m| m.block),
                        "competition": model.and_then(|m| m.competition.clone()),
                        "step": last.map(|l| l.step),
                        "status": last.map(|l| l.status.clone()),
                        "mean_loss": last.and_then(|l| l.mean_loss),
                        "win_rate": last.and_then(|l| l.win_rate),
                        "reason": reason,
                    }),
                }
            })
            .collect();
        let details = serde_json::json!({
            "steps": self.saved.step,
            "competitions": self.settings.competitions.iter().map(|c| serde_json::json!({"id": c.id, "share": c.share})).collect::<Vec<_>>(),
            "data": format!("{:?}", self.data),
            "last_step": self.summary,
        });
        (rows, details)
    }

    fn save(&mut self) -> Result<(), StateError> {
        self.state.save(&self.saved)
    }
}

