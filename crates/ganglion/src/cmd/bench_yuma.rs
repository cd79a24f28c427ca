//! `ganglion bench yuma`: one Yuma Consensus epoch at 256, 1024 and 4096 uids with 64, 128
//! and 256 validators setting dense random (seeded) weights, for classic bonds and for Yuma3
//! with liquid alpha. Prints time per epoch, peak memory per size and growth relative to the
//! smallest case.
//!
//! Peak memory is per size only if each size runs in a fresh process (a process's high-water
//! mark never goes down), so the command re-runs itself once per case with the hidden
//! `--case` flag and reads the child's JSON line. The workload and timing live in
//! `ganglion_yuma::bench`; this file only orchestrates and prints.

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use ganglion_engine::bench::peak_rss_bytes;
use ganglion_yuma::bench::{self, BondsMode};
use serde::{Deserialize, Serialize};

/// `ganglion bench yuma` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct YumaBenchArgs {
    /// Timed epochs per case (after one warm-up epoch that fills the bonds).
    #[arg(long, default_value_t = 5)]
    iterations: u32,
    /// Seed of the synthetic subnets, so runs are comparable.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only this bonds mode (default: both).
    #[arg(long, value_parser = ["classic", "yuma3"])]
    mode: Option<String>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Internal: run one case `UIDS:VALIDATORS:MODE` in this process and print one JSON line.
    #[arg(long, hide = true)]
    case: Option<String>,
}

/// One measured case, as the child process reports it.
#[derive(Debug, Serialize, Deserialize)]
struct CaseReport {
    mode: String,
    uids: u16,
    validators: u16,
    weight_entries: usize,
    iterations: u32,
    min_ms: f64,
    mean_ms: f64,
    /// Process high-water mark before the subnet was built (binary, allocator, runtime).
    baseline_rss_bytes: u64,
    /// Process high-water mark after the timed epochs.
    peak_rss_bytes: u64,
}

impl CaseReport {
    /// Memory the case itself needed: inputs, bonds and the epoch's working set.
    fn case_bytes(&self) -> u64 {
        self.peak_rss_bytes.saturating_sub(self.baseline_rss_bytes)
    }
}

fn parse_mode(name: &str) -> anyhow::Result<BondsMode> {
    match name {
        "classic" => Ok(BondsMode::Classic),
        "yuma3" | "yuma3+liquid-alpha" => Ok(BondsMode::Yuma3LiquidAlpha),
        other => bail!("unknown bonds mode {other:?}: use classic or yuma3"),
    }
}

fn run_case(spec: &str, iterations: u32, seed: u64) -> anyhow::Result<CaseReport> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [uids, validators, mode] = parts[..] else {
        bail!("--case takes UIDS:VALIDATORS:MODE, got {spec:?}");
    };
    let uids: u16 = uids.parse().context("--case: UIDS is not a number")?;
    let validators: u16 = validators.parse().context("--case: VALIDATORS is not a number")?;
    let mode = parse_mode(mode)?;
    let baseline = peak_rss_bytes().unwrap_or(0);
    let r = bench::bench_case(uids, validators, mode, iterations, seed)?;
    Ok(CaseReport {
        mode: r.mode.name().to_owned(),
        uids: r.uids,
        validators: r.validators,
        weight_entries: r.weight_entries,
        iterations: r.iterations,
        min_ms: r.min.as_secs_f64() * 1e3,
        mean_ms: r.mean.as_secs_f64() * 1e3,
        baseline_rss_bytes: baseline,
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
    })
}

pub(crate) fn run(args: YumaBenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(spec) = &args.case {
        println!("{}", serde_json::to_string(&run_case(spec, args.iterations, args.seed)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let modes: Vec<&str> = match args.mode.as_deref() {
        Some(mode) => vec![mode],
        None => vec!["classic", "yuma3"],
    };
    let exe = std::env::current_exe().context("cannot find the ganglion executable to run cases in")?;
    let mut reports = Vec::new();
    // Drawn on stderr only when it is a terminal; hidden under --json.
    let progress = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new((modes.len() * bench::DEFAULT_CASES.len()) as u64)
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} cases  {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for mode in modes {
        for (uids, validators) in bench::DEFAULT_CASES {
            let spec = format!("{uids}:{validators}:{mode}");
            progress.set_message(format!("{mode}, {uids} uids × {validators} validators"));
            let out = Command::new(&exe)
                .args(["bench", "yuma", "--case", &spec])
                .args(["--iterations", &args.iterations.to_string(), "--seed", &args.seed.to_string()])
                .output()
                .with_context(|| format!("running case {spec}"))?;
            if !out.status.success() {
                bail!("case {spec} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            let line = String::from_utf8_lossy(&out.stdout);
            reports.push(serde_json::from_str::<CaseReport>(line.trim()).with_context(|| format!("case {spec} printed {line:?}"))?);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("One epoch, dense random weights, one core ({} timed epochs per case after a warm-up)", args.iterations);
    println!("{:<19} {:>5} {:>10} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8}", "mode", "uids", "validators", "weights", "min ms", "mean ms", "case MiB", "× time", "× mem");
    for r in &reports {
        let base = reports.iter().find(|b| b.mode == r.mode).unwrap_or(r);
        println!(
            "{:<19} {:>5} {:>10} {:>9} {:>9.3} {:>9.3} {:>10.1} {:>8.1} {:>8.1}",
            r.mode,
            r.uids,
            r.validators,
            r.weight_entries,
            r.min_ms,
            r.mean_ms,
            r.case_bytes() as f64 / (1024.0 * 1024.0),
            r.mean_ms / base.mean_ms.max(f64::MIN_POSITIVE),
            r.case_bytes() as f64 / (base.case_bytes().max(1) as f64),
        );
    }
    println!("Aim: 4096 uids × 256 validators under 50 ms per epoch on one core.");
    Ok(ExitCode::SUCCESS)
}
