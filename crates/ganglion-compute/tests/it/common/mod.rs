//! Helpers shared by the integration tests: tool checks (the GANGLION_REQUIRE_ALL rule),
//! renter SSH keys, a bounded `ssh` client and polling. A subnet on a local chain comes from
//! `ganglion_chain_node::testkit`.
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

// ---- chain helpers: a subnet on a local chain comes from `ganglion_chain_node::testkit` ----

pub use ganglion_chain_node::testkit::key;

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

// ---- node configurations for tests ----

/// A compute config for a node on a test subnet: loopback axon on a free port, its own data
/// directory, fast metagraph refresh; miners with the sandbox off and tiny speed tests.
pub fn node_config(netuid: u16, data_dir: &Path) -> ganglion_compute::config::ComputeConfig {
    let mut config = ganglion_compute::config::ComputeConfig { netuid, ..Default::default() };
    config.neuron.data_dir = Some(data_dir.to_path_buf());
    config.neuron.sync_interval = Duration::from_secs(1);
    config.axon.ip = "127.0.0.1".parse().unwrap_or_else(|_| unreachable!());
    config.axon.port = 0;
    config.miner.sandbox = ganglion_compute::sandbox::SandboxConfig { enabled: false, ..Default::default() };
    config.miner.specs_sample_mib = 1;
    config
}
