//! Demo and test fixtures of the model-evaluation subnet (`ganglion localnet --model-eval`,
//! the end-to-end tests): a degraded copy of a GGUF model (seeded noise on some weights) and
//! a model directory around a GGUF file. Not an adversary (those live in `ganglion-redteam`):
//! a worse model published honestly, which the validator must rank below the original.

use std::path::{Path, PathBuf};

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

/// The `config.json` written next to a demo model's GGUF.
const CONFIG: &[u8] = br#"{"architectures":["LlamaForCausalLM"],"model_type":"llama"}"#;

/// A copy of `source` with seeded Gaussian noise (`noise` × each matrix's RMS) added to every
/// layer's attention output and FFN down projection, re-quantised to the same type; the other
/// tensors and the metadata are copied unchanged. At `noise` 0.2 SmolLM2-135M's mean loss
/// rises by about a sixth.
pub fn noised_copy(source: &Path, dest: &Path, noise: f32, seed: u64) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", source.display());
    let mut file = std::fs::File::open(source).map_err(|e| fail("opening", &e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| fail("reading", &e))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| fail(&format!("reading tensor {name} of"), &e))?;
        let t = if name.ends_with("ffn_down.weight") || name.ends_with("attn_output.weight") {
            noised(&t, noise, &mut rng).map_err(|e| fail(&format!("noising tensor {name} of"), &e))?
        } else {
            t
        };
        tensors.push((name.clone(), t));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    // Written aside and renamed: an interrupted run leaves no half file under the final name.
    let partial = dest.with_extension("partial");
    let mut out = std::fs::File::create(&partial).map_err(|e| format!("creating {}: {e}", partial.display()))?;
    gguf_file::write(&mut out, &metadata, &refs).map_err(|e| format!("writing {}: {e}", partial.display()))?;
    drop(out);
    std::fs::rename(&partial, dest).map_err(|e| format!("renaming {} to {}: {e}", partial.display(), dest.display()))
}

fn noised(t: &QTensor, noise: f32, rng: &mut rand::rngs::StdRng) -> candle_core::Result<QTensor> {
    let dense = t.dequantize(&Device::Cpu)?;
    let values: Vec<f32> = dense.flatten_all()?.to_vec1()?;
    let rms = (values.iter().map(|v| v * v).sum::<f32>() / values.len().max(1) as f32).sqrt();
    let noisy: Vec<f32> = values
        .iter()
        .map(|v| {
            // Box–Muller.
            let (u1, u2): (f32, f32) = (rng.gen_range(f32::MIN_POSITIVE..1.0), rng.r#gen());
            v + noise * rms * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect();
    QTensor::quantize(&Tensor::from_vec(noisy, dense.shape(), &Device::Cpu)?, t.dtype())
}

/// Makes `dir` a model directory of `gguf`: the file as `model.gguf` (hard-linked, or copied
/// across devices) and a `config.json`.
pub fn model_dir(dir: &Path, gguf: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let dest = dir.join("model.gguf");
    if dest.exists() {
        std::fs::remove_file(&dest)?;
    }
    if std::fs::hard_link(gguf, &dest).is_err() {
        std::fs::copy(gguf, &dest)?;
    }
    std::fs::write(dir.join("config.json"), CONFIG)?;
    Ok(dir.to_path_buf())
}

/// Total bytes of the files at the top of `dir`.
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}
