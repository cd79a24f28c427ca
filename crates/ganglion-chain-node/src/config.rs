//! The TOML configuration of `ganglion chain serve`: one key per flag (the flag's name
//! without `--`, `-` written `_`), durations with units (`block_time = "1s"`).
//!
//! ```toml
//! data_dir = "~/.ganglion/chain"
//! host = "127.0.0.1"
//! port = 9944
//! block_time = "12s"
//! tempo = 360
//! faucet = true        # `--no-faucet` sets it to false
//! ```
//!
//! The binary lays its flags and environment variables over the file and deserialises the
//! result into [`ServeConfig`]; [`ServeConfig::validate`] then checks the ranges.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::NodeConfig;
use crate::state::ChainConfig;

/// Shortest block time accepted (what `--block-time` has always accepted).
pub const MIN_BLOCK_TIME: Duration = Duration::from_millis(1);
/// Longest block time accepted.
pub const MAX_BLOCK_TIME: Duration = Duration::from_secs(3600);

/// A value of a [`ServeConfig`] out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chain configuration: {message}")]
pub struct ConfigError {
    /// The key (`block_time`).
    pub key: &'static str,
    /// A sentence naming the key and the accepted values.
    pub message: String,
}

/// `ganglion chain serve`'s configuration (flags, environment, `--config` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the chain database lives (created if missing; `~` is the home directory).
    pub data_dir: PathBuf,
    /// Address to bind (loopback by default; the API has no authentication).
    pub host: IpAddr,
    /// Port of the HTTP API (0 picks a free one).
    pub port: u16,
    /// Time between blocks.
    #[serde(with = "humantime_serde")]
    pub block_time: Duration,
    /// Tempo (blocks between epochs) of newly created subnets.
    pub tempo: u16,
    /// Accept `faucet` transactions (`--no-faucet` turns this off).
    pub faucet: bool,
}

impl Default for ServeConfig {
    /// The flags' defaults: `~/.ganglion/chain`, 127.0.0.1:9944, 12 s blocks, tempo 360,
    /// faucet on.
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("~/.ganglion/chain"),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9944,
            block_time: Duration::from_secs(12),
            tempo: 360,
            faucet: true,
        }
    }
}

impl ServeConfig {
    /// Checks the ranges: `tempo` ≥ 1, `block_time` between 1 ms and 1 h.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tempo == 0 {
            return Err(ConfigError { key: "tempo", message: "tempo must be at least 1 block".into() });
        }
        if self.block_time < MIN_BLOCK_TIME || self.block_time > MAX_BLOCK_TIME {
            return Err(ConfigError {
                key: "block_time",
                message: format!("block_time must be between 1ms and 1h, not {}", humantime_serde::re::humantime::format_duration(self.block_time)),
            });
        }
        Ok(())
    }

    /// The data directory with a leading `~` replaced by the home directory.
    pub fn data_dir(&self) -> PathBuf {
        ganglion_core::wallet::expand_home(&self.data_dir)
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The node's settings (the state machine's other settings at their defaults).
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig {
            data_dir: self.data_dir(),
            block_time: self.block_time,
            chain: ChainConfig { faucet: self.faucet, default_tempo: self.tempo, ..ChainConfig::default() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn refused<T: std::fmt::Debug, E>(result: Result<T, E>) -> E {
        match result {
            Ok(value) => panic!("accepted: {value:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_are_the_documented_flag_defaults() {
        let config = ServeConfig::default();
        assert_eq!(config.data_dir, PathBuf::from("~/.ganglion/chain"));
        assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 9944)));
        assert_eq!(config.block_time, Duration::from_secs(12));
        assert_eq!(config.tempo, 360);
        assert!(config.faucet);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(parse(""), Ok(ServeConfig::default()), "an empty file is the defaults");
        let node = config.node_config();
        assert_eq!(node.chain.default_tempo, 360);
        assert!(node.chain.faucet && !node.data_dir.starts_with("~"));
    }

    #[test]
    fn a_file_with_every_key_parses() {
        let text = "data_dir = \"/var/lib/ganglion/chain\"\nhost = \"0.0.0.0\"\nport = 9000\nblock_time = \"250ms\"\ntempo = 7\nfaucet = false\n";
        let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config,
            ServeConfig {
                data_dir: PathBuf::from("/var/lib/ganglion/chain"),
                host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: 9000,
                block_time: Duration::from_millis(250),
                tempo: 7,
                faucet: false,
            }
        );
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.node_config().data_dir, PathBuf::from("/var/lib/ganglion/chain"));
        // What it serialises to reads back the same.
        let text = toml::to_string(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&text), Ok(config));
    }

    #[test]
    fn mistakes_name_the_key() {
        let err = refused(parse("blocktime = \"1s\"\n"));
        assert!(err.contains("blocktime"), "{err}");
        let err = refused(parse("block_time = \"12 parsecs\"\n"));
        assert!(err.contains("block_time"), "{err}");
        let err = refused(parse("tempo = \"often\"\n"));
        assert!(err.contains("tempo"), "{err}");
        let err = refused(parse("tempo = 0\n").map(|c| c.validate()).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(err.key, "tempo");
        assert!(err.to_string().contains("tempo must be at least 1"), "{err}");
        for bad in ["0s", "2h"] {
            let config = parse(&format!("block_time = \"{bad}\"\n")).unwrap_or_else(|e| panic!("{e}"));
            let err = refused(config.validate());
            assert_eq!(err.key, "block_time");
            assert!(err.to_string().contains("block_time must be between 1ms and 1h"), "{err}");
        }
    }
}
