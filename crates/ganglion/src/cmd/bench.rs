//! `ganglion bench …`: benchmarks that print ratios measured side by side in one run.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Epistula signing, verification and middleware latency.
    Epistula(super::bench_epistula::EpistulaBenchArgs),
    /// LLM engine: prompt processing, generation and scoring throughput, peak RSS.
    Engine(super::bench_engine::EngineBenchArgs),
    /// Yuma Consensus: one epoch at 256–4096 uids, time and peak memory per size.
    Yuma(super::bench_yuma::YumaBenchArgs),
    /// Inference subnet: miner proxy overhead and validator verification throughput.
    Inference(super::inference::BenchArgs),
    /// Inference miner under load: 1,000 concurrent signed streams through the real miner
    /// and straight to a fake upstream, side by side (loopback, bounded).
    Load(super::bench_load::LoadBenchArgs),
    /// Compute subnet: challenge solve times and hash rate against hashcat.
    Compute(super::compute::BenchArgs),
    /// Hub: page latency at 1 million records and ingest rate into SQLite and PostgreSQL.
    Hub(super::hub::BenchArgs),
    /// Verification: false-positive rate on an honest server (built-in engine or llama.cpp),
    /// or power on a dishonest one, over thousands of the validator's own requests.
    Verify(super::bench_verify::VerifyBenchArgs),
    /// Model evaluation: one validator step (8 models x 400 samples by default) timed against
    /// the original's 20-minute step, scored tokens/s beside llama.cpp's llama-perplexity.
    Evaluation(super::bench_evaluation::EvaluationBenchArgs),
    /// Reward validator: sentence-embedding throughput against PyTorch sentence-transformers
    /// (same texts, same threads), and one full forward's scoring time.
    Reward(super::bench_reward::RewardBenchArgs),
}

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Engine(args) => super::bench_engine::run(args),
        BenchCommand::Epistula(args) => super::bench_epistula::run(args),
        BenchCommand::Yuma(args) => super::bench_yuma::run(args),
        BenchCommand::Inference(args) => super::inference::run_bench(args),
        BenchCommand::Load(args) => super::bench_load::run(args),
        BenchCommand::Compute(args) => super::compute::run_bench(args),
        BenchCommand::Hub(args) => super::hub::run_bench(args),
        BenchCommand::Verify(args) => super::bench_verify::run(args),
        BenchCommand::Reward(args) => super::bench_reward::run(args),
        BenchCommand::Evaluation(args) => super::bench_evaluation::run(args),
    }
}

/// The `p`-th percentile (0–100) of `sorted`, by nearest rank; NaN when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// CPU time (user + system) this process has used, in seconds (Linux; 0 elsewhere).
pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state` (field 3);
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
