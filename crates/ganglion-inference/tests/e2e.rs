//! The localnet scenario in one process: a chain node with fast blocks, a subnet, one
//! validator and four miners on loopback — two honest on the built-in engine, one honest
//! but slow, one returning random tokens — all sharing one loaded engine. After a few
//! epochs the honest miners hold nearly all the miner incentive on chain, each fast one
//! ahead of the slow one, and the dishonest one about none. Records, `/status`,
//! `/metrics` and the score state are checked along the way.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{MODEL, engine, engine_server, key};
use ganglion_chain::{Chain, HyperparamUpdate, Metagraph, RAO_PER_TAO};
use ganglion_core::keys::Keypair;
use ganglion_inference::miner::{self, Adversary, MinerConfig, UpstreamConfig};
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::scoring::Scoreboard;
use ganglion_inference::validator::{self, RecordsTarget, ValidatorConfig, ValidatorStatus};
use ganglion_records::{InferenceFilter, Records};

async fn metagraph(chain: &dyn Chain, netuid: u16) -> Metagraph {
    Metagraph::fetch(chain, netuid).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_miners_earn_the_incentive_and_the_cheat_none() {
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let (node, chain, netuid) =
        common::subnet(&dir.path().join("chain"), Duration::from_millis(100), 10, HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() }).await;
    let (vcold, vhot) = (key("//VCold"), key("//VHot"));
    let vuid = common::register(chain.as_ref(), &vcold, netuid, &vhot, 5_000).await;
    chain.add_stake(&vcold, netuid, &vhot.public(), 2_000 * RAO_PER_TAO).await.unwrap();
    let names = ["Fast1", "Fast2", "Slow", "Cheat"];
    let mut hotkeys = Vec::new();
    let mut uids = Vec::new();
    for name in names {
        let (cold, hot) = (key(&format!("//{name}Cold")), key(&format!("//{name}Hot")));
        uids.push(common::register(chain.as_ref(), &cold, netuid, &hot, 100).await);
        hotkeys.push(hot);
    }

    // The validator needs its permit (one epoch) before miners admit it.
    common::wait_for_permit(chain.as_ref(), netuid, vuid).await;

    // Miners: all on the one engine (one worker thread, round-robin), the slow one 3x
    // slower, the cheat without a model.
    let engine = engine();
    let upstream = engine_server(engine.clone()).await;
    let mut miners = Vec::new();
    for (name, hot) in names.iter().zip(&hotkeys) {
        let upstreams = vec![UpstreamConfig { name: MODEL.into(), url: format!("http://{upstream}/v1"), api_key: None, max_concurrency: 8 }];
        let mut config = MinerConfig::new(netuid, hot.clone(), SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), upstreams);
        config.sync_interval = Duration::from_millis(500);
        config.adversary = match *name {
            "Slow" => Some(Adversary::Slow { factor: 2.0, max_tps: None }),
            "Cheat" => Some(Adversary::RandomTokens { vocabulary: engine.clone() }),
            _ => None,
        };
        miners.push(miner::start(config, Some(chain.clone())).await.unwrap());
    }
    // Every miner served its axon.
    let served = metagraph(chain.as_ref(), netuid).await;
    for (uid, handle) in uids.iter().zip(&miners) {
        let axon = served.neuron(*uid).and_then(|n| n.axon.clone()).unwrap_or_else(|| panic!("uid {uid} has no axon"));
        assert_eq!(axon.port, handle.addr().port());
    }

    let data_dir = dir.path().join("validator");
    let mut config = ValidatorConfig::new(netuid, vhot.clone(), data_dir.clone());
    config.epoch_length = 10;
    config.min_tokens = 6;
    config.max_tokens = 8;
    config.vary_prompts = false;
    config.step_interval = Duration::ZERO;
    config.first_token_timeout = Duration::from_secs(90);
    config.total_timeout = Duration::from_secs(150);
    config.models_refresh = Duration::from_secs(2);
    config.weights_retry = Duration::from_millis(500);
    config.records = RecordsTarget::Url(Records::default_url(&data_dir));
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine.clone(), MODEL));
    let handle = validator::start(config, chain.clone(), vec![reference]).await.unwrap();

    // Run until weights were set twice and an epoch ran on them.
    // Generous: CI runs other test binaries on the same two cores at the same time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(420);
    let mut epoch_after = None;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "scenario did not finish: {:#?}", handle.status());
        let status = handle.status();
        if status.weights_set >= 2 {
            let epoch = chain.subnet(netuid).await.unwrap().epoch_index;
            match epoch_after {
                None => epoch_after = Some(epoch + 1),
                Some(target) if epoch >= target => break,
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // On chain: the incentive follows verified speed.
    let mg = metagraph(chain.as_ref(), netuid).await;
    let incentive: Vec<f64> = uids.iter().map(|&u| ganglion_chain::u16_to_float(mg.neuron(u).unwrap().incentive)).collect();
    let total: f64 = incentive.iter().sum();
    let status = handle.status();
    let report = format!("incentive {incentive:?}\nstatus {status:#?}");
    assert!(total > 0.9, "the miners hold the incentive: {report}");
    let honest = incentive[0] + incentive[1] + incentive[2];
    assert!(honest / total > 0.97, "honest miners hold nearly all of it: {report}");
    assert!(incentive[0] > incentive[2] && incentive[1] > incentive[2], "fast ahead of slow: {report}");
    assert!(incentive[3] / total < 0.01, "the cheat has about none: {report}");
    assert!(mg.neuron(uids[0]).unwrap().emission > 0);

    // /status and /metrics over HTTP.
    let addr = handle.metrics_addr().unwrap();
    let http = reqwest::Client::new();
    let served: ValidatorStatus = http.get(format!("http://{addr}/status")).send().await.unwrap().json().await.unwrap();
    let cheat = served.miners.iter().find(|m| m.uid == uids[3]).unwrap();
    assert!(cheat.verified == 0 && cheat.failed > 0 && cheat.last_cause.is_some(), "{cheat:?}");
    let fast = served.miners.iter().find(|m| m.uid == uids[0]).unwrap();
    assert!(fast.verified_percent.unwrap() > 90.0 && fast.tps.unwrap() > 0.0, "{fast:?}");
    let metrics = http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in ["ganglion_inference_steps_total", "ganglion_inference_miners_queried_total", "ganglion_inference_verifications_total{outcome=\"failed\"", "ganglion_inference_blocks_since_weights", "ganglion_inference_weights_total{result=\"ok\"}"] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    handle.shutdown().await;

    // Records (flushed on shutdown) and the score state.
    let store = Records::open(&Records::default_url(&data_dir)).await.unwrap();
    let rows = |hot: &Keypair| InferenceFilter { netuid, miner_hotkey: Some(hot.public().to_ss58()), limit: 100, ..Default::default() };
    let cheat_rows = store.recent_inference(&rows(&hotkeys[3])).await.unwrap();
    assert!(!cheat_rows.is_empty() && cheat_rows.iter().all(|r| !r.verified && r.cause.is_some()), "{cheat_rows:?}");
    let fast_rows = store.recent_inference(&rows(&hotkeys[0])).await.unwrap();
    assert!(fast_rows.iter().any(|r| r.verified && r.tps > 0.0 && r.ttft_ms.is_some()), "{fast_rows:?}");
    let board = Scoreboard::load(&data_dir.join("scores.json"), netuid).unwrap().unwrap();
    assert!(board.score(&hotkeys[0].public()) > board.score(&hotkeys[2].public()));
    assert_eq!(board.score(&hotkeys[3].public()), 0.0);
    for m in miners {
        m.shutdown().await;
    }
    node.shutdown().await;
}
