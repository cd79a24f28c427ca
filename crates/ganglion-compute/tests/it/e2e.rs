//! The compute subnet end to end on an in-process chain: one validator and two miners of
//! different speed (the slow one is rate-capped), rounds of low-difficulty challenges,
//! records, scores, weights, and the faster miner ahead in score and incentive; a third
//! "miner" answers every challenge with a wrong password and garbage specs. The
//! validator starts before it holds a validator permit (it must wait rather than record the
//! miners' refusals as their failures) and keeps the default one-uid-per-IP rule (loopback
//! axons are exempt, so both miners on 127.0.0.1 count).

use crate::common;

use std::time::Duration;

use ganglion_chain::{HyperparamUpdate, Metagraph};
use ganglion_chain_node::testkit::{self, Neuron, SubnetBuilder};
use ganglion_compute::config::ComputeConfig;
use ganglion_compute::miner;
use ganglion_compute::solver::{Kernel, SolverConfig};
use ganglion_compute::validator::{self, ValidatorConfig};
use ganglion_neuron::status::{MinerStatus, NodeStatus};
use ganglion_records::Records;

/// A cheating miner: answers every challenge with a wrong password and sends garbage specs.
async fn serve_cheat() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::routing::post;
    async fn challenge(axum::Json(mut request): axum::Json<serde_json::Value>) -> axum::Json<serde_json::Value> {
        request["output"] = serde_json::json!({ "password": "not-the-password", "local_execution_time": 0.001 });
        axum::Json(request)
    }
    async fn specs() -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({ "specs_input": "", "specs_output": "[\"not an object\"]" }))
    }
    let router = axum::Router::new()
        .route(ganglion_compute::protocol::route::CHALLENGE, post(challenge))
        .route(ganglion_compute::protocol::route::SPECS, post(specs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    (addr, tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }))
}

fn miner_config(netuid: u16, data_dir: &std::path::Path, solver: SolverConfig) -> ComputeConfig {
    let mut config = common::node_config(netuid, data_dir);
    config.miner.solver = solver;
    config
}

/// A compute-specific figure of a status row.
fn detail(m: &MinerStatus, key: &str) -> f64 {
    m.details[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {m:?}"))
}

fn flag(m: &MinerStatus, key: &str) -> bool {
    m.details[key].as_bool().unwrap_or_else(|| panic!("{key} missing in {m:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_scores_two_miners_and_sets_weights() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//VCold", "//VHot").stake(2_000))
        .neuron(Neuron::new("//FastCold", "//FastHot"))
        .neuron(Neuron::new("//SlowCold", "//SlowHot"))
        .neuron(Neuron::new("//CheatCold", "//CheatHot"))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//VHot").hotkey.clone();
    let (fhot, fast_uid) = (subnet.neuron("//FastHot").hotkey.clone(), subnet.uid("//FastHot"));
    let (shot, slow_uid) = (subnet.neuron("//SlowHot").hotkey.clone(), subnet.uid("//SlowHot"));
    let (chot, cheat_uid) = (subnet.neuron("//CheatHot").hotkey.clone(), subnet.uid("//CheatHot"));
    let (cheat_addr, cheat_server) = serve_cheat().await;
    chain
        .serve_axon(&chot, netuid, cheat_addr.ip(), cheat_addr.port(), 1, 4)
        .await
        .unwrap_or_else(|e| panic!("cheat axon: {e}"));
    let fast = miner::spawn(
        &miner_config(netuid, &dir.path().join("fast"), SolverConfig { threads: 2, kernel: Kernel::Auto, max_hash_rate: None }),
        fhot.clone(),
        chain.clone(),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("fast miner: {e}"));
    let slow = miner::spawn(
        &miner_config(netuid, &dir.path().join("slow"), SolverConfig { threads: 1, kernel: Kernel::Portable, max_hash_rate: Some(500_000) }),
        shot.clone(),
        chain.clone(),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("slow miner: {e}"));
    assert_eq!((fast.uid, slow.uid), (fast_uid, slow_uid));

    let records_url = Records::default_url(&dir.path().join("validator"));
    let mut config = common::node_config(netuid, &dir.path().join("validator"));
    config.neuron.epoch_length = 10;
    config.metrics.port = Some(0);
    config.validator = ValidatorConfig {
        records_url: Some(records_url.clone()),
        difficulty_min: 3,
        difficulty_max: 5,
        challenge_timeout: Duration::from_secs(10),
        round_blocks_min: 2,
        round_blocks_max: 3,
        block_poll: Duration::from_millis(50),
        // The original's rule (+2 at once): the difficulty reaches the top of this small
        // range within the eight challenges below, where the capped miner is visibly slower.
        adapt_rule: ganglion_compute::pow::AdaptRule::B,
        ..ValidatorConfig::default()
    };
    // Miners only answer callers with a validator permit (the default policy); the
    // validator is registered but gets its permit only at the next epoch.
    let validator = validator::spawn(&config, vhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("validator: {e}"));
    testkit::wait_for_permits(chain.as_ref(), netuid, &[vhot.public()]).await;
    let status_url = format!("http://{}/status", validator.addr.unwrap_or_else(|| panic!("no status address")));

    // Enough rounds for the difficulty to climb and for weights to be set.
    let status: NodeStatus = common::eventually(Duration::from_secs(120), "rounds and weights", || {
        let status = validator.status();
        async move {
            let climbed = status.miners.iter().filter(|m| m.details["attempts"].as_u64().unwrap_or(0) >= 8).count() >= 3;
            let weights_set = status.weights.as_ref().is_some_and(|w| w.last_set_block.is_some());
            (climbed && weights_set).then_some(status)
        }
    })
    .await;
    assert_eq!((status.subnet.as_str(), status.role), ("compute", ganglion_neuron::status::Role::Validator));
    assert!(status.details["rounds"].as_u64().unwrap_or(0) >= 8 && status.details["next_round_block"].as_u64().is_some(), "{:?}", status.details);
    let by_uid = |uid: u16| status.miner(uid).cloned().unwrap_or_else(|| panic!("uid {uid} missing"));
    let (f, s) = (by_uid(fast_uid), by_uid(slow_uid));
    // No refusal from the time before the permit counts as a failure.
    assert_eq!((f.verified_share, s.verified_share), (Some(1.0), Some(1.0)), "{f:?} {s:?}");
    assert!(f.last_failure.is_none() && s.last_failure.is_none());
    let speed = |m: &MinerStatus| m.speed.clone().unwrap_or_else(|| panic!("no speed: {m:?}"));
    assert_eq!(speed(&f).context, format!("@d{}", detail(&f, "difficulty")), "speed at the difficulty of the last challenge");
    assert_eq!(speed(&f).unit, "s");
    assert!(detail(&f, "difficulty_avg") > 3.0 && detail(&f, "next_difficulty") == 5.0, "difficulty adapts upwards: {f:?}");
    assert!(speed(&f).value < speed(&s).value, "the capped miner is slower: {f:?} {s:?}");
    assert!(f.score > s.score && s.score > 0.0, "faster miner ahead: {} vs {}", f.score, s.score);
    assert!(f.weight > s.weight && (f.weight + s.weight - 1.0).abs() < 1e-6, "{} {}", f.weight, s.weight);
    // Wrong answers are failures with their cause, and earn nothing.
    let c = by_uid(cheat_uid);
    assert_eq!((c.verified_share, c.score, c.weight), (Some(0.0), 0.0, 0.0), "{c:?}");
    assert_eq!(c.last_failure.as_ref().map(|l| l.cause.as_str()), Some("wrong_answer"), "{c:?}");
    assert!(c.speed.is_none(), "no speed before any success");
    let own = status.uid.unwrap_or(u16::MAX);
    assert!(status.miners.iter().any(|m| m.uid == own && flag(m, "is_validator") && m.score == 0.0), "validators score zero");

    // The status endpoint serves the same document, and the status file follows it.
    let served: NodeStatus = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}")).get(&status_url).send().await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((served.subnet.as_str(), served.miners.len()), ("compute", status.miners.len()));
    let file = ganglion_neuron::status::read_status_file(&dir.path().join("validator").join("status.json")).unwrap_or_else(|| panic!("no status.json"));
    assert_eq!(file.miners.len(), status.miners.len());
    let metrics = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}")).get(status_url.replace("/status", "/metrics")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let metrics = metrics.text().await.unwrap_or_default();
    assert!(metrics.contains("compute_validator_challenges_total{outcome=\"solved\"}"), "{metrics}");
    assert!(metrics.contains("compute_validator_challenge_seconds_count{outcome=\"failed\"}"), "{metrics}");
    assert!(metrics.contains("ganglion_weights_submissions_total{result=\"ok\"}"), "weights through the runtime: {metrics}");

    // Records: every challenge, both miners' specs, and scores with their components.
    let records = Records::open(&records_url).await.unwrap_or_else(|e| panic!("{e}"));
    let challenges = records.recent_challenges(netuid, &fhot.public().to_ss58(), 100).await.unwrap_or_default();
    assert!(challenges.len() >= 8 && challenges.iter().all(|c| c.success && c.miner_uid == fast_uid));
    assert!(challenges.iter().any(|c| c.difficulty == 5));
    let specs = records.specs(netuid).await.unwrap_or_default();
    assert_eq!(specs.len(), 2, "the cheat's specs are not a JSON object and are not stored");
    assert!(specs.iter().all(|s| s.specs["cpu"]["count"].as_u64().unwrap_or(0) >= 1 && s.specs["has_docker"] == false));
    let scores = records.scores_for(netuid, &fhot.public().to_ss58(), 100).await.unwrap_or_default();
    assert!(!scores.is_empty() && scores.iter().all(|r| r.components["version"] == "a" && r.components.get("next_difficulty").is_some()));

    // On chain: after an epoch with these weights, the fast miner earns more. (The first
    // weights may be equal: at the minimum difficulty version A's time term is zero.)
    let metagraph = common::eventually(Duration::from_secs(60), "incentive", || {
        let chain = chain.clone();
        async move {
            let m = Metagraph::fetch(chain.as_ref(), netuid).await.ok()?;
            let (fi, si) = (m.neuron(fast_uid)?.incentive, m.neuron(slow_uid)?.incentive);
            (fi > 0 && si > 0 && fi != si).then_some(m)
        }
    })
    .await;
    let (fi, si) = (metagraph.neuron(fast_uid).map(|n| n.incentive), metagraph.neuron(slow_uid).map(|n| n.incentive));
    assert!(fi > si, "incentive {fi:?} vs {si:?}");

    validator.shutdown().await.map(drop).unwrap_or_else(|e| panic!("the validator stops and saves: {e}"));
    fast.shutdown().await;
    slow.shutdown().await;
    cheat_server.abort();
    subnet.shutdown().await;
}
