//! Atomic persistence of a node's state (a validator's scores): JSON written to a temporary
//! file, fsynced and renamed over the old one, so that `kill -9` at any moment leaves either
//! the previous or the new state, never a torn one. Each file carries the netuid it belongs
//! to, so that a data directory reused for another subnet does not leak scores across.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{action} {path}: {reason}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a state of this kind.
    #[error("{path} is not a valid state file ({reason}); move it away to start from empty scores")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// serde's sentence.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    netuid: u16,
    saved_at_ms: u64,
    state: T,
}

/// A JSON state file of type `T` for one subnet.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    netuid: u16,
}

/// Largest state file read back (a corrupt or hostile file cannot exhaust memory).
const MAX_STATE_BYTES: u64 = 256 << 20;

impl StateFile {
    /// The file at `path` for subnet `netuid`.
    pub fn new(path: impl Into<PathBuf>, netuid: u16) -> StateFile {
        StateFile { path: path.into(), netuid }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; `None` when there is none (or it belongs to another netuid, which
    /// is logged).
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        let bytes = match ganglion_core::fsutil::read_bounded(&self.path, MAX_STATE_BYTES) {
            Ok(bytes) => bytes,
            Err(ganglion_core::CoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::Io { action: "reading", path: self.path.clone(), reason: e.to_string() }),
        };
        let envelope: Envelope<T> = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
        if envelope.netuid != self.netuid {
            tracing::warn!(target: "ganglion::neuron", path = %self.path.display(), saved = envelope.netuid, netuid = self.netuid, "the saved state belongs to another subnet; starting empty");
            return Ok(None);
        }
        Ok(Some(envelope.state))
    }

    /// Writes `state` atomically (write, fsync, rename).
    pub fn save<T: Serialize>(&self, state: &T) -> Result<(), StateError> {
        let envelope = Envelope { netuid: self.netuid, saved_at_ms: ganglion_core::clock::now_ms(), state };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| StateError::Io { action: "encoding", path: self.path.clone(), reason: e.to_string() })?;
        ganglion_core::fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(|e| StateError::Io { action: "writing", path: self.path.clone(), reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_subnets_and_garbage() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = StateFile::new(dir.path().join("scores.json"), 7);
        assert_eq!(file.load::<Vec<u32>>().ok().flatten(), None);
        file.save(&vec![1u32, 2, 3]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.load::<Vec<u32>>().ok().flatten(), Some(vec![1, 2, 3]));
        let other = StateFile::new(dir.path().join("scores.json"), 8);
        assert_eq!(other.load::<Vec<u32>>().ok().flatten(), None);
        std::fs::write(dir.path().join("scores.json"), b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(file.load::<Vec<u32>>(), Err(StateError::Corrupt { .. })));
    }
}
