//! Configuration for every node, owned by the libraries: typed TOML sections that the
//! subnets compose into their node configs, and one layering rule,
//! [`load`]`(file, overrides)`: the TOML file, then environment variables and command-line
//! flags (clap reads both into one [`Overrides`] table, flag names as btcli spells them:
//! `--neuron.epoch_length` is the key `neuron.epoch_length`). The merged table is
//! deserialised once into the node's type, so unknown keys, wrong types and bad units are
//! reported the same way for a file, a flag or an env var, naming the key.
//!
//! Durations are written with units everywhere (`"12s"`, `"500ms"`, `"2m"`, `"1h 30m"`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file, a flag or an env var does not fit the node's configuration.
    #[error("{origin}: {reason}")]
    Invalid {
        /// The file, or "flags and environment".
        origin: String,
        /// serde's sentence, naming the key.
        reason: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Value(String),
}

/// Values from flags and environment variables, by dotted key, to lay over the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides(toml::Table);

impl Overrides {
    /// Nothing overridden.
    pub fn new() -> Overrides {
        Overrides::default()
    }

    /// Sets `key` (dotted: `neuron.epoch_length`) when `value` is `Some`.
    pub fn set<V: Into<toml::Value>>(&mut self, key: &str, value: Option<V>) -> &mut Overrides {
        if let Some(value) = value {
            let mut table = &mut self.0;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    table.insert(part.to_string(), value.into());
                    break;
                }
                let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                let toml::Value::Table(inner) = entry else { break };
                table = inner;
            }
        }
        self
    }

    /// Sets a duration key from a human string (`"12s"`).
    pub fn duration(&mut self, key: &str, value: Option<Duration>) -> &mut Overrides {
        self.set(key, value.map(|d| humantime_serde::re::humantime::format_duration(d).to_string()))
    }

    /// Sets a path key.
    pub fn path(&mut self, key: &str, value: Option<&Path>) -> &mut Overrides {
        self.set(key, value.map(|p| p.display().to_string()))
    }

    /// Sets a list of strings when it is non-empty.
    pub fn list(&mut self, key: &str, values: &[String]) -> &mut Overrides {
        let values: Vec<toml::Value> = values.iter().map(|v| toml::Value::String(v.clone())).collect();
        self.set(key, (!values.is_empty()).then_some(toml::Value::Array(values)))
    }

    /// The table.
    pub fn table(&self) -> &toml::Table {
        &self.0
    }
}

fn merge_into(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_into(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Reads a TOML file of at most 1 MiB into a table.
pub fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let read_err = |reason: String| ConfigError::Read { path: path.to_path_buf(), reason };
    let bytes = ganglion_core::fsutil::read_bounded(path, 1 << 20).map_err(|e| read_err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| read_err("not UTF-8".into()))?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid { origin: path.display().to_string(), reason: e.to_string() })
}

/// `merge(flags, env, file)`: the file (if any), then `overrides` key by key, deserialised
/// into `T` (whose `Default` fills what neither sets when it has `#[serde(default)]`).
pub fn load<T: DeserializeOwned>(file: Option<&Path>, overrides: &Overrides) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => read_file(path)?,
        None => toml::Table::new(),
    };
    // Check the file alone first, so that its mistakes are reported against the file.
    if let Some(path) = file {
        from_table::<T>(&table).map_err(|reason| ConfigError::Invalid { origin: path.display().to_string(), reason })?;
    }
    merge_into(&mut table, overrides.table());
    from_table(&table).map_err(|reason| ConfigError::Invalid { origin: "flags and environment".into(), reason })
}

fn from_table<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    // Through text, so that the error names the key and shows the offending line.
    let text = toml::to_string(table).map_err(|e| e.to_string())?;
    toml::from_str(&text).map_err(|e| e.to_string())
}

/// `[subtensor]`: which chain (btcli's `--subtensor.network` and `--subtensor.chain_endpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubtensorConfig {
    /// `local`, or a URL.
    pub network: Option<String>,
    /// An explicit endpoint (wins over `network`).
    pub chain_endpoint: Option<String>,
}

/// `[wallet]`: btcli's `--wallet.name`, `--wallet.hotkey`, `--wallet.path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalletConfig {
    /// Wallet name (`default`).
    pub name: Option<String>,
    /// Hotkey name (`default`).
    pub hotkey: Option<String>,
    /// Wallets directory (`~/.bittensor/wallets`).
    pub path: Option<PathBuf>,
}

/// `[axon]`: where a miner listens and what it publishes on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AxonConfig {
    /// Listen address (`--axon.ip`).
    pub ip: IpAddr,
    /// Listen port (`--axon.port`; 0 picks a free one).
    pub port: u16,
    /// Address published on chain (`--axon.external_ip`; default: the listen address).
    pub external_ip: Option<IpAddr>,
    /// Port published on chain (`--axon.external_port`; default: the bound port).
    pub external_port: Option<u16>,
    /// Publish the axon with `serve_axon` (and again when the chain's copy differs).
    pub serve: bool,
}

impl Default for AxonConfig {
    fn default() -> Self {
        AxonConfig { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: 8091, external_ip: None, external_port: None, serve: true }
    }
}

impl AxonConfig {
    /// The listen address.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// `[metrics]`: where `/metrics` and `/status` are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address (loopback by default: status and metrics are for the operator).
    pub host: IpAddr,
    /// Port; `None`: not served.
    pub port: Option<u16>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { host: IpAddr::V4(Ipv4Addr::LOCALHOST), port: None }
    }
}

impl MetricsConfig {
    /// The address to serve on, if any.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.port.map(|p| SocketAddr::new(self.host, p))
    }
}

/// `[neuron]`: what every node of a subnet shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuronConfig {
    /// State directory (scores, status, default records store).
    pub data_dir: Option<PathBuf>,
    /// Blocks between weight settings (validators; raised to the chain's
    /// `weights_rate_limit` when that is longer).
    pub epoch_length: u64,
    /// How often the metagraph is synced.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// `version_key` sent with weights (default: [`crate::weights::version_key`]).
    pub version_key: Option<u64>,
}

impl Default for NeuronConfig {
    fn default() -> Self {
        NeuronConfig { data_dir: None, epoch_length: 360, sync_interval: Duration::from_secs(12), version_key: None }
    }
}

impl NeuronConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epoch_length == 0 {
            return Err(ConfigError::Value("neuron.epoch_length must be at least 1 block".into()));
        }
        if self.sync_interval < Duration::from_millis(100) || self.sync_interval > Duration::from_secs(3600) {
            return Err(ConfigError::Value(format!("neuron.sync_interval must be between 100ms and 1h, not {}", humantime_serde::re::humantime::format_duration(self.sync_interval))));
        }
        Ok(())
    }
}

/// Parses a duration flag or env var: `"30s"`, `"500ms"`, `"2m 30s"`, or a bare number of
/// seconds (`"30"`, `"0.5"`: what btcli-era flags took). For clap's `value_parser`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return if secs.is_finite() && (0.0..=1e9).contains(&secs) {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("{text} is not a duration (use e.g. 30s, 500ms, 2m)"))
        };
    }
    humantime_serde::re::humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e}; use e.g. 30s, 500ms, 2m)"))
}

/// Checks that a duration lies in `[min, max]`, naming the key.
pub fn check_duration(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if value < min || value > max {
        let f = humantime_serde::re::humantime::format_duration;
        return Err(ConfigError::Value(format!("{key} must be between {} and {}, not {}", f(min), f(max), f(value))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Node {
        neuron: NeuronConfig,
        axon: AxonConfig,
        metrics: MetricsConfig,
        netuid: u16,
    }

    #[test]
    fn flags_win_over_the_file_and_mistakes_name_the_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "netuid = 3\n[neuron]\nepoch_length = 20\nsync_interval = \"2s\"\n[axon]\nport = 9000\n").unwrap_or_else(|e| panic!("{e}"));
        let mut over = Overrides::new();
        over.set("neuron.epoch_length", Some(30i64)).set("metrics.port", Some(9100i64)).set::<i64>("axon.port", None);
        over.duration("neuron.sync_interval", Some(Duration::from_millis(1500)));
        let node: Node = load(Some(&path), &over).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(node.netuid, 3);
        assert_eq!(node.neuron.epoch_length, 30);
        assert_eq!(node.neuron.sync_interval, Duration::from_millis(1500));
        assert_eq!(node.axon.port, 9000, "an unset flag leaves the file's value");
        assert_eq!(node.metrics.listen(), Some("127.0.0.1:9100".parse().unwrap_or_else(|e| panic!("{e}"))));

        std::fs::write(&path, "[neuron]\nepoch_lenght = 20\n").unwrap_or_else(|e| panic!("{e}"));
        let err = load::<Node>(Some(&path), &Overrides::new()).unwrap_err().to_string();
        assert!(err.contains("epoch_lenght") && err.contains("node.toml"), "{err}");
        std::fs::write(&path, "[neuron]\nsync_interval = \"12 parsecs\"\n").unwrap_or_else(|e| panic!("{e}"));
        let err = load::<Node>(Some(&path), &Overrides::new()).unwrap_err().to_string();
        assert!(err.contains("sync_interval") || err.contains("parsecs"), "{err}");
        let mut bad = Overrides::new();
        bad.set("neuron.epoch_length", Some("soon"));
        let err = load::<Node>(None, &bad).unwrap_err().to_string();
        assert!(err.contains("flags and environment") && err.contains("epoch_length"), "{err}");
        assert!(load::<Node>(Some(&dir.path().join("missing.toml")), &Overrides::new()).is_err());
        assert!(NeuronConfig { epoch_length: 0, ..NeuronConfig::default() }.validate().is_err());
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m 30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err() && parse_duration("soon").is_err() && parse_duration("NaN").is_err());
    }
}
