//! The compute validator on the runtime's shutdown token: stopped in the middle of a round
//! (one miner is still holding a challenge), it stops promptly, stores what had come in,
//! closes its records store, and a validator restarted on the same data directory resumes
//! with the same challenge history, hence the same difficulty per miner.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ganglion_chain::HyperparamUpdate;
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_compute::miner;
use ganglion_compute::validator::{self, ComputeValidator, ValidatorConfig};
use ganglion_neuron::Metrics;
use ganglion_neuron::status::Phase;
use ganglion_records::Records;

/// A miner that takes every challenge and never answers in time; counts the challenges.
async fn serve_staller(hits: Arc<AtomicUsize>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::routing::post;
    let router = axum::Router::new().route(
        ganglion_compute::protocol::route::CHALLENGE,
        post(move || {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(120)).await;
                axum::Json(serde_json::json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    (addr, tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_stopped_mid_round_resumes_with_the_same_history() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//RsVCold", "//RsVHot").stake(2_000).validator())
        .neuron(Neuron::new("//RsMCold", "//RsMHot"))
        .neuron(Neuron::new("//RsSCold", "//RsSHot"))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//RsVHot").hotkey.clone();
    let mhot = subnet.neuron("//RsMHot").hotkey.clone();
    let shot = subnet.neuron("//RsSHot").hotkey.clone();
    let (miner_key, staller_key) = (mhot.public().to_ss58(), shot.public().to_ss58());
    let hits = Arc::new(AtomicUsize::new(0));
    let (staller_addr, staller) = serve_staller(hits.clone()).await;
    chain.serve_axon(&shot, netuid, staller_addr.ip(), staller_addr.port(), 1, 4).await.unwrap_or_else(|e| panic!("staller axon: {e}"));
    let miner = miner::spawn(&common::node_config(netuid, &dir.path().join("miner")), mhot.clone(), chain.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("miner: {e}"));

    let timeout = Duration::from_secs(3);
    let records_url = Records::default_url(&dir.path().join("validator"));
    let mut config = common::node_config(netuid, &dir.path().join("validator"));
    config.neuron.epoch_length = 10;
    config.validator = ValidatorConfig {
        records_url: Some(records_url.clone()),
        difficulty_min: 2,
        difficulty_max: 5,
        challenge_timeout: timeout,
        round_blocks_min: 1,
        round_blocks_max: 2,
        block_poll: Duration::from_millis(50),
        ..ValidatorConfig::default()
    };
    let running = validator::spawn(&config, vhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("validator: {e}"));

    // A few rounds, then the moment a new round has sent the staller its challenge.
    let records = Records::open(&records_url).await.unwrap_or_else(|e| panic!("{e}"));
    // A round's challenges share their `created_at_ms` (the round's start).
    let rounds_of = |challenges: &[ganglion_records::ChallengeRecord], solved: bool| {
        challenges.iter().filter(|c| c.success || !solved).map(|c| c.created_at_ms).collect::<std::collections::HashSet<_>>().len()
    };
    common::eventually(Duration::from_secs(120), "a few solved rounds", || {
        let (records, key) = (records.clone(), miner_key.clone());
        async move { records.recent_challenges(netuid, &key, 1000).await.ok().filter(|c| rounds_of(c, true) >= 5).map(|_| ()) }
    })
    .await;
    let seen = hits.load(Ordering::SeqCst);
    common::eventually(Duration::from_secs(30), "a round in progress", || {
        let hits = hits.clone();
        async move { (hits.load(Ordering::SeqCst) > seen).then_some(()) }
    })
    .await;
    let in_round = hits.load(Ordering::SeqCst);

    // Stop: the staller's challenge is dropped rather than waited for.
    let started = Instant::now();
    let mut stopped = running.shutdown().await.unwrap_or_else(|e| panic!("the validator did not stop: {e}"));
    assert!(started.elapsed() < timeout, "stopped mid-round without waiting for the deadline: {:?}", started.elapsed());
    let status = ganglion_neuron::status::read_status_file(&dir.path().join("validator").join("status.json")).unwrap_or_else(|| panic!("no status.json"));
    assert_eq!(status.phase, Phase::Stopping);
    let history = stopped.history(&miner_key).await;
    let staller_history = stopped.history(&staller_key).await;
    let difficulty = stopped.next_difficulty(&miner_key).await;
    assert!(history.len() >= 5 && history.iter().all(|o| o.success), "{history:?}");
    assert!(difficulty > 2, "the difficulty climbed: {difficulty}");
    let per_round = config.validator.challenges_per_round as usize;
    assert_eq!(staller_history.len(), (in_round - 1) / per_round, "every earlier round timed out and counts; the one in flight does not");
    assert!(staller_history.iter().all(|o| !o.success));
    let stored = records.recent_challenges(netuid, &miner_key, 1000).await.unwrap_or_default();
    let max = config.validator.challenges_max_per_round as usize;
    assert_eq!(rounds_of(&stored, false), history.len(), "everything in memory was committed");
    assert!((history.len() * per_round..=history.len() * max).contains(&stored.len()), "{} challenges in {} rounds", stored.len(), history.len());
    assert!(stored.len() > history.len() * per_round, "solved challenges were replaced within their rounds: {} in {} rounds", stored.len(), history.len());

    // Restarted on the same data directory: the same history and difficulty per miner.
    let mut restarted = ComputeValidator::open(&config, vhot.clone(), chain.clone(), Arc::new(Metrics::new())).await.unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(restarted.history(&miner_key).await, history);
    assert_eq!(restarted.history(&staller_key).await, staller_history);
    assert_eq!(restarted.next_difficulty(&miner_key).await, difficulty);
    assert_eq!(restarted.next_difficulty(&staller_key).await, stopped.next_difficulty(&staller_key).await);
    restarted.records().close().await;

    miner.shutdown().await;
    staller.abort();
    subnet.shutdown().await;
}
