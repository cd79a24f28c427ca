//! The running hub over loopback HTTP: the live feed (SSE), its client cap, and the chain
//! watcher against an in-process chain node (metagraph from the chain, snapshots recorded,
//! and records still served once the chain is gone).

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_hub::{HubConfig, bind};
use ganglion_records::Records;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn memory_store() -> Records {
    Records::open("sqlite::memory:").await.expect("store")
}

/// Reads SSE frames from `response` until one has `event: {name}`; returns its data.
async fn next_event(stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin), buffer: &mut String, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event == name {
                return data;
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "no `{name}` event within 20 s");
        match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(Ok(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("event stream ended while waiting for `{name}`: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_pushes_new_records_and_caps_clients() {
    let records = memory_store().await;
    let mut config = HubConfig::new(records.clone(), None, "none");
    config.feed_poll = Duration::from_millis(50);
    config.max_sse_clients = 1;
    let hub = bind(config, loopback()).await.expect("hub");
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let response = http.get(format!("{}api/events?netuid=1", hub.url())).send().await.expect("connect");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let hello = next_event(&mut stream, &mut buffer, "hello").await;
    assert!(hello.contains("\"netuid\":1"), "{hello}");

    // The cap: a second client is refused while the first is connected.
    let second = http.get(format!("{}api/events", hub.url())).send().await.expect("connect");
    assert_eq!(second.status(), 503);
    let body: serde_json::Value = second.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable");

    // Records of another netuid are filtered out; ours arrive in order.
    let s = common::inference_subnet();
    let other = ganglion_records::synthetic::SyntheticSubnet::ending_at(5, 1, 2, 10, 1_000_000, 1000);
    records.insert_inference(&[other.inference(0)]).await.expect("insert");
    records.insert_inference(&[s.inference(0), s.inference(1)]).await.expect("insert");
    let first = next_event(&mut stream, &mut buffer, "inference").await;
    let first: serde_json::Value = serde_json::from_str(&first).expect("json");
    assert_eq!((first["kind"].as_str(), first["id"].as_str()), (Some("inference"), Some(s.inference(0).id.as_str())));
    let second: serde_json::Value = serde_json::from_str(&next_event(&mut stream, &mut buffer, "inference").await).expect("json");
    assert_eq!(second["id"], s.inference(1).id);
    assert!(second["prompt"].is_null(), "the feed carries summaries, not prompts");

    // Dropping the client frees its slot.
    drop(stream);
    let mut freed = false;
    for _ in 0..100 {
        let again = http.get(format!("{}api/events", hub.url())).send().await.expect("connect");
        if again.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the slot of a disconnected client was not released");
    tokio::time::timeout(Duration::from_secs(10), hub.shutdown()).await.expect("shutdown ends live streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_metagraph_snapshots_and_an_unreachable_chain() {
    let mut subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .neuron(Neuron::new("//HubMinerCold", "//HubMinerHot").fund(100))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let miner_hot = subnet.neuron("//HubMinerHot").hotkey.clone();

    let records = memory_store().await;
    let mut config = HubConfig::new(records.clone(), Some(chain), subnet.url());
    config.chain_poll = Duration::from_millis(100);
    config.snapshot_every_blocks = 2;
    let hub = bind(config, loopback()).await.expect("hub");
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let overview_url = format!("{}api/subnets/{netuid}/overview", hub.url());
    let miner = miner_hot.public().to_ss58();

    // The overview shows the chain's metagraph; snapshots accumulate every 2 blocks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: serde_json::Value = http.get(&overview_url).send().await.expect("get").json().await.expect("json");
        let history = records.neuron_history(netuid, &miner, 100).await.expect("history");
        if body["metagraph"]["source"] == "chain" && history.len() >= 3 {
            let hotkeys: Vec<&str> = body["neurons"].as_array().expect("neurons").iter().filter_map(|n| n["neuron"]["hotkey"].as_str()).collect();
            assert!(hotkeys.contains(&miner.as_str()), "{hotkeys:?}");
            assert_eq!(body["chain"]["reachable"], true);
            assert!(history.windows(2).all(|w| w[0].block >= w[1].block + 2), "snapshots every 2 blocks");
            break;
        }
        assert!(Instant::now() < deadline, "no chain metagraph and snapshots in 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The chain goes away: pages keep answering and say so.
    subnet.stop_node().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http.get(&overview_url).send().await.expect("get");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        if body["chain"]["reachable"] == false {
            assert!(body["chain"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
            assert!(!body["neurons"].as_array().expect("neurons").is_empty(), "the last metagraph stays visible");
            break;
        }
        assert!(Instant::now() < deadline, "the hub never noticed the chain was gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: serde_json::Value = http.get(format!("{}api/status", hub.url())).send().await.expect("get").json().await.expect("json");
    assert_eq!(status["chain"]["reachable"], false);
    let metrics = http.get(format!("{}metrics", hub.url())).send().await.expect("get").text().await.expect("text");
    assert!(metrics.contains("ganglion_hub_chain_reachable{} 0.0"), "{metrics}");
    hub.shutdown().await;
}
