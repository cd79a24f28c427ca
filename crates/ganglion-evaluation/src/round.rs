//! One evaluation round of one competition (spec A5.5–8), the core of a validator step:
//! duplicates by hash resolved to the earliest commit, the model checks, a loss per sample
//! on the engine (a failure is `+inf`, as the original's exception path), win rates with the
//! competition's epsilon, and the weight update.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ganglion_engine::Engine;
use ganglion_engine::tokenizer::Tokenizer;

use crate::gguf::{ModelLimits, check_model};
use crate::loss::{DegeneracyCheck, Sample, chat_losses, degenerate, mean_loss_from, pack_documents};
use crate::scoring::{self, Contender, Epsilon, Submission, WinRecord};

/// A competition: what models it takes and how they are compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Competition {
    /// Its id (1–2 characters, as committed).
    pub id: String,
    /// Its share of the rewards (shares of a schedule sum to 1).
    pub share: f64,
    /// Model limits and checks.
    pub limits: ModelLimits,
    /// The time advantage.
    pub epsilon: Epsilon,
    /// Tokens per sample.
    pub sequence_length: usize,
    /// Softmax temperature over win rates.
    pub temperature: f64,
    /// What models are scored on (default: the chat loss).
    #[serde(default)]
    pub task: Task,
    /// The competition's tokenizer and chat template, as the original's competitions fix one
    /// (`Xenova/gpt-4`, Llama-3's): a GGUF, a model directory or a `tokenizer.json` (with its
    /// `tokenizer_config.json`), or a known model name the CLI resolves (`smollm2`). Every
    /// model is evaluated on samples it renders; a model whose output has fewer rows than it
    /// has tokens is rejected. Unset: each model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

/// What a competition scores models on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Task {
    /// Finetuning's chat loss (spec A5): each sample rendered with the model's chat template,
    /// the loss over the response's tokens; one loss per sample.
    #[default]
    Chat,
    /// Pretraining's text loss (spec A6): the samples' responses as documents, packed with
    /// one EOS each into rows of the sequence length; one loss per row.
    Text {
        /// Fail a model whose greedy continuations of the first two documents are
        /// degenerate ([`crate::loss::DegeneracyCheck`]'s defaults) before scoring it.
        #[serde(default)]
        degeneracy_check: bool,
    },
}

impl Competition {
    /// The schedule a Ganglion network runs by default: one competition of small llama/Gemma 3
    /// GGUF models (the engine's architectures), finetuning's scoring constants.
    pub fn default_schedule() -> Vec<Competition> {
        vec![Competition {
            id: "g1".into(),
            share: 1.0,
            limits: ModelLimits {
                max_bytes: 2 * 1024 * 1024 * 1024,
                architectures: vec!["llama".into(), "gemma3".into()],
                max_parameters: 1_000_000_000,
                min_parameters: 0,
                norms: Some(crate::gguf::NormLimits::default()),
            },
            epsilon: Epsilon::Fixed { epsilon: scoring::finetuning::TIMESTAMP_EPSILON },
            sequence_length: scoring::finetuning::SEQUENCE_LENGTH,
            temperature: scoring::finetuning::TEMPERATURE,
            task: Task::Chat,
            tokenizer: None,
        }]
    }

    /// Loads [`Competition::tokenizer`] (a path by now: the CLI resolves names), if set.
    pub fn load_tokenizer(&self) -> Result<Option<Tokenizer>, String> {
        let Some(path) = &self.tokenizer else { return Ok(None) };
        ganglion_engine::hf_model::tokenizer_at(std::path::Path::new(path))
            .map(Some)
            .map_err(|e| format!("competition {}: its tokenizer {path}: {e}", self.id))
    }
}

/// A model entered in a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its uid.
    pub uid: u16,
    /// The block of its commitment.
    pub block: u64,
    /// Its plain directory hash.
    pub hash: String,
    /// The model to evaluate: a GGUF file, or a Hugging Face safetensors directory.
    pub model: PathBuf,
}

/// What a round found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundOutcome {
    /// Per-sample losses of every evaluated uid (`+inf` for a failed sample).
    pub losses: BTreeMap<u16, Vec<f64>>,
    /// Wins and win rates.
    pub wins: BTreeMap<u16, WinRecord>,
    /// Uids skipped as copies of an earlier commit.
    pub duplicates: Vec<u16>,
    /// Uids rejected by the checks or unloadable, with the reason.
    pub rejected: BTreeMap<u16, String>,
    /// Samples (chat task) or packed rows (text task) scored, over all models.
    pub scored_samples: usize,
}

impl RoundOutcome {
    /// Mean of the finite losses of `uid`.
    pub fn mean_loss(&self, uid: u16) -> Option<f64> {
        let l = self.losses.get(&uid)?;
        let finite: Vec<f64> = l.iter().copied().filter(|x| x.is_finite()).collect();
        (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
    }
}

/// Which of a competition's ready models a step evaluates, the originals' bound on a step's
/// work: the models `kept` from the last step (the leaders a newcomer has to beat) first,
/// then the rest that are not `settled` (new in their commitment, or worth a retry by
/// [`scoring::should_retry`]), earliest commit first; `max` in all. Copies of an earlier
/// commit (by hash, over all of `ready`, so a copy is caught even when its original is not
/// evaluated this step) are returned apart, never selected. Returns `(selected, copies)`.
pub fn select_candidates(ready: &[Candidate], kept: &[u16], settled: &dyn Fn(u16) -> bool, max: usize) -> (Vec<Candidate>, Vec<u16>) {
    let subs: Vec<Submission> = ready.iter().map(|c| Submission { uid: c.uid, block: c.block, hash: c.hash.clone() }).collect();
    let copies = scoring::duplicates(&subs);
    let originals: Vec<&Candidate> = ready.iter().filter(|c| !copies.contains(&c.uid)).collect();
    let mut selected: Vec<Candidate> = kept.iter().filter_map(|u| originals.iter().find(|c| c.uid == *u)).map(|c| (*c).clone()).collect();
    let mut pending: Vec<&Candidate> = originals.iter().copied().filter(|c| !settled(c.uid) && !kept.contains(&c.uid)).collect();
    pending.sort_by_key(|c| (c.block, c.uid));
    selected.extend(pending.into_iter().cloned());
    selected.truncate(max);
    (selected, copies)
}

/// Tokens of each of the two documents the degeneracy check continues (pretraining's 100).
const DEGENERACY_PROMPT_TOKENS: usize = 100;

/// Why `engine` fails the degeneracy check on the first two documents, if it does (`None`
/// also when there are fewer than two non-empty documents to prompt it with).
fn degeneracy(engine: &Engine, tokenizer: &Tokenizer, documents: &[String]) -> Option<String> {
    let prompts: Vec<Vec<u32>> = documents
        .iter()
        .map(|d| tokenizer.encode_plain(d).into_iter().take(DEGENERACY_PROMPT_TOKENS).collect::<Vec<u32>>())
        .filter(|p| !p.is_empty())
        .take(2)
        .collect();
    let [a, b] = prompts.as_slice() else { return None };
    let check = DegeneracyCheck::default();
    match degenerate(engine, a, b, &check) {
        Ok(false) => None,
        Ok(true) => Some(format!(
            "degenerate: its greedy continuations of two documents agree at {} or more of {} positions, or both repeat one token more than {} times",
            check.max_agreeing, check.new_tokens, check.max_repeats
        )),
        Err(e) => Some(format!("the degeneracy check failed: {e}")),
    }
}

/// Samples scored between two polls of `stop` (one shared-prefix batch, [`chat_losses`]).
const SAMPLES_PER_BATCH: usize = 32;

/// Evaluates `candidates` on `samples` at `current_block`, rendering and tokenizing the
/// samples with `tokenizer` (the competition's, [`Competition::load_tokenizer`]) or, when
/// `None`, each model's own; `stop` is polled between batches of samples (a stopping node
/// ends the round early with what it has).
pub fn evaluate(
    competition: &Competition,
    tokenizer: Option<&Tokenizer>,
    candidates: &[Candidate],
    samples: &[Sample],
    current_block: u64,
    stop: &dyn Fn() -> bool,
) -> RoundOutcome {
    evaluate_with_progress(competition, tokenizer, candidates, samples, current_block, stop, &|_, _| {})
}

/// [`evaluate`], calling `progress(uid, samples scored for it)` after each batch of samples.
pub fn evaluate_with_progress(
    competition: &Competition,
    tokenizer: Option<&Tokenizer>,
    candidates: &[Candidate],
    samples: &[Sample],
    current_block: u64,
    stop: &dyn Fn() -> bool,
    progress: &dyn Fn(u16, usize),
) -> RoundOutcome {
    let mut out = RoundOutcome::default();
    let subs: Vec<Submission> = candidates.iter().map(|c| Submission { uid: c.uid, block: c.block, hash: c.hash.clone() }).collect();
    out.duplicates = scoring::duplicates(&subs);
    let mut contenders = Vec::new();
    for c in candidates {
        if out.duplicates.contains(&c.uid) || stop() {
            continue;
        }
        if let Err(e) = check_model(&c.model, &competition.limits) {
            out.rejected.insert(c.uid, e.to_string());
            continue;
        }
        let engine = match Engine::load(&c.model) {
            Ok(e) => e,
            Err(e) => {
                out.rejected.insert(c.uid, format!("cannot load: {e}"));
                continue;
            }
        };
        let tokenizer = tokenizer.unwrap_or_else(|| engine.tokenizer());
        let rows = engine.model().config().vocab_size;
        if tokenizer.vocab_size() > rows {
            out.rejected.insert(
                c.uid,
                format!("the competition's tokenizer has {} tokens but the model outputs {rows}", tokenizer.vocab_size()),
            );
            continue;
        }
        let mut losses = Vec::with_capacity(samples.len());
        match competition.task {
            Task::Chat => {
                for batch in samples.chunks(SAMPLES_PER_BATCH) {
                    if stop() {
                        break;
                    }
                    losses.extend(chat_losses(&engine, tokenizer, batch, competition.sequence_length).into_iter().map(|l| l.unwrap_or(f64::INFINITY)));
                    out.scored_samples += batch.len();
                    progress(c.uid, losses.len());
                }
            }
            Task::Text { degeneracy_check } => {
                let documents: Vec<String> = samples.iter().map(|s| s.response.clone()).collect();
                if degeneracy_check && let Some(why) = degeneracy(&engine, tokenizer, &documents) {
                    out.rejected.insert(c.uid, why);
                    continue;
                }
                let rows = pack_documents(tokenizer, &documents, competition.sequence_length.min(engine.context_length()));
                for row in &rows {
                    if stop() {
                        break;
                    }
                    losses.push(mean_loss_from(&engine, row, 1).unwrap_or(f64::INFINITY));
                    out.scored_samples += 1;
                    progress(c.uid, losses.len());
                }
            }
        }
        contenders.push(Contender { uid: c.uid, block: c.block, losses: losses.clone() });
        out.losses.insert(c.uid, losses);
    }
    out.wins = scoring::compute_wins(&contenders, &competition.epsilon, current_block, 0.0);
    out
}
