//! Child processes of `ganglion localnet`: each is this same binary with a subcommand, its
//! output in `<data-dir>/logs/<name>.log`. A child that dies is reported with the end of its
//! log; on shutdown every child gets SIGTERM, then SIGKILL after a grace period.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How long a child may take to exit after SIGTERM before it is killed: a validator
/// finishes the step in progress (bounded by its deadlines) and saves its state.
const GRACE: Duration = Duration::from_secs(20);

/// How a child ended when it was asked to stop.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ChildExit {
    pub(crate) name: String,
    /// `clean` (exit status 0 after SIGTERM), `exit N` / `signal` (it failed), `killed`
    /// (still running after the grace period), `already exited`.
    pub(crate) exit: String,
    /// Seconds from SIGTERM to exit.
    pub(crate) seconds: f64,
}

impl ChildExit {
    pub(crate) fn clean(&self) -> bool {
        self.exit == "clean"
    }
}

/// One running child.
#[derive(Debug)]
struct Managed {
    name: String,
    log: PathBuf,
    child: Child,
}

/// The set of children, killed when dropped (even on panic or early return).
#[derive(Debug)]
pub(crate) struct Supervisor {
    exe: PathBuf,
    log_dir: PathBuf,
    children: Vec<Managed>,
}

impl Supervisor {
    pub(crate) fn new(log_dir: &Path) -> anyhow::Result<Supervisor> {
        std::fs::create_dir_all(log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        let exe = std::env::current_exe().context("cannot find the ganglion executable to start children with")?;
        Ok(Supervisor { exe, log_dir: log_dir.to_path_buf(), children: Vec::new() })
    }

    /// The log file of child `name`.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Starts `ganglion <args…>` as child `name`.
    pub(crate) fn spawn(&mut self, name: &str, args: &[String]) -> anyhow::Result<()> {
        let exe = self.exe.clone();
        self.spawn_exe(name, &exe, args)
    }

    /// Starts another executable (`ganglion-redteam`) as child `name`, on the same terms.
    pub(crate) fn spawn_exe(&mut self, name: &str, exe: &Path, args: &[String]) -> anyhow::Result<()> {
        let log = self.log_path(name);
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("opening {}", log.display()))?;
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
            .env("RUST_LOG", std::env::var("GANGLION_LOCALNET_LOG").unwrap_or_else(|_| "info".into()))
            // A dozen processes share this machine's cores: one compute thread each (the
            // engine's barrier-synchronised pool loses badly when oversubscribed).
            .env("RAYON_NUM_THREADS", std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "1".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        tracing::debug!(target: "localnet", %name, ?args, "started");
        self.children.push(Managed { name: name.to_string(), log, child });
        Ok(())
    }

    /// Fails with the child's name and the end of its log if any child has exited.
    pub(crate) fn check(&mut self) -> anyhow::Result<()> {
        for managed in &mut self.children {
            if let Some(status) = managed.child.try_wait().with_context(|| format!("polling {}", managed.name))? {
                bail!(
                    "{} exited ({status}); the end of its log ({}):\n{}",
                    managed.name,
                    managed.log.display(),
                    log_tail(&managed.log, 20)
                );
            }
        }
        Ok(())
    }

    /// SIGTERM to everyone (newest first, so the chain goes last), then SIGKILL stragglers;
    /// returns how each child ended. Every node drains and saves its state on SIGTERM, so
    /// anything but `clean` is a bug worth reporting.
    pub(crate) async fn shutdown(mut self) -> Vec<ChildExit> {
        let started = std::time::Instant::now();
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
                tracing::warn!(target: "localnet", name = %managed.name, %exit, log = %managed.log.display(), "a node did not stop cleanly on SIGTERM");
            }
            exits.push(ChildExit { name: managed.name.clone(), exit, seconds: started.elapsed().as_secs_f64() });
        }
        self.children.clear();
        exits
    }
}

/// The last `lines` lines of a log file (or why it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
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
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
