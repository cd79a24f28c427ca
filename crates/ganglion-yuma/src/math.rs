//! Fixed-point vector and sparse-matrix primitives of subtensor's epoch (`epoch/math.rs`).
//!
//! Every function reproduces the chain's arithmetic bit for bit: `I32F32` values, floor
//! multiplication, `safe_div` (division by zero or overflow gives 0), saturating add/sub, the
//! stable-sort tie rules of `is_topk_nonzero` and the pivot order of `weighted_median`.
//! Sparse matrices are rows of `(column, value)` pairs, exactly as the chain stores them.
//! Where the chain's code is quadratic only by accident (dense scratch rows, a full alpha
//! matrix), the functions here compute the same values while touching only stored entries.
//!
//! This module knows nothing about subnets, storage or emission; it is numerics only.

use substrate_fixed::transcendental::exp;
use substrate_fixed::types::{I32F32, I64F64};

/// A sparse matrix row: `(column uid, value)` pairs in storage order.
pub type SparseRow = Vec<(u16, I32F32)>;

const ZERO: I32F32 = I32F32::from_bits(0);
const ONE: I32F32 = I32F32::from_bits(1 << 32);

/// `a / b` as the chain's `safe_div`: 0 when `b` is 0 or the quotient overflows.
pub fn safe_div(a: I32F32, b: I32F32) -> I32F32 {
    checked_div(a, b).unwrap_or(ZERO)
}

/// `I32F32::checked_div`, bit for bit, without the slow generic 128-bit division: the
/// quotient `trunc((a << 32) / b)`, or `None` when `b` is 0 or it does not fit an i64.
pub fn checked_div(a: I32F32, b: I32F32) -> Option<I32F32> {
    div_bits(a.to_bits(), b.to_bits()).map(I32F32::from_bits)
}

/// `I32F32::saturating_div`, bit for bit for a non-zero divisor (the original panics on
/// zero; here a zero divisor saturates by the dividend's sign, and no caller passes one).
fn saturating_div(a: I32F32, b: I32F32) -> I32F32 {
    match checked_div(a, b) {
        Some(q) => q,
        None if (a < ZERO) != (b < ZERO) && b != ZERO => I32F32::min_value(),
        None => I32F32::max_value(),
    }
}

/// A fixed-point divisor prepared for many divisions: `Divisor::new(d).div(a)` equals
/// [`checked_div`]`(a, d)` bit for bit, but for the common case (non-negative dividend whose
/// shifted value fits 64 bits) it replaces the hardware division by a multiplication with a
/// precomputed reciprocal (Granlund–Montgomery round-up method, exact for every u64).
#[derive(Debug, Clone, Copy)]
pub struct Divisor {
    d: I32F32,
    /// Left shift applied to the dividend's magnitude (32 minus the stripped zeros).
    shift: u32,
    kind: DivKind,
}

#[derive(Debug, Clone, Copy)]
enum DivKind {
    /// Zero or negative divisor: always use the general path.
    General,
    /// Divide by `2^k`.
    Pow2(u32),
    /// Divisor above 2^63: the quotient of a u64 is 0 or 1.
    Huge(u64),
    /// Multiply-high by `magic`, then the round-up correction and a shift by `post`.
    Magic { magic: u64, post: u32 },
}

impl Divisor {
    /// Prepare division by `d`.
    pub fn new(d: I32F32) -> Self {
        let bits = d.to_bits();
        if bits <= 0 {
            return Self {
                d,
                shift: 0,
                kind: DivKind::General,
            };
        }
        let mut ub = bits as u64;
        let t = ub.trailing_zeros().min(32);
        ub >>= t;
        let kind = if ub.is_power_of_two() {
            DivKind::Pow2(ub.trailing_zeros())
        } else if ub > 1 << 63 {
            DivKind::Huge(ub)
        } else {
            // l = ceil(log2(ub)) in 2..=63; magic = floor(2^(64+l) / ub) - 2^64 + 1.
            let l = 64 - (ub - 1).leading_zeros();
            let m = ((1_u128 << (64 + l)) / u128::from(ub)) - (1_u128 << 64) + 1;
            DivKind::Magic {
                magic: m as u64,
                post: l - 1,
            }
        };
        Self {
            d,
            shift: 32 - t,
            kind,
        }
    }

    /// `a / d` exactly as [`checked_div`].
    pub fn div(&self, a: I32F32) -> Option<I32F32> {
        let bits = a.to_bits();
        if matches!(self.kind, DivKind::General)
            || bits < 0
            || (bits as u64).leading_zeros() < self.shift
        {
            return checked_div(a, self.d);
        }
        let n = (bits as u64) << self.shift;
        let q = match self.kind {
            DivKind::Pow2(k) => n >> k,
            DivKind::Huge(ub) => u64::from(n >= ub),
            DivKind::Magic { magic, post } => {
                let hi = ((u128::from(magic) * u128::from(n)) >> 64) as u64;
                (hi + ((n - hi) >> 1)) >> post
            }
            DivKind::General => return checked_div(a, self.d),
        };
        finish_div(q, false).map(I32F32::from_bits)
    }

    /// `safe_div(a, d)`: the quotient, or 0 on overflow or a zero divisor.
    pub fn safe_div(&self, a: I32F32) -> I32F32 {
        self.div(a).unwrap_or(ZERO)
    }
}

/// `trunc((a · 2^32) / b)` on raw bits, `None` on a zero divisor or an i64 overflow.
fn div_bits(a: i64, b: i64) -> Option<i64> {
    if b == 0 {
        return None;
    }
    let negative = (a < 0) != (b < 0);
    let ua = a.unsigned_abs();
    let mut ub = b.unsigned_abs();
    // (ua · 2^32) / (ub' · 2^t) == (ua · 2^(32 - t)) / ub' exactly, so strip up to 32 trailing
    // zero bits of the divisor first: integer-valued divisors then need one u64 division.
    let t = ub.trailing_zeros().min(32);
    ub >>= t;
    let shift = 32 - t;
    if ua.leading_zeros() >= shift {
        let q = (ua << shift) / ub;
        return finish_div(q, negative);
    }
    // Numerator ua · 2^shift as two 64-bit words (shift is 1..=32 here).
    let hi = ua >> (64 - shift);
    let lo = ua << shift;
    let q = if hi >= ub {
        return None; // quotient >= 2^64
    } else {
        div_128_by_64(hi, lo, ub)
    };
    finish_div(q, negative)
}

/// Apply the sign to an unsigned quotient, `None` when it does not fit an i64.
fn finish_div(q: u64, negative: bool) -> Option<i64> {
    if negative {
        if q > 1 << 63 {
            return None;
        }
        Some((q as i64).wrapping_neg())
    } else {
        i64::try_from(q).ok()
    }
}

/// `(hi · 2^64 + lo) / d` for `hi < d`, by two 32-bit long-division steps (Knuth's
/// algorithm D as in Hacker's Delight `divlu`). The quotient fits a u64 because `hi < d`.
fn div_128_by_64(hi: u64, lo: u64, d: u64) -> u64 {
    const B: u64 = 1 << 32;
    let s = d.leading_zeros();
    let d = d << s;
    let dn1 = d >> 32;
    let dn0 = d & (B - 1);
    let un32 = if s == 0 {
        hi
    } else {
        (hi << s) | (lo >> (64 - s))
    };
    let un10 = lo << s;
    let un1 = un10 >> 32;
    let un0 = un10 & (B - 1);
    let mut q1 = un32 / dn1;
    let mut rhat = un32 - q1 * dn1;
    while q1 >= B
        || u128::from(q1) * u128::from(dn0) > u128::from(rhat) * u128::from(B) + u128::from(un1)
    {
        q1 -= 1;
        rhat += dn1;
        if rhat >= B {
            break;
        }
    }
    let un21 = (u128::from(un32) * u128::from(B) + u128::from(un1) - u128::from(q1) * u128::from(d))
        as u64;
    let mut q0 = un21 / dn1;
    rhat = un21 - q0 * dn1;
    while q0 >= B
        || u128::from(q0) * u128::from(dn0) > u128::from(rhat) * u128::from(B) + u128::from(un0)
    {
        q0 -= 1;
        rhat += dn1;
        if rhat >= B {
            break;
        }
    }
    q1 * B + q0
}

/// `a / b` in `I64F64` as the chain's `safe_div`: 0 when `b` is 0 or the quotient overflows.
pub fn safe_div_64(a: I64F64, b: I64F64) -> I64F64 {
    a.checked_div(b).unwrap_or(I64F64::from_bits(0))
}

/// Sum with saturation (the chain's `iter().sum()` cannot overflow for valid inputs; this
/// keeps the same value there and saturates instead of panicking elsewhere).
pub fn sum(x: &[I32F32]) -> I32F32 {
    x.iter().fold(ZERO, |acc, v| acc.saturating_add(*v))
}

/// True when the vector sums to zero (`is_zero`).
pub fn is_zero(x: &[I32F32]) -> bool {
    sum(x) == ZERO
}

/// `u16 / 65535` as a fixed-point proportion (`u16_proportion_to_fixed`).
pub fn u16_proportion_to_fixed(x: u16) -> I32F32 {
    safe_div(I32F32::from_num(x), I32F32::from_num(u16::MAX))
}

/// `x / 65535` for a fixed value holding a raw u16 (`fixed_to_fixed_u16_proportion`).
pub fn fixed_to_fixed_u16_proportion(x: I32F32) -> I32F32 {
    safe_div(x, I32F32::from_num(u16::MAX))
}

/// `trunc(x * 65535)`, saturating to `[0, 65535]` (`fixed_proportion_to_u16`).
pub fn fixed_proportion_to_u16(x: I32F32) -> u16 {
    x.saturating_mul(I32F32::from_num(u16::MAX))
        .saturating_to_num::<u16>()
}

/// Max-upscale so the largest entry becomes 65535 (`vec_max_upscale_to_u16`).
///
/// Assumes non-negative input. Above a max of 32768 the chain multiplies by `65535/max`
/// (to avoid overflow), otherwise it divides `x*65535` by `max`; both round half away from 0.
pub fn vec_max_upscale_to_u16(vec: &[I32F32]) -> Vec<u16> {
    let u16_max = I32F32::from_num(u16::MAX);
    let threshold = I32F32::from_num(32768);
    let Some(&max) = vec.iter().max() else {
        return Vec::new();
    };
    if max == ZERO {
        return vec
            .iter()
            .map(|e| e.saturating_mul(u16_max).saturating_to_num::<u16>())
            .collect();
    }
    if max > threshold {
        let scale = safe_div(u16_max, max);
        return vec
            .iter()
            .map(|e| e.saturating_mul(scale).round().saturating_to_num::<u16>())
            .collect();
    }
    vec.iter()
        .map(|e| {
            safe_div(e.saturating_mul(u16_max), max)
                .round()
                .saturating_to_num::<u16>()
        })
        .collect()
}

/// Max-upscale a u16 vector so its largest entry is 65535 (`vec_u16_max_upscale_to_u16`).
pub fn vec_u16_max_upscale_to_u16(vec: &[u16]) -> Vec<u16> {
    let fixed: Vec<I32F32> = vec.iter().map(|e| I32F32::from_num(*e)).collect();
    vec_max_upscale_to_u16(&fixed)
}

/// True when the normalised vector's max is at most `max_limit / 65535` (`check_vec_max_limited`).
pub fn check_vec_max_limited(vec: &[u16], max_limit: u16) -> bool {
    let limit = safe_div(I32F32::from_num(max_limit), I32F32::from_num(u16::MAX));
    let mut fixed: Vec<I32F32> = vec.iter().map(|e| I32F32::from_num(*e)).collect();
    inplace_normalize(&mut fixed);
    fixed.iter().max().is_none_or(|v| *v <= limit)
}

/// `exp(x)` with `x` clamped to `[-20, 20]` (`exp_safe`), using substrate-fixed's series.
pub fn exp_safe(input: I32F32) -> I32F32 {
    let lo = I32F32::from_num(-20);
    let hi = I32F32::from_num(20);
    let x = input.clamp(lo, hi);
    match exp_fixed(x) {
        Some(v) => v,
        None if x <= ZERO => ZERO,
        None => I32F32::max_value(),
    }
}

/// substrate-fixed's `transcendental::exp` for `I32F32`, step for step (Taylor series to
/// term 31 with checked arithmetic, reciprocal for negative inputs), using the fast exact
/// division. The two special cases (0 and exactly 1) defer to the original. `None` where
/// the original returns `Err(())` (overflow).
pub fn exp_fixed(x: I32F32) -> Option<I32F32> {
    if x == ZERO || x == ONE {
        return exp::<I32F32, I32F32>(x).ok();
    }
    let neg = x < ZERO;
    let x = if neg { x.checked_neg()? } else { x };
    let mut result = x.checked_add(ONE)?;
    let mut term = x;
    // term / i for the fixed integer i is trunc(term_bits / i) (term >= 0 here); spelling
    // each divisor out lets the compiler turn the divisions into multiplications.
    macro_rules! step {
        ($($i:literal)*) => {$(
            term = term.checked_mul(x)?;
            term = I32F32::from_bits(term.to_bits() / $i);
            result = result.checked_add(term)?;
        )*};
    }
    step!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    if neg {
        result = checked_div(ONE, result)?;
    }
    Some(result)
}

/// Clamp to `[low, high]`: first `min(high)`, then `max(low)` (`clamp_value`).
pub fn clamp_value(value: I32F32, low: I32F32, high: I32F32) -> I32F32 {
    value.min(high).max(low)
}

/// Non-zero entries that are among the top `k` (`is_topk_nonzero`).
///
/// When `n >= k`, indices are stable-sorted ascending by value and the first `n - k` are
/// cleared, so among equal values the lower uids lose their place first.
pub fn is_topk_nonzero(vector: &[I32F32], k: usize) -> Vec<bool> {
    let n = vector.len();
    let mut result: Vec<bool> = vector.iter().map(|v| *v != ZERO).collect();
    if n < k {
        return result;
    }
    let mut idxs: Vec<usize> = (0..n).collect();
    idxs.sort_by_key(|&i| vector[i]);
    for &i in idxs.iter().take(n - k) {
        result[i] = false;
    }
    result
}

/// Normalise in place to sum 1 unless the sum is 0 (`inplace_normalize`).
pub fn inplace_normalize(x: &mut [I32F32]) {
    let s = sum(x);
    if s == ZERO {
        return;
    }
    let d = Divisor::new(s);
    x.iter_mut().for_each(|v| *v = d.safe_div(*v));
}

/// Divide every entry by `x_sum` unless it is 0 (`inplace_normalize_using_sum`).
pub fn inplace_normalize_using_sum(x: &mut [I32F32], x_sum: I32F32) {
    if x_sum == ZERO {
        return;
    }
    let d = Divisor::new(x_sum);
    x.iter_mut().for_each(|v| *v = d.safe_div(*v));
}

/// Normalise an `I64F64` vector in place (`inplace_normalize_64`).
pub fn inplace_normalize_64(x: &mut [I64F64]) {
    let zero = I64F64::from_bits(0);
    let s = x.iter().fold(zero, |acc, v| acc.saturating_add(*v));
    if s == zero {
        return;
    }
    x.iter_mut().for_each(|v| *v = safe_div_64(*v, s));
}

/// Normalise each sparse row to sum 1 when its sum is positive (`inplace_row_normalize_sparse`).
pub fn inplace_row_normalize_sparse(m: &mut [SparseRow]) {
    for row in m.iter_mut() {
        let s = row.iter().fold(ZERO, |acc, (_, v)| acc.saturating_add(*v));
        if s > ZERO {
            let d = Divisor::new(s);
            row.iter_mut().for_each(|(_, v)| *v = d.safe_div(*v));
        }
    }
}

/// Sum of each sparse row (`row_sum_sparse`).
pub fn row_sum_sparse(m: &[SparseRow]) -> Vec<I32F32> {
    m.iter()
        .map(|row| row.iter().fold(ZERO, |acc, (_, v)| acc.saturating_add(*v)))
        .collect()
}

/// Normalise each column of a sparse matrix to sum 1 where the sum is non-zero
/// (`inplace_col_normalize_sparse`). Entries with column `>= columns` are left alone.
pub fn inplace_col_normalize_sparse(m: &mut [SparseRow], columns: u16) {
    let mut col_sum = vec![ZERO; columns as usize];
    for row in m.iter() {
        for &(j, v) in row {
            if let Some(s) = col_sum.get_mut(j as usize) {
                *s = s.saturating_add(v);
            }
        }
    }
    let divisors: Vec<Divisor> = col_sum.iter().map(|d| Divisor::new(*d)).collect();
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            if let Some(d) = divisors.get(*j as usize)
                && d.d != ZERO
            {
                *v = d.safe_div(*v);
            }
        }
    }
}

/// Divide each entry by its column's max where that max is non-zero
/// (`inplace_col_max_upscale_sparse`).
pub fn inplace_col_max_upscale_sparse(m: &mut [SparseRow], columns: u16) {
    let mut col_max = vec![ZERO; columns as usize];
    for row in m.iter() {
        for &(j, v) in row {
            if let Some(mx) = col_max.get_mut(j as usize)
                && *mx < v
            {
                *mx = v;
            }
        }
    }
    let divisors: Vec<Divisor> = col_max.iter().map(|d| Divisor::new(*d)).collect();
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            if let Some(d) = divisors.get(*j as usize)
                && d.d != ZERO
            {
                *v = d.safe_div(*v);
            }
        }
    }
}

/// Zero the entries where `mask` is true; a missing mask entry counts as true
/// (`inplace_mask_vector`).
pub fn inplace_mask_vector(mask: &[bool], vector: &mut [I32F32]) {
    if mask.is_empty() {
        return;
    }
    for (i, v) in vector.iter_mut().enumerate() {
        if mask.get(i).copied().unwrap_or(true) {
            *v = ZERO;
        }
    }
}

/// Empty the rows where `mask` is true; a missing mask entry counts as true (`mask_rows_sparse`).
pub fn mask_rows_sparse(mask: &[bool], m: &[SparseRow]) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            if mask.get(i).copied().unwrap_or(true) {
                Vec::new()
            } else {
                row.clone()
            }
        })
        .collect()
}

/// Drop diagonal entries (`mask_diag_sparse`).
pub fn mask_diag_sparse(m: &[SparseRow]) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .filter(|(j, _)| i != *j as usize)
                .copied()
                .collect()
        })
        .collect()
}

/// Drop diagonal entries except `(except, except)` (`mask_diag_sparse_except_index`).
pub fn mask_diag_sparse_except_index(m: &[SparseRow], except: u16) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .filter(|(j, _)| i != *j as usize || (i == except as usize && *j == except))
                .copied()
                .collect()
        })
        .collect()
}

/// Drop `(i, j)` where `mask_fn(first[i], second[j])`; missing vector entries read as 0
/// (`vec_mask_sparse_matrix`).
pub fn vec_mask_sparse_matrix(
    m: &[SparseRow],
    first: &[u64],
    second: &[u64],
    mask_fn: impl Fn(u64, u64) -> bool,
) -> Vec<SparseRow> {
    m.iter()
        .enumerate()
        .map(|(i, row)| {
            let fv = first.get(i).copied().unwrap_or(0);
            row.iter()
                .filter(|(j, _)| !mask_fn(fv, second.get(*j as usize).copied().unwrap_or(0)))
                .copied()
                .collect()
        })
        .collect()
}

/// Drop `(i, j)` where `mask_fn(scalar, vector[j])`; missing entries read as 0
/// (`scalar_vec_mask_sparse_matrix`).
pub fn scalar_vec_mask_sparse_matrix(
    m: &[SparseRow],
    scalar: u64,
    vector: &[u64],
    mask_fn: impl Fn(u64, u64) -> bool,
) -> Vec<SparseRow> {
    m.iter()
        .map(|row| {
            row.iter()
                .filter(|(j, _)| !mask_fn(scalar, vector.get(*j as usize).copied().unwrap_or(0)))
                .copied()
                .collect()
        })
        .collect()
}

/// `out_ij = m_ij * v_i` (`row_hadamard_sparse`); rows beyond `v` are dropped.
pub fn row_hadamard_sparse(m: &[SparseRow], v: &[I32F32]) -> Vec<SparseRow> {
    m.iter()
        .zip(v.iter())
        .map(|(row, &scale)| {
            row.iter()
                .map(|&(j, x)| (j, x.saturating_mul(scale)))
                .collect()
        })
        .collect()
}

/// `r_j = Σ_i v_i * m_ij` over `columns` columns (`matmul_sparse`).
pub fn matmul_sparse(m: &[SparseRow], v: &[I32F32], columns: u16) -> Vec<I32F32> {
    let mut result = vec![ZERO; columns as usize];
    for (i, row) in m.iter().enumerate() {
        let scale = v.get(i).copied().unwrap_or(ZERO);
        for &(j, x) in row {
            if let Some(r) = result.get_mut(j as usize) {
                *r = r.saturating_add(scale.saturating_mul(x));
            }
        }
    }
    result
}

/// `r_i = Σ_j v_j * m_ij` (`matmul_transpose_sparse`).
pub fn matmul_transpose_sparse(m: &[SparseRow], v: &[I32F32]) -> Vec<I32F32> {
    m.iter()
        .map(|row| {
            row.iter().fold(ZERO, |acc, &(j, x)| {
                let vj = v.get(j as usize).copied().unwrap_or(ZERO);
                acc.saturating_add(vj.saturating_mul(x))
            })
        })
        .collect()
}

/// Clip each entry to its column threshold; entries above a threshold of 0 are dropped
/// (`col_clip_sparse`).
pub fn col_clip_sparse(m: &[SparseRow], threshold: &[I32F32]) -> Vec<SparseRow> {
    m.iter()
        .map(|row| {
            let mut out = Vec::with_capacity(row.len());
            for &(j, v) in row {
                let th = threshold.get(j as usize).copied().unwrap_or(ZERO);
                if th < v {
                    if th > ZERO {
                        out.push((j, th));
                    }
                } else {
                    out.push((j, v));
                }
            }
            out
        })
        .collect()
}

/// [`col_clip_sparse`] in place: the same entries in the same order, without a copy.
pub fn col_clip_sparse_in_place(m: &mut [SparseRow], threshold: &[I32F32]) {
    for row in m.iter_mut() {
        row.retain_mut(|(j, v)| {
            let th = threshold.get(*j as usize).copied().unwrap_or(ZERO);
            if th < *v {
                *v = th;
                th > ZERO
            } else {
                true
            }
        });
    }
}

/// Scratch buffers reused across calls of [`weighted_median_with`].
#[derive(Debug, Default)]
pub struct MedianScratch {
    current: Vec<usize>,
    lower: Vec<usize>,
    upper: Vec<usize>,
}

/// Stake-weighted median by mid-pivot partitioning (`weighted_median`).
///
/// `partition_idx` gives the candidate indices in order; the pivot is always the score at
/// the middle position of the current partition, and sub-partitions keep their order.
pub fn weighted_median(
    stake: &[I32F32],
    score: &[I32F32],
    partition_idx: &[usize],
    minority: I32F32,
    partition_lo: I32F32,
    partition_hi: I32F32,
) -> I32F32 {
    let mut scratch = MedianScratch::default();
    weighted_median_with(
        &mut scratch,
        stake,
        score,
        partition_idx,
        minority,
        partition_lo,
        partition_hi,
    )
}

/// [`weighted_median`] with caller-provided scratch space (no allocation after warm-up).
pub fn weighted_median_with(
    scratch: &mut MedianScratch,
    stake: &[I32F32],
    score: &[I32F32],
    partition_idx: &[usize],
    minority: I32F32,
    mut lo: I32F32,
    mut hi: I32F32,
) -> I32F32 {
    if stake.len() != score.len() {
        return ZERO;
    }
    let get = |s: &[I32F32], i: usize| s.get(i).copied().unwrap_or(ZERO);
    let MedianScratch {
        current,
        lower,
        upper,
    } = scratch;
    current.clear();
    current.extend_from_slice(partition_idx);
    let limit = partition_idx.len();
    let mut iterations = 0usize;
    loop {
        let n = current.len();
        if n == 0 {
            return ZERO;
        }
        if n == 1 {
            return get(score, current[0]);
        }
        let pivot = get(score, current[n / 2]);
        let mut lo_stake = ZERO;
        let mut hi_stake = ZERO;
        lower.clear();
        upper.clear();
        for &idx in current.iter() {
            let s = get(score, idx);
            if s == pivot {
                continue;
            }
            if s < pivot {
                lo_stake = lo_stake.saturating_add(get(stake, idx));
                lower.push(idx);
            } else {
                hi_stake = hi_stake.saturating_add(get(stake, idx));
                upper.push(idx);
            }
        }
        if minority < lo.saturating_add(lo_stake) && !lower.is_empty() {
            std::mem::swap(current, lower);
            hi = lo.saturating_add(lo_stake);
        } else if hi.saturating_sub(hi_stake) <= minority && !upper.is_empty() {
            std::mem::swap(current, upper);
            lo = hi.saturating_sub(hi_stake);
        } else {
            return pivot;
        }
        iterations += 1;
        if iterations > limit {
            return ZERO;
        }
    }
}

/// Column-wise stake-weighted median over the rows with positive stake
/// (`weighted_median_col_sparse`): the consensus weight of each column for `majority` = κ.
pub fn weighted_median_col_sparse(
    stake: &[I32F32],
    score: &[SparseRow],
    columns: u16,
    majority: I32F32,
) -> Vec<I32F32> {
    let mut use_stake: Vec<I32F32> = stake.iter().copied().filter(|s| *s > ZERO).collect();
    inplace_normalize(&mut use_stake);
    let stake_sum = sum(&use_stake);
    let minority = stake_sum.saturating_sub(majority);
    let k_total = use_stake.len();

    // Column-major dense score table: columns x k_total (the chain's `use_score`).
    let mut use_score = vec![ZERO; columns as usize * k_total];
    let mut k = 0usize;
    for (&s, row) in stake.iter().zip(score.iter()) {
        if s > ZERO {
            for &(c, v) in row {
                if (c as usize) < columns as usize {
                    use_score[c as usize * k_total + k] = v;
                }
            }
            k += 1;
        }
    }
    let mut scratch = PairScratch::default();
    (0..columns as usize)
        .map(|c| {
            let col = &use_score[c * k_total..(c + 1) * k_total];
            scratch.current.clear();
            scratch
                .current
                .extend(col.iter().copied().zip(use_stake.iter().copied()));
            weighted_median_pairs(&mut scratch, minority, stake_sum)
        })
        .collect()
}

/// Scratch buffers for [`weighted_median_pairs`].
#[derive(Debug, Default)]
struct PairScratch {
    current: Vec<(I32F32, I32F32)>,
    lower: Vec<(I32F32, I32F32)>,
    upper: Vec<(I32F32, I32F32)>,
}

/// [`weighted_median_with`] over `(score, stake)` pairs held in `scratch.current` (in uid
/// order) instead of indices: the same partitions, pivots and result, without indirection.
fn weighted_median_pairs(scratch: &mut PairScratch, minority: I32F32, mut hi: I32F32) -> I32F32 {
    let PairScratch {
        current,
        lower,
        upper,
    } = scratch;
    let mut lo = ZERO;
    let limit = current.len();
    let mut iterations = 0usize;
    loop {
        let n = current.len();
        if n == 0 {
            return ZERO;
        }
        if n == 1 {
            return current[0].0;
        }
        let pivot = current[n / 2].0;
        let mut lo_stake = ZERO;
        let mut hi_stake = ZERO;
        lower.clear();
        upper.clear();
        for &(score, stake) in current.iter() {
            if score < pivot {
                lo_stake = lo_stake.saturating_add(stake);
                lower.push((score, stake));
            } else if score > pivot {
                hi_stake = hi_stake.saturating_add(stake);
                upper.push((score, stake));
            }
        }
        if minority < lo.saturating_add(lo_stake) && !lower.is_empty() {
            std::mem::swap(current, lower);
            hi = lo.saturating_add(lo_stake);
        } else if hi.saturating_sub(hi_stake) <= minority && !upper.is_empty() {
            std::mem::swap(current, upper);
            lo = hi.saturating_sub(hi_stake);
        } else {
            return pivot;
        }
        iterations += 1;
        if iterations > limit {
            return ZERO;
        }
    }
}

/// True when a row's columns are strictly increasing (sorted, no duplicates): then merges
/// give exactly what the chain's dense scratch rows give, without sorting.
fn strictly_sorted(row: &[(u16, I32F32)]) -> bool {
    row.windows(2).all(|w| w[0].0 < w[1].0)
}

/// Walk the union of two strictly sorted rows in column order, restricted to columns below
/// `limit`, calling `f(j, value in a, value in b)`.
fn merge_rows(
    a: &[(u16, I32F32)],
    b: &[(u16, I32F32)],
    limit: usize,
    mut f: impl FnMut(u16, Option<I32F32>, Option<I32F32>),
) {
    let (mut x, mut y) = (0, 0);
    while x < a.len() && y < b.len() {
        let (ja, va) = a[x];
        let (jb, vb) = b[y];
        let j = ja.min(jb);
        if j as usize >= limit {
            return;
        }
        if ja == jb {
            f(j, Some(va), Some(vb));
            x += 1;
            y += 1;
        } else if ja < jb {
            f(j, Some(va), None);
            x += 1;
        } else {
            f(j, None, Some(vb));
            y += 1;
        }
    }
    for &(j, v) in &a[x..] {
        if j as usize >= limit {
            return;
        }
        f(j, Some(v), None);
    }
    for &(j, v) in &b[y..] {
        if j as usize >= limit {
            return;
        }
        f(j, None, Some(v));
    }
}

/// `A + ratio*(B - A)` over dense columns, keeping entries > 0 (`interpolate_sparse`).
///
/// `ratio == 0` returns `A` and `ratio == 1` returns `B` unchanged (zeros kept); mismatched row
/// counts return `B`, as on the chain. Output rows are sorted by column.
pub fn interpolate_sparse(
    mat1: &[SparseRow],
    mat2: &[SparseRow],
    columns: u16,
    ratio: I32F32,
) -> Vec<SparseRow> {
    if ratio == ZERO {
        return mat1.to_vec();
    }
    if ratio == ONE {
        return mat2.to_vec();
    }
    if mat1.len() != mat2.len() {
        return mat2.to_vec();
    }
    let cols = columns as usize;
    let mut row1 = vec![ZERO; cols];
    let mut row2 = vec![ZERO; cols];
    let mut touched: Vec<u16> = Vec::new();
    mat1.iter()
        .zip(mat2.iter())
        .map(|(r1, r2)| {
            if strictly_sorted(r1) && strictly_sorted(r2) {
                let mut out = Vec::with_capacity(r1.len().max(r2.len()));
                merge_rows(r1, r2, cols, |j, v1, v2| {
                    let v1 = v1.unwrap_or(ZERO);
                    let v2 = v2.unwrap_or(ZERO);
                    let x = v1.saturating_add(ratio.saturating_mul(v2.saturating_sub(v1)));
                    if x > ZERO {
                        out.push((j, x));
                    }
                });
                return out;
            }
            touched.clear();
            for &(j, v) in r1 {
                if let Some(e) = row1.get_mut(j as usize) {
                    *e = v;
                    touched.push(j);
                }
            }
            for &(j, v) in r2 {
                if let Some(e) = row2.get_mut(j as usize) {
                    *e = v;
                    touched.push(j);
                }
            }
            touched.sort_unstable();
            touched.dedup();
            // Columns absent from both rows interpolate 0 to 0 and are never kept.
            let mut out = Vec::with_capacity(touched.len());
            for &j in touched.iter() {
                let v1 = row1[j as usize];
                let v2 = row2[j as usize];
                let x = v1.saturating_add(ratio.saturating_mul(v2.saturating_sub(v1)));
                if x > ZERO {
                    out.push((j, x));
                }
                row1[j as usize] = ZERO;
                row2[j as usize] = ZERO;
            }
            out
        })
        .collect()
}

/// Element-wise product; an overflowing product gives 0 (`vec_mul`).
pub fn vec_mul(a: &[I32F32], b: &[I32F32]) -> Vec<I32F32> {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| x.checked_mul(*y).unwrap_or(ZERO))
        .collect()
}

/// `out_ij = m_ij * v_j`, dropping zero products and columns beyond `v` (`mat_vec_mul_sparse`).
pub fn mat_vec_mul_sparse(m: &[SparseRow], v: &[I32F32]) -> Vec<SparseRow> {
    m.iter()
        .map(|row| {
            row.iter()
                .filter_map(|&(j, x)| {
                    let vj = v.get(j as usize)?;
                    let p = x.saturating_mul(*vj);
                    (p != ZERO).then_some((j, p))
                })
                .collect()
        })
        .collect()
}

/// `alpha*new + (1-alpha)*old` over the union of entries, keeping values > 0, rows sorted by
/// column (`mat_ema_sparse`). Columns are limited to the number of rows, as on the chain.
pub fn mat_ema_sparse(new: &[SparseRow], old: &[SparseRow], alpha: I32F32) -> Vec<SparseRow> {
    let n = new.len();
    if n == 0 {
        return Vec::new();
    }
    let one_minus_alpha = ONE.saturating_sub(alpha);
    let mut acc = vec![ZERO; n];
    let mut touched: Vec<u16> = Vec::new();
    let empty: SparseRow = Vec::new();
    new.iter()
        .enumerate()
        .map(|(i, new_row)| {
            let old_row = old.get(i).unwrap_or(&empty);
            if strictly_sorted(new_row) && strictly_sorted(old_row) {
                let mut out = Vec::with_capacity(new_row.len().max(old_row.len()));
                merge_rows(new_row, old_row, n, |j, vn, vo| {
                    let mut v = ZERO;
                    if let Some(x) = vn {
                        v = v.saturating_add(alpha.saturating_mul(x));
                    }
                    if let Some(x) = vo {
                        v = v.saturating_add(one_minus_alpha.saturating_mul(x));
                    }
                    if v > ZERO {
                        out.push((j, v));
                    }
                });
                return out;
            }
            touched.clear();
            for &(j, v) in new_row {
                if let Some(c) = acc.get_mut(j as usize) {
                    *c = c.saturating_add(alpha.saturating_mul(v));
                    touched.push(j);
                }
            }
            for &(j, v) in old.get(i).unwrap_or(&empty) {
                if let Some(c) = acc.get_mut(j as usize) {
                    *c = c.saturating_add(one_minus_alpha.saturating_mul(v));
                    touched.push(j);
                }
            }
            touched.sort_unstable();
            touched.dedup();
            let mut out = Vec::with_capacity(touched.len());
            for &j in touched.iter() {
                let v = acc[j as usize];
                if v > ZERO {
                    out.push((j, v));
                }
                acc[j as usize] = ZERO;
            }
            out
        })
        .collect()
}

/// EMA with a per-entry alpha, clamped to `[0, 1]`, evaluated only for the entries of `new`
/// (`mat_ema_alpha_sparse`): `min(1, (1-a_ij)*old_ij + max(0, a_ij*new_ij))`.
///
/// `alpha` is the chain's dense alpha matrix; columns at or beyond a row's width are ignored.
/// Bonds whose column is absent from row `i` of `new` vanish. Mismatched shapes return `new`.
pub fn mat_ema_alpha_sparse(
    new: &[SparseRow],
    old: &[SparseRow],
    alpha: &[Vec<I32F32>],
) -> Vec<SparseRow> {
    if new.len() != old.len() || new.len() != alpha.len() {
        return new.to_vec();
    }
    let mut out = Vec::with_capacity(new.len());
    for ((new_row, old_row), alpha_row) in new.iter().zip(old.iter()).zip(alpha.iter()) {
        let mut decayed = vec![ZERO; alpha_row.len()];
        out.push(ema_alpha_row(new_row, old_row, alpha_row, &mut decayed));
    }
    out
}

/// One row of [`mat_ema_alpha_sparse`]; `decayed` must be all zero and as wide as `alpha_row`,
/// and is left all zero again.
fn ema_alpha_row(
    new_row: &[(u16, I32F32)],
    old_row: &[(u16, I32F32)],
    alpha_row: &[I32F32],
    decayed: &mut [I32F32],
) -> SparseRow {
    for &(j, o) in old_row {
        if let (Some(&a), Some(cell)) = (alpha_row.get(j as usize), decayed.get_mut(j as usize)) {
            // The chain assigns (not accumulates) here.
            *cell = ONE.saturating_sub(a).saturating_mul(o);
        }
    }
    let mut out = Vec::with_capacity(new_row.len());
    for &(j, w) in new_row {
        if let (Some(&a), Some(&d)) = (alpha_row.get(j as usize), decayed.get(j as usize)) {
            let inc = a.saturating_mul(w).max(ZERO);
            let v = d.saturating_add(inc).min(ONE);
            if v > ZERO {
                out.push((j, v));
            }
        }
    }
    for &(j, _) in old_row {
        if let Some(cell) = decayed.get_mut(j as usize) {
            *cell = ZERO;
        }
    }
    out
}

/// Liquid-alpha parameters as fixed-point values.
#[derive(Debug, Clone, Copy)]
pub struct LiquidAlpha {
    /// Lower alpha bound (`alpha_low / 65535`).
    pub low: I32F32,
    /// Upper alpha bound (`alpha_high / 65535`).
    pub high: I32F32,
    /// Sigmoid steepness (the raw i16 as fixed point).
    pub steepness: I32F32,
}

/// The chain's dense liquid-alpha matrix (`liquid_alpha_matrix_sparse`): one alpha per
/// `(row, column < consensus.len())`, reading weights and bonds with a forward merge that
/// assumes rows sorted by column. Quadratic; the epoch uses [`liquid_alpha_ema_sparse`].
pub fn liquid_alpha_matrix_sparse(
    weights: &[SparseRow],
    bonds: &[SparseRow],
    consensus: &[I32F32],
    la: LiquidAlpha,
) -> Vec<Vec<I32F32>> {
    if weights.len() != bonds.len() {
        return Vec::new();
    }
    weights
        .iter()
        .zip(bonds.iter())
        .map(|(w_row, b_row)| {
            let mut w = MergeCursor::new(w_row);
            let mut b = MergeCursor::new(b_row);
            consensus
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let j = j as u16;
                    alpha_sigmoid(
                        *c,
                        w.advance_to(j),
                        b.advance_to(j),
                        la.low,
                        la.high,
                        la.steepness,
                    )
                })
                .collect()
        })
        .collect()
}

/// `mat_ema_alpha_sparse(weights, bonds, liquid_alpha_matrix_sparse(..))`, bit for bit, but
/// computing alpha only for the columns each row actually stores (the merge cursor's value at
/// a column depends only on that column, so evaluating a sorted subset is exact).
pub fn liquid_alpha_ema_sparse(
    weights: &[SparseRow],
    bonds: &[SparseRow],
    consensus: &[I32F32],
    la: LiquidAlpha,
) -> Vec<SparseRow> {
    if weights.len() != bonds.len() {
        // The chain's alpha matrix is empty here, so its EMA returns the weights unchanged.
        return weights.to_vec();
    }
    let cols = consensus.len();
    let mut alpha_row = vec![ZERO; cols];
    let mut decayed = vec![ZERO; cols];
    let mut needed: Vec<u16> = Vec::new();
    weights
        .iter()
        .zip(bonds.iter())
        .map(|(w_row, b_row)| {
            needed.clear();
            if strictly_sorted(w_row) && strictly_sorted(b_row) {
                merge_rows(w_row, b_row, cols, |j, _, _| needed.push(j));
            } else {
                needed.extend(
                    w_row
                        .iter()
                        .chain(b_row.iter())
                        .map(|(j, _)| *j)
                        .filter(|j| (*j as usize) < cols),
                );
                needed.sort_unstable();
                needed.dedup();
            }
            let mut w = MergeCursor::new(w_row);
            let mut b = MergeCursor::new(b_row);
            for &j in needed.iter() {
                alpha_row[j as usize] = alpha_sigmoid(
                    consensus[j as usize],
                    w.advance_to(j),
                    b.advance_to(j),
                    la.low,
                    la.high,
                    la.steepness,
                );
            }
            ema_alpha_row(w_row, b_row, &alpha_row, &mut decayed)
        })
        .collect()
}

/// Look up `(j, value)` in a sparse row the way the chain's liquid-alpha matrix does: a
/// forward merge that assumes rows sorted by column. Returns the value per column in
/// `0..columns` lazily through [`MergeCursor::advance_to`].
#[derive(Debug)]
pub struct MergeCursor<'a> {
    row: &'a [(u16, I32F32)],
    pos: usize,
}

impl<'a> MergeCursor<'a> {
    /// Start a merge over `row`.
    pub fn new(row: &'a [(u16, I32F32)]) -> Self {
        Self { row, pos: 0 }
    }

    /// Value at column `j` as the chain's peekable walk sees it, for non-decreasing `j`.
    pub fn advance_to(&mut self, j: u16) -> I32F32 {
        while let Some(&(c, v)) = self.row.get(self.pos) {
            if c < j {
                self.pos += 1;
            } else {
                return if c == j { v } else { ZERO };
            }
        }
        ZERO
    }
}

/// The liquid-alpha sigmoid for one (validator, miner) edge (`liquid_alpha_sigmoid`).
pub fn alpha_sigmoid(
    consensus: I32F32,
    weight: I32F32,
    bond: I32F32,
    alpha_low: I32F32,
    alpha_high: I32F32,
    steepness: I32F32,
) -> I32F32 {
    let half = I32F32::from_bits(1 << 31);
    let diff_buy = clamp_value(weight.saturating_sub(consensus), ZERO, ONE);
    let diff_sell = clamp_value(bond.saturating_sub(weight), ZERO, ONE);
    let combined = if weight >= bond { diff_buy } else { diff_sell };
    let x = saturating_div(steepness, I32F32::from_num(-100))
        .saturating_mul(combined.saturating_sub(half));
    let sigmoid = saturating_div(ONE, ONE.saturating_add(exp_safe(x)));
    let alpha =
        alpha_low.saturating_add(sigmoid.saturating_mul(alpha_high.saturating_sub(alpha_low)));
    clamp_value(alpha, alpha_low, alpha_high)
}

#[cfg(test)]
mod tests;
