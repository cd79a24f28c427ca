//! The localnet scenario in one process: a chain node with fast blocks, a subnet, one
//! validator and four miners on loopback — two honest on the built-in engine, one honest
//! but slow, one returning random tokens — all sharing one loaded engine. After a few
//! epochs the honest miners hold nearly all the miner incentive on chain, each fast one
//! ahead of the slow one, and the dishonest one about none. Records, `/status`,
//! `/metrics` and the score state are checked along the way.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{MODEL, detail, engine, engine_server, last_cause, saved_scores, weights_set};
use ganglion_chain::{Chain, HyperparamUpdate, Metagraph};
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_core::keys::Keypair;
use common::dishonest::{Cheat, upstream as dishonest};
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::validator::{self, RecordsTarget, ValidatorConfig};
use ganglion_neuron::NodeStatus;
use ganglion_neuron::status::Role;
use ganglion_records::{InferenceFilter, Records};

async fn metagraph(chain: &dyn Chain, netuid: u16) -> Metagraph {
    Metagraph::fetch(chain, netuid).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_miners_earn_the_incentive_and_the_cheat_none() {
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let names = ["Fast1", "Fast2", "Slow", "Cheat"];
    // The validator needs its permit (one epoch) before miners admit it: `validator()`
    // waits for it.
    let mut builder = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//VCold", "//VHot").fund(5_000).stake(2_000).validator());
    for name in names {
        builder = builder.neuron(Neuron::new(&format!("//{name}Cold"), &format!("//{name}Hot")).fund(100));
    }
    let subnet = builder.build().await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//VHot").hotkey.clone();
    let hotkeys: Vec<Keypair> = subnet.neurons[1..].iter().map(|n| n.hotkey.clone()).collect();
    let uids: Vec<u16> = subnet.neurons[1..].iter().map(|n| n.uid).collect();

    // Miners: all on the one engine (one worker thread, round-robin), the slow one 3x
    // slower, the cheat without a model.
    let engine = engine();
    let upstream = engine_server(engine.clone()).await;
    let mut miners = Vec::new();
    for (name, hot) in names.iter().zip(&hotkeys) {
        // The slow and the cheating miner are the production miner in front of a dishonest
        // upstream (the cheating is never in the miner).
        let url = match *name {
            "Slow" => dishonest(upstream, engine.clone(), Cheat::Slow(2.0)).await,
            "Cheat" => dishonest(upstream, engine.clone(), Cheat::RandomTokens).await,
            _ => upstream,
        };
        let upstreams = vec![UpstreamConfig { name: MODEL.into(), url: format!("http://{url}/v1"), api_key: None, max_concurrency: 8 }];
        let mut config = MinerConfig::new(netuid, hot.clone(), SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), upstreams);
        config.sync_interval = Duration::from_millis(500);
        miners.push(miner::start(config, Some(chain.clone()), None).await.unwrap());
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
    // Short rounds, two requests in flight per miner: CPU-sized.
    config.round_window = Duration::from_secs(4);
    config.concurrency = 2;
    config.first_token_timeout = Duration::from_secs(90);
    config.total_timeout = Duration::from_secs(150);
    config.models_refresh = Duration::from_secs(2);
    config.records = RecordsTarget::Url(Records::default_url(&data_dir));
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine.clone(), MODEL));
    let handle = validator::start(config, chain.clone(), vec![reference], None).await.unwrap();

    // Run until weights were set twice and an epoch ran on them.
    // Generous: CI runs other test binaries on the same two cores at the same time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(420);
    let mut epoch_after = None;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "scenario did not finish: {:#?}", handle.status());
        let status = handle.status();
        if weights_set(&status) >= 2 {
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
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let served: NodeStatus = http.get(format!("http://{addr}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!((served.subnet.as_str(), served.role, served.netuid), ("inference", Role::Validator, netuid));
    assert_eq!(served.details["verify_mode"], "logprob");
    let cheat = served.miner(uids[3]).unwrap();
    assert!(detail(cheat, "verified") == 0 && detail(cheat, "failed") > 0 && last_cause(cheat).is_some(), "{cheat:?}");
    // The fast miner's window holds mostly verified rounds. Not all: on a loaded CI machine a
    // round can end before its answer (`TIMEOUT`), which scores zero without being a
    // verification failure; the records below show it was never caught.
    let fast = served.miner(uids[0]).unwrap();
    assert!(fast.verified_share.unwrap() > 0.5 && fast.speed.as_ref().unwrap().value > 0.0, "{fast:?}");
    assert!(matches!(last_cause(fast), None | Some("TIMEOUT")), "{fast:?}");
    assert_eq!(fast.speed.as_ref().unwrap().unit, "tok/s");
    // status.json holds the same document.
    let file = ganglion_neuron::status::read_status_file(&data_dir.join("status.json")).unwrap();
    assert_eq!((file.subnet.as_str(), file.role), ("inference", Role::Validator));
    let metrics = http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "ganglion_validator_steps_total",
        "ganglion_inference_miners_queried_total",
        "ganglion_inference_verifications_total{outcome=\"failed\"",
        "ganglion_weights_last_set_block",
        "ganglion_weights_submissions_total{result=\"ok\"}",
        "ganglion_inference_request_seconds_bucket",
        "ganglion_inference_ttft_seconds_count",
        "ganglion_inference_verification_seconds_sum",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    // The miners' own loopback /metrics and /status.
    let miner_metrics = http.get(format!("http://{}/metrics", miners[0].addr())).send().await.unwrap().text().await.unwrap();
    assert!(miner_metrics.contains("ganglion_miner_request_seconds_count{model=\"smollm2\"}"), "{miner_metrics}");
    let miner_status: NodeStatus = http.get(format!("http://{}/status", miners[0].addr())).send().await.unwrap().json().await.unwrap();
    assert_eq!((miner_status.role, miner_status.uid), (Role::Miner, Some(uids[0])));
    assert_eq!(miner_status.details["models"], serde_json::json!([MODEL]));
    assert!(miner_status.steps > 0 && miner_status.details["active_streams"].is_u64(), "{miner_status:?}");
    handle.shutdown().await.expect("the validator stops and saves");

    // Records (flushed on shutdown) and the score state.
    let store = Records::open(&Records::default_url(&data_dir)).await.unwrap();
    let rows = |hot: &Keypair| InferenceFilter { netuid, miner_hotkey: Some(hot.public().to_ss58()), limit: 100, ..Default::default() };
    let cheat_rows = store.recent_inference(&rows(&hotkeys[3])).await.unwrap();
    assert!(!cheat_rows.is_empty() && cheat_rows.iter().all(|r| !r.verified && r.cause.is_some()), "{cheat_rows:?}");
    let fast_rows = store.recent_inference(&rows(&hotkeys[0])).await.unwrap();
    assert!(fast_rows.iter().any(|r| r.verified && r.tps > 0.0 && r.ttft_ms.is_some()), "{fast_rows:?}");
    let caught: Vec<_> = fast_rows.iter().filter(|r| !r.verified && r.cause.as_deref() != Some("TIMEOUT")).collect();
    assert!(caught.is_empty(), "an honest miner failed verification: {caught:?}");
    let board = saved_scores(&data_dir, netuid);
    assert!(board.score(&hotkeys[0].public()) > board.score(&hotkeys[2].public()));
    assert_eq!(board.score(&hotkeys[3].public()), 0.0);
    for m in miners {
        m.shutdown().await;
    }
    subnet.shutdown().await;
}
