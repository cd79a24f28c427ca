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
    a.checked_div(b).unwrap_or(ZERO)
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
    match exp::<I32F32, I32F32>(x) {
        Ok(v) => v,
        Err(()) if x <= ZERO => ZERO,
        Err(()) => I32F32::max_value(),
    }
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
    x.iter_mut().for_each(|v| *v = safe_div(*v, s));
}

/// Divide every entry by `x_sum` unless it is 0 (`inplace_normalize_using_sum`).
pub fn inplace_normalize_using_sum(x: &mut [I32F32], x_sum: I32F32) {
    if x_sum == ZERO {
        return;
    }
    x.iter_mut().for_each(|v| *v = safe_div(*v, x_sum));
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
            row.iter_mut().for_each(|(_, v)| *v = safe_div(*v, s));
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
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            let d = col_sum.get(*j as usize).copied().unwrap_or(ZERO);
            if d != ZERO {
                *v = safe_div(*v, d);
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
    for row in m.iter_mut() {
        for (j, v) in row.iter_mut() {
            let mx = col_max.get(*j as usize).copied().unwrap_or(ZERO);
            if mx != ZERO {
                *v = safe_div(*v, mx);
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
        .map(|(i, row)| row.iter().filter(|(j, _)| i != *j as usize).copied().collect())
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
        .map(|(row, &scale)| row.iter().map(|&(j, x)| (j, x.saturating_mul(scale))).collect())
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
    let stake_idx: Vec<usize> = (0..use_stake.len()).collect();
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
    let mut scratch = MedianScratch::default();
    (0..columns as usize)
        .map(|c| {
            let col = &use_score[c * k_total..(c + 1) * k_total];
            weighted_median_with(
                &mut scratch,
                &use_stake,
                col,
                &stake_idx,
                minority,
                ZERO,
                stake_sum,
            )
        })
        .collect()
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
                    alpha_sigmoid(*c, w.advance_to(j), b.advance_to(j), la.low, la.high, la.steepness)
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
            needed.extend(w_row.iter().chain(b_row.iter()).map(|(j, _)| *j).filter(|j| (*j as usize) < cols));
            needed.sort_unstable();
            needed.dedup();
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
    let x = steepness
        .saturating_div(I32F32::from_num(-100))
        .saturating_mul(combined.saturating_sub(half));
    let sigmoid = ONE.saturating_div(ONE.saturating_add(exp_safe(x)));
    let alpha = alpha_low.saturating_add(sigmoid.saturating_mul(alpha_high.saturating_sub(alpha_low)));
    clamp_value(alpha, alpha_low, alpha_high)
}

#[cfg(test)]
mod tests;
