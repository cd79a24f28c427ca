//! The model checks of spec A3 on a GGUF file or a Hugging Face safetensors directory, before
//! anything loads it: size, architecture, parameter count, and the Frobenius norms of each
//! layer's `q/k/v/o` projections and `up/down` feed-forward matrices (dequantised from the
//! stored blocks, or widened from f16/bf16).
//!
//! A hostile file must fail here with a typed error and bounded memory: the size is checked
//! before any read; candle's GGUF header reader bounds every string and array by the file
//! size; here every tensor's element count is computed with overflow checks, its bytes must
//! lie inside the file (safetensors: headers of at most 100 MB, validated by the
//! `safetensors` crate, ending exactly at the file's end), and a NaN or infinite norm (a
//! poisoned weight) rejects the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file;

/// The norm thresholds (finetuning `constants`: `norm_eps_soft`, `…_percent_threshold`, `norm_eps_hard`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NormLimits {
    /// A layer matrix with a larger norm is "soft" over.
    pub soft: f64,
    /// The mean over the six matrix kinds of the fraction of layers over `soft` must not exceed this.
    pub soft_fraction: f64,
    /// Any matrix with a larger norm rejects the model.
    pub hard: f64,
}

impl Default for NormLimits {
    fn default() -> Self {
        NormLimits { soft: 200.0, soft_fraction: 0.15, hard: 1000.0 }
    }
}

/// What a competition allows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelLimits {
    /// Largest file.
    pub max_bytes: u64,
    /// `general.architecture` values allowed (`llama`, `gemma3`).
    pub architectures: Vec<String>,
    /// Most parameters.
    pub max_parameters: u64,
    /// Fewest parameters (taoverse's `min_model_parameter_size`).
    pub min_parameters: u64,
    /// The norm checks, if any.
    pub norms: Option<NormLimits>,
}

/// Why a model file is rejected.
#[derive(Debug, thiserror::Error)]
pub enum ModelCheckError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Larger than the competition allows.
    #[error("the model file is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a GGUF file, or a malformed header.
    #[error("not a readable GGUF file: {0}")]
    Malformed(String),
    /// A tensor whose shape or placement is impossible.
    #[error("tensor `{name}`: {reason}")]
    BadTensor {
        /// The tensor.
        name: String,
        /// Why.
        reason: String,
    },
    /// An architecture the competition does not take.
    #[error("architecture `{found}` is not allowed here (allowed: {allowed})")]
    Architecture {
        /// `general.architecture`.
        found: String,
        /// The allowed list.
        allowed: String,
    },
    /// Parameter count out of range.
    #[error("{count} parameters; allowed {min}..={max}")]
    Parameters {
        /// Counted.
        count: u64,
        /// Lower bound.
        min: u64,
        /// Upper bound.
        max: u64,
    },
    /// A weight matrix holds NaN or infinity.
    #[error("tensor `{0}` holds NaN or infinite weights")]
    NonFinite(String),
    /// A matrix over the hard norm limit.
    #[error("tensor `{name}` has Frobenius norm {norm:.1}, over the hard limit {limit}")]
    HardNorm {
        /// The tensor.
        name: String,
        /// Its norm.
        norm: f64,
        /// The limit.
        limit: f64,
    },
    /// Too many layers over the soft norm limit.
    #[error("on average {fraction:.3} of the layers have norms over {soft}; at most {limit} allowed")]
    SoftNorm {
        /// The mean fraction.
        fraction: f64,
        /// The soft limit.
        soft: f64,
        /// The allowed fraction.
        limit: f64,
    },
}

/// What the header says about a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// `general.architecture`.
    pub architecture: String,
    /// Number of transformer blocks (`<arch>.block_count`, else counted from tensor names).
    pub layers: usize,
    /// Σ elements of every tensor.
    pub parameters: u64,
    /// File size.
    pub bytes: u64,
}

/// The six matrix kinds whose norms are checked, as GGUF names them (HF's
/// `q_proj k_proj v_proj o_proj up_proj down_proj`).
pub const NORM_TENSORS: [&str; 6] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"];

/// Per layer, per kind ([`NORM_TENSORS`] order), the Frobenius norm.
pub type LayerNorms = Vec<[f64; 6]>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelCheckError + '_ {
    move |source| ModelCheckError::Io { path: path.to_path_buf(), source }
}

/// Opens `path`, checks its size, reads the header (bounded) and checks every tensor's shape
/// and placement. Returns the header for [`layer_norms`].
pub fn open(path: &Path, max_bytes: u64) -> Result<(ModelInfo, gguf_file::Content), ModelCheckError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    if size > max_bytes {
        return Err(ModelCheckError::TooLarge { size, limit: max_bytes });
    }
    let content = gguf_file::Content::read(&mut file).map_err(|e| ModelCheckError::Malformed(e.to_string()))?;
    let architecture = match content.metadata.get("general.architecture") {
        Some(gguf_file::Value::String(s)) => s.clone(),
        _ => return Err(ModelCheckError::Malformed("`general.architecture` is missing".into())),
    };
    let mut parameters = 0u64;
    for (name, info) in &content.tensor_infos {
        let bad = |reason: String| ModelCheckError::BadTensor { name: name.clone(), reason };
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| bad(format!("shape {:?} overflows", info.shape.dims())))?;
        let block = info.ggml_dtype.block_size() as u64;
        if elems % block != 0 {
            return Err(bad(format!("{elems} elements are not whole blocks of {block}")));
        }
        let bytes = (elems / block)
            .checked_mul(info.ggml_dtype.type_size() as u64)
            .ok_or_else(|| bad("size overflows".into()))?;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|s| s.checked_add(bytes))
            .ok_or_else(|| bad("offset overflows".into()))?;
        if end > size {
            return Err(bad(format!("ends at byte {end} but the file has {size} (truncated?)")));
        }
        parameters = parameters.checked_add(elems).ok_or_else(|| bad("parameter count overflows".into()))?;
    }
    let counted = content
        .tensor_infos
        .keys()
        .filter_map(|n| n.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let layers = match content.metadata.get(&format!("{architecture}.block_count")).map(|v| v.to_u64()) {
        Some(Ok(n)) if n as usize == counted => counted,
        Some(Ok(n)) => {
            return Err(ModelCheckError::Malformed(format!("block_count is {n} but the tensors have {counted} blocks")));
        }
        _ => counted,
    };
    Ok((ModelInfo { architecture, layers, parameters, bytes: size }, content))
}

/// The Frobenius norm of each layer's six checked matrices, dequantised one tensor at a time.
pub fn layer_norms(path: &Path, info: &ModelInfo, content: &gguf_file::Content) -> Result<LayerNorms, ModelCheckError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::with_capacity(info.layers);
    for layer in 0..info.layers {
        let mut norms = [0.0f64; 6];
        for (slot, kind) in NORM_TENSORS.iter().enumerate() {
            let name = format!("blk.{layer}.{kind}.weight");
            let bad = |reason: String| ModelCheckError::BadTensor { name: name.clone(), reason };
            if !content.tensor_infos.contains_key(&name) {
                return Err(bad("missing".into()));
            }
            let q = content.tensor(&mut file, &name, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
            let values = q
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(e.to_string()))?;
            let mut sum = 0.0f64;
            for v in values {
                let v = f64::from(v);
                sum += v * v;
            }
            if !sum.is_finite() {
                return Err(ModelCheckError::NonFinite(name));
            }
            norms[slot] = sum.sqrt();
        }
        out.push(norms);
    }
    Ok(out)
}

/// The original's verdict on the norms: any over `hard` rejects; otherwise the mean over the
/// six kinds of the fraction of layers over `soft` must be at most `soft_fraction`.
pub fn judge_norms(norms: &LayerNorms, limits: &NormLimits) -> Result<(), ModelCheckError> {
    for (layer, row) in norms.iter().enumerate() {
        for (kind, &n) in NORM_TENSORS.iter().zip(row) {
            if n > limits.hard {
                return Err(ModelCheckError::HardNorm { name: format!("blk.{layer}.{kind}.weight"), norm: n, limit: limits.hard });
            }
        }
    }
    if norms.is_empty() {
        return Ok(());
    }
    let layers = norms.len() as f64;
    let fraction = (0..6).map(|k| norms.iter().filter(|row| row[k] > limits.soft).count() as f64 / layers).sum::<f64>() / 6.0;
    if fraction > limits.soft_fraction {
        return Err(ModelCheckError::SoftNorm { fraction, soft: limits.soft, limit: limits.soft_fraction });
    }
    Ok(())
}

/// Every check of spec A3 on one model (a GGUF file, or a Hugging Face safetensors directory),
/// in order of cost: size, header and tensor placement, architecture, parameter count, norms.
pub fn check_model(path: &Path, limits: &ModelLimits) -> Result<ModelInfo, ModelCheckError> {
    if path.is_dir() {
        return check_safetensors(path, limits);
    }
    let (info, content) = open(path, limits.max_bytes)?;
    if !limits.architectures.iter().any(|a| a == &info.architecture) {
        return Err(ModelCheckError::Architecture { found: info.architecture, allowed: limits.architectures.join(", ") });
    }
    if info.parameters > limits.max_parameters || info.parameters < limits.min_parameters {
        return Err(ModelCheckError::Parameters { count: info.parameters, min: limits.min_parameters, max: limits.max_parameters });
    }
    if let Some(norm_limits) = &limits.norms {
        let norms = layer_norms(path, &info, &content)?;
        judge_norms(&norms, norm_limits)?;
    }
    Ok(info)
}

/// The Hugging Face names of [`NORM_TENSORS`], in the same order.
const HF_NORM_TENSORS: [&str; 6] =
    ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"];

/// [`check_model`] on a safetensors directory: the weight files' total size, `config.json`'s
/// `model_type` as the architecture, the parameters counted from the validated headers, and
/// the norms (the query/key row order does not change a Frobenius norm).
fn check_safetensors(dir: &Path, limits: &ModelLimits) -> Result<ModelInfo, ModelCheckError> {
    use ganglion_engine::hf_model::{HfConfig, SafetensorsFiles};
    let mut size = 0u64;
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.take(4096) {
        let entry = entry.map_err(io(dir))?;
        if entry.path().extension().is_some_and(|x| x == "safetensors") {
            size = size.saturating_add(entry.metadata().map_err(io(dir))?.len());
        }
    }
    if size > limits.max_bytes {
        return Err(ModelCheckError::TooLarge { size, limit: limits.max_bytes });
    }
    let config = HfConfig::read(dir).map_err(|e| ModelCheckError::Malformed(e.to_string()))?;
    if !limits.architectures.iter().any(|a| a == &config.model_type) {
        return Err(ModelCheckError::Architecture { found: config.model_type, allowed: limits.architectures.join(", ") });
    }
    let files = SafetensorsFiles::open(dir).map_err(|e| ModelCheckError::Malformed(e.to_string()))?;
    let parameters = files.parameters();
    if parameters > limits.max_parameters || parameters < limits.min_parameters {
        return Err(ModelCheckError::Parameters { count: parameters, min: limits.min_parameters, max: limits.max_parameters });
    }
    let counted = files
        .tensors()
        .filter_map(|(n, _, _)| n.strip_prefix("model.layers.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    if counted != config.num_hidden_layers {
        return Err(ModelCheckError::Malformed(format!("num_hidden_layers is {} but the tensors have {counted} layers", config.num_hidden_layers)));
    }
    let info = ModelInfo { architecture: config.model_type, layers: counted, parameters, bytes: size };
    if let Some(norm_limits) = &limits.norms {
        let mut norms = Vec::with_capacity(counted);
        for layer in 0..counted {
            let mut row = [0.0f64; 6];
            for (slot, kind) in HF_NORM_TENSORS.iter().enumerate() {
                let name = format!("model.layers.{layer}.{kind}.weight");
                let values = files
                    .read_f32(&name)
                    .and_then(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
                    .map_err(|e| ModelCheckError::BadTensor { name: name.clone(), reason: e.to_string() })?;
                let sum: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                if !sum.is_finite() {
                    return Err(ModelCheckError::NonFinite(name));
                }
                row[slot] = sum.sqrt();
            }
            norms.push(row);
        }
        judge_norms(&norms, norm_limits)?;
    }
    Ok(info)
}

/// Summary of [`layer_norms`] for status pages: the largest norm per kind.
pub fn max_norms(norms: &LayerNorms) -> BTreeMap<&'static str, f64> {
    NORM_TENSORS
        .iter()
        .enumerate()
        .map(|(k, name)| (*name, norms.iter().map(|r| r[k]).fold(0.0, f64::max)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_and_hard_norm_rules() {
        let l = NormLimits::default();
        // 10 layers, all small: fine.
        let mut n: LayerNorms = vec![[10.0; 6]; 10];
        judge_norms(&n, &l).unwrap();
        // One kind over soft in 8 of 10 layers: mean fraction 0.8/6 = 0.133 — allowed.
        for row in n.iter_mut().take(8) {
            row[0] = 300.0;
        }
        judge_norms(&n, &l).unwrap();
        // Another kind over soft in 2 layers: (0.8 + 0.2)/6 = 0.1667 — rejected.
        n[0][3] = 250.0;
        n[1][3] = 250.0;
        assert!(matches!(judge_norms(&n, &l), Err(ModelCheckError::SoftNorm { .. })));
        // Over hard anywhere rejects.
        let mut h: LayerNorms = vec![[10.0; 6]; 3];
        h[2][5] = 1000.5;
        match judge_norms(&h, &l) {
            Err(ModelCheckError::HardNorm { name, .. }) => assert_eq!(name, "blk.2.ffn_down.weight"),
            other => panic!("{other:?}"),
        }
    }
}
