//! `--config FILE` of `ganglion chain serve`, `ganglion engine serve` and `ganglion hub`,
//! through the real binary: the file's values are used, a flag (or the env var naming the
//! file) wins over the file, and a file with an unknown key or a bad duration stops the node
//! with the key in the error. Every child is killed after its first stdout line, or after
//! 30 s at most.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ganglion_chain::{Chain, LocalChain};
use ganglion_core::keys::Keypair;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(30);

fn ganglion() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ganglion"));
    for var in ["GANGLION_CHAIN_CONFIG", "GANGLION_ENGINE_CONFIG", "GANGLION_HUB_CONFIG", "GANGLION_LOGGING_JSON", "GANGLION_LOGGING_DEBUG"] {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "warn").stdin(Stdio::null()).kill_on_drop(true);
    command
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Starts `chain serve` with `configure`'s flags and environment and returns the node and
/// its `--json` startup line.
async fn start_chain(configure: impl FnOnce(&mut Command)) -> (tokio::process::Child, serde_json::Value) {
    let mut command = ganglion();
    command.args(["chain", "serve", "--port", "0", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    configure(&mut command);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn ganglion: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let line = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line()).await;
    let line = match line {
        Ok(Ok(Some(line))) => line,
        other => {
            let _ = child.start_kill();
            let output = child.wait_with_output().await.map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            panic!("chain serve printed no startup line: {other:?}; stderr: {output:?}")
        }
    };
    let doc = serde_json::from_str(&line).unwrap_or_else(|e| panic!("startup line `{line}`: {e}"));
    (child, doc)
}

/// Runs a command that must fail at once; returns its stderr.
async fn fails(configure: impl FnOnce(&mut Command)) -> String {
    let mut command = ganglion();
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    configure(&mut command);
    let output = tokio::time::timeout(DEADLINE, command.output()).await;
    let output = match output {
        Ok(Ok(output)) => output,
        other => panic!("the command did not finish within {DEADLINE:?}: {other:?}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "a bad config file was accepted; stderr: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_serve_reads_its_config_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let data = dir.path().join("chain");
    let file = dir.path().join("chain.toml");
    write(&file, &format!("data_dir = {:?}\nblock_time = \"50ms\"\ntempo = 7\n", data.display().to_string()));

    // The file alone: its block time and tempo, its data directory.
    let (mut child, doc) = start_chain(|c| {
        c.arg("--config").arg(&file);
    })
    .await;
    assert_eq!(doc["block_time_ms"], 50, "{doc}");
    assert_eq!(doc["tempo"], 7, "{doc}");
    assert_eq!(doc["faucet"], true, "{doc}");
    assert_eq!(doc["data_dir"].as_str(), Some(data.display().to_string().as_str()), "{doc}");
    assert!(data.exists(), "no chain directory at {}", data.display());
    // The tempo is the one new subnets get.
    let url = doc["url"].as_str().unwrap_or_else(|| panic!("no url in {doc}"));
    let chain = LocalChain::new(url).unwrap_or_else(|e| panic!("client: {e}"));
    let alice = Keypair::from_uri("//Alice").unwrap_or_else(|e| panic!("{e}"));
    let receipt = tokio::time::timeout(DEADLINE, chain.register_network(&alice, &alice.public(), None))
        .await
        .unwrap_or_else(|_| panic!("no block within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("subnet: {e}"));
    let netuid = receipt.netuid.unwrap_or_else(|| panic!("no netuid in the receipt"));
    let subnet = chain.subnet(netuid).await.unwrap_or_else(|e| panic!("subnet: {e}"));
    assert_eq!(subnet.tempo, 7);
    let _ = child.kill().await;

    // Flags win over the file (named by the env var this time); unset flags leave it alone.
    let (mut child, doc) = start_chain(|c| {
        c.env("GANGLION_CHAIN_CONFIG", &file).args(["--block-time", "40ms", "--no-faucet"]);
    })
    .await;
    assert_eq!(doc["block_time_ms"], 40, "{doc}");
    assert_eq!(doc["tempo"], 7, "{doc}");
    assert_eq!(doc["faucet"], false, "{doc}");
    let _ = child.kill().await;

    // No file: the flags as always.
    let (mut child, doc) = start_chain(|c| {
        c.args(["--block-time", "60ms", "--tempo", "9", "--data-dir"]).arg(dir.path().join("other"));
    })
    .await;
    assert_eq!((doc["block_time_ms"].as_u64(), doc["tempo"].as_u64()), (Some(60), Some(9)), "{doc}");
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_mistakes_stop_the_node_naming_the_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("bad.toml");
    let data = dir.path().join("chain");

    write(&file, "blocktime = \"50ms\"\n");
    let stderr = fails(|c| {
        c.args(["chain", "serve", "--port", "0", "--data-dir"]).arg(&data).arg("--config").arg(&file);
    })
    .await;
    assert!(stderr.contains("blocktime") && stderr.contains("bad.toml"), "{stderr}");
    assert!(!data.exists(), "the node started despite the bad file");

    write(&file, "block_time = \"50 parsecs\"\n");
    let stderr = fails(|c| {
        c.args(["chain", "serve", "--port", "0", "--data-dir"]).arg(&data).arg("--config").arg(&file);
    })
    .await;
    assert!(stderr.contains("block_time"), "{stderr}");

    write(&file, "tempo = 0\n");
    let stderr = fails(|c| {
        c.args(["chain", "serve", "--port", "0", "--data-dir"]).arg(&data).arg("--config").arg(&file);
    })
    .await;
    assert!(stderr.contains("tempo must be at least 1"), "{stderr}");

    let stderr = fails(|c| {
        c.args(["chain", "serve", "--port", "0", "--block-time", "0s", "--data-dir"]).arg(&data);
    })
    .await;
    assert!(stderr.contains("block_time"), "{stderr}");

    write(&file, "model = \"smollm2\"\nport = 8000\ntimeout = \"30s\"\n");
    let stderr = fails(|c| {
        c.args(["engine", "serve", "--config"]).arg(&file);
    })
    .await;
    assert!(stderr.contains("timeout") && stderr.contains("bad.toml"), "{stderr}");

    write(&file, "[database]\nurl = \"sqlite::memory:\"\npool_size = 4\n");
    let stderr = fails(|c| {
        c.arg("hub").arg("--config").arg(&file);
    })
    .await;
    assert!(stderr.contains("pool_size") && stderr.contains("bad.toml"), "{stderr}");

    write(&file, "feed_poll = \"soon\"\n");
    let stderr = fails(|c| {
        c.env("GANGLION_HUB_CONFIG", &file).arg("hub");
    })
    .await;
    assert!(stderr.contains("feed_poll"), "{stderr}");
    assert!(!data.exists(), "a node started despite a bad configuration");
}
