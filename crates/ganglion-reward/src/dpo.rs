//! The DPO reward of openvalidators 1.2.0 (`reward/dpo.py`): a reference model's mean
//! log-probability of the completion tokens given the prompt, after a repetition penalty.
//! The original's reference model is cerebras/btlm-3b-8k-base; here it is the engine's model
//! (SmolLM2-135M by default, any GGUF the engine loads).
//!
//! Exactly as the original:
//! - −11 for a completion that is blank or at most 5 characters, for a prompt of at least the
//!   model's context length, and for a NaN or infinite result;
//! - `combined` = tokens of `prompt + completion` (one string, so the boundary may merge),
//!   `P` = the number of tokens of `prompt` alone, `combined` cut to the context length;
//!   positions `P−1 … L−2` (predicting tokens `P … L−1`) are averaged;
//! - the penalty (CTRL's, 1.2) is applied at positions `i` in `P+1 … L−2` to the tokens of
//!   `combined[P..i]`, each with its count c: a negative logit ×1.2^c, a positive one
//!   ÷1.2^c. (As in the original, position `P` and each position's own current token are
//!   left out of the penalty, an off-by-one kept for compatibility.)

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::Mutex;

use ganglion_engine::Engine;
use ganglion_engine::model::{self, KvCache};

use crate::error::Result;

/// The original's `penalty`.
pub const REPETITION_PENALTY: f64 = 1.2;
/// The lowest reward: exp(−11) ≈ 1.67e-5 < 1/50257.
pub const LOWEST: f64 = -11.0;

/// The DPO reward function on an engine.
#[derive(Debug, Clone)]
pub struct Dpo {
    engine: Arc<Engine>,
    penalty: f64,
    /// The last prompt prefix run and the cache it left: every completion of a step shares
    /// the prompt, so its prefill runs once per step, not once per completion.
    prefix: PrefixMemo,
}

/// The last prompt prefix run (its tokens) and the cache after it.
type PrefixMemo = Arc<Mutex<Option<(Vec<u32>, KvCache)>>>;

impl Dpo {
    /// With the original's penalty of 1.2.
    pub fn new(engine: Arc<Engine>) -> Self {
        Dpo {
            engine,
            penalty: REPETITION_PENALTY,
            prefix: Arc::default(),
        }
    }

    /// With another penalty (1.0: none).
    pub fn with_penalty(engine: Arc<Engine>, penalty: f64) -> Self {
        Dpo {
            engine,
            penalty,
            prefix: Arc::default(),
        }
    }

    /// The reward of one completion ([`Dpo::rewards`] of one).
    pub fn reward(&self, prompt: &str, completion: &str) -> Result<f64> {
        Ok(self.rewards(prompt, &[completion])?.pop().unwrap_or(LOWEST))
    }

    /// The reward of each completion of `prompt`. The completions' tokens run packed several
    /// to a forward pass after the prompt's shared tokens (run once, and kept for the next
    /// call with the same prompt), logits only for the scored rows
    /// ([`Engine::packed_logits`]); each reward is the one a pass of its completion alone
    /// gives, up to float rounding (a test holds them to 1e-9 of each other's means).
    pub fn rewards<S: AsRef<str>>(&self, prompt: &str, completions: &[S]) -> Result<Vec<f64>> {
        let tokenizer = self.engine.tokenizer();
        let limit = self.engine.context_length();
        let prompt_len = tokenizer.encode(prompt).len();
        let mut out = vec![LOWEST; completions.len()];
        // (index, combined tokens) of the completions that are scored.
        let mut scored: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, completion) in completions.iter().enumerate() {
            let completion = completion.as_ref();
            if completion.trim().is_empty() || completion.chars().count() <= 5 || limit <= prompt_len {
                continue;
            }
            let mut combined = tokenizer.encode(&format!("{prompt}{completion}"));
            combined.truncate(limit);
            // Scored positions j in [P−1, L−2]; with L ≤ P there are none: the mean is NaN.
            if combined.len() < 2 || combined.len() <= prompt_len {
                continue;
            }
            scored.push((i, combined));
        }
        let Some((_, first)) = scored.first() else { return Ok(out) };
        // The tokens before the first scored row that every completion shares: the prompt's,
        // but the last ones may merge with a completion's start.
        let first_row = prompt_len.saturating_sub(1);
        let shared = scored.iter().fold(first_row, |n, (_, c)| n.min(first.iter().zip(c).take_while(|(a, b)| a == b).count()));
        let prefix = self.prefix_cache(&first[..shared])?;
        let seqs: Vec<model::Packed<'_>> = scored
            .iter()
            .map(|(_, c)| model::Packed { tokens: &c[shared..c.len() - 1], logits_from: first_row - shared })
            .collect();
        let penalty = self.penalty;
        let mut sums = vec![(0.0f64, 0usize); scored.len()];
        self.engine.packed_logits(&prefix, &seqs, |seq, k, row| {
            let combined = &scored[seq].1;
            let i = first_row + k;
            let mut row = row.to_vec();
            if i > prompt_len {
                apply_penalty(&mut row, &combined[prompt_len..i], penalty);
            }
            let target = combined[i + 1] as usize;
            sums[seq].0 += log_softmax_at(&row, target);
            sums[seq].1 += 1;
            Ok(())
        })?;
        for ((i, _), (sum, n)) in scored.iter().zip(sums) {
            let reward = sum / n as f64;
            out[*i] = if reward.is_finite() { reward } else { LOWEST };
        }
        Ok(out)
    }
}

impl Dpo {
    /// The cache after `prefix`: the memo's copy when it ran last, else run now (and kept).
    fn prefix_cache(&self, prefix: &[u32]) -> Result<KvCache> {
        let mut memo = self.prefix.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tokens, cache)) = memo.as_ref()
            && tokens.as_slice() == prefix
        {
            return Ok(cache.clone());
        }
        let mut cache = self.engine.model().new_cache();
        if !prefix.is_empty() {
            self.engine
                .model()
                .forward(prefix, &mut cache, model::Logits::Last)?;
        }
        *memo = Some((prefix.to_vec(), cache.clone()));
        Ok(cache)
    }
}

/// CTRL's penalty by count over `used`: a negative logit ×p^c, a positive one ÷p^c.
pub fn apply_penalty(row: &mut [f32], used: &[u32], penalty: f64) {
    let mut counts: HashMap<u32, i32> = HashMap::new();
    for &t in used {
        *counts.entry(t).or_default() += 1;
    }
    for (token, count) in counts {
        if let Some(logit) = row.get_mut(token as usize) {
            let factor = penalty.powi(count);
            let v = f64::from(*logit);
            *logit = if v < 0.0 {
                (v * factor) as f32
            } else {
                (v / factor) as f32
            };
        }
    }
}

/// log_softmax(row)[target], in f64 (−∞ for an index outside the row).
pub fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let Some(&x) = row.get(target) else {
        return f64::NEG_INFINITY;
    };
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    f64::from(x - max) - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_by_count_and_sign() {
        let mut row = vec![2.0f32, -2.0, 3.0, 1.0];
        apply_penalty(&mut row, &[0, 1, 1, 7], 1.2);
        assert!((row[0] - 2.0 / 1.2).abs() < 1e-6);
        assert!((row[1] - (-2.0 * 1.44)).abs() < 1e-6);
        assert_eq!(row[2], 3.0);
        assert_eq!(row[3], 1.0);
    }

    #[test]
    fn log_softmax_of_uniform_row() {
        let row = vec![0.5f32; 4];
        assert!((log_softmax_at(&row, 2) - (0.25f64).ln()).abs() < 1e-12);
        assert_eq!(log_softmax_at(&row, 9), f64::NEG_INFINITY);
    }
}
