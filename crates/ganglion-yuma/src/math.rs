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
///
/// One formula covers every positive divisor, so the fast path has no branch on the kind of
/// divisor: `q = (hi + ((m - hi) >> 1)) >> post` with `hi = mulhi(magic, m)`, where `m` is the
/// dividend shifted left by `shift`. A power of two `2^k` (k >= 1) has `magic = 0` and
/// `post = k - 1`; division by 1 (after stripping zeros) shifts one more bit left and has
/// `magic = 0`, `post = 0`, halving that range.
#[derive(Debug, Clone, Copy)]
pub struct Divisor {
    d: I32F32,
    /// Left shift applied to the dividend before the multiply-high.
    shift: u32,
    /// Dividends with raw bits in `0..fast_below` take the fast path (non-negative, and the
    /// shift loses no bits); 0 for zero or negative divisors, which always take the general
    /// path.
    fast_below: u64,
    magic: u64,
    post: u32,
}

impl Divisor {
    /// Prepare division by `d`.
    pub fn new(d: I32F32) -> Self {
        let bits = d.to_bits();
        if bits <= 0 {
            return Self {
                d,
                shift: 0,
                fast_below: 0,
                magic: 0,
                post: 0,
            };
        }
        // (a · 2^32) / (ub · 2^t) == (a · 2^(32 - t)) / ub exactly (see `div_bits`).
        let mut ub = bits as u64;
        let t = ub.trailing_zeros().min(32);
        ub >>= t;
        let mut shift = 32 - t;
        let (magic, post) = if ub == 1 {
            shift += 1;
            (0, 0)
        } else if ub.is_power_of_two() {
            (0, ub.trailing_zeros() - 1)
        } else {
            // ub < 2^63 (it came from a positive i64), so l = ceil(log2(ub)) is in 2..=63;
            // magic = floor(2^(64+l) / ub) - 2^64 + 1.
            let l = 64 - (ub - 1).leading_zeros();
            let m = ((1_u128 << (64 + l)) / u128::from(ub)) - (1_u128 << 64) + 1;
            (m as u64, l - 1)
        };
        Self {
            d,
            shift,
            // Shifting by `shift` loses nothing below 2^(64 - shift); and bits >= 0.
            fast_below: if shift == 0 {
                1 << 63
            } else {
                1 << (64 - shift)
            },
            magic,
            post,
        }
    }

    /// `a / d` exactly as [`checked_div`].
    #[inline]
    pub fn div(&self, a: I32F32) -> Option<I32F32> {
        let bits = a.to_bits();
        if (bits as u64) < self.fast_below {
            Some(I32F32::from_bits(self.fast_quotient(bits)))
        } else {
            checked_div(a, self.d)
        }
    }

    /// The quotient for `0 <= bits < fast_below`.
    #[inline]
    fn fast_quotient(&self, bits: i64) -> i64 {
        // Nothing here can overflow (shifts are below 64, hi <= m, the product fits 128
        // bits), so the wrapping forms only spare overflow checks in debug builds.
        let m = (bits as u64).wrapping_shl(self.shift);
        let hi = (u128::from(self.magic).wrapping_mul(u128::from(m)) >> 64) as u64;
        let q = hi
            .wrapping_add(m.wrapping_sub(hi) >> 1)
            .wrapping_shr(self.post);
        // q = floor(m / ub) with ub >= 3 (a multiplier), or m >> k with k >= 1: below 2^63
        // either way, so it always fits an i64.
        q as i64
    }

    /// `safe_div(a, d)`: the quotient, or 0 on overflow or a zero divisor.
    #[inline]
    pub fn safe_div(&self, a: I32F32) -> I32F32 {
        self.div(a).unwrap_or(ZERO)
    }

    /// [`Divisor::safe_div`] on raw bits.
    #[inline]
    pub(crate) fn safe_div_raw(&self, a: i64) -> i64 {
        if (a as u64) < self.fast_below {
            self.fast_quotient(a)
        } else {
            self.safe_div_general(a)
        }
    }

    #[cold]
    fn safe_div_general(&self, a: i64) -> i64 {
        safe_div(I32F32::from_bits(a), self.d).to_bits()
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
    let x = I32F32::from_bits(input.to_bits().clamp(-20 << 32, 20 << 32));
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
///
/// Two exact shortcuts: once a term floors to 0 every later term is 0 and the sum is final,
/// so the series stops there; and for `|x| <= 20` (all `exp_safe` inputs) no step can
/// overflow (the largest term times x is below 2^30, the sum below e^20 < 2^29), so that
/// range runs on plain unsigned integers without overflow checks.
pub fn exp_fixed(x: I32F32) -> Option<I32F32> {
    if x == ZERO || x == ONE {
        return exp::<I32F32, I32F32>(x).ok();
    }
    let neg = x < ZERO;
    let x = if neg { x.checked_neg()? } else { x };
    let result = if x.to_bits() <= EXP_UNCHECKED_MAX_BITS {
        I32F32::from_bits(exp_series_unchecked(x.to_bits() as u64) as i64)
    } else {
        exp_series_checked(x)?
    };
    if neg {
        return reciprocal(result);
    }
    Some(result)
}

/// Largest `x` (raw bits) for which [`exp_series_unchecked`] cannot overflow: 20.
const EXP_UNCHECKED_MAX_BITS: i64 = 20 << 32;

/// The series `1 + x + x^2/2! + ...` as substrate-fixed evaluates it (each term is the
/// previous one times x, floored, then divided by its index, truncated), for raw
/// `0 <= x <= 20`, where every intermediate fits an i64.
fn exp_series_unchecked(x: u64) -> u64 {
    // No step can overflow in this range (see `exp_fixed`): wrapping forms only spare the
    // overflow checks of debug builds.
    let mut result = x.wrapping_add(ONE.to_bits() as u64);
    let mut term = x;
    // Constant divisors become multiplications; a zero term ends the series exactly.
    macro_rules! step {
        ($($i:literal)*) => {$(
            term = (u128::from(term).wrapping_mul(u128::from(x)) >> 32) as u64 / $i;
            if term == 0 {
                return result;
            }
            result = result.wrapping_add(term);
        )*};
    }
    step!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    result
}

/// The same series with substrate-fixed's checked arithmetic, for `x > 20`.
fn exp_series_checked(x: I32F32) -> Option<I32F32> {
    let mut result = x.checked_add(ONE)?;
    let mut term = x;
    macro_rules! step {
        ($($i:literal)*) => {$(
            term = term.checked_mul(x)?;
            term = I32F32::from_bits(term.to_bits() / $i);
            if term == ZERO {
                return Some(result);
            }
            result = result.checked_add(term)?;
        )*};
    }
    step!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    Some(result)
}

/// `checked_div(1, d)` bit for bit. For `d >= 3` raw units the quotient `floor(2^64 / d)`
/// fits 63 bits and is `floor((2^64 - 1) / d)`, plus one exactly when `d` divides 2^64
/// (remainder `d - 1`): one 64-bit division instead of a 128-bit one.
pub(crate) fn reciprocal(d: I32F32) -> Option<I32F32> {
    let bits = d.to_bits();
    if bits < 3 {
        return checked_div(ONE, d);
    }
    let d = bits as u64;
    let q = u64::MAX / d + u64::from(u64::MAX % d == d - 1);
    Some(I32F32::from_bits(q as i64))
}

/// `I32F32` arithmetic on raw bits (an `i64` holding the value times 2^32), bit for bit as
/// substrate-fixed's, for the fused epoch's inner loops: substrate-fixed builds these from
/// generic pieces (an overflow-checked 128 × 128-bit product, mask-select saturation) that
/// cost several times the instructions of the plain integer forms here.
pub(crate) mod raw {
    /// 1.0.
    pub(crate) const ONE: i64 = 1 << 32;

    /// `saturating_mul`: the floor of the exact product over 2^32, clamped to the i64 range
    /// (an out-of-range product has the sign substrate-fixed saturates towards).
    #[inline]
    pub(crate) fn mul(a: i64, b: i64) -> i64 {
        // Two i64s multiply exactly in 128 bits (wrapping only spares a debug check).
        let p = i128::from(a).wrapping_mul(i128::from(b));
        let high = (p >> 64) as i64;
        // `p >> 32` fits an i64 when the top 33 bits of `p` (bits 31..64 of `high`) agree.
        if ((high as u64).wrapping_add(1 << 31) >> 32) == 0 {
            (p >> 32) as i64
        } else if high < 0 {
            i64::MIN
        } else {
            i64::MAX
        }
    }

    /// `fixed_proportion_to_u16`: `trunc(x · 65535)` clamped to `[0, 65535]` (the product
    /// `x · 65535` is exact, so only its integer part and the clamp remain).
    #[inline]
    pub(crate) fn proportion_to_u16(x: i64) -> u16 {
        if x <= 0 {
            return 0;
        }
        ((x as u128 * 65_535) >> 32).min(65_535) as u16
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
    let voters = MedianVoters::new(stake, majority);
    let k_total = voters.len();

    // Column-major dense score table (raw bits): columns x k_total (the chain's `use_score`).
    let mut use_score = vec![0_i64; columns as usize * k_total];
    let mut k = 0usize;
    for (&s, row) in stake.iter().zip(score.iter()) {
        if s > ZERO {
            for &(c, v) in row {
                if (c as usize) < columns as usize {
                    use_score[c as usize * k_total + k] = v.to_bits();
                }
            }
            k += 1;
        }
    }
    voters.column_medians(&use_score, columns as usize)
}

/// The rows that vote in [`weighted_median_col_sparse`]: those with positive stake, their
/// stake renormalised, and the minority stake the median is measured against.
#[derive(Debug)]
pub(crate) struct MedianVoters {
    /// Renormalised stake of each voting row, in uid order.
    stake: Vec<I32F32>,
    /// The same as raw bits.
    stake_raw: Vec<i64>,
    /// Stakes are normalised, so non-negative with a total far from overflow: then no
    /// partial sum of them overflows either, and plain additions equal saturating ones.
    exact_sums: bool,
    stake_sum: I32F32,
    minority: I32F32,
}

impl MedianVoters {
    /// Voters among `stake` for a `majority` share (κ).
    pub(crate) fn new(stake: &[I32F32], majority: I32F32) -> Self {
        let mut use_stake: Vec<I32F32> = stake.iter().copied().filter(|s| *s > ZERO).collect();
        inplace_normalize(&mut use_stake);
        let stake_sum = sum(&use_stake);
        let stake_raw: Vec<i64> = use_stake.iter().map(|s| s.to_bits()).collect();
        Self {
            minority: stake_sum.saturating_sub(majority),
            exact_sums: stake_raw.iter().all(|s| *s >= 0)
                && stake_raw.iter().map(|s| i128::from(*s)).sum::<i128>() <= i128::from(i64::MAX),
            stake: use_stake,
            stake_raw,
            stake_sum,
        }
    }

    /// Number of voters (rows of a score column).
    pub(crate) fn len(&self) -> usize {
        self.stake.len()
    }

    /// The median of each column of a column-major `columns × voters` score table (raw bits).
    pub(crate) fn column_medians(&self, table: &[i64], columns: usize) -> Vec<I32F32> {
        let mut buffer = Vec::new();
        let k = self.len();
        if k == 0 {
            return vec![ZERO; columns];
        }
        table
            .chunks_exact(k)
            .take(columns)
            .map(|col| self.median(col, &mut buffer))
            .collect()
    }

    /// The median of one column of `self.len()` scores (raw bits, voters in uid order);
    /// `buffer` is scratch space kept between calls.
    pub(crate) fn median(&self, col: &[i64], buffer: &mut Vec<(i64, i64)>) -> I32F32 {
        if !self.exact_sums {
            return I32F32::from_bits(self.column_median_by_index(col));
        }
        if buffer.len() < col.len() {
            buffer.resize(col.len(), (0, 0));
        }
        I32F32::from_bits(self.column_median(col, &self.stake_raw, buffer))
    }

    /// The chain's index-based [`weighted_median`] over one column (for stakes whose sums
    /// could saturate, which normalised stakes never do).
    fn column_median_by_index(&self, col: &[i64]) -> i64 {
        let score: Vec<I32F32> = col.iter().map(|s| I32F32::from_bits(*s)).collect();
        let idx: Vec<usize> = (0..col.len()).collect();
        weighted_median(
            &self.stake,
            &score,
            &idx,
            self.minority,
            ZERO,
            self.stake_sum,
        )
        .to_bits()
    }

    /// [`weighted_median_with`] over one column of scores with `stake` (raw bits, uid order,
    /// sums that cannot overflow): the same partitions, pivots and result. Each round first
    /// measures both sides of the pivot, then keeps only the side the median is in, compacted
    /// in place in its original order (the chain builds both sides and drops one).
    fn column_median(&self, col: &[i64], stake: &[i64], buffer: &mut [(i64, i64)]) -> i64 {
        let k = col.len();
        if k == 0 {
            return 0;
        }
        if k == 1 {
            return col[0];
        }
        let minority = self.minority.to_bits();
        let mut lo = 0_i64;
        let mut hi = self.stake_sum.to_bits();
        let mut pivot = col[k / 2];
        let column = || col.iter().copied().zip(stake.iter().copied());
        let mut sides = Sides::measure(column(), pivot);
        let mut in_buffer = false;
        let mut len = k;
        let mut iterations = 0usize;
        loop {
            let below = if minority < lo.saturating_add(sides.lower_stake) && sides.lower > 0 {
                hi = lo.saturating_add(sides.lower_stake);
                true
            } else if hi.saturating_sub(sides.upper_stake) <= minority && sides.upper > 0 {
                lo = hi.saturating_sub(sides.upper_stake);
                false
            } else {
                return pivot;
            };
            iterations += 1;
            if iterations > k {
                return 0;
            }
            let kept = if below { sides.lower } else { sides.upper };
            match (in_buffer, below) {
                (true, true) => compact_in_place(&mut buffer[..len], |s| s < pivot),
                (true, false) => compact_in_place(&mut buffer[..len], |s| pivot < s),
                (false, true) => compact_into(column(), buffer, |s| s < pivot),
                (false, false) => compact_into(column(), buffer, |s| pivot < s),
            }
            in_buffer = true;
            len = kept;
            if len == 1 {
                return buffer[0].0;
            }
            pivot = buffer[len / 2].0;
            sides = Sides::measure(buffer[..len].iter().copied(), pivot);
        }
    }
}

/// Sizes and stakes (raw bits) of the two sides of a partition around a pivot.
struct Sides {
    lower: usize,
    upper: usize,
    lower_stake: i64,
    upper_stake: i64,
}

impl Sides {
    /// Count and weigh the pairs below and above `pivot` (plain sums: the caller has ruled
    /// out overflow).
    #[inline]
    fn measure(items: impl Iterator<Item = (i64, i64)>, pivot: i64) -> Self {
        let mut sides = Self {
            lower: 0,
            upper: 0,
            lower_stake: 0,
            upper_stake: 0,
        };
        // Wrapping forms: the sums cannot overflow (see the caller), and counts stay below
        // the column's length; they only spare debug builds' checks, which stop vectorising.
        for (score, stake) in items {
            let below = score < pivot;
            let above = pivot < score;
            sides.lower_stake = sides
                .lower_stake
                .wrapping_add(if below { stake } else { 0 });
            sides.upper_stake = sides
                .upper_stake
                .wrapping_add(if above { stake } else { 0 });
            sides.lower = sides.lower.wrapping_add(usize::from(below));
            sides.upper = sides.upper.wrapping_add(usize::from(above));
        }
        sides
    }
}

/// Write, in order, the pairs whose score satisfies `keep` to the front of `out`, which must
/// be as long as `items` (every pair is written; only kept ones advance the position).
#[inline]
fn compact_into(
    items: impl Iterator<Item = (i64, i64)>,
    out: &mut [(i64, i64)],
    keep: impl Fn(i64) -> bool,
) {
    let mut kept = 0_usize;
    for item in items {
        out[kept] = item;
        kept = kept.wrapping_add(usize::from(keep(item.0)));
    }
}

/// [`compact_into`] within one slice.
#[inline]
fn compact_in_place(items: &mut [(i64, i64)], keep: impl Fn(i64) -> bool) {
    let mut kept = 0_usize;
    for x in 0..items.len() {
        let item = items[x];
        items[kept] = item;
        kept = kept.wrapping_add(usize::from(keep(item.0)));
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

/// [`alpha_sigmoid`] with its per-epoch constants prepared once, on raw bits: the slope
/// `steepness/-100`, the span `high - low`, and the curve's values where the clamped
/// difference is exactly 0 or 1 (a weight at or below consensus with a bond below it gives
/// 0, which is most edges). `alpha(c, w, b)` equals
/// `alpha_sigmoid(c, w, b, low, high, steepness)` bit for bit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AlphaCurve {
    low: i64,
    high: i64,
    span: i64,
    slope: i64,
    at_zero: i64,
    at_one: i64,
}

impl AlphaCurve {
    /// Prepare the curve for `la`.
    pub(crate) fn new(la: LiquidAlpha) -> Self {
        let mut curve = Self {
            low: la.low.to_bits(),
            high: la.high.to_bits(),
            span: la.high.saturating_sub(la.low).to_bits(),
            slope: saturating_div(la.steepness, I32F32::from_num(-100)).to_bits(),
            at_zero: 0,
            at_one: 0,
        };
        curve.at_zero = curve.at_combined(0);
        curve.at_one = curve.at_combined(raw::ONE);
        curve
    }

    /// Alpha for one (validator, miner) edge, all raw bits.
    #[inline]
    pub(crate) fn alpha(&self, consensus: i64, weight: i64, bond: i64) -> i64 {
        let combined = if weight >= bond {
            weight.saturating_sub(consensus).clamp(0, raw::ONE)
        } else {
            bond.saturating_sub(weight).clamp(0, raw::ONE)
        };
        match combined {
            0 => self.at_zero,
            raw::ONE => self.at_one,
            _ => self.at_combined(combined),
        }
    }

    /// The sigmoid of [`alpha_sigmoid`] from its clamped difference on.
    fn at_combined(&self, combined: i64) -> i64 {
        let x = raw::mul(self.slope, combined.saturating_sub(1 << 31));
        // `exp_safe` clamps its input to [-20, 20].
        let x = x.clamp(-EXP_UNCHECKED_MAX_BITS, EXP_UNCHECKED_MAX_BITS);
        if let Some(alpha) = self.bracketed(x) {
            return alpha;
        }
        self.alpha_at_exp(exp_safe(I32F32::from_bits(x)).to_bits())
    }

    /// The rest of [`alpha_sigmoid`] from `e = exp_safe(x)` on: `1 / (1 + e)` scaled into
    /// `[low, high]`. Monotone in `e` (non-increasing for `high >= low`, non-decreasing
    /// otherwise): every step is a monotone function of the one before.
    fn alpha_at_exp(&self, e: i64) -> i64 {
        let denominator = ONE.saturating_add(I32F32::from_bits(e));
        // `saturating_div(1, d)`; `reciprocal` is `checked_div(1, d)`.
        let sigmoid = reciprocal(denominator)
            .unwrap_or_else(|| saturating_div(ONE, denominator))
            .to_bits();
        self.alpha_at_sigmoid(sigmoid)
    }

    /// The last step of [`AlphaCurve::alpha_at_exp`].
    fn alpha_at_sigmoid(&self, sigmoid: i64) -> i64 {
        let alpha = self.low.saturating_add(raw::mul(sigmoid, self.span));
        alpha.min(self.high).max(self.low)
    }

    /// Alpha for a clamped `x` without evaluating substrate-fixed's series, when that is
    /// possible: [`exp_series_bounds`] brackets the series, and as [`AlphaCurve::alpha_at_exp`]
    /// is monotone, equal alphas at both ends of the bracket are the alpha of every value in
    /// it, the exact one included. A bracket that straddles a step of the result (rare
    /// except near x = 0, where the steps are a few units apart) returns `None`.
    fn bracketed(&self, x: i64) -> Option<i64> {
        // substrate-fixed special-cases exp(0) and exp(1).
        if x == 0 || x == ONE.to_bits() {
            return None;
        }
        let (low, high) = exp_series_bounds(x.unsigned_abs());
        let (e_low, e_high) = if x > 0 {
            (low, high)
        } else {
            // exp(-a) is the reciprocal of the series at a (at least 1 + a, so >= 3).
            (floor_2_64_over(high), floor_2_64_over(low))
        };
        // The sigmoid `floor(2^64 / d)` with `d = 1 + e` (2^32 + e: no saturation below
        // 2^63, and above 3, so `reciprocal`'s fast form). With `2^64 = s·d_low + rem`, the
        // larger `d_high` gives the same `s` exactly when `s·(d_high - d_low) <= rem`, and
        // then so does every `d` between: one division decides most brackets.
        let d_low = (1_u64 << 32) + e_low;
        let d_high = (1_u64 << 32) + e_high;
        let q = u64::MAX / d_low;
        let r = u64::MAX % d_low;
        let (sigmoid, rem) = if r == d_low - 1 {
            (q + 1, 0)
        } else {
            (q, r + 1)
        };
        if u128::from(sigmoid) * u128::from(d_high - d_low) <= u128::from(rem) {
            return Some(self.alpha_at_sigmoid(sigmoid as i64));
        }
        let alpha = self.alpha_at_exp(e_low as i64);
        (alpha == self.alpha_at_exp(e_high as i64)).then_some(alpha)
    }
}

/// `floor(2^64 / d)` for `d >= 3`, below 2^63.
fn floor_2_64_over(d: u64) -> u64 {
    u64::MAX / d + u64::from(u64::MAX % d == d - 1)
}

/// `1 / k!` for k in 0..=31, each from the previous by one division (relative error at most
/// k · 2^-53).
const INVERSE_FACTORIALS: [f64; 32] = {
    let mut c = [1.0_f64; 32];
    let mut k = 1;
    while k < 32 {
        c[k] = c[k - 1] / k as f64;
        k += 1;
    }
    c
};

/// Buckets per unit of x in [`SERIES_FLOOR_LOSS`].
const LOSS_BUCKETS_PER_UNIT: usize = 16;

/// For x = b / 16 (b in 0..=321): an upper bound on how far substrate-fixed's series falls
/// below the exact 32-term Taylor polynomial, in raw units. Each term is the previous one
/// times x, floored, divided by its index, truncated: `t_k = floor(t_(k-1) · x / k)` (two
/// truncations of positive values by integers make one), so if `t_(k-1)` is at most
/// `d_(k-1)` below the exact term, `t_k` is less than `d_(k-1) · x / k + 1` below it; `t_1 = x`
/// is exact. The bound is the sum of `d_2..d_31`, which grows with x, so a bucket's bound
/// holds for every x up to it; computed in f64 and then widened far beyond its rounding.
const SERIES_FLOOR_LOSS: [f64; 322] = {
    let mut bound = [0.0_f64; 322];
    let mut b = 0;
    while b < 322 {
        let x = b as f64 / LOSS_BUCKETS_PER_UNIT as f64;
        let mut d = 0.0_f64;
        let mut total = 0.0_f64;
        let mut k = 2;
        while k < 32 {
            d = d * x / k as f64 + 1.0;
            total += d;
            k += 1;
        }
        bound[b] = total * 1.000_001 + 1.0;
        b += 1;
    }
    bound
};

/// Bounds `(low, high)` on substrate-fixed's series `exp_series_unchecked(a)` for raw
/// `0 < a <= 20 · 2^32`, from one f64 evaluation of the same 32-term polynomial.
///
/// The series never exceeds the exact polynomial `2^32 · Σ_(k<=31) (a/2^32)^k / k!` (every
/// term is truncated down) and falls below it by at most [`SERIES_FLOOR_LOSS`]. Any
/// evaluation of a polynomial with positive coefficients at a positive point in f64 is off by
/// at most a relative (operations on the longest path + 1) · 2^-53 (here 12 plus 31 for the
/// coefficients), so well within 1e-14 of it; 1e-12 is used, and a few more units each side cover the
/// conversions. The lower bound is also at least `1 + a`, the series' first two terms.
fn exp_series_bounds(a: u64) -> (u64, u64) {
    const RELATIVE: f64 = 1e-12;
    let y = a as f64 / 4_294_967_296.0;
    // Estrin's scheme (pairs, then pairs of pairs with y^2, y^4, ...): the same positive
    // terms as Horner's rule with a short dependency chain.
    let mut level = [0.0_f64; 16];
    for (pair, c) in level.iter_mut().zip(INVERSE_FACTORIALS.chunks_exact(2)) {
        *pair = c[0] + c[1] * y;
    }
    let mut power = y * y;
    let mut len = 16;
    while len > 1 {
        len /= 2;
        for i in 0..len {
            level[i] = level[2 * i] + level[2 * i + 1] * power;
        }
        power *= power;
    }
    let polynomial = level[0] * 4_294_967_296.0;
    let loss = SERIES_FLOOR_LOSS[(a >> 28) as usize + 1];
    // Float-to-integer casts truncate (and saturate below 0), which for these positive
    // bounds is rounding down: one more unit up covers the upper one.
    let low = (polynomial * (1.0 - RELATIVE) - loss - 2.0) as u64;
    let high = (polynomial * (1.0 + RELATIVE) + 2.0) as u64 + 1;
    let first_two = (1_u64 << 32) + a;
    (low.max(first_two), high)
}

#[cfg(test)]
mod tests;
