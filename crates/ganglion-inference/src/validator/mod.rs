//! The validator: each step it picks a model, samples miners that serve it, sends them one
//! synthetic request with a drawn seed and sampling parameters, times and verifies the
//! streams, updates the scores, records everything, and every `epoch_length` blocks sets
//! weights.
//!
//! ```text
//!  metagraph.sync ─▶ model ─▶ targets (axon served, not self, not a big validator, serve model)
//!        │                           │ prompt (seed set, varied by the reference) + sampling
//!        │                           ▼
//!        │           round: signed streams ─▶ bounded reads ─▶ verify (logprob | ground truth)
//!        │                           ▼
//!        └── weights ◀── scoreboard (windowed TPS) ──▶ scores.json, status.json, records
//! ```
//!
//! Selection follows the original: miners without a served axon, the validator itself, and
//! validator-permit holders with more than `vpermit_tao_limit` stake are skipped; the sample
//! is reshuffled every step. Unlike the original, weights are proportional to scores (no
//! min-max), the chain's answer to `set_weights` is logged as the chain named it, and
//! chain or miner failures never stop the loop. Every failure is recorded with its cause and
//! counts as a zero in the miner's window — except `REFUSED` (the miner's policy turned this
//! validator away, e.g. before its permit) and answers the validator could not judge.

pub mod config;
pub mod models;
pub mod query;
pub mod round;
pub mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ganglion_chain::{Chain, Metagraph, RAO_PER_TAO};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_records::{InferenceRecord, Records, ScoreRecord};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{ReferenceSpec, ValidatorFile};
pub use models::ModelSource;
pub use query::{Dendrite, Target};
pub use round::{RoundResult, run_round};
pub use status::{MinerStatus, ValidatorStatus};

use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;
use crate::openai::{Endpoint, InferenceRequest, Prompt, Sampling};
use ganglion_engine::tokenizer::ChatMessage;
use crate::organic::OrganicConfig;
use crate::prompts::{PromptBank, accept_variation, to_prompt, variation_request};
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
    /// Miners per step (`--neuron.sample_size`, 48).
    pub sample_size: usize,
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
    /// Wait after a refused `set_weights` before trying again.
    pub weights_retry: Duration,
}

impl ValidatorConfig {
    /// The defaults of the original where they carry over (epoch 360 blocks, 48 miners,
    /// 4096 TAO permit limit, window 30), CPU-sized token budgets (64–256) and deadlines
    /// (5 s connect, 30 s first token, 120 s total).
    pub fn new(netuid: u16, hotkey: Keypair, data_dir: PathBuf) -> ValidatorConfig {
        let records = RecordsTarget::Url(Records::default_url(&data_dir));
        ValidatorConfig {
            netuid,
            hotkey,
            data_dir,
            epoch_length: 360,
            sample_size: 48,
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
            weights_retry: Duration::from_secs(12),
        }
    }

    pub(crate) fn limits(&self, max_tokens: u32) -> StreamLimits {
        let mut limits = StreamLimits::for_tokens(max_tokens, self.first_token_timeout, self.total_timeout);
        limits.idle_timeout = self.first_token_timeout.min(self.total_timeout);
        limits
    }
}

/// `version_key` sent with weights: `100000·major + 1000·minor + 10·patch` (the original's).
pub fn version_key() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    100_000 * major + 1_000 * minor + 10 * patch
}

/// What the models a miner said it serves were, and when asked.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) models: Vec<String>,
    pub(crate) asked: Instant,
    pub(crate) answered: bool,
}

/// State shared by the loop, the status server and the organic endpoint.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ValidatorConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) scoreboard: Mutex<Scoreboard>,
    pub(crate) metagraph: RwLock<Option<Metagraph>>,
    pub(crate) served: RwLock<HashMap<PublicKey, Served>>,
    pub(crate) status: RwLock<ValidatorStatus>,
    pub(crate) references: HashMap<String, Arc<dyn Reference>>,
    pub(crate) dendrite: Dendrite,
    pub(crate) records: RecordWriter,
    pub(crate) models: RwLock<Vec<String>>,
}

impl Shared {
    pub(crate) fn status(&self) -> ValidatorStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn reference(&self, model: &str) -> Option<Arc<dyn Reference>> {
        self.references.get(model).cloned()
    }

    fn scoreboard(&self) -> std::sync::MutexGuard<'_, Scoreboard> {
        self.scoreboard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a round's results: scores (verifiable models only), metrics, records.
    pub(crate) fn account(&self, request: &InferenceRequest, results: &[RoundResult], block: u64, organic: bool) {
        let scored = self.references.contains_key(&request.model);
        for result in results {
            let (outcome, cause) = match &result.verdict.outcome {
                Outcome::Verified => ("verified", "none"),
                Outcome::Failed(f) => ("failed", f.cause.name()),
                Outcome::Unverifiable(_) => ("unverifiable", "none"),
            };
            self.metrics.inc("ganglion_inference_verifications_total", &[("outcome", outcome), ("cause", cause)]);
            let counts = match &result.verdict.outcome {
                Outcome::Verified => true,
                Outcome::Failed(f) => f.cause.counts_against_miner(),
                Outcome::Unverifiable(_) => false,
            };
            if scored && counts {
                let failure = result.failure().map(|f| f.cause.name());
                self.scoreboard().record(result.target.uid, &result.target.hotkey, &request.model, result.tps(), failure, organic);
            }
            self.records.send(Record::Inference(Box::new(inference_record(&self.config, request, result, block, organic))));
        }
    }
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

/// A running validator.
#[derive(Debug)]
pub struct ValidatorHandle {
    shared: Arc<Shared>,
    metrics_addr: Option<SocketAddr>,
    organic_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    servers: Vec<JoinHandle<()>>,
    records_task: Option<JoinHandle<()>>,
}

impl ValidatorHandle {
    /// The current status (what `/status` serves).
    pub fn status(&self) -> ValidatorStatus {
        self.shared.status()
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Where `/metrics` and `/status` are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the organic endpoint listens.
    pub fn organic_addr(&self) -> Option<SocketAddr> {
        self.organic_addr
    }

    /// Stops after the current step (its requests are bounded by the deadlines), flushes
    /// records and stops the servers.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let limit = self.shared.config.total_timeout + Duration::from_secs(30);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            abort.abort();
        }
        for server in self.servers.drain(..) {
            server.abort();
        }
        let shared = self.shared;
        drop(shared);
        if let Some(task) = self.records_task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

fn describe(metrics: &Metrics) {
    metrics.describe("ganglion_inference_steps_total", "counter", "Validator steps completed.");
    metrics.describe("ganglion_inference_miners_queried_total", "counter", "Miner requests sent.");
    metrics.describe("ganglion_inference_verifications_total", "counter", "Responses by outcome and cause.");
    metrics.describe("ganglion_inference_blocks_since_weights", "gauge", "Blocks since this validator's weights were last accepted.");
    metrics.describe("ganglion_inference_weights_total", "counter", "set_weights attempts, by the chain's answer.");
    metrics.describe("ganglion_inference_chain_errors_total", "counter", "Failed chain calls.");
    metrics.describe("ganglion_inference_step_seconds", "gauge", "Duration of the last step.");
    metrics.describe("ganglion_inference_organic_requests_total", "counter", "Organic requests, by result.");
}

/// Starts the validator: opens the records store, restores the scores, serves `/metrics`,
/// `/status` (and the organic endpoint), and runs the loop until [`ValidatorHandle::shutdown`].
/// `references` are the models it can verify (by [`Reference::model`]).
pub async fn start(config: ValidatorConfig, chain: Arc<dyn Chain>, references: Vec<Arc<dyn Reference>>) -> Result<ValidatorHandle> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| InferenceError::io("creating", &config.data_dir, e))?;
    let metrics = Arc::new(Metrics::default());
    describe(&metrics);
    let (records, records_task) = match &config.records {
        RecordsTarget::Disabled => (RecordWriter::disabled(metrics.clone()), None),
        RecordsTarget::Url(url) => {
            let store = Records::open(url).await.map_err(|e| InferenceError::Records(e.to_string()))?;
            tracing::info!(target: "ganglion::inference", url = %store.display_url(), "records store open");
            let (writer, task) = RecordWriter::spawn(store, 4096, metrics.clone());
            (writer, Some(task))
        }
    };
    let state_path = config.data_dir.join("scores.json");
    let scoreboard = match Scoreboard::load(&state_path, config.netuid)? {
        Some(mut board) => {
            board.window = config.window.max(1);
            tracing::info!(target: "ganglion::inference", miners = board.miners.len(), block = board.block, "score state restored");
            board
        }
        None => Scoreboard::new(config.netuid, config.window),
    };
    let references: HashMap<String, Arc<dyn Reference>> = references.into_iter().map(|r| (r.model().to_string(), r)).collect();
    let dendrite = Dendrite::new(config.hotkey.clone(), config.connect_timeout)?;
    let status = ValidatorStatus {
        netuid: config.netuid,
        hotkey: config.hotkey.public().to_ss58(),
        verify_mode: config.verify.mode.name().to_string(),
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        metrics,
        scoreboard: Mutex::new(scoreboard),
        metagraph: RwLock::new(None),
        served: RwLock::new(HashMap::new()),
        status: RwLock::new(status),
        references,
        dendrite,
        records,
        models: RwLock::new(Vec::new()),
    });
    let mut servers = Vec::new();
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let (bound, task) = serve(addr, status::router(shared.clone())).await?;
            servers.push(task);
            tracing::info!(target: "ganglion::inference", addr = %bound, "serving /metrics and /status");
            Some(bound)
        }
        None => None,
    };
    let organic_addr = match &config.organic {
        Some(organic) => {
            let (bound, task) = serve(organic.listen, crate::organic::router(shared.clone(), organic.clone())).await?;
            servers.push(task);
            tracing::info!(target: "ganglion::inference", addr = %bound, "serving the organic OpenAI endpoint");
            Some(bound)
        }
        None => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_loop(shared.clone(), chain, stop_rx));
    Ok(ValidatorHandle { shared, metrics_addr, organic_addr, stop, task, servers, records_task })
}

async fn serve(addr: SocketAddr, router: axum::Router) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
    let bound = listener.local_addr().map_err(|e| InferenceError::Bind { addr, reason: e.to_string() })?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(target: "ganglion::inference", "HTTP server on {bound} failed: {e}");
        }
    });
    Ok((bound, task))
}

/// Sleeps `duration` unless told to stop; returns true when stopping.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
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
/// first epoch after registration), or it was still starting. The asks are concurrent and
/// bounded by a 3 s timeout, so retrying dead axons costs little.
const SERVED_RETRY: Duration = Duration::from_secs(15);

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
            served.insert(target.hotkey, Served { models: answer.unwrap_or_default(), asked: now, answered });
        }
    }
}

fn draw_sampling(rng: &mut StdRng, config: &ValidatorConfig) -> Sampling {
    let two_places = |v: f64| (v * 100.0).round() / 100.0;
    let temperature = if rng.gen_bool(0.25) { 0.0 } else { two_places(rng.gen_range(0.3..1.0)) };
    let (low, high) = (config.min_tokens.max(1), config.max_tokens.max(config.min_tokens.max(1)));
    Sampling {
        temperature,
        top_p: two_places(rng.gen_range(0.85..0.99)),
        max_tokens: rng.gen_range(low..=high),
        seed: Some(rng.gen_range(10_000..=10_000_000)),
    }
}

/// Builds this step's request: a drawn instruction, reworded by the reference if enabled.
async fn build_request(shared: &Shared, bank: &PromptBank, rng: &mut StdRng, model: &str) -> InferenceRequest {
    let seed = bank.draw(rng);
    let mut instruction = seed.instruction.clone();
    if shared.config.vary_prompts
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
    let endpoint = if rng.gen_bool(0.5) { Endpoint::Chat } else { Endpoint::Completion };
    let chat = to_prompt(Endpoint::Chat, &seed, &instruction);
    // An instruct model given a bare completion prompt often ends at once; when the
    // reference knows the model's chat template, completion prompts are that template
    // rendered as text (what the model expects; special tokens in it are parsed).
    let templated = match (&chat, shared.reference(model)) {
        (Prompt::Chat(messages), Some(reference)) if endpoint == Endpoint::Completion && reference.tokenizer().has_chat_template() => {
            let messages: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
            reference.tokenizer().apply_chat_template(&messages, true).ok().map(Prompt::Text)
        }
        _ => None,
    };
    let prompt = match endpoint {
        Endpoint::Chat => chat,
        Endpoint::Completion => templated.unwrap_or_else(|| to_prompt(Endpoint::Completion, &seed, &instruction)),
    };
    InferenceRequest { model: model.to_string(), endpoint, prompt, sampling: draw_sampling(rng, &shared.config) }
}

async fn fetch_metagraph(shared: &Shared, chain: &dyn Chain, stop: &mut watch::Receiver<bool>) -> Option<Metagraph> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match Metagraph::fetch(chain, shared.config.netuid).await {
            Ok(m) => return Some(m),
            Err(e) => {
                shared.metrics.inc("ganglion_inference_chain_errors_total", &[]);
                tracing::warn!(target: "ganglion::inference", "cannot read the metagraph: {e}; retrying in {}s", backoff.as_secs());
                if pause(stop, backoff).await {
                    return None;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

struct Weights {
    last_block: Option<u64>,
    next_try: Instant,
    set: u64,
    last_result: Option<String>,
}

async fn run_loop(shared: Arc<Shared>, chain: Arc<dyn Chain>, mut stop: watch::Receiver<bool>) {
    let me = shared.config.hotkey.public();
    let bank = PromptBank::default();
    let mut rng = StdRng::from_entropy();
    let Some(mut metagraph) = fetch_metagraph(&shared, chain.as_ref(), &mut stop).await else { return };
    let mut weights = Weights { last_block: None, next_try: Instant::now(), set: 0, last_result: None };
    let mut models_due = Instant::now();
    let mut warned_unregistered = false;
    let mut steps = 0u64;
    let verifiable: Vec<String> = shared.references.keys().cloned().collect();
    while !*stop.borrow() {
        let step_started = Instant::now();
        match metagraph.sync(chain.as_ref()).await {
            Ok(_) => {}
            Err(e) => {
                shared.metrics.inc("ganglion_inference_chain_errors_total", &[]);
                tracing::warn!(target: "ganglion::inference", "metagraph sync failed: {e}; retrying");
                if pause(&mut stop, Duration::from_secs(2)).await {
                    break;
                }
                // The chain may have restarted: start again from a full fetch.
                let Some(fresh) = fetch_metagraph(&shared, chain.as_ref(), &mut stop).await else { break };
                metagraph = fresh;
                continue;
            }
        }
        let block = metagraph.block();
        let dropped = shared.scoreboard().sync(&metagraph);
        if !dropped.is_empty() {
            tracing::info!(target: "ganglion::inference", ?dropped, "scores reset for hotkeys that left or changed uid");
        }
        if let Ok(mut m) = shared.metagraph.write() {
            *m = Some(metagraph.clone());
        }
        let Some(my_uid) = metagraph.uid_of(&me) else {
            if !warned_unregistered {
                tracing::warn!(target: "ganglion::inference", hotkey = %me, netuid = shared.config.netuid, "this hotkey is not registered on the subnet; register it and stake (miners refuse unregistered callers)");
                warned_unregistered = true;
            }
            if pause(&mut stop, shared.config.step_interval.max(Duration::from_secs(1))).await {
                break;
            }
            continue;
        };
        warned_unregistered = false;
        let last_update = metagraph.neuron(my_uid).map(|n| n.last_update);
        if weights.last_block.is_none() {
            weights.last_block = last_update;
        }
        // Models and who serves them.
        let refresh_all = Instant::now() >= models_due;
        if refresh_all {
            match models::load(&shared.config.models, &verifiable).await {
                Ok(list) => {
                    if let Ok(mut m) = shared.models.write() {
                        *m = list;
                    }
                }
                Err(e) => tracing::warn!(target: "ganglion::inference", "model list: {e}; keeping the last one"),
            }
            models_due = Instant::now() + shared.config.models_refresh;
        }
        refresh_served(&shared, &metagraph, &me, refresh_all).await;
        let models = shared.models.read().map(|m| m.clone()).unwrap_or_default();
        // Every third step a model the validator can verify, so verified work keeps flowing.
        let pool: Vec<&String> = if steps.is_multiple_of(3) { models.iter().filter(|m| shared.references.contains_key(*m)).collect() } else { models.iter().collect() };
        let model = pool.choose(&mut rng).map(|m| (*m).clone()).or_else(|| models.first().cloned());
        if let Some(model) = model {
            let mut targets = candidates(&shared, &metagraph, &me, Some(&model));
            targets.shuffle(&mut rng);
            targets.truncate(shared.config.sample_size.max(1));
            if targets.is_empty() {
                tracing::debug!(target: "ganglion::inference", %model, "no miner serves the model yet");
            } else {
                let request = build_request(&shared, &bank, &mut rng, &model).await;
                tracing::debug!(target: "ganglion::inference", %model, miners = targets.len(), endpoint = request.endpoint.name(), max_tokens = request.sampling.max_tokens, "querying");
                shared.metrics.add("ganglion_inference_miners_queried_total", &[], targets.len() as f64);
                let reference = shared.reference(&model);
                let limits = shared.config.limits(request.sampling.max_tokens);
                let results = run_round(&shared.dendrite, reference.as_deref(), &shared.config.verify, &request, &targets, limits).await;
                for r in &results {
                    match r.failure() {
                        Some(f) => tracing::info!(target: "ganglion::inference", uid = r.target.uid, %model, cause = %f.cause, detail = %f.detail, "response failed"),
                        None => tracing::debug!(target: "ganglion::inference", uid = r.target.uid, %model, tps = r.tps().unwrap_or(0.0), verified = r.verdict.verified(), "response"),
                    }
                }
                shared.account(&request, &results, block, false);
            }
        }
        steps += 1;
        shared.metrics.inc("ganglion_inference_steps_total", &[]);
        // Weights.
        if let Some(last) = weights.last_block
            && block >= last + shared.config.epoch_length
            && Instant::now() >= weights.next_try
        {
            set_weights(&shared, chain.as_ref(), &metagraph, my_uid, block, &mut weights).await;
        }
        let save_result = {
            let mut board = shared.scoreboard();
            board.block = block;
            board.save(&shared.config.data_dir.join("scores.json"))
        };
        if let Err(e) = save_result {
            tracing::warn!(target: "ganglion::inference", "cannot save the score state: {e}");
        }
        let elapsed = step_started.elapsed();
        shared.metrics.set("ganglion_inference_step_seconds", &[], elapsed.as_secs_f64());
        publish_status(&shared, &metagraph, my_uid, block, steps, &weights, models);
        if pause(&mut stop, shared.config.step_interval.saturating_sub(elapsed)).await {
            break;
        }
    }
    tracing::info!(target: "ganglion::inference", steps, "validator loop stopped");
}

async fn set_weights(shared: &Shared, chain: &dyn Chain, metagraph: &Metagraph, my_uid: u16, block: u64, weights: &mut Weights) {
    let (uids, values) = shared.scoreboard().weights(metagraph, Some(my_uid));
    if uids.is_empty() {
        weights.last_result = Some("skipped: no verified work to weight yet".into());
        weights.next_try = Instant::now() + shared.config.weights_retry;
        tracing::info!(target: "ganglion::inference", "no miner has a score yet; not setting weights");
        return;
    }
    let (emit_uids, emit_values) = match ganglion_yuma::weights::convert_weights_and_uids_for_emit(&uids, &values) {
        Ok(v) => v,
        Err(e) => {
            weights.last_result = Some(format!("conversion failed: {e}"));
            weights.next_try = Instant::now() + shared.config.weights_retry;
            return;
        }
    };
    match chain.set_weights(&shared.config.hotkey, shared.config.netuid, emit_uids.clone(), emit_values.clone(), version_key()).await {
        Ok(receipt) => {
            weights.last_block = Some(receipt.block);
            weights.set += 1;
            weights.last_result = Some("ok".into());
            shared.metrics.inc("ganglion_inference_weights_total", &[("result", "ok")]);
            tracing::info!(target: "ganglion::inference", block = receipt.block, uids = ?emit_uids, values = ?emit_values, "weights set");
            let rows: Vec<ScoreRecord> = {
                let board = shared.scoreboard();
                uids.iter()
                    .zip(&values)
                    .filter_map(|(&uid, &weight)| {
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
        Err(e) => {
            let name = e.name().unwrap_or("ChainUnreachable").to_string();
            shared.metrics.inc("ganglion_inference_weights_total", &[("result", name.as_str())]);
            weights.last_result = Some(e.to_string());
            weights.next_try = Instant::now() + shared.config.weights_retry;
            tracing::warn!(target: "ganglion::inference", chain_answer = %name, "set_weights refused: {e}; retrying in {}s", shared.config.weights_retry.as_secs());
        }
    }
}

fn publish_status(shared: &Shared, metagraph: &Metagraph, my_uid: u16, block: u64, steps: u64, weights: &Weights, models: Vec<String>) {
    let (uids, values) = shared.scoreboard().weights(metagraph, Some(my_uid));
    let share: HashMap<u16, f64> = uids.into_iter().zip(values).collect();
    let miners: Vec<MinerStatus> = {
        let board = shared.scoreboard();
        metagraph
            .neurons()
            .iter()
            .filter(|n| n.uid != my_uid)
            .map(|n| {
                let entry = board.miners.get(&n.hotkey.to_ss58());
                MinerStatus {
                    uid: n.uid,
                    hotkey: n.hotkey.to_ss58(),
                    score: entry.map_or(0.0, |e| e.score()),
                    weight: share.get(&n.uid).copied().unwrap_or(0.0),
                    tps: entry.and_then(|e| e.verified_tps()),
                    verified_percent: entry.and_then(|e| e.verified_percent()),
                    verified: entry.map_or(0, |e| e.verified),
                    failed: entry.map_or(0, |e| e.failed),
                    organic_verified: entry.map_or(0, |e| e.organic_verified),
                    last_cause: entry.and_then(|e| e.last_cause.clone()),
                    models: entry.map(|e| e.models.keys().map(|m| (m.clone(), e.model_score(m))).collect()).unwrap_or_default(),
                }
            })
            .collect()
    };
    let since = weights.last_block.map(|b| block.saturating_sub(b));
    if let Some(since) = since {
        shared.metrics.set("ganglion_inference_blocks_since_weights", &[], since as f64);
    }
    let status = ValidatorStatus {
        netuid: shared.config.netuid,
        hotkey: shared.config.hotkey.public().to_ss58(),
        uid: Some(my_uid),
        block,
        steps,
        verify_mode: shared.config.verify.mode.name().to_string(),
        models,
        last_weights_block: weights.last_block,
        blocks_since_weights: since,
        weights_set: weights.set,
        last_weights_result: weights.last_result.clone(),
        miners,
        updated_at_ms: ganglion_protocol::epistula::now_ms(),
    };
    let path = shared.config.data_dir.join("status.json");
    match serde_json::to_vec_pretty(&status) {
        Ok(bytes) => {
            if let Err(e) = ganglion_core::fsutil::write_atomic(&path, &bytes, 0o644) {
                tracing::warn!(target: "ganglion::inference", "cannot write {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!(target: "ganglion::inference", "cannot encode the status: {e}"),
    }
    if let Ok(mut s) = shared.status.write() {
        *s = status;
    }
}
