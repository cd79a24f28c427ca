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

use crate::inference::Strategy;
use crate::inference::fixture::Perturbation;
use ganglion_neuron::supervisor::{Supervisor, log_tail, sibling};

/// `ganglion-redteam run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Strategies to run: a comma-separated list, or `all`. Inference: random-tokens,
    /// other-model, cached, selective-refusal, sybil, go-dark, usage-lies, ttft-fake,
    /// early-eos, relay; compute: false-specs, fake-allocation, compute-sybil; validators:
    /// weight-copier, lazy.
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
    /// Epochs of honest work (from its first answer) before `go-dark` stops answering
    /// (default: a third of --epochs).
    #[arg(long = "go-dark.epochs")]
    pub dark_after: Option<u32>,
    /// Engine turns (a prompt chunk or a token) per second of every inference miner's engine,
    /// honest or not: miners sharing this machine's CPU compare as miners on equal hardware
    /// would (unpaced, the one with most streams in flight gets most of the CPU). 0: unpaced.
    #[arg(long, default_value_t = 15.0)]
    pub pace: f64,
    /// How much slower than produced `ttft-fake` releases its real tokens.
    #[arg(long = "ttft.factor", default_value_t = 3.0)]
    pub ttft_factor: f64,
    /// Hash rate (candidates per second) of every compute miner's solver, honest or not, for
    /// the same reason as `--pace`: without a cap, a solver hashes faster in a round in which
    /// the others are idle (e.g. challenged before them), which is the test machine's CPU
    /// being shared, not one miner's hardware being better. 0: uncapped.
    #[arg(long = "hash-rate", default_value_t = 5_000_000)]
    pub hash_rate: u64,
    /// Tempo of the subnet in blocks (also the validator's epoch length).
    #[arg(long, default_value_t = 20)]
    pub tempo: u16,
    /// Block time of the local chain.
    #[arg(long = "block-time", default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Longest completion the validator asks for (keeps a CPU-only run quick).
    #[arg(long = "max-tokens", default_value_t = 48)]
    pub max_tokens: u32,
    /// Requests the inference validator keeps in flight at each miner during a round (its
    /// `--neuron.concurrency`).
    #[arg(long, default_value_t = 2)]
    pub concurrency: u16,
    /// How long the inference validator's rounds send requests (its `--neuron.round_window`).
    #[arg(long = "round-window", default_value = "8s", value_parser = parse_duration)]
    pub round_window: Duration,
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
    /// Turn on commit-reveal of weights on the subnets (what makes weight copying lose).
    #[arg(long = "commit-reveal")]
    pub commit_reveal: bool,
}

impl RunArgs {
    /// The strategies asked for, in the runner's order.
    pub fn strategies(&self) -> anyhow::Result<Vec<Entry>> {
        if self.strategies.trim() == "all" {
            return Ok(Entry::all());
        }
        let mut out = Vec::new();
        for name in self.strategies.split(',').filter(|s| !s.trim().is_empty()) {
            let entry = Entry::parse(name).with_context(|| {
                let known: Vec<String> = Entry::all().into_iter().map(Entry::label).collect();
                format!("unknown strategy `{name}` (known: {}, or all)", known.join(", "))
            })?;
            if !out.contains(&entry) {
                out.push(entry);
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
    /// Emission over the counted epochs, all its hotkeys, in TAO (validators: per 1,000 TAO
    /// of stake, since the honest validator holds more than the dishonest ones together).
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
            "red team: {} epochs with weights (block {}), {} honest inference miners, mean honest reward {:.4} τ\n{:<18} {:<10} {:>7} {:>10} {:>9} {:>11} {:>8} {:>8}  {}\n",
            self.epochs,
            self.block,
            self.honest.iter().filter(|r| r.strategy == "honest" && r.subnet == "inference").count(),
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
            let causes: Vec<String> = row.causes.iter().map(|(c, n)| if *n == 0 { c.clone() } else { format!("{c}×{n}") }).collect();
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
    ganglion_neuron::server::free_loopback_port().context("finding a free port")
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

async fn register(chain: &dyn Chain, member: &Member) -> anyhow::Result<()> {
    let block_time = Duration::from_millis(chain.info().await?.block_time_ms.max(50));
    for _ in 0..10 {
        match chain.register(&member.coldkey, member.netuid, &member.hotkey.public()).await {
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
    if strategies.contains(&Entry::Inference(Strategy::OtherModel)) {
        say(s("writing the other-model fixture (once; kept in the model cache)"));
        let models = ganglion_engine::store::models_dir()?;
        let source = ganglion_engine::store::resolve_model("smollm2", &models)?;
        tokio::task::spawn_blocking(move || crate::inference::fixture::ensure_perturbed(&source, &models, Perturbation::default())).await??;
    }

    let mut supervisor = Supervisor::new(&data_dir.join("logs"), "GANGLION_REDTEAM_LOG")?;
    let outcome = drive(args, &strategies, &data_dir, &ganglion, &redteam, &mut supervisor, &say).await;
    let exits = supervisor.shutdown().await;
    let mut report = outcome?;
    report.unclean_exits = exits.iter().filter(|e| !e.clean()).map(|e| format!("{} ({})", e.name, e.exit)).collect();
    Ok(report)
}

/// One strategy of a run, whatever its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// An inference miner strategy.
    Inference(Strategy),
    /// A compute miner strategy.
    Compute(crate::compute::Strategy),
    /// A dishonest validator (on the inference subnet).
    Validator(crate::validators::Strategy),
}

impl Entry {
    /// Every strategy, in the runner's order.
    pub fn all() -> Vec<Entry> {
        use crate::compute::Strategy as C;
        use crate::validators::Strategy as V;
        let mut all: Vec<Entry> = Strategy::DISHONEST.iter().map(|s| Entry::Inference(*s)).collect();
        all.extend([C::FalseSpecs, C::FakeAllocation, C::Sybil].map(Entry::Compute));
        all.extend([V::WeightCopier, V::Lazy].map(Entry::Validator));
        all
    }

    /// The name in tables and on the command line (`compute-sybil` for the compute Sybil).
    pub fn label(self) -> String {
        match self {
            Entry::Inference(s) => s.name().to_string(),
            Entry::Compute(crate::compute::Strategy::Sybil) => "compute-sybil".into(),
            Entry::Compute(s) => s.name().to_string(),
            Entry::Validator(s) => s.name().to_string(),
        }
    }

    /// The subnet it plays on.
    pub fn subnet(self) -> &'static str {
        if matches!(self, Entry::Compute(_)) { "compute" } else { "inference" }
    }

    /// Parses a name: an inference strategy, `compute:<s>` / `compute-sybil` / a compute
    /// strategy's own name, `validator:<s>` / a validator strategy's own name.
    pub fn parse(name: &str) -> Option<Entry> {
        let name = name.trim();
        let bare = name.strip_prefix("compute:").map(|c| if c == "sybil" { "compute-sybil" } else { c }).or_else(|| name.strip_prefix("validator:")).unwrap_or(name);
        Entry::all().into_iter().find(|e| e.label() == bare)
    }
}

/// One registered wallet (hotkey) of the run.
#[derive(Debug, Clone)]
struct Member {
    /// Wallet name.
    name: String,
    /// Hotkey name in the wallet.
    hotkey_name: String,
    /// `validator`, `honest`, or a strategy's label.
    role: String,
    netuid: u16,
    coldkey: Keypair,
    hotkey: Keypair,
}

impl Member {
    fn ss58(&self) -> String {
        self.hotkey.public().to_ss58()
    }

    fn is_validator(&self) -> bool {
        self.role == "validator" || self.role == "weight-copier" || self.role == "lazy"
    }
}

/// A validator's stake: `VALIDATOR_STAKE` each, except that the honest validator of a subnet
/// with dishonest validators holds one share more than all of them together. Consensus is
/// the stake-weighted median (kappa ½), so dishonest validators holding most of the stake
/// would *be* the consensus (a copier copying a lazy validator's random weights), which says
/// nothing about how they fare next to honest ones. Their dividends are compared per unit
/// of stake ([`per_stake`]).
fn validator_stake(member: &Member, members: &[Member]) -> u64 {
    if member.role != "validator" {
        return VALIDATOR_STAKE;
    }
    let dishonest = members.iter().filter(|m| m.netuid == member.netuid && m.is_validator() && m.role != "validator").count() as u64;
    VALIDATOR_STAKE * (dishonest + 1)
}

/// Emission per unit of stake (in `VALIDATOR_STAKE`s) for validators, as it is for miners.
fn per_stake(member: &Member, members: &[Member], tao: f64) -> f64 {
    if member.is_validator() { tao * VALIDATOR_STAKE as f64 / validator_stake(member, members) as f64 } else { tao }
}

async fn drive(
    args: &RunArgs,
    entries: &[Entry],
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

    // Wallets, subnets, registrations.
    let owner = create_wallet(&wallets, "owner")?;
    chain.faucet(&owner.0, FUNDS).await.context("funding the subnet owner")?;
    let has_compute = entries.iter().any(|e| e.subnet() == "compute");
    let has_validators = entries.iter().any(|e| matches!(e, Entry::Validator(_)));
    let mut netuids = Vec::new();
    for _ in 0..(1 + usize::from(has_compute) + usize::from(has_validators)) {
        let receipt = chain.register_network(&owner.0, &owner.1.public(), None).await.context("creating a subnet")?;
        let netuid = receipt.netuid.context("the chain did not say which netuid it created")?;
        let update = HyperparamUpdate {
            tempo: Some(args.tempo),
            weights_rate_limit: Some(u64::from(args.tempo / 2)),
            max_registrations_per_block: Some(32),
            serving_rate_limit: Some(0),
            commit_reveal_weights_enabled: args.commit_reveal.then_some(true),
            ..HyperparamUpdate::default()
        };
        chain.set_hyperparams(&owner.0, netuid, update).await.context("tuning the subnet")?;
        netuids.push(netuid);
    }
    let netuid = netuids[0];
    let compute_netuid = has_compute.then(|| netuids[1]);
    // Dishonest validators play on an inference subnet of their own (a real validator,
    // honest miners), so that their weights do not pay the miner strategies of the first.
    let validators_netuid = has_validators.then(|| netuids[netuids.len() - 1]);
    // (wallet, hotkey name, role, netuid)
    let mut plan: Vec<(String, String, String, u16)> = vec![(s("validator"), s("default"), s("validator"), netuid)];
    for i in 1..=args.honest.max(1) {
        plan.push((format!("honest-{i}"), s("default"), s("honest"), netuid));
    }
    if let Some(c) = compute_netuid {
        plan.push((s("compute-validator"), s("default"), s("validator"), c));
        for i in 1..=args.honest.max(1) {
            plan.push((format!("compute-honest-{i}"), s("default"), s("honest"), c));
        }
    }
    if let Some(v) = validators_netuid {
        plan.push((s("validators-validator"), s("default"), s("validator"), v));
        for i in 1..=args.honest.max(1) {
            plan.push((format!("validators-honest-{i}"), s("default"), s("honest"), v));
        }
    }
    for entry in entries {
        let label = entry.label();
        match entry {
            Entry::Inference(strategy) => {
                let n = strategy.hotkeys(args.sybils);
                for i in 0..n {
                    let name = if n == 1 { label.clone() } else { format!("{label}-{}", i + 1) };
                    plan.push((name, s("default"), label.clone(), netuid));
                }
            }
            // The compute Sybil: one wallet, several hotkeys (its miner takes their names).
            Entry::Compute(crate::compute::Strategy::Sybil) => {
                for i in 1..=args.sybils.max(1) {
                    plan.push((label.clone(), format!("h{i}"), label.clone(), compute_netuid.context("no compute subnet")?));
                }
            }
            Entry::Compute(_) => plan.push((label.clone(), s("default"), label.clone(), compute_netuid.context("no compute subnet")?)),
            Entry::Validator(_) => plan.push((label.clone(), s("default"), label.clone(), validators_netuid.context("no validators subnet")?)),
        }
    }
    let mut members: Vec<Member> = Vec::new();
    for (name, hotkey_name, role, on) in plan {
        let coldkey = match members.iter().find(|m| m.name == name) {
            Some(m) => m.coldkey.clone(),
            None => {
                let (coldkey, _) = create_wallet(&wallets, &name)?;
                chain.faucet(&coldkey, FUNDS).await.with_context(|| format!("funding {name}"))?;
                coldkey
            }
        };
        let hotkey = Keypair::generate(12)?;
        Wallet::new(&wallets, &name, &hotkey_name)?.write_hotkey(&hotkey, Protection::Plain, true)?;
        members.push(Member { name, hotkey_name, role, netuid: on, coldkey, hotkey });
    }
    for member in &members {
        register(chain.as_ref(), member).await?;
        if member.is_validator() {
            let stake = validator_stake(member, &members);
            chain.add_stake(&member.coldkey, member.netuid, &member.hotkey.public(), stake).await.with_context(|| format!("staking {}", member.name))?;
        }
    }
    say(format!("chain {chain_url}, subnets {netuids:?}, {} hotkeys under {}", members.len(), wallets.display()));

    let common = |name: &str, on: u16| {
        vec![s("--wallet.path"), wallets.display().to_string(), s("--wallet.name"), s(name), s("--netuid"), on.to_string(), s("--subtensor.network"), chain_url.clone()]
    };
    let state = |name: &str| data_dir.join("state").join(name).display().to_string();
    // The real validators.
    let inference_validator = |name: &str, on: u16| -> anyhow::Result<Vec<String>> {
        let mut argv = vec![
            s("validator"),
            s("inference"),
            s("--metrics.port"),
            free_port()?.to_string(),
            s("--neuron.epoch_length"),
            args.tempo.to_string(),
            s("--neuron.max_tokens"),
            args.max_tokens.to_string(),
            s("--neuron.concurrency"),
            args.concurrency.to_string(),
            s("--neuron.round_window"),
            format!("{}ms", args.round_window.as_millis()),
            // A round is a few answers per miner here; cheap strategies that answer at
            // once would otherwise send 32 answers each for the validator to verify.
            s("--neuron.max_requests"),
            s("12"),
            // Results expire after three epochs, so a miner that stops answering is at
            // zero well before the run ends (production: 1 h against 72-minute epochs).
            s("--neuron.score_ttl"),
            format!("{}ms", 3 * u128::from(args.tempo) * args.block_time.as_millis()),
            s("--neuron.data_dir"),
            state(name),
            s("--database.url"),
            records_url.clone(),
        ];
        argv.extend(common(name, on));
        Ok(argv)
    };
    supervisor.spawn("validator", ganglion, &inference_validator("validator", netuid)?)?;
    if let Some(v) = validators_netuid {
        supervisor.spawn("validators-validator", ganglion, &inference_validator("validators-validator", v)?)?;
    }
    let mut compute_status = None;
    if let Some(c) = compute_netuid {
        let port = free_port()?;
        compute_status = Some(format!("http://127.0.0.1:{port}/status"));
        // Difficulty capped as in localnet, so that hashing leaves the CPU to inference.
        let mut argv = vec![
            s("validator"),
            s("compute"),
            s("--metrics.port"),
            port.to_string(),
            s("--neuron.epoch_length"),
            args.tempo.to_string(),
            s("--database.url"),
            records_url.clone(),
            s("--data-dir"),
            state("compute-validator"),
            s("--validator.difficulty.max"),
            s("8"),
        ];
        argv.extend(common("compute-validator", c));
        supervisor.spawn("compute-validator", ganglion, &argv)?;
    }

    // Honest miners (equal hardware: one engine or one solver thread each) and the strategies.
    let victim = members.iter().find(|m| m.role == "honest" && m.netuid == netuid).map(Member::ss58).context("no honest miner")?;
    let dark_after = args.dark_after.unwrap_or((args.epochs / 3).max(1));
    let mut started: Vec<String> = Vec::new();
    for member in members.iter().filter(|m| m.role != "validator") {
        if started.contains(&member.name) {
            continue;
        }
        started.push(member.name.clone());
        // Every inference engine, honest or not, at the same pace (equal hardware).
        let pace = if args.pace > 0.0 { vec![s("--engine.pace"), args.pace.to_string()] } else { Vec::new() };
        // Every compute solver, honest or not, at the same hash rate (equal hardware).
        let hash_rate = if args.hash_rate > 0 { vec![s("--miner.max_hash_rate"), args.hash_rate.to_string()] } else { Vec::new() };
        let compute = Some(member.netuid) == compute_netuid;
        let argv = match (member.role.as_str(), compute) {
            ("honest", false) => {
                let mut argv = vec![s("inference"), s("--strategy"), s("honest")];
                match (Some(member.netuid) == validators_netuid, member.name.rsplit('-').next().and_then(|i| i.parse::<f64>().ok())) {
                    // The validators' subnet: honest miners of unequal speed (the i-th of n
                    // at i/n of the pace), so that honest weights say something and random
                    // ones differ from them.
                    (true, Some(i)) if args.pace > 0.0 => {
                        argv.extend([s("--engine.pace"), (args.pace * i / args.honest.max(1) as f64).to_string()]);
                    }
                    _ => argv.extend(pace.clone()),
                }
                argv.extend(common(&member.name, member.netuid));
                (redteam, argv)
            }
            ("honest", true) => {
                let mut argv = vec![
                    s("miner"),
                    s("compute"),
                    s("--axon.port"),
                    free_port()?.to_string(),
                    s("--ssh.port"),
                    free_port()?.to_string(),
                    s("--data-dir"),
                    state(&member.name),
                    s("--miner.threads"),
                    s("1"),
                ];
                argv.extend(hash_rate.clone());
                argv.extend(common(&member.name, member.netuid));
                (ganglion, argv)
            }
            (_, true) => {
                let entry = Entry::parse(&member.role).context("unknown compute strategy")?;
                let Entry::Compute(strategy) = entry else { bail!("{} is not a compute strategy", member.role) };
                let mut argv = vec![s("compute"), s("--strategy"), s(strategy.name()), s("--data-dir"), state(&member.name), s("--miner.threads"), s("1")];
                argv.extend(hash_rate.clone());
                argv.extend(common(&member.name, member.netuid));
                if strategy == crate::compute::Strategy::Sybil {
                    let hotkeys: Vec<String> = members.iter().filter(|m| m.name == member.name).map(|m| m.hotkey_name.clone()).collect();
                    argv.extend([s("--sybil.hotkeys"), hotkeys.join(",")]);
                }
                (redteam, argv)
            }
            ("weight-copier" | "lazy", false) => {
                let mut argv = vec![
                    s("validator"),
                    s("--strategy"),
                    member.role.clone(),
                    s("--neuron.epoch_length"),
                    args.tempo.to_string(),
                    s("--neuron.data_dir"),
                    state(&member.name),
                ];
                argv.extend(common(&member.name, member.netuid));
                (redteam, argv)
            }
            (role, false) => {
                let names: Vec<String> = members.iter().filter(|m| m.role == role).map(|m| m.name.clone()).collect();
                started.extend(names.iter().cloned());
                let mut argv = vec![s("inference"), s("--strategy"), s(role)];
                argv.extend(pace.clone());
                argv.extend(common(&names.join(","), netuid));
                match role {
                    "relay" => argv.extend([s("--relay.victim"), victim.clone()]),
                    "go-dark" => argv.extend([s("--go-dark.epochs"), dark_after.to_string()]),
                    "ttft-fake" => argv.extend([s("--ttft.factor"), args.ttft_factor.to_string()]),
                    // A cached answer as long as the longest request (not the default 256).
                    "cached" => argv.extend([s("--cached.max-tokens"), args.max_tokens.to_string()]),
                    _ => {}
                }
                (redteam, argv)
            }
        };
        let child = if member.role == "honest" { member.name.clone() } else { member.role.clone() };
        supervisor.spawn(&child, argv.0, &argv.1)?;
    }
    say(format!("validators, honest miners and {} strategies started (logs: {})", entries.len(), data_dir.join("logs").display()));

    let (epochs, block, rewards, incentives, last) = watch(args, chain.as_ref(), netuid, supervisor, &members, say).await?;

    // What the validators recorded, per hotkey.
    let records = ganglion_records::Records::open(&records_url).await.context("opening the validators' records")?;
    let stats = records.miner_stats(netuid, 0).await.context("reading the inference records")?;
    let challenges = match compute_netuid {
        Some(c) => records.challenge_stats(c, 0).await.context("reading the compute records")?,
        None => Vec::new(),
    };
    records.close().await;
    let compute_causes = match &compute_status {
        Some(url) => last_failures(url).await,
        None => HashMap::new(),
    };
    let by_hotkey: HashMap<String, ganglion_records::MinerStats> = stats.into_iter().map(|m| (m.hotkey.clone(), m)).collect();
    let by_hotkey_compute: HashMap<String, ganglion_records::ChallengeStats> = challenges.into_iter().map(|c| (c.hotkey.clone(), c)).collect();
    let row = |label: &str, subnet: &str, group: &[&Member]| {
        let mut causes: BTreeMap<String, u64> = BTreeMap::new();
        let (mut requests, mut verified, mut reward, mut incentive, mut final_epoch) = (0, 0, 0.0, 0.0, 0.0);
        for m in group {
            let hotkey = m.ss58();
            reward += per_stake(m, &members, rewards.get(&hotkey).copied().unwrap_or(0.0));
            final_epoch += per_stake(m, &members, last.get(&hotkey).copied().unwrap_or(0.0));
            incentive += incentives.get(&hotkey).copied().unwrap_or(0.0);
            if let Some(stats) = by_hotkey.get(&hotkey) {
                requests += stats.stats.n;
                verified += stats.stats.verified;
                for cause in &stats.causes {
                    *causes.entry(cause.cause.clone()).or_default() += cause.n;
                }
            }
            if let Some(c) = by_hotkey_compute.get(&hotkey) {
                requests += c.n;
                verified += c.success;
                if let Some(cause) = compute_causes.get(&hotkey) {
                    *causes.entry(format!("last: {cause}")).or_default() += c.n.saturating_sub(c.success);
                }
            }
        }
        let mut causes: Vec<(String, u64)> = causes.into_iter().collect();
        causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        StrategyRow {
            strategy: label.to_string(),
            subnet: s(subnet),
            wallets: group.iter().map(|m| if m.hotkey_name == "default" { m.name.clone() } else { format!("{}/{}", m.name, m.hotkey_name) }).collect(),
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
    let mean = |rows: &[StrategyRow], f: fn(&StrategyRow) -> f64| rows.iter().map(f).sum::<f64>() / rows.len().max(1) as f64;
    // The references of equal hardware (or stake): the honest miners of each subnet, the
    // honest validator.
    let reference = |on: u16, role: &str| -> Vec<StrategyRow> {
        let subnet = if Some(on) == compute_netuid { "compute" } else { "inference" };
        members.iter().filter(|m| m.netuid == on && m.role == role).map(|m| row(if role == "validator" { "honest-validator" } else { "honest" }, subnet, &[m])).collect()
    };
    let with_shares = |r: StrategyRow, base: &[StrategyRow]| {
        let (total, last) = (mean(base, |b| b.reward_tao), mean(base, |b| b.final_epoch_tao));
        StrategyRow { share_of_honest: (total > 0.0).then(|| r.reward_tao / total), final_share: (last > 0.0).then(|| r.final_epoch_tao / last), ..r }
    };
    let honest_inference = reference(netuid, "honest");
    let honest_validator = validators_netuid.map(|v| reference(v, "validator")).unwrap_or_default();
    let honest_compute = compute_netuid.map(|c| reference(c, "honest")).unwrap_or_default();
    let mut honest: Vec<StrategyRow> = honest_inference.iter().cloned().map(|r| with_shares(r, &honest_inference)).collect();
    honest.extend(honest_compute.iter().cloned().map(|r| with_shares(r, &honest_compute)));
    honest.extend(honest_validator.iter().cloned().map(|r| with_shares(r, &honest_validator)));
    let mut rows = Vec::new();
    for entry in entries {
        let label = entry.label();
        let group: Vec<&Member> = members.iter().filter(|m| m.role == label).collect();
        let base = match entry {
            Entry::Inference(_) => &honest_inference,
            Entry::Compute(_) => &honest_compute,
            Entry::Validator(_) => &honest_validator,
        };
        rows.push(with_shares(row(&label, entry.subnet(), &group), base));
    }
    let mut fp = FalsePositives::default();
    let mut fp_causes: BTreeMap<String, u64> = BTreeMap::new();
    for r in &honest_inference {
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
        honest_mean_tao: mean(&honest_inference, |r| r.reward_tao),
        strategies: rows,
        false_positives: fp,
        unclean_exits: Vec::new(),
        logs: data_dir.join("logs").display().to_string(),
    })
}

/// Each miner's last failure cause in a validator's `/status` (by hotkey).
async fn last_failures(url: &str) -> HashMap<String, String> {
    let Ok(http) = ganglion_tls::ClientTls::system().http_builder().timeout(Duration::from_secs(3)).build() else { return HashMap::new() };
    let Ok(response) = http.get(url).send().await else { return HashMap::new() };
    let Ok(status) = response.json::<ganglion_neuron::NodeStatus>().await else { return HashMap::new() };
    status.miners.into_iter().filter_map(|m| Some((m.hotkey, m.last_failure?.cause))).collect()
}

/// Epochs counted, last block, emission per hotkey over the run, incentive at the end,
/// emission per hotkey in the last counted epoch.
type Watched = (u32, u64, HashMap<String, f64>, HashMap<String, f64>, HashMap<String, f64>);

/// Follows blocks until `--epochs` epochs had weights in them; sums each hotkey's emission
/// over those epochs.
async fn watch(args: &RunArgs, chain: &dyn Chain, netuid: u16, supervisor: &mut Supervisor, members: &[Member], say: &dyn Fn(String)) -> anyhow::Result<Watched> {
    let mut blocks = chain.subscribe_blocks().await.context("subscribing to blocks")?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let honest: Vec<(u16, String)> = members.iter().filter(|m| m.role == "honest").map(|m| (m.netuid, m.ss58())).collect();
    let ours: HashMap<String, &Member> = members.iter().map(|m| (m.ss58(), m)).collect();
    let netuids: Vec<u16> = members.iter().map(|m| m.netuid).fold(Vec::new(), |mut v, n| {
        if !v.contains(&n) {
            v.push(n);
        }
        v
    });
    let (mut epochs, mut last_block) = (0u32, 0u64);
    let mut weighted: Vec<u16> = Vec::new();
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
                let mut line = Vec::new();
                for &on in netuids.iter().filter(|n| header.epochs.contains(n)) {
                    let metagraph = Metagraph::fetch(chain, on).await?;
                    if !weighted.contains(&on) {
                        // Counting starts once the validator's weights pay every honest miner:
                        // shares are relative to them, and a validator's first rounds can
                        // miss miners that had not yet seen its permit.
                        let paid = |hotkey: &String| metagraph.neurons().iter().any(|n| &n.hotkey.to_ss58() == hotkey && n.incentive > 0);
                        if !honest.iter().filter(|(n, _)| *n == on).all(|(_, h)| paid(h)) {
                            say(format!("block {}: waiting for the first weights on subnet {on}", header.number));
                            continue;
                        }
                        weighted.push(on);
                    }
                    for neuron in metagraph.neurons() {
                        let hotkey = neuron.hotkey.to_ss58();
                        let Some(member) = ours.get(&hotkey) else { continue };
                        *rewards.entry(hotkey.clone()).or_default() += neuron.emission_tao();
                        last.insert(hotkey.clone(), neuron.emission_tao());
                        incentives.insert(hotkey.clone(), u16_to_float(neuron.incentive));
                        if !member.is_validator() {
                            line.push(format!("{} {:.3}", member.name, u16_to_float(neuron.incentive)));
                        }
                    }
                }
                if !header.epochs.contains(&netuid) || !weighted.contains(&netuid) {
                    continue;
                }
                epochs += 1;
                say(format!("epoch {epochs}/{} (block {}): incentive {}", args.epochs, header.number, line.join(", ")));
                if epochs >= args.epochs {
                    break;
                }
            }
        }
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
        assert_eq!(args("all").strategies().unwrap(), Entry::all());
        assert_eq!(
            args("usage-lies,random-tokens,usage-lies").strategies().unwrap(),
            vec![Entry::Inference(Strategy::UsageLies), Entry::Inference(Strategy::RandomTokens)]
        );
        assert!(args("bogus").strategies().unwrap_err().to_string().contains("bogus"));
        let mixed = args("compute:sybil,sybil,lazy,validator:weight-copier,false-specs").strategies().unwrap();
        assert_eq!(
            mixed,
            vec![
                Entry::Compute(crate::compute::Strategy::Sybil),
                Entry::Inference(Strategy::Sybil),
                Entry::Validator(crate::validators::Strategy::Lazy),
                Entry::Validator(crate::validators::Strategy::WeightCopier),
                Entry::Compute(crate::compute::Strategy::FalseSpecs),
            ]
        );
        for entry in Entry::all() {
            assert_eq!(Entry::parse(&entry.label()), Some(entry), "{}", entry.label());
        }
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
