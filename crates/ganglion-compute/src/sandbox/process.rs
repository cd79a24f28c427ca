//! Processes by pid: signals, liveness with pid-reuse protection, pid-namespace members.

use rustix::process::{Pid, Signal, kill_process};

/// A process remembered by pid and start time, so that a recycled pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    /// The pid (in the miner's pid namespace).
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies the running process `pid`.
    pub fn of(pid: i32) -> Option<ProcessId> {
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// Whether this exact process is still running (not a zombie, not a recycled pid).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && !is_zombie(self.pid)
    }
}

/// Start time of `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').map(|i| stat[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn signal(pid: i32, signal: Signal) {
    if pid <= 1 {
        return;
    }
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, signal);
    }
}

/// SIGKILL.
pub fn kill(pid: i32) {
    signal(pid, Signal::KILL);
}

/// SIGTERM.
pub fn terminate(pid: i32) {
    signal(pid, Signal::TERM);
}

/// SIGSTOP or SIGCONT.
pub fn stop(pid: i32, stopped: bool) {
    signal(pid, if stopped { Signal::STOP } else { Signal::CONT });
}

/// Every process in the pid namespace of `member` (found through `/proc/*/ns/pid`), for
/// machines without cgroups.
pub fn pid_namespace_members(member: i32) -> Vec<i32> {
    let Ok(target) = std::fs::read_link(format!("/proc/{member}/ns/pid")) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns == target))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_live_processes_and_rejects_recycled_ids() {
        let me = std::process::id() as i32;
        let id = ProcessId::of(me).unwrap_or_else(|| panic!("own process"));
        assert!(id.alive());
        assert!(!ProcessId { start_time: id.start_time + 1, ..id }.alive());
        assert!(ProcessId::of(i32::MAX).is_none());
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap_or_else(|e| panic!("{e}"));
        let child_id = ProcessId::of(child.id() as i32).unwrap_or_else(|| panic!("child"));
        assert!(child_id.alive());
        kill(child.id() as i32);
        let _ = child.wait();
        assert!(!child_id.alive());
        assert!(pid_namespace_members(me).contains(&me));
    }
}
