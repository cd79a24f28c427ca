//! One module per command group; each exposes a clap type and a `run` function.

pub(crate) mod bench;
pub(crate) mod bench_engine;
pub(crate) mod bench_evaluation;
pub(crate) mod bench_verify;
pub(crate) mod bench_reward;
pub(crate) mod bench_epistula;
pub(crate) mod bench_load;
pub(crate) mod bench_yuma;
pub(crate) mod chain;
pub(crate) mod compute;
pub(crate) mod engine;
pub(crate) mod hub;
pub(crate) mod inference;
pub(crate) mod localnet;
pub(crate) mod model;
pub(crate) mod redteam;
pub(crate) mod reward;
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

/// `--tls.ca_file`: a private CA the node's HTTP clients trust besides the system's roots
/// (`[tls] ca_file` in the config file).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct TlsClientArgs {
    /// PEM file of CA certificates trusted for https:// upstreams and endpoints, besides the
    /// system's roots (a private CA).
    #[arg(long = "tls.ca_file", env = "GANGLION_TLS_CA_FILE", value_name = "FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

impl TlsClientArgs {
    /// Sets `tls.ca_file` when given.
    pub(crate) fn apply(&self, over: &mut ganglion_neuron::config::Overrides) {
        over.path("tls.ca_file", self.ca_file.as_ref().map(|p| ganglion_core::wallet::expand_home(p)).as_deref());
    }
}

/// `--tls.cert` and `--tls.key`: serve HTTPS instead of plain HTTP (`[tls] cert`, `key`).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct TlsServerArgs {
    /// PEM certificate chain (leaf first) to serve HTTPS with; needs --tls.key.
    #[arg(long = "tls.cert", env = "GANGLION_TLS_CERT", value_name = "FILE")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls.cert.
    #[arg(long = "tls.key", env = "GANGLION_TLS_KEY", value_name = "FILE")]
    pub(crate) key: Option<std::path::PathBuf>,
}

impl TlsServerArgs {
    /// Sets `tls.cert` and `tls.key` when given.
    pub(crate) fn apply(&self, over: &mut ganglion_neuron::config::Overrides) {
        let expand = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| ganglion_core::wallet::expand_home(p));
        over.path("tls.cert", expand(&self.cert).as_deref()).path("tls.key", expand(&self.key).as_deref());
    }
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
    /// Model-evaluation miner: publish a model directory on chain, serve its files.
    #[command(subcommand)]
    Model(model::MinerModelCommand),
}

/// `ganglion validator …`: one subcommand per subnet kind.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ValidatorCommand {
    /// Inference validator: query, time, verify and score miners; set weights.
    Inference(inference::ValidatorArgs),
    /// Compute validator: challenges, specs, scoring and weights.
    Compute(compute::ValidatorArgs),
    /// Reward-pipeline validator (openvalidators): prompt chains to the inference miners,
    /// reward functions and masks, moving-average scores, weights.
    Reward(reward::ValidatorArgs),
    /// Model-evaluation validator (finetuning/pretraining subnets): download committed
    /// models, measure their loss on fresh data, reward the best by win rate.
    Model(model::ValidatorArgs),
}
