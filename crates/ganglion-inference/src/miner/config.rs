//! The miner's settings: [`MinerConfig`] (what [`super::start`] takes) and [`MinerFile`],
//! the TOML file with flags and env vars laid over it by the runtime's one rule
//! ([`ganglion_neuron::config::load`]). Durations carry units (`"30s"`, `"10m"`).
//!
//! ```toml
//! netuid = 1
//!
//! [neuron]                  # the runtime's section
//! sync_interval = "12s"     # metagraph refresh (caller policy, axon)
//! data_dir = "/var/lib/ganglion/miner"   # status.json (optional)
//!
//! [axon]                    # the runtime's section
//! ip = "0.0.0.0"            # where to listen
//! port = 8091
//! external_ip = "203.0.113.7"   # what to publish on chain (default: ip, or 127.0.0.1)
//! serve = true              # publish with serve_axon
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
//! max_request_bytes = 1048576
//! upstream_first_byte_timeout = "60s"
//! upstream_idle_timeout = "60s"
//! upstream_total_timeout = "10m"
//! queue_timeout = "10s"
//! drain_timeout = "10s"     # in-flight streams get this long at shutdown
//! header_read_timeout = "30s"   # a request's headers must arrive within this (slowloris)
//! write_stall_timeout = "30s"   # a caller that stops reading its response is cut off after this
//!
//! [tls]                     # https:// upstreams: system roots, plus this private CA
//! ca_file = "/etc/ganglion/upstream-ca.pem"
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ganglion_chain::RAO_PER_TAO;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_neuron::config::{AxonConfig, NeuronConfig, Overrides, check_duration};
use ganglion_protocol::policy::PolicyConfig;
use ganglion_tls::{ClientTls, TlsSection};
use serde::{Deserialize, Serialize};

use crate::error::{InferenceError, Result};

/// One upstream: the model it serves and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Everything [`super::start`] needs.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// Subnet.
    pub netuid: u16,
    /// The miner's hotkey: Epistula receiver and axon owner.
    pub hotkey: Keypair,
    /// Where to listen, what to publish on chain, and whether to (the runtime's section).
    pub axon: AxonConfig,
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
    /// How long in-flight streams may go on after a stop was asked for.
    pub drain_timeout: Duration,
    /// A request's headers must arrive within this (slowloris); keep-alive connections idle
    /// this long are closed too.
    pub header_read_timeout: Duration,
    /// Largest request line plus headers in bytes (431 above).
    pub max_header_bytes: usize,
    /// A caller that reads nothing of its response for this long is cut off (its stream,
    /// caller and upstream slots freed).
    pub write_stall_timeout: Duration,
    /// Where `status.json` is written (none: served at `/status` only).
    pub data_dir: Option<PathBuf>,
    /// How `https://` upstreams are verified (system roots, plus `[tls] ca_file`).
    pub tls: ClientTls,
}

impl MinerConfig {
    /// Defaults for everything but the essentials: permit required, 1000 TAO minimum
    /// stake, 8 requests per caller, 1 MiB bodies, 60 s first byte and idle, 10 min total,
    /// 30 s to send the headers, 32 KiB of headers, 30 s for a stalled response write.
    pub fn new(netuid: u16, hotkey: Keypair, listen: SocketAddr, upstreams: Vec<UpstreamConfig>) -> MinerConfig {
        MinerConfig {
            netuid,
            hotkey,
            axon: AxonConfig { ip: listen.ip(), port: listen.port(), ..AxonConfig::default() },
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
            sync_interval: NeuronConfig::default().sync_interval,
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            write_stall_timeout: Duration::from_secs(30),
            data_dir: None,
            tls: ClientTls::system(),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyFile {
    /// Require a validator permit.
    pub force_validator_permit: bool,
    /// Minimum stake in TAO.
    pub min_stake: f64,
    /// Hotkeys (SS58) always refused.
    pub hotkey_blacklist: Vec<String>,
    /// If non-empty, only these hotkeys.
    pub hotkey_whitelist: Vec<String>,
    /// Coldkeys whose hotkeys are refused.
    pub coldkey_blacklist: Vec<String>,
    /// If non-empty, only hotkeys of these coldkeys.
    pub coldkey_whitelist: Vec<String>,
}

impl Default for PolicyFile {
    fn default() -> Self {
        PolicyFile {
            force_validator_permit: true,
            min_stake: 1000.0,
            hotkey_blacklist: Vec::new(),
            hotkey_whitelist: Vec::new(),
            coldkey_blacklist: Vec::new(),
            coldkey_whitelist: Vec::new(),
        }
    }
}

/// `[miner]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerSection {
    /// Requests in flight per caller.
    pub per_caller_concurrency: usize,
    /// Largest request body in bytes.
    pub max_request_bytes: usize,
    /// Upstream header deadline.
    #[serde(with = "humantime_serde")]
    pub upstream_first_byte_timeout: Duration,
    /// Upstream idle deadline.
    #[serde(with = "humantime_serde")]
    pub upstream_idle_timeout: Duration,
    /// Upstream total deadline.
    #[serde(with = "humantime_serde")]
    pub upstream_total_timeout: Duration,
    /// How long a request waits for an upstream slot.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// How long in-flight streams may go on after SIGINT/SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Deadline for a request's headers (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a response write may make no progress before the caller is cut off.
    #[serde(with = "humantime_serde")]
    pub write_stall_timeout: Duration,
}

impl Default for MinerSection {
    fn default() -> Self {
        MinerSection {
            per_caller_concurrency: 8,
            max_request_bytes: 1 << 20,
            upstream_first_byte_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(60),
            upstream_total_timeout: Duration::from_secs(600),
            queue_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
        }
    }
}

/// The miner's TOML file (and, through [`Overrides`], its flags and env vars).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerFile {
    /// Subnet.
    pub netuid: Option<u16>,
    /// `[neuron]` (the runtime's section: `sync_interval`, `data_dir`).
    pub neuron: NeuronConfig,
    /// `[axon]` (the runtime's section).
    pub axon: AxonConfig,
    /// `[[models]]`.
    pub models: Vec<UpstreamConfig>,
    /// `[policy]`.
    pub policy: PolicyFile,
    /// `[miner]`.
    pub miner: MinerSection,
    /// `[tls]`: `ca_file`, trusted for `https://` upstreams besides the system's roots.
    pub tls: TlsSection,
}

fn keys(list: &[String], what: &str) -> Result<HashSet<PublicKey>> {
    list.iter()
        .map(|s| s.trim().parse::<PublicKey>().map_err(|e| InferenceError::Config(format!("{what}: `{s}` is not an SS58 address: {e}"))))
        .collect()
}

impl MinerFile {
    /// The file (if any) with `overrides` (flags, env) laid over it.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<MinerFile> {
        Ok(ganglion_neuron::config::load(file, overrides)?)
    }

    /// The resolved configuration.
    pub fn into_config(self, hotkey: Keypair) -> Result<MinerConfig> {
        let netuid = self.netuid.ok_or_else(|| InferenceError::Config("no subnet: pass --netuid or set `netuid` in the config file".into()))?;
        self.neuron.validate()?;
        let mut config = MinerConfig::new(netuid, hotkey, self.axon.listen(), self.models);
        for upstream in &config.upstreams {
            if upstream.name.trim().is_empty() || !(upstream.url.starts_with("http://") || upstream.url.starts_with("https://")) {
                return Err(InferenceError::Config(format!("model `{}`: url `{}` must be an http:// or https:// URL", upstream.name, upstream.url)));
            }
            if upstream.max_concurrency == 0 {
                return Err(InferenceError::Config(format!("model `{}`: max_concurrency must be at least 1", upstream.name)));
            }
        }
        if self.tls.cert.is_some() || self.tls.key.is_some() {
            return Err(InferenceError::Config("tls.cert and tls.key: the miner's axon serves plain HTTP (Epistula signs every request); only tls.ca_file applies".into()));
        }
        config.tls = self.tls.client()?;
        config.axon = self.axon;
        config.sync_interval = self.neuron.sync_interval;
        config.data_dir = self.neuron.data_dir;
        config.policy.require_validator_permit = self.policy.force_validator_permit;
        let tao = self.policy.min_stake;
        if !(tao.is_finite() && tao >= 0.0) {
            return Err(InferenceError::Config(format!("min_stake must be a non-negative number of TAO, got {tao}")));
        }
        config.policy.min_stake_rao = (tao * RAO_PER_TAO as f64).round() as u64;
        config.policy.hotkey_blacklist = keys(&self.policy.hotkey_blacklist, "hotkey_blacklist")?;
        config.policy.hotkey_whitelist = keys(&self.policy.hotkey_whitelist, "hotkey_whitelist")?;
        config.policy.coldkey_blacklist = keys(&self.policy.coldkey_blacklist, "coldkey_blacklist")?;
        config.policy.coldkey_whitelist = keys(&self.policy.coldkey_whitelist, "coldkey_whitelist")?;
        let m = self.miner;
        if m.per_caller_concurrency == 0 {
            return Err(InferenceError::Config("per_caller_concurrency must be at least 1".into()));
        }
        config.per_caller_concurrency = m.per_caller_concurrency;
        config.max_request_bytes = m.max_request_bytes.clamp(1024, 64 << 20);
        let (min, day) = (Duration::from_millis(1), Duration::from_secs(86_400));
        for (key, value) in [
            ("miner.upstream_first_byte_timeout", m.upstream_first_byte_timeout),
            ("miner.upstream_idle_timeout", m.upstream_idle_timeout),
            ("miner.upstream_total_timeout", m.upstream_total_timeout),
            ("miner.queue_timeout", m.queue_timeout),
            ("miner.header_read_timeout", m.header_read_timeout),
            ("miner.write_stall_timeout", m.write_stall_timeout),
        ] {
            check_duration(key, value, min, day)?;
        }
        check_duration("miner.drain_timeout", m.drain_timeout, Duration::ZERO, day)?;
        config.upstream_first_byte_timeout = m.upstream_first_byte_timeout;
        config.upstream_idle_timeout = m.upstream_idle_timeout;
        config.upstream_total_timeout = m.upstream_total_timeout;
        config.queue_timeout = m.queue_timeout;
        config.drain_timeout = m.drain_timeout;
        config.header_read_timeout = m.header_read_timeout;
        config.write_stall_timeout = m.write_stall_timeout;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("miner.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn file_and_overrides_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
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
            [neuron]
            sync_interval = "5s"
            [miner]
            upstream_total_timeout = "2m"
            header_read_timeout = "5s"
            "#,
        );
        let mut over = Overrides::new();
        over.set("axon.port", Some(9100i64)).set("axon.serve", Some(false));
        let config = MinerFile::load(Some(&path), &over).unwrap().into_config(Keypair::from_uri("//M").unwrap()).unwrap();
        assert_eq!(config.netuid, 3);
        assert_eq!(config.axon.listen().port(), 9100, "the command line wins");
        assert!(!config.axon.serve);
        assert_eq!(config.upstreams[0].max_concurrency, 2);
        assert!(!config.policy.require_validator_permit);
        assert_eq!(config.policy.min_stake_rao, RAO_PER_TAO / 2);
        assert_eq!(config.sync_interval, Duration::from_secs(5));
        assert_eq!(config.upstream_total_timeout, Duration::from_secs(120));
        assert_eq!(config.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.write_stall_timeout, Duration::from_secs(30), "the default");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let unknown = MinerFile::load(Some(&write(dir.path(), "netuid = 1\nunknown = 2")), &Overrides::new()).unwrap_err();
        assert!(unknown.to_string().contains("unknown"), "unknown keys are refused: {unknown}");
        let old = MinerFile::load(Some(&write(dir.path(), "[miner]\nsync_interval_secs = 5")), &Overrides::new());
        assert!(old.is_err(), "the old `_secs` keys are refused, not ignored");
        let units = MinerFile::load(Some(&write(dir.path(), "[miner]\nqueue_timeout = \"soon\"")), &Overrides::new());
        assert!(units.is_err());
        let no_netuid = MinerFile::default().into_config(Keypair::from_uri("//M").unwrap()).unwrap_err();
        assert!(no_netuid.to_string().contains("--netuid"), "{no_netuid}");
        let bad_url = MinerFile {
            netuid: Some(1),
            models: vec![UpstreamConfig { name: "m".into(), url: "ftp://x".into(), api_key: None, max_concurrency: 1 }],
            ..Default::default()
        };
        assert!(bad_url.into_config(Keypair::from_uri("//M").unwrap()).is_err());
        let bad_key = MinerFile { netuid: Some(1), policy: PolicyFile { hotkey_blacklist: vec!["nope".into()], ..Default::default() }, ..Default::default() };
        assert!(bad_key.into_config(Keypair::from_uri("//M").unwrap()).unwrap_err().to_string().contains("nope"));
    }
}
