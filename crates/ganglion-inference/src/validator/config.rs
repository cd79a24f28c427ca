//! The validator's TOML file and command-line overrides ([`ValidatorFile`]), layered by the
//! runtime's one rule ([`ganglion_neuron::config::load`]: the file, then environment
//! variables and flags as an [`Overrides`] table, deserialised once, unknown keys refused),
//! resolved into a [`ValidatorConfig`] and a [`ReferenceSpec`] (which model to verify
//! with, and how). Durations carry units (`"120s"`, `"500ms"`, `"2m"`).
//!
//! ```toml
//! netuid = 1
//!
//! [neuron]                    # the runtime's keys (data_dir, epoch_length,
//! epoch_length = 360          #   sync_interval, version_key) and this subnet's
//! data_dir = "/var/lib/ganglion/validator"
//! sample_size = 256           # miners per round (all of a full subnet)
//! concurrency = 4             # requests in flight per sampled miner during a round (1–8)
//! round_window = "20s"        # how long a round sends requests; scores are verified
//!                             #   tokens delivered within it per second
//! max_requests = 32           # requests per miner and round at most
//! timeout = "120s"            # whole response
//! first_token_timeout = "30s"
//! connect_timeout = "5s"
//! min_tokens = 64             # max_tokens is drawn in [min_tokens, max_tokens]
//! max_tokens = 256
//! step_interval = "2s"
//! vary_prompts = true
//! vpermit_tao_limit = 4096
//! window = 30
//! score_ttl = "1h"            # results older than this leave the windows
//! models_refresh = "10m"
//!
//! [models]
//! mode = "default"            # default | config | endpoint
//! file = "models.txt"
//! endpoint = "https://example.org/models"
//!
//! [verify]
//! mode = "logprob"            # logprob | ground-truth
//! model = "smollm2"           # known name or GGUF path (tokenizer, and weights if local);
//!                             #   a list verifies several: ["smollm2", "gemma3-270m"]
//! model_name = "smollm2"      # the name miners serve it under (one model only)
//! upstream = "http://127.0.0.1:8000/v1"   # verify through this server instead of in-process
//! require_token_ids = true
//! require_usage = true
//! margin = 1.0                # nats a token may sit beyond the support's edge (numerics)
//! alpha = 1e-4                # false-positive budget per response of the statistical tests
//! miner_alpha = 1e-4          # ... and over each miner's accumulated history
//!
//! [[verify.models]]           # instead of model/model_name/upstream: one table per model,
//! model = "gemma3-270m"       #   each request verified by the reference of its model name
//! model_name = "gemma3-270m"
//! upstream = "http://127.0.0.1:8001/v1"
//! api_key = "…"
//!
//! [database]
//! url = "postgres://user:pw@host/db"      # default: sqlite in data_dir
//! disabled = false
//!
//! [metrics]                   # the runtime's [metrics]: /metrics and /status
//! host = "127.0.0.1"
//! port = 9100                 # default 9100 for the validator
//!
//! [organic]
//! host = "127.0.0.1"
//! port = 8200
//! api_keys = ["sk-…"]
//! verify_fraction = 0.25
//!
//! [tls]
//! ca_file = "/etc/ganglion/ca.pem"   # trusted for https:// verify.upstream and models.endpoint
//! cert = "/etc/ganglion/organic.pem" # with key: the organic endpoint serves HTTPS
//! key = "/etc/ganglion/organic.key"
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::RAO_PER_TAO;
use ganglion_core::keys::Keypair;
use ganglion_engine::Engine;
use ganglion_engine::tokenizer::Tokenizer;
use ganglion_neuron::config::{MetricsConfig, NeuronConfig, Overrides, check_duration};
use serde::{Deserialize, Serialize};

use super::{ModelSource, RecordsTarget, ValidatorConfig};
use crate::error::{InferenceError, Result};
use crate::organic::OrganicConfig;
use crate::reference::{LocalReference, Reference, UpstreamReference};
use crate::verify::VerifyMode;

/// `[neuron]`: the runtime's keys ([`NeuronConfig`]: `data_dir`, `epoch_length`,
/// `sync_interval`, `version_key`, with its defaults and checks, see [`NeuronFile::base`])
/// and this subnet's. (Not a flattened `NeuronConfig`: serde's `flatten` would let unknown
/// keys through silently.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuronFile {
    /// State directory (scores, status, default records store).
    pub data_dir: Option<PathBuf>,
    /// Blocks between weight settings (raised to the chain's `weights_rate_limit`).
    pub epoch_length: u64,
    /// How often the metagraph is synced (the validator syncs before every step).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// `version_key` sent with weights (default: the runtime's).
    pub version_key: Option<u64>,
    /// Miners per round (256: every miner of a full subnet). Fewer lets a machine behind
    /// several hotkeys be measured for each of them alone, in different rounds.
    pub sample_size: usize,
    /// Requests in flight per sampled miner during a round (1–8).
    pub concurrency: usize,
    /// How long a round sends requests.
    #[serde(with = "humantime_serde")]
    pub round_window: Duration,
    /// Requests per miner and round at most.
    pub max_requests: usize,
    /// Deadline for a whole response.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deadline for the first token.
    #[serde(with = "humantime_serde")]
    pub first_token_timeout: Duration,
    /// TCP connect deadline.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Smallest `max_tokens` drawn.
    pub min_tokens: u32,
    /// Largest `max_tokens` drawn.
    pub max_tokens: u32,
    /// Shortest time between the starts of two steps.
    #[serde(with = "humantime_serde")]
    pub step_interval: Duration,
    /// Reword the seed instructions with the reference model.
    pub vary_prompts: bool,
    /// Validator-permit holders with more stake (TAO) are not queried.
    pub vpermit_tao_limit: f64,
    /// Score window per model.
    pub window: usize,
    /// Results older than this leave the score windows.
    #[serde(with = "humantime_serde")]
    pub score_ttl: Duration,
    /// How often the model list and the miners' served models are refreshed.
    #[serde(with = "humantime_serde")]
    pub models_refresh: Duration,
}

impl NeuronFile {
    /// The runtime's `[neuron]` section of this one.
    pub fn base(&self) -> NeuronConfig {
        NeuronConfig { data_dir: self.data_dir.clone(), epoch_length: self.epoch_length, sync_interval: self.sync_interval, version_key: self.version_key }
    }
}

impl Default for NeuronFile {
    fn default() -> Self {
        let base = NeuronConfig::default();
        NeuronFile {
            data_dir: base.data_dir,
            epoch_length: base.epoch_length,
            sync_interval: base.sync_interval,
            version_key: base.version_key,
            sample_size: 256,
            concurrency: 4,
            round_window: Duration::from_secs(20),
            max_requests: 32,
            timeout: Duration::from_secs(120),
            first_token_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            min_tokens: 64,
            max_tokens: 256,
            step_interval: Duration::from_secs(2),
            vary_prompts: true,
            vpermit_tao_limit: 4096.0,
            window: 30,
            score_ttl: Duration::from_secs(3600),
            models_refresh: Duration::from_secs(600),
        }
    }
}

/// `[models]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsFile {
    /// `default` | `config` | `endpoint`.
    pub mode: String,
    /// The list for `config` (default `models.txt`).
    pub file: Option<PathBuf>,
    /// The URL for `endpoint`.
    pub endpoint: Option<String>,
}

impl Default for ModelsFile {
    fn default() -> Self {
        ModelsFile { mode: "default".into(), file: None, endpoint: None }
    }
}

/// `verify.model`: one name or path, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelList {
    /// One model.
    One(String),
    /// Several models, each verified in-process under its own name.
    Many(Vec<String>),
}

/// One `[[verify.models]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyModelFile {
    /// Known model name or GGUF path.
    pub model: String,
    /// The name miners serve it under (default: `model`).
    pub model_name: Option<String>,
    /// Verify it through this OpenAI-compatible server.
    pub upstream: Option<String>,
    /// Its API key.
    pub api_key: Option<String>,
}

/// `[verify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyFile {
    /// `logprob` | `ground-truth`.
    pub mode: String,
    /// Known model name or GGUF path, or a list (default `smollm2` when `models` is empty).
    pub model: Option<ModelList>,
    /// One table per verified model (instead of `model`).
    pub models: Vec<VerifyModelFile>,
    /// The name miners serve it under (default: `model`).
    pub model_name: Option<String>,
    /// Verify through this OpenAI-compatible server.
    pub upstream: Option<String>,
    /// Its API key.
    pub api_key: Option<String>,
    /// Require `token_id:<id>` tokens.
    pub require_token_ids: bool,
    /// Require a `usage` object.
    pub require_usage: bool,
    /// Logit margin beyond the support's edge (nats).
    pub margin: f32,
    /// Per-response false-positive budget of the statistical tests.
    pub alpha: f64,
    /// False-positive budget over each miner's accumulated history.
    pub miner_alpha: f64,
}

impl Default for VerifyFile {
    fn default() -> Self {
        VerifyFile {
            mode: VerifyMode::Logprob.name().into(),
            model: None,
            models: Vec::new(),
            model_name: None,
            upstream: None,
            api_key: None,
            require_token_ids: true,
            margin: 1.0,
            alpha: 1e-4,
            miner_alpha: 1e-4,
            require_usage: true,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseFile {
    /// `sqlite:PATH` or `postgres://…` (default: sqlite in the data dir).
    pub url: Option<String>,
    /// Keep no records.
    pub disabled: bool,
}

/// `[organic]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrganicFile {
    /// Address (loopback by default).
    pub host: IpAddr,
    /// Port; `None`: no organic endpoint.
    pub port: Option<u16>,
    /// Accepted API keys.
    pub api_keys: Vec<String>,
    /// Share of organic answers verified.
    pub verify_fraction: f64,
}

impl Default for OrganicFile {
    fn default() -> Self {
        OrganicFile { host: IpAddr::V4(Ipv4Addr::LOCALHOST), port: None, api_keys: Vec::new(), verify_fraction: 0.25 }
    }
}

/// The validator's TOML file (and, through [`Overrides`], its flags and env vars).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorFile {
    /// Subnet.
    pub netuid: Option<u16>,
    /// `[neuron]`.
    pub neuron: NeuronFile,
    /// `[models]`.
    pub models: ModelsFile,
    /// `[verify]`.
    pub verify: VerifyFile,
    /// `[database]`.
    pub database: DatabaseFile,
    /// `[metrics]` (the runtime's section).
    pub metrics: MetricsConfig,
    /// `[organic]`.
    pub organic: OrganicFile,
    /// `[tls]`: `ca_file` for the validator's https:// clients, `cert` and `key` for the
    /// organic endpoint.
    pub tls: ganglion_tls::TlsSection,
}

/// Port of `/metrics` and `/status` when `[metrics] port` is unset.
pub const DEFAULT_METRICS_PORT: u16 = 9100;

/// A model the validator verifies with (one per model name it verifies).
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
    /// How an `https://` upstream is verified.
    pub tls: ganglion_tls::ClientTls,
}

impl VerifyFile {
    /// One [`ReferenceSpec`] per verified model: `[[verify.models]]`, or `model` (one name
    /// with `model_name`/`upstream`/`api_key`, or a list verified in-process under their own
    /// names), or `smollm2`. Two references for one model name are refused.
    pub fn reference_specs(&self, tls: &ganglion_tls::ClientTls) -> Result<Vec<ReferenceSpec>> {
        let bad = |m: String| Err(InferenceError::Config(m));
        let single_keys = self.model_name.is_some() || self.upstream.is_some() || self.api_key.is_some();
        let tables: Vec<VerifyModelFile> = match (&self.model, self.models.is_empty()) {
            (Some(_), false) => return bad("set either verify.model or [[verify.models]], not both".into()),
            (_, false) if single_keys => {
                return bad("verify.model_name, verify.upstream and verify.api_key belong in each [[verify.models]] table".into());
            }
            (_, false) => self.models.clone(),
            (Some(ModelList::Many(names)), true) => {
                if single_keys && names.len() != 1 {
                    return bad(format!(
                        "verify.model lists {} models; give each its model_name/upstream/api_key in a [[verify.models]] table",
                        names.len()
                    ));
                }
                names
                    .iter()
                    .map(|n| VerifyModelFile {
                        model: n.clone(),
                        model_name: self.model_name.clone(),
                        upstream: self.upstream.clone(),
                        api_key: self.api_key.clone(),
                    })
                    .collect()
            }
            (one, true) => {
                let model = match one {
                    Some(ModelList::One(m)) => m.clone(),
                    _ => "smollm2".into(),
                };
                vec![VerifyModelFile { model, model_name: self.model_name.clone(), upstream: self.upstream.clone(), api_key: self.api_key.clone() }]
            }
        };
        if tables.is_empty() {
            return bad("verify.model is an empty list; name at least one model".into());
        }
        let mut specs: Vec<ReferenceSpec> = Vec::with_capacity(tables.len());
        for t in tables {
            if t.model.trim().is_empty() {
                return bad("verify.model: an empty model name".into());
            }
            let model_name = t.model_name.unwrap_or_else(|| t.model.clone());
            if specs.iter().any(|s| s.model_name == model_name) {
                return bad(format!("two verification models are served as `{model_name}`; give each its own model_name"));
            }
            specs.push(ReferenceSpec { model: t.model, model_name, upstream: t.upstream, api_key: t.api_key, tls: tls.clone() });
        }
        Ok(specs)
    }
}

impl ReferenceSpec {
    /// Loads the model and builds the reference (in-process, or through the upstream).
    pub async fn build(&self, timeout: Duration) -> Result<Arc<dyn Reference>> {
        let dir = ganglion_engine::store::models_dir()?;
        let path = ganglion_engine::store::resolve_model(&self.model, &dir)?;
        let failed = |e: tokio::task::JoinError| InferenceError::Reference(format!("loading task failed: {e}"));
        Ok(match &self.upstream {
            Some(url) => {
                // The upstream holds the weights: only the tokenizer comes from the file.
                let header = path.clone();
                let (tokenizer, context) =
                    tokio::task::spawn_blocking(move || Tokenizer::from_gguf_with_context(&header)).await.map_err(failed)??;
                let context = context.ok_or_else(|| {
                    InferenceError::Config(format!("{} states no context length (`<architecture>.context_length`)", path.display()))
                })?;
                Arc::new(UpstreamReference::with_tls(url, self.api_key.clone(), self.model_name.clone(), Arc::new(tokenizer), context, timeout, &self.tls)?)
            }
            None => {
                let engine = tokio::task::spawn_blocking(move || Engine::load(&path)).await.map_err(failed)??;
                Arc::new(LocalReference::new(Arc::new(engine), self.model_name.clone()))
            }
        })
    }
}

impl ValidatorFile {
    /// The file (if any) with `overrides` (flags, env) laid over it.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<ValidatorFile> {
        Ok(ganglion_neuron::config::load(file, overrides)?)
    }

    /// The resolved configuration; `default_data_dir` is used when `neuron.data_dir` is unset.
    pub fn into_config(self, hotkey: Keypair, default_data_dir: PathBuf) -> Result<(ValidatorConfig, Vec<ReferenceSpec>)> {
        let netuid = self.netuid.ok_or_else(|| InferenceError::Config("no subnet: pass --netuid or set `netuid` in the config file".into()))?;
        let n = &self.neuron;
        let base = n.base();
        base.validate()?;
        let day = Duration::from_secs(86_400);
        check_duration("neuron.timeout", n.timeout, Duration::from_millis(1), day)?;
        check_duration("neuron.first_token_timeout", n.first_token_timeout, Duration::from_millis(1), day)?;
        check_duration("neuron.connect_timeout", n.connect_timeout, Duration::from_millis(1), day)?;
        check_duration("neuron.step_interval", n.step_interval, Duration::ZERO, day)?;
        check_duration("neuron.models_refresh", n.models_refresh, Duration::from_secs(1), day)?;
        check_duration("neuron.score_ttl", n.score_ttl, Duration::from_secs(1), Duration::from_secs(30 * 86_400))?;
        let v = &self.verify;
        if !(v.margin.is_finite() && (0.0..=5.0).contains(&v.margin)) {
            return Err(InferenceError::Config(format!("verify.margin must be between 0 and 5 nats, got {}", v.margin)));
        }
        for (key, a) in [("verify.alpha", v.alpha), ("verify.miner_alpha", v.miner_alpha)] {
            if !(a > 0.0 && a < 0.5) {
                return Err(InferenceError::Config(format!("{key} must be a probability in (0, 0.5), got {a}")));
            }
        }
        let data_dir = base.data_dir.clone().unwrap_or(default_data_dir);
        let mut c = ValidatorConfig::new(netuid, hotkey, data_dir);
        c.tls = self.tls.client()?;
        let server_tls = self.tls.server()?;
        if server_tls.is_some() && self.organic.port.is_none() {
            return Err(InferenceError::Config("tls.cert and tls.key serve the organic endpoint over HTTPS: set organic.port too".into()));
        }
        c.epoch_length = base.epoch_length.max(1);
        c.version_key = base.version_key;
        c.sample_size = n.sample_size.max(1);
        if !(1..=8).contains(&n.concurrency) {
            return Err(InferenceError::Config(format!(
                "neuron.concurrency must be between 1 and 8 (a default miner admits 8 concurrent requests per caller), got {}",
                n.concurrency
            )));
        }
        check_duration("neuron.round_window", n.round_window, Duration::from_secs(1), Duration::from_secs(600))?;
        if !(n.concurrency..=1024).contains(&n.max_requests) {
            return Err(InferenceError::Config(format!("neuron.max_requests must be between neuron.concurrency ({}) and 1024, got {}", n.concurrency, n.max_requests)));
        }
        c.concurrency = n.concurrency;
        c.round_window = n.round_window;
        c.max_requests = n.max_requests;
        c.total_timeout = n.timeout;
        c.first_token_timeout = n.first_token_timeout;
        c.connect_timeout = n.connect_timeout;
        c.step_interval = n.step_interval;
        c.models_refresh = n.models_refresh;
        c.score_ttl = n.score_ttl;
        c.max_tokens = n.max_tokens.clamp(1, 8192);
        c.min_tokens = n.min_tokens.clamp(1, c.max_tokens);
        c.vary_prompts = n.vary_prompts;
        if !(n.vpermit_tao_limit.is_finite() && n.vpermit_tao_limit >= 0.0) {
            return Err(InferenceError::Config(format!("vpermit_tao_limit must be a non-negative number of TAO, got {}", n.vpermit_tao_limit)));
        }
        c.vpermit_tao_limit_rao = (n.vpermit_tao_limit * RAO_PER_TAO as f64) as u64;
        c.window = n.window.max(1);
        c.models = match self.models.mode.as_str() {
            "default" => ModelSource::Default,
            "config" => ModelSource::Config(self.models.file.clone().unwrap_or_else(|| PathBuf::from("models.txt"))),
            "endpoint" => ModelSource::Endpoint(
                self.models.endpoint.clone().ok_or_else(|| InferenceError::Config("models.mode endpoint needs --models.endpoint URL".into()))?,
            ),
            other => return Err(InferenceError::Config(format!("unknown models.mode `{other}`; use default, config or endpoint"))),
        };
        c.verify.mode = self.verify.mode.parse::<VerifyMode>().map_err(InferenceError::Config)?;
        c.verify.require_token_ids = self.verify.require_token_ids;
        c.verify.require_usage = self.verify.require_usage;
        c.verify.logprob.margin = self.verify.margin;
        c.verify.logprob.alpha = self.verify.alpha;
        c.miner_alpha = self.verify.miner_alpha;
        c.records = match (self.database.disabled, self.database.url) {
            (true, _) => RecordsTarget::Disabled,
            (false, Some(url)) => RecordsTarget::Url(url),
            (false, None) => c.records,
        };
        c.metrics_listen = Some(self.metrics.listen().unwrap_or(SocketAddr::new(self.metrics.host, DEFAULT_METRICS_PORT)));
        if let Some(port) = self.organic.port {
            let keys: Vec<String> = self.organic.api_keys.into_iter().filter(|k| !k.trim().is_empty()).collect();
            if keys.is_empty() {
                return Err(InferenceError::Config("the organic endpoint needs at least one API key (--organic.api_keys)".into()));
            }
            let mut organic = OrganicConfig::new(SocketAddr::new(self.organic.host, port), keys);
            let f = self.organic.verify_fraction;
            if !(0.0..=1.0).contains(&f) {
                return Err(InferenceError::Config(format!("organic.verify_fraction must be in [0, 1], got {f}")));
            }
            organic.verify_fraction = f;
            organic.tls = server_tls;
            c.organic = Some(organic);
        }
        let specs = self.verify.reference_specs(&c.tls)?;
        Ok((c, specs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("validator.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn resolves_with_overrides_and_checks_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            r#"
            netuid = 2
            [neuron]
            epoch_length = 20
            max_tokens = 32
            min_tokens = 100
            timeout = "90s"
            [verify]
            mode = "ground-truth"
            [organic]
            port = 8200
            api_keys = ["k1"]
            "#,
        );
        let mut over = Overrides::new();
        over.set("neuron.sample_size", Some(4i64)).duration("neuron.first_token_timeout", Some(Duration::from_millis(1500)));
        let (c, spec) = ValidatorFile::load(Some(&path), &over).unwrap().into_config(Keypair::from_uri("//V").unwrap(), PathBuf::from("/tmp/v")).unwrap();
        assert_eq!((c.netuid, c.epoch_length, c.sample_size, c.max_tokens, c.min_tokens), (2, 20, 4, 32, 32));
        assert_eq!((c.total_timeout, c.first_token_timeout), (Duration::from_secs(90), Duration::from_millis(1500)));
        assert_eq!(c.verify.mode, VerifyMode::GroundTruth);
        assert_eq!(c.organic.as_ref().map(|o| o.listen.port()), Some(8200));
        assert_eq!(spec.iter().map(|s| s.model_name.as_str()).collect::<Vec<_>>(), ["smollm2"], "the default model");
        assert_eq!(c.records, RecordsTarget::Url("sqlite:/tmp/v/records.db".into()));
        assert_eq!(c.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_METRICS_PORT))));

        let keypair = || Keypair::from_uri("//V").unwrap();
        let no_keys = ValidatorFile { netuid: Some(1), organic: OrganicFile { port: Some(1), ..Default::default() }, ..Default::default() };
        assert!(no_keys.into_config(keypair(), PathBuf::from("/tmp")).is_err());
        let bad_mode = ValidatorFile { netuid: Some(1), verify: VerifyFile { mode: "vibes".into(), ..Default::default() }, ..Default::default() };
        assert!(bad_mode.into_config(keypair(), PathBuf::from("/tmp")).unwrap_err().to_string().contains("vibes"));
        for (concurrency, max_requests, window, ok) in [(0, 8, 20, false), (1, 1, 1, true), (8, 8, 600, true), (9, 32, 20, false), (4, 3, 20, false), (4, 1025, 20, false), (4, 32, 0, false), (4, 32, 601, false)] {
            let neuron = NeuronFile { concurrency, max_requests, round_window: Duration::from_secs(window), ..Default::default() };
            let file = ValidatorFile { netuid: Some(1), neuron, ..Default::default() };
            match file.into_config(keypair(), PathBuf::from("/tmp")) {
                Ok((c, _)) => assert!(ok && (c.concurrency, c.max_requests, c.round_window) == (concurrency, max_requests, Duration::from_secs(window))),
                Err(e) => assert!(!ok && e.to_string().contains("neuron."), "{concurrency} {max_requests} {window}: {e}"),
            }
        }
        assert_eq!((c.concurrency, c.round_window, c.max_requests), (4, Duration::from_secs(20), 32), "the defaults");
        // Unknown keys, in the subnet's part of [neuron] or the runtime's, and bad units are refused.
        for bad in ["[neuron]\nsample_sise = 3\n", "[neuron]\nepoch_lenght = 3\n", "[neuron]\ntimeout = \"12 parsecs\"\n", "[database]\nurl = 3\n", "[neuron]\ntimeout_secs = 3\n"] {
            let path = file(dir.path(), bad);
            assert!(ValidatorFile::load(Some(&path), &Overrides::new()).is_err(), "{bad}");
        }
        // The runtime's [neuron] keys make the runtime's section.
        let path = file(dir.path(), "netuid = 1\n[neuron]\nversion_key = 7\nsync_interval = \"3s\"\nsample_size = 2\n");
        let loaded = ValidatorFile::load(Some(&path), &Overrides::new()).unwrap();
        let base = loaded.neuron.base();
        assert_eq!((base.version_key, base.sync_interval, base.epoch_length, loaded.neuron.sample_size), (Some(7), Duration::from_secs(3), 360, 2));
        let (c, _) = loaded.into_config(keypair(), PathBuf::from("/tmp")).unwrap();
        assert_eq!(c.version_key, Some(7));
    }

    #[test]
    fn several_models_are_verified_each_by_its_own_reference() {
        let dir = tempfile::tempdir().unwrap();
        let keypair = || Keypair::from_uri("//V").unwrap();
        let specs = |text: &str| {
            let path = file(dir.path(), &format!("netuid = 1\n{text}"));
            ValidatorFile::load(Some(&path), &Overrides::new()).and_then(|f| f.into_config(keypair(), PathBuf::from("/tmp"))).map(|(_, s)| s)
        };
        let names = |s: Vec<ReferenceSpec>| s.into_iter().map(|s| (s.model, s.model_name, s.upstream)).collect::<Vec<_>>();
        // A list: each in-process under its own name.
        let got = names(specs("[verify]\nmodel = [\"smollm2\", \"gemma3-270m\"]\n").unwrap());
        assert_eq!(got, [("smollm2".into(), "smollm2".into(), None), ("gemma3-270m".into(), "gemma3-270m".into(), None)]);
        // Tables: each with its own name and upstream.
        let got = names(
            specs("[[verify.models]]\nmodel = \"smollm2\"\n[[verify.models]]\nmodel = \"/m/g.gguf\"\nmodel_name = \"gemma\"\nupstream = \"http://127.0.0.1:8001/v1\"\n")
                .unwrap(),
        );
        assert_eq!(got[1], ("/m/g.gguf".into(), "gemma".into(), Some("http://127.0.0.1:8001/v1".into())));
        // One model with its name and upstream, as before.
        let got = names(specs("[verify]\nmodel = \"smollm2\"\nmodel_name = \"HuggingFaceTB/SmolLM2-135M\"\n").unwrap());
        assert_eq!(got, [("smollm2".into(), "HuggingFaceTB/SmolLM2-135M".into(), None)]);
        // Ambiguous or contradictory settings are refused, naming the keys.
        for (bad, says) in [
            ("[verify]\nmodel = [\"a\", \"b\"]\nupstream = \"http://x/v1\"\n", "[[verify.models]]"),
            ("[verify]\nmodel = \"a\"\n[[verify.models]]\nmodel = \"b\"\n", "not both"),
            ("[verify]\nmodel = []\n", "empty"),
            ("[[verify.models]]\nmodel = \"a\"\n[[verify.models]]\nmodel = \"b\"\nmodel_name = \"a\"\n", "served as `a`"),
            ("[[verify.models]]\nmodel = \"a\"\nupstreem = \"x\"\n", "upstreem"),
        ] {
            let err = specs(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // The flag form: --verify.model repeated.
        let mut over = Overrides::new();
        over.set("netuid", Some(1i64)).list("verify.model", &["smollm2".to_string(), "gemma3-270m".to_string()]);
        let (_, got) = ValidatorFile::load(None, &over).unwrap().into_config(keypair(), PathBuf::from("/tmp")).unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn tls_section_serves_the_organic_endpoint_and_trusts_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ganglion_tls::testkit::TestPki::new().unwrap();
        let files = pki.write(dir.path()).unwrap();
        let keypair = || Keypair::from_uri("//V").unwrap();
        let tls = format!("[tls]\nca_file = {:?}\ncert = {:?}\nkey = {:?}\n", files.ca.display().to_string(), files.cert.display().to_string(), files.key.display().to_string());
        let organic = "[organic]\nport = 8200\napi_keys = [\"k\"]\n";
        let path = file(dir.path(), &format!("netuid = 1\n[verify]\nupstream = \"https://localhost:1/v1\"\n{organic}{tls}"));
        let (c, spec) = ValidatorFile::load(Some(&path), &Overrides::new()).unwrap().into_config(keypair(), PathBuf::from("/tmp")).unwrap();
        assert_eq!((c.tls.extra_roots(), c.tls.ca_file()), (1, Some(files.ca.as_path())));
        assert_eq!(spec[0].tls, c.tls, "the verification upstream trusts the same CA");
        assert_eq!(c.organic.as_ref().and_then(|o| o.tls.as_ref()).map(|t| t.cert_file().to_path_buf()), Some(files.cert.clone()));

        // A certificate without an organic endpoint to serve, a key without its certificate,
        // and a CA file that is not one: refused, naming what is wrong.
        let path = file(dir.path(), &format!("netuid = 1\n{tls}"));
        let err = ValidatorFile::load(Some(&path), &Overrides::new()).unwrap().into_config(keypair(), PathBuf::from("/tmp")).unwrap_err();
        assert!(err.to_string().contains("organic.port"), "{err}");
        let path = file(dir.path(), &format!("netuid = 1\n{organic}[tls]\nkey = {:?}\n", files.key.display().to_string()));
        let err = ValidatorFile::load(Some(&path), &Overrides::new()).unwrap().into_config(keypair(), PathBuf::from("/tmp")).unwrap_err();
        assert!(err.to_string().contains("tls.cert"), "{err}");
        let path = file(dir.path(), &format!("netuid = 1\n[tls]\nca_file = {:?}\n", files.key.display().to_string()));
        let err = ValidatorFile::load(Some(&path), &Overrides::new()).unwrap().into_config(keypair(), PathBuf::from("/tmp")).unwrap_err();
        assert!(err.to_string().contains("server.key"), "{err}");
    }
}
