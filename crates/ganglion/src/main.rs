//! The `ganglion` binary: command-line parsing and glue only.
//!
//! Every command lives in `cmd/<area>.rs` and calls into the library crates;
//! `main` sets up logging and turns errors into a message and an exit code.

mod cmd;

use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};

/// Ganglion: run Bittensor-style subnets (wallets, a local chain, miners, validators).
#[derive(Debug, Parser)]
#[command(name = "ganglion", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `ganglion=trace` (env: RUST_LOG); wins over
    /// --logging.debug and --logging.trace. Default: info.
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,

    #[command(flatten)]
    logging: LoggingArgs,

    #[command(subcommand)]
    command: Command,
}

/// btcli's logging flags (`--logging.debug`, `--logging.trace`), and JSON lines for log
/// collectors. Logs always go to stderr; data (`--json`) to stdout.
#[derive(Debug, clap::Args)]
struct LoggingArgs {
    /// Debug logs from Ganglion (unless --log or RUST_LOG says otherwise).
    #[arg(id = "logging.debug", long = "logging.debug", global = true, env = "GANGLION_LOGGING_DEBUG", value_parser = BoolishValueParser::new())]
    debug: bool,
    /// Trace logs from Ganglion: very verbose (unless --log or RUST_LOG says otherwise).
    #[arg(id = "logging.trace", long = "logging.trace", global = true, env = "GANGLION_LOGGING_TRACE", value_parser = BoolishValueParser::new())]
    trace: bool,
    /// Log one JSON object per line on stderr (timestamp, level, target, fields).
    #[arg(id = "logging.json", long = "logging.json", global = true, env = "GANGLION_LOGGING_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
}

impl LoggingArgs {
    /// The filter: `--log`/`RUST_LOG` if given, else our own targets at debug or trace on
    /// top of `info` for everything else.
    fn filter(&self, explicit: Option<&str>) -> String {
        if let Some(filter) = explicit.filter(|f| !f.trim().is_empty()) {
            return filter.to_string();
        }
        let level = if self.trace {
            "trace"
        } else if self.debug {
            "debug"
        } else {
            return "info".to_string();
        };
        // Every target our crates log under: module paths (`ganglion_*`) and the explicit
        // `target:`s (`ganglion::…`, `compute::…`, `protocol::…`, `localnet`).
        OUR_TARGETS.iter().fold("info".to_string(), |acc, target| format!("{acc},{target}={level}"))
    }
}

/// Prefixes of the tracing targets our crates use (an EnvFilter target matches by prefix).
const OUR_TARGETS: &[&str] = &["ganglion", "compute", "protocol", "localnet"];

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, import and inspect Bittensor-compatible wallets (coldkeys and hotkeys).
    #[command(subcommand)]
    Wallet(cmd::wallet::WalletCommand),
    /// Measure performance: prints a table (or `--json`).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Fetch and list local LLM weights (`model pull smollm2`, `model pull hf:OWNER/REPO`, `model list`).
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
    /// Run a miner (`miner inference`, `miner compute`, `miner model publish|serve`).
    #[command(subcommand)]
    Miner(cmd::MinerCommand),
    /// Run a validator (`validator inference`, `validator compute`, `validator reward`, `validator model`).
    #[command(subcommand)]
    Validator(cmd::ValidatorCommand),
    /// Rent compute: allocate, deallocate, status and list of compute-subnet machines.
    #[command(subcommand)]
    Compute(cmd::compute::ComputeCommand),
    /// Serve the hub: web dashboard and JSON API over the records store.
    Hub(cmd::hub::HubArgs),
    /// Export what validators recorded (`export events`: the reward validator's step events).
    #[command(subcommand)]
    Export(cmd::reward::ExportCommand),
    /// Run a whole subnet on this machine: chain, validators, miners and the hub.
    Localnet(cmd::localnet::LocalnetArgs),
    /// Run the red team (dishonest miners) against the real validators and print what each
    /// strategy earns: starts the separate `ganglion-redteam` executable (`ganglion redteam --help`).
    Redteam(cmd::redteam::RedteamArgs),
}

fn main() -> ExitCode {
    // rustls's crypto provider (ring) for every HTTP client and TLS server of the process.
    ganglion_tls::install_crypto_provider();
    let cli = Cli::parse();
    init_logging(&cli.logging.filter(cli.log.as_deref()), cli.logging.json);
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
        Command::Validator(cmd::ValidatorCommand::Reward(args)) => cmd::reward::run_validator(args),
        Command::Validator(cmd::ValidatorCommand::Model(args)) => cmd::model::run_validator(args),
        Command::Miner(cmd::MinerCommand::Model(cmd::model::MinerModelCommand::Publish(args))) => cmd::model::run_publish(args),
        Command::Miner(cmd::MinerCommand::Model(cmd::model::MinerModelCommand::Serve(args))) => cmd::model::run_serve(args),
        Command::Miner(cmd::MinerCommand::Model(cmd::model::MinerModelCommand::Train(args))) => cmd::model::run_train(args),
        Command::Export(command) => cmd::reward::run_export(command),
        Command::Compute(command) => cmd::compute::run(command),
        Command::Hub(args) => cmd::hub::run(args),
        Command::Localnet(args) => cmd::localnet::run(args),
        Command::Redteam(args) => cmd::redteam::run(args),
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr so that `--json` output on stdout stays machine-readable.
    // Colours only on a terminal: journald, log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json {
        // One object per line: {"timestamp", "level", "fields": {"message", …}, "target", "span"?}.
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logging(debug: bool, trace: bool) -> LoggingArgs {
        LoggingArgs { debug, trace, json: false }
    }

    #[test]
    fn logging_filter() {
        assert_eq!(logging(false, false).filter(None), "info");
        assert_eq!(logging(true, false).filter(None), "info,ganglion=debug,compute=debug,protocol=debug,localnet=debug");
        assert_eq!(logging(true, true).filter(None), "info,ganglion=trace,compute=trace,protocol=trace,localnet=trace");
        assert_eq!(logging(true, true).filter(Some("warn")), "warn", "--log / RUST_LOG wins");
        assert_eq!(logging(true, false).filter(Some(" ")), "info,ganglion=debug,compute=debug,protocol=debug,localnet=debug");
        for filter in [logging(true, false).filter(None), logging(false, true).filter(None)] {
            assert!(tracing_subscriber::EnvFilter::try_new(&filter).is_ok(), "{filter}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        // Catches clashes between the global logging flags and any subcommand's own.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn logging_flags_parse_everywhere() {
        let cli = Cli::try_parse_from(["ganglion", "wallet", "list", "--logging.json", "--logging.debug"]).expect("parses");
        assert!(cli.logging.json && cli.logging.debug && !cli.logging.trace);
        let cli = Cli::try_parse_from(["ganglion", "--logging.trace", "model", "list"]).expect("parses");
        assert!(cli.logging.trace);
    }
}
