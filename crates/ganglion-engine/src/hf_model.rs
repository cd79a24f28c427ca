//! Hugging Face model directories, the form fine-tuned models are published in: `config.json`
//! (`LlamaForCausalLM`), the weights in `model.safetensors` (or the shards a
//! `model.safetensors.index.json` lists), `tokenizer.json`, and `tokenizer_config.json` /
//! `chat_template.jinja` for the chat template and the BOS/EOS tokens. Also the way back:
//! [`export_gguf`] writes such a directory from a llama GGUF.
//!
//! The one layout difference from GGUF: Hugging Face keeps each attention head's query and key
//! rows in the "rotate half" order (RoPE pairs dimension `i` with `i + head_dim/2`), while
//! llama.cpp's `convert_hf_to_gguf.py` permutes them so pairs are adjacent (`2i`, `2i+1`), the
//! order [`crate::model::Llama`] rotates in. [`to_gguf_rows`] applies that permutation on load;
//! [`to_hf_rows`] undoes it on export. A test holds the loaded model to candle-transformers'
//! own Hugging Face llama on the same directory.
//!
//! Files are read with bounded reads, not memory-mapped (the workspace forbids `unsafe`): each
//! safetensors header is at most 100 MB (the format's own limit) and is validated by the
//! `safetensors` crate (offsets contiguous, every tensor's byte size equal to its shape ×
//! dtype), and the file must end exactly where the last tensor does, so a truncated or padded
//! download fails before any weight is read.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, EngineResult};
use crate::model::{Architecture, Llama, LlamaConfig, WeightFormat, WeightSource};
use crate::tokenizer::Tokenizer;

/// The model's hyper-parameters.
pub const CONFIG_FILE: &str = "config.json";
/// The weights, when they are one file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Which shard holds each weight, when they are several files.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// The tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The chat template and special tokens.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The chat template on its own (transformers ≥ 4.43 saves it here); wins over
/// `tokenizer_config.json`'s.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Largest JSON file read (Gemma's `tokenizer.json` is 33 MB, Llama-3's 9 MB).
const MAX_JSON_BYTES: u64 = 64 << 20;
/// The safetensors format's own header limit.
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most shards an index may name.
const MAX_SHARDS: usize = 1024;

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::CorruptDirectory { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The files of a model, wherever `path` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// One GGUF file (given directly, or the only `.gguf` at the top of a directory).
    Gguf(PathBuf),
    /// A Hugging Face directory: `config.json`, safetensors weights, `tokenizer.json`.
    Safetensors(PathBuf),
}

impl ModelFiles {
    /// What [`crate::Engine::load`] takes for these files.
    pub fn path(&self) -> &Path {
        match self {
            ModelFiles::Gguf(p) | ModelFiles::Safetensors(p) => p,
        }
    }
}

/// Finds the model at `path`: a `.gguf` file, a directory holding exactly one `.gguf`, or a
/// directory with `config.json`, safetensors weights and `tokenizer.json`.
pub fn locate(path: &Path) -> EngineResult<ModelFiles> {
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(ModelFiles::Gguf(path.to_path_buf()));
    }
    let mut ggufs = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| EngineError::io(path, e))?.take(4096) {
        let entry = entry.map_err(|e| EngineError::io(path, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) && p.is_file() {
            ggufs.push(p);
        }
    }
    match ggufs.len() {
        1 => return Ok(ModelFiles::Gguf(ggufs.remove(0))),
        0 => {}
        n => return Err(corrupt(path, format!("it holds {n} .gguf files; a model directory holds exactly one, or safetensors weights"))),
    }
    let has = |name: &str| path.join(name).is_file();
    if !has(CONFIG_FILE) || !(has(WEIGHTS_FILE) || has(WEIGHTS_INDEX_FILE)) || !has(TOKENIZER_FILE) {
        return Err(corrupt(
            path,
            format!("it holds no .gguf file, and not the {CONFIG_FILE}, {WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE}) and {TOKENIZER_FILE} of a safetensors model"),
        ));
    }
    Ok(ModelFiles::Safetensors(path.to_path_buf()))
}

/// Reads a file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> EngineResult<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    if len > max {
        return Err(corrupt(path, format!("{len} bytes; at most {max} are read")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max).read_to_end(&mut bytes).map_err(|e| EngineError::io(path, e))?;
    Ok(bytes)
}

/// The fields of a Hugging Face `config.json` this engine reads (transformers' `LlamaConfig`
/// names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfConfig {
    /// `llama` is the one this engine runs from safetensors.
    pub model_type: String,
    /// e.g. `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Hidden size.
    pub hidden_size: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); the query heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Size of one head; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Rows of the embedding table and the output projection.
    pub vocab_size: usize,
    /// RMS-norm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    /// Context length.
    #[serde(default = "default_context")]
    pub max_position_embeddings: usize,
    /// The output projection is the embedding table (no `lm_head.weight`).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Must be absent or null: scaled RoPE (Llama 3.1's `llama3`, `linear`, `yarn`) is not run.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Must be `silu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Must be false: biases on the attention projections are not run.
    #[serde(default)]
    pub attention_bias: bool,
    /// Must be false: biases on the feed-forward projections are not run.
    #[serde(default)]
    pub mlp_bias: bool,
    /// BOS token id (informational; the tokenizer files decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// EOS token id (informational; the tokenizer files decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<u32>,
    /// The dtype the weights were saved in (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_context() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

impl HfConfig {
    /// Reads and checks `dir/config.json`.
    pub fn read(dir: &Path) -> EngineResult<HfConfig> {
        let path = dir.join(CONFIG_FILE);
        let bytes = read_bounded(&path, MAX_JSON_BYTES)?;
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))
    }

    /// The engine's config, or why this model cannot run here.
    pub fn to_llama(&self, dir: &Path) -> EngineResult<LlamaConfig> {
        let unsupported = |what: String| Err(EngineError::Unsupported(format!("{}: {what}", dir.display())));
        if self.model_type != "llama" {
            return Err(EngineError::UnsupportedArchitecture { path: dir.join(CONFIG_FILE), architecture: self.model_type.clone() });
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return unsupported(format!("scaled RoPE (`rope_scaling` = {})", self.rope_scaling.as_ref().map(|v| v.to_string()).unwrap_or_default()));
        }
        if self.hidden_act != "silu" {
            return unsupported(format!("activation `{}` (llama uses silu)", self.hidden_act));
        }
        if self.attention_bias || self.mlp_bias {
            return unsupported("bias terms on the projections".into());
        }
        let head_size = self.head_dim.unwrap_or_else(|| self.hidden_size.checked_div(self.num_attention_heads).unwrap_or(0));
        let cfg = LlamaConfig {
            architecture: Architecture::Llama,
            n_layer: self.num_hidden_layers,
            n_embd: self.hidden_size,
            n_head: self.num_attention_heads,
            n_kv_head: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            n_ff: self.intermediate_size,
            rope_base: self.rope_theta,
            rms_eps: self.rms_norm_eps,
            context_length: self.max_position_embeddings,
            vocab_size: self.vocab_size,
            head_size,
            sliding_window: None,
            sliding_window_pattern: 0,
            rope_base_local: 10_000.0,
            attention_scale: 1.0 / (head_size.max(1) as f32).sqrt(),
        };
        crate::model::validate_config(&cfg, &dir.join(CONFIG_FILE))?;
        Ok(cfg)
    }
}

/// The Hugging Face name of the weight GGUF calls `gguf` (llama.cpp's tensor map for llama),
/// and whether its rows are permuted between the two (`Some(kv)`: query (`false`) or key
/// (`true`) heads).
pub fn hf_tensor_name(gguf: &str) -> Option<(String, Option<bool>)> {
    match gguf {
        "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), None)),
        "output_norm.weight" => return Some(("model.norm.weight".into(), None)),
        "output.weight" => return Some(("lm_head.weight".into(), None)),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, name) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, permute) = match name {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(false)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(true)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}"), permute))
}

/// Hugging Face's query/key rows to GGUF's: for each of `heads` heads, row `s·d/2 + i` moves to
/// `2i + s` (llama.cpp's `LlamaModel.permute` in `convert_hf_to_gguf.py`).
pub fn to_gguf_rows(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    let d = rows / heads.max(1);
    t.reshape((heads, 2, d / 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))
}

/// The inverse of [`to_gguf_rows`].
pub fn to_hf_rows(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    let d = rows / heads.max(1);
    t.reshape((heads, d / 2, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    info: TensorInfo,
}

/// The safetensors weights of a directory, headers read and validated, tensors read on demand.
#[derive(Debug)]
pub struct SafetensorsFiles {
    /// Each file and where its data begins.
    files: Vec<(PathBuf, u64)>,
    tensors: BTreeMap<String, Entry>,
}

impl SafetensorsFiles {
    /// Opens `dir`'s weights: the shards of `model.safetensors.index.json`, else `model.safetensors`.
    pub fn open(dir: &Path) -> EngineResult<SafetensorsFiles> {
        let index = dir.join(WEIGHTS_INDEX_FILE);
        let names: Vec<String> = if index.is_file() {
            #[derive(Deserialize)]
            struct Index {
                weight_map: HashMap<String, String>,
            }
            let parsed: Index = serde_json::from_slice(&read_bounded(&index, MAX_JSON_BYTES)?).map_err(|e| corrupt(&index, e))?;
            let mut shards: Vec<String> = parsed.weight_map.into_values().collect();
            shards.sort();
            shards.dedup();
            if shards.len() > MAX_SHARDS {
                return Err(corrupt(&index, format!("{} shards; at most {MAX_SHARDS}", shards.len())));
            }
            for s in &shards {
                // Only files beside the index: no paths out of the directory.
                if s.is_empty() || s.contains(['/', '\\']) || s.starts_with('.') {
                    return Err(corrupt(&index, format!("shard name `{s}` is not a plain file name")));
                }
            }
            shards
        } else {
            vec![WEIGHTS_FILE.to_string()]
        };
        let mut out = SafetensorsFiles { files: Vec::with_capacity(names.len()), tensors: BTreeMap::new() };
        for (i, name) in names.iter().enumerate() {
            let path = dir.join(name);
            let (data_start, metadata) = read_header(&path)?;
            for (tensor, info) in metadata.tensors() {
                if out.tensors.insert(tensor.clone(), Entry { file: i, info: info.clone() }).is_some() {
                    return Err(corrupt(&path, format!("tensor `{tensor}` is stored twice")));
                }
            }
            out.files.push((path, data_start));
        }
        Ok(out)
    }

    /// Every tensor's name, dtype and shape.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, Dtype, &[usize])> {
        self.tensors.iter().map(|(n, e)| (n.as_str(), e.info.dtype, e.info.shape.as_slice()))
    }

    /// Whether `name` is stored.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.info.shape.as_slice())
    }

    /// Σ elements over every tensor (the headers were validated, so no product overflows).
    pub fn parameters(&self) -> u64 {
        self.tensors.values().map(|e| e.info.shape.iter().product::<usize>() as u64).sum()
    }

    /// Total bytes of the weight files.
    pub fn file_bytes(&self) -> EngineResult<u64> {
        let mut total = 0u64;
        for (p, _) in &self.files {
            total = total.saturating_add(std::fs::metadata(p).map_err(|e| EngineError::io(p, e))?.len());
        }
        Ok(total)
    }

    /// Reads `name` as f32 (f16 and bf16 widened exactly).
    pub fn read_f32(&self, name: &str) -> EngineResult<Tensor> {
        let Some(entry) = self.tensors.get(name) else {
            let dir = self.files.first().and_then(|(p, _)| p.parent()).unwrap_or(Path::new("."));
            return Err(corrupt(dir, format!("tensor `{name}` is missing")));
        };
        let (path, data_start) = &self.files[entry.file];
        let dtype = match entry.info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => return Err(EngineError::Unsupported(format!("{}: tensor `{name}` is {other:?} (f32, f16 or bf16 are read)", path.display()))),
        };
        let (start, end) = entry.info.data_offsets;
        let mut bytes = vec![0u8; end - start];
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        file.seek(SeekFrom::Start(data_start + start as u64)).map_err(|e| EngineError::io(path, e))?;
        file.read_exact(&mut bytes).map_err(|e| EngineError::io(path, e))?;
        let t = Tensor::from_raw_buffer(&bytes, dtype, &entry.info.shape, &Device::Cpu).map_err(|e| corrupt(path, format!("tensor `{name}`: {e}")))?;
        Ok(t.to_dtype(DType::F32)?)
    }
}

/// Reads and validates one safetensors header: returns where the data begins and the tensors.
fn read_header(path: &Path) -> EngineResult<(u64, Metadata)> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|e| corrupt(path, format!("no safetensors header: {e}")))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || n > len.saturating_sub(8) {
        return Err(corrupt(path, format!("a header of {n} bytes in a file of {len}")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| EngineError::io(path, e))?;
    let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header).map_err(|e| corrupt(path, format!("header: {e}")))?;
    let mut extra = None;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            extra = serde_json::from_value(value).ok();
            continue;
        }
        let info: TensorInfo = serde_json::from_value(value).map_err(|e| corrupt(path, format!("tensor `{name}`: {e}")))?;
        tensors.push((name, info));
    }
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    let end = tensors.last().map_or(0, |(_, info)| info.data_offsets.1) as u64;
    // The crate's own validation: offsets contiguous from 0, sizes equal to shape × dtype.
    let metadata = Metadata::new(extra, tensors).map_err(|e| corrupt(path, format!("header: {e}")))?;
    if 8 + n + end != len {
        return Err(corrupt(path, format!("the tensors end at byte {} but the file has {len} (truncated or padded?)", 8 + n + end)));
    }
    Ok((8 + n, metadata))
}

/// [`WeightSource`] over a safetensors directory: GGUF names mapped to Hugging Face ones,
/// query/key rows permuted, weights held as f32.
struct HfSource<'a> {
    files: &'a SafetensorsFiles,
    cfg: &'a LlamaConfig,
    tied: bool,
}

impl WeightSource for HfSource<'_> {
    fn tensor(&mut self, name: &str, want: &[usize]) -> EngineResult<QTensor> {
        let Some((hf, permute)) = hf_tensor_name(name) else {
            return Err(EngineError::Unsupported(format!("weight `{name}` has no Hugging Face llama name")));
        };
        let mut t = self.files.read_f32(&hf)?;
        if t.dims() != want {
            let dir = self.files.files.first().map(|(p, _)| p.as_path()).unwrap_or(Path::new("."));
            return Err(corrupt(dir, format!("tensor `{hf}` has shape {:?}, expected {want:?}", t.dims())));
        }
        if let Some(kv) = permute {
            t = to_gguf_rows(&t, if kv { self.cfg.n_kv_head } else { self.cfg.n_head })?;
        }
        Ok(QTensor::quantize(&t, GgmlDType::F32)?)
    }

    fn has(&self, name: &str) -> bool {
        match hf_tensor_name(name) {
            Some((hf, _)) => self.files.contains(&hf) && !(name == "output.weight" && self.tied),
            None => false,
        }
    }
}

/// A model loaded from a Hugging Face directory.
#[derive(Debug)]
pub struct LoadedDir {
    /// The weights.
    pub model: Llama,
    /// The tokenizer and chat template.
    pub tokenizer: Tokenizer,
    /// The directory's name.
    pub name: String,
}

/// Loads a Hugging Face llama directory: the weights as f32 (dense products; `format` does
/// not change them), the tokenizer from its files.
pub fn load_dir(dir: &Path, format: WeightFormat) -> EngineResult<LoadedDir> {
    let hf = HfConfig::read(dir)?;
    let cfg = hf.to_llama(dir)?;
    let files = SafetensorsFiles::open(dir)?;
    let tied = !files.contains("lm_head.weight");
    if tied && !hf.tie_word_embeddings {
        return Err(corrupt(dir, "`lm_head.weight` is missing and `tie_word_embeddings` is false"));
    }
    let tokenizer = load_tokenizer(dir)?;
    if tokenizer.vocab_size() != cfg.vocab_size {
        return Err(corrupt(dir, format!("the tokenizer has {} tokens but the model outputs {}", tokenizer.vocab_size(), cfg.vocab_size)));
    }
    let model = Llama::build(cfg.clone(), &mut HfSource { files: &files, cfg: &cfg, tied }, None, format)?;
    let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    Ok(LoadedDir { model, tokenizer, name })
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn token_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

/// The tokenizer of a Hugging Face directory: `tokenizer.json`, with the chat template and
/// BOS/EOS of `tokenizer_config.json` (a template list's `default` entry) and
/// `chat_template.jinja`.
pub fn load_tokenizer(dir: &Path) -> EngineResult<Tokenizer> {
    let json = read_bounded(&dir.join(TOKENIZER_FILE), MAX_JSON_BYTES)?;
    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let config: serde_json::Value = if config_path.is_file() {
        serde_json::from_slice(&read_bounded(&config_path, MAX_JSON_BYTES)?).map_err(|e| corrupt(&config_path, e))?
    } else {
        serde_json::Value::Null
    };
    let template_path = dir.join(CHAT_TEMPLATE_FILE);
    let template = if template_path.is_file() {
        Some(String::from_utf8(read_bounded(&template_path, MAX_JSON_BYTES)?).map_err(|e| corrupt(&template_path, e))?)
    } else {
        match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        }
    };
    let bos = token_text(config.get("bos_token"));
    let eos = token_text(config.get("eos_token"));
    Tokenizer::from_tokenizer_json(&json, template, bos.as_deref(), eos.as_deref())
}

/// The tokenizer (and chat template) of whatever `path` is: a GGUF file, a model directory
/// (one GGUF, or Hugging Face files), or a `tokenizer.json` (with the `tokenizer_config.json`
/// beside it, if any). Loads no weights.
pub fn tokenizer_at(path: &Path) -> EngineResult<Tokenizer> {
    if path.is_file() && path.extension().is_some_and(|x| x.eq_ignore_ascii_case("json")) {
        let dir = path.parent().unwrap_or(Path::new("."));
        if path.file_name().is_some_and(|n| n == TOKENIZER_FILE) {
            return load_tokenizer(dir);
        }
        return Tokenizer::from_tokenizer_json_file(path);
    }
    match locate(path)? {
        ModelFiles::Gguf(file) => Tokenizer::from_spec(crate::tokenizer::VocabSpec::from_gguf(&file)?),
        ModelFiles::Safetensors(dir) => load_tokenizer(&dir),
    }
}

/// The dtype [`export_gguf`] writes weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportDType {
    /// Exact: the dequantized GGUF weights as they are.
    #[default]
    F32,
    /// Half the size; weights rounded to bfloat16 (8 significant bits).
    Bf16,
}

impl ExportDType {
    fn candle(self) -> DType {
        match self {
            ExportDType::F32 => DType::F32,
            ExportDType::Bf16 => DType::BF16,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            ExportDType::F32 => "float32",
            ExportDType::Bf16 => "bfloat16",
        }
    }
}

/// Writes the llama GGUF `gguf` as a Hugging Face directory at `out` (which must not exist):
/// `config.json`, `model.safetensors` (the dequantized weights in `dtype`, query/key rows
/// back in Hugging Face's order), `tokenizer.json` and `tokenizer_config.json` (chat template,
/// BOS/EOS). Everything is written to a sibling directory first and renamed into place, so an
/// interrupted export leaves nothing at `out`.
pub fn export_gguf(gguf: &Path, out: &Path, dtype: ExportDType) -> EngineResult<()> {
    if out.exists() {
        return Err(EngineError::io(out, std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the export's directory already exists")));
    }
    let (mut file, content, arch) = crate::model::open_gguf(gguf)?;
    if arch != Architecture::Llama {
        return Err(EngineError::Unsupported(format!("exporting a {} model to safetensors (llama only)", arch.gguf_name())));
    }
    let loaded = crate::model::load_gguf(gguf)?;
    let cfg = loaded.model.config().clone();
    let tokenizer = Tokenizer::from_spec(loaded.vocab)?;
    drop(loaded.model);
    let tokenizer_json = tokenizer.to_tokenizer_json()?;
    let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let Some((hf, permute)) = hf_tensor_name(name) else {
            return Err(EngineError::Unsupported(format!("{}: tensor `{name}` has no Hugging Face llama name", gguf.display())));
        };
        let q = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| crate::model::corrupt(gguf, format!("tensor `{name}`: {e}")))?;
        let mut t = q.dequantize(&Device::Cpu)?;
        if let Some(kv) = permute {
            t = to_hf_rows(&t, if kv { cfg.n_kv_head } else { cfg.n_head })?;
        }
        tensors.insert(hf, t.to_dtype(dtype.candle())?);
    }
    let tied = !tensors.contains_key("lm_head.weight");
    let config = HfConfig {
        model_type: "llama".into(),
        architectures: vec!["LlamaForCausalLM".into()],
        hidden_size: cfg.n_embd,
        intermediate_size: cfg.n_ff,
        num_hidden_layers: cfg.n_layer,
        num_attention_heads: cfg.n_head,
        num_key_value_heads: Some(cfg.n_kv_head),
        head_dim: Some(cfg.head_size),
        vocab_size: cfg.vocab_size,
        rms_norm_eps: cfg.rms_eps,
        rope_theta: cfg.rope_base,
        max_position_embeddings: cfg.context_length,
        tie_word_embeddings: tied,
        rope_scaling: None,
        hidden_act: "silu".into(),
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: tokenizer.bos_token(),
        eos_token_id: tokenizer.eos_token(),
        torch_dtype: Some(dtype.torch_name().into()),
    };
    let mut tokenizer_config = serde_json::json!({
        "add_bos_token": tokenizer.adds_bos(),
        "model_max_length": cfg.context_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = tokenizer.chat_template() {
        tokenizer_config["chat_template"] = t.into();
    }
    for (key, id) in [("bos_token", tokenizer.bos_token()), ("eos_token", tokenizer.eos_token())] {
        if let Some(id) = id {
            tokenizer_config[key] = tokenizer.token_text(id).into();
        }
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
    let stem = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    let partial = parent.join(format!(".{stem}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| EngineError::io(&partial, e))?;
    }
    std::fs::create_dir(&partial).map_err(|e| EngineError::io(&partial, e))?;
    let write = || -> EngineResult<()> {
        std::fs::write(partial.join(CONFIG_FILE), pretty(&config)?).map_err(|e| EngineError::io(&partial, e))?;
        std::fs::write(partial.join(TOKENIZER_CONFIG_FILE), pretty(&tokenizer_config)?).map_err(|e| EngineError::io(&partial, e))?;
        std::fs::write(partial.join(TOKENIZER_FILE), &tokenizer_json).map_err(|e| EngineError::io(&partial, e))?;
        candle_core::safetensors::save(&tensors, partial.join(WEIGHTS_FILE))?;
        // The safetensors writer creates its file owner-only (0600); the directory is for
        // publishing, so it gets the same permissions as the JSON files beside it.
        let readable = std::fs::metadata(partial.join(CONFIG_FILE)).map_err(|e| EngineError::io(&partial, e))?.permissions();
        std::fs::set_permissions(partial.join(WEIGHTS_FILE), readable).map_err(|e| EngineError::io(&partial, e))?;
        std::fs::rename(&partial, out).map_err(|e| EngineError::io(out, e))
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

fn pretty<T: Serialize>(value: &T) -> EngineResult<String> {
    serde_json::to_string_pretty(value).map_err(|e| EngineError::Unsupported(format!("serialising JSON: {e}")))
}
