use std::collections::BTreeSet;

use super::*;

fn caps(cgroups: Cgroups) -> Capabilities {
    Capabilities {
        usable: true,
        problems: Vec::new(),
        cgroups,
        root: true,
        loop_devices: true,
        tools: Tools {
            bwrap: Some("/usr/bin/bwrap".into()),
            sshd: Some("/usr/sbin/sshd".into()),
            setpriv: Some("/usr/bin/setpriv".into()),
            nsenter: Some("/usr/bin/nsenter".into()),
            mkfs: Some("/usr/sbin/mkfs.ext4".into()),
            mount: Some("/usr/bin/mount".into()),
            umount: Some("/usr/bin/umount".into()),
            prlimit: Some("/usr/bin/prlimit".into()),
            taskset: Some("/usr/bin/taskset".into()),
            sh: Some("/bin/sh".into()),
        },
    }
}

fn state(group: Option<Group>) -> SandboxState {
    SandboxState {
        id: "0123abcd".into(),
        uid: 200_291,
        dir: "/var/lib/ganglion/sandboxes/0123abcd".into(),
        limits: Limits { cpus: 1, cpu_list: Some("1".into()), memory_bytes: 1 << 30, pids_max: 512 },
        disk_bytes: 10 << 30,
        volume_path: "/workspace".into(),
        gpus: Vec::new(),
        group,
        ssh_group: None,
        init: Some(ProcessId { pid: 4242, start_time: 1 }),
        outer: None,
        sshd: None,
        port: 4444,
        host_key: String::new(),
        host_key_fingerprint: String::new(),
        enforcement: Enforcement::default(),
        paused: false,
        network: NetworkMode::None,
    }
}

fn full_group() -> Group {
    Group {
        dirs: vec![
            "/sys/fs/cgroup/cpu/ganglion/0123abcd".into(),
            "/sys/fs/cgroup/cpuset/ganglion/0123abcd".into(),
            "/sys/fs/cgroup/memory/x/ganglion/0123abcd".into(),
            "/sys/fs/cgroup/pids/ganglion/0123abcd".into(),
        ],
        version: 1,
        applied: BTreeSet::from([Controller::Cpu, Controller::Cpuset, Controller::Memory, Controller::Pids]),
        freezer: None,
    }
}

#[test]
fn enter_script_joins_cgroups_and_drops_everything() {
    let sandboxes = Sandboxes::new(SandboxConfig::default(), caps(Cgroups::None));
    let script = sandboxes.enter_script(&state(Some(full_group()))).unwrap_or_else(|e| panic!("{e}"));
    assert!(script.starts_with("#!/bin/sh\n"));
    assert!(script.contains("'/sys/fs/cgroup/memory/x/ganglion/0123abcd/cgroup.procs'"));
    assert!(script.contains("'--target=4242'") && script.contains("'--net'"));
    assert!(script.contains("'--bounding-set=-all'") && script.contains("'--no-new-privs'"));
    assert!(script.contains("/bin/sh -c \"$SSH_ORIGINAL_COMMAND\""));
    assert!(!script.contains("prlimit") && !script.contains("taskset"), "cgroups hold every limit");
    // Without cgroups the limits move into the chain.
    let script = sandboxes.enter_script(&state(None)).unwrap_or_else(|e| panic!("{e}"));
    assert!(script.contains("'--as=1073741824'") && script.contains("'--nproc=512'"));
    assert!(script.contains("'/usr/bin/taskset' '-c' '1'"));
    assert!(!script.contains("for procs in"));
    // A value that is not plain is never written into the script.
    let mut bad = state(None);
    bad.limits.cpu_list = Some("1; rm -rf /".into());
    assert!(sandboxes.enter_script(&bad).is_err());
}

#[test]
fn bwrap_hides_the_host_and_mounts_the_disk() {
    let sandboxes = Sandboxes::new(SandboxConfig::default(), caps(Cgroups::None));
    let args: Vec<String> = sandboxes.bwrap_args(&state(Some(full_group()))).iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let has = |seq: &[&str]| args.windows(seq.len()).any(|w| w.iter().zip(seq).all(|(a, b)| a == b));
    assert!(has(&["--unshare-user"]) && has(&["--unshare-pid"]) && has(&["--unshare-net"]));
    assert!(has(&["--ro-bind", "/usr", "/usr"]));
    assert!(has(&["--bind", "/var/lib/ganglion/sandboxes/0123abcd/disk/root", "/root"]));
    assert!(has(&["--bind", "/var/lib/ganglion/sandboxes/0123abcd/disk/volume", "/workspace"]));
    assert!(has(&["--ro-bind", "/var/lib/ganglion/sandboxes/0123abcd/etc/passwd", "/etc/passwd"]));
    assert!(has(&["--ro-bind", "/sys/fs/cgroup/memory/x/ganglion/0123abcd", "/sys/fs/cgroup/memory"]));
    assert!(!args.iter().any(|a| a == "/etc/shadow" || a == "/etc/ssh"), "secrets stay hidden");
    assert!(!args.iter().any(|a| a == "--die-with-parent"), "the sandbox outlives a miner restart");
    let mut host = state(None);
    host.network = NetworkMode::Host;
    let args: Vec<String> = sandboxes.bwrap_args(&host).iter().map(|a| a.to_string_lossy().into_owned()).collect();
    assert!(!args.iter().any(|a| a == "--unshare-net"));
}

#[test]
fn enforcement_reports_the_mechanism_of_each_limit() {
    let sandboxes = Sandboxes::new(SandboxConfig::default(), caps(Cgroups::None));
    let with = sandboxes.enforcement(&state(Some(full_group())));
    assert_eq!(with.cpu, "cgroup v1 cpuset.cpus + cgroup v1 cpu.cfs_quota_us");
    assert!(with.memory.starts_with("cgroup v1 memory.limit_in_bytes"));
    assert_eq!(with.pids, "cgroup v1 pids.max");
    assert!(with.disk.starts_with("ext4 loop image"));
    let without = sandboxes.enforcement(&state(None));
    assert_eq!(without.cpu, "taskset affinity (per process)");
    assert!(without.memory.starts_with("RLIMIT_AS"));
    assert!(without.pause.starts_with("SIGSTOP"));
}

#[test]
fn probe_reports_problems_instead_of_failing() {
    let config = SandboxConfig { dir: "relative/dir".into(), bwrap: "/nonexistent/bwrap".into(), ..SandboxConfig::default() };
    let caps = probe(&config);
    assert!(!caps.usable);
    assert!(caps.problems.iter().any(|p| p.contains("bubblewrap")));
    assert!(caps.problems.iter().any(|p| p.contains("--sandbox.dir")));
    let sandboxes = Sandboxes::new(config.clone(), caps);
    let spec = SandboxSpec {
        id: "abcd".into(),
        cpus: 1,
        memory_bytes: 1 << 30,
        disk_bytes: 1 << 30,
        gpus: Vec::new(),
        volume_path: "/tmp".into(),
        ssh_key: String::new(),
    };
    match sandboxes.create(&spec) {
        Err(ComputeError::Sandbox(message)) => assert!(message.contains("cannot run on this miner")),
        other => panic!("{other:?}"),
    }
    let report = sandboxes.capabilities().report(&config);
    assert_eq!(report["usable"], false);
}
