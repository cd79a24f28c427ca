//! The TOML configuration file: optional `[miner]` and `[validator]` tables with the field
//! names of [`MinerConfig`] and [`ValidatorConfig`] (unknown keys are errors). Command-line
//! flags and environment variables override what the file says.
//!
//! ```toml
//! [miner]
//! netuid = 27
//! axon_port = 8091
//! [miner.solver]
//! threads = 0
//! [miner.sandbox.ssh]
//! port = 4444
//!
//! [validator]
//! netuid = 27
//! difficulty_min = 6
//! difficulty_max = 12
//! [validator.scoring.weights]
//! success = 1.0
//! difficulty = 1.0
//! time = 0.5
//! failure = 0.5
//! allocation = 0.4
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};
use crate::miner::MinerConfig;
use crate::validator::ValidatorConfig;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// `[miner]`.
    pub miner: Option<MinerConfig>,
    /// `[validator]`.
    pub validator: Option<ValidatorConfig>,
}

impl ConfigFile {
    /// Reads and parses a file (at most 1 MiB).
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let bytes = ganglion_core::fsutil::read_bounded(path, 1 << 20)
            .map_err(|err| ComputeError::Config(format!("reading {}: {err}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|_| ComputeError::Config(format!("{} is not UTF-8", path.display())))?;
        ConfigFile::parse(&text).map_err(|err| ComputeError::Config(format!("{}: {err}", path.display())))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
        toml::from_str(text).map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_and_refuses_unknown_keys() {
        let file = ConfigFile::parse(
            "[miner]\nnetuid = 5\naxon_port = 9000\n[miner.solver]\nthreads = 1\nmax_hash_rate = 1000\n[miner.sandbox.ssh]\nport = 4500\n\
             [validator]\ndifficulty_min = 4\n[validator.scoring]\nversion = \"b\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let miner = file.miner.unwrap_or_default();
        assert_eq!((miner.netuid, miner.axon_port, miner.solver.threads, miner.sandbox.ssh.port), (5, 9000, 1, 4500));
        assert_eq!(miner.challenge_timeout_s, 30.0, "unset keys keep their defaults");
        let validator = file.validator.unwrap_or_default();
        assert_eq!((validator.difficulty_min, validator.difficulty_max), (4, 12));
        assert_eq!(validator.scoring.version, crate::scoring::ScoringVersion::B);
        assert!(ConfigFile::parse("[miner]\nnot_a_key = 1\n").is_err());
        assert!(ConfigFile::parse("[miner]\naxon_port = \"x\"\n").is_err());
        assert!(ConfigFile::load(Path::new("/nonexistent/compute.toml")).is_err());
    }
}
