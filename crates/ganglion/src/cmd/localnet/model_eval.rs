//! `ganglion localnet --model-eval`: the model-evaluation subnet beside the others.
//!
//! ```text
//!  (before the chain) ganglion miner model train --base <first model> --out <dir>/trained
//!  fixtures: base dir, a degraded copy (noised weights, as a Hugging Face safetensors dir:
//!            config.json, model.safetensors in bf16, tokenizer files), the copier's dir (the base files),
//!            an oversized dir (base + padding over the competition's cap), the mismatch's
//!            dir (the degraded files), the competition TOML (the cap, short sequences)
//!  every miner: ganglion miner model serve --dir …            (supervised children)
//!  axons on chain ─► ganglion miner model publish, in order: degraded, base, trained (each
//!            in a later block than the one before), then copier, oversized and mismatch
//!            (the mismatch commits the base files' hash but serves the degraded ones)
//!  ─► ganglion validator model --config <toml> --eval.samples N   (after every commitment,
//!            so its first round sees the whole cast)
//! ```
//!
//! The miners, like the validator, are this binary's own commands: none of them cheats in
//! code, they only publish or serve the wrong files (adversaries live in `ganglion-redteam`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ganglion_chain::{Chain, Metagraph};
use ganglion_evaluation::demo;
use serde_json::Value;

use super::s;
use super::setup::{Neuron, Role};

/// The miners, in commit order: the degraded copy first (the time advantage is its, the
/// base model must beat it by more than epsilon), the base, the trained model (it must beat
/// the base by more than epsilon), then the copier (the base files, later: a duplicate) and
/// the two that are refused.
pub(super) const CAST: &[&str] = &["degraded", "base", "trained", "copier", "oversized", "mismatch"];

/// How many of [`CAST`] commit one after the other, each in a later block.
const ORDERED: usize = 4;

/// The validator's wallet and process name.
pub(super) const VALIDATOR: &str = "model-validator";

/// A model miner's wallet and process name.
pub(super) fn wallet_name(role: &str) -> String {
    format!("model-{role}")
}

/// Tokens per evaluation sample (the finetuning subnet's 2048 would make a step last minutes
/// on a shared CPU).
const SEQUENCE_LENGTH: usize = 128;
/// The degraded copy: noise × each matrix's RMS on every attention output and FFN down
/// projection (SmolLM2's mean loss about a sixth higher).
const DEGRADED_NOISE: f32 = 0.2;
const DEGRADED_SEED: u64 = 11;
/// The competition's byte cap is the largest honest model plus this; the oversized model is
/// the base plus padding to this much over the cap.
const CAP_MARGIN: u64 = 1024 * 1024;

/// Runs `ganglion miner model train` in the foreground (its progress on stderr) and returns
/// its JSON report (`out`, `base_loss`, `trained_loss`, …).
pub(super) fn train(me: &Path, base: &Path, out: &Path, steps: Option<u32>, samples: Option<u32>, quiet: bool) -> anyhow::Result<Value> {
    // Trained on the competition's sequence length (the command's default is the finetuning
    // subnet's 2048: many times longer).
    let mut argv = vec![
        s("miner"),
        s("model"),
        s("train"),
        s("--base"),
        base.display().to_string(),
        s("--out"),
        out.display().to_string(),
        s("--sequence-length"),
        SEQUENCE_LENGTH.to_string(),
        s("--json"),
    ];
    if let Some(steps) = steps {
        argv.extend([s("--steps"), steps.to_string()]);
    }
    if let Some(samples) = samples {
        argv.extend([s("--samples"), samples.to_string(), s("--eval-samples"), samples.to_string()]);
    }
    if !quiet {
        eprintln!("model-eval: training the trained miner's model (ganglion {})…", argv.join(" "));
    }
    let started = Instant::now();
    let output = std::process::Command::new(me)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running `ganglion miner model train`")?;
    if !output.status.success() {
        bail!(
            "`ganglion miner model train` failed ({}); see above, or leave the trained miner out with --model-eval.no-train",
            output.status
        );
    }
    let report: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("`ganglion miner model train --json` printed no JSON: {}", String::from_utf8_lossy(&output.stdout)))?;
    if !quiet {
        let loss = |key: &str| report[key].as_f64().map_or_else(|| "?".into(), |l| format!("{l:.4}"));
        eprintln!(
            "model-eval: trained in {:.0} s: mean loss {} → {} ({})",
            started.elapsed().as_secs_f64(),
            loss("base_loss"),
            loss("trained_loss"),
            trained_dir(&report, out).display()
        );
    }
    Ok(report)
}

/// The trained model's directory: the report's `dir` (its `out` is the GGUF file in it),
/// else the one asked for.
pub(super) fn trained_dir(report: &Value, asked: &Path) -> PathBuf {
    match (report["dir"].as_str(), report["out"].as_str()) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(out)) if Path::new(out).is_file() => Path::new(out).parent().map_or_else(|| asked.to_path_buf(), Path::to_path_buf),
        (None, Some(out)) => PathBuf::from(out),
        (None, None) => asked.to_path_buf(),
    }
}

/// A miner's directories: the one it publishes (hashes and commits) and the one it serves.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) role: &'static str,
    pub(super) publish: PathBuf,
    pub(super) serve: PathBuf,
}

/// The cast's files and the competition file.
#[derive(Debug, Clone)]
pub(super) struct Fixtures {
    pub(super) entries: Vec<Entry>,
    /// `[[competition]]` TOML for `ganglion validator model --config`.
    pub(super) config: PathBuf,
    /// Its byte cap.
    pub(super) max_bytes: u64,
}

impl Fixtures {
    pub(super) fn entry(&self, role: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role == role)
    }
}

/// Builds every miner's directory under `dir` (the base model hard-linked where it can be)
/// and the competition file. Blocking (the degraded copy takes seconds).
pub(super) fn prepare(base_gguf: &Path, trained: Option<&Path>, dir: &Path) -> anyhow::Result<Fixtures> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = demo::model_dir(&dir.join("base"), base_gguf).context("the base model's directory")?;
    let copier = demo::model_dir(&dir.join("copier"), base_gguf).context("the copier's directory")?;
    let degraded_gguf = dir.join("degraded.gguf");
    demo::noised_copy(base_gguf, &degraded_gguf, DEGRADED_NOISE, DEGRADED_SEED).map_err(anyhow::Error::msg).context("making the degraded copy")?;
    // Published in the other format validators take: Hugging Face safetensors (bf16) +
    // config.json + tokenizer.json, so every localnet step also evaluates one.
    let degraded = dir.join("degraded");
    if degraded.exists() {
        std::fs::remove_dir_all(&degraded).with_context(|| format!("removing the last run's {}", degraded.display()))?;
    }
    ganglion_engine::hf_model::export_gguf(&degraded_gguf, &degraded, ganglion_engine::hf_model::ExportDType::Bf16)
        .context("writing the degraded copy as a safetensors directory")?;
    let mismatch = demo::model_dir(&dir.join("mismatch"), &degraded_gguf).context("the mismatch's directory")?;
    let bytes = |d: &Path| demo::dir_bytes(d).with_context(|| format!("sizing {}", d.display()));
    let base_bytes = bytes(&base)?;
    let mut largest = base_bytes.max(bytes(&degraded)?);
    if let Some(trained) = trained {
        largest = largest.max(bytes(trained)?);
    }
    let max_bytes = largest + CAP_MARGIN;
    let oversized = demo::model_dir(&dir.join("oversized"), base_gguf).context("the oversized model's directory")?;
    // Zeros (a sparse file where the filesystem has them): its size is what is refused.
    let padding = std::fs::File::create(oversized.join("padding.bin")).context("the oversized model's padding")?;
    padding.set_len(max_bytes - base_bytes + CAP_MARGIN).context("the oversized model's padding")?;
    let config = dir.join("competitions.toml");
    std::fs::write(&config, competition_toml(max_bytes, base_gguf)).with_context(|| format!("writing {}", config.display()))?;
    let mut entries = vec![
        Entry { role: "degraded", publish: degraded.clone(), serve: degraded },
        Entry { role: "base", publish: base.clone(), serve: base.clone() },
    ];
    if let Some(trained) = trained {
        entries.push(Entry { role: "trained", publish: trained.to_path_buf(), serve: trained.to_path_buf() });
    }
    entries.push(Entry { role: "copier", publish: copier.clone(), serve: copier });
    entries.push(Entry { role: "oversized", publish: oversized.clone(), serve: oversized });
    // Commits the base files' hash (bound to its own hotkey), serves the degraded files.
    entries.push(Entry { role: "mismatch", publish: base, serve: mismatch });
    Ok(Fixtures { entries, config, max_bytes })
}

/// The one competition of the localnet: the default schedule's (architectures, parameter
/// cap, norm checks, epsilon, temperature) with the byte cap just over the honest models and
/// short sequences.
fn competition_toml(max_bytes: u64, tokenizer: &Path) -> String {
    let default = ganglion_evaluation::round::Competition::default_schedule().remove(0);
    let epsilon = match default.epsilon {
        ganglion_evaluation::scoring::Epsilon::Fixed { epsilon } => format!("{{ kind = \"fixed\", epsilon = {epsilon:?} }}"),
        ganglion_evaluation::scoring::Epsilon::LinearDecay { start, end, decay_blocks } => {
            format!("{{ kind = \"linear_decay\", start = {start:?}, end = {end:?}, decay_blocks = {decay_blocks} }}")
        }
    };
    let limits = &default.limits;
    let architectures: Vec<String> = limits.architectures.iter().map(|a| format!("{a:?}")).collect();
    let norms = limits
        .norms
        .map(|n| format!(", norms = {{ soft = {:?}, soft_fraction = {:?}, hard = {:?} }}", n.soft, n.soft_fraction, n.hard))
        .unwrap_or_default();
    format!(
        "# ganglion localnet --model-eval: the default competition with a byte cap just over the\n\
         # honest models (the oversized miner is over it), short sequences, and the base model's\n\
         # tokenizer and chat template for every model (the degraded copy brings its own files).\n\
         [[competition]]\n\
         id = {:?}\nshare = 1.0\nsequence_length = {SEQUENCE_LENGTH}\ntemperature = {:?}\nepsilon = {epsilon}\ntokenizer = {}\n\
         limits = {{ max_bytes = {max_bytes}, architectures = [{}], max_parameters = {}, min_parameters = {}{norms} }}\n",
        default.id,
        default.temperature,
        // A JSON string is a valid TOML basic string (same escapes).
        serde_json::Value::String(tokenizer.display().to_string()),
        architectures.join(", "),
        limits.max_parameters,
        limits.min_parameters,
    )
}

/// Waits until every model miner's axon is on chain (the validator's first round then sees
/// them all).
pub(super) async fn wait_for_axons(chain: &dyn Chain, netuid: u16, miners: &[&Neuron], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let metagraph = Metagraph::fetch(chain, netuid).await?;
        let missing: Vec<&str> =
            miners.iter().filter(|n| metagraph.by_hotkey(&n.hotkey.public()).is_none_or(|i| i.axon.is_none())).map(|n| n.name.as_str()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the model miners' axons were not on chain within {limit:?}: {}", missing.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a publish committed.
#[derive(Debug, Clone)]
pub(super) struct Commit {
    pub(super) name: String,
    pub(super) commitment: String,
    pub(super) block: u64,
}

/// `ganglion miner model publish` for every miner, in [`CAST`] order; each of the first
/// [`ORDERED`] waits for a block after the previous one's.
pub(super) async fn publish_all(
    me: &Path,
    chain: &dyn Chain,
    fixtures: &Fixtures,
    neurons: &[Neuron],
    common: impl Fn(&Neuron) -> Vec<String>,
) -> anyhow::Result<Vec<Commit>> {
    let mut commits = Vec::new();
    for (index, &role) in CAST.iter().enumerate() {
        let (Some(entry), Some(neuron)) = (fixtures.entry(role), neurons.iter().find(|n| n.role == Role::Model(role))) else { continue };
        let mut argv = vec![s("miner"), s("model"), s("publish"), s("--dir"), entry.publish.display().to_string(), s("--name"), s(role), s("--json")];
        argv.extend(common(neuron));
        let output = tokio::process::Command::new(me)
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .with_context(|| format!("running `ganglion miner model publish` for {}", neuron.name))?;
        if !output.status.success() {
            bail!("publishing {}'s model failed ({}): {}", neuron.name, output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        let report: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("`miner model publish --json` for {} printed: {}", neuron.name, String::from_utf8_lossy(&output.stdout)))?;
        let block = report["block"].as_u64().with_context(|| format!("no block in {report}"))?;
        commits.push(Commit { name: neuron.name.clone(), commitment: report["commitment"].as_str().unwrap_or_default().to_string(), block });
        if index + 1 < ORDERED {
            // The next commit lands in a later block.
            let deadline = Instant::now() + Duration::from_secs(30);
            while chain.block_number().await? <= block {
                if Instant::now() >= deadline {
                    bail!("the chain did not pass block {block} within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(commits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct File {
        competition: Vec<ganglion_evaluation::round::Competition>,
    }

    #[test]
    fn the_trained_directory_comes_from_the_training_report() {
        let asked = Path::new("/data/trained");
        let report = serde_json::json!({"out": "/data/trained/model.gguf", "dir": "/data/trained", "base_loss": 3.6});
        assert_eq!(trained_dir(&report, Path::new("/elsewhere")), asked);
        assert_eq!(trained_dir(&serde_json::json!({"base_loss": 3.6}), asked), asked);
    }

    #[test]
    fn the_competition_file_is_the_default_with_the_cap_and_short_sequences() {
        let text = competition_toml(123_456_789, Path::new("/models/base \"quoted\".gguf"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("competitions.toml");
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        // Read as `ganglion validator model --config` reads it.
        let file: File = ganglion_neuron::config::load(Some(&path), &ganglion_neuron::config::Overrides::new()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut expected = ganglion_evaluation::round::Competition::default_schedule().remove(0);
        expected.limits.max_bytes = 123_456_789;
        expected.sequence_length = SEQUENCE_LENGTH;
        expected.tokenizer = Some("/models/base \"quoted\".gguf".into());
        assert_eq!(file.competition, vec![expected]);
    }
}
