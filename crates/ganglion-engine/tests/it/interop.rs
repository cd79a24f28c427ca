//! Interop: the official `openai` Python package (from the project venv) talks to our server,
//! started in-process on 127.0.0.1:0 with the real SmolLM2 model.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use ganglion_engine::server::{Server, ServerConfig};
use ganglion_engine::Engine;

#[test]
fn openai_python_client_streams_chat_and_completion_with_logprobs() {
    let engine = Arc::new(Engine::load(&common::smollm2_path()).unwrap());
    let python = common::python();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig { model_id: "smollm2".into(), api_key: Some("sk-test".into()) };
    let server = Server::start(engine, config).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = runtime.spawn(server.serve(listener, async {
        let _ = stop_rx.await;
    }));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop_openai.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}/v1"))
        .args(["sk-test", "smollm2"])
        .output()
        .unwrap();
    let _ = stop_tx.send(());
    let _ = runtime.block_on(handle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}\n(if `openai` is missing, run scripts/setup-venv)");
    let line = stdout.lines().find_map(|l| l.strip_prefix("SUMMARY:")).unwrap();
    let s: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(s["chat"]["tokens"].as_u64().unwrap() >= 1, "{s}");
    assert!(["stop", "length"].contains(&s["chat"]["finish"].as_str().unwrap()), "{s}");
    assert_eq!(s["completion"]["tokens"], 6, "{s}");
    assert_eq!(s["completion"]["finish"], "length", "{s}");
    assert!(s["completion"]["text"].as_str().unwrap().contains("Paris"), "{s}");
    assert!(s["extensions"]["prompt_logprobs"].as_u64().unwrap() > 1, "{s}");
    assert_eq!(s["unknown_model"], 404, "{s}");
}
