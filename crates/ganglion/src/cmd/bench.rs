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
    }
}
