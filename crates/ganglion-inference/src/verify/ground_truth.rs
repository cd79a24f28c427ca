//! Ground-truth verification (Targon v2's "redundant deterministic verification"): the
//! validator regenerates the answer with the same prompt, sampling parameters and seed, and
//! the miner's text must match it.
//!
//! The built-in engine is deterministic for a seed (same bits across runs and thread
//! counts), so an honest miner on the same engine reproduces the ground truth token for
//! token: identical token ids verify at once. Other backends diverge after a while (kernels,
//! quantisation, sampler details); they are judged by the chunked Jaro-Winkler rule
//! ([`crate::jaro::ChunkRule`]), which tolerates late divergence but not a different answer.

use serde::Serialize;

use crate::cause::{Cause, Failure};
use crate::jaro::{ChunkRule, ChunkVerdict};
use crate::reference::Generated;

/// What ground-truth verification measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundTruthStats {
    /// The miner's token ids equal the regeneration's.
    pub exact: bool,
    /// Length of the common token prefix.
    pub common_prefix: usize,
    /// The chunked verdict (absent when exact).
    pub chunks: Option<ChunkVerdict>,
}

/// Judges the miner's `tokens`/`text` against the regeneration `truth`. Returns the stats,
/// the similarity (mean chunk score, or 1.0 when exact) and the verdict.
pub fn judge(tokens: &[u32], text: &str, truth: &Generated, rule: &ChunkRule) -> (GroundTruthStats, f64, Result<(), Failure>) {
    let common_prefix = tokens.iter().zip(&truth.tokens).take_while(|(a, b)| a == b).count();
    if tokens == truth.tokens.as_slice() {
        return (GroundTruthStats { exact: true, common_prefix, chunks: None }, 1.0, Ok(()));
    }
    let verdict = rule.judge(&truth.text, text);
    let similarity = verdict.mean;
    let result = if verdict.verified {
        Ok(())
    } else {
        Err(Failure::new(
            Cause::Similarity,
            format!(
                "text differs from the regeneration: {}/{} chunks pass, modifier {:.2}, mean {:.3}, length {} (first {} tokens identical)",
                verdict.passed,
                verdict.scores.len(),
                verdict.modifier,
                verdict.mean,
                if verdict.length_ok { "ok" } else { "off" },
                common_prefix
            ),
        ))
    };
    (GroundTruthStats { exact: false, common_prefix, chunks: Some(verdict) }, similarity, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(text: &str, tokens: Vec<u32>) -> Generated {
        Generated { tokens, text: text.into(), finish: "stop" }
    }

    #[test]
    fn exact_tokens_verify_and_strangers_fail() {
        let t = truth("the cat sat on the mat", vec![1, 2, 3, 4]);
        let (stats, sim, ok) = judge(&[1, 2, 3, 4], "the cat sat on the mat", &t, &ChunkRule::default());
        assert!(stats.exact && ok.is_ok() && sim == 1.0);
        let (stats, _, err) = judge(&[9, 9], "an entirely unrelated answer about dogs", &t, &ChunkRule::default());
        assert_eq!(err.unwrap_err().cause, Cause::Similarity);
        assert_eq!(stats.common_prefix, 0);
    }

    #[test]
    fn late_divergence_is_tolerated() {
        let text: String = (0..90).map(|i| format!("w{i} ")).collect();
        let mut other: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        other[85] = "different".into();
        let t = truth(&text, vec![1, 2, 3]);
        let (stats, _, ok) = judge(&[1, 2, 4], &other.join(" "), &t, &ChunkRule::default());
        assert!(ok.is_ok(), "{stats:?}");
        assert_eq!(stats.common_prefix, 2);
    }
}
