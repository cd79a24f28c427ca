//! The TOML configuration of `ganglion hub`: one key per flag (the flag's name without
//! `--`, `-` written `_`, dots as tables: `--database.url` is `[database] url`), plus the
//! hub's polling settings, durations with units.
//!
//! ```toml
//! host = "127.0.0.1"
//! port = 8800
//! netuid = 1               # show only this subnet (default: all)
//! snapshot_every = 5       # blocks between metagraph snapshots
//! chain_poll = "2s"        # file only: how often metagraphs are synced
//! feed_poll = "500ms"      # file only: how often the live feed polls the store
//! max_sse_clients = 64     # file only: most concurrent live-feed clients
//!
//! [database]
//! url = "sqlite:/var/lib/ganglion/records.db"   # default: SQLite at ~/.ganglion/records.db
//!
//! [subtensor]
//! network = "http://127.0.0.1:9944"            # default: $GANGLION_CHAIN_URL or local
//!
//! [tls]                                         # optional
//! cert = "/etc/ganglion/hub.pem"                # with key: serve HTTPS instead of HTTP
//! key = "/etc/ganglion/hub.key"
//! ca_file = "/etc/ganglion/ca.pem"              # trusted for an https:// chain endpoint
//! ```
//!
//! The binary lays its flags and environment variables over the file and deserialises the
//! result into [`ServeConfig`]; [`ServeConfig::validate`] then checks the ranges, and
//! [`ServeConfig::hub_config`] turns it into the [`HubConfig`] the server runs with.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::Chain;
use ganglion_records::Records;
use serde::{Deserialize, Serialize};

use crate::state::HubConfig;

/// A value of a [`ServeConfig`] out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hub configuration: {message}")]
pub struct ConfigError {
    /// The key (`feed_poll`).
    pub key: &'static str,
    /// A sentence naming the key and the accepted values.
    pub message: String,
}

/// `[database]`: the records store (`--database.url`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:/path/records.db` or `postgres://user:pass@host/db` (default: SQLite at
    /// `~/.ganglion/records.db`, chosen by the binary).
    pub url: Option<String>,
}

/// `[subtensor]`: the chain whose metagraphs the hub shows (`--subtensor.network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubtensorConfig {
    /// `local` or a node's http:// URL (default: `$GANGLION_CHAIN_URL` or `local`).
    pub network: Option<String>,
}

/// `ganglion hub`'s configuration (flags, environment, `--config` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to bind (loopback by default; the hub has no authentication).
    pub host: IpAddr,
    /// Port of the dashboard and API (0 picks a free one).
    pub port: u16,
    /// Show only this subnet.
    pub netuid: Option<u16>,
    /// Record a metagraph snapshot every this many blocks (0 is taken as 1).
    pub snapshot_every: u64,
    /// How often metagraphs are synced from the chain.
    #[serde(with = "humantime_serde")]
    pub chain_poll: Duration,
    /// How often the live feed polls the store for new rows.
    #[serde(with = "humantime_serde")]
    pub feed_poll: Duration,
    /// Most concurrent live-feed (SSE) clients.
    pub max_sse_clients: usize,
    /// The records store.
    pub database: DatabaseConfig,
    /// The chain.
    pub subtensor: SubtensorConfig,
    /// `[tls]`: `cert` and `key` to serve HTTPS; `ca_file` for an `https://` chain.
    pub tls: ganglion_tls::TlsSection,
}

impl Default for ServeConfig {
    /// The flags' defaults (127.0.0.1:8800, every subnet, snapshots every 5 blocks, default
    /// store and chain) and [`HubConfig::new`]'s (chain synced every 2 s, feed polled every
    /// 500 ms, at most 64 live clients).
    fn default() -> Self {
        ServeConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8800,
            netuid: None,
            snapshot_every: 5,
            chain_poll: Duration::from_secs(2),
            feed_poll: Duration::from_millis(500),
            max_sse_clients: 64,
            database: DatabaseConfig::default(),
            subtensor: SubtensorConfig::default(),
            tls: ganglion_tls::TlsSection::default(),
        }
    }
}

fn check_duration(key: &'static str, value: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if value < min || value > max {
        let f = humantime_serde::re::humantime::format_duration;
        return Err(ConfigError { key, message: format!("{key} must be between {} and {}, not {}", f(min), f(max), f(value)) });
    }
    Ok(())
}

impl ServeConfig {
    /// Checks the ranges: `chain_poll` 100 ms–1 h, `feed_poll` 10 ms–1 min,
    /// `max_sse_clients` 1–100 000, `database.url` not empty when given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_duration("chain_poll", self.chain_poll, Duration::from_millis(100), Duration::from_secs(3600))?;
        check_duration("feed_poll", self.feed_poll, Duration::from_millis(10), Duration::from_secs(60))?;
        if !(1..=100_000).contains(&self.max_sse_clients) {
            return Err(ConfigError { key: "max_sse_clients", message: format!("max_sse_clients must be between 1 and 100000, not {}", self.max_sse_clients) });
        }
        if self.database.url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(ConfigError { key: "database.url", message: "database.url must not be empty (omit it for SQLite at ~/.ganglion/records.db)".into() });
        }
        Ok(())
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The hub's settings around an opened store and an optional chain.
    pub fn hub_config(&self, records: Records, chain: Option<Arc<dyn Chain>>, chain_label: impl Into<String>) -> HubConfig {
        let mut config = HubConfig::new(records, chain, chain_label);
        config.netuid = self.netuid;
        config.snapshot_every_blocks = self.snapshot_every.max(1);
        config.chain_poll = self.chain_poll;
        config.feed_poll = self.feed_poll;
        config.max_sse_clients = self.max_sse_clients;
        config
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
        assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 8800)));
        assert_eq!((config.netuid, config.snapshot_every), (None, 5));
        assert_eq!((config.chain_poll, config.feed_poll, config.max_sse_clients), (Duration::from_secs(2), Duration::from_millis(500), 64));
        assert_eq!((config.database.url.as_deref(), config.subtensor.network.as_deref()), (None, None));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(parse(""), Ok(ServeConfig::default()), "an empty file is the defaults");
    }

    #[tokio::test]
    async fn defaults_match_the_hub_config_and_a_file_with_every_key_parses() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let records = Records::open(&Records::default_url(dir.path())).await.unwrap_or_else(|e| panic!("{e}"));
        let stock = HubConfig::new(records.clone(), None, "none");
        let ours = ServeConfig::default().hub_config(records.clone(), None, "none");
        assert_eq!(
            (ours.netuid, ours.snapshot_every_blocks, ours.chain_poll, ours.feed_poll, ours.max_sse_clients),
            (stock.netuid, stock.snapshot_every_blocks, stock.chain_poll, stock.feed_poll, stock.max_sse_clients)
        );

        let text = "host = \"0.0.0.0\"\nport = 8900\nnetuid = 3\nsnapshot_every = 10\nchain_poll = \"5s\"\nfeed_poll = \"250ms\"\nmax_sse_clients = 8\n\
                    [database]\nurl = \"postgres://hub@db/records\"\n[subtensor]\nnetwork = \"http://10.0.0.2:9944\"\n";
        let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config,
            ServeConfig {
                host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: 8900,
                netuid: Some(3),
                snapshot_every: 10,
                chain_poll: Duration::from_secs(5),
                feed_poll: Duration::from_millis(250),
                max_sse_clients: 8,
                database: DatabaseConfig { url: Some("postgres://hub@db/records".into()) },
                subtensor: SubtensorConfig { network: Some("http://10.0.0.2:9944".into()) },
                tls: ganglion_tls::TlsSection::default(),
            }
        );
        assert_eq!(config.validate(), Ok(()));
        let hub = config.hub_config(records.clone(), None, "none");
        assert_eq!((hub.netuid, hub.snapshot_every_blocks, hub.feed_poll, hub.max_sse_clients), (Some(3), 10, Duration::from_millis(250), 8));
        let text = toml::to_string(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&text), Ok(config));
        records.close().await;
    }

    #[test]
    fn mistakes_name_the_key() {
        let err = refused(parse("snapshot_evry = 5\n"));
        assert!(err.contains("snapshot_evry"), "{err}");
        let err = refused(parse("[database]\nurl = \"sqlite:x.db\"\npool = 4\n"));
        assert!(err.contains("pool"), "{err}");
        let err = refused(parse("feed_poll = \"half a second\"\n"));
        assert!(err.contains("feed_poll"), "{err}");
        let err = refused(parse("chain_poll = 2\n"));
        assert!(err.contains("chain_poll"), "a duration needs its unit: {err}");
        for (text, key) in [
            ("chain_poll = \"10ms\"\n", "chain_poll"),
            ("feed_poll = \"2m\"\n", "feed_poll"),
            ("max_sse_clients = 0\n", "max_sse_clients"),
            ("[database]\nurl = \"\"\n", "database.url"),
        ] {
            let err = refused(parse(text).unwrap_or_else(|e| panic!("{e}")).validate());
            assert_eq!(err.key, key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
