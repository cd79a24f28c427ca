//! Logprob verification: the miner's tokens, teacher-forced through the validator's model,
//! must look like a fair draw from the *processed* sampling distribution the validator asked
//! for — repetition penalty, temperature, top-k and top-p applied as the sampler applies
//! them ([`ganglion_engine::distribution`]). A validator cannot know which server a miner
//! runs, and servers order those steps differently, so every check runs once per sampler
//! [`Family`] and a response passes if it passes for any family: an honest miner passes
//! for its own server's family, so soundness holds whichever family that is.
//!
//! Per family:
//! - **support** (`UNLIKELY_TOKEN`, `SKIPPED_EOS`, `EARLY_END`): every token must be one the
//!   processed distribution can produce — at temperature 0 the argmax, otherwise inside
//!   top-k and the nucleus — with its logit allowed to sit up to `margin` nats lower than
//!   the cut (kernels and batch shapes of other backends move logits by a few hundredths;
//!   `tests/it/third_party.rs` measures llama.cpp against this engine). An honest sampler
//!   never fails this beyond that numeric slack.
//! - **rank statistic** (`UNLIKELY_TOKENS`): the randomized probability integral transform
//!   `uᵢ = aboveᵢ + Vᵢ·qᵢ` (mass ranked above the token plus a uniform share of its own
//!   probability, `Vᵢ` drawn by the validator) is exactly U(0, 1) at every position of a
//!   fair draw, whatever the model and parameters, so `Σ(uᵢ − ½)` is a martingale with
//!   steps in `[−½, ½]` and variance `n/12`. A cached low-temperature or greedy answer
//!   replayed for a higher temperature ranks too high; another model's tokens rank too low.
//! - **log-likelihood** (`UNLIKELY_TOKENS`): `Σ(ℓᵢ − E ℓᵢ)` with `ℓᵢ = max(ln qᵢ, −12)`,
//!   whose mean and variance under a fair draw the processed distribution gives exactly.
//!   It separates a different model whose ranks happen to look uniform.
//! - **end of sequence** (`SKIPPED_EOS`): the probability that a fair sampler goes on past
//!   every position, `Π(1 − end massᵢ)`, must not fall below `alpha/5`.
//!
//! The two statistics are tested two-sided with Freedman's inequality ([`stats`](super::stats)),
//! the four tails and the end-of-sequence test sharing `alpha` (10⁻⁴ by default) equally:
//! an honest miner fails a response with probability at most `alpha`, by construction
//! rather than by a tuned threshold. Power grows with tokens: per response these catch
//! gross cheats; the validator also accumulates the same evidence per miner across
//! responses ([`crate::scoring`]), which catches subtle ones.
//!
//! - **low average** (`LOW_AVERAGE`): v4's agreement score `1 − min(1, |e^lp_v − e^lp_m|)`
//!   (≥ 0.9 counts as 1) between the validator's and the miner's reported logprobs, averaged
//!   and enforced (≥ 0.75). Reported logprobs are compared both as raw and as tempered
//!   values, since servers differ in which they report.
//!
//! [`judge`] is pure (scores and placements in, verdict out), so every rule is unit-tested
//! with synthetic distributions; `tests/it/verify_engine.rs` runs it on the real model.

use ganglion_engine::distribution::{Family, LOGLIK_CLIP, Placement};
use ganglion_engine::engine::TokenScore;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::stats::{Deviation, Evidence};
use crate::cause::{Cause, Failure};
use crate::openai::Sampling;

/// Settings of the logprob verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobConfig {
    /// Alternatives per position asked of the reference (≤ 20).
    pub top_k: usize,
    /// How far (nats of raw logit) a token may sit beyond the support's edge: the numeric
    /// slack between backends. llama.cpp quantises activations to 8 bits inside its Q4_1
    /// matrix products, which moves logits by tenths of a nat: its greedy choices on the
    /// same file were measured up to 0.31 nats below this engine's argmax (`ganglion bench
    /// verify --start llama-cpp`, tuning seed 20261203, 212 responses), so the margin is 1.0.
    pub margin: f32,
    /// Per-response false-positive budget shared by the statistical tests.
    pub alpha: f64,
    /// Agreement average below this fails (v4 computed 0.75 and ignored it).
    pub min_average: f64,
}

impl Default for LogprobConfig {
    fn default() -> Self {
        LogprobConfig { top_k: 20, margin: 1.0, alpha: 1e-4, min_average: 0.75 }
    }
}

/// What the verifier measured for one family.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FamilyStats {
    /// The family.
    pub family: &'static str,
    /// Tokens outside the support (beyond the margin).
    pub outside: usize,
    /// Tokens outside the exact support but within the margin.
    pub marginal: usize,
    /// Temperature 0: the largest gap below the argmax among the tokens (nats).
    pub max_greedy_gap: f64,
    /// The statistics' sums.
    pub evidence: Evidence,
    /// Probability that a fair sampler goes on past every position.
    pub eos_survival: f64,
    /// Whether the response passed for this family.
    pub passed: bool,
}

/// What the verifier measured (stored with the record).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LogprobStats {
    /// Tokens judged.
    pub tokens: usize,
    /// Mean raw logprob of the miner's tokens under the reference.
    pub mean_logprob: f64,
    /// Agreement average with the reported logprobs (None when none were reported).
    pub average: Option<f64>,
    /// Per family.
    pub families: Vec<FamilyStats>,
}

impl LogprobStats {
    /// The evidence of each family, in [`Family::ALL`] order (for per-miner accumulation).
    pub fn evidence(&self) -> Vec<Evidence> {
        self.families.iter().map(|f| f.evidence).collect()
    }
}

/// The inputs of [`judge`].
#[derive(Debug, Clone, Copy)]
pub struct LogprobInput<'a> {
    /// The miner's tokens.
    pub tokens: &'a [u32],
    /// The logprob the miner reported for each token (None if it reported none).
    pub reported: &'a [Option<f64>],
    /// The reference's raw scores of `tokens` — plus one more position when the caller
    /// appended an end token to test an early stop.
    pub scores: &'a [TokenScore],
    /// The same positions placed per family (`placements[i][f]`, [`Family::ALL`] order).
    pub placements: &'a [Vec<Placement>],
    /// Whether `scores` has that extra position.
    pub appended_end: bool,
    /// The sampling parameters the miner was asked to use.
    pub sampling: &'a Sampling,
    /// Token ids that end generation.
    pub end_tokens: &'a [u32],
    /// Only the log-likelihood's lower tail is tested (the tokens are a re-tokenization
    /// of text, not the path the miner's model took).
    pub lenient: bool,
    /// Seeds the validator's uniform draws `Vᵢ` (derive it from something the miner does
    /// not control before answering, e.g. the validator's request seed and the tokens).
    pub noise_seed: u64,
}

/// Judges one response; see the module doc. `Err` carries the failure found.
pub fn judge(input: &LogprobInput<'_>, config: &LogprobConfig) -> (LogprobStats, Result<(), Failure>) {
    let n = input.tokens.len();
    let positions = n + usize::from(input.appended_end);
    let mut stats = LogprobStats { tokens: n, ..Default::default() };
    if input.scores.len() != positions || input.placements.len() != positions {
        let detail = format!("reference returned {} scores and {} placements for {positions} positions", input.scores.len(), input.placements.len());
        return (stats, Err(Failure::new(Cause::Malformed, detail)));
    }
    let sum_lp: f64 = input.scores[..n].iter().map(|s| f64::from(s.logprob).max(-100.0)).sum();
    stats.mean_logprob = if n > 0 { sum_lp / n as f64 } else { 0.0 };
    let greedy = input.sampling.temperature <= 0.0;
    let families = input.placements.first().map_or(Family::ALL.len(), Vec::len).min(Family::ALL.len());
    let mut failures: Vec<Failure> = Vec::new();
    for f in 0..families {
        let family = Family::ALL[f];
        let (fs, failure) = judge_family(input, config, family, f, greedy);
        let passed = failure.is_none();
        stats.families.push(FamilyStats { passed, ..fs });
        // One family passing is enough; the rest are still measured for the record.
        failures.extend(failure);
    }
    if stats.families.iter().any(|f| f.passed) {
        stats.average = agreement(input);
        if let Some(avg) = stats.average
            && avg < config.min_average
        {
            let detail = format!("reported logprobs agree with the reference on average {avg:.3} < {}", config.min_average);
            return (stats, Err(Failure::new(Cause::LowAverage, detail)));
        }
        return (stats, Ok(()));
    }
    // No family passed: report the failure that got furthest (a statistical one over a
    // support one), naming every family's reason.
    let pick = failures.iter().position(|f| f.cause == Cause::UnlikelyTokens).unwrap_or(0);
    let mut failure = failures.swap_remove(pick.min(failures.len().saturating_sub(1)));
    if families > 1 {
        let others: Vec<String> = stats.families.iter().map(|f| format!("{}: {} outside", f.family, f.outside)).collect();
        failure.detail = format!("{} [{}]", failure.detail, others.join("; "));
    }
    (stats, Err(failure))
}

fn judge_family(input: &LogprobInput<'_>, config: &LogprobConfig, family: Family, f: usize, greedy: bool) -> (FamilyStats, Option<Failure>) {
    let n = input.tokens.len();
    let is_end = |id: u32| input.end_tokens.contains(&id);
    let mut stats = FamilyStats { family: family.name, eos_survival: 1.0, ..Default::default() };
    let mut first: Option<Failure> = None;
    let mut rng = rand::rngs::StdRng::seed_from_u64(input.noise_seed ^ (f as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for (i, (score, placed)) in input.scores.iter().zip(input.placements).enumerate() {
        let Some(p) = placed.get(f) else { continue };
        let token = if i < n { input.tokens[i] } else { score.token };
        if !p.admitted {
            stats.outside += 1;
            if first.is_none() {
                let end_is_argmax = score.top.first().is_some_and(|&(id, _)| is_end(id) && id != token);
                let cause = if is_end(token) {
                    Cause::EarlyEnd
                } else if end_is_argmax {
                    Cause::SkippedEos
                } else {
                    Cause::UnlikelyToken
                };
                let what = if is_end(token) { format!("stopping after {i} tokens") } else { format!("position {i}: token {token} (rank {})", score.rank) };
                let detail = if greedy {
                    format!("{what} at temperature 0 lies {:.3} nats below the argmax (margin {})", p.greedy_gap, config.margin)
                } else {
                    format!(
                        "{what} is outside what temperature {:.2}, top_p {:.2}, top_k {}, repetition penalty {:.2} can produce under {}",
                        input.sampling.temperature, input.sampling.top_p, input.sampling.top_k, input.sampling.repetition_penalty, family.name
                    )
                };
                first = Some(Failure::new(cause, detail));
            }
            continue;
        }
        if !p.in_support {
            stats.marginal += 1;
        }
        if greedy {
            stats.max_greedy_gap = stats.max_greedy_gap.max(f64::from(p.greedy_gap));
            continue;
        }
        // The randomized PIT and the clipped log-likelihood (module doc).
        let u = p.above + rng.r#gen::<f64>() * p.q;
        stats.evidence.n += 1;
        stats.evidence.pit += u.clamp(0.0, 1.0) - 0.5;
        stats.evidence.loglik += p.loglik - p.loglik_mean;
        stats.evidence.loglik_var += p.loglik_var;
        if !is_end(token) {
            stats.eos_survival *= (1.0 - p.end_mass).clamp(0.0, 1.0);
        }
    }
    if let Some(failure) = first {
        return (stats, Some(failure));
    }
    if greedy {
        return (stats, None);
    }
    let share = config.alpha / 5.0;
    if !input.lenient && stats.eos_survival < share {
        let detail = format!("a fair sampler would have stopped: probability {:.2e} of going on past every likely end", stats.eos_survival);
        return (stats, Some(Failure::new(Cause::SkippedEos, detail)));
    }
    let verdict = if input.lenient {
        // Re-tokenized text: only "far less likely than a fair draw" is meaningful.
        let t = super::stats::freedman_threshold(stats.evidence.loglik_var, LOGLIK_CLIP, share);
        (stats.evidence.loglik <= -t).then(|| (Deviation::TooSurprising, format!("log-likelihood {:+.1} nats below a fair draw's (band {t:.1})", stats.evidence.loglik)))
    } else {
        stats.evidence.test(4.0 * share, LOGLIK_CLIP, true)
    };
    match verdict {
        Some((deviation, why)) => {
            let what = match deviation {
                Deviation::TooPredictable => "too predictable for the requested sampling (a lower temperature or a cached answer?)",
                Deviation::TooSurprising => "too unlikely under the model (another model?)",
            };
            (stats, Some(Failure::new(Cause::UnlikelyTokens, format!("not a fair draw under {}: {what}; {why}", family.name))))
        }
        None => (stats, None),
    }
}

fn agreement(input: &LogprobInput<'_>) -> Option<f64> {
    let n = input.tokens.len();
    if n == 0 || input.reported.len() != n || input.reported.iter().any(Option::is_none) {
        return None;
    }
    let t = input.sampling.temperature;
    let mut raw = 0.0;
    let mut tempered = 0.0;
    for (score, reported) in input.scores.iter().zip(input.reported) {
        let reported = reported.unwrap_or(0.0).min(0.0).exp();
        let p = f64::from(score.logprob).exp();
        let point = |v: f64| {
            let s = 1.0 - (v - reported).abs().min(1.0);
            if s >= 0.9 { 1.0 } else { s }
        };
        raw += point(p);
        // Tempered value renormalised over the top-k (what servers that report processed
        // logprobs send); the raw value when the token is outside the top-k.
        let q = if t > 0.0 && score.top.iter().any(|&(id, _)| id == score.token) {
            let a = 1.0 / t;
            let w: f64 = score.top.iter().map(|&(_, lp)| (f64::from(lp) * a).exp()).sum();
            (f64::from(score.logprob) * a).exp() / w
        } else if t <= 0.0 && score.rank == 1 {
            1.0
        } else {
            p
        };
        tempered += point(q);
    }
    Some(raw.max(tempered) / n as f64)
}

#[cfg(test)]
mod tests;
