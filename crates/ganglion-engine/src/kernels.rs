//! The few SIMD loops decoding spends its time in, written once over an 8-lane `f32`
//! abstraction ([`Lanes`]) with two backends: AVX2 + FMA through `pulp` (safe wrappers over
//! `core::arch`, chosen at run time) and portable arrays.
//!
//! Why explicit lanes: the previous plain-Rust loops compiled to 2-wide SSE (LLVM's SLP
//! vectorizer splits the `u8 → f32` conversions into `movzwl`/`vpmovzxbd xmm` pairs), so the
//! decode matvec ran ~7× below what the hardware does with 8-wide `vpmovzxbd ymm` + FMA
//! (measured on 576-wide rows: 404 ns → 56 ns per row). The workspace forbids `unsafe`, and
//! `core::arch` intrinsics are only safe inside `#[target_feature]` functions, which `pulp`
//! provides.
//!
//! Determinism: both backends perform the same IEEE operations in the same order (products,
//! fused multiply-adds, a fixed pairwise lane reduction; integer codes convert to `f32`
//! exactly), so they give identical bits; `tests` checks this. Nothing here depends on the
//! thread count.

/// One 8-lane `f32` vector type and the operations the kernels use.
pub(crate) trait Lanes: Copy {
    /// Eight `f32`.
    type V: Copy;
    /// All lanes `v`.
    fn splat(self, v: f32) -> Self::V;
    /// Eight consecutive values.
    fn load(self, x: &[f32; 8]) -> Self::V;
    /// Back to an array.
    fn store(self, v: Self::V) -> [f32; 8];
    /// `a · b` lane-wise.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a · b + c` lane-wise with a single rounding.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Eight bytes as unsigned integers, split into (low nibbles, high nibbles), as `f32`.
    fn nibbles(self, b: &[u8; 8]) -> (Self::V, Self::V);
    /// Eight bytes as signed (two's complement) integers, as `f32`.
    fn signed_bytes(self, b: &[u8; 8]) -> Self::V;
}

/// Plain arrays: the reference backend and the fallback on CPUs without AVX2/FMA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Lanes for Portable {
    type V = [f32; 8];
    #[inline(always)]
    fn splat(self, v: f32) -> [f32; 8] {
        [v; 8]
    }
    #[inline(always)]
    fn load(self, x: &[f32; 8]) -> [f32; 8] {
        *x
    }
    #[inline(always)]
    fn store(self, v: [f32; 8]) -> [f32; 8] {
        v
    }
    #[inline(always)]
    fn mul(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn fma(self, a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    #[inline(always)]
    fn nibbles(self, b: &[u8; 8]) -> ([f32; 8], [f32; 8]) {
        (b.map(|v| f32::from(v & 0x0F)), b.map(|v| f32::from(v >> 4)))
    }
    #[inline(always)]
    fn signed_bytes(self, b: &[u8; 8]) -> [f32; 8] {
        b.map(|v| f32::from(v as i8))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{__m256, __m256i};

    use pulp::x86::V3;

    /// AVX2 + FMA (x86-64-v3), available once `V3::try_new` has confirmed the CPU has them.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx2(pub(crate) V3);

    impl Avx2 {
        #[inline(always)]
        fn widen(self, b: &[u8; 8]) -> __m256i {
            let s = self.0;
            // The 8 bytes in the low half of an xmm register; `vpmovzxbd` widens them to 8 lanes
            // (LLVM folds the load into `vpmovzxbd ymm, [mem]`).
            s.avx2._mm256_cvtepu8_epi32(s.sse2._mm_set_epi64x(0, i64::from_le_bytes(*b)))
        }
    }

    impl super::Lanes for Avx2 {
        type V = __m256;
        #[inline(always)]
        fn splat(self, v: f32) -> __m256 {
            self.0.avx._mm256_set1_ps(v)
        }
        #[inline(always)]
        fn load(self, x: &[f32; 8]) -> __m256 {
            pulp::cast(*x)
        }
        #[inline(always)]
        fn store(self, v: __m256) -> [f32; 8] {
            pulp::cast(v)
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            self.0.avx._mm256_mul_ps(a, b)
        }
        #[inline(always)]
        fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            self.0.fma._mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        fn nibbles(self, b: &[u8; 8]) -> (__m256, __m256) {
            let s = self.0;
            let wide = self.widen(b);
            let low = s.avx2._mm256_and_si256(wide, s.avx._mm256_set1_epi32(0x0F));
            let high = s.avx2._mm256_srli_epi32::<4>(wide);
            (s.avx._mm256_cvtepi32_ps(low), s.avx._mm256_cvtepi32_ps(high))
        }
        #[inline(always)]
        fn signed_bytes(self, b: &[u8; 8]) -> __m256 {
            let s = self.0;
            let wide = s.avx2._mm256_cvtepi8_epi32(s.sse2._mm_set_epi64x(0, i64::from_le_bytes(*b)));
            s.avx._mm256_cvtepi32_ps(wide)
        }
    }
}

/// Runs `$body` with `$lanes` bound to the best backend this CPU has. The body is compiled
/// once per backend; on x86-64 the AVX2 one runs inside `pulp`'s `#[target_feature]` frame so
/// the intrinsics inline even without a global `-C target-cpu`.
macro_rules! with_lanes {
    (|$lanes:ident| $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V3::try_new() {
                return simd.vectorize(
                    #[inline(always)]
                    || {
                        let $lanes = avx2::Avx2(simd);
                        $body
                    },
                );
            }
        }
        let $lanes = Portable;
        $body
    }};
}

/// Lane sum in a fixed pairwise order.
#[inline(always)]
fn reduce(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `Σ_b d_b · Σ_{i<32} q_{b,i} x_{b,i}` for one row of 4-bit codes in ggml order (byte `j`
/// of a block holds weight `j` in its low nibble and weight `j + 16` in its high nibble).
#[inline(always)]
fn nibble_row<L: Lanes>(l: L, codes: &[[u8; 16]], scales: &[f32], x: &[[f32; 32]]) -> f32 {
    let mut acc = l.splat(0.0);
    for ((c, &d), x) in codes.iter().zip(scales).zip(x) {
        let (c8, _) = c.as_chunks::<8>();
        let (x8, _) = x.as_chunks::<8>();
        let (q0, q2) = l.nibbles(&c8[0]);
        let (q1, q3) = l.nibbles(&c8[1]);
        let mut p = l.mul(q0, l.load(&x8[0]));
        p = l.fma(q1, l.load(&x8[1]), p);
        p = l.fma(q2, l.load(&x8[2]), p);
        p = l.fma(q3, l.load(&x8[3]), p);
        acc = l.fma(p, l.splat(d), acc);
    }
    reduce(l.store(acc))
}

/// The same for 8-bit signed codes (32 bytes per block).
#[inline(always)]
fn signed_row<L: Lanes>(l: L, codes: &[[u8; 32]], scales: &[f32], x: &[[f32; 32]]) -> f32 {
    let mut acc = l.splat(0.0);
    for ((c, &d), x) in codes.iter().zip(scales).zip(x) {
        let (c8, _) = c.as_chunks::<8>();
        let (x8, _) = x.as_chunks::<8>();
        let mut p = l.mul(l.signed_bytes(&c8[0]), l.load(&x8[0]));
        p = l.fma(l.signed_bytes(&c8[1]), l.load(&x8[1]), p);
        p = l.fma(l.signed_bytes(&c8[2]), l.load(&x8[2]), p);
        p = l.fma(l.signed_bytes(&c8[3]), l.load(&x8[3]), p);
        acc = l.fma(p, l.splat(d), acc);
    }
    reduce(l.store(acc))
}

/// The same for 8-bit signed codes with one scale per 16 weights (Q6_K's sub-blocks):
/// `scales[b] = [d for weights 0..16, d for weights 16..32]`. Each half is summed in its own
/// vector before its scale is applied, as [`signed_row`] does for a whole block.
#[inline(always)]
fn signed_pair_row<L: Lanes>(l: L, codes: &[[u8; 32]], scales: &[[f32; 2]], x: &[[f32; 32]]) -> f32 {
    let mut acc = l.splat(0.0);
    for ((c, d), x) in codes.iter().zip(scales).zip(x) {
        let (c8, _) = c.as_chunks::<8>();
        let (x8, _) = x.as_chunks::<8>();
        let mut p = l.mul(l.signed_bytes(&c8[0]), l.load(&x8[0]));
        p = l.fma(l.signed_bytes(&c8[1]), l.load(&x8[1]), p);
        acc = l.fma(p, l.splat(d[0]), acc);
        let mut p = l.mul(l.signed_bytes(&c8[2]), l.load(&x8[2]));
        p = l.fma(l.signed_bytes(&c8[3]), l.load(&x8[3]), p);
        acc = l.fma(p, l.splat(d[1]), acc);
    }
    reduce(l.store(acc))
}

/// Rows per group in the offset layout of [`group_offsets`]: one vector of lanes.
pub(crate) const OFFSET_GROUP: usize = 8;

/// Re-lays row-major `(rows, blocks)` block offsets for [`nibble_matvec`]: entry
/// `g·blocks + b` holds block `b`'s offsets for rows `8g..8g+8`, zero past the last row.
/// The offset term `Σ_b m_b·Σx_b` then runs eight rows per vector instruction instead of as a
/// scalar chain per row (it was ~12% of the decode matvec in a perf profile).
pub(crate) fn group_offsets(row_major: &[f32], rows: usize, blocks: usize) -> Vec<[f32; OFFSET_GROUP]> {
    let groups = rows.div_ceil(OFFSET_GROUP);
    let mut grouped = vec![[0.0f32; OFFSET_GROUP]; groups * blocks];
    for (r, row) in row_major.chunks_exact(blocks).enumerate() {
        for (b, &m) in row.iter().enumerate() {
            grouped[(r / OFFSET_GROUP) * blocks + b][r % OFFSET_GROUP] = m;
        }
    }
    grouped
}

/// Rows of a 4-bit block matrix times `x`: `out[r] = Σ_b d·(q·x)_b + Σ_b m_b·Σx_b`.
/// `codes` and `scales` hold `out.len() × x.len()` blocks, row-major; `offsets` is laid out by
/// [`group_offsets`]. Each row's offset term is the sequential `Σ_b m_b·s_b` with one rounding
/// per fused multiply-add, whichever backend runs.
pub(crate) fn nibble_matvec(codes: &[[u8; 16]], scales: &[f32], offsets: &[[f32; OFFSET_GROUP]], x: &[[f32; 32]], block_sums: &[f32], out: &mut [f32]) {
    with_lanes!(|l| nibble_matvec_with(l, codes, scales, offsets, x, block_sums, out))
}

#[inline(always)]
fn nibble_matvec_with<L: Lanes>(
    l: L,
    codes: &[[u8; 16]],
    scales: &[f32],
    offsets: &[[f32; OFFSET_GROUP]],
    x: &[[f32; 32]],
    block_sums: &[f32],
    out: &mut [f32],
) {
    let per_row = x.len();
    for (group, m) in out.chunks_mut(OFFSET_GROUP).zip(offsets.chunks_exact(per_row)) {
        let mut acc = l.splat(0.0);
        for (m, &s) in m.iter().zip(block_sums) {
            acc = l.fma(l.load(m), l.splat(s), acc);
        }
        group.copy_from_slice(&l.store(acc)[..group.len()]);
    }
    let rows = codes.chunks_exact(per_row).zip(scales.chunks_exact(per_row));
    for (y, (c, d)) in out.iter_mut().zip(rows) {
        *y += nibble_row(l, c, d, x);
    }
}

/// Rows of an 8-bit signed block matrix times `x`.
pub(crate) fn signed_matvec(codes: &[[u8; 32]], scales: &[f32], x: &[[f32; 32]], out: &mut [f32]) {
    with_lanes!(|l| signed_matvec_with(l, codes, scales, x, out))
}

#[inline(always)]
fn signed_matvec_with<L: Lanes>(l: L, codes: &[[u8; 32]], scales: &[f32], x: &[[f32; 32]], out: &mut [f32]) {
    let per_row = x.len();
    for (y, (c, d)) in out.iter_mut().zip(codes.chunks_exact(per_row).zip(scales.chunks_exact(per_row))) {
        *y = signed_row(l, c, d, x);
    }
}

/// Rows of an 8-bit signed block matrix with two scales per block times `x`.
pub(crate) fn signed_pair_matvec(codes: &[[u8; 32]], scales: &[[f32; 2]], x: &[[f32; 32]], out: &mut [f32]) {
    with_lanes!(|l| signed_pair_matvec_with(l, codes, scales, x, out))
}

#[inline(always)]
fn signed_pair_matvec_with<L: Lanes>(l: L, codes: &[[u8; 32]], scales: &[[f32; 2]], x: &[[f32; 32]], out: &mut [f32]) {
    let per_row = x.len();
    for (y, (c, d)) in out.iter_mut().zip(codes.chunks_exact(per_row).zip(scales.chunks_exact(per_row))) {
        *y = signed_pair_row(l, c, d, x);
    }
}

/// Inputs multiplied per pass over a weight row in the batched products: their accumulators,
/// the four converted code vectors and a partial product fit the 16 AVX2 registers.
const BATCH_LANES: usize = 4;

/// [`nibble_row`] for `N` inputs at once: each block's codes are converted once and used for
/// every input, and each input's accumulator sees exactly the operations `nibble_row` performs
/// on it alone, so every result is bit-identical to the one-input product.
#[inline(always)]
fn nibble_rows<L: Lanes, const N: usize>(l: L, codes: &[[u8; 16]], scales: &[f32], xs: [&[[f32; 32]]; N]) -> [f32; N] {
    let mut acc = [l.splat(0.0); N];
    for (b, (c, &d)) in codes.iter().zip(scales).enumerate() {
        let (c8, _) = c.as_chunks::<8>();
        let (q0, q2) = l.nibbles(&c8[0]);
        let (q1, q3) = l.nibbles(&c8[1]);
        let d = l.splat(d);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (x8, _) = x[b].as_chunks::<8>();
            let mut p = l.mul(q0, l.load(&x8[0]));
            p = l.fma(q1, l.load(&x8[1]), p);
            p = l.fma(q2, l.load(&x8[2]), p);
            p = l.fma(q3, l.load(&x8[3]), p);
            *acc = l.fma(p, d, *acc);
        }
    }
    acc.map(|a| reduce(l.store(a)))
}

/// [`signed_row`] for `N` inputs at once (bit-identical per input, as [`nibble_rows`]).
#[inline(always)]
fn signed_rows<L: Lanes, const N: usize>(l: L, codes: &[[u8; 32]], scales: &[f32], xs: [&[[f32; 32]]; N]) -> [f32; N] {
    let mut acc = [l.splat(0.0); N];
    for (b, (c, &d)) in codes.iter().zip(scales).enumerate() {
        let (c8, _) = c.as_chunks::<8>();
        let q: [L::V; 4] = std::array::from_fn(|i| l.signed_bytes(&c8[i]));
        let d = l.splat(d);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (x8, _) = x[b].as_chunks::<8>();
            let mut p = l.mul(q[0], l.load(&x8[0]));
            p = l.fma(q[1], l.load(&x8[1]), p);
            p = l.fma(q[2], l.load(&x8[2]), p);
            p = l.fma(q[3], l.load(&x8[3]), p);
            *acc = l.fma(p, d, *acc);
        }
    }
    acc.map(|a| reduce(l.store(a)))
}

/// [`signed_pair_row`] for `N` inputs at once (bit-identical per input, as [`nibble_rows`]).
#[inline(always)]
fn signed_pair_rows<L: Lanes, const N: usize>(l: L, codes: &[[u8; 32]], scales: &[[f32; 2]], xs: [&[[f32; 32]]; N]) -> [f32; N] {
    let mut acc = [l.splat(0.0); N];
    for (b, (c, d)) in codes.iter().zip(scales).enumerate() {
        let (c8, _) = c.as_chunks::<8>();
        let q: [L::V; 4] = std::array::from_fn(|i| l.signed_bytes(&c8[i]));
        let (d0, d1) = (l.splat(d[0]), l.splat(d[1]));
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (x8, _) = x[b].as_chunks::<8>();
            let mut p = l.mul(q[0], l.load(&x8[0]));
            p = l.fma(q[1], l.load(&x8[1]), p);
            *acc = l.fma(p, d0, *acc);
            let mut p = l.mul(q[2], l.load(&x8[2]));
            p = l.fma(q[3], l.load(&x8[3]), p);
            *acc = l.fma(p, d1, *acc);
        }
    }
    acc.map(|a| reduce(l.store(a)))
}

/// Which block layout a batched product runs on.
#[derive(Clone, Copy)]
pub(crate) enum RowCodes<'a> {
    /// 4-bit codes with scales (the offsets are added separately).
    Nibbles(&'a [[u8; 16]], &'a [f32]),
    /// 8-bit signed codes.
    Signed(&'a [[u8; 32]], &'a [f32]),
    /// 8-bit signed codes with two scales per block.
    SignedPairs(&'a [[u8; 32]], &'a [[f32; 2]]),
}

/// `out[i·rows + r] += row r · input i` for `inputs` inputs of `per_row` blocks each (`x`
/// holds them one after another): one pass over the weights for all inputs, each product
/// bit-identical to the one-input kernels'. For nibble codes `out` must already hold the
/// offset terms (see [`nibble_offsets`]); for signed codes it is overwritten.
pub(crate) fn rows_times_inputs(codes: RowCodes<'_>, x: &[[f32; 32]], per_row: usize, out: &mut [f32]) {
    with_lanes!(|l| rows_times_inputs_with(l, codes, x, per_row, out))
}

#[inline(always)]
fn rows_times_inputs_with<L: Lanes>(l: L, codes: RowCodes<'_>, x: &[[f32; 32]], per_row: usize, out: &mut [f32]) {
    let inputs: Vec<&[[f32; 32]]> = x.chunks_exact(per_row).collect();
    let n = inputs.len();
    if n == 0 {
        return;
    }
    let rows = out.len() / n;
    for r in 0..rows {
        let blocks = r * per_row..(r + 1) * per_row;
        let mut first = 0;
        while first < n {
            let take = (n - first).min(BATCH_LANES);
            let xs = &inputs[first..first + take];
            macro_rules! run {
                ($n:literal) => {{
                    let xs: [&[[f32; 32]]; $n] = std::array::from_fn(|j| xs[j]);
                    let got: [f32; $n] = match codes {
                        RowCodes::Nibbles(c, d) => nibble_rows(l, &c[blocks.clone()], &d[blocks.clone()], xs),
                        RowCodes::Signed(c, d) => signed_rows(l, &c[blocks.clone()], &d[blocks.clone()], xs),
                        RowCodes::SignedPairs(c, d) => signed_pair_rows(l, &c[blocks.clone()], &d[blocks.clone()], xs),
                    };
                    for (j, v) in got.into_iter().enumerate() {
                        let y = &mut out[(first + j) * rows + r];
                        match codes {
                            RowCodes::Nibbles(..) => *y += v,
                            _ => *y = v,
                        }
                    }
                }};
            }
            match take {
                1 => run!(1),
                2 => run!(2),
                3 => run!(3),
                _ => run!(4),
            }
            first += take;
        }
    }
}

/// The offset term of [`nibble_matvec`] for one input: `out[r] = Σ_b m_b·Σx_b`, computed
/// exactly as there.
pub(crate) fn nibble_offsets(offsets: &[[f32; OFFSET_GROUP]], block_sums: &[f32], out: &mut [f32]) {
    with_lanes!(|l| nibble_offsets_with(l, offsets, block_sums, out))
}

#[inline(always)]
fn nibble_offsets_with<L: Lanes>(l: L, offsets: &[[f32; OFFSET_GROUP]], block_sums: &[f32], out: &mut [f32]) {
    let per_row = block_sums.len();
    for (group, m) in out.chunks_mut(OFFSET_GROUP).zip(offsets.chunks_exact(per_row)) {
        let mut acc = l.splat(0.0);
        for (m, &s) in m.iter().zip(block_sums) {
            acc = l.fma(l.load(m), l.splat(s), acc);
        }
        group.copy_from_slice(&l.store(acc)[..group.len()]);
    }
}

#[inline(always)]
fn dot_with<L: Lanes>(l: L, a: &[f32], b: &[f32]) -> f32 {
    let (a8, a_tail) = a.as_chunks::<8>();
    let (b8, b_tail) = b.as_chunks::<8>();
    let mut acc = l.splat(0.0);
    for (a, b) in a8.iter().zip(b8) {
        acc = l.fma(l.load(a), l.load(b), acc);
    }
    a_tail.iter().zip(b_tail).fold(reduce(l.store(acc)), |s, (&x, &y)| x.mul_add(y, s))
}

#[inline(always)]
fn axpy_with<L: Lanes>(l: L, alpha: f32, x: &[f32], y: &mut [f32]) {
    let (x8, x_tail) = x.as_chunks::<8>();
    let (y8, y_tail) = y.as_chunks_mut::<8>();
    let a = l.splat(alpha);
    for (x, y) in x8.iter().zip(y8.iter_mut()) {
        *y = l.store(l.fma(a, l.load(x), l.load(y)));
    }
    for (&x, y) in x_tail.iter().zip(y_tail) {
        *y = alpha.mul_add(x, *y);
    }
}

/// Head layout of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    /// Query heads.
    pub(crate) heads: usize,
    /// Key/value heads; query head `h` reads KV head `h / (heads / kv_heads)`.
    pub(crate) kv_heads: usize,
    /// Floats per head.
    pub(crate) head_dim: usize,
    /// Factor on `q·k` before the softmax.
    pub(crate) scale: f32,
}

/// Attention of one query row over `positions` cached keys and values.
///
/// `queries` is `(heads, head_dim)`; `keys`/`values` are `(positions, kv_heads, head_dim)`
/// row-major, query head `h` reading KV head `h / (heads / kv_heads)`; `scores` is scratch of
/// at least `positions`. Writes `(heads, head_dim)` into `out`. The softmax subtracts the
/// maximum and sums sequentially, so the result does not depend on anything but the inputs.
pub(crate) fn attend_one(queries: &[f32], keys: &[f32], values: &[f32], shape: Heads, scores: &mut [f32], out: &mut [f32]) {
    with_lanes!(|l| attend_one_with(l, queries, keys, values, shape, scores, out))
}

#[inline(always)]
fn attend_one_with<L: Lanes>(l: L, queries: &[f32], keys: &[f32], values: &[f32], shape: Heads, scores: &mut [f32], out: &mut [f32]) {
    let Heads { heads, kv_heads, head_dim, scale } = shape;
    let kv_width = kv_heads * head_dim;
    let positions = keys.len() / kv_width;
    let group = heads / kv_heads;
    let scores = &mut scores[..positions];
    for ((h, q), y) in queries.chunks_exact(head_dim).enumerate().zip(out.chunks_exact_mut(head_dim)) {
        let at = (h / group) * head_dim;
        let mut max = f32::NEG_INFINITY;
        for (s, k) in scores.iter_mut().zip(keys.chunks_exact(kv_width)) {
            *s = dot_with(l, q, &k[at..at + head_dim]) * scale;
            max = max.max(*s);
        }
        let mut sum = 0.0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        y.fill(0.0);
        for (&p, v) in scores.iter().zip(values.chunks_exact(kv_width)) {
            axpy_with(l, p / sum, &v[at..at + head_dim], y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        noise(n, seed).iter().map(|v| ((v + 0.5) * 255.0) as u8).collect()
    }

    /// Random 4-bit and 8-bit matrices of `rows × blocks` blocks, block parameters and an input.
    struct Case {
        rows: usize,
        blocks: usize,
        nib: Vec<[u8; 16]>,
        sig: Vec<[u8; 32]>,
        scales: Vec<f32>,
        offsets: Vec<f32>,
        xs: Vec<f32>,
    }

    impl Case {
        fn new(rows: usize, blocks: usize, seed: u64) -> Case {
            let raw = bytes(rows * blocks * 32, seed);
            Case {
                rows,
                blocks,
                nib: raw.chunks_exact(16).take(rows * blocks).map(|c| c.try_into().unwrap()).collect(),
                sig: raw.chunks_exact(32).map(|c| c.try_into().unwrap()).collect(),
                scales: noise(rows * blocks, seed + 1),
                offsets: noise(rows * blocks, seed + 2),
                xs: noise(blocks * 32, seed + 3),
            }
        }

        fn x(&self) -> &[[f32; 32]] {
            self.xs.as_chunks::<32>().0
        }

        fn sums(&self) -> Vec<f32> {
            self.x().iter().map(|b| b.iter().sum()).collect()
        }

        /// The 4-bit product, on the best backend or (`portable`) the reference one.
        fn nibble(&self, portable: bool) -> Vec<f32> {
            let mut out = vec![0.0; self.rows];
            let (grouped, sums) = (group_offsets(&self.offsets, self.rows, self.blocks), self.sums());
            if portable {
                nibble_matvec_with(Portable, &self.nib, &self.scales, &grouped, self.x(), &sums, &mut out);
            } else {
                nibble_matvec(&self.nib, &self.scales, &grouped, self.x(), &sums, &mut out);
            }
            out
        }

        /// The 8-bit product with two scales per block (the offsets serve as second scales).
        fn signed_pairs(&self, portable: bool) -> Vec<f32> {
            let pairs: Vec<[f32; 2]> = self.scales.iter().zip(&self.offsets).map(|(&a, &b)| [a, b]).collect();
            let mut out = vec![0.0; self.rows];
            if portable {
                signed_pair_matvec_with(Portable, &self.sig, &pairs, self.x(), &mut out);
            } else {
                signed_pair_matvec(&self.sig, &pairs, self.x(), &mut out);
            }
            out
        }

        /// The 8-bit product, likewise.
        fn signed(&self, portable: bool) -> Vec<f32> {
            let mut out = vec![0.0; self.rows];
            if portable {
                signed_matvec_with(Portable, &self.sig, &self.scales, self.x(), &mut out);
            } else {
                signed_matvec(&self.sig, &self.scales, self.x(), &mut out);
            }
            out
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn nibble_and_signed_rows_match_a_plain_sum() {
        let c = Case::new(5, 7, 1);
        let (blocks, x) = (c.blocks, c.x());
        for (r, got) in c.nibble(false).into_iter().enumerate() {
            let mut want = 0.0f64;
            for (b, xb) in x.iter().enumerate() {
                let (d, m) = (f64::from(c.scales[r * blocks + b]), f64::from(c.offsets[r * blocks + b]));
                for (i, &xi) in xb.iter().enumerate() {
                    let byte = c.nib[r * blocks + b][i % 16];
                    let q = if i < 16 { byte & 15 } else { byte >> 4 };
                    want += (d * f64::from(q) + m) * f64::from(xi);
                }
            }
            assert!((f64::from(got) - want).abs() < 1e-4, "nibble row {r}: {got} vs {want}");
        }
        for (r, got) in c.signed(false).into_iter().enumerate() {
            let want: f64 = (0..blocks * 32)
                .map(|i| f64::from(c.scales[r * blocks + i / 32]) * f64::from(c.sig[r * blocks + i / 32][i % 32] as i8) * f64::from(c.xs[i]))
                .sum();
            assert!((f64::from(got) - want).abs() < 1e-4, "signed row {r}: {got} vs {want}");
        }
        for (r, got) in c.signed_pairs(false).into_iter().enumerate() {
            let want: f64 = (0..blocks * 32)
                .map(|i| {
                    let b = r * blocks + i / 32;
                    let d = if i % 32 < 16 { c.scales[b] } else { c.offsets[b] };
                    f64::from(d) * f64::from(c.sig[b][i % 32] as i8) * f64::from(c.xs[i])
                })
                .sum();
            assert!((f64::from(got) - want).abs() < 1e-4, "signed pair row {r}: {got} vs {want}");
        }
    }

    #[test]
    fn the_simd_backend_gives_the_portable_bits() {
        // 9 rows: one full group of offsets and a partial one.
        let c = Case::new(9, 18, 5);
        assert_eq!(bits(&c.nibble(false)), bits(&c.nibble(true)));
        assert_eq!(bits(&c.signed(false)), bits(&c.signed(true)));
        assert_eq!(bits(&c.signed_pairs(false)), bits(&c.signed_pairs(true)));
        // Attention with a head size that is not a multiple of 8 exercises the tails.
        let (heads, kv_heads, head_dim, positions) = (6, 2, 20, 13);
        let q = noise(heads * head_dim, 9);
        let k = noise(positions * kv_heads * head_dim, 10);
        let v = noise(positions * kv_heads * head_dim, 11);
        let mut scratch = vec![0.0; positions];
        let (mut a, mut b) = (vec![0.0; heads * head_dim], vec![0.0; heads * head_dim]);
        attend_one(&q, &k, &v, Heads { heads, kv_heads, head_dim, scale: 0.3 }, &mut scratch, &mut a);
        attend_one_with(Portable, &q, &k, &v, Heads { heads, kv_heads, head_dim, scale: 0.3 }, &mut scratch, &mut b);
        assert_eq!(bits(&a), bits(&b));
    }

    #[test]
    fn attention_matches_a_direct_softmax() {
        let (heads, kv_heads, head_dim, positions) = (4, 2, 16, 5);
        let q = noise(heads * head_dim, 12);
        let k = noise(positions * kv_heads * head_dim, 13);
        let v = noise(positions * kv_heads * head_dim, 14);
        let mut scratch = vec![0.0; positions];
        let mut out = vec![0.0; heads * head_dim];
        attend_one(&q, &k, &v, Heads { heads, kv_heads, head_dim, scale: 0.25 }, &mut scratch, &mut out);
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            let row = |m: &[f32], s: usize| m[(s * kv_heads + g) * head_dim..][..head_dim].to_vec();
            let logits: Vec<f64> = (0..positions)
                .map(|s| 0.25 * row(&k, s).iter().zip(&q[h * head_dim..]).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>())
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            for i in 0..head_dim {
                let want: f64 = (0..positions).map(|s| (logits[s] - max).exp() / total * f64::from(row(&v, s)[i])).sum();
                let got = f64::from(out[h * head_dim + i]);
                assert!((got - want).abs() < 1e-5, "head {h} dim {i}: {got} vs {want}");
            }
        }
    }
}
