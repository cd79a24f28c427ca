//! Epistula interop: a Python client signing with `bittensor-wallet` the way Targon's
//! `epistula.py` does is accepted by Ganglion's layer, and each tampered variant is refused
//! with its own reason.

#[path = "../../../../tests/support/python.rs"]
mod python;

use std::sync::Arc;

use axum::routing::post;
use ganglion_core::keys::Keypair;
use ganglion_protocol::epistula::{self, Caller, Verifier, VerifierConfig};

async fn whoami(caller: Caller) -> String {
    caller.hotkey.to_ss58()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targon_style_python_client_is_accepted_and_tampering_is_refused() {
    let miner = Keypair::from_uri("//Miner").expect("uri");
    let router = axum::Router::new().route("/v1/chat/completions", post(whoami));
    let config = VerifierConfig { receiver: Some(miner.public()), ..VerifierConfig::default() };
    let router = epistula::protect(router, Arc::new(Verifier::allow_all(config)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/chat/completions", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let receiver = miner.public().to_ss58();
    let output = tokio::task::spawn_blocking(move || {
        python::run_script("epistula_client.py", &[&url, "//Validator", &receiver], &[])
    })
    .await
    .expect("join");
    let results: serde_json::Value = serde_json::from_str(output.trim()).expect("json from the client");

    let validator = Keypair::from_uri("//Validator").expect("uri").public().to_ss58();
    assert_eq!(results["good"]["status"], 200, "{results}");
    assert_eq!(results["good"]["body"], validator.as_str());
    let expect = [
        ("replayed", 409, "replayed_uuid"),
        ("tampered_body", 401, "bad_signature"),
        ("wrong_signed_for", 400, "wrong_receiver"),
        ("stale", 400, "stale_timestamp"),
        ("future", 400, "future_timestamp"),
    ];
    for (case, status, code) in expect {
        assert_eq!(results[case]["status"], status, "{case}: {results}");
        assert_eq!(results[case]["code"], code, "{case}: {results}");
    }
}
