//! Throughput measurements behind `ganglion bench engine`: prompt processing, generation,
//! teacher-forced scoring with and without a shared prefix, peak RSS, and (when `llama-bench`
//! is on the PATH or installed by `scripts/install-llama-bench`) llama.cpp's figures on the
//! same GGUF for ratios.
//!
//! Numbers are measured, never asserted: speed targets live here, not in unit tests.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::model::Logits;
use crate::sampling::argmax;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Prompt length for prompt processing (default 512).
    pub prompt_tokens: usize,
    /// Tokens generated for the generation figure (default 128).
    pub gen_tokens: usize,
    /// Completions scored per prompt (default 16).
    pub completions: usize,
    /// Shared prompt length for scoring (default 256).
    pub score_prompt_tokens: usize,
    /// Tokens per scored completion (default 64).
    pub completion_tokens: usize,
    /// Repetitions; the best run is reported (default 3).
    pub repeats: usize,
    /// Also run `llama-bench` when it is on the PATH.
    pub llama_bench: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            prompt_tokens: 512,
            gen_tokens: 128,
            completions: 16,
            score_prompt_tokens: 256,
            completion_tokens: 64,
            repeats: 3,
            llama_bench: true,
        }
    }
}

/// llama.cpp's figures from `llama-bench` on the same file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlamaCppFigures {
    /// Prompt processing tokens/s (`pp<N>`).
    pub prompt_tok_s: f64,
    /// Generation tokens/s (`tg<N>`).
    pub gen_tok_s: f64,
}

/// Measured figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Model file.
    pub model: String,
    /// Threads candle uses (`RAYON_NUM_THREADS` or all cores).
    pub threads: usize,
    /// Prompt processing at `prompt_tokens`, tokens/s.
    pub prompt_tok_s: f64,
    /// Generation of `gen_tokens` after a short prompt, tokens/s.
    pub gen_tok_s: f64,
    /// Scoring `completions` sequences of prompt + completion, each from scratch, sequence tokens/s.
    pub score_tok_s: f64,
    /// The same with the prompt's KV cache computed once and shared, sequence tokens/s.
    pub score_prefix_tok_s: f64,
    /// Tokenization (special tokens parsed, BOS as the model asks) of about 1 MB of varied
    /// text, MB/s.
    pub tokenize_mb_s: f64,
    /// Peak resident set size, bytes (`VmHWM`), if the platform reports it.
    pub peak_rss_bytes: Option<u64>,
    /// llama.cpp on the same file, when `llama-bench` is available.
    pub llama_cpp: Option<LlamaCppFigures>,
    /// Why llama.cpp figures are missing, if they are.
    pub llama_cpp_note: Option<String>,
    /// The options used.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Completions per prompt.
    pub completions: usize,
    /// Shared prompt length when scoring.
    pub score_prompt_tokens: usize,
    /// Completion length when scoring.
    pub completion_tokens: usize,
}

/// Deterministic, text-like token ids: a paragraph encoded and repeated to `n` tokens.
fn sample_tokens(engine: &Engine, n: usize, salt: usize) -> Vec<u32> {
    let text = format!(
        "Validators score the answers of many miners to the same prompt. Variant {salt}: the quick brown fox \
         jumps over the lazy dog while 12 engineers measure throughput, latency and memory on two cores. "
    );
    let base = engine.tokenizer().encode(&text);
    base.iter().copied().cycle().take(n).collect()
}

/// About 1 MB of varied text in ~2 KB pieces (prose, numbers, code, other scripts) for the
/// tokenization figure.
fn tokenize_text() -> Vec<String> {
    const PIECES: [&str; 6] = [
        "Validators score the answers of many miners to the same prompt, and the quick brown fox jumps over the lazy dog. ",
        "In 2024, 12 engineers measured 3.14159 ms of latency on 2 cores at 97.5% load; ",
        "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}\n",
        "naïve café déjà vu — Straße, 日本語のテキスト、한국어, русский текст. ",
        "I'm sure they're right: we've done it, and you'll see it's DONE.\n\n",
        "   indented   text\twith\ttabs and  double  spaces  ",
    ];
    let mut out = Vec::new();
    let mut piece = String::new();
    let mut total = 0;
    for i in 0.. {
        piece.push_str(PIECES[i % PIECES.len()]);
        piece.push_str(&format!("item {i}. "));
        if piece.len() > 2000 {
            total += piece.len();
            out.push(std::mem::take(&mut piece));
            if total >= 1_000_000 {
                break;
            }
        }
    }
    out
}

fn best_secs(repeats: usize, mut f: impl FnMut() -> EngineResult<()>) -> EngineResult<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Runs every measurement on `engine` (loaded from `model_path`).
pub fn run(engine: &Engine, model_path: &Path, opts: &BenchOptions) -> EngineResult<BenchReport> {
    let limit = engine.context_length();
    if opts.prompt_tokens + 1 > limit || opts.score_prompt_tokens + opts.completion_tokens > limit || 8 + opts.gen_tokens > limit {
        return Err(EngineError::InvalidInput(format!("benchmark sizes exceed the model's context of {limit}")));
    }
    if opts.prompt_tokens == 0 || opts.gen_tokens == 0 || opts.completion_tokens == 0 || opts.score_prompt_tokens == 0 {
        return Err(EngineError::InvalidInput("benchmark sizes must be at least 1".into()));
    }
    let model = engine.model();
    // Warm-up: first calls pay for allocation and kernel selection.
    model.forward(&sample_tokens(engine, 32, 0), &mut model.new_cache(), Logits::Last)?;

    let prompt = sample_tokens(engine, opts.prompt_tokens, 1);
    let pp = best_secs(opts.repeats, || {
        model.forward(&prompt, &mut model.new_cache(), Logits::Last).map(|_| ())
    })?;

    let short = sample_tokens(engine, 8, 2);
    let tg = best_secs(opts.repeats, || {
        let mut cache = model.new_cache();
        let logits = model.forward(&short, &mut cache, Logits::Last)?;
        let mut next = argmax(&logits.get(0)?.to_vec1::<f32>()?);
        for _ in 0..opts.gen_tokens {
            let logits = model.forward(&[next], &mut cache, Logits::Last)?;
            next = argmax(&logits.get(0)?.to_vec1::<f32>()?);
        }
        Ok(())
    })?;
    // Subtract the short prefill from the generation time.
    let prefill_short = best_secs(opts.repeats, || model.forward(&short, &mut model.new_cache(), Logits::Last).map(|_| ()))?;
    let tg = (tg - prefill_short).max(1e-9);

    let score_prompt = sample_tokens(engine, opts.score_prompt_tokens, 3);
    let completions: Vec<Vec<u32>> = (0..opts.completions).map(|i| sample_tokens(engine, opts.completion_tokens, 10 + i)).collect();
    let seq_tokens = (opts.completions * (opts.score_prompt_tokens + opts.completion_tokens)) as f64;
    let score_plain = best_secs(opts.repeats, || {
        for c in &completions {
            let full: Vec<u32> = score_prompt.iter().chain(c).copied().collect();
            engine.score_sequence(&full, 5)?;
        }
        Ok(())
    })?;
    let score_prefix = best_secs(opts.repeats, || engine.score(&score_prompt, &completions, 5).map(|_| ()))?;

    let text = tokenize_text();
    let tokenize = best_secs(opts.repeats, || {
        std::hint::black_box(text.iter().map(|t| engine.tokenizer().encode(t).len()).sum::<usize>());
        Ok(())
    })?;
    let text_mb = text.iter().map(String::len).sum::<usize>() as f64 / 1e6;

    let (llama_cpp, llama_cpp_note) = if opts.llama_bench {
        match run_llama_bench(model_path, opts) {
            Ok(f) => (Some(f), None),
            Err(note) => (None, Some(note)),
        }
    } else {
        (None, Some("skipped (--no-llama-bench)".into()))
    };

    Ok(BenchReport {
        model: model_path.display().to_string(),
        threads: candle_core::utils::get_num_threads(),
        prompt_tok_s: opts.prompt_tokens as f64 / pp,
        gen_tok_s: opts.gen_tokens as f64 / tg,
        score_tok_s: seq_tokens / score_plain,
        score_prefix_tok_s: seq_tokens / score_prefix,
        tokenize_mb_s: text_mb / tokenize,
        peak_rss_bytes: peak_rss_bytes(),
        llama_cpp,
        llama_cpp_note,
        prompt_tokens: opts.prompt_tokens,
        gen_tokens: opts.gen_tokens,
        completions: opts.completions,
        score_prompt_tokens: opts.score_prompt_tokens,
        completion_tokens: opts.completion_tokens,
    })
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `llama-bench` on the PATH, else where `scripts/install-llama-bench` puts it.
fn find_llama_bench() -> Option<std::path::PathBuf> {
    find_on_path("llama-bench").or_else(|| {
        let installed = crate::store::ganglion_home().ok()?.join("tools/bin/llama-bench");
        installed.is_file().then_some(installed)
    })
}

fn run_llama_bench(model: &Path, opts: &BenchOptions) -> Result<LlamaCppFigures, String> {
    let Some(bin) = find_llama_bench() else {
        return Err("llama-bench not found on the PATH or in ~/.ganglion/tools/bin; run scripts/install-llama-bench to get ratios".into());
    };
    let threads = candle_core::utils::get_num_threads().to_string();
    let output = Command::new(&bin)
        .arg("-m")
        .arg(model)
        .args(["-p", &opts.prompt_tokens.to_string(), "-n", &opts.gen_tokens.to_string(), "-t", &threads, "-o", "json"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(format!("llama-bench failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")));
    }
    parse_llama_bench_json(&String::from_utf8_lossy(&output.stdout))
}

fn parse_llama_bench_json(stdout: &str) -> Result<LlamaCppFigures, String> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(stdout).map_err(|e| format!("unreadable llama-bench JSON: {e}"))?;
    let mut pp = None;
    let mut tg = None;
    for row in &rows {
        let n_prompt = row.get("n_prompt").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let n_gen = row.get("n_gen").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let ts = row.get("avg_ts").and_then(serde_json::Value::as_f64);
        if n_prompt > 0 && n_gen == 0 {
            pp = ts;
        } else if n_gen > 0 && n_prompt == 0 {
            tg = ts;
        }
    }
    match (pp, tg) {
        (Some(prompt_tok_s), Some(gen_tok_s)) => Ok(LlamaCppFigures { prompt_tok_s, gen_tok_s }),
        _ => Err("llama-bench output lacks the pp/tg rows".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_hwm() {
        assert_eq!(parse_vm_hwm("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS: 1 kB"), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name: x"), None);
    }

    #[test]
    fn parses_llama_bench_rows() {
        let json = r#"[{"n_prompt":512,"n_gen":0,"avg_ts":1000.5},{"n_prompt":0,"n_gen":128,"avg_ts":80.25}]"#;
        assert_eq!(parse_llama_bench_json(json), Ok(LlamaCppFigures { prompt_tok_s: 1000.5, gen_tok_s: 80.25 }));
        assert!(parse_llama_bench_json("[]").is_err());
    }

    #[test]
    fn runs_on_a_tiny_model() {
        let (_dir, path) = crate::model::tests::tiny_model();
        let engine = Engine::load(&path).unwrap();
        let opts = BenchOptions {
            prompt_tokens: 64,
            gen_tokens: 8,
            completions: 3,
            score_prompt_tokens: 32,
            completion_tokens: 8,
            repeats: 1,
            llama_bench: false,
        };
        let r = run(&engine, &path, &opts).unwrap();
        for v in [r.prompt_tok_s, r.gen_tok_s, r.score_tok_s, r.score_prefix_tok_s] {
            assert!(v.is_finite() && v > 0.0, "{r:?}");
        }
    }
}
