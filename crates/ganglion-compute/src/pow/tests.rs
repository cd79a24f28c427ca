use std::collections::HashSet;
use std::process::Command;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

/// Vectors computed with Python's `hashlib.blake2b((password + salt).encode()).hexdigest()`.
const PYTHON_VECTORS: &[(&str, &str, &str)] = &[
    (
        "a:b$c:1",
        "0123456789abcdef",
        "a0fd498e4f7070ae9230beda30a0806bd80854df0b1f4d90389f04b729a89628e428e0a7b56ad06885643a39116913a4abffd79d7dc1f0bbbb0b4a0b4c5655d1",
    ),
    (
        "7",
        "ffffffffffffffff",
        "fa319458638075d481718b89ebf7921153bc9f7406f6f57ab6b3ccb088c8895e03b8b771e777a8053100534e6d6f9e09b8bde27e2bf955d9564910b96a511dfb",
    ),
    (
        "<>[]{};:,.<>",
        "a1b2c3d4e5f60718",
        "be21f64bb406b06815b471614c626af9cd7fd466d8f0ff6382a5bc7c2dc3e62e53361576d1446eea61a3671aa5dc6ffe572652102a8a399f4370fd727b0ec1bf",
    ),
];

#[test]
fn charset_is_the_originals_86_characters() {
    assert_eq!(CHARSET.chars().count(), 86);
    assert_eq!(CHARSET.chars().collect::<HashSet<_>>().len(), 86);
    assert!(CHARSET.is_ascii());
    assert!(CHARSET.starts_with("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"));
}

#[test]
fn hashing_matches_python_hashlib_vectors() {
    for (password, salt, expected) in PYTHON_VECTORS {
        assert_eq!(hash_hex(password, salt), *expected, "{password}");
    }
}

fn python() -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("python3").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| "python3".into())
}

#[test]
fn generated_challenges_verify_in_python_hashlib() {
    let Some(python) = python() else {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "python is required (GANGLION_REQUIRE_ALL=1)");
        eprintln!("skipped: no python interpreter to cross-check hashlib");
        return;
    };
    let mut rng = StdRng::seed_from_u64(42);
    let challenges: Vec<(ChallengeSpec, String)> = (1..=12).map(|d| generate(d, &mut rng)).collect();
    // Passwords and salts go in as JSON on stdin: nothing is interpolated into the program.
    let input = serde_json::to_string(&challenges.iter().map(|(c, p)| (p.clone(), c.salt.clone())).collect::<Vec<_>>())
        .unwrap_or_default();
    let program = "import hashlib, json, sys\nfor p, s in json.load(sys.stdin):\n    print('$BLAKE2$' + hashlib.blake2b((p + s).encode()).hexdigest())";
    let mut child = Command::new(&python)
        .args(["-c", program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("python: {e}"));
    assert!(output.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), challenges.len());
    for ((challenge, _), line) in challenges.iter().zip(lines) {
        assert_eq!(challenge.hash_field(), line);
    }
}

#[test]
fn generated_challenges_follow_the_original_shape() {
    let mut rng = StdRng::seed_from_u64(1);
    for difficulty in [1u8, 6, 7, 12, 0, 200] {
        let (spec, password) = generate(difficulty, &mut rng);
        let d = difficulty.clamp(MIN_DIFFICULTY, MAX_DIFFICULTY);
        assert_eq!(spec.difficulty, d);
        assert_eq!(password.len(), usize::from(d));
        assert_eq!(spec.chars.chars().count(), 10);
        assert_eq!(spec.chars.chars().collect::<HashSet<_>>().len(), 10, "distinct characters");
        assert!(spec.chars.chars().all(|c| CHARSET.contains(c)));
        assert!(password.chars().all(|c| spec.chars.contains(c)));
        assert_eq!(spec.salt.len(), 16);
        assert!(spec.salt.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(spec.hash_field().len(), HASH_PREFIX.len() + 128);
        assert_eq!(spec.mask(), "?1".repeat(usize::from(d)));
        assert_eq!(spec.keyspace(), 10u64.pow(u32::from(d)));
        assert!(spec.is_solved_by(&password));
        assert!(!spec.is_solved_by(&format!("{password}x")));
    }
    // Two draws differ (the generator is not stuck).
    assert_ne!(generate(7, &mut rng).0, generate(7, &mut rng).0);
}

fn outcomes(pattern: &[(bool, u8)]) -> Vec<Outcome> {
    pattern.iter().map(|&(success, difficulty)| Outcome::single(success, difficulty, 1.0)).collect()
}

#[test]
fn stats_use_the_window_and_the_last_twenty() {
    // Newest first: 3 failures among the newest 20, then 50 old successes at difficulty 6.
    let mut rows = vec![(true, 9); 17];
    rows.splice(2..2, [(false, 9), (false, 9), (false, 9)]);
    rows.extend(std::iter::repeat_n((true, 6), 50));
    let stats = ChallengeStats::from_outcomes(&outcomes(&rows));
    assert_eq!(stats.attempts, 60, "only the newest 60 count");
    assert_eq!(stats.successes, 57);
    assert_eq!(stats.last20_failed, 3);
    // The newest 20 successes: 17 at 9 and 3 at 6.
    assert!((stats.last20_difficulty_avg - (17.0 * 9.0 + 3.0 * 6.0) / 20.0).abs() < 1e-9);
    assert_eq!(ChallengeStats::from_outcomes(&[]), ChallengeStats::default());
}

#[test]
fn difficulty_adapts_like_version_b_and_a() {
    let stats = |successes: u32, failed: u32, avg: f64| ChallengeStats {
        attempts: successes + failed,
        successes,
        mean_success_elapsed_s: 1.0,
        last20_failed: failed,
        last20_difficulty_avg: avg,
        ..ChallengeStats::default()
    };
    // B: new miners start at the minimum and stay until they have more than 4 successes.
    assert_eq!(next_difficulty(&ChallengeStats::default(), AdaptRule::B, 6, 12), 6);
    assert_eq!(next_difficulty(&stats(4, 0, 6.0), AdaptRule::B, 6, 12), 6);
    assert_eq!(next_difficulty(&stats(5, 1, 6.2), AdaptRule::B, 6, 12), 9, "ceil(6.2) + 2 at 5 % failures");
    assert_eq!(next_difficulty(&stats(30, 3, 8.0), AdaptRule::B, 6, 12), 9, "15 % failures: +1");
    assert_eq!(next_difficulty(&stats(30, 5, 8.0), AdaptRule::B, 6, 12), 8, "25 % failures: unchanged");
    assert_eq!(next_difficulty(&stats(30, 6, 8.0), AdaptRule::B, 6, 12), 7, "30 % failures: -1");
    assert_eq!(next_difficulty(&stats(30, 0, 12.0), AdaptRule::B, 6, 12), 12, "clamped to the maximum");
    assert_eq!(next_difficulty(&stats(30, 19, 6.0), AdaptRule::B, 6, 12), 6, "clamped to the minimum");
    // A: needs 20 successes; at most 1 failure +1, more than 2 failures -1.
    assert_eq!(next_difficulty(&stats(19, 0, 7.0), AdaptRule::A, 6, 12), 7);
    assert_eq!(next_difficulty(&stats(20, 1, 7.0), AdaptRule::A, 6, 12), 8);
    assert_eq!(next_difficulty(&stats(20, 2, 7.0), AdaptRule::A, 6, 12), 7);
    assert_eq!(next_difficulty(&stats(20, 3, 7.0), AdaptRule::A, 6, 12), 6);
    // A swapped range is read as [min, max] anyway.
    assert_eq!(next_difficulty(&ChallengeStats::default(), AdaptRule::B, 9, 4), 4);
}

#[test]
fn the_work_rule_keeps_the_keyspace_above_the_capacity() {
    let o = |success: bool, difficulty: u8| Outcome::single(success, difficulty, 1.0);
    let next = |newest_first: &[Outcome]| next_difficulty(&ChallengeStats::from_outcomes(newest_first), AdaptRule::Work, 3, 8);
    assert_eq!(next(&[]), 3, "new miners start at the minimum");
    assert_eq!(next(&[o(true, 3), o(true, 3), o(true, 3)]), 3, "three are not enough to move");
    assert_eq!(next(&[o(true, 3); 4]), 4, "all of four solved: up");
    // At 5, solved 3 of 5 (a keyspace above the capacity): stay.
    assert_eq!(next(&[o(true, 5), o(false, 5), o(true, 5), o(false, 5), o(true, 5), o(true, 4), o(true, 4)]), 5);
    // 1 of 6 solved still pays the full work in expectation: stay; none of 6: down.
    assert_eq!(next(&[o(false, 6), o(false, 6), o(true, 6), o(false, 6), o(false, 6), o(false, 6)]), 6);
    assert_eq!(next(&[o(false, 6); 6]), 5);
    assert_eq!(next(&[o(true, 8); 10]), 8, "clamped");
    let fast = ChallengeStats { newest_solved_fast: true, ..ChallengeStats::from_outcomes(&[o(true, 4)]) };
    assert_eq!(next_difficulty(&fast, AdaptRule::Work, 3, 8), 5, "solved in a quarter of the timeout: up at once");
    // Many solves in a round climb several levels at once: 200 solves are ~100 keyspaces.
    let many = |solved: u32| ChallengeStats::from_outcomes(&[Outcome { success: true, difficulty: 4, elapsed_s: 0.5, solved, work: f64::from(solved) * 1e4 }]);
    assert_eq!(next_difficulty(&many(19), AdaptRule::Work, 3, 12), 4, "fewer than ~10 keyspaces: the usual rule");
    assert_eq!(next_difficulty(&many(20), AdaptRule::Work, 3, 12), 5);
    assert_eq!(next_difficulty(&many(200), AdaptRule::Work, 3, 12), 6);
    assert_eq!(next_difficulty(&ChallengeStats { newest_capped: true, ..many(64) }, AdaptRule::Work, 3, 12), 6, "cut at the cap: one more");
    assert_eq!(next_difficulty(&ChallengeStats { newest_capped: true, ..many(8) }, AdaptRule::Work, 3, 12), 5, "a small cap still climbs");
    assert_eq!(next_difficulty(&ChallengeStats { newest_capped: true, ..many(64) }, AdaptRule::Work, 3, 5), 5, "clamped");
    assert_eq!(AdaptRule::default(), AdaptRule::Work);
}

#[test]
fn a_round_counts_once_for_quality_and_every_solve_for_work() {
    let round = Outcome::of_round(&[(false, 6, 3.0), (true, 6, 2.5), (true, 6, 0.4), (false, 6, 3.1)]);
    assert_eq!(round, Some(Outcome { success: true, difficulty: 6, elapsed_s: 0.4, solved: 2, work: 2e6 }), "the first solve's time");
    let failed = Outcome::of_round(&[(false, 5, 3.0), (false, 5, 3.2)]);
    assert_eq!(failed, Some(Outcome { success: false, difficulty: 5, elapsed_s: 3.2, solved: 0, work: 0.0 }), "the longest wait");
    assert_eq!(Outcome::of_round(&[]), None);
    // A round whose replacements climbed: every solve counts at its own difficulty.
    let climbed = Outcome::of_round(&[(true, 6, 0.1), (true, 6, 0.2), (true, 7, 1.0), (false, 7, 3.0)]).unwrap_or_else(|| unreachable!());
    assert_eq!((climbed.difficulty, climbed.solved, climbed.work()), (7, 3, 1.2e7));
    let old_state = Outcome { work: 0.0, ..climbed };
    assert_eq!(old_state.work(), 3e7, "states saved before `work` existed: solved · 10^d");
    assert_eq!(Outcome::of_round(&[(true, 4, 1.0)]), Some(Outcome::single(true, 4, 1.0)));
    // The statistics see rounds: one solved of four is a successful attempt.
    let stats = ChallengeStats::from_outcomes(&[round.unwrap_or_else(|| unreachable!()), failed.unwrap_or_else(|| unreachable!())]);
    assert_eq!((stats.attempts, stats.successes, stats.last20_failed), (2, 1, 1));
}
