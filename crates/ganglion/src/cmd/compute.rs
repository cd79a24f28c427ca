//! `ganglion miner compute`, `ganglion validator compute`, `ganglion compute …` and
//! `ganglion bench compute`: flags (the original's names where users know them), wallet
//! loading, the runtime and printing; everything else is `ganglion-compute`. The nodes'
//! flags and environment variables become one `Overrides` table laid over the `--config`
//! TOML file by `ganglion_compute::config::load` (the runtime's one layering rule).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ganglion_compute::bench::{self, BenchConfig};
use ganglion_compute::config::{self as compute_config, ComputeConfig};
use ganglion_compute::hashcat::HashcatConfig;
use ganglion_compute::miner;
use ganglion_compute::protocol::Requirement;
use ganglion_compute::renter::{self, Order};
use ganglion_compute::scoring::Weights;
use ganglion_compute::solver::Kernel;
use ganglion_compute::units::{parse_size, parse_timeline};
use ganglion_compute::validator;
use ganglion_neuron::Shutdown;
use ganglion_neuron::config::{Overrides, parse_duration};
use ganglion_neuron::peer::PeerClient;
use ganglion_records::Records;
use serde_json::json;

use crate::cmd::chain::NetArgs;
use crate::cmd::runtime;
use crate::cmd::toml_int;
use crate::cmd::wallet::WalletArgs;
use crate::cmd::{AccessListArgs, AxonArgs};



/// `true` when a switch was given (an absent switch leaves the file's value).
fn switch(on: bool, value: bool) -> Option<bool> {
    on.then_some(value)
}

impl AccessListArgs {
    /// Lays the lists over `section` (`miner.access` or `validator.access`).
    fn apply(&self, overrides: &mut Overrides, section: &str) {
        for (key, list) in [
            ("blacklist_hotkeys", &self.blacklist_hotkeys),
            ("blacklist_coldkeys", &self.blacklist_coldkeys),
            ("whitelist_hotkeys", &self.whitelist_hotkeys),
            ("whitelist_coldkeys", &self.whitelist_coldkeys),
        ] {
            if let Some(list) = list {
                overrides.list(&format!("{section}.{key}"), list);
            }
        }
    }
}

/// What both long-running nodes take: wallet, chain, subnet, config file, data directory.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Subnet id (default 27).
    #[arg(long, env = "GANGLION_NETUID")]
    netuid: Option<u16>,
    /// TOML config file (`netuid`, `[neuron]`, `[axon]`, `[metrics]`, `[miner]`,
    /// `[validator]`); flags and environment variables override it.
    #[arg(long, env = "GANGLION_COMPUTE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the node keeps its state and status.json (default ~/.ganglion/compute).
    #[arg(long = "data-dir", alias = "neuron.data_dir", env = "GANGLION_COMPUTE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl NodeArgs {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.set("netuid", toml_int(self.netuid));
        o.path("neuron.data_dir", self.data_dir.as_deref());
        o
    }

    /// The configuration, the hotkey and the chain.
    fn load(&self, role: &str, overrides: &Overrides) -> anyhow::Result<(ComputeConfig, ganglion_core::keys::Keypair, Arc<dyn ganglion_chain::Chain>)> {
        let config = compute_config::load(self.config.as_deref(), overrides)?;
        let hotkey = self.wallet.wallet()?.hotkey(&self.wallet.passwords()).with_context(|| format!("loading the {role}'s hotkey"))?;
        Ok((config, hotkey, self.net.chain()?))
    }
}

/// `ganglion miner compute` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct MinerArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    axon: AxonArgs,
    /// Do not publish the axon on chain.
    #[arg(long = "no-serve-axon")]
    no_serve_axon: bool,
    /// How often the metagraph (callers, the published axon) is refreshed (default 12s).
    #[arg(long = "neuron.sync_interval", value_parser = parse_duration)]
    sync_interval: Option<Duration>,
    /// Solver threads (default: one per CPU).
    #[arg(long = "miner.threads", env = "GANGLION_MINER_THREADS")]
    threads: Option<usize>,
    /// Hashing kernel: auto, avx512 or portable.
    #[arg(long = "miner.kernel", value_parser = ["auto", "avx512", "portable"])]
    kernel: Option<String>,
    /// Cap on the solver's hashes per second (share the machine; demos of slow miners).
    #[arg(long = "miner.max_hash_rate")]
    max_hash_rate: Option<u64>,
    /// Solve with hashcat instead of the built-in solver.
    #[arg(long = "miner.backend", value_parser = ["builtin", "hashcat"])]
    backend: Option<String>,
    /// The hashcat binary (implies --miner.backend hashcat).
    #[arg(long = "miner.hashcat.path", env = "GANGLION_HASHCAT")]
    hashcat_path: Option<PathBuf>,
    /// hashcat workload profile: 1 low, 2 economic, 3 high, 4 insane.
    #[arg(long = "miner.hashcat.workload.profile")]
    hashcat_profile: Option<u8>,
    /// Extra hashcat arguments, split on whitespace (e.g. `-O`).
    #[arg(long = "miner.hashcat.extended.options", allow_hyphen_values = true)]
    hashcat_options: Option<String>,
    /// hashcat `-D` device types (e.g. 1 for CPU, 2 for GPU).
    #[arg(long = "miner.hashcat.device_types")]
    hashcat_device_types: Option<String>,
    /// Longest the miner works on one challenge (default 30s; a bare number is seconds).
    #[arg(long = "miner.challenge.timeout", value_parser = parse_duration)]
    challenge_timeout: Option<Duration>,
    /// SSH port of allocations (default 4444).
    #[arg(long = "ssh.port", env = "GANGLION_SSH_PORT")]
    ssh_port: Option<u16>,
    /// Address the allocation's sshd listens on (default 0.0.0.0).
    #[arg(long = "ssh.listen")]
    ssh_listen: Option<IpAddr>,
    /// Host name renters should connect to (default: the axon IP).
    #[arg(long = "ssh.host")]
    ssh_host: Option<String>,
    /// Where sandboxes live (default /var/lib/ganglion/sandboxes; every ancestor needs o+x).
    #[arg(long = "sandbox.dir")]
    sandbox_dir: Option<PathBuf>,
    /// Sandbox network: none (loopback only, default) or host.
    #[arg(long = "sandbox.network", value_parser = ["none", "host"])]
    sandbox_network: Option<String>,
    /// Refuse allocations.
    #[arg(long = "sandbox.disable")]
    sandbox_disable: bool,
    /// Tear allocations down when the miner stops (otherwise they keep running and are re-adopted).
    #[arg(long = "sandbox.stop_on_exit")]
    sandbox_stop_on_exit: bool,
    /// First host uid of sandbox users.
    #[arg(long = "sandbox.uid_base")]
    sandbox_uid_base: Option<u32>,
    #[command(flatten)]
    lists: AccessListArgs,
    /// Minimum stake of callers in TAO (default 0; the original used 1024).
    #[arg(long = "miner.min_stake")]
    min_stake: Option<f64>,
    /// Serve callers without a validator permit too.
    #[arg(long = "miner.allow_no_permit")]
    allow_no_permit: bool,
    /// How often the specs are measured again (default 15m; a bare number is seconds).
    #[arg(long = "specs.refresh", value_parser = parse_duration)]
    specs_refresh: Option<Duration>,
    /// Size of the RAM and disk speed tests in MiB (default 64).
    #[arg(long = "specs.sample_mib")]
    specs_sample_mib: Option<u64>,
}

fn kernel(name: &str) -> Kernel {
    match name {
        "avx512" => Kernel::Avx512,
        "portable" => Kernel::Portable,
        _ => Kernel::Auto,
    }
}

impl MinerArgs {
    fn overrides(&self) -> Overrides {
        let mut o = self.node.overrides();
        o.set("axon.ip", self.axon.axon_ip.map(|ip| ip.to_string()));
        o.set("axon.port", toml_int(self.axon.axon_port));
        o.set("axon.external_ip", self.axon.axon_external_ip.map(|ip| ip.to_string()));
        o.set("axon.external_port", toml_int(self.axon.axon_external_port));
        o.set("axon.serve", switch(self.no_serve_axon, false));
        o.duration("neuron.sync_interval", self.sync_interval);
        o.set("miner.solver.threads", toml_int(self.threads));
        o.set("miner.solver.kernel", self.kernel.clone());
        o.set("miner.solver.max_hash_rate", toml_int(self.max_hash_rate));
        let hashcat = self.backend.as_deref() == Some("hashcat") || self.hashcat_path.is_some();
        o.set("miner.backend", if hashcat { Some("hashcat".to_string()) } else { self.backend.clone() });
        o.path("miner.hashcat.path", self.hashcat_path.as_deref());
        o.set("miner.hashcat.workload_profile", toml_int(self.hashcat_profile));
        o.set("miner.hashcat.extended_options", self.hashcat_options.clone());
        o.set("miner.hashcat.device_types", self.hashcat_device_types.clone());
        o.duration("miner.challenge_timeout", self.challenge_timeout);
        o.set("miner.sandbox.ssh.port", toml_int(self.ssh_port));
        o.set("miner.sandbox.ssh.listen", self.ssh_listen.map(|ip| ip.to_string()));
        o.set("miner.sandbox.ssh.advertise_host", self.ssh_host.clone());
        o.path("miner.sandbox.dir", self.sandbox_dir.as_deref());
        o.set("miner.sandbox.network", self.sandbox_network.clone());
        o.set("miner.sandbox.enabled", switch(self.sandbox_disable, false));
        o.set("miner.sandbox.stop_on_exit", switch(self.sandbox_stop_on_exit, true));
        o.set("miner.sandbox.uid_base", toml_int(self.sandbox_uid_base));
        self.lists.apply(&mut o, "miner.access");
        o.set("miner.access.min_stake_tao", self.min_stake);
        o.set("miner.access.require_validator_permit", switch(self.allow_no_permit, false));
        o.duration("miner.specs_refresh", self.specs_refresh);
        o.set("miner.specs_sample_mib", toml_int(self.specs_sample_mib));
        o
    }
}

pub(crate) fn run_miner(args: MinerArgs) -> anyhow::Result<ExitCode> {
    let (config, hotkey, chain) = args.node.load("miner", &args.overrides())?;
    runtime()?.block_on(async move {
        let shutdown = Shutdown::on_signal();
        let handle = miner::spawn(&config, hotkey, chain, Some(shutdown)).await.context("starting the compute miner")?;
        if args.node.net.json {
            println!("{}", json!({ "role": "compute-miner", "uid": handle.uid, "axon": handle.addr.to_string(), "status": format!("http://{}/status", handle.addr) }));
        } else {
            eprintln!("compute miner uid {} serving on {} (Ctrl-C or SIGTERM stops)", handle.uid, handle.addr);
        }
        handle.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `ganglion validator compute` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidatorArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The records store: sqlite:/path/records.db or postgres://… (default sqlite in --data-dir).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Port of `/status` and `/metrics` (not served when absent).
    #[arg(long = "metrics.port", env = "GANGLION_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Address of `/status` and `/metrics` (default 127.0.0.1).
    #[arg(long = "metrics.ip")]
    metrics_ip: Option<IpAddr>,
    /// Blocks between weight settings (default 360; at least the chain's weights_rate_limit).
    #[arg(long = "neuron.epoch_length")]
    epoch_length: Option<u64>,
    /// `version_key` sent with weights (default: this build's version).
    #[arg(long = "neuron.version_key")]
    version_key: Option<u64>,
    /// Lowest challenge difficulty (default 6).
    #[arg(long = "validator.difficulty.min")]
    difficulty_min: Option<u8>,
    /// Highest challenge difficulty (default 12).
    #[arg(long = "validator.difficulty.max")]
    difficulty_max: Option<u8>,
    /// Difficulty adaptation rule: work (default: keeps each miner's keyspace above what it can
    /// search, so splitting a machine across hotkeys pays nothing), or the original's b or a.
    #[arg(long = "validator.difficulty.rule", value_parser = ["work", "a", "b"])]
    difficulty_rule: Option<String>,
    /// Time a miner has per challenge (default 30s; a bare number is seconds).
    #[arg(long = "validator.challenge.timeout", value_parser = parse_duration)]
    challenge_timeout: Option<Duration>,
    /// Most miners queried at once (default 256).
    #[arg(long = "validator.challenge.batch.size")]
    batch_size: Option<usize>,
    /// Challenges each miner has in flight in a round, all with the round's deadline; each
    /// one solved is replaced by a fresh one (1–16, default 8).
    #[arg(long = "validator.challenge.count")]
    challenges_per_round: Option<u32>,
    /// Most challenges one miner gets in a round, replacements included (count–256, default 64).
    #[arg(long = "validator.challenge.max")]
    challenges_max_per_round: Option<u32>,
    /// Fewest blocks between rounds (default 50).
    #[arg(long = "validator.round.blocks.min")]
    round_min: Option<u64>,
    /// Most blocks between rounds (default 80).
    #[arg(long = "validator.round.blocks.max")]
    round_max: Option<u64>,
    /// Scoring formula: a (default, the README's weights) or b.
    #[arg(long = "validator.scoring.version", value_parser = ["a", "b"])]
    scoring_version: Option<String>,
    /// Weights `success,difficulty,time,failure,allocation` (default 1.0,1.0,0.5,0.5,0.4).
    #[arg(long = "validator.scoring.weights", value_parser = compute_config::parse_weights)]
    scoring_weights: Option<Weights>,
    /// Let several uids on one IP count (loopback axons always may).
    #[arg(long = "validator.allow_shared_ip")]
    allow_shared_ip: bool,
    /// Challenge miners before this validator holds a validator permit (only useful when
    /// the miners run with --miner.allow_no_permit; by default the validator waits).
    #[arg(long = "validator.without_permit")]
    without_permit: bool,
    /// Stake (TAO) from which a permitted neuron that earns dividends counts as a validator and scores zero (default 1024).
    #[arg(long = "validator.stake_threshold")]
    stake_threshold: Option<f64>,
    /// Fetch specs every this many rounds (default 10).
    #[arg(long = "validator.specs.every")]
    specs_every: Option<u32>,
    /// How often the loop looks at the chain: metagraph sync, round and weights due (default 1s).
    #[arg(long = "validator.block_poll", value_parser = parse_duration)]
    block_poll: Option<Duration>,
    #[command(flatten)]
    lists: AccessListArgs,
}

impl ValidatorArgs {
    fn overrides(&self) -> Overrides {
        let mut o = self.node.overrides();
        o.set("validator.records_url", self.database_url.clone());
        o.set("metrics.port", toml_int(self.metrics_port));
        o.set("metrics.host", self.metrics_ip.map(|ip| ip.to_string()));
        o.set("neuron.epoch_length", toml_int(self.epoch_length));
        o.set("neuron.version_key", toml_int(self.version_key));
        o.set("validator.difficulty_min", toml_int(self.difficulty_min));
        o.set("validator.difficulty_max", toml_int(self.difficulty_max));
        o.set("validator.adapt_rule", self.difficulty_rule.clone());
        o.duration("validator.challenge_timeout", self.challenge_timeout);
        o.set("validator.batch_size", toml_int(self.batch_size));
        o.set("validator.challenges_per_round", toml_int(self.challenges_per_round));
        o.set("validator.challenges_max_per_round", toml_int(self.challenges_max_per_round));
        o.set("validator.round_blocks_min", toml_int(self.round_min));
        o.set("validator.round_blocks_max", toml_int(self.round_max));
        o.set("validator.scoring.version", self.scoring_version.clone());
        compute_config::set_weights(&mut o, "validator.scoring.weights", self.scoring_weights);
        o.set("validator.one_uid_per_ip", switch(self.allow_shared_ip, false));
        o.set("validator.wait_for_permit", switch(self.without_permit, false));
        o.set("validator.validator_stake_tao", self.stake_threshold);
        o.set("validator.specs_every_rounds", toml_int(self.specs_every));
        o.duration("validator.block_poll", self.block_poll);
        self.lists.apply(&mut o, "validator.access");
        o
    }
}

pub(crate) fn run_validator(args: ValidatorArgs) -> anyhow::Result<ExitCode> {
    let (config, hotkey, chain) = args.node.load("validator", &args.overrides())?;
    runtime()?.block_on(async move {
        let shutdown = Shutdown::on_signal();
        let handle = validator::spawn(&config, hotkey, chain, Some(shutdown)).await.context("starting the compute validator")?;
        let status = handle.addr.map(|a| format!("http://{a}/status"));
        let file = config.data_dir().join("status.json");
        if args.node.net.json {
            println!("{}", json!({ "role": "compute-validator", "status": status, "status_file": file.display().to_string() }));
        } else {
            eprintln!(
                "compute validator running{}; status file {} (Ctrl-C or SIGTERM stops)",
                status.map(|s| format!("; status at {s}")).unwrap_or_default(),
                file.display()
            );
        }
        handle.wait().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Where the renter's records and keys are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Subnet id (default 27).
    #[arg(long, env = "GANGLION_NETUID", default_value_t = 27)]
    netuid: u16,
    /// The records store the validator writes (default sqlite in --data-dir).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Data directory (default ~/.ganglion/compute): the default records store and generated keys.
    #[arg(long = "data-dir", env = "GANGLION_COMPUTE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(compute_config::default_data_dir)
    }

    async fn records(&self) -> anyhow::Result<Records> {
        let url = self.database_url.clone().unwrap_or_else(|| Records::default_url(&self.data_dir()));
        Records::open(&url).await.with_context(|| format!("opening the records store {}", ganglion_records::redact_url(&url)))
    }
}

/// `ganglion compute allocate` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct AllocateArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// CPU cores.
    #[arg(long, default_value_t = 1)]
    cpu: u32,
    /// RAM, e.g. 1GiB or 512MiB.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    ram: u64,
    /// Disk, e.g. 10GiB.
    #[arg(long, default_value = "10GiB", value_parser = parse_size)]
    disk: u64,
    /// GPUs.
    #[arg(long, default_value_t = 0)]
    gpu: u32,
    /// GPU name substring (e.g. A100).
    #[arg(long = "gpu.type", default_value = "")]
    gpu_type: String,
    /// Total GPU memory, e.g. 80GiB.
    #[arg(long = "gpu.memory", value_parser = parse_size)]
    gpu_memory: Option<u64>,
    /// How long: 7d, 12h, 30m, 90s (a bare number is days; at most 60 days).
    #[arg(long, default_value = "7d", value_parser = parse_timeline)]
    timeline: u64,
    /// Your OpenSSH public key file (default: a new ed25519 key under --data-dir/ssh).
    #[arg(long = "ssh-key")]
    ssh_key: Option<PathBuf>,
    /// Where the disk also appears inside the sandbox (besides /root).
    #[arg(long, default_value = "/tmp")]
    volume: String,
    /// Reserve this miner (hotkey or uid) instead of the best fitting one.
    #[arg(long)]
    miner: Option<String>,
}

/// `ganglion compute deallocate` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct DeallocateArgs {
    /// Allocation id, miner hotkey or uid (default: your only active allocation).
    allocation: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `ganglion compute status` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `ganglion compute list` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ListMachinesArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `ganglion compute …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ComputeCommand {
    /// Reserve a fitting miner as an SSH sandbox (sealed access, your key only).
    Allocate(AllocateArgs),
    /// Release a reservation.
    Deallocate(DeallocateArgs),
    /// Your reservations, live from the miners (including how each limit is enforced).
    Status(StatusArgs),
    /// List machines with their stored specs.
    List(ListMachinesArgs),
}

fn client(wallet: &WalletArgs) -> anyhow::Result<PeerClient> {
    let hotkey = wallet.wallet()?.hotkey(&wallet.passwords()).context("loading the renter's hotkey")?;
    Ok(ganglion_compute::protocol::client(hotkey)?)
}

fn bytes(n: u64) -> String {
    ganglion_compute::allocation::bytes(n)
}

fn when(ms: i64) -> String {
    let left = (ms - ganglion_records::now_ms()) / 1000;
    if left <= 0 { "ended".into() } else { format!("in {}h{:02}m", left / 3600, (left % 3600) / 60) }
}

async fn allocate(args: AllocateArgs) -> anyhow::Result<ExitCode> {
    let records = args.store.records().await?;
    let client = client(&args.wallet)?;
    let chain = args.net.chain()?;
    let keys_dir = args.store.data_dir().join("ssh");
    let (private_key, public_line) = match &args.ssh_key {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            (None, text.trim().to_string())
        }
        None => {
            let name = format!("alloc-{}", ganglion_records::now_ms());
            let (path, public) = renter::generate_ssh_key(&keys_dir, &name)?;
            (Some(path), public)
        }
    };
    let order = Order {
        netuid: args.store.netuid,
        requirement: Requirement {
            cpu: args.cpu,
            gpu: args.gpu,
            gpu_capacity_mib: args.gpu_memory.map_or(0, |b| b >> 20),
            gpu_kind: args.gpu_type.clone(),
            ram_bytes: args.ram,
            disk_bytes: args.disk,
        },
        timeline_seconds: args.timeline,
        ssh_public_key: public_line,
        volume_path: args.volume.clone(),
        miner: args.miner.clone(),
    };
    let granted = renter::allocate(&client, chain.as_ref(), &records, &order).await?;
    let known_hosts = keys_dir.join(format!("known_hosts-{}", granted.allocation_id));
    renter::write_known_hosts(&known_hosts, &granted.host, granted.port, &granted.host_key)?;
    let command = renter::ssh_command(&granted, private_key.as_deref(), &known_hosts);
    if args.net.json {
        let mut value = serde_json::to_value(&granted)?;
        value["ssh_command"] = json!(command);
        value["private_key"] = json!(private_key.as_ref().map(|p| p.display().to_string()));
        value["known_hosts"] = json!(known_hosts.display().to_string());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("allocated miner uid {} ({})", granted.miner_uid, granted.miner_hotkey);
        println!("  allocation  {}", granted.allocation_id);
        println!("  host        {}", granted.host);
        println!("  port        {}", granted.port);
        println!("  user        {}", granted.user);
        println!("  host key    {}", granted.host_key_fingerprint);
        println!("  expires     {}", when(granted.expires_at_ms as i64));
        if let Some(path) = &private_key {
            println!("  your key    {} (generated)", path.display());
        }
        println!("\n  {command}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn deallocate(args: DeallocateArgs) -> anyhow::Result<ExitCode> {
    let records = args.store.records().await?;
    let client = client(&args.wallet)?;
    let chain = args.net.chain()?;
    let ended = renter::deallocate(&client, chain.as_ref(), &records, args.store.netuid, args.allocation.as_deref()).await?;
    if args.net.json {
        println!("{}", serde_json::to_string_pretty(&ended)?);
    } else {
        println!("released allocation {} on miner uid {}", ended.id, ended.miner_uid);
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let records = args.store.records().await?;
    let client = client(&args.wallet)?;
    let chain = args.net.chain()?;
    let entries = renter::status(&client, chain.as_ref(), &records, args.store.netuid).await?;
    if args.net.json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|(record, live)| match live {
                Ok(state) => json!({ "allocation": record, "live": state }),
                Err(error) => json!({ "allocation": record, "error": error }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no active allocations of this hotkey on subnet {}", args.store.netuid);
    }
    for (record, live) in entries {
        println!("{}  miner uid {}  {}:{}  expires {}", record.id, record.miner_uid, record.access["host"].as_str().unwrap_or("?"), record.access["port"], when(record.expires_at_ms));
        match live {
            Err(_) if record.status != "active" => println!("  {} (the miner has released it)", record.status),
            Ok(state) => {
                println!("  running {}  paused {}", state["running"], state["paused"]);
                if let Some(enforcement) = state["enforcement"].as_object() {
                    for (limit, how) in enforcement {
                        println!("  {limit:<8} {}", how.as_str().unwrap_or(""));
                    }
                }
            }
            Err(error) => println!("  cannot ask the miner: {error}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListMachinesArgs) -> anyhow::Result<ExitCode> {
    let records = args.store.records().await?;
    let chain = args.net.chain()?;
    let metagraph = ganglion_chain::Metagraph::fetch(chain.as_ref(), args.store.netuid).await?;
    let machines = renter::list(&records, &metagraph).await?;
    if args.net.json {
        println!("{}", serde_json::to_string_pretty(&machines)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>4}  {:<48} {:>5} {:>11} {:>11} {:>4} {:>8} {:>10}", "uid", "hotkey", "cpus", "ram free", "disk free", "gpus", "sandbox", "allocated");
    for m in &machines {
        println!(
            "{:>4}  {:<48} {:>5} {:>11} {:>11} {:>4} {:>8} {:>10}",
            m.uid,
            m.hotkey,
            m.cpus,
            bytes(m.ram_available),
            bytes(m.disk_free),
            m.gpus,
            if m.has_sandbox { "yes" } else { "no" },
            if m.allocated { "yes" } else { "no" }
        );
    }
    if machines.is_empty() {
        println!("no machines with stored specs on subnet {} (a validator stores them as it runs)", args.store.netuid);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(command: ComputeCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            ComputeCommand::Allocate(args) => allocate(args).await,
            ComputeCommand::Deallocate(args) => deallocate(args).await,
            ComputeCommand::Status(args) => status(args).await,
            ComputeCommand::List(args) => list(args).await,
        }
    })
}

/// `ganglion bench compute` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Difficulties in the original's syntax: `6`, `7 8 9`, `6:3` (three runs at 6), `all`.
    #[arg(long, default_value = "6 7 8")]
    difficulties: String,
    /// Repetitions of the whole list.
    #[arg(long, default_value_t = 2)]
    repetitions: u32,
    /// Solver threads (default: one per CPU).
    #[arg(long = "miner.threads")]
    threads: Option<usize>,
    /// Hashing kernel: auto, avx512 or portable.
    #[arg(long = "miner.kernel", value_parser = ["auto", "avx512", "portable"], default_value = "auto")]
    kernel: String,
    /// Skip hashcat.
    #[arg(long = "no-hashcat")]
    no_hashcat: bool,
    /// The hashcat binary.
    #[arg(long = "miner.hashcat.path", default_value = "hashcat")]
    hashcat_path: PathBuf,
    /// hashcat workload profile (1–4).
    #[arg(long = "miner.hashcat.workload.profile", default_value_t = 3)]
    hashcat_profile: u8,
    /// Extra hashcat arguments (e.g. `-O`).
    #[arg(long = "miner.hashcat.extended.options", default_value = "", allow_hyphen_values = true)]
    hashcat_options: String,
    /// Difficulty of the end-to-end comparison.
    #[arg(long = "e2e.difficulty", default_value_t = 7)]
    e2e_difficulty: u8,
    /// Runs of the end-to-end comparison.
    #[arg(long = "e2e.runs", default_value_t = 3)]
    e2e_runs: u32,
    /// Seconds of the raw hash-rate measurement.
    #[arg(long = "raw.seconds", default_value_t = 3.0)]
    raw_seconds: f64,
    /// Seed of the challenges (default: random), for comparable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let difficulties = bench::parse_difficulties(&args.difficulties).map_err(anyhow::Error::msg)?;
    let config = BenchConfig {
        difficulties,
        repetitions: args.repetitions,
        solver: ganglion_compute::solver::SolverConfig { threads: args.threads.unwrap_or(0), kernel: kernel(&args.kernel), max_hash_rate: None },
        hashcat: (!args.no_hashcat).then(|| HashcatConfig {
            path: args.hashcat_path.clone(),
            workload_profile: args.hashcat_profile,
            extended_options: args.hashcat_options.clone(),
            device_types: None,
        }),
        e2e_difficulty: args.e2e_difficulty.clamp(1, 12),
        e2e_runs: args.e2e_runs,
        raw_seconds: args.raw_seconds,
        timeout_s: 30.0,
        seed: args.seed,
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(200));
    let progress = Arc::new(spinner);
    let shown = Arc::clone(&progress);
    let report = runtime()?.block_on(bench::run(&config, move |line| {
        shown.set_message(line.to_string());
        shown.println(line);
    }))?;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
