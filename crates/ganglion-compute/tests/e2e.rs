//! The compute subnet end to end on an in-process chain: one validator and two miners of
//! different speed (the slow one is rate-capped), rounds of low-difficulty challenges,
//! records, scores, weights, and the faster miner ahead in score and incentive; a third
//! "miner" answers every challenge with a wrong password and garbage specs. The
//! validator starts before it holds a validator permit (it must wait rather than record the
//! miners' refusals as their failures) and keeps the default one-uid-per-IP rule (loopback
//! axons are exempt, so both miners on 127.0.0.1 count).

mod common;

use std::time::Duration;

use ganglion_chain::Metagraph;
use ganglion_compute::miner::{self, MinerConfig};
use ganglion_compute::sandbox::SandboxConfig;
use ganglion_compute::solver::{Kernel, SolverConfig};
use ganglion_compute::validator::{self, ValidatorConfig};
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

fn miner_config(netuid: u16, data_dir: &std::path::Path, solver: SolverConfig) -> MinerConfig {
    MinerConfig {
        netuid,
        axon_ip: "127.0.0.1".parse().unwrap_or_else(|_| unreachable!()),
        axon_port: 0,
        data_dir: data_dir.to_path_buf(),
        solver,
        sandbox: SandboxConfig { enabled: false, ..SandboxConfig::default() },
        specs_sample_mib: 1,
        metagraph_refresh_s: 1,
        ..MinerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_scores_two_miners_and_sets_weights() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (node, chain) = common::start_chain(&dir.path().join("chain"), 100, 10).await;
    let netuid = common::create_subnet(chain.as_ref()).await;
    let (vcold, vhot) = (common::key("//VCold"), common::key("//VHot"));
    let (fcold, fhot) = (common::key("//FastCold"), common::key("//FastHot"));
    let (scold, shot) = (common::key("//SlowCold"), common::key("//SlowHot"));
    common::join(chain.as_ref(), netuid, &vcold, &vhot, 2_000).await;
    let fast_uid = common::join(chain.as_ref(), netuid, &fcold, &fhot, 0).await;
    let slow_uid = common::join(chain.as_ref(), netuid, &scold, &shot, 0).await;
    let (ccold, chot) = (common::key("//CheatCold"), common::key("//CheatHot"));
    let cheat_uid = common::join(chain.as_ref(), netuid, &ccold, &chot, 0).await;
    let (cheat_addr, cheat_server) = serve_cheat().await;
    chain
        .serve_axon(&chot, netuid, cheat_addr.ip(), cheat_addr.port(), 1, 4)
        .await
        .unwrap_or_else(|e| panic!("cheat axon: {e}"));
    let fast = miner::spawn(
        miner_config(netuid, &dir.path().join("fast"), SolverConfig { threads: 2, kernel: Kernel::Auto, max_hash_rate: None }),
        fhot.clone(),
        chain.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("fast miner: {e}"));
    let slow = miner::spawn(
        miner_config(netuid, &dir.path().join("slow"), SolverConfig { threads: 1, kernel: Kernel::Portable, max_hash_rate: Some(100_000) }),
        shot.clone(),
        chain.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("slow miner: {e}"));
    assert_eq!((fast.uid, slow.uid), (fast_uid, slow_uid));

    let records_url = Records::default_url(&dir.path().join("validator"));
    let config = ValidatorConfig {
        netuid,
        data_dir: dir.path().join("validator"),
        records_url: Some(records_url.clone()),
        difficulty_min: 3,
        difficulty_max: 5,
        challenge_timeout_s: 10.0,
        round_blocks_min: 2,
        round_blocks_max: 3,
        epoch_length: 10,
        metrics_port: Some(0),
        block_poll_ms: 50,
        ..ValidatorConfig::default()
    };
    // Miners only answer callers with a validator permit (the default policy); the
    // validator is registered but gets its permit only at the next epoch.
    let validator = validator::spawn(config, vhot.clone(), chain.clone()).await.unwrap_or_else(|e| panic!("validator: {e}"));
    common::wait_permits(chain.as_ref(), netuid, &[&vhot]).await;
    let status_url = format!("http://{}/status", validator.addr.unwrap_or_else(|| panic!("no status address")));

    // Enough rounds for the difficulty to climb and for weights to be set.
    let status = common::eventually(Duration::from_secs(120), "rounds and weights", || {
        let status = validator.status();
        async move {
            let climbed = status.miners.iter().filter(|m| m.attempts >= 8).count() >= 3;
            (climbed && status.last_weights_block.is_some()).then_some(status)
        }
    })
    .await;
    let by_uid = |uid: u16| status.miners.iter().find(|m| m.uid == uid).cloned().unwrap_or_else(|| panic!("uid {uid} missing"));
    let (f, s) = (by_uid(fast_uid), by_uid(slow_uid));
    // No refusal from the time before the permit counts as a failure.
    assert_eq!((f.success_rate, s.success_rate), (1.0, 1.0), "{f:?} {s:?}");
    assert_eq!(f.difficulty, f.last.as_ref().map_or(0, |l| l.difficulty));
    assert!(f.difficulty_avg > 3.0 && f.next_difficulty == 5, "difficulty adapts upwards: {f:?}");
    assert!(f.mean_elapsed_s < s.mean_elapsed_s, "the capped miner is slower: {f:?} {s:?}");
    assert!(f.score > s.score && s.score > 0.0, "faster miner ahead: {} vs {}", f.score, s.score);
    assert!(f.weight > s.weight && (f.weight + s.weight - 1.0).abs() < 1e-9);
    // Wrong answers are failures with their cause, and earn nothing.
    let c = by_uid(cheat_uid);
    assert_eq!((c.success_rate, c.score, c.weight), (0.0, 0.0, 0.0), "{c:?}");
    assert_eq!(c.last.as_ref().and_then(|l| l.cause.as_deref()), Some("wrong_answer"), "{c:?}");
    let own = status.uid.unwrap_or(u16::MAX);
    assert!(status.miners.iter().any(|m| m.uid == own && m.is_validator && m.score == 0.0), "validators score zero");

    // The status endpoint serves the same document.
    let served: serde_json::Value = reqwest::get(&status_url).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    assert!(served["miners"].as_array().is_some_and(|m| m.len() == status.miners.len()));
    let metrics = reqwest::get(status_url.replace("/status", "/metrics")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(metrics.text().await.unwrap_or_default().contains("compute_validator_challenges_total{outcome=\"solved\"}"));

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

    validator.shutdown().await;
    fast.shutdown().await;
    slow.shutdown().await;
    cheat_server.abort();
    node.shutdown().await;
}
