//! A miner in front of a real third-party OpenAI-compatible server: llama-cpp-python's
//! `llama_cpp.server` (PyPI) running the same SmolLM2 GGUF on its own llama.cpp kernels.
//! The miner discovers the model from `GET /v1/models` (`--upstream`), streams the server's
//! bytes through, and the validator — in text-only mode, since that server sends neither
//! token ids nor a usage chunk — verifies greedy answers against the built-in engine
//! (completions on the token path recovered from the per-token text it streams).
//!
//! Needs `scripts/install-llama-cpp-python` (a venv at `$GANGLION_LLAMACPP_VENV` or
//! `~/.ganglion/venv-llamacpp`); without it the test prints "skipped" unless
//! `GANGLION_REQUIRE_ALL=1`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{MODEL, engine, key, smollm2_path, target};
use ganglion_inference::cause::Cause;
use ganglion_inference::miner::{self, MinerConfig};
use ganglion_inference::openai::{Endpoint, InferenceRequest, Message, Prompt, Sampling};
use ganglion_inference::reference::{LocalReference, Reference};
use ganglion_inference::validator::{Dendrite, run_round};
use ganglion_inference::verify::VerifyConfig;
use ganglion_protocol::policy::PolicyConfig;

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("GANGLION_LLAMACPP_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ganglion/venv-llamacpp")))?;
    let python = venv.join("bin/python");
    python.is_file().then_some(python)
}

/// Kills the server (our own child, by its handle) when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_behind_llama_cpp_python_verifies_in_text_only_mode() {
    let Some(python) = venv_python() else {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "llama-cpp-python is required: run scripts/install-llama-cpp-python");
        println!("skipped: llama-cpp-python is not installed (scripts/install-llama-cpp-python)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(smollm2_path())
        .args(["--model_alias", MODEL, "--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "2048", "--verbose", "False"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let url = format!("http://127.0.0.1:{port}/v1");

    // The --upstream shortcut: the miner learns the model name from the server itself.
    let mut upstreams = Vec::new();
    for _ in 0..240 {
        if let Ok(found) = miner::upstreams_from_url(&url, None, 2, &ganglion_tls::ClientTls::system()).await {
            upstreams = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), vec![MODEL], "llama_cpp.server did not come up");
    let mut config = MinerConfig::new(1, key("//LlamaMiner"), "127.0.0.1:0".parse().unwrap(), upstreams);
    config.policy = PolicyConfig::default();
    config.axon.serve = false;
    let handle = miner::start(config, None, None).await.unwrap();

    let engine = engine();
    let reference = LocalReference::new(engine.clone(), MODEL);
    let dendrite = Dendrite::new(key("//Validator"), Duration::from_secs(2)).unwrap();
    let targets = vec![target(1, "LlamaMiner", handle.addr())];
    let limits = common::limits(12, Duration::from_secs(60), Duration::from_secs(120));
    let messages = vec![Message { role: "user".into(), content: "What is the capital of France?".into() }];
    let sampling = Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 12, seed: Some(5), ..Sampling::default() };

    // As asked (token ids and usage required), a text-only server fails with its cause.
    let chat = InferenceRequest { model: MODEL.into(), endpoint: Endpoint::Chat, prompt: Prompt::Chat(messages.clone()), sampling };
    let strict = run_round(&dendrite, Some(&reference as &dyn Reference), &VerifyConfig::default(), &chat, &targets, limits).await;
    assert_eq!(strict[0].failure().map(|f| f.cause), Some(Cause::MissingTokenIds), "{:?}", strict[0].verdict);
    assert!(!strict[0].streamed().text.is_empty(), "the server's text streamed through the proxy");

    // Text-only mode: the text is re-tokenized and judged against the built-in engine.
    let text_only = VerifyConfig { require_token_ids: false, require_usage: false, ..VerifyConfig::default() };
    let chat_messages: Vec<ganglion_engine::tokenizer::ChatMessage> =
        messages.iter().map(|m| ganglion_engine::tokenizer::ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
    let templated = engine.tokenizer().apply_chat_template(&chat_messages, true).unwrap();
    let completion = InferenceRequest { model: MODEL.into(), endpoint: Endpoint::Completion, prompt: Prompt::Text(templated), sampling };
    for request in [&chat, &completion] {
        let results = run_round(&dendrite, Some(&reference as &dyn Reference), &text_only, request, &targets, limits).await;
        let r = &results[0];
        assert!(r.verdict.verified(), "{:?} answer {:?}: {:?}", request.endpoint, r.streamed().text, r.verdict);
        // Chat streams from this server carry no per-token data, so their text is
        // re-tokenized; completion streams carry each token's text, from which the exact
        // token path is recovered and judged under llama.cpp's sampler order.
        let retokenized = request.endpoint == Endpoint::Chat;
        assert!(r.verdict.stats["retokenized"] == retokenized, "{:?}: {}", request.endpoint, r.verdict.stats);
        assert!(r.tps().unwrap() > 0.0);
    }
    handle.shutdown().await;
}
