//! `process_weights_for_netuid` and `process_and_convert` against the real Bittensor SDK
//! (`bittensor==10.5.0` with `numpy==2.4.6`, from `scripts/requirements-interop.txt`).
//!
//! Several hundred seeded random cases (n from 1 to 300, dense and sparse weights with zeros,
//! ties, extreme and subnormal values, negatives, NaN, +inf, mismatched lengths, uids >= n,
//! `min_allowed_weights` 0..n+5, `MaxWeightsLimit` over 0..=65535 with many small values,
//! exclude quantile 0 or random) plus hand-picked edges go to one Python process running
//! `tests/sdk_weights.py`, a thin caller of the SDK. Every case must agree: the processed
//! (uids, weights) bit for bit, the u16 (uids, values) for the chain, and where the SDK raises,
//! the same exception class (`IndexError` / `ValueError`) from our typed errors.
//!
//! Python: `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python` (`scripts/setup-venv`). Without
//! it the test is skipped, unless `GANGLION_REQUIRE_ALL=1`.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::PathBuf;

use ganglion_yuma::weights::{WeightsError, process_and_convert, process_weights_for_netuid};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[path = "../../../../tests/support/python.rs"]
mod support;

fn python() -> Option<PathBuf> {
    support::find_python()
}

#[derive(Debug, Clone)]
struct Case {
    uids: Vec<u16>,
    weights: Vec<f32>,
    n: u16,
    min_allowed: u16,
    max_weight_limit: u16,
    exclude_quantile: u16,
}

/// One weight drawn from a style: plain, integer scores, a few tied levels, or extreme magnitudes.
fn weight(rng: &mut StdRng, style: u8, levels: &[f32]) -> f32 {
    match style {
        0 => rng.r#gen::<f32>(),
        1 => f32::from(rng.gen_range(0_u16..1000)),
        2 => levels[rng.gen_range(0..levels.len())],
        _ => match rng.gen_range(0..8) {
            0 => f32::MIN_POSITIVE * rng.r#gen::<f32>(), // subnormal
            1 => 1e-38 * rng.gen_range(1.0..10.0),
            2 => 3e38 * rng.r#gen::<f32>(),
            3 => 1e30 * rng.r#gen::<f32>(),
            4 => 1e-30 * rng.r#gen::<f32>(),
            5 => f32::from_bits(1), // smallest subnormal
            _ => rng.r#gen::<f32>(),
        },
    }
}

fn random_case(rng: &mut StdRng) -> Case {
    let n: u16 = rng.gen_range(1..=300);
    let len = match rng.gen_range(0..20) {
        0 => usize::from(n) + rng.gen_range(1..5), // more weights than neurons
        1 => usize::from(n).saturating_sub(rng.gen_range(1..5)), // fewer
        2 => rng.gen_range(0..=usize::from(n).min(5)), // a handful
        _ => usize::from(n),
    };
    let style: u8 = rng.gen_range(0..4);
    let levels: Vec<f32> = (0..rng.gen_range(1..4))
        .map(|_| rng.r#gen::<f32>())
        .collect();
    let density: f64 = match rng.gen_range(0..4) {
        0 => 1.0,
        1 => rng.gen_range(0.0..0.1), // sparse
        2 => 0.0,                     // all zeros
        _ => rng.r#gen(),
    };
    let mut weights: Vec<f32> = (0..len)
        .map(|_| {
            if rng.gen_bool(density) {
                weight(rng, style, &levels)
            } else {
                0.0
            }
        })
        .collect();
    // Occasionally values the SDK does not reject but filters or propagates.
    if !weights.is_empty() && rng.gen_ratio(1, 6) {
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..weights.len());
            weights[i] = match rng.gen_range(0..6) {
                0 => f32::NAN,
                1 => -rng.r#gen::<f32>(),
                2 => -0.0,
                3 => f32::NEG_INFINITY,
                4 => f32::INFINITY,
                _ => 0.0,
            };
        }
    }
    let mut uids: Vec<u16> = (0..len as u16).collect();
    match rng.gen_range(0..10) {
        0 => uids.shuffle(rng),
        1 => uids.iter_mut().for_each(|u| *u = rng.r#gen()), // uids >= n, duplicates
        2 if !uids.is_empty() => {
            uids.truncate(rng.gen_range(0..uids.len())); // shorter than weights
        }
        3 => uids.extend((0..rng.gen_range(1..4)).map(|_| rng.gen_range(0..n))), // longer
        _ => {}
    }
    let min_allowed = rng.gen_range(0..=n.saturating_add(5));
    let max_weight_limit = match rng.gen_range(0..6) {
        0 => u16::MAX,
        1 => 0,
        2 => rng.gen_range(1..200), // small: clipping everywhere
        3 => {
            // Around 65535 / len, where `len * limit <= 1` flips.
            let base = (65535 / len.max(1)) as i32;
            (base + rng.gen_range(-2..=2)).clamp(0, 65535) as u16
        }
        _ => rng.r#gen(),
    };
    let exclude_quantile = if rng.gen_bool(0.5) { 0 } else { rng.r#gen() };
    Case {
        uids,
        weights,
        n,
        min_allowed,
        max_weight_limit,
        exclude_quantile,
    }
}

fn edge_cases() -> Vec<Case> {
    let case = |uids: Vec<u16>, weights: Vec<f32>, n, min_allowed, max_weight_limit, q| Case {
        uids,
        weights,
        n,
        min_allowed,
        max_weight_limit,
        exclude_quantile: q,
    };
    let seq = |k: u16| (0..k).collect::<Vec<u16>>();
    let mut rng = StdRng::seed_from_u64(7);
    let big: Vec<f32> = (0..20_000).map(|_| rng.r#gen::<f32>()).collect();
    vec![
        case(vec![], vec![], 0, 0, 65535, 0), // n = 0: nothing to convert
        case(vec![], vec![], 5, 0, 65535, 0), // no weights: uniform over n
        case(seq(3), vec![0.0; 3], 3, 0, 6553, 0), // all zero
        case(seq(3), vec![1.0, 2.0, 3.0], 3, 5, 65535, 0), // n < min_allowed
        case(seq(4), vec![0.0, 5.0, 0.0, 0.0], 4, 2, 65535, 0), // padded with 1e-5
        case(seq(4), vec![0.0, 5.0, 0.0, 0.0], 4, 2, 20000, 0), // padded and clipped
        case(
            seq(10),
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            4,
            2,
            65535,
            0,
        ), // position >= n
        case(seq(2), vec![1.0, 1.0, 1.0], 3, 0, 65535, 0), // a weight without a uid
        case(seq(10), vec![1.0; 10], 10, 0, 6553, 0), // len * limit <= 1 in f64
        case(seq(10), vec![1.0; 10], 10, 0, 6554, 0),
        case(seq(5), vec![1.0, 2.0, 3.0, 4.0, 100.0], 5, 0, 16384, 0),
        case(seq(5), vec![1.0, 2.0, 3.0, 4.0, 5.0], 5, 1, 65535, 65535), // quantile capped
        case(seq(5), vec![1.0, 2.0, 3.0, 4.0, 5.0], 5, 0, 65535, 32768),
        case(seq(1), vec![f32::INFINITY], 1, 0, 65535, 0),
        case(seq(3), vec![1.0, f32::INFINITY, 2.0], 3, 0, 65535, 0),
        case(seq(3), vec![1.0, f32::INFINITY, 2.0], 3, 0, 30000, 40000),
        case(seq(3), vec![f32::NAN, -1.0, 2.0], 3, 0, 65535, 0),
        case(vec![7, 900, 65535], vec![0.5, 0.25, 0.25], 3, 0, 65535, 0), // uids >= n
        case(seq(20_000), big.clone(), 20_000, 0, 655, 1000), // sums above 8192 elements
        case(seq(20_000), big, 65_535, 100, 10, 0),
    ]
}

fn f32_bits_json(xs: &[f32]) -> String {
    let parts: Vec<String> = xs.iter().map(|x| x.to_bits().to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn to_json(cases: &[Case]) -> String {
    let mut s = String::from("[");
    for (i, c) in cases.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let uids: Vec<String> = c.uids.iter().map(u16::to_string).collect();
        write!(
            s,
            r#"{{"uids":[{}],"w":{},"n":{},"min":{},"mwl":{},"q":{}}}"#,
            uids.join(","),
            f32_bits_json(&c.weights),
            c.n,
            c.min_allowed,
            c.max_weight_limit,
            c.exclude_quantile
        )
        .unwrap();
    }
    s.push(']');
    s
}

fn parse_ints(s: &str) -> Vec<u16> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',').map(|x| x.parse().unwrap()).collect()
}

fn parse_f64_bits(s: &str) -> Vec<f64> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',')
        .map(|x| f64::from_bits(u64::from_str_radix(x, 16).unwrap()))
        .collect()
}

/// The Python exception the SDK raises where we return this error.
fn python_exception(e: &WeightsError) -> &'static str {
    match e {
        WeightsError::WeightVecNotEqualSize { .. }
        | WeightsError::UidsLengthExceedUidsInSubNet { .. } => "IndexError",
        _ => "ValueError",
    }
}

/// Equal bit for bit, except that any NaN equals any NaN (numpy and Rust may differ in sign).
fn same_floats(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits())
}

#[test]
fn process_weights_matches_the_bittensor_sdk() {
    let Some(python) = python() else {
        assert!(
            std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"),
            "the project venv (.venv) with bittensor is required"
        );
        println!("skipped: no .venv/bin/python with bittensor (run scripts/setup-venv)");
        return;
    };
    let mut rng = StdRng::seed_from_u64(0x5eed_b175);
    let mut cases = edge_cases();
    cases.extend((0..400).map(|_| random_case(&mut rng)));

    let dir = std::env::temp_dir().join(format!(
        "ganglion-sdk-weights-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("cases.json");
    let output_file = dir.join("sdk.txt");
    std::fs::write(&input, to_json(&cases)).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_weights.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&input)
        .arg(&output_file)
        .env_remove("USE_TORCH")
        .output()
        .unwrap();
    let sdk = std::fs::read_to_string(&output_file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the SDK script failed (run scripts/setup-venv for bittensor):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = sdk.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one SDK line per case");

    let (mut ok, mut process_errors, mut convert_errors) = (0, 0, 0);
    for (i, (case, line)) in cases.iter().zip(&lines).enumerate() {
        let processed = process_weights_for_netuid(
            &case.uids,
            &case.weights,
            case.n,
            case.min_allowed,
            case.max_weight_limit,
            case.exclude_quantile,
        );
        let emitted = process_and_convert(
            &case.uids,
            &case.weights,
            case.n,
            case.min_allowed,
            case.max_weight_limit,
            case.exclude_quantile,
        );
        let ctx = || {
            format!(
                "case {i}: n={} min={} mwl={} q={} uids={:?} weights={:?}\nSDK: {line}",
                case.n,
                case.min_allowed,
                case.max_weight_limit,
                case.exclude_quantile,
                case.uids,
                case.weights
            )
        };
        let fields: Vec<&str> = line.split('|').collect();
        match fields[0] {
            "process_error" => {
                process_errors += 1;
                let e = processed
                    .as_ref()
                    .err()
                    .unwrap_or_else(|| panic!("expected an error\n{}", ctx()));
                assert_eq!(python_exception(e), fields[1], "{}", ctx());
                assert_eq!(emitted.as_ref().err(), Some(e), "{}", ctx());
            }
            "convert_error" | "ok" => {
                let (u, w) = processed.unwrap_or_else(|e| panic!("unexpected {e}\n{}", ctx()));
                assert_eq!(u, parse_ints(fields[1]), "processed uids\n{}", ctx());
                let sdk_w = parse_f64_bits(fields[2]);
                assert!(
                    same_floats(&w, &sdk_w),
                    "processed weights\nours {w:?}\nSDK  {sdk_w:?}\n{}",
                    ctx()
                );
                if fields[0] == "ok" {
                    ok += 1;
                    let (eu, ev) = emitted.unwrap_or_else(|e| panic!("unexpected {e}\n{}", ctx()));
                    assert_eq!(eu, parse_ints(fields[3]), "emitted uids\n{}", ctx());
                    assert_eq!(ev, parse_ints(fields[4]), "emitted values\n{}", ctx());
                } else {
                    convert_errors += 1;
                    let e = emitted
                        .err()
                        .unwrap_or_else(|| panic!("expected a conversion error\n{}", ctx()));
                    assert_eq!(python_exception(&e), fields[3], "{}", ctx());
                }
            }
            other => panic!("unexpected SDK line {other:?}\n{}", ctx()),
        }
    }
    println!(
        "{} cases agree with the SDK: {ok} converted, {process_errors} refused while processing, \
         {convert_errors} refused while converting",
        cases.len()
    );
    assert!(
        ok > 300 && process_errors > 0 && convert_errors > 0,
        "the cases cover every outcome"
    );
}
