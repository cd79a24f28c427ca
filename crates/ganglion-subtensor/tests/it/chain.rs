//! The `Chain` trait over the real spec-218 runtime under chopsticks (instant block mode: a
//! block per transaction, as a node building its own blocks): every query and call a miner
//! or validator makes, each checked against what the runtime stored, through the same
//! `Chain` methods the nodes use on the local chain.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::StreamExt;
use ganglion_chain::{Chain, ChainError, HyperparamUpdate, Metagraph};
use ganglion_core::keys::Keypair;
use ganglion_subtensor::{KeypairSigner, Subtensor, SubtensorChain, Timeouts, Value};

use ganglion_subtensor::testkit::Chopsticks;

/// 1M TAO in rao: below 2^53 (dev_setStorage takes JSON numbers).
const RICH: u64 = 1_000_000_000_000_000;

fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

fn ok<T, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_trait_works_on_the_spec_218_runtime() {
    let Some(chop) = Chopsticks::start().await else { return };
    let (alice, bob, charlie, dave) = (key("//Alice"), key("//Bob"), key("//Charlie"), key("//Dave"));
    chop.set_sudo_and_balances(&alice.public(), &[alice.public(), bob.public(), charlie.public()], RICH).await;
    chop.set_block_mode("Instant").await;
    let timeouts = Timeouts { inclusion: Duration::from_secs(60), ..Timeouts::default() };
    let chain = SubtensorChain::new(&chop.url, timeouts);

    let info = ok("info", chain.info().await);
    assert!(info.genesis_hash.starts_with("0x") && info.genesis_hash.len() == 66, "{info:?}");
    // This runtime's build (raonet) makes a block every 3 s; finney's every 12 s.
    assert_eq!(info.block_time_ms, 3_000, "the runtime's slot duration: {info:?}");
    assert!(!info.faucet);
    let alice_before = ok("account", chain.account(&alice.public()).await);
    assert_eq!(alice_before.balance, RICH);

    // Lift the subnet rate limit (sudo, through the client), then a subnet through the trait.
    let client = ok("connect", Subtensor::connect(&chop.url).await);
    let sudo = KeypairSigner::new(alice.clone());
    let lift = ok("sudo", client.sudo_admin(&sudo, "sudo_set_network_rate_limit", vec![("rate_limit", Value::u128(0))]).await);
    ok("sudo_set_network_rate_limit", lift.wait().await);
    let created = ok("register_network", chain.register_network(&alice, &dave.public(), None).await);
    let netuid = created.netuid.unwrap_or_else(|| panic!("no netuid in {created:?}"));
    assert!(created.hash.starts_with("0x") && created.block > 0, "{created:?}");
    let refused = chain.register_network(&alice, &dave.public(), Some(netuid + 1)).await;
    assert_eq!(refused.as_ref().err().and_then(ChainError::name), Some("NetuidChosenByRuntime"), "{refused:?}");

    let subnet = ok("subnet", chain.subnet(netuid).await);
    assert_eq!((subnet.netuid, subnet.owner_coldkey, subnet.owner_hotkey), (netuid, alice.public(), dave.public()));
    assert!(subnet.n >= 1 && subnet.max_n >= subnet.n, "{subnet:?}");
    assert!(ok("subnets", chain.subnets().await).iter().any(|s| s.netuid == netuid));
    let missing = chain.subnet(netuid + 100).await;
    assert_eq!(missing.as_ref().err().and_then(ChainError::name), Some("SubNetworkDoesNotExist"), "{missing:?}");

    // Hyperparameters: the owner's setters, read back; a root-only one is refused by name.
    let before = ok("hyperparams", chain.hyperparams(netuid).await);
    assert_eq!(before.tempo, subnet.tempo);
    let update = HyperparamUpdate { weights_rate_limit: Some(0), min_allowed_weights: Some(1), ..HyperparamUpdate::default() };
    ok("set_hyperparams", chain.set_hyperparams(&alice, netuid, update).await);
    let after = ok("hyperparams", chain.hyperparams(netuid).await);
    assert_eq!((after.weights_rate_limit, after.min_allowed_weights), (0, 1), "{after:?}");
    let root_only = chain.set_hyperparams(&bob, netuid, HyperparamUpdate { kappa: Some(1), ..HyperparamUpdate::default() }).await;
    assert!(root_only.as_ref().err().and_then(ChainError::name).is_some_and(|n| n.contains("BadOrigin")), "{root_only:?}");
    // Tempo 1 for an epoch every couple of blocks (root: through sudo).
    let tempo = ok(
        "sudo",
        client.sudo_admin(&sudo, "sudo_set_tempo", vec![("netuid", Value::u128(u128::from(netuid))), ("tempo", Value::u128(1))]).await,
    );
    ok("sudo_set_tempo", tempo.wait().await);

    // Neurons: two registered by burn, Alice paying; the receipt carries the uid.
    let reg_bob = ok("register", chain.register(&alice, netuid, &bob.public()).await);
    let reg_charlie = ok("register", chain.register(&alice, netuid, &charlie.public()).await);
    let (uid_bob, uid_charlie) = (reg_bob.uid.unwrap_or(u16::MAX), reg_charlie.uid.unwrap_or(u16::MAX));
    assert_ne!(uid_bob, uid_charlie, "{reg_bob:?} {reg_charlie:?}");
    ok("add_stake", chain.add_stake(&alice, netuid, &bob.public(), 5_000_000_000).await);
    let axon_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    ok("serve_axon", chain.serve_axon(&bob, netuid, axon_ip, 8091, 1_002_003, 4).await);
    ok("transfer", chain.transfer(&alice, &dave.public(), 1_000_000_000).await);
    assert_eq!(ok("account", chain.account(&dave.public()).await).balance, 1_000_000_000);
    assert!(ok("account", chain.account(&alice.public()).await).nonce > alice_before.nonce);

    // A few epochs, so that permits and figures exist, then weights through the trait.
    for _ in 0..3 {
        chop.new_blocks(1).await;
    }
    ok("set_weights", chain.set_weights(&bob, netuid, vec![uid_bob, uid_charlie], vec![30_000, 60_000], 0).await);
    let weights = ok("weights", chain.weights(netuid).await);
    let mut row = weights.get(usize::from(uid_bob)).cloned().unwrap_or_default();
    row.sort_unstable();
    let mut expected = vec![(uid_bob, 32_767), (uid_charlie, u16::MAX)];
    expected.sort_unstable();
    assert_eq!(row, expected, "W[{uid_bob}]");
    assert!(weights.get(usize::from(uid_charlie)).is_some_and(Vec::is_empty));

    // The metagraph as the nodes read it.
    let metagraph = ok("metagraph", Metagraph::fetch(&chain, netuid).await);
    // Stake is what the runtime computes permits from: the subnet's alpha on the hotkey
    // (`TotalHotkeyAlpha`), read here straight through subxt. On this dynamic-TAO devnet a
    // new subnet's pool holds 1 alpha, so Bob's 5 TAO buy less than one rao of it.
    let api = ok("subxt", subxt::OnlineClient::<subxt::PolkadotConfig>::from_insecure_url(&chop.url).await);
    let at = ok("head", api.at_current_block().await);
    for neuron in metagraph.neurons() {
        let addr = subxt::dynamic::storage::<Vec<Value>, u64>("SubtensorModule", "TotalHotkeyAlpha");
        let keys = vec![Value::from_bytes(neuron.hotkey.as_bytes()), Value::u128(u128::from(netuid))];
        let alpha = ok("TotalHotkeyAlpha", ok("TotalHotkeyAlpha", at.storage().try_fetch(addr, keys).await).map(|v| v.decode()).transpose()).unwrap_or(0);
        assert_eq!(neuron.stake, alpha, "uid {}: {neuron:?}", neuron.uid);
    }
    assert_eq!(metagraph.n(), 3, "owner + two: {:?}", metagraph.neurons());
    let b = metagraph.by_hotkey(&bob.public()).unwrap_or_else(|| panic!("Bob is not in the metagraph"));
    assert_eq!((b.uid, b.coldkey), (uid_bob, alice.public()));
    let axon = b.axon.clone().unwrap_or_else(|| panic!("Bob's axon"));
    assert_eq!((axon.ip, axon.port, axon.version, axon.protocol), (axon_ip, 8091, 1_002_003, 4));
    assert!(b.last_update >= reg_bob.block, "{b:?}");
    assert!(b.block_at_registration >= created.block, "{b:?}");
    assert_eq!(metagraph.by_hotkey(&dave.public()).map(|n| n.uid), Some(0), "the owner's hotkey is uid 0");
    let snapshot = ok("neurons", chain.neurons(netuid, None).await).unwrap_or_else(|| panic!("no snapshot"));
    assert_eq!(ok("neurons since", chain.neurons(netuid, Some(snapshot.changed_at)).await), None, "nothing changed within a block");

    // Commitments, as the model-evaluation subnet publishes them.
    let commitment = "ganglion:tiny-model:0123abcd:feedbeef:1";
    ok("set_commitment", chain.set_commitment(&bob, netuid, commitment.into()).await);
    let read = ok("commitment", chain.commitment(netuid, &bob.public()).await).unwrap_or_else(|| panic!("no commitment"));
    assert_eq!(read.data, commitment);
    assert_eq!(ok("commitment", chain.commitment(netuid, &charlie.public()).await), None);

    // Blocks as they are finalized.
    let mut blocks = ok("subscribe", chain.subscribe_blocks().await);
    chop.new_blocks(1).await;
    let header = tokio::time::timeout(Duration::from_secs(30), blocks.next())
        .await
        .unwrap_or_else(|_| panic!("no block within 30 s"))
        .unwrap_or_else(|| panic!("the stream ended"));
    let header = ok("block", header);
    assert!(header.number > 0 && header.hash.starts_with("0x") && header.timestamp_ms > 0, "{header:?}");

    // Timelocked commits need the current runtimes' epoch scheduling, which 218 predates.
    let h = ok("hyperparams", chain.hyperparams(netuid).await);
    assert_eq!(h.commit_reveal_version, 1, "no CommitRevealWeightsVersion on 218: hash-based");
    let tlock = chain.commit_timelocked_weights(&bob, netuid, vec![uid_bob], vec![1], 0).await;
    assert_eq!(tlock.as_ref().err().and_then(ChainError::name), Some("EpochScheduleUnknown"), "{tlock:?}");

    // What only a local chain has is refused by name.
    let faucet = chain.faucet(&alice, 1).await;
    assert_eq!(faucet.as_ref().err().and_then(ChainError::name), Some("UnsupportedOnSubtensor"), "{faucet:?}");
    // A runtime refusal keeps its name: Eve has no balance to register with.
    let eve = key("//Eve");
    let poor = chain.register(&eve, netuid, &eve.public()).await;
    assert!(poor.is_err(), "{poor:?}");
}

/// Hash-based commit-reveal against the runtime: our commit hash is the runtime's
/// (`reveal_weights` is accepted only when it matches), and the neuron runtime's
/// `CommitReveal` strategy reveals in the window the runtime scheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reveal_is_accepted_by_the_spec_218_runtime() {
    use ganglion_neuron::weights::{CommitReveal, WeightStrategy};
    let Some(chop) = Chopsticks::start().await else { return };
    let (alice, bob, charlie, dave) = (key("//Alice"), key("//Bob"), key("//Charlie"), key("//Dave"));
    chop.set_sudo_and_balances(&alice.public(), &[alice.public(), bob.public(), charlie.public()], RICH).await;
    chop.set_block_mode("Instant").await;
    let chain = SubtensorChain::new(&chop.url, Timeouts::default());
    let client = ok("connect", Subtensor::connect(&chop.url).await);
    let sudo = KeypairSigner::new(alice.clone());
    ok("sudo", ok("sudo", client.sudo_admin(&sudo, "sudo_set_network_rate_limit", vec![("rate_limit", Value::u128(0))]).await).wait().await);
    let netuid = ok("register_network", chain.register_network(&alice, &dave.public(), None).await).netuid.unwrap_or(u16::MAX);
    let tempo = ok(
        "sudo",
        client.sudo_admin(&sudo, "sudo_set_tempo", vec![("netuid", Value::u128(u128::from(netuid))), ("tempo", Value::u128(4))]).await,
    );
    ok("sudo_set_tempo", tempo.wait().await);
    let update = HyperparamUpdate { weights_rate_limit: Some(0), commit_reveal_weights_enabled: Some(true), commit_reveal_period: Some(1), ..HyperparamUpdate::default() };
    ok("set_hyperparams", chain.set_hyperparams(&alice, netuid, update).await);
    let h = ok("hyperparams", chain.hyperparams(netuid).await);
    assert!(h.commit_reveal_weights_enabled, "{h:?}");
    let uid_bob = ok("register", chain.register(&alice, netuid, &bob.public()).await).uid.unwrap_or(u16::MAX);
    let uid_charlie = ok("register", chain.register(&alice, netuid, &charlie.public()).await).uid.unwrap_or(u16::MAX);
    chop.new_blocks(2).await;

    // In the clear: refused by name.
    let plain = chain.set_weights(&bob, netuid, vec![uid_charlie], vec![u16::MAX], 0).await;
    assert_eq!(plain.as_ref().err().and_then(ChainError::name), Some("CommitRevealEnabled"), "{plain:?}");

    let strategy = CommitReveal::in_memory();
    ok("commit", strategy.submit(&chain, &bob, netuid, vec![uid_bob, uid_charlie], vec![10_000, u16::MAX], 0).await);
    let pending = strategy.pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let commits = ok("weight_commits", chain.weight_commits(netuid, &bob.public()).await);
    assert_eq!(commits.len(), 1, "{commits:?}");
    // The window the runtime scheduled is the epoch after the commit's (reveal period 1).
    assert_eq!(commits[0].reveal_epoch, commits[0].commit_epoch + 1, "{commits:?}");
    assert_eq!(commits[0].last_reveal_block - commits[0].first_reveal_block, 4, "one tempo-4 epoch: {commits:?}");
    let mut revealed = Vec::new();
    for _ in 0..40 {
        let block = ok("block", chain.block_number().await);
        revealed = strategy.poll(&chain, &bob, netuid, block).await;
        if !revealed.is_empty() {
            break;
        }
        chop.new_blocks(1).await;
    }
    assert_eq!(revealed.len(), 1, "not revealed within 40 blocks: {:?}", strategy.pending());
    let weights = ok("weights", chain.weights(netuid).await);
    let mut row = weights.get(usize::from(uid_bob)).cloned().unwrap_or_default();
    row.sort_unstable();
    assert_eq!(row, {
        let mut e = vec![(uid_bob, 10_000), (uid_charlie, u16::MAX)];
        e.sort_unstable();
        e
    });
    assert!(strategy.pending().is_empty());
}

/// A transaction whose answer was lost is submitted again unchanged: the node refuses the
/// copy (its nonce is used), the chain finds the first one's block, and the transfer moves
/// the money once. A transaction signed for a used nonce never executes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmitted_transaction_executes_once() {
    let Some(chop) = Chopsticks::start().await else { return };
    let (alice, eve) = (key("//Alice"), key("//Eve"));
    chop.set_sudo_and_balances(&alice.public(), &[alice.public()], RICH).await;
    chop.set_block_mode("Instant").await;
    let chain = SubtensorChain::new(&chop.url, Timeouts { inclusion: Duration::from_secs(20), ..Timeouts::default() });
    let client = ok("connect", Subtensor::connect(&chop.url).await);
    let signer = KeypairSigner::new(alice.clone());
    let call = ok("build", client.build(|m| ganglion_subtensor::calls::transfer(m, &eve.public(), 1_000_000_000)).await);
    let tx = ok("sign", client.sign(&call, &signer).await);
    let nonce = ok("account", chain.account(&alice.public()).await).nonce;

    // The first submission is included, but its answer "never arrived".
    let first = ok("first submission", ok("submit", client.submit_signed(&tx).await).wait().await);
    assert_eq!(ok("account", chain.account(&eve.public()).await).balance, 1_000_000_000);

    // Submitting the same bytes again: refused by the node, found in its block.
    let again = client.submit_signed(&tx).await;
    assert!(matches!(again, Err(ganglion_subtensor::SubtensorError::Invalid { .. })), "the node took a used nonce: {again:?}");
    let found = ok("find_included", client.find_included(&tx, 40).await).unwrap_or_else(|| panic!("the first submission's block"));
    assert_eq!((found.block_hash, found.extrinsic_hash), (first.block_hash, first.extrinsic_hash));
    assert_eq!(ok("account", chain.account(&eve.public()).await).balance, 1_000_000_000, "moved once");
    assert_eq!(ok("account", chain.account(&alice.public()).await).nonce, nonce + 1, "one nonce used");

    // A fresh transaction for the same call: a new nonce, a second transfer.
    let second = ok("sign", client.sign(&call, &signer).await);
    assert_ne!(second.hash(), tx.hash());
    ok("second", chain.execute_signed(&second).await);
    assert_eq!(ok("account", chain.account(&eve.public()).await).balance, 2_000_000_000);
}

/// The node goes away and comes back at the same address: queries fail as transport errors
/// (bounded, no hang) while it is down, the block stream ends with an error, and the next
/// query after the restart reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_reconnects_after_the_node_restarts() {
    let Some(chop) = Chopsticks::start().await else { return };
    let port: u16 = chop.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("port of {}", chop.url));
    let timeouts = Timeouts { connect: Duration::from_secs(5), request: Duration::from_secs(5), inclusion: Duration::from_secs(20) };
    let chain = SubtensorChain::new(&chop.url, timeouts);
    let genesis = ok("info", chain.info().await).genesis_hash;
    let mut blocks = ok("subscribe", chain.subscribe_blocks().await);

    drop(chop);
    let started = std::time::Instant::now();
    let down = chain.subnets().await;
    assert!(matches!(down, Err(ChainError::Transport { .. })), "{down:?}");
    let next = tokio::time::timeout(Duration::from_secs(30), blocks.next()).await.unwrap_or_else(|_| panic!("the block stream hangs"));
    assert!(matches!(next, Some(Err(ChainError::Transport { .. })) | None), "{next:?}");
    let again = chain.block_number().await;
    assert!(matches!(again, Err(ChainError::Transport { .. })), "no node, no answer: {again:?}");
    assert!(started.elapsed() < Duration::from_secs(40), "bounded: {:?}", started.elapsed());

    let Some(restarted) = Chopsticks::start_on(port).await else { return };
    ok("storage after the restart", chain.subnets().await);
    let info = ok("info after the restart", chain.info().await);
    assert_eq!(info.genesis_hash, genesis, "the same chain spec");
    drop(restarted);
}

/// `wss://`: chopsticks behind a TLS proxy whose certificate comes from a CA made in the test.
/// With that CA trusted the chain answers; with the system's roots only, the connection is
/// refused for the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_private_ca() {
    use axum::serve::Listener;
    let Some(chop) = Chopsticks::start().await else { return };
    let pki = ganglion_tls::testkit::TestPki::for_names(&["localhost"]).unwrap_or_else(|e| panic!("{e}"));
    let server = pki.server().unwrap_or_else(|e| panic!("{e}"));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = tcp.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let mut listener = server.listener(tcp).unwrap_or_else(|e| panic!("{e}"));
    let upstream = chop.url.trim_start_matches("ws://").to_string();
    let proxy = tokio::spawn(async move {
        loop {
            let (mut tls_stream, _) = listener.accept().await;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls_stream, &mut plain).await;
                }
            });
        }
    });
    let url = format!("wss://localhost:{port}");
    let timeouts = Timeouts { connect: Duration::from_secs(10), request: Duration::from_secs(10), inclusion: Duration::from_secs(10) };

    let trusted = SubtensorChain::with_tls(&url, timeouts, pki.client().unwrap_or_else(|e| panic!("{e}")));
    let block = ok("block over wss", trusted.block_number().await);
    let info = ok("info over wss", trusted.info().await);
    assert!(info.block >= block && info.genesis_hash.starts_with("0x"), "{info:?}");

    let untrusted = SubtensorChain::new(&url, timeouts);
    let refused = untrusted.block_number().await;
    assert!(matches!(&refused, Err(ChainError::Transport { reason, .. }) if reason.to_lowercase().contains("certificate")), "{refused:?}");
    proxy.abort();
}
