//! Dishonest compute miners, built on the production miner (`ganglion_compute::miner`)
//! through its [`MinerParts`] seams; the cheating lives here only.
//!
//! | strategy | what it does | what stops it |
//! |---|---|---|
//! | `false-specs` | serves specs claiming GPUs (H100s) and a working sandbox (`has_docker`); solves challenges honestly with the CPU solver | GPU probes: a GPU claim with a CPU-class rate fails them (`false_specs`) and is paid nothing; `has_docker` is never paid on a claim |
//! | `fake-allocation` | claims a sandbox, accepts every reservation with a sealed, freshly made host key but runs no SSH server, answers every check "running", and does no challenge work ("allocated") | the validator proves its own reservations alive over SSH (`allocation_unreachable` counts as a failed challenge); third-party reservations are not paid |
//! | `sybil` | one solver shared by N hotkeys, each with its own axon on its own address | the score is quality × work: the challenges solved by the round's common deadline, each solved one replaced by a fresh one so that every miner hashes until the deadline, searched one after another: N parts add up to at most one machine (in expectation, at equal difficulty, `ganglion_compute::scoring`), each with a lower success rate |
//!
//! [`run`] is the process entry point (`ganglion-redteam compute …`); [`spawn`] starts a
//! strategy in-process (tests).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ganglion_chain::Chain;
use ganglion_compute::config::ComputeConfig;
use ganglion_compute::miner::{self, AllocateService, ChallengeSolver, MinerHandle, MinerParts, SpecsSource};
use ganglion_compute::pow::ChallengeSpec;
use ganglion_compute::protocol::{AllocateOutput, AllocateRequest};
use ganglion_compute::seal::{self, AccessInfo};
use ganglion_compute::solver::{Kernel, Solver, SolverConfig};
use ganglion_compute::specs::{GpuDetail, Specs};
use ganglion_compute::{ComputeError, Result as ComputeResult};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_neuron::Shutdown;

/// A dishonest compute strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Claims GPUs and a sandbox it does not have.
    FalseSpecs,
    /// Claims to be allocated and answers allocation queries without a sandbox.
    FakeAllocation,
    /// One solver behind several hotkeys.
    Sybil,
}

impl Strategy {
    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::FalseSpecs => "false-specs",
            Strategy::FakeAllocation => "fake-allocation",
            Strategy::Sybil => "sybil",
        }
    }
}

/// `ganglion-redteam compute`: btcli's flag names where they exist.
#[derive(Debug, Clone, clap::Args)]
pub struct ComputeArgs {
    /// Which dishonest strategy to run.
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Wallet name (the directory under the wallets path).
    #[arg(long = "wallet.name", env = "BT_WALLET_NAME", default_value = "default")]
    pub wallet_name: String,
    /// Hotkey name (false-specs and fake-allocation; sybil uses `--sybil.hotkeys`).
    #[arg(long = "wallet.hotkey", env = "BT_WALLET_HOTKEY", default_value = "default")]
    pub wallet_hotkey: String,
    /// Where wallets live.
    #[arg(long = "wallet.path", env = "BT_WALLET_PATH", default_value = "~/.bittensor/wallets")]
    pub wallet_path: PathBuf,
    /// Read keyfile passwords from the first line of this file (else `BT_PW_…`).
    #[arg(long = "password-file", env = "GANGLION_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Subnet id.
    #[arg(long, default_value_t = 27)]
    pub netuid: u16,
    /// The chain's HTTP endpoint.
    #[arg(long = "subtensor.chain_endpoint", alias = "subtensor.network", default_value = "http://127.0.0.1:9944")]
    pub chain_endpoint: String,
    /// Address the axon listens on (and publishes).
    #[arg(long = "axon.ip", default_value = "127.0.0.1")]
    pub axon_ip: IpAddr,
    /// Port of the axon (0: a free one; with several sybil hotkeys each gets a free port).
    #[arg(long = "axon.port", default_value_t = 0)]
    pub axon_port: u16,
    /// Where state and status live.
    #[arg(long = "data-dir", default_value = "~/.ganglion/redteam/compute")]
    pub data_dir: PathBuf,
    /// Solver threads (0: all cores).
    #[arg(long = "miner.threads", default_value_t = 0)]
    pub threads: usize,
    /// Cap on the solver's hashes per second (the same cap an honest miner of equal
    /// hardware runs with, for comparisons).
    #[arg(long = "miner.max_hash_rate")]
    pub max_hash_rate: Option<u64>,
    /// How long the miner works on one challenge.
    #[arg(long = "miner.challenge_timeout", default_value = "30s", value_parser = ganglion_neuron::config::parse_duration)]
    pub challenge_timeout: Duration,
    /// false-specs: GPUs claimed.
    #[arg(long = "false_specs.gpus", default_value_t = 8)]
    pub gpus: u32,
    /// fake-allocation: the SSH port put in the sealed access (nothing listens there).
    #[arg(long = "fake_allocation.ssh_port", default_value_t = 4444)]
    pub fake_ssh_port: u16,
    /// sybil: hotkey names of the wallet, one axon each.
    #[arg(long = "sybil.hotkeys", value_delimiter = ',')]
    pub sybil_hotkeys: Vec<String>,
    /// sybil: the address of each hotkey's axon, in order (default 127.0.0.2, .3, …).
    #[arg(long = "sybil.ips", value_delimiter = ',')]
    pub sybil_ips: Vec<IpAddr>,
}

/// What [`spawn`] needs besides the keys: the miners' base configuration and the
/// strategy's own settings.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Base miner configuration (netuid, data dir, axon, solver).
    pub config: ComputeConfig,
    /// false-specs: GPUs claimed.
    pub gpus: u32,
    /// fake-allocation: SSH port in the sealed access.
    pub fake_ssh_port: u16,
    /// sybil: one axon address per hotkey (missing ones: 127.0.0.2, .3, …).
    pub sybil_ips: Vec<IpAddr>,
}

/// A running strategy: its miners.
#[derive(Debug)]
pub struct Adversary {
    /// The strategy.
    pub strategy: Strategy,
    /// One miner per hotkey.
    pub miners: Vec<MinerHandle>,
}

impl Adversary {
    /// Stops every miner.
    pub async fn shutdown(self) {
        for miner in self.miners {
            miner.shutdown().await;
        }
    }

    /// Waits until every miner stopped (after the shutdown token given to [`spawn`] fired).
    pub async fn wait(self) {
        for miner in self.miners {
            miner.wait().await;
        }
    }
}

/// Claims GPUs and/or a sandbox on top of what was measured.
#[derive(Debug, Clone, Copy)]
pub struct FalseClaims {
    /// GPUs claimed (0: leave the measured ones).
    pub gpus: u32,
    /// Claim `has_docker`.
    pub docker: bool,
}

impl SpecsSource for FalseClaims {
    fn specs(&self, mut measured: Specs) -> Specs {
        if self.gpus > 0 {
            measured.gpu.count = self.gpus;
            measured.gpu.capacity = 81_559 * u64::from(self.gpus);
            measured.gpu.details = (0..self.gpus).map(|_| GpuDetail { name: "NVIDIA H100 80GB HBM3".into(), capacity: 81_559 }).collect();
            measured.gpu.graphics_speed = 1980;
            measured.gpu.memory_speed = 2619;
        }
        if self.docker {
            measured.has_docker = true;
            measured.container_runtimes = vec!["docker".into()];
        }
        measured
    }
}

/// Accepts every reservation with a sealed, fresh host key but runs no SSH server; every
/// check and change says yes.
#[derive(Debug)]
pub struct FakeAllocations {
    /// The port put in the access information.
    pub port: u16,
}

fn fake_host_key() -> String {
    ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .ok()
        .and_then(|key| key.public_key().to_openssh().ok())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl AllocateService for FakeAllocations {
    async fn handle(&self, _caller: &PublicKey, request: AllocateRequest) -> AllocateOutput {
        let running = serde_json::json!({ "running": true, "paused": false, "port": self.port });
        let yes = AllocateOutput { status: true, port: Some(self.port), allocation: Some(running), ..AllocateOutput::default() };
        match request {
            AllocateRequest::Reserve { timeline_seconds, seal_to, .. } => {
                let info = AccessInfo {
                    allocation_id: uuid::Uuid::new_v4().simple().to_string(),
                    username: "root".into(),
                    host: None,
                    port: self.port,
                    host_key: fake_host_key(),
                    host_key_fingerprint: String::new(),
                    expires_at_ms: ganglion_core::clock::now_ms().saturating_add(timeline_seconds.saturating_mul(1000)),
                    version: env!("CARGO_PKG_VERSION").into(),
                };
                AllocateOutput { info: seal::seal(&info, &seal_to).ok(), ..yes }
            }
            _ => yes,
        }
    }
}

/// Does no challenge work: "busy, allocated".
#[derive(Debug, Clone, Copy)]
pub struct ClaimsAllocated;

#[async_trait::async_trait]
impl ChallengeSolver for ClaimsAllocated {
    async fn solve(&self, _spec: &ChallengeSpec, _deadline: Instant) -> ComputeResult<String> {
        Err(ComputeError::Busy { until_ms: ganglion_core::clock::now_ms().saturating_add(86_400_000) })
    }
}

/// Starts `strategy` with `hotkeys` (one for false-specs and fake-allocation, N ≥ 2 for
/// sybil) on `chain`, until `shutdown` (or [`Adversary::shutdown`]).
pub async fn spawn(strategy: Strategy, setup: &Setup, hotkeys: Vec<Keypair>, chain: Arc<dyn Chain>, shutdown: Option<Shutdown>) -> anyhow::Result<Adversary> {
    let data_dir = setup.config.data_dir();
    let mut miners = Vec::new();
    match strategy {
        Strategy::FalseSpecs | Strategy::FakeAllocation => {
            let [hotkey] = <[Keypair; 1]>::try_from(hotkeys).map_err(|keys| anyhow::anyhow!("{} takes one hotkey, not {}", strategy.name(), keys.len()))?;
            let parts = match strategy {
                Strategy::FalseSpecs => MinerParts { specs: Some(Arc::new(FalseClaims { gpus: setup.gpus.max(1), docker: true })), ..MinerParts::default() },
                _ => MinerParts {
                    specs: Some(Arc::new(FalseClaims { gpus: 0, docker: true })),
                    allocate: Some(Arc::new(FakeAllocations { port: setup.fake_ssh_port })),
                    challenge: Some(Arc::new(ClaimsAllocated)),
                    ..MinerParts::default()
                },
            };
            let mut config = setup.config.clone();
            config.neuron.data_dir = Some(data_dir.join(strategy.name()));
            let miner = miner::spawn_with(&config, hotkey, chain, shutdown, parts).await.with_context(|| format!("starting {}", strategy.name()))?;
            miners.push(miner);
        }
        Strategy::Sybil => {
            anyhow::ensure!(hotkeys.len() >= 2, "sybil needs at least two hotkeys (--sybil.hotkeys), got {}", hotkeys.len());
            let solver = Arc::new(Solver::new(&setup.config.miner.solver).context("the shared solver")?);
            for (i, hotkey) in hotkeys.into_iter().enumerate() {
                let mut config = setup.config.clone();
                config.neuron.data_dir = Some(data_dir.join(format!("sybil-{i}")));
                config.axon.ip = setup.sybil_ips.get(i).copied().unwrap_or(IpAddr::from([127, 0, 0, (i + 2).min(254) as u8]));
                if i > 0 {
                    config.axon.port = 0;
                }
                let parts = MinerParts { solver: Some(Arc::clone(&solver)), ..MinerParts::default() };
                let miner = miner::spawn_with(&config, hotkey, chain.clone(), shutdown.clone(), parts).await.with_context(|| format!("starting sybil hotkey {i}"))?;
                miners.push(miner);
            }
        }
    }
    tracing::info!(target: "redteam::compute", strategy = strategy.name(), miners = miners.len(), "dishonest compute miner serving");
    Ok(Adversary { strategy, miners })
}

/// The base miner configuration of `args`.
pub fn setup(args: &ComputeArgs) -> Setup {
    let mut config = ComputeConfig { netuid: args.netuid, ..ComputeConfig::default() };
    config.neuron.data_dir = Some(ganglion_core::wallet::expand_home(&args.data_dir));
    config.axon.ip = args.axon_ip;
    config.axon.port = args.axon_port;
    config.miner.solver = SolverConfig { threads: args.threads, kernel: Kernel::Auto, max_hash_rate: args.max_hash_rate };
    config.miner.challenge_timeout = args.challenge_timeout;
    config.miner.sandbox.enabled = false;
    Setup { config, gpus: args.gpus, fake_ssh_port: args.fake_ssh_port, sybil_ips: args.sybil_ips.clone() }
}

/// Runs the strategy until SIGINT/SIGTERM.
pub async fn run(args: ComputeArgs) -> anyhow::Result<()> {
    let chain: Arc<dyn Chain> = Arc::new(ganglion_chain::client::LocalChain::new(&args.chain_endpoint).with_context(|| format!("chain at {}", args.chain_endpoint))?);
    let passwords = ganglion_core::password::Passwords { file: args.password_file.clone(), allow_prompt: false };
    let names: Vec<String> = match args.strategy {
        Strategy::Sybil => args.sybil_hotkeys.clone(),
        _ => vec![args.wallet_hotkey.clone()],
    };
    let mut hotkeys = Vec::new();
    for name in &names {
        let wallet = ganglion_core::wallet::Wallet::new(&args.wallet_path, &args.wallet_name, name)?;
        hotkeys.push(wallet.hotkey(&passwords).with_context(|| format!("hotkey {name} of wallet {}", args.wallet_name))?);
    }
    let shutdown = Shutdown::on_signal();
    let adversary = spawn(args.strategy, &setup(&args), hotkeys, chain, Some(shutdown)).await?;
    adversary.wait().await;
    Ok(())
}
