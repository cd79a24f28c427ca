//! The `ganglion` binary on the real subtensor runtime (spec 218 under chopsticks, one block
//! per transaction): `--subtensor.network ws://…` reaches it with the same commands and btcli
//! flags as the local chain. Skipped when chopsticks is not installed, unless
//! `GANGLION_REQUIRE_ALL=1`.

use std::process::Command;

use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_subtensor::testkit::Chopsticks;
use ganglion_subtensor::{KeypairSigner, Subtensor, Value};
use serde_json::Value as Json;

const RICH: u64 = 1_000_000_000_000_000;

fn ganglion(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args(args)
        .env_remove("GANGLION_SUBTENSOR_NETWORK")
        .env_remove("GANGLION_CHAIN_URL")
        .output()
        .unwrap_or_else(|e| panic!("run ganglion: {e}"));
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn json(args: &[&str]) -> Json {
    let (ok, stdout, stderr) = ganglion(args);
    assert!(ok, "ganglion {args:?} failed:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("ganglion {args:?} printed no JSON ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_registers_and_reads_on_subtensor() {
    let Some(chop) = Chopsticks::start().await else { return };
    chop.set_block_mode("Instant").await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().to_str().unwrap_or_else(|| panic!("non-UTF-8 temp dir"));
    let created = json(&["wallet", "create", "--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", "miner", "--no-password", "--json"]);
    let coldkey = created["keys"][0]["ss58"].as_str().and_then(|s| PublicKey::from_ss58(s).ok()).unwrap_or_else(|| panic!("{created}"));
    let hotkey = created["keys"][1]["ss58"].as_str().unwrap_or_else(|| panic!("{created}")).to_string();
    let alice = Keypair::from_uri("//Alice").unwrap_or_else(|e| panic!("{e}"));
    chop.set_sudo_and_balances(&alice.public(), &[alice.public(), coldkey], RICH).await;
    let client = Subtensor::connect(&chop.url).await.unwrap_or_else(|e| panic!("{e}"));
    let lift = client
        .sudo_admin(&KeypairSigner::new(alice), "sudo_set_network_rate_limit", vec![("rate_limit", Value::u128(0))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    lift.wait().await.unwrap_or_else(|e| panic!("{e}"));

    let net = ["--subtensor.network", chop.url.as_str()];
    let wallet = |hotkey: &'static str| ["--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", hotkey];
    let with = |head: &[&str], hotkey: &'static str| -> Vec<String> {
        head.iter().copied().chain(net).chain(wallet(hotkey)).chain(["--json"]).map(str::to_string).collect()
    };
    let run = |args: Vec<String>| json(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // The owner's hotkey is the subnet's uid 0; a second hotkey registers by burn.
    let subnet = run(with(&["subnet", "create"], "miner"));
    let netuid = subnet["netuid"].as_u64().unwrap_or_else(|| panic!("no netuid: {subnet}"));
    json(&["wallet", "new-hotkey", "--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", "validator", "--no-password", "--json"]);
    let n = netuid.to_string();
    let registered = run(with(&["neuron", "register", "--netuid", &n], "validator"));
    assert!(registered["uid"].as_u64().is_some(), "{registered}");

    let list = json(&["subnet", "list", "--subtensor.network", &chop.url, "--json"]);
    assert!(list.to_string().contains(&format!("\"netuid\":{netuid}")), "{list}");
    let metagraph = json(&["metagraph", "--netuid", &n, "--subtensor.network", &chop.url, "--json"]);
    let neurons = metagraph["neurons"].as_array().cloned().unwrap_or_default();
    assert_eq!(neurons.len(), 2, "{metagraph}");
    assert!(metagraph.to_string().contains(&hotkey), "the owner's hotkey: {metagraph}");

    // What subtensor does not have is refused by name, with a non-zero exit.
    let (ok, _, stderr) = ganglion(&["faucet", "--subtensor.network", &chop.url, "--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", "miner"]);
    assert!(!ok && stderr.contains("UnsupportedOnSubtensor"), "{stderr}");
    let (ok, _, stderr) = ganglion(&["subnet", "create", "--netuid", "7", "--subtensor.network", &chop.url, "--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", "miner"]);
    assert!(!ok && stderr.contains("NetuidChosenByRuntime"), "{stderr}");
}

/// A compute validator and miner — the `ganglion` processes operators run — on a subnet of
/// the real runtime: the miner publishes its axon (at 127.0.0.2: the runtime refuses
/// nothing on loopback here, but one uid per address is what real subnets expect), the
/// validator finds it through the metagraph, challenges it and sets weights on chain.
/// Blocks every 500 ms (chopsticks' manual mode driven by the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_nodes_join_a_subtensor_subnet() {
    use ganglion_chain::Chain;
    use ganglion_subtensor::SubtensorChain;
    use std::time::{Duration, Instant};

    let Some(chop) = Chopsticks::start().await else { return };
    let chop = std::sync::Arc::new(chop);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().to_str().unwrap_or_else(|| panic!("non-UTF-8 temp dir"));
    let created = json(&["wallet", "create", "--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", "validator", "--no-password", "--json"]);
    let coldkey = created["keys"][0]["ss58"].as_str().and_then(|s| PublicKey::from_ss58(s).ok()).unwrap_or_else(|| panic!("{created}"));
    json(&["wallet", "new-hotkey", "--wallet.path", path, "--wallet.name", "owner", "--wallet.hotkey", "miner", "--no-password", "--json"]);
    let alice = Keypair::from_uri("//Alice").unwrap_or_else(|e| panic!("{e}"));
    chop.set_sudo_and_balances(&alice.public(), &[alice.public(), coldkey], RICH).await;
    chop.set_block_mode("Instant").await;
    let client = Subtensor::connect(&chop.url).await.unwrap_or_else(|e| panic!("{e}"));
    let sudo = KeypairSigner::new(alice.clone());
    let lift = client.sudo_admin(&sudo, "sudo_set_network_rate_limit", vec![("rate_limit", Value::u128(0))]).await.unwrap_or_else(|e| panic!("{e}"));
    lift.wait().await.unwrap_or_else(|e| panic!("{e}"));

    let net = chop.url.clone();
    let wallet = |hotkey: &str| vec!["--wallet.path".to_string(), path.to_string(), "--wallet.name".into(), "owner".into(), "--wallet.hotkey".into(), hotkey.to_string()];
    let mut args: Vec<String> = vec!["subnet".into(), "create".into(), "--subtensor.network".into(), net.clone(), "--json".into()];
    args.extend(wallet("validator"));
    let subnet = json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let netuid = subnet["netuid"].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or_else(|| panic!("{subnet}"));
    let n = netuid.to_string();
    let mut args: Vec<String> = vec!["neuron".into(), "register".into(), "--netuid".into(), n.clone(), "--subtensor.network".into(), net.clone(), "--json".into()];
    args.extend(wallet("miner"));
    let registered = json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let miner_uid = registered["uid"].as_u64().and_then(|u| u16::try_from(u).ok()).unwrap_or_else(|| panic!("{registered}"));
    let sudo_tempo = client
        .sudo_admin(&sudo, "sudo_set_tempo", vec![("netuid", Value::u128(u128::from(netuid))), ("tempo", Value::u128(10))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sudo_tempo.wait().await.unwrap_or_else(|e| panic!("{e}"));
    let chain = SubtensorChain::new(&chop.url, ganglion_subtensor::Timeouts::default());
    // The owner lifts the weights rate limit (an owner setter, through the CLI).
    let mut args: Vec<String> = ["subnet", "hyperparams", "set", "--netuid", &n, "weights_rate_limit", "0", "--subtensor.network", &net, "--json"].iter().map(|s| s.to_string()).collect();
    args.extend(wallet("validator"));
    json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let h = chain.hyperparams(netuid).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.weights_rate_limit, 0, "{h:?}");

    // Blocks from here on: every 500 ms, until the test ends.
    chop.set_block_mode("Manual").await;
    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let (chop, ticking) = (chop.clone(), ticking.clone());
        tokio::spawn(async move {
            while ticking.load(std::sync::atomic::Ordering::SeqCst) {
                chop.new_blocks(1).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let axon_port = std::net::TcpListener::bind("127.0.0.2:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    let ssh_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    let spawn = |args: Vec<String>, log: &str| {
        let log = std::fs::File::create(dir.path().join(log)).unwrap_or_else(|e| panic!("{e}"));
        Command::new(env!("CARGO_BIN_EXE_ganglion"))
            .args(&args)
            .env_remove("GANGLION_SUBTENSOR_NETWORK")
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ganglion {args:?}: {e}"))
    };
    let mut miner_args: Vec<String> = ["miner", "compute", "--netuid", &n, "--subtensor.network", &net, "--axon.ip", "127.0.0.2", "--axon.port", &axon_port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    miner_args.extend(["--ssh.port".into(), ssh_port.to_string(), "--sandbox.disable".into(), "--miner.threads".into(), "1".into(), "--data-dir".into(), dir.path().join("miner").display().to_string()]);
    miner_args.extend(wallet("miner"));
    let mut validator_args: Vec<String> = ["validator", "compute", "--netuid", &n, "--subtensor.network", &net, "--neuron.epoch_length", "10", "--validator.difficulty.min", "3", "--validator.difficulty.max", "5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    validator_args.extend(["--data-dir".into(), dir.path().join("validator").display().to_string(), "--metrics.port".into(), "0".into()]);
    validator_args.extend(wallet("validator"));
    let mut miner = spawn(miner_args, "miner.log");
    let mut validator = spawn(validator_args, "validator.log");

    // The miner's axon on chain, then the validator's weights on it (bounded).
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut served = false;
    let mut weighted = false;
    while Instant::now() < deadline && !(served && weighted) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Ok(Some(snapshot)) = chain.neurons(netuid, None).await {
            served = snapshot.neurons.iter().any(|x| x.uid == miner_uid && x.axon.as_ref().is_some_and(|a| a.port == axon_port && a.ip.to_string() == "127.0.0.2"));
        }
        if let Ok(w) = chain.weights(netuid).await {
            weighted = w.first().is_some_and(|row| row.iter().any(|&(uid, v)| uid == miner_uid && v > 0));
        }
        for (name, child) in [("miner", &mut miner), ("validator", &mut validator)] {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
                panic!("the {name} exited ({status}):\n{}", &log[log.len().saturating_sub(4000)..]);
            }
        }
    }
    ticking.store(false, std::sync::atomic::Ordering::SeqCst);
    for child in [&mut miner, &mut validator] {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let _ = ticker.await;
    let tail = |name: &str| {
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
        log[log.len().saturating_sub(3000)..].to_string()
    };
    assert!(served, "the miner's axon is not on chain:\n{}", tail("miner"));
    assert!(weighted, "no weights from the validator on the miner:\n{}", tail("validator"));
    for child in [&mut miner, &mut validator] {
        let _ = child.wait();
    }
}

/// A subtensor endpoint that does not answer: a clear, prompt error naming the endpoint and
/// what to check (no chopsticks needed).
#[test]
fn an_unreachable_subtensor_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("ws://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let (ok, _, stderr) = ganglion(&["metagraph", "--netuid", "1", "--subtensor.network", &url]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains(&url) && stderr.contains("--subtensor.chain_endpoint"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "bounded: {:?}", started.elapsed());
}
