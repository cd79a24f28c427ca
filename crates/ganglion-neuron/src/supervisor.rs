//! Child processes of a multi-node run (`ganglion localnet`, `ganglion-redteam run`): each
//! node is an executable with its flags, its output in `<logs>/<name>.log`. A child that
//! dies is reported with the end of its log; on shutdown every child gets SIGTERM (newest
//! first, so the chain started first stops last), then SIGKILL after a grace period.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long a child may take to exit after SIGTERM before it is killed: a validator
/// finishes the step in progress (bounded by its deadlines) and saves its state.
pub const GRACE: Duration = Duration::from_secs(20);

/// What went wrong supervising children.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A sibling executable is missing.
    #[error("`{name}` is not next to this executable in {} (build both with `cargo build --workspace`, or install them side by side from target/release/)", dir.display())]
    NoSibling {
        /// The executable looked for.
        name: String,
        /// Where.
        dir: PathBuf,
    },
    /// A child exited while the run was going on.
    #[error("{name} exited ({status}); the end of its log ({}):\n{tail}", log.display())]
    Exited {
        /// The child.
        name: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
}

/// The executable `name` next to the running one (`ganglion` and `ganglion-redteam` are
/// built into, and installed from, the same directory; test binaries live one level down,
/// in `target/<profile>/deps`).
pub fn sibling(name: &str) -> Result<PathBuf, SupervisorError> {
    let me = std::env::current_exe().map_err(io("finding the running executable".into()))?;
    let dir = me.parent().unwrap_or(Path::new("."));
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(SupervisorError::NoSibling { name: name.to_string(), dir: dir.to_path_buf() })
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SupervisorError {
    move |source| SupervisorError::Io { what, source }
}

/// How a child ended when it was asked to stop.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChildExit {
    /// The child.
    pub name: String,
    /// `clean` (exit status 0 after SIGTERM), `exit N` / `signal` (it failed), `killed`
    /// (still running after the grace period), `already exited`.
    pub exit: String,
    /// Seconds from SIGTERM to exit.
    pub seconds: f64,
}

impl ChildExit {
    /// Whether it exited with status 0 after SIGTERM.
    pub fn clean(&self) -> bool {
        self.exit == "clean"
    }
}

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
    log_filter_env: String,
    children: Vec<Managed>,
}

impl Supervisor {
    /// A supervisor logging into `log_dir`; children get `RUST_LOG` from the environment
    /// variable `log_filter_env` (default `info`).
    pub fn new(log_dir: &Path, log_filter_env: &str) -> Result<Supervisor, SupervisorError> {
        std::fs::create_dir_all(log_dir).map_err(io(format!("creating {}", log_dir.display())))?;
        Ok(Supervisor { log_dir: log_dir.to_path_buf(), log_filter_env: log_filter_env.to_string(), children: Vec::new() })
    }

    /// The log file of child `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Starts `exe args…` as child `name`.
    pub fn spawn(&mut self, name: &str, exe: &Path, args: &[String]) -> Result<(), SupervisorError> {
        let log = self.log_path(name);
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io(format!("opening {}", log.display())))?;
        let mut command = Command::new(exe);
        // The run's nodes are configured by their flags alone: config files meant for the
        // user's own nodes (GANGLION_*_CONFIG in the environment) must not leak into them.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("GANGLION_") && k.ends_with("_CONFIG")) {
                command.env_remove(key);
            }
        }
        let child = command
            .args(args)
            .env("RUST_LOG", std::env::var(&self.log_filter_env).unwrap_or_else(|_| "info".into()))
            // A dozen processes share this machine's cores: one compute thread each (the
            // engine's barrier-synchronised pool loses badly when oversubscribed).
            .env("RAYON_NUM_THREADS", std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "1".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {name} ({})", exe.display())))?;
        tracing::debug!(target: "ganglion::supervisor", %name, ?args, "started");
        self.children.push(Managed { name: name.to_string(), log, child });
        Ok(())
    }

    /// Fails with the child's name and the end of its log if any child has exited.
    pub fn check(&mut self) -> Result<(), SupervisorError> {
        for managed in &mut self.children {
            if let Some(status) = managed.child.try_wait().map_err(io(format!("polling {}", managed.name)))? {
                return Err(SupervisorError::Exited { name: managed.name.clone(), status, log: managed.log.clone(), tail: log_tail(&managed.log, 20) });
            }
        }
        Ok(())
    }

    /// SIGTERM to everyone (newest first), then SIGKILL stragglers; returns how each child
    /// ended. Every node drains and saves its state on SIGTERM, so anything but `clean` is a
    /// bug worth reporting.
    pub async fn shutdown(mut self) -> Vec<ChildExit> {
        let started = Instant::now();
        let mut already = Vec::new();
        for managed in self.children.iter_mut().rev() {
            if let Ok(Some(_)) = managed.child.try_wait() {
                already.push(managed.name.clone());
            } else if let Some(pid) = managed.child.id() {
                terminate(pid);
            }
        }
        let mut exits = Vec::new();
        for managed in self.children.iter_mut().rev() {
            let exit = if already.contains(&managed.name) {
                "already exited".to_string()
            } else {
                match tokio::time::timeout(GRACE.saturating_sub(started.elapsed()), managed.child.wait()).await {
                    Ok(Ok(status)) if status.success() => "clean".to_string(),
                    Ok(Ok(status)) => status.code().map_or_else(|| "signal".to_string(), |c| format!("exit {c}")),
                    Ok(Err(e)) => format!("unknown ({e})"),
                    Err(_) => {
                        let _ = managed.child.kill().await;
                        "killed".to_string()
                    }
                }
            };
            if exit != "clean" {
                tracing::warn!(target: "ganglion::supervisor", name = %managed.name, %exit, log = %managed.log.display(), "a node did not stop cleanly on SIGTERM");
            }
            exits.push(ChildExit { name: managed.name.clone(), exit, seconds: started.elapsed().as_secs_f64() });
        }
        self.children.clear();
        exits
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_are_logged_checked_and_stopped_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let mut supervisor = Supervisor::new(&dir.path().join("logs"), "GANGLION_TEST_LOG").unwrap();
        let sh = Path::new("/bin/sh");
        // One that exits on its own with a message, one that runs until SIGTERM.
        supervisor.spawn("quitter", sh, &["-c".into(), "echo bye from quitter; exit 3".into()]).unwrap();
        supervisor.spawn("sleeper", sh, &["-c".into(), "trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done".into()]).unwrap();
        let mut exited = None;
        for _ in 0..200 {
            if let Err(e) = supervisor.check() {
                exited = Some(e);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(SupervisorError::Exited { name, status, tail, .. }) = exited else { panic!("the quitter was not noticed: {exited:?}") };
        assert_eq!((name.as_str(), status.code()), ("quitter", Some(3)));
        assert!(tail.contains("bye from quitter"), "{tail}");
        // The sleeper's trap is set once it says "up": a SIGTERM before that kills the shell
        // outright (seen once on a loaded CI machine).
        let sleeper_log = dir.path().join("logs/sleeper.log");
        for _ in 0..500 {
            if std::fs::read_to_string(&sleeper_log).is_ok_and(|l| l.contains("up")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let exits = supervisor.shutdown().await;
        let by_name = |n: &str| exits.iter().find(|e| e.name == n).map(|e| e.exit.clone());
        assert_eq!(by_name("sleeper").as_deref(), Some("clean"), "{exits:?}");
        assert_eq!(by_name("quitter").as_deref(), Some("already exited"), "{exits:?}");
        assert!(log_tail(&dir.path().join("logs/sleeper.log"), 5).contains("up"));
        assert!(log_tail(&dir.path().join("missing.log"), 5).starts_with("(cannot read the log"));
        assert!(matches!(sibling("no-such-ganglion-tool"), Err(SupervisorError::NoSibling { .. })));
    }
}
