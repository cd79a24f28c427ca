//! `ganglion bench evaluation` end to end on a small step (2 models × 3 corpus samples, no
//! llama.cpp): its JSON report counts tokens from the model's own tokenizer, every model is
//! evaluated, and the timings and rates are real numbers.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn bench_evaluation_times_a_small_step() {
    let found = ganglion_engine::store::models_dir().ok().and_then(|d| ganglion_engine::store::resolve_model("smollm2", &d).ok()).filter(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "GANGLION_REQUIRE_ALL=1 but SmolLM2 is not in the model cache");
        eprintln!("skipped: SmolLM2 is not in the model cache (ganglion model pull smollm2)");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args(["bench", "evaluation", "--models", "2", "--samples", "3", "--no-llama-perplexity", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ganglion: {e}"));
    let started = Instant::now();
    while child.try_wait().unwrap_or_else(|e| panic!("wait: {e}")).is_none() {
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("bench evaluation did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("output: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench evaluation failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!((report["models"].as_u64(), report["samples"].as_u64(), report["evaluated"].as_u64()), (Some(2), Some(3), Some(2)), "{report}");
    let processed = report["processed_tokens_per_model"].as_u64().unwrap_or(0);
    let scored = report["scored_tokens_per_model"].as_u64().unwrap_or(0);
    assert!(scored > 0 && scored < processed, "response tokens are part of the sequence: {report}");
    let f = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    assert!(f("step_seconds") > 0.0 && f("scored_tok_s") > 0.0 && f("processed_tok_s") > f("scored_tok_s"), "{report}");
    assert_eq!(report["fits"], true, "{report}");
    let loss = f("mean_loss");
    assert!(loss > 0.5 && loss < 10.0, "SmolLM2's loss on corpus definitions: {report}");
    assert!(report["llama_perplexity"].is_null(), "{report}");
}
