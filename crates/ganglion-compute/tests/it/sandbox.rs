//! The real sandbox on this machine: create, log in over SSH with the renter's key, check the
//! limits from inside, refuse another key, keep background jobs, destroy without leftovers.

use crate::common;

use std::time::Duration;

use ganglion_compute::sandbox::{self, SandboxConfig, SandboxSpec, Sandboxes, SshConfig};

struct Teardown<'a> {
    sandboxes: &'a Sandboxes,
    state: Option<sandbox::SandboxState>,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            self.sandboxes.destroy(&state);
        }
    }
}

#[test]
fn sandbox_enforces_limits_and_admits_only_the_renter() {
    if let Some(why) = common::sandbox_missing()
        && common::skip(&why) {
            return;
        }
    let root = common::sandbox_dir();
    let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = common::free_port();
    let config = SandboxConfig {
        dir: root.path().to_path_buf(),
        ssh: SshConfig { listen: "127.0.0.1".parse().unwrap_or_else(|_| unreachable!()), port, ..SshConfig::default() },
        ..SandboxConfig::default()
    };
    let caps = sandbox::probe(&config);
    let sandboxes = Sandboxes::new(config, caps);
    let renter = common::renter_key(keys.path(), "renter");
    let stranger = common::renter_key(keys.path(), "stranger");
    let spec = SandboxSpec {
        id: uuid::Uuid::new_v4().simple().to_string(),
        cpus: 1,
        memory_bytes: 256 << 20,
        disk_bytes: 128 << 20,
        gpus: Vec::new(),
        volume_path: "/workspace".into(),
        ssh_key: renter.public_line.clone(),
    };
    let state = sandboxes.create(&spec).unwrap_or_else(|e| panic!("create: {e}"));
    // Tear the sandbox down even when an assertion fails.
    let guard = Teardown { sandboxes: &sandboxes, state: Some(state.clone()) };
    assert!(state.running());
    let known = common::known_hosts(keys.path(), port, &state.host_key);

    let out = common::ssh(
        &renter.private_key,
        &known,
        port,
        "id -u; nproc; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         df -B1 --output=size /root | tail -1; grep CapEff /proc/self/status; hostname; \
         test -e /etc/shadow && echo shadow-visible || echo shadow-hidden; \
         touch /usr/x 2>/dev/null && echo usr-writable || echo usr-readonly; \
         fallocate -l 200M /root/big 2>/dev/null && echo disk-unlimited || echo disk-full; rm -f /root/big; \
         echo data > /workspace/file && cat /workspace/file",
    );
    assert!(out.ok, "ssh failed: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "root inside: {}", out.stdout);
    assert_eq!(lines.get(1), Some(&"1"), "one CPU visible: {}", out.stdout);
    assert_eq!(lines.get(2).map(|l| l.trim()), Some(format!("{}", 256u64 << 20).as_str()), "memory limit: {}", out.stdout);
    let disk: u64 = lines.get(3).and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    assert!(disk > 64 << 20 && disk <= 128 << 20, "disk size {disk}");
    assert_eq!(lines.get(4).map(|l| l.split_whitespace().last()), Some(Some("0000000000000000")), "no capabilities");
    assert!(lines.get(5).is_some_and(|h| h.starts_with("alloc-")));
    assert_eq!(&lines[6..10], &["shadow-hidden", "usr-readonly", "disk-full", "data"]);

    // Another key is refused.
    let refused = common::ssh(&stranger.private_key, &known, port, "true");
    assert!(!refused.ok && refused.stderr.contains("Permission denied"), "{refused:?}");

    // A background job survives the end of its session.
    let started = common::ssh(&renter.private_key, &known, port, "nohup sleep 600 >/dev/null 2>&1 & echo started");
    assert!(started.ok && started.stdout.contains("started"));
    let seen = common::ssh(&renter.private_key, &known, port, "ps -eo args");
    assert!(seen.stdout.lines().any(|l| l.trim() == "sleep 600"), "{}", seen.stdout);
    assert!(!seen.stdout.contains("sshd"), "host processes are invisible: {}", seen.stdout);

    // Key exchange: the stranger's key replaces the renter's.
    sandboxes.set_key(&state, &stranger.public_line).unwrap_or_else(|e| panic!("{e}"));
    assert!(common::ssh(&stranger.private_key, &known, port, "true").ok);
    assert!(!common::ssh(&renter.private_key, &known, port, "true").ok);

    // Destroy: processes, cgroups, mount and files are gone.
    let group_dirs: Vec<_> = state.group.iter().flat_map(|g| g.dirs.clone()).collect();
    drop(guard);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!state.init.is_some_and(|p| p.alive()) && !state.sshd.is_some_and(|p| p.alive()));
    assert!(group_dirs.iter().all(|d| !d.exists()), "cgroups removed");
    assert!(!state.dir.exists(), "allocation directory removed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains(&spec.id), "disk unmounted");
}
