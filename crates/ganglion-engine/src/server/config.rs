//! The TOML configuration of `ganglion engine serve`: one key per flag (the flag's name
//! without `--`, `-` written `_`).
//!
//! ```toml
//! model = "smollm2"              # a known model name or a path to a llama GGUF file
//! served_model_name = "smollm2"  # default: `model`
//! host = "127.0.0.1"
//! port = 8000
//! api_key = "…"                  # default: no key (also $GANGLION_ENGINE_API_KEY)
//! ```
//!
//! The binary lays its flags and environment variables over the file and deserialises the
//! result into [`ServeConfig`]; [`ServeConfig::validate`] then checks the values.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::ServerConfig;

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
}

impl Default for ServeConfig {
    /// The flags' defaults: `smollm2` on 127.0.0.1:8000, served under its own name, no key.
    fn default() -> Self {
        ServeConfig { model: "smollm2".into(), served_model_name: None, host: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 8000, api_key: None }
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
        Ok(())
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
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(parse(""), Ok(ServeConfig::default()), "an empty file is the defaults");
        let server = config.server_config();
        assert_eq!((server.model_id.as_str(), server.api_key), ("smollm2", None));
    }

    #[test]
    fn config_file_with_every_key_parses() {
        let text = "model = \"/models/llama.gguf\"\nserved_model_name = \"llama\"\nhost = \"0.0.0.0\"\nport = 8100\napi_key = \"secret\"\n";
        let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config,
            ServeConfig {
                model: "/models/llama.gguf".into(),
                served_model_name: Some("llama".into()),
                host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: 8100,
                api_key: Some("secret".into()),
            }
        );
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
        for (text, key) in [("model = \"\"\n", "model"), ("served_model_name = \" \"\n", "served_model_name"), ("api_key = \"\"\n", "api_key")] {
            let err = parse(text).unwrap_or_else(|e| panic!("{e}")).validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
