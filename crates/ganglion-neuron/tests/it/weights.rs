//! The weight setter: due exactly when the chain allows, chain limits applied before
//! submitting, through the validator loop a subnet runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ganglion_chain::{Chain, ChainResult, HyperparamUpdate, Metagraph, TxReceipt};
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder, key};
use ganglion_core::keys::Keypair;
use ganglion_neuron::Metrics;
use ganglion_neuron::state::StateError;
use ganglion_neuron::status::{MinerStatus, NodeStatus, Role, StatusBoard};
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{LoopSettings, StepContext, Validator, ValidatorNode, ValidatorTask};
use ganglion_neuron::weights::{PlainWeights, WeightSetter, WeightStrategy, WeightsOutcome};

/// Plain `set_weights`, remembering the chain's answer to every submission.
#[derive(Default, Clone)]
struct Recording(Arc<Mutex<Vec<Result<u64, String>>>>);

#[async_trait]
impl WeightStrategy for Recording {
    fn name(&self) -> &'static str {
        "plain"
    }

    async fn submit(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        let answer = PlainWeights.submit(chain, hotkey, netuid, uids, values, version_key).await;
        self.0.lock().unwrap().push(answer.as_ref().map(|r| r.block).map_err(|e| e.to_string()));
        answer
    }
}

/// A validator whose work is done: fixed scores.
struct Fixed(Vec<(u16, f32)>);

#[async_trait]
impl Validator for Fixed {
    async fn step(&mut self, _ctx: &StepContext<'_>) -> Result<(), String> {
        Ok(())
    }
    fn scores(&self, _metagraph: &Metagraph) -> Vec<(u16, f32)> {
        self.0.clone()
    }
    fn on_hotkey_change(&mut self, _change: &HotkeyChange) {}
    fn status(&self, _metagraph: &Metagraph, _weights: &[(u16, f32)]) -> (Vec<MinerStatus>, serde_json::Value) {
        (Vec::new(), serde_json::Value::Null)
    }
    fn save(&mut self) -> Result<(), StateError> {
        Ok(())
    }
}

/// `epoch_length` (2) below `weights_rate_limit` (8): every submission lands in the first
/// block the chain accepts it, and the chain refuses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_set_exactly_when_the_chain_allows() {
    const RATE_LIMIT: u64 = 8;
    let subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(250))
        .tempo(4)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(RATE_LIMIT), ..Default::default() })
        .neuron(Neuron::new("//WCold", "//WValidator").stake(1_000).validator())
        .neuron(Neuron::new("//M1Cold", "//M1"))
        .neuron(Neuron::new("//M2Cold", "//M2"))
        .build()
        .await;
    let hotkey = key("//WValidator");
    let metrics = Arc::new(Metrics::new());
    let recording = Recording::default();
    let board = Arc::new(StatusBoard::new(NodeStatus::new("test", Role::Validator, subnet.netuid, hotkey.public().to_ss58()), None));
    let node = ValidatorNode {
        chain: subnet.chain.clone(),
        netuid: subnet.netuid,
        hotkey: hotkey.clone(),
        metrics: metrics.clone(),
        board: board.clone(),
        weights: WeightSetter::new(subnet.netuid, hotkey.clone(), 2, None, Box::new(recording.clone()), metrics.clone()),
        settings: LoopSettings { step_interval: Duration::from_millis(20), idle_interval: Duration::from_millis(50) },
    };
    let scores = vec![(subnet.uid("//M1"), 1.0), (subnet.uid("//M2"), 3.0)];
    let task = ValidatorTask::spawn(node, Fixed(scores), None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while recording.0.lock().unwrap().len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.stop(Duration::from_secs(10)).await.unwrap();
    let answers = recording.0.lock().unwrap().clone();
    let blocks: Vec<u64> = answers.iter().map(|a| a.clone().unwrap_or_else(|e| panic!("the chain refused a submission: {e} ({answers:?})"))).collect();
    assert!(blocks.len() >= 4, "{blocks:?}");
    let gaps: Vec<u64> = blocks.windows(2).map(|w| w[1] - w[0]).collect();
    // The chain enforces ≥ RATE_LIMIT; the setter must not wait longer than the block in which
    // it sees the limit pass (one block of slack for a busy machine).
    assert!(gaps.iter().all(|g| (RATE_LIMIT..=RATE_LIMIT + 1).contains(g)), "gaps {gaps:?}");
    assert!(gaps.iter().filter(|g| **g == RATE_LIMIT).count() * 2 >= gaps.len(), "mostly exact: {gaps:?}");
    let status = board.get();
    let weights = status.weights.unwrap();
    assert_eq!(weights.refused_count, 0);
    assert_eq!(weights.set_count as usize, blocks.len());
    assert_eq!(metrics.get("ganglion_weights_submissions_total", &[("result", "SettingWeightsTooFast")]), 0.0);
    subnet.shutdown().await;
}

/// Scores that the chain's `min_allowed_weights` and `max_weights_limit` would refuse as
/// they are are reshaped by the SDK's processing and accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_over_the_chain_limits_are_processed_and_accepted() {
    let limit = (0.4 * 65535.0f64).round() as u16;
    let subnet = SubnetBuilder::new()
        .tempo(4)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), min_allowed_weights: Some(3), max_weights_limit: Some(limit), ..Default::default() })
        .neuron(Neuron::new("//LCold", "//LValidator").stake(1_000).validator())
        .neuron(Neuron::new("//L1Cold", "//L1"))
        .neuron(Neuron::new("//L2Cold", "//L2"))
        .neuron(Neuron::new("//L3Cold", "//L3"))
        .neuron(Neuron::new("//L4Cold", "//L4"))
        .build()
        .await;
    let hotkey = key("//LValidator");
    let (l1, l2) = (subnet.uid("//L1"), subnet.uid("//L2"));
    // Unprocessed: one miner takes everything. The chain refuses that as it is.
    let refused = subnet.chain.set_weights(&hotkey, subnet.netuid, vec![l1], vec![u16::MAX], 0).await.unwrap_err();
    assert_eq!(refused.name(), Some("WeightVecLengthIsLow"), "{refused}");
    let refused = subnet.chain.set_weights(&hotkey, subnet.netuid, vec![l1, l2, subnet.uid("//L3")], vec![u16::MAX, 10, 10], 0).await.unwrap_err();
    assert_eq!(refused.name(), Some("MaxWeightExceeded"), "{refused}");

    let metrics = Arc::new(Metrics::new());
    let mut setter = WeightSetter::new(subnet.netuid, hotkey.clone(), 1, None, Box::new(PlainWeights), metrics);
    let metagraph = Metagraph::fetch(subnet.chain.as_ref(), subnet.netuid).await.unwrap();
    let outcome = setter.maybe_set(subnet.chain.as_ref(), &metagraph, &[(l1, 1.0), (l2, 0.001)]).await;
    let WeightsOutcome::Set { uids, values, weights, .. } = outcome else { panic!("not set: {outcome:?}") };
    assert!(uids.len() >= 3, "min_allowed_weights: {uids:?} {values:?}");
    let max = weights.iter().map(|(_, w)| *w).fold(0.0f32, f32::max);
    let sum: f32 = weights.iter().map(|(_, w)| *w).sum();
    assert!(max / sum <= 0.4 + 1e-4, "max_weight_limit: {weights:?}");
    assert_eq!(setter.status().refused_count, 0);
    subnet.shutdown().await;
}
