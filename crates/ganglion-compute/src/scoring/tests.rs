use super::*;

fn input(success_rate: f64, difficulty: f64, elapsed: f64, fail_percent: f64, allocated: bool) -> ScoreInput {
    ScoreInput {
        success_rate,
        any_success: true,
        difficulty_avg: difficulty,
        mean_elapsed_s: elapsed,
        fail_rate: fail_percent / 100.0,
        allocated,
        has_sandbox: true,
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn readme_examples() {
    let a = ScoringConfig::default();
    let b = ScoringConfig { version: ScoringVersion::B, min_difficulty: 7, ..ScoringConfig::default() };
    // Example 1: allocated, 95 %, difficulty 7, 4.6 s, 2.6 % failures (README: 264.6).
    let ex1 = input(95.0, 7.0, 4.6, 2.6, true);
    // Example 2: not allocated, 92 %, difficulty 9, 16 s, 3.1 % failures (README: 193.7).
    let ex2 = input(92.0, 9.0, 16.0, 3.1, false);

    let a1 = score(&a, &ex1);
    assert!(close(a1.total, 256.67, 0.01), "A example 1: {}", a1.total);
    assert!(close(a1.difficulty, 16.67, 0.01) && close(a1.allocation, 6.67, 0.01));
    assert!(close(a1.normalised, 256.67 / 290.0, 1e-4));
    let a2 = score(&a, &ex2);
    assert!(close(a2.total, 153.39, 0.01), "A example 2: {}", a2.total);
    assert!(close(a2.difficulty, 50.0, 1e-9) && close(a2.time, 46.67, 0.01) && close(a2.penalty, 0.273, 0.001));

    let b1 = score(&b, &ex1);
    assert!(close(b1.total, 193.95, 0.01), "B example 1: {}", b1.total);
    let b2 = score(&b, &ex2);
    assert!(close(b2.total, 180.78, 0.01), "B example 2: {}", b2.total);
    assert!(close(b2.normalised, 180.78 / 251.0, 1e-4));
    // B halves the unallocated score without a sandbox (the original: without docker).
    let no_sandbox = score(&b, &ScoreInput { has_sandbox: false, ..ex2 });
    assert!(close(no_sandbox.total, b2.total / 2.0, 1e-9));
    // A does not look at the sandbox.
    assert!(close(score(&a, &ScoreInput { has_sandbox: false, ..ex2 }).total, a2.total, 1e-12));
}

#[test]
fn zero_rules_and_bounds() {
    let a = ScoringConfig::default();
    let b = ScoringConfig { version: ScoringVersion::B, weights: Some(Weights::B), ..ScoringConfig::default() };
    let no_success = ScoreInput { any_success: false, ..input(0.0, 0.0, 0.0, 100.0, false) };
    assert_eq!(score(&a, &no_success).total, 0.0);
    assert_eq!(score(&b, &no_success).total, 0.0);
    // A: 10 failures in the last 20 zero the score; 9 do not.
    assert_eq!(score(&a, &input(60.0, 8.0, 5.0, 50.0, false)).total, 0.0);
    assert!(score(&a, &input(60.0, 8.0, 5.0, 45.0, false)).total > 0.0);
    // B: 19 failures zero it; 18 do not.
    assert_eq!(score(&b, &input(10.0, 8.0, 5.0, 95.0, false)).total, 0.0);
    assert!(score(&b, &input(10.0, 8.0, 5.0, 90.0, false)).total > 0.0);
    // Allocated miners are not zeroed by failures (they are not challenged).
    assert!(score(&a, &ScoreInput { any_success: false, ..input(0.0, 0.0, 0.0, 0.0, true) }).total > 0.0);
    // A perfect unallocated miner at the top difficulty with no time used scores 250 (A).
    let perfect = score(&a, &input(100.0, 12.0, 0.0, 0.0, false));
    assert!(close(perfect.total, 250.0, 1e-9) && close(perfect.normalised, 250.0 / 290.0, 1e-9));
    // Faster is better, harder is better.
    let slow = score(&a, &input(100.0, 9.0, 20.0, 0.0, false)).total;
    let fast = score(&a, &input(100.0, 9.0, 2.0, 0.0, false)).total;
    let hard = score(&a, &input(100.0, 10.0, 2.0, 0.0, false)).total;
    assert!(fast > slow && hard > fast);
    assert_eq!(time_score(45.0, 30.0), 0.0);
    assert_eq!(time_score(0.0, 30.0), 100.0);
    // A configured range moves dm with it (localnet uses small difficulties).
    let small = ScoringConfig { min_difficulty: 3, max_difficulty: 6, ..ScoringConfig::default() };
    assert!(close(score(&small, &input(100.0, 4.5, 1.0, 0.0, false)).difficulty, 50.0, 1e-9));
    assert!(Weights { time: -1.0, ..Weights::A }.validate().is_err());
    assert!(Weights { success: 0.0, difficulty: 0.0, time: 0.0, allocation: 0.0, failure: 1.0 }.validate().is_err());
    assert!(Weights::B.validate().is_ok());
}

#[test]
fn weights_skip_validators_keep_one_uid_per_ip_and_normalise() {
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    let scores = vec![
        UidScore { uid: 0, score: 0.9, ip: ip("10.0.0.1"), is_validator: true },
        UidScore { uid: 1, score: 0.6, ip: ip("10.0.0.2"), is_validator: false },
        UidScore { uid: 2, score: 0.2, ip: ip("10.0.0.2"), is_validator: false },
        UidScore { uid: 3, score: 0.2, ip: ip("10.0.0.3"), is_validator: false },
        UidScore { uid: 4, score: -5.0, ip: ip("10.0.0.4"), is_validator: false },
        UidScore { uid: 5, score: f64::NAN, ip: None, is_validator: false },
        UidScore { uid: 6, score: 0.2, ip: None, is_validator: false },
    ];
    let w: HashMap<u16, f64> = weights(&scores, true).into_iter().collect();
    assert_eq!(w.len(), 7);
    assert_eq!(w[&0], 0.0, "validators score zero");
    assert_eq!(w[&2], 0.0, "the weaker uid of a shared IP gets nothing");
    assert_eq!((w[&4], w[&5]), (0.0, 0.0));
    assert!(close(w[&1], 0.6, 1e-12) && close(w[&3], 0.2, 1e-12) && close(w[&6], 0.2, 1e-12));
    assert!(close(w.values().sum::<f64>(), 1.0, 1e-12));
    // Without the IP rule both uids of 10.0.0.2 count.
    let w: HashMap<u16, f64> = weights(&scores, false).into_iter().collect();
    assert!(close(w[&2], 0.2 / 1.2, 1e-12));
    // Ties on one IP go to the lower uid; all-zero stays all-zero.
    let tie = vec![
        UidScore { uid: 8, score: 0.5, ip: ip("10.0.0.9"), is_validator: false },
        UidScore { uid: 7, score: 0.5, ip: ip("10.0.0.9"), is_validator: false },
    ];
    let w: HashMap<u16, f64> = weights(&tie, true).into_iter().collect();
    assert_eq!((w[&7], w[&8]), (1.0, 0.0));
    let zeros = vec![UidScore { uid: 1, score: 0.0, ip: None, is_validator: false }];
    assert_eq!(weights(&zeros, true), vec![(1, 0.0)]);
}
