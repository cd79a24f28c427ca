//! Llama forward pass over GGUF quantized weights, returning logits for every position.
//!
//! candle's `quantized_llama` only returns the last position; validators need all of them
//! (teacher-forced scoring), so this file owns the forward. The KV cache is a plain value
//! ([`KvCache`]): cloning it is cheap (tensors are reference counted and never mutated in
//! place), which is how a shared prompt prefix is computed once and reused for many
//! completions. This module knows nothing about tokenizers, sampling or HTTP.

use std::io::{Read, Seek};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use crate::error::{EngineError, EngineResult};
use crate::tokenizer::VocabSpec;

/// Hyper-parameters read from the GGUF `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
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
}

impl LlamaConfig {
    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
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
use crate::kv::LayerKv;

struct Block {
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

/// Products with fewer rows than this (decoding: one row per sequence) use the quantized
/// weights; from this many on (prompts, teacher-forced scoring) the dense copy.
const DENSE_MIN_ROWS: usize = 8;

/// A weight matrix held in the form each kind of product runs fastest on.
///
/// One-row products (decoding) are memory-bound: they run on the quantized blocks, through
/// [`crate::matvec::BlockMatrix`] (exact f32 products with the stored weights) where the type
/// allows, else candle's quantized matmul. Many-row products (prompts, teacher-forced scoring)
/// are compute-bound, and candle 0.11 multiplies 32-block types with one dot product per
/// output element (its tiled kernels need widths that are multiples of 256; SmolLM2's is 576),
/// so a tiled f32 GEMM on a dense copy is several times faster there. Both forms hold the
/// weights exactly as stored, so decoding and teacher forcing agree to rounding order.
struct Linear {
    one_row: RowProduct,
    /// `Wᵀ` as a contiguous `(in, out)` f32 tensor, when the format keeps one.
    dense: Option<Tensor>,
}

enum RowProduct {
    Blocks(crate::matvec::BlockMatrix),
    Candle(QMatMul),
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
        let dense = Some(weights.dequantize(&Device::Cpu)?.t()?.contiguous()?);
        let one_row = match crate::matvec::BlockMatrix::from_qtensor(&weights)? {
            Some(blocks) => RowProduct::Blocks(blocks),
            None => RowProduct::Candle(requantize_for_speed(weights)?),
        };
        Ok(Linear { one_row, dense })
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
        if let Some(w) = &self.dense
            && rows >= DENSE_MIN_ROWS
        {
            return x.matmul(w);
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
}

/// A llama model ready to run on the CPU.
pub struct Llama {
    cfg: LlamaConfig,
    tok_embd: QTensor,
    blocks: Vec<Block>,
    norm: Tensor,
    norm_values: Vec<f32>,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    /// `cos`/`sin` as plain `(context, head_dim/2)` rows for the one-token path.
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
    /// Every matrix has a [`crate::matvec::BlockMatrix`], so one-token steps can take
    /// [`Llama::forward_one`].
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

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> EngineError {
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
    /// Each matrix in the forms its products run fastest on (see `Linear`): the quantized
    /// blocks for decoding and a dense f32 copy for prompts and scoring, about 5.3 bytes per
    /// weight in all. Results differ from [`WeightFormat::AsStored`] only because candle
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

/// [`load_gguf`] with a choice of in-memory weight format.
pub fn load_gguf_as(path: &Path, format: WeightFormat) -> EngineResult<LoadedGguf> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    let content = gguf_file::Content::read(&mut file).map_err(|e| corrupt(path, e))?;
    let meta = Meta { content: &content, path };
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        return Err(EngineError::Unsupported(format!("architecture `{arch}` in {}", path.display())));
    }
    // Every tensor must lie inside the file: a truncated download fails here, not mid-read.
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count();
        let bytes = (elems / info.ggml_dtype.block_size().max(1)) as u64 * info.ggml_dtype.type_size() as u64;
        let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
        if end > file_len {
            return Err(corrupt(path, format!("tensor `{name}` ends at byte {end} but the file has {file_len} (truncated?)")));
        }
    }
    let n_embd = meta.usize("llama.embedding_length")?;
    let n_head = meta.usize("llama.attention.head_count")?;
    let n_kv_head = meta.content.metadata.get("llama.attention.head_count_kv").map_or(Ok(n_head), |_| meta.usize("llama.attention.head_count_kv"))?;
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let cfg = LlamaConfig {
        n_layer: meta.usize("llama.block_count")?,
        n_embd,
        n_head,
        n_kv_head,
        n_ff: meta.usize("llama.feed_forward_length")?,
        rope_base: meta.content.metadata.get("llama.rope.freq_base").map_or(Ok(10_000.0), |_| meta.f32("llama.rope.freq_base"))?,
        rms_eps: f64::from(meta.f32("llama.attention.layer_norm_rms_epsilon")?),
        context_length: meta.usize("llama.context_length")?,
        vocab_size: tokens.len(),
    };
    validate_config(&cfg, path)?;
    let model_kind = meta.string("tokenizer.ggml.model")?;
    if model_kind != "gpt2" {
        return Err(EngineError::Unsupported(format!("tokenizer model `{model_kind}` in {}", path.display())));
    }
    let vocab = VocabSpec {
        tokens,
        token_types: meta.ints("tokenizer.ggml.token_type")?,
        merges: meta.strings("tokenizer.ggml.merges")?,
        pre: meta.content.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok().cloned()).unwrap_or_default(),
        bos: meta.opt_u32("tokenizer.ggml.bos_token_id"),
        eos: meta.opt_u32("tokenizer.ggml.eos_token_id"),
        chat_template: meta.content.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok().cloned()),
    };
    let name = meta.content.metadata.get("general.name").and_then(|v| v.to_string().ok().cloned());
    let model = Llama::from_gguf(cfg, &content, &mut file, path, format)?;
    Ok(LoadedGguf { model, vocab, name })
}

fn validate_config(cfg: &LlamaConfig, path: &Path) -> EngineResult<()> {
    let bad = |what: String| Err(corrupt(path, what));
    if cfg.n_layer == 0 || cfg.n_embd == 0 || cfg.n_head == 0 || cfg.n_kv_head == 0 || cfg.n_ff == 0 {
        return bad(format!("zero-sized hyper-parameter in {cfg:?}"));
    }
    if !cfg.n_embd.is_multiple_of(cfg.n_head) || !cfg.n_head.is_multiple_of(cfg.n_kv_head) || !cfg.head_dim().is_multiple_of(2) {
        return bad(format!("inconsistent head layout in {cfg:?}"));
    }
    if cfg.context_length == 0 || cfg.context_length > 1 << 20 {
        return bad(format!("context length {} out of range", cfg.context_length));
    }
    Ok(())
}

impl Llama {
    fn from_gguf<R: Read + Seek>(
        cfg: LlamaConfig,
        content: &gguf_file::Content,
        reader: &mut R,
        path: &Path,
        format: WeightFormat,
    ) -> EngineResult<Self> {
        let dev = Device::Cpu;
        let mut qtensor = |name: &str, want: &[usize]| -> EngineResult<QTensor> {
            let t = content.tensor(reader, name, &dev).map_err(|e| corrupt(path, format!("tensor `{name}`: {e}")))?;
            if t.shape().dims() != want {
                return Err(corrupt(path, format!("tensor `{name}` has shape {:?}, expected {want:?}", t.shape().dims())));
            }
            Ok(t)
        };
        let (e, f, hd) = (cfg.n_embd, cfg.n_ff, cfg.head_dim());
        let kv = cfg.n_kv_head * hd;
        let tok_embd = qtensor("token_embd.weight", &[cfg.vocab_size, e])?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Linear::new(qtensor("output.weight", &[cfg.vocab_size, e])?, format)?
        } else {
            Linear::new(qtensor("token_embd.weight", &[cfg.vocab_size, e])?, format)?
        };
        let norm = qtensor("output_norm.weight", &[e])?.dequantize(&dev)?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let mut mm = |n: &str, shape: &[usize]| -> EngineResult<Linear> {
                Linear::new(qtensor(&format!("{p}.{n}.weight"), shape)?, format)
            };
            let wq = mm("attn_q", &[e, e])?;
            let wk = mm("attn_k", &[kv, e])?;
            let wv = mm("attn_v", &[kv, e])?;
            let wo = mm("attn_output", &[e, e])?;
            let w_gate = mm("ffn_gate", &[f, e])?;
            let w_up = mm("ffn_up", &[f, e])?;
            let w_down = mm("ffn_down", &[e, f])?;
            let attn_norm = qtensor(&format!("{p}.attn_norm.weight"), &[e])?.dequantize(&dev)?;
            let ffn_norm = qtensor(&format!("{p}.ffn_norm.weight"), &[e])?.dequantize(&dev)?;
            let (attn_norm_values, ffn_norm_values) = (attn_norm.to_vec1::<f32>()?, ffn_norm.to_vec1::<f32>()?);
            blocks.push(Block { attn_norm, attn_norm_values, wq, wk, wv, wo, ffn_norm, ffn_norm_values, w_gate, w_up, w_down });
        }
        let (cos, sin) = rope_tables(&cfg)?;
        let (cos_values, sin_values) = (cos.flatten_all()?.to_vec1::<f32>()?, sin.flatten_all()?.to_vec1::<f32>()?);
        let norm_values = norm.to_vec1::<f32>()?;
        let one_token_path = output.blocks().is_some()
            && blocks.iter().all(|b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down].iter().all(|l| l.blocks().is_some()));
        Ok(Self { cfg, tok_embd, blocks, norm, norm_values, output, cos, sin, cos_values, sin_values, one_token_path })
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
        let width = self.cfg.n_kv_head * self.cfg.head_dim();
        let result = if t == 1 && self.one_token_path {
            self.forward_one(tokens[0], cache).and_then(|row| Ok(Tensor::from_vec(row, (1, self.cfg.vocab_size), &Device::Cpu)?))
        } else {
            self.forward_rows(tokens, cache, logits)
        };
        if result.is_err() {
            // Keep the cache consistent: drop whatever the failed pass appended.
            cache.truncate(pos, width);
        }
        result
    }

    /// The general forward over candle tensors: prompts, scoring, and one-token steps when
    /// some matrix lacks a block form.
    fn forward_rows(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> EngineResult<Tensor> {
        let (t, pos) = (tokens.len(), cache.len());
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self.tok_embd.embedding(&ids)?; // (t, e)
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = if t > 1 { Some(causal_mask(t, pos)?) } else { None };
        for (block, layer) in self.blocks.iter().zip(cache.layers_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, self.cfg.rms_eps as f32)?;
            let attn = self.attention(block, &h, &cos, &sin, mask.as_ref(), layer)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, self.cfg.rms_eps as f32)?;
            let gate = candle_nn::ops::silu(&block.w_gate.forward(&h)?)?;
            let up = block.w_up.forward(&h)?;
            x = (x + block.w_down.forward(&(gate * up)?)?)?;
        }
        cache.set_len(pos + t);
        let x = match logits {
            Logits::Last => x.narrow(0, t - 1, 1)?,
            Logits::All => x,
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.cfg.rms_eps as f32)?;
        Ok(self.output.forward(&x)?)
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
        let mut x = self.tok_embd.embedding(&Tensor::new(&[token], &Device::Cpu)?)?.flatten_all()?.to_vec1::<f32>()?;
        let mut h = vec![0.0f32; e];
        let (mut q, mut k, mut v) = (vec![0.0f32; nh * hd], vec![0.0f32; nkv * hd], vec![0.0f32; nkv * hd]);
        let (mut att, mut delta) = (vec![0.0f32; nh * hd], vec![0.0f32; e]);
        let (mut gate, mut up) = (vec![0.0f32; cfg.n_ff], vec![0.0f32; cfg.n_ff]);
        let mut scores = vec![0.0f32; pos + 1];
        let half = hd / 2;
        let (cos, sin) = (&self.cos_values[pos * half..(pos + 1) * half], &self.sin_values[pos * half..(pos + 1) * half]);
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

    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
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
        let y = match mask {
            // Decoding one token: group the query heads that share a KV head so the cache is
            // never copied per head: (1, nh, 1, hd) -> (1, nkv, rep, hd).
            None => {
                let q = q.reshape((1, nkv, rep * t, hd))?;
                let att = (q.matmul(&k.t()?)? * scale)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                att.matmul(&v)?.reshape((1, nh, t, hd))?
            }
            // Several tokens with a causal mask: expand K/V per query head. (The grouped form
            // above with a 5-D broadcast mask disagreed with token-by-token decoding on real
            // weights; tests/reference_forward.rs guards this path.)
            Some(m) => {
                let k = repeat_kv(&k, rep)?;
                let v = repeat_kv(&v, rep)?;
                let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(m)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                att.matmul(&v)?
            }
        };
        let y = y.transpose(1, 2)?.reshape((t, nh * hd))?;
        Ok(block.wo.forward(&y)?)
    }
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

fn repeat_kv(x: &Tensor, rep: usize) -> candle_core::Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, n, s, d) = x.dims4()?;
    Tensor::cat(&vec![x; rep], 2)?.reshape((b, n * rep, s, d))
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
