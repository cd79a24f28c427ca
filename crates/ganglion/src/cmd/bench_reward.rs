//! `ganglion bench reward`: the reward validator's sentence embeddings (all-MiniLM-L6-v2 in
//! candle, `ganglion_reward::embed`) against PyTorch `sentence-transformers` on the same corpus
//! texts and thread count, in one run; and the validator's time for one full forward (9 steps
//! × 50 uids by default) with the miners replaced by an in-process querier that answers at
//! once from the corpus.
//!
//! The PyTorch side runs `scripts/reward-bench-st.py` in `.venv-reward` (created on demand by
//! `scripts/bench-reward-venv`, several GB: never by CI). Without the venv the bench says how
//! to create it and reports our side only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use ganglion_reward::bench::{EmbedFigure, ForwardFigure, corpus_texts, embed_throughput, in_pool, time_forward};
use ganglion_reward::dpo::Dpo;
use ganglion_reward::embed::SentenceEmbedder;
use ganglion_reward::pipeline::Pipeline;
use ganglion_reward::similarity::Relevance;
use serde::{Deserialize, Serialize};

#[derive(Debug, clap::Args)]
pub(crate) struct RewardBenchArgs {
    /// Threads of both sides (our pool, `torch.set_num_threads`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Corpus texts embedded per run.
    #[arg(long, default_value_t = 256)]
    texts: usize,
    /// Runs per side (the best is kept).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Uids per step of the timed forward (0 skips it).
    #[arg(long, default_value_t = 50)]
    uids: usize,
    /// Follow-up/answer rounds of the timed forward (4: nine steps).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// The DPO reference model of the timed forward (`none`: masks only).
    #[arg(long = "dpo-model", default_value = "smollm2")]
    dpo_model: String,
    /// Do not run sentence-transformers even if its venv exists.
    #[arg(long = "no-sentence-transformers")]
    no_st: bool,
    /// Seed of the texts and of the forward.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What the PyTorch script prints with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TheirFigure {
    threads: usize,
    texts: usize,
    seconds: f64,
    texts_per_s: f64,
    torch: String,
}

#[derive(Debug, Serialize)]
struct Report {
    threads: usize,
    ours: EmbedFigure,
    sentence_transformers: Option<TheirFigure>,
    /// ours / sentence-transformers, texts per second.
    ratio: Option<f64>,
    note: Option<String>,
    forward: Option<ForwardFigure>,
}

/// The checkout holding `scripts/` and `.venv-reward`: the working directory or this
/// build's workspace.
fn checkout() -> Option<PathBuf> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [std::env::current_dir().ok(), Some(built)].into_iter().flatten().find(|d| d.join("scripts/reward-bench-st.py").is_file())
}

fn sentence_transformers(args: &RewardBenchArgs, texts: &[String]) -> Result<TheirFigure, String> {
    let root = checkout().ok_or("scripts/reward-bench-st.py not found (run from the ganglion checkout)")?;
    let python = root.join(".venv-reward/bin/python");
    if !python.is_file() {
        return Err(format!(
            "sentence-transformers not measured: its venv is absent; create it with `{}` (PyTorch, several GB), then run this again",
            root.join("scripts/bench-reward-venv").display()
        ));
    }
    let file = std::env::temp_dir().join(format!("ganglion-bench-reward-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(texts).map_err(|e| e.to_string())?).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let output = std::process::Command::new(&python)
        .arg(root.join("scripts/reward-bench-st.py"))
        .arg(args.threads.to_string())
        .arg("--texts")
        .arg(&file)
        .args(["--repeats", &args.repeats.to_string(), "--json"])
        .env("OMP_NUM_THREADS", args.threads.to_string())
        .output();
    let _ = std::fs::remove_file(&file);
    let output = output.map_err(|e| format!("running {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!("reward-bench-st.py failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("reward-bench-st.py printed no JSON")?;
    serde_json::from_str(line).map_err(|e| format!("reward-bench-st.py output: {e}"))
}

pub(crate) fn run(args: RewardBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(args.texts > 0, "--texts must be at least 1");
    let embedder = Arc::new(SentenceEmbedder::load_default().context("the MiniLM model (scripts/install-minilm)")?);
    let corpus = ganglion_reward::forward::locate_corpus()?;
    let texts = corpus_texts(&corpus, args.texts, args.seed);
    let ours = in_pool(args.threads, || embed_throughput(&embedder, &texts, args.repeats))??;
    let (theirs, note) = if args.no_st {
        (None, Some("sentence-transformers not run (--no-sentence-transformers)".to_string()))
    } else {
        match sentence_transformers(&args, &texts) {
            Ok(figure) => (Some(figure), None),
            Err(note) => (None, Some(note)),
        }
    };
    let forward = if args.uids > 0 {
        let dpo = match args.dpo_model.as_str() {
            "none" => None,
            name => {
                let path = ganglion_engine::store::resolve_model(name, &ganglion_engine::store::models_dir()?)?;
                Some(Dpo::new(Arc::new(ganglion_engine::Engine::load(&path).with_context(|| format!("loading {}", path.display()))?)))
            }
        };
        let mut pipeline = Pipeline::standard(dpo, false, embedder.clone(), Relevance::default())?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let figure = in_pool(args.threads, || runtime.block_on(time_forward(&mut pipeline, corpus.clone(), args.uids, args.rounds, args.seed)))??;
        Some(figure)
    } else {
        None
    };
    let report = Report {
        threads: args.threads,
        ratio: theirs.as_ref().map(|t| ours.texts_per_s / t.texts_per_s),
        ours,
        sentence_transformers: theirs,
        note,
        forward,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &Report) {
    let st = r.sentence_transformers.as_ref();
    println!("all-MiniLM-L6-v2, {} threads, {} corpus texts ({} tokens)", r.threads, r.ours.texts, r.ours.tokens);
    println!("{:<40} {:>12} {:>22} {:>8}", "measure", "ganglion", "sentence-transformers", "ratio");
    println!(
        "{:<40} {:>12.1} {:>22} {:>8}",
        "embeddings (texts/s)",
        r.ours.texts_per_s,
        st.map_or_else(|| "-".into(), |t| format!("{:.1}", t.texts_per_s)),
        r.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}x"))
    );
    println!(
        "{:<40} {:>12.1} {:>22}",
        "embeddings (tokens/s)",
        r.ours.tokens as f64 / r.ours.seconds,
        st.map_or_else(|| "-".into(), |t| format!("{:.1}", r.ours.tokens as f64 / t.seconds))
    );
    if let Some(note) = &r.note {
        println!("note: {note}");
    }
    if let Some(f) = &r.forward {
        println!(
            "one forward, {} steps x {} uids ({} completions, instant miners): {:.1} s, of which scoring {:.1} s ({})",
            f.steps,
            f.uids,
            f.completions,
            f.seconds,
            f.scoring_seconds,
            f.functions.join(", ")
        );
    }
}
