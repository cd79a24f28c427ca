//! Against the real node-subtensor runtime, spec 218, under chopsticks: the flow a subnet
//! needs (subnet creation, registration, stake, `serve_axon`, `set_weights`), each read
//! back from storage; typed failures carrying the runtime's error names; and bounded waits.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_subtensor::calls;
use ganglion_subtensor::{AxonEndpoint, KeypairSigner, Subtensor, SubtensorError, Timeouts, Value};
use subxt::PolkadotConfig;
use subxt::tx::Signer;
use subxt::utils::{AccountId32, MultiSignature};

use ganglion_subtensor::testkit::Chopsticks;

/// 1M TAO in rao: below 2^53 (dev_setStorage takes JSON numbers).
const RICH: u64 = 1_000_000_000_000_000;

fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

fn signer(uri: &str) -> KeypairSigner {
    KeypairSigner::new(key(uri))
}

fn ok<T>(what: &str, result: Result<T, SubtensorError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Chopsticks with `//Alice` as sudo and every named account rich, and a client on it.
async fn chain(rich: &[&str]) -> Option<(Chopsticks, Subtensor)> {
    let chop = Chopsticks::start().await?;
    let alice = key("//Alice").public();
    let rich: Vec<PublicKey> = rich.iter().map(|u| key(u).public()).collect();
    chop.set_sudo_and_balances(&alice, &rich, RICH).await;
    let client = ok("connect", Subtensor::connect(&chop.url).await);
    Some((chop, client))
}

/// `Sudo.sudo(AdminUtils.<setter>(args))` from Alice, one block.
async fn sudo_admin(chop: &Chopsticks, client: &Subtensor, setter: &str, args: Vec<(&str, Value)>) {
    ok(
        setter,
        chop.include(client.sudo_admin(&signer("//Alice"), setter, args).await)
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_on_the_spec_218_runtime_reads_back_from_storage() {
    let Some((chop, client)) = chain(&["//Alice", "//Bob", "//Charlie", "//Dave"]).await else {
        return;
    };
    assert_eq!(
        ok("spec_version", client.spec_version().await),
        218,
        "the fixture's runtime"
    );
    let alice = signer("//Alice");
    let (owner_hot, bob, charlie, eve) = (
        key("//Dave").public(),
        signer("//Bob"),
        signer("//Charlie"),
        key("//Eve").public(),
    );
    assert_eq!(
        ok("balance", client.free_balance(&alice.public()).await),
        RICH,
        "dev_setStorage made Alice rich"
    );
    assert_eq!(
        ok("balance", client.free_balance(&eve).await),
        0,
        "Eve has nothing"
    );
    let start = ok("block", client.block_number().await);
    chop.new_blocks(2).await;
    assert_eq!(
        ok("block", client.block_number().await),
        start + 2,
        "dev_newBlock builds blocks the client sees"
    );

    // A subnet: lift the network rate limit, then register_network (its argument shape
    // from the metadata: (hotkey, mechid) on 218).
    sudo_admin(
        &chop,
        &client,
        "sudo_set_network_rate_limit",
        vec![("rate_limit", Value::u128(0))],
    )
    .await;
    let networks_before = ok("total_networks", client.total_networks().await);
    let included = ok(
        "register_network",
        chop.include(client.register_network(&alice, &owner_hot).await)
            .await,
    );
    let netuid = ok("NetworkAdded", included.network_added());
    assert!(
        ok("NetworksAdded", client.network_exists(netuid).await),
        "NetworksAdded[{netuid}]"
    );
    assert_eq!(
        ok("total_networks", client.total_networks().await),
        networks_before + 1
    );
    assert!(
        !ok("NetworksAdded", client.network_exists(netuid + 100).await),
        "a netuid never added"
    );

    // Hyperparameters for a test subnet: weights at any block, an epoch every block.
    let n = || Value::u128(u128::from(netuid));
    sudo_admin(
        &chop,
        &client,
        "sudo_set_weights_set_rate_limit",
        vec![("netuid", n()), ("weights_set_rate_limit", Value::u128(0))],
    )
    .await;
    sudo_admin(
        &chop,
        &client,
        "sudo_set_tempo",
        vec![("netuid", n()), ("tempo", Value::u128(1))],
    )
    .await;

    // Two hotkeys registered by burn, Alice paying.
    let before = ok("balance", client.free_balance(&alice.public()).await);
    for hot in [&bob, &charlie] {
        ok(
            "burned_register",
            chop.include(client.burned_register(&alice, netuid, &hot.public()).await)
                .await,
        );
    }
    assert!(
        ok("balance", client.free_balance(&alice.public()).await) < before,
        "the burn is paid by the coldkey"
    );
    let uid_bob = ok("Uids", client.uid(netuid, &bob.public()).await)
        .unwrap_or_else(|| panic!("Uids[{netuid}, Bob] is empty"));
    let uid_charlie = ok("Uids", client.uid(netuid, &charlie.public()).await)
        .unwrap_or_else(|| panic!("Uids[{netuid}, Charlie] is empty"));
    assert_ne!(uid_bob, uid_charlie);
    assert_eq!(
        ok("Uids", client.uid(netuid, &eve).await),
        None,
        "Eve never registered"
    );
    assert_eq!(
        ok("Keys", client.hotkey(netuid, uid_bob).await),
        Some(bob.public())
    );
    assert_eq!(
        ok("Keys", client.hotkey(netuid, uid_charlie).await),
        Some(charlie.public())
    );
    let n_uids = ok("SubnetworkN", client.subnetwork_n(netuid).await);
    assert_eq!(
        ok("Keys", client.hotkey(netuid, n_uids).await),
        None,
        "no uid {n_uids} yet"
    );

    // Stake (add_stake with the netuid argument 218 takes).
    let before = ok("balance", client.free_balance(&alice.public()).await);
    let amount = 5_000_000_000; // 5 TAO
    ok(
        "add_stake",
        chop.include(
            client
                .add_stake(&alice, &bob.public(), netuid, amount)
                .await,
        )
        .await,
    );
    let after = ok("balance", client.free_balance(&alice.public()).await);
    assert!(
        before - after >= amount,
        "add_stake moved {} rao, expected at least {amount}",
        before - after
    );

    // An axon on loopback, signed by the hotkey.
    let axon = AxonEndpoint {
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        port: 8091,
        version: 1_002_003,
        protocol: 4,
    };
    assert_eq!(
        ok("Axons", client.axon(netuid, &bob.public()).await),
        None,
        "no axon before serve_axon"
    );
    let included = ok(
        "serve_axon",
        chop.include(client.serve_axon(&bob, netuid, &axon).await)
            .await,
    );
    assert!(
        included.event("SubtensorModule", "AxonServed").is_some(),
        "AxonServed: {:?}",
        included.events
    );
    let served = ok("Axons", client.axon(netuid, &bob.public()).await)
        .unwrap_or_else(|| panic!("Axons[{netuid}, Bob] is empty"));
    assert_eq!(
        (
            served.ip,
            served.port,
            served.version,
            served.ip_type,
            served.protocol
        ),
        (axon.ip, 8091, 1_002_003, 4, 4)
    );
    assert!(served.block > start, "served at block {}", served.block);

    // Weights from Bob; an epoch first so that validator permits exist.
    chop.new_blocks(3).await;
    ok(
        "set_weights",
        chop.include(
            client
                .set_weights(&bob, netuid, &[uid_bob, uid_charlie], &[30_000, 60_000], 0)
                .await,
        )
        .await,
    );
    let mut weights = ok("Weights", client.weights(netuid, uid_bob).await);
    weights.sort_unstable();
    // The runtime scales the largest weight up to u16::MAX (rounding down), as our
    // ganglion-yuma does.
    assert_eq!(
        ganglion_yuma::math::vec_u16_max_upscale_to_u16(&[30_000, 60_000]),
        [32_767, u16::MAX]
    );
    let mut expected = vec![(uid_bob, 32_767), (uid_charlie, u16::MAX)];
    expected.sort_unstable();
    assert_eq!(weights, expected, "Weights[{netuid}, {uid_bob}]");
    assert!(
        ok("Weights", client.weights(netuid, uid_charlie).await).is_empty(),
        "Charlie set none"
    );

    // A node that builds its own blocks (chopsticks' instant mode): `execute` submits and
    // waits in one step.
    chop.set_block_mode("Instant").await;
    let call = ok(
        "set_weights",
        client
            .build(|m| calls::set_weights(m, netuid, &[uid_charlie], &[7], 0))
            .await,
    );
    ok("execute", client.execute(&call, &charlie).await);
    assert_eq!(
        ok("Weights", client.weights(netuid, uid_charlie).await),
        [(uid_charlie, u16::MAX)],
        "Charlie's self-weight"
    );
}

/// Records the length of the payload subxt hands the signer.
struct Recording {
    inner: KeypairSigner,
    lengths: std::sync::Mutex<Vec<usize>>,
}

impl Signer<PolkadotConfig> for Recording {
    fn account_id(&self) -> AccountId32 {
        <KeypairSigner as Signer<PolkadotConfig>>::account_id(&self.inner)
    }

    fn sign(&self, payload: &[u8]) -> MultiSignature {
        self.lengths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(payload.len());
        <KeypairSigner as Signer<PolkadotConfig>>::sign(&self.inner, payload)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_the_runtime_error_name_and_waits_are_bounded() {
    let Some((chop, client)) = chain(&["//Alice", "//Bob"]).await else {
        return;
    };
    let alice = signer("//Alice");
    let bob = signer("//Bob");

    // The network rate limit is in force at genesis.
    let err = chop
        .include(
            client
                .register_network(&alice, &key("//Dave").public())
                .await,
        )
        .await
        .expect_err("register_network within the rate limit must fail");
    assert_eq!(err.name(), Some("NetworkTxRateLimitExceeded"), "{err}");
    let SubtensorError::Dispatch {
        call: label,
        pallet,
        hint,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (label.as_str(), pallet.as_deref()),
        ("SubtensorModule.register_network", Some("SubtensorModule"))
    );
    assert!(
        hint.contains("sudo_set_network_rate_limit"),
        "the hint says what to do: {hint}"
    );
    let chain_err: ganglion_chain::ChainError = err.into();
    assert_eq!(chain_err.name(), Some("NetworkTxRateLimitExceeded"));

    // Sudo from a key that is not the sudo key: the Sudo pallet's own error.
    let err = chop
        .include(
            client
                .sudo_admin(
                    &bob,
                    "sudo_set_network_rate_limit",
                    vec![("rate_limit", Value::u128(0))],
                )
                .await,
        )
        .await
        .expect_err("sudo from Bob must fail");
    assert_eq!(err.name(), Some("RequireSudo"), "{err}");

    // A sudo call whose wrapped call fails: the error is in `Sudid`, the transaction succeeds.
    let tempo = ok(
        "sudo_set_tempo",
        client
            .build(|m| {
                calls::admin(
                    m,
                    "sudo_set_tempo",
                    vec![("netuid", Value::u128(999)), ("tempo", Value::u128(1))],
                )
            })
            .await,
    );
    let err = chop
        .include(client.sudo(&alice, tempo).await)
        .await
        .expect_err("sudo_set_tempo on a missing subnet must fail");
    let SubtensorError::Dispatch {
        call: label, name, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(label, "Sudo.sudo(AdminUtils.sudo_set_tempo)");
    assert!(
        name.contains("NotExist") || name.contains("DoesNotExist"),
        "{err}"
    );

    // set_weights from a hotkey registered nowhere, with a payload over 256 bytes: the
    // runtime checked our signature (the transaction is in a block) over the 32-byte hash
    // subxt handed the signer, and the dispatch failed by name.
    let uids: Vec<u16> = (0..200).collect();
    let recording = Recording {
        inner: signer("//Bob"),
        lengths: Default::default(),
    };
    let err = chop
        .include(client.set_weights(&recording, 0, &uids, &[1; 200], 0).await)
        .await
        .expect_err("set_weights from an unregistered hotkey must fail");
    assert!(
        matches!(&err, SubtensorError::Dispatch { pallet: Some(p), .. } if p == "SubtensorModule"),
        "{err:?}"
    );
    println!("set_weights from an unregistered hotkey: {err}");
    assert_eq!(
        *recording.lengths.lock().unwrap_or_else(|e| e.into_inner()),
        vec![32],
        "subxt hashes a long v4 signer payload"
    );

    // No block is built: the wait ends at its bound with NotIncluded.
    let quick = ok(
        "connect",
        Subtensor::connect_with(
            &chop.url,
            Timeouts {
                inclusion: Duration::from_secs(2),
                ..Timeouts::default()
            },
        )
        .await,
    );
    let pending = ok(
        "add_stake",
        quick
            .add_stake(&alice, &bob.public(), 0, 1_000_000_000)
            .await,
    );
    let started = Instant::now();
    let err = pending.wait().await.expect_err("no block, no inclusion");
    assert!(matches!(err, SubtensorError::NotIncluded { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait took {:?}",
        started.elapsed()
    );

    // Nothing listens: a typed error naming the URL, within the connect bound.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    let url = format!("ws://127.0.0.1:{dead}");
    let err = Subtensor::connect_with(
        &url,
        Timeouts {
            connect: Duration::from_secs(3),
            ..Timeouts::default()
        },
    )
    .await
    .expect_err("nothing listens");
    assert!(
        matches!(&err, SubtensorError::Connect { url: u, .. } | SubtensorError::Timeout { url: u, .. } if *u == url),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
}
