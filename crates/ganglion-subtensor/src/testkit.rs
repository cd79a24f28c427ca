//! Test support (feature `test-utils`): chopsticks running the real node-subtensor runtime (spec 218, from the chain spec in
//! `fixtures/subtensor/`) on a free loopback port, with `--build-block-mode Manual`: a block
//! is built only on `dev_newBlock`, so a test submits, builds, then waits and reads.
//!
//! Found at `$GANGLION_CHOPSTICKS_DIR/node_modules/.bin/chopsticks`, by default
//! `~/.ganglion/chopsticks` (where `scripts/install-chopsticks` puts it). Not installed: the
//! test is skipped with a message, unless `GANGLION_REQUIRE_ALL=1` (then it fails).
//! The process runs in its own process group, killed with everything in it on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ganglion_core::keys::PublicKey;

use crate::{Included, Pending, SubtensorResult};
use serde_json::{Value as Json, json};
use subxt::rpcs::{RpcClient, rpc_params};

/// Bound on chopsticks' start (it measured ~7 s; the first start compiles the runtime).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on one dev RPC (building a block takes ~0.4 s).
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn install_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GANGLION_CHOPSTICKS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".ganglion/chopsticks")
}

/// The chopsticks executable, if installed.
fn executable() -> Option<PathBuf> {
    let bin = install_dir().join("node_modules/.bin/chopsticks");
    bin.is_file().then_some(bin)
}

/// `fixtures/subtensor/<name>` in the repository.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/subtensor").join(name)
}

/// A running chopsticks process; killed with its process group on drop.
pub struct Chopsticks {
    child: Child,
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Set once chopsticks answers (the struct exists from the spawn on, so that a failed
    /// start still kills the process group).
    rpc: Option<RpcClient>,
    log: tempfile::NamedTempFile,
}

impl Chopsticks {
    /// Starts chopsticks on the spec-218 chain spec, or `None` (with a message) when it is
    /// not installed and `GANGLION_REQUIRE_ALL` is not `1`.
    pub async fn start() -> Option<Chopsticks> {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind a loopback port: {e}"));
            listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
        };
        Chopsticks::start_on(port).await
    }

    /// Like [`Chopsticks::start`], on a given port (a restarted node at the same address).
    pub async fn start_on(port: u16) -> Option<Chopsticks> {
        let Some(bin) = executable() else {
            let dir = install_dir();
            assert!(
                std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"),
                "chopsticks is not installed in {} and GANGLION_REQUIRE_ALL=1: run scripts/install-chopsticks",
                dir.display()
            );
            println!(
                "skipped: chopsticks is not installed in {} (run scripts/install-chopsticks)",
                dir.display()
            );
            return None;
        };
        let spec = fixture("chainspec-raonet-spec218.json");
        assert!(spec.is_file(), "missing fixture {}", spec.display());
        let log = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("log file: {e}"));
        let out = log.reopen().unwrap_or_else(|e| panic!("{e}"));
        let err = log.reopen().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(&bin)
            .arg("--genesis")
            .arg(&spec)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--build-block-mode",
                "Manual",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let url = format!("ws://127.0.0.1:{port}");
        let mut chop = Chopsticks {
            child,
            url: url.clone(),
            rpc: None,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = chop.child.try_wait() {
                panic!(
                    "chopsticks exited during start ({status}):\n{}",
                    chop.log_tail()
                );
            }
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let rpc = RpcClient::from_insecure_url(&url).await.ok()?;
                let head: Json = rpc
                    .request("chain_getFinalizedHead", rpc_params![])
                    .await
                    .ok()?;
                head.is_string().then_some(rpc)
            });
            if let Ok(Some(rpc)) = attempt.await {
                chop.rpc = Some(rpc);
                return Some(chop);
            }
            assert!(
                Instant::now() < deadline,
                "chopsticks did not answer on {url} within {START_TIMEOUT:?}:\n{}",
                chop.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A dev RPC (`dev_newBlock`, `dev_setStorage`), bounded.
    pub async fn dev(&self, method: &str, params: Json) -> Json {
        let Json::Array(params) = params else {
            panic!("params must be a JSON array")
        };
        let mut p = subxt::rpcs::client::RpcParams::new();
        for param in params {
            p.push(param).unwrap_or_else(|e| panic!("{e}"));
        }
        let Some(rpc) = &self.rpc else {
            panic!("chopsticks has not started")
        };
        match tokio::time::timeout(RPC_TIMEOUT, rpc.request::<Json>(method, p)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{method}: {e}\n{}", self.log_tail()),
            Err(_) => panic!(
                "{method} did not answer within {RPC_TIMEOUT:?}\n{}",
                self.log_tail()
            ),
        }
    }

    /// Builds `count` blocks.
    pub async fn new_blocks(&self, count: u32) {
        self.dev("dev_newBlock", json!([{ "count": count }])).await;
    }

    /// Makes `sudo` the sudo key, and every account in `rich` hold `free` rao (≤ 2^53: the
    /// values travel as JSON numbers).
    pub async fn set_sudo_and_balances(
        &self,
        sudo: &PublicKey,
        rich: &[PublicKey],
        free: u64,
    ) {
        assert!(
            free <= 1 << 53,
            "dev_setStorage takes balances as JSON numbers"
        );
        let accounts: Vec<Json> = rich
            .iter()
            .map(|k| json!([[k.to_ss58()], { "providers": 1, "data": { "free": free } }]))
            .collect();
        self.dev(
            "dev_setStorage",
            json!([{ "Sudo": { "Key": sudo.to_ss58() }, "System": { "Account": accounts } }]),
        )
        .await;
    }

    /// Builds one block for a submitted transaction and waits for it (what a node building
    /// its own blocks does by itself).
    pub async fn include(
        &self,
        submitted: SubtensorResult<Pending>,
    ) -> SubtensorResult<Included> {
        let pending = submitted?;
        self.new_blocks(1).await;
        pending.wait().await
    }

    /// `Instant` (a block per transaction, as a node building its own blocks) or `Manual`.
    pub async fn set_block_mode(&self, mode: &str) {
        self.dev("dev_setBlockBuildMode", json!([mode])).await;
    }
}

impl Drop for Chopsticks {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
