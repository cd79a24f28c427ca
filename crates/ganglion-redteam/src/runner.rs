//! `ganglion-redteam run` (and `ganglion redteam`, which only starts this binary): a local
//! chain, the real inference validator, honest miners of equal hardware and the chosen
//! strategies, for N epochs; then a table (or `--json`) of what each strategy earned
//! relative to an honest miner, the causes the validator recorded for it, and the honest
//! miners' false-positive rate.
//!
//! ```text
//!  model pull ─► ganglion chain serve ─► wallets, subnet, registrations, stake (Chain trait)
//!     ─► ganglion validator inference            (the real validator, its records in SQLite)
//!     ─► ganglion-redteam inference --strategy honest      × --honest   (each its own engine)
//!     ─► ganglion-redteam inference --strategy <s>         per strategy (each its own engine)
//!     ─► every epoch: emission per hotkey from the metagraph, summed over the epochs that
//!        had weights in them ─► records: requests, verified, causes per miner
//! ```
//!
//! Reward share = the strategy's emission over the run (all its hotkeys: a Sybil's total)
//! divided by the mean emission of the honest miners. Each strategy runs on one engine with
//! one compute thread, as each honest miner does: equal hardware.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use ganglion_chain::{Chain, ChainError, HyperparamUpdate, LocalChain, Metagraph, RAO_PER_TAO, u16_to_float};
use ganglion_core::keys::Keypair;
use ganglion_core::wallet::{Protection, Wallet};
use ganglion_neuron::config::parse_duration;
use serde::Serialize;
use serde_json::Value;

use crate::inference::Strategy;
use crate::inference::fixture::Perturbation;
use crate::supervisor::{Supervisor, log_tail, sibling};

/// `ganglion-redteam run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Strategies to run: a comma-separated list, or `all`.
    #[arg(long, default_value = "all")]
    pub strategies: String,
    /// Epochs with weights to run for.
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Honest miners (the reference of equal hardware).
    #[arg(long, default_value_t = 2)]
    pub honest: usize,
    /// Hotkeys of the Sybil.
    #[arg(long, default_value_t = 3)]
    pub sybils: usize,
    /// Epochs of honest work before `go-dark` stops answering (default: a third of --epochs).
    #[arg(long = "go-dark.epochs")]
    pub dark_after: Option<u32>,
    /// Tempo of the subnet in blocks (also the validator's epoch length).
    #[arg(long, default_value_t = 20)]
    pub tempo: u16,
    /// Block time of the local chain.
    #[arg(long = "block-time", default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Longest completion the validator asks for (keeps a CPU-only run quick).
    #[arg(long = "max-tokens", default_value_t = 48)]
    pub max_tokens: u32,
    /// Where the chain, wallets, records and logs of the run live (wiped at start unless --keep).
    #[arg(long = "data-dir", default_value = "~/.ganglion/redteam")]
    pub data_dir: PathBuf,
    /// Keep the previous run's data directory instead of wiping it.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The `ganglion` executable (default: the one next to this executable).
    #[arg(long, env = "GANGLION_BIN")]
    pub ganglion: Option<PathBuf>,
    /// Give up after this long (default: no limit).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

impl RunArgs {
    /// The strategies asked for, in the runner's order.
    pub fn strategies(&self) -> anyhow::Result<Vec<Strategy>> {
        if self.strategies.trim() == "all" {
            return Ok(Strategy::DISHONEST.to_vec());
        }
        let mut out = Vec::new();
        for name in self.strategies.split(',').filter(|s| !s.trim().is_empty()) {
            let strategy = Strategy::parse(name).with_context(|| {
                let known: Vec<&str> = Strategy::DISHONEST.iter().map(|s| s.name()).collect();
                format!("unknown strategy `{name}` (known: {}, or all)", known.join(", "))
            })?;
            if !out.contains(&strategy) {
                out.push(strategy);
            }
        }
        Ok(out)
    }
}

/// One strategy's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyRow {
    /// Strategy name.
    pub strategy: String,
    /// Subnet kind.
    pub subnet: String,
    /// Its wallets (hotkeys).
    pub wallets: Vec<String>,
    /// Emission over the counted epochs, all its hotkeys, in TAO.
    pub reward_tao: f64,
    /// `reward_tao` / the mean honest miner's.
    pub share_of_honest: Option<f64>,
    /// Emission in the last counted epoch (TAO), all its hotkeys.
    pub final_epoch_tao: f64,
    /// `final_epoch_tao` / the mean honest miner's in that epoch: what it earns by the end
    /// (a miner that went dark should be at zero by then).
    pub final_share: Option<f64>,
    /// Incentive at the end (summed over its hotkeys).
    pub incentive: f64,
    /// Requests the validator recorded for it.
    pub requests: u64,
    /// Of which verified.
    pub verified: u64,
    /// Failure causes the validator recorded, most frequent first.
    pub causes: Vec<(String, u64)>,
}

/// The honest miners' false positives.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FalsePositives {
    /// Honest requests that failed (any cause).
    pub failed: u64,
    /// Honest requests recorded.
    pub requests: u64,
    /// failed / requests.
    pub rate: Option<f64>,
    /// Their causes.
    pub causes: Vec<(String, u64)>,
}

/// The whole run's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Epochs with weights counted.
    pub epochs: u32,
    /// Last block seen.
    pub block: u64,
    /// The honest miners (one row each, strategy `honest`).
    pub honest: Vec<StrategyRow>,
    /// The mean honest reward (TAO).
    pub honest_mean_tao: f64,
    /// One row per strategy.
    pub strategies: Vec<StrategyRow>,
    /// The honest false-positive rate.
    pub false_positives: FalsePositives,
    /// Children that did not stop cleanly.
    pub unclean_exits: Vec<String>,
    /// Where the logs are.
    pub logs: String,
}

impl Report {
    /// The row of `strategy`.
    pub fn row(&self, strategy: &str) -> Option<&StrategyRow> {
        self.strategies.iter().find(|r| r.strategy == strategy)
    }

    /// The table printed at the end.
    pub fn render(&self) -> String {
        let mut out = format!(
            "red team: {} epochs with weights (block {}), {} honest miners, mean honest reward {:.4} τ\n{:<18} {:<10} {:>7} {:>10} {:>9} {:>11} {:>8} {:>8}  {}\n",
            self.epochs,
            self.block,
            self.honest.len(),
            self.honest_mean_tao,
            "strategy",
            "subnet",
            "hotkeys",
            "reward τ",
            "share",
            "final share",
            "requests",
            "verified",
            "causes recorded"
        );
        for row in self.honest.iter().chain(&self.strategies) {
            let causes: Vec<String> = row.causes.iter().map(|(c, n)| format!("{c}×{n}")).collect();
            out.push_str(&format!(
                "{:<18} {:<10} {:>7} {:>10.4} {:>9} {:>11} {:>8} {:>8}  {}\n",
                row.strategy,
                row.subnet,
                row.wallets.len(),
                row.reward_tao,
                percent(row.share_of_honest),
                percent(row.final_share),
                row.requests,
                row.verified,
                causes.join(", ")
            ));
        }
        let fp = &self.false_positives;
        out.push_str(&format!(
            "honest false positives: {} of {} requests{}{}\n",
            fp.failed,
            fp.requests,
            fp.rate.map_or_else(String::new, |r| format!(" ({:.2}%)", r * 100.0)),
            if fp.causes.is_empty() {
                String::new()
            } else {
                format!(": {}", fp.causes.iter().map(|(c, n)| format!("{c}×{n}")).collect::<Vec<_>>().join(", "))
            }
        ));
        if !self.unclean_exits.is_empty() {
            out.push_str(&format!("not stopped cleanly: {}\n", self.unclean_exits.join(", ")));
        }
        out.push_str(&format!("logs: {}\n", self.logs));
        out
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".into(), |s| format!("{:.2}%", s * 100.0))
}

/// Marker that tells a red-team data directory from anything else before wiping it.
const MARKER: &str = ".ganglion-redteam";
const VALIDATOR_STAKE: u64 = 1_000 * RAO_PER_TAO;
const FUNDS: u64 = 5_000 * RAO_PER_TAO;

fn s(text: impl Into<String>) -> String {
    text.into()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn prepare_data_dir(dir: &Path, keep: bool) -> anyhow::Result<()> {
    if dir.exists() && !keep {
        if dir.join(MARKER).exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
        } else if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
            bail!("{} exists and is not a red-team data directory; pass another --data-dir (it is wiped at every start)", dir.display());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"ganglion redteam data; wiped by the next run\n").with_context(|| format!("writing into {}", dir.display()))?;
    Ok(())
}

fn create_wallet(wallets: &Path, name: &str) -> anyhow::Result<(Keypair, Keypair)> {
    let wallet = Wallet::new(wallets, name, "default")?;
    let coldkey = Keypair::generate(12)?;
    let hotkey = Keypair::generate(12)?;
    wallet.write_coldkey(&coldkey, Protection::Plain, false)?;
    wallet.write_hotkey(&hotkey, Protection::Plain, false)?;
    Ok((coldkey, hotkey))
}

/// One registered wallet of the run.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    /// `validator`, `honest` or a strategy name.
    role: String,
    coldkey: Keypair,
    hotkey: Keypair,
}

async fn wait_for_chain(chain: &dyn Chain, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match chain.info().await {
            Ok(_) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err).context(format!("the local chain did not answer within {limit:?}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn register(chain: &dyn Chain, netuid: u16, member: &Member) -> anyhow::Result<()> {
    let block_time = Duration::from_millis(chain.info().await?.block_time_ms.max(50));
    for _ in 0..10 {
        match chain.register(&member.coldkey, netuid, &member.hotkey.public()).await {
            Err(ChainError::Rejected { name, .. }) if name == "TooManyRegistrationsThisBlock" => tokio::time::sleep(block_time).await,
            other => {
                other.with_context(|| format!("registering {}", member.name))?;
                return Ok(());
            }
        }
    }
    bail!("the chain kept refusing registrations for 10 blocks")
}

/// Runs the red team and returns the report (the caller prints it).
pub async fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let strategies = args.strategies()?;
    let data_dir = ganglion_core::wallet::expand_home(&args.data_dir);
    prepare_data_dir(&data_dir, args.keep)?;
    let ganglion = match &args.ganglion {
        Some(path) => path.clone(),
        None => sibling("ganglion")?,
    };
    let redteam = std::env::current_exe().context("finding this executable")?;
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };

    // The model, in the foreground (its progress goes to stderr).
    let status = std::process::Command::new(&ganglion).args(["model", "pull", "smollm2"]).stdout(std::io::stderr()).status().context("running `ganglion model pull smollm2`")?;
    if !status.success() {
        bail!("could not fetch the default model; `ganglion model pull smollm2` retries it");
    }

    // The other-model fixture before anything starts, so that it serves from the first epoch
    // (its process finds it in the model cache).
    if strategies.contains(&Strategy::OtherModel) {
        say(s("writing the other-model fixture (once; kept in the model cache)"));
        let models = ganglion_engine::store::models_dir()?;
        let source = ganglion_engine::store::resolve_model("smollm2", &models)?;
        tokio::task::spawn_blocking(move || crate::inference::fixture::ensure_perturbed(&source, &models, Perturbation::default())).await??;
    }

    let mut supervisor = Supervisor::new(&data_dir.join("logs"))?;
    let outcome = drive(args, &strategies, &data_dir, &ganglion, &redteam, &mut supervisor, &say).await;
    let unclean = supervisor.shutdown().await;
    let mut report = outcome?;
    report.unclean_exits = unclean;
    Ok(report)
}

async fn drive(
    args: &RunArgs,
    strategies: &[Strategy],
    data_dir: &Path,
    ganglion: &Path,
    redteam: &Path,
    supervisor: &mut Supervisor,
    say: &dyn Fn(String),
) -> anyhow::Result<Report> {
    let wallets = data_dir.join("wallets");
    let records_url = ganglion_records::Records::default_url(data_dir);
    let chain_port = free_port()?;
    let chain_url = format!("http://127.0.0.1:{chain_port}");
    supervisor.spawn(
        "chain",
        ganglion,
        &[
            s("chain"),
            s("serve"),
            s("--data-dir"),
            data_dir.join("chain").display().to_string(),
            s("--port"),
            chain_port.to_string(),
            s("--block-time"),
            format!("{}ms", args.block_time.as_millis()),
            s("--tempo"),
            args.tempo.to_string(),
        ],
    )?;
    let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&chain_url)?);
    wait_for_chain(chain.as_ref(), Duration::from_secs(30)).await.with_context(|| log_tail(&supervisor.log_path("chain"), 10))?;

    // Wallets, the subnet, registrations.
    let owner = create_wallet(&wallets, "owner")?;
    chain.faucet(&owner.0, FUNDS).await.context("funding the subnet owner")?;
    let receipt = chain.register_network(&owner.0, &owner.1.public(), None).await.context("creating a subnet")?;
    let netuid = receipt.netuid.context("the chain did not say which netuid it created")?;
    let update = HyperparamUpdate {
        tempo: Some(args.tempo),
        weights_rate_limit: Some(u64::from(args.tempo / 2)),
        max_registrations_per_block: Some(32),
        serving_rate_limit: Some(0),
        ..HyperparamUpdate::default()
    };
    chain.set_hyperparams(&owner.0, netuid, update).await.context("tuning the subnet")?;
    let mut plan: Vec<(String, String)> = vec![(s("validator"), s("validator"))];
    for i in 1..=args.honest.max(1) {
        plan.push((format!("honest-{i}"), s("honest")));
    }
    for strategy in strategies {
        let n = strategy.hotkeys(args.sybils);
        for i in 0..n {
            let name = if n == 1 { strategy.name().to_string() } else { format!("{}-{}", strategy.name(), i + 1) };
            plan.push((name, strategy.name().to_string()));
        }
    }
    let mut members = Vec::new();
    for (name, role) in plan {
        let (coldkey, hotkey) = create_wallet(&wallets, &name)?;
        chain.faucet(&coldkey, FUNDS).await.with_context(|| format!("funding {name}"))?;
        members.push(Member { name, role, coldkey, hotkey });
    }
    for member in &members {
        register(chain.as_ref(), netuid, member).await?;
    }
    let validator = &members[0];
    chain.add_stake(&validator.coldkey, netuid, &validator.hotkey.public(), VALIDATOR_STAKE).await.context("staking the validator")?;
    say(format!("chain {chain_url}, subnet {netuid}, {} wallets under {}", members.len(), wallets.display()));

    // The real validator.
    let metrics_port = free_port()?;
    let common = |names: &[String]| {
        vec![
            s("--wallet.path"),
            wallets.display().to_string(),
            s("--wallet.name"),
            names.join(","),
            s("--netuid"),
            netuid.to_string(),
            s("--subtensor.network"),
            chain_url.clone(),
        ]
    };
    let mut argv = vec![
        s("validator"),
        s("inference"),
        s("--metrics.port"),
        metrics_port.to_string(),
        s("--neuron.epoch_length"),
        args.tempo.to_string(),
        s("--neuron.max_tokens"),
        args.max_tokens.to_string(),
        s("--neuron.data_dir"),
        data_dir.join("state").join("validator").display().to_string(),
        s("--database.url"),
        records_url.clone(),
    ];
    argv.extend(common(&[s("validator")]));
    supervisor.spawn("validator", ganglion, &argv)?;

    // Honest miners and the strategies: this binary, one process each.
    let honest_victim = members.iter().find(|m| m.role == "honest").map(|m| m.hotkey.public().to_ss58());
    let dark_after = args.dark_after.unwrap_or((args.epochs / 3).max(1));
    let mut roles: Vec<String> = vec![];
    for member in members.iter().skip(1) {
        if !roles.contains(&member.role) || member.role == "honest" {
            roles.push(member.role.clone());
        }
    }
    let mut honest_index = 0;
    for role in &roles {
        let (child, names): (String, Vec<String>) = if role == "honest" {
            honest_index += 1;
            let name = format!("honest-{honest_index}");
            (name.clone(), vec![name])
        } else {
            (role.clone(), members.iter().filter(|m| &m.role == role).map(|m| m.name.clone()).collect())
        };
        let mut argv = vec![s("inference"), s("--strategy"), role.clone()];
        argv.extend(common(&names));
        match role.as_str() {
            "relay" => argv.extend([s("--relay.victim"), honest_victim.clone().context("the relay needs an honest miner")?]),
            "go-dark" => argv.extend([s("--go-dark.epochs"), dark_after.to_string()]),
            _ => {}
        }
        supervisor.spawn(&child, redteam, &argv)?;
    }
    say(format!("validator, {} honest miners and {} strategies started (logs: {})", args.honest.max(1), strategies.len(), data_dir.join("logs").display()));

    let status_url = format!("http://127.0.0.1:{metrics_port}/status");
    let (epochs, block, rewards, incentives, last) = watch(args, chain.as_ref(), netuid, supervisor, &members, &status_url, say).await?;

    // What the validator recorded, per hotkey.
    let records = ganglion_records::Records::open(&records_url).await.context("opening the validator's records")?;
    let stats = records.miner_stats(netuid, 0).await.context("reading the validator's records")?;
    records.close().await;
    let by_hotkey: HashMap<String, ganglion_records::MinerStats> = stats.into_iter().map(|m| (m.hotkey.clone(), m)).collect();
    let row = |label: &str, group: &[&Member]| {
        let mut causes: BTreeMap<String, u64> = BTreeMap::new();
        let (mut requests, mut verified, mut reward, mut incentive, mut final_epoch) = (0, 0, 0.0, 0.0, 0.0);
        for m in group {
            let hotkey = m.hotkey.public().to_ss58();
            reward += rewards.get(&hotkey).copied().unwrap_or(0.0);
            final_epoch += last.get(&hotkey).copied().unwrap_or(0.0);
            incentive += incentives.get(&hotkey).copied().unwrap_or(0.0);
            if let Some(stats) = by_hotkey.get(&hotkey) {
                requests += stats.stats.n;
                verified += stats.stats.verified;
                for cause in &stats.causes {
                    *causes.entry(cause.cause.clone()).or_default() += cause.n;
                }
            }
        }
        let mut causes: Vec<(String, u64)> = causes.into_iter().collect();
        causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        StrategyRow {
            strategy: label.to_string(),
            subnet: s("inference"),
            wallets: group.iter().map(|m| m.name.clone()).collect(),
            reward_tao: reward,
            share_of_honest: None,
            final_epoch_tao: final_epoch,
            final_share: None,
            incentive,
            requests,
            verified,
            causes,
        }
    };
    let honest: Vec<StrategyRow> = members.iter().filter(|m| m.role == "honest").map(|m| row("honest", &[m])).collect();
    let honest_mean = honest.iter().map(|r| r.reward_tao).sum::<f64>() / honest.len().max(1) as f64;
    let honest_final = honest.iter().map(|r| r.final_epoch_tao).sum::<f64>() / honest.len().max(1) as f64;
    let shares = |r: StrategyRow| StrategyRow {
        share_of_honest: (honest_mean > 0.0).then(|| r.reward_tao / honest_mean),
        final_share: (honest_final > 0.0).then(|| r.final_epoch_tao / honest_final),
        ..r
    };
    let honest: Vec<StrategyRow> = honest.into_iter().map(shares).collect();
    let mut rows = Vec::new();
    for strategy in strategies {
        let group: Vec<&Member> = members.iter().filter(|m| m.role == strategy.name()).collect();
        rows.push(shares(row(strategy.name(), &group)));
    }
    let mut fp = FalsePositives::default();
    let mut fp_causes: BTreeMap<String, u64> = BTreeMap::new();
    for r in &honest {
        fp.requests += r.requests;
        fp.failed += r.requests.saturating_sub(r.verified);
        for (c, n) in &r.causes {
            *fp_causes.entry(c.clone()).or_default() += n;
        }
    }
    fp.rate = (fp.requests > 0).then(|| fp.failed as f64 / fp.requests as f64);
    fp.causes = fp_causes.into_iter().collect();
    Ok(Report {
        epochs,
        block,
        honest,
        honest_mean_tao: honest_mean,
        strategies: rows,
        false_positives: fp,
        unclean_exits: Vec::new(),
        logs: data_dir.join("logs").display().to_string(),
    })
}

/// Epochs counted, last block, emission per hotkey over the run, incentive at the end,
/// emission per hotkey in the last counted epoch.
type Watched = (u32, u64, HashMap<String, f64>, HashMap<String, f64>, HashMap<String, f64>);

/// Follows blocks until `--epochs` epochs had weights in them; sums each hotkey's emission
/// over those epochs.
async fn watch(
    args: &RunArgs,
    chain: &dyn Chain,
    netuid: u16,
    supervisor: &mut Supervisor,
    members: &[Member],
    status_url: &str,
    say: &dyn Fn(String),
) -> anyhow::Result<Watched> {
    let mut blocks = chain.subscribe_blocks().await.context("subscribing to blocks")?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let miners: Vec<String> = members.iter().filter(|m| m.role != "validator").map(|m| m.hotkey.public().to_ss58()).collect();
    let names: HashMap<String, String> = members.iter().map(|m| (m.hotkey.public().to_ss58(), m.name.clone())).collect();
    let (mut epochs, mut last_block) = (0u32, 0u64);
    let mut rewards: HashMap<String, f64> = HashMap::new();
    let mut incentives: HashMap<String, f64> = HashMap::new();
    let mut last: HashMap<String, f64> = HashMap::new();
    loop {
        tokio::select! {
            signal = ganglion_neuron::signals::wait_for_signal() => {
                say(format!("{signal}: stopping early"));
                break;
            }
            _ = ticker.tick() => {
                supervisor.check()?;
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    bail!("the run did not reach {} epochs with weights before --timeout ({} so far)", args.epochs, epochs);
                }
            }
            block = blocks.next() => {
                let header = match block {
                    Some(Ok(header)) => header,
                    Some(Err(err)) => return Err(err).context("the chain's block stream failed"),
                    None => bail!("the chain closed its block stream"),
                };
                last_block = header.number;
                if !header.epochs.contains(&netuid) {
                    continue;
                }
                let metagraph = Metagraph::fetch(chain, netuid).await?;
                let weighted = metagraph.neurons().iter().any(|n| miners.contains(&n.hotkey.to_ss58()) && n.incentive > 0);
                if !weighted {
                    say(format!("block {}: waiting for the validator's first weights", header.number));
                    continue;
                }
                epochs += 1;
                let mut line = Vec::new();
                for neuron in metagraph.neurons() {
                    let hotkey = neuron.hotkey.to_ss58();
                    if !miners.contains(&hotkey) {
                        continue;
                    }
                    *rewards.entry(hotkey.clone()).or_default() += neuron.emission_tao();
                    last.insert(hotkey.clone(), neuron.emission_tao());
                    incentives.insert(hotkey.clone(), u16_to_float(neuron.incentive));
                    line.push(format!("{} {:.3}", names.get(&hotkey).map_or("?", String::as_str), u16_to_float(neuron.incentive)));
                }
                say(format!("epoch {epochs}/{} (block {}): incentive {}", args.epochs, header.number, line.join(", ")));
                if epochs >= args.epochs {
                    break;
                }
            }
        }
    }
    // The validator's last view, for the logs of a run that went wrong.
    if let Ok(response) = http.get(status_url).send().await
        && let Ok(doc) = response.json::<Value>().await
    {
        tracing::debug!(target: "redteam", status = %doc, "validator status at the end");
    }
    Ok((epochs, last_block, rewards, incentives, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(strategies: &str) -> RunArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        Cli::parse_from(["x", "--strategies", strategies]).run
    }

    #[test]
    fn strategies_are_parsed_in_order_without_repeats() {
        assert_eq!(args("all").strategies().unwrap(), Strategy::DISHONEST.to_vec());
        assert_eq!(args("usage-lies,random-tokens,usage-lies").strategies().unwrap(), vec![Strategy::UsageLies, Strategy::RandomTokens]);
        assert!(args("bogus").strategies().unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn the_table_names_shares_and_false_positives() {
        let row = |strategy: &str, reward: f64, share: Option<f64>| StrategyRow {
            strategy: strategy.into(),
            subnet: "inference".into(),
            wallets: vec![strategy.into()],
            reward_tao: reward,
            share_of_honest: share,
            final_epoch_tao: reward,
            final_share: share,
            incentive: 0.0,
            requests: 10,
            verified: 0,
            causes: vec![("UNLIKELY_TOKEN".into(), 10)],
        };
        let report = Report {
            epochs: 3,
            honest: vec![row("honest", 2.0, Some(1.0))],
            honest_mean_tao: 2.0,
            strategies: vec![row("random-tokens", 0.0, Some(0.0))],
            false_positives: FalsePositives { failed: 1, requests: 40, rate: Some(0.025), causes: vec![("UNLIKELY_TOKENS".into(), 1)] },
            ..Report::default()
        };
        let table = report.render();
        assert!(table.contains("random-tokens") && table.contains("0.00%") && table.contains("UNLIKELY_TOKEN×10"), "{table}");
        assert!(table.contains("honest false positives: 1 of 40 requests (2.50%)"), "{table}");
        assert_eq!(report.row("random-tokens").map(|r| r.requests), Some(10));
    }
}
