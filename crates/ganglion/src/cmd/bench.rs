//! `ganglion bench …`: benchmarks that print ratios measured side by side in one run.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Epistula signing, verification and middleware latency.
    Epistula(super::bench_epistula::EpistulaBenchArgs),
    /// LLM engine: prompt processing, generation and scoring throughput, peak RSS.
    Engine(super::bench_engine::EngineBenchArgs),
}

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Engine(args) => super::bench_engine::run(args),
        BenchCommand::Epistula(args) => super::bench_epistula::run(args),
    }
}
