//! Child processes of `ganglion localnet`: each is this same binary with a subcommand, its
//! output in `<data-dir>/logs/<name>.log`. A child that dies is reported with the end of its
//! log; on shutdown every child gets SIGTERM, then SIGKILL after a grace period.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How long a child may take to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(5);

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
        let log = self.log_path(name);
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new(&self.exe)
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

    /// SIGTERM to everyone (newest first, so the chain goes last), then SIGKILL stragglers.
    pub(crate) async fn shutdown(mut self) {
        for managed in self.children.iter().rev() {
            if let Some(pid) = managed.child.id() {
                terminate(pid);
            }
        }
        for managed in self.children.iter_mut().rev() {
            if tokio::time::timeout(GRACE, managed.child.wait()).await.is_err() {
                let _ = managed.child.kill().await;
            }
        }
        self.children.clear();
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
