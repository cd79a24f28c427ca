//! The validator as a long-running node: organic traffic through its OpenAI endpoint
//! (forwarded to the scored miner, streamed back, recorded, verified, counted), a garbage
//! miner next to an honest one, a chain restart in the middle, and a validator restart
//! that restores the scores from `scores.json`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::{get, post};
use common::{MODEL, engine, engine_server, key, serve, sse};
use futures::StreamExt;
use ganglion_chain::{ChainConfig, HyperparamUpdate, NodeConfig, NodeHandle, RAO_PER_TAO, spawn_node};
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_inference::organic::OrganicConfig;
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::scoring::Scoreboard;
use ganglion_inference::validator::{self, RecordsTarget, ValidatorConfig, ValidatorHandle};
use ganglion_records::{InferenceFilter, Records};

async fn node(dir: &std::path::Path, addr: SocketAddr) -> NodeHandle {
    let config = NodeConfig { data_dir: dir.to_path_buf(), block_time: Duration::from_millis(100), chain: ChainConfig { default_tempo: 5, ..ChainConfig::default() } };
    // The port was just released by the previous node: retry briefly.
    for _ in 0..50 {
        if let Ok(n) = spawn_node(config.clone(), addr).await {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node did not start on {addr}");
}

async fn wait_for(what: &str, seconds: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn verified_of(handle: &ValidatorHandle, uid: u16) -> u64 {
    handle.status().miners.iter().find(|m| m.uid == uid).map_or(0, |m| m.verified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organic_traffic_chain_restart_and_state_restore() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let (first, chain, netuid) =
        common::subnet(&chain_dir, Duration::from_millis(100), 5, HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() }).await;
    let chain_addr = first.addr;
    let (vcold, vhot) = (key("//LVCold"), key("//LVHot"));
    let vuid = common::register(chain.as_ref(), &vcold, netuid, &vhot, 3_000).await;
    chain.add_stake(&vcold, netuid, &vhot.public(), 2_000 * RAO_PER_TAO).await.unwrap();
    let (hcold, hhot) = (key("//LHCold"), key("//LHHot"));
    let honest_uid = common::register(chain.as_ref(), &hcold, netuid, &hhot, 3_000).await;
    let (gcold, ghot) = (key("//LGCold"), key("//LGHot"));
    let garbage_uid = common::register(chain.as_ref(), &gcold, netuid, &ghot, 3_000).await;
    common::wait_for_permit(chain.as_ref(), netuid, vuid).await;

    // An honest miner on the engine, and a garbage one that says it serves the model.
    let upstream = engine_server(engine()).await;
    let mut config = MinerConfig::new(netuid, hhot.clone(), "127.0.0.1:0".parse().unwrap(), vec![UpstreamConfig {
        name: MODEL.into(),
        url: format!("http://{upstream}/v1"),
        api_key: None,
        max_concurrency: 4,
    }]);
    config.sync_interval = Duration::from_millis(300);
    let honest = miner::start(config, Some(chain.clone())).await.unwrap();
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
        c.first_token_timeout = Duration::from_secs(60);
        c.total_timeout = Duration::from_secs(120);
        c.models_refresh = Duration::from_secs(2);
        c.weights_retry = Duration::from_millis(500);
        c.records = RecordsTarget::Url(Records::default_url(&data_dir));
        let mut organic = OrganicConfig::new("127.0.0.1:0".parse().unwrap(), vec!["sk-test".into()]);
        organic.verify_fraction = 1.0;
        c.organic = Some(organic);
        c
    };
    let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine(), MODEL));
    let handle = validator::start(make_config(), chain.clone(), vec![reference.clone()]).await.unwrap();
    wait_for("a verified answer from the honest miner", 150, async || verified_of(&handle, honest_uid) > 0).await;
    let status = handle.status();
    let junk = status.miners.iter().find(|m| m.uid == garbage_uid).unwrap();
    assert!(junk.failed > 0 && junk.last_cause.as_deref() == Some("MALFORMED"), "{junk:?}");

    // Organic traffic: streamed and not, bad key, unknown model.
    let organic = format!("http://{}", handle.organic_addr().unwrap());
    let http = reqwest::Client::new();
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
        handle.status().miners.iter().any(|m| m.uid == honest_uid && m.organic_verified >= 2)
    })
    .await;

    // The chain goes away and comes back: the loop carries on and sets weights again.
    wait_for("first weights", 120, async || handle.status().weights_set >= 1).await;
    first.shutdown().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steps_before = handle.status().steps;
    let second = node(&chain_dir, chain_addr).await;
    let weights_before = handle.status().weights_set;
    wait_for("steps and weights after the chain restart", 150, async || {
        let s = handle.status();
        s.steps > steps_before + 1 && s.weights_set > weights_before
    })
    .await;

    // Restart the validator: the scores come back from scores.json.
    let before = verified_of(&handle, honest_uid);
    handle.shutdown().await;
    let saved = Scoreboard::load(&data_dir.join("scores.json"), netuid).unwrap().unwrap();
    assert!(saved.miners[&hhot.public().to_ss58()].verified >= before);
    let handle = validator::start(make_config(), chain.clone(), vec![reference]).await.unwrap();
    wait_for("a step after the restart", 150, async || handle.status().steps >= 1).await;
    assert!(verified_of(&handle, honest_uid) >= before, "restored, not reset");
    handle.shutdown().await;

    let store = Records::open(&Records::default_url(&data_dir)).await.unwrap();
    let rows = store.recent_inference(&InferenceFilter { netuid, miner_hotkey: Some(hhot.public().to_ss58()), limit: 500, ..Default::default() }).await.unwrap();
    assert!(rows.iter().filter(|r| r.organic).count() >= 2, "organic records: {rows:?}");
    honest.shutdown().await;
    second.shutdown().await;
}
