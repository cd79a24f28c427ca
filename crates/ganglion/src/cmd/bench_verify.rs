//! `ganglion bench verify`: the verifier's false-positive rate on an honest server (or its
//! power on a dishonest one), measured over thousands of the validator's own requests.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::soundness::{self, SoundnessOptions, SoundnessReport};
use ganglion_inference::verify::VerifyConfig;

/// Which server to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Start {
    /// The built-in engine's OpenAI server, started in this process.
    Builtin,
    /// llama.cpp's server through `llama-cpp-python` (`scripts/install-llama-cpp-python`):
    /// other kernels, other batch shapes, llama.cpp's sampler order; text only (it sends
    /// neither token ids nor usage).
    LlamaCpp,
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyBenchArgs {
    /// Reference model (`smollm2` or a GGUF path); also what `--start` serves.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// What `--start` serves, if not `--model`: another model answering under the reference's
    /// name, to measure how well the verifier tells models apart (its power).
    #[arg(long)]
    serve_model: Option<String>,
    /// Start this server and measure it.
    #[arg(long, value_enum, default_value = "builtin", conflicts_with = "upstream")]
    start: Start,
    /// Measure an already running OpenAI-compatible server instead (e.g. a red-team upstream).
    #[arg(long)]
    upstream: Option<String>,
    /// The upstream sends no token ids (verify re-tokenized text, as validators do for such
    /// servers); implied by `--start llama-cpp`.
    #[arg(long)]
    text_only: bool,
    /// Responses to verify. A false-positive bound below 0.1% needs at least 3,000 with no failure.
    #[arg(long, default_value_t = 3000)]
    responses: usize,
    /// Requests in flight at once (the server batches them).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Smallest max_tokens drawn.
    #[arg(long, default_value_t = 16)]
    min_tokens: u32,
    /// Largest max_tokens drawn.
    #[arg(long, default_value_t = 48)]
    max_tokens: u32,
    /// Seed of the request draws (use different seeds for tuning and for reported figures).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Kills a child server when dropped.
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn llama_cpp_python() -> anyhow::Result<PathBuf> {
    let venv = std::env::var_os("GANGLION_LLAMACPP_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ganglion/venv-llamacpp")))
        .context("HOME is not set")?;
    let python = venv.join("bin/python");
    if !python.is_file() {
        bail!("llama-cpp-python is not installed at {}; run scripts/install-llama-cpp-python", venv.display());
    }
    Ok(python)
}

pub(crate) fn run(args: VerifyBenchArgs) -> anyhow::Result<ExitCode> {
    let path = super::engine::resolve_model(&args.model)?;
    let served = match &args.serve_model {
        Some(spec) => super::engine::resolve_model(spec)?,
        None => path.clone(),
    };
    let model = "bench-model".to_string();
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let reference_engine = Arc::new(ganglion_engine::Engine::load(&path).with_context(|| format!("loading {}", path.display()))?);
        let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(reference_engine, model.clone()));
        let mut text_only = args.text_only;
        let mut _child = None;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let upstream = match (&args.upstream, args.start) {
            (Some(url), _) => url.clone(),
            (None, Start::Builtin) => {
                let engine = Arc::new(ganglion_engine::Engine::load(&served).with_context(|| format!("loading {}", served.display()))?);
                let config = ganglion_engine::server::ServerConfig { model_id: model.clone(), api_key: None };
                let server = ganglion_engine::server::Server::start(engine, config).context("starting the engine server")?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the engine server")?;
                let addr = listener.local_addr()?;
                tokio::spawn(async move {
                    let _ = server.serve(listener, async { let _ = stopped.await; }).await;
                });
                format!("http://{addr}/v1")
            }
            (None, Start::LlamaCpp) => {
                text_only = true;
                let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                let child = Command::new(llama_cpp_python()?)
                    .args(["-m", "llama_cpp.server", "--model"])
                    .arg(&served)
                    // By default that server aborts the request being streamed whenever another
                    // arrives; requests in flight must queue instead.
                    .args(["--model_alias", &model, "--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "2048", "--verbose", "False", "--interrupt_requests", "False"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting llama_cpp.server")?;
                _child = Some(ChildServer(child));
                let url = format!("http://127.0.0.1:{port}/v1");
                let mut up = false;
                let http = ganglion_tls::ClientTls::system().http_client()?;
                for _ in 0..480 {
                    if http.get(format!("{url}/models")).send().await.is_ok_and(|r| r.status().is_success()) {
                        up = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                if !up {
                    bail!("llama_cpp.server did not come up on port {port} within 2 minutes");
                }
                url
            }
        };
        let mut verify = VerifyConfig::default();
        if text_only {
            verify.require_token_ids = false;
            verify.require_usage = false;
        }
        let options = SoundnessOptions {
            upstream: upstream.clone(),
            api_key: None,
            model: model.clone(),
            responses: args.responses,
            concurrency: args.concurrency,
            tokens: (args.min_tokens, args.max_tokens),
            seed: args.seed,
            verify,
            miner_alpha: 1e-4,
        };
        let bar = indicatif::ProgressBar::new(args.responses as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} judged, {msg} [{elapsed_precise} / eta {eta}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if args.json {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        // Progress goes to stderr (also under --json) so a long run can be followed, and a
        // signal ends the run with the report of what was judged so far.
        let report = soundness::measure(
            reference,
            &options,
            |done, failed| {
                bar.set_position(done as u64);
                bar.set_message(format!("{failed} failed"));
                if args.json && done % 100 == 0 {
                    eprintln!("bench verify: {done} judged, {failed} failed");
                }
            },
            async {
                let signal = ganglion_neuron::signals::wait_for_signal().await;
                eprintln!("bench verify: {signal}; reporting what was judged so far");
            },
        )
        .await?;
        bar.finish_and_clear();
        let _ = stop.send(());
        Ok::<_, anyhow::Error>(report)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &SoundnessReport) {
    if r.stopped_early {
        println!("(stopped early by a signal: the figures cover the responses judged so far)");
    }
    println!("server       {} ({})", r.upstream, r.mode);
    println!("judged       {} of {} ({} transport errors, {} unverifiable) in {:.0} s", r.judged, r.requested, r.transport_errors, r.unverifiable, r.seconds);
    println!("exact paths  {} of {} judged (the rest re-tokenized text, judged leniently)", r.exact_paths, r.judged);
    println!("greedy gap   largest {:.3} nats below the reference's argmax among verified answers", r.largest_greedy_gap);
    println!("failed       {} = {:.4}% (one-sided 95% upper bound {:.4}%)", r.failed, 100.0 * r.failure_rate, 100.0 * r.failure_rate_upper95);
    for (cause, n) in &r.causes {
        println!("  {cause:<20} {n}");
    }
    println!("by setting (judged, failed):");
    for (setting, (n, f)) in &r.by_setting {
        println!("  {setting:<24} {n:>6} {f:>6}");
    }
    match r.condemned_after {
        Some(k) => println!("per-miner accumulated test: condemned after {k} responses"),
        None => println!("per-miner accumulated test: never condemned"),
    }
    for e in &r.examples {
        println!("  e.g. {e}");
    }
}
