//! Weight conversion and validation, as the Bittensor SDK and subtensor's `set_weights` do it.
//!
//! Two halves (`spec/chain.md` §2):
//! - client side, [`convert_weights_and_uids_for_emit`]: the SDK's float → u16 conversion
//!   (max-upscale, Python `round` with ties to even, zeros dropped);
//! - chain side, [`check_set_weights`]: the pure checks of `do_set_weights` in the chain's
//!   order, then the re-upscale (`vec_u16_max_upscale_to_u16`) and the max-weight limit,
//!   returning the row to store. Errors carry the chain's own names.
//!
//! This module knows nothing about signatures, storage, hotkeys or whether a subnet exists;
//! the node checks those first and hands over the facts in [`SetWeightsContext`].

use crate::math;

/// Why a weight submission was refused. Variant names are subtensor's `Error` names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    /// SDK: a weight is negative.
    #[error("weight {value} for uid {uid} is negative; weights must be >= 0")]
    NegativeWeight {
        /// Target uid.
        uid: u16,
        /// The offending value.
        value: f64,
    },
    /// SDK: a weight is NaN or infinite (the SDK fails on these when rounding).
    #[error("weight for uid {uid} is not a finite number; pass finite, non-negative weights")]
    NonFiniteWeight {
        /// Target uid.
        uid: u16,
    },
    /// `WeightVecNotEqualSize`: uids and values differ in length.
    #[error("WeightVecNotEqualSize: {uids} uids but {values} values; pass one value per uid")]
    WeightVecNotEqualSize {
        /// Number of uids.
        uids: usize,
        /// Number of values.
        values: usize,
    },
    /// `UidsLengthExceedUidsInSubNet`: more uids than the subnet has.
    #[error(
        "UidsLengthExceedUidsInSubNet: {len} uids for a subnet of {n}; send at most one weight per neuron"
    )]
    UidsLengthExceedUidsInSubNet {
        /// Number of uids sent.
        len: usize,
        /// Subnet size.
        n: u16,
    },
    /// `NotEnoughStakeToSetWeights`: stake below the subnet's `StakeThreshold`.
    #[error(
        "NotEnoughStakeToSetWeights: stake {stake} rao is below the threshold {threshold} rao; stake more first"
    )]
    NotEnoughStakeToSetWeights {
        /// Caller's stake weight in rao.
        stake: u64,
        /// `StakeThreshold`.
        threshold: u64,
    },
    /// `IncorrectWeightVersionKey`: the version key is older than the subnet requires.
    #[error(
        "IncorrectWeightVersionKey: version key {got} is below the subnet's {required}; upgrade the validator"
    )]
    IncorrectWeightVersionKey {
        /// Key sent.
        got: u64,
        /// `WeightsVersionKey`.
        required: u64,
    },
    /// `SettingWeightsTooFast`: within the rate limit of the last update.
    #[error(
        "SettingWeightsTooFast: last update at block {last_update}, now {current_block}, limit {rate_limit} blocks; wait and retry"
    )]
    SettingWeightsTooFast {
        /// `LastUpdate` of the caller.
        last_update: u64,
        /// Current block.
        current_block: u64,
        /// `WeightsSetRateLimit`.
        rate_limit: u64,
    },
    /// `NeuronNoValidatorPermit`: non-self weights without a validator permit.
    #[error(
        "NeuronNoValidatorPermit: uid {uid} has no validator permit; only a single self-weight is allowed without one"
    )]
    NeuronNoValidatorPermit {
        /// Caller uid.
        uid: u16,
    },
    /// `DuplicateUids`: a uid appears twice.
    #[error("DuplicateUids: uid {uid} appears more than once; send each uid once")]
    DuplicateUids {
        /// First repeated uid.
        uid: u16,
    },
    /// `UidVecContainInvalidOne`: a uid is not registered in the subnet.
    #[error(
        "UidVecContainInvalidOne: uid {uid} does not exist in a subnet of {n}; refresh the metagraph"
    )]
    UidVecContainInvalidOne {
        /// The unknown uid.
        uid: u16,
        /// Subnet size.
        n: u16,
    },
    /// `WeightVecLengthIsLow`: fewer weights than `min(MinAllowedWeights, n)`.
    #[error(
        "WeightVecLengthIsLow: {len} weights but at least {min} are required; weight more neurons"
    )]
    WeightVecLengthIsLow {
        /// Number of weights sent.
        len: usize,
        /// Required minimum.
        min: usize,
    },
    /// `MaxWeightExceeded`: a normalised weight exceeds `MaxWeightsLimit / 65535`.
    #[error(
        "MaxWeightExceeded: a weight exceeds the limit {limit}/65535 of the total; spread weight more evenly"
    )]
    MaxWeightExceeded {
        /// `MaxWeightsLimit`.
        limit: u16,
    },
}

/// The SDK's `convert_weights_and_uids_for_emit`: float weights to the u16 values sent on chain.
///
/// Rejects negative and non-finite weights and mismatched lengths. If all weights are 0,
/// returns empty vectors (nothing to set). Otherwise each weight is divided by the max,
/// multiplied by 65535 and rounded half to even (Python `round`), and zeros are dropped.
/// f32 weights (the SDK's numpy dtype) widen to f64 exactly, as Python's `float()` does.
pub fn convert_weights_and_uids_for_emit(
    uids: &[u16],
    weights: &[f64],
) -> Result<(Vec<u16>, Vec<u16>), WeightsError> {
    for (&uid, &w) in uids.iter().zip(weights.iter()) {
        if w.is_nan() || w.is_infinite() {
            return Err(WeightsError::NonFiniteWeight { uid });
        }
        if w < 0.0 {
            return Err(WeightsError::NegativeWeight { uid, value: w });
        }
    }
    if uids.len() != weights.len() {
        return Err(WeightsError::WeightVecNotEqualSize {
            uids: uids.len(),
            values: weights.len(),
        });
    }
    let max = weights.iter().copied().fold(0.0_f64, f64::max);
    if max == 0.0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut out_uids = Vec::with_capacity(uids.len());
    let mut out_vals = Vec::with_capacity(uids.len());
    for (&uid, &w) in uids.iter().zip(weights.iter()) {
        // w / max <= 1, so the product is in [0, 65535] and the cast cannot saturate.
        let v = ((w / max) * f64::from(u16::MAX)).round_ties_even() as u16;
        if v != 0 {
            out_uids.push(uid);
            out_vals.push(v);
        }
    }
    Ok((out_uids, out_vals))
}

/// What the chain knows about the caller and the subnet when it checks a `set_weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetWeightsContext {
    /// Subnet size (`SubnetworkN`); valid uids are `0..n`.
    pub n: u16,
    /// The caller's uid.
    pub uid: u16,
    /// True when the caller is the subnet owner's hotkey (exempt from permit and stake rules).
    pub is_owner: bool,
    /// Caller's stake weight in rao.
    pub stake: u64,
    /// `StakeThreshold` in rao.
    pub stake_threshold: u64,
    /// `WeightsVersionKey` (0 = any).
    pub required_version_key: u64,
    /// Version key sent with the call.
    pub version_key: u64,
    /// Current block.
    pub current_block: u64,
    /// Caller's `LastUpdate` (0 = never set).
    pub last_update: u64,
    /// `WeightsSetRateLimit` in blocks.
    pub rate_limit: u64,
    /// `CommitRevealWeightsEnabled` (skips the rate limit here; the extrinsic itself is
    /// refused with `CommitRevealEnabled` by the node).
    pub commit_reveal_enabled: bool,
    /// Caller's current `ValidatorPermit`.
    pub validator_permit: bool,
    /// `MinAllowedWeights`.
    pub min_allowed_weights: u16,
    /// `MaxWeightsLimit` (65535 = no limit).
    pub max_weight_limit: u16,
}

/// True when the submission is a single weight on the caller itself (`is_self_weight`).
pub fn is_self_weight(uid: u16, uids: &[u16], values: &[u16]) -> bool {
    values.len() == 1 && uids.first() == Some(&uid)
}

/// Run the chain's `set_weights` checks in its order and return the row to store:
/// `(uid, max-upscaled value)` pairs in the order sent.
///
/// Order: lengths equal, `len <= n`, stake threshold (owner exempt), version key, rate limit
/// (unless commit-reveal), permit (unless single self-weight or owner), duplicates, unknown
/// uids, minimum length (unless self-weight), re-upscale, max-weight limit (unless
/// self-weight). Zero values are stored as sent, like the chain does.
pub fn check_set_weights(
    ctx: &SetWeightsContext,
    uids: &[u16],
    values: &[u16],
) -> Result<Vec<(u16, u16)>, WeightsError> {
    if uids.len() != values.len() {
        return Err(WeightsError::WeightVecNotEqualSize {
            uids: uids.len(),
            values: values.len(),
        });
    }
    if uids.len() > ctx.n as usize {
        return Err(WeightsError::UidsLengthExceedUidsInSubNet {
            len: uids.len(),
            n: ctx.n,
        });
    }
    if !ctx.is_owner && ctx.stake < ctx.stake_threshold {
        return Err(WeightsError::NotEnoughStakeToSetWeights {
            stake: ctx.stake,
            threshold: ctx.stake_threshold,
        });
    }
    if ctx.required_version_key != 0 && ctx.version_key < ctx.required_version_key {
        return Err(WeightsError::IncorrectWeightVersionKey {
            got: ctx.version_key,
            required: ctx.required_version_key,
        });
    }
    if !ctx.commit_reveal_enabled
        && ctx.last_update != 0
        && ctx.current_block.saturating_sub(ctx.last_update) < ctx.rate_limit
    {
        return Err(WeightsError::SettingWeightsTooFast {
            last_update: ctx.last_update,
            current_block: ctx.current_block,
            rate_limit: ctx.rate_limit,
        });
    }
    let self_weight = is_self_weight(ctx.uid, uids, values);
    if !self_weight && !ctx.is_owner && !ctx.validator_permit {
        return Err(WeightsError::NeuronNoValidatorPermit { uid: ctx.uid });
    }
    let mut seen = vec![false; usize::from(u16::MAX) + 1];
    for &u in uids {
        let slot = &mut seen[u as usize];
        if *slot {
            return Err(WeightsError::DuplicateUids { uid: u });
        }
        *slot = true;
    }
    if let Some(&bad) = uids.iter().find(|u| **u >= ctx.n) {
        return Err(WeightsError::UidVecContainInvalidOne { uid: bad, n: ctx.n });
    }
    let min = (ctx.min_allowed_weights as usize).min(ctx.n as usize);
    if !self_weight && values.len() < min {
        return Err(WeightsError::WeightVecLengthIsLow {
            len: values.len(),
            min,
        });
    }
    let upscaled = math::vec_u16_max_upscale_to_u16(values);
    if !self_weight
        && ctx.max_weight_limit != u16::MAX
        && !math::check_vec_max_limited(&upscaled, ctx.max_weight_limit)
    {
        return Err(WeightsError::MaxWeightExceeded {
            limit: ctx.max_weight_limit,
        });
    }
    Ok(uids.iter().copied().zip(upscaled).collect())
}

// ---------------------------------------------------------------------------------------------
// The SDK's `process_weights_for_netuid`, mirroring its numpy arithmetic.
// ---------------------------------------------------------------------------------------------

/// The two numpy dtypes the SDK's weight processing runs in (`float32` for the caller's weights,
/// `float64` where it builds arrays from Python ints and floats). Each numpy operation is
/// mirrored in the dtype numpy computes it in under NEP 50 promotion (numpy 2): array or numpy
/// scalar with a Python float or int → the array's dtype; with an `int64` or `float64` numpy
/// scalar → `float64`.
trait NpFloat:
    Copy
    + PartialOrd
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    /// A Python float meeting this dtype (weak promotion): numpy casts it, rounding to nearest.
    fn from_f64(x: f64) -> Self;
    /// A Python int meeting this dtype (weak promotion): numpy casts it, rounding to nearest.
    fn from_usize(x: usize) -> Self;
    /// This dtype meeting a `float64` numpy scalar: widened exactly.
    fn to_f64(self) -> f64;
    fn is_nan(self) -> bool;
}

impl NpFloat for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn from_usize(x: usize) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl NpFloat for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn from_usize(x: usize) -> Self {
        x as f64
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// `np.sum` of a contiguous 1-D array: the identity 0 plus numpy's pairwise summation
/// (`@TYPE@_pairwise_sum`: below 8 elements a plain loop, up to 128 eight interleaved
/// accumulators combined as `((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))` then the tail, above that
/// the two halves split at a multiple of 8), accumulating in the array's own dtype — a float32
/// array sums in float32. A left-to-right sum rounds differently, and the sums feed every
/// division in `normalize_max_weight`, so the order must be numpy's.
fn np_sum<F: NpFloat>(x: &[F]) -> F {
    F::ZERO + pairwise_sum(x)
}

fn pairwise_sum<F: NpFloat>(a: &[F]) -> F {
    let n = a.len();
    if n < 8 {
        a.iter().fold(F::ZERO, |res, &v| res + v)
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let full = n - n % 8;
        for block in a[8..full].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc = *acc + v;
            }
        }
        let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[full..].iter().fold(res, |res, &v| res + v)
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.max`: NaN if any element is NaN.
fn np_max<F: NpFloat>(x: &[F]) -> F {
    let mut it = x.iter().copied();
    let Some(first) = it.next() else {
        return F::ZERO;
    };
    it.fold(first, |m, v| {
        if m.is_nan() || !(v.is_nan() || v > m) {
            m
        } else {
            v
        }
    })
}

/// `np.sort` order: ascending, NaN last (numpy's sort puts NaN at the end).
fn np_sorted<F: NpFloat>(x: &[F]) -> Vec<F> {
    let mut v = x.to_vec();
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => core::cmp::Ordering::Equal,
        (true, false) => core::cmp::Ordering::Greater,
        (false, true) => core::cmp::Ordering::Less,
        (false, false) => a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal),
    });
    v
}

/// The SDK's `normalize_max_weight` on an array of dtype `F`, operation by operation.
fn normalize_max_weight_np<F: NpFloat>(x: &[F], limit: f64) -> Vec<F> {
    // `epsilon = 1e-7`, a Python float.
    const EPSILON: f64 = 1e-7;
    let len = x.len();
    // `x.sum() == 0 or x.shape[0] * limit <= 1`: the product is Python int × Python float (f64).
    if np_sum(x) == F::ZERO || (len as f64) * limit <= 1.0 {
        // `np.ones_like(x) / x.shape[0]`: in the array's dtype.
        return vec![F::ONE / F::from_usize(len); len];
    }
    let values = np_sorted(x);
    let values_sum = np_sum(&values);
    let estimation: Vec<F> = values.iter().map(|&v| v / values_sum).collect();
    // Every comparison of a dtype-F value with the Python float `limit` happens in dtype F.
    let limit_f = F::from_f64(limit);
    if np_max(&estimation) <= limit_f {
        let s = np_sum(x);
        return x.iter().map(|&w| w / s).collect();
    }
    // `np.cumsum`: a sequential accumulation in dtype F.
    let mut cumsum = Vec::with_capacity(len);
    let mut acc = estimation[0];
    cumsum.push(acc);
    for &e in &estimation[1..] {
        acc = acc + e;
        cumsum.push(acc);
    }
    let eps_f = F::from_f64(EPSILON);
    // `estimation_sum[i] = (len - i - 1) * estimation[i]` (Python int × dtype F → F), then
    // `(estimation / (estimation_sum + cumsum + epsilon) < limit).sum()`.
    let n_values = (0..len)
        .filter(|&i| {
            let es = F::from_usize(len - i - 1) * estimation[i];
            estimation[i] / ((es + cumsum[i]) + eps_f) < limit_f
        })
        .count();
    // `cumsum[n_values - 1]`: Python indexing, so n_values == 0 reads the last element.
    let c = cumsum[(n_values + len - 1) % len];
    // Numerator in dtype F (`limit * cumsum[..] - epsilon`); the denominator is
    // `1 - limit * np.int64(len - n_values)`, a float64; so the quotient and `cutoff` are float64.
    let numerator = (limit_f * c - eps_f).to_f64();
    let denominator = 1.0 - limit * ((len - n_values) as f64);
    let cutoff = numerator / denominator * values_sum.to_f64();
    // `weights[weights > cutoff] = cutoff`: compared in float64, stored cast back to dtype F.
    let cutoff_f = F::from_f64(cutoff);
    let clipped: Vec<F> = x
        .iter()
        .map(|&w| if w.to_f64() > cutoff { cutoff_f } else { w })
        .collect();
    let s = np_sum(&clipped);
    clipped.iter().map(|&w| w / s).collect()
}

/// The SDK's `normalize_max_weight(x, limit)` on a float32 array (`bittensor.utils.weight_utils`,
/// bittensor 10.5.0, numpy 2): scale `x` to sum 1 with no element above `limit`, by clipping the
/// largest elements at a common cutoff.
///
/// Bit-identical to the SDK, including its edge cases: an all-zero sum or `len * limit <= 1`
/// gives the uniform `1/len`; an empty `x` gives an empty result; NaN and infinities propagate
/// as IEEE arithmetic does in numpy. `limit` is a float64 like the SDK's Python float, because
/// part of the algorithm (`len * limit <= 1`, the cutoff's denominator) runs in float64: with an
/// f32 limit, `len = 10, limit = 0.1` would no longer be uniform. Other comparisons with `limit`
/// happen in float32, as numpy does them. Sums are numpy's pairwise sums in float32.
pub fn normalize_max_weight(x: &[f32], limit: f64) -> Vec<f32> {
    normalize_max_weight_np(x, limit)
}

/// [`normalize_max_weight`] on a float64 array, as the SDK runs it when
/// `process_weights_for_netuid` pads too few weights (its array is float64 there).
pub fn normalize_max_weight_f64(x: &[f64], limit: f64) -> Vec<f64> {
    normalize_max_weight_np(x, limit)
}

/// `np.quantile(a, q)` (method "linear") of a float32 array already sorted ascending, with `q`
/// a Python float, as numpy 2.4 computes it: `q` stays float64 (numpy 2.2 cast it to float32),
/// the virtual index `(len - 1) * q`, its floor and the fraction `gamma` are float64; the
/// interpolation `_lerp` runs in float32 with `gamma` (and `1 - gamma`, formed in float64)
/// cast to float32: `a + (b - a) * gamma`, or `b - (b - a) * (1 - gamma)` when `gamma >= 0.5`.
fn np_quantile_linear_sorted(sorted: &[f32], q: f64) -> f32 {
    let Some(&last) = sorted.last() else {
        return f32::NAN;
    };
    let m = sorted.len();
    let virtual_index = (m - 1) as f64 * q;
    let (mut previous, mut next) = (virtual_index.floor(), virtual_index.floor() + 1.0);
    if virtual_index >= (m - 1) as f64 {
        (previous, next) = (-1.0, -1.0);
    }
    if virtual_index < 0.0 {
        (previous, next) = (0.0, 0.0);
    }
    if virtual_index.is_nan() {
        (previous, next) = (-1.0, -1.0);
    }
    // Index -1 is Python's last element.
    let at = |i: f64| {
        if i < 0.0 {
            last
        } else {
            sorted.get(i as usize).copied().unwrap_or(last)
        }
    };
    let gamma = virtual_index - previous;
    let (a, b) = (at(previous), at(next));
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * ((1.0 - gamma) as f32)
    } else {
        a + diff * (gamma as f32)
    }
}

/// The SDK's `process_weights_for_netuid(uids, weights, netuid, subtensor, metagraph,
/// exclude_quantile)` (bittensor 10.5.0 `bittensor.utils.weight_utils`, numpy path), with the
/// chain's hyperparameters passed in: `n` is `metagraph.n`, `min_allowed_weights` the raw
/// `MinAllowedWeights`, `max_weight_limit_u16` the raw `MaxWeightsLimit` (the SDK's
/// `subtensor.max_weight_limit` is it divided by 65535 in float64), `exclude_quantile` the u16
/// the SDK divides by 65535. `weights` is the caller's float32 array.
///
/// Returns `(uids, weights)` exactly as the SDK does, the weights widened to f64 without loss:
/// 1. no weight `> 0`, or `n < min_allowed_weights`: uids `0..n`, weights `1/n` (float64);
/// 2. fewer weights `> 0` than `min_allowed_weights`: uids `0..n`, a float64 array of `1e-5`
///    plus each positive weight *at its position* in `weights` (the SDK assumes position =
///    uid), through [`normalize_max_weight_f64`];
/// 3. otherwise the positive weights and their uids, minus those below
///    `np.quantile(positive, min(exclude_quantile / 65535, max(0, k - min_allowed_weights) / k))`
///    for `k` positive weights, through [`normalize_max_weight`] in float32.
///
/// Feed the result to [`convert_weights_and_uids_for_emit`] for what goes on chain, or use
/// [`process_and_convert`]. The result is f64 because branches 1 and 2 are float64 in the SDK:
/// rounding them to f32 would change the u16 values after conversion.
///
/// Like the SDK, NaN, zero and negative weights are not errors: they are simply not `> 0`.
/// Uids are not checked against `n` (the SDK only carries them along), and `+inf` propagates as
/// in numpy (it usually ends as NaN weights, which the conversion refuses).
///
/// # Errors
/// Exactly where the SDK raises (`IndexError` in both cases):
/// - [`WeightsError::WeightVecNotEqualSize`]: a positive weight at a position with no uid
///   (`uids[non_zero_weight_idx]`);
/// - [`WeightsError::UidsLengthExceedUidsInSubNet`]: branch 2 with a positive weight at a
///   position `>= n`.
pub fn process_weights_for_netuid(
    uids: &[u16],
    weights: &[f32],
    n: u16,
    min_allowed_weights: u16,
    max_weight_limit_u16: u16,
    exclude_quantile: u16,
) -> Result<(Vec<u16>, Vec<f64>), WeightsError> {
    // `u16_normalized_float`: float(x) / float(65535).
    let max_weight_limit = f64::from(max_weight_limit_u16) / f64::from(u16::MAX);
    let quantile = f64::from(exclude_quantile) / f64::from(u16::MAX);
    let n_us = usize::from(n);
    let min_allowed = usize::from(min_allowed_weights);

    // `np.argwhere(weights > 0)`: NaN, zeros and negatives are left out.
    let positive: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    // Ascending, so the last one is the largest position.
    if positive.last().is_some_and(|&p| p >= uids.len()) {
        return Err(WeightsError::WeightVecNotEqualSize {
            uids: uids.len(),
            values: weights.len(),
        });
    }

    if positive.is_empty() || n_us < min_allowed {
        // `np.ones(n, dtype=np.int64) / n`: float64.
        return Ok(((0..n).collect(), vec![1.0 / f64::from(n); n_us]));
    }

    if positive.len() < min_allowed {
        if positive.last().is_some_and(|&p| p >= n_us) {
            return Err(WeightsError::UidsLengthExceedUidsInSubNet {
                len: weights.len(),
                n,
            });
        }
        // `np.ones(n, dtype=np.int64) * 1e-5`, then `weights[idx] += non_zero_weights`: float64.
        let mut padded = vec![1e-5_f64; n_us];
        for &p in &positive {
            padded[p] += f64::from(weights[p]);
        }
        return Ok((
            (0..n).collect(),
            normalize_max_weight_f64(&padded, max_weight_limit),
        ));
    }

    let k = positive.len();
    let max_exclude = k.saturating_sub(min_allowed) as f64 / k as f64;
    // Python's `min([quantile, max_exclude])`.
    let q = if max_exclude < quantile {
        max_exclude
    } else {
        quantile
    };
    let values: Vec<f32> = positive.iter().map(|&p| weights[p]).collect();
    // The values are > 0 (no NaN), so numpy's partition order is the plain ascending order.
    let mut sorted = values.clone();
    sorted.sort_by(f32::total_cmp);
    let lowest = np_quantile_linear_sorted(&sorted, q);
    // `lowest_quantile <= non_zero_weights`, in float32; a NaN quantile keeps nothing.
    let (kept_uids, kept): (Vec<u16>, Vec<f32>) = positive
        .iter()
        .zip(&values)
        .filter(|(_, w)| lowest <= **w)
        .map(|(&p, &w)| (uids[p], w))
        .unzip();
    let normalized = normalize_max_weight(&kept, max_weight_limit);
    Ok((kept_uids, normalized.into_iter().map(f64::from).collect()))
}

/// [`process_weights_for_netuid`] then [`convert_weights_and_uids_for_emit`]: the u16
/// `(uids, values)` a validator using the SDK would send on chain.
///
/// # Errors
/// Those of [`process_weights_for_netuid`], and where the SDK's `convert_weights_and_uids_for_emit`
/// raises `ValueError` on the processed weights:
/// - [`WeightsError::NonFiniteWeight`]: a processed weight is NaN (from a `+inf` input), or the
///   processing kept nothing because a `+inf` input made the quantile NaN;
/// - [`WeightsError::WeightVecLengthIsLow`] (`len: 0, min: 1`): nothing to convert (`n` is 0 in
///   the uniform branch); the SDK fails on `min()` of an empty list.
pub fn process_and_convert(
    uids: &[u16],
    weights: &[f32],
    n: u16,
    min_allowed_weights: u16,
    max_weight_limit_u16: u16,
    exclude_quantile: u16,
) -> Result<(Vec<u16>, Vec<u16>), WeightsError> {
    let (out_uids, out_weights) = process_weights_for_netuid(
        uids,
        weights,
        n,
        min_allowed_weights,
        max_weight_limit_u16,
        exclude_quantile,
    )?;
    if out_uids.is_empty() {
        let infinite = weights
            .iter()
            .position(|w| *w == f32::INFINITY)
            .and_then(|i| uids.get(i));
        return Err(match infinite {
            Some(&uid) => WeightsError::NonFiniteWeight { uid },
            None => WeightsError::WeightVecLengthIsLow { len: 0, min: 1 },
        });
    }
    convert_weights_and_uids_for_emit(&out_uids, &out_weights)
}

#[cfg(test)]
mod tests;
