//! Allocation end to end: a miner with the real sandbox, a validator that stores its specs,
//! a renter that finds it, reserves it and logs in over SSH with its key; another key and
//! another hotkey are refused; the reservation survives a miner restart and expires by
//! itself, leaving nothing behind.

use crate::common;

use std::time::Duration;

use ganglion_chain::HyperparamUpdate;
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_compute::miner;
use ganglion_compute::protocol::{Allocate, Requirement, route};
use ganglion_compute::renter::{self, Order};
use ganglion_compute::sandbox::{SandboxConfig, SshConfig};
use ganglion_compute::validator;
use ganglion_records::Records;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renter_allocates_logs_in_and_the_reservation_expires() {
    if let Some(why) = common::sandbox_missing()
        && common::skip(&why) {
            return;
        }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sandboxes = common::sandbox_dir();
    let ssh_port = common::free_port();
    let subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//RenterCold", "//RenterHot").stake(2_000).validator())
        .neuron(Neuron::new("//MinerCold", "//MinerHot"))
        .neuron(Neuron::new("//IntruderCold", "//IntruderHot").stake(10).validator())
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let vhot = subnet.neuron("//RenterHot").hotkey.clone();
    let (mhot, miner_uid) = (subnet.neuron("//MinerHot").hotkey.clone(), subnet.uid("//MinerHot"));
    let ihot = subnet.neuron("//IntruderHot").hotkey.clone();

    let mut miner_config = common::node_config(netuid, &dir.path().join("miner"));
    miner_config.miner.sandbox = SandboxConfig {
        dir: sandboxes.path().to_path_buf(),
        ssh: SshConfig { listen: "127.0.0.1".parse().unwrap_or_else(|_| unreachable!()), port: ssh_port, ..SshConfig::default() },
        ..SandboxConfig::default()
    };
    // Declared after `sandboxes` so that it runs first (before the directory goes).
    let _teardown = common::MinerSandboxTeardown { data_dir: miner_config.data_dir(), config: miner_config.miner.sandbox.clone() };
    let miner = miner::spawn(&miner_config, mhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("miner: {e}"));
    assert_eq!(miner.uid, miner_uid);

    // The validator's first round stores the miner's specs.
    let records_url = Records::default_url(&dir.path().join("validator"));
    let mut validator_config = common::node_config(netuid, &dir.path().join("validator"));
    validator_config.validator = ganglion_compute::validator::ValidatorConfig {
        records_url: Some(records_url.clone()),
        difficulty_min: 2,
        difficulty_max: 3,
        round_blocks_min: 5,
        round_blocks_max: 6,
        one_uid_per_ip: false,
        block_poll: Duration::from_millis(50),
        ..Default::default()
    };
    let validator = validator::spawn(&validator_config, vhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("validator: {e}"));
    let records = Records::open(&records_url).await.unwrap_or_else(|e| panic!("{e}"));
    common::eventually(Duration::from_secs(60), "specs in the records store", || {
        let records = records.clone();
        async move { records.specs(netuid).await.ok().filter(|s| s.iter().any(|r| r.specs["has_docker"] == true)) }
    })
    .await;

    let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let renter_ssh = common::renter_key(keys.path(), "renter");
    let stranger_ssh = common::renter_key(keys.path(), "stranger");
    let client = ganglion_compute::protocol::client(vhot.clone()).unwrap_or_else(|e| panic!("{e}"));
    let requirement = Requirement { cpu: 1, gpu: 0, gpu_capacity_mib: 0, gpu_kind: String::new(), ram_bytes: 256 << 20, disk_bytes: 128 << 20 };
    let order = |requirement: Requirement, seconds: u64| Order {
        netuid,
        requirement,
        timeline_seconds: seconds,
        ssh_public_key: renter_ssh.public_line.clone(),
        volume_path: "/workspace".into(),
        miner: None,
    };

    // Larger than the machine: refused with the numbers, nothing reserved.
    let huge = Requirement { cpu: 512, ..requirement.clone() };
    let refused = renter::allocate(&client, chain.as_ref(), &records, &Order { miner: Some(mhot.public().to_ss58()), ..order(huge, 60) }).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("cpu") && message.contains("512"), "{message}");

    let granted = renter::allocate(&client, chain.as_ref(), &records, &order(requirement.clone(), 18)).await.unwrap_or_else(|e| panic!("allocate: {e}"));
    assert_eq!((granted.miner_uid, granted.port, granted.user.as_str(), granted.host.as_str()), (miner_uid, ssh_port, "root", "127.0.0.1"));
    let known = common::known_hosts(keys.path(), ssh_port, &granted.host_key);
    let stored = records.allocations(netuid).await.unwrap_or_default();
    assert!(stored.iter().any(|a| a.id == granted.allocation_id && a.status == "active" && a.access["port"] == ssh_port));
    assert!(!serde_json::to_string(&stored).unwrap_or_default().contains("PRIVATE"), "no secrets in the store");

    // The validator made this reservation itself: it proves it alive over SSH (the sandbox's
    // sshd signs a fresh key exchange with the pinned host key) and scores the miner as
    // allocated, with a proven sandbox.
    let row = common::eventually(Duration::from_secs(30), "the allocation proven alive", || {
        let status = validator.status();
        async move { status.miner(miner_uid).filter(|m| m.details["allocated"] == true).cloned() }
    })
    .await;
    assert_eq!(row.details["has_sandbox"], true, "{row:?}");
    assert!(stored.iter().any(|a| a.access["host_key"] == granted.host_key.as_str()), "the renter stores the pinned host key");

    // Log in with the renter's key; the limits are visible inside.
    let out = common::ssh(&renter_ssh.private_key, &known, ssh_port, "nproc; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; echo hello > /workspace/x; cat /workspace/x");
    assert!(out.ok, "ssh: {}", out.stderr);
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), vec!["1", &(256u64 << 20).to_string(), "hello"]);
    let denied = common::ssh(&stranger_ssh.private_key, &known, ssh_port, "true");
    assert!(!denied.ok && denied.stderr.contains("Permission denied"), "{denied:?}");

    // Another hotkey cannot change or end it; a second reservation is refused, not a takeover.
    let axon = format!("http://{}", miner.addr);
    let intruder = ganglion_compute::protocol::client(ihot.clone()).unwrap_or_else(|e| panic!("{e}"));
    let release = Allocate { timeline: 0, checking: false, ..Allocate::default() };
    let reply = intruder.call::<_, Allocate>(&axon, &mhot.public(), route::ALLOCATE, &release, Duration::from_secs(30)).await;
    let output = reply.unwrap_or_else(|e| panic!("{e}")).body.output;
    assert!(!output.status && output.error.unwrap_or_default().contains("only the hotkey that made the reservation"));
    let busy = renter::allocate(&intruder, chain.as_ref(), &records, &order(requirement.clone(), 60)).await;
    assert!(
        matches!(&busy, Err(ganglion_compute::ComputeError::NoFit { reason, .. }) if reason.contains("enough free")),
        "the records show it allocated: {busy:?}"
    );
    assert!(common::ssh(&renter_ssh.private_key, &known, ssh_port, "true").ok, "still the renter's");

    // Status: the miner reports the allocation and how each limit is enforced.
    let live = renter::status(&client, chain.as_ref(), &records, netuid).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, state) = live.first().cloned().unwrap_or_else(|| panic!("no status"));
    let state = state.unwrap_or_else(|e| panic!("status: {e}"));
    assert_eq!(state["running"], true);
    assert!(state["enforcement"]["memory"].as_str().is_some_and(|m| m.contains("cgroup")), "{state}");

    // A miner restart keeps the sandbox (sessions and data) and re-adopts it.
    // (Same axon port, as a restarted miner would use: the chain rate-limits serve_axon.)
    let axon_port = miner.addr.port();
    miner.shutdown().await;
    assert_eq!(common::ssh(&renter_ssh.private_key, &known, ssh_port, "cat /workspace/x").stdout.trim(), "hello");
    miner_config.axon.port = axon_port;
    let miner = miner::spawn(&miner_config, mhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("restart: {e}"));
    assert_eq!(miner.allocations().active().await.len(), 1, "re-adopted");

    // It expires by itself at the end of the timeline: login refused, processes and disk gone.
    let sandbox_dir = miner.allocations().active().await[0].sandbox.dir.clone();
    common::eventually(Duration::from_secs(60), "expiry", || {
        let allocations = miner.allocations().clone();
        async move { allocations.active().await.is_empty().then_some(()) }
    })
    .await;
    assert!(!common::ssh(&renter_ssh.private_key, &known, ssh_port, "true").ok);
    assert!(!sandbox_dir.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains(&granted.allocation_id));
    // The renter's view catches up (the validator marks it expired, or `status` learns from
    // the miner that it is gone and records that).
    let after = renter::status(&client, chain.as_ref(), &records, netuid).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(after.iter().all(|(_, live)| live.as_ref().err().is_some_and(|e| e.contains("no active allocation"))), "{after:?}");
    let stored = records.allocations(netuid).await.unwrap_or_default();
    assert!(stored.iter().any(|a| a.id == granted.allocation_id && a.status != "active"));
    let again = renter::deallocate(&client, chain.as_ref(), &records, netuid, None).await;
    assert!(again.err().map(|e| e.to_string()).unwrap_or_default().contains("no active allocation"));

    validator.shutdown().await.map(drop).unwrap_or_else(|e| panic!("the validator stops and saves: {e}"));
    miner.shutdown().await;
    subnet.shutdown().await;
}
