//! One status schema for every node ([`NodeStatus`]): the same fields for a validator or a
//! miner of any subnet, plus a per-subnet section (`details`) that only that subnet defines.
//! A node publishes it through a [`StatusBoard`], which keeps the current copy for
//! `GET /status` and rewrites `<data_dir>/status.json` atomically. `ganglion localnet`, the
//! hub and scripts read only this schema.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Version of the schema below; bumped on incompatible changes.
pub const STATUS_SCHEMA: u32 = 1;

/// What a node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Queries miners and sets weights.
    #[default]
    Validator,
    /// Serves an axon and does the work.
    Miner,
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Started, no metagraph yet.
    #[default]
    Starting,
    /// The hotkey is not registered on the subnet.
    Unregistered,
    /// Registered; a validator without a validator permit does not query yet.
    WaitingForPermit,
    /// Working.
    Running,
    /// Draining after SIGINT/SIGTERM.
    Stopping,
}

/// The last failure of a miner, with its typed cause.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The cause's stable name (`UNLIKELY_TOKEN`, `timeout`, `refused`, `wrong_answer` …).
    pub cause: String,
    /// A sentence with the specifics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A miner's speed as its subnet measures it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    /// The figure.
    pub value: f64,
    /// Its unit (`tok/s`, `s`).
    pub unit: String,
    /// Context for the figure (e.g. `@d7`: at difficulty 7).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context: String,
}

impl Speed {
    /// `7.7 tok/s`, `0.16 s @d6`: rates with one decimal, durations with two.
    pub fn display(&self) -> String {
        let value = if self.unit == "s" { format!("{:.2}", self.value) } else { format!("{:.1}", self.value) };
        if self.context.is_empty() { format!("{value} {}", self.unit) } else { format!("{value} {} {}", self.unit, self.context) }
    }
}

/// One miner as a validator sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinerStatus {
    /// Uid.
    pub uid: u16,
    /// Hotkey (SS58).
    pub hotkey: String,
    /// The subnet's score.
    pub score: f64,
    /// Share of the weights this validator would set now (sums to 1 over miners).
    pub weight: f64,
    /// Verified (or solved) share of the recent attempts, 0–1; `None` before any.
    pub verified_share: Option<f64>,
    /// The last failure.
    pub last_failure: Option<Failure>,
    /// Speed figure.
    pub speed: Option<Speed>,
    /// Subnet-specific fields.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// A validator's weight setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightsStatus {
    /// The strategy last used (`plain`, `commit-reveal`: picked from the chain's
    /// `commit_reveal_weights_enabled`).
    pub strategy: String,
    /// `version_key` sent.
    pub version_key: u64,
    /// Block of the last accepted submission.
    pub last_set_block: Option<u64>,
    /// Accepted submissions since start.
    pub set_count: u64,
    /// Submissions the chain refused since start.
    pub refused_count: u64,
    /// The chain's answer to the last attempt (`ok` or the error's name and sentence).
    pub last_result: Option<String>,
    /// First block at which the next submission is due.
    pub next_due_block: Option<u64>,
    /// Commit-reveal: commits waiting for their reveal, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_commits: Vec<PendingCommitStatus>,
    /// Commit-reveal: weights revealed since start.
    #[serde(default)]
    pub revealed_count: u64,
    /// Commit-reveal: block of the last reveal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reveal_block: Option<u64>,
}

/// A weight commit waiting for its reveal (commit-reveal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommitStatus {
    /// `0x` hex of the committed hash.
    pub hash: String,
    /// Block the commit was included in (unknown until the chain acknowledged it).
    pub commit_block: Option<u64>,
    /// Epoch index in which the chain accepts the reveal.
    pub reveal_epoch: Option<u64>,
    /// First block of the reveal window.
    pub first_reveal_block: Option<u64>,
    /// Last block of the reveal window.
    pub last_reveal_block: Option<u64>,
    /// Number of uids committed.
    pub uids: usize,
}

/// The status of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// [`STATUS_SCHEMA`].
    pub schema: u32,
    /// The subnet kind (`inference`, `compute`, …).
    pub subnet: String,
    /// Validator or miner.
    pub role: Role,
    /// Subnet id.
    pub netuid: u16,
    /// The node's hotkey (SS58).
    pub hotkey: String,
    /// Its uid, once registered.
    pub uid: Option<u16>,
    /// Where it is in its life.
    pub phase: Phase,
    /// Chain block at the last update.
    pub block: u64,
    /// Validator steps (or miner requests) completed.
    pub steps: u64,
    /// Weight setting (validators).
    pub weights: Option<WeightsStatus>,
    /// Per miner, by uid (validators).
    pub miners: Vec<MinerStatus>,
    /// Subnet-specific section.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// When this was written (Unix ms).
    pub updated_at_ms: u64,
}

impl NodeStatus {
    /// A fresh status for a node.
    pub fn new(subnet: &str, role: Role, netuid: u16, hotkey: String) -> NodeStatus {
        NodeStatus { schema: STATUS_SCHEMA, subnet: subnet.to_string(), role, netuid, hotkey, ..NodeStatus::default() }
    }

    /// The miner row of a uid.
    pub fn miner(&self, uid: u16) -> Option<&MinerStatus> {
        self.miners.iter().find(|m| m.uid == uid)
    }
}

/// The current status of a node: kept for `GET /status`, and written atomically to a file
/// on every [`StatusBoard::publish`].
#[derive(Debug)]
pub struct StatusBoard {
    file: Option<PathBuf>,
    current: RwLock<NodeStatus>,
}

impl StatusBoard {
    /// A board starting from `initial`, writing `file` (e.g. `<data_dir>/status.json`) when given.
    pub fn new(initial: NodeStatus, file: Option<PathBuf>) -> StatusBoard {
        StatusBoard { file, current: RwLock::new(initial) }
    }

    /// The current status.
    pub fn get(&self) -> NodeStatus {
        self.current.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Where the file is written.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Changes the status in memory only (live figures a `GET /status` refreshes); the file
    /// follows at the next [`StatusBoard::update`].
    pub fn update_in_memory(&self, f: impl FnOnce(&mut NodeStatus)) -> NodeStatus {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
        guard.schema = STATUS_SCHEMA;
        guard.updated_at_ms = ganglion_core::clock::now_ms();
        guard.clone()
    }

    /// Changes the status and writes the file (a write failure is logged, never fatal: the
    /// status is a report, not state).
    pub fn update(&self, f: impl FnOnce(&mut NodeStatus)) {
        let snapshot = self.update_in_memory(f);
        let Some(path) = &self.file else { return };
        match serde_json::to_vec_pretty(&snapshot) {
            Ok(bytes) => {
                if let Err(e) = ganglion_core::fsutil::write_atomic(path, &bytes, 0o644) {
                    tracing::warn!(target: "ganglion::neuron", "cannot write {}: {e}", path.display());
                }
            }
            Err(e) => tracing::warn!(target: "ganglion::neuron", "cannot encode the status: {e}"),
        }
    }

    /// Replaces the status.
    pub fn publish(&self, status: NodeStatus) {
        self.update(|s| *s = status);
    }
}

/// Reads a status file written by a [`StatusBoard`].
pub fn read_status_file(path: &Path) -> Option<NodeStatus> {
    let bytes = ganglion_core::fsutil::read_bounded(path, 64 << 20).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_follows_every_update_and_round_trips() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("status.json");
        let board = StatusBoard::new(NodeStatus::new("inference", Role::Validator, 3, "5Hk".into()), Some(path.clone()));
        board.update(|s| {
            s.block = 42;
            s.miners.push(MinerStatus {
                uid: 1,
                hotkey: "5M".into(),
                score: 1.5,
                weight: 1.0,
                verified_share: Some(0.9),
                last_failure: Some(Failure { cause: "UNLIKELY_TOKEN".into(), detail: String::new() }),
                speed: Some(Speed { value: 7.71, unit: "tok/s".into(), context: String::new() }),
                details: serde_json::json!({"models": {"smollm2": 7.7}}),
            });
        });
        let read = read_status_file(&path).unwrap_or_else(|| panic!("no status file"));
        assert_eq!(read, board.get());
        assert_eq!(read.schema, STATUS_SCHEMA);
        assert_eq!(read.miner(1).and_then(|m| m.speed.as_ref()).map(Speed::display).as_deref(), Some("7.7 tok/s"));
        assert!(read.updated_at_ms > 0);
    }
}
