//! The allocation sandbox: a persistent bubblewrap container per allocation, its limits,
//! its disk, and the SSH server the renter logs in through.
//!
//! # What runs (root mode, the one that works on a machine like the CI VM)
//! - **Disk**: a sparse ext4 image of the requested size, loop-mounted `nosuid,nodev` in the
//!   allocation's directory; its root belongs to the allocation's own unprivileged host uid.
//!   It backs `/root`, `/tmp` and the requested `volume_path` inside. Writing past the size
//!   fails with `ENOSPC`.
//! - **Limits**: cgroups below the miner's own group (see [`cgroup`]): CPU bandwidth and a
//!   cpuset of whole CPUs (`nproc` inside shows the count), RAM without swap, `pids.max`.
//!   Controllers that cannot be used fall back to per-process limits in the launch chain
//!   (`taskset` affinity, `prlimit --as` for memory, `prlimit --nproc` for processes: the
//!   uid is unique to the allocation, so this is per sandbox). [`SandboxState::enforcement`]
//!   says which mechanism holds each limit; `ganglion compute status` prints it.
//! - **Container**: `setpriv` drops to the allocation's uid (200000+ range by default), then
//!   bubblewrap creates user, mount, pid, ipc, uts, cgroup (and by default network)
//!   namespaces: root inside, an unprivileged uid outside, the host's `/usr` read-only, an
//!   allow-listed `/etc`, private `/proc`, `/dev`, `/run`, `/var`. Its init (`sleep`) keeps
//!   the namespaces alive for the whole allocation, so background jobs survive logouts and
//!   the sandbox survives a miner restart (a persisted state file re-adopts it by pid and
//!   start time).
//! - **SSH**: Debian's OpenSSH `sshd`, one per allocation on `--ssh.port`, with a generated
//!   config: public-key authentication only, `AuthorizedKeysFile` holding the renter's key
//!   (and nothing else), no forwarding of any kind, and `ForceCommand` pointing at a
//!   generated script that joins the cgroups and `nsenter`s the sandbox, dropping every
//!   capability (`setpriv --bounding-set=-all --no-new-privs`). The renter's command, if any,
//!   runs inside. `sftp` works through the same path (the subsystem runs inside). OpenSSH
//!   was chosen over an embedded server for its maturity: it is what sshd-exposed machines
//!   already trust, and sessions survive a miner restart.
//! - **No shell sees a request field.** Everything is an argument vector; the two generated
//!   scripts contain only values the miner made (paths with `[A-Za-z0-9/_.-]`, numbers),
//!   and the renter's key is parsed and re-encoded before it is written.
//!
//! # What does not run here, and why
//! - Docker: `docker` is installed on the CI image but there is no engine (no socket).
//! - Rootless podman: needs newuidmap/subuid setup and a working network stack (slirp4netns
//!   or pasta); neither is present, and bubblewrap gives the same isolation with fewer parts.
//! - Unprivileged miners: loop mounts, other uids and root-owned sshd need root; without it
//!   the sandbox reports itself unusable (`has_docker: false`) and allocations are refused
//!   with that reason.
//!
//! Networking inside the sandbox is `none` by default (loopback only): a renter must not
//! reach the miner's loopback services (the chain API, this miner). `--sandbox.network host`
//! shares the host network instead.

pub mod cgroup;
pub mod process;
mod sshd;

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use cgroup::{Cgroups, Controller, Group, Limits};
pub use process::ProcessId;

use crate::error::{ComputeError, Result};

/// Network of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only.
    #[default]
    None,
    /// The host's network.
    Host,
}

/// SSH server settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfig {
    /// Address sshd listens on.
    pub listen: IpAddr,
    /// `--ssh.port`: the port of the allocation's sshd (the original's 4444).
    pub port: u16,
    /// Host name or IP renters should connect to (None: the miner's axon IP).
    pub advertise_host: Option<String>,
    /// The sshd binary.
    pub sshd: PathBuf,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            listen: IpAddr::from([0, 0, 0, 0]),
            port: 4444,
            advertise_host: None,
            sshd: PathBuf::from("/usr/sbin/sshd"),
        }
    }
}

/// Sandbox settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Accept allocations at all.
    pub enabled: bool,
    /// Where allocation directories (disk images, sshd files) live. Every ancestor must be
    /// traversable by other users (mode `o+x`), because bubblewrap runs as the allocation's uid.
    pub dir: PathBuf,
    /// Network inside.
    pub network: NetworkMode,
    /// First host uid of allocation users (each allocation gets its own uid above it).
    pub uid_base: u32,
    /// Most processes and threads per sandbox.
    pub pids_max: u64,
    /// SSH.
    pub ssh: SshConfig,
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// Stop sandboxes when the miner stops (tests, localnet); normally they keep running
    /// and are re-adopted on restart.
    pub stop_on_exit: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            dir: PathBuf::from("/var/lib/ganglion/sandboxes"),
            network: NetworkMode::None,
            uid_base: 200_000,
            pids_max: 1024,
            ssh: SshConfig::default(),
            bwrap: PathBuf::from("bwrap"),
            stop_on_exit: false,
        }
    }
}

/// Whether a path is made only of characters that are safe in generated config files.
fn plain_path(path: &Path) -> bool {
    path.is_absolute() && path.to_str().is_some_and(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b)))
}

/// Tools the sandbox runs, resolved on `PATH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tools {
    bwrap: Option<PathBuf>,
    sshd: Option<PathBuf>,
    setpriv: Option<PathBuf>,
    nsenter: Option<PathBuf>,
    mkfs: Option<PathBuf>,
    mount: Option<PathBuf>,
    umount: Option<PathBuf>,
    prlimit: Option<PathBuf>,
    taskset: Option<PathBuf>,
    sh: Option<PathBuf>,
}

/// What this machine can do, found once at startup.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Whether allocations can run.
    pub usable: bool,
    /// Why not (or what is degraded).
    pub problems: Vec<String>,
    /// cgroups found.
    pub cgroups: Cgroups,
    /// Running as root.
    pub root: bool,
    /// Loop devices present.
    pub loop_devices: bool,
    tools: Tools,
}

fn find(name: &str) -> Option<PathBuf> {
    crate::hashcat::find_binary(Path::new(name))
}

/// Looks at the machine: root, tools, cgroups, loop devices, the sandbox directory.
pub fn probe(config: &SandboxConfig) -> Capabilities {
    let tools = Tools {
        bwrap: crate::hashcat::find_binary(&config.bwrap),
        sshd: crate::hashcat::find_binary(&config.ssh.sshd),
        setpriv: find("setpriv"),
        nsenter: find("nsenter"),
        mkfs: find("mkfs.ext4"),
        mount: find("mount"),
        umount: find("umount"),
        prlimit: find("prlimit"),
        taskset: find("taskset"),
        sh: Some(PathBuf::from("/bin/sh")).filter(|p| p.exists()),
    };
    let root = rustix::process::geteuid().is_root();
    let loop_devices = Path::new("/dev/loop-control").exists();
    let cgroups = Cgroups::detect();
    let mut problems = Vec::new();
    if !config.enabled {
        problems.push("allocations are disabled (--sandbox.disable)".to_string());
    }
    if !root {
        problems.push("the sandbox needs root (loop disks, per-allocation uids, sshd); run the miner as root".into());
    }
    let required = [
        ("bubblewrap (bwrap)", &tools.bwrap),
        ("OpenSSH sshd", &tools.sshd),
        ("setpriv", &tools.setpriv),
        ("nsenter", &tools.nsenter),
        ("mkfs.ext4", &tools.mkfs),
        ("mount", &tools.mount),
        ("umount", &tools.umount),
        ("/bin/sh", &tools.sh),
    ];
    for (name, tool) in required {
        if tool.is_none() {
            problems.push(format!("{name} is missing (scripts/install-sandbox installs it)"));
        }
    }
    if !loop_devices {
        problems.push("no loop devices (/dev/loop-control): the disk limit cannot be enforced".into());
    }
    if !plain_path(&config.dir) {
        problems.push(format!(
            "--sandbox.dir {} must be an absolute path of letters, digits and / _ . -",
            config.dir.display()
        ));
    }
    let usable = problems.is_empty();
    Capabilities { usable, problems, cgroups, root, loop_devices, tools }
}

impl Capabilities {
    /// The report published in the specs and printed by `compute status`.
    pub fn report(&self, config: &SandboxConfig) -> serde_json::Value {
        let controllers: Vec<&str> = self
            .cgroups
            .controllers()
            .into_iter()
            .map(|c| match c {
                Controller::Cpu => "cpu",
                Controller::Cpuset => "cpuset",
                Controller::Memory => "memory",
                Controller::Pids => "pids",
                Controller::Freezer => "freezer",
            })
            .collect();
        serde_json::json!({
            "runtime": "bubblewrap",
            "usable": self.usable,
            "problems": self.problems,
            "cgroups": self.cgroups.version_name(),
            "cgroup_controllers": controllers,
            "disk": if self.loop_devices { "ext4 loop image" } else { "none" },
            "network": config.network,
            "ssh": "openssh sshd, public key only",
            "ssh_port": config.ssh.port,
        })
    }
}

/// What one sandbox is made of.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Allocation id (a UUID in simple form).
    pub id: String,
    /// CPUs.
    pub cpus: u32,
    /// RAM bytes.
    pub memory_bytes: u64,
    /// Disk bytes.
    pub disk_bytes: u64,
    /// GPUs to expose (indices).
    pub gpus: Vec<u32>,
    /// Mount point of the disk besides `/root` and `/tmp`.
    pub volume_path: String,
    /// The renter's canonical OpenSSH key line.
    pub ssh_key: String,
}

/// Which mechanism enforces each limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// CPU count.
    pub cpu: String,
    /// Memory.
    pub memory: String,
    /// Disk.
    pub disk: String,
    /// Processes.
    pub pids: String,
    /// Pause.
    pub pause: String,
    /// Network.
    pub network: String,
}

/// A sandbox as persisted (re-adopted after a miner restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    /// Allocation id.
    pub id: String,
    /// Host uid of the sandbox's root.
    pub uid: u32,
    /// The allocation directory.
    pub dir: PathBuf,
    /// Applied limits.
    pub limits: Limits,
    /// Disk size.
    pub disk_bytes: u64,
    /// Extra mount point.
    pub volume_path: String,
    /// GPUs exposed.
    pub gpus: Vec<u32>,
    /// The sandbox's cgroup.
    pub group: Option<Group>,
    /// sshd's tracking cgroup.
    pub ssh_group: Option<Group>,
    /// The sandbox's init (pid 1 inside).
    pub init: Option<ProcessId>,
    /// The outer bubblewrap process.
    pub outer: Option<ProcessId>,
    /// sshd.
    pub sshd: Option<ProcessId>,
    /// SSH port.
    pub port: u16,
    /// The server's host key (public, OpenSSH line).
    pub host_key: String,
    /// Its SHA-256 fingerprint.
    pub host_key_fingerprint: String,
    /// Per-limit mechanisms.
    pub enforcement: Enforcement,
    /// Frozen by `docker_change: pause`.
    pub paused: bool,
    /// Network mode.
    pub network: NetworkMode,
}

impl SandboxState {
    fn disk_image(&self) -> PathBuf {
        self.dir.join("disk.img")
    }

    fn mount_point(&self) -> PathBuf {
        self.dir.join("disk")
    }

    /// Whether the init and sshd are alive.
    pub fn running(&self) -> bool {
        self.init.is_some_and(|p| p.alive()) && self.sshd.is_some_and(|p| p.alive())
    }
}

/// Creates, re-adopts, changes and destroys sandboxes.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    config: SandboxConfig,
    caps: Capabilities,
}

/// Runs a program with arguments (no shell), bounded in time; returns stdout or an error
/// carrying stderr.
fn run(program: &Path, args: &[OsString], timeout: Duration) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| ComputeError::io("starting", program, err))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ComputeError::Sandbox(format!("{} did not finish within {timeout:?}", program.display())));
            }
            Err(err) => return Err(ComputeError::io("waiting for", program, err)),
        }
    }
    let output = child.wait_with_output().map_err(|err| ComputeError::io("reading", program, err))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ComputeError::Sandbox(format!("{} failed ({}): {}", program.display(), output.status, stderr.trim())))
    }
}

/// Starts `argv` with a clean environment in its own process group: a Ctrl-C (or `timeout`)
/// aimed at the miner's group must not reach the sandbox or its sshd, which outlive the
/// miner by design.
fn spawn_detached(argv: &[OsString], stdout: Stdio, stderr: Stdio) -> Result<std::process::Child> {
    let program = argv.first().ok_or_else(|| ComputeError::Sandbox("empty command".into()))?;
    Command::new(program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|err| ComputeError::io("starting", program, err))
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// The constant script that joins cgroups before exec'ing the rest of its arguments:
/// `sh -c JOIN ganglion-join <n> <procs file>… <command>…`. Nothing is interpolated.
const JOIN: &str = "n=$1; shift; while [ \"$n\" -gt 0 ]; do echo $$ > \"$1\" || exit 125; shift; n=$((n-1)); done; exec \"$@\"";

/// `/etc` entries shown read-only inside (others stay hidden: shadow, ssh host keys, …).
const ETC_ALLOWED: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "bash_completion.d",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "environment",
    "gai.conf",
    "host.conf",
    "inputrc",
    "issue",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "login.defs",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "services",
    "skel",
    "ssl",
    "terminfo",
    "timezone",
    "vim",
];

impl Sandboxes {
    /// A manager for `config` on a machine described by `caps`.
    pub fn new(config: SandboxConfig, caps: Capabilities) -> Sandboxes {
        Sandboxes { config, caps }
    }

    /// The settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The machine's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn tool(&self, tool: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
        tool.clone().ok_or_else(|| ComputeError::Sandbox(format!("{name} is missing (scripts/install-sandbox)")))
    }

    fn ensure_usable(&self) -> Result<()> {
        if self.caps.usable {
            Ok(())
        } else {
            Err(ComputeError::Sandbox(format!("allocations cannot run on this miner: {}", self.caps.problems.join("; "))))
        }
    }

    /// Builds and starts a sandbox (blocking; seconds). On error everything made is undone.
    pub fn create(&self, spec: &SandboxSpec) -> Result<SandboxState> {
        self.ensure_usable()?;
        if !spec.id.bytes().all(|b| b.is_ascii_alphanumeric()) || spec.id.is_empty() || spec.id.len() > 64 {
            return Err(ComputeError::Sandbox("allocation ids are alphanumeric".into()));
        }
        sshd::check_port_free(self.config.ssh.listen, self.config.ssh.port)?;
        let dir = self.config.dir.join(&spec.id);
        // The uid is derived from the id so that concurrent sandboxes (of several miners on
        // one host) almost surely differ; collisions only weaken isolation between them.
        let slot = u32::from_str_radix(&spec.id[..spec.id.len().min(4)], 16).unwrap_or(0) % 60_000;
        let uid = self.config.uid_base.saturating_add(slot);
        let cpus = cgroup::allowed_cpus();
        let take = (spec.cpus as usize).clamp(1, cpus.len().max(1));
        let cpu_list = cgroup::format_cpu_list(&cpus[cpus.len() - take..]);
        let limits = Limits {
            cpus: spec.cpus.max(1),
            cpu_list: Some(cpu_list),
            memory_bytes: spec.memory_bytes,
            pids_max: self.config.pids_max,
        };
        let mut state = SandboxState {
            id: spec.id.clone(),
            uid,
            dir,
            limits,
            disk_bytes: spec.disk_bytes,
            volume_path: spec.volume_path.clone(),
            gpus: spec.gpus.clone(),
            group: None,
            ssh_group: None,
            init: None,
            outer: None,
            sshd: None,
            port: self.config.ssh.port,
            host_key: String::new(),
            host_key_fingerprint: String::new(),
            enforcement: Enforcement::default(),
            paused: false,
            network: self.config.network,
        };
        match self.build(&mut state, spec) {
            Ok(()) => Ok(state),
            Err(err) => {
                self.destroy(&state);
                Err(err)
            }
        }
    }

    fn build(&self, state: &mut SandboxState, spec: &SandboxSpec) -> Result<()> {
        make_dir(&self.config.dir, 0o711)?;
        make_dir(&state.dir, 0o711)?;
        self.make_disk(state)?;
        self.write_etc(state)?;
        let group = match self.caps.cgroups.create(&state.id, Some(&state.limits)) {
            Ok(group) => Some(group),
            Err(err) => {
                tracing::warn!(target: "compute::sandbox", %err, "no cgroup for the sandbox; using per-process limits");
                None
            }
        };
        state.group = group;
        state.ssh_group = self.caps.cgroups.create(&format!("{}-ssh", state.id), None).ok();
        state.enforcement = self.enforcement(state);
        self.start_init(state)?;
        let (host_key, fingerprint) = sshd::write_host_key(&state.dir)?;
        state.host_key = host_key;
        state.host_key_fingerprint = fingerprint;
        sshd::write_authorized_key(&state.dir, &spec.ssh_key)?;
        self.write_enter_script(state)?;
        self.start_sshd(state)?;
        Ok(())
    }

    fn enforcement(&self, state: &SandboxState) -> Enforcement {
        let by_group = |c: Controller| state.group.as_ref().and_then(|g| g.describe(c));
        let prlimit = self.caps.tools.prlimit.is_some();
        let cpu = match (by_group(Controller::Cpuset), by_group(Controller::Cpu)) {
            (Some(set), Some(bandwidth)) => format!("{set} + {bandwidth}"),
            (Some(set), None) => set,
            (None, Some(bandwidth)) if self.caps.tools.taskset.is_some() => format!("{bandwidth} + taskset affinity"),
            (None, Some(bandwidth)) => bandwidth,
            (None, None) if self.caps.tools.taskset.is_some() => "taskset affinity (per process)".into(),
            (None, None) => "not enforced".into(),
        };
        let memory = by_group(Controller::Memory)
            .unwrap_or_else(|| if prlimit { "RLIMIT_AS per process (prlimit)".into() } else { "not enforced".into() });
        let pids = by_group(Controller::Pids).unwrap_or_else(|| {
            if prlimit { "RLIMIT_NPROC of the allocation's uid (prlimit)".into() } else { "not enforced".into() }
        });
        let pause = by_group(Controller::Freezer).unwrap_or_else(|| "SIGSTOP/SIGCONT of the sandbox's pid namespace".into());
        Enforcement {
            cpu,
            memory,
            disk: format!("ext4 loop image of {} bytes", state.disk_bytes),
            pids,
            pause,
            network: match state.network {
                NetworkMode::None => "none (loopback only)".into(),
                NetworkMode::Host => "host".into(),
            },
        }
    }

    fn make_disk(&self, state: &SandboxState) -> Result<()> {
        let image = state.disk_image();
        let mount_point = state.mount_point();
        let file = std::fs::File::create(&image).map_err(|err| ComputeError::io("creating", &image, err))?;
        file.set_len(state.disk_bytes).map_err(|err| ComputeError::io("sizing", &image, err))?;
        drop(file);
        let owner = format!("root_owner={}:{}", state.uid, state.uid);
        let mut args = os(&["-q", "-F", "-m", "0", "-E"]);
        args.push(owner.into());
        args.push(image.clone().into());
        run(&self.tool(&self.caps.tools.mkfs, "mkfs.ext4")?, &args, Duration::from_secs(120))?;
        make_dir(&mount_point, 0o700)?;
        let mut args = os(&["-o", "loop,nosuid,nodev"]);
        args.push(image.into());
        args.push(mount_point.clone().into());
        run(&self.tool(&self.caps.tools.mount, "mount")?, &args, Duration::from_secs(30))?;
        set_mode(&mount_point, 0o700)?;
        for (sub, mode) in [("root", 0o700), ("tmp", 0o1777), ("volume", 0o755)] {
            let path = mount_point.join(sub);
            make_dir(&path, mode)?;
            std::os::unix::fs::chown(&path, Some(state.uid), Some(state.uid)).map_err(|err| ComputeError::io("chown", &path, err))?;
        }
        Ok(())
    }

    fn write_etc(&self, state: &SandboxState) -> Result<()> {
        let etc = state.dir.join("etc");
        make_dir(&etc, 0o755)?;
        let hostname = format!("alloc-{}", &state.id[..state.id.len().min(8)]);
        let files = [
            ("passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".to_string()),
            ("group", "root:x:0:\nnogroup:x:65534:\n".to_string()),
            ("hostname", format!("{hostname}\n")),
            ("hosts", format!("127.0.0.1 localhost {hostname}\n::1 localhost ip6-localhost\n")),
        ];
        for (name, contents) in files {
            ganglion_core::fsutil::write_atomic(&etc.join(name), contents.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// The bubblewrap arguments of the init (after `bwrap`, before `--`).
    fn bwrap_args(&self, state: &SandboxState) -> Vec<OsString> {
        let mut args: Vec<OsString> = os(&[
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--uid",
            "0",
            "--gid",
            "0",
        ]);
        if state.network == NetworkMode::None {
            args.push("--unshare-net".into());
        }
        let hostname = format!("alloc-{}", &state.id[..state.id.len().min(8)]);
        args.extend(os(&["--hostname", &hostname]));
        args.extend(os(&["--ro-bind", "/usr", "/usr"]));
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            match std::fs::read_link(&host) {
                Ok(target) => {
                    args.push("--symlink".into());
                    args.push(target.into());
                    args.push(host.into());
                }
                Err(_) if host.is_dir() => {
                    args.push("--ro-bind".into());
                    args.push(host.clone().into());
                    args.push(host.into());
                }
                Err(_) => {}
            }
        }
        args.extend(os(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run", "--tmpfs", "/var", "--dir", "/var/tmp"]));
        for entry in ETC_ALLOWED {
            let host = Path::new("/etc").join(entry);
            if host.exists() {
                args.push("--ro-bind".into());
                args.push(host.clone().into());
                args.push(host.into());
            }
        }
        if state.network == NetworkMode::Host && Path::new("/etc/resolv.conf").exists() {
            args.extend(os(&["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]));
        }
        let etc = state.dir.join("etc");
        for name in ["passwd", "group", "hostname", "hosts"] {
            args.push("--ro-bind".into());
            args.push(etc.join(name).into());
            args.push(Path::new("/etc").join(name).into());
        }
        let disk = state.mount_point();
        args.push("--bind".into());
        args.push(disk.join("root").into());
        args.push("/root".into());
        args.push("--bind".into());
        args.push(disk.join("tmp").into());
        args.push("/tmp".into());
        if state.volume_path != "/tmp" {
            args.push("--bind".into());
            args.push(disk.join("volume").into());
            args.push(state.volume_path.clone().into());
        }
        // Let the renter read its own limits (nothing else of the host's cgroupfs).
        if let Some(group) = &state.group {
            for dir in &group.dirs {
                let inside = match group.version {
                    1 => controller_mount_name(dir).map(|name| format!("/sys/fs/cgroup/{name}")),
                    _ => Some("/sys/fs/cgroup".to_string()),
                };
                if let Some(inside) = inside {
                    args.push("--ro-bind".into());
                    args.push(dir.clone().into());
                    args.push(inside.into());
                }
            }
        }
        for gpu in &state.gpus {
            let node = format!("/dev/nvidia{gpu}");
            if Path::new(&node).exists() {
                args.extend(os(&["--dev-bind", &node, &node]));
            }
        }
        if !state.gpus.is_empty() {
            for node in ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] {
                if Path::new(node).exists() {
                    args.extend(os(&["--dev-bind", node, node]));
                }
            }
        }
        args.extend(os(&["--setenv", "HOME", "/root", "--chdir", "/root", "--info-fd", "1"]));
        args
    }

    /// The per-process limit prefix used when a cgroup controller is not available.
    fn fallback_prefix(&self, state: &SandboxState) -> Vec<OsString> {
        let applied = |c: Controller| state.group.as_ref().is_some_and(|g| g.applied.contains(&c));
        let mut prefix = Vec::new();
        if let Some(prlimit) = &self.caps.tools.prlimit {
            let mut limits = Vec::new();
            if !applied(Controller::Memory) {
                limits.push(format!("--as={}", state.limits.memory_bytes));
            }
            if !applied(Controller::Pids) {
                limits.push(format!("--nproc={}", state.limits.pids_max));
            }
            if !limits.is_empty() {
                prefix.push(prlimit.clone().into());
                prefix.extend(limits.into_iter().map(OsString::from));
                prefix.push("--".into());
            }
        }
        if !applied(Controller::Cpuset)
            && let (Some(taskset), Some(list)) = (&self.caps.tools.taskset, &state.limits.cpu_list) {
                prefix.push(taskset.clone().into());
                prefix.push("-c".into());
                prefix.push(list.into());
            }
        prefix
    }

    fn join_prefix(&self, group: Option<&Group>) -> Result<Vec<OsString>> {
        let sh = self.tool(&self.caps.tools.sh, "/bin/sh")?;
        let files = group.map(Group::procs_files).unwrap_or_default();
        let mut args: Vec<OsString> = vec![sh.into(), "-c".into(), JOIN.into(), "ganglion-join".into(), files.len().to_string().into()];
        args.extend(files.into_iter().map(OsString::from));
        Ok(args)
    }

    fn start_init(&self, state: &mut SandboxState) -> Result<()> {
        let mut argv = self.join_prefix(state.group.as_ref())?;
        argv.extend(self.fallback_prefix(state));
        let uid = state.uid.to_string();
        argv.push(self.tool(&self.caps.tools.setpriv, "setpriv")?.into());
        argv.extend(os(&[
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ]));
        argv.push(self.tool(&self.caps.tools.bwrap, "bwrap")?.into());
        argv.extend(self.bwrap_args(state));
        argv.extend(os(&["--", "/usr/bin/sleep", "infinity"]));
        let info_path = state.dir.join("init-info.json");
        let log_path = state.dir.join("sandbox.log");
        let info = std::fs::File::create(&info_path).map_err(|err| ComputeError::io("creating", &info_path, err))?;
        let log = std::fs::File::create(&log_path).map_err(|err| ComputeError::io("creating", &log_path, err))?;
        let mut child = spawn_detached(&argv, Stdio::from(info), Stdio::from(log))?;
        let outer = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(15);
        let init_pid = loop {
            if let Some(pid) = std::fs::read_to_string(&info_path)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|v| v.get("child-pid").and_then(serde_json::Value::as_i64))
            {
                break pid as i32;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(ComputeError::Sandbox(format!("bubblewrap exited ({status}): {}", log.trim())));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ComputeError::Sandbox("bubblewrap did not report its sandbox within 15 s".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        state.outer = ProcessId::of(outer);
        state.init = ProcessId::of(init_pid);
        if state.init.is_none() {
            return Err(ComputeError::Sandbox("the sandbox's init exited right after starting".into()));
        }
        // Reap the outer process when it ends, so it does not linger as a zombie.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    /// The generated `ForceCommand` script (0700, root).
    fn enter_script(&self, state: &SandboxState) -> Result<String> {
        let init = state.init.ok_or_else(|| ComputeError::Sandbox("the sandbox is not running".into()))?;
        let quote = |s: &OsString| -> Result<String> {
            let text = s.to_str().ok_or_else(|| ComputeError::Sandbox("non-UTF-8 path".into()))?;
            if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-=,:".contains(&b)) {
                return Err(ComputeError::Sandbox(format!("refusing to write {text:?} into a script")));
            }
            Ok(format!("'{text}'"))
        };
        let mut chain: Vec<OsString> = vec![self.tool(&self.caps.tools.setpriv, "setpriv")?.into(), "--clear-groups".into(), "--".into()];
        chain.extend(self.fallback_prefix(state));
        chain.push(self.tool(&self.caps.tools.nsenter, "nsenter")?.into());
        chain.push(format!("--target={}", init.pid).into());
        chain.extend(os(&["--user", "--mount", "--pid", "--uts", "--ipc"]));
        if state.network == NetworkMode::None {
            chain.push("--net".into());
        }
        chain.extend(os(&["--wd", "--"]));
        // Inside the sandbox's mount namespace: the host's /usr is visible read-only there.
        chain.extend(os(&[
            "/usr/bin/setpriv",
            "--reuid=0",
            "--regid=0",
            "--keep-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]));
        let chain: Vec<String> = chain.iter().map(quote).collect::<Result<_>>()?;
        let procs: Vec<String> = state
            .group
            .as_ref()
            .map(Group::procs_files)
            .unwrap_or_default()
            .into_iter()
            .map(|p| quote(&p.into_os_string()))
            .collect::<Result<_>>()?;
        let env = "env -i TERM=\"${TERM:-xterm}\" HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 \
                   PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let join = if procs.is_empty() {
            String::new()
        } else {
            format!(
                "for procs in {}; do echo $$ > \"$procs\" || {{ echo \"cannot join the sandbox's cgroup $procs\" >&2; exit 1; }}; done\n",
                procs.join(" ")
            )
        };
        Ok(format!(
            "#!/bin/sh\n\
             # Generated by ganglion-compute for allocation {id}. sshd runs this for every session\n\
             # (ForceCommand): join the sandbox's cgroups, enter its namespaces, drop privileges.\n\
             set -eu\n\
             {join}\
             set -- {chain}\n\
             if [ -n \"${{SSH_ORIGINAL_COMMAND:-}}\" ]; then\n\
             \x20 exec {env} \"$@\" /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n\
             fi\n\
             exec {env} \"$@\" /bin/bash -l\n",
            id = state.id,
            chain = chain.join(" "),
        ))
    }

    fn write_enter_script(&self, state: &SandboxState) -> Result<()> {
        let script = self.enter_script(state)?;
        ganglion_core::fsutil::write_atomic(&state.dir.join("enter"), script.as_bytes(), 0o700)?;
        Ok(())
    }

    fn start_sshd(&self, state: &mut SandboxState) -> Result<()> {
        let sshd = self.tool(&self.caps.tools.sshd, "sshd")?;
        let config = sshd::config(&state.dir, self.config.ssh.listen, state.port);
        let config_path = state.dir.join("sshd_config");
        ganglion_core::fsutil::write_atomic(&config_path, config.as_bytes(), 0o600)?;
        sshd::ensure_privsep_dir()?;
        let mut argv = self.join_prefix(state.ssh_group.as_ref())?;
        argv.push(sshd.clone().into());
        argv.extend(os(&["-D", "-f"]));
        argv.push(config_path.into());
        argv.push("-E".into());
        argv.push(state.dir.join("sshd.log").into());
        let mut child = spawn_detached(&argv, Stdio::null(), Stdio::null())?;
        let pid = child.id() as i32;
        let listening = sshd::wait_listening(self.config.ssh.listen, state.port, Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !listening {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(state.dir.join("sshd.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(ComputeError::Sandbox(format!("sshd did not start on port {}: {tail}", state.port)));
        }
        state.sshd = ProcessId::of(pid);
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    /// After a miner restart: re-adopts a sandbox whose processes still run, restarts the
    /// parts that do not (the disk and its data are kept).
    pub fn ensure_running(&self, state: &mut SandboxState) -> Result<()> {
        self.ensure_usable()?;
        if !is_mounted(&state.mount_point()) {
            let mut args = os(&["-o", "loop,nosuid,nodev"]);
            args.push(state.disk_image().into());
            args.push(state.mount_point().into());
            run(&self.tool(&self.caps.tools.mount, "mount")?, &args, Duration::from_secs(30))?;
        }
        if !state.init.is_some_and(|p| p.alive()) {
            if let Some(group) = &state.group {
                group.kill_all(Duration::from_secs(5));
            }
            if state.group.as_ref().is_some_and(|g| !g.dirs.iter().all(|d| d.exists())) {
                state.group = self.caps.cgroups.create(&state.id, Some(&state.limits)).ok();
            }
            self.start_init(state)?;
            self.write_enter_script(state)?;
        }
        if !state.sshd.is_some_and(|p| p.alive()) {
            if state.ssh_group.as_ref().is_some_and(|g| !g.dirs.iter().all(|d| d.exists())) {
                state.ssh_group = self.caps.cgroups.create(&format!("{}-ssh", state.id), None).ok();
            }
            self.start_sshd(state)?;
        }
        Ok(())
    }

    /// Replaces the renter's key (existing sessions continue; new logins need the new key).
    pub fn set_key(&self, state: &SandboxState, ssh_key: &str) -> Result<()> {
        sshd::write_authorized_key(&state.dir, ssh_key)
    }

    /// Kills every process of the sandbox and starts a fresh init (disk kept).
    pub fn restart(&self, state: &mut SandboxState) -> Result<()> {
        self.kill_sandbox_processes(state);
        state.paused = false;
        self.start_init(state)?;
        self.write_enter_script(state)
    }

    /// Freezes or thaws the sandbox.
    pub fn pause(&self, state: &mut SandboxState, paused: bool) -> Result<()> {
        let frozen = match &state.group {
            Some(group) => group.freeze(paused)?,
            None => false,
        };
        if !frozen {
            let init = state.init.ok_or_else(|| ComputeError::Sandbox("the sandbox is not running".into()))?;
            for pid in process::pid_namespace_members(init.pid) {
                process::stop(pid, paused);
            }
        }
        state.paused = paused;
        Ok(())
    }

    fn kill_sandbox_processes(&self, state: &SandboxState) {
        let mut emptied = false;
        if let Some(group) = &state.group {
            emptied = group.kill_all(Duration::from_secs(10));
        }
        if !emptied
            && let Some(init) = state.init.filter(ProcessId::alive) {
                let _ = state.group.as_ref().map(|g| g.freeze(false));
                for pid in process::pid_namespace_members(init.pid) {
                    process::kill(pid);
                }
            }
        if let Some(outer) = state.outer.filter(ProcessId::alive) {
            process::kill(outer.pid);
        }
    }

    /// Stops everything and deletes the allocation's files, disk included (the renter's
    /// data is gone). Safe to call on a half-built state and more than once.
    pub fn destroy(&self, state: &SandboxState) {
        if let Some(sshd) = state.sshd.filter(ProcessId::alive) {
            process::terminate(sshd.pid);
        }
        if let Some(group) = &state.ssh_group {
            group.kill_all(Duration::from_secs(5));
        }
        if let Some(sshd) = state.sshd.filter(ProcessId::alive) {
            process::kill(sshd.pid);
        }
        self.kill_sandbox_processes(state);
        for group in [&state.group, &state.ssh_group].into_iter().flatten() {
            group.remove();
        }
        let mount_point = state.mount_point();
        if is_mounted(&mount_point)
            && let Some(umount) = &self.caps.tools.umount {
                let path: OsString = mount_point.clone().into();
                if run(umount, std::slice::from_ref(&path), Duration::from_secs(30)).is_err() {
                    // Something still holds it open: detach now, the kernel frees it later.
                    let _ = run(umount, &[OsString::from("-l"), path], Duration::from_secs(30));
                }
            }
        if !is_mounted(&mount_point) && state.dir.starts_with(&self.config.dir) && state.dir != self.config.dir {
            let _ = std::fs::remove_dir_all(&state.dir);
        }
    }
}

fn controller_mount_name(dir: &Path) -> Option<String> {
    // `<mount>/<own…>/ganglion/<id>`: the mount is `/sys/fs/cgroup/<name>` on v1 systems.
    let text = dir.to_str()?;
    let rest = text.strip_prefix("/sys/fs/cgroup/")?;
    let name = rest.split('/').next()?;
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b',' || b == b'_').then(|| name.to_string())
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(mode).create(path) {
        Ok(()) => set_mode(path, mode),
        Err(err) => Err(ComputeError::io("creating", path, err)),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|err| ComputeError::io("chmod", path, err))
}

/// Whether `path` is a mount point (per `/proc/self/mountinfo`).
fn is_mounted(path: &Path) -> bool {
    let Some(text) = path.to_str() else { return false };
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| info.lines().any(|line| line.split_whitespace().nth(4) == Some(text)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
