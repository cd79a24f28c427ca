//! Interop: the official `openai` Python package (from the project venv) talks to our server,
//! started in-process on 127.0.0.1:0 with the real SmolLM2 model.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use ganglion_engine::server::{Server, ServerConfig};
use ganglion_engine::Engine;

/// Serves `path` as `model_id` in-process and runs tests/interop_openai.py against it; returns
/// the script's summary.
fn run_openai_client(path: &std::path::Path, model_id: &str) -> serde_json::Value {
    let engine = Arc::new(Engine::load(path).unwrap());
    let python = common::python();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig { model_id: model_id.into(), api_key: Some("sk-test".into()) };
    let server = Server::start(engine, config).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = runtime.spawn(server.serve(listener, async {
        let _ = stop_rx.await;
    }));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop_openai.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}/v1"))
        .args(["sk-test", model_id])
        .output()
        .unwrap();
    let _ = stop_tx.send(());
    let _ = runtime.block_on(handle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}\n(if `openai` is missing, run scripts/setup-venv)");
    let line = stdout.lines().find_map(|l| l.strip_prefix("SUMMARY:")).unwrap();
    serde_json::from_str(line).unwrap()
}

/// What every model's server must show the client: streamed chat and completion with
/// logprobs and usage, vLLM's extensions, a 404 for another model, a 400 naming a field it
/// does not implement.
fn check_summary(s: &serde_json::Value) {
    assert!(s["chat"]["tokens"].as_u64().unwrap() >= 1, "{s}");
    assert!(["stop", "length"].contains(&s["chat"]["finish"].as_str().unwrap()), "{s}");
    assert_eq!(s["completion"]["tokens"], 6, "{s}");
    assert_eq!(s["completion"]["finish"], "length", "{s}");
    assert!(s["extensions"]["prompt_logprobs"].as_u64().unwrap() > 1, "{s}");
    assert_eq!(s["unknown_model"], 404, "{s}");
    assert_eq!(s["unsupported"], serde_json::json!({"status": 400, "param": "response_format"}), "{s}");
}

#[test]
fn openai_python_client_streams_chat_and_completion_with_logprobs() {
    let s = run_openai_client(&common::smollm2_path(), "smollm2");
    check_summary(&s);
    assert!(s["completion"]["text"].as_str().unwrap().contains("Paris"), "{s}");
}

/// `ganglion engine serve --model gemma3-270m` answers the official client the same way.
#[test]
fn openai_python_client_talks_to_gemma3() {
    let dir = ganglion_engine::store::models_dir().unwrap();
    let path = ganglion_engine::store::resolve_model("gemma3-270m", &dir)
        .unwrap_or_else(|e| panic!("{e}: run `ganglion model pull gemma3-270m`"));
    let s = run_openai_client(&path, "gemma3-270m");
    check_summary(&s);
    // Gemma's chat answer ends at its <end_of_turn> (a stop), or runs to max_tokens.
    assert!(!s["chat"]["text"].as_str().unwrap().contains("<end_of_turn>"), "{s}");
}
