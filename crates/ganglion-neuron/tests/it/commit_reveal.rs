//! Commit-reveal end to end on a real local chain: the weight setter picks commit-reveal
//! from the subnet's hyperparameters, the weights reach the chain only in the commit's
//! reveal epoch, and a restart (the setter dropped without any shutdown, as `kill -9`
//! leaves it) between commit and reveal still reveals from the state file.

use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::{Chain, HyperparamUpdate, Metagraph};
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder, TestSubnet, key};
use ganglion_neuron::Metrics;
use ganglion_neuron::weights::{PlainWeights, WeightSetter, WeightsOutcome};

/// The validator's weights row as the chain stores it.
fn row(subnet: &TestSubnet, uid: u16) -> Vec<(u16, u16)> {
    subnet.node().node.with_state(|s| s.subnets[&subnet.netuid].neurons[usize::from(uid)].weights.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_weights_reach_the_chain_only_after_the_reveal_period_and_survive_a_restart() {
    let subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(100))
        .tempo(6)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), commit_reveal_weights_enabled: Some(true), commit_reveal_period: Some(1), ..Default::default() })
        .neuron(Neuron::new("//CRCold", "//CRValidator").stake(1_000).validator())
        .neuron(Neuron::new("//CR1Cold", "//CR1"))
        .neuron(Neuron::new("//CR2Cold", "//CR2"))
        .build()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("weight_commits.json");
    let hotkey = key("//CRValidator");
    let vuid = subnet.uid("//CRValidator");
    let (m1, m2) = (subnet.uid("//CR1"), subnet.uid("//CR2"));
    let scores = [(m1, 3.0f32), (m2, 1.0)];
    let chain: &dyn Chain = subnet.chain.as_ref();

    // A plain set_weights is refused on this subnet: the setter must pick commit-reveal.
    let refused = chain.set_weights(&hotkey, subnet.netuid, vec![m1], vec![1], 0).await.unwrap_err();
    assert_eq!(refused.name(), Some("CommitRevealEnabled"));
    // Weights every 30 blocks (3 s): the first submission comes once the registration is 30
    // blocks old, the next one long after the reveal (tempo 6).
    let setter = || WeightSetter::new(subnet.netuid, hotkey.clone(), 30, None, Box::new(PlainWeights), Arc::new(Metrics::new())).with_state_file(&state);
    let mut first = setter();
    let mut outcome = WeightsOutcome::NothingToSet;
    for _ in 0..200 {
        let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
        outcome = first.maybe_set(chain, &metagraph, &scores).await;
        if !matches!(outcome, WeightsOutcome::NotDue { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let WeightsOutcome::Set { block: commit_block, uids, values, .. } = outcome else { panic!("not committed: {outcome:?}") };
    assert_eq!(first.status().strategy, "commit-reveal");
    assert_eq!(first.status().pending_commits.len(), 1, "{:?}", first.status());
    let commits = chain.weight_commits(subnet.netuid, &hotkey.public()).await.unwrap();
    assert_eq!(commits.len(), 1);
    let window = commits[0].clone();
    assert_eq!(window.commit_block, commit_block);
    assert!(window.first_reveal_block > commit_block, "{window:?}");
    assert!(row(&subnet, vuid).is_empty(), "weights on chain before any reveal");
    println!("committed at block {commit_block}; reveal window {}..={}", window.first_reveal_block, window.last_reveal_block);

    // kill -9: the setter is gone without a word; a new process starts from the state file.
    drop(first);
    assert!(state.exists(), "the pending reveal is on disk");
    let mut second = setter();
    assert_eq!(second.status().pending_commits.len(), 1, "the restarted setter knows the commit");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let revealed_at = loop {
        assert!(tokio::time::Instant::now() < deadline, "never revealed; status {:?}", second.status());
        let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
        let outcome = second.maybe_set(chain, &metagraph, &scores).await;
        assert!(matches!(outcome, WeightsOutcome::NotDue { .. }), "no second commit is due: {outcome:?}");
        let on_chain = row(&subnet, vuid);
        let block = chain.block_number().await.unwrap();
        if on_chain.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // Weights appeared (in the pending block, `block + 1`): only inside the reveal window,
        // and exactly what was committed.
        assert!(block + 1 >= window.first_reveal_block, "weights reached the chain in block {}, before the reveal window {window:?}", block + 1);
        assert_eq!(on_chain, uids.iter().copied().zip(values.iter().copied()).collect::<Vec<_>>());
        break block;
    };
    let revealed = second.take_revealed();
    assert_eq!(revealed.len(), 1);
    assert!((window.first_reveal_block..=window.last_reveal_block).contains(&revealed[0].block), "{revealed:?} {window:?}");
    let status = second.status();
    assert_eq!((status.revealed_count, status.pending_commits.len()), (1, 0), "{status:?}");
    assert!(chain.weight_commits(subnet.netuid, &hotkey.public()).await.unwrap().is_empty());
    println!("revealed in block {} (seen at {revealed_at}), after the commit at {commit_block}", revealed[0].block);

    // The next epoch after the reveal pays miners by the revealed weights.
    let index = chain.subnet(subnet.netuid).await.unwrap().epoch_index;
    for _ in 0..100 {
        if chain.subnet(subnet.netuid).await.unwrap().epoch_index > index {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
    let incentive = |uid: u16| metagraph.neuron(uid).map_or(0, |n| n.incentive);
    assert!(incentive(m1) > incentive(m2) && incentive(m2) > 0, "incentive {} {}", incentive(m1), incentive(m2));
    subnet.shutdown().await;
}

/// With commit-reveal off the setter stays plain and reports nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setter_stays_plain_when_commit_reveal_is_off() {
    let subnet = SubnetBuilder::new()
        .tempo(6)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//PCold", "//PValidator").stake(1_000).validator())
        .neuron(Neuron::new("//P1Cold", "//P1"))
        .build()
        .await;
    let hotkey = key("//PValidator");
    let dir = tempfile::tempdir().unwrap();
    let mut setter = WeightSetter::new(subnet.netuid, hotkey.clone(), 1, None, Box::new(PlainWeights), Arc::new(Metrics::new())).with_state_file(dir.path().join("w.json"));
    let metagraph = Metagraph::fetch(subnet.chain.as_ref(), subnet.netuid).await.unwrap();
    let outcome = setter.maybe_set(subnet.chain.as_ref(), &metagraph, &[(subnet.uid("//P1"), 1.0)]).await;
    assert!(matches!(outcome, WeightsOutcome::Set { .. }), "{outcome:?}");
    assert_eq!(setter.status().strategy, "plain");
    assert!(setter.status().pending_commits.is_empty());
    assert!(!row(&subnet, subnet.uid("//PValidator")).is_empty());
    subnet.shutdown().await;
}

/// A validator whose steps each take longer than an epoch (a long round on a short tempo):
/// its commits are revealed while the step runs, not after it, when the reveal window
/// would be gone and the chain would drop the commit.
struct Slow {
    scores: Vec<(u16, f32)>,
}

#[async_trait::async_trait]
impl ganglion_neuron::validator::Validator for Slow {
    async fn step(&mut self, ctx: &ganglion_neuron::validator::StepContext<'_>) -> Result<(), String> {
        let mut stop = ctx.shutdown.clone();
        stop.sleep(Duration::from_secs(4)).await;
        Ok(())
    }
    fn scores(&self, _metagraph: &Metagraph) -> Vec<(u16, f32)> {
        self.scores.clone()
    }
    fn on_hotkey_change(&mut self, _change: &ganglion_neuron::sync::HotkeyChange) {}
    fn status(&self, _metagraph: &Metagraph, _weights: &[(u16, f32)]) -> (Vec<ganglion_neuron::status::MinerStatus>, serde_json::Value) {
        (Vec::new(), serde_json::Value::Null)
    }
    fn save(&mut self) -> Result<(), ganglion_neuron::state::StateError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveals_go_out_while_a_long_step_runs() {
    use ganglion_neuron::status::{NodeStatus, Role, StatusBoard};
    use ganglion_neuron::validator::{LoopSettings, ValidatorNode, ValidatorTask};
    // Epochs of 6 blocks of 100 ms: a reveal window of 0.6 s, steps of 4 s.
    let subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(100))
        .tempo(6)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), commit_reveal_weights_enabled: Some(true), commit_reveal_period: Some(1), ..Default::default() })
        .neuron(Neuron::new("//LSCold", "//LSValidator").stake(1_000).validator())
        .neuron(Neuron::new("//LS1Cold", "//LS1"))
        .build()
        .await;
    let hotkey = key("//LSValidator");
    let (vuid, m1) = (subnet.uid("//LSValidator"), subnet.uid("//LS1"));
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(StatusBoard::new(NodeStatus::new("test", Role::Validator, subnet.netuid, hotkey.public().to_ss58()), None));
    let node = ValidatorNode {
        chain: subnet.chain.clone(),
        netuid: subnet.netuid,
        hotkey: hotkey.clone(),
        metrics: metrics.clone(),
        board: board.clone(),
        weights: WeightSetter::new(subnet.netuid, hotkey.clone(), 1, None, Box::new(PlainWeights), metrics),
        settings: LoopSettings { step_interval: Duration::from_millis(100), idle_interval: Duration::from_millis(100) },
    };
    let task = ValidatorTask::spawn(node, Slow { scores: vec![(m1, 1.0)] }, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while row(&subnet, vuid).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the commit was never revealed: {:?}", board.get());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(row(&subnet, vuid), vec![(m1, u16::MAX)]);
    task.stop(Duration::from_secs(10)).await.unwrap();
    subnet.shutdown().await;
}
