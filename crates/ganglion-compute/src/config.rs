//! The compute node's configuration: one TOML file for both roles, the runtime's shared
//! sections (`netuid`, `[neuron]`, `[axon]`, `[metrics]`) and the compute sections
//! (`[miner]`, `[validator]`). Unknown keys, wrong types and durations without a valid unit
//! are errors naming the key. [`load`] lays command-line flags and environment variables
//! (an [`Overrides`] table, keys as below) over the file, with the runtime's one rule
//! ([`ganglion_neuron::config::load`]); durations are written with units (`"30s"`,
//! `"500ms"`, `"15m"`).
//!
//! ```toml
//! netuid = 27
//! [neuron]
//! data_dir = "/var/lib/ganglion/compute"   # state, status.json, default records store
//! epoch_length = 100                       # blocks between weight settings (validator)
//! sync_interval = "12s"                    # metagraph refresh (miner's caller table)
//! [axon]                                   # miner
//! port = 8091
//! external_ip = "203.0.113.7"
//! [metrics]                                # validator: /status and /metrics
//! port = 9100
//!
//! [miner]
//! challenge_timeout = "30s"
//! specs_refresh = "15m"
//! [miner.solver]
//! threads = 0
//! [miner.sandbox.ssh]
//! port = 4444
//!
//! [validator]
//! difficulty_min = 6
//! difficulty_max = 12
//! challenge_timeout = "30s"
//! challenges_per_round = 8                 # in flight per miner, one deadline
//! challenges_max_per_round = 64            # solved ones are replaced up to this many
//! block_poll = "1s"
//! [validator.scoring.weights]
//! success = 1.0
//! difficulty = 1.0
//! time = 0.5
//! failure = 0.5
//! allocation = 0.4
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use ganglion_neuron::config::{AxonConfig, ConfigError, MetricsConfig, NeuronConfig, Overrides};
use serde::{Deserialize, Serialize};

use crate::access::AccessConfig;
use crate::error::{ComputeError, Result};
use crate::hashcat::HashcatConfig;
use crate::pow::{self, AdaptRule};
use crate::sandbox::SandboxConfig;
use crate::scoring::{ScoringConfig, Weights};
use crate::solver::SolverConfig;

/// Default of `validator.challenges_per_round` (see [`crate::scoring`] for the measurement).
pub const DEFAULT_CHALLENGES_PER_ROUND: u32 = 8;

/// Most challenges a validator sends one miner per round (`validator.challenges_per_round`).
pub const MAX_CHALLENGES_PER_ROUND: u32 = 16;

/// Default of `validator.challenges_max_per_round`: how many challenges one miner may solve
/// in a round (each solved one is replaced by a fresh one while the deadline allows).
pub const DEFAULT_CHALLENGES_MAX_PER_ROUND: u32 = 64;

/// Largest `validator.challenges_max_per_round`.
pub const MAX_CHALLENGES_MAX_PER_ROUND: u32 = 256;

/// Default of `miner.max_challenges_per_caller`: a validator's challenges in flight
/// ([`MAX_CHALLENGES_PER_ROUND`]) are admitted.
pub const DEFAULT_MAX_CHALLENGES_PER_CALLER: usize = MAX_CHALLENGES_PER_ROUND as usize;

/// The whole file (and the merged flags): what both nodes are built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// `--netuid` (default 27).
    pub netuid: u16,
    /// `[neuron]`: `data_dir` (`--data-dir`, default `~/.ganglion/compute`), `epoch_length`
    /// (`--neuron.epoch_length`), `sync_interval` (how often the metagraph is refreshed),
    /// `version_key` (weights; default: this build's).
    pub neuron: NeuronConfig,
    /// `[axon]` (miner): `--axon.ip`, `--axon.port`, `--axon.external_ip`,
    /// `--axon.external_port`, `serve` (`--no-serve-axon`).
    pub axon: AxonConfig,
    /// `[metrics]` (validator): `--metrics.ip` (key `host`), `--metrics.port`.
    pub metrics: MetricsConfig,
    /// `[miner]`.
    pub miner: MinerConfig,
    /// `[validator]`.
    pub validator: ValidatorConfig,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            netuid: 27,
            neuron: NeuronConfig::default(),
            axon: AxonConfig::default(),
            metrics: MetricsConfig::default(),
            miner: MinerConfig::default(),
            validator: ValidatorConfig::default(),
        }
    }
}

/// Which solver the miner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The built-in solver, even when `[miner.hashcat]` is set.
    Builtin,
    /// hashcat (with `[miner.hashcat]`'s settings or its defaults).
    Hashcat,
}

/// `[miner]`: the miner's own settings (flags in `ganglion miner compute --help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerConfig {
    /// `--miner.backend`: unset means hashcat exactly when `[miner.hashcat]` is present.
    pub backend: Option<Backend>,
    /// `[miner.solver]`: the built-in solver (`--miner.threads`, `--miner.kernel`,
    /// `--miner.max_hash_rate`).
    pub solver: SolverConfig,
    /// `[miner.hashcat]`: hashcat settings (`--miner.hashcat.*`).
    pub hashcat: Option<HashcatConfig>,
    /// `[miner.sandbox]`: the allocation sandbox (`--sandbox.*`, `--ssh.*`).
    pub sandbox: SandboxConfig,
    /// `[miner.access]`: who may call (`--blacklist.*`, `--whitelist.*`, `--miner.min_stake`,
    /// `--miner.allow_no_permit`).
    pub access: AccessConfig,
    /// `--miner.challenge.timeout`: longest the miner works on one challenge (the original's 30 s).
    #[serde(with = "humantime_serde")]
    pub challenge_timeout: Duration,
    /// Most challenges in flight at once (default 128: eight validators' full rounds).
    pub max_concurrent_challenges: usize,
    /// Most challenges in flight per caller (default [`DEFAULT_MAX_CHALLENGES_PER_CALLER`],
    /// the most a validator sends per round; a lower limit refuses part of a round, and the
    /// refused challenges count as failures).
    pub max_challenges_per_caller: usize,
    /// `--specs.refresh`: how often the specs are measured again (at least a minute).
    #[serde(with = "humantime_serde")]
    pub specs_refresh: Duration,
    /// `--specs.sample_mib`: size of the RAM and disk speed tests, MiB.
    pub specs_sample_mib: u64,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            backend: None,
            solver: SolverConfig::default(),
            hashcat: None,
            sandbox: SandboxConfig::default(),
            access: AccessConfig { require_registered: true, require_validator_permit: true, ..AccessConfig::default() },
            challenge_timeout: Duration::from_secs(30),
            max_concurrent_challenges: 128,
            max_challenges_per_caller: DEFAULT_MAX_CHALLENGES_PER_CALLER,
            specs_refresh: Duration::from_secs(900),
            specs_sample_mib: 64,
        }
    }
}

impl MinerConfig {
    /// The hashcat settings when hashcat solves (see [`MinerConfig::backend`]).
    pub fn hashcat(&self) -> Option<HashcatConfig> {
        match self.backend {
            Some(Backend::Builtin) => None,
            Some(Backend::Hashcat) => Some(self.hashcat.clone().unwrap_or_default()),
            None => self.hashcat.clone(),
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        ganglion_neuron::config::check_duration("miner.challenge_timeout", self.challenge_timeout, Duration::from_millis(1), Duration::from_secs(600))
            .map_err(config_error)?;
        if self.max_concurrent_challenges == 0 || self.max_challenges_per_caller == 0 {
            return Err(ComputeError::Config("challenge concurrency limits must be at least 1".into()));
        }
        if let Some(hashcat) = self.hashcat() {
            hashcat.validate()?;
        }
        self.access.policy_config()?;
        Ok(())
    }
}

/// `[validator]`: the validator's own settings (flags in `ganglion validator compute --help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// `--database.url`: the records store (default `sqlite:<data_dir>/records.db`).
    pub records_url: Option<String>,
    /// `--validator.difficulty.min`.
    pub difficulty_min: u8,
    /// `--validator.difficulty.max`.
    pub difficulty_max: u8,
    /// `--validator.difficulty.rule`: work (default), a or b.
    pub adapt_rule: AdaptRule,
    /// `--validator.challenge.timeout`: time a miner has per challenge (the original's 30 s).
    #[serde(with = "humantime_serde")]
    pub challenge_timeout: Duration,
    /// `--validator.challenge.count`: challenges each miner has in flight during a round,
    /// all with the round's one deadline (1 to [`MAX_CHALLENGES_PER_ROUND`]; default 8):
    /// they go out together, and each one solved is replaced by a fresh one at the same
    /// difficulty while the deadline allows, so a miner always has work until the deadline,
    /// as a machine split across hotkeys does (see [`crate::scoring`]).
    pub challenges_per_round: u32,
    /// `--validator.challenge.max`: most challenges one miner gets in a round, replacements
    /// included (`challenges_per_round` to [`MAX_CHALLENGES_MAX_PER_ROUND`]; default 64).
    pub challenges_max_per_round: u32,
    /// `--validator.round.blocks.min`.
    pub round_blocks_min: u64,
    /// `--validator.round.blocks.max`.
    pub round_blocks_max: u64,
    /// `[validator.scoring]`: version and weights (`--validator.scoring.*`).
    pub scoring: ScoringConfig,
    /// Count only the best uid of each IP (`--validator.allow_shared_ip` turns it off).
    pub one_uid_per_ip: bool,
    /// `--validator.stake_threshold`: neurons with a permit, at least this stake (TAO) and
    /// dividends or validator trust are validators and score zero.
    pub validator_stake_tao: f64,
    /// `--validator.specs.every`: fetch specs every this many rounds (and on the first).
    pub specs_every_rounds: u32,
    /// `[validator.access]`: which miners to query (hotkey/coldkey lists).
    pub access: AccessConfig,
    /// `--validator.challenge.batch.size`: most miners queried at once.
    pub batch_size: usize,
    /// `--validator.block_poll`: how often the loop looks at the chain (syncs the metagraph
    /// and decides whether a round or weights are due).
    #[serde(with = "humantime_serde")]
    pub block_poll: Duration,
    /// Challenge nobody until this validator holds a validator permit (`false`:
    /// `--validator.without_permit`): miners refuse callers without one by default, and those
    /// refusals would be stored as the miners' failures.
    pub wait_for_permit: bool,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            records_url: None,
            difficulty_min: pow::DEFAULT_DIFFICULTY_RANGE.0,
            difficulty_max: pow::DEFAULT_DIFFICULTY_RANGE.1,
            adapt_rule: AdaptRule::Work,
            challenge_timeout: Duration::from_secs(30),
            challenges_per_round: DEFAULT_CHALLENGES_PER_ROUND,
            challenges_max_per_round: DEFAULT_CHALLENGES_MAX_PER_ROUND,
            round_blocks_min: 50,
            round_blocks_max: 80,
            scoring: ScoringConfig::default(),
            one_uid_per_ip: true,
            validator_stake_tao: 1024.0,
            specs_every_rounds: 10,
            access: AccessConfig::default(),
            batch_size: 256,
            block_poll: Duration::from_secs(1),
            wait_for_permit: true,
        }
    }
}

impl ValidatorConfig {
    /// Checks the ranges and derives the dependent settings: rounds fit in `epoch_length`
    /// blocks (at least one round per epoch), and the score's time and difficulty terms use
    /// this validator's timeout and range.
    pub fn validate(&mut self, epoch_length: u64) -> Result<()> {
        let (min, max) = (self.difficulty_min, self.difficulty_max);
        if !(pow::MIN_DIFFICULTY..=pow::MAX_DIFFICULTY).contains(&min) || !(pow::MIN_DIFFICULTY..=pow::MAX_DIFFICULTY).contains(&max) || min > max {
            return Err(ComputeError::Config(format!("the difficulty range must lie within 1..=12 with min ≤ max, not {min}..={max}")));
        }
        ganglion_neuron::config::check_duration("validator.challenge_timeout", self.challenge_timeout, Duration::from_millis(1), Duration::from_secs(600))
            .map_err(config_error)?;
        ganglion_neuron::config::check_duration("validator.block_poll", self.block_poll, Duration::from_millis(10), Duration::from_secs(600)).map_err(config_error)?;
        if self.round_blocks_min == 0 || self.round_blocks_min > self.round_blocks_max {
            return Err(ComputeError::Config("round blocks: need 1 ≤ min ≤ max".into()));
        }
        if !(1..=MAX_CHALLENGES_PER_ROUND).contains(&self.challenges_per_round) {
            return Err(ComputeError::Config(format!(
                "validator.challenges_per_round must be 1 to {MAX_CHALLENGES_PER_ROUND} (miners admit that many per caller by default), not {}",
                self.challenges_per_round
            )));
        }
        if !(self.challenges_per_round..=MAX_CHALLENGES_MAX_PER_ROUND).contains(&self.challenges_max_per_round) {
            return Err(ComputeError::Config(format!(
                "validator.challenges_max_per_round must be validator.challenges_per_round ({}) to {MAX_CHALLENGES_MAX_PER_ROUND}, not {}",
                self.challenges_per_round, self.challenges_max_per_round
            )));
        }
        if self.batch_size == 0 || epoch_length == 0 {
            return Err(ComputeError::Config("batch size and epoch length must be at least 1".into()));
        }
        // At least one round per epoch, so that every weight setting reflects fresh
        // challenges (with a short local epoch the default 50–80 blocks would not).
        if self.round_blocks_max > epoch_length {
            self.round_blocks_max = epoch_length;
            self.round_blocks_min = self.round_blocks_min.min(self.round_blocks_max);
            tracing::info!(target: "compute::validator", min = self.round_blocks_min, max = self.round_blocks_max, "round spacing shortened to fit the epoch");
        }
        self.scoring.effective_weights().validate().map_err(ComputeError::Config)?;
        self.access.policy_config()?;
        self.scoring.timeout_s = self.challenge_timeout.as_secs_f64();
        self.scoring.min_difficulty = min;
        self.scoring.max_difficulty = max;
        Ok(())
    }
}

fn config_error(err: ConfigError) -> ComputeError {
    ComputeError::Config(err.to_string())
}

impl ComputeConfig {
    /// The data directory (`neuron.data_dir`, default `~/.ganglion/compute`).
    pub fn data_dir(&self) -> PathBuf {
        self.neuron.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// Checks the shared sections.
    pub fn validate(&self) -> Result<()> {
        self.neuron.validate().map_err(config_error)
    }
}

/// `~/.ganglion/compute`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".ganglion").join("compute")
}

/// The file (if any) with `overrides` (flags, environment) laid over it.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<ComputeConfig> {
    ganglion_neuron::config::load(file, overrides).map_err(config_error)
}

/// Parses `success,difficulty,time,failure,allocation` (`--validator.scoring.weights`; for
/// clap's `value_parser`).
pub fn parse_weights(text: &str) -> std::result::Result<Weights, String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("--validator.scoring.weights: {e}"))?;
    let [success, difficulty, time, failure, allocation] = values[..] else {
        return Err("--validator.scoring.weights takes five numbers: success,difficulty,time,failure,allocation".into());
    };
    Ok(Weights { success, difficulty, time, failure, allocation })
}

/// Sets `key` (a `[…scoring.weights]` table) to `weights` in `overrides`.
pub fn set_weights(overrides: &mut Overrides, key: &str, weights: Option<Weights>) {
    if let Some(w) = weights {
        for (name, value) in [("success", w.success), ("difficulty", w.difficulty), ("time", w.time), ("failure", w.failure), ("allocation", w.allocation)] {
            overrides.set(&format!("{key}.{name}"), Some(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<ComputeConfig>) -> String {
        match result {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("compute.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn parses_sections_and_refuses_unknown_keys_and_bad_units() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write(
            dir.path(),
            "netuid = 5\n[axon]\nport = 9000\n[miner]\nchallenge_timeout = \"20s\"\n[miner.solver]\nthreads = 1\nmax_hash_rate = 1000\n[miner.sandbox.ssh]\nport = 4500\n\
             [validator]\ndifficulty_min = 4\nblock_poll = \"250ms\"\n[validator.scoring]\nversion = \"b\"\n",
        );
        let config = load(Some(&path), &Overrides::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.netuid, config.axon.port, config.miner.solver.threads, config.miner.sandbox.ssh.port), (5, 9000, 1, 4500));
        assert_eq!(config.miner.challenge_timeout, Duration::from_secs(20));
        assert_eq!(config.miner.specs_refresh, Duration::from_secs(900), "unset keys keep their defaults");
        assert_eq!((config.validator.difficulty_min, config.validator.difficulty_max), (4, 12));
        assert_eq!(config.validator.block_poll, Duration::from_millis(250));
        assert_eq!(config.validator.scoring.version, crate::scoring::ScoringVersion::B);

        // Flags win over the file; an unset flag leaves the file's value.
        let mut over = Overrides::new();
        over.set("validator.difficulty_max", Some(8i64)).set::<i64>("axon.port", None);
        over.duration("validator.challenge_timeout", Some(Duration::from_millis(1500)));
        set_weights(&mut over, "validator.scoring.weights", Some(parse_weights("1,1,0.3,0.4,0.2").unwrap_or_else(|e| panic!("{e}"))));
        let config = load(Some(&path), &over).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.validator.difficulty_min, config.validator.difficulty_max, config.axon.port), (4, 8, 9000));
        assert_eq!(config.validator.challenge_timeout, Duration::from_millis(1500));
        assert_eq!(config.validator.scoring.weights.map(|w| w.time), Some(0.3));

        // Unknown keys and durations without a valid unit name the key.
        let err = refused(load(Some(&write(dir.path(), "[miner]\nnot_a_key = 1\n")), &Overrides::new()));
        assert!(err.contains("not_a_key") && err.contains("compute.toml"), "{err}");
        let err = refused(load(Some(&write(dir.path(), "[validator]\nchallenge_timeout_s = 30\n")), &Overrides::new()));
        assert!(err.contains("challenge_timeout_s"), "the old `_s` keys are gone: {err}");
        let err = refused(load(Some(&write(dir.path(), "[validator]\nchallenge_timeout = \"30 parsecs\"\n")), &Overrides::new()));
        assert!(err.contains("challenge_timeout") || err.contains("parsecs"), "{err}");
        let err = refused(load(Some(&write(dir.path(), "[axon]\nport = \"x\"\n")), &Overrides::new()));
        assert!(err.contains("port"), "{err}");
        let mut bad = Overrides::new();
        bad.set("miner.specs_refresh", Some("soon"));
        let err = refused(load(None, &bad));
        assert!(err.contains("flags and environment") && err.contains("specs_refresh"), "{err}");
        assert!(load(Some(Path::new("/nonexistent/compute.toml")), &Overrides::new()).is_err());
        assert!(parse_weights("1,2,3").is_err() && parse_weights("1,2,3,4,x").is_err());
    }

    #[test]
    fn the_backend_decides_whether_hashcat_solves() {
        let with_table = MinerConfig { hashcat: Some(HashcatConfig::default()), ..MinerConfig::default() };
        assert!(with_table.hashcat().is_some());
        assert!(MinerConfig { backend: Some(Backend::Builtin), ..with_table }.hashcat().is_none());
        assert!(MinerConfig::default().hashcat().is_none());
        assert!(MinerConfig { backend: Some(Backend::Hashcat), ..MinerConfig::default() }.hashcat().is_some());
    }
}
