//! `ganglion-redteam`: dishonest miners and validators as processes, and the runner that
//! measures them against the real validators on a local chain. Never installed next to the
//! nodes operators run; `ganglion redteam` only starts this binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ganglion_redteam::{compute, inference, runner, validators};

/// The red team: run one dishonest strategy, or all of them against the real validators.
#[derive(Debug, Parser)]
#[command(name = "ganglion-redteam", version, about, long_about = None)]
struct Cli {
    /// Log filter (env: RUST_LOG). Default: info.
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A local chain, the real validators, honest miners and the chosen strategies for N
    /// epochs; prints what each strategy earned relative to an honest miner.
    Run(runner::RunArgs),
    /// One inference strategy as a miner process (hotkeys from wallets, axons on the chain).
    Inference(inference::InferenceArgs),
    /// One compute strategy as a miner process (false specs, fake allocation, one solver
    /// behind several hotkeys).
    Compute(compute::ComputeArgs),
    /// One dishonest validator (weight copier, lazy) as a process.
    Validator(validators::ValidatorArgs),
}

fn main() -> ExitCode {
    ganglion_tls::install_crypto_provider();
    let cli = Cli::parse();
    let filter = cli.log.clone().filter(|f| !f.trim().is_empty()).unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Run(args) => {
            let report = runtime.block_on(runner::run(&args))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
        }
        Command::Inference(args) => runtime.block_on(inference::run(args))?,
        Command::Compute(args) => runtime.block_on(compute::run(args))?,
        Command::Validator(args) => runtime.block_on(validators::run(args))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
