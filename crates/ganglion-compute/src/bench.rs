//! `ganglion bench compute`: the original's challenge benchmark (difficulties × repetitions,
//! mean solve time; `test-scripts/benchmark.py`) with our solver and with hashcat, the raw
//! hash rate of both (ours over a fixed time on an unsolvable challenge; hashcat's
//! `-b -m 610`), and the end-to-end time to solve difficulty-7 challenges with each, in one
//! run on the same machine.
//!
//! "End to end" for hashcat is what the original miner did per challenge: start hashcat,
//! let it initialise OpenCL, load its (cached) kernel, autotune, attack, and read the answer.
//! For ours it is the miner's solve path: submitting the challenge to the running solver
//! pool until the password comes back.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};
use crate::hashcat::{self, HashcatConfig};
use crate::pow::{self, ChallengeSpec};
use crate::solver::{Kernel, Solver, SolverConfig};

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Challenge difficulties, one entry per run (see [`parse_difficulties`]).
    pub difficulties: Vec<u8>,
    /// Repetitions of the whole list.
    pub repetitions: u32,
    /// Our solver.
    pub solver: SolverConfig,
    /// hashcat (None: skip it).
    pub hashcat: Option<HashcatConfig>,
    /// Difficulty of the end-to-end comparison.
    pub e2e_difficulty: u8,
    /// Runs of the end-to-end comparison.
    pub e2e_runs: u32,
    /// Seconds of our raw hash-rate measurement.
    pub raw_seconds: f64,
    /// Budget per challenge (the original's 30 s).
    pub timeout_s: f64,
    /// Seed of the challenge generator (None: the OS CSPRNG), for comparable runs.
    pub seed: Option<u64>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            difficulties: vec![6, 7, 8],
            repetitions: 2,
            solver: SolverConfig::default(),
            hashcat: Some(HashcatConfig::default()),
            e2e_difficulty: 7,
            e2e_runs: 3,
            raw_seconds: 3.0,
            timeout_s: 30.0,
            seed: None,
        }
    }
}

/// The original benchmark's difficulty syntax: `6`, `7 8 9`, `10, 11, 12`, `6:7` (seven runs
/// at 6) or `all`; values outside 6–12 snap to the nearest end, as the original does.
pub fn parse_difficulties(text: &str) -> std::result::Result<Vec<u8>, String> {
    let (min, max) = pow::DEFAULT_DIFFICULTY_RANGE;
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok((min..=max).collect());
    }
    let mut out = Vec::new();
    for token in text.split([',', ' ']).map(str::trim).filter(|t| !t.is_empty()) {
        let (difficulty, count) = match token.split_once(':') {
            Some((d, n)) => (d, n.parse::<u32>().map_err(|_| format!("`{token}`: the count after `:` must be a number"))?),
            None => (token, 1),
        };
        let difficulty: i64 = difficulty.parse().map_err(|_| format!("`{token}` is not a difficulty (6–12, `d:count` or `all`)"))?;
        let difficulty = difficulty.clamp(i64::from(min), i64::from(max)) as u8;
        out.extend(std::iter::repeat_n(difficulty, count.clamp(1, 1000) as usize));
    }
    if out.is_empty() {
        return Err("no difficulties given".into());
    }
    Ok(out)
}

/// One difficulty of the challenge benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifficultyRow {
    /// Difficulty.
    pub difficulty: u8,
    /// Runs.
    pub runs: u32,
    /// Solved by our solver within the budget.
    pub ours_solved: u32,
    /// Mean seconds of our solved runs.
    pub ours_mean_s: Option<f64>,
    /// Solved by hashcat.
    pub hashcat_solved: Option<u32>,
    /// Mean seconds of hashcat's solved runs.
    pub hashcat_mean_s: Option<f64>,
}

/// Raw hash rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRates {
    /// Our solver, all configured threads, H/s.
    pub ours_hps: f64,
    /// Our solver, one thread, H/s.
    pub ours_one_thread_hps: f64,
    /// The portable kernel (blake2b_simd), all threads, H/s.
    pub portable_hps: f64,
    /// `hashcat -b -m 610`, H/s.
    pub hashcat_hps: Option<f64>,
    /// ours / hashcat.
    pub ratio: Option<f64>,
}

/// The end-to-end comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndToEnd {
    /// Difficulty.
    pub difficulty: u8,
    /// Runs.
    pub runs: u32,
    /// Our mean seconds.
    pub ours_mean_s: Option<f64>,
    /// hashcat's mean seconds.
    pub hashcat_mean_s: Option<f64>,
    /// hashcat / ours (how many times faster ours is).
    pub speedup: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// CPU model.
    pub cpu: String,
    /// Our kernel.
    pub kernel: String,
    /// Our threads.
    pub threads: usize,
    /// The challenge benchmark.
    pub challenges: Vec<DifficultyRow>,
    /// Raw rates.
    pub raw: RawRates,
    /// End to end at difficulty 7.
    pub end_to_end: EndToEnd,
    /// Why hashcat figures are missing, if they are.
    pub hashcat_note: Option<String>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Measures `solver`'s raw rate: an unsolvable challenge searched for `seconds`.
pub fn raw_rate(solver: &Solver, seconds: f64) -> Result<f64> {
    let (spec, _) = pow::generate(11, &mut rand::rngs::StdRng::seed_from_u64(0));
    // Nothing hashes to this target; the solver searches until the deadline.
    let spec = ChallengeSpec { hash_hex: "00".repeat(64), ..spec };
    let started = Instant::now();
    match solver.solve_blocking(&spec, Instant::now() + Duration::from_secs_f64(seconds.clamp(0.2, 120.0))) {
        Err(ComputeError::DeadlineExceeded { searched, .. }) => Ok(searched as f64 / started.elapsed().as_secs_f64()),
        Ok(_) => Err(ComputeError::Config("the raw-rate challenge was solved, which cannot happen".into())),
        Err(err) => Err(err),
    }
}

async fn solve_ours(solver: &std::sync::Arc<Solver>, spec: &ChallengeSpec, timeout: Duration) -> Option<f64> {
    let started = Instant::now();
    let outcome = solver.solve(spec, started + timeout).ok()?.await;
    outcome.ok().filter(|s| spec.is_solved_by(&s.password)).map(|_| started.elapsed().as_secs_f64())
}

async fn solve_hashcat(config: &HashcatConfig, spec: &ChallengeSpec, timeout: Duration) -> std::result::Result<f64, String> {
    let started = Instant::now();
    match hashcat::solve(config, spec, started + timeout).await {
        Ok(password) if spec.is_solved_by(&password) => Ok(started.elapsed().as_secs_f64()),
        Ok(_) => Err("wrong answer".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// Runs the benchmark; `progress` receives one line per step.
pub async fn run(config: &BenchConfig, progress: impl Fn(&str)) -> Result<BenchReport> {
    let solver = std::sync::Arc::new(Solver::new(&config.solver)?);
    let timeout = Duration::from_secs_f64(config.timeout_s.clamp(1.0, 600.0));
    let mut rng = match config.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_entropy(),
    };
    let mut hashcat = config.hashcat.clone();
    let mut hashcat_note = None;
    if let Some(h) = &hashcat {
        if hashcat::find_binary(&h.path).is_none() {
            hashcat_note = Some(format!("{} not found: hashcat figures skipped (scripts/install-hashcat installs it)", h.path.display()));
            hashcat = None;
        }
    } else {
        hashcat_note = Some("hashcat disabled (--no-hashcat)".into());
    }

    // 1. The challenge benchmark.
    let mut plan: Vec<u8> = Vec::new();
    for _ in 0..config.repetitions.max(1) {
        plan.extend(&config.difficulties);
    }
    let mut ours: std::collections::BTreeMap<u8, (u32, Vec<f64>)> = Default::default();
    let mut theirs: std::collections::BTreeMap<u8, Vec<f64>> = Default::default();
    for (i, &difficulty) in plan.iter().enumerate() {
        let (spec, _) = pow::generate(difficulty, &mut rng);
        let entry = ours.entry(difficulty).or_default();
        entry.0 += 1;
        let ours_s = solve_ours(&solver, &spec, timeout).await;
        if let Some(s) = ours_s {
            entry.1.push(s);
        }
        let mut line = format!("challenge {}/{} difficulty {difficulty}: ours {}", i + 1, plan.len(), fmt_opt(ours_s));
        if let Some(h) = &hashcat {
            match solve_hashcat(h, &spec, timeout).await {
                Ok(s) => {
                    theirs.entry(difficulty).or_default().push(s);
                    line.push_str(&format!(", hashcat {s:.3} s"));
                }
                Err(err) => {
                    theirs.entry(difficulty).or_default();
                    line.push_str(&format!(", hashcat failed: {err}"));
                }
            }
        }
        progress(&line);
    }
    let challenges = ours
        .iter()
        .map(|(&difficulty, (runs, times))| DifficultyRow {
            difficulty,
            runs: *runs,
            ours_solved: times.len() as u32,
            ours_mean_s: mean(times),
            hashcat_solved: hashcat.as_ref().map(|_| theirs.get(&difficulty).map_or(0, |t| t.len() as u32)),
            hashcat_mean_s: theirs.get(&difficulty).and_then(|t| mean(t)),
        })
        .collect();

    // 2. Raw hash rates.
    progress("raw hash rate: ours (all threads)");
    let seconds = config.raw_seconds;
    let ours_hps = {
        let solver = std::sync::Arc::clone(&solver);
        tokio::task::spawn_blocking(move || raw_rate(&solver, seconds)).await.map_err(|e| ComputeError::Config(e.to_string()))??
    };
    progress("raw hash rate: ours (one thread, portable kernel)");
    let one = SolverConfig { threads: 1, ..config.solver.clone() };
    let portable = SolverConfig { kernel: Kernel::Portable, ..config.solver.clone() };
    let (ours_one_thread_hps, portable_hps) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
        Ok((raw_rate(&Solver::new(&one)?, seconds)?, raw_rate(&Solver::new(&portable)?, seconds)?))
    })
    .await
    .map_err(|e| ComputeError::Config(e.to_string()))??;
    let mut hashcat_hps = None;
    if let Some(h) = &hashcat {
        progress("raw hash rate: hashcat -b -m 610 (the first run compiles kernels: about a minute)");
        match hashcat::benchmark(h, Duration::from_secs(600)).await {
            Ok(rate) => hashcat_hps = Some(rate),
            Err(err) => hashcat_note = Some(format!("hashcat benchmark failed: {err}")),
        }
    }
    let raw = RawRates { ours_hps, ours_one_thread_hps, portable_hps, hashcat_hps, ratio: hashcat_hps.map(|h| ours_hps / h) };

    // 3. End to end at difficulty 7.
    let mut ours_times = Vec::new();
    let mut hashcat_times = Vec::new();
    for run in 0..config.e2e_runs.max(1) {
        let (spec, _) = pow::generate(config.e2e_difficulty, &mut rng);
        let o = solve_ours(&solver, &spec, timeout).await;
        ours_times.extend(o);
        let mut line = format!("end to end {}/{} difficulty {}: ours {}", run + 1, config.e2e_runs.max(1), config.e2e_difficulty, fmt_opt(o));
        if let Some(h) = &hashcat {
            match solve_hashcat(h, &spec, timeout).await {
                Ok(s) => {
                    hashcat_times.push(s);
                    line.push_str(&format!(", hashcat {s:.3} s"));
                }
                Err(err) => line.push_str(&format!(", hashcat failed: {err}")),
            }
        }
        progress(&line);
    }
    let (ours_mean_s, hashcat_mean_s) = (mean(&ours_times), mean(&hashcat_times));
    let end_to_end = EndToEnd {
        difficulty: config.e2e_difficulty,
        runs: config.e2e_runs.max(1),
        ours_mean_s,
        hashcat_mean_s,
        speedup: match (ours_mean_s, hashcat_mean_s) {
            (Some(o), Some(h)) if o > 0.0 => Some(h / o),
            _ => None,
        },
    };
    let cpu = crate::specs::parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()).model;
    Ok(BenchReport {
        cpu,
        kernel: solver.kernel().name().to_string(),
        threads: solver.threads(),
        challenges,
        raw,
        end_to_end,
        hashcat_note,
    })
}

fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "not solved".to_string(), |s| format!("{s:.3} s"))
}

/// Hash rate in MH/s with one decimal.
pub fn mhs(rate: f64) -> String {
    format!("{:.1} MH/s", rate / 1e6)
}

/// The report as a table.
pub fn render(report: &BenchReport) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.3}"));
    let mut out = format!(
        "compute benchmark on {} ({} solver threads, {} kernel)\n\nchallenges (the original benchmark: mean seconds to solve)\n{:>10} {:>5} {:>12} {:>10} {:>14} {:>12}\n",
        report.cpu, report.threads, report.kernel, "difficulty", "runs", "ours solved", "ours s", "hashcat solved", "hashcat s"
    );
    for row in &report.challenges {
        out.push_str(&format!(
            "{:>10} {:>5} {:>12} {:>10} {:>14} {:>12}\n",
            row.difficulty,
            row.runs,
            row.ours_solved,
            opt(row.ours_mean_s),
            row.hashcat_solved.map_or_else(|| "-".into(), |n| n.to_string()),
            opt(row.hashcat_mean_s)
        ));
    }
    let raw = &report.raw;
    out.push_str("\nraw hash rate (mode 610)\n");
    let rows = [
        (format!("ours, {} threads", report.threads), mhs(raw.ours_hps)),
        ("ours, 1 thread".to_string(), mhs(raw.ours_one_thread_hps)),
        ("portable (blake2b_simd)".to_string(), mhs(raw.portable_hps)),
        ("hashcat -b -m 610".to_string(), raw.hashcat_hps.map_or_else(|| "-".into(), mhs)),
        ("ours / hashcat".to_string(), raw.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))),
    ];
    for (label, value) in rows {
        out.push_str(&format!("  {label:<24} {value:>12}\n"));
    }
    let e2e = &report.end_to_end;
    out.push_str(&format!(
        "\nend to end, difficulty {} ({} runs, mean)\n  ours     {}\n  hashcat  {}\n  ours is {} faster\n",
        e2e.difficulty,
        e2e.runs,
        e2e.ours_mean_s.map_or_else(|| "-".into(), |s| format!("{s:.3} s")),
        e2e.hashcat_mean_s.map_or_else(|| "-".into(), |s| format!("{s:.3} s")),
        e2e.speedup.map_or_else(|| "-".into(), |x| format!("{x:.1}×"))
    ));
    if let Some(note) = &report.hashcat_note {
        out.push_str(&format!("\nnote: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_syntax_of_the_original() {
        assert_eq!(parse_difficulties("6"), Ok(vec![6]));
        assert_eq!(parse_difficulties("7 8 9"), Ok(vec![7, 8, 9]));
        assert_eq!(parse_difficulties("10, 11, 12"), Ok(vec![10, 11, 12]));
        assert_eq!(parse_difficulties("6:3 7"), Ok(vec![6, 6, 6, 7]));
        assert_eq!(parse_difficulties("all"), Ok((6..=12).collect()));
        assert_eq!(parse_difficulties("2 40"), Ok(vec![6, 12]), "snapped to the range");
        assert!(parse_difficulties("x").is_err() && parse_difficulties("").is_err() && parse_difficulties("6:x").is_err());
    }

    #[test]
    fn raw_rate_and_a_tiny_report() {
        let solver = Solver::new(&SolverConfig { threads: 1, ..SolverConfig::default() }).unwrap_or_else(|e| panic!("{e}"));
        assert!(raw_rate(&solver, 0.2).unwrap_or(0.0) > 0.0);
        let config = BenchConfig {
            difficulties: vec![3],
            repetitions: 1,
            solver: SolverConfig { threads: 1, ..SolverConfig::default() },
            hashcat: None,
            e2e_difficulty: 3,
            e2e_runs: 1,
            raw_seconds: 0.2,
            timeout_s: 10.0,
            seed: Some(1),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let report = runtime.block_on(run(&config, |_| {})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.challenges.len(), 1);
        assert_eq!(report.challenges[0].ours_solved, 1);
        assert!(report.end_to_end.ours_mean_s.is_some() && report.end_to_end.hashcat_mean_s.is_none());
        assert!(report.hashcat_note.is_some());
        let table = render(&report);
        assert!(table.contains("raw hash rate") && table.contains("end to end, difficulty 3"));
    }
}
