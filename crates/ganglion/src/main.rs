//! The `ganglion` binary: command-line parsing and glue only.
//!
//! Every command lives in `cmd/<area>.rs` and calls into the library crates;
//! `main` sets up logging and turns errors into a message and an exit code.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ganglion: run Bittensor-style subnets (wallets, a local chain, miners, validators).
#[derive(Debug, Parser)]
#[command(name = "ganglion", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `ganglion=trace` (env: RUST_LOG).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, import and inspect Bittensor-compatible wallets (coldkeys and hotkeys).
    #[command(subcommand)]
    Wallet(cmd::wallet::WalletCommand),
    /// Measure performance: prints a table (or `--json`).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Fetch and list local LLM weights (`model pull smollm2`, `model list`).
    #[command(subcommand)]
    Model(cmd::engine::ModelCommand),
    /// Run the LLM engine (`engine serve`: an OpenAI-compatible server).
    #[command(subcommand)]
    Engine(cmd::engine::EngineCommand),
    /// Run the local chain node (`chain serve`).
    #[command(subcommand)]
    Chain(cmd::chain::ChainCommand),
    /// Create, list and inspect subnets and their hyperparameters.
    #[command(subcommand)]
    Subnet(cmd::chain::SubnetCommand),
    /// Register, stake, unstake and serve a neuron.
    #[command(subcommand)]
    Neuron(cmd::chain::NeuronCommand),
    /// Set weights as a validator.
    #[command(subcommand)]
    Weights(cmd::chain::WeightsCommand),
    /// Show a subnet's metagraph as a table (like `btcli subnet metagraph`).
    Metagraph(cmd::chain::MetagraphArgs),
    /// Fund the wallet's coldkey from the local chain's dev faucet.
    Faucet(cmd::chain::FaucetArgs),
    /// Run a miner (`miner inference`, `miner compute`).
    #[command(subcommand)]
    Miner(cmd::MinerCommand),
    /// Run a validator (`validator inference`, `validator compute`).
    #[command(subcommand)]
    Validator(cmd::ValidatorCommand),
    /// Rent compute: allocate, deallocate, status and list of compute-subnet machines.
    #[command(subcommand)]
    Compute(cmd::compute::ComputeCommand),
    /// Serve the hub: web dashboard and JSON API over the records store.
    Hub(cmd::hub::HubArgs),
    /// Run a whole subnet on this machine: chain, validators, miners and the hub.
    Localnet(cmd::localnet::LocalnetArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Wallet(command) => cmd::wallet::run(command),
        Command::Bench(command) => cmd::bench::run(command),
        Command::Model(command) => cmd::engine::run_model(command),
        Command::Engine(command) => cmd::engine::run_engine(command),
        Command::Chain(command) => cmd::chain::run_chain(command),
        Command::Subnet(command) => cmd::chain::run_subnet(command),
        Command::Neuron(command) => cmd::chain::run_neuron(command),
        Command::Weights(command) => cmd::chain::run_weights(command),
        Command::Metagraph(args) => cmd::chain::run_metagraph(args),
        Command::Faucet(args) => cmd::chain::run_faucet(args),
        Command::Miner(cmd::MinerCommand::Inference(args)) => cmd::inference::run_miner(args),
        Command::Miner(cmd::MinerCommand::Compute(args)) => cmd::compute::run_miner(args),
        Command::Validator(cmd::ValidatorCommand::Inference(args)) => cmd::inference::run_validator(args),
        Command::Validator(cmd::ValidatorCommand::Compute(args)) => cmd::compute::run_validator(args),
        Command::Compute(command) => cmd::compute::run(command),
        Command::Hub(args) => cmd::hub::run(args),
        Command::Localnet(args) => cmd::localnet::run(args),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr so that `--json` output on stdout stays machine-readable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
