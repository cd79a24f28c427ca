//! Control groups for allocations: cgroup v1 (one hierarchy per controller, as on this
//! machine) or v2 (unified), found through `/proc/self/mountinfo` and `/proc/self/cgroup`.
//!
//! Allocation groups are created *below the miner's own cgroup* in every hierarchy
//! (`<mount>/<own path>/ganglion/<name>`), so that whatever accounts for the miner keeps
//! accounting for its sandboxes; a sandbox can never move itself out (its processes cannot
//! write to cgroupfs: it is not mounted inside and they have no capabilities).
//!
//! Limits (v1 / v2): CPU `cpu.cfs_quota_us` / `cpu.max` plus a `cpuset` of whole CPUs (so
//! `nproc` inside shows the count), RAM `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`
//! / `memory.max` and `memory.swap.max = 0`, processes `pids.max`, pause via the freezer /
//! `cgroup.freeze`. What could not be applied is reported, never pretended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};

/// The controllers the sandbox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// CPU bandwidth.
    Cpu,
    /// CPU and memory-node placement.
    Cpuset,
    /// Memory limit.
    Memory,
    /// Process count.
    Pids,
    /// Freezing (v1 only; v2 has `cgroup.freeze` in every group).
    Freezer,
}

impl Controller {
    const ALL: [Controller; 5] = [Controller::Cpu, Controller::Cpuset, Controller::Memory, Controller::Pids, Controller::Freezer];

    fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

/// What this machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v1: the miner's own group directory in each controller's hierarchy.
    V1(BTreeMap<Controller, PathBuf>),
    /// cgroup v2: the miner's own group directory and the controllers enabled below it.
    V2 {
        /// `<mount>/<own path>`.
        own: PathBuf,
        /// Controllers that can be enabled for children.
        controllers: BTreeSet<Controller>,
    },
    /// No usable cgroup filesystem.
    None,
}

/// Limits to apply to one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPUs (bandwidth = this many full CPUs).
    pub cpus: u32,
    /// The CPUs to pin to, as a list like `0-1` (None: no pinning).
    pub cpu_list: Option<String>,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Most processes and threads.
    pub pids_max: u64,
}

/// One created group (in one or more hierarchies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group's directory in each hierarchy (v2: one entry).
    pub dirs: Vec<PathBuf>,
    /// cgroup version (1 or 2).
    pub version: u8,
    /// Controllers whose limits were applied.
    pub applied: BTreeSet<Controller>,
    /// The directory whose `freezer.state` / `cgroup.freeze` pauses the group.
    pub freezer: Option<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|err| ComputeError::io("writing", path, err))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

impl Cgroups {
    /// Finds the cgroup hierarchies of this process.
    pub fn detect() -> Cgroups {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Cgroups::from_proc(&mountinfo, &membership, |p| p.is_dir())
    }

    /// [`Cgroups::detect`] from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn from_proc(mountinfo: &str, membership: &str, exists: impl Fn(&Path) -> bool) -> Cgroups {
        let mut v1 = BTreeMap::new();
        let mut v2: Option<(PathBuf, PathBuf)> = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let (root, mount_point) = (left[3], left[4]);
            match right[0] {
                "cgroup" => {
                    let options: Vec<&str> = right[2].split(',').collect();
                    for controller in Controller::ALL {
                        if options.contains(&controller.name()) {
                            let own = membership.lines().find_map(|m| {
                                let mut parts = m.splitn(3, ':');
                                let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                                names.split(',').any(|n| n == controller.name()).then(|| path.to_string())
                            });
                            if let Some(own) = own {
                                let dir = join_cgroup(mount_point, root, &own);
                                if exists(&dir) {
                                    v1.insert(controller, dir);
                                }
                            }
                        }
                    }
                }
                "cgroup2" => {
                    let own = membership.lines().find_map(|m| m.strip_prefix("0::").map(str::to_string));
                    if let Some(own) = own {
                        v2 = Some((join_cgroup(mount_point, root, &own), PathBuf::from(mount_point)));
                    }
                }
                _ => {}
            }
        }
        // A v1 system also mounts an empty v2 tree (the "unified" hierarchy); prefer v1 then.
        if !v1.is_empty() {
            return Cgroups::V1(v1);
        }
        if let Some((own, _mount)) = v2 {
            let available = read(&own.join("cgroup.controllers")).unwrap_or_default();
            let controllers = Controller::ALL
                .into_iter()
                .filter(|c| *c != Controller::Freezer && available.split_whitespace().any(|n| n == c.name()))
                .collect();
            return Cgroups::V2 { own, controllers };
        }
        Cgroups::None
    }

    /// Controllers available (v2 always has freezing).
    pub fn controllers(&self) -> BTreeSet<Controller> {
        match self {
            Cgroups::V1(map) => map.keys().copied().collect(),
            Cgroups::V2 { controllers, .. } => {
                let mut all = controllers.clone();
                all.insert(Controller::Freezer);
                all
            }
            Cgroups::None => BTreeSet::new(),
        }
    }

    /// `v1`, `v2` or `none`.
    pub fn version_name(&self) -> &'static str {
        match self {
            Cgroups::V1(_) => "v1",
            Cgroups::V2 { .. } => "v2",
            Cgroups::None => "none",
        }
    }

    /// Creates `ganglion/<name>` in every hierarchy and applies `limits` (None: a group for
    /// tracking processes only). Controllers whose files cannot be written are left out of
    /// [`Group::applied`]; creating no directory at all is an error.
    pub fn create(&self, name: &str, limits: Option<&Limits>) -> Result<Group> {
        match self {
            Cgroups::V1(map) => {
                let mut dirs = Vec::new();
                let mut applied = BTreeSet::new();
                let mut freezer = None;
                for (&controller, own) in map {
                    let base = own.join("ganglion");
                    if let Err(err) = make_dir(&base) {
                        tracing::warn!(target: "compute::sandbox", %err, "cannot create a {} cgroup", controller.name());
                        continue;
                    }
                    if controller == Controller::Cpuset {
                        // v1 cpusets start empty; a group without cpus and mems takes no tasks.
                        inherit_cpuset(own, &base);
                    }
                    let dir = base.join(name);
                    if let Err(err) = make_dir(&dir) {
                        tracing::warn!(target: "compute::sandbox", %err, "cannot create a {} cgroup", controller.name());
                        continue;
                    }
                    if controller == Controller::Cpuset {
                        inherit_cpuset(&base, &dir);
                    }
                    if controller == Controller::Freezer {
                        freezer = Some(dir.clone());
                    }
                    if let Some(limits) = limits
                        && apply_v1(controller, &dir, limits).is_ok() {
                            applied.insert(controller);
                        }
                    dirs.push(dir);
                }
                if dirs.is_empty() {
                    return Err(ComputeError::Sandbox("no cgroup v1 hierarchy is writable".into()));
                }
                Ok(Group { dirs, version: 1, applied, freezer })
            }
            Cgroups::V2 { own, controllers } => {
                let base = own.join("ganglion");
                make_dir(&base)?;
                let wanted: Vec<String> = controllers.iter().map(|c| format!("+{}", c.name())).collect();
                // Enabling controllers for children fails when the miner's own group has
                // processes and is not the root (cgroup v2's no-internal-process rule).
                let _ = write(&own.join("cgroup.subtree_control"), &wanted.join(" "));
                let _ = write(&base.join("cgroup.subtree_control"), &wanted.join(" "));
                let dir = base.join(name);
                make_dir(&dir)?;
                let mut applied = BTreeSet::new();
                if let Some(limits) = limits {
                    for &controller in controllers {
                        if apply_v2(controller, &dir, limits).is_ok() {
                            applied.insert(controller);
                        }
                    }
                }
                let freezer = dir.join("cgroup.freeze").exists().then(|| dir.clone());
                if freezer.is_some() {
                    applied.insert(Controller::Freezer);
                }
                Ok(Group { dirs: vec![dir], version: 2, applied, freezer })
            }
            Cgroups::None => Err(ComputeError::Sandbox("no cgroup filesystem".into())),
        }
    }
}

fn join_cgroup(mount_point: &str, root: &str, own: &str) -> PathBuf {
    let relative = own.strip_prefix(root).unwrap_or(own).trim_start_matches('/');
    if relative.is_empty() { PathBuf::from(mount_point) } else { Path::new(mount_point).join(relative) }
}

fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(ComputeError::io("creating cgroup", dir, err)),
    }
}

fn inherit_cpuset(parent: &Path, child: &Path) {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = read(&child.join(file)).unwrap_or_default();
        if current.is_empty()
            && let Some(value) = read(&parent.join(file)) {
                let _ = write(&child.join(file), &value);
            }
    }
}

fn apply_v1(controller: Controller, dir: &Path, limits: &Limits) -> Result<()> {
    match controller {
        Controller::Cpu => {
            write(&dir.join("cpu.cfs_period_us"), "100000")?;
            write(&dir.join("cpu.cfs_quota_us"), &(u64::from(limits.cpus.max(1)) * 100_000).to_string())
        }
        Controller::Cpuset => match &limits.cpu_list {
            Some(list) => write(&dir.join("cpuset.cpus"), list),
            None => Err(ComputeError::Sandbox("no cpu list".into())),
        },
        Controller::Memory => {
            write(&dir.join("memory.limit_in_bytes"), &limits.memory_bytes.to_string())?;
            let swap = dir.join("memory.memsw.limit_in_bytes");
            if swap.exists() {
                // RAM + swap = RAM: the sandbox cannot swap its way past the limit.
                write(&swap, &limits.memory_bytes.to_string())?;
            }
            Ok(())
        }
        Controller::Pids => write(&dir.join("pids.max"), &limits.pids_max.to_string()),
        Controller::Freezer => Ok(()),
    }
}

fn apply_v2(controller: Controller, dir: &Path, limits: &Limits) -> Result<()> {
    match controller {
        Controller::Cpu => write(&dir.join("cpu.max"), &format!("{} 100000", u64::from(limits.cpus.max(1)) * 100_000)),
        Controller::Cpuset => match &limits.cpu_list {
            Some(list) => write(&dir.join("cpuset.cpus"), list),
            None => Err(ComputeError::Sandbox("no cpu list".into())),
        },
        Controller::Memory => {
            write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
            let _ = write(&dir.join("memory.swap.max"), "0");
            Ok(())
        }
        Controller::Pids => write(&dir.join("pids.max"), &limits.pids_max.to_string()),
        Controller::Freezer => Ok(()),
    }
}

impl Group {
    /// The `cgroup.procs` files a process writes its pid to in order to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Pids in the group (from the first hierarchy that answers).
    pub fn pids(&self) -> Vec<i32> {
        for dir in &self.dirs {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }

    /// Freezes (true) or thaws (false) every process. Returns false when there is no freezer.
    pub fn freeze(&self, frozen: bool) -> Result<bool> {
        let Some(dir) = &self.freezer else { return Ok(false) };
        if self.version == 2 {
            write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        } else {
            write(&dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })?;
        }
        Ok(true)
    }

    /// SIGKILLs every process until the group is empty (bounded by `timeout`).
    pub fn kill_all(&self, timeout: Duration) -> bool {
        // Frozen tasks do not die until thawed.
        let _ = self.freeze(false);
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return true;
            }
            for pid in pids {
                super::process::kill(pid);
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the group's directories (after [`Group::kill_all`]), and the shared `ganglion`
    /// parent when no other allocation uses it, so that nothing is left below the miner's
    /// own group.
    pub fn remove(&self) {
        for dir in &self.dirs {
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
                    // EBUSY while the last killed tasks are being reaped.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            if let Some(parent) = dir.parent().filter(|p| p.file_name().is_some_and(|n| n == "ganglion")) {
                // Fails (harmlessly) while sibling allocations exist.
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// A short description of what is enforced, for reports.
    pub fn describe(&self, controller: Controller) -> Option<String> {
        if !self.applied.contains(&controller) {
            return None;
        }
        let v = self.version;
        Some(match (controller, v) {
            (Controller::Cpu, 1) => "cgroup v1 cpu.cfs_quota_us".into(),
            (Controller::Cpu, _) => "cgroup v2 cpu.max".into(),
            (Controller::Cpuset, v) => format!("cgroup v{v} cpuset.cpus"),
            (Controller::Memory, 1) => "cgroup v1 memory.limit_in_bytes (+ memsw)".into(),
            (Controller::Memory, _) => "cgroup v2 memory.max (swap 0)".into(),
            (Controller::Pids, v) => format!("cgroup v{v} pids.max"),
            (Controller::Freezer, 1) => "cgroup v1 freezer".into(),
            (Controller::Freezer, _) => "cgroup v2 cgroup.freeze".into(),
        })
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
pub fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim().to_string();
    let cpus = parse_cpu_list(&list);
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        (0..n).collect()
    } else {
        cpus
    }
}

/// Parses `0-3,8,10-11`.
pub fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
                    && b >= a && b - a < 65_536 {
                        out.extend(a..=b);
                    }
            }
            None => {
                if let Ok(n) = part.parse() {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Formats CPUs as a comma list (`0,1,3`).
pub fn format_cpu_list(cpus: &[u32]) -> String {
    cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
30 22 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP_V1: &str = "4:memory:/process_api/abc\n3:pids:/\n1:cpu:/\n0::/\n";

    #[test]
    fn finds_v1_hierarchies_below_the_own_group() {
        let found = Cgroups::from_proc(MOUNTINFO_V1, CGROUP_V1, |_| true);
        let Cgroups::V1(map) = found else { panic!("expected v1: {found:?}") };
        assert_eq!(map[&Controller::Memory], PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(map[&Controller::Cpu], PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn finds_v2_and_nothing() {
        let mountinfo = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let found = Cgroups::from_proc(mountinfo, "0::/user.slice/miner.service\n", |_| true);
        match found {
            Cgroups::V2 { own, .. } => assert_eq!(own, PathBuf::from("/sys/fs/cgroup/user.slice/miner.service")),
            other => panic!("{other:?}"),
        }
        assert_eq!(Cgroups::from_proc("", "", |_| true), Cgroups::None);
        // A namespaced mount root is stripped from the membership path.
        let ns = "40 30 0:27 /outer /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let Cgroups::V1(map) = Cgroups::from_proc(ns, "1:cpu:/outer/inner\n", |_| true) else { panic!() };
        assert_eq!(map[&Controller::Cpu], PathBuf::from("/sys/fs/cgroup/cpu/inner"));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8, 10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("garbage,5"), vec![5]);
        assert_eq!(format_cpu_list(&[0, 2]), "0,2");
        assert!(!allowed_cpus().is_empty());
    }
}
