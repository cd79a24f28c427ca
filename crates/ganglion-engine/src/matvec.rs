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
//! Supported: Q4_0, Q4_1 and Q4_K (codes 0..15 with an offset), Q8_0, Q5_0 and Q6_K (signed
//! codes; Q6_K with a scale per 16 weights). Other types return `None` from
//! [`BlockMatrix::from_qtensor`] and the caller keeps candle's path.

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use crate::error::{EngineError, EngineResult};

/// Weights per block.
const BLOCK: usize = 32;
/// Weights per K-quant super-block.
const SUPER: usize = 256;

/// A row-major `(rows, cols)` matrix as per-block scales (and offsets) and packed codes.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    rows: usize,
    cols: usize,
    codes: Codes,
}

/// Matrices with at least this many weights split one-row products across threads: below it
/// (SmolLM2's 192 × 576 key and value projections, ~20 µs a product) handing work to the
/// pool costs about what it saves.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 18;

#[derive(Debug, Clone)]
enum Codes {
    /// 4-bit codes in ggml order (byte `j` holds weight `j` low and `j + 16` high) with a
    /// scale `d` and an offset `m` per block: `w = d·q + m`. Offsets are grouped by 8 rows
    /// ([`crate::kernels::group_offsets`]). Q4_0, Q4_1 and (re-packed) Q4_K.
    Nibbles { codes: Vec<[u8; 16]>, scales: Vec<f32>, offsets: Vec<[f32; crate::kernels::OFFSET_GROUP]> },
    /// 8-bit two's-complement codes, `w = d·q`. Q8_0 and (widened) Q5_0.
    Signed { codes: Vec<[u8; 32]>, scales: Vec<f32> },
    /// 8-bit two's-complement codes with a scale per 16 weights. (Widened) Q6_K.
    SignedPairs { codes: Vec<[u8; 32]>, scales: Vec<[f32; 2]> },
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Bytes per stored block and weights per stored block of the types this module reads.
fn layout(dtype: GgmlDType) -> Option<(usize, usize)> {
    Some(match dtype {
        GgmlDType::Q4_0 => (18, BLOCK),
        GgmlDType::Q4_1 => (20, BLOCK),
        GgmlDType::Q5_0 => (22, BLOCK),
        GgmlDType::Q8_0 => (34, BLOCK),
        GgmlDType::Q4K => (144, SUPER),
        GgmlDType::Q6K => (210, SUPER),
        _ => return None,
    })
}

/// Packs 32 codes in 0..16 into the ggml nibble order (byte `j`: weight `j` low, `j + 16` high).
fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| q[j] | (q[j + 16] << 4))
}

/// Q4_K's 6-bit scale and min of sub-block `j` from its 12 packed bytes (ggml's
/// `get_scale_min_k4`): sub-blocks 0..4 keep theirs in the low 6 bits of bytes `j` and
/// `j + 4`; 4..8 split theirs into a nibble of bytes 8..12 and the top 2 bits of bytes 0..8.
fn q4k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

impl BlockMatrix {
    /// Converts a 2-D `(rows, cols)` quantized tensor, or `None` for unsupported types.
    ///
    /// The K-quants are re-laid into 32-weight blocks the kernels already run: a Q4_K
    /// sub-block is `w = (d·sc)·q − dmin·m`, i.e. a Q4_1 block with scale `d·sc` and offset
    /// `−dmin·m` (both exact in f32: an f16 times a 6-bit integer needs 17 significant bits);
    /// Q6_K's `w = (d·sc)·(q − 32)` with a signed 8-bit `sc` per 16 weights becomes signed
    /// codes with two scales per block; Q5_0's `w = d·(q − 16)` becomes signed codes. So every
    /// product is still `Σ_blocks scale·Σ code·x (+ offset·Σx)` on the stored weights exactly.
    pub fn from_qtensor(tensor: &QTensor) -> EngineResult<Option<BlockMatrix>> {
        let &[rows, cols] = tensor.shape().dims() else {
            return Ok(None);
        };
        if !BlockMatrix::supports(tensor.dtype(), cols) {
            return Ok(None);
        }
        BlockMatrix::from_bytes(tensor.dtype(), rows, cols, &tensor.data()?)
    }

    /// Whether `(rows, cols)` matrices of `dtype` have a block form.
    pub fn supports(dtype: GgmlDType, cols: usize) -> bool {
        layout(dtype).is_some_and(|(_, weights)| cols.is_multiple_of(weights))
    }

    /// Bytes of one stored row of `cols` weights of `dtype`, if supported.
    pub fn row_bytes(dtype: GgmlDType, cols: usize) -> Option<usize> {
        let (bytes, weights) = layout(dtype)?;
        cols.is_multiple_of(weights).then_some(cols / weights * bytes)
    }

    /// Appends the rows of `more` (same type family and width) below this matrix's. `self`
    /// must hold a multiple of 8 rows, so the row-grouped offsets stay aligned.
    pub fn append(&mut self, more: BlockMatrix) -> EngineResult<()> {
        let mismatch = || EngineError::Unsupported("appending block matrices of different layouts".into());
        if more.cols != self.cols || !self.rows.is_multiple_of(crate::kernels::OFFSET_GROUP) {
            return Err(mismatch());
        }
        match (&mut self.codes, more.codes) {
            (Codes::Nibbles { codes, scales, offsets }, Codes::Nibbles { codes: c, scales: d, offsets: m }) => {
                codes.extend(c);
                scales.extend(d);
                offsets.extend(m);
            }
            (Codes::Signed { codes, scales }, Codes::Signed { codes: c, scales: d }) => {
                codes.extend(c);
                scales.extend(d);
            }
            (Codes::SignedPairs { codes, scales }, Codes::SignedPairs { codes: c, scales: d }) => {
                codes.extend(c);
                scales.extend(d);
            }
            _ => return Err(mismatch()),
        }
        self.rows += more.rows;
        Ok(())
    }

    /// [`BlockMatrix::from_qtensor`] on the raw bytes of a `(rows, cols)` tensor of `dtype`.
    pub fn from_bytes(dtype: GgmlDType, rows: usize, cols: usize, data: &[u8]) -> EngineResult<Option<BlockMatrix>> {
        let dims = [rows, cols];
        let Some((block_bytes, block_weights)) = layout(dtype) else {
            return Ok(None);
        };
        if !cols.is_multiple_of(block_weights) {
            return Ok(None);
        }
        let stored = rows * cols / block_weights;
        if data.len() != stored * block_bytes {
            return Err(EngineError::Unsupported(format!(
                "{dtype:?} tensor of shape {dims:?} holds {} bytes, expected {}",
                data.len(),
                stored * block_bytes
            )));
        }
        let blocks = rows * cols / BLOCK;
        let stored_blocks = data.chunks_exact(block_bytes);
        let codes = match dtype {
            GgmlDType::Q8_0 => {
                let (mut codes, mut scales) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
                for block in stored_blocks {
                    scales.push(f16_at(block, 0));
                    let mut q = [0u8; 32];
                    q.copy_from_slice(&block[2..]);
                    codes.push(q);
                }
                Codes::Signed { codes, scales }
            }
            GgmlDType::Q5_0 => {
                let (mut codes, mut scales) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
                for block in stored_blocks {
                    scales.push(f16_at(block, 0));
                    // Bit j of the 32-bit `qh` is the fifth bit of weight j (ggml's layout):
                    // byte j's low nibble is weight j, its high nibble weight j + 16.
                    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                    let nibbles = &block[6..22];
                    let q: [u8; 32] = std::array::from_fn(|i| {
                        let low = if i < 16 { nibbles[i] & 0x0F } else { nibbles[i - 16] >> 4 };
                        let high = ((qh >> i) & 1) as u8;
                        ((i16::from(low | (high << 4)) - 16) as i8) as u8
                    });
                    codes.push(q);
                }
                Codes::Signed { codes, scales }
            }
            GgmlDType::Q6K => {
                let (mut codes, mut scales) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
                for block in stored_blocks {
                    let (ql, qh, sc) = (&block[..128], &block[128..192], &block[192..208]);
                    let d = f16_at(block, 208);
                    // ggml's order: in each 128-weight half n, weight 32k + l takes its low 4
                    // bits from ql[64n + l + 32(k&1)] (low nibble for k < 2, else high) and
                    // its top 2 bits from bits 2k..2k+2 of qh[32n + l].
                    let mut q = [0i8; SUPER];
                    for n in 0..2 {
                        for k in 0..4 {
                            for l in 0..32 {
                                let byte = ql[64 * n + l + 32 * (k & 1)];
                                let low = if k < 2 { byte & 0x0F } else { byte >> 4 };
                                let high = (qh[32 * n + l] >> (2 * k)) & 3;
                                q[128 * n + 32 * k + l] = (low | (high << 4)) as i8 - 32;
                            }
                        }
                    }
                    for (b, chunk) in q.chunks_exact(BLOCK).enumerate() {
                        codes.push(std::array::from_fn(|i| chunk[i] as u8));
                        // Weight group g (16 weights) has scale sc[g]; d·sc is exact in f32.
                        scales.push([d * f32::from(sc[2 * b] as i8), d * f32::from(sc[2 * b + 1] as i8)]);
                    }
                }
                Codes::SignedPairs { codes, scales }
            }
            GgmlDType::Q4K => {
                let (mut codes, mut scales, mut offsets) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks), Vec::with_capacity(blocks));
                for block in stored_blocks {
                    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
                    let (packed, qs) = (&block[4..16], &block[16..144]);
                    // Each 32 bytes of qs hold two sub-blocks: 2j in the low nibbles, 2j + 1 in
                    // the high ones.
                    for (j, bytes) in qs.chunks_exact(32).enumerate() {
                        for (half, shift) in [(0, 0), (1, 4)] {
                            let (sc, m) = q4k_scale_min(2 * j + half, packed);
                            scales.push(d * f32::from(sc));
                            offsets.push(-(dmin * f32::from(m)));
                            codes.push(pack_nibbles(&std::array::from_fn(|i| (bytes[i] >> shift) & 0x0F)));
                        }
                    }
                }
                Codes::Nibbles { codes, scales, offsets: crate::kernels::group_offsets(&offsets, rows, cols / BLOCK) }
            }
            _ => {
                let (mut codes, mut scales, mut offsets) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks), Vec::with_capacity(blocks));
                for block in stored_blocks {
                    let d = f16_at(block, 0);
                    // Q4_0 codes are q − 8: w = d·q − 8d (exact: d came from an f16).
                    let (m, nibbles) = if dtype == GgmlDType::Q4_1 { (f16_at(block, 2), &block[4..]) } else { (-8.0 * d, &block[2..]) };
                    scales.push(d);
                    offsets.push(m);
                    let mut q = [0u8; 16];
                    q.copy_from_slice(nibbles);
                    codes.push(q);
                }
                Codes::Nibbles { codes, scales, offsets: crate::kernels::group_offsets(&offsets, rows, cols / BLOCK) }
            }
        };
        Ok(Some(BlockMatrix { rows, cols, codes }))
    }

    /// Output size.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input size.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (codes, scales and offsets).
    pub fn bytes(&self) -> usize {
        let blocks = self.rows * self.cols / BLOCK;
        match &self.codes {
            Codes::Nibbles { offsets, .. } => blocks * (16 + 4) + offsets.len() * 4 * crate::kernels::OFFSET_GROUP,
            Codes::Signed { .. } => blocks * (32 + 4),
            Codes::SignedPairs { .. } => blocks * (32 + 8),
        }
    }

    /// `out = W·x` for one activation row `x` of length `cols`. Matrices of at least
    /// [`PARALLEL_MIN_WEIGHTS`] weights split their rows across the engine's threads (each
    /// row is computed alone, so the split changes nothing but the time).
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.cols, "activation length");
        assert_eq!(out.len(), self.rows, "output length");
        let (blocks, _) = x.as_chunks::<BLOCK>();
        // Σx per block, shared by every row (the offset term of 4-bit codes).
        let block_sums: Vec<f32> = match &self.codes {
            Codes::Nibbles { .. } => blocks.iter().map(|b| b.iter().sum()).collect(),
            _ => Vec::new(),
        };
        match self.rows_per_part() {
            None => self.matvec_rows(0, blocks, &block_sums, out),
            Some(per) => {
                use rayon::prelude::*;
                out.par_chunks_mut(per).enumerate().for_each(|(i, y)| self.matvec_rows(i * per, blocks, &block_sums, y));
            }
        }
    }

    /// Rows per thread for a one-row product, a multiple of the offset grouping; `None`
    /// when the matrix is too small for splitting to pay (or there is one thread).
    fn rows_per_part(&self) -> Option<usize> {
        let threads = rayon::current_num_threads();
        (threads > 1 && self.rows * self.cols >= PARALLEL_MIN_WEIGHTS && self.rows >= 2 * crate::kernels::OFFSET_GROUP)
            .then(|| self.rows.div_ceil(threads).next_multiple_of(crate::kernels::OFFSET_GROUP))
    }

    /// The codes of rows `first..first + len`.
    fn row_codes(&self, first: usize, len: usize) -> crate::kernels::RowCodes<'_> {
        use crate::kernels::RowCodes;
        let per_row = self.cols / BLOCK;
        let b = first * per_row..(first + len) * per_row;
        match &self.codes {
            Codes::Nibbles { codes, scales, .. } => RowCodes::Nibbles(&codes[b.clone()], &scales[b]),
            Codes::Signed { codes, scales } => RowCodes::Signed(&codes[b.clone()], &scales[b]),
            Codes::SignedPairs { codes, scales } => RowCodes::SignedPairs(&codes[b.clone()], &scales[b]),
        }
    }

    /// The grouped offsets of rows `first..first + len` (`first` a multiple of the
    /// grouping); empty for codes without offsets.
    fn row_offsets(&self, first: usize, len: usize) -> &[[f32; crate::kernels::OFFSET_GROUP]] {
        use crate::kernels::OFFSET_GROUP;
        let per_row = self.cols / BLOCK;
        match &self.codes {
            Codes::Nibbles { offsets, .. } => &offsets[first / OFFSET_GROUP * per_row..(first + len).div_ceil(OFFSET_GROUP) * per_row],
            _ => &[],
        }
    }

    /// Rows `first..first + out.len()` of `W·x`.
    fn matvec_rows(&self, first: usize, blocks: &[[f32; BLOCK]], block_sums: &[f32], out: &mut [f32]) {
        use crate::kernels::RowCodes;
        match self.row_codes(first, out.len()) {
            RowCodes::Nibbles(codes, scales) => {
                crate::kernels::nibble_matvec(codes, scales, self.row_offsets(first, out.len()), blocks, block_sums, out);
            }
            RowCodes::Signed(codes, scales) => crate::kernels::signed_matvec(codes, scales, blocks, out),
            RowCodes::SignedPairs(codes, scales) => crate::kernels::signed_pair_matvec(codes, scales, blocks, out),
        }
    }

    /// `out[i·rows..(i + 1)·rows] = W·xᵢ` for the `n` activation rows `x = [x₀ … xₙ₋₁]`
    /// (`n × cols`): a decode step of `n` sequences reading the weights once. Every output is
    /// bit-identical to [`BlockMatrix::matvec`] on that row alone. Rows split across threads
    /// as in [`BlockMatrix::matvec`].
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        assert_eq!(x.len(), n * self.cols, "activation length");
        assert_eq!(out.len(), n * self.rows, "output length");
        let (blocks, _) = x.as_chunks::<BLOCK>();
        let per_row = self.cols / BLOCK;
        let block_sums: Vec<Vec<f32>> = match &self.codes {
            Codes::Nibbles { .. } => blocks.chunks_exact(per_row).map(|input| input.iter().map(|b| b.iter().sum()).collect()).collect(),
            _ => Vec::new(),
        };
        // Rows `first..first + len` for every input, `(n, len)` row-major.
        let part = |first: usize, len: usize, y: &mut [f32]| {
            let offsets = self.row_offsets(first, len);
            // Nibble codes start from the offset terms; `block_sums` is empty for the others.
            for (sums, y) in block_sums.iter().zip(y.chunks_exact_mut(len)) {
                crate::kernels::nibble_offsets(offsets, sums, y);
            }
            crate::kernels::rows_times_inputs(self.row_codes(first, len), blocks, per_row, y);
        };
        match self.rows_per_part() {
            None => part(0, self.rows, out),
            Some(per) => {
                use rayon::prelude::*;
                let parts: Vec<(usize, Vec<f32>)> = (0..self.rows.div_ceil(per))
                    .into_par_iter()
                    .map(|i| {
                        let (first, len) = (i * per, per.min(self.rows - i * per));
                        let mut y = vec![0.0f32; n * len];
                        part(first, len, &mut y);
                        (first, y)
                    })
                    .collect();
                for (first, y) in parts {
                    let len = y.len() / n.max(1);
                    for (i, rows) in y.chunks_exact(len).enumerate() {
                        out[i * self.rows + first..i * self.rows + first + len].copy_from_slice(rows);
                    }
                }
            }
        }
    }

    /// The stored weights of rows `first..first + out.len() / cols` as f32, row-major.
    ///
    /// Each weight is computed exactly as ggml's (and candle's) `dequantize` does it:
    /// `d·q + m` for 4-bit codes (Q4_0's `d·(q − 8)` equals `d·q − 8d` exactly), `d·q` for
    /// signed ones, so dense products on these rows use the same weights as the block kernels.
    pub fn dequantize_rows(&self, first: usize, out: &mut [f32]) {
        let per_row = self.cols / BLOCK;
        let first_block = first * per_row;
        let (out, _) = out.as_chunks_mut::<BLOCK>();
        // One match per call and fixed-size blocks, so each inner loop is a straight
        // 16/32-lane conversion LLVM vectorizes (this runs once per batched product).
        match &self.codes {
            Codes::Nibbles { codes, scales, offsets } => {
                for (b, y) in (first_block..).zip(out.iter_mut()) {
                    let (row, col) = (b / per_row, b % per_row);
                    let m = offsets[(row / crate::kernels::OFFSET_GROUP) * per_row + col][row % crate::kernels::OFFSET_GROUP];
                    let (d, c) = (scales[b], &codes[b]);
                    let (low, high) = y.split_at_mut(16);
                    for ((lo, hi), &byte) in low.iter_mut().zip(high.iter_mut()).zip(c) {
                        *lo = d * f32::from(byte & 0x0F) + m;
                        *hi = d * f32::from(byte >> 4) + m;
                    }
                }
            }
            Codes::Signed { codes, scales } => {
                for (b, y) in (first_block..).zip(out.iter_mut()) {
                    let d = scales[b];
                    for (y, &q) in y.iter_mut().zip(&codes[b]) {
                        *y = d * f32::from(q as i8);
                    }
                }
            }
            Codes::SignedPairs { codes, scales } => {
                for (b, y) in (first_block..).zip(out.iter_mut()) {
                    let [d0, d1] = scales[b];
                    let (low, high) = y.split_at_mut(16);
                    for (y, &q) in low.iter_mut().zip(&codes[b][..16]) {
                        *y = d0 * f32::from(q as i8);
                    }
                    for (y, &q) in high.iter_mut().zip(&codes[b][16..]) {
                        *y = d1 * f32::from(q as i8);
                    }
                }
            }
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
        // 512 columns: two K-quant super-blocks per row. 40 rows: five offset groups.
        let (rows, cols) = (40, 512);
        let w = Tensor::from_vec(random(rows, cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let x = random(1, cols, 2);
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q5_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            // candle's dequantize is the reference for what the stored weights are.
            let dense = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let matrix = BlockMatrix::from_qtensor(&q).unwrap().expect("supported type");
            let mut out = vec![0.0; rows];
            matrix.matvec(&x, &mut out);
            for (r, row) in dense.iter().enumerate() {
                let want: f64 = row.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let got = f64::from(out[r]);
                assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "{dtype:?} row {r}: {got} vs {want}");
            }
            // Dequantizing our layout gives candle's weights exactly (compared as numbers:
            // Q4_0's `d·q − 8d` is +0 where candle's `(q − 8)·d` is −0 for a negative d).
            let mut ours = vec![0.0f32; 3 * cols];
            matrix.dequantize_rows(9, &mut ours);
            let theirs: Vec<f32> = dense[9..12].iter().flatten().copied().collect();
            assert!(ours == theirs, "{dtype:?}: dequantized weights differ from candle's");
        }
    }

    #[test]
    fn batched_products_are_bit_identical_to_one_row_products() {
        let (rows, cols) = (24, 512);
        let w = Tensor::from_vec(random(rows, cols, 5), (rows, cols), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let matrix = BlockMatrix::from_qtensor(&QTensor::quantize(&w, dtype).unwrap()).unwrap().expect("supported type");
            for n in [1, 3, 4, 6, 9] {
                let x = random(n, cols, 6 + n as u64);
                let mut batched = vec![0.0f32; n * rows];
                matrix.matmul(&x, n, &mut batched);
                for (input, got) in x.chunks_exact(cols).zip(batched.chunks_exact(rows)) {
                    let mut alone = vec![0.0f32; rows];
                    matrix.matvec(input, &mut alone);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(got), bits(&alone), "{dtype:?} with {n} inputs");
                }
            }
        }
    }

    #[test]
    fn unsupported_types_and_shapes_are_declined() {
        let w = Tensor::from_vec(random(4, 256, 3), (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q5K).unwrap();
        assert!(BlockMatrix::from_qtensor(&q).unwrap().is_none());
        let v = QTensor::quantize(&Tensor::from_vec(random(1, 64, 4), 64, &Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap();
        assert!(BlockMatrix::from_qtensor(&v).unwrap().is_none());
    }
}
