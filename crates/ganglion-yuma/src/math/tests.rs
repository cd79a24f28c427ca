//! Tests for the fixed-point primitives. Tests named `test_math_*` / `test_vec_*` /
//! `test_check_*` port subtensor's `pallets/subtensor/src/tests/math.rs` with its expected
//! values; the dense-matrix variants there have no counterpart here and are not ported.
//! Tests named `ours_*` are this crate's own (equivalence of the fast paths).
#![allow(clippy::excessive_precision)] // upstream's literals, kept verbatim

use super::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn fixed(x: f32) -> I32F32 {
    I32F32::from_num(x)
}

fn vec_to_fixed(v: &[f32]) -> Vec<I32F32> {
    v.iter().map(|x| I32F32::from_num(*x)).collect()
}

/// Reshape to a sparse matrix (entries > 0 kept), optionally transposed (subtensor helper).
fn vec_to_sparse_mat_fixed(vector: &[f32], rows: usize, transpose: bool) -> Vec<SparseRow> {
    assert_eq!(vector.len() % rows, 0);
    let cols = vector.len() / rows;
    let mut mat = Vec::new();
    if transpose {
        for col in 0..cols {
            let mut r = Vec::new();
            for row in 0..rows {
                let v = vector[row * cols + col];
                if v > 0. {
                    r.push((row as u16, I32F32::from_num(v)));
                }
            }
            mat.push(r);
        }
    } else {
        for row in 0..rows {
            let mut r = Vec::new();
            for col in 0..cols {
                let v = vector[row * cols + col];
                if v > 0. {
                    r.push((col as u16, I32F32::from_num(v)));
                }
            }
            mat.push(r);
        }
    }
    mat
}

fn assert_vec_compare(a: &[I32F32], b: &[I32F32], eps: I32F32) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((*x - *y).abs() <= eps, "{a:?} vs {b:?}");
    }
}

fn assert_sparse_mat_compare(a: &[SparseRow], b: &[SparseRow], eps: I32F32) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (ra, rb) in a.iter().zip(b) {
        assert_eq!(ra.len(), rb.len(), "{a:?} vs {b:?}");
        for (x, y) in ra.iter().zip(rb) {
            assert_eq!(x.0, y.0, "{a:?} vs {b:?}");
            assert!((x.1 - y.1).abs() <= eps, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn test_vec_max_upscale_to_u16() {
    let cases: Vec<(Vec<I32F32>, Vec<u16>)> = vec![
        (vec_to_fixed(&[]), vec![]),
        (vec_to_fixed(&[0.]), vec![0]),
        (vec_to_fixed(&[0., 0.]), vec![0, 0]),
        (vec_to_fixed(&[0., 1.]), vec![0, 65535]),
        (vec_to_fixed(&[0., 0.000000001]), vec![0, 65535]),
        (vec_to_fixed(&[0., 0.000016, 1.]), vec![0, 1, 65535]),
        (
            vec_to_fixed(&[0.000000001, 0.000000001]),
            vec![65535, 65535],
        ),
        (
            vec_to_fixed(&[
                0.000001, 0.000006, 0.000007, 0.0001, 0.001, 0.01, 0.1, 0.2, 0.3, 0.4,
            ]),
            vec![0, 1, 1, 16, 164, 1638, 16384, 32768, 49151, 65535],
        ),
        (vec![I32F32::from_num(16384)], vec![65535]),
        (vec![I32F32::from_num(32768)], vec![65535]),
        (vec![I32F32::from_num(32769)], vec![65535]),
        (vec![I32F32::from_num(65535)], vec![65535]),
        (vec![I32F32::max_value()], vec![65535]),
        (vec_to_fixed(&[0., 1., 65535.]), vec![0, 1, 65535]),
        (
            vec_to_fixed(&[0., 0.5, 1., 1.5, 2., 32768.]),
            vec![0, 1, 2, 3, 4, 65535],
        ),
        (
            vec_to_fixed(&[0., 0.5, 1., 1.5, 2., 32768., 32769.]),
            vec![0, 1, 2, 3, 4, 65533, 65535],
        ),
        (
            vec![
                I32F32::from_num(0),
                I32F32::from_num(1),
                I32F32::from_num(32768),
                I32F32::from_num(32769),
                I32F32::max_value(),
            ],
            vec![0, 0, 1, 1, 65535],
        ),
    ];
    for (input, target) in cases {
        assert_eq!(vec_max_upscale_to_u16(&input), target, "input {input:?}");
    }
}

#[test]
fn test_vec_u16_max_upscale_to_u16() {
    let same: [&[u16]; 4] = [&[], &[0], &[0, 0], &[0, 1, 2, 3, 4, 65533, 65535]];
    for v in same {
        assert_eq!(vec_u16_max_upscale_to_u16(v), v);
    }
    let cases: [(&[u16], &[u16]); 6] = [
        (&[1], &[65535]),
        (&[0, 1], &[0, 65535]),
        (&[65534], &[65535]),
        (&[65535], &[65535]),
        (&[65535, 65535], &[65535, 65535]),
        (&[0, 1, 65534], &[0, 1, 65535]),
    ];
    for (v, t) in cases {
        assert_eq!(vec_u16_max_upscale_to_u16(v), t);
    }
}

#[test]
fn test_check_vec_max_limited() {
    let m = u16::MAX;
    assert!(check_vec_max_limited(&[], 0));
    assert!(check_vec_max_limited(&[], m));
    assert!(check_vec_max_limited(&[m], m));
    assert!(!check_vec_max_limited(&[m], m - 1));
    assert!(!check_vec_max_limited(&[m], 0));
    assert!(check_vec_max_limited(&[0], m));
    assert!(check_vec_max_limited(&[0, m], m));
    assert!(!check_vec_max_limited(&[0, m, m], m / 2));
    assert!(check_vec_max_limited(&[0, m, m], m / 2 + 1));
    assert!(!check_vec_max_limited(&[0, m, m, m], m / 3 - 1));
    assert!(check_vec_max_limited(&[0, m, m, m], m / 3));
}

#[test]
fn test_math_fixed_overflow() {
    // The bonds EMA alpha path: 900_000 / 1e6 in I64F64, then 1 - that in I32F32.
    let bma = I64F64::from_num(900_000_u64) / I64F64::from_num(1_000_000);
    let alpha = I32F32::from_num(1) - I32F32::from_num(bma);
    assert_eq!(I32F32::from_num(0.1), alpha);
    let max_32 = I32F32::max_value();
    let bma = I64F64::from_num(max_32) / I64F64::from_num(max_32);
    assert_eq!(
        I32F32::from_num(0),
        I32F32::from_num(1) - I32F32::from_num(bma)
    );
}

#[test]
fn test_math_u64_normalization() {
    let max_sum = I64F64::from_num(21_000_000_000_000_000_u64);
    let min_frac = I64F64::from_num(1_u64) / max_sum;
    assert_eq!(min_frac, I64F64::from_num(0.0000000000000000476));
    assert_eq!(I32F32::from_num(min_frac), I32F32::from_num(0));
    let min32_frac = I64F64::from_num(4_889_444_u64) / max_sum;
    assert_eq!(min32_frac, I64F64::from_num(0.00000000023283066664));
    assert_eq!(I32F32::from_num(min32_frac), I32F32::from_num(0.0000000002));
    let half = I64F64::from_num(10_500_000_000_000_000_u64) / max_sum;
    assert_eq!(half, I64F64::from_num(0.5));
    assert_eq!(I32F32::from_num(half), I32F32::from_num(0.5));
    let one = max_sum / max_sum;
    assert_eq!(I32F32::from_num(one), I32F32::from_num(1));
}

#[test]
fn test_math_exp_safe() {
    let zero = I32F32::from_num(0);
    let one = I32F32::from_num(1);
    let e = |x: I32F32| exp::<I32F32, I32F32>(x).expect("in range");
    assert_eq!(exp_safe(zero), e(zero));
    assert_eq!(exp_safe(one), e(one));
    let min_input = I32F32::from_num(-20);
    let max_input = I32F32::from_num(20);
    assert_eq!(exp_safe(min_input), e(min_input));
    assert_eq!(exp_safe(min_input - one), e(min_input));
    assert_eq!(exp_safe(I32F32::min_value()), e(min_input));
    assert_eq!(exp_safe(max_input), e(max_input));
    assert_eq!(exp_safe(max_input + one), e(max_input));
    assert_eq!(exp_safe(I32F32::max_value()), e(max_input));
}

/// Port of `test_math_is_topk`, applied to `is_topk_nonzero`: identical except that a zero
/// entry is never selected (only the first vector has one).
#[test]
fn test_math_is_topk_nonzero() {
    assert!(is_topk_nonzero(&vec_to_fixed(&[]), 5).is_empty());
    let v = vec_to_fixed(&[0., 1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    assert_eq!(is_topk_nonzero(&v, 0), vec![false; 10]);
    let mut t = vec![false; 5];
    t.extend([true; 5]);
    assert_eq!(is_topk_nonzero(&v, 5), t);
    let mut t = vec![false];
    t.extend([true; 9]);
    assert_eq!(is_topk_nonzero(&v, 10), t);
    assert_eq!(is_topk_nonzero(&v, 100), t);
    let v = vec_to_fixed(&[9., 8., 7., 6., 5., 4., 3., 2., 1., 0.]);
    let mut t = vec![true; 5];
    t.extend([false; 5]);
    assert_eq!(is_topk_nonzero(&v, 5), t);
    let alt = vec![
        true, false, true, false, true, false, true, false, true, false,
    ];
    let v = vec_to_fixed(&[9., 0., 8., 1., 7., 2., 6., 3., 5., 4.]);
    assert_eq!(is_topk_nonzero(&v, 5), alt);
    let v = vec_to_fixed(&[0.9, 0., 0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4]);
    assert_eq!(is_topk_nonzero(&v, 5), alt);
    // Ties: the stable ascending sort clears the lower uids of the tied 5s first.
    let v = vec_to_fixed(&[0., 1., 2., 3., 4., 5., 5., 5., 5., 6.]);
    let mut t = vec![false; 5];
    t.extend([true; 5]);
    assert_eq!(is_topk_nonzero(&v, 5), t);
    let v = vec_to_fixed(&[5., 5., 5., 5., 6.]);
    assert_eq!(is_topk_nonzero(&v, 3), vec![false, false, true, true, true]);
}

#[test]
fn test_math_sum() {
    assert_eq!(sum(&[]), I32F32::from_num(0));
    assert_eq!(sum(&vec_to_fixed(&[1., 10., 30.])), I32F32::from_num(41));
    assert_eq!(sum(&vec_to_fixed(&[-1., 10., 30.])), I32F32::from_num(39));
}

#[test]
fn test_math_inplace_normalize() {
    let eps = fixed(0.0001);
    let mut x = vec_to_fixed(&[1., 10., 30.]);
    inplace_normalize(&mut x);
    assert_vec_compare(
        &x,
        &vec_to_fixed(&[0.0243902437, 0.243902439, 0.7317073171]),
        eps,
    );
    let mut x = vec_to_fixed(&[-1., 10., 30.]);
    inplace_normalize(&mut x);
    assert_vec_compare(
        &x,
        &vec_to_fixed(&[-0.0256410255, 0.2564102563, 0.769230769]),
        eps,
    );
}

#[test]
fn test_math_inplace_normalize_64() {
    let eps = I64F64::from_num(0.0001);
    let mut x: Vec<I64F64> = [1., 10., 30.]
        .iter()
        .map(|v| I64F64::from_num(*v))
        .collect();
    inplace_normalize_64(&mut x);
    for (a, b) in x.iter().zip([0.0243902437, 0.243902439, 0.7317073171]) {
        assert!((*a - I64F64::from_num(b)).abs() <= eps);
    }
    let mut x: Vec<I64F64> = [-1., 10., 30.]
        .iter()
        .map(|v| I64F64::from_num(*v))
        .collect();
    inplace_normalize_64(&mut x);
    for (a, b) in x.iter().zip([-0.0256410255, 0.2564102563, 0.769230769]) {
        assert!((*a - I64F64::from_num(b)).abs() <= eps);
    }
}

const SPARSE_IN: [f32; 42] = [
    0., 1., 0., 2., 0., 3., 4., 0., 1., 0., 2., 0., 3., 0., 1., 0., 0., 2., 0., 3., 4., 0., 10.,
    0., 100., 1000., 0., 10000., 0., 0., 0., 0., 0., 0., 0., 1., 1., 1., 1., 1., 1., 1.,
];
const SPARSE_NORM: [f32; 42] = [
    0., 0.1, 0., 0.2, 0., 0.3, 0.4, 0., 0.166666, 0., 0.333333, 0., 0.5, 0., 0.1, 0., 0., 0.2, 0.,
    0.3, 0.4, 0., 0.0009, 0., 0.009, 0.09, 0., 0.9, 0., 0., 0., 0., 0., 0., 0., 0.142857, 0.142857,
    0.142857, 0.142857, 0.142857, 0.142857, 0.142857,
];

#[test]
fn test_math_inplace_row_normalize_sparse() {
    let mut mat = vec_to_sparse_mat_fixed(&SPARSE_IN, 6, false);
    inplace_row_normalize_sparse(&mut mat);
    assert_sparse_mat_compare(
        &mat,
        &vec_to_sparse_mat_fixed(&SPARSE_NORM, 6, false),
        fixed(0.0001),
    );
    let mut mat = vec_to_sparse_mat_fixed(&[0.; 12], 3, false);
    inplace_row_normalize_sparse(&mut mat);
    assert_sparse_mat_compare(
        &mat,
        &vec_to_sparse_mat_fixed(&[0.; 12], 3, false),
        fixed(0.),
    );
}

#[test]
fn test_math_inplace_col_normalize_sparse() {
    let mut mat = vec_to_sparse_mat_fixed(&SPARSE_IN, 6, true);
    inplace_col_normalize_sparse(&mut mat, 6);
    assert_sparse_mat_compare(
        &mat,
        &vec_to_sparse_mat_fixed(&SPARSE_NORM, 6, true),
        fixed(0.0001),
    );
    let mut mat = vec_to_sparse_mat_fixed(&[0.; 12], 3, false);
    inplace_col_normalize_sparse(&mut mat, 6);
    assert_sparse_mat_compare(
        &mat,
        &vec_to_sparse_mat_fixed(&[0.; 12], 3, false),
        fixed(0.),
    );
    let mut mat: Vec<SparseRow> = vec![];
    inplace_col_normalize_sparse(&mut mat, 0);
    assert!(mat.is_empty());
}

#[test]
fn test_math_inplace_col_max_upscale_sparse() {
    let mut mat: Vec<SparseRow> = vec![vec![]];
    inplace_col_max_upscale_sparse(&mut mat, 0);
    assert_eq!(mat, vec![vec![]]);
    let mut mat = vec![vec![(0, fixed(0.))]];
    inplace_col_max_upscale_sparse(&mut mat, 1);
    assert_eq!(mat, vec![vec![(0, fixed(0.))]]);
    let target: [f32; 42] = [
        0., 0.25, 0., 0.5, 0., 0.75, 1., 0., 0.333333, 0., 0.666666, 0., 1., 0., 0.25, 0., 0., 0.5,
        0., 0.75, 1., 0., 0.001, 0., 0.01, 0.1, 0., 1., 0., 0., 0., 0., 0., 0., 0., 1., 1., 1., 1.,
        1., 1., 1.,
    ];
    let mut mat = vec_to_sparse_mat_fixed(&SPARSE_IN, 6, true);
    inplace_col_max_upscale_sparse(&mut mat, 6);
    assert_sparse_mat_compare(
        &mat,
        &vec_to_sparse_mat_fixed(&target, 6, true),
        fixed(0.0001),
    );
}

#[test]
fn test_math_inplace_mask_vector() {
    for (mask, target) in [
        ([false, false, false], [0., 1., 2.]),
        ([false, true, false], [0., 0., 2.]),
        ([true, true, true], [0., 0., 0.]),
    ] {
        let mut v = vec_to_fixed(&[0., 1., 2.]);
        inplace_mask_vector(&mask, &mut v);
        assert_eq!(v, vec_to_fixed(&target));
    }
}

#[test]
fn test_math_mask_rows_sparse() {
    let input = [1., 2., 3., 4., 5., 6., 7., 8., 9.];
    let mat = vec_to_sparse_mat_fixed(&input, 3, false);
    for (mask, target) in [
        ([false, false, false], input),
        ([true, true, true], [0.; 9]),
        ([true, false, true], [0., 0., 0., 4., 5., 6., 0., 0., 0.]),
    ] {
        let r = mask_rows_sparse(&mask, &mat);
        assert_eq!(r, vec_to_sparse_mat_fixed(&target, 3, false));
    }
}

#[test]
fn test_math_mask_diag_sparse() {
    for (input, target) in [
        (
            [1., 2., 3., 4., 5., 6., 7., 8., 9.],
            [0., 2., 3., 4., 0., 6., 7., 8., 0.],
        ),
        ([1., 0., 0., 0., 5., 0., 0., 0., 9.], [0.; 9]),
        ([0.; 9], [0.; 9]),
    ] {
        let r = mask_diag_sparse(&vec_to_sparse_mat_fixed(&input, 3, false));
        assert_eq!(r, vec_to_sparse_mat_fixed(&target, 3, false));
    }
}

#[test]
fn test_math_vec_mask_sparse_matrix() {
    let input = [1., 2., 3., 4., 5., 6., 7., 8., 9.];
    let mat = vec_to_sparse_mat_fixed(&input, 3, false);
    let v = [1, 2, 3];
    let r = vec_mask_sparse_matrix(&mat, &v, &v, |a, b| a == b);
    assert_eq!(
        r,
        vec_to_sparse_mat_fixed(&[0., 2., 3., 4., 0., 6., 7., 8., 0.], 3, false)
    );
    let r = vec_mask_sparse_matrix(&mat, &v, &v, |a, b| a < b);
    assert_eq!(
        r,
        vec_to_sparse_mat_fixed(&[1., 0., 0., 4., 5., 0., 7., 8., 9.], 3, false)
    );
    let zero = vec_to_sparse_mat_fixed(&[0.; 9], 3, false);
    assert_eq!(vec_mask_sparse_matrix(&zero, &v, &v, |a, b| a == b), zero);
}

#[test]
fn test_math_row_hadamard_sparse() {
    let v = vec_to_fixed(&[1., 2., 3., 4.]);
    for (m, t) in [
        (
            [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
            [1., 2., 3., 8., 10., 12., 21., 24., 27., 40., 44., 48.],
        ),
        (
            [0., 2., 3., 4., 0., 6., 7., 8., 0., 10., 11., 12.],
            [0., 2., 3., 8., 0., 12., 21., 24., 0., 40., 44., 48.],
        ),
        ([0.; 12], [0.; 12]),
    ] {
        let r = row_hadamard_sparse(&vec_to_sparse_mat_fixed(&m, 4, false), &v);
        assert_eq!(r, vec_to_sparse_mat_fixed(&t, 4, false));
    }
}

#[test]
fn test_math_row_sum_sparse() {
    for (m, t) in [
        (
            [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
            [6., 15., 24., 33.],
        ),
        (
            [0., 2., 3., 4., 0., 6., 7., 8., 0., 10., 11., 12.],
            [5., 10., 15., 33.],
        ),
        (
            [1., 2., 3., 0., 0., 0., 7., 8., 9., 10., 11., 12.],
            [6., 0., 24., 33.],
        ),
        ([0.; 12], [0.; 4]),
    ] {
        assert_eq!(
            row_sum_sparse(&vec_to_sparse_mat_fixed(&m, 4, false)),
            vec_to_fixed(&t)
        );
    }
}

#[test]
fn test_math_sparse_matmul() {
    let v = vec_to_fixed(&[1., 2., 3., 4.]);
    for (m, t) in [
        (
            [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
            [70., 80., 90.],
        ),
        (
            [0., 2., 3., 4., 0., 6., 7., 8., 0., 10., 11., 12.],
            [69., 70., 63.],
        ),
        ([0.; 12], [0.; 3]),
    ] {
        assert_eq!(
            matmul_sparse(&vec_to_sparse_mat_fixed(&m, 4, false), &v, 3),
            vec_to_fixed(&t)
        );
    }
}

#[test]
fn test_math_sparse_matmul_transpose() {
    let v = vec_to_fixed(&[1., 2., 3.]);
    for (m, t) in [
        (
            [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
            [14., 32., 50., 68.],
        ),
        (
            [0., 2., 3., 4., 0., 6., 7., 8., 0., 10., 11., 12.],
            [13., 22., 23., 68.],
        ),
        ([0.; 12], [0.; 4]),
    ] {
        assert_eq!(
            matmul_transpose_sparse(&vec_to_sparse_mat_fixed(&m, 4, false), &v),
            vec_to_fixed(&t)
        );
    }
}

#[test]
fn test_math_col_clip_sparse() {
    let v = vec_to_fixed(&[0., 5., 12.]);
    for (m, t) in [
        (
            [0., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
            [0., 2., 3., 0., 5., 6., 0., 5., 9., 0., 5., 12.],
        ),
        (
            [0., 2., 3., 4., 5., 6., 0., 0., 0., 10., 11., 12.],
            [0., 2., 3., 0., 5., 6., 0., 0., 0., 0., 5., 12.],
        ),
        ([0.; 12], [0.; 12]),
    ] {
        let r = col_clip_sparse(&vec_to_sparse_mat_fixed(&m, 4, false), &v);
        assert_eq!(r, vec_to_sparse_mat_fixed(&t, 4, false));
    }
}

fn median_all(stake: &[I32F32], score: &[I32F32], majority: I32F32) -> I32F32 {
    let idx: Vec<usize> = (0..stake.len()).collect();
    weighted_median(
        stake,
        score,
        &idx,
        fixed(1.) - majority,
        fixed(0.),
        sum(stake),
    )
}

#[test]
fn test_math_weighted_median() {
    let m = fixed(0.51);
    let one = fixed(1.);
    assert_eq!(median_all(&[], &[], m), fixed(0.));
    let mut s = vec_to_fixed(&[0.51]);
    inplace_normalize(&mut s);
    assert_eq!(median_all(&s, &vec_to_fixed(&[1.]), m), one);
    let cases: [(&[f32], &[f32], f32); 10] = [
        (&[0.49, 0.51], &[0.5, 1.], 1.),
        (&[0.51, 0.49], &[0.5, 1.], 0.5),
        (&[0.49, 0., 0.51], &[0.5, 0.7, 1.], 1.),
        (&[0.49, 0.01, 0.5], &[0.5, 0.7, 1.], 0.7),
        (&[0.49, 0.51, 0.0], &[0.5, 0.7, 1.], 0.7),
        (&[0.0, 0.49, 0.51], &[0.5, 0.7, 1.], 1.),
        (&[0.0, 0.49, 0.0, 0.51], &[0.5, 0.5, 1., 1.], 1.),
        (&[0.0, 0.49, 0.0, 0.51, 0.0], &[0.5, 0.5, 1., 1., 0.5], 1.),
        (&[0.2, 0.2, 0.2, 0.2, 0.2], &[0.8, 0.2, 1., 0.6, 0.4], 0.6),
        (
            &[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            &[0.8, 0.8, 0.2, 0.2, 1.0, 1.0, 0.6, 0.6, 0.4, 0.4],
            0.6,
        ),
    ];
    for (stake, score, want) in cases {
        assert_eq!(
            median_all(&vec_to_fixed(stake), &vec_to_fixed(score), m),
            fixed(want),
            "stake {stake:?} score {score:?}"
        );
    }
}

/// The randomised part of `test_math_weighted_median`, with a seeded RNG: the result is one
/// of the admissible medians for every majority and under any permutation of the inputs.
#[test]
fn test_math_weighted_median_randomised() {
    let mut rng = StdRng::seed_from_u64(42);
    let zero = fixed(0.);
    let one = fixed(1.);
    let n = 100;
    for majority in vec_to_fixed(&[0., 0.0000001, 0.25, 0.49, 0.5, 0.51, 0.9999999, 1.]) {
        for allow_equal in [false, true] {
            let mut stake = Vec::new();
            let mut score = Vec::new();
            let mut last = zero;
            for i in 0..n {
                if allow_equal {
                    stake.push(if rng.gen_range(0..2) == 1 { one } else { zero });
                    if rng.gen_range(0..2) == 1 {
                        last += one;
                    }
                    score.push(last);
                } else {
                    stake.push(one);
                    score.push(I32F32::from_num(i));
                }
            }
            inplace_normalize(&mut stake);
            let total = sum(&stake);
            let minority = (total - majority).max(zero);
            let mut medians = Vec::new();
            let mut median_stake = zero;
            let mut median_set = false;
            let mut acc = zero;
            for i in 0..n {
                acc += stake[i];
                if !median_set && acc >= minority {
                    median_stake = acc;
                    median_set = true;
                }
                if median_set {
                    if median_stake < acc {
                        if median_stake == minority && !medians.contains(&score[i]) {
                            medians.push(score[i]);
                        }
                        break;
                    }
                    if !medians.contains(&score[i]) {
                        medians.push(score[i]);
                    }
                }
            }
            if medians.is_empty() {
                medians.push(zero);
            }
            let idx: Vec<usize> = (0..n).collect();
            let r = weighted_median(&stake, &score, &idx, minority, zero, total);
            assert!(medians.contains(&r), "{r:?} not in {medians:?}");
            for _ in 0..10 {
                let mut perm: Vec<usize> = (0..n).collect();
                perm.shuffle(&mut rng);
                let st: Vec<I32F32> = perm.iter().map(|&i| stake[i]).collect();
                let sc: Vec<I32F32> = perm.iter().map(|&i| score[i]).collect();
                let r = weighted_median(&st, &sc, &idx, minority, zero, total);
                assert!(medians.contains(&r), "{r:?} not in {medians:?}");
            }
        }
    }
}

#[test]
fn test_math_weighted_median_col_sparse() {
    assert!(weighted_median_col_sparse(&[], &[vec![]], 0, fixed(0.5)).is_empty());
    let w = vec_to_sparse_mat_fixed(&[0.; 4], 2, false);
    assert_eq!(
        weighted_median_col_sparse(&vec_to_fixed(&[0., 0.]), &w, 2, fixed(0.5)),
        vec_to_fixed(&[0., 0.])
    );
    let stake = vec_to_fixed(&[0., 0.75, 0.25, 0.]);
    let w = vec_to_sparse_mat_fixed(
        &[0., 0.1, 0., 0., 0.2, 0.4, 0., 0.3, 0.1, 0., 0.4, 0.5],
        4,
        false,
    );
    assert_eq!(
        weighted_median_col_sparse(&stake, &w, 3, fixed(0.24)),
        vec_to_fixed(&[0., 0.3, 0.4])
    );
    assert_eq!(
        weighted_median_col_sparse(&stake, &w, 3, fixed(0.26)),
        vec_to_fixed(&[0., 0.2, 0.4])
    );
    assert_eq!(
        weighted_median_col_sparse(&stake, &w, 3, fixed(0.76)),
        vec_to_fixed(&[0., 0.2, 0.1])
    );
    let stake = vec_to_fixed(&[0., 0.3, 0.2, 0.5]);
    let w = vec_to_sparse_mat_fixed(
        &[0., 0.1, 0., 0., 0.2, 0.4, 0., 0.3, 0.1, 0., 0., 0.5],
        4,
        false,
    );
    assert_eq!(
        weighted_median_col_sparse(&stake, &w, 3, fixed(0.51)),
        vec_to_fixed(&[0., 0., 0.4])
    );
}

#[test]
fn test_math_interpolate_sparse() {
    let r = interpolate_sparse(&[vec![]], &[vec![]], 0, fixed(0.));
    assert_eq!(r, vec![vec![]]);
    let m1 = vec_to_sparse_mat_fixed(&[0.], 1, false);
    let m2 = vec_to_sparse_mat_fixed(&[1.], 1, false);
    for (ratio, t) in [(0., 0.), (0.5, 0.5), (1., 1.)] {
        let r = interpolate_sparse(&m1, &m2, 1, fixed(ratio));
        assert_eq!(r, vec_to_sparse_mat_fixed(&[t], 1, false));
    }
    let z = vec_to_sparse_mat_fixed(&[0.; 12], 4, false);
    assert_eq!(interpolate_sparse(&z, &z, 3, fixed(0.)), z);
    assert_eq!(interpolate_sparse(&z, &z, 3, fixed(1.)), z);
    let m1 = vec_to_sparse_mat_fixed(&[1., 0., 100., 1000., 10000., 100000.], 3, false);
    let m2 = vec_to_sparse_mat_fixed(&[10., 100., 1000., 10000., 100000., 0.], 3, false);
    assert_eq!(interpolate_sparse(&m1, &m2, 2, fixed(0.)), m1);
    let t = vec_to_sparse_mat_fixed(&[9.1, 90., 910., 9100., 91000., 10000.], 3, false);
    assert_sparse_mat_compare(
        &interpolate_sparse(&m1, &m2, 2, I32F32::from_num(0.9)),
        &t,
        fixed(0.0001),
    );
    let ones = vec_to_sparse_mat_fixed(&[1.; 12], 4, false);
    assert_eq!(interpolate_sparse(&z, &ones, 3, fixed(0.)), z);
    let r = interpolate_sparse(&z, &ones, 3, I32F32::from_num(0.000000001));
    assert_eq!(r, vec_to_sparse_mat_fixed(&[0.000000001; 12], 4, false));
    let r = interpolate_sparse(&z, &ones, 3, fixed(0.5));
    assert_eq!(r, vec_to_sparse_mat_fixed(&[0.5; 12], 4, false));
    let r = interpolate_sparse(&z, &ones, 3, I32F32::from_num(0.9999998808));
    assert_eq!(r, vec_to_sparse_mat_fixed(&[0.999_999_9; 12], 4, false));
    assert_eq!(interpolate_sparse(&z, &ones, 3, fixed(1.)), ones);
}

#[test]
fn test_math_sparse_mat_ema() {
    let eps = fixed(0.000001);
    let cases: [([f32; 12], [f32; 12], [f32; 12]); 5] = [
        (
            [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
            [
                10., 20., 30., 40., 50., 60., 70., 80., 90., 100., 110., 120.,
            ],
            [
                1.9, 3.8, 5.7, 7.6, 9.5, 11.4, 13.3, 15.2, 17.1, 19., 20.9, 22.8,
            ],
        ),
        (
            [0., 2., 3., 4., 0., 6., 7., 8., 0., 10., 11., 12.],
            [10., 20., 0., 40., 0., 60., 0., 80., 90., 100., 110., 120.],
            [1., 3.8, 2.7, 7.6, 0., 11.4, 6.3, 15.2, 9., 19., 20.9, 22.8],
        ),
        (
            [0.; 12],
            [10., 20., 0., 40., 0., 60., 0., 80., 90., 100., 110., 120.],
            [1., 2., 0., 4., 0., 6., 0., 8., 9., 10., 11., 12.],
        ),
        ([0.; 12], [0.; 12], [0.; 12]),
        (
            [1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.],
            [0., 0., 0., 0., 2., 0., 0., 0., 0., 0., 0., 0.],
            [0.9, 0., 0., 0., 0.2, 0., 0., 0., 0., 0., 0., 0.],
        ),
    ];
    for (old, new, target) in cases {
        let r = mat_ema_sparse(
            &vec_to_sparse_mat_fixed(&new, 4, false),
            &vec_to_sparse_mat_fixed(&old, 4, false),
            fixed(0.1),
        );
        assert_sparse_mat_compare(&r, &vec_to_sparse_mat_fixed(&target, 4, false), eps);
    }
}

#[test]
fn test_fixed_proportion_to_u16() {
    assert_eq!(fixed_proportion_to_u16(I32F32::from_num(0)), 0);
    // Saturates: 65535 * 65535 does not fit a u16.
    assert_eq!(
        fixed_proportion_to_u16(I32F32::from_num(u16::MAX)),
        u16::MAX
    );
    assert_eq!(fixed_proportion_to_u16(I32F32::from_num(-1)), 0);
}

#[test]
fn test_math_u16_proportion_to_fixed() {
    assert_eq!(u16_proportion_to_fixed(0), I32F32::from_num(0));
    assert_eq!(u16_proportion_to_fixed(u16::MAX), I32F32::from_num(1));
}

#[test]
fn ours_mat_ema_alpha_sparse_clamps_and_drops_absent_bonds() {
    // Row 0: new (0, 1.0) with alpha 0.5 on old 0.4 -> 0.5*0.4 + 0.5 = 0.7; the old bond at
    // column 1 has no new entry and is dropped. Row 1: 0.5*3 + 0.5*2 = 2.5, clamped to 1.
    let new = vec![vec![(0, fixed(1.))], vec![(0, fixed(2.))]];
    let old = vec![vec![(0, fixed(0.4)), (1, fixed(0.9))], vec![(0, fixed(3.))]];
    let alpha = vec![vec![fixed(0.5), fixed(0.5)], vec![fixed(0.5), fixed(0.5)]];
    let r = mat_ema_alpha_sparse(&new, &old, &alpha);
    assert_sparse_mat_compare(
        &r,
        &[vec![(0, fixed(0.7))], vec![(0, fixed(1.))]],
        fixed(0.000001),
    );
    // Mismatched shapes return `new` unchanged.
    assert_eq!(mat_ema_alpha_sparse(&new, &old[..1], &alpha), new);
}

fn random_sparse(
    rng: &mut StdRng,
    rows: usize,
    cols: u16,
    density: f64,
    shuffle: bool,
) -> Vec<SparseRow> {
    (0..rows)
        .map(|_| {
            let mut row: SparseRow = Vec::new();
            for j in 0..cols {
                if rng.gen_bool(density) {
                    row.push((j, I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32)))));
                }
            }
            if shuffle {
                row.shuffle(rng);
                if let Some(&first) = row.first() {
                    row.push(first);
                }
            }
            row
        })
        .collect()
}

#[test]
fn ours_liquid_alpha_ema_matches_dense_alpha_matrix() {
    let mut rng = StdRng::seed_from_u64(7);
    let la = LiquidAlpha {
        low: fixed(0.1),
        high: fixed(0.3),
        steepness: I32F32::from_num(1000),
    };
    for case in 0..60 {
        let n = rng.gen_range(1..40usize);
        let shuffle = case % 3 == 0;
        let w = random_sparse(&mut rng, n, n as u16, 0.4, shuffle);
        let b = random_sparse(&mut rng, n, n as u16, 0.4, shuffle);
        let c: Vec<I32F32> = (0..n)
            .map(|_| I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32))))
            .collect();
        let dense = mat_ema_alpha_sparse(&w, &b, &liquid_alpha_matrix_sparse(&w, &b, &c, la));
        assert_eq!(
            liquid_alpha_ema_sparse(&w, &b, &c, la),
            dense,
            "case {case}"
        );
    }
}

/// The chain's `mat_ema_sparse`, written densely as the chain does, for comparison.
fn mat_ema_sparse_dense_reference(
    new: &[SparseRow],
    old: &[SparseRow],
    alpha: I32F32,
) -> Vec<SparseRow> {
    let n = new.len();
    let oma = fixed(1.).saturating_sub(alpha);
    new.iter()
        .enumerate()
        .map(|(i, nr)| {
            let mut acc = vec![fixed(0.); n];
            for &(j, v) in nr {
                if let Some(c) = acc.get_mut(j as usize) {
                    *c = c.saturating_add(alpha.saturating_mul(v));
                }
            }
            for &(j, v) in &old[i] {
                if let Some(c) = acc.get_mut(j as usize) {
                    *c = c.saturating_add(oma.saturating_mul(v));
                }
            }
            acc.iter()
                .enumerate()
                .filter(|(_, v)| **v > fixed(0.))
                .map(|(j, v)| (j as u16, *v))
                .collect()
        })
        .collect()
}

#[test]
fn ours_mat_ema_sparse_matches_dense_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    for case in 0..60 {
        let n = rng.gen_range(1..40usize);
        let w = random_sparse(&mut rng, n, (n + 3) as u16, 0.3, case % 2 == 0);
        let b = random_sparse(&mut rng, n, (n + 3) as u16, 0.3, case % 2 == 1);
        let alpha = I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32)));
        assert_eq!(
            mat_ema_sparse(&w, &b, alpha),
            mat_ema_sparse_dense_reference(&w, &b, alpha),
            "case {case}"
        );
    }
}

#[test]
fn ours_fast_division_matches_substrate_fixed_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(3);
    let edge: [i64; 12] = [
        0,
        1,
        -1,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
        1 << 32,
        -(1 << 32),
        (1 << 31) - 1,
        1 << 31,
        65_535 << 32,
        3,
    ];
    let mut pairs: Vec<(i64, i64)> = Vec::new();
    for &a in &edge {
        for &b in &edge {
            pairs.push((a, b));
        }
    }
    for _ in 0..200_000 {
        let shift_a = rng.gen_range(0..64);
        let shift_b = rng.gen_range(0..64);
        let a = rng.r#gen::<i64>() >> shift_a;
        let b = rng.r#gen::<i64>() >> shift_b;
        pairs.push((a, b));
    }
    for (a, b) in pairs {
        let (fa, fb) = (I32F32::from_bits(a), I32F32::from_bits(b));
        assert_eq!(checked_div(fa, fb), fa.checked_div(fb), "{a} / {b}");
        if b != 0 {
            assert_eq!(saturating_div(fa, fb), fa.saturating_div(fb), "{a} / {b}");
        }
    }
}

#[test]
fn ours_exp_matches_substrate_fixed_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut xs: Vec<I32F32> = vec![
        fixed(0.),
        fixed(1.),
        fixed(-1.),
        fixed(20.),
        fixed(-20.),
        fixed(21.),
        fixed(0.5),
        I32F32::from_bits(1),
        I32F32::from_bits(-1),
    ];
    for _ in 0..20_000 {
        xs.push(I32F32::from_bits(
            rng.gen_range(-(25_i64 << 32)..(25_i64 << 32)),
        ));
    }
    for x in xs {
        assert_eq!(exp_fixed(x), exp::<I32F32, I32F32>(x).ok(), "exp({x:?})");
    }
}

#[test]
fn ours_prepared_divisor_matches_checked_div_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut divisors: Vec<i64> = vec![
        1,
        2,
        3,
        7,
        1 << 32,
        3 << 32,
        (1 << 32) + 1,
        i64::MAX,
        -5,
        0,
        65_535 << 32,
    ];
    for _ in 0..2_000 {
        let shift = rng.gen_range(0..64);
        divisors.push(rng.r#gen::<i64>() >> shift);
        divisors.push((rng.r#gen::<u64>() >> rng.gen_range(1..64)) as i64);
    }
    for d in divisors {
        let prepared = Divisor::new(I32F32::from_bits(d));
        let mut numerators: Vec<i64> = vec![
            0,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            1 << 32,
            (1 << 32) - 1,
            d,
            d.wrapping_mul(2),
        ];
        for _ in 0..200 {
            numerators.push(rng.r#gen::<i64>() >> rng.gen_range(0..64));
            numerators.push((rng.r#gen::<u64>() >> rng.gen_range(1..64)) as i64);
        }
        for a in numerators {
            let (fa, fd) = (I32F32::from_bits(a), I32F32::from_bits(d));
            assert_eq!(prepared.div(fa), fa.checked_div(fd), "{a} / {d}");
        }
    }
}

#[test]
fn ours_col_clip_in_place_matches_col_clip() {
    let mut rng = StdRng::seed_from_u64(13);
    for case in 0..100 {
        let n = rng.gen_range(1..30usize);
        let m = random_sparse(&mut rng, n, n as u16 + 2, 0.5, case % 2 == 0);
        let th: Vec<I32F32> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.2) {
                    fixed(0.)
                } else {
                    I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32)))
                }
            })
            .collect();
        let mut inplace = m.clone();
        col_clip_sparse_in_place(&mut inplace, &th);
        assert_eq!(inplace, col_clip_sparse(&m, &th), "case {case}");
    }
}

#[test]
fn ours_column_median_matches_index_based_weighted_median() {
    let mut rng = StdRng::seed_from_u64(17);
    for case in 0..300 {
        let n = rng.gen_range(1..40usize);
        let stake: Vec<I32F32> = (0..n)
            .map(|_| {
                if rng.gen_bool(0.3) {
                    fixed(0.)
                } else {
                    I32F32::from_bits(rng.gen_range(1..(1_i64 << 32)))
                }
            })
            .collect();
        // Few distinct scores so ties and equal pivots are common.
        let levels: Vec<I32F32> = (0..rng.gen_range(1..6))
            .map(|_| I32F32::from_bits(rng.gen_range(0..(1_i64 << 32))))
            .collect();
        let mut w: Vec<SparseRow> = Vec::new();
        for _ in 0..n {
            let mut row = Vec::new();
            for j in 0..n as u16 {
                if rng.gen_bool(0.7) {
                    row.push((j, levels[rng.gen_range(0..levels.len())]));
                }
            }
            w.push(row);
        }
        let kappa = I32F32::from_bits(rng.gen_range(0..(1_i64 << 32)));
        let got = weighted_median_col_sparse(&stake, &w, n as u16, kappa);
        // Reference: the chain's formulation with index partitions.
        let mut use_stake: Vec<I32F32> = stake.iter().copied().filter(|s| *s > fixed(0.)).collect();
        inplace_normalize(&mut use_stake);
        let total = sum(&use_stake);
        let minority = total.saturating_sub(kappa);
        let idx: Vec<usize> = (0..use_stake.len()).collect();
        let want: Vec<I32F32> = (0..n as u16)
            .map(|c| {
                let col: Vec<I32F32> = stake
                    .iter()
                    .zip(&w)
                    .filter(|(s, _)| **s > fixed(0.))
                    .map(|(_, row)| row.iter().find(|(j, _)| *j == c).map_or(fixed(0.), |e| e.1))
                    .collect();
                weighted_median(&use_stake, &col, &idx, minority, fixed(0.), total)
            })
            .collect();
        assert_eq!(got, want, "case {case}");
    }
}

/// Raw-bit values that stress fixed-point edge cases, plus random ones of every magnitude.
fn raw_samples(rng: &mut StdRng, random: usize) -> Vec<i64> {
    let mut v: Vec<i64> = vec![
        0,
        1,
        -1,
        2,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
        1 << 31,
        (1 << 31) - 1,
        1 << 32,
        (1 << 32) - 1,
        (1 << 32) + 1,
        -(1 << 32),
        1 << 62,
        i64::MAX - (1 << 32),
        65_535 << 32,
        20 << 32,
        (20 << 32) + 1,
        (20 << 32) - 1,
        -(20 << 32),
    ];
    for _ in 0..random {
        v.push(rng.r#gen::<i64>() >> rng.gen_range(0..64));
    }
    v
}

#[test]
fn ours_raw_multiplication_matches_substrate_fixed_bit_for_bit() {
    let mut rng = StdRng::seed_from_u64(21);
    let samples = raw_samples(&mut rng, 600);
    for &a in &samples {
        for &b in &samples {
            let (fa, fb) = (I32F32::from_bits(a), I32F32::from_bits(b));
            assert_eq!(raw::mul(a, b), fa.saturating_mul(fb).to_bits(), "{a} * {b}");
        }
    }
}

#[test]
fn ours_raw_proportion_matches_fixed_proportion_to_u16() {
    let mut rng = StdRng::seed_from_u64(22);
    let mut samples = raw_samples(&mut rng, 20_000);
    for _ in 0..20_000 {
        samples.push(rng.gen_range(-(1_i64 << 33)..(1_i64 << 34)));
    }
    for x in samples {
        assert_eq!(
            raw::proportion_to_u16(x),
            fixed_proportion_to_u16(I32F32::from_bits(x)),
            "{x}"
        );
    }
}

#[test]
fn ours_reciprocal_matches_checked_div() {
    let mut rng = StdRng::seed_from_u64(23);
    let mut samples = raw_samples(&mut rng, 20_000);
    // Around powers of two, where 2^64 / d is exact.
    for k in 0..63 {
        for delta in [-1_i64, 0, 1] {
            samples.push((1_i64 << k).wrapping_add(delta));
        }
    }
    for d in samples {
        let fd = I32F32::from_bits(d);
        assert_eq!(reciprocal(fd), ONE.checked_div(fd), "1 / {d}");
    }
}

#[test]
fn ours_divisor_on_raw_bits_matches_safe_div() {
    let mut rng = StdRng::seed_from_u64(24);
    let mut divisors = raw_samples(&mut rng, 300);
    for k in 0..63 {
        divisors.push(1 << k);
        divisors.push(3 << k.min(61));
    }
    let numerators = raw_samples(&mut rng, 300);
    for &d in &divisors {
        let prepared = Divisor::new(I32F32::from_bits(d));
        // Both sides of where the fast path ends.
        let edge = prepared.fast_below;
        let mut near: Vec<i64> = numerators.clone();
        for delta in [-2_i64, -1, 0, 1] {
            near.push((edge as i64).wrapping_add(delta));
        }
        for &a in &near {
            let want = safe_div(I32F32::from_bits(a), I32F32::from_bits(d));
            assert_eq!(prepared.safe_div_raw(a), want.to_bits(), "{a} / {d}");
        }
    }
}

#[test]
fn ours_alpha_curve_matches_alpha_sigmoid() {
    let mut rng = StdRng::seed_from_u64(25);
    let unit = |rng: &mut StdRng| I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32)));
    for case in 0..400 {
        let (low, high) = match case % 4 {
            0 => (fixed(0.7), fixed(0.9)),
            1 => (unit(&mut rng), unit(&mut rng)),
            2 => (
                I32F32::from_bits(rng.r#gen::<i64>() >> 20),
                I32F32::from_bits(rng.r#gen::<i64>() >> 20),
            ),
            _ => (fixed(0.), fixed(1.)),
        };
        let steepness = I32F32::from_num(match case % 5 {
            0 => 1_000,
            1 => -1_000,
            2 => i16::MAX,
            3 => i16::MIN,
            _ => rng.r#gen::<i16>(),
        });
        let curve = AlphaCurve::new(LiquidAlpha {
            low,
            high,
            steepness,
        });
        for _ in 0..200 {
            let c = unit(&mut rng);
            // Weights and bonds equal to, just off, or far from consensus and each other.
            let w = match rng.gen_range(0..4) {
                0 => c,
                1 => I32F32::from_bits(c.to_bits() + rng.gen_range(-3..=3)),
                2 => I32F32::from_bits(rng.r#gen::<i64>() >> rng.gen_range(20..64)),
                _ => unit(&mut rng),
            };
            let b = match rng.gen_range(0..4) {
                0 => w,
                1 => I32F32::from_bits(w.to_bits().saturating_add(1 << 32)),
                2 => I32F32::from_bits(rng.r#gen::<i64>() >> rng.gen_range(20..64)),
                _ => unit(&mut rng),
            };
            let want = alpha_sigmoid(c, w, b, low, high, steepness);
            assert_eq!(
                curve.alpha(c.to_bits(), w.to_bits(), b.to_bits()),
                want.to_bits(),
                "c {c:?} w {w:?} b {b:?} low {low:?} high {high:?} steepness {steepness:?}"
            );
        }
    }
}

#[test]
fn ours_column_median_matches_index_based_weighted_median_at_the_edges() {
    let mut rng = StdRng::seed_from_u64(26);
    for case in 0..400 {
        let k = rng.gen_range(1..300usize);
        // Zero stakes, equal stakes and one dominant stake.
        let stake: Vec<I32F32> = (0..k)
            .map(|i| match case % 3 {
                0 => I32F32::from_bits(if rng.gen_bool(0.3) {
                    0
                } else {
                    rng.gen_range(1..1 << 20)
                }),
                1 => fixed(1.),
                _ => I32F32::from_bits(if i == 0 {
                    1 << 40
                } else {
                    rng.gen_range(1..1 << 10)
                }),
            })
            .collect();
        let distinct = [1, 2, 3, 50, 1_000][case % 5];
        let levels: Vec<I32F32> = (0..distinct)
            .map(|_| I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32))))
            .collect();
        let columns = rng.gen_range(1..6u16);
        let mut w: Vec<SparseRow> = Vec::new();
        for _ in 0..k {
            let mut row = Vec::new();
            for j in 0..columns {
                if rng.gen_bool(0.8) {
                    row.push((j, levels[rng.gen_range(0..levels.len())]));
                }
            }
            w.push(row);
        }
        // kappa 0 and 1 put the minority outside the stake range.
        let kappa = match case % 4 {
            0 => fixed(0.),
            1 => fixed(1.),
            _ => I32F32::from_bits(rng.gen_range(0..=(1_i64 << 32))),
        };
        let got = weighted_median_col_sparse(&stake, &w, columns, kappa);
        let mut use_stake: Vec<I32F32> = stake.iter().copied().filter(|s| *s > fixed(0.)).collect();
        inplace_normalize(&mut use_stake);
        let total = sum(&use_stake);
        let minority = total.saturating_sub(kappa);
        let idx: Vec<usize> = (0..use_stake.len()).collect();
        let want: Vec<I32F32> = (0..columns)
            .map(|c| {
                let col: Vec<I32F32> = stake
                    .iter()
                    .zip(&w)
                    .filter(|(s, _)| **s > fixed(0.))
                    .map(|(_, row)| row.iter().find(|(j, _)| *j == c).map_or(fixed(0.), |e| e.1))
                    .collect();
                weighted_median(&use_stake, &col, &idx, minority, fixed(0.), total)
            })
            .collect();
        assert_eq!(got, want, "case {case}");
    }
}

#[test]
fn ours_exp_matches_substrate_fixed_at_its_shortcut_edges() {
    // Either side of the unchecked range, around 0 and 1 (early-terminating series), and
    // negative inputs (reciprocal).
    let mut xs: Vec<i64> = Vec::new();
    for centre in [EXP_UNCHECKED_MAX_BITS, 0, 1 << 32, 21 << 32, 22 << 32] {
        for delta in -300..=300 {
            xs.push(centre + delta);
            xs.push(-(centre + delta));
        }
    }
    for x in xs {
        let fx = I32F32::from_bits(x);
        assert_eq!(exp_fixed(fx), exp::<I32F32, I32F32>(fx).ok(), "exp({x})");
    }
}

#[test]
fn ours_exp_series_bounds_contain_the_series() {
    let mut rng = StdRng::seed_from_u64(27);
    let mut xs: Vec<u64> = (1..2_000).collect();
    for bucket in 0..=320_u64 {
        let edge = bucket << 28;
        for delta in [0, 1, 2] {
            xs.push(edge.saturating_sub(delta).max(1));
            xs.push(edge + delta);
        }
    }
    for _ in 0..200_000 {
        xs.push(rng.gen_range(1..=(20_u64 << 32)));
    }
    xs.retain(|x| *x <= 20 << 32);
    for a in xs {
        let exact = exp_series_unchecked(a);
        let (low, high) = exp_series_bounds(a);
        assert!(
            low <= exact && exact <= high,
            "{a}: {low} <= {exact} <= {high}"
        );
        // Tight enough to be useful: a few parts per billion of the value.
        assert!(
            high - low <= exact / 100_000_000 + 64,
            "{a}: [{low}, {high}]"
        );
    }
}

#[test]
fn ours_bracketed_alpha_is_the_exact_alpha() {
    let mut rng = StdRng::seed_from_u64(28);
    let curves = [
        LiquidAlpha {
            low: fixed(0.7),
            high: fixed(0.9),
            steepness: I32F32::from_num(1_000),
        },
        LiquidAlpha {
            low: fixed(0.9),
            high: fixed(0.1),
            steepness: I32F32::from_num(-1_000),
        },
        LiquidAlpha {
            low: I32F32::from_bits(1),
            high: I32F32::from_bits(3),
            steepness: I32F32::from_num(i16::MAX),
        },
        LiquidAlpha {
            low: fixed(0.),
            high: fixed(1.),
            steepness: I32F32::from_num(7),
        },
    ];
    let mut decided = 0usize;
    let mut tried = 0usize;
    for la in curves {
        let curve = AlphaCurve::new(la);
        let mut xs: Vec<i64> = (-3_000..3_000).collect();
        for _ in 0..100_000 {
            xs.push(rng.gen_range(-EXP_UNCHECKED_MAX_BITS..=EXP_UNCHECKED_MAX_BITS));
        }
        xs.extend([
            EXP_UNCHECKED_MAX_BITS,
            -EXP_UNCHECKED_MAX_BITS,
            1 << 32,
            -(1 << 32),
        ]);
        for x in xs {
            tried += 1;
            if let Some(alpha) = curve.bracketed(x) {
                decided += 1;
                let exact = curve.alpha_at_exp(exp_safe(I32F32::from_bits(x)).to_bits());
                assert_eq!(alpha, exact, "x = {x}, {la:?}");
            }
        }
    }
    // The bracket must decide most inputs, or it is no shortcut.
    assert!(decided * 10 > tried * 8, "decided {decided} of {tried}");
}
