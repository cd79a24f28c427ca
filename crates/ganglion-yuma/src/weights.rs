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

#[cfg(test)]
mod tests;
