//! `ganglion miner compute`, `ganglion validator compute`, `ganglion compute …`,
//! `ganglion bench compute`. (Being built: see issue 6.)

use std::process::ExitCode;

/// `ganglion miner compute` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct MinerArgs {}

/// `ganglion validator compute` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidatorArgs {}

/// `ganglion bench compute` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {}

/// `ganglion compute …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ComputeCommand {
    /// List machines with their stored specs.
    List,
}

pub(crate) fn run_miner(_args: MinerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the compute miner is not built yet")
}

pub(crate) fn run_validator(_args: ValidatorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the compute validator is not built yet")
}

pub(crate) fn run(_command: ComputeCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("compute allocation is not built yet")
}

pub(crate) fn run_bench(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the compute benchmark is not built yet")
}
