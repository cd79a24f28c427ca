//! Helpers shared by the integration tests: tool checks (the GANGLION_REQUIRE_ALL rule),
//! renter SSH keys and a bounded `ssh` client.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing prerequisite fails the test (CI) or skips it.
pub fn skip(why: &str) -> bool {
    if std::env::var("GANGLION_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("required by GANGLION_REQUIRE_ALL=1: {why}");
    }
    eprintln!("skipped: {why}");
    true
}

/// Why the real sandbox cannot run here, if it cannot.
pub fn sandbox_missing() -> Option<String> {
    let caps = ganglion_compute::sandbox::probe(&ganglion_compute::sandbox::SandboxConfig {
        dir: "/tmp".into(),
        ..Default::default()
    });
    if !caps.usable {
        return Some(format!("the allocation sandbox cannot run here: {}", caps.problems.join("; ")));
    }
    if ganglion_compute::hashcat::find_binary(Path::new("ssh")).is_none() {
        return Some("no ssh client (scripts/install-sandbox installs openssh-client)".into());
    }
    None
}

/// A directory for sandboxes that the allocation uids can traverse (0711), removed on drop.
pub fn sandbox_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("ganglion-sbx").tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap_or_else(|e| panic!("chmod: {e}"));
    dir
}

/// Tears down, on drop (so also when an assertion fails), every sandbox a miner recorded in
/// its `allocations-*.json` under `data_dir`: sandboxes outlive their miner by design, so a
/// failed test would otherwise leave processes, loop mounts and cgroups behind.
pub struct MinerSandboxTeardown {
    pub data_dir: PathBuf,
    pub config: ganglion_compute::sandbox::SandboxConfig,
}

impl Drop for MinerSandboxTeardown {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else { return };
        let caps = ganglion_compute::sandbox::probe(&self.config);
        let sandboxes = ganglion_compute::sandbox::Sandboxes::new(self.config.clone(), caps);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("allocations-") && name.ends_with(".json")) {
                continue;
            }
            let Ok(bytes) = std::fs::read(entry.path()) else { continue };
            let Ok(state) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
            for allocation in state["allocations"].as_array().cloned().unwrap_or_default() {
                if let Ok(sandbox) = serde_json::from_value::<ganglion_compute::sandbox::SandboxState>(allocation["sandbox"].clone()) {
                    sandboxes.destroy(&sandbox);
                }
            }
        }
    }
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("addr: {e}"))
}

/// An ed25519 key pair for a renter: the private key file (0600) and the public line.
pub struct RenterSsh {
    pub private_key: PathBuf,
    pub public_line: String,
}

pub fn renter_key(dir: &Path, name: &str) -> RenterSsh {
    use std::os::unix::fs::PermissionsExt;
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .unwrap_or_else(|e| panic!("keygen: {e}"));
    let private = key.to_openssh(ssh_key::LineEnding::LF).unwrap_or_else(|e| panic!("encode: {e}"));
    let path = dir.join(name);
    std::fs::write(&path, private.as_bytes()).unwrap_or_else(|e| panic!("write key: {e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("chmod: {e}"));
    let public_line = key.public_key().to_openssh().unwrap_or_else(|e| panic!("encode: {e}"));
    RenterSsh { private_key: path, public_line }
}

/// Writes a known_hosts file pinning `host_key` for `[127.0.0.1]:port`.
pub fn known_hosts(dir: &Path, port: u16, host_key: &str) -> PathBuf {
    let path = dir.join(format!("known_hosts-{port}"));
    std::fs::write(&path, format!("[127.0.0.1]:{port} {host_key}\n")).unwrap_or_else(|e| panic!("known_hosts: {e}"));
    path
}

/// Output of one ssh command.
#[derive(Debug)]
pub struct SshOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` over ssh with `key`, pinning the host key, killed after 60 s.
pub fn ssh(key: &Path, known_hosts: &Path, port: u16, command: &str) -> SshOutput {
    let mut child = Command::new("ssh")
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(port.to_string())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .args(["-o", "LogLevel=ERROR", "root@127.0.0.1", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ssh: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("ssh output: {e}"));
    SshOutput {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// ---- chain helpers -------------------------------------------------------------------

use std::net::SocketAddr;
use std::sync::Arc;

use ganglion_chain::{Chain, ChainConfig, HyperparamUpdate, LocalChain, Metagraph, NodeConfig, NodeHandle, RAO_PER_TAO, spawn_node};
use ganglion_core::keys::Keypair;

pub fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

/// An in-process chain node on loopback with fast blocks, reached over HTTP.
pub async fn start_chain(dir: &Path, block_ms: u64, tempo: u16) -> (NodeHandle, Arc<dyn Chain>) {
    let config = NodeConfig {
        data_dir: dir.to_path_buf(),
        block_time: Duration::from_millis(block_ms),
        chain: ChainConfig { default_tempo: tempo, ..ChainConfig::default() },
    };
    let handle = spawn_node(config, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap_or_else(|e| panic!("node: {e}"));
    let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&handle.url()).unwrap_or_else(|e| panic!("client: {e}")));
    (handle, chain)
}

/// Waits (bounded) until the chain is past `block`.
pub async fn wait_block(chain: &dyn Chain, block: u64) {
    for _ in 0..400 {
        if chain.block_number().await.unwrap_or(0) > block {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chain did not reach block {block}");
}

/// A subnet owned by //Alice with no weights rate limit; returns its netuid.
pub async fn create_subnet(chain: &dyn Chain) -> u16 {
    let owner = key("//Alice");
    let receipt = chain.register_network(&owner, &key("//Alice/owner").public(), None).await.unwrap_or_else(|e| panic!("subnet: {e}"));
    let netuid = receipt.netuid.unwrap_or_else(|| panic!("no netuid in {receipt:?}"));
    let update = HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() };
    chain.set_hyperparams(&owner, netuid, update).await.unwrap_or_else(|e| panic!("hyperparams: {e}"));
    netuid
}

/// Funds `coldkey`, registers `hotkey` (retrying the per-block registration limit), stakes.
pub async fn join(chain: &dyn Chain, netuid: u16, coldkey: &Keypair, hotkey: &Keypair, stake_tao: u64) -> u16 {
    chain.faucet(coldkey, (stake_tao + 100) * RAO_PER_TAO).await.unwrap_or_else(|e| panic!("faucet: {e}"));
    let mut uid = None;
    for _ in 0..50 {
        match chain.register(coldkey, netuid, &hotkey.public()).await {
            Ok(receipt) => {
                uid = receipt.uid;
                break;
            }
            Err(e) if e.name() == Some("TooManyRegistrationsThisBlock") => {
                let block = chain.block_number().await.unwrap_or(0);
                wait_block(chain, block).await;
            }
            Err(e) => panic!("register: {e}"),
        }
    }
    let uid = uid.unwrap_or_else(|| panic!("registration never got a slot"));
    if stake_tao > 0 {
        chain.add_stake(coldkey, netuid, &hotkey.public(), stake_tao * RAO_PER_TAO).await.unwrap_or_else(|e| panic!("stake: {e}"));
    }
    uid
}

/// Waits (bounded) until every hotkey holds a validator permit.
pub async fn wait_permits(chain: &dyn Chain, netuid: u16, hotkeys: &[&Keypair]) {
    for _ in 0..600 {
        let metagraph = Metagraph::fetch(chain, netuid).await.unwrap_or_else(|e| panic!("metagraph: {e}"));
        if hotkeys.iter().all(|h| metagraph.by_hotkey(&h.public()).is_some_and(|n| n.validator_permit)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("validator permits never arrived");
}

/// Polls `check` every 100 ms until it returns Some, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
