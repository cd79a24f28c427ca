//! Crash safety of `ganglion chain serve`: the real binary is `kill -9`ed at random moments
//! while transactions stream in, restarted, and checked: same chain, no block lost, and every
//! acknowledged transaction present (at most the one in flight at the kill may be extra).

use std::process::Stdio;
use std::time::Duration;

use ganglion_chain::{Chain, LocalChain, RAO_PER_TAO};
use ganglion_core::keys::Keypair;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ROUNDS: usize = 15;
const AMOUNT: u64 = 1_000;

fn key(uri: &str) -> Keypair {
    match Keypair::from_uri(uri) {
        Ok(k) => k,
        Err(e) => panic!("{uri}: {e}"),
    }
}

/// Start the node on a free port and return it with its URL (read from its `--json` line).
async fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args(["chain", "serve", "--port", "0", "--block-time", "40ms", "--tempo", "5", "--json", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ganglion: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let line = match line {
        Ok(Ok(Some(l))) => l,
        other => panic!("node printed no startup line: {other:?}"),
    };
    let doc: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("startup line `{line}`: {e}"));
    let url = doc["url"].as_str().unwrap_or_else(|| panic!("no url in `{line}`")).to_string();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let alice = key("//Alice");
    let bob = key("//Bob");
    let dave = key("//Dave").public();
    let mut acked: u64 = 0;
    let mut genesis: Option<String> = None;
    let mut last_seen_block = 0u64;
    let mut rng = rand::thread_rng();

    for round in 0..ROUNDS {
        let (mut child, url) = start(dir.path()).await;
        let chain = LocalChain::new(&url).unwrap_or_else(|e| panic!("client: {e}"));

        // After the restart: same chain, no committed block lost, acknowledged transfers all
        // there (plus at most the one whose answer the kill cut off).
        let info = chain.info().await.unwrap_or_else(|e| panic!("info: {e}"));
        match &genesis {
            None => genesis = Some(info.genesis_hash.clone()),
            Some(g) => assert_eq!(g, &info.genesis_hash, "round {round}: a different chain after restart"),
        }
        assert!(info.block >= last_seen_block, "round {round}: block {} < {last_seen_block} seen before the kill", info.block);
        let balance = chain.account(&dave).await.unwrap_or_else(|e| panic!("account: {e}")).balance;
        assert_eq!(balance % AMOUNT, 0);
        let landed = balance / AMOUNT;
        assert!(landed == acked || landed == acked + 1, "round {round}: {landed} transfers on chain, {acked} acknowledged");
        acked = landed;

        if round == 0 {
            // A subnet makes every block carry emission and epochs, so kills hit real commits.
            chain.register_network(&bob, &bob.public(), None).await.unwrap_or_else(|e| panic!("subnet: {e}"));
        }

        // Stream transfers and kill -9 at a random moment.
        let kill_after = Duration::from_millis(rng.gen_range(20..400));
        let deadline = tokio::time::Instant::now() + kill_after;
        let mut killed = false;
        for _ in 0..10_000 {
            if tokio::time::Instant::now() >= deadline {
                // SIGKILL while a transfer may still be in flight.
                let pending = chain.transfer(&alice, &dave, AMOUNT);
                tokio::select! {
                    res = pending => if res.is_ok() { acked += 1 },
                    _ = tokio::time::sleep(Duration::from_micros(rng.gen_range(0..3_000))) => {}
                }
                child.start_kill().unwrap_or_else(|e| panic!("kill: {e}"));
                killed = true;
                break;
            }
            match chain.transfer(&alice, &dave, AMOUNT).await {
                Ok(_) => acked += 1,
                Err(e) => panic!("round {round}: transfer refused before the kill: {e}"),
            }
            if let Ok(b) = chain.block_number().await {
                last_seen_block = last_seen_block.max(b);
            }
        }
        assert!(killed, "round {round}: never reached the kill moment");
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        assert!(matches!(status, Ok(Ok(_))), "round {round}: node did not die");
    }

    // Final check after the last kill, and the chain still works.
    let (mut child, url) = start(dir.path()).await;
    let chain = LocalChain::new(&url).unwrap_or_else(|e| panic!("client: {e}"));
    let balance = chain.account(&dave).await.unwrap_or_else(|e| panic!("account: {e}")).balance;
    let landed = balance / AMOUNT;
    assert!(landed == acked || landed == acked + 1, "final: {landed} transfers on chain, {acked} acknowledged");
    assert!(acked > ROUNDS as u64, "too few transfers to mean anything: {acked}");
    let alice_nonce = chain.account(&alice.public()).await.unwrap_or_else(|e| panic!("account: {e}")).nonce;
    assert_eq!(alice_nonce, landed, "every landed transfer consumed exactly one nonce");
    let subnets = chain.subnets().await.unwrap_or_else(|e| panic!("subnets: {e}"));
    assert_eq!(subnets.len(), 1);
    assert!(subnets[0].epoch_index > 0, "epochs ran across restarts");
    assert!(chain.transfer(&alice, &dave, RAO_PER_TAO).await.is_ok());
    let _ = child.start_kill();
    let _ = child.wait().await;
}
