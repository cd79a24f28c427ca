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
