//! The validator as a long-running node: organic traffic through its OpenAI endpoint
//! (forwarded to the scored miner, streamed back, recorded, verified, counted), a garbage
//! miner next to an honest one, a chain restart in the middle, and a validator restart
//! that restores the scores from `scores.json`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::{get, post};
use common::{MODEL, detail, engine, engine_server, last_cause, saved_scores, serve, sse, weights_set};
use futures::StreamExt;
use ganglion_chain::HyperparamUpdate;
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_inference::organic::OrganicConfig;
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::validator::{self, ModelSource, RecordsTarget, ValidatorConfig, ValidatorHandle};
use ganglion_neuron::status::{Phase, read_status_file};
use ganglion_neuron::{NodeStatus, Shutdown};
use ganglion_records::{InferenceFilter, Records};

async fn wait_for(what: &str, seconds: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn verified_of(handle: &ValidatorHandle, uid: u16) -> u64 {
    handle.status().miner(uid).map_or(0, |m| detail(m, "verified"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organic_traffic_chain_restart_and_state_restore() {
    let dir = tempfile::tempdir().unwrap();
    let mut subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(5)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//LVCold", "//LVHot").fund(3_000).stake(2_000).validator())
        .neuron(Neuron::new("//LHCold", "//LHHot").fund(3_000))
        .neuron(Neuron::new("//LGCold", "//LGHot").fund(3_000))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//LVHot").hotkey.clone();
    let (hhot, honest_uid) = (subnet.neuron("//LHHot").hotkey.clone(), subnet.uid("//LHHot"));
    let (ghot, garbage_uid) = (subnet.neuron("//LGHot").hotkey.clone(), subnet.uid("//LGHot"));

    // An honest miner on the engine, and a garbage one that says it serves the model.
    let upstream = engine_server(engine()).await;
    let mut config = MinerConfig::new(netuid, hhot.clone(), "127.0.0.1:0".parse().unwrap(), vec![UpstreamConfig {
        name: MODEL.into(),
        url: format!("http://{upstream}/v1"),
        api_key: None,
        max_concurrency: 4,
    }]);
    config.sync_interval = Duration::from_millis(300);
    let honest = miner::start(config, Some(chain.clone()), None).await.unwrap();
    let garbage = serve(
        axum::Router::new()
            .route("/models", get(|| async { axum::Json(vec![MODEL]) }).post(|| async { "ok" }))
            .route("/v1/chat/completions", post(|| async { sse(futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"data: rubbish\n\n"))])) }))
            .route("/v1/completions", post(|| async { sse(futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"data: rubbish\n\n"))])) })),
    )
    .await;
    chain.serve_axon(&ghot, netuid, garbage.ip(), garbage.port(), 1, 4).await.unwrap();

    let data_dir = dir.path().join("validator");
    let make_config = || {
        let mut c = ValidatorConfig::new(netuid, vhot.clone(), data_dir.clone());
        c.epoch_length = 5;
        c.min_tokens = 4;
        c.max_tokens = 6;
        // Exercise the rewording path with a tiny budget.
        c.vary_prompts = true;
        c.vary_max_tokens = 6;
        c.step_interval = Duration::from_millis(200);
        c.round_window = Duration::from_secs(3);
        c.concurrency = 2;
        c.first_token_timeout = Duration::from_secs(60);
        c.total_timeout = Duration::from_secs(120);
        c.models_refresh = Duration::from_secs(2);
        c.records = RecordsTarget::Url(Records::default_url(&data_dir));
        let mut organic = OrganicConfig::new("127.0.0.1:0".parse().unwrap(), vec!["sk-test".into()]);
        organic.verify_fraction = 1.0;
        c.organic = Some(organic);
        c
    };
    let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine(), MODEL));
    let handle = validator::start(make_config(), chain.clone(), vec![reference.clone()], None).await.unwrap();
    wait_for("a verified answer from the honest miner", 150, async || verified_of(&handle, honest_uid) > 0).await;
    let status = handle.status();
    let junk = status.miners.iter().find(|m| m.uid == garbage_uid).unwrap();
    assert!(detail(junk, "failed") > 0 && last_cause(junk) == Some("MALFORMED"), "{junk:?}");

    // Organic traffic: streamed and not, bad key, unknown model.
    let organic = format!("http://{}", handle.organic_addr().unwrap());
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let ask = |stream: bool| {
        http.post(format!("{organic}/v1/chat/completions"))
            .bearer_auth("sk-test")
            .json(&serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 5, "temperature": 0, "stream": stream}))
    };
    let r = ask(true).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Vec<Bytes> = r.bytes_stream().map(|c| c.unwrap()).collect().await;
    let text = String::from_utf8_lossy(&body.concat()).into_owned();
    assert!(text.contains("chat.completion.chunk") && text.contains("[DONE]"), "{text}");
    let r: serde_json::Value = ask(false).send().await.unwrap().json().await.unwrap();
    assert!(!r["choices"][0]["message"]["content"].as_str().unwrap().is_empty(), "{r}");
    assert_eq!(r["object"], "chat.completion");
    let unauthorised = http.post(format!("{organic}/v1/chat/completions")).bearer_auth("wrong").json(&serde_json::json!({"model": MODEL})).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    let unknown = http.post(format!("{organic}/v1/chat/completions")).bearer_auth("sk-test").json(&serde_json::json!({"model": "other", "messages": []})).send().await.unwrap();
    assert_eq!(unknown.status(), 503);
    wait_for("verified organic work in the scores", 120, async || {
        handle.status().miners.iter().any(|m| m.uid == honest_uid && detail(m, "organic_verified") >= 2)
    })
    .await;

    // The chain goes away and comes back: the loop carries on and sets weights again.
    wait_for("first weights", 120, async || weights_set(&handle.status()) >= 1).await;
    subnet.stop_node().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steps_before = handle.status().steps;
    // Same address and data directory; the port was just released: retried briefly.
    subnet.start_node().await;
    let weights_before = weights_set(&handle.status());
    wait_for("steps and weights after the chain restart", 150, async || {
        let s = handle.status();
        s.steps > steps_before + 1 && weights_set(&s) > weights_before
    })
    .await;

    // Restart the validator: the scores come back from scores.json.
    let before = verified_of(&handle, honest_uid);
    handle.shutdown().await.expect("the validator stops and saves");
    let saved = saved_scores(&data_dir, netuid);
    assert!(saved.miners[&hhot.public().to_ss58()].verified >= before);
    let handle = validator::start(make_config(), chain.clone(), vec![reference], None).await.unwrap();
    wait_for("a step after the restart", 150, async || handle.status().steps >= 1).await;
    assert!(verified_of(&handle, honest_uid) >= before, "restored, not reset");
    handle.shutdown().await.expect("the validator stops and saves");

    let store = Records::open(&Records::default_url(&data_dir)).await.unwrap();
    let rows = store.recent_inference(&InferenceFilter { netuid, miner_hotkey: Some(hhot.public().to_ss58()), limit: 500, ..Default::default() }).await.unwrap();
    assert!(rows.iter().filter(|r| r.organic).count() >= 2, "organic records: {rows:?}");
    honest.shutdown().await;
    subnet.shutdown().await;
}

/// A validator stopped through its shutdown token mid-epoch (scores present, weights not
/// due yet) and started again on the same data directory comes back with the same scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_mid_epoch_and_restarted_it_keeps_its_scores() {
    let dir = tempfile::tempdir().unwrap();
    let subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(5)
        .neuron(Neuron::new("//RVCold", "//RVHot").fund(3_000).stake(2_000).validator())
        .neuron(Neuron::new("//RMCold", "//RMHot").fund(3_000))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//RVHot").hotkey.clone();
    let (mhot, miner_uid) = (subnet.neuron("//RMHot").hotkey.clone(), subnet.uid("//RMHot"));
    let upstream = engine_server(engine()).await;
    let mut config = MinerConfig::new(netuid, mhot, "127.0.0.1:0".parse().unwrap(), vec![UpstreamConfig {
        name: MODEL.into(),
        url: format!("http://{upstream}/v1"),
        api_key: None,
        max_concurrency: 4,
    }]);
    config.sync_interval = Duration::from_millis(300);
    let miner = miner::start(config, Some(chain.clone()), None).await.unwrap();

    let data_dir = dir.path().join("validator");
    let make_config = || {
        let mut c = ValidatorConfig::new(netuid, vhot.clone(), data_dir.clone());
        // Weights are not due for a long while: the stop comes mid-epoch.
        c.epoch_length = 100_000;
        c.min_tokens = 4;
        c.max_tokens = 6;
        c.vary_prompts = false;
        c.step_interval = Duration::from_millis(100);
        c.round_window = Duration::from_secs(3);
        c.concurrency = 2;
        c.first_token_timeout = Duration::from_secs(60);
        c.total_timeout = Duration::from_secs(120);
        c.records = RecordsTarget::Disabled;
        c
    };
    let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine(), MODEL));
    let (trigger, token) = Shutdown::new();
    let handle = validator::start(make_config(), chain.clone(), vec![reference.clone()], Some(token)).await.unwrap();
    wait_for("a score for the miner", 150, async || handle.status().miner(miner_uid).is_some_and(|m| m.score > 0.0)).await;
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(180), handle.wait()).await.expect("the validator stops on its token").expect("and saves");
    // The last status (written at the stop, with the scores just saved).
    let before = read_status_file(&data_dir.join("status.json")).unwrap();
    assert_eq!(before.phase, Phase::Stopping);
    let weights = before.weights.clone().unwrap();
    assert_eq!(weights.set_count, 0, "weights were not due yet: {weights:?}");
    assert!(weights.next_due_block.is_none_or(|due| due > before.block), "{weights:?}");
    let scores = |s: &NodeStatus| s.miners.iter().map(|m| (m.uid, m.score)).collect::<Vec<_>>();
    assert!(before.miner(miner_uid).unwrap().score > 0.0, "{before:?}");

    // Restarted on the same data directory, asking for a model nobody serves (so that no
    // new result changes the scores before they are compared).
    let models = dir.path().join("models.txt");
    std::fs::write(&models, "nobody-serves-this\n").unwrap();
    let mut config = make_config();
    config.models = ModelSource::Config(models);
    let handle = validator::start(config, chain.clone(), vec![reference], None).await.unwrap();
    wait_for("a step after the restart", 150, async || handle.status().steps >= 1).await;
    let after = handle.status();
    assert_eq!(scores(&after), scores(&before), "restored, not reset");
    handle.shutdown().await.expect("the validator stops and saves");
    miner.shutdown().await;
    subnet.shutdown().await;
}
