//! The reference model miner's work (`ganglion miner model train`): fine-tune the last blocks
//! of a llama GGUF on CPU on data of the evaluation domain, so that it beats the base model on
//! the validator's loss, and write a model directory `miner model publish` takes.
//!
//! How, in a few minutes on two cores:
//! - **data**: prompt/response pairs drawn from the shared corpus exactly as the validator
//!   draws them ([`crate::data::corpus_samples`]), tokenized as the validator tokenizes them
//!   ([`crate::loss::tokenize_sample`]); the held-out samples the losses are reported on come
//!   from another seed and share no response with the training samples;
//! - **frozen prefix once**: every block but the last `layers` is frozen, so the residual
//!   stream entering the first trainable block is computed once per training sample by the
//!   engine ([`ganglion_engine::model::Llama::residual_stream`], the validator's own
//!   forward);
//! - **trainable suffix**: the last `layers` blocks (attention, feed-forward, their norms) and
//!   the output norm, dequantised to f32 and trained with candle's autograd and AdamW
//!   (cosine-decayed learning rate) on the validator's loss: the mean over samples of the mean
//!   cross-entropy of the response tokens. The output projection (tied to the embedding in
//!   SmolLM2) stays frozen; its product and the softmax run outside the autograd graph, which
//!   then only sees `Σ h·∂L/∂h` (the same gradients without the vocabulary-sized weight
//!   gradient candle would compute for a frozen right-hand side);
//! - **output**: the base GGUF with the trained matrices re-quantised to Q8_0 (a block type
//!   the engine multiplies natively, fine enough to keep the small trained changes) and the
//!   trained norms in F32, written atomically as `DIR/model.gguf` with a `config.json`, then
//!   checked with the validator's model checks ([`crate::gguf::check_model`]);
//! - **measured**: the base and the trained model's losses on the held-out samples through
//!   the validator's code path ([`crate::loss::chat_losses`] on a freshly loaded engine).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use ganglion_engine::model::Architecture;
use ganglion_engine::{Engine, EngineError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::gguf::{ModelCheckError, ModelLimits};
use crate::loss::{LossError, Sample, chat_losses, tokenize_sample};

/// The file name of the trained model inside the output directory.
pub const MODEL_FILE: &str = "model.gguf";
/// The training report written next to it.
pub const REPORT_FILE: &str = "training.json";

/// The defaults of [`TrainSettings::new`]: about three minutes on two cores with
/// SmolLM2-135M (the frozen blocks over the training samples ~⅓, the steps ~½, the two
/// held-out evaluations the rest).
pub mod defaults {
    /// Optimizer steps.
    pub const STEPS: usize = 48;
    /// Training samples.
    pub const SAMPLES: usize = 128;
    /// Held-out samples.
    pub const EVAL_SAMPLES: usize = 32;
    /// Samples per step.
    pub const BATCH: usize = 8;
    /// Trainable blocks.
    pub const LAYERS: usize = 2;
    /// Peak learning rate.
    pub const LEARNING_RATE: f64 = 3e-4;
}

/// What to train and how.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    /// The base model (a llama GGUF).
    pub base: PathBuf,
    /// The output directory (created; it must hold no other `.gguf` file).
    pub out: PathBuf,
    /// Optimizer steps.
    pub steps: usize,
    /// Training samples (drawn once; the steps cycle through them in shuffled epochs).
    pub samples: usize,
    /// Held-out samples the base and trained losses are measured on.
    pub eval_samples: usize,
    /// Samples per optimizer step.
    pub batch: usize,
    /// Trainable blocks, counted from the last.
    pub layers: usize,
    /// Peak learning rate (AdamW, cosine decay to zero).
    pub learning_rate: f64,
    /// Seed of the data draws and the shuffling (the held-out draw uses a derived seed).
    pub seed: u64,
    /// Threads of the pool the work runs in (`None`: every core).
    pub threads: Option<usize>,
    /// Tokens per sample, as the validator truncates (the competition's `sequence_length`).
    pub max_len: usize,
}

impl TrainSettings {
    /// Defaults that take a few minutes on two cores with SmolLM2-135M.
    pub fn new(base: PathBuf, out: PathBuf) -> TrainSettings {
        TrainSettings {
            base,
            out,
            steps: defaults::STEPS,
            samples: defaults::SAMPLES,
            eval_samples: defaults::EVAL_SAMPLES,
            batch: defaults::BATCH,
            layers: defaults::LAYERS,
            learning_rate: defaults::LEARNING_RATE,
            seed: 1,
            threads: None,
            max_len: crate::scoring::finetuning::SEQUENCE_LENGTH,
        }
    }

    fn check(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Settings(m.to_string()));
        if self.steps == 0 || self.samples == 0 || self.eval_samples == 0 || self.batch == 0 {
            return bad("steps, samples, eval samples and batch must each be at least 1");
        }
        if self.layers == 0 {
            return bad("at least one block must be trainable");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return bad("the learning rate must be in (0, 1)");
        }
        if self.threads == Some(0) {
            return bad("threads must be at least 1");
        }
        if self.max_len < 2 {
            return bad("the sequence length must be at least 2");
        }
        Ok(())
    }
}

/// The phases of a training run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The base model's held-out loss.
    BaseLoss,
    /// The frozen blocks' activations of every training sample.
    Activations,
    /// Optimizer steps.
    Training,
    /// The trained model's held-out loss.
    TrainedLoss,
}

impl Phase {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Phase::BaseLoss => "base loss",
            Phase::Activations => "activations",
            Phase::Training => "training",
            Phase::TrainedLoss => "trained loss",
        }
    }
}

/// Progress reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// A phase starts with `total` units of work.
    Start {
        /// The phase.
        phase: Phase,
        /// Its units (samples or steps).
        total: usize,
    },
    /// `done` units of the current phase are done; during training, `loss` is the last
    /// step's batch loss.
    Advance {
        /// Units done.
        done: usize,
        /// The last batch loss, while training.
        loss: Option<f64>,
    },
    /// The current phase is over.
    Finish,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// The trained GGUF.
    pub out: PathBuf,
    /// The model directory (`miner model publish --dir`).
    pub dir: PathBuf,
    /// The base model.
    pub base: PathBuf,
    /// The validator's mean response loss of the base model on the held-out samples.
    pub base_loss: f64,
    /// The same for the trained model.
    pub trained_loss: f64,
    /// Held-out samples both losses are the mean over.
    pub eval_samples: usize,
    /// Training samples used.
    pub train_samples: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// Trainable blocks (from the last).
    pub layers: usize,
    /// Trained parameters.
    pub trainable_parameters: usize,
    /// Mean batch loss of the first and last tenth of the steps (on training samples).
    pub first_train_loss: f64,
    /// See `first_train_loss`.
    pub last_train_loss: f64,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// The data seed.
    pub seed: u64,
    /// Threads the work ran on.
    pub threads: usize,
    /// Wall time of the whole run.
    pub seconds: f64,
    /// Wall time of each phase ([`Phase::label`]).
    pub phase_seconds: std::collections::BTreeMap<String, f64>,
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The settings are out of range.
    #[error("bad training settings: {0}")]
    Settings(String),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The base GGUF could not be read or the output written.
    #[error("{path}: {reason}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model cannot be trained here (architecture, layout).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The engine failed (loading, tokenizing, the frozen forward).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A held-out loss could not be computed.
    #[error(transparent)]
    Loss(#[from] LossError),
    /// A tensor operation of the training failed.
    #[error("training: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Not enough usable samples.
    #[error("data: {0}")]
    Data(String),
    /// The training loss became NaN or infinite.
    #[error("the training loss diverged at step {0}")]
    Diverged(usize),
    /// The written model fails the validator's checks.
    #[error("the trained model fails the validator's checks: {0}")]
    Check(#[from] ModelCheckError),
    /// The corpus the samples come from is not installed.
    #[error("the training samples come from the corpus: {0}")]
    Corpus(#[from] ganglion_corpus::CorpusError),
    /// The thread pool could not be built.
    #[error("a pool of {threads} threads: {reason}")]
    Threads {
        /// Asked threads.
        threads: usize,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// Mixed into the seed of the held-out draw.
const HELD_OUT_SEED: u64 = 0x005e_ed0f_e7a1;

/// The training and held-out samples: `n_train` from `seed`, and `n_eval` from a derived
/// seed with no response in common with the training ones.
pub fn draw_samples(corpus: &ganglion_corpus::Corpus, seed: u64, n_train: usize, n_eval: usize) -> (Vec<Sample>, Vec<Sample>) {
    let train = crate::data::corpus_samples(corpus, &mut StdRng::seed_from_u64(seed), n_train);
    let seen: std::collections::HashSet<&str> = train.iter().map(|s| s.response.as_str()).collect();
    let mut eval_rng = StdRng::seed_from_u64(seed ^ HELD_OUT_SEED.rotate_left(17));
    let eval: Vec<Sample> = crate::data::corpus_samples(corpus, &mut eval_rng, n_eval * 2)
        .into_iter()
        .filter(|s| !seen.contains(s.response.as_str()))
        .take(n_eval)
        .collect();
    (train, eval)
}

/// The shared corpus ([`ganglion_corpus::Corpus::locate`]), where the samples come from.
pub fn locate_corpus() -> Result<ganglion_corpus::Corpus, TrainError> {
    Ok(ganglion_corpus::Corpus::locate()?)
}

/// The validator's per-sample losses of `engine` on `samples` (`+inf` for a failure, as the
/// validator scores one).
fn losses(engine: &Engine, samples: &[Sample], max_len: usize, progress: &mut (dyn FnMut(Progress) + Send)) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples.len());
    for batch in samples.chunks(8) {
        out.extend(chat_losses(engine, engine.tokenizer(), batch, max_len).into_iter().map(|l| l.unwrap_or(f64::INFINITY)));
        progress(Progress::Advance { done: out.len(), loss: None });
    }
    out
}

/// Trains on `corpus` samples as `settings` say, writes the model directory and measures it.
pub fn train(settings: &TrainSettings, corpus: &ganglion_corpus::Corpus, progress: &mut (dyn FnMut(Progress) + Send)) -> Result<TrainReport, TrainError> {
    settings.check()?;
    match settings.threads {
        Some(threads) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| TrainError::Threads { threads, reason: e.to_string() })?;
            pool.install(|| run(settings, corpus, threads, progress))
        }
        None => run(settings, corpus, rayon::current_num_threads(), progress),
    }
}

/// A training sample: the frozen blocks' output and the response targets.
struct Prepared {
    /// The residual stream entering the first trainable block, `(T − 1, n_embd)`.
    residual: Tensor,
    /// Row of the first response target (`max(prompt_len, 1) − 1`).
    first: usize,
    /// Response target ids (`ids[first + 1..]`).
    targets: Tensor,
}

fn run(settings: &TrainSettings, corpus: &ganglion_corpus::Corpus, threads: usize, report_progress: &mut (dyn FnMut(Progress) + Send)) -> Result<TrainReport, TrainError> {
    let started = Instant::now();
    let mut phase_seconds = std::collections::BTreeMap::new();
    let mut current: Option<(Phase, Instant)> = None;
    let mut progress = |p: Progress| {
        match p {
            Progress::Start { phase, .. } => current = Some((phase, Instant::now())),
            Progress::Finish => {
                if let Some((phase, since)) = current.take() {
                    phase_seconds.insert(phase.label().to_string(), since.elapsed().as_secs_f64());
                }
            }
            Progress::Advance { .. } => {}
        }
        report_progress(p);
    };
    let progress: &mut (dyn FnMut(Progress) + Send) = &mut progress;
    prepare_out_dir(&settings.out)?;
    let base = Engine::load(&settings.base)?;
    let cfg = base.model().config().clone();
    if cfg.architecture != Architecture::Llama {
        return Err(TrainError::Unsupported(format!("training a {} model (llama only)", cfg.architecture.gguf_name())));
    }
    if settings.layers > cfg.n_layer {
        return Err(TrainError::Settings(format!("{} trainable blocks of a {}-block model", settings.layers, cfg.n_layer)));
    }
    let max_len = settings.max_len.min(base.context_length());
    let (train_samples, eval_samples) = draw_samples(corpus, settings.seed, settings.samples, settings.eval_samples);
    if eval_samples.is_empty() || train_samples.is_empty() {
        return Err(TrainError::Data(format!("the corpus gave {} training and {} held-out samples", train_samples.len(), eval_samples.len())));
    }

    // The base model's held-out loss, as the validator computes it.
    progress(Progress::Start { phase: Phase::BaseLoss, total: eval_samples.len() });
    let base_losses = losses(&base, &eval_samples, max_len, progress);
    progress(Progress::Finish);

    // The frozen blocks, once per training sample.
    let first_trainable = cfg.n_layer - settings.layers;
    progress(Progress::Start { phase: Phase::Activations, total: train_samples.len() });
    let mut prepared = Vec::with_capacity(train_samples.len());
    for (i, s) in train_samples.iter().enumerate() {
        let t = tokenize_sample(base.tokenizer(), s, max_len)?;
        let first = t.prompt_len.max(1);
        if t.ids.len() > first {
            let residual = base.model().residual_stream(&t.ids[..t.ids.len() - 1], first_trainable)?;
            let targets = Tensor::new(&t.ids[first..], &Device::Cpu)?;
            prepared.push(Prepared { residual, first: first - 1, targets });
        }
        progress(Progress::Advance { done: i + 1, loss: None });
    }
    progress(Progress::Finish);
    drop(base);
    if prepared.is_empty() {
        return Err(TrainError::Data("no training sample has response tokens within the sequence length".into()));
    }

    // The trainable weights, f32, from the file.
    let mut file = std::fs::File::open(&settings.base).map_err(io(&settings.base))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| TrainError::Gguf { path: settings.base.clone(), reason: e.to_string() })?;
    let mut dense = |name: &str| -> Result<Tensor, TrainError> {
        let q = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| TrainError::Gguf { path: settings.base.clone(), reason: format!("tensor `{name}`: {e}") })?;
        Ok(q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?)
    };
    let mut blocks = Vec::with_capacity(settings.layers);
    for layer in first_trainable..cfg.n_layer {
        blocks.push(TrainBlock::load(layer, &mut dense)?);
    }
    let output_norm = Var::from_tensor(&dense("output_norm.weight")?)?;
    let output = if content.tensor_infos.contains_key("output.weight") { dense("output.weight")? } else { dense("token_embd.weight")? };
    let mut vars: Vec<Var> = blocks.iter().flat_map(TrainBlock::vars).collect();
    vars.push(output_norm.clone());
    let trainable_parameters = vars.iter().map(|v| v.elem_count()).sum();
    let suffix = Suffix { blocks, output_norm, output, cfg: cfg.clone() };

    // Training.
    let mut opt = AdamW::new(vars, ParamsAdamW { lr: settings.learning_rate, weight_decay: 0.0, ..ParamsAdamW::default() })?;
    let mut rng = StdRng::seed_from_u64(settings.seed.wrapping_add(1));
    let mut order: Vec<usize> = Vec::new();
    let mut step_losses = Vec::with_capacity(settings.steps);
    progress(Progress::Start { phase: Phase::Training, total: settings.steps });
    for step in 0..settings.steps {
        let mut batch = Vec::with_capacity(settings.batch);
        while batch.len() < settings.batch.min(prepared.len()) {
            if order.is_empty() {
                order = (0..prepared.len()).collect();
                order.shuffle(&mut rng);
            }
            if let Some(i) = order.pop() {
                batch.push(&prepared[i]);
            }
        }
        let warmup = (settings.steps / 10).max(1);
        let lr = if step < warmup {
            settings.learning_rate * (step + 1) as f64 / warmup as f64
        } else {
            let p = (step - warmup) as f64 / (settings.steps - warmup).max(1) as f64;
            settings.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        };
        opt.set_learning_rate(lr);
        let loss = suffix.step(&batch, &mut opt)?;
        if !loss.is_finite() {
            return Err(TrainError::Diverged(step));
        }
        step_losses.push(loss);
        progress(Progress::Advance { done: step + 1, loss: Some(loss) });
    }
    progress(Progress::Finish);

    // The model directory.
    let gguf = settings.out.join(MODEL_FILE);
    write_model(&settings.base, &content, &mut file, &suffix, &gguf)?;
    write_atomically(&settings.out.join("config.json"), br#"{"architectures":["LlamaForCausalLM"],"model_type":"llama"}"#)?;
    let limits = crate::round::Competition::default_schedule().into_iter().next().map(|c| c.limits).unwrap_or_else(default_limits);
    crate::gguf::check_model(&gguf, &limits)?;

    // The trained model's held-out loss, as the validator computes it.
    let trained = Engine::load(&gguf)?;
    progress(Progress::Start { phase: Phase::TrainedLoss, total: eval_samples.len() });
    let trained_losses = losses(&trained, &eval_samples, max_len, progress);
    progress(Progress::Finish);
    let pairs: Vec<(f64, f64)> = base_losses.iter().zip(&trained_losses).map(|(&b, &t)| (b, t)).filter(|(b, t)| b.is_finite() && t.is_finite()).collect();
    if pairs.is_empty() {
        return Err(TrainError::Data("no held-out sample could be scored".into()));
    }
    let n = pairs.len() as f64;
    let tenth = (step_losses.len() / 10).max(1);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let report = TrainReport {
        out: gguf,
        dir: settings.out.clone(),
        base: settings.base.clone(),
        base_loss: pairs.iter().map(|p| p.0).sum::<f64>() / n,
        trained_loss: pairs.iter().map(|p| p.1).sum::<f64>() / n,
        eval_samples: pairs.len(),
        train_samples: prepared.len(),
        steps: settings.steps,
        batch: settings.batch,
        layers: settings.layers,
        trainable_parameters,
        first_train_loss: mean(&step_losses[..tenth]),
        last_train_loss: mean(&step_losses[step_losses.len() - tenth..]),
        learning_rate: settings.learning_rate,
        seed: settings.seed,
        threads,
        seconds: started.elapsed().as_secs_f64(),
        phase_seconds: std::mem::take(&mut phase_seconds),
    };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| TrainError::Data(e.to_string()))?;
    write_atomically(&settings.out.join(REPORT_FILE), &json)?;
    Ok(report)
}

fn default_limits() -> ModelLimits {
    ModelLimits { max_bytes: u64::MAX, architectures: vec!["llama".into()], max_parameters: u64::MAX, min_parameters: 0, norms: None }
}

/// Creates `out`; refuses a directory holding another `.gguf` (publish takes exactly one).
fn prepare_out_dir(out: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    for entry in std::fs::read_dir(out).map_err(io(out))? {
        let path = entry.map_err(io(out))?.path();
        let is_gguf = path.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf"));
        if is_gguf && path.file_name().and_then(|n| n.to_str()) != Some(MODEL_FILE) {
            return Err(TrainError::Settings(format!(
                "{} already holds {}; a model directory holds exactly one .gguf (use an empty or new --out)",
                out.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = partial(path);
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// The base GGUF with the trained tensors replaced: matrices as Q8_0, norms as F32.
fn write_model(base: &Path, content: &gguf_file::Content, file: &mut std::fs::File, suffix: &Suffix, dest: &Path) -> Result<(), TrainError> {
    let gguf_err = |path: &Path, e: &dyn std::fmt::Display| TrainError::Gguf { path: path.to_path_buf(), reason: e.to_string() };
    let trained = suffix.named_tensors();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = match trained.iter().find(|(n, _)| n == name) {
            Some((_, t)) => {
                let dtype = if t.rank() >= 2 { GgmlDType::Q8_0 } else { GgmlDType::F32 };
                QTensor::quantize(t, dtype)?
            }
            None => content.tensor(file, name, &Device::Cpu).map_err(|e| gguf_err(base, &format!("tensor `{name}`: {e}")))?,
        };
        tensors.push((name.as_str(), t));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let tmp = partial(dest);
    let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    gguf_file::write(&mut out, &metadata, &refs).map_err(|e| gguf_err(&tmp, &e))?;
    out.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, dest).map_err(io(dest))
}

/// One trainable llama block, f32.
struct TrainBlock {
    layer: usize,
    attn_norm: Var,
    wq: Var,
    wk: Var,
    wv: Var,
    wo: Var,
    ffn_norm: Var,
    w_gate: Var,
    w_up: Var,
    w_down: Var,
}

impl TrainBlock {
    const NAMES: [&'static str; 9] = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];

    fn load(layer: usize, dense: &mut dyn FnMut(&str) -> Result<Tensor, TrainError>) -> Result<TrainBlock, TrainError> {
        let mut v = Vec::with_capacity(9);
        for n in TrainBlock::NAMES {
            v.push(Var::from_tensor(&dense(&format!("blk.{layer}.{n}.weight"))?)?);
        }
        let mut it = v.into_iter();
        let mut next = || it.next().ok_or_else(|| TrainError::Unsupported("block weights".into()));
        Ok(TrainBlock {
            layer,
            attn_norm: next()?,
            wq: next()?,
            wk: next()?,
            wv: next()?,
            wo: next()?,
            ffn_norm: next()?,
            w_gate: next()?,
            w_up: next()?,
            w_down: next()?,
        })
    }

    fn vars(&self) -> Vec<Var> {
        [&self.attn_norm, &self.wq, &self.wk, &self.wv, &self.wo, &self.ffn_norm, &self.w_gate, &self.w_up, &self.w_down].into_iter().cloned().collect()
    }
}

/// The trainable end of the model: the last blocks, the output norm, the frozen output
/// projection.
struct Suffix {
    blocks: Vec<TrainBlock>,
    output_norm: Var,
    /// `(vocab, n_embd)`.
    output: Tensor,
    cfg: ganglion_engine::model::LlamaConfig,
}

/// `x / √(mean(x²) + ε) · w` over the last dimension, as the engine's RMS norm.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// Interleaved RoPE of `(heads, t, head_dim)` rows with `(t, head_dim / 2)` tables, as the
/// engine's `rope_i` (differentiable).
fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let (h, t, d) = x.dims3()?;
    let x = x.reshape((h, t, d / 2, 2))?;
    let (a, b) = (x.narrow(3, 0, 1)?, x.narrow(3, 1, 1)?);
    let (c, s) = (cos.reshape((1, t, d / 2, 1))?, sin.reshape((1, t, d / 2, 1))?);
    let ra = (a.broadcast_mul(&c)? - b.broadcast_mul(&s)?)?;
    let rb = (a.broadcast_mul(&s)? + b.broadcast_mul(&c)?)?;
    Tensor::cat(&[ra, rb], 3)?.reshape((h, t, d))
}

impl Suffix {
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for b in &self.blocks {
            for (n, v) in TrainBlock::NAMES.iter().zip(b.vars()) {
                out.push((format!("blk.{}.{n}.weight", b.layer), v.as_tensor().clone()));
            }
        }
        out.push(("output_norm.weight".into(), self.output_norm.as_tensor().clone()));
        out
    }

    /// The final-norm hidden states of `residual` (`(t, n_embd)`, entering the first
    /// trainable block), tracked for autograd.
    fn forward(&self, residual: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (t, _) = residual.dims2()?;
        let (nh, nkv, hd) = (cfg.n_head, cfg.n_kv_head, cfg.head_dim());
        let eps = cfg.rms_eps;
        let inv: Vec<f32> = (0..hd / 2).map(|i| 1.0 / cfg.rope_base.powf(2.0 * i as f32 / hd as f32)).collect();
        let angles: Vec<f32> = (0..t).flat_map(|p| inv.iter().map(move |f| p as f32 * f)).collect();
        let cos = Tensor::from_vec(angles.iter().map(|a| a.cos()).collect::<Vec<f32>>(), (t, hd / 2), &Device::Cpu)?;
        let sin = Tensor::from_vec(angles.iter().map(|a| a.sin()).collect::<Vec<f32>>(), (t, hd / 2), &Device::Cpu)?;
        let mask: Vec<f32> = (0..t).flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        let mask = Tensor::from_vec(mask, (1, t, t), &Device::Cpu)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let rep = nh / nkv;
        let mut x = residual.clone();
        for b in &self.blocks {
            let h = rms_norm(&x, b.attn_norm.as_tensor(), eps)?;
            let heads = |w: &Var, n: usize| -> candle_core::Result<Tensor> { h.matmul(&w.as_tensor().t()?)?.reshape((t, n, hd))?.transpose(0, 1)?.contiguous() };
            let q = rope_interleaved(&heads(&b.wq, nh)?, &cos, &sin)?;
            let k = rope_interleaved(&heads(&b.wk, nkv)?, &cos, &sin)?;
            let v = heads(&b.wv, nkv)?;
            let expand = |x: &Tensor| -> candle_core::Result<Tensor> { x.unsqueeze(1)?.broadcast_as((nkv, rep, t, hd))?.reshape((nh, t, hd)) };
            let (k, v) = (expand(&k)?, expand(&v)?);
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let max = att.max_keepdim(D::Minus1)?.detach();
            let e = att.broadcast_sub(&max)?.exp()?;
            let att = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let y = att.matmul(&v)?.transpose(0, 1)?.reshape((t, nh * hd))?;
            x = (x + y.matmul(&b.wo.as_tensor().t()?)?)?;
            let h = rms_norm(&x, b.ffn_norm.as_tensor(), eps)?;
            let gate = h.matmul(&b.w_gate.as_tensor().t()?)?.silu()?;
            let up = h.matmul(&b.w_up.as_tensor().t()?)?;
            x = (x + (gate * up)?.matmul(&b.w_down.as_tensor().t()?)?)?;
        }
        rms_norm(&x, self.output_norm.as_tensor(), eps)
    }

    /// One optimizer step on `batch`; returns the batch's loss (mean over samples of the mean
    /// response cross-entropy, before the step).
    fn step(&self, batch: &[&Prepared], opt: &mut AdamW) -> candle_core::Result<f64> {
        let mut hidden = Vec::with_capacity(batch.len());
        let mut weights = Vec::new();
        let mut targets = Vec::with_capacity(batch.len());
        for p in batch {
            let n = p.targets.dim(0)?;
            hidden.push(self.forward(&p.residual)?.narrow(0, p.first, n)?);
            weights.extend(std::iter::repeat_n(1.0 / (n * batch.len()) as f32, n));
            targets.push(p.targets.clone());
        }
        let hidden = Tensor::cat(&hidden, 0)?;
        let targets = Tensor::cat(&targets, 0)?;
        let rows = targets.dim(0)?;
        let weights = Tensor::from_vec(weights, (rows, 1), &Device::Cpu)?;
        // The frozen head outside the graph: loss and ∂L/∂hidden.
        let logits = hidden.detach().matmul(&self.output.t()?)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
        let loss = (picked.neg()? * &weights)?.sum_all()?.to_scalar::<f32>()?;
        let one_hot = candle_nn::encoding::one_hot(targets.clone(), self.cfg.vocab_size, 1f32, 0f32)?;
        let grad_logits = (logp.exp()? - one_hot)?.broadcast_mul(&weights)?;
        let grad_hidden = grad_logits.matmul(&self.output)?;
        // Σ hidden · ∂L/∂hidden has the loss's gradients with respect to every weight.
        let surrogate = (hidden * grad_hidden)?.sum_all()?;
        let grads = surrogate.backward()?;
        opt.step(&grads)?;
        Ok(f64::from(loss))
    }
}
