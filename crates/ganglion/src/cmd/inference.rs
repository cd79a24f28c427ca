//! `ganglion miner inference`, `ganglion validator inference` and `ganglion bench inference`:
//! flags (mirroring the original's names), wallet loading and the runtime; everything else
//! is `ganglion-inference`. The flags and environment variables become one
//! [`Overrides`] table laid over the `--config` TOML file by the runtime's rule
//! (`ganglion_neuron::config::load`); defaults fill the rest.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ganglion_inference::miner::{self, MinerFile};
use ganglion_inference::validator::{self, ValidatorFile};
use ganglion_neuron::Shutdown;
use ganglion_neuron::config::{Overrides, parse_duration};
use serde_json::json;

use crate::cmd::chain::NetArgs;
use crate::cmd::runtime;
use crate::cmd::toml_int;
use crate::cmd::wallet::WalletArgs;
use crate::cmd::{AccessListArgs, AxonArgs, TlsClientArgs, TlsServerArgs};



/// `ganglion miner inference` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct MinerArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID")]
    netuid: Option<u16>,
    /// TOML config file (`[neuron]`, `[axon]`, `[[models]]`, `[policy]`, `[miner]`, `[tls]`); flags override it.
    #[arg(long, env = "GANGLION_MINER_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    axon: AxonArgs,
    /// One OpenAI-compatible upstream serving every model it lists in /v1/models
    /// (`ganglion engine serve`, vLLM, …); replaces the file's [[models]].
    #[arg(long, env = "GANGLION_UPSTREAM")]
    upstream: Option<String>,
    /// API key for --upstream.
    #[arg(long = "upstream.api_key", env = "GANGLION_UPSTREAM_API_KEY")]
    upstream_api_key: Option<String>,
    /// Requests in flight to --upstream at most.
    #[arg(long = "upstream.max_concurrency", default_value_t = 8)]
    upstream_max_concurrency: usize,
    /// How long to wait for --upstream to come up (it may still be loading its model).
    #[arg(long = "upstream.wait", value_parser = parse_duration, default_value = "60s")]
    upstream_wait: Duration,
    /// Serve callers without a validator permit too (the original's flag).
    #[arg(long = "no-force-validator-permit")]
    no_force_validator_permit: bool,
    /// Minimum stake of callers, in TAO (default 1000).
    #[arg(long = "blacklist.min_stake", env = "GANGLION_MIN_STAKE")]
    min_stake: Option<f64>,
    #[command(flatten)]
    lists: AccessListArgs,
    /// Requests in flight per caller.
    #[arg(long = "miner.max_concurrency_per_caller")]
    per_caller_concurrency: Option<usize>,
    /// How often to refresh the metagraph (caller policy, axon); default 12s.
    #[arg(long = "neuron.sync_interval", alias = "miner.sync_interval", value_parser = parse_duration)]
    sync_interval: Option<Duration>,
    /// Where the miner writes status.json (default: none; /status is served on loopback).
    #[arg(long = "neuron.data_dir", env = "GANGLION_MINER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Deadline for a whole upstream response.
    #[arg(long = "miner.upstream_timeout", value_parser = parse_duration)]
    upstream_timeout: Option<Duration>,
    /// How long in-flight streams may go on after SIGINT/SIGTERM (default 10s).
    #[arg(long = "miner.drain_timeout", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,
    /// Do not publish the axon on chain (it is served by other means).
    #[arg(long = "no-serve-axon")]
    no_serve_axon: bool,
    #[command(flatten)]
    tls: TlsClientArgs,
}

impl MinerArgs {
    fn overrides(&self) -> Overrides {
        let mut over = Overrides::new();
        over.set("netuid", toml_int(self.netuid))
            .set("axon.ip", self.axon.axon_ip.map(|ip| ip.to_string()))
            .set("axon.port", toml_int(self.axon.axon_port))
            .set("axon.external_ip", self.axon.axon_external_ip.map(|ip| ip.to_string()))
            .set("axon.external_port", toml_int(self.axon.axon_external_port))
            .set("axon.serve", self.no_serve_axon.then_some(false))
            .set("policy.force_validator_permit", self.no_force_validator_permit.then_some(false))
            .set("policy.min_stake", self.min_stake)
            .set("miner.per_caller_concurrency", toml_int(self.per_caller_concurrency));
        over.path("neuron.data_dir", self.data_dir.as_ref().map(|p| ganglion_core::wallet::expand_home(p)).as_deref());
        over.duration("neuron.sync_interval", self.sync_interval)
            .duration("miner.upstream_total_timeout", self.upstream_timeout)
            .duration("miner.drain_timeout", self.drain_timeout);
        let lists = &self.lists;
        for (key, list) in [
            ("policy.hotkey_blacklist", &lists.blacklist_hotkeys),
            ("policy.hotkey_whitelist", &lists.whitelist_hotkeys),
            ("policy.coldkey_blacklist", &lists.blacklist_coldkeys),
            ("policy.coldkey_whitelist", &lists.whitelist_coldkeys),
        ] {
            over.list(key, list.as_deref().unwrap_or_default());
        }
        self.tls.apply(&mut over);
        over
    }
}

pub(crate) fn run_miner(args: MinerArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.wallet.wallet()?;
    let hotkey = wallet.hotkey(&args.wallet.passwords()).context("loading the miner's hotkey")?;
    let mut file = MinerFile::load(args.config.as_deref(), &args.overrides())?;
    // A bad CA file is a start-up error naming the file, before anything is contacted.
    let tls = file.tls.client()?;
    let chain = args.net.chain()?;
    runtime()?.block_on(async move {
        let shutdown = Shutdown::on_signal();
        if let Some(url) = &args.upstream {
            let deadline = tokio::time::Instant::now() + args.upstream_wait;
            file.models = loop {
                match miner::upstreams_from_url(url, args.upstream_api_key.clone(), args.upstream_max_concurrency, &tls).await {
                    Ok(found) => break found,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::info!(target: "ganglion::miner", "waiting for the upstream: {e}");
                        if shutdown.clone().sleep(Duration::from_secs(1)).await {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
        }
        let config = file.into_config(hotkey)?;
        let handle = miner::start(config, Some(chain), Some(shutdown)).await?;
        if args.net.json {
            println!("{}", json!({"addr": handle.addr().to_string()}));
        } else {
            eprintln!("inference miner listening on http://{}", handle.addr());
        }
        handle.wait().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `ganglion validator inference` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidatorArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID")]
    netuid: Option<u16>,
    /// TOML config file (`[neuron]`, `[models]`, `[verify]`, `[database]`, `[metrics]`, `[organic]`).
    #[arg(long, env = "GANGLION_VALIDATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Blocks between weight settings (default 360; at least the chain's weights_rate_limit).
    #[arg(long = "neuron.epoch_length", env = "GANGLION_EPOCH_LENGTH")]
    epoch_length: Option<u64>,
    /// version_key sent with weights (default: this build's version as the SDK's version_as_int).
    #[arg(long = "neuron.version_key")]
    version_key: Option<u64>,
    /// Miners per round (default 256, every miner of a full subnet; fewer lets a machine
    /// behind several hotkeys be measured for each alone).
    #[arg(long = "neuron.sample_size")]
    sample_size: Option<usize>,
    /// Requests in flight at each sampled miner during a round, 1–8 (default 4): enough
    /// that an honest miner's engine never idles between answers.
    #[arg(long = "neuron.concurrency")]
    concurrency: Option<usize>,
    /// How long a round sends requests (default 20s); a miner scores the verified tokens it
    /// delivered within the window, per second.
    #[arg(long = "neuron.round_window", value_parser = parse_duration)]
    round_window: Option<Duration>,
    /// Requests per miner and round at most (default 32).
    #[arg(long = "neuron.max_requests")]
    max_requests: Option<usize>,
    /// Where scores.json, status.json and the default records database live
    /// (default ~/.ganglion/inference/<wallet>-<hotkey>/netuid<N>).
    #[arg(long = "neuron.data_dir", env = "GANGLION_VALIDATOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Deadline for a whole response (default 120s).
    #[arg(long = "neuron.timeout", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Deadline for the first token (default 30s).
    #[arg(long = "neuron.first_token_timeout", value_parser = parse_duration)]
    first_token_timeout: Option<Duration>,
    /// TCP connect deadline (default 5s).
    #[arg(long = "neuron.connect_timeout", value_parser = parse_duration)]
    connect_timeout: Option<Duration>,
    /// Largest max_tokens drawn (default 256).
    #[arg(long = "neuron.max_tokens")]
    max_tokens: Option<u32>,
    /// Smallest max_tokens drawn (default 64).
    #[arg(long = "neuron.min_tokens")]
    min_tokens: Option<u32>,
    /// Shortest time between two steps (default 2s).
    #[arg(long = "neuron.step_interval", value_parser = parse_duration)]
    step_interval: Option<Duration>,
    /// Validator-permit holders with more stake (TAO) are not queried (default 4096).
    #[arg(long = "neuron.vpermit_tao_limit")]
    vpermit_tao_limit: Option<f64>,
    /// Do not reword the seed instructions with the model.
    #[arg(long = "neuron.no_vary_prompts")]
    no_vary_prompts: bool,
    /// Results older than this leave the score windows, so a miner that stops answering
    /// loses its score (default 1h).
    #[arg(long = "neuron.score_ttl", value_parser = parse_duration)]
    score_ttl: Option<Duration>,
    /// default (the models it verifies) | config (--models.file) | endpoint (--models.endpoint).
    #[arg(long = "models.mode", value_parser = ["default", "config", "endpoint"])]
    models_mode: Option<String>,
    /// Model list for `--models.mode config` (default models.txt).
    #[arg(long = "models.file")]
    models_file: Option<PathBuf>,
    /// URL answering a JSON model list for `--models.mode endpoint`.
    #[arg(long = "models.endpoint")]
    models_endpoint: Option<String>,
    /// logprob (teacher-forced checks, default) | ground-truth (same-seed regeneration).
    #[arg(long = "verify.mode", env = "GANGLION_VERIFY_MODE", value_parser = ["logprob", "ground-truth"])]
    verify_mode: Option<String>,
    /// A model to verify with: a known name (smollm2, gemma3-270m) or a GGUF path. Repeat it
    /// (or separate by commas) to verify several, each request by the reference of its model
    /// name; per-model names and upstreams go in `[[verify.models]]` tables of --config.
    #[arg(long = "verify.model", value_delimiter = ',')]
    verify_model: Vec<String>,
    /// The name miners serve it under (default: --verify.model; one model only).
    #[arg(long = "verify.model_name")]
    verify_model_name: Option<String>,
    /// Verify through this OpenAI-compatible server with prompt_logprobs (vLLM, engine serve).
    #[arg(long = "verify.upstream", env = "GANGLION_VERIFY_UPSTREAM")]
    verify_upstream: Option<String>,
    /// API key of --verify.upstream.
    #[arg(long = "verify.api_key", env = "GANGLION_VERIFY_API_KEY")]
    verify_api_key: Option<String>,
    /// Accept answers without token ids or usage (text-only servers such as llama.cpp's):
    /// the text is re-tokenized and judged, and tokens are counted from it.
    #[arg(long = "verify.allow_text_only")]
    allow_text_only: bool,
    /// Records store: sqlite:PATH or postgres://… (default sqlite in the data dir).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Keep no records.
    #[arg(long = "no-database", conflicts_with = "database_url")]
    no_database: bool,
    /// Address of /metrics and /status (default 127.0.0.1).
    #[arg(long = "metrics.host")]
    metrics_host: Option<IpAddr>,
    /// Port of /metrics and /status (default 9100; 0 picks a free one).
    #[arg(long = "metrics.port", env = "GANGLION_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Serve an OpenAI-compatible endpoint for your own users on this port.
    #[arg(long = "organic.port")]
    organic_port: Option<u16>,
    /// Address of the organic endpoint (default 127.0.0.1).
    #[arg(long = "organic.host")]
    organic_host: Option<IpAddr>,
    /// API keys of the organic endpoint (comma-separated).
    #[arg(long = "organic.api_keys", env = "GANGLION_ORGANIC_API_KEYS", value_delimiter = ',')]
    organic_api_keys: Option<Vec<String>>,
    /// Share of organic answers verified (default 0.25).
    #[arg(long = "organic.verify_fraction")]
    organic_verify_fraction: Option<f64>,
    #[command(flatten)]
    tls: TlsClientArgs,
    // --tls.cert and --tls.key: the organic endpoint serves HTTPS.
    #[command(flatten)]
    tls_server: TlsServerArgs,
}

impl ValidatorArgs {
    fn overrides(&self) -> Overrides {
        let mut over = Overrides::new();
        over.set("netuid", toml_int(self.netuid))
            .set("neuron.epoch_length", toml_int(self.epoch_length))
            .set("neuron.version_key", toml_int(self.version_key))
            .set("neuron.sample_size", toml_int(self.sample_size))
            .set("neuron.concurrency", toml_int(self.concurrency))
            .set("neuron.max_requests", toml_int(self.max_requests))
            .set("neuron.max_tokens", self.max_tokens)
            .set("neuron.min_tokens", self.min_tokens)
            .set("neuron.vpermit_tao_limit", self.vpermit_tao_limit)
            .set("neuron.vary_prompts", self.no_vary_prompts.then_some(false))
            .set("models.mode", self.models_mode.clone())
            .set("models.endpoint", self.models_endpoint.clone())
            .set("verify.mode", self.verify_mode.clone())
            .set("verify.model", (self.verify_model.len() == 1).then(|| self.verify_model[0].clone()))
            .set("verify.model_name", self.verify_model_name.clone())
            .set("verify.upstream", self.verify_upstream.clone())
            .set("verify.api_key", self.verify_api_key.clone())
            .set("verify.require_token_ids", self.allow_text_only.then_some(false))
            .set("verify.require_usage", self.allow_text_only.then_some(false))
            .set("database.url", self.database_url.clone())
            .set("database.disabled", self.no_database.then_some(true))
            .set("metrics.host", self.metrics_host.map(|ip| ip.to_string()))
            .set("metrics.port", toml_int(self.metrics_port))
            .set("organic.host", self.organic_host.map(|ip| ip.to_string()))
            .set("organic.port", toml_int(self.organic_port))
            .set("organic.verify_fraction", self.organic_verify_fraction);
        over.path("neuron.data_dir", self.data_dir.as_ref().map(|p| ganglion_core::wallet::expand_home(p)).as_deref())
            .path("models.file", self.models_file.as_deref())
            .list("organic.api_keys", self.organic_api_keys.as_deref().unwrap_or_default());
        if self.verify_model.len() > 1 {
            over.list("verify.model", &self.verify_model);
        }
        over.duration("neuron.timeout", self.timeout)
            .duration("neuron.round_window", self.round_window)
            .duration("neuron.first_token_timeout", self.first_token_timeout)
            .duration("neuron.connect_timeout", self.connect_timeout)
            .duration("neuron.step_interval", self.step_interval)
            .duration("neuron.score_ttl", self.score_ttl);
        self.tls.apply(&mut over);
        self.tls_server.apply(&mut over);
        over
    }
}

pub(crate) fn run_validator(args: ValidatorArgs) -> anyhow::Result<ExitCode> {
    let wallet = args.wallet.wallet()?;
    let hotkey = wallet.hotkey(&args.wallet.passwords()).context("loading the validator's hotkey")?;
    let file = ValidatorFile::load(args.config.as_deref(), &args.overrides())?;
    let netuid = file.netuid.unwrap_or(0);
    let default_dir = ganglion_core::wallet::expand_home(&PathBuf::from(format!(
        "~/.ganglion/inference/{}-{}/netuid{netuid}",
        args.wallet.name, args.wallet.hotkey
    )));
    let (config, specs) = file.into_config(hotkey, default_dir)?;
    let chain = args.net.chain()?;
    let json_out = args.net.json;
    runtime()?.block_on(async move {
        let shutdown = Shutdown::on_signal();
        let mut references = Vec::with_capacity(specs.len());
        for spec in &specs {
            let reference = spec.build(config.total_timeout).await.with_context(|| format!("loading the verification model `{}`", spec.model))?;
            tracing::info!(target: "ganglion::inference", model = %spec.model_name, upstream = ?spec.upstream, "verification model loaded");
            references.push(reference);
        }
        tracing::info!(target: "ganglion::inference", models = specs.len(), mode = config.verify.mode.name(), data_dir = %config.data_dir.display(), "validator starting");
        let handle = validator::start(config, chain, references, Some(shutdown)).await?;
        let addrs = json!({
            "metrics": handle.metrics_addr().map(|a| a.to_string()),
            "status": handle.metrics_addr().map(|a| format!("http://{a}/status")),
            "organic": handle.organic_addr().map(|a| a.to_string()),
        });
        if json_out {
            println!("{addrs}");
        } else {
            eprintln!("inference validator running: {addrs}");
        }
        handle.wait().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `ganglion bench inference` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Requests per series in the proxy benchmark.
    #[arg(long, default_value_t = 400)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// SSE chunks per response from the fake upstream.
    #[arg(long, default_value_t = 64)]
    chunks: usize,
    /// Also measure the proxy in front of the real engine (requests; 0 to skip).
    #[arg(long = "engine-requests", default_value_t = 8)]
    engine_requests: usize,
    /// Model for the engine figures (`smollm2` or a GGUF path).
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Miners whose answers are verified together.
    #[arg(long, default_value_t = 16)]
    miners: usize,
    /// Tokens per verified answer.
    #[arg(long, default_value_t = 256)]
    tokens: u32,
    /// Skip the verification figures.
    #[arg(long)]
    no_verify: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use ganglion_inference::bench::{ProxyOptions, VerifyOptions, proxy_overhead, verification_throughput};
    let needs_engine = args.engine_requests > 0 || !args.no_verify;
    let engine = if needs_engine {
        let path = super::engine::resolve_model(&args.model)?;
        Some(Arc::new(ganglion_engine::Engine::load(&path)?))
    } else {
        None
    };
    let (proxy, verify) = runtime()?.block_on(async {
        let options = ProxyOptions {
            requests: args.requests.max(1),
            concurrency: args.concurrency.max(1),
            chunks: args.chunks.max(1),
            engine: engine.clone().filter(|_| args.engine_requests > 0).map(|e| (e, args.engine_requests, 16)),
        };
        let proxy = proxy_overhead(&options).await?;
        let verify = match (&engine, args.no_verify) {
            (Some(engine), false) => verification_throughput(engine.clone(), VerifyOptions { miners: args.miners.max(1), tokens: args.tokens.max(8) }).await?,
            _ => Vec::new(),
        };
        Ok::<_, anyhow::Error>((proxy, verify))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"proxy": proxy, "verification": verify}))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("miner proxy overhead (full streamed responses, Epistula-signed through the proxy)");
    println!("{:<28} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}", "upstream", "conc", "direct p50", "proxy p50", "direct p99", "proxy p99", "+p50 ms", "+p99 ms", "direct/s", "proxy/s");
    for r in &proxy {
        println!(
            "{:<28} {:>5} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.2} {:>9.2} {:>9.1} {:>9.1}",
            r.upstream, r.concurrency, r.direct.p50_ms, r.proxied.p50_ms, r.direct.p99_ms, r.proxied.p99_ms, r.added_p50_ms, r.added_p99_ms, r.direct.rps, r.proxied.rps
        );
        if r.direct.errors + r.proxied.errors > 0 {
            println!("  errors: direct {}, proxied {}", r.direct.errors, r.proxied.errors);
        }
    }
    if !verify.is_empty() {
        println!();
        println!("verification throughput on the built-in engine ({} tokens per answer)", verify[0].tokens);
        println!("{:<52} {:>9} {:>10} {:>12} {:>9}", "mode", "answers", "seconds", "answers/min", "verified");
        for r in &verify {
            println!("{:<52} {:>9} {:>10.1} {:>12.1} {:>9}", r.mode, r.responses, r.seconds, r.per_minute, r.verified);
        }
    }
    Ok(ExitCode::SUCCESS)
}
