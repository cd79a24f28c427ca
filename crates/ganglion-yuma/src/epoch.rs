//! The sparse Yuma Consensus epoch (subtensor's `epoch_mechanism`) as one pure function.
//!
//! [`run_epoch`] takes a subnet's parameters and per-uid state, and returns everything the
//! chain would store after the epoch, bit for bit. The steps follow `spec/chain.md` §1.2:
//! activity, stake threshold and normalisation, permits, active stake, weight masking and
//! row normalisation, weighted-median consensus, clipping, validator trust, incentive,
//! weights-for-bonds, bonds (classic EMA or Yuma3, optional liquid alpha), dividends and the
//! emission split.
//!
//! Steps 5-13 have two forms with the same outputs: the chain's composition of one primitive
//! per step (kept for traces and for unsorted rows), and a fused one over flat rows
//! (`fused.rs`) that [`run_epoch`] takes for the rows the chain stores.
//!
//! This module knows nothing about storage, hotkeys, transactions or the coinbase: the caller
//! reads state, calls [`run_epoch`] and writes the outputs back.

use substrate_fixed::types::{I32F32, I64F64, I96F32};

use crate::error::YumaError;
use crate::math::{self, LiquidAlpha, SparseRow};

mod fused;

/// Subnet hyperparameters the epoch reads. `Default` gives the runtime defaults of
/// subtensor (not those of `init_new_network`; see each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochParams {
    /// κ as a u16 proportion (`Kappa`, default 32767 ≈ 0.5): the stake share whose support
    /// a weight needs to count as consensus.
    pub kappa: u16,
    /// β as a u16 proportion (`BondsPenalty`, default 65535 = 1): how far bonds follow the
    /// clipped rather than the raw weights.
    pub bonds_penalty: u16,
    /// `BondsMovingAverage` in millionths (default 900_000, so the EMA alpha is 0.1).
    pub bonds_moving_average: u64,
    /// `MaxAllowedValidators`: k of the top-k permit rule (runtime default 128, new subnets 64).
    pub max_allowed_validators: u16,
    /// Blocks after its last weight update that a uid still counts as active (default 5000).
    pub activity_cutoff: u64,
    /// `StakeThreshold` in rao: smaller stakes count as 0 (the owner uid is exempt).
    pub stake_threshold: u64,
    /// `Yuma3On` (runtime default false, new subnets true).
    pub yuma3: bool,
    /// `LiquidAlphaOn`: per-edge EMA alpha (only used when `yuma3` is on).
    pub liquid_alpha: bool,
    /// `AlphaValues.0` as a u16 proportion (default 45875 ≈ 0.7).
    pub alpha_low: u16,
    /// `AlphaValues.1` as a u16 proportion (default 58982 ≈ 0.9).
    pub alpha_high: u16,
    /// `AlphaSigmoidSteepness` (default 1000).
    pub alpha_sigmoid_steepness: i16,
    /// Uid of the subnet owner's hotkey, if registered: keeps its permit and self-weight and
    /// is exempt from the stake threshold.
    pub owner_uid: Option<u16>,
}

impl Default for EpochParams {
    fn default() -> Self {
        Self {
            kappa: 32_767,
            bonds_penalty: 65_535,
            bonds_moving_average: 900_000,
            max_allowed_validators: 128,
            activity_cutoff: 5_000,
            stake_threshold: 0,
            yuma3: false,
            liquid_alpha: false,
            alpha_low: 45_875,
            alpha_high: 58_982,
            alpha_sigmoid_steepness: 1_000,
            owner_uid: None,
        }
    }
}

/// Per-uid state the epoch reads. Every slice is indexed by uid and must have `stake.len()`
/// entries (`commit_blocks` too, when given).
#[derive(Debug, Clone, Copy)]
pub struct EpochInput<'a> {
    /// The block the epoch runs in.
    pub current_block: u64,
    /// `last_tempo` for the bond mask: bonds to uids registered at or after it are dropped.
    /// The chain uses `LastMechansimStepBlock + 1`, or `current_block - tempo` when unset.
    pub last_tempo_block: u64,
    /// Stake weight per uid in rao (alpha plus tao·tao_weight, already truncated to rao).
    pub stake: &'a [u64],
    /// `LastUpdate`: block of each uid's last weight update.
    pub last_update: &'a [u64],
    /// `BlockAtRegistration` (0 for an empty slot).
    pub block_at_registration: &'a [u64],
    /// `ValidatorPermit` from the previous epoch.
    pub validator_permit: &'a [bool],
    /// `Weights`: per uid, `(target uid, u16 weight)` as stored (max-upscaled). Targets
    /// `>= n` are dropped, as the chain does when it reads storage.
    pub weights: &'a [Vec<(u16, u16)>],
    /// `Bonds`: per uid, `(target uid, u16 bond)` as stored by the previous epoch.
    pub bonds: &'a [Vec<(u16, u16)>],
    /// Commit-reveal: per uid, the block of its earliest live weight commit (`u64::MAX` if
    /// none). `None` means commit-reveal is off, which is what the local chain runs.
    pub commit_blocks: Option<&'a [u64]>,
}

/// Everything the chain stores after an epoch, per uid. u16 fields are proportions
/// (`trunc(x·65535)`); emissions are in rao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochOutput {
    /// `Active`: updated weights within the activity cutoff.
    pub active: Vec<bool>,
    /// `ValidatorPermit` to store for the next epoch (top-k non-zero stake).
    pub new_validator_permit: Vec<bool>,
    /// `StakeWeight`: normalised stake.
    pub stake_weight: Vec<u16>,
    /// `Consensus`: the stake-weighted median weight per uid.
    pub consensus: Vec<u16>,
    /// `Incentive`: normalised rank from clipped weights.
    pub incentive: Vec<u16>,
    /// `Dividends`: normalised bond-weighted incentive.
    pub dividends: Vec<u16>,
    /// `ValidatorTrust`: sum of a validator's clipped weights.
    pub validator_trust: Vec<u16>,
    /// Miner (server) emission in rao.
    pub server_emission: Vec<u64>,
    /// Validator emission in rao (a proportion the coinbase splits further).
    pub validator_emission: Vec<u64>,
    /// `Emission`: normalised incentive + dividends times the emission, in rao.
    pub emission: Vec<u64>,
    /// `Bonds` to store: the row of each newly permitted uid, empty for everyone else.
    pub new_bonds: Vec<Vec<(u16, u16)>>,
}

/// The fixed-point intermediates of one epoch, for tests and debugging (`log::trace!` on
/// the chain).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochTrace {
    /// Normalised stake after the threshold (S).
    pub stake: Vec<I32F32>,
    /// Active stake: S with inactive and non-permitted uids zeroed, renormalised (A).
    pub active_stake: Vec<I32F32>,
    /// Weights after masking and row normalisation (W).
    pub weights: Vec<SparseRow>,
    /// Consensus (C).
    pub consensus: Vec<I32F32>,
    /// Clipped weights (W̄).
    pub clipped_weights: Vec<SparseRow>,
    /// Validator trust (Tv).
    pub validator_trust: Vec<I32F32>,
    /// Ranks before normalisation (R).
    pub ranks: Vec<I32F32>,
    /// Incentive (I).
    pub incentive: Vec<I32F32>,
    /// Weights for bonds (WB).
    pub weights_for_bonds: Vec<SparseRow>,
    /// Previous bonds after masking (classic: column-normalised; Yuma3: proportions).
    pub bonds: Vec<SparseRow>,
    /// Classic only: ΔB, column-normalised (empty under Yuma3).
    pub bonds_delta: Vec<SparseRow>,
    /// EMA bonds before storage scaling (classic: column-normalised).
    pub ema_bonds: Vec<SparseRow>,
    /// Dividends (D).
    pub dividends: Vec<I32F32>,
    /// Server emission share.
    pub normalized_server_emission: Vec<I32F32>,
    /// Validator emission share.
    pub normalized_validator_emission: Vec<I32F32>,
    /// Combined emission share.
    pub normalized_combined_emission: Vec<I32F32>,
}

/// Run one epoch and return what the chain would store. See [`run_epoch_traced`].
pub fn run_epoch(
    params: &EpochParams,
    input: &EpochInput<'_>,
    rao_emission: u64,
) -> Result<EpochOutput, YumaError> {
    epoch_impl(params, input, rao_emission, false).map(|(out, _)| out)
}

fn check_len(field: &'static str, expected: usize, got: usize) -> Result<(), YumaError> {
    if expected == got {
        Ok(())
    } else {
        Err(YumaError::LengthMismatch {
            field,
            expected,
            got,
        })
    }
}

/// Run one epoch and also return the fixed-point intermediates.
///
/// `rao_emission` is what this epoch distributes (server + validator pots). Fails only on
/// malformed input (lengths, owner uid); never panics.
pub fn run_epoch_traced(
    params: &EpochParams,
    input: &EpochInput<'_>,
    rao_emission: u64,
) -> Result<(EpochOutput, EpochTrace), YumaError> {
    let (out, trace) = epoch_impl(params, input, rao_emission, true)?;
    // `epoch_impl` always returns the trace when asked for it.
    Ok((out, trace.unwrap_or_else(EpochTrace::empty)))
}

impl EpochTrace {
    fn empty() -> Self {
        Self {
            stake: Vec::new(),
            active_stake: Vec::new(),
            weights: Vec::new(),
            consensus: Vec::new(),
            clipped_weights: Vec::new(),
            validator_trust: Vec::new(),
            ranks: Vec::new(),
            incentive: Vec::new(),
            weights_for_bonds: Vec::new(),
            bonds: Vec::new(),
            bonds_delta: Vec::new(),
            ema_bonds: Vec::new(),
            dividends: Vec::new(),
            normalized_server_emission: Vec::new(),
            normalized_validator_emission: Vec::new(),
            normalized_combined_emission: Vec::new(),
        }
    }
}

/// The epoch; `keep_trace` decides whether intermediates are kept (which costs copies of
/// the large matrices) or dropped as soon as possible.
fn epoch_impl(
    params: &EpochParams,
    input: &EpochInput<'_>,
    rao_emission: u64,
    keep_trace: bool,
) -> Result<(EpochOutput, Option<EpochTrace>), YumaError> {
    let n_usize = input.stake.len();
    if n_usize > u16::MAX as usize {
        return Err(YumaError::TooManyUids { n: n_usize });
    }
    check_len("last_update", n_usize, input.last_update.len())?;
    check_len(
        "block_at_registration",
        n_usize,
        input.block_at_registration.len(),
    )?;
    check_len("validator_permit", n_usize, input.validator_permit.len())?;
    check_len("weights", n_usize, input.weights.len())?;
    check_len("bonds", n_usize, input.bonds.len())?;
    if let Some(cb) = input.commit_blocks {
        check_len("commit_blocks", n_usize, cb.len())?;
    }
    if let Some(owner) = params.owner_uid
        && owner as usize >= n_usize
    {
        return Err(YumaError::OwnerUidOutOfRange {
            owner_uid: owner,
            n: n_usize,
        });
    }
    let n = n_usize as u16;
    let zero = I32F32::from_num(0);
    let owner = params.owner_uid.map(|o| o as usize);
    let is_owner = |i: usize| owner == Some(i);

    // 1. Activity.
    let active: Vec<bool> = input
        .last_update
        .iter()
        .map(|u| u.saturating_add(params.activity_cutoff) >= input.current_block)
        .collect();
    let inactive: Vec<bool> = active.iter().map(|a| !a).collect();

    // 2. Stake: threshold (owner exempt), normalise in I64F64, convert to I32F32.
    let mut filtered: Vec<I64F64> = input
        .stake
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            if s < params.stake_threshold && !is_owner(i) {
                I64F64::from_num(0)
            } else {
                I64F64::saturating_from_num(s)
            }
        })
        .collect();
    math::inplace_normalize_64(&mut filtered);
    let stake: Vec<I32F32> = filtered
        .iter()
        .map(|s| I32F32::saturating_from_num(*s))
        .collect();

    // 3. Permits: old (stored, owner forced) and new (top-k non-zero, owner forced).
    let old_permit: Vec<bool> = input
        .validator_permit
        .iter()
        .enumerate()
        .map(|(i, p)| *p || is_owner(i))
        .collect();
    let forbids: Vec<bool> = old_permit.iter().map(|p| !p).collect();
    let mut new_permit = math::is_topk_nonzero(&stake, params.max_allowed_validators as usize);
    if let Some(o) = owner {
        new_permit[o] = true;
    }

    // 4. Active stake.
    let mut active_stake = stake.clone();
    math::inplace_mask_vector(&inactive, &mut active_stake);
    math::inplace_mask_vector(&forbids, &mut active_stake);
    math::inplace_normalize(&mut active_stake);

    // Scalars of steps 6, 10 and 12.
    let kappa = math::safe_div(I32F32::from_num(params.kappa), I32F32::from_num(u16::MAX));
    let bonds_penalty = math::safe_div(
        I32F32::from_num(params.bonds_penalty),
        I32F32::from_num(u16::MAX),
    );
    // EMA alpha from the bonds moving average (I64F64 division, then I32F32).
    let bma = math::safe_div_64(
        I64F64::saturating_from_num(params.bonds_moving_average),
        I64F64::from_num(1_000_000),
    );
    let scalar_alpha = I32F32::from_num(1).saturating_sub(I32F32::saturating_from_num(bma));
    let prepared = Prepared {
        n,
        forbids: &forbids,
        active_stake: &active_stake,
        new_permit: &new_permit,
        kappa,
        bonds_penalty,
        scalar_alpha,
    };

    // 5-13. The matrix steps: fused over flat rows when no trace is asked for and every row
    // is sorted by column (what the chain stores), else the chain's step-by-step form.
    let MatrixSteps {
        consensus,
        validator_trust,
        ranks,
        incentive,
        dividends,
        new_bonds,
        trace: trace_matrices,
    } = match (!keep_trace)
        .then(|| fused::matrix_steps(params, input, &prepared))
        .flatten()
    {
        Some(steps) => steps,
        None => stepwise_matrix_steps(params, input, &prepared, keep_trace),
    };

    // 14. Emission split.
    let combined: Vec<I32F32> = incentive
        .iter()
        .zip(dividends.iter())
        .map(|(i, d)| i.saturating_add(*d))
        .collect();
    let emission_sum = math::sum(&combined);
    let mut norm_server = incentive.clone();
    let mut norm_validator = dividends.clone();
    let mut norm_combined = combined;
    math::inplace_normalize_using_sum(&mut norm_server, emission_sum);
    math::inplace_normalize_using_sum(&mut norm_validator, emission_sum);
    math::inplace_normalize(&mut norm_combined);
    if emission_sum == zero {
        if math::is_zero(&active_stake) {
            norm_validator.clone_from(&stake);
            norm_combined.clone_from(&stake);
        } else {
            norm_validator.clone_from(&active_stake);
            norm_combined.clone_from(&active_stake);
        }
    }
    let rao = I96F32::saturating_from_num(rao_emission);
    let to_rao = |v: &[I32F32]| -> Vec<u64> {
        v.iter()
            .map(|x| {
                I96F32::saturating_from_num(*x)
                    .saturating_mul(rao)
                    .saturating_to_num::<u64>()
            })
            .collect()
    };
    let to_u16 = |v: &[I32F32]| -> Vec<u16> {
        v.iter()
            .map(|x| math::fixed_proportion_to_u16(*x))
            .collect()
    };

    let output = EpochOutput {
        active,
        new_validator_permit: new_permit,
        stake_weight: to_u16(&stake),
        consensus: to_u16(&consensus),
        incentive: to_u16(&incentive),
        dividends: to_u16(&dividends),
        validator_trust: to_u16(&validator_trust),
        server_emission: to_rao(&norm_server),
        validator_emission: to_rao(&norm_validator),
        emission: to_rao(&norm_combined),
        new_bonds,
    };
    let trace = trace_matrices.map(|m| EpochTrace {
        stake,
        active_stake,
        weights_for_bonds: m.weights_for_bonds,
        weights: m.weights,
        consensus,
        clipped_weights: m.clipped_weights,
        validator_trust,
        ranks,
        incentive,
        bonds: m.bonds,
        bonds_delta: m.bonds_delta,
        ema_bonds: m.ema_bonds,
        dividends,
        normalized_server_emission: norm_server,
        normalized_validator_emission: norm_validator,
        normalized_combined_emission: norm_combined,
    });
    Ok((output, trace))
}

/// Per-uid vectors of steps 1-4 and the scalars the matrix steps read.
struct Prepared<'a> {
    n: u16,
    /// Uids without a (stored or owner) permit: their weight rows are dropped.
    forbids: &'a [bool],
    active_stake: &'a [I32F32],
    new_permit: &'a [bool],
    kappa: I32F32,
    bonds_penalty: I32F32,
    scalar_alpha: I32F32,
}

/// What steps 5-13 produce.
struct MatrixSteps {
    consensus: Vec<I32F32>,
    validator_trust: Vec<I32F32>,
    ranks: Vec<I32F32>,
    incentive: Vec<I32F32>,
    dividends: Vec<I32F32>,
    new_bonds: Vec<Vec<(u16, u16)>>,
    /// The intermediate matrices, when a trace was asked for.
    trace: Option<TraceMatrices>,
}

/// The matrices of [`EpochTrace`].
struct TraceMatrices {
    weights: Vec<SparseRow>,
    clipped_weights: Vec<SparseRow>,
    weights_for_bonds: Vec<SparseRow>,
    bonds: Vec<SparseRow>,
    bonds_delta: Vec<SparseRow>,
    ema_bonds: Vec<SparseRow>,
}

/// Whether Yuma3 bonds use a per-edge alpha: liquid alpha on and some consensus non-zero.
fn uses_liquid_alpha(params: &EpochParams, consensus: &[I32F32]) -> bool {
    params.liquid_alpha && consensus.iter().any(|c| *c != I32F32::from_num(0))
}

/// Liquid-alpha parameters as fixed-point values.
fn liquid_alpha_params(params: &EpochParams) -> LiquidAlpha {
    LiquidAlpha {
        low: math::safe_div(
            I32F32::from_num(params.alpha_low),
            I32F32::from_num(u16::MAX),
        ),
        high: math::safe_div(
            I32F32::from_num(params.alpha_high),
            I32F32::from_num(u16::MAX),
        ),
        steepness: I32F32::from_num(params.alpha_sigmoid_steepness),
    }
}

/// Steps 5-13 as the chain composes them (`epoch_mechanism`), one primitive after the other.
/// `keep_trace` decides whether intermediates are kept (which costs copies of the large
/// matrices) or dropped as soon as possible.
fn stepwise_matrix_steps(
    params: &EpochParams,
    input: &EpochInput<'_>,
    prepared: &Prepared<'_>,
    keep_trace: bool,
) -> MatrixSteps {
    let &Prepared {
        n,
        forbids,
        active_stake,
        new_permit,
        kappa,
        bonds_penalty,
        scalar_alpha,
    } = prepared;
    let zero = I32F32::from_num(0);

    // 5. Weights: (a) rows of non-permitted uids, (b) the diagonal except the owner's,
    // (c) outdated entries and (d) entries masked by commit-reveal are dropped in one pass;
    // the same filters as the chain's successive `mask_*` calls, so the same rows.
    let owner_u16 = params.owner_uid;
    let mut weights: Vec<SparseRow> = input
        .weights
        .iter()
        .enumerate()
        .map(|(i, row)| {
            if forbids[i] {
                return Vec::new();
            }
            let updated = input.last_update[i];
            let commit = input.commit_blocks.map(|cb| cb[i]);
            row.iter()
                .filter(|&&(j, _)| {
                    j < n
                        && (i != j as usize || owner_u16 == Some(j))
                        && updated > input.block_at_registration[j as usize]
                        && commit.is_none_or(|cb| cb >= input.block_at_registration[j as usize])
                })
                .map(|&(j, w)| (j, I32F32::from_num(w)))
                .collect()
        })
        .collect();
    math::inplace_row_normalize_sparse(&mut weights);

    // 6-8. Consensus, clipping, validator trust.
    let consensus = math::weighted_median_col_sparse(active_stake, &weights, n, kappa);
    let one = I32F32::from_num(1);
    // Without a trace and at bonds penalty 1 the unclipped weights are never read again, so
    // clip them in place (same entries, same order) instead of allocating a copy.
    let clip_in_place = !keep_trace && bonds_penalty == one;
    let mut clipped_weights = if clip_in_place {
        let mut w = std::mem::take(&mut weights);
        math::col_clip_sparse_in_place(&mut w, &consensus);
        w
    } else {
        math::col_clip_sparse(&weights, &consensus)
    };
    let validator_trust = math::row_sum_sparse(&clipped_weights);

    // 9. Ranks and incentive.
    let ranks = math::matmul_sparse(&clipped_weights, active_stake, n);
    let mut incentive = ranks.clone();
    math::inplace_normalize(&mut incentive);

    // 10. Weights for bonds. Ratio 0 or 1 returns one input unchanged; without a trace that
    // input is moved rather than copied, and matrices no longer needed are freed early so
    // later allocations reuse their memory.
    let mut weights_for_bonds: Vec<SparseRow> = if keep_trace {
        math::interpolate_sparse(&weights, &clipped_weights, n, bonds_penalty)
    } else if clip_in_place {
        std::mem::take(&mut clipped_weights)
    } else if bonds_penalty == zero {
        clipped_weights = Vec::new();
        std::mem::take(&mut weights)
    } else if bonds_penalty == one {
        weights = Vec::new();
        std::mem::take(&mut clipped_weights)
    } else {
        let wb = math::interpolate_sparse(&weights, &clipped_weights, n, bonds_penalty);
        weights = Vec::new();
        clipped_weights = Vec::new();
        wb
    };

    // Bonds as stored (Yuma3: as proportions of 65535), dropping those to uids registered at
    // or after the last tempo (`scalar_vec_mask_sparse_matrix`; unknown uids read as 0).
    let last_tempo = input.last_tempo_block;
    let mut bonds: Vec<SparseRow> = input
        .bonds
        .iter()
        .map(|row| {
            row.iter()
                .filter(|(j, _)| {
                    let registered = input
                        .block_at_registration
                        .get(*j as usize)
                        .copied()
                        .unwrap_or(0);
                    last_tempo > registered
                })
                .map(|&(j, b)| {
                    let b = I32F32::from_num(b);
                    let b = if params.yuma3 {
                        math::fixed_to_fixed_u16_proportion(b)
                    } else {
                        b
                    };
                    (j, b)
                })
                .collect()
        })
        .collect();

    let mut bonds_delta: Vec<SparseRow> = Vec::new();
    let mut dividends: Vec<I32F32>;
    let mut ema_bonds: Vec<SparseRow>;
    let new_bonds: Vec<Vec<(u16, u16)>>;
    if params.yuma3 {
        // 12. Yuma3: absolute bond proportions.
        ema_bonds = if uses_liquid_alpha(params, &consensus) {
            let la = liquid_alpha_params(params);
            math::liquid_alpha_ema_sparse(&weights_for_bonds, &bonds, &consensus, la)
        } else {
            math::mat_ema_sparse(&weights_for_bonds, &bonds, scalar_alpha)
        };
        // Stored: the EMA itself (no max-upscale).
        new_bonds = bonds_to_storage(&ema_bonds, new_permit);
        let mut ema_norm = if keep_trace {
            ema_bonds.clone()
        } else {
            std::mem::take(&mut ema_bonds)
        };
        math::inplace_col_normalize_sparse(&mut ema_norm, n);
        let per_validator = math::row_sum_sparse(&math::mat_vec_mul_sparse(&ema_norm, &incentive));
        dividends = math::vec_mul(&per_validator, active_stake);
        math::inplace_normalize(&mut dividends);
    } else {
        // 11. Classic: column-normalised bonds.
        math::inplace_col_normalize_sparse(&mut bonds, n);
        bonds_delta = if keep_trace {
            math::row_hadamard_sparse(&weights_for_bonds, active_stake)
        } else {
            // Same products as `row_hadamard_sparse`, written over the moved input.
            let mut wb = std::mem::take(&mut weights_for_bonds);
            for (row, scale) in wb.iter_mut().zip(active_stake.iter()) {
                for (_, v) in row.iter_mut() {
                    *v = v.saturating_mul(*scale);
                }
            }
            wb
        };
        math::inplace_col_normalize_sparse(&mut bonds_delta, n);
        ema_bonds = math::mat_ema_sparse(&bonds_delta, &bonds, scalar_alpha);
        if !keep_trace {
            bonds_delta = Vec::new();
            bonds = Vec::new();
        }
        math::inplace_col_normalize_sparse(&mut ema_bonds, n);
        dividends = math::matmul_transpose_sparse(&ema_bonds, &incentive);
        math::inplace_normalize(&mut dividends);
        // Stored: column max-upscaled.
        if keep_trace {
            let mut upscaled = ema_bonds.clone();
            math::inplace_col_max_upscale_sparse(&mut upscaled, n);
            new_bonds = bonds_to_storage(&upscaled, new_permit);
        } else {
            math::inplace_col_max_upscale_sparse(&mut ema_bonds, n);
            new_bonds = bonds_to_storage(&ema_bonds, new_permit);
        }
    }
    MatrixSteps {
        consensus,
        validator_trust,
        ranks,
        incentive,
        dividends,
        new_bonds,
        trace: keep_trace.then_some(TraceMatrices {
            weights,
            clipped_weights,
            weights_for_bonds,
            bonds,
            bonds_delta,
            ema_bonds,
        }),
    }
}

/// Step 13, bond storage per row: newly permitted uids keep their row (as u16
/// proportions), everyone else is emptied.
fn bonds_to_storage(stored: &[SparseRow], permits: &[bool]) -> Vec<Vec<(u16, u16)>> {
    stored
        .iter()
        .zip(permits.iter())
        .map(|(row, permitted)| {
            if *permitted {
                row.iter()
                    .map(|(j, v)| (*j, math::fixed_proportion_to_u16(*v)))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
