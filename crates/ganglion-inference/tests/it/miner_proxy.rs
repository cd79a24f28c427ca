//! The miner proxy over HTTP: Epistula, routing by `X-Targon-Model`, byte streaming without
//! buffering, limits, the unauthenticated routes, and the caller policy and axon serving
//! from a real (in-process) chain.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use common::{key, serve};
use futures::StreamExt;
use ganglion_chain::{HyperparamUpdate, Metagraph};
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_core::keys::Keypair;
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_protocol::epistula::EpistulaRequestExt;
use ganglion_protocol::policy::PolicyConfig;
use tokio::sync::Notify;

/// An upstream that streams `first`, waits for `release`, then streams `rest`.
async fn gated_upstream(first: &'static str, rest: &'static str, release: Arc<Notify>) -> SocketAddr {
    let handler = move || {
        let release = release.clone();
        async move {
            let head = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(format!("data: {first}\n\n"))) });
            let tail = futures::stream::once(async move {
                release.notified().await;
                Ok::<_, std::io::Error>(Bytes::from(format!("data: {rest}\n\ndata: [DONE]\n\n")))
            });
            let mut r = Response::new(Body::from_stream(head.chain(tail)));
            r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    };
    serve(axum::Router::new().route("/v1/chat/completions", post(handler.clone())).route("/v1/completions", post(handler))).await
}

fn upstream(name: &str, addr: SocketAddr) -> UpstreamConfig {
    UpstreamConfig { name: name.into(), url: format!("http://{addr}/v1"), api_key: None, max_concurrency: 4 }
}

fn signed(http: &reqwest::Client, url: &str, caller: &Keypair, receiver: &Keypair, body: &str) -> reqwest::RequestBuilder {
    http.post(url).header("content-type", "application/json").epistula(caller, Some(&receiver.public()), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epistula_routing_streaming_and_limits() {
    let (release_a, release_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = gated_upstream("alpha-first", "alpha-rest", release_a.clone()).await;
    let b = gated_upstream("beta-first", "beta-rest", release_b.clone()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let miner_key = key("//ProxyMiner");
    let mut config = MinerConfig::new(1, miner_key.clone(), "127.0.0.1:0".parse().unwrap(), vec![upstream("model-a", a), upstream("model-b", b), upstream("model-dead", dead)]);
    config.policy = PolicyConfig::default();
    config.axon.serve = false;
    config.per_caller_concurrency = 1;
    config.max_request_bytes = 4096;
    let handle = miner::start(config, None, None).await.unwrap();
    let base = format!("http://{}", handle.addr());
    let url = format!("{base}/v1/chat/completions");
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let (alice, bob) = (key("//Alice"), key("//Bob"));
    let body_a = r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

    // Unsigned, or signed for someone else: refused before anything is forwarded.
    let r = http.post(&url).body(body_a).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("missing_header"));
    let r = signed(&http, &url, &alice, &bob, body_a).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("wrong_receiver"));

    // Routed by the body's model; the first chunk arrives while the upstream still holds the rest.
    let r = signed(&http, &url, &alice, &miner_key, body_a).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("content-type").unwrap(), "text/event-stream");
    let mut stream = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("alpha-first"), "streamed, not buffered");

    // While Alice's stream is open she is at her limit; Bob is not.
    let r = signed(&http, &url, &alice, &miner_key, body_a).send().await.unwrap();
    assert_eq!(r.status(), 429);
    release_a.notify_one();
    let rest: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
    assert!(String::from_utf8_lossy(&rest.concat()).contains("alpha-rest"));

    // The header wins over the body.
    let r = signed(&http, &url, &bob, &miner_key, body_a).header("x-targon-model", "model-b").send().await.unwrap();
    assert_eq!(r.status(), 200);
    release_b.notify_one();
    assert!(r.text().await.unwrap().contains("beta-first"));

    // Unknown model, dead upstream, oversized body.
    let r = signed(&http, &url, &bob, &miner_key, r#"{"model":"nope"}"#).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = signed(&http, &url, &bob, &miner_key, r#"{"model":"model-dead"}"#).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let big = format!(r#"{{"model":"model-a","pad":"{}"}}"#, "x".repeat(10_000));
    let r = signed(&http, &url, &bob, &miner_key, &big).send().await.unwrap();
    assert_eq!(r.status(), 413);

    // GET /models lists what is served; POST /models takes the validator's list.
    let r = http.get(format!("{base}/models")).epistula(&bob, Some(&miner_key.public()), Vec::new()).send().await.unwrap();
    assert_eq!(r.json::<Vec<String>>().await.unwrap(), vec!["model-a", "model-b", "model-dead"]);
    let r = signed(&http, &format!("{base}/models"), &bob, &miner_key, r#"["model-a","model-z"]"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(http.get(format!("{base}/models")).send().await.unwrap().status(), 400, "GET /models is protected too");

    // Health and metrics need no signature.
    let health: serde_json::Value = http.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["hotkey"], miner_key.public().to_ss58());
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ganglion_miner_requests_total{route=\"/v1/chat/completions\",status=\"429\"} 1"), "{metrics}");
    assert!(metrics.contains("ganglion_miner_upstream_errors_total{model=\"model-dead\""), "{metrics}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_axon_come_from_the_chain() {
    let subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(50))
        .tempo(4)
        .hyperparams(HyperparamUpdate { serving_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//PVCold", "//PVHot").fund(3_000).stake(2_000).validator())
        .neuron(Neuron::new("//PSCold", "//PSHot").fund(3_000))
        .neuron(Neuron::new("//PMCold", "//PMHot").fund(3_000))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//PVHot").hotkey.clone();
    let shot = subnet.neuron("//PSHot").hotkey.clone();
    let (mhot, muid) = (subnet.neuron("//PMHot").hotkey.clone(), subnet.uid("//PMHot"));

    let release = Arc::new(Notify::new());
    let up = gated_upstream("ok", "done", release.clone()).await;
    let mut config = MinerConfig::new(netuid, mhot.clone(), "127.0.0.1:0".parse().unwrap(), vec![upstream("m", up)]);
    config.sync_interval = Duration::from_millis(200);
    let handle = miner::start(config, Some(chain.clone()), None).await.unwrap();
    let mg = Metagraph::fetch(chain.as_ref(), netuid).await.unwrap();
    assert_eq!(mg.neuron(muid).and_then(|n| n.axon.clone()).map(|a| a.port), Some(handle.addr().port()), "axon served at start");

    let url = format!("http://{}/v1/chat/completions", handle.addr());
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let body = r#"{"model":"m","stream":true}"#;
    release.notify_waiters();
    let r = signed(&http, &url, &vhot, &mhot, body).send().await.unwrap();
    assert_eq!(r.status(), 200, "a permitted, staked validator is served");
    drop(r);
    let denied = |who: Keypair| {
        let (http, url, mhot) = (http.clone(), url.clone(), mhot.clone());
        async move {
            let r = signed(&http, &url, &who, &mhot, body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = denied(shot.clone()).await;
    assert_eq!(status, 403);
    assert!(text.contains("rao staked") || text.contains("validator permit"), "{text}");
    let (status, text) = denied(key("//Nobody")).await;
    assert_eq!(status, 403);
    assert!(text.contains("not registered"), "{text}");

    // Someone moves the axon on chain (a restart elsewhere, a stale record): the miner puts it back.
    chain.serve_axon(&mhot, netuid, "127.0.0.1".parse().unwrap(), 9, 1, 4).await.unwrap();
    let mut restored = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mg = Metagraph::fetch(chain.as_ref(), netuid).await.unwrap();
        if mg.neuron(muid).and_then(|n| n.axon.clone()).map(|a| a.port) == Some(handle.addr().port()) {
            restored = true;
            break;
        }
    }
    assert!(restored, "the miner re-served its axon");
    handle.shutdown().await;
    subnet.shutdown().await;
}
