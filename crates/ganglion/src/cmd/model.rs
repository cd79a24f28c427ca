//! `ganglion validator model`, `ganglion miner model publish` and `ganglion miner model serve`:
//! glue between clap and `ganglion-evaluation` (the finetuning/pretraining-style
//! model-evaluation subnet).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ganglion_evaluation::miner::{Publication, PublishTarget, ServeSettings};
use ganglion_evaluation::round::Competition;
use ganglion_evaluation::store::{FetchLimits, HubStore, MinerStore, ModelStore};
use ganglion_evaluation::validator::{DataSource, EvaluationSettings, ModelValidator};
use ganglion_neuron::validator::NodeSettings;
use ganglion_neuron::Shutdown;
use ganglion_records::Records;

use crate::cmd::chain::NetArgs;
use crate::cmd::wallet::WalletArgs;
use crate::cmd::{AxonArgs, runtime};

/// `ganglion validator model` flags.
///
/// Each step: read every miner's chain commitment (`namespace:name:commit:hash:competition`),
/// download what is new or changed (from the miner's axon for `axon:` commitments, from the
/// Hugging Face Hub with --hub), check it (size, directory hash, architecture, parameter
/// count, weight norms; a GGUF or safetensors + config.json + tokenizer.json), draw fresh
/// samples, compute every model's loss over the response tokens, compare models sample by sample (an earlier commit wins ties within
/// epsilon; copies of an earlier commit get nothing), and turn win rates into weights
/// (softmax, EMA per competition). Every evaluation goes to the records store.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Each step: read every miner's chain commitment \
(namespace:name:commit:hash:competition), download what is new or changed (from the miner's \
axon for `axon:` commitments, from the Hugging Face Hub with --hub), check it (size, directory \
hash, architecture, parameter count, weight norms; a model is one GGUF or Hugging Face \
safetensors + config.json + tokenizer.json), draw fresh samples (the corpus, or the \
inference subnet's verified records with --data.records_url), compute every model's loss over \
the response tokens, compare models sample by sample (an earlier commit wins within epsilon; \
copies of an earlier commit get nothing) and turn win rates into weights (softmax, EMA per \
competition). Every evaluation, with the cause of each rejection, goes to the records store; \
the state (weights, verified downloads) survives restarts.\n\nExample: ganglion validator \
model --wallet.name v --netuid 3 --eval.samples 50 --metrics.port 9100")]
pub(crate) struct ValidatorArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID", default_value_t = 1)]
    netuid: u16,
    /// A TOML file of competitions (`[[competition]]` tables: id, share, sequence_length,
    /// temperature, epsilon = { kind = "fixed", epsilon = 0.01 } or { kind = "linear_decay",
    /// start, end, decay_blocks }, limits = { max_bytes, architectures, max_parameters,
    /// min_parameters, norms }, task = { kind = "chat" } (default) or { kind = "text",
    /// degeneracy_check = true } for pretraining's packed-text loss), tokenizer = "smollm2" (the
    /// tokenizer and chat template every model is evaluated with: a known model name, a GGUF, a
    /// model directory or a tokenizer.json; unset, each model's own). Default: one competition
    /// `g1` of llama/Gemma 3 models (GGUF or safetensors) up to 1e9 parameters and 2 GiB, each
    /// with its own tokenizer, the finetuning subnet's constants.
    #[arg(long, env = "GANGLION_EVALUATION_CONFIG")]
    config: Option<PathBuf>,
    /// Where the validator keeps its state, downloaded models, status.json and the default
    /// records store (default ~/.ganglion/evaluation).
    #[arg(long = "data-dir", env = "GANGLION_EVALUATION_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The records store evaluations are written to: sqlite:/path/records.db or postgres://…
    /// (default sqlite in --data-dir).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Draw the samples from the inference subnet's verified records in this store
    /// (sqlite:… or postgres://…) instead of the corpus.
    #[arg(long = "data.records_url", env = "GANGLION_EVALUATION_RECORDS_URL")]
    records_url: Option<String>,
    /// The inference subnet whose records are drawn (with --data.records_url).
    #[arg(long = "data.netuid", default_value_t = 1)]
    data_netuid: u16,
    /// How far back records are drawn, hours.
    #[arg(long = "data.window_hours", default_value_t = 24.0)]
    data_window_hours: f64,
    /// Samples per step (the original: 400).
    #[arg(long = "eval.samples", default_value_t = 400)]
    samples: usize,
    /// Models kept for the next step, the best by win rate (the originals' `--sample_min`).
    #[arg(long = "eval.sample_min", default_value_t = EvaluationSettings::DEFAULT_KEEP)]
    sample_min: usize,
    /// Most models one step evaluates: the kept ones, then models new in their commitment or
    /// worth a retry by pretraining's rule, earliest commit first (the rest wait for a later
    /// step; a model that lost and did not change is not evaluated again).
    #[arg(long = "eval.sample_max", default_value_t = EvaluationSettings::DEFAULT_MAX_MODELS)]
    sample_max: usize,
    /// EMA weight of the old weights (finetuning 0.9, pretraining 0.5).
    #[arg(long = "eval.alpha", default_value_t = ganglion_evaluation::scoring::finetuning::ALPHA)]
    alpha: f64,
    /// Most bytes downloaded per model (the competition's own cap applies too).
    #[arg(long = "eval.max_bytes", default_value_t = 15 * 1024 * 1024 * 1024)]
    max_bytes: u64,
    /// Most files per model directory.
    #[arg(long = "eval.max_files", default_value_t = 64)]
    max_files: usize,
    /// Deadline of one model download, seconds.
    #[arg(long = "eval.download_timeout", default_value_t = 600.0)]
    download_timeout: f64,
    /// Also fetch models committed as Hugging Face Hub repositories (`HF_ENDPOINT`, `HF_TOKEN`
    /// honoured; downloads go to the hub cache).
    #[arg(long)]
    hub: bool,
    /// Port of `/status` and `/metrics` (not served when absent).
    #[arg(long = "metrics.port", env = "GANGLION_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Address of `/status` and `/metrics`.
    #[arg(long = "metrics.ip", default_value = "127.0.0.1")]
    metrics_ip: IpAddr,
    /// Blocks between weight settings.
    #[arg(long = "neuron.epoch_length", default_value_t = 100)]
    epoch_length: u64,
    /// `version_key` sent with weights (default: this build's version).
    #[arg(long = "neuron.version_key")]
    version_key: Option<u64>,
    /// Shortest time between the starts of two steps, seconds.
    #[arg(long = "validator.step_interval", default_value_t = 10.0)]
    step_interval: f64,
    /// Seed of the data draws (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

/// The competitions file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CompetitionsFile {
    competition: Vec<Competition>,
}

fn default_data_dir() -> PathBuf {
    ganglion_engine::store::ganglion_home().map(|h| h.join("evaluation")).unwrap_or_else(|_| PathBuf::from(".ganglion-evaluation"))
}

fn seconds(name: &str, value: f64, max: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(value.is_finite() && value > 0.0 && value <= max, "{name} must be between 0 and {max} seconds, got {value}");
    Ok(Duration::from_secs_f64(value))
}

pub(crate) fn run_validator(args: ValidatorArgs) -> anyhow::Result<ExitCode> {
    let hotkey = args.wallet.wallet()?.hotkey(&args.wallet.passwords()).context("loading the validator's hotkey")?;
    let chain = args.net.chain()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let competitions = match &args.config {
        Some(path) => {
            let file: CompetitionsFile = ganglion_neuron::config::load(Some(path), &ganglion_neuron::config::Overrides::new())?;
            anyhow::ensure!(!file.competition.is_empty(), "{} defines no [[competition]]", path.display());
            file.competition
        }
        None => Competition::default_schedule(),
    };
    // A competition's tokenizer may be named like a model (`smollm2`, `hf:OWNER/REPO`): the
    // evaluation crate takes paths.
    let competitions = competitions
        .into_iter()
        .map(|mut c| {
            if let Some(spec) = &c.tokenizer {
                let path = super::engine::resolve_model(spec).with_context(|| format!("competition {}: its tokenizer `{spec}`", c.id))?;
                c.tokenizer = Some(path.display().to_string());
            }
            Ok(c)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let step_interval = seconds("--validator.step_interval", args.step_interval, 86_400.0)?;
    let deadline = seconds("--eval.download_timeout", args.download_timeout, 86_400.0)?;
    let window = seconds("--data.window_hours", args.data_window_hours * 3600.0, 365.0 * 86_400.0)?;
    let settings = EvaluationSettings {
        netuid: args.netuid,
        data_dir: data_dir.clone(),
        competitions,
        samples: args.samples,
        alpha: args.alpha,
        fetch: FetchLimits { max_bytes: args.max_bytes, max_files: args.max_files, deadline },
        seed: args.seed,
        keep: args.sample_min,
        max_models: args.sample_max,
    };
    let tls = ganglion_tls::ClientTls::system();
    let miner_store: Arc<dyn ModelStore> = Arc::new(MinerStore::new(hotkey.clone(), &tls)?);
    let hub_store: Option<Arc<dyn ModelStore>> = if args.hub {
        let config = ganglion_hf::HubConfig::from_env()?;
        Some(Arc::new(HubStore::new(ganglion_hf::HubClient::new(config, &tls)?)))
    } else {
        None
    };
    let node = NodeSettings {
        subnet: "evaluation",
        netuid: args.netuid,
        epoch_length: args.epoch_length,
        version_key: args.version_key,
        metrics_listen: args.metrics_port.map(|port| SocketAddr::new(args.metrics_ip, port)),
        step_interval,
        idle_interval: Duration::from_secs(1),
        data_dir: data_dir.clone(),
    };
    runtime()?.block_on(async move {
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let url = args.database_url.clone().unwrap_or_else(|| Records::default_url(&data_dir));
        let records = Records::open(&url).await.with_context(|| format!("opening the records store {}", ganglion_records::redact_url(&url)))?;
        let data = match &args.records_url {
            Some(source) => {
                let store = Records::open(source).await.with_context(|| format!("opening the inference records {}", ganglion_records::redact_url(source)))?;
                DataSource::Records { records: store, netuid: args.data_netuid, window }
            }
            None => DataSource::locate_corpus().context("no --data.records_url, so samples come from the corpus")?,
        };
        let validator = ModelValidator::new(settings, hotkey.public().to_ss58(), data, miner_store, hub_store, Some(records))?;
        eprintln!(
            "model-evaluation validator running (step {}); status file {} (Ctrl-C or SIGTERM stops)",
            validator.steps(),
            data_dir.join("status.json").display()
        );
        ganglion_neuron::validator::run_node(node, hotkey, chain, validator, Shutdown::on_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `ganglion miner model …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MinerModelCommand {
    /// Hash a model directory (one GGUF plus any tokenizer/config files, or Hugging Face
    /// safetensors + config.json + tokenizer.json, as `ganglion model export` writes) with the finetuning
    /// subnet's directory hash and commit `namespace:name:commit:hash:competition` on chain
    /// (at most 128 bytes). Serve the same directory with `miner model serve`, or publish a
    /// Hugging Face Hub snapshot with --repo/--revision.
    Publish(PublishArgs),
    /// Serve a published model directory on the axon, content-addressed (the manifest and the
    /// files by manifest path), Epistula-signed requests only, callers judged by the subnet's
    /// policy (registered validators with a permit by default).
    Serve(ServeArgs),
    /// Fine-tune a base model (a llama GGUF such as SmolLM2) on CPU on data of the evaluation
    /// domain and write a model directory `miner model publish` takes: the last blocks and the
    /// output norm are trained (AdamW) on the validator's response loss over corpus samples,
    /// the rest frozen; the output's held-out loss is measured against the base model's.
    Train(TrainArgs),
}

/// `ganglion miner model publish` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID", default_value_t = 1)]
    netuid: u16,
    /// The model directory: one .gguf, or safetensors + config.json + tokenizer.json.
    #[arg(long)]
    dir: PathBuf,
    /// The model's name in an `axon:` commitment (served by this miner).
    #[arg(long = "name", default_value = "model", conflicts_with = "repo")]
    model_name: String,
    /// A Hugging Face Hub repository (`namespace/name`) instead: --dir must be its snapshot.
    #[arg(long, requires = "revision")]
    repo: Option<String>,
    /// The repository's 40-hex commit (with --repo).
    #[arg(long)]
    revision: Option<String>,
    /// Competition id.
    #[arg(long, default_value = "g1")]
    competition: String,
    /// Commit the plain directory hash instead of the hotkey-bound one (the bound hash keeps
    /// others from re-committing your files under their hotkey).
    #[arg(long)]
    plain_hash: bool,
    /// Print the commitment without sending it.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run_publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let hotkey = args.wallet.wallet()?.hotkey(&args.wallet.passwords()).context("loading the miner's hotkey")?;
    let target = match (&args.repo, &args.revision) {
        (Some(repo), Some(commit)) => PublishTarget::Hub { repo: repo.clone(), commit: commit.clone() },
        _ => PublishTarget::Axon { name: args.model_name.clone() },
    };
    let publication = Publication { dir: args.dir.clone(), target, competition: args.competition.clone(), bind_to_hotkey: !args.plain_hash };
    if args.dry_run {
        let (c, plain) = ganglion_evaluation::miner::commitment_for(&publication, &hotkey, &ganglion_evaluation::dirhash::HashLimits::default())?;
        println!("{}", c.render()?);
        eprintln!("directory hash {plain} (not sent: --dry-run)");
        return Ok(ExitCode::SUCCESS);
    }
    let chain = args.net.chain()?;
    runtime()?.block_on(async move {
        let (rendered, plain, receipt) = ganglion_evaluation::miner::publish(chain.as_ref(), args.netuid, &hotkey, &publication).await?;
        if args.net.json {
            println!("{}", serde_json::json!({"commitment": rendered, "directory_hash": plain, "block": receipt.block, "tx": receipt.hash}));
        } else {
            println!("committed {rendered} at block {} (directory hash {plain})", receipt.block);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `ganglion miner model serve` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    axon: AxonArgs,
    /// Subnet id.
    #[arg(long, env = "GANGLION_NETUID", default_value_t = 1)]
    netuid: u16,
    /// The published model directory (must not change while served).
    #[arg(long)]
    dir: PathBuf,
    /// Serve callers without a validator permit too (still registered and signed).
    #[arg(long)]
    allow_non_validators: bool,
    /// Do not publish the axon on chain (it is already, or a proxy publishes it).
    #[arg(long)]
    no_serve_axon: bool,
}

pub(crate) fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let hotkey = args.wallet.wallet()?.hotkey(&args.wallet.passwords()).context("loading the miner's hotkey")?;
    let chain = args.net.chain()?;
    let axon = ganglion_neuron::config::AxonConfig {
        ip: args.axon.axon_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port: args.axon.axon_port.unwrap_or(8091),
        external_ip: args.axon.axon_external_ip,
        external_port: args.axon.axon_external_port,
        serve: !args.no_serve_axon,
    };
    let settings = ServeSettings {
        netuid: args.netuid,
        axon,
        policy: ganglion_protocol::policy::PolicyConfig {
            require_registered: true,
            require_validator_permit: !args.allow_non_validators,
            ..Default::default()
        },
        sync_interval: Duration::from_secs(12),
        drain: Duration::from_secs(30),
    };
    runtime()?.block_on(async move {
        let shutdown = Shutdown::on_signal();
        let serving = ganglion_evaluation::miner::serve(&settings, &args.dir, hotkey, chain, shutdown).await?;
        eprintln!("serving {} (directory hash {}) on {} (published as {}); Ctrl-C or SIGTERM stops", args.dir.display(), serving.hash, serving.addr, serving.external);
        serving.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `ganglion miner model train` flags.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Draws prompt/response pairs from the corpus exactly as the \
validator does (a seed of its own; the held-out pairs share no response with the training \
ones), runs the frozen blocks once per training pair, trains the last --layers blocks and the \
output norm in f32 with AdamW on the mean cross-entropy of the response tokens, and writes \
DIR/model.gguf (trained matrices as Q8_0, norms as F32, everything else as in the base), \
DIR/config.json and DIR/training.json. The result must pass the validator's model checks; \
then the base and the trained model's losses on the held-out pairs are computed with the \
validator's own loss code. Progress goes to stderr; with --json one object goes to stdout: \
{\"out\", \"base_loss\", \"trained_loss\", \"eval_samples\", \"seconds\", ...}.\n\n\
Example: ganglion miner model train --base ~/.ganglion/models/SmolLM2-135M-Instruct.Q4_1.gguf \
--out ./trained --json && ganglion miner model publish --dir ./trained --wallet.name m")]
pub(crate) struct TrainArgs {
    /// The base model: a llama GGUF file, or a name from the model cache (`smollm2`).
    #[arg(long)]
    base: String,
    /// The output model directory (created; it must hold no other .gguf file).
    #[arg(long)]
    out: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = ganglion_evaluation::train::defaults::STEPS)]
    steps: usize,
    /// Training samples (prompt/response pairs from the corpus).
    #[arg(long, default_value_t = ganglion_evaluation::train::defaults::SAMPLES)]
    samples: usize,
    /// Held-out samples the base and trained losses are measured on.
    #[arg(long = "eval-samples", default_value_t = ganglion_evaluation::train::defaults::EVAL_SAMPLES)]
    eval_samples: usize,
    /// Samples per optimizer step.
    #[arg(long, default_value_t = ganglion_evaluation::train::defaults::BATCH)]
    batch: usize,
    /// Trainable blocks, counted from the last (plus the output norm).
    #[arg(long, default_value_t = ganglion_evaluation::train::defaults::LAYERS)]
    layers: usize,
    /// Peak learning rate (AdamW, warm-up then cosine decay).
    #[arg(long = "lr", default_value_t = ganglion_evaluation::train::defaults::LEARNING_RATE)]
    learning_rate: f64,
    /// Seed of the data draws and the shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads of the matrix products (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Tokens per sample (the competition's sequence_length).
    #[arg(long = "sequence-length", default_value_t = ganglion_evaluation::scoring::finetuning::SEQUENCE_LENGTH)]
    sequence_length: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    use ganglion_evaluation::train::{Progress, TrainSettings};
    let base = {
        let path = PathBuf::from(&args.base);
        if path.is_file() {
            path
        } else {
            let dir = ganglion_engine::store::models_dir()?;
            ganglion_engine::store::resolve_model(&args.base, &dir).with_context(|| format!("--base {}: not a file nor a cached model", args.base))?
        }
    };
    let corpus = ganglion_evaluation::train::locate_corpus()?;
    let settings = TrainSettings {
        steps: args.steps,
        samples: args.samples,
        eval_samples: args.eval_samples,
        batch: args.batch,
        layers: args.layers,
        learning_rate: args.learning_rate,
        seed: args.seed,
        threads: args.threads,
        max_len: args.sequence_length,
        ..TrainSettings::new(base.clone(), args.out.clone())
    };
    eprintln!("training {} into {}", base.display(), args.out.display());
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut progress = |p: Progress| match p {
        Progress::Start { phase, total } => {
            let b = indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
            b.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta}) {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(phase.label());
            bar = Some(b);
        }
        Progress::Advance { done, loss } => {
            if let Some(b) = &bar {
                b.set_position(done as u64);
                if let Some(l) = loss {
                    b.set_message(format!("loss {l:.4}"));
                }
            }
        }
        Progress::Finish => {
            if let Some(b) = bar.take() {
                b.finish();
            }
        }
    };
    let report = ganglion_evaluation::train::train(&settings, &corpus, &mut progress)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "wrote {} ({} steps of {} samples, {} trainable parameters, {:.0} s on {} threads)\nheld-out loss over {} samples: base {:.4}, trained {:.4} ({:+.1}%)",
            report.out.display(),
            report.steps,
            report.batch,
            report.trainable_parameters,
            report.seconds,
            report.threads,
            report.eval_samples,
            report.base_loss,
            report.trained_loss,
            100.0 * (report.trained_loss / report.base_loss - 1.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
