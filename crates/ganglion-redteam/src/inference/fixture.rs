//! The `other-model` fixture: a perturbed copy of SmolLM2 — every weight matrix with seeded
//! Gaussian noise added and re-quantised to its own block type (or a lower-bit one) — written
//! next to the real model in the model cache on first use, like `ganglion model pull` does
//! for the real one. It loads in the built-in engine and talks fluently, but it is not the
//! model the validator verifies: a cheaper or different model answering under its name.
//!
//! (Gemma 3 270M, the other candidate from the issue, is not loadable by the engine yet: it
//! is a llama-family GGUF only.)

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr_free::gaussian;

use crate::error::{RedteamError, Result};

/// How the copy differs from the real model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perturbation {
    /// Noise standard deviation relative to each matrix's RMS.
    pub noise: f32,
    /// Re-quantise the matrices to Q4_0 (4 bits, no offset) instead of their own type.
    pub lower_bits: bool,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for Perturbation {
    fn default() -> Self {
        Perturbation { noise: 0.15, lower_bits: true, seed: 7 }
    }
}

impl Perturbation {
    /// The file name of this copy of `source` (so that each variant is made once).
    pub fn file_name(&self, source: &Path) -> String {
        let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let bits = if self.lower_bits { "q4_0" } else { "same" };
        format!("{stem}.redteam-noise{:.3}-{bits}-seed{}.gguf", self.noise, self.seed)
    }
}

fn fixture_error(path: &Path, message: impl std::fmt::Display) -> RedteamError {
    RedteamError::Fixture { path: path.to_path_buf(), message: message.to_string() }
}

/// The perturbed copy of `source` in `dir`, made now if it is not there yet.
pub fn ensure_perturbed(source: &Path, dir: &Path, perturbation: Perturbation) -> Result<PathBuf> {
    let dest = dir.join(perturbation.file_name(source));
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(dir).map_err(|e| RedteamError::Io(format!("creating {}", dir.display()), e))?;
    tracing::info!(target: "redteam", source = %source.display(), dest = %dest.display(), ?perturbation, "writing the other-model fixture");
    perturb(source, &dest, perturbation)?;
    Ok(dest)
}

/// Writes a perturbed copy of the GGUF `source` to `dest` (atomically: a temporary file,
/// then a rename).
pub fn perturb(source: &Path, dest: &Path, perturbation: Perturbation) -> Result<()> {
    let mut file = File::open(source).map_err(|e| RedteamError::Io(format!("opening {}", source.display()), e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| fixture_error(source, e))?;
    let mut rng = StdRng::seed_from_u64(perturbation.seed);
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    // A fixed order, so that one seed gives one file.
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let original = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| fixture_error(source, e))?;
        let changed = if original.shape().dims().len() >= 2 && !matches!(original.dtype(), GgmlDType::F32 | GgmlDType::F16) {
            perturb_matrix(&original, perturbation, &mut rng).map_err(|e| fixture_error(source, format!("{name}: {e}")))?
        } else {
            original
        };
        tensors.push((name.as_str(), changed));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let tmp = dest.with_extension("gguf.partial");
    let mut out = File::create(&tmp).map_err(|e| RedteamError::Io(format!("creating {}", tmp.display()), e))?;
    gguf_file::write(&mut out, &metadata, &refs).map_err(|e| fixture_error(&tmp, e))?;
    out.sync_all().map_err(|e| RedteamError::Io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, dest).map_err(|e| RedteamError::Io(format!("renaming {}", tmp.display()), e))?;
    Ok(())
}

fn perturb_matrix(original: &QTensor, perturbation: Perturbation, rng: &mut StdRng) -> candle_core::Result<QTensor> {
    let dense = original.dequantize(&Device::Cpu)?;
    let values: Vec<f32> = dense.flatten_all()?.to_vec1()?;
    let rms = (values.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / values.len().max(1) as f64).sqrt() as f32;
    let sigma = perturbation.noise * rms;
    let noisy: Vec<f32> = values.iter().map(|v| v + sigma * gaussian(rng)).collect();
    let noisy = Tensor::from_vec(noisy, dense.shape(), &Device::Cpu)?;
    let dtype = if perturbation.lower_bits { GgmlDType::Q4_0 } else { original.dtype() };
    QTensor::quantize(&noisy, dtype).or_else(|_| QTensor::quantize(&noisy, original.dtype()))
}

/// A standard normal draw (Box–Muller) without another dependency.
mod rand_distr_free {
    use rand::Rng;

    pub(super) fn gaussian(rng: &mut impl Rng) -> f32 {
        let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.r#gen();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_draws_have_unit_variance() {
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<f64> = (0..20_000).map(|_| f64::from(gaussian(&mut rng))).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    #[test]
    fn each_variant_has_its_own_file() {
        let source = Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf");
        let a = Perturbation::default().file_name(source);
        let b = Perturbation { noise: 0.3, ..Perturbation::default() }.file_name(source);
        assert_ne!(a, b);
        assert!(a.starts_with("SmolLM2-135M-Instruct.Q4_1.redteam-"), "{a}");
    }

    #[test]
    fn a_perturbed_matrix_differs_but_keeps_its_scale() {
        let mut rng = StdRng::seed_from_u64(3);
        let values: Vec<f32> = (0..64 * 32).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let dense = Tensor::from_vec(values.clone(), (64, 32), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&dense, GgmlDType::Q8_0).unwrap();
        let p = perturb_matrix(&q, Perturbation { noise: 0.2, lower_bits: true, seed: 3 }, &mut rng).unwrap();
        assert_eq!(p.dtype(), GgmlDType::Q4_0);
        let back: Vec<f32> = p.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let diff = back.iter().zip(&values).map(|(a, b)| (a - b).abs()).sum::<f32>() / values.len() as f32;
        assert!(diff > 0.05 && diff < 0.6, "mean absolute change {diff}");
    }
}
