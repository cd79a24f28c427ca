//! Axon publishing: at start, again when the address changes, within the serving rate limit.

use std::time::Duration;

use ganglion_chain::{HyperparamUpdate, Metagraph};
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder, key};
use ganglion_neuron::Metrics;
use ganglion_neuron::axon::AxonPublisher;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axon_is_republished_on_change_within_the_rate_limit() {
    let subnet = SubnetBuilder::new()
        .block_time(Duration::from_millis(100))
        .hyperparams(HyperparamUpdate { serving_rate_limit: Some(10), ..Default::default() })
        .neuron(Neuron::new("//ACold", "//AMiner"))
        .build()
        .await;
    let hotkey = key("//AMiner");
    let metrics = Metrics::new();
    let chain = subnet.chain.as_ref();
    let first = "127.0.0.21:9001".parse().unwrap();
    let mut publisher = AxonPublisher::new(hotkey.clone(), subnet.netuid, first);
    let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
    assert!(publisher.ensure(chain, &metagraph, &metrics).await, "served at start");
    let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
    let axon = metagraph.by_hotkey(&hotkey.public()).and_then(|n| n.axon.clone()).unwrap();
    assert_eq!((axon.ip, axon.port), (first.ip(), first.port()));
    assert!(!publisher.ensure(chain, &metagraph, &metrics).await, "unchanged: nothing sent");

    // The operator moves the miner: the chain refuses a new serve within 10 blocks of the
    // last; the publisher waits for the limit instead of retrying every sync.
    let moved = "127.0.0.22:9002".parse().unwrap();
    let mut publisher = AxonPublisher::new(hotkey.clone(), subnet.netuid, moved);
    assert!(!publisher.ensure(chain, &metagraph, &metrics).await);
    assert_eq!(metrics.get("ganglion_axon_serve_errors_total", &[("error", "ServingRateLimitExceeded")]), 1.0);
    let mut served = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
        if publisher.ensure(chain, &metagraph, &metrics).await {
            served = true;
            break;
        }
    }
    assert!(served, "republished after the rate limit");
    assert_eq!(metrics.get("ganglion_axon_serve_errors_total", &[("error", "ServingRateLimitExceeded")]), 1.0, "no retry before the limit passed");
    let metagraph = Metagraph::fetch(chain, subnet.netuid).await.unwrap();
    let axon = metagraph.by_hotkey(&hotkey.public()).and_then(|n| n.axon.clone()).unwrap();
    assert_eq!((axon.ip, axon.port), (moved.ip(), moved.port()));
    subnet.shutdown().await;
}
