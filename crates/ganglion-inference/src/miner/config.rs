//! The miner's settings: [`MinerConfig`] (what [`super::start`] takes) and [`MinerFile`],
//! the TOML file and command-line overrides it is resolved from.
//!
//! ```toml
//! netuid = 1
//!
//! [axon]
//! ip = "0.0.0.0"            # where to listen
//! port = 8091
//! external_ip = "203.0.113.7"   # what to publish on chain (default: ip, or 127.0.0.1)
//!
//! [[models]]                # one per model served; the validator's model name
//! name = "smollm2"
//! url = "http://127.0.0.1:8000/v1"   # any OpenAI-compatible server
//! api_key = "secret"
//! max_concurrency = 8
//!
//! [policy]
//! force_validator_permit = true
//! min_stake = 1000.0        # TAO
//! hotkey_blacklist = ["5F…"]
//! hotkey_whitelist = []
//! coldkey_blacklist = []
//! coldkey_whitelist = []
//!
//! [miner]
//! per_caller_concurrency = 8
//! sync_interval_secs = 30
//! upstream_first_byte_timeout_secs = 60
//! upstream_idle_timeout_secs = 60
//! upstream_total_timeout_secs = 600
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::RAO_PER_TAO;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_engine::Engine;
use ganglion_protocol::policy::PolicyConfig;
use serde::Deserialize;

use crate::error::{InferenceError, Result};

/// One upstream: the model it serves and where.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Model name as validators request it (`X-Targon-Model` or the body's `model`).
    pub name: String,
    /// Base URL of an OpenAI-compatible server (with or without `/v1`).
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Requests in flight to this upstream at most (more wait briefly, then get 503).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

fn default_max_concurrency() -> usize {
    8
}

/// Demo and test behaviours of a *dishonest or weak* miner. Never use them for real:
/// they exist so that `ganglion localnet` and the tests can show what the validator catches.
#[derive(Clone)]
pub enum Adversary {
    /// Honest tokens, delivered slowly: each chunk is held until `factor` times the time
    /// the upstream took to produce it (and, with `max_tps`, at most that many chunks per second).
    Slow {
        /// Slow-down factor (≥ 1).
        factor: f64,
        /// Cap on chunks per second.
        max_tps: Option<f64>,
    },
    /// A cheaper answer: asks the upstream for only `fraction` of `max_tokens` and reports
    /// the cut as a natural stop.
    Truncate {
        /// Share of `max_tokens` actually generated.
        fraction: f64,
    },
    /// No model at all: random tokens from the vocabulary, with made-up logprobs.
    RandomTokens {
        /// Source of the vocabulary (its weights are not used).
        vocabulary: Arc<Engine>,
    },
}

impl std::fmt::Debug for Adversary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Adversary::Slow { factor, max_tps } => write!(f, "Slow {{ factor: {factor}, max_tps: {max_tps:?} }}"),
            Adversary::Truncate { fraction } => write!(f, "Truncate {{ fraction: {fraction} }}"),
            Adversary::RandomTokens { .. } => f.write_str("RandomTokens"),
        }
    }
}

/// Everything [`super::start`] needs.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// Subnet.
    pub netuid: u16,
    /// The miner's hotkey: Epistula receiver and axon owner.
    pub hotkey: Keypair,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Address published on chain (default: the listen address, or 127.0.0.1 when listening
    /// on all interfaces).
    pub external_ip: Option<IpAddr>,
    /// Port published on chain (default: the bound port).
    pub external_port: Option<u16>,
    /// Upstream per model.
    pub upstreams: Vec<UpstreamConfig>,
    /// Caller policy (registration, stake, permit, lists).
    pub policy: PolicyConfig,
    /// Requests in flight per caller hotkey.
    pub per_caller_concurrency: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Epistula freshness window.
    pub epistula_max_age: Duration,
    /// Deadline for the upstream's response headers.
    pub upstream_first_byte_timeout: Duration,
    /// Longest gap between two upstream chunks.
    pub upstream_idle_timeout: Duration,
    /// Deadline for a whole upstream response.
    pub upstream_total_timeout: Duration,
    /// How long a request waits for an upstream slot.
    pub queue_timeout: Duration,
    /// How often the metagraph (caller policy, axon) is refreshed.
    pub sync_interval: Duration,
    /// Publish the axon on chain at start and whenever the chain's copy differs.
    pub serve_axon: bool,
    /// Demo/test misbehaviour (see [`Adversary`]).
    pub adversary: Option<Adversary>,
}

impl MinerConfig {
    /// Defaults for everything but the essentials: permit required, 1000 TAO minimum
    /// stake, 8 requests per caller, 1 MiB bodies, 60 s first byte and idle, 10 min total.
    pub fn new(netuid: u16, hotkey: Keypair, listen: SocketAddr, upstreams: Vec<UpstreamConfig>) -> MinerConfig {
        MinerConfig {
            netuid,
            hotkey,
            listen,
            external_ip: None,
            external_port: None,
            upstreams,
            policy: PolicyConfig {
                require_registered: true,
                min_stake_rao: 1_000 * RAO_PER_TAO,
                require_validator_permit: true,
                ..PolicyConfig::default()
            },
            per_caller_concurrency: 8,
            max_request_bytes: 1 << 20,
            epistula_max_age: Duration::from_secs(8),
            upstream_first_byte_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(60),
            upstream_total_timeout: Duration::from_secs(600),
            queue_timeout: Duration::from_secs(10),
            sync_interval: Duration::from_secs(30),
            serve_axon: true,
            adversary: None,
        }
    }
}

/// `[axon]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxonFile {
    /// Listen address.
    pub ip: Option<IpAddr>,
    /// Listen port.
    pub port: Option<u16>,
    /// Published address.
    pub external_ip: Option<IpAddr>,
    /// Published port.
    pub external_port: Option<u16>,
}

/// `[policy]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Require a validator permit (default true).
    pub force_validator_permit: Option<bool>,
    /// Minimum stake in TAO (default 1000).
    pub min_stake: Option<f64>,
    /// Hotkeys (SS58) always refused.
    pub hotkey_blacklist: Option<Vec<String>>,
    /// If non-empty, only these hotkeys.
    pub hotkey_whitelist: Option<Vec<String>>,
    /// Coldkeys whose hotkeys are refused.
    pub coldkey_blacklist: Option<Vec<String>>,
    /// If non-empty, only hotkeys of these coldkeys.
    pub coldkey_whitelist: Option<Vec<String>>,
}

/// `[miner]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerSection {
    /// Requests in flight per caller.
    pub per_caller_concurrency: Option<usize>,
    /// Metagraph refresh period.
    pub sync_interval_secs: Option<f64>,
    /// Upstream header deadline.
    pub upstream_first_byte_timeout_secs: Option<f64>,
    /// Upstream idle deadline.
    pub upstream_idle_timeout_secs: Option<f64>,
    /// Upstream total deadline.
    pub upstream_total_timeout_secs: Option<f64>,
    /// Largest request body in bytes.
    pub max_request_bytes: Option<usize>,
}

/// The miner's TOML file; also the shape of command-line overrides (every field optional,
/// later sources win in [`MinerFile::merge`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerFile {
    /// Subnet.
    pub netuid: Option<u16>,
    /// `[axon]`.
    #[serde(default)]
    pub axon: AxonFile,
    /// `[[models]]`.
    #[serde(default)]
    pub models: Vec<UpstreamConfig>,
    /// `[policy]`.
    #[serde(default)]
    pub policy: PolicyFile,
    /// `[miner]`.
    #[serde(default)]
    pub miner: MinerSection,
}

fn pick<T>(over: Option<T>, base: Option<T>) -> Option<T> {
    over.or(base)
}

fn secs(value: Option<f64>, default: Duration, what: &str) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        Some(v) => Err(InferenceError::Config(format!("{what} must be between 0 and 86400 seconds, got {v}"))),
    }
}

fn keys(list: &Option<Vec<String>>, what: &str) -> Result<HashSet<PublicKey>> {
    list.iter()
        .flatten()
        .map(|s| s.trim().parse::<PublicKey>().map_err(|e| InferenceError::Config(format!("{what}: `{s}` is not an SS58 address: {e}"))))
        .collect()
}

impl MinerFile {
    /// Reads and parses a TOML file.
    pub fn from_path(path: &Path) -> Result<MinerFile> {
        let text = std::fs::read_to_string(path).map_err(|e| InferenceError::ConfigFile { path: path.into(), reason: e.to_string() })?;
        toml::from_str(&text).map_err(|e| InferenceError::ConfigFile { path: path.into(), reason: e.to_string() })
    }

    /// `over` wins field by field; its `[[models]]`, when given, replace the file's.
    pub fn merge(self, over: MinerFile) -> MinerFile {
        MinerFile {
            netuid: pick(over.netuid, self.netuid),
            axon: AxonFile {
                ip: pick(over.axon.ip, self.axon.ip),
                port: pick(over.axon.port, self.axon.port),
                external_ip: pick(over.axon.external_ip, self.axon.external_ip),
                external_port: pick(over.axon.external_port, self.axon.external_port),
            },
            models: if over.models.is_empty() { self.models } else { over.models },
            policy: PolicyFile {
                force_validator_permit: pick(over.policy.force_validator_permit, self.policy.force_validator_permit),
                min_stake: pick(over.policy.min_stake, self.policy.min_stake),
                hotkey_blacklist: pick(over.policy.hotkey_blacklist, self.policy.hotkey_blacklist),
                hotkey_whitelist: pick(over.policy.hotkey_whitelist, self.policy.hotkey_whitelist),
                coldkey_blacklist: pick(over.policy.coldkey_blacklist, self.policy.coldkey_blacklist),
                coldkey_whitelist: pick(over.policy.coldkey_whitelist, self.policy.coldkey_whitelist),
            },
            miner: MinerSection {
                per_caller_concurrency: pick(over.miner.per_caller_concurrency, self.miner.per_caller_concurrency),
                sync_interval_secs: pick(over.miner.sync_interval_secs, self.miner.sync_interval_secs),
                upstream_first_byte_timeout_secs: pick(over.miner.upstream_first_byte_timeout_secs, self.miner.upstream_first_byte_timeout_secs),
                upstream_idle_timeout_secs: pick(over.miner.upstream_idle_timeout_secs, self.miner.upstream_idle_timeout_secs),
                upstream_total_timeout_secs: pick(over.miner.upstream_total_timeout_secs, self.miner.upstream_total_timeout_secs),
                max_request_bytes: pick(over.miner.max_request_bytes, self.miner.max_request_bytes),
            },
        }
    }

    /// The resolved configuration, with defaults for what is unset.
    pub fn into_config(self, hotkey: Keypair) -> Result<MinerConfig> {
        let netuid = self.netuid.ok_or_else(|| InferenceError::Config("no subnet: pass --netuid or set `netuid` in the config file".into()))?;
        let listen = SocketAddr::new(self.axon.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), self.axon.port.unwrap_or(8091));
        let mut config = MinerConfig::new(netuid, hotkey, listen, self.models);
        for upstream in &config.upstreams {
            if upstream.name.trim().is_empty() || !(upstream.url.starts_with("http://") || upstream.url.starts_with("https://")) {
                return Err(InferenceError::Config(format!("model `{}`: url `{}` must be an http:// or https:// URL", upstream.name, upstream.url)));
            }
            if upstream.max_concurrency == 0 {
                return Err(InferenceError::Config(format!("model `{}`: max_concurrency must be at least 1", upstream.name)));
            }
        }
        config.external_ip = self.axon.external_ip;
        config.external_port = self.axon.external_port;
        config.policy.require_validator_permit = self.policy.force_validator_permit.unwrap_or(true);
        if let Some(tao) = self.policy.min_stake {
            if !(tao.is_finite() && tao >= 0.0) {
                return Err(InferenceError::Config(format!("min_stake must be a non-negative number of TAO, got {tao}")));
            }
            config.policy.min_stake_rao = (tao * RAO_PER_TAO as f64).round() as u64;
        }
        config.policy.hotkey_blacklist = keys(&self.policy.hotkey_blacklist, "hotkey_blacklist")?;
        config.policy.hotkey_whitelist = keys(&self.policy.hotkey_whitelist, "hotkey_whitelist")?;
        config.policy.coldkey_blacklist = keys(&self.policy.coldkey_blacklist, "coldkey_blacklist")?;
        config.policy.coldkey_whitelist = keys(&self.policy.coldkey_whitelist, "coldkey_whitelist")?;
        if let Some(n) = self.miner.per_caller_concurrency {
            if n == 0 {
                return Err(InferenceError::Config("per_caller_concurrency must be at least 1".into()));
            }
            config.per_caller_concurrency = n;
        }
        if let Some(n) = self.miner.max_request_bytes {
            config.max_request_bytes = n.clamp(1024, 64 << 20);
        }
        config.sync_interval = secs(self.miner.sync_interval_secs, config.sync_interval, "sync_interval")?;
        config.upstream_first_byte_timeout = secs(self.miner.upstream_first_byte_timeout_secs, config.upstream_first_byte_timeout, "upstream_first_byte_timeout")?;
        config.upstream_idle_timeout = secs(self.miner.upstream_idle_timeout_secs, config.upstream_idle_timeout, "upstream_idle_timeout")?;
        config.upstream_total_timeout = secs(self.miner.upstream_total_timeout_secs, config.upstream_total_timeout, "upstream_total_timeout")?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_overrides_resolve() {
        let file: MinerFile = toml::from_str(
            r#"
            netuid = 3
            [axon]
            port = 9000
            [[models]]
            name = "smollm2"
            url = "http://127.0.0.1:8000/v1"
            max_concurrency = 2
            [policy]
            force_validator_permit = false
            min_stake = 0.5
            [miner]
            sync_interval_secs = 5
            "#,
        )
        .unwrap();
        let over = MinerFile { axon: AxonFile { port: Some(9100), ..Default::default() }, ..Default::default() };
        let config = file.merge(over).into_config(Keypair::from_uri("//M").unwrap()).unwrap();
        assert_eq!(config.netuid, 3);
        assert_eq!(config.listen.port(), 9100, "the command line wins");
        assert_eq!(config.upstreams[0].max_concurrency, 2);
        assert!(!config.policy.require_validator_permit);
        assert_eq!(config.policy.min_stake_rao, RAO_PER_TAO / 2);
        assert_eq!(config.sync_interval, Duration::from_secs(5));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(toml::from_str::<MinerFile>("netuid = 1\nunknown = 2").is_err(), "unknown keys are refused");
        let no_netuid = MinerFile::default().into_config(Keypair::from_uri("//M").unwrap()).unwrap_err();
        assert!(no_netuid.to_string().contains("--netuid"), "{no_netuid}");
        let bad_url = MinerFile {
            netuid: Some(1),
            models: vec![UpstreamConfig { name: "m".into(), url: "ftp://x".into(), api_key: None, max_concurrency: 1 }],
            ..Default::default()
        };
        assert!(bad_url.into_config(Keypair::from_uri("//M").unwrap()).is_err());
        let bad_key = MinerFile {
            netuid: Some(1),
            policy: PolicyFile { hotkey_blacklist: Some(vec!["nope".into()]), ..Default::default() },
            ..Default::default()
        };
        assert!(bad_key.into_config(Keypair::from_uri("//M").unwrap()).unwrap_err().to_string().contains("nope"));
    }
}
