//! `ganglion wallet …`: Bittensor-compatible wallet management (mirrors `btcli wallet`).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// List wallets.
    List,
}

pub(crate) fn run(_command: WalletCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("wallet commands are being written")
}
