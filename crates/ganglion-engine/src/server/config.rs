//! The TOML configuration of `ganglion engine serve`: one key per flag (the flag's name
//! without `--`, `-` written `_`).
//!
//! ```toml
//! model = "smollm2"              # a known model name or a path to a llama GGUF file
//! served_model_name = "smollm2"  # default: `model`
//! host = "127.0.0.1"
//! port = 8000
//! api_key = "…"                  # default: no key (also $GANGLION_ENGINE_API_KEY)
//! max_num_seqs = 16              # sequences decoded together (vLLM's name; llama-server -np)
//! max_queued = 256               # requests queued or running; more get 503 server_busy
//! ```
//!
//! The binary lays its flags and environment variables over the file and deserialises the
//! result into [`ServeConfig`]; [`ServeConfig::validate`] then checks the values.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::ServerConfig;
use super::worker::{DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUED, WorkerOptions};

/// A value of a [`ServeConfig`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid engine configuration: {message}")]
pub struct ConfigError {
    /// The key (`model`).
    pub key: &'static str,
    /// A sentence naming the key and what to write instead.
    pub message: String,
}

/// `ganglion engine serve`'s configuration (flags, environment, `--config` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Model name (`smollm2`) or path to a llama GGUF file.
    pub model: String,
    /// Name clients use in the `model` field (default: [`ServeConfig::model`]).
    pub served_model_name: Option<String>,
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// Require `Authorization: Bearer <key>` on /v1 routes.
    pub api_key: Option<String>,
    /// Sequences decoded together by continuous batching (vLLM's `--max-num-seqs`,
    /// llama-server's `-np`).
    pub max_num_seqs: usize,
    /// Requests queued or running at once; more are refused with 503 `server_busy`.
    pub max_queued: usize,
}

/// Largest `max_num_seqs`: a batched step keeps every sequence's activations.
pub const MAX_NUM_SEQS_LIMIT: usize = 256;
/// Largest `max_queued`: each queued request holds its prompt and a connection.
pub const MAX_QUEUED_LIMIT: usize = 65_536;

impl Default for ServeConfig {
    /// The flags' defaults: `smollm2` on 127.0.0.1:8000, served under its own name, no key,
    /// 16 sequences batched, 256 requests in flight.
    fn default() -> Self {
        ServeConfig {
            model: "smollm2".into(),
            served_model_name: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8000,
            api_key: None,
            max_num_seqs: DEFAULT_MAX_BATCH,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

impl ServeConfig {
    /// Checks that the model, the served name and the key (when given) are not empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model.trim().is_empty() {
            return Err(ConfigError { key: "model", message: "model must be a model name (smollm2) or the path of a GGUF file, not empty".into() });
        }
        if self.served_model_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ConfigError { key: "served_model_name", message: "served_model_name must not be empty (omit it to serve under the model's name)".into() });
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ConfigError { key: "api_key", message: "api_key must not be empty (omit it to serve without a key)".into() });
        }
        if !(1..=MAX_NUM_SEQS_LIMIT).contains(&self.max_num_seqs) {
            return Err(ConfigError {
                key: "max_num_seqs",
                message: format!("max_num_seqs must be between 1 and {MAX_NUM_SEQS_LIMIT}, got {}", self.max_num_seqs),
            });
        }
        if !(self.max_num_seqs..=MAX_QUEUED_LIMIT).contains(&self.max_queued) {
            return Err(ConfigError {
                key: "max_queued",
                message: format!(
                    "max_queued must be at least max_num_seqs ({}) and at most {MAX_QUEUED_LIMIT}, got {}",
                    self.max_num_seqs, self.max_queued
                ),
            });
        }
        Ok(())
    }

    /// The worker's settings: continuous batching of `max_num_seqs`, `max_queued` in flight.
    pub fn worker_options(&self) -> WorkerOptions {
        WorkerOptions { max_batch: self.max_num_seqs, max_queued: self.max_queued, ..WorkerOptions::default() }
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The server's settings: the served name (or the model) and the key.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig { model_id: self.served_model_name.clone().unwrap_or_else(|| self.model.clone()), api_key: self.api_key.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_are_the_documented_flag_defaults() {
        let config = ServeConfig::default();
        assert_eq!(config.model, "smollm2");
        assert_eq!(config.served_model_name, None);
        assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert_eq!(config.api_key, None);
        assert_eq!((config.max_num_seqs, config.max_queued), (16, 256));
        let worker = config.worker_options();
        assert_eq!((worker.max_batch, worker.max_queued, worker.schedule), (16, 256, super::super::worker::Schedule::Batched));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(parse(""), Ok(ServeConfig::default()), "an empty file is the defaults");
        let server = config.server_config();
        assert_eq!((server.model_id.as_str(), server.api_key), ("smollm2", None));
    }

    #[test]
    fn config_file_with_every_key_parses() {
        let text = "model = \"/models/llama.gguf\"\nserved_model_name = \"llama\"\nhost = \"0.0.0.0\"\nport = 8100\napi_key = \"secret\"\nmax_num_seqs = 4\nmax_queued = 32\n";
        let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config,
            ServeConfig {
                model: "/models/llama.gguf".into(),
                served_model_name: Some("llama".into()),
                host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: 8100,
                api_key: Some("secret".into()),
                max_num_seqs: 4,
                max_queued: 32,
            }
        );
        assert_eq!((config.worker_options().max_batch, config.worker_options().max_queued), (4, 32));
        assert_eq!(config.validate(), Ok(()));
        let server = config.server_config();
        assert_eq!((server.model_id.as_str(), server.api_key.as_deref()), ("llama", Some("secret")));
        let text = toml::to_string(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&text), Ok(config));
    }

    #[test]
    fn config_mistakes_name_the_key() {
        let err = parse("modle = \"smollm2\"\n").unwrap_err();
        assert!(err.contains("modle"), "{err}");
        let err = parse("port = \"eighty\"\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err = parse("port = 70000\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
        for (text, key) in [
            ("model = \"\"\n", "model"),
            ("served_model_name = \" \"\n", "served_model_name"),
            ("api_key = \"\"\n", "api_key"),
            ("max_num_seqs = 0\n", "max_num_seqs"),
            ("max_num_seqs = 257\n", "max_num_seqs"),
            ("max_num_seqs = 8\nmax_queued = 4\n", "max_queued"),
            ("max_queued = 100000\n", "max_queued"),
        ] {
            let err = parse(text).unwrap_or_else(|e| panic!("{e}")).validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
