//! Tests for weight conversion and the `set_weights` checks. Expected SDK conversions were
//! produced by running the SDK's formula (`round(float(w) / max * 65535)`, zeros dropped) in
//! CPython; chain-side cases follow `do_set_weights` and its helpers in `subnets/weights.rs`.

use super::*;

#[test]
fn sdk_conversion_matches_python_rounding() {
    type Case = (Vec<u16>, Vec<f64>, Vec<(u16, u16)>);
    let cases: Vec<Case> = vec![
        (vec![0, 1], vec![0.5, 1.0], vec![(0, 32768), (1, 65535)]),
        (
            vec![0, 1, 2, 3],
            vec![0.1, 0.2, 0.3, 0.4],
            vec![(0, 16384), (1, 32768), (2, 49151), (3, 65535)],
        ),
        // 1e-6 rounds to 0 and is dropped together with its uid.
        (
            vec![3, 5, 7],
            vec![1e-6, 0.25, 0.75],
            vec![(5, 21845), (7, 65535)],
        ),
        // 2.5 rounds half to even (2), not away from zero (3); explicit zeros are dropped.
        (
            vec![0, 1, 2],
            vec![2.5, 65535.0, 0.0],
            vec![(0, 2), (1, 65535)],
        ),
        // f32 inputs (numpy float32) widen exactly.
        (
            vec![0, 1],
            vec![f64::from(0.1_f32), f64::from(0.3_f32)],
            vec![(0, 21845), (1, 65535)],
        ),
        // Order is kept as given.
        (vec![9, 4], vec![1.0, 1e-5], vec![(9, 65535), (4, 1)]),
    ];
    for (uids, weights, want) in cases {
        let (u, v) = convert_weights_and_uids_for_emit(&uids, &weights).expect("valid weights");
        let got: Vec<(u16, u16)> = u.into_iter().zip(v).collect();
        assert_eq!(got, want, "weights {weights:?}");
    }
}

#[test]
fn sdk_conversion_rejects_bad_input_and_sends_nothing_for_zeros() {
    assert_eq!(
        convert_weights_and_uids_for_emit(&[0, 1], &[0.0, 0.0]),
        Ok((vec![], vec![]))
    );
    assert!(matches!(
        convert_weights_and_uids_for_emit(&[0, 1], &[0.5, -0.1]),
        Err(WeightsError::NegativeWeight { uid: 1, .. })
    ));
    assert_eq!(
        convert_weights_and_uids_for_emit(&[0, 1], &[f64::NAN, 1.0]),
        Err(WeightsError::NonFiniteWeight { uid: 0 })
    );
    assert_eq!(
        convert_weights_and_uids_for_emit(&[0, 1], &[1.0, f64::INFINITY]),
        Err(WeightsError::NonFiniteWeight { uid: 1 })
    );
    assert_eq!(
        convert_weights_and_uids_for_emit(&[0, 1, 2], &[1.0, 1.0]),
        Err(WeightsError::WeightVecNotEqualSize { uids: 3, values: 2 })
    );
}

fn ctx() -> SetWeightsContext {
    SetWeightsContext {
        n: 8,
        uid: 0,
        is_owner: false,
        stake: 1_000,
        stake_threshold: 0,
        required_version_key: 0,
        version_key: 0,
        current_block: 1_000,
        last_update: 0,
        rate_limit: 100,
        commit_reveal_enabled: false,
        validator_permit: true,
        min_allowed_weights: 1,
        max_weight_limit: u16::MAX,
    }
}

#[test]
fn accepted_weights_are_reupscaled_in_order() {
    // max 32767 <= 32768: round(v * 65535 / max) in I32F32; 16383 * 65535 / 32767 is
    // 32766.49998.. (exact rational arithmetic), so it rounds down.
    let row = check_set_weights(&ctx(), &[5, 3, 4], &[16383, 32767, 0]).expect("valid");
    assert_eq!(row, vec![(5, 32766), (3, 65535), (4, 0)]);
    // Above 32768: multiply by round-free 65535/max first.
    let row = check_set_weights(&ctx(), &[1, 2], &[40000, 65535]).expect("valid");
    assert_eq!(row, vec![(1, 40000), (2, 65535)]);
}

#[test]
fn each_chain_check_fires_with_its_name() {
    let c = ctx();
    assert_eq!(
        check_set_weights(&c, &[1, 2], &[1]),
        Err(WeightsError::WeightVecNotEqualSize { uids: 2, values: 1 })
    );
    let nine: Vec<u16> = (0..9).collect();
    assert_eq!(
        check_set_weights(&c, &nine, &[1; 9]),
        Err(WeightsError::UidsLengthExceedUidsInSubNet { len: 9, n: 8 })
    );
    let poor = SetWeightsContext {
        stake_threshold: 2_000,
        ..c
    };
    assert_eq!(
        check_set_weights(&poor, &[1], &[1]),
        Err(WeightsError::NotEnoughStakeToSetWeights {
            stake: 1_000,
            threshold: 2_000
        })
    );
    let old = SetWeightsContext {
        required_version_key: 10_002_000,
        version_key: 10_001_999,
        ..c
    };
    assert_eq!(
        check_set_weights(&old, &[1], &[1]),
        Err(WeightsError::IncorrectWeightVersionKey {
            got: 10_001_999,
            required: 10_002_000
        })
    );
    let fast = SetWeightsContext {
        last_update: 950,
        ..c
    };
    assert_eq!(
        check_set_weights(&fast, &[1], &[1]),
        Err(WeightsError::SettingWeightsTooFast {
            last_update: 950,
            current_block: 1_000,
            rate_limit: 100
        })
    );
    let no_permit = SetWeightsContext {
        validator_permit: false,
        ..c
    };
    assert_eq!(
        check_set_weights(&no_permit, &[1], &[1]),
        Err(WeightsError::NeuronNoValidatorPermit { uid: 0 })
    );
    assert_eq!(
        check_set_weights(&c, &[1, 2, 1], &[1, 1, 1]),
        Err(WeightsError::DuplicateUids { uid: 1 })
    );
    assert_eq!(
        check_set_weights(&c, &[1, 8], &[1, 1]),
        Err(WeightsError::UidVecContainInvalidOne { uid: 8, n: 8 })
    );
    let picky = SetWeightsContext {
        min_allowed_weights: 3,
        ..c
    };
    assert_eq!(
        check_set_weights(&picky, &[1, 2], &[1, 1]),
        Err(WeightsError::WeightVecLengthIsLow { len: 2, min: 3 })
    );
    // Two equal weights are 0.5 each: allowed at a limit of 32768/65535, not at 32767/65535.
    let loose = SetWeightsContext {
        max_weight_limit: u16::MAX / 2 + 1,
        ..c
    };
    assert_eq!(
        check_set_weights(&loose, &[1, 2, 3], &[u16::MAX, u16::MAX, 0]),
        Ok(vec![(1, 65535), (2, 65535), (3, 0)])
    );
    let capped = SetWeightsContext {
        max_weight_limit: u16::MAX / 2,
        ..c
    };
    assert_eq!(
        check_set_weights(&capped, &[1, 2, 3], &[u16::MAX, u16::MAX, 0]),
        Err(WeightsError::MaxWeightExceeded {
            limit: u16::MAX / 2
        })
    );
    assert_eq!(
        check_set_weights(&capped, &[1, 2], &[u16::MAX, 1]),
        Err(WeightsError::MaxWeightExceeded {
            limit: u16::MAX / 2
        })
    );
}

#[test]
fn exemptions_follow_the_chain() {
    let c = ctx();
    // Rate limit: exactly `rate_limit` blocks later is allowed; a never-set uid always is.
    let edge = SetWeightsContext {
        last_update: 900,
        ..c
    };
    assert!(check_set_weights(&edge, &[1], &[1]).is_ok());
    // Commit-reveal skips the rate limit here.
    let cr = SetWeightsContext {
        last_update: 999,
        commit_reveal_enabled: true,
        ..c
    };
    assert!(check_set_weights(&cr, &[1], &[1]).is_ok());
    // A single self-weight needs no permit, no minimum length and ignores the max limit.
    let lone = SetWeightsContext {
        validator_permit: false,
        min_allowed_weights: 5,
        max_weight_limit: 1,
        ..c
    };
    assert_eq!(check_set_weights(&lone, &[0], &[7]), Ok(vec![(0, 65535)]));
    // The owner needs no permit and is exempt from the stake threshold.
    let owner = SetWeightsContext {
        is_owner: true,
        validator_permit: false,
        stake: 0,
        stake_threshold: 10,
        ..c
    };
    assert!(check_set_weights(&owner, &[1, 2], &[1, 2]).is_ok());
    // The minimum is capped by the subnet size.
    let small = SetWeightsContext {
        n: 2,
        min_allowed_weights: 1024,
        ..c
    };
    assert!(check_set_weights(&small, &[0, 1], &[1, 1]).is_ok());
    // Duplicates are reported before unknown uids, as on the chain.
    assert_eq!(
        check_set_weights(&c, &[9, 9], &[1, 1]),
        Err(WeightsError::DuplicateUids { uid: 9 })
    );
}

// --- process_weights_for_netuid. Expected values were printed by bittensor 10.5.0's
// `weight_utils` (numpy 2.4.6); `tests/it/sdk_weights.rs` runs the SDK itself on random cases.

#[test]
fn numpy_sum_is_pairwise_in_float32() {
    // np.full(1000, 0.1, np.float32).sum() == 100.00001525878906; a left-to-right float32
    // sum gives 99.9990463256836.
    assert_eq!(f64::from(np_sum(&[0.1_f32; 1000])), 100.00001525878906);
    let sequential = [0.1_f32; 1000].iter().fold(0.0_f32, |a, &b| a + b);
    assert_eq!(f64::from(sequential), 99.9990463256836);
    assert_eq!(np_sum::<f32>(&[]), 0.0);
}

#[test]
fn normalize_max_weight_edges() {
    // 10 * 0.1 <= 1 holds in float64 (the SDK's Python float), so the result is uniform; with
    // an f32 limit (0.10000000149) it would not be.
    assert_eq!(normalize_max_weight(&[1.0; 10], 0.1), vec![0.1_f32; 10]);
    let mut skewed = [1.0_f32; 10];
    skewed[9] = 2.0;
    assert_eq!(normalize_max_weight(&skewed, 0.1), vec![0.1_f32; 10]);
    assert_eq!(normalize_max_weight(&[0.0; 4], 0.5), vec![0.25_f32; 4]);
    assert_eq!(normalize_max_weight(&[], 0.5), Vec::<f32>::new());
    // Already within the limit: just divided by the sum.
    assert_eq!(normalize_max_weight(&[1.0, 3.0], 1.0), vec![0.25, 0.75]);
    // Garbage in does not panic.
    let out = normalize_max_weight(&[f32::NAN, -1.0, f32::INFINITY, 2.0], 0.3);
    assert_eq!(out.len(), 4);
}

#[test]
fn process_weights_branches_match_the_sdk() {
    // Clipped at 16384/65535 in float32.
    let (u, w) = process_weights_for_netuid(
        &[0, 1, 2, 3, 4],
        &[1.0, 2.0, 3.0, 4.0, 100.0],
        5,
        0,
        16384,
        0,
    )
    .expect("valid");
    assert_eq!(u, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        w,
        vec![
            0.0833323672413826,
            0.1666647344827652,
            0.2499970942735672,
            0.2500028908252716,
            0.2500028908252716
        ]
    );
    assert_eq!(
        process_and_convert(
            &[0, 1, 2, 3, 4],
            &[1.0, 2.0, 3.0, 4.0, 100.0],
            5,
            0,
            16384,
            0
        ),
        Ok((vec![0, 1, 2, 3, 4], vec![21844, 43689, 65533, 65535, 65535]))
    );
    // Fewer positive weights than min_allowed_weights: 1e-5 padding, float64.
    let (u, w) = process_weights_for_netuid(&[0, 1, 2, 3], &[0.0, 5.0, 0.0, 0.0], 4, 2, 20000, 0)
        .expect("valid");
    assert_eq!(u, vec![0, 1, 2, 3]);
    assert_eq!(
        w,
        vec![
            0.23553208687420554,
            0.29340373937738345,
            0.23553208687420554,
            0.23553208687420554
        ]
    );
    // Half the weights excluded by the quantile (at most k - min_allowed of them).
    assert_eq!(
        process_weights_for_netuid(
            &[0, 1, 2, 3, 4],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            5,
            0,
            65535,
            32768
        ),
        Ok((vec![3, 4], vec![0.4444444477558136, 0.5555555820465088]))
    );
    // No positive weight: uniform over the metagraph's n, whatever the uids were.
    assert_eq!(
        process_weights_for_netuid(&[3, 1], &[0.0, 0.0], 3, 0, 65535, 0),
        Ok((vec![0, 1, 2], vec![1.0 / 3.0; 3]))
    );
    // n < min_allowed_weights: uniform too.
    assert_eq!(
        process_weights_for_netuid(&[0, 1], &[1.0, 2.0], 2, 3, 65535, 0),
        Ok((vec![0, 1], vec![0.5, 0.5]))
    );
}

#[test]
fn process_weights_errors_where_the_sdk_raises_and_never_panics() {
    // A positive weight without a uid (SDK: IndexError on uids[idx]).
    assert_eq!(
        process_weights_for_netuid(&[0, 1], &[1.0, 1.0, 1.0], 3, 0, 65535, 0),
        Err(WeightsError::WeightVecNotEqualSize { uids: 2, values: 3 })
    );
    // Padding branch with a positive weight at a position >= n (SDK: IndexError).
    let mut w = [0.0_f32; 10];
    w[9] = 1.0;
    assert_eq!(
        process_weights_for_netuid(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &w, 4, 2, 65535, 0),
        Err(WeightsError::UidsLengthExceedUidsInSubNet { len: 10, n: 4 })
    );
    // n = 0: nothing to convert (SDK: ValueError from min() of an empty list).
    assert_eq!(
        process_and_convert(&[], &[], 0, 0, 65535, 0),
        Err(WeightsError::WeightVecLengthIsLow { len: 0, min: 1 })
    );
    // +inf makes the quantile NaN, so nothing is kept (SDK: ValueError).
    assert_eq!(
        process_and_convert(&[4], &[f32::INFINITY], 1, 0, 65535, 0),
        Err(WeightsError::NonFiniteWeight { uid: 4 })
    );
    // NaN, negatives and uids >= n are carried or dropped like the SDK does.
    assert_eq!(
        process_and_convert(&[0, 1, 700], &[f32::NAN, -1.0, 2.0], 3, 0, 65535, 0),
        Ok((vec![700], vec![65535]))
    );
    for q in [0, 1, 40000, u16::MAX] {
        for mwl in [0, 1, 30000, u16::MAX] {
            for min in [0, 1, 3, 9] {
                let _ = process_and_convert(
                    &[0, 1, 2, 9],
                    &[f32::NAN, f32::INFINITY, -0.0, f32::MIN_POSITIVE],
                    3,
                    min,
                    mwl,
                    q,
                );
                let _ = process_and_convert(&[], &[1.0, f32::MAX, 0.5], u16::MAX, min, mwl, q);
            }
        }
    }
}
