//! Llama and Gemma 3 forward passes over GGUF quantized weights, returning logits for every
//! position. The architecture comes from `general.architecture` ([`Architecture`]).
//!
//! candle's `quantized_llama` only returns the last position; validators need all of them
//! (teacher-forced scoring), so this file owns the forward. The KV cache is a plain value
//! ([`KvCache`]): cloning it is cheap (tensors are reference counted and never mutated in
//! place), which is how a shared prompt prefix is computed once and reused for many
//! completions. This module knows nothing about tokenizers, sampling or HTTP.

use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use crate::error::{EngineError, EngineResult};
use crate::tokenizer::VocabSpec;

/// The model families this engine runs, by their GGUF `general.architecture` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `llama`: pre-norm blocks, SiLU-gated FFN, interleaved RoPE (Q/K permuted in the GGUF).
    Llama,
    /// `gemma3`: llama.cpp's `llm_build_gemma3` (see [`Llama::forward_gemma`]).
    Gemma3,
}

impl Architecture {
    /// Every supported architecture.
    pub const ALL: [Architecture; 2] = [Architecture::Llama, Architecture::Gemma3];

    /// The `general.architecture` value, also the prefix of its metadata keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Gemma3 => "gemma3",
        }
    }

    fn from_gguf_name(name: &str) -> Option<Architecture> {
        Architecture::ALL.into_iter().find(|a| a.gguf_name() == name)
    }
}

/// Hyper-parameters read from the GGUF `<architecture>.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Which forward pass runs.
    pub architecture: Architecture,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention).
    pub n_kv_head: usize,
    /// Feed-forward size.
    pub n_ff: usize,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RMS-norm epsilon.
    pub rms_eps: f64,
    /// Maximum context length in tokens.
    pub context_length: usize,
    /// Vocabulary size (rows of the output projection).
    pub vocab_size: usize,
    /// Size of one attention head (`attention.key_length`, else `n_embd / n_head`).
    pub head_size: usize,
    /// Sliding-window attention span in tokens, if some layers use it (Gemma 3).
    pub sliding_window: Option<usize>,
    /// Every `sliding_window_pattern`-th layer (the last of each group) attends globally; the
    /// others use the window (llama.cpp's `set_swa_pattern`; 6 for Gemma 3).
    pub sliding_window_pattern: usize,
    /// RoPE base of the sliding-window layers (llama.cpp's `rope_freq_base_train_swa`).
    pub rope_base_local: f32,
    /// Factor on `q·k` before the softmax.
    pub attention_scale: f32,
}

impl LlamaConfig {
    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_size
    }

    /// Whether layer `layer` attends through the sliding window.
    pub fn is_local_layer(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_window_pattern > 0 && layer % self.sliding_window_pattern < self.sliding_window_pattern - 1
    }
}

/// Which positions to compute logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position: `(1, vocab)`. Used while generating.
    Last,
    /// Every position: `(tokens, vocab)`. Used for scoring and prompt logprobs.
    All,
}

pub use crate::kv::KvCache;

/// One sequence of a packed pass ([`Llama::forward_packed`]).
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a> {
    /// Its tokens, run after the shared prefix.
    pub tokens: &'a [u32],
    /// The first of its rows whose logits are wanted (rows before it only feed attention).
    pub logits_from: usize,
}
use crate::kv::LayerKv;

struct Block {
    /// Gemma 3's extra norms; `None` for llama.
    gemma: Option<GemmaNorms>,
    attn_norm: Tensor,
    attn_norm_values: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    ffn_norm_values: Vec<f32>,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
}

/// Fewest rows of logits [`Llama::forward_chunked`] computes at once (32 MB of Gemma 3
/// logits).
pub const LOGIT_CHUNK: usize = 32;
/// Most rows of logits [`Llama::forward_chunked`] computes at once.
pub const MAX_LOGIT_CHUNK: usize = 256;
/// Bytes of logits [`Llama::forward_chunked`] aims at per chunk: each chunk dequantizes the
/// whole output matrix once ([`tiled_product`]), so larger chunks dequantize less often,
/// but a chunk is the largest transient buffer of scoring (SmolLM2's 49,152-token
/// vocabulary: 85 rows, 16.7 MB; Gemma 3's 262,144: the 32-row floor, 33.5 MB). At 64 MB
/// (256 SmolLM2 rows) the scoring phase of `bench engine` peaked 47 MB higher (267 vs
/// 220 MB resident) and scored 4 × 512 tokens no faster (329 vs 331 tok/s, one run each on
/// 2 threads); at 32 rows a 512-token window dequantized the output matrix 16 times.
const LOGIT_CHUNK_BYTES: usize = 16 << 20;

/// Rows per chunk of [`Llama::forward_chunked`] for a vocabulary of `vocab` tokens.
pub fn logit_chunk_rows(vocab: usize) -> usize {
    (LOGIT_CHUNK_BYTES / (4 * vocab.max(1))).clamp(LOGIT_CHUNK, MAX_LOGIT_CHUNK)
}

/// Gemma 3's per-layer norm weights beyond llama's (as stored: the GGUF conversion already
/// added Gemma's `1 +` to every norm weight, e.g. blk.0.attn_q_norm averages 1.97).
struct GemmaNorms {
    /// RMS norm of each query head (`attn_q_norm`, `head_size` weights).
    q_norm: Vec<f32>,
    /// RMS norm of each key head (`attn_k_norm`).
    k_norm: Vec<f32>,
    /// Applied to the attention output before the residual add (`post_attention_norm`).
    post_attention: Vec<f32>,
    /// Applied to the FFN output before the residual add (`post_ffw_norm`).
    post_ffw: Vec<f32>,
}

/// Products with fewer rows than this (decoding: one row per sequence) use the quantized
/// weights one row at a time; from this many on (prompts, teacher-forced scoring) a tiled
/// f32 GEMM on tiles dequantized per product ([`tiled_product`]).
const DENSE_MIN_ROWS: usize = 8;

/// A weight matrix held in the form each kind of product runs fastest on.
///
/// One-row products (decoding) are memory-bound: they run on the quantized blocks, through
/// [`crate::matvec::BlockMatrix`] (exact f32 products with the stored weights) where the type
/// allows, else candle's quantized matmul. Many-row products (prompts, teacher-forced scoring)
/// are compute-bound, and candle 0.11 multiplies 32-block types with one dot product per
/// output element (its tiled kernels need widths that are multiples of 256; SmolLM2's is 576),
/// so they run as a tiled f32 GEMM: a few hundred rows of the block matrix are dequantized
/// into a scratch tile per product ([`tiled_product`]). That used to be a dense f32 copy of
/// every matrix kept for the model's lifetime (958 MB resident for a 98 MB SmolLM2, and
/// 671 MB for Gemma 3's embedding alone); dequantizing per batch costs one pass over the
/// weights per product, small next to the GEMM's `rows` passes. Both forms use the weights
/// exactly as stored, so decoding and teacher forcing agree to rounding order.
struct Linear {
    one_row: RowProduct,
    /// `Wᵀ` as a contiguous `(in, out)` f32 tensor, kept only for types without a block form.
    dense: Option<Tensor>,
}

enum RowProduct {
    Blocks(Arc<crate::matvec::BlockMatrix>),
    Candle(QMatMul),
}

/// Weights dequantized per GEMM call in [`tiled_product`] (4 MiB of f32): large enough that
/// each call has work for every thread, small enough to stay in cache.
const TILE_WEIGHTS: usize = 1 << 20;

/// `x · Wᵀ` for a `(t, cols)` input, `W` dequantized a tile of rows at a time.
fn tiled_product(w: &crate::matvec::BlockMatrix, x: &Tensor) -> candle_core::Result<Tensor> {
    let (t, width) = x.dims2()?;
    if width != w.cols() {
        candle_core::bail!("matmul: input width {width} for a matrix of width {}", w.cols());
    }
    let mut out = vec![0.0f32; t * w.rows()];
    with_rows(x, |input, _| tiled_product_into(w, input, t, &mut out)).map_err(|e| candle_core::Error::Msg(e.to_string()))??;
    Tensor::from_vec(out, (t, w.rows()), &Device::Cpu)
}

thread_local! {
    /// [`tiled_product_into`]'s dequantized tile, kept between products: a fresh multi-MB
    /// buffer per product was paid for in page faults (~9% of a scoring profile).
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `x · Wᵀ` for `t` row-major rows `x` of width `W.cols()`, written into `out` (`t` rows of
/// `W.rows()`): `W` is dequantized a tile of rows at a time and each tile's product goes
/// straight into its columns of `out` through gemm (the GEMM candle's `matmul` runs, called
/// with the same operand layout, so the arithmetic is candle's; going through tensors cost a
/// copy of every tile, a fresh result buffer per tile and a copy of each result).
#[allow(unsafe_code)]
fn tiled_product_into(w: &crate::matvec::BlockMatrix, x: &[f32], t: usize, out: &mut [f32]) -> candle_core::Result<()> {
    let (rows, cols) = (w.rows(), w.cols());
    if x.len() != t * cols || out.len() != t * rows {
        candle_core::bail!("matmul: {} inputs and {} outputs for {t} rows of a ({rows}, {cols}) matrix", x.len(), out.len());
    }
    if t == 0 || rows == 0 {
        return Ok(());
    }
    // A multiple of 16 rows, so the GEMM's column panels divide evenly.
    let tile_rows = ((TILE_WEIGHTS / cols.max(1)).max(16) / 16 * 16).min(rows);
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    TILE.with_borrow_mut(|tile| {
        if tile.len() < tile_rows * cols {
            tile.resize(tile_rows * cols, 0.0);
        }
        for first in (0..rows).step_by(tile_rows) {
            let n = tile_rows.min(rows - first);
            let weights = &mut tile[..n * cols];
            w.dequantize_rows(first, weights);
            let dst = &mut out[first..];
            // SAFETY: gemm reads `t × cols` floats of `x` at `i·cols + k` (checked: x.len() ==
            // t·cols), `cols × n` of the tile at `j·cols + k` (n·cols floats, the slice
            // above), and writes `t × n` floats of `dst` at `i·rows + j` with j < n ≤ rows −
            // first, the last at (t−1)·rows + n − 1 < t·rows − first = dst.len(). The three
            // slices do not overlap (`out` is borrowed mutably, `x` and the tile are other
            // buffers). With read_dst = false, `dst = 0·dst + 1·x·tileᵀ` never reads `dst`.
            // Measured (1 thread, 4 × 512 SmolLM2 tokens): prompt processing took 9.8–10.4 s
            // of CPU through tensors and 8.1–8.7 s this way.
            unsafe {
                gemm::gemm(
                    t,
                    n,
                    cols,
                    dst.as_mut_ptr(),
                    1,
                    rows as isize,
                    false,
                    x.as_ptr(),
                    1,
                    cols as isize,
                    weights.as_ptr(),
                    cols as isize,
                    1,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
    });
    Ok(())
}

impl Linear {
    fn new(weights: QTensor, format: WeightFormat) -> EngineResult<Linear> {
        if format == WeightFormat::AsStored {
            return Ok(Linear { one_row: RowProduct::Candle(QMatMul::from_qtensor(weights)?), dense: None });
        }
        if matches!(weights.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            // candle keeps these dense already.
            return Ok(Linear { one_row: RowProduct::Candle(QMatMul::from_qtensor(weights)?), dense: None });
        }
        if let Some(blocks) = crate::matvec::BlockMatrix::from_qtensor(&weights)? {
            return Ok(Linear::from_blocks(Arc::new(blocks)));
        }
        let dense = Some(weights.dequantize(&Device::Cpu)?.t()?.contiguous()?);
        Ok(Linear { one_row: RowProduct::Candle(requantize_for_speed(weights)?), dense })
    }

    fn from_blocks(blocks: Arc<crate::matvec::BlockMatrix>) -> Linear {
        Linear { one_row: RowProduct::Blocks(blocks), dense: None }
    }

    /// The block form, when decoding can run on it.
    fn blocks(&self) -> Option<&crate::matvec::BlockMatrix> {
        match &self.one_row {
            RowProduct::Blocks(b) => Some(b),
            RowProduct::Candle(_) => None,
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let rows = x.dim(0)?;
        if rows >= DENSE_MIN_ROWS {
            if let Some(w) = &self.dense {
                return x.matmul(w);
            }
            if let RowProduct::Blocks(blocks) = &self.one_row {
                return tiled_product(blocks, x);
            }
        }
        match &self.one_row {
            RowProduct::Candle(q) => q.forward(x),
            RowProduct::Blocks(blocks) => {
                let input = x.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let mut out = vec![0.0f32; rows * blocks.rows()];
                for (row, y) in input.iter().zip(out.chunks_exact_mut(blocks.rows())) {
                    if row.len() != blocks.cols() {
                        candle_core::bail!("matvec: input width {} for a matrix of width {}", row.len(), blocks.cols());
                    }
                    blocks.matvec(row, y);
                }
                Tensor::from_vec(out, (rows, blocks.rows()), &Device::Cpu)
            }
        }
    }

    /// [`Linear::forward`] on `rows` plain row-major rows: the block matvec for a few rows,
    /// else the tensor path.
    fn apply(&self, x: &[f32], rows: usize) -> EngineResult<Vec<f32>> {
        if let (RowProduct::Blocks(blocks), true) = (&self.one_row, rows < DENSE_MIN_ROWS) {
            let mut out = vec![0.0f32; rows * blocks.rows()];
            for (row, y) in x.chunks_exact(blocks.cols()).zip(out.chunks_exact_mut(blocks.rows())) {
                blocks.matvec(row, y);
            }
            return Ok(out);
        }
        let x = Tensor::from_slice(x, (rows, x.len() / rows.max(1)), &Device::Cpu)?;
        Ok(self.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// The token embedding table: the block form (shared with a tied output projection) or, for
/// [`WeightFormat::AsStored`] and types without one, candle's tensor.
enum Embedding {
    Blocks(Arc<crate::matvec::BlockMatrix>),
    Candle(QTensor),
}

impl Embedding {
    /// `(tokens, n_embd)` rows, dequantized exactly as candle's `embedding` does.
    fn rows(&self, tokens: &[u32]) -> EngineResult<Vec<f32>> {
        match self {
            Embedding::Blocks(b) => {
                let mut out = vec![0.0f32; tokens.len() * b.cols()];
                for (&id, row) in tokens.iter().zip(out.chunks_exact_mut(b.cols())) {
                    b.dequantize_rows(id as usize, row);
                }
                Ok(out)
            }
            Embedding::Candle(q) => Ok(q.embedding(&Tensor::new(tokens, &Device::Cpu)?)?.flatten_all()?.to_vec1::<f32>()?),
        }
    }
}

/// RoPE tables for every position of the context (llama only: Gemma 3's 32k context and
/// 256-wide heads would need 64 MB per table; it computes its angles per call).
struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    /// `cos`/`sin` as plain `(context, head_dim/2)` rows for the one-token path.
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
}

/// A model ready to run on the CPU: llama or Gemma 3 ([`LlamaConfig::architecture`]).
pub struct Llama {
    cfg: LlamaConfig,
    tok_embd: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    norm_values: Vec<f32>,
    output: Linear,
    rope: Option<RopeTables>,
    /// Every matrix has a [`crate::matvec::BlockMatrix`], so one-token steps can take
    /// [`Llama::forward_one`] (llama) and decode steps of many sequences
    /// [`Llama::decode_batch`]'s shared products.
    one_token_path: bool,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// Everything loaded from one GGUF file.
#[derive(Debug)]
pub struct LoadedGguf {
    /// The model weights.
    pub model: Llama,
    /// The tokenizer vocabulary.
    pub vocab: VocabSpec,
    /// `general.name`, if present.
    pub name: Option<String>,
}

pub(crate) fn corrupt(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::CorruptModel { path: path.to_path_buf(), reason: reason.to_string() }
}

struct Meta<'a> {
    content: &'a gguf_file::Content,
    path: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> EngineResult<&gguf_file::Value> {
        self.content.metadata.get(key).ok_or_else(|| corrupt(self.path, format!("metadata key `{key}` is missing")))
    }
    fn usize(&self, key: &str) -> EngineResult<usize> {
        let v = self.get(key)?;
        let n = match v {
            gguf_file::Value::U64(n) => *n,
            gguf_file::Value::I64(n) => u64::try_from(*n).map_err(|_| corrupt(self.path, format!("`{key}` is negative")))?,
            other => u64::from(other.to_u32().map_err(|e| corrupt(self.path, format!("`{key}`: {e}")))?),
        };
        usize::try_from(n).map_err(|_| corrupt(self.path, format!("`{key}` = {n} does not fit in memory")))
    }
    fn f32(&self, key: &str) -> EngineResult<f32> {
        self.get(key)?.to_f32().map_err(|e| corrupt(self.path, format!("`{key}`: {e}")))
    }
    fn string(&self, key: &str) -> EngineResult<String> {
        Ok(self.get(key)?.to_string().map_err(|e| corrupt(self.path, format!("`{key}`: {e}")))?.clone())
    }
    fn opt_u32(&self, key: &str) -> Option<u32> {
        self.content.metadata.get(key).and_then(|v| v.to_u32().ok())
    }
    fn strings(&self, key: &str) -> EngineResult<Vec<String>> {
        let arr = self.get(key)?.to_vec().map_err(|e| corrupt(self.path, format!("`{key}`: {e}")))?;
        arr.iter()
            .map(|v| v.to_string().cloned().map_err(|e| corrupt(self.path, format!("`{key}`: {e}"))))
            .collect()
    }
    fn ints(&self, key: &str) -> EngineResult<Vec<i32>> {
        let Some(v) = self.content.metadata.get(key) else { return Ok(Vec::new()) };
        let arr = v.to_vec().map_err(|e| corrupt(self.path, format!("`{key}`: {e}")))?;
        arr.iter().map(|v| v.to_i32().map_err(|e| corrupt(self.path, format!("`{key}`: {e}")))).collect()
    }
}

/// How matrix weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Exactly as stored in the file.
    AsStored,
    /// Each matrix as 32-weight blocks ([`crate::matvec::BlockMatrix`], 0.75–1.25 bytes per
    /// weight), multiplied exactly (f32 activations) one row at a time for decoding and as
    /// tiled f32 GEMMs on per-product dequantized tiles for prompts and scoring (see
    /// `Linear`); the embedding table is shared with a tied output projection. Results differ from [`WeightFormat::AsStored`] only because candle
    /// quantizes activations to 8 bits there and we do not (bounded by
    /// `tests/reference_forward.rs`).
    #[default]
    Fast,
}

/// candle multiplies some block types with scalar code (Q4_1, Q5_0, Q5_1, Q8_1: 10–20×
/// slower than its SIMD kernels); such weights are requantised once to Q8_0, which keeps 256
/// levels per 32-weight block where those types have at most 32.
fn requantize_for_speed(weights: QTensor) -> EngineResult<QMatMul> {
    if matches!(weights.dtype(), GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1) {
        let dense = weights.dequantize(&Device::Cpu)?;
        return Ok(QMatMul::from_qtensor(QTensor::quantize(&dense, GgmlDType::Q8_0)?)?);
    }
    Ok(QMatMul::from_qtensor(weights)?)
}

/// Opens and parses a GGUF file: weights, config and tokenizer vocabulary, with the weights
/// in [`WeightFormat::Fast`].
pub fn load_gguf(path: &Path) -> EngineResult<LoadedGguf> {
    load_gguf_as(path, WeightFormat::Fast)
}

/// Opens a GGUF file and checks what every load needs: a known architecture and every tensor
/// inside the file.
pub(crate) fn open_gguf(path: &Path) -> EngineResult<(std::fs::File, gguf_file::Content, Architecture)> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    let content = gguf_file::Content::read(&mut file).map_err(|e| corrupt(path, e))?;
    let meta = Meta { content: &content, path };
    let name = meta.string("general.architecture")?;
    let Some(arch) = Architecture::from_gguf_name(&name) else {
        return Err(EngineError::UnsupportedArchitecture { path: path.to_path_buf(), architecture: name });
    };
    // Every tensor must lie inside the file: a truncated download fails here, not mid-read.
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count();
        let bytes = (elems / info.ggml_dtype.block_size().max(1)) as u64 * info.ggml_dtype.type_size() as u64;
        let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
        if end > file_len {
            return Err(corrupt(path, format!("tensor `{name}` ends at byte {end} but the file has {file_len} (truncated?)")));
        }
    }
    Ok((file, content, arch))
}

/// The hyper-parameters under `<architecture>.*`.
fn read_config(meta: &Meta<'_>, arch: Architecture, vocab_size: usize) -> EngineResult<LlamaConfig> {
    let key = |k: &str| format!("{}.{k}", arch.gguf_name());
    let has = |k: &str| meta.content.metadata.contains_key(&key(k));
    let n_embd = meta.usize(&key("embedding_length"))?;
    let n_head = meta.usize(&key("attention.head_count"))?;
    let n_kv_head = if has("attention.head_count_kv") { meta.usize(&key("attention.head_count_kv"))? } else { n_head };
    let head_size = if has("attention.key_length") { meta.usize(&key("attention.key_length"))? } else { n_embd.checked_div(n_head).unwrap_or(0) };
    if has("attention.value_length") && meta.usize(&key("attention.value_length"))? != head_size {
        return Err(EngineError::Unsupported(format!("{}: value heads of another size than key heads", meta.path.display())));
    }
    let default_base = match arch {
        Architecture::Llama => 10_000.0,
        Architecture::Gemma3 => 1_000_000.0,
    };
    let (sliding_window, sliding_window_pattern) = match arch {
        Architecture::Llama => (None, 0),
        Architecture::Gemma3 => {
            let window = if has("attention.sliding_window") { meta.usize(&key("attention.sliding_window"))? } else { 0 };
            let pattern = if has("attention.sliding_window_pattern") { meta.usize(&key("attention.sliding_window_pattern"))? } else { 6 };
            ((window > 0).then_some(window), pattern)
        }
    };
    let rope_base_local = if has("rope.freq_base_swa") { meta.f32(&key("rope.freq_base_swa"))? } else { 10_000.0 };
    // Gemma 3 (below 27B) scales queries by 1/√key_length (`query_pre_attn_scalar`); llama by
    // 1/√head_dim, the same number there.
    let attention_scale = 1.0 / (head_size.max(1) as f32).sqrt();
    Ok(LlamaConfig {
        architecture: arch,
        n_layer: meta.usize(&key("block_count"))?,
        n_embd,
        n_head,
        n_kv_head,
        n_ff: meta.usize(&key("feed_forward_length"))?,
        rope_base: if has("rope.freq_base") { meta.f32(&key("rope.freq_base"))? } else { default_base },
        rms_eps: f64::from(meta.f32(&key("attention.layer_norm_rms_epsilon"))?),
        context_length: meta.usize(&key("context_length"))?,
        vocab_size,
        head_size,
        sliding_window,
        sliding_window_pattern,
        rope_base_local,
        attention_scale,
    })
}

/// Loads only the weights of a GGUF (no tokenizer), in `format`: for callers that bring their
/// own token ids. The vocabulary size is the embedding table's row count.
pub fn load_model_as(path: &Path, format: WeightFormat) -> EngineResult<Llama> {
    let (mut file, content, arch) = open_gguf(path)?;
    let meta = Meta { content: &content, path };
    let Some(embd) = content.tensor_infos.get("token_embd.weight") else {
        return Err(corrupt(path, "tensor `token_embd.weight` is missing"));
    };
    // candle's shape is row-major: (vocab, n_embd).
    let vocab_size = embd.shape.dims().first().copied().unwrap_or(0);
    let cfg = read_config(&meta, arch, vocab_size)?;
    validate_config(&cfg, path)?;
    Llama::from_gguf(cfg, &content, &mut file, path, format)
}

/// [`load_gguf`] with a choice of in-memory weight format.
pub fn load_gguf_as(path: &Path, format: WeightFormat) -> EngineResult<LoadedGguf> {
    let (mut file, content, arch) = open_gguf(path)?;
    let meta = Meta { content: &content, path };
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let cfg = read_config(&meta, arch, tokens.len())?;
    validate_config(&cfg, path)?;
    // The tokenizer as llama.cpp's llama-vocab.cpp reads it; `Tokenizer::from_spec` checks it.
    let vocab = VocabSpec {
        token_types: meta.ints("tokenizer.ggml.token_type")?,
        bos: meta.opt_u32("tokenizer.ggml.bos_token_id"),
        eos: meta.opt_u32("tokenizer.ggml.eos_token_id"),
        ..VocabSpec::from_gguf_metadata(&content.metadata, tokens, arch.gguf_name(), path)?
    };
    let name = meta.content.metadata.get("general.name").and_then(|v| v.to_string().ok().cloned());
    let model = Llama::from_gguf(cfg, &content, &mut file, path, format)?;
    Ok(LoadedGguf { model, vocab, name })
}

pub(crate) fn validate_config(cfg: &LlamaConfig, path: &Path) -> EngineResult<()> {
    let bad = |what: String| Err(corrupt(path, what));
    if cfg.n_layer == 0 || cfg.vocab_size == 0 || cfg.n_embd == 0 || cfg.n_head == 0 || cfg.n_kv_head == 0 || cfg.n_ff == 0 {
        return bad(format!("zero-sized hyper-parameter in {cfg:?}"));
    }
    let llama_heads = cfg.architecture != Architecture::Llama || cfg.n_embd == cfg.n_head * cfg.head_size;
    if !llama_heads || cfg.head_size == 0 || !cfg.n_head.is_multiple_of(cfg.n_kv_head) || !cfg.head_dim().is_multiple_of(2) {
        return bad(format!("inconsistent head layout in {cfg:?}"));
    }
    if cfg.context_length == 0 || cfg.context_length > 1 << 20 {
        return bad(format!("context length {} out of range", cfg.context_length));
    }
    Ok(())
}

/// The embedding table's block form, converted a few thousand rows at a time straight from
/// the file, or `None` for types without one. Reading it whole first (candle's
/// `Content::tensor`) held the file's copy and the converted one at once: Gemma 3's table is
/// 178 MB, which made loading peak ~180 MB above the model's resident size.
fn embedding_blocks<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    path: &Path,
    rows: usize,
    cols: usize,
) -> EngineResult<Option<crate::matvec::BlockMatrix>> {
    const ROWS_PER_READ: usize = 4096; // a multiple of 8, as `BlockMatrix::append` needs
    let name = "token_embd.weight";
    let Some(info) = content.tensor_infos.get(name) else {
        return Err(corrupt(path, format!("tensor `{name}` is missing")));
    };
    if info.shape.dims() != [rows, cols] {
        return Err(corrupt(path, format!("tensor `{name}` has shape {:?}, expected {:?}", info.shape.dims(), [rows, cols])));
    }
    let Some(row_bytes) = crate::matvec::BlockMatrix::row_bytes(info.ggml_dtype, cols) else {
        return Ok(None);
    };
    let start = content.tensor_data_offset.saturating_add(info.offset);
    reader.seek(std::io::SeekFrom::Start(start)).map_err(|e| EngineError::io(path, e))?;
    let mut buf = vec![0u8; ROWS_PER_READ * row_bytes];
    let mut matrix: Option<crate::matvec::BlockMatrix> = None;
    for first in (0..rows).step_by(ROWS_PER_READ) {
        let n = ROWS_PER_READ.min(rows - first);
        reader.read_exact(&mut buf[..n * row_bytes]).map_err(|e| EngineError::io(path, e))?;
        let Some(part) = crate::matvec::BlockMatrix::from_bytes(info.ggml_dtype, n, cols, &buf[..n * row_bytes])? else {
            return Ok(None);
        };
        match &mut matrix {
            Some(m) => m.append(part)?,
            None => matrix = Some(part),
        }
    }
    Ok(matrix)
}

/// Where [`Llama::build`] reads each weight, named as GGUF names it (`blk.3.attn_q.weight`):
/// a GGUF file, or a Hugging Face safetensors directory ([`crate::hf_model`]).
pub(crate) trait WeightSource {
    /// The weight `name`, which must have shape `want` (row-major, candle's order).
    fn tensor(&mut self, name: &str, want: &[usize]) -> EngineResult<QTensor>;
    /// Whether the model has the weight `name` (the output projection is optional: tied).
    fn has(&self, name: &str) -> bool;
}

struct GgufSource<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
    path: &'a Path,
}

impl<R: Read + Seek> WeightSource for GgufSource<'_, R> {
    fn tensor(&mut self, name: &str, want: &[usize]) -> EngineResult<QTensor> {
        let t = self.content.tensor(self.reader, name, &Device::Cpu).map_err(|e| corrupt(self.path, format!("tensor `{name}`: {e}")))?;
        if t.shape().dims() != want {
            return Err(corrupt(self.path, format!("tensor `{name}` has shape {:?}, expected {want:?}", t.shape().dims())));
        }
        Ok(t)
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}

impl Llama {
    fn from_gguf<R: Read + Seek>(
        cfg: LlamaConfig,
        content: &gguf_file::Content,
        reader: &mut R,
        path: &Path,
        format: WeightFormat,
    ) -> EngineResult<Self> {
        let streamed = match format {
            WeightFormat::Fast => embedding_blocks(content, reader, path, cfg.vocab_size, cfg.n_embd)?,
            WeightFormat::AsStored => None,
        };
        Llama::build(cfg, &mut GgufSource { content, reader, path }, streamed, format)
    }

    /// The model from `source`'s weights; `streamed` is the embedding table's block form when
    /// the caller has already converted it.
    pub(crate) fn build(
        cfg: LlamaConfig,
        source: &mut dyn WeightSource,
        streamed: Option<crate::matvec::BlockMatrix>,
        format: WeightFormat,
    ) -> EngineResult<Self> {
        let dev = Device::Cpu;
        let has_output = source.has("output.weight");
        let mut qtensor = |name: &str, want: &[usize]| -> EngineResult<QTensor> { source.tensor(name, want) };
        let (e, f, hd) = (cfg.n_embd, cfg.n_ff, cfg.head_dim());
        let (q_width, kv) = (cfg.n_head * hd, cfg.n_kv_head * hd);
        // One block form of the embedding table serves both the lookup and, when the output
        // projection is tied to it (SmolLM2, Gemma 3), the logits: one copy in memory, and the
        // file's copy is dropped as soon as it is converted.
        let tok_embd = match streamed {
            Some(blocks) => Embedding::Blocks(Arc::new(blocks)),
            None => Embedding::Candle(qtensor("token_embd.weight", &[cfg.vocab_size, e])?),
        };
        let output = match (&tok_embd, has_output) {
            (_, true) => Linear::new(qtensor("output.weight", &[cfg.vocab_size, e])?, format)?,
            (Embedding::Blocks(blocks), false) => Linear::from_blocks(Arc::clone(blocks)),
            (Embedding::Candle(_), false) => Linear::new(qtensor("token_embd.weight", &[cfg.vocab_size, e])?, format)?,
        };
        let norm = qtensor("output_norm.weight", &[e])?.dequantize(&dev)?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let mut mm = |n: &str, shape: &[usize]| -> EngineResult<Linear> {
                Linear::new(qtensor(&format!("{p}.{n}.weight"), shape)?, format)
            };
            let wq = mm("attn_q", &[q_width, e])?;
            let wk = mm("attn_k", &[kv, e])?;
            let wv = mm("attn_v", &[kv, e])?;
            let wo = mm("attn_output", &[e, q_width])?;
            let w_gate = mm("ffn_gate", &[f, e])?;
            let w_up = mm("ffn_up", &[f, e])?;
            let w_down = mm("ffn_down", &[e, f])?;
            let mut norm_of = |n: &str, len: usize| -> EngineResult<Tensor> { Ok(qtensor(&format!("{p}.{n}.weight"), &[len])?.dequantize(&dev)?) };
            let attn_norm = norm_of("attn_norm", e)?;
            let ffn_norm = norm_of("ffn_norm", e)?;
            let gemma = match cfg.architecture {
                Architecture::Llama => None,
                Architecture::Gemma3 => Some(GemmaNorms {
                    q_norm: norm_of("attn_q_norm", hd)?.to_vec1::<f32>()?,
                    k_norm: norm_of("attn_k_norm", hd)?.to_vec1::<f32>()?,
                    post_attention: norm_of("post_attention_norm", e)?.to_vec1::<f32>()?,
                    post_ffw: norm_of("post_ffw_norm", e)?.to_vec1::<f32>()?,
                }),
            };
            let (attn_norm_values, ffn_norm_values) = (attn_norm.to_vec1::<f32>()?, ffn_norm.to_vec1::<f32>()?);
            blocks.push(Block { gemma, attn_norm, attn_norm_values, wq, wk, wv, wo, ffn_norm, ffn_norm_values, w_gate, w_up, w_down });
        }
        let rope = match cfg.architecture {
            Architecture::Llama => {
                let (cos, sin) = rope_tables(&cfg)?;
                let (cos_values, sin_values) = (cos.flatten_all()?.to_vec1::<f32>()?, sin.flatten_all()?.to_vec1::<f32>()?);
                Some(RopeTables { cos, sin, cos_values, sin_values })
            }
            Architecture::Gemma3 => None,
        };
        let norm_values = norm.to_vec1::<f32>()?;
        let one_token_path = output.blocks().is_some()
            && blocks.iter().all(|b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down].iter().all(|l| l.blocks().is_some()));
        Ok(Self { cfg, tok_embd, blocks, norm, norm_values, output, rope, one_token_path })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.n_layer)
    }

    /// Runs `tokens` after whatever `cache` holds, appends them to the cache and returns
    /// logits as an `f32` tensor of shape `(1, vocab)` or `(tokens.len(), vocab)`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> EngineResult<Tensor> {
        self.check_input(tokens, cache)?;
        let pos = cache.len();
        let result = if self.cfg.architecture == Architecture::Llama && tokens.len() == 1 && self.one_token_path {
            in_pool(|| self.forward_one(tokens[0], cache)).and_then(|row| Ok(Tensor::from_vec(row, (1, self.cfg.vocab_size), &Device::Cpu)?))
        } else {
            self.final_hidden(tokens, cache, logits).and_then(|h| Ok(self.output.forward(&h)?))
        };
        if result.is_err() {
            self.rollback(cache, pos);
        }
        result
    }

    /// [`Llama::forward`] with [`Logits::All`], the logits handed to `each` as
    /// `(first position, (rows, vocab) tensor)` chunks of [`logit_chunk_rows`] to
    /// `logit_chunk_rows + DENSE_MIN_ROWS` rows, so all positions' logits never exist at once
    /// (scoring 320 positions over Gemma 3's 262,144-token vocabulary is 335 MB per copy).
    /// Every row is computed exactly as `forward` computes it: the products' row path only
    /// depends on whether there are at least `DENSE_MIN_ROWS` rows, which no chunk changes.
    pub fn forward_chunked(&self, tokens: &[u32], cache: &mut KvCache, mut each: impl FnMut(usize, &Tensor) -> EngineResult<()>) -> EngineResult<()> {
        if tokens.len() < DENSE_MIN_ROWS {
            let logits = self.forward(tokens, cache, Logits::All)?;
            return each(0, &logits);
        }
        self.check_input(tokens, cache)?;
        let pos = cache.len();
        let hidden = match self.final_hidden(tokens, cache, Logits::All) {
            Ok(h) => h,
            Err(err) => {
                self.rollback(cache, pos);
                return Err(err);
            }
        };
        let t = tokens.len();
        let chunk = logit_chunk_rows(self.cfg.vocab_size);
        let mut first = 0;
        while first < t {
            let mut rows = chunk.min(t - first);
            if t - first - rows < DENSE_MIN_ROWS {
                rows = t - first;
            }
            each(first, &self.output.forward(&hidden.narrow(0, first, rows)?)?)?;
            first += rows;
        }
        Ok(())
    }

    /// Whether [`Llama::forward_packed`] runs on this model (llama; Gemma 3 runs its
    /// sequences one pass each).
    pub fn packs(&self) -> bool {
        self.cfg.architecture == Architecture::Llama && self.rope.is_some()
    }

    /// Runs several independent sequences, each after the same `prefix` cache (left as it
    /// was), in one pass: the matrix products take every sequence's rows at once (one
    /// dequantized tile of each weight matrix serves them all; with 65-token chat samples
    /// one pass each, `bench evaluation` scored 79.1 response tokens/s, packed 278.5, the
    /// response-only logits included), and attention runs per
    /// sequence over the prefix's keys and its own, at its own positions `prefix.len()…`,
    /// so each row is the one [`Llama::forward`] computes for that sequence alone, up to
    /// float rounding (a test holds them together). Logits are computed only for the rows
    /// `seqs[i].logits_from..` of each sequence, handed to `each` as `(first, (rows, vocab))`
    /// chunks where `first` counts wanted rows over all sequences in order.
    pub fn forward_packed(&self, prefix: &KvCache, seqs: &[Packed<'_>], mut each: impl FnMut(usize, &Tensor) -> EngineResult<()>) -> EngineResult<()> {
        if !self.packs() {
            return Err(EngineError::Unsupported(format!("packed passes of a {} model", self.cfg.architecture.gguf_name())));
        }
        let rope = self.rope()?;
        let p = prefix.len();
        let (mut tokens, mut positions, mut wanted, mut bounds) = (Vec::new(), Vec::new(), Vec::new(), Vec::with_capacity(seqs.len()));
        for seq in seqs {
            if seq.tokens.is_empty() {
                continue;
            }
            self.check_input(seq.tokens, prefix)?;
            let start = tokens.len();
            tokens.extend_from_slice(seq.tokens);
            positions.extend((0..seq.tokens.len()).map(|i| (p + i) as u32));
            wanted.extend((start + seq.logits_from.min(seq.tokens.len()))..tokens.len());
            bounds.push((start, seq.tokens.len()));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let (t, dev, eps) = (tokens.len(), Device::Cpu, self.cfg.rms_eps as f32);
        let at = Tensor::from_vec(positions, t, &dev)?;
        let (cos, sin) = (rope.cos.index_select(&at, 0)?, rope.sin.index_select(&at, 0)?);
        let mut x = Tensor::from_vec(self.tok_embd.rows(&tokens)?, (t, self.cfg.n_embd), &dev)?;
        for (block, layer) in self.blocks.iter().zip(prefix.layers()) {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, eps)?;
            let attn = self.packed_attention(block, &h, &cos, &sin, &bounds, layer, p)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, eps)?;
            let gate = candle_nn::ops::silu(&block.w_gate.forward(&h)?)?;
            let up = block.w_up.forward(&h)?;
            x = (x + block.w_down.forward(&(gate * up)?)?)?;
        }
        let n = wanted.len();
        let rows = Tensor::from_vec(wanted.iter().map(|&r| r as u32).collect::<Vec<u32>>(), n, &dev)?;
        let hidden = candle_nn::ops::rms_norm(&x.index_select(&rows, 0)?, &self.norm, eps)?;
        let chunk = logit_chunk_rows(self.cfg.vocab_size);
        let mut first = 0;
        while first < n {
            let rows = chunk.min(n - first);
            each(first, &self.output.forward(&hidden.narrow(0, first, rows)?)?)?;
            first += rows;
        }
        Ok(())
    }

    /// [`Llama::attention`] for the packed sequences `bounds` (`(first row, rows)`), each
    /// attending to the prefix's `p` cached positions and its own rows causally.
    #[allow(clippy::too_many_arguments)]
    fn packed_attention(
        &self,
        block: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        bounds: &[(usize, usize)],
        layer: &LayerKv,
        p: usize,
    ) -> EngineResult<Tensor> {
        let (t, _) = x.dims2()?;
        let (nh, nkv, hd) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.head_dim());
        let q = block.wq.forward(x)?.reshape((1, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = block.wk.forward(x)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = block.wv.forward(x)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let cached = |rows: &[f32]| -> candle_core::Result<Tensor> {
            Tensor::from_slice(&rows[..p * nkv * hd], (p, nkv, hd), &Device::Cpu)?.transpose(0, 1)?.contiguous()?.unsqueeze(0)
        };
        let prefix = if p > 0 { Some((cached(layer.keys())?, cached(layer.values())?)) } else { None };
        let (rep, scale) = (nh / nkv, 1.0 / (hd as f64).sqrt());
        let mut ys = Vec::with_capacity(bounds.len());
        for &(start, len) in bounds {
            let qs = q.narrow(2, start, len)?.contiguous()?;
            let (ks, vs) = (k.narrow(2, start, len)?, v.narrow(2, start, len)?);
            let (ks, vs) = match &prefix {
                Some((pk, pv)) => (Tensor::cat(&[pk, &ks], 2)?, Tensor::cat(&[pv, &vs], 2)?),
                None => (ks.contiguous()?, vs.contiguous()?),
            };
            ys.push(causal_attention(&qs, &repeat_kv(&ks, rep)?, &repeat_kv(&vs, rep)?, p, scale)?);
        }
        let y = Tensor::cat(&ys, 2)?.transpose(1, 2)?.reshape((t, nh * hd))?;
        Ok(block.wo.forward(&y)?)
    }

    /// One decode step of several sequences: `tokens[i]` runs after whatever `caches[i]`
    /// holds and is appended to it; returns each sequence's logits row. Every row is
    /// bit-identical to `forward(&[tokens[i]], caches[i], Logits::Last)` alone: the matrix
    /// products read each weight block once for all sequences ([`BlockMatrix::matmul`], the
    /// same operations per sequence as the one-row product) and everything else (norms, RoPE
    /// at each sequence's own position, attention over its own cache) runs per sequence as
    /// the one-token path runs it. Continuous batching in the server is built on this.
    ///
    /// On error every cache is left as it was.
    ///
    /// [`BlockMatrix::matmul`]: crate::matvec::BlockMatrix::matmul
    pub fn decode_batch(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> EngineResult<Vec<Vec<f32>>> {
        if tokens.len() != caches.len() {
            return Err(EngineError::InvalidInput(format!("{} tokens for {} caches", tokens.len(), caches.len())));
        }
        for (&token, cache) in tokens.iter().zip(caches.iter()) {
            self.check_input(&[token], cache)?;
        }
        if !self.one_token_path || tokens.len() == 1 {
            // No shared products to make (or no block form to make them with): one at a time.
            let mut rows = Vec::with_capacity(tokens.len());
            for (i, (&token, cache)) in tokens.iter().zip(caches.iter_mut()).enumerate() {
                match self.forward(&[token], cache, Logits::Last).and_then(|t| Ok(t.get(0)?.to_vec1::<f32>()?)) {
                    Ok(row) => rows.push(row),
                    Err(err) => {
                        for cache in caches[..i].iter_mut() {
                            let len = cache.len() - 1;
                            self.rollback(cache, len);
                        }
                        return Err(err);
                    }
                }
            }
            return Ok(rows);
        }
        let positions: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        let result = in_pool(|| self.decode_batch_blocks(tokens, caches, &positions));
        if result.is_err() {
            for (cache, &pos) in caches.iter_mut().zip(&positions) {
                self.rollback(cache, pos);
            }
        }
        result
    }

    fn decode_batch_blocks(&self, tokens: &[u32], caches: &mut [&mut KvCache], positions: &[usize]) -> EngineResult<Vec<Vec<f32>>> {
        let cfg = &self.cfg;
        let n = tokens.len();
        let (e, nh, nkv, hd) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim());
        let (q_width, kv_width) = (nh * hd, nkv * hd);
        let eps = cfg.rms_eps as f32;
        let gemma = cfg.architecture == Architecture::Gemma3;
        let mut x = self.tok_embd.rows(tokens)?;
        if gemma {
            let embed_scale = (e as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= embed_scale);
        }
        let half = hd / 2;
        // Each sequence's RoPE angles at its own position: llama's from the tables, Gemma's
        // global and sliding-window ones computed as its forward computes them.
        let angles: Vec<[(Vec<f32>, Vec<f32>); 2]> = match &self.rope {
            Some(rope) if !gemma => positions
                .iter()
                .map(|&p| {
                    let table = (rope.cos_values[p * half..(p + 1) * half].to_vec(), rope.sin_values[p * half..(p + 1) * half].to_vec());
                    [table.clone(), table]
                })
                .collect(),
            _ => positions.iter().map(|&p| [rope_angles(cfg.rope_base, hd, p, 1), rope_angles(cfg.rope_base_local, hd, p, 1)]).collect(),
        };
        let mut h = vec![0.0f32; n * e];
        let (mut q, mut k, mut v) = (vec![0.0f32; n * q_width], vec![0.0f32; n * kv_width], vec![0.0f32; n * kv_width]);
        let (mut att, mut delta) = (vec![0.0f32; n * q_width], vec![0.0f32; n * e]);
        let (mut gate, mut up) = (vec![0.0f32; n * cfg.n_ff], vec![0.0f32; n * cfg.n_ff]);
        let mut scores = vec![0.0f32; positions.iter().max().map_or(1, |p| p + 1)];
        let scale = if gemma { cfg.attention_scale } else { 1.0 / (hd as f32).sqrt() };
        let heads = crate::kernels::Heads { heads: nh, kv_heads: nkv, head_dim: hd, scale };
        for (il, block) in self.blocks.iter().enumerate() {
            let is_local = gemma && cfg.is_local_layer(il);
            rms_norm_rows(&x, &block.attn_norm_values, eps, &mut h);
            matrix(&block.wq)?.matmul(&h, n, &mut q);
            matrix(&block.wk)?.matmul(&h, n, &mut k);
            matrix(&block.wv)?.matmul(&h, n, &mut v);
            for (i, cache) in caches.iter_mut().enumerate() {
                let (qi, ki, vi) = (&mut q[i * q_width..(i + 1) * q_width], &mut k[i * kv_width..(i + 1) * kv_width], &v[i * kv_width..(i + 1) * kv_width]);
                let (cos, sin) = &angles[i][usize::from(is_local)];
                match &block.gemma {
                    Some(norms) if gemma => {
                        norm_and_rope(qi, nh, hd, &norms.q_norm, eps, cos, sin);
                        norm_and_rope(ki, nkv, hd, &norms.k_norm, eps, cos, sin);
                    }
                    _ if gemma => return Err(EngineError::Unsupported("gemma3 layer without its norms".into())),
                    _ => {
                        rope_interleaved(qi, hd, cos, sin);
                        rope_interleaved(ki, hd, cos, sin);
                    }
                }
                let layer = &mut cache.layers_mut()[il];
                layer.append(ki, vi);
                let end = positions[i] + 1;
                let start = match (is_local, cfg.sliding_window) {
                    (true, Some(w)) => end.saturating_sub(w),
                    _ => 0,
                };
                crate::kernels::attend_one(
                    qi,
                    &layer.keys()[start * kv_width..end * kv_width],
                    &layer.values()[start * kv_width..end * kv_width],
                    heads,
                    &mut scores,
                    &mut att[i * q_width..(i + 1) * q_width],
                );
            }
            matrix(&block.wo)?.matmul(&att, n, &mut delta);
            match &block.gemma {
                Some(norms) if gemma => add_normed_rows(&mut x, &mut delta, &norms.post_attention, eps),
                _ => x.iter_mut().zip(&delta).for_each(|(x, d)| *x += d),
            }
            rms_norm_rows(&x, &block.ffn_norm_values, eps, &mut h);
            matrix(&block.w_gate)?.matmul(&h, n, &mut gate);
            matrix(&block.w_up)?.matmul(&h, n, &mut up);
            if gemma {
                gate.iter_mut().zip(&up).for_each(|(g, u)| *g = gelu_tanh(*g) * u);
            } else {
                gate.iter_mut().zip(&up).for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            }
            matrix(&block.w_down)?.matmul(&gate, n, &mut delta);
            match &block.gemma {
                Some(norms) if gemma => add_normed_rows(&mut x, &mut delta, &norms.post_ffw, eps),
                _ => x.iter_mut().zip(&delta).for_each(|(x, d)| *x += d),
            }
        }
        for (cache, &pos) in caches.iter_mut().zip(positions) {
            cache.set_len(pos + 1);
        }
        rms_norm_rows(&x, &self.norm_values, eps, &mut h);
        let vocab = cfg.vocab_size;
        let mut logits = vec![0.0f32; n * vocab];
        matrix(&self.output)?.matmul(&h, n, &mut logits);
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    fn check_input(&self, tokens: &[u32], cache: &KvCache) -> EngineResult<()> {
        let t = tokens.len();
        if t == 0 {
            return Err(EngineError::InvalidInput("forward called with no tokens".into()));
        }
        let pos = cache.len();
        if pos + t > self.cfg.context_length {
            return Err(EngineError::ContextOverflow { limit: self.cfg.context_length, requested: pos + t, prompt: pos + t });
        }
        if let Some(bad) = tokens.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(EngineError::InvalidInput(format!("token id {bad} is outside the vocabulary of {}", self.cfg.vocab_size)));
        }
        Ok(())
    }

    /// Keeps the cache consistent after a failed pass: drops whatever it appended.
    fn rollback(&self, cache: &mut KvCache, pos: usize) {
        cache.truncate(pos, self.cfg.n_kv_head * self.cfg.head_dim());
    }

    /// The final-norm hidden states of the rows `logits` asks for, `(rows, n_embd)`: what the
    /// output projection multiplies.
    fn final_hidden(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> EngineResult<Tensor> {
        match self.cfg.architecture {
            Architecture::Gemma3 => self.forward_gemma(tokens, cache, logits),
            Architecture::Llama => self.forward_rows(tokens, cache, logits),
        }
    }

    /// The general forward over candle tensors: prompts, scoring, and one-token steps when
    /// some matrix lacks a block form.
    fn forward_rows(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> EngineResult<Tensor> {
        let (t, pos) = (tokens.len(), cache.len());
        let x = self.residual_rows(tokens, cache, self.blocks.len())?;
        cache.set_len(pos + t);
        let x = match logits {
            Logits::Last => x.narrow(0, t - 1, 1)?,
            Logits::All => x,
        };
        Ok(candle_nn::ops::rms_norm(&x, &self.norm, self.cfg.rms_eps as f32)?)
    }

    /// The residual stream entering block `layer` (`layer == n_layer`: the input of the final
    /// norm), `(tokens, n_embd)` f32, for every position of `tokens` run from an empty
    /// context, computed exactly as [`Llama::forward`] computes it (llama only). For training
    /// the last blocks on activations of the frozen ones computed once.
    pub fn residual_stream(&self, tokens: &[u32], layer: usize) -> EngineResult<Tensor> {
        if self.cfg.architecture != Architecture::Llama {
            return Err(EngineError::Unsupported(format!("the residual stream of a {} model", self.cfg.architecture.gguf_name())));
        }
        if layer > self.cfg.n_layer {
            return Err(EngineError::InvalidInput(format!("layer {layer} of a {}-layer model", self.cfg.n_layer)));
        }
        let mut cache = self.new_cache();
        self.check_input(tokens, &cache)?;
        self.residual_rows(tokens, &mut cache, layer)
    }

    /// Runs blocks `0..upto` over `tokens` after `cache` (appending their keys and values,
    /// but not moving the cache's length) and returns the residual stream after them.
    fn residual_rows(&self, tokens: &[u32], cache: &mut KvCache, upto: usize) -> EngineResult<Tensor> {
        let (t, pos) = (tokens.len(), cache.len());
        let rope = self.rope()?;
        let mut x = Tensor::from_vec(self.tok_embd.rows(tokens)?, (t, self.cfg.n_embd), &Device::Cpu)?;
        let cos = rope.cos.narrow(0, pos, t)?;
        let sin = rope.sin.narrow(0, pos, t)?;
        // One token attends to everything cached; more need the causal mask.
        let causal = t > 1;
        for (block, layer) in self.blocks.iter().zip(cache.layers_mut()).take(upto) {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, self.cfg.rms_eps as f32)?;
            let attn = self.attention(block, &h, &cos, &sin, causal, layer)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, self.cfg.rms_eps as f32)?;
            let gate = candle_nn::ops::silu(&block.w_gate.forward(&h)?)?;
            let up = block.w_up.forward(&h)?;
            x = (x + block.w_down.forward(&(gate * up)?)?)?;
        }
        Ok(x)
    }

    /// One token after `cache`, on plain slices: the decode step.
    ///
    /// Same arithmetic as [`Llama::forward_rows`] (RMS norm, interleaved RoPE, softmax
    /// attention, SiLU-gated FFN) but with no tensor allocated per operation, the block
    /// matvecs of [`crate::matvec`] and the one-query attention of
    /// [`crate::kernels::attend_one`] reading the cache in place. A perf profile of the
    /// tensor version had ~30% of decode time outside the matvecs (gemm packing for 1×64
    /// products, strided copies, the per-step `Tensor::cat` of the cache).
    fn forward_one(&self, token: u32, cache: &mut KvCache) -> EngineResult<Vec<f32>> {
        let cfg = &self.cfg;
        let (e, nh, nkv, hd) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim());
        let eps = cfg.rms_eps as f32;
        let pos = cache.len();
        let rope = self.rope()?;
        let mut x = self.tok_embd.rows(&[token])?;
        let mut h = vec![0.0f32; e];
        let (mut q, mut k, mut v) = (vec![0.0f32; nh * hd], vec![0.0f32; nkv * hd], vec![0.0f32; nkv * hd]);
        let (mut att, mut delta) = (vec![0.0f32; nh * hd], vec![0.0f32; e]);
        let (mut gate, mut up) = (vec![0.0f32; cfg.n_ff], vec![0.0f32; cfg.n_ff]);
        let mut scores = vec![0.0f32; pos + 1];
        let half = hd / 2;
        let (cos, sin) = (&rope.cos_values[pos * half..(pos + 1) * half], &rope.sin_values[pos * half..(pos + 1) * half]);
        let heads = crate::kernels::Heads { heads: nh, kv_heads: nkv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt() };
        for (block, layer) in self.blocks.iter().zip(cache.layers_mut()) {
            rms_norm_into(&x, &block.attn_norm_values, eps, &mut h);
            matrix(&block.wq)?.matvec(&h, &mut q);
            matrix(&block.wk)?.matvec(&h, &mut k);
            matrix(&block.wv)?.matvec(&h, &mut v);
            rope_interleaved(&mut q, hd, cos, sin);
            rope_interleaved(&mut k, hd, cos, sin);
            layer.append(&k, &v);
            crate::kernels::attend_one(&q, layer.keys(), layer.values(), heads, &mut scores, &mut att);
            matrix(&block.wo)?.matvec(&att, &mut delta);
            x.iter_mut().zip(&delta).for_each(|(x, d)| *x += d);
            rms_norm_into(&x, &block.ffn_norm_values, eps, &mut h);
            matrix(&block.w_gate)?.matvec(&h, &mut gate);
            matrix(&block.w_up)?.matvec(&h, &mut up);
            gate.iter_mut().zip(&up).for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            matrix(&block.w_down)?.matvec(&gate, &mut delta);
            x.iter_mut().zip(&delta).for_each(|(x, d)| *x += d);
        }
        cache.set_len(pos + 1);
        rms_norm_into(&x, &self.norm_values, eps, &mut h);
        let mut logits = vec![0.0f32; cfg.vocab_size];
        matrix(&self.output)?.matvec(&h, &mut logits);
        Ok(logits)
    }

    fn rope(&self) -> EngineResult<&RopeTables> {
        self.rope.as_ref().ok_or_else(|| EngineError::Unsupported("llama forward on a model without RoPE tables".into()))
    }

    /// Gemma 3, after llama.cpp's `llm_build_gemma3` (src/models/gemma3.cpp), for any number
    /// of tokens: embeddings scaled by √n_embd; per layer, RMS norm → Q/K/V; RMS norm of each
    /// Q and K head (`attn_q_norm`/`attn_k_norm`); NeoX-style RoPE (rotating dimension `i`
    /// with `i + head/2`; the GGUF conversion does not permute Gemma's Q/K as it does
    /// llama's) with base 10 000 on sliding-window layers and `rope.freq_base` on the global
    /// ones; softmax attention with scale 1/√key_length, the window masking keys 512 or more
    /// positions back on 5 of every 6 layers; `post_attention_norm`, residual; RMS norm →
    /// GELU(gate)·up → down; `post_ffw_norm`, residual; final RMS norm; tied output. Norm
    /// weights are used as stored (the conversion already added Gemma's `1 +`). No logit
    /// soft-capping (Gemma 3 has none).
    ///
    /// One code path on plain rows for decoding and batches: the matrix products go through
    /// [`Linear::apply`] (block matvec for a few rows, tiled GEMM for many) and each query
    /// row attends through [`crate::kernels::attend_one`] over its own window of the cache.
    fn forward_gemma(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> EngineResult<Tensor> {
        let cfg = &self.cfg;
        let (t, pos) = (tokens.len(), cache.len());
        let (e, nh, nkv, hd) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim());
        let kv_width = nkv * hd;
        let eps = cfg.rms_eps as f32;
        let mut x = self.tok_embd.rows(tokens)?;
        // llama.cpp: ggml_scale(inpL, sqrtf(n_embd)).
        let embed_scale = (e as f32).sqrt();
        x.iter_mut().for_each(|v| *v *= embed_scale);
        let (global, local) = (rope_angles(cfg.rope_base, hd, pos, t), rope_angles(cfg.rope_base_local, hd, pos, t));
        let mut h = vec![0.0f32; t * e];
        let mut att = vec![0.0f32; t * nh * hd];
        let mut scores = vec![0.0f32; pos + t];
        let heads = crate::kernels::Heads { heads: nh, kv_heads: nkv, head_dim: hd, scale: cfg.attention_scale };
        for (il, (block, layer)) in self.blocks.iter().zip(cache.layers_mut()).enumerate() {
            let norms = block.gemma.as_ref().ok_or_else(|| EngineError::Unsupported("gemma3 layer without its norms".into()))?;
            let is_local = cfg.is_local_layer(il);
            let (cos, sin) = if is_local { &local } else { &global };
            rms_norm_rows(&x, &block.attn_norm_values, eps, &mut h);
            let mut q = block.wq.apply(&h, t)?;
            let mut k = block.wk.apply(&h, t)?;
            let v = block.wv.apply(&h, t)?;
            norm_and_rope(&mut q, nh, hd, &norms.q_norm, eps, cos, sin);
            norm_and_rope(&mut k, nkv, hd, &norms.k_norm, eps, cos, sin);
            layer.append(&k, &v);
            let (keys, values) = (layer.keys(), layer.values());
            for (i, (qi, out)) in q.chunks_exact(nh * hd).zip(att.chunks_exact_mut(nh * hd)).enumerate() {
                let end = pos + i + 1;
                // llama.cpp's LLAMA_SWA_TYPE_STANDARD masks key p0 for query p1 when
                // p1 − p0 ≥ window, so the last `window` positions stay visible.
                let start = match (is_local, cfg.sliding_window) {
                    (true, Some(w)) => end.saturating_sub(w),
                    _ => 0,
                };
                crate::kernels::attend_one(
                    qi,
                    &keys[start * kv_width..end * kv_width],
                    &values[start * kv_width..end * kv_width],
                    heads,
                    &mut scores,
                    out,
                );
            }
            let mut o = block.wo.apply(&att, t)?;
            add_normed_rows(&mut x, &mut o, &norms.post_attention, eps);
            rms_norm_rows(&x, &block.ffn_norm_values, eps, &mut h);
            let mut gate = block.w_gate.apply(&h, t)?;
            let up = block.w_up.apply(&h, t)?;
            gate.iter_mut().zip(&up).for_each(|(g, u)| *g = gelu_tanh(*g) * u);
            let mut down = block.w_down.apply(&gate, t)?;
            add_normed_rows(&mut x, &mut down, &norms.post_ffw, eps);
        }
        cache.set_len(pos + t);
        let (rows, last) = match logits {
            Logits::Last => (1, &x[(t - 1) * e..]),
            Logits::All => (t, &x[..]),
        };
        let mut normed = vec![0.0f32; rows * e];
        rms_norm_rows(last, &self.norm_values, eps, &mut normed);
        Ok(Tensor::from_vec(normed, (rows, e), &Device::Cpu)?)
    }

    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        causal: bool,
        layer: &mut LayerKv,
    ) -> EngineResult<Tensor> {
        let (t, _) = x.dims2()?;
        let (nh, nkv, hd) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.head_dim());
        let q = block.wq.forward(x)?.reshape((1, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = block.wk.forward(x)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = block.wv.forward(x)?;
        // GGUF stores Q/K permuted for interleaved ("GPT-J style") rotary embeddings.
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        // The cache holds (position, kv head, dim) rows; (1, nkv, t, hd) -> (t, nkv, hd).
        let k_rows = k.squeeze(0)?.transpose(0, 1)?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        layer.append(&k_rows, &v.flatten_all()?.to_vec1::<f32>()?);
        let s = layer.keys().len() / (nkv * hd);
        let cached = |rows: &[f32]| -> candle_core::Result<Tensor> {
            Tensor::from_slice(rows, (s, nkv, hd), &Device::Cpu)?.transpose(0, 1)?.contiguous()?.unsqueeze(0)
        };
        let (k, v) = (cached(layer.keys())?, cached(layer.values())?);
        let rep = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let y = if causal {
            // Several tokens with a causal mask: expand K/V per query head. (The grouped form
            // below with a 5-D broadcast mask disagreed with token-by-token decoding on real
            // weights; tests/reference_forward.rs guards this path.)
            causal_attention(&q, &repeat_kv(&k, rep)?, &repeat_kv(&v, rep)?, s - t, scale)?
        } else {
            // Decoding one token: group the query heads that share a KV head so the cache is
            // never copied per head: (1, nh, 1, hd) -> (1, nkv, rep, hd).
            let q = q.reshape((1, nkv, rep * t, hd))?;
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            att.matmul(&v)?.reshape((1, nh, t, hd))?
        };
        let y = y.transpose(1, 2)?.reshape((t, nh * hd))?;
        Ok(block.wo.forward(&y)?)
    }
}

/// Runs a decode step on one of the engine's pool threads, so the products it splits across
/// threads ([`crate::matvec::BlockMatrix::matvec`]) keep the calling thread working rather
/// than asleep: called from outside the pool, each of the ~200 products of a step put the
/// caller to sleep and woke it again (a perf profile of serving had ~25% of its time in
/// the scheduler). Measured on generation: 45.1 → 46.3 tok/s, within one run's noise; the
/// products themselves wait on memory.
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}

fn matrix(l: &Linear) -> EngineResult<&crate::matvec::BlockMatrix> {
    l.blocks().ok_or_else(|| EngineError::Unsupported("one-token path without block weights".into()))
}

/// `out = x / rms(x) · weight`, as candle's `rms_norm` computes it.
fn rms_norm_into(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let sum2: f32 = x.iter().map(|v| v * v).sum();
    let m = (sum2 / x.len() as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v / m * w;
    }
}

/// Interleaved rotary embedding of every `head_dim` chunk of `x` at one position, as candle's
/// `rope_i` computes it: pairs `(x₂ᵢ, x₂ᵢ₊₁)` rotate by the angle whose cosine is `cos[i]`.
fn rope_interleaved(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * c - b * s;
            pair[1] = a * s + b * c;
        }
    }
}

/// [`rms_norm_into`] on each `weight.len()`-wide row of `x`.
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    for (x, out) in x.chunks_exact(weight.len()).zip(out.chunks_exact_mut(weight.len())) {
        rms_norm_into(x, weight, eps, out);
    }
}

/// `x += rms_norm(delta) · weight`, row by row (Gemma's post-norms before each residual add);
/// `delta` is overwritten.
fn add_normed_rows(x: &mut [f32], delta: &mut [f32], weight: &[f32], eps: f32) {
    for row in delta.chunks_exact_mut(weight.len()) {
        let sum2: f32 = row.iter().map(|v| v * v).sum();
        let m = (sum2 / row.len() as f32 + eps).sqrt();
        row.iter_mut().zip(weight).for_each(|(v, w)| *v = *v / m * w);
    }
    x.iter_mut().zip(delta.iter()).for_each(|(x, d)| *x += d);
}

/// RMS norm of every `head_dim` chunk of `rows` (row-major, `heads` per row) with `weight`,
/// then NeoX RoPE with the per-row `cos`/`sin` (`head_dim / 2` each) from [`rope_angles`].
fn norm_and_rope(rows: &mut [f32], heads: usize, head_dim: usize, weight: &[f32], eps: f32, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    let mut normed = vec![0.0f32; head_dim];
    for (i, row) in rows.chunks_exact_mut(heads * head_dim).enumerate() {
        let (c, s) = (&cos[i * half..(i + 1) * half], &sin[i * half..(i + 1) * half]);
        for head in row.chunks_exact_mut(head_dim) {
            rms_norm_into(head, weight, eps, &mut normed);
            let (a, b) = normed.split_at(half);
            for j in 0..half {
                head[j] = a[j] * c[j] - b[j] * s[j];
                head[j + half] = a[j] * s[j] + b[j] * c[j];
            }
        }
    }
}

/// `cos`/`sin` of the RoPE angles `p · base^(−2j/head_dim)` for positions `pos..pos + t`,
/// `(t, head_dim / 2)` row-major, computed as [`rope_tables`] does (f32 position times f32
/// inverse frequency).
fn rope_angles(base: f32, head_dim: usize, pos: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
    let inv: Vec<f32> = (0..head_dim / 2).map(|j| 1.0 / base.powf(2.0 * j as f32 / head_dim as f32)).collect();
    let angles: Vec<f32> = (pos..pos + t).flat_map(|p| inv.iter().map(move |f| p as f32 * f)).collect();
    (angles.iter().map(|a| a.cos()).collect(), angles.iter().map(|a| a.sin()).collect())
}

/// GELU with the tanh approximation, ggml's `ggml_gelu_f32` formula
/// `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))` (Gemma's `gelu_pytorch_tanh`). ggml's CPU
/// path reads it from an f16-indexed table instead; the difference is within f16 rounding
/// of the input.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh())
}

fn repeat_kv(x: &Tensor, rep: usize) -> candle_core::Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, n, s, d) = x.dims4()?;
    Tensor::cat(&vec![x; rep], 2)?.reshape((b, n * rep, s, d))
}

/// Queries per block of [`causal_attention`]: a 512-token prompt's scores were 9.4 MB per
/// copy for SmolLM2's 9 heads, several copies alive at once (scaled, masked, softmaxed).
const QUERY_BLOCK: usize = 128;

/// Softmax attention of the queries `q` `(1, heads, t, d)` at positions `pos..pos + t` over
/// the keys and values `(1, heads, pos + t, d)` of positions `0..pos + t`, each query seeing
/// the keys up to its own position. Queries run [`QUERY_BLOCK`] at a time, each block over
/// only the keys it can see, so the scores never exceed `heads × QUERY_BLOCK × (pos + t)`
/// and the masked-out half of a prompt's products is not computed (each query's row is the
/// same as with the whole square: masked keys contribute exact zeros).
fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, pos: usize, scale: f64) -> candle_core::Result<Tensor> {
    let t = q.dim(2)?;
    let mut out = Vec::with_capacity(t.div_ceil(QUERY_BLOCK));
    for first in (0..t).step_by(QUERY_BLOCK) {
        let n = QUERY_BLOCK.min(t - first);
        let seen = pos + first + n;
        let (qb, kb, vb) = (q.narrow(2, first, n)?.contiguous()?, k.narrow(2, 0, seen)?.contiguous()?, v.narrow(2, 0, seen)?.contiguous()?);
        let att = (qb.matmul(&kb.t()?)? * scale)?.broadcast_add(&causal_mask(n, pos + first)?)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        out.push(att.matmul(&vb)?);
    }
    if out.len() == 1 {
        return Ok(out.remove(0));
    }
    Tensor::cat(&out, 2)
}

/// `(t, pos + t)` additive mask: query i (absolute position pos + i) sees keys 0..=pos + i.
fn causal_mask(t: usize, pos: usize) -> candle_core::Result<Tensor> {
    let s = pos + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (t, s), &Device::Cpu)
}

fn rope_tables(cfg: &LlamaConfig) -> candle_core::Result<(Tensor, Tensor)> {
    let hd = cfg.head_dim();
    let inv: Vec<f32> = (0..hd / 2).map(|i| 1.0 / cfg.rope_base.powf(2.0 * i as f32 / hd as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), &Device::Cpu)?;
    let positions = Tensor::arange(0u32, cfg.context_length as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((cfg.context_length, 1))?;
    let freqs = positions.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?))
}

/// Log-softmax of each row of a `(rows, vocab)` logits tensor, as plain vectors.
pub fn log_softmax_rows(logits: &Tensor) -> EngineResult<Vec<Vec<f32>>> {
    let lp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    Ok(lp.to_vec2::<f32>()?)
}

/// Calls `f` with the rows of a `(rows, width)` f32 CPU tensor as one row-major slice (read
/// in place when the tensor is contiguous) and `width`.
pub fn with_rows<R>(t: &Tensor, f: impl FnOnce(&[f32], usize) -> R) -> EngineResult<R> {
    let t = t.to_dtype(DType::F32)?.contiguous()?;
    let (rows, width) = t.dims2()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(EngineError::Unsupported("the engine runs on the CPU only".into()));
    };
    let start = layout.start_offset();
    Ok(f(&cpu.as_slice::<f32>()?[start..start + rows * width], width))
}

/// The raw logits, one row per position (what samplers and [`crate::distribution`] take).
pub fn logit_rows(logits: &Tensor) -> EngineResult<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// Writes a tiny random-weight llama GGUF (2 layers, 64 wide, GQA 4/2 heads, context 512) with
/// [`tiny_byte_level_spec`](crate::tokenizer::tiny_byte_level_spec): for plumbing tests only.
pub fn write_random_llama_gguf(path: &Path, seed: u64) -> EngineResult<()> {
    use gguf_file::Value as V;
    let spec = crate::tokenizer::tiny_byte_level_spec();
    let vocab = spec.tokens.len();
    let (e, f, nh, nkv, layers) = (64usize, 128usize, 4usize, 2usize, 2usize);
    let hd = e / nh;
    let dev = Device::Cpu;
    let mut rng_state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut rand_tensor = |shape: &[usize], scale: f32| -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((rng_state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        Tensor::from_vec(data, shape, &dev)
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let q = |t: Tensor, ty| QTensor::quantize(&t, ty);
    tensors.push(("token_embd.weight".into(), q(rand_tensor(&[vocab, e], 0.1)?, GgmlDType::Q8_0)?));
    tensors.push(("output_norm.weight".into(), q((rand_tensor(&[e], 0.1)? + 1.0)?, GgmlDType::F32)?));
    for i in 0..layers {
        let p = format!("blk.{i}");
        let w = 1.0 / (e as f32).sqrt();
        tensors.push((format!("{p}.attn_norm.weight"), q((rand_tensor(&[e], 0.1)? + 1.0)?, GgmlDType::F32)?));
        tensors.push((format!("{p}.ffn_norm.weight"), q((rand_tensor(&[e], 0.1)? + 1.0)?, GgmlDType::F32)?));
        tensors.push((format!("{p}.attn_q.weight"), q(rand_tensor(&[e, e], w)?, GgmlDType::Q4_1)?));
        tensors.push((format!("{p}.attn_k.weight"), q(rand_tensor(&[nkv * hd, e], w)?, GgmlDType::Q4_1)?));
        tensors.push((format!("{p}.attn_v.weight"), q(rand_tensor(&[nkv * hd, e], w)?, GgmlDType::Q4_1)?));
        tensors.push((format!("{p}.attn_output.weight"), q(rand_tensor(&[e, e], w)?, GgmlDType::Q4_1)?));
        tensors.push((format!("{p}.ffn_gate.weight"), q(rand_tensor(&[f, e], w)?, GgmlDType::Q4_1)?));
        tensors.push((format!("{p}.ffn_up.weight"), q(rand_tensor(&[f, e], w)?, GgmlDType::Q4_1)?));
        tensors.push((format!("{p}.ffn_down.weight"), q(rand_tensor(&[e, f], 1.0 / (f as f32).sqrt())?, GgmlDType::Q4_1)?));
    }
    let strs = |v: &[String]| V::Array(v.iter().map(|s| V::String(s.clone())).collect());
    let metadata: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("general.name", V::String("tiny-random".into())),
        ("llama.block_count", V::U32(layers as u32)),
        ("llama.context_length", V::U32(512)),
        ("llama.embedding_length", V::U32(e as u32)),
        ("llama.feed_forward_length", V::U32(f as u32)),
        ("llama.attention.head_count", V::U32(nh as u32)),
        ("llama.attention.head_count_kv", V::U32(nkv as u32)),
        ("llama.rope.freq_base", V::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String(spec.pre.clone())),
        ("tokenizer.ggml.tokens", strs(&spec.tokens)),
        ("tokenizer.ggml.token_type", V::Array(spec.token_types.iter().map(|&t| V::I32(t)).collect())),
        ("tokenizer.ggml.merges", strs(&spec.merges)),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
        ("tokenizer.ggml.add_bos_token", V::Bool(false)),
        ("tokenizer.chat_template", V::String(spec.chat_template.clone().unwrap_or_default())),
    ];
    let meta_refs: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    gguf_file::write(&mut file, &meta_refs, &tensor_refs)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn write_tiny_gguf(path: &Path, seed: u64) {
        write_random_llama_gguf(path, seed).unwrap();
    }

    pub(crate) fn tiny_model() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(&path, 7);
        (dir, path)
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn the_residual_stream_is_the_forward_before_its_final_norm() {
        let (_dir, path) = tiny_model();
        let model = load_gguf(&path).unwrap().model;
        let tokens = [5u32, 70, 71, 72, 100, 3, 200, 9, 11, 12];
        let logits = model.forward(&tokens, &mut model.new_cache(), Logits::All).unwrap().to_vec2::<f32>().unwrap();
        let n = model.config().n_layer;
        let x = model.residual_stream(&tokens, n).unwrap();
        let h = candle_nn::ops::rms_norm(&x, &model.norm, model.cfg.rms_eps as f32).unwrap();
        assert_eq!(model.output.forward(&h).unwrap().to_vec2::<f32>().unwrap(), logits);
        // Layer 0 is the embedding rows; past the last block is an error.
        assert_eq!(model.residual_stream(&tokens, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), model.tok_embd.rows(&tokens).unwrap());
        assert!(matches!(model.residual_stream(&tokens, n + 1), Err(EngineError::InvalidInput(_))));
        assert!(model.residual_stream(&[], n).is_err());
    }

    #[test]
    fn all_position_logits_match_incremental_decoding() {
        let (_dir, path) = tiny_model();
        let loaded = load_gguf(&path).unwrap();
        let model = loaded.model;
        let tokens = [5u32, 70, 71, 72, 100, 3, 200, 9];
        let mut cache = model.new_cache();
        let all = model.forward(&tokens, &mut cache, Logits::All).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(cache.len(), tokens.len());
        let mut inc = model.new_cache();
        for (i, tok) in tokens.iter().enumerate() {
            let row = model.forward(&[*tok], &mut inc, Logits::Last).unwrap().to_vec2::<f32>().unwrap();
            let d = max_abs_diff(&row[0], &all[i]);
            assert!(d < 1e-3, "position {i}: incremental and batched logits differ by {d}");
        }
        // Logits must depend on the context, or the cache would be trivially "correct".
        assert!(max_abs_diff(&all[0], &all[1]) > 1e-3);
    }

    #[test]
    fn a_batched_decode_step_is_bit_identical_to_one_sequence_at_a_time() {
        let (_dir, path) = tiny_model();
        let model = load_gguf(&path).unwrap().model;
        assert!(model.one_token_path, "the tiny model should take the block path");
        // Five sequences at different positions (prompts of 1 to 9 tokens).
        let prompts: Vec<Vec<u32>> = (0..5u32).map(|i| (0..1 + 2 * i).map(|j| (i * 31 + j * 7 + 3) % 250).collect()).collect();
        let mut alone: Vec<KvCache> = Vec::new();
        let mut batched: Vec<KvCache> = Vec::new();
        for p in &prompts {
            let mut c = model.new_cache();
            model.forward(p, &mut c, Logits::Last).unwrap();
            batched.push(c.clone());
            alone.push(c);
        }
        for step in 0..3u32 {
            let tokens: Vec<u32> = (0..5u32).map(|i| (i * 13 + step * 5 + 1) % 250).collect();
            let mut caches: Vec<&mut KvCache> = batched.iter_mut().collect();
            let rows = model.decode_batch(&tokens, &mut caches).unwrap();
            for ((&t, cache), row) in tokens.iter().zip(alone.iter_mut()).zip(&rows) {
                let one = model.forward(&[t], cache, Logits::Last).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(row), bits(&one), "step {step}");
            }
        }
        assert_eq!(batched.iter().map(KvCache::len).collect::<Vec<_>>(), alone.iter().map(KvCache::len).collect::<Vec<_>>());
        // A bad token fails the step and leaves every cache as it was.
        let lens: Vec<usize> = batched.iter().map(KvCache::len).collect();
        let mut caches: Vec<&mut KvCache> = batched.iter_mut().collect();
        assert!(model.decode_batch(&[1, 2, 1_000_000, 4, 5], &mut caches).is_err());
        assert_eq!(batched.iter().map(KvCache::len).collect::<Vec<_>>(), lens);
    }

    #[test]
    fn cloned_prefix_cache_equals_full_forward() {
        let (_dir, path) = tiny_model();
        let model = load_gguf(&path).unwrap().model;
        let prompt = [10u32, 11, 12, 13, 14];
        let completion = [40u32, 41, 42];
        let mut prefix = model.new_cache();
        model.forward(&prompt, &mut prefix, Logits::All).unwrap();
        let mut reuse = prefix.clone();
        let a = model.forward(&completion, &mut reuse, Logits::All).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(prefix.len(), prompt.len(), "the snapshot must not change when a clone is extended");
        let mut full = model.new_cache();
        let all: Vec<u32> = prompt.iter().chain(&completion).copied().collect();
        let b = model.forward(&all, &mut full, Logits::All).unwrap().to_vec2::<f32>().unwrap();
        for i in 0..completion.len() {
            let d = max_abs_diff(&a[i], &b[prompt.len() + i]);
            assert!(d < 1e-3, "completion position {i} differs by {d}");
        }
    }

    #[test]
    fn rejects_bad_tokens_and_context_overflow() {
        let (_dir, path) = tiny_model();
        let model = load_gguf(&path).unwrap().model;
        let mut cache = model.new_cache();
        let err = model.forward(&[1_000_000], &mut cache, Logits::Last).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
        let long = vec![5u32; 513];
        let err = model.forward(&long, &mut cache, Logits::Last).unwrap_err();
        assert!(matches!(err, EngineError::ContextOverflow { limit: 512, .. }), "{err}");
    }

    #[test]
    fn chunked_logits_equal_the_all_position_ones() {
        let (_dir, path) = tiny_model();
        let model = load_gguf(&path).unwrap().model;
        // Chunks of `chunk` rows and 13 (a remainder under DENSE_MIN_ROWS would be merged).
        let chunk = logit_chunk_rows(model.config().vocab_size);
        assert_eq!(chunk, MAX_LOGIT_CHUNK, "a tiny vocabulary gets the largest chunks");
        let tokens: Vec<u32> = (0..chunk as u32 + 13).map(|i| (i * 7 + 3) % 250).collect();
        let all = model.forward(&tokens, &mut model.new_cache(), Logits::All).unwrap().to_vec2::<f32>().unwrap();
        let mut chunked = Vec::new();
        let mut starts = Vec::new();
        let mut cache = model.new_cache();
        model
            .forward_chunked(&tokens, &mut cache, |first, logits| {
                starts.push(first);
                chunked.extend(logits.to_vec2::<f32>()?);
                Ok(())
            })
            .unwrap();
        assert_eq!(starts, vec![0, chunk]);
        assert_eq!(logit_chunk_rows(262_144), LOGIT_CHUNK, "Gemma 3: the floor, 32 MB of logits per chunk");
        assert_eq!(logit_chunk_rows(49_152), 85, "SmolLM2: 16 MB of logits per chunk");
        assert_eq!(logit_chunk_rows(1), MAX_LOGIT_CHUNK);
        assert_eq!(cache.len(), tokens.len());
        assert!(chunked == all, "chunked logits differ from the all-position ones");
    }

    #[test]
    fn unknown_architectures_are_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mamba.gguf");
        let arch = gguf_file::Value::String("mamba".into());
        let mut file = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut file, &[("general.architecture", &arch)], &[]).unwrap();
        drop(file);
        for err in [load_gguf(&path).unwrap_err(), load_model_as(&path, WeightFormat::Fast).unwrap_err()] {
            assert!(matches!(&err, EngineError::UnsupportedArchitecture { architecture, .. } if architecture == "mamba"), "{err}");
            assert!(err.to_string().contains("`llama` and `gemma3`"), "{err}");
        }
    }

    #[test]
    fn corrupt_files_give_clear_errors() {
        let (dir, path) = tiny_model();
        let garbage = dir.path().join("garbage.gguf");
        std::fs::write(&garbage, b"this is not a gguf file at all").unwrap();
        let err = load_gguf(&garbage).unwrap_err();
        assert!(matches!(err, EngineError::CorruptModel { .. }), "{err}");
        let bytes = std::fs::read(&path).unwrap();
        let truncated = dir.path().join("truncated.gguf");
        std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
        let err = load_gguf(&truncated).unwrap_err();
        assert!(err.to_string().contains("ganglion model pull"), "{err}");
        let err = load_gguf(&dir.path().join("absent.gguf")).unwrap_err();
        assert!(matches!(err, EngineError::Io { .. }), "{err}");
    }
}
