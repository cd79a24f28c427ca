//! Matrix–vector products on 32-weight-block quantized weights with f32 activations, for
//! decoding (one row per step).
//!
//! candle's quantized matmul first quantizes the *activations* to 8 bits, so a decode step
//! and a teacher-forced forward over the same tokens (which runs on dense weights, see
//! `model::Linear`) disagree by ~1e-2 in the logits: enough to move a token across a rank
//! threshold when a validator checks a miner's answer. Here every block computes
//! `d·Σ qᵢxᵢ + m·Σ xᵢ`, which is exactly `Σ (d·qᵢ + m)·xᵢ`, the dense product with the weights
//! as stored; only the rounding order differs (~1e-6 relative).
//!
//! Decoding reads every weight once per token, so it is bound by memory traffic and by the
//! cost of turning codes into floats. Codes are therefore kept as the file packs them (two
//! 4-bit codes per byte, 0.75 bytes per weight with the f32 scale and offset; 1 byte per
//! weight had made a full decode pass 1.6× slower on this machine), and the inner loop is the
//! explicit 8-lane kernel in [`crate::kernels`] (`vpmovzxbd` + `vcvtdq2ps` + FMA).
//!
//! Supported: Q4_0, Q4_1 (codes 0..15 with an offset) and Q8_0 (signed codes). Other types
//! return `None` from [`BlockMatrix::from_qtensor`] and the caller keeps candle's path.

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use crate::error::{EngineError, EngineResult};

/// Weights per block.
const BLOCK: usize = 32;

/// A row-major `(rows, cols)` matrix as per-block scales (and offsets) and packed codes.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    rows: usize,
    cols: usize,
    /// `rows × cols/32` block scales `d`.
    scales: Vec<f32>,
    codes: Codes,
}

#[derive(Debug, Clone)]
enum Codes {
    /// 4-bit codes in ggml order (byte `j` holds weight `j` low and `j + 16` high) with one
    /// offset `m` per block: `w = d·q + m`. Offsets are grouped by 8 rows
    /// ([`crate::kernels::group_offsets`]).
    Nibbles { codes: Vec<[u8; 16]>, offsets: Vec<[f32; crate::kernels::OFFSET_GROUP]> },
    /// 8-bit two's-complement codes: `w = d·q`.
    Signed(Vec<[u8; 32]>),
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

impl BlockMatrix {
    /// Converts a 2-D `(rows, cols)` quantized tensor, or `None` for unsupported types.
    pub fn from_qtensor(tensor: &QTensor) -> EngineResult<Option<BlockMatrix>> {
        let dims = tensor.shape().dims();
        let &[rows, cols] = dims else {
            return Ok(None);
        };
        let dtype = tensor.dtype();
        let block_bytes = match dtype {
            GgmlDType::Q4_0 => 18,
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => return Ok(None),
        };
        if cols % BLOCK != 0 {
            return Ok(None);
        }
        let data = tensor.data()?;
        let blocks = rows * cols / BLOCK;
        if data.len() != blocks * block_bytes {
            return Err(EngineError::Unsupported(format!(
                "{dtype:?} tensor of shape {dims:?} holds {} bytes, expected {}",
                data.len(),
                blocks * block_bytes
            )));
        }
        let mut scales = Vec::with_capacity(blocks);
        let codes = match dtype {
            GgmlDType::Q8_0 => {
                let mut codes = Vec::with_capacity(blocks);
                for block in data.chunks_exact(block_bytes) {
                    scales.push(f16_at(block, 0));
                    let mut q = [0u8; 32];
                    q.copy_from_slice(&block[2..]);
                    codes.push(q);
                }
                Codes::Signed(codes)
            }
            _ => {
                let mut codes = Vec::with_capacity(blocks);
                let mut offsets = Vec::with_capacity(blocks);
                for block in data.chunks_exact(block_bytes) {
                    let d = f16_at(block, 0);
                    // Q4_0 codes are q − 8: w = d·q − 8d (exact: d came from an f16).
                    let (m, nibbles) = if dtype == GgmlDType::Q4_1 { (f16_at(block, 2), &block[4..]) } else { (-8.0 * d, &block[2..]) };
                    scales.push(d);
                    offsets.push(m);
                    let mut q = [0u8; 16];
                    q.copy_from_slice(nibbles);
                    codes.push(q);
                }
                Codes::Nibbles { codes, offsets: crate::kernels::group_offsets(&offsets, rows, cols / BLOCK) }
            }
        };
        Ok(Some(BlockMatrix { rows, cols, scales, codes }))
    }

    /// Output size.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input size.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `out = W·x` for one activation row `x` of length `cols`.
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.cols, "activation length");
        assert_eq!(out.len(), self.rows, "output length");
        let (blocks, _) = x.as_chunks::<BLOCK>();
        match &self.codes {
            Codes::Nibbles { codes, offsets } => {
                // Σx per block, shared by every row (the offset term).
                let block_sums: Vec<f32> = blocks.iter().map(|b| b.iter().sum()).collect();
                crate::kernels::nibble_matvec(codes, &self.scales, offsets, blocks, &block_sums, out);
            }
            Codes::Signed(codes) => crate::kernels::signed_matvec(codes, &self.scales, blocks, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn random(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..rows * cols)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_the_dense_product_of_the_stored_weights() {
        let (rows, cols) = (48, 96);
        let w = Tensor::from_vec(random(rows, cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let x = random(1, cols, 2);
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let dense = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let matrix = BlockMatrix::from_qtensor(&q).unwrap().expect("supported type");
            let mut out = vec![0.0; rows];
            matrix.matvec(&x, &mut out);
            for (r, row) in dense.iter().enumerate() {
                let want: f64 = row.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let got = f64::from(out[r]);
                assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "{dtype:?} row {r}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn unsupported_types_and_shapes_are_declined() {
        let w = Tensor::from_vec(random(4, 256, 3), (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(BlockMatrix::from_qtensor(&q).unwrap().is_none());
        let v = QTensor::quantize(&Tensor::from_vec(random(1, 64, 4), 64, &Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap();
        assert!(BlockMatrix::from_qtensor(&v).unwrap().is_none());
    }
}
