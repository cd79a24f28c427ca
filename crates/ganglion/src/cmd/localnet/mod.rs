//! `ganglion localnet`: a whole network on this machine, on the embedded defaults.
//!
//! ```text
//!  model pull ─► chain serve ─► wallets, faucet, subnets, registrations, stake (Chain trait)
//!     ─► engine serve per model (the honest miners' upstream)
//!     ─► inference: 1 validator verifying every model of `--models` + 2 honest miners per model
//!        (+ `--adversaries a,b`: red-team strategies, `ganglion-redteam` processes, per model)
//!     ─► compute:   1 validator + 2 miners (fast, slow)
//!     ─► reward (`--reward`): the reward-pipeline validator, a good prompting miner (its own
//!        engine of the first model) and four bad ones (`ganglion-redteam` processes): prompt-echo,
//!        off-topic, duplicate (two hotkeys, one answer), rule-breaker
//!     ─► model evaluation (`--model-eval`): `ganglion validator model` and six model miners
//!        (`miner model publish` + `serve`): the first model (base), a copy trained by `miner
//!        model train` (trained), a noised copy committed first (degraded), the base files
//!        committed later (copier), one over the byte cap (oversized) and one serving other
//!        files than it committed (mismatch); see [`model_eval`]
//!     ─► hub ─► every epoch: a table from the metagraph and the validators' status
//! ```
//!
//! Every node is a separate process (this binary with a subcommand; the opt-in adversaries
//! are the sibling `ganglion-redteam` executable, so no cheating code is in this one), logging to
//! `<data-dir>/logs/<name>.log`; the driver talks to them only as a user would, through the
//! chain and their HTTP endpoints. By default each run starts from a fresh data directory.

mod model_eval;
mod setup;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use ganglion_chain::{Chain, LocalChain};

use self::setup::{Neuron, Role};
use ganglion_neuron::supervisor::{self, Supervisor};
use self::table::Summary;
use crate::cmd::chain::parse_duration;

/// `ganglion localnet` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct LocalnetArgs {
    /// Where the chain, wallets, records and logs of this run live. Wiped at start unless
    /// `--keep` (only if it holds a previous localnet).
    #[arg(long = "data-dir", default_value = "~/.ganglion/localnet")]
    data_dir: PathBuf,
    /// Keep the previous run's data instead of starting fresh.
    #[arg(long)]
    keep: bool,
    /// Stop by itself after this many inference epochs with weights set (default: run until Ctrl-C).
    #[arg(long)]
    epochs: Option<u32>,
    /// Print a machine-readable summary at the end instead of tables (logs stay on stderr).
    #[arg(long)]
    json: bool,
    /// Block time of the local chain.
    #[arg(long = "block-time", default_value = "1s", value_parser = parse_duration)]
    block_time: Duration,
    /// Tempo of both subnets, in blocks (also the validators' epoch length).
    #[arg(long, default_value_t = 20)]
    tempo: u16,
    /// Port of the hub's dashboard.
    #[arg(long = "hub.port", default_value_t = 8800)]
    hub_port: u16,
    /// Do not run the compute subnet.
    #[arg(long = "no-compute")]
    no_compute: bool,
    /// Longest completion the inference validator asks for (keeps a CPU-only run quick).
    #[arg(long = "max-tokens", default_value_t = 48)]
    max_tokens: u32,
    /// Also run these red-team strategies on the inference subnet (comma-separated, or
    /// `all`), each a `ganglion-redteam inference --strategy …` process: random-tokens,
    /// other-model, cached, selective-refusal, sybil, go-dark, usage-lies, ttft-fake,
    /// early-eos, relay.
    #[arg(long, value_delimiter = ',')]
    adversaries: Vec<String>,
    /// Inference models (comma-separated known names: smollm2, gemma3-270m). Each gets its
    /// own engine, two honest miners and the adversaries asked for (the relay only on the
    /// first); one validator verifies them all, each request against its model's reference.
    #[arg(long, value_delimiter = ',', default_value = "smollm2")]
    models: Vec<String>,
    /// Also run a prompting subnet with the reward-pipeline validator (`ganglion validator
    /// reward`: DPO on the first model, the four masks; no LLM judge), a good miner on its
    /// own engine of the first model and the red team's prompting adversaries (prompt-echo, off-topic,
    /// duplicate ×2, rule-breaker); the table then shows each reward component per miner.
    #[arg(long)]
    reward: bool,
    /// Follow-up/answer rounds per forward of the reward validator (the original's 4: nine
    /// steps).
    #[arg(long = "reward.rounds", default_value_t = 4)]
    reward_rounds: usize,
    /// Also run the model-evaluation subnet (`ganglion validator model`) with six model
    /// miners of the first model (`ganglion miner model publish` + `serve`): the base model, a
    /// copy trained by `ganglion miner model train` first, a degraded copy (noised weights,
    /// committed first), a copier (the base files committed later: a duplicate), an oversized
    /// model (over the competition's byte cap) and a miner serving other files than it
    /// committed; the table then shows each one's loss, win rate, incentive and rejection cause.
    #[arg(long = "model-eval")]
    model_eval: bool,
    /// Training steps of the trained miner (`miner model train --steps`; default: its own).
    #[arg(long = "model-eval.steps", requires = "model_eval")]
    model_eval_steps: Option<u32>,
    /// Training and held-out samples of the trained miner (`miner model train --samples` and
    /// `--eval-samples`; default: its own). Few samples and steps train in well under a
    /// minute and still beat the base model on the validator's loss.
    #[arg(long = "model-eval.train-samples", requires = "model_eval")]
    model_eval_train_samples: Option<u32>,
    /// Samples the model validator scores every model on per step.
    #[arg(long = "model-eval.samples", default_value_t = 8, requires = "model_eval")]
    model_eval_samples: usize,
    /// Leave the trained miner out (no training before the start).
    #[arg(long = "model-eval.no-train", requires = "model_eval")]
    model_eval_no_train: bool,
}

/// The prompting adversaries of `--reward` (`ganglion-redteam inference --strategy …`) and
/// the hotkeys each runs.
const PROMPTING_ADVERSARIES: &[(&str, usize)] = &[("prompt-echo", 1), ("off-topic", 1), ("duplicate", 2), ("rule-breaker", 1)];

/// The models asked for: known names, each once, at least one.
fn models(asked: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for name in asked.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if ganglion_engine::store::known_model(name).is_none() {
            let known: Vec<&str> = ganglion_engine::store::KNOWN_MODELS.iter().map(|m| m.name).collect();
            bail!("unknown model `{name}` for --models; known: {}", known.join(", "));
        }
        if !out.iter().any(|m| m == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        bail!("--models is empty; name at least one model (e.g. smollm2)");
    }
    Ok(out)
}

/// A node's name for `model`: the first model's nodes keep their plain names (`honest-1`,
/// `engine`), the others' carry the model (`gemma3-270m-honest-1`).
fn for_model(first: &str, model: &str, name: &str) -> String {
    if model == first { name.to_string() } else { format!("{model}-{name}") }
}

/// The strategies `ganglion-redteam inference --strategy` knows (checked here so that a typo
/// fails before anything starts; the red team's own list is the authority).
const ADVERSARIES: &[&str] =
    &["random-tokens", "other-model", "cached", "selective-refusal", "sybil", "go-dark", "usage-lies", "ttft-fake", "early-eos", "relay"];

/// Hotkeys a Sybil runs in a localnet.
const SYBILS: usize = 3;

/// The adversaries asked for, as the static names of [`ADVERSARIES`].
fn adversaries(asked: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for name in asked.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
        if name == "all" {
            return Ok(ADVERSARIES.to_vec());
        }
        let Some(known) = ADVERSARIES.iter().find(|a| **a == name) else {
            bail!("unknown adversary `{name}`; known: {}, or all", ADVERSARIES.join(", "));
        };
        if !out.contains(known) {
            out.push(*known);
        }
    }
    Ok(out)
}

/// Marker file that tells a localnet data directory from anything else before wiping it.
const MARKER: &str = ".ganglion-localnet";

pub(crate) fn run(args: LocalnetArgs) -> anyhow::Result<ExitCode> {
    let strategies = adversaries(&args.adversaries)?;
    if !strategies.is_empty() || args.reward {
        crate::cmd::redteam::executable()?;
    }
    let models = models(&args.models)?;
    let data_dir = ganglion_core::wallet::expand_home(&args.data_dir);
    prepare_data_dir(&data_dir, args.keep)?;
    for model in &models {
        ensure_model(model, args.json)?;
    }
    // The model-evaluation cast's base model (the first of --models), trained from before
    // anything else starts (the training has the CPU to itself).
    let model_start = if args.model_eval {
        let dir = ganglion_engine::store::models_dir().context("locating the model cache")?;
        let base = ganglion_engine::store::resolve_model(&models[0], &dir).with_context(|| format!("locating {}", models[0]))?;
        let training = if args.model_eval_no_train {
            None
        } else {
            let me = std::env::current_exe().context("cannot find the ganglion executable")?;
            let out = data_dir.join("model-eval").join("trained");
            Some(model_eval::train(&me, &base, &out, args.model_eval_steps, args.model_eval_train_samples, args.json)?)
        };
        Some(ModelEvalStart { base, training })
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(drive(args, data_dir, model_start))
}

/// What `--model-eval` starts from: the base model's GGUF and the training's report.
struct ModelEvalStart {
    base: PathBuf,
    training: Option<serde_json::Value>,
}

fn prepare_data_dir(dir: &Path, keep: bool) -> anyhow::Result<()> {
    if dir.exists() && !keep {
        if !dir.join(MARKER).exists() {
            if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
                bail!(
                    "{} exists and is not a localnet data directory; pass another --data-dir (it is wiped at every start)",
                    dir.display()
                );
            }
        } else {
            std::fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"ganglion localnet data; wiped by the next `ganglion localnet`\n")
        .with_context(|| format!("writing into {}", dir.display()))?;
    Ok(())
}

/// `ganglion model pull MODEL` in the foreground, so its progress bar shows (on stderr).
fn ensure_model(model: &str, json: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the ganglion executable")?;
    let mut command = std::process::Command::new(exe);
    command.args(["model", "pull", model]);
    if json {
        // Keep stdout for the summary alone.
        command.stdout(std::io::stderr());
    }
    let status = command.status().with_context(|| format!("running `ganglion model pull {model}`"))?;
    if !status.success() {
        bail!("could not fetch the model `{model}` (see above); `ganglion model pull {model}` retries it");
    }
    Ok(())
}

/// A free loopback port (bound and released; the small race is acceptable on a dev machine).
fn free_port() -> anyhow::Result<u16> {
    ganglion_neuron::server::free_loopback_port().context("finding a free port")
}

fn s(text: impl Into<String>) -> String {
    text.into()
}

async fn drive(args: LocalnetArgs, data_dir: PathBuf, model_start: Option<ModelEvalStart>) -> anyhow::Result<ExitCode> {
    let wallets = data_dir.join("wallets");
    // The model miners' files (the degraded copy takes seconds), made while the chain starts.
    let fixtures_task = model_start.as_ref().map(|start| {
        let base = start.base.clone();
        let dir = data_dir.join("model-eval");
        let trained = start.training.as_ref().map(|report| model_eval::trained_dir(report, &dir.join("trained")));
        tokio::task::spawn_blocking(move || model_eval::prepare(&base, trained.as_deref(), &dir))
    });
    let records_url = ganglion_records::Records::default_url(&data_dir);
    let mut supervisor = Supervisor::new(&data_dir.join("logs"), "GANGLION_LOCALNET_LOG")?;
    // Every node is this same binary with a subcommand (adversaries: `ganglion-redteam`).
    let me = std::env::current_exe().context("cannot find the ganglion executable to start children with")?;
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };

    // The chain.
    let chain_port = free_port()?;
    let chain_url = format!("http://127.0.0.1:{chain_port}");
    supervisor.spawn(
        "chain",
        &me,
        &[
            s("chain"),
            s("serve"),
            s("--data-dir"),
            data_dir.join("chain").display().to_string(),
            s("--port"),
            chain_port.to_string(),
            s("--block-time"),
            format!("{}ms", args.block_time.as_millis()),
            s("--tempo"),
            args.tempo.to_string(),
        ],
    )?;
    let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&chain_url)?);
    setup::wait_for_chain(chain.as_ref(), Duration::from_secs(30))
        .await
        .with_context(|| supervisor::log_tail(&supervisor.log_path("chain"), 10))?;
    say(format!("chain at {chain_url} (block time {:?}, tempo {})", args.block_time, args.tempo));

    // Wallets, subnets, registrations.
    let owner = setup::create_wallet(&wallets, "owner")?;
    chain.faucet(&owner.0, 5_000 * ganglion_chain::RAO_PER_TAO).await.context("funding the subnet owner")?;
    let inference_netuid = setup::create_subnet(chain.as_ref(), &owner, args.tempo).await?;
    let compute_netuid =
        if args.no_compute { None } else { Some(setup::create_subnet(chain.as_ref(), &owner, args.tempo).await?) };
    let reward_netuid = if args.reward { Some(setup::create_subnet(chain.as_ref(), &owner, args.tempo).await?) } else { None };
    let model_netuid = if model_start.is_some() { Some(setup::create_subnet(chain.as_ref(), &owner, args.tempo).await?) } else { None };
    let models = models(&args.models)?;
    let first = models[0].as_str();
    let mut plan: Vec<(String, Role, u16, Option<String>)> = vec![(s("inference-validator"), Role::Validator, inference_netuid, None)];
    for model in &models {
        let named = |name: &str| for_model(first, model, name);
        plan.push((named("honest-1"), Role::Honest, inference_netuid, Some(model.clone())));
        plan.push((named("honest-2"), Role::Honest, inference_netuid, Some(model.clone())));
        for strategy in adversaries(&args.adversaries)? {
            if strategy == "sybil" {
                plan.extend((1..=SYBILS).map(|i| (named(&format!("sybil-{i}")), Role::Adversary(strategy), inference_netuid, Some(model.clone()))));
            } else if strategy != "relay" || model == first {
                // The relay forwards the first model's honest-1.
                plan.push((named(strategy), Role::Adversary(strategy), inference_netuid, Some(model.clone())));
            }
        }
    }
    if let Some(netuid) = compute_netuid {
        plan.push((s("compute-validator"), Role::Validator, netuid, None));
        plan.push((s("compute-fast"), Role::ComputeFast, netuid, None));
        plan.push((s("compute-slow"), Role::ComputeSlow, netuid, None));
    }
    if let Some(netuid) = reward_netuid {
        plan.push((s("reward-validator"), Role::Validator, netuid, None));
        plan.push((s("prompt-good"), Role::Honest, netuid, Some(first.to_string())));
        for &(strategy, hotkeys) in PROMPTING_ADVERSARIES {
            if hotkeys == 1 {
                plan.push((s(strategy), Role::Adversary(strategy), netuid, Some(first.to_string())));
            } else {
                plan.extend((1..=hotkeys).map(|i| (format!("{strategy}-{i}"), Role::Adversary(strategy), netuid, Some(first.to_string()))));
            }
        }
    }
    if let Some(netuid) = model_netuid {
        plan.push((s(model_eval::VALIDATOR), Role::Validator, netuid, None));
        let trained = model_start.as_ref().is_some_and(|m| m.training.is_some());
        for &part in model_eval::CAST.iter().filter(|part| **part != "trained" || trained) {
            plan.push((model_eval::wallet_name(part), Role::Model(part), netuid, Some(first.to_string())));
        }
    }
    let mut neurons = Vec::new();
    for (name, role, netuid, model) in plan {
        let name = name.as_str();
        let (coldkey, hotkey) = setup::create_wallet(&wallets, name)?;
        neurons.push(Neuron { name: name.to_string(), role, netuid, model, coldkey, hotkey, uid: None });
    }
    setup::register_all(&chain, &mut neurons).await?;
    say(format!(
        "subnets: inference {inference_netuid}{}{}{}; {} wallets under {}",
        compute_netuid.map(|n| format!(", compute {n}")).unwrap_or_default(),
        reward_netuid.map(|n| format!(", reward {n}")).unwrap_or_default(),
        model_netuid.map(|n| format!(", model evaluation {n}")).unwrap_or_default(),
        neurons.len() + 1,
        wallets.display()
    ));

    // The honest miners' upstreams: the built-in engine behind an OpenAI-compatible server,
    // one per model, each serving it under its known name.
    let mut engine_urls = std::collections::HashMap::new();
    for model in &models {
        let engine_port = free_port()?;
        engine_urls.insert(model.clone(), format!("http://127.0.0.1:{engine_port}"));
        supervisor.spawn(&for_model(first, model, "engine"), &me, &[s("engine"), s("serve"), s("--model"), model.clone(), s("--port"), engine_port.to_string()])?;
    }

    // The good prompting miner's own engine: the inference subnet's validator keeps the
    // honest miners' engine busy, and a prompt chain waits for its slowest answer.
    let reward_engine = if reward_netuid.is_some() {
        let port = free_port()?;
        supervisor.spawn("reward-engine", &me, &[s("engine"), s("serve"), s("--model"), first.to_string(), s("--port"), port.to_string()])?;
        Some(format!("http://127.0.0.1:{port}"))
    } else {
        None
    };

    // Subnet processes.
    let common = |neuron: &Neuron| {
        vec![
            s("--wallet.path"),
            wallets.display().to_string(),
            s("--wallet.name"),
            neuron.name.clone(),
            s("--netuid"),
            neuron.netuid.to_string(),
            s("--subtensor.network"),
            chain_url.clone(),
        ]
    };
    let fixtures = match fixtures_task {
        Some(task) => Some(task.await.context("the model fixtures' task failed")??),
        None => None,
    };
    let mut status_urls = Vec::new();
    let mut adversaries_started: Vec<(&'static str, String)> = Vec::new();
    for neuron in &neurons {
        if let Role::Adversary(strategy) = neuron.role {
            // One `ganglion-redteam` process per strategy and model, with all of its wallets
            // (a Sybil's several); the relay forwards honest-1's answers.
            let model = neuron.model.clone().unwrap_or_else(|| first.to_string());
            if adversaries_started.contains(&(strategy, model.clone())) {
                continue;
            }
            adversaries_started.push((strategy, model.clone()));
            let wallets_of: Vec<String> =
                neurons.iter().filter(|n| n.role == neuron.role && n.model == neuron.model).map(|n| n.name.clone()).collect();
            let victim = neurons.iter().find(|n| n.name == "honest-1").map(|n| n.hotkey.public().to_ss58()).unwrap_or_default();
            let argv = processes::adversary(strategy, &model, &wallets, &wallets_of, neuron.netuid, &chain_url, &victim);
            supervisor.spawn(&for_model(first, &model, strategy), &crate::cmd::redteam::executable()?, &argv)?;
            continue;
        }
        let port = free_port()?;
        let mut argv = match (neuron.role, neuron.netuid == inference_netuid) {
            // Started once every model is committed (below), so that its first round sees them all.
            (Role::Validator, false) if Some(neuron.netuid) == model_netuid => continue,
            (Role::Model(part), _) => {
                let entry = fixtures.as_ref().and_then(|f| f.entry(part)).with_context(|| format!("no files for the {part} model miner"))?;
                processes::model_miner(port, &entry.serve)
            }
            (Role::Validator, false) if Some(neuron.netuid) == reward_netuid => {
                status_urls.push((neuron.netuid, format!("http://127.0.0.1:{port}/status")));
                processes::reward_validator(port, args.tempo, args.max_tokens, args.reward_rounds, &records_url, &data_dir.join("state").join(&neuron.name))
            }
            (Role::Validator, true) => {
                status_urls.push((neuron.netuid, format!("http://127.0.0.1:{port}/status")));
                processes::inference_validator(port, args.tempo, args.max_tokens, &models, &records_url, &data_dir.join("state").join(&neuron.name))
            }
            (Role::Validator, false) => {
                status_urls.push((neuron.netuid, format!("http://127.0.0.1:{port}/status")));
                processes::compute_validator(port, args.tempo, &records_url, &data_dir.join("state").join(&neuron.name))
            }
            (Role::ComputeFast | Role::ComputeSlow, _) => processes::compute_miner(
                port,
                free_port()?,
                neuron.role == Role::ComputeSlow,
                &data_dir.join("state").join(&neuron.name),
            ),
            (Role::Honest, _) | (Role::Adversary(_), _) => {
                let model = neuron.model.as_deref().unwrap_or(first);
                let upstream = match &reward_engine {
                    Some(url) if Some(neuron.netuid) == reward_netuid => url,
                    _ => engine_urls.get(model).with_context(|| format!("no engine for {model}"))?,
                };
                processes::inference_miner(port, upstream)
            }
        };
        argv.extend(common(neuron));
        supervisor.spawn(&neuron.name, &me, &argv)?;
    }

    // Model evaluation: the miners' axons on chain, their commitments in order, then the
    // validator.
    let mut commits = Vec::new();
    if let (Some(netuid), Some(fixtures)) = (model_netuid, &fixtures) {
        let miners: Vec<&Neuron> = neurons.iter().filter(|n| matches!(n.role, Role::Model(_))).collect();
        model_eval::wait_for_axons(chain.as_ref(), netuid, &miners, Duration::from_secs(120))
            .await
            .with_context(|| format!("logs in {}", data_dir.join("logs").display()))?;
        commits = model_eval::publish_all(&me, chain.as_ref(), fixtures, &neurons, &common).await?;
        for commit in &commits {
            say(format!("model-eval: {} committed {} at block {}", commit.name, commit.commitment, commit.block));
        }
        let validator = neurons.iter().find(|n| n.name == model_eval::VALIDATOR).context("no model validator wallet")?;
        let port = free_port()?;
        status_urls.push((netuid, format!("http://127.0.0.1:{port}/status")));
        let mut argv = processes::model_validator(
            port,
            args.tempo,
            args.block_time * u32::from(args.tempo),
            args.model_eval_samples,
            &fixtures.config,
            &records_url,
            &data_dir.join("state").join(&validator.name),
        );
        argv.extend(common(validator));
        supervisor.spawn(&validator.name, &me, &argv)?;
    }

    // The hub.
    supervisor.spawn(
        "hub",
        &me,
        &[
            s("hub"),
            s("--database.url"),
            records_url.clone(),
            s("--port"),
            args.hub_port.to_string(),
            s("--subtensor.network"),
            chain_url.clone(),
        ],
    )?;
    let hub_url = format!("http://127.0.0.1:{}/", args.hub_port);
    say(format!("hub: {hub_url}   (logs: {})", data_dir.join("logs").display()));

    let mut subnets = vec![(inference_netuid, "inference")];
    subnets.extend(compute_netuid.map(|n| (n, "compute")));
    subnets.extend(reward_netuid.map(|n| (n, "reward")));
    subnets.extend(model_netuid.map(|n| (n, "model-eval")));
    let outcome = watch(&args, chain.as_ref(), &mut supervisor, &neurons, &subnets, &status_urls).await;
    let exits = supervisor.shutdown().await;
    let mut summary = outcome?;
    summary.exits = exits;
    if let Some(fixtures) = &fixtures {
        summary.model_eval = Some(serde_json::json!({
            "training": model_start.as_ref().and_then(|m| m.training.clone()),
            "max_bytes": fixtures.max_bytes,
            "commits": commits.iter().map(|c| serde_json::json!({"name": c.name, "commitment": c.commitment, "block": c.block})).collect::<Vec<_>>(),
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary.to_json(&hub_url))?);
    } else {
        println!("{}", summary.render_final());
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows blocks, prints a table after every inference epoch, and stops after `--epochs`
/// epochs that had weights in them (or on SIGINT/SIGTERM, or when a child dies).
async fn watch(
    args: &LocalnetArgs,
    chain: &dyn Chain,
    supervisor: &mut Supervisor,
    neurons: &[Neuron],
    subnets: &[(u16, &'static str)],
    status_urls: &[(u16, String)],
) -> anyhow::Result<Summary> {
    let inference_netuid = subnets[0].0;
    let http = ganglion_tls::ClientTls::system().http_builder().timeout(Duration::from_secs(2)).build()?;
    let mut blocks = chain.subscribe_blocks().await.context("subscribing to blocks")?;
    let mut scored_epochs = 0u32;
    let mut summary = Summary::default();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            signal = ganglion_neuron::signals::wait_for_signal() => {
                if !args.json { eprintln!("{signal}: stopping…"); }
                return Ok(summary);
            }
            _ = ticker.tick() => supervisor.check()?,
            block = blocks.next() => {
                let header = match block {
                    Some(Ok(header)) => header,
                    Some(Err(err)) => return Err(err).context("the chain's block stream failed"),
                    None => bail!("the chain closed its block stream"),
                };
                if !header.epochs.contains(&inference_netuid) {
                    continue;
                }
                let rows = table::collect(chain, &http, neurons, subnets, status_urls).await?;
                // An epoch counts once the inference subnet (and the reward and model-evaluation
                // subnets, when they run: their first steps take a while) has weights in.
                let has_weights = |netuid: u16| rows.iter().any(|r| r.netuid == netuid && r.role != Role::Validator && r.incentive > 0.0);
                let weights_in = subnets.iter().filter(|(_, name)| *name != "compute").all(|(netuid, _)| has_weights(*netuid));
                if weights_in {
                    scored_epochs += 1;
                }
                if !args.json {
                    println!("{}", table::render(header.number, scored_epochs, &rows));
                }
                summary = Summary { block: header.number, epochs: scored_epochs, rows, ..Summary::default() };
                if args.epochs.is_some_and(|n| scored_epochs >= n) {
                    return Ok(summary);
                }
            }
        }
    }
}

/// The command lines of the subnet processes: the one place that knows their flags.
mod processes {
    use std::path::Path;
    use std::time::Duration;

    use super::s;

    pub(super) fn inference_validator(port: u16, tempo: u16, max_tokens: u32, models: &[String], records_url: &str, state_dir: &Path) -> Vec<String> {
        vec![
            s("validator"),
            s("inference"),
            s("--verify.model"),
            models.join(","),
            s("--metrics.port"),
            port.to_string(),
            s("--neuron.epoch_length"),
            tempo.to_string(),
            s("--neuron.max_tokens"),
            max_tokens.to_string(),
            // Rounds of a third of an epoch (at least 3 s), two requests in flight per miner:
            // several rounds per epoch on a CPU (production: 20 s, four).
            s("--neuron.round_window"),
            format!("{}s", (u64::from(tempo) / 3).max(3)),
            s("--neuron.concurrency"),
            s("2"),
            // Results expire after three epochs of 1 s blocks, so a miner that stops
            // answering is at zero within the run (production: 1 h).
            s("--neuron.score_ttl"),
            format!("{}s", 3 * u64::from(tempo)),
            // The run's own score state, not the user's (~/.ganglion/inference/…).
            s("--neuron.data_dir"),
            state_dir.display().to_string(),
            s("--database.url"),
            records_url.to_string(),
        ]
    }

    /// The reward-pipeline validator: DPO on the first model (the default), the masks, no
    /// judge; 20 s per query (a CPU engine shared by every miner of the run, the original's
    /// 10 s assumes GPUs), a forward as soon as the last one ends.
    pub(super) fn reward_validator(port: u16, tempo: u16, max_tokens: u32, rounds: usize, records_url: &str, state_dir: &Path) -> Vec<String> {
        vec![
            s("validator"),
            s("reward"),
            s("--metrics.port"),
            port.to_string(),
            s("--neuron.epoch_length"),
            tempo.to_string(),
            s("--validator.max_tokens"),
            max_tokens.to_string(),
            s("--validator.rounds"),
            rounds.to_string(),
            s("--validator.timeout"),
            s("20"),
            s("--validator.step_interval"),
            s("1"),
            s("--data-dir"),
            state_dir.display().to_string(),
            s("--database.url"),
            records_url.to_string(),
        ]
    }

    /// The model-evaluation validator: the localnet's competition file, `samples` per step,
    /// at most a step per epoch (`epoch`: tempo × block time; a round over the cast takes a
    /// core for tens of seconds, which back to back would starve the inference subnet's
    /// engine), weights every epoch.
    pub(super) fn model_validator(port: u16, tempo: u16, epoch: Duration, samples: usize, config: &Path, records_url: &str, state_dir: &Path) -> Vec<String> {
        vec![
            s("validator"),
            s("model"),
            s("--metrics.port"),
            port.to_string(),
            s("--neuron.epoch_length"),
            tempo.to_string(),
            s("--config"),
            config.display().to_string(),
            s("--eval.samples"),
            samples.to_string(),
            s("--eval.download_timeout"),
            s("120"),
            s("--validator.step_interval"),
            format!("{:.3}", epoch.as_secs_f64().max(2.0)),
            s("--data-dir"),
            state_dir.display().to_string(),
            s("--database.url"),
            records_url.to_string(),
        ]
    }

    /// A model miner serving `dir` on loopback. Any registered, signed caller may download
    /// (`--allow-non-validators`): a miner refreshes its view of the permits every 12 s, so
    /// the validator's fresh permit would race its first downloads and a round would see only
    /// part of the cast.
    pub(super) fn model_miner(port: u16, dir: &Path) -> Vec<String> {
        vec![
            s("miner"),
            s("model"),
            s("serve"),
            s("--axon.ip"),
            s("127.0.0.1"),
            s("--axon.port"),
            port.to_string(),
            s("--dir"),
            dir.display().to_string(),
            s("--allow-non-validators"),
        ]
    }

    pub(super) fn inference_miner(port: u16, upstream: &str) -> Vec<String> {
        vec![s("miner"), s("inference"), s("--axon.port"), port.to_string(), s("--upstream"), upstream.to_string()]
    }

    /// `ganglion-redteam inference --strategy …` for one strategy and its wallets. Each runs
    /// its own engine (one compute thread, like every child), so it is not on the honest
    /// miners' engine.
    pub(super) fn adversary(strategy: &str, model: &str, wallets: &Path, names: &[String], netuid: u16, chain_url: &str, victim: &str) -> Vec<String> {
        let mut argv = vec![
            s("inference"),
            s("--strategy"),
            s(strategy),
            s("--model"),
            s(model),
            s("--model-name"),
            s(model),
            s("--wallet.path"),
            wallets.display().to_string(),
            s("--wallet.name"),
            names.join(","),
            s("--netuid"),
            netuid.to_string(),
            s("--subtensor.network"),
            s(chain_url),
        ];
        if strategy == "relay" {
            argv.extend([s("--relay.victim"), s(victim)]);
        }
        argv
    }

    /// The hardest challenge is capped at 8 (default 12) so that hashing leaves the CPU to
    /// the inference subnet (at 9 the fast miner searches up to a core for 30 s per round).
    /// The validator raises a miner's difficulty after a run of successes; at 8 the fast
    /// miner still solves in about 2 s while the capped one mostly times out: that, not raw
    /// solve time (the original's score barely weighs it), separates their scores after a
    /// few rounds.
    pub(super) fn compute_validator(port: u16, tempo: u16, records_url: &str, state_dir: &Path) -> Vec<String> {
        vec![
            s("validator"),
            s("compute"),
            s("--metrics.port"),
            port.to_string(),
            s("--neuron.epoch_length"),
            tempo.to_string(),
            s("--database.url"),
            records_url.to_string(),
            s("--data-dir"),
            state_dir.display().to_string(),
            s("--validator.difficulty.max"),
            s("8"),
        ]
    }

    /// One solver thread each (the machine is shared with the inference subnet); the slow
    /// miner is also capped at 2 MH/s, about a fifteenth of one core's AVX-512 rate.
    pub(super) fn compute_miner(port: u16, ssh_port: u16, slow: bool, state_dir: &Path) -> Vec<String> {
        let mut argv = vec![
            s("miner"),
            s("compute"),
            s("--axon.port"),
            port.to_string(),
            s("--ssh.port"),
            ssh_port.to_string(),
            s("--data-dir"),
            state_dir.display().to_string(),
            s("--miner.threads"),
            s("1"),
        ];
        if slow {
            argv.extend([s("--miner.max_hash_rate"), s("2000000")]);
        }
        argv
    }
}
