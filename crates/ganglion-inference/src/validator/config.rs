//! The validator's TOML file and command-line overrides ([`ValidatorFile`]), resolved into a
//! [`ValidatorConfig`] and a [`ReferenceSpec`] (which model to verify with, and how).
//!
//! ```toml
//! netuid = 1
//!
//! [neuron]
//! epoch_length = 360          # blocks between weight settings
//! sample_size = 48            # miners per step
//! data_dir = "/var/lib/ganglion/validator"
//! timeout_secs = 120          # whole response
//! first_token_timeout_secs = 30
//! min_tokens = 64             # max_tokens is drawn in [min_tokens, max_tokens]
//! max_tokens = 256
//! step_interval_secs = 2
//! vary_prompts = true
//! vpermit_tao_limit = 4096
//!
//! [models]
//! mode = "default"            # default | config | endpoint
//! file = "models.txt"
//! endpoint = "https://example.org/models"
//!
//! [verify]
//! mode = "logprob"            # logprob | ground-truth
//! model = "smollm2"           # known name or GGUF path (tokenizer, and weights if local)
//! model_name = "smollm2"      # the name miners serve it under
//! upstream = "http://127.0.0.1:8000/v1"   # verify through this server instead of in-process
//! require_token_ids = true
//! require_usage = true
//!
//! [database]
//! url = "postgres://user:pw@host/db"      # default: sqlite in data_dir
//!
//! [metrics]
//! host = "127.0.0.1"
//! port = 9100
//!
//! [organic]
//! host = "127.0.0.1"
//! port = 8200
//! api_keys = ["sk-…"]
//! verify_fraction = 0.25
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::RAO_PER_TAO;
use ganglion_core::keys::Keypair;
use ganglion_engine::Engine;
use serde::Deserialize;

use super::{ModelSource, RecordsTarget, ValidatorConfig};
use crate::error::{InferenceError, Result};
use crate::organic::OrganicConfig;
use crate::reference::{LocalReference, Reference, UpstreamReference};
use crate::verify::VerifyMode;

/// `[neuron]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct NeuronFile {
    pub epoch_length: Option<u64>,
    pub sample_size: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub timeout_secs: Option<f64>,
    pub first_token_timeout_secs: Option<f64>,
    pub connect_timeout_secs: Option<f64>,
    pub min_tokens: Option<u32>,
    pub max_tokens: Option<u32>,
    pub step_interval_secs: Option<f64>,
    pub vary_prompts: Option<bool>,
    pub vpermit_tao_limit: Option<f64>,
    pub window: Option<usize>,
}

/// `[models]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ModelsFile {
    pub mode: Option<String>,
    pub file: Option<PathBuf>,
    pub endpoint: Option<String>,
}

/// `[verify]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct VerifyFile {
    pub mode: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub upstream: Option<String>,
    pub api_key: Option<String>,
    pub require_token_ids: Option<bool>,
    pub require_usage: Option<bool>,
}

/// `[database]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DatabaseFile {
    pub url: Option<String>,
    pub disabled: Option<bool>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MetricsFile {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
}

/// `[organic]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct OrganicFile {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub api_keys: Option<Vec<String>>,
    pub verify_fraction: Option<f64>,
}

/// The validator's TOML file; also the shape of command-line overrides.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ValidatorFile {
    pub netuid: Option<u16>,
    #[serde(default)]
    pub neuron: NeuronFile,
    #[serde(default)]
    pub models: ModelsFile,
    #[serde(default)]
    pub verify: VerifyFile,
    #[serde(default)]
    pub database: DatabaseFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    #[serde(default)]
    pub organic: OrganicFile,
}

/// Which model the validator verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceSpec {
    /// Known model name (`smollm2`) or GGUF path: the tokenizer, and the weights when local.
    pub model: String,
    /// The name miners serve it under.
    pub model_name: String,
    /// Verify through this OpenAI-compatible server (with `prompt_logprobs`) instead.
    pub upstream: Option<String>,
    /// Its API key.
    pub api_key: Option<String>,
}

impl ReferenceSpec {
    /// Loads the model and builds the reference (in-process, or through the upstream).
    pub async fn build(&self, timeout: Duration) -> Result<Arc<dyn Reference>> {
        let dir = ganglion_engine::store::models_dir()?;
        let path = ganglion_engine::store::resolve_model(&self.model, &dir)?;
        let engine = tokio::task::spawn_blocking(move || Engine::load(&path))
            .await
            .map_err(|e| InferenceError::Reference(format!("loading task failed: {e}")))??;
        let engine = Arc::new(engine);
        Ok(match &self.upstream {
            Some(url) => Arc::new(UpstreamReference::new(url, self.api_key.clone(), self.model_name.clone(), engine, timeout)?),
            None => Arc::new(LocalReference::new(engine, self.model_name.clone())),
        })
    }
}

fn pick<T>(over: Option<T>, base: Option<T>) -> Option<T> {
    over.or(base)
}

fn secs(value: Option<f64>, default: Duration, what: &str) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        Some(v) => Err(InferenceError::Config(format!("{what} must be between 0 and 86400 seconds, got {v}"))),
    }
}

impl ValidatorFile {
    /// Reads and parses a TOML file.
    pub fn from_path(path: &Path) -> Result<ValidatorFile> {
        let text = std::fs::read_to_string(path).map_err(|e| InferenceError::ConfigFile { path: path.into(), reason: e.to_string() })?;
        toml::from_str(&text).map_err(|e| InferenceError::ConfigFile { path: path.into(), reason: e.to_string() })
    }

    /// `over` wins field by field.
    pub fn merge(self, over: ValidatorFile) -> ValidatorFile {
        let (n, o) = (self.neuron, over.neuron);
        ValidatorFile {
            netuid: pick(over.netuid, self.netuid),
            neuron: NeuronFile {
                epoch_length: pick(o.epoch_length, n.epoch_length),
                sample_size: pick(o.sample_size, n.sample_size),
                data_dir: pick(o.data_dir, n.data_dir),
                timeout_secs: pick(o.timeout_secs, n.timeout_secs),
                first_token_timeout_secs: pick(o.first_token_timeout_secs, n.first_token_timeout_secs),
                connect_timeout_secs: pick(o.connect_timeout_secs, n.connect_timeout_secs),
                min_tokens: pick(o.min_tokens, n.min_tokens),
                max_tokens: pick(o.max_tokens, n.max_tokens),
                step_interval_secs: pick(o.step_interval_secs, n.step_interval_secs),
                vary_prompts: pick(o.vary_prompts, n.vary_prompts),
                vpermit_tao_limit: pick(o.vpermit_tao_limit, n.vpermit_tao_limit),
                window: pick(o.window, n.window),
            },
            models: ModelsFile {
                mode: pick(over.models.mode, self.models.mode),
                file: pick(over.models.file, self.models.file),
                endpoint: pick(over.models.endpoint, self.models.endpoint),
            },
            verify: VerifyFile {
                mode: pick(over.verify.mode, self.verify.mode),
                model: pick(over.verify.model, self.verify.model),
                model_name: pick(over.verify.model_name, self.verify.model_name),
                upstream: pick(over.verify.upstream, self.verify.upstream),
                api_key: pick(over.verify.api_key, self.verify.api_key),
                require_token_ids: pick(over.verify.require_token_ids, self.verify.require_token_ids),
                require_usage: pick(over.verify.require_usage, self.verify.require_usage),
            },
            database: DatabaseFile {
                url: pick(over.database.url, self.database.url),
                disabled: pick(over.database.disabled, self.database.disabled),
            },
            metrics: MetricsFile { host: pick(over.metrics.host, self.metrics.host), port: pick(over.metrics.port, self.metrics.port) },
            organic: OrganicFile {
                host: pick(over.organic.host, self.organic.host),
                port: pick(over.organic.port, self.organic.port),
                api_keys: pick(over.organic.api_keys, self.organic.api_keys),
                verify_fraction: pick(over.organic.verify_fraction, self.organic.verify_fraction),
            },
        }
    }

    /// The resolved configuration; `default_data_dir` is used when `neuron.data_dir` is unset.
    pub fn into_config(self, hotkey: Keypair, default_data_dir: PathBuf) -> Result<(ValidatorConfig, ReferenceSpec)> {
        let netuid = self.netuid.ok_or_else(|| InferenceError::Config("no subnet: pass --netuid or set `netuid` in the config file".into()))?;
        let data_dir = self.neuron.data_dir.clone().unwrap_or(default_data_dir);
        let mut c = ValidatorConfig::new(netuid, hotkey, data_dir);
        let n = &self.neuron;
        if let Some(v) = n.epoch_length {
            c.epoch_length = v.max(1);
        }
        if let Some(v) = n.sample_size {
            c.sample_size = v.max(1);
        }
        c.total_timeout = secs(n.timeout_secs, c.total_timeout, "neuron.timeout")?;
        c.first_token_timeout = secs(n.first_token_timeout_secs, c.first_token_timeout, "neuron.first_token_timeout")?;
        c.connect_timeout = secs(n.connect_timeout_secs, c.connect_timeout, "neuron.connect_timeout")?;
        c.step_interval = secs(n.step_interval_secs, c.step_interval, "neuron.step_interval")?;
        if let Some(v) = n.max_tokens {
            c.max_tokens = v.clamp(1, 8192);
        }
        if let Some(v) = n.min_tokens {
            c.min_tokens = v.clamp(1, c.max_tokens);
        }
        c.min_tokens = c.min_tokens.min(c.max_tokens);
        if let Some(v) = n.vary_prompts {
            c.vary_prompts = v;
        }
        if let Some(tao) = n.vpermit_tao_limit {
            if !(tao.is_finite() && tao >= 0.0) {
                return Err(InferenceError::Config(format!("vpermit_tao_limit must be a non-negative number of TAO, got {tao}")));
            }
            c.vpermit_tao_limit_rao = (tao * RAO_PER_TAO as f64) as u64;
        }
        if let Some(w) = n.window {
            c.window = w.max(1);
        }
        c.models = match self.models.mode.as_deref().unwrap_or("default") {
            "default" => ModelSource::Default,
            "config" => ModelSource::Config(self.models.file.clone().unwrap_or_else(|| PathBuf::from("models.txt"))),
            "endpoint" => ModelSource::Endpoint(
                self.models.endpoint.clone().ok_or_else(|| InferenceError::Config("models.mode endpoint needs --models.endpoint URL".into()))?,
            ),
            other => return Err(InferenceError::Config(format!("unknown models.mode `{other}`; use default, config or endpoint"))),
        };
        if let Some(mode) = &self.verify.mode {
            c.verify.mode = mode.parse::<VerifyMode>().map_err(InferenceError::Config)?;
        }
        if let Some(v) = self.verify.require_token_ids {
            c.verify.require_token_ids = v;
        }
        if let Some(v) = self.verify.require_usage {
            c.verify.require_usage = v;
        }
        c.records = match (self.database.disabled.unwrap_or(false), self.database.url) {
            (true, _) => RecordsTarget::Disabled,
            (false, Some(url)) => RecordsTarget::Url(url),
            (false, None) => c.records,
        };
        let metrics_port = self.metrics.port.unwrap_or(9100);
        c.metrics_listen = Some(SocketAddr::new(self.metrics.host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), metrics_port));
        if let Some(port) = self.organic.port {
            let keys: Vec<String> = self.organic.api_keys.unwrap_or_default().into_iter().filter(|k| !k.trim().is_empty()).collect();
            if keys.is_empty() {
                return Err(InferenceError::Config("the organic endpoint needs at least one API key (--organic.api_keys)".into()));
            }
            let mut organic = OrganicConfig::new(SocketAddr::new(self.organic.host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), port), keys);
            if let Some(f) = self.organic.verify_fraction {
                if !(0.0..=1.0).contains(&f) {
                    return Err(InferenceError::Config(format!("organic.verify_fraction must be in [0, 1], got {f}")));
                }
                organic.verify_fraction = f;
            }
            c.organic = Some(organic);
        }
        let model = self.verify.model.unwrap_or_else(|| "smollm2".into());
        let model_name = self.verify.model_name.unwrap_or_else(|| model.clone());
        let spec = ReferenceSpec { model, model_name, upstream: self.verify.upstream, api_key: self.verify.api_key };
        Ok((c, spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_with_overrides_and_checks_values() {
        let file: ValidatorFile = toml::from_str(
            r#"
            netuid = 2
            [neuron]
            epoch_length = 20
            max_tokens = 32
            min_tokens = 100
            [verify]
            mode = "ground-truth"
            [organic]
            port = 8200
            api_keys = ["k1"]
            "#,
        )
        .unwrap();
        let over = ValidatorFile { neuron: NeuronFile { sample_size: Some(4), ..Default::default() }, ..Default::default() };
        let (c, spec) = file.merge(over).into_config(Keypair::from_uri("//V").unwrap(), PathBuf::from("/tmp/v")).unwrap();
        assert_eq!((c.netuid, c.epoch_length, c.sample_size, c.max_tokens, c.min_tokens), (2, 20, 4, 32, 32));
        assert_eq!(c.verify.mode, VerifyMode::GroundTruth);
        assert_eq!(c.organic.as_ref().map(|o| o.listen.port()), Some(8200));
        assert_eq!(spec.model_name, "smollm2");
        assert_eq!(c.records, RecordsTarget::Url("sqlite:/tmp/v/records.db".into()));

        let no_keys = ValidatorFile { netuid: Some(1), organic: OrganicFile { port: Some(1), ..Default::default() }, ..Default::default() };
        assert!(no_keys.into_config(Keypair::from_uri("//V").unwrap(), PathBuf::from("/tmp")).is_err());
        let bad_mode = ValidatorFile { netuid: Some(1), verify: VerifyFile { mode: Some("vibes".into()), ..Default::default() }, ..Default::default() };
        assert!(bad_mode.into_config(Keypair::from_uri("//V").unwrap(), PathBuf::from("/tmp")).unwrap_err().to_string().contains("vibes"));
    }
}
