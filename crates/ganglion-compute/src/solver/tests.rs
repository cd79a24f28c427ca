use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::pow::{self, ChallengeSpec};

fn solver(threads: usize, kernel: Kernel) -> Solver {
    match Solver::new(&SolverConfig { threads, kernel, max_hash_rate: None }) {
        Ok(s) => s,
        Err(e) => panic!("solver: {e}"),
    }
}

fn kernels() -> Vec<Kernel> {
    let mut k = vec![Kernel::Portable];
    if kernel::avx512_available() {
        k.push(Kernel::Avx512);
    }
    k
}

#[test]
fn finds_planted_passwords_at_several_difficulties() {
    let mut rng = StdRng::seed_from_u64(7);
    for kernel in kernels() {
        let solver = solver(2, kernel);
        for difficulty in [1u8, 2, 3, 4, 5, 6] {
            for _ in 0..3 {
                let (spec, password) = pow::generate(difficulty, &mut rng);
                let found = solver.solve_blocking(&spec, Instant::now() + Duration::from_secs(60));
                let found = found.unwrap_or_else(|e| panic!("{kernel:?} d={difficulty}: {e}"));
                assert_eq!(found.password, password, "{kernel:?} d={difficulty}");
                assert!(spec.is_solved_by(&found.password));
                assert!(found.searched > 0 && found.searched <= spec.keyspace());
            }
        }
    }
}

#[test]
fn a_late_small_challenge_is_not_queued_behind_a_big_one() {
    let solver = solver(2, Kernel::Auto);
    let mut rng = StdRng::seed_from_u64(11);
    // Difficulty 10 takes minutes on two cores; it must not block the small one.
    let (big, _) = pow::generate(10, &mut rng);
    let big = match solver.solve(&big, Instant::now() + Duration::from_secs(120)) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    std::thread::sleep(Duration::from_millis(50));
    let (small, password) = pow::generate(4, &mut rng);
    let found = solver.solve_blocking(&small, Instant::now() + Duration::from_secs(30));
    assert_eq!(found.ok().map(|s| s.password), Some(password));
    assert_eq!(solver.active_jobs(), 1, "the big job is still running");
    // Dropping the future cancels the big search; the pool goes idle.
    drop(big);
    let idle_by = Instant::now() + Duration::from_secs(10);
    while solver.active_jobs() > 0 && Instant::now() < idle_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(solver.active_jobs(), 0);
}

#[test]
fn deadline_and_exhaustion_are_reported() {
    let solver = solver(2, Kernel::Auto);
    let mut rng = StdRng::seed_from_u64(3);
    let (hard, _) = pow::generate(11, &mut rng);
    let started = Instant::now();
    match solver.solve_blocking(&hard, Instant::now() + Duration::from_millis(200)) {
        Err(ComputeError::DeadlineExceeded { searched, keyspace }) => {
            assert!(searched < keyspace);
            assert!(started.elapsed() < Duration::from_secs(20), "the solver must stop at the deadline");
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    // A hash that no candidate produces: the whole keyspace is searched, then reported.
    let (spec, _) = pow::generate(3, &mut rng);
    let unsolvable = ChallengeSpec { salt: "00000000000000ff".into(), ..spec };
    match solver.solve_blocking(&unsolvable, Instant::now() + Duration::from_secs(30)) {
        Err(ComputeError::Exhausted { keyspace }) => assert_eq!(keyspace, 1000),
        other => panic!("expected exhaustion, got {other:?}"),
    }
    // Bad layouts are refused before any work.
    let bad = ChallengeSpec { chars: "abc".into(), ..unsolvable };
    assert!(matches!(solver.solve(&bad, Instant::now()), Err(ComputeError::Invalid { .. })));
}

#[test]
fn rate_cap_holds_the_pool_back() {
    let config = SolverConfig { threads: 2, kernel: Kernel::Auto, max_hash_rate: Some(2_000_000) };
    let solver = Solver::new(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = StdRng::seed_from_u64(5);
    let (spec, _) = pow::generate(6, &mut rng);
    let unsolvable = ChallengeSpec { salt: "ffffffffffffff00".into(), ..spec };
    let started = Instant::now();
    let outcome = solver.solve_blocking(&unsolvable, Instant::now() + Duration::from_secs(30));
    assert!(matches!(outcome, Err(ComputeError::Exhausted { .. })));
    // 1 000 000 candidates at 2 MH/s with a 50 ms bucket take at least 0.45 s.
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    assert!(Solver::new(&SolverConfig { max_hash_rate: Some(0), ..SolverConfig::default() }).is_err());
}

/// Which of two jobs answers first: `true` for the first one.
fn first_to_answer(first: SolveFuture, second: SolveFuture) -> bool {
    matches!(futures::executor::block_on(futures::future::select(first, second)), futures::future::Either::Left(_))
}

#[test]
fn a_callers_jobs_run_one_after_another_and_callers_share_fairly() {
    let mut rng = StdRng::seed_from_u64(13);
    let deadline = || Instant::now() + Duration::from_secs(60);
    // A: 10^6 candidates that never match (16 blocks); B: 10^4 candidates (one block).
    let specs = |rng: &mut StdRng| {
        let (big, _) = pow::generate(6, rng);
        let (small, password) = pow::generate(4, rng);
        (ChallengeSpec { salt: "00000000000000ff".into(), ..big }, small, password)
    };
    let start = |result: Result<SolveFuture>| result.unwrap_or_else(|e| panic!("{e}"));

    // One caller: B waits until A is searched through.
    let solver = solver(1, Kernel::Portable);
    let caller = Solver::group_of(b"validator-1");
    let (a, b, password) = specs(&mut rng);
    let (fa, fb) = (start(solver.solve_in(caller, &a, deadline())), start(solver.solve_in(caller, &b, deadline())));
    assert!(first_to_answer(fa, fb), "the older job of a caller is searched first");
    let (fa, fb) = (start(solver.solve_in(caller, &a, deadline())), start(solver.solve_in(caller, &b, deadline())));
    assert!(matches!(futures::executor::block_on(fa), Err(ComputeError::Exhausted { .. })));
    assert_eq!(futures::executor::block_on(fb).ok().map(|s| s.password), Some(password.clone()));

    // Two callers (or jobs of their own): they take blocks in turn, so B answers first.
    let other = Solver::group_of(b"validator-2");
    assert_ne!(caller, other);
    let (fa, fb) = (start(solver.solve_in(caller, &a, deadline())), start(solver.solve_in(other, &b, deadline())));
    assert!(!first_to_answer(fa, fb), "another caller's job is not queued behind");
    let (fa, fb) = (start(solver.solve(&a, deadline())), start(solver.solve(&b, deadline())));
    assert!(!first_to_answer(fa, fb), "jobs of their own share the workers");
    assert_eq!(Solver::group_of(b"validator-1"), caller, "a caller's group is stable");
}

#[test]
fn a_job_waiting_behind_its_callers_older_one_ends_at_its_deadline() {
    let solver = solver(1, Kernel::Portable);
    let mut rng = StdRng::seed_from_u64(17);
    let caller = Solver::group_of(b"validator");
    let (big, _) = pow::generate(10, &mut rng);
    let (small, _) = pow::generate(4, &mut rng);
    let busy = solver.solve_in(caller, &big, Instant::now() + Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let waiting = solver.solve_in(caller, &small, Instant::now() + Duration::from_millis(200)).unwrap_or_else(|e| panic!("{e}"));
    match futures::executor::block_on(waiting) {
        Err(ComputeError::DeadlineExceeded { searched, .. }) => assert_eq!(searched, 0, "never started"),
        other => panic!("expected the deadline, got {other:?}"),
    }
    drop(busy);
}
