//! The epoch composes the math primitives with a few shortcuts (one fused masking pass,
//! borrowing instead of copying at bonds penalty 0 or 1, no trace copies). This test
//! recomputes random epochs with the chain's step-by-step composition of the same
//! primitives (`epoch_mechanism` order) and checks that every output is identical, with and
//! without the trace, in both bonds modes and with commit-reveal masking.

use ganglion_yuma::math::{self, SparseRow};
use ganglion_yuma::{
    EpochInput, EpochOutput, EpochParams, I32F32, I64F64, I96F32, run_epoch, run_epoch_traced,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn reference(p: &EpochParams, x: &EpochInput<'_>, rao: u64) -> EpochOutput {
    let n = x.stake.len() as u16;
    let zero = I32F32::from_num(0);
    let owner = p.owner_uid.map(usize::from);
    let active: Vec<bool> = x
        .last_update
        .iter()
        .map(|u| u.saturating_add(p.activity_cutoff) >= x.current_block)
        .collect();
    let inactive: Vec<bool> = active.iter().map(|a| !a).collect();
    let mut st: Vec<I64F64> = x
        .stake
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if *s < p.stake_threshold && owner != Some(i) {
                I64F64::from_num(0)
            } else {
                I64F64::saturating_from_num(*s)
            }
        })
        .collect();
    math::inplace_normalize_64(&mut st);
    let stake: Vec<I32F32> = st.iter().map(|s| I32F32::saturating_from_num(*s)).collect();
    let forbids: Vec<bool> = x
        .validator_permit
        .iter()
        .enumerate()
        .map(|(i, v)| !(*v || owner == Some(i)))
        .collect();
    let mut permits = math::is_topk_nonzero(&stake, p.max_allowed_validators as usize);
    if let Some(o) = owner {
        permits[o] = true;
    }
    let mut a = stake.clone();
    math::inplace_mask_vector(&inactive, &mut a);
    math::inplace_mask_vector(&forbids, &mut a);
    math::inplace_normalize(&mut a);
    let w: Vec<SparseRow> = x
        .weights
        .iter()
        .map(|r| {
            r.iter()
                .filter(|(j, _)| *j < n)
                .map(|&(j, v)| (j, I32F32::from_num(v)))
                .collect()
        })
        .collect();
    let w = math::mask_rows_sparse(&forbids, &w);
    let w = match p.owner_uid {
        Some(o) => math::mask_diag_sparse_except_index(&w, o),
        None => math::mask_diag_sparse(&w),
    };
    let mut w =
        math::vec_mask_sparse_matrix(&w, x.last_update, x.block_at_registration, |u, r| u <= r);
    if let Some(cb) = x.commit_blocks {
        w = math::vec_mask_sparse_matrix(&w, cb, x.block_at_registration, |c, r| c < r);
    }
    math::inplace_row_normalize_sparse(&mut w);
    let kappa = math::safe_div(I32F32::from_num(p.kappa), I32F32::from_num(u16::MAX));
    let c = math::weighted_median_col_sparse(&a, &w, n, kappa);
    let cw = math::col_clip_sparse(&w, &c);
    let tv = math::row_sum_sparse(&cw);
    let mut inc = math::matmul_sparse(&cw, &a, n);
    math::inplace_normalize(&mut inc);
    let pen = math::safe_div(
        I32F32::from_num(p.bonds_penalty),
        I32F32::from_num(u16::MAX),
    );
    let wb = math::interpolate_sparse(&w, &cw, n, pen);
    let b: Vec<SparseRow> = x
        .bonds
        .iter()
        .map(|r| {
            r.iter()
                .map(|&(j, v)| {
                    let v = I32F32::from_num(v);
                    (
                        j,
                        if p.yuma3 {
                            math::fixed_to_fixed_u16_proportion(v)
                        } else {
                            v
                        },
                    )
                })
                .collect()
        })
        .collect();
    let mut b = math::scalar_vec_mask_sparse_matrix(
        &b,
        x.last_tempo_block,
        x.block_at_registration,
        |t, r| t <= r,
    );
    let bma = math::safe_div_64(
        I64F64::saturating_from_num(p.bonds_moving_average),
        I64F64::from_num(1_000_000),
    );
    let alpha = I32F32::from_num(1).saturating_sub(I32F32::saturating_from_num(bma));
    let (mut d, stored) = if p.yuma3 {
        let ema = if p.liquid_alpha && c.iter().any(|v| *v != zero) {
            let la = math::LiquidAlpha {
                low: math::safe_div(I32F32::from_num(p.alpha_low), I32F32::from_num(u16::MAX)),
                high: math::safe_div(I32F32::from_num(p.alpha_high), I32F32::from_num(u16::MAX)),
                steepness: I32F32::from_num(p.alpha_sigmoid_steepness),
            };
            math::mat_ema_alpha_sparse(&wb, &b, &math::liquid_alpha_matrix_sparse(&wb, &b, &c, la))
        } else {
            math::mat_ema_sparse(&wb, &b, alpha)
        };
        let mut norm = ema.clone();
        math::inplace_col_normalize_sparse(&mut norm, n);
        let tb = math::row_sum_sparse(&math::mat_vec_mul_sparse(&norm, &inc));
        (math::vec_mul(&tb, &a), ema)
    } else {
        math::inplace_col_normalize_sparse(&mut b, n);
        let mut db = math::row_hadamard_sparse(&wb, &a);
        math::inplace_col_normalize_sparse(&mut db, n);
        let mut ema = math::mat_ema_sparse(&db, &b, alpha);
        math::inplace_col_normalize_sparse(&mut ema, n);
        let d = math::matmul_transpose_sparse(&ema, &inc);
        math::inplace_col_max_upscale_sparse(&mut ema, n);
        (d, ema)
    };
    math::inplace_normalize(&mut d);
    let comb: Vec<I32F32> = inc
        .iter()
        .zip(&d)
        .map(|(i, v)| i.saturating_add(*v))
        .collect();
    let sum = math::sum(&comb);
    let (mut se, mut ve, mut ce) = (inc.clone(), d.clone(), comb);
    math::inplace_normalize_using_sum(&mut se, sum);
    math::inplace_normalize_using_sum(&mut ve, sum);
    math::inplace_normalize(&mut ce);
    if sum == zero {
        let src = if math::is_zero(&a) { &stake } else { &a };
        ve.clone_from(src);
        ce.clone_from(src);
    }
    let r = I96F32::saturating_from_num(rao);
    let rao_of = |v: &[I32F32]| {
        v.iter()
            .map(|e| {
                I96F32::saturating_from_num(*e)
                    .saturating_mul(r)
                    .saturating_to_num::<u64>()
            })
            .collect()
    };
    let u = |v: &[I32F32]| {
        v.iter()
            .map(|e| math::fixed_proportion_to_u16(*e))
            .collect()
    };
    EpochOutput {
        active,
        new_bonds: stored
            .iter()
            .zip(&permits)
            .map(|(row, ok)| {
                if *ok {
                    row.iter()
                        .map(|(j, v)| (*j, math::fixed_proportion_to_u16(*v)))
                        .collect()
                } else {
                    Vec::new()
                }
            })
            .collect(),
        new_validator_permit: permits,
        stake_weight: u(&stake),
        consensus: u(&c),
        incentive: u(&inc),
        dividends: u(&d),
        validator_trust: u(&tv),
        server_emission: rao_of(&se),
        validator_emission: rao_of(&ve),
        emission: rao_of(&ce),
    }
}

fn random_row(rng: &mut StdRng, n: usize, density: f64) -> Vec<(u16, u16)> {
    let mut row: Vec<(u16, u16)> = Vec::new();
    for j in 0..n as u16 {
        if rng.gen_bool(density) {
            row.push((j, rng.r#gen()));
        }
    }
    if rng.gen_bool(0.2) {
        row.reverse(); // unsorted rows take the general (non-merge) paths
    }
    if rng.gen_bool(0.1) {
        row.push((n as u16 + 3, 7)); // out-of-range target, dropped by the chain
    }
    row
}

#[test]
fn fused_epoch_equals_step_by_step_reference() {
    let mut rng = StdRng::seed_from_u64(2024);
    for case in 0..300 {
        let n = rng.gen_range(1..24usize);
        let stake: Vec<u64> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.6) {
                    rng.gen_range(0..1_000_000)
                } else {
                    0
                }
            })
            .collect();
        let last_update: Vec<u64> = (0..n).map(|_| rng.gen_range(0..120)).collect();
        let registered: Vec<u64> = (0..n).map(|_| rng.gen_range(0..100)).collect();
        let permit: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.7)).collect();
        let weights: Vec<Vec<(u16, u16)>> = (0..n).map(|_| random_row(&mut rng, n, 0.6)).collect();
        let bonds: Vec<Vec<(u16, u16)>> = (0..n).map(|_| random_row(&mut rng, n, 0.5)).collect();
        let commits: Vec<u64> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.5) {
                    u64::MAX
                } else {
                    rng.gen_range(0..120)
                }
            })
            .collect();
        let params = EpochParams {
            kappa: rng.r#gen(),
            bonds_penalty: [0, u16::MAX, rng.r#gen()][case % 3],
            bonds_moving_average: rng.gen_range(0..1_000_000),
            max_allowed_validators: rng.gen_range(0..n as u16 + 2),
            activity_cutoff: rng.gen_range(0..80),
            stake_threshold: rng.gen_range(0..200_000),
            yuma3: case % 2 == 0,
            liquid_alpha: case % 4 == 0,
            alpha_low: rng.gen_range(1_000..30_000),
            alpha_high: rng.gen_range(30_000..65_535),
            alpha_sigmoid_steepness: rng.gen_range(-2_000..3_000),
            owner_uid: if rng.gen_bool(0.3) {
                Some(rng.gen_range(0..n as u16))
            } else {
                None
            },
        };
        let input = EpochInput {
            current_block: 120,
            last_tempo_block: rng.gen_range(0..110),
            stake: &stake,
            last_update: &last_update,
            block_at_registration: &registered,
            validator_permit: &permit,
            weights: &weights,
            bonds: &bonds,
            commit_blocks: if case % 5 == 0 { Some(&commits) } else { None },
        };
        let want = reference(&params, &input, 1_000_000_000);
        let got = run_epoch(&params, &input, 1_000_000_000).expect("valid input");
        assert_eq!(got, want, "case {case}: {params:?}");
        let (traced, _) = run_epoch_traced(&params, &input, 1_000_000_000).expect("valid input");
        assert_eq!(traced, want, "case {case} (traced)");
    }
}

#[test]
fn malformed_input_is_a_typed_error() {
    let stake = [1, 2];
    let short = [0];
    let two = [0, 0];
    let permits = [true, true];
    let rows = vec![Vec::new(), Vec::new()];
    let input = EpochInput {
        current_block: 1,
        last_tempo_block: 0,
        stake: &stake,
        last_update: &short,
        block_at_registration: &two,
        validator_permit: &permits,
        weights: &rows,
        bonds: &rows,
        commit_blocks: None,
    };
    let err = run_epoch(&EpochParams::default(), &input, 1).expect_err("length mismatch");
    assert_eq!(
        err,
        ganglion_yuma::YumaError::LengthMismatch {
            field: "last_update",
            expected: 2,
            got: 1
        }
    );
    assert!(err.to_string().contains("one entry per uid"));
    let input = EpochInput {
        last_update: &two,
        ..input
    };
    let owner = EpochParams {
        owner_uid: Some(2),
        ..EpochParams::default()
    };
    assert_eq!(
        run_epoch(&owner, &input, 1),
        Err(ganglion_yuma::YumaError::OwnerUidOutOfRange { owner_uid: 2, n: 2 })
    );
    assert!(run_epoch(&EpochParams::default(), &input, 1).is_ok());
}

/// A weights or bonds row sorted by column, as the chain stores it: `density` of the columns
/// below `n` (values possibly 0), sometimes a few columns at or beyond `n` at the end.
fn sorted_row(rng: &mut StdRng, n: usize, density: f64, zero_share: f64) -> Vec<(u16, u16)> {
    let mut row: Vec<(u16, u16)> = Vec::new();
    for j in 0..n as u16 {
        if rng.gen_bool(density) {
            row.push((
                j,
                if rng.gen_bool(zero_share) {
                    0
                } else {
                    rng.r#gen()
                },
            ));
        }
    }
    if rng.gen_bool(0.1) {
        row.push((n as u16 + rng.gen_range(0..3), rng.r#gen()));
    }
    row
}

/// One of `options`, at random.
fn pick<T: Copy>(rng: &mut StdRng, options: &[T]) -> T {
    options[rng.gen_range(0..options.len())]
}

/// Random parameters over the whole range the epoch reads, each chosen independently.
fn random_params(rng: &mut StdRng, n: usize) -> EpochParams {
    let kappa = rng.r#gen();
    let penalty = rng.r#gen();
    let average = rng.gen_range(0..2_000_000);
    let threshold = rng.gen_range(0..200_000);
    let steepness = rng.r#gen();
    EpochParams {
        kappa: pick(rng, &[0, u16::MAX, 32_767, kappa]),
        bonds_penalty: pick(rng, &[0, u16::MAX, penalty]),
        bonds_moving_average: pick(rng, &[900_000, 0, 1_000_000, average]),
        max_allowed_validators: rng.gen_range(0..n as u16 + 2),
        activity_cutoff: rng.gen_range(0..80),
        stake_threshold: pick(rng, &[0, threshold]),
        yuma3: rng.gen_bool(0.5),
        liquid_alpha: rng.gen_bool(0.6),
        alpha_low: rng.gen_range(0..40_000),
        alpha_high: rng.gen_range(20_000..=65_535),
        alpha_sigmoid_steepness: pick(rng, &[1_000, -1_000, i16::MAX, i16::MIN, steepness]),
        owner_uid: if rng.gen_bool(0.3) {
            Some(rng.gen_range(0..n as u16))
        } else {
            None
        },
    }
}

/// With every row sorted by column (what the chain stores) and no trace asked for, the epoch
/// takes its fused form; it must give exactly the step-by-step reference and the traced
/// (step-by-step) epoch, over several epochs of bonds fed back, in every bonds mode, with
/// masks, zero weights, out-of-range targets and dense and sparse matrices.
#[test]
fn fused_epoch_on_sorted_rows_equals_step_by_step_reference() {
    let mut rng = StdRng::seed_from_u64(4096);
    for case in 0..400 {
        let n = rng.gen_range(1..64usize);
        let density = pick(&mut rng, &[1.0, 0.9, 0.5, 0.1]);
        let stake: Vec<u64> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.6) {
                    rng.gen_range(0..1_000_000_000)
                } else {
                    0
                }
            })
            .collect();
        let mut last_update: Vec<u64> = (0..n).map(|_| rng.gen_range(60..120)).collect();
        let registered: Vec<u64> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.8) {
                    1
                } else {
                    rng.gen_range(0..100)
                }
            })
            .collect();
        let mut permit: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.7)).collect();
        let weights: Vec<Vec<(u16, u16)>> = (0..n)
            .map(|_| sorted_row(&mut rng, n, density, 0.05))
            .collect();
        let mut bonds: Vec<Vec<(u16, u16)>> = (0..n)
            .map(|_| sorted_row(&mut rng, n, density * 0.8, 0.1))
            .collect();
        let commits: Vec<u64> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.5) {
                    u64::MAX
                } else {
                    rng.gen_range(0..120)
                }
            })
            .collect();
        let params = random_params(&mut rng, n);
        let some_block = rng.gen_range(0..110);
        let last_tempo_block = pick(&mut rng, &[110, 0, some_block]);
        let commit_reveal = rng.gen_bool(0.2);
        for epoch in 0..3 {
            let input = EpochInput {
                current_block: 120 + epoch,
                last_tempo_block,
                stake: &stake,
                last_update: &last_update,
                block_at_registration: &registered,
                validator_permit: &permit,
                weights: &weights,
                bonds: &bonds,
                commit_blocks: commit_reveal.then_some(commits.as_slice()),
            };
            let want = reference(&params, &input, 1_000_000_000);
            let got = run_epoch(&params, &input, 1_000_000_000).expect("valid input");
            assert_eq!(got, want, "case {case} epoch {epoch}: {params:?}");
            let (traced, _) =
                run_epoch_traced(&params, &input, 1_000_000_000).expect("valid input");
            assert_eq!(got, traced, "case {case} epoch {epoch} (traced)");
            permit.clone_from(&got.new_validator_permit);
            bonds.clone_from(&got.new_bonds);
            if rng.gen_bool(0.3) {
                last_update[rng.gen_range(0..n)] = 120 + epoch;
            }
        }
    }
}

/// The benchmark's dense steady state (every validator weights every other uid, bonds from
/// the previous epoch) at a size where both the fused and the step-by-step epoch are quick.
#[test]
fn fused_epoch_matches_stepwise_on_the_benchmark_subnets() {
    use ganglion_yuma::bench::{BondsMode, SyntheticSubnet};
    for mode in [BondsMode::Classic, BondsMode::Yuma3LiquidAlpha] {
        for (uids, validators) in [(96, 24), (200, 64)] {
            let mut subnet = SyntheticSubnet::new(uids, validators, mode, 42);
            for epoch in 0..3 {
                let (traced, _) = run_epoch_traced(&subnet.params, &subnet.input(), 1_000_000_000)
                    .expect("valid input");
                let want = reference(&subnet.params, &subnet.input(), 1_000_000_000);
                let got = subnet.step(1_000_000_000).expect("valid input");
                assert_eq!(got, traced, "{mode:?} {uids}x{validators} epoch {epoch}");
                assert_eq!(
                    got, want,
                    "{mode:?} {uids}x{validators} epoch {epoch} (reference)"
                );
            }
        }
    }
}

/// Degenerate sizes take the same routes: no uids at all, and one uid (whose only weight,
/// to itself, is masked unless it is the owner).
#[test]
fn fused_epoch_on_empty_and_single_uid_subnets() {
    for yuma3 in [false, true] {
        for owner_uid in [None, Some(0)] {
            let params = EpochParams {
                yuma3,
                liquid_alpha: yuma3,
                owner_uid,
                ..EpochParams::default()
            };
            let empty = EpochInput {
                current_block: 10,
                last_tempo_block: 5,
                stake: &[],
                last_update: &[],
                block_at_registration: &[],
                validator_permit: &[],
                weights: &[],
                bonds: &[],
                commit_blocks: None,
            };
            if owner_uid.is_none() {
                let got = run_epoch(&params, &empty, 1_000).expect("valid input");
                assert_eq!(got, reference(&params, &empty, 1_000), "empty, {params:?}");
            }
            let weights = vec![vec![(0, u16::MAX)]];
            let bonds = vec![vec![(0, 1_000)]];
            let one = EpochInput {
                stake: &[5_000],
                last_update: &[9],
                block_at_registration: &[1],
                validator_permit: &[true],
                weights: &weights,
                bonds: &bonds,
                ..empty
            };
            let got = run_epoch(&params, &one, 1_000).expect("valid input");
            assert_eq!(got, reference(&params, &one, 1_000), "one uid, {params:?}");
        }
    }
}
