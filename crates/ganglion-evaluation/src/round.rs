//! One evaluation round of one competition (spec A5.5–8), the core of a validator step:
//! duplicates by hash resolved to the earliest commit, the model checks, a loss per sample
//! on the engine (a failure is `+inf`, as the original's exception path), win rates with the
//! competition's epsilon, and the weight update.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ganglion_engine::Engine;

use crate::gguf::{ModelLimits, check_model};
use crate::loss::{Sample, chat_loss};
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
        }]
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
    /// The GGUF file to evaluate.
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
    /// Tokens scored.
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

/// Evaluates `candidates` on `samples` at `current_block`; `stop` is polled between samples
/// (a stopping node ends the round early with what it has).
pub fn evaluate(
    competition: &Competition,
    candidates: &[Candidate],
    samples: &[Sample],
    current_block: u64,
    stop: &dyn Fn() -> bool,
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
        let mut losses = Vec::with_capacity(samples.len());
        for s in samples {
            if stop() {
                break;
            }
            losses.push(chat_loss(&engine, s, competition.sequence_length).unwrap_or(f64::INFINITY));
            out.scored_samples += 1;
        }
        contenders.push(Contender { uid: c.uid, block: c.block, losses: losses.clone() });
        out.losses.insert(c.uid, losses);
    }
    out.wins = scoring::compute_wins(&contenders, &competition.epsilon, current_block, 0.0);
    out
}
