//! One module per command group; each exposes a clap type and a `run` function.

pub(crate) mod bench;
pub(crate) mod bench_engine;
pub(crate) mod bench_verify;
pub(crate) mod bench_epistula;
pub(crate) mod bench_yuma;
pub(crate) mod chain;
pub(crate) mod compute;
pub(crate) mod engine;
pub(crate) mod hub;
pub(crate) mod inference;
pub(crate) mod localnet;
pub(crate) mod redteam;
pub(crate) mod wallet;

/// The multi-threaded async runtime every command runs on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// An integer flag as a TOML value for the config layering (`Overrides`); TOML integers are
/// i64, so larger values (only a `version_key` could be) are clamped.
pub(crate) fn toml_int<T: TryInto<i64>>(value: Option<T>) -> Option<i64> {
    value.map(|v| v.try_into().unwrap_or(i64::MAX))
}

/// Where a miner listens and what it publishes on chain (the originals' `--axon.*` flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct AxonArgs {
    /// Address to listen on (default 0.0.0.0).
    #[arg(long = "axon.ip", env = "GANGLION_AXON_IP")]
    pub(crate) axon_ip: Option<std::net::IpAddr>,
    /// Port to listen on (default 8091; 0 picks a free one).
    #[arg(long = "axon.port", env = "GANGLION_AXON_PORT")]
    pub(crate) axon_port: Option<u16>,
    /// Address published on chain (default: --axon.ip, or 127.0.0.1 when listening on all).
    #[arg(long = "axon.external_ip", alias = "axon.external-ip", env = "GANGLION_AXON_EXTERNAL_IP")]
    pub(crate) axon_external_ip: Option<std::net::IpAddr>,
    /// Port published on chain (default: the bound port).
    #[arg(long = "axon.external_port", alias = "axon.external-port")]
    pub(crate) axon_external_port: Option<u16>,
}

/// Black- and whitelists of callers (miners) or of the miners to query (validators), by
/// hotkey and by coldkey: comma-separated SS58 lists, the originals' flag names. A
/// whitelisted key still passes every other check (the original compute subnet let it skip
/// them).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct AccessListArgs {
    /// Hotkeys always refused (miner) or never queried (validator).
    #[arg(long = "blacklist.hotkeys", value_delimiter = ',')]
    pub(crate) blacklist_hotkeys: Option<Vec<String>>,
    /// Coldkeys whose hotkeys are refused / not queried.
    #[arg(long = "blacklist.coldkeys", value_delimiter = ',')]
    pub(crate) blacklist_coldkeys: Option<Vec<String>>,
    /// If given, only these hotkeys (they still pass every other check).
    #[arg(long = "whitelist.hotkeys", value_delimiter = ',')]
    pub(crate) whitelist_hotkeys: Option<Vec<String>>,
    /// If given, only hotkeys of these coldkeys (they still pass every other check).
    #[arg(long = "whitelist.coldkeys", value_delimiter = ',')]
    pub(crate) whitelist_coldkeys: Option<Vec<String>>,
}

/// `ganglion miner …`: one subcommand per subnet kind.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MinerCommand {
    /// Inference miner: Epistula-protected OpenAI endpoints routed to upstream LLM servers.
    Inference(inference::MinerArgs),
    /// Compute miner: hardware specs, hash challenges and sandboxed allocations.
    Compute(compute::MinerArgs),
}

/// `ganglion validator …`: one subcommand per subnet kind.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ValidatorCommand {
    /// Inference validator: query, time, verify and score miners; set weights.
    Inference(inference::ValidatorArgs),
    /// Compute validator: challenges, specs, scoring and weights.
    Compute(compute::ValidatorArgs),
}
