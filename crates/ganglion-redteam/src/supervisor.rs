//! The child processes of a red-team run: the `ganglion` binary (chain, validators) and this
//! one (strategies, honest miners), each logging to `<logs>/<name>.log`. A child that dies
//! is reported with the end of its log; at the end every child gets SIGTERM, then SIGKILL
//! after a grace period. (The same rules as `ganglion localnet`'s supervisor, which lives in
//! the binary crate this one must not depend on.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::error::{RedteamError, Result};

/// How long a child may take to exit after SIGTERM.
const GRACE: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Managed {
    name: String,
    log: PathBuf,
    child: Child,
}

/// The set of children, killed when dropped (even on panic or early return).
#[derive(Debug)]
pub struct Supervisor {
    log_dir: PathBuf,
    children: Vec<Managed>,
}

impl Supervisor {
    /// A supervisor logging into `log_dir`.
    pub fn new(log_dir: &Path) -> Result<Supervisor> {
        std::fs::create_dir_all(log_dir).map_err(|e| RedteamError::Io(format!("creating {}", log_dir.display()), e))?;
        Ok(Supervisor { log_dir: log_dir.to_path_buf(), children: Vec::new() })
    }

    /// The log file of child `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Starts `exe args…` as child `name`, with one compute thread (a run shares the
    /// machine's cores among a dozen processes).
    pub fn spawn(&mut self, name: &str, exe: &Path, args: &[String]) -> Result<()> {
        let log = self.log_path(name);
        let out = File::create(&log).map_err(|e| RedteamError::Io(format!("creating {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| RedteamError::Io(format!("opening {}", log.display()), e))?;
        let mut command = Command::new(exe);
        // The run's nodes are configured by their flags alone.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("GANGLION_") && k.ends_with("_CONFIG")) {
                command.env_remove(key);
            }
        }
        let child = command
            .args(args)
            .env("RUST_LOG", std::env::var("GANGLION_REDTEAM_LOG").unwrap_or_else(|_| "info".into()))
            .env("RAYON_NUM_THREADS", std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "1".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RedteamError::Io(format!("starting {name} ({})", exe.display()), e))?;
        tracing::debug!(target: "redteam", %name, ?args, "started");
        self.children.push(Managed { name: name.to_string(), log, child });
        Ok(())
    }

    /// Fails with the child's name and the end of its log if any child has exited.
    pub fn check(&mut self) -> Result<()> {
        for managed in &mut self.children {
            if let Ok(Some(status)) = managed.child.try_wait() {
                return Err(RedteamError::Config(format!(
                    "{} exited ({status}); the end of its log ({}):\n{}",
                    managed.name,
                    managed.log.display(),
                    log_tail(&managed.log, 20)
                )));
            }
        }
        Ok(())
    }

    /// SIGTERM to everyone (newest first), then SIGKILL stragglers; returns the names of
    /// children that did not exit cleanly.
    pub async fn shutdown(mut self) -> Vec<String> {
        let started = std::time::Instant::now();
        for managed in self.children.iter_mut().rev() {
            if let (Ok(None), Some(pid)) = (managed.child.try_wait(), managed.child.id()) {
                terminate(pid);
            }
        }
        let mut unclean = Vec::new();
        for managed in self.children.iter_mut().rev() {
            match tokio::time::timeout(GRACE.saturating_sub(started.elapsed()), managed.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(_) => unclean.push(managed.name.clone()),
                Err(_) => {
                    let _ = managed.child.kill().await;
                    unclean.push(format!("{} (killed)", managed.name));
                }
            }
        }
        self.children.clear();
        unclean
    }
}

/// The last `lines` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read the log: {err})"),
    }
}

/// SIGTERM without `unsafe`: the `kill` utility is on every Unix.
fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// The sibling executable `name` next to the running one (both are built into the same
/// target or install directory).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().map_err(|e| RedteamError::Io("finding the running executable".into(), e))?;
    let dir = me.parent().ok_or_else(|| RedteamError::Config(format!("{} has no directory", me.display())))?;
    // Test binaries live in target/<profile>/deps, the executables one level up.
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(RedteamError::Config(format!("no `{name}` executable next to {}; build it (`cargo build --workspace`)", me.display())))
}
