//! `ganglion bench …`: benchmarks that print ratios measured side by side in one run.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Epistula signing, verification and middleware latency.
    Epistula,
}

pub(crate) fn run(_command: BenchCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("benchmarks are being written")
}
