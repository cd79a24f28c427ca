//! Chain commands: `chain serve`, `subnet …`, `neuron …`, `weights set`, `metagraph`,
//! `faucet`. Each builds its own tokio runtime and talks to the chain only through
//! `ganglion_chain::Chain` (a `LocalChain` over HTTP), except `chain serve`, which runs a node.
//!
//! Every command takes `--json`: one JSON document on stdout, logs on stderr.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cmd::runtime;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ganglion_chain::{Chain, HyperparamUpdate, LocalChain, Metagraph, RAO_PER_TAO, TxReceipt, resolve_network, u16_to_float};
use ganglion_chain_node::{ServeConfig, spawn_node};
use ganglion_core::keys::PublicKey;
use ganglion_neuron::config::Overrides;
use serde_json::json;

use crate::cmd::wallet::WalletArgs;

/// Chain selection and output format, shared by every client command.
#[derive(Debug, Clone, Args)]
pub(crate) struct NetArgs {
    /// Which chain, as btcli names them: `finney` (mainnet), `test` (testnet), `archive`, a
    /// subtensor node's `ws://…`/`wss://…` URL, or `local` (default: a `ganglion chain serve`
    /// node at `$GANGLION_CHAIN_URL` or http://127.0.0.1:9944) or such a node's http:// URL.
    #[arg(long = "subtensor.network", alias = "network", env = "GANGLION_SUBTENSOR_NETWORK")]
    pub(crate) network: Option<String>,
    /// An explicit endpoint (`ws://`, `wss://` or `http://`); wins over `--subtensor.network`.
    #[arg(long = "subtensor.chain_endpoint", env = "GANGLION_SUBTENSOR_CHAIN_ENDPOINT")]
    pub(crate) chain_endpoint: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

impl NetArgs {
    /// The chain these flags name (a subtensor node is connected on first use).
    pub(crate) fn chain(&self) -> anyhow::Result<Arc<dyn Chain>> {
        connect(self.chain_endpoint.as_deref().or(self.network.as_deref()))
    }
}

/// The [`Chain`] for a network name or URL: a subtensor node for btcli's names and
/// `ws://`/`wss://` URLs, the local ganglion node otherwise.
pub(crate) fn connect(network: Option<&str>) -> anyhow::Result<Arc<dyn Chain>> {
    let name = network.map(str::trim).unwrap_or("");
    #[cfg(feature = "subtensor")]
    {
        let url = ganglion_subtensor::network_endpoint(name)
            .map(str::to_string)
            .or_else(|| (name.starts_with("ws://") || name.starts_with("wss://")).then(|| name.to_string()));
        if let Some(url) = url {
            // `wss://` nodes with a private CA: the same CA file the HTTP clients trust.
            let tls = match std::env::var_os("GANGLION_TLS_CA_FILE").filter(|f| !f.is_empty()) {
                Some(file) => ganglion_tls::ClientTls::with_ca_file(std::path::Path::new(&file))?,
                None => ganglion_tls::ClientTls::system(),
            };
            return Ok(Arc::new(ganglion_subtensor::SubtensorChain::with_tls(&url, ganglion_subtensor::Timeouts::default(), tls)));
        }
    }
    #[cfg(not(feature = "subtensor"))]
    if name.starts_with("ws://") || name.starts_with("wss://") || ["finney", "test", "archive"].contains(&name) {
        anyhow::bail!("network `{name}` is a subtensor network, and this build of ganglion has no subtensor backend: build it with the default features");
    }
    let url = resolve_network(network)?;
    Ok(Arc::new(LocalChain::new(&url)?))
}

/// `ganglion chain …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ChainCommand {
    /// Run a persistent local chain node (blocks, epochs, HTTP/SSE API).
    Serve(ServeArgs),
}

/// `ganglion chain serve` flags. Each one overrides the same key of the `--config` file;
/// an unset flag leaves the file's value (or the default shown).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML config file whose keys are the flag names without `--`, `-` written `_`
    /// (`data_dir`, `host`, `port`, `block_time = "1s"`, `tempo`, `faucet = false`);
    /// flags override it.
    #[arg(long, env = "GANGLION_CHAIN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the chain database lives (created if missing) [default: ~/.ganglion/chain].
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Port of the HTTP API [default: 9944].
    #[arg(long)]
    port: Option<u16>,
    /// Address to bind (loopback by default; the API has no authentication) [default: 127.0.0.1].
    #[arg(long)]
    host: Option<IpAddr>,
    /// Time between blocks, e.g. `12s`, `1s`, `250ms` (a bare number is seconds) [default: 12s].
    #[arg(long = "block-time", value_parser = ganglion_neuron::config::parse_duration)]
    block_time: Option<Duration>,
    /// Tempo (blocks between epochs) of newly created subnets [default: 360].
    #[arg(long)]
    tempo: Option<u16>,
    /// Refuse `faucet` transactions (`faucet = false` in the file).
    #[arg(long = "no-faucet")]
    no_faucet: bool,
    /// Print the startup line as JSON.
    #[arg(long)]
    json: bool,
}

impl ServeArgs {
    /// The set flags, by config key.
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.path("data_dir", self.data_dir.as_deref())
            .set("port", self.port.map(i64::from))
            .set("host", self.host.map(|h| h.to_string()))
            .duration("block_time", self.block_time)
            .set("tempo", self.tempo.map(i64::from))
            .set("faucet", self.no_faucet.then_some(false));
        o
    }

    /// The file, then the flags; validated.
    fn load(&self) -> anyhow::Result<ServeConfig> {
        let config: ServeConfig = ganglion_neuron::config::load(self.config.as_deref(), &self.overrides())
            .context("reading the chain configuration")?;
        config.validate()?;
        Ok(config)
    }
}

/// Parse `250ms`, `1s`, `1.5s`, `2m` or a bare number of seconds, between 1 ms and 1 h
/// (`localnet --block-time`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration like 12s, 1s or 250ms"))?;
    let secs = value * scale;
    if !secs.is_finite() || !(0.001..=3600.0).contains(&secs) {
        return Err(format!("`{text}` is out of range: use between 1ms and 1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `ganglion subnet …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SubnetCommand {
    /// Create a subnet owned by the wallet's coldkey, with its hotkey as owner neuron (uid 0).
    Create {
        /// Claim this netuid (default: the next free one).
        #[arg(long)]
        netuid: Option<u16>,
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// List subnets.
    List {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Show one subnet with its hyperparameters.
    Show {
        /// Subnet id.
        #[arg(long)]
        netuid: u16,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Show hyperparameters, or `set NAME VALUE` as the owner.
    Hyperparams(HyperparamsArgs),
}

/// `ganglion subnet hyperparams` flags.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct HyperparamsArgs {
    /// Subnet id.
    #[arg(long)]
    netuid: Option<u16>,
    #[command(flatten)]
    net: NetArgs,
    #[command(subcommand)]
    action: Option<HyperparamsAction>,
}

/// `ganglion subnet hyperparams set`.
#[derive(Debug, Subcommand)]
pub(crate) enum HyperparamsAction {
    /// Change one hyperparameter (signed by the owner coldkey).
    Set {
        /// Subnet id.
        #[arg(long)]
        netuid: u16,
        /// Name, e.g. `tempo`, `weights_rate_limit`, `min_allowed_weights`,
        /// `commit_reveal_weights_enabled` (true/false), `commit_reveal_period` (epochs).
        /// `ganglion subnet hyperparams --netuid N` lists them all.
        #[arg(value_name = "NAME")]
        param_name: String,
        /// New value (integer or true/false).
        #[arg(value_name = "VALUE")]
        param_value: String,
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// `ganglion neuron …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NeuronCommand {
    /// Burned registration of the wallet's hotkey (the coldkey pays the burn).
    Register {
        /// Subnet id.
        #[arg(long)]
        netuid: u16,
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Stake TAO from the coldkey on a hotkey.
    Stake(StakeArgs),
    /// Unstake TAO back to the coldkey.
    Unstake(StakeArgs),
    /// Publish the hotkey's axon address.
    Serve {
        /// Subnet id.
        #[arg(long)]
        netuid: u16,
        /// IP address to publish (loopback is fine on a local chain).
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
        /// Port the axon listens on.
        #[arg(long)]
        port: u16,
        /// Protocol number (the SDK uses 4).
        #[arg(long, default_value_t = 4)]
        protocol: u8,
        /// Version as major·10⁶ + minor·10³ + patch.
        #[arg(long = "axon-version", default_value_t = version_as_int())]
        axon_version: u32,
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// Stake and unstake flags.
#[derive(Debug, Args)]
pub(crate) struct StakeArgs {
    /// Subnet id.
    #[arg(long)]
    netuid: u16,
    /// Amount in TAO.
    #[arg(long)]
    amount: f64,
    /// Hotkey SS58 (default: the wallet's hotkey).
    #[arg(long = "hotkey-ss58")]
    hotkey_ss58: Option<PublicKey>,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `ganglion weights …`.
#[derive(Debug, Subcommand)]
pub(crate) enum WeightsCommand {
    /// Set weights from the wallet's hotkey (floats, converted as the SDK does).
    Set {
        #[command(flatten)]
        weights: WeightArgs,
    },
    /// Commit to weights on a subnet with commit-reveal on (`btcli weights commit`): sends
    /// the hash only and prints the salt and the reveal window; reveal later with the same
    /// uids, weights, salt and version key.
    Commit {
        #[command(flatten)]
        weights: WeightArgs,
        /// Salt, comma-separated u16s (default: 8 random ones, printed).
        #[arg(long, value_delimiter = ',')]
        salt: Vec<u16>,
    },
    /// Reveal weights committed with `weights commit`, in the commit's reveal window.
    Reveal {
        #[command(flatten)]
        weights: WeightArgs,
        /// The salt printed by `weights commit`, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        salt: Vec<u16>,
    },
}

/// What `weights set`, `commit` and `reveal` share.
#[derive(Debug, Args)]
pub(crate) struct WeightArgs {
    /// Subnet id.
    #[arg(long)]
    netuid: u16,
    /// Target uids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    uids: Vec<u16>,
    /// Weights, comma-separated, one per uid (non-negative; normalised by the max).
    #[arg(long, value_delimiter = ',', required = true, allow_hyphen_values = true)]
    weights: Vec<f64>,
    /// Validator version key.
    #[arg(long = "version-key", default_value_t = u64::from(version_as_int()))]
    version_key: u64,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `ganglion metagraph` flags.
#[derive(Debug, Args)]
pub(crate) struct MetagraphArgs {
    /// Subnet id.
    #[arg(long)]
    netuid: u16,
    #[command(flatten)]
    net: NetArgs,
}

/// `ganglion faucet` flags.
#[derive(Debug, Args)]
pub(crate) struct FaucetArgs {
    /// TAO to credit to the wallet's coldkey (at most 10000 per call).
    #[arg(long, default_value_t = 1000.0)]
    amount: f64,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// The axon version and weights version_key of this build (the runtime's one policy).
fn version_as_int() -> u32 {
    u32::try_from(ganglion_neuron::weights::version_key()).unwrap_or(u32::MAX)
}

fn tao_to_rao(tao: f64) -> anyhow::Result<u64> {
    if !tao.is_finite() || tao < 0.0 {
        bail!("amount {tao} is not a non-negative number of TAO");
    }
    let rao = (tao * RAO_PER_TAO as f64).round();
    if rao > u64::MAX as f64 {
        bail!("amount {tao} TAO is too large");
    }
    Ok(rao as u64)
}

fn tao(rao: u64) -> f64 {
    rao as f64 / RAO_PER_TAO as f64
}


fn print_receipt(json_out: bool, what: &str, receipt: &TxReceipt, extra: serde_json::Value) {
    if json_out {
        let mut doc = json!({ "ok": true, "action": what, "hash": receipt.hash, "block": receipt.block });
        if let (Some(obj), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            obj.extend(extra.clone());
        }
        println!("{doc}");
    } else {
        println!("{what}: included in block {} (tx {})", receipt.block, &receipt.hash[..16.min(receipt.hash.len())]);
    }
}

fn hotkey_pub(wallet: &WalletArgs) -> anyhow::Result<PublicKey> {
    let w = wallet.wallet()?;
    w.hotkeypub().or_else(|_| w.hotkey(&wallet.passwords()).map(|k| k.public())).with_context(|| {
        format!("reading hotkey `{}` of wallet `{}` (create it with `ganglion wallet new-hotkey`)", wallet.hotkey, wallet.name)
    })
}

/// `ganglion chain …`.
pub(crate) fn run_chain(command: ChainCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChainCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let data_dir = config.data_dir();
    let rt = runtime()?;
    rt.block_on(async move {
        let handle = spawn_node(config.node_config(), config.listen()).await?;
        let info = handle.node.info_now()?;
        if args.json {
            println!(
                "{}",
                json!({ "url": handle.url(), "data_dir": data_dir, "genesis_hash": info.genesis_hash, "block": info.block,
                        "block_time_ms": info.block_time_ms, "tempo": config.tempo, "faucet": info.faucet })
            );
        } else {
            println!(
                "ganglion chain listening on {} (data {}, block {}, block time {:?}, genesis {})",
                handle.url(),
                data_dir.display(),
                info.block,
                config.block_time,
                &info.genesis_hash[..16]
            );
        }
        let signal = ganglion_neuron::signals::wait_for_signal().await;
        tracing::info!(%signal, "shutting down: finishing the current block");
        handle.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `ganglion subnet …`.
pub(crate) fn run_subnet(command: SubnetCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        match command {
            SubnetCommand::Create { netuid, wallet, net } => {
                let chain = net.chain()?;
                let hotkey = hotkey_pub(&wallet)?;
                let coldkey = wallet.wallet()?.coldkey(&wallet.passwords())?;
                let receipt = chain.register_network(&coldkey, &hotkey, netuid).await?;
                let netuid = receipt.netuid.unwrap_or_default();
                print_receipt(net.json, "subnet create", &receipt, json!({ "netuid": netuid, "owner_hotkey": hotkey.to_ss58() }));
                if !net.json {
                    println!("created subnet {netuid}; owner hotkey {hotkey} is uid 0");
                }
            }
            SubnetCommand::List { net } => {
                let chain = net.chain()?;
                let subnets = chain.subnets().await?;
                if net.json {
                    println!("{}", serde_json::to_string(&subnets)?);
                } else {
                    println!("{:>6} {:>9} {:>6} {:>12} {:>12} {:>8}  OWNER", "NETUID", "N", "TEMPO", "BURN(τ)", "EMISSION(τ)", "EPOCHS");
                    for s in subnets {
                        println!(
                            "{:>6} {:>9} {:>6} {:>12.4} {:>12.4} {:>8}  {}",
                            s.netuid,
                            format!("{}/{}", s.n, s.max_n),
                            s.tempo,
                            tao(s.burn),
                            tao(s.emission_per_block),
                            s.epoch_index,
                            s.owner_coldkey
                        );
                    }
                }
            }
            SubnetCommand::Show { netuid, net } => {
                let chain = net.chain()?;
                let info = chain.subnet(netuid).await?;
                let params = chain.hyperparams(netuid).await?;
                if net.json {
                    println!("{}", json!({ "subnet": info, "hyperparams": params }));
                } else {
                    println!("subnet {netuid}: {}/{} neurons, tempo {}, burn {:.4} τ, {} epochs", info.n, info.max_n, info.tempo, tao(info.burn), info.epoch_index);
                    println!("owner coldkey {}  owner hotkey {}", info.owner_coldkey, info.owner_hotkey);
                    print_params(&serde_json::to_value(&params)?);
                }
            }
            SubnetCommand::Hyperparams(args) => match args.action {
                None => {
                    let Some(netuid) = args.netuid else { bail!("pass --netuid N (or `hyperparams set --netuid N NAME VALUE`)") };
                    let chain = args.net.chain()?;
                    let params = chain.hyperparams(netuid).await?;
                    if args.net.json {
                        println!("{}", serde_json::to_string(&params)?);
                    } else {
                        print_params(&serde_json::to_value(&params)?);
                    }
                }
                Some(HyperparamsAction::Set { netuid, param_name: name, param_value: value, wallet, net }) => {
                    let update = HyperparamUpdate::from_name_value(&name, &value).map_err(anyhow::Error::msg)?;
                    let chain = net.chain()?;
                    let coldkey = wallet.wallet()?.coldkey(&wallet.passwords())?;
                    let receipt = chain.set_hyperparams(&coldkey, netuid, update).await?;
                    print_receipt(net.json, "hyperparams set", &receipt, json!({ "netuid": netuid, "name": name, "value": value }));
                }
            },
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_params(params: &serde_json::Value) {
    if let Some(map) = params.as_object() {
        for (k, v) in map {
            println!("  {k:<32} {v}");
        }
    }
}

/// `ganglion neuron …`.
pub(crate) fn run_neuron(command: NeuronCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        match command {
            NeuronCommand::Register { netuid, wallet, net } => {
                let chain = net.chain()?;
                let hotkey = hotkey_pub(&wallet)?;
                let burn = chain.subnet(netuid).await?.burn;
                let coldkey = wallet.wallet()?.coldkey(&wallet.passwords())?;
                let receipt = chain.register(&coldkey, netuid, &hotkey).await?;
                let uid = receipt.uid.unwrap_or_default();
                print_receipt(net.json, "register", &receipt, json!({ "netuid": netuid, "uid": uid, "hotkey": hotkey.to_ss58(), "burn_rao": burn }));
                if !net.json {
                    println!("hotkey {hotkey} registered as uid {uid} in subnet {netuid} (burned {:.4} τ)", tao(burn));
                }
            }
            NeuronCommand::Stake(args) => stake(args, true).await?,
            NeuronCommand::Unstake(args) => stake(args, false).await?,
            NeuronCommand::Serve { netuid, ip, port, protocol, axon_version: version, wallet, net } => {
                let chain = net.chain()?;
                let hotkey = wallet.wallet()?.hotkey(&wallet.passwords())?;
                let receipt = chain.serve_axon(&hotkey, netuid, ip, port, version, protocol).await?;
                print_receipt(net.json, "serve", &receipt, json!({ "netuid": netuid, "ip": ip, "port": port }));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn stake(args: StakeArgs, add: bool) -> anyhow::Result<()> {
    let amount = tao_to_rao(args.amount)?;
    let chain = args.net.chain()?;
    let hotkey = match args.hotkey_ss58 {
        Some(h) => h,
        None => hotkey_pub(&args.wallet)?,
    };
    let coldkey = args.wallet.wallet()?.coldkey(&args.wallet.passwords())?;
    let receipt = if add {
        chain.add_stake(&coldkey, args.netuid, &hotkey, amount).await?
    } else {
        chain.remove_stake(&coldkey, args.netuid, &hotkey, amount).await?
    };
    let balance = chain.account(&coldkey.public()).await?.balance;
    let what = if add { "stake" } else { "unstake" };
    print_receipt(args.net.json, what, &receipt, json!({ "netuid": args.netuid, "hotkey": hotkey.to_ss58(), "amount_rao": amount, "balance_rao": balance }));
    if !args.net.json {
        println!("{what} {:.4} τ on {hotkey}; coldkey balance now {:.4} τ", tao(amount), tao(balance));
    }
    Ok(())
}

/// `ganglion weights …`.
pub(crate) fn run_weights(command: WeightsCommand) -> anyhow::Result<ExitCode> {
    let WeightArgs { netuid, uids, weights, version_key, wallet, net } = match command {
        WeightsCommand::Set { weights } => weights,
        WeightsCommand::Commit { weights, salt } => return commit_or_reveal(weights, salt, true),
        WeightsCommand::Reveal { weights, salt } => return commit_or_reveal(weights, salt, false),
    };
    let (uids16, values) = emit_values(&uids, &weights)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let chain = net.chain()?;
        let hotkey = wallet.wallet()?.hotkey(&wallet.passwords())?;
        let receipt = chain.set_weights(&hotkey, netuid, uids16.clone(), values.clone(), version_key).await?;
        print_receipt(net.json, "weights set", &receipt, json!({ "netuid": netuid, "uids": uids16, "values": values }));
        Ok(ExitCode::SUCCESS)
    })
}

/// The SDK's u16 conversion of CLI weights, refusing what it would not send.
fn emit_values(uids: &[u16], weights: &[f64]) -> anyhow::Result<(Vec<u16>, Vec<u16>)> {
    if uids.len() != weights.len() {
        bail!("{} uids but {} weights: pass one weight per uid", uids.len(), weights.len());
    }
    let (uids16, values) = ganglion_yuma::weights::convert_weights_and_uids_for_emit(uids, weights).map_err(|e| anyhow::anyhow!("{e}"))?;
    if uids16.is_empty() {
        bail!("all weights are zero: nothing to set (the SDK sends nothing either)");
    }
    Ok((uids16, values))
}

/// `ganglion weights commit` (`commit`) and `weights reveal`.
fn commit_or_reveal(args: WeightArgs, salt: Vec<u16>, commit: bool) -> anyhow::Result<ExitCode> {
    let WeightArgs { netuid, uids, weights, version_key, wallet, net } = args;
    let (uids16, values) = emit_values(&uids, &weights)?;
    let salt = if salt.is_empty() { ganglion_neuron::weights::random_salt() } else { salt };
    let rt = runtime()?;
    rt.block_on(async move {
        let chain = net.chain()?;
        let hotkey = wallet.wallet()?.hotkey(&wallet.passwords())?;
        let hash = ganglion_chain::weight_hash(&hotkey.public(), netuid, &uids16, &values, &salt, version_key);
        let hash_hex = ganglion_chain::commit_reveal::hash_hex(&hash);
        if commit {
            let receipt = chain.commit_weights(&hotkey, netuid, hash).await?;
            let window = chain.weight_commits(netuid, &hotkey.public()).await?.into_iter().find(|c| c.hash == hash);
            let salt_text = salt.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
            let extra = json!({ "netuid": netuid, "uids": uids16, "values": values, "salt": salt, "version_key": version_key, "commit_hash": hash_hex, "reveal_window": window });
            print_receipt(net.json, "weights commit", &receipt, extra);
            if !net.json {
                match window {
                    Some(w) => println!("commit {hash_hex}; reveal in blocks {}..={} with --salt {salt_text} --version-key {version_key}", w.first_reveal_block, w.last_reveal_block),
                    None => println!("commit {hash_hex}; reveal with --salt {salt_text} --version-key {version_key}"),
                }
            }
        } else {
            let receipt = chain.reveal_weights(&hotkey, netuid, uids16.clone(), values.clone(), salt, version_key).await?;
            print_receipt(net.json, "weights reveal", &receipt, json!({ "netuid": netuid, "uids": uids16, "values": values, "commit_hash": hash_hex }));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `ganglion metagraph`.
pub(crate) fn run_metagraph(args: MetagraphArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        let chain = args.net.chain()?;
        let metagraph = Metagraph::fetch(chain.as_ref(), args.netuid).await?;
        let info = chain.subnet(args.netuid).await?;
        if args.net.json {
            println!("{}", json!({ "netuid": args.netuid, "block": metagraph.block(), "subnet": info, "neurons": metagraph.neurons() }));
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "Subnet {} · block {} · {} neurons · tempo {} · epochs {} · burn {:.4} τ",
            args.netuid,
            metagraph.block(),
            metagraph.n(),
            info.tempo,
            info.epoch_index,
            tao(info.burn)
        );
        println!(
            "{:>4} {:>12} {:>7} {:>7} {:>9} {:>9} {:>9} {:>12} {:>6} {:>7} {:>7} {:>21}  {:<12} {:<12}",
            "UID", "STAKE(τ)", "VTRUST", "CONS", "INCENTIVE", "DIVIDENDS", "EMISSION", "EMISSION(ρ)", "ACTIVE", "VPERMIT", "UPDATED", "AXON", "HOTKEY", "COLDKEY"
        );
        let short = |k: &PublicKey| {
            let s = k.to_ss58();
            format!("{}…{}", &s[..5], &s[s.len() - 4..])
        };
        let mut totals = (0u64, 0u64);
        for n in metagraph.neurons() {
            totals.0 += n.stake;
            totals.1 += n.emission;
            let axon = n.axon.as_ref().map(|a| SocketAddr::new(a.ip, a.port).to_string()).unwrap_or_else(|| "-".into());
            println!(
                "{:>4} {:>12.4} {:>7.4} {:>7.4} {:>9.5} {:>9.5} {:>9.5} {:>12} {:>6} {:>7} {:>7} {:>21}  {:<12} {:<12}",
                n.uid,
                tao(n.stake),
                u16_to_float(n.validator_trust),
                u16_to_float(n.consensus),
                u16_to_float(n.incentive),
                u16_to_float(n.dividends),
                tao(n.emission),
                n.emission,
                if n.active { "*" } else { "" },
                if n.validator_permit { "*" } else { "" },
                metagraph.block().saturating_sub(n.last_update),
                axon,
                short(&n.hotkey),
                short(&n.coldkey)
            );
        }
        println!("total stake {:.4} τ · last epoch emission {:.4} τ", tao(totals.0), tao(totals.1));
        Ok(ExitCode::SUCCESS)
    })
}

/// `ganglion faucet`.
pub(crate) fn run_faucet(args: FaucetArgs) -> anyhow::Result<ExitCode> {
    let amount = tao_to_rao(args.amount)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let chain = args.net.chain()?;
        let coldkey = args.wallet.wallet()?.coldkey(&args.wallet.passwords())?;
        let receipt = chain.faucet(&coldkey, amount).await?;
        let balance = chain.account(&coldkey.public()).await?.balance;
        print_receipt(args.net.json, "faucet", &receipt, json!({ "coldkey": coldkey.public().to_ss58(), "amount_rao": amount, "balance_rao": balance }));
        if !args.net.json {
            println!("credited {:.4} τ to {}; balance {:.4} τ", tao(amount), coldkey.public(), tao(balance));
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    enum TestCli {
        #[command(subcommand)]
        Chain(ChainCommand),
        #[command(subcommand)]
        Subnet(SubnetCommand),
        #[command(subcommand)]
        Neuron(NeuronCommand),
        #[command(subcommand)]
        Weights(WeightsCommand),
        Metagraph(MetagraphArgs),
        Faucet(FaucetArgs),
    }

    #[test]
    fn clap_definitions_are_consistent() {
        TestCli::command().debug_assert();
        let parsed = TestCli::try_parse_from(["t", "weights", "set", "--netuid", "1", "--uids", "1,2", "--weights", "0.5,-1"]);
        assert!(parsed.is_ok(), "negative weights parse and are refused later by the converter");
        let parsed = TestCli::try_parse_from(["t", "subnet", "hyperparams", "set", "--netuid", "1", "tempo", "10"]);
        assert!(parsed.is_ok());
        let parsed = TestCli::try_parse_from(["t", "weights", "commit", "--netuid", "1", "--uids", "1,2", "--weights", "1,0.5"]);
        assert!(matches!(parsed, Ok(TestCli::Weights(WeightsCommand::Commit { ref salt, .. })) if salt.is_empty()), "{parsed:?}");
        let parsed = TestCli::try_parse_from(["t", "weights", "reveal", "--netuid", "1", "--uids", "1", "--weights", "1"]);
        assert!(parsed.is_err(), "a reveal needs the salt");
        let parsed = TestCli::try_parse_from(["t", "weights", "reveal", "--netuid", "1", "--uids", "1", "--weights", "1", "--salt", "3,4"]);
        assert!(matches!(parsed, Ok(TestCli::Weights(WeightsCommand::Reveal { ref salt, .. })) if salt == &[3, 4]), "{parsed:?}");
        // Commit-reveal's two hyperparameters go through the same `NAME VALUE` path.
        for (name, value) in [("commit_reveal_weights_enabled", "true"), ("commit-reveal-period", "2")] {
            let parsed = TestCli::try_parse_from(["t", "subnet", "hyperparams", "set", "--netuid", "1", name, value]);
            let Ok(TestCli::Subnet(SubnetCommand::Hyperparams(HyperparamsArgs { action: Some(HyperparamsAction::Set { param_name, param_value, .. }), .. }))) = parsed else {
                panic!("{name}: {parsed:?}")
            };
            let update = HyperparamUpdate::from_name_value(&param_name, &param_value).unwrap_or_else(|e| panic!("{e}"));
            assert!(update.commit_reveal_weights_enabled == Some(true) || update.commit_reveal_period == Some(2), "{update:?}");
        }
    }

    #[test]
    fn bad_weights_are_refused_before_signing() {
        let run = |weights: Vec<f64>| {
            let cmd = WeightsCommand::Set {
                weights: WeightArgs {
                    netuid: 1,
                    uids: vec![1, 2],
                    weights,
                    version_key: 0,
                    wallet: WalletArgs {
                        name: "none".into(),
                        hotkey: "none".into(),
                        path: PathBuf::from("/nonexistent-ganglion-test"),
                        password_file: None,
                    },
                    net: NetArgs { network: Some("http://127.0.0.1:9".into()), chain_endpoint: None, json: true },
                },
            };
            run_weights(cmd).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(run(vec![f64::NAN, 1.0]).is_err_and(|e| e.contains("not a finite number")));
        assert!(run(vec![-0.5, 1.0]).is_err_and(|e| e.contains("negative")));
        assert!(run(vec![0.0, 0.0]).is_err_and(|e| e.contains("nothing to set")));
        assert!(run(vec![1.0]).is_err_and(|e| e.contains("one weight per uid")));
    }

    #[test]
    fn serve_config_is_the_file_under_the_set_flags() {
        let serve = |argv: &[&str]| match TestCli::try_parse_from(["t", "chain", "serve"].iter().chain(argv)) {
            Ok(TestCli::Chain(ChainCommand::Serve(args))) => args.load().map_err(|e| format!("{e:#}")),
            other => panic!("{other:?}"),
        };
        assert_eq!(serve(&[]), Ok(ServeConfig::default()), "no file, no flags: the defaults");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("chain.toml");
        std::fs::write(&file, "block_time = \"50ms\"\ntempo = 7\nport = 9000\n").unwrap_or_else(|e| panic!("{e}"));
        let path = file.to_str().unwrap_or_else(|| panic!("path"));
        let config = serve(&["--config", path, "--tempo", "9", "--no-faucet", "--block-time", "1.5"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.block_time, config.tempo, config.port, config.faucet), (Duration::from_millis(1500), 9, 9000, false));
        let config = serve(&["--config", path]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.block_time, config.tempo, config.faucet), (Duration::from_millis(50), 7, true));
        assert!(serve(&["--tempo", "0"]).is_err_and(|e| e.contains("tempo must be at least 1")));
        std::fs::write(&file, "tempo = 7\nno_faucet = true\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(serve(&["--config", path]).is_err_and(|e| e.contains("no_faucet") && e.contains("chain.toml")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("12s"), Ok(Duration::from_secs(12)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("NaNs").is_err());
    }

    #[test]
    fn amounts() {
        assert_eq!(tao_to_rao(1.5).ok(), Some(1_500_000_000));
        assert!(tao_to_rao(-1.0).is_err());
        assert!(tao_to_rao(f64::NAN).is_err());
        assert!(tao_to_rao(1e30).is_err());
    }
}
