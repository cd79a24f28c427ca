//! `ganglion bench engine`: prompt processing, generation and scoring throughput of the LLM
//! engine, served throughput at several concurrencies (requests in turn and continuously
//! batched), peak RSS, and ratios against llama.cpp's own `llama-bench`, `llama-perplexity` and
//! `llama-server` in the same run (`scripts/install-llama-cpp-tools`).

use std::process::ExitCode;

use ganglion_engine::bench::{BenchOptions, BenchReport};

#[derive(Debug, clap::Args)]
pub(crate) struct EngineBenchArgs {
    /// Model name (`smollm2`, `gemma3-270m`), `hf:OWNER/REPO[:FILE]` once pulled, or a GGUF path.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Prompt length for the prompt-processing figure.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens generated for the generation figure.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Completions scored per prompt.
    #[arg(long, default_value_t = 16)]
    completions: usize,
    /// Repetitions per figure (best is kept).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Do not run llama.cpp's tools even if they are found.
    #[arg(long)]
    no_llama_bench: bool,
    /// Window size of the scoring comparison with llama-perplexity.
    #[arg(long, default_value_t = 512)]
    ppl_ctx: usize,
    /// Windows scored in the comparison with llama-perplexity.
    #[arg(long, default_value_t = 4)]
    ppl_chunks: usize,
    /// Concurrent streams of the served-throughput figures (comma-separated; 0 skips them).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    serve_streams: Vec<usize>,
    /// Tokens per served stream.
    #[arg(long, default_value_t = 64)]
    serve_tokens: usize,
}

pub(crate) fn run(args: EngineBenchArgs) -> anyhow::Result<ExitCode> {
    let path = super::engine::resolve_model(&args.model)?;
    let engine = std::sync::Arc::new(ganglion_engine::Engine::load(&path)?);
    let opts = BenchOptions {
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        completions: args.completions,
        repeats: args.repeats,
        llama_bench: !args.no_llama_bench,
        ppl_ctx: args.ppl_ctx,
        ppl_chunks: args.ppl_chunks,
        serve_streams: args.serve_streams.into_iter().filter(|&n| n > 0).collect(),
        serve_tokens: args.serve_tokens,
        ..BenchOptions::default()
    };
    let report = ganglion_engine::bench::run(&engine, &path, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &BenchReport) {
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map_or_else(|| "-".to_string(), |t| format!("{:.2}x", ours / t));
    let pp = r.llama_cpp.as_ref().map(|l| l.prompt_tok_s);
    let tg = r.llama_cpp.as_ref().map(|l| l.gen_tok_s);
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    println!("model {} ({} threads)", r.model, r.threads);
    println!("{:<52} {:>12} {:>12} {:>8}", "measure", "ganglion", "llama.cpp", "ratio");
    println!("{:<52} {:>12.1} {:>12} {:>8}", format!("prompt processing, {} tokens (tok/s)", r.prompt_tokens), r.prompt_tok_s, fmt(pp), ratio(r.prompt_tok_s, pp));
    println!("{:<52} {:>12.1} {:>12} {:>8}", format!("generation, {} tokens (tok/s)", r.gen_tokens), r.gen_tok_s, fmt(tg), ratio(r.gen_tok_s, tg));
    let what = format!("{}x({}+{})", r.completions, r.score_prompt_tokens, r.completion_tokens);
    println!("{:<52} {:>12.1} {:>12} {:>8}", format!("scoring {what}, no prefix reuse (tok/s)"), r.score_tok_s, fmt(pp), ratio(r.score_tok_s, pp));
    println!("{:<52} {:>12.1} {:>12} {:>8}", format!("scoring {what}, shared prefix (tok/s)"), r.score_prefix_tok_s, fmt(pp), ratio(r.score_prefix_tok_s, pp));
    let ppl = format!("scoring {}x{} tokens vs llama-perplexity (tok/s)", r.ppl_chunks, r.ppl_ctx);
    println!("{:<52} {:>12.1} {:>12} {:>8}", ppl, r.ppl_tok_s, fmt(r.llama_perplexity_tok_s), ratio(r.ppl_tok_s, r.llama_perplexity_tok_s));
    for row in &r.serving {
        let what = format!("served, {} streams x {} tokens", row.streams, r.serve_tokens);
        println!("{:<52} {:>12.1} {:>12} {:>8}", format!("{what}, in turn (tok/s)"), row.round_robin_tok_s, fmt(row.llama_server_tok_s), ratio(row.round_robin_tok_s, row.llama_server_tok_s));
        println!("{:<52} {:>12.1} {:>12} {:>8}", format!("{what}, batched (tok/s)"), row.batched_tok_s, fmt(row.llama_server_tok_s), ratio(row.batched_tok_s, row.llama_server_tok_s));
    }
    println!("{:<52} {:>12.2}", "tokenization, ~1 MB of text (MB/s)", r.tokenize_mb_s);
    let mb = |b: Option<u64>| b.map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1e6));
    let of_file = |b: Option<u64>| b.map_or_else(String::new, |b| format!("{:.2}x file", b as f64 / r.file_bytes.max(1) as f64));
    println!("{:<52} {:>12} {:>12} {:>8}", "peak RSS, whole benchmark (MB)", mb(r.peak_rss_bytes), "", of_file(r.peak_rss_bytes));
    println!("{:<52} {:>12} {:>12} {:>8}", format!("  model file: {:.1} MB; loaded, idle", r.file_bytes as f64 / 1e6), mb(r.loaded_rss_bytes), "", of_file(r.loaded_rss_bytes));
    for (phase, bytes) in &r.phase_peak_rss_bytes {
        println!("{:<52} {:>12} {:>12} {:>8}", format!("  peak in {phase}"), mb(Some(*bytes)), "", of_file(Some(*bytes)));
    }
    for row in &r.serving {
        let what = format!("  peak serving {} streams (ours / llama-server)", row.streams);
        println!("{:<52} {:>12} {:>12} {:>8}", what, mb(row.peak_rss_bytes), mb(row.llama_server_peak_rss_bytes), of_file(row.peak_rss_bytes));
    }
    if let Some(note) = &r.llama_cpp_note {
        println!("llama.cpp: {note}");
    }
    for note in &r.notes {
        println!("llama.cpp: {note}");
    }
}
