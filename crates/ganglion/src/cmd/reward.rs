//! `ganglion validator reward` and `ganglion export events`: glue between clap and
//! `ganglion-reward` (the openvalidators-style reward-pipeline validator and its event log).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ganglion_neuron::Shutdown;
use ganglion_records::Records;
use ganglion_reward::dpo::Dpo;
use ganglion_reward::embed::SentenceEmbedder;
use ganglion_reward::events::{ExportFormat, RecordsSink, export_events, export_events_to_file};
use ganglion_reward::forward::{FOLLOWUP_ROUNDS, QUERY_TIMEOUT, Rater, SAMPLE_SIZE};
use ganglion_reward::judge::{Judge, JudgeConfig};
use ganglion_reward::pipeline::Pipeline;
use ganglion_reward::similarity::Relevance;
use ganglion_neuron::validator::NodeSettings;
use ganglion_reward::validator::{EventSink, MinerQuerier, RewardSettings, RewardValidator};

use crate::cmd::chain::NetArgs;
use crate::cmd::runtime;
use crate::cmd::wallet::WalletArgs;

/// `ganglion validator reward` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidatorArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID", default_value_t = 1)]
    netuid: u16,
    /// Where the validator keeps its state, status.json and the default records store
    /// (default ~/.ganglion/reward).
    #[arg(long = "data-dir", env = "GANGLION_REWARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The records store: sqlite:/path/records.db or postgres://… (default sqlite in --data-dir).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Port of `/status` and `/metrics` (not served when absent).
    #[arg(long = "metrics.port", env = "GANGLION_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Address of `/status` and `/metrics`.
    #[arg(long = "metrics.ip", default_value = "127.0.0.1")]
    metrics_ip: IpAddr,
    /// Blocks between weight settings.
    #[arg(long = "neuron.epoch_length", default_value_t = 360)]
    epoch_length: u64,
    /// `version_key` sent with weights (default: this build's version).
    #[arg(long = "neuron.version_key")]
    version_key: Option<u64>,
    /// The model name sent to miners.
    #[arg(long = "validator.model", default_value = "smollm2")]
    model: String,
    /// Most tokens asked of a miner per completion.
    #[arg(long = "validator.max_tokens", default_value_t = 256)]
    max_tokens: u32,
    /// Uids per step (`followup_sample_size`).
    #[arg(long = "validator.sample_size", default_value_t = SAMPLE_SIZE)]
    sample_size: usize,
    /// Deadline per query, seconds (`followup_timeout`).
    #[arg(long = "validator.timeout", default_value_t = QUERY_TIMEOUT.as_secs_f64())]
    timeout: f64,
    /// Follow-up/answer rounds per forward.
    #[arg(long = "validator.rounds", default_value_t = FOLLOWUP_ROUNDS)]
    rounds: usize,
    /// Queries in flight at most.
    #[arg(long = "validator.concurrency", default_value_t = 16)]
    concurrency: usize,
    /// Shortest time between forwards, seconds.
    #[arg(long = "validator.step_interval", default_value_t = 2.0)]
    step_interval: f64,
    /// The DPO reference model: a GGUF path or a pulled model name (default smollm2); `none`
    /// leaves DPO out.
    #[arg(long = "reward.dpo_model", default_value = "smollm2")]
    dpo_model: String,
    /// The sentence-embedding model directory (default: $GANGLION_HOME/models/all-MiniLM-L6-v2,
    /// installed by scripts/install-minilm).
    #[arg(long = "reward.embedding_model")]
    embedding_model: Option<PathBuf>,
    /// OpenAI-compatible base URL (…/v1) of the LLM judge in the RLHF slot (absent: no judge).
    #[arg(long = "reward.judge_url", env = "GANGLION_REWARD_JUDGE_URL")]
    judge_url: Option<String>,
    /// The judge's model name.
    #[arg(long = "reward.judge_model", default_value = "smollm2")]
    judge_model: String,
    /// The judge's bearer token.
    #[arg(long = "reward.judge_api_key", env = "GANGLION_REWARD_JUDGE_API_KEY")]
    judge_api_key: Option<String>,
    /// The original's BERT relevance bound on −RMSE (e.g. -0.0246), off by default: it was
    /// calibrated for bert-base-uncased, not MiniLM.
    #[arg(long = "reward.rmse_bound", allow_hyphen_values = true)]
    rmse_bound: Option<f64>,
    /// Seed of the validator's choices (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

fn default_data_dir() -> PathBuf {
    ganglion_engine::store::ganglion_home()
        .map(|h| h.join("reward"))
        .unwrap_or_else(|_| PathBuf::from(".ganglion-reward"))
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0 && value <= 3600.0,
        "{name} must be between 0 and 3600 seconds, got {value}"
    );
    Ok(Duration::from_secs_f64(value))
}

pub(crate) fn run_validator(args: ValidatorArgs) -> anyhow::Result<ExitCode> {
    ganglion_tls::install_crypto_provider();
    let hotkey = args
        .wallet
        .wallet()?
        .hotkey(&args.wallet.passwords())
        .context("loading the validator's hotkey")?;
    let chain = args.net.chain()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let timeout = seconds("--validator.timeout", args.timeout)?;
    let step_interval = seconds("--validator.step_interval", args.step_interval)?;
    let embedder = Arc::new(match &args.embedding_model {
        Some(dir) => SentenceEmbedder::load(dir)?,
        None => SentenceEmbedder::load_default()?,
    });
    let dpo = match args.dpo_model.as_str() {
        "none" => None,
        name => {
            let path = ganglion_engine::store::resolve_model(
                name,
                &ganglion_engine::store::models_dir()?,
            )?;
            Some(Dpo::new(Arc::new(
                ganglion_engine::Engine::load(&path)
                    .with_context(|| format!("loading {}", path.display()))?,
            )))
        }
    };
    let judge: Option<Arc<dyn Rater>> = match &args.judge_url {
        Some(url) => {
            let config = JudgeConfig {
                url: url.clone(),
                model: args.judge_model.clone(),
                api_key: args.judge_api_key.clone(),
                timeout,
                concurrency: args.concurrency.max(1),
            };
            Some(Arc::new(Judge::new(
                config,
                &ganglion_tls::ClientTls::system(),
            )?))
        }
        None => None,
    };
    let relevance = Relevance {
        rmse_bound: args.rmse_bound,
        ..Relevance::default()
    };
    let pipeline = Pipeline::standard(dpo, judge.is_some(), embedder, relevance)?;
    let corpus = ganglion_reward::forward::locate_corpus()?;
    let querier = MinerQuerier::new(
        hotkey.clone(),
        args.model.clone(),
        args.max_tokens,
        args.concurrency,
    )?;
    let settings = RewardSettings {
        netuid: args.netuid,
        data_dir: data_dir.clone(),
        sample_size: args.sample_size.max(1),
        timeout,
        rounds: args.rounds,
        seed: args.seed,
    };
    let node = NodeSettings {
        subnet: "reward",
        netuid: args.netuid,
        epoch_length: args.epoch_length,
        version_key: args.version_key,
        metrics_listen: args
            .metrics_port
            .map(|port| SocketAddr::new(args.metrics_ip, port)),
        step_interval,
        idle_interval: Duration::from_secs(2),
        data_dir: data_dir.clone(),
    };
    runtime()?.block_on(async move {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let url = args
            .database_url
            .clone()
            .unwrap_or_else(|| Records::default_url(&data_dir));
        let records = Records::open(&url).await.with_context(|| {
            format!(
                "opening the records store {}",
                ganglion_records::redact_url(&url)
            )
        })?;
        let sink: Arc<dyn EventSink> = Arc::new(RecordsSink {
            records,
            netuid: args.netuid,
            validator_hotkey: hotkey.public().to_ss58(),
        });
        let validator =
            RewardValidator::new(settings, querier, judge, pipeline, corpus, Some(sink))?;
        eprintln!(
            "reward validator running; functions {:?}; status file {} (Ctrl-C or SIGTERM stops)",
            validator_names(&validator),
            data_dir.join("status.json").display()
        );
        ganglion_neuron::validator::run_node(node, hotkey, chain, validator, Shutdown::on_signal())
            .await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn validator_names(validator: &RewardValidator) -> String {
    format!("{validator:?}")
}

/// `ganglion export …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ExportCommand {
    /// The reward validator's step events (prompts, completions, timings, rewards) for
    /// dataset building.
    Events(ExportArgs),
}

/// `ganglion export events` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// jsonl (one step event per line), csv (one row per completion) or parquet (the csv's
    /// rows with typed columns; needs --output).
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv", "parquet"])]
    format: String,
    /// The records store (default sqlite in ~/.ganglion/reward).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Only this subnet's events.
    #[arg(long)]
    netuid: Option<u16>,
    /// Write here instead of stdout (atomically: a temporary file renamed into place).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(crate) fn run_export(command: ExportCommand) -> anyhow::Result<ExitCode> {
    let ExportCommand::Events(args) = command;
    let format: ExportFormat = args.format.parse()?;
    if format == ExportFormat::Parquet && args.output.is_none() {
        anyhow::bail!("--format parquet writes a file: give --output PATH");
    }
    runtime()?.block_on(async move {
        let url = args
            .database_url
            .clone()
            .unwrap_or_else(|| Records::default_url(&default_data_dir()));
        let records = Records::open(&url).await.with_context(|| {
            format!(
                "opening the records store {}",
                ganglion_records::redact_url(&url)
            )
        })?;
        let written = match &args.output {
            Some(path) => export_events_to_file(&records, args.netuid, format, path).await?,
            None => {
                export_events(&records, args.netuid, format, &mut std::io::stdout().lock()).await?
            }
        };
        eprintln!(
            "exported {written} {}",
            if format != ExportFormat::Jsonl {
                "rows"
            } else {
                "events"
            }
        );
        Ok(ExitCode::SUCCESS)
    })
}
