//! `ganglion bench evaluation`: one model-evaluation validator step as a validator runs it
//! (`ganglion_evaluation::round::evaluate`: per model the checks, a fresh engine load and the
//! response-only chat loss of every sample), timed against the original's 20-minute step,
//! with its scored tokens per second beside llama.cpp's `llama-perplexity` on the same model
//! and the same samples' text, in the same run and with the same thread count.
//!
//! Every candidate is the same GGUF file under its own uid and hash: a step's cost depends on
//! the architecture, size and samples, not on the weights' values, and each candidate still
//! loads and checks its own copy as it would in a real step.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ganglion_evaluation::loss::tokenize_sample;
use ganglion_evaluation::round::{Candidate, Competition, evaluate_with_progress};

#[derive(Debug, clap::Args)]
pub(crate) struct EvaluationBenchArgs {
    /// Model every candidate loads (`smollm2`, `gemma3-270m`, `hf:OWNER/REPO[:FILE]` once
    /// pulled, or a GGUF path).
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Models in the step (each is checked and loaded on its own, as in a validator step).
    #[arg(long, default_value_t = 8)]
    models: usize,
    /// Samples per model, drawn from the shared corpus as a standalone validator draws them.
    #[arg(long, default_value_t = 400)]
    samples: usize,
    /// Seed of the sample draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The step limit the run is judged against, in seconds (the original's 20 minutes).
    #[arg(long, default_value_t = 1200.0)]
    step_limit: f64,
    /// Do not run llama-perplexity even if it is installed (scripts/install-llama-cpp-tools).
    #[arg(long)]
    no_llama_perplexity: bool,
    /// llama-perplexity's window (tokens); it scores the second half of each window.
    #[arg(long, default_value_t = 512)]
    ppl_ctx: usize,
    /// Most windows llama-perplexity runs (fewer when the samples' text is shorter).
    #[arg(long, default_value_t = 16)]
    ppl_chunks: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `bench evaluation` measured.
#[derive(Debug, serde::Serialize)]
struct Report {
    model: String,
    threads: usize,
    models: usize,
    samples: usize,
    sequence_length: usize,
    /// Tokens one model runs through (every position but the last of each sample), counted
    /// per sample although the chat template's shared preamble runs once per batch: the
    /// scored rate is the comparable one.
    processed_tokens_per_model: usize,
    /// Response tokens one model is scored on.
    scored_tokens_per_model: usize,
    /// The whole step: checks, loads and losses of every model.
    step_seconds: f64,
    step_limit_seconds: f64,
    fits: bool,
    processed_tok_s: f64,
    scored_tok_s: f64,
    /// Models that were evaluated (the rest were rejected, which would be a bug here).
    evaluated: usize,
    mean_loss: Option<f64>,
    llama_perplexity: Option<Anchor>,
    notes: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct Anchor {
    ctx: usize,
    chunks: usize,
    processed_tok_s: f64,
    /// `processed × scored_per_window / ctx`.
    scored_tok_s: f64,
}

pub(crate) fn run(args: EvaluationBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.models > 0 && args.samples > 0, "--models and --samples must be at least 1");
    anyhow::ensure!(args.ppl_ctx >= 4, "--ppl-ctx must be at least 4");
    let path = super::engine::resolve_model(&args.model)?;
    let corpus = ganglion_evaluation::train::locate_corpus().context("the evaluation corpus (scripts/install-corpus)")?;
    let (samples, _) = ganglion_evaluation::train::draw_samples(&corpus, args.seed, args.samples, 0);
    anyhow::ensure!(!samples.is_empty(), "the corpus gave no usable samples");
    let competition = Competition::default_schedule().into_iter().next().context("no default competition")?;

    // Token counts, from the model's own tokenizer (outside the timing).
    let (processed, scored) = {
        let engine = ganglion_engine::Engine::load(&path)?;
        let max_len = competition.sequence_length.min(engine.context_length());
        let mut processed = 0;
        let mut scored = 0;
        for s in &samples {
            if let Ok(t) = tokenize_sample(engine.tokenizer(), s, max_len) {
                processed += t.ids.len().saturating_sub(1);
                scored += t.ids.len().saturating_sub(t.prompt_len.max(1));
            }
        }
        (processed, scored)
    };
    let candidates: Vec<Candidate> = (0..args.models)
        .map(|i| Candidate { uid: i as u16, block: i as u64, hash: format!("bench-{i}"), model: path.clone() })
        .collect();

    let bar = if args.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new((args.models * samples.len()) as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} samples ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let per_model = samples.len();
    // Without a terminal the bar does not draw: a line per model instead (unless --json).
    let lines = !args.json && !std::io::stderr().is_terminal();
    let started = Instant::now();
    let outcome = evaluate_with_progress(&competition, None, &candidates, &samples, args.models as u64, &|| false, &|uid, done| {
        bar.set_position((usize::from(uid) * per_model + done) as u64);
        bar.set_message(format!("model {}/{}", uid + 1, args.models));
        if lines && done == per_model {
            eprintln!("model {}/{}: {per_model} samples scored, {:.1} s into the step", uid + 1, args.models, started.elapsed().as_secs_f64());
        }
    });
    let step_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut notes = Vec::new();
    for (uid, why) in &outcome.rejected {
        notes.push(format!("model {uid} was rejected: {why}"));
    }
    let evaluated = outcome.losses.len();
    let all: Vec<f64> = outcome.losses.keys().filter_map(|&u| outcome.mean_loss(u)).collect();
    let mean_loss = (!all.is_empty()).then(|| all.iter().sum::<f64>() / all.len() as f64);

    let llama_perplexity = if args.no_llama_perplexity {
        None
    } else {
        // The samples' text, one after another; llama-perplexity tokenizes it itself.
        let text: String = samples.iter().map(|s| format!("{}\n{}\n\n", s.prompt, s.response)).collect();
        let chunks = (processed / args.ppl_ctx).min(args.ppl_chunks);
        if chunks == 0 {
            notes.push(format!("the samples' text is shorter than one {}-token window; llama-perplexity not run", args.ppl_ctx));
            None
        } else {
            match ganglion_engine::bench::llama_perplexity(&path, &text, args.ppl_ctx, chunks) {
                Ok(tok_s) => Some(Anchor {
                    ctx: args.ppl_ctx,
                    chunks,
                    processed_tok_s: tok_s,
                    scored_tok_s: tok_s * ganglion_engine::bench::llama_perplexity_scored_per_window(args.ppl_ctx) as f64 / args.ppl_ctx as f64,
                }),
                Err(e) => {
                    notes.push(e);
                    None
                }
            }
        }
    };
    let secs = step_seconds.max(1e-9);
    let report = Report {
        model: args.model.clone(),
        threads: ganglion_engine::bench::threads(),
        models: args.models,
        samples: samples.len(),
        sequence_length: competition.sequence_length,
        processed_tokens_per_model: processed,
        scored_tokens_per_model: scored,
        step_seconds,
        step_limit_seconds: args.step_limit,
        fits: step_seconds <= args.step_limit,
        processed_tok_s: (processed * evaluated) as f64 / secs,
        scored_tok_s: (scored * evaluated) as f64 / secs,
        evaluated,
        mean_loss,
        llama_perplexity,
        notes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.evaluated == report.models { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_table(r: &Report) {
    let anchor = r.llama_perplexity.as_ref();
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map_or_else(|| "-".to_string(), |t| format!("{:.2}x", ours / t));
    println!(
        "model {} ({} threads), {} models x {} samples, sequence length {}; per model {} tokens processed, {} scored",
        r.model, r.threads, r.models, r.samples, r.sequence_length, r.processed_tokens_per_model, r.scored_tokens_per_model
    );
    let ppl = anchor.map_or_else(|| "llama-perplexity".to_string(), |a| format!("llama-perplexity {}x{}", a.chunks, a.ctx));
    println!("{:<40} {:>12} {:>24} {:>8}", "measure", "ganglion", ppl, "ratio");
    let theirs = anchor.map(|a| a.processed_tok_s);
    println!("{:<40} {:>12.1} {:>24} {:>8}", "processed tokens/s (whole step)", r.processed_tok_s, fmt(theirs), ratio(r.processed_tok_s, theirs));
    let theirs = anchor.map(|a| a.scored_tok_s);
    println!("{:<40} {:>12.1} {:>24} {:>8}", "scored tokens/s (whole step)", r.scored_tok_s, fmt(theirs), ratio(r.scored_tok_s, theirs));
    println!(
        "step: {} models x {} samples in {:.1} s, limit {:.0} s: {}",
        r.models,
        r.samples,
        r.step_seconds,
        r.step_limit_seconds,
        if r.fits { "fits" } else { "DOES NOT FIT" }
    );
    if let Some(loss) = r.mean_loss {
        println!("mean loss {loss:.4} over {} evaluated models", r.evaluated);
    }
    for note in &r.notes {
        println!("note: {note}");
    }
}
