//! The two embedding masks of openvalidators 1.2.0, relevance and diversity, on
//! all-MiniLM-L6-v2 embeddings ([`crate::embed`]).
//!
//! **What differs from the original, and why.** The original's relevance mask needs two
//! models: bert-base-uncased (raw, mean-pooled and L2-normalised, chunks of 512 tokens
//! averaged; the mask needs −RMSE(prompt, completion) ≥ −0.0246) and all-mpnet-base-v2
//! (|cos| ≥ 0.3); its diversity mask uses MPNet. Neither model is available here; MiniLM takes
//! MPNet's place with MPNet's bound and sigmoids (both are sentence-transformers models
//! trained on the same pairs, on the same cosine scale). The RMSE bound cannot carry over:
//! it is calibrated to bert-base's anisotropic raw embeddings, where unrelated texts still
//! have cosines near 0.8 (on unit vectors RMSE = √(2(1−cos)/d), so −0.0246 at d = 768 is
//! cos ≥ 0.77); on MiniLM that bound would mask nearly every honest answer. The RMSE test is
//! implemented ([`neg_rmse`], chunk-averaged embeddings from
//! [`crate::embed::SentenceEmbedder::embed_chunked`]) and off unless a bound is configured.

use std::collections::VecDeque;
use std::path::Path;

use crate::embed::{Embedding, cosine};
use crate::error::{Result, RewardError};

/// MPNet's relevance bound: |cos(prompt, completion)| ≥ 0.3.
pub const RELEVANCE_COSINE_BOUND: f64 = 0.3;
/// bert-base-uncased's relevance bound on −RMSE (not used with MiniLM by default).
pub const BERT_RMSE_BOUND: f64 = -0.0246;
/// Embeddings kept in the diversity history (`history_range[1]`).
pub const HISTORY_KEEP: usize = 15_500;
/// Oldest history entries skipped in the comparison (`history_range[0]`).
pub const HISTORY_SKIP: usize = 500;
/// `reward_bottom_k` and `history_reward_bottom_k`: the k-th smallest distance is used.
pub const BOTTOM_K: usize = 2;

/// The relevance mask: 1 when every configured criterion holds, else 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relevance {
    /// |cos| bound (MPNet's 0.3).
    pub cosine_bound: f64,
    /// −RMSE bound on chunk-averaged embeddings, if used (bert-base's −0.0246).
    pub rmse_bound: Option<f64>,
}

impl Default for Relevance {
    fn default() -> Self {
        Relevance {
            cosine_bound: RELEVANCE_COSINE_BOUND,
            rmse_bound: None,
        }
    }
}

impl Relevance {
    /// The mask for one completion. `chunked` are the chunk-averaged embeddings of prompt and
    /// completion, needed only when [`Relevance::rmse_bound`] is set (missing: criterion fails).
    pub fn reward(
        &self,
        prompt: &[f32],
        completion: &[f32],
        chunked: Option<(&[f32], &[f32])>,
    ) -> f64 {
        if let Some(bound) = self.rmse_bound {
            match chunked {
                Some((p, c)) if neg_rmse(p, c) >= bound => {}
                _ => return 0.0,
            }
        }
        if cosine(prompt, completion).abs() < self.cosine_bound {
            return 0.0;
        }
        1.0
    }
}

/// −RMSE between two embeddings, `-sqrt(mean((a−b)²))`.
pub fn neg_rmse(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    -(sum / n as f64).sqrt()
}

/// The batch sigmoid, 1/(1+e^(−40d+4)): 0.07 → 0.23, 0.1 → 0.5, 0.2 → 0.98.
pub fn batch_sigmoid(d: f64) -> f64 {
    1.0 / (1.0 + (-40.0 * d + 4.0).exp())
}

/// The history sigmoid, 1/(1+e^(−1000d+50)), a cut near 0.05.
pub fn history_sigmoid(d: f64) -> f64 {
    1.0 / (1.0 + (-1000.0 * d + 50.0).exp())
}

/// The k-th smallest (1-based) of `1 − |cos(e, other)|` over `others`; `None` if there are
/// fewer than k.
fn kth_smallest_distance(e: &[f32], others: &[&[f32]], k: usize) -> Option<f64> {
    let mut d: Vec<f64> = others.iter().map(|o| 1.0 - cosine(e, o).abs()).collect();
    if d.len() < k {
        return None;
    }
    d.select_nth_unstable_by(k - 1, f64::total_cmp);
    Some(d[k - 1])
}

/// Raw batch diversity per completion: the sigmoid of the distance to its nearest other
/// completion (the 2nd-smallest distance, the smallest being to itself). A batch of one,
/// where the original's `topk` fails, has nothing to be near: distance 1.
pub fn batch_diversity(embeddings: &[Embedding]) -> Vec<f64> {
    let all: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
    embeddings
        .iter()
        .map(|e| batch_sigmoid(kth_smallest_distance(e, &all, BOTTOM_K).unwrap_or(1.0)))
        .collect()
}

/// The diversity mask with its bounded embedding history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diversity {
    history: VecDeque<Embedding>,
}

impl Diversity {
    /// The mask for a batch of completions (batch × history factor), then the batch joins
    /// the history. The history factor applies once the history holds ≥ 502 embeddings:
    /// the sigmoid of the 2nd-smallest distance to the history past its oldest 500.
    pub fn rewards(&mut self, embeddings: &[Embedding]) -> Vec<f64> {
        if embeddings.is_empty() {
            return Vec::new();
        }
        let batch = batch_diversity(embeddings);
        let historic = self.historic(embeddings);
        self.update(embeddings);
        match historic {
            Some(h) => batch.iter().zip(h).map(|(b, h)| b * h).collect(),
            None => batch,
        }
    }

    /// The history factor, or `None` while the history is too short.
    pub fn historic(&self, embeddings: &[Embedding]) -> Option<Vec<f64>> {
        if self.history.len() < HISTORY_SKIP + BOTTOM_K {
            return None;
        }
        let past: Vec<&[f32]> = self
            .history
            .iter()
            .skip(HISTORY_SKIP)
            .map(Vec::as_slice)
            .collect();
        Some(
            embeddings
                .iter()
                .map(|e| history_sigmoid(kth_smallest_distance(e, &past, BOTTOM_K).unwrap_or(1.0)))
                .collect(),
        )
    }

    /// Appends a batch, dropping consecutive duplicates as the original's `unique` does, and
    /// keeps the last [`HISTORY_KEEP`].
    pub fn update(&mut self, embeddings: &[Embedding]) {
        let Some(first) = embeddings.first() else {
            return;
        };
        // The original starts its list with the first embedding, then appends every one that
        // differs from its predecessor (the first compared with itself is not appended).
        self.history.push_back(first.clone());
        for pair in embeddings.windows(2) {
            if pair[1] != pair[0] {
                self.history.push_back(pair[1].clone());
            }
        }
        while self.history.len() > HISTORY_KEEP {
            self.history.pop_front();
        }
    }

    /// Embeddings in the history.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Saves the history atomically: `GDH1`, dim (u32 LE), count (u32 LE), then f32 LE.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dim = self.history.front().map_or(0, Vec::len);
        let mut bytes = Vec::with_capacity(12 + self.history.len() * dim * 4);
        bytes.extend_from_slice(b"GDH1");
        bytes.extend_from_slice(&(dim as u32).to_le_bytes());
        bytes.extend_from_slice(&(self.history.len() as u32).to_le_bytes());
        for e in &self.history {
            for x in e
                .iter()
                .take(dim)
                .chain(std::iter::repeat_n(&0.0, dim.saturating_sub(e.len())))
            {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        ganglion_core::fsutil::write_atomic(path, &bytes, 0o600).map_err(|e| RewardError::Io {
            what: "writing",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Loads a history saved by [`Diversity::save`]; a missing file is an empty history.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let bad = |reason: &str| RewardError::Io {
            what: "reading",
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let limit = 12 + (HISTORY_KEEP as u64) * 4096 * 4;
        let bytes = crate::embed::read_bounded(path, limit)?;
        if bytes.len() < 12 || &bytes[..4] != b"GDH1" {
            return Err(bad("not a diversity history (GDH1)"));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
        };
        let (dim, count) = (word(4), word(8));
        if dim > 4096 || count > HISTORY_KEEP || bytes.len() != 12 + dim * count * 4 {
            return Err(bad("truncated or oversized diversity history"));
        }
        let floats: Vec<f32> = bytes[12..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let history = if dim == 0 {
            VecDeque::new()
        } else {
            floats.chunks_exact(dim).map(<[f32]>::to_vec).collect()
        };
        Ok(Diversity { history })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_anchor_points_from_the_original_comments() {
        assert!((batch_sigmoid(0.07) - 0.231).abs() < 1e-3);
        assert!((batch_sigmoid(0.1) - 0.5).abs() < 1e-12);
        assert!((batch_sigmoid(0.2) - 0.982).abs() < 1e-3);
        assert!((history_sigmoid(0.05) - 0.5).abs() < 1e-12);
        assert!(history_sigmoid(0.0) < 2e-22);
    }

    #[test]
    fn rmse_of_unit_vectors_is_the_cosine_identity() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        // sqrt(2(1 - 0)/2) = 1.
        assert!((neg_rmse(&a, &b) + 1.0).abs() < 1e-12);
    }
}
