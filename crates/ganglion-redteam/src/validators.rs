//! Dishonest validators: a **weight copier** and a **lazy validator**. Neither queries a
//! miner. Both run on the real runtime (`ganglion_neuron::validator`'s loop and its
//! `WeightSetter`), so they set weights exactly as an honest validator would — on time, with
//! the chain's limits applied, and through commit-reveal when the subnet has it on — and they
//! write the same `NodeStatus` (`status.json`) as real validators.
//!
//! - `weight-copier`: each step reads the weights the chain shows now and copies those of
//!   the highest-staked other validator that has any (the full metagraph's `W`), or, when no
//!   row is visible, the metagraph's `consensus`. Without commit-reveal a validator's row is
//!   public as soon as it is set, so the copy is as fresh as the original and earns the same
//!   dividends. With commit-reveal the rows on chain are the *revealed* ones, one reveal
//!   period old, and the copier's own copy is revealed another period later: it always
//!   weights the miners of an older epoch, and its dividends fall.
//! - `lazy`: random scores, drawn afresh every step (`--seed` makes them reproducible).
//!
//! Each runs until SIGINT/SIGTERM ([`run`]), or until a given [`Shutdown`]
//! ([`run_until`], for tests and supervisors in-process).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use ganglion_chain::{Chain, LocalChain, Metagraph, resolve_network, u16_to_float};
use ganglion_core::keys::PublicKey;
use ganglion_core::password::Passwords;
use ganglion_core::wallet::{Wallet, expand_home};
use ganglion_neuron::Metrics;
use ganglion_neuron::signals::Shutdown;
use ganglion_neuron::state::StateError;
use ganglion_neuron::status::{MinerStatus, NodeStatus, Role, StatusBoard};
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{LoopSettings, StepContext, Validator, ValidatorNode, ValidatorTask};
use ganglion_neuron::weights::{PlainWeights, WeightSetter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which dishonest validator to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Copies the weights (or consensus) visible on chain.
    WeightCopier,
    /// Sets random weights.
    Lazy,
}

impl Strategy {
    /// The name as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::WeightCopier => "weight-copier",
            Strategy::Lazy => "lazy",
        }
    }
}

/// Flags of a dishonest validator (btcli's names where they exist).
#[derive(Debug, Clone, clap::Args)]
pub struct ValidatorArgs {
    /// Wallet name.
    #[arg(long = "wallet.name", env = "BT_WALLET_NAME", default_value = "default")]
    pub wallet_name: String,
    /// Hotkey name.
    #[arg(long = "wallet.hotkey", env = "BT_WALLET_HOTKEY", default_value = "default")]
    pub wallet_hotkey: String,
    /// Wallets directory.
    #[arg(long = "wallet.path", env = "BT_WALLET_PATH", default_value = "~/.bittensor/wallets")]
    pub wallet_path: PathBuf,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID")]
    pub netuid: u16,
    /// The chain: `local` or a `ganglion chain serve` node's http:// URL (default:
    /// `$GANGLION_CHAIN_URL` or http://127.0.0.1:9944).
    #[arg(long = "subtensor.chain_endpoint", alias = "subtensor.network")]
    pub chain_endpoint: Option<String>,
    /// The dishonest strategy.
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Blocks between weight settings (at least the chain's weights_rate_limit).
    #[arg(long = "neuron.epoch_length", default_value_t = 360)]
    pub epoch_length: u64,
    /// Where status.json and the pending weight reveals (weight_commits.json) are written
    /// (default: nowhere; pending reveals are then lost on restart).
    #[arg(long = "neuron.data_dir")]
    pub data_dir: Option<PathBuf>,
    /// Time between two steps (each reads the chain and maybe sets weights).
    #[arg(long = "neuron.step_interval", value_parser = ganglion_neuron::config::parse_duration, default_value = "2s")]
    pub step_interval: Duration,
    /// Seed of the lazy validator's random weights (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the validator of `args.strategy` until SIGINT or SIGTERM.
pub async fn run(args: ValidatorArgs) -> anyhow::Result<()> {
    run_until(args, Shutdown::on_signal()).await
}

/// Runs the validator of `args.strategy` until `shutdown` fires; saves its status on the way out.
pub async fn run_until(args: ValidatorArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let wallet = Wallet::new(expand_home(&args.wallet_path), &args.wallet_name, &args.wallet_hotkey)
        .with_context(|| format!("opening wallet `{}` in {}", args.wallet_name, args.wallet_path.display()))?;
    let hotkey = wallet
        .hotkey(&Passwords::interactive())
        .with_context(|| format!("loading hotkey `{}` of wallet `{}`", args.wallet_hotkey, args.wallet_name))?;
    let url = resolve_network(args.chain_endpoint.as_deref())?;
    let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&url)?);
    if let Some(dir) = &args.data_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let metrics = Arc::new(Metrics::new());
    let mut status = NodeStatus::new("redteam", Role::Validator, args.netuid, hotkey.public().to_ss58());
    status.details = serde_json::json!({ "strategy": args.strategy.name() });
    let board = Arc::new(StatusBoard::new(status, args.data_dir.as_ref().map(|d| d.join("status.json"))));
    let mut weights = WeightSetter::new(args.netuid, hotkey.clone(), args.epoch_length, None, Box::new(PlainWeights), metrics.clone());
    if let Some(dir) = &args.data_dir {
        weights = weights.with_state_file(dir.join("weight_commits.json"));
    }
    let settings = LoopSettings { step_interval: args.step_interval, idle_interval: args.step_interval };
    let node = ValidatorNode { chain, netuid: args.netuid, hotkey: hotkey.clone(), metrics, board, weights, settings };
    tracing::info!(target: "ganglion::redteam", strategy = args.strategy.name(), netuid = args.netuid, hotkey = %hotkey.public(), %url, "dishonest validator starting");
    match args.strategy {
        Strategy::WeightCopier => {
            ValidatorTask::spawn(node, WeightCopier::new(hotkey.public()), Some(shutdown)).wait().await?;
        }
        Strategy::Lazy => {
            let rng = args.seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64);
            ValidatorTask::spawn(node, Lazy { me: hotkey.public(), rng, scores: Vec::new() }, Some(shutdown)).wait().await?;
        }
    }
    Ok(())
}

/// Where the copier's weights came from in its last step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CopySource {
    /// Nothing to copy yet.
    Nothing,
    /// The weights row of this validator uid.
    Validator {
        /// Its uid.
        uid: u16,
    },
    /// The metagraph's consensus.
    Consensus,
}

/// The weight copier: queries nobody, copies what the chain shows. See the module doc.
#[derive(Debug)]
pub struct WeightCopier {
    me: PublicKey,
    scores: Vec<(u16, f32)>,
    source: CopySource,
}

impl WeightCopier {
    /// A copier for the validator with hotkey `me` (never copies itself).
    pub fn new(me: PublicKey) -> WeightCopier {
        WeightCopier { me, scores: Vec::new(), source: CopySource::Nothing }
    }

    /// What to copy from `weights` (rows by uid) and `metagraph`: the row of the
    /// highest-staked other validator that has one, else the consensus.
    pub fn pick(me: &PublicKey, metagraph: &Metagraph, weights: &[Vec<(u16, u16)>]) -> (CopySource, Vec<(u16, f32)>) {
        let mut validators: Vec<_> = metagraph
            .neurons()
            .iter()
            .filter(|n| n.validator_permit && n.hotkey != *me && n.stake > 0)
            .filter(|n| weights.get(usize::from(n.uid)).is_some_and(|row| row.iter().any(|(_, w)| *w > 0)))
            .collect();
        validators.sort_by(|a, b| b.stake.cmp(&a.stake).then(a.uid.cmp(&b.uid)));
        if let Some(top) = validators.first() {
            let row = &weights[usize::from(top.uid)];
            return (CopySource::Validator { uid: top.uid }, row.iter().map(|(uid, w)| (*uid, u16_to_float(*w) as f32)).collect());
        }
        let consensus: Vec<(u16, f32)> =
            metagraph.neurons().iter().filter(|n| n.consensus > 0).map(|n| (n.uid, u16_to_float(n.consensus) as f32)).collect();
        if consensus.is_empty() { (CopySource::Nothing, Vec::new()) } else { (CopySource::Consensus, consensus) }
    }
}

#[async_trait]
impl Validator for WeightCopier {
    async fn step(&mut self, ctx: &StepContext<'_>) -> Result<(), String> {
        let weights = ctx.chain.weights(ctx.metagraph.netuid()).await.map_err(|e| format!("reading the weights on chain: {e}"))?;
        let (source, scores) = WeightCopier::pick(&self.me, ctx.metagraph, &weights);
        if source != self.source {
            tracing::info!(target: "ganglion::redteam", ?source, "weight copier: copying from a new source");
        }
        self.source = source;
        self.scores = scores;
        Ok(())
    }

    fn scores(&self, _metagraph: &Metagraph) -> Vec<(u16, f32)> {
        self.scores.clone()
    }

    fn on_hotkey_change(&mut self, change: &HotkeyChange) {
        self.scores.retain(|(uid, _)| *uid != change.uid);
    }

    fn status(&self, metagraph: &Metagraph, weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        (rows(metagraph, &self.scores, weights), serde_json::json!({ "strategy": "weight-copier", "source": self.source }))
    }

    fn save(&mut self) -> Result<(), StateError> {
        Ok(())
    }
}

/// The lazy validator: random weights over every other uid, drawn afresh every step.
#[derive(Debug)]
pub struct Lazy {
    me: PublicKey,
    rng: StdRng,
    scores: Vec<(u16, f32)>,
}

#[async_trait]
impl Validator for Lazy {
    async fn step(&mut self, ctx: &StepContext<'_>) -> Result<(), String> {
        let me = self.me;
        self.scores = ctx.metagraph.neurons().iter().filter(|n| n.hotkey != me).map(|n| (n.uid, self.rng.r#gen::<f32>())).collect();
        Ok(())
    }

    fn scores(&self, _metagraph: &Metagraph) -> Vec<(u16, f32)> {
        self.scores.clone()
    }

    fn on_hotkey_change(&mut self, change: &HotkeyChange) {
        self.scores.retain(|(uid, _)| *uid != change.uid);
    }

    fn status(&self, metagraph: &Metagraph, weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        (rows(metagraph, &self.scores, weights), serde_json::json!({ "strategy": "lazy" }))
    }

    fn save(&mut self) -> Result<(), StateError> {
        Ok(())
    }
}

/// Status rows: one per scored uid, with the weight it would get now.
fn rows(metagraph: &Metagraph, scores: &[(u16, f32)], weights: &[(u16, f32)]) -> Vec<MinerStatus> {
    scores
        .iter()
        .map(|(uid, score)| MinerStatus {
            uid: *uid,
            hotkey: metagraph.neuron(*uid).map(|n| n.hotkey.to_ss58()).unwrap_or_default(),
            score: f64::from(*score),
            weight: weights.iter().find(|(u, _)| u == uid).map_or(0.0, |(_, w)| f64::from(*w)),
            ..MinerStatus::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use ganglion_chain::{NeuronInfo, NeuronsSnapshot};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ValidatorArgs,
    }

    #[test]
    fn flags_use_btcli_names() {
        let cli = Cli::try_parse_from([
            "t", "--wallet.name", "w", "--wallet.hotkey", "h", "--wallet.path", "/tmp/x", "--netuid", "3",
            "--subtensor.chain_endpoint", "http://127.0.0.1:9", "--strategy", "weight-copier", "--neuron.step_interval", "250ms",
        ]);
        let args = cli.map(|c| c.args).map_err(|e| e.to_string());
        let args = args.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((args.wallet_name.as_str(), args.wallet_hotkey.as_str(), args.netuid), ("w", "h", 3));
        assert_eq!(args.strategy, Strategy::WeightCopier);
        assert_eq!(args.step_interval, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["t", "--netuid", "1", "--strategy", "lazy"]).is_ok());
        assert!(Cli::try_parse_from(["t", "--netuid", "1", "--strategy", "honest"]).is_err());
    }

    fn key(i: u8) -> PublicKey {
        PublicKey::from_bytes([i; 32])
    }

    #[test]
    fn the_copier_copies_the_top_staked_other_validator_then_consensus() {
        let neuron = |uid: u16, stake: u64, permit: bool, consensus: u16| NeuronInfo {
            stake,
            validator_permit: permit,
            consensus,
            ..NeuronInfo::registered(uid, key(uid as u8 + 1), key(100), 0)
        };
        let snapshot = |neurons| Metagraph::from_snapshot(NeuronsSnapshot { netuid: 1, block: 10, changed_at: 1, neurons });
        let me = key(1);
        let mg = snapshot(vec![neuron(0, 5_000, true, 0), neuron(1, 1_000, true, 0), neuron(2, 2_000, true, 0), neuron(3, 0, true, 40_000)]);
        // uid 0 (most stake) is me; uid 2 has the most stake among the others.
        let weights = vec![vec![(3, 65535)], vec![(3, 1)], vec![(3, 65535), (1, 100)], vec![]];
        let (source, scores) = WeightCopier::pick(&me, &mg, &weights);
        assert_eq!(source, CopySource::Validator { uid: 2 });
        assert_eq!(scores, vec![(3, 1.0), (1, (100.0 / 65535.0f64) as f32)]);
        let mg2 = snapshot(vec![neuron(0, 5_000, true, 0), neuron(1, 1_000, true, 0), neuron(2, 2_000, true, 0), neuron(3, 0, true, 40_000)]);
        let (source, _) = WeightCopier::pick(&key(2), &mg2, &weights);
        assert_eq!(source, CopySource::Validator { uid: 0 });
        // No rows: the consensus.
        let (source, scores) = WeightCopier::pick(&me, &mg, &[vec![], vec![], vec![], vec![]]);
        assert_eq!(source, CopySource::Consensus);
        assert_eq!(scores.iter().map(|(u, _)| *u).collect::<Vec<_>>(), vec![3]);
    }
}
