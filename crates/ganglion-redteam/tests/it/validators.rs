//! The weight copier against honest validators on a local chain, with commit-reveal off and
//! on (two subnets of one chain, run side by side): honest validators weight a best miner
//! that changes every epoch; the copier queries nobody and copies what the chain shows.
//! Without commit-reveal its dividends match an honest validator's; with commit-reveal they
//! fall below, because what it can see is always an epoch old.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ganglion_chain::{Chain, HyperparamUpdate, Metagraph};
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder, key, register, wait_for_permits};
use ganglion_core::keys::Keypair;
use ganglion_core::wallet::{Protection, Wallet};
use ganglion_neuron::Metrics;
use ganglion_neuron::signals::Shutdown;
use ganglion_neuron::state::StateError;
use ganglion_neuron::status::{MinerStatus, NodeStatus, Role, StatusBoard};
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{LoopSettings, StepContext, Validator, ValidatorNode, ValidatorTask};
use ganglion_neuron::weights::{PlainWeights, WeightSetter};
use ganglion_redteam::validators::{Strategy, ValidatorArgs, run_until};

const TEMPO: u16 = 10;
/// Blocks between two weight settings of every validator (the chain's rate limit is 0).
const EPOCH_LENGTH: u64 = 3;
const WARMUP_EPOCHS: u64 = 4;
const MEASURED_EPOCHS: u64 = 10;

/// An honest validator whose work is done: the best miner is `miners[epoch % len]`.
struct Rotating {
    miners: Vec<u16>,
    scores: Vec<(u16, f32)>,
}

#[async_trait]
impl Validator for Rotating {
    async fn step(&mut self, ctx: &StepContext<'_>) -> Result<(), String> {
        let epoch = ctx.chain.subnet(ctx.metagraph.netuid()).await.map_err(|e| e.to_string())?.epoch_index;
        let best = self.miners[(epoch % self.miners.len() as u64) as usize];
        self.scores = self.miners.iter().map(|m| (*m, if *m == best { 1.0 } else { 0.1 })).collect();
        Ok(())
    }
    fn scores(&self, _metagraph: &Metagraph) -> Vec<(u16, f32)> {
        self.scores.clone()
    }
    fn on_hotkey_change(&mut self, _change: &HotkeyChange) {}
    fn status(&self, _metagraph: &Metagraph, _weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        (Vec::new(), serde_json::Value::Null)
    }
    fn save(&mut self) -> Result<(), StateError> {
        Ok(())
    }
}

fn honest(chain: &Arc<dyn Chain>, netuid: u16, hotkey: &Keypair, miners: Vec<u16>, shutdown: &Shutdown) -> ValidatorTask<Rotating> {
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(StatusBoard::new(NodeStatus::new("test", Role::Validator, netuid, hotkey.public().to_ss58()), None));
    let node = ValidatorNode {
        chain: chain.clone(),
        netuid,
        hotkey: hotkey.clone(),
        metrics: metrics.clone(),
        board,
        weights: WeightSetter::new(netuid, hotkey.clone(), EPOCH_LENGTH, None, Box::new(PlainWeights), metrics),
        settings: LoopSettings { step_interval: Duration::from_millis(100), idle_interval: Duration::from_millis(100) },
    };
    ValidatorTask::spawn(node, Rotating { miners, scores: Vec::new() }, Some(shutdown.clone()))
}

/// The copier as its process runs it, from a wallet on disk.
fn copier(dir: &std::path::Path, url: &str, netuid: u16, hotkey_uri: &str, shutdown: &Shutdown) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    dishonest(dir, url, netuid, hotkey_uri, Strategy::WeightCopier, shutdown)
}

/// A dishonest validator as its process runs it, from a wallet on disk.
fn dishonest(dir: &std::path::Path, url: &str, netuid: u16, hotkey_uri: &str, strategy: Strategy, shutdown: &Shutdown) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let name = format!("{}{netuid}", strategy.name());
    let wallet = Wallet::new(dir.join("wallets"), &name, "default").unwrap();
    wallet.write_hotkey(&key(hotkey_uri), Protection::Plain, true).unwrap();
    let args = ValidatorArgs {
        wallet_name: name.clone(),
        wallet_hotkey: "default".into(),
        wallet_path: dir.join("wallets"),
        netuid,
        chain_endpoint: Some(url.to_string()),
        strategy,
        epoch_length: EPOCH_LENGTH,
        data_dir: Some(dir.join(&name)),
        step_interval: Duration::from_millis(100),
        seed: Some(7),
    };
    tokio::spawn(run_until(args, shutdown.clone()))
}

/// Sums each validator's dividends over `MEASURED_EPOCHS` epochs after `WARMUP_EPOCHS`.
async fn measure(chain: Arc<dyn Chain>, netuid: u16, validators: Vec<(&'static str, u16)>) -> BTreeMap<&'static str, f64> {
    measure_epochs(chain, netuid, validators, WARMUP_EPOCHS, MEASURED_EPOCHS).await
}

/// Sums each validator's dividends over `measured` epochs after `warmup`.
async fn measure_epochs(chain: Arc<dyn Chain>, netuid: u16, validators: Vec<(&'static str, u16)>, warmup: u64, measured: u64) -> BTreeMap<&'static str, f64> {
    let start = chain.subnet(netuid).await.unwrap().epoch_index;
    let mut seen = start;
    let mut sums: BTreeMap<&'static str, f64> = validators.iter().map(|(n, _)| (*n, 0.0)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen < start + warmup + measured {
        assert!(tokio::time::Instant::now() < deadline, "subnet {netuid} stalled at epoch {seen}");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let epoch = chain.subnet(netuid).await.unwrap().epoch_index;
        if epoch == seen {
            continue;
        }
        seen = epoch;
        if epoch <= start + warmup {
            continue;
        }
        let metagraph = Metagraph::fetch(chain.as_ref(), netuid).await.unwrap();
        for (name, uid) in &validators {
            *sums.get_mut(name).unwrap() += f64::from(metagraph.neuron(*uid).unwrap().dividends) / 65535.0;
        }
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weight_copier_earns_like_an_honest_validator_without_commit_reveal_and_less_with_it() {
    let started = std::time::Instant::now();
    let plain = SubnetBuilder::new()
        .block_time(Duration::from_millis(100))
        .tempo(TEMPO)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//HA0Cold", "//HA0").stake(1_000).validator())
        .neuron(Neuron::new("//HB0Cold", "//HB0").stake(1_000).validator())
        .neuron(Neuron::new("//CP0Cold", "//CP0").stake(1_000).validator())
        .neuron(Neuron::new("//MA0Cold", "//MA0"))
        .neuron(Neuron::new("//MB0Cold", "//MB0"))
        .neuron(Neuron::new("//MC0Cold", "//MC0"))
        .build()
        .await;
    let chain = plain.chain.clone();
    // The second subnet, on the same chain, with commit-reveal on.
    let bob = key("//Bob");
    let cr = chain.register_network(&bob, &key("//Bob/owner").public(), None).await.unwrap().netuid.unwrap();
    let update = HyperparamUpdate { weights_rate_limit: Some(0), commit_reveal_weights_enabled: Some(true), commit_reveal_period: Some(1), ..Default::default() };
    chain.set_hyperparams(&bob, cr, update).await.unwrap();
    let mut uids = BTreeMap::new();
    for (hot, stake) in [("//HA1", 1_000), ("//HB1", 1_000), ("//CP1", 1_000), ("//MA1", 0), ("//MB1", 0), ("//MC1", 0)] {
        let uid = register(chain.as_ref(), cr, &key(&format!("{hot}Cold")), &key(hot), stake + 100, stake).await;
        uids.insert(hot, uid);
    }
    wait_for_permits(chain.as_ref(), cr, &[key("//HA1").public(), key("//HB1").public(), key("//CP1").public()]).await;

    let dir = tempfile::tempdir().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let p = |u: &str| plain.uid(u);
    let plain_miners = vec![p("//MA0"), p("//MB0"), p("//MC0")];
    let cr_miners = vec![uids["//MA1"], uids["//MB1"], uids["//MC1"]];
    let tasks = vec![
        honest(&chain, plain.netuid, &key("//HA0"), plain_miners.clone(), &shutdown),
        honest(&chain, plain.netuid, &key("//HB0"), plain_miners, &shutdown),
        honest(&chain, cr, &key("//HA1"), cr_miners.clone(), &shutdown),
        honest(&chain, cr, &key("//HB1"), cr_miners, &shutdown),
    ];
    let copiers = [copier(dir.path(), &plain.url(), plain.netuid, "//CP0", &shutdown), copier(dir.path(), &plain.url(), cr, "//CP1", &shutdown)];

    let (off, on) = tokio::join!(
        measure(chain.clone(), plain.netuid, vec![("honest_a", p("//HA0")), ("honest_b", p("//HB0")), ("copier", p("//CP0"))]),
        measure(chain.clone(), cr, vec![("honest_a", uids["//HA1"]), ("honest_b", uids["//HB1"]), ("copier", uids["//CP1"])]),
    );
    trigger.trigger();
    for task in tasks {
        task.stop(Duration::from_secs(10)).await.unwrap();
    }
    for c in copiers {
        c.await.unwrap().unwrap();
    }
    // The copier wrote its status like a real validator, naming the strategy it used.
    let status = ganglion_neuron::status::read_status_file(&dir.path().join(format!("weight-copier{cr}/status.json"))).unwrap();
    assert_eq!(status.weights.as_ref().map(|w| w.strategy.as_str()), Some("commit-reveal"), "{status:?}");
    assert!(status.weights.as_ref().is_some_and(|w| w.revealed_count > 0), "{status:?}");

    let honest_mean = |m: &BTreeMap<&str, f64>| (m["honest_a"] + m["honest_b"]) / 2.0;
    let (off_ratio, on_ratio) = (off["copier"] / honest_mean(&off), on["copier"] / honest_mean(&on));
    println!("dividends summed over {MEASURED_EPOCHS} epochs (after {WARMUP_EPOCHS} warm-up epochs), equal stakes:");
    println!("  commit-reveal off: honest {:.4} / {:.4}, copier {:.4} ({:.1}% of the honest mean)", off["honest_a"], off["honest_b"], off["copier"], 100.0 * off_ratio);
    println!("  commit-reveal on:  honest {:.4} / {:.4}, copier {:.4} ({:.1}% of the honest mean)", on["honest_a"], on["honest_b"], on["copier"], 100.0 * on_ratio);
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    assert!(off_ratio > 0.85, "without commit-reveal the copier should earn about an honest validator's dividends: {off:?}");
    assert!(on["copier"] < on["honest_a"].min(on["honest_b"]), "with commit-reveal the copier must earn less than each honest validator: {on:?}");
    assert!(on_ratio < 0.8, "and clearly less: {on:?}");
    plain.shutdown().await;
}

/// The lazy validator (random weights, no queries) earns less than honest validators, who
/// agree with each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lazy_validator_earns_less_than_honest_validators() {
    let subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(100))
        .tempo(TEMPO)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//HA2Cold", "//HA2").stake(1_000).validator())
        .neuron(Neuron::new("//HB2Cold", "//HB2").stake(1_000).validator())
        .neuron(Neuron::new("//LZ2Cold", "//LZ2").stake(1_000).validator())
        .neuron(Neuron::new("//MA2Cold", "//MA2"))
        .neuron(Neuron::new("//MB2Cold", "//MB2"))
        .neuron(Neuron::new("//MC2Cold", "//MC2"))
        .build()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let u = |h: &str| subnet.uid(h);
    let miners = vec![u("//MA2"), u("//MB2"), u("//MC2")];
    let tasks = [honest(&subnet.chain, subnet.netuid, &key("//HA2"), miners.clone(), &shutdown), honest(&subnet.chain, subnet.netuid, &key("//HB2"), miners, &shutdown)];
    let lazy = dishonest(dir.path(), &subnet.url(), subnet.netuid, "//LZ2", Strategy::Lazy, &shutdown);
    let sums = measure_epochs(subnet.chain.clone(), subnet.netuid, vec![("honest_a", u("//HA2")), ("honest_b", u("//HB2")), ("lazy", u("//LZ2"))], 3, 6).await;
    trigger.trigger();
    for task in tasks {
        task.stop(Duration::from_secs(10)).await.unwrap();
    }
    lazy.await.unwrap().unwrap();
    let status = ganglion_neuron::status::read_status_file(&dir.path().join(format!("lazy{}/status.json", subnet.netuid))).unwrap();
    assert!(status.weights.as_ref().is_some_and(|w| w.set_count > 0), "the lazy validator set weights: {status:?}");
    let mean = (sums["honest_a"] + sums["honest_b"]) / 2.0;
    println!("dividends over 6 epochs: honest {:.4} / {:.4}, lazy {:.4} ({:.1}% of the honest mean)", sums["honest_a"], sums["honest_b"], sums["lazy"], 100.0 * sums["lazy"] / mean);
    assert!(sums["lazy"] < sums["honest_a"].min(sums["honest_b"]), "{sums:?}");
    subnet.shutdown().await;
}
