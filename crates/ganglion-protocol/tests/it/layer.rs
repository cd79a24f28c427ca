//! The axum layer end to end, over a real loopback socket and reqwest.

use std::sync::Arc;

use axum::routing::post;
use ganglion_core::keys::Keypair;
use ganglion_protocol::epistula::{self, Caller, EpistulaRequestExt, Verifier, VerifierConfig};

async fn echo(caller: Caller, body: axum::body::Bytes) -> String {
    format!("{}:{}", caller.hotkey, body.len())
}

async fn serve(config: VerifierConfig) -> String {
    let router = axum::Router::new().route("/echo", post(echo));
    let router = epistula::protect(router, Arc::new(Verifier::allow_all(config)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/echo")
}

#[tokio::test]
async fn signed_requests_pass_and_others_are_refused_with_reasons() {
    let miner = Keypair::from_uri("//Miner").expect("uri");
    let validator = Keypair::from_uri("//Validator").expect("uri");
    let config = VerifierConfig { receiver: Some(miner.public()), max_body_bytes: 1024, ..VerifierConfig::default() };
    let url = serve(config).await;
    let client = ganglion_tls::ClientTls::system().http_client().unwrap_or_else(|e| panic!("{e}"));

    let ok = client.post(&url).epistula(&validator, Some(&miner.public()), "hello").send().await.expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), format!("{}:5", validator.public()));

    let unsigned = client.post(&url).body("hello").send().await.expect("send");
    assert_eq!(unsigned.status(), 400);
    let json: serde_json::Value = unsigned.json().await.expect("json");
    assert_eq!(json["error"]["code"], "missing_header");

    let too_big = client
        .post(&url)
        .epistula(&validator, Some(&miner.public()), vec![b'x'; 4096])
        .send()
        .await
        .expect("send");
    assert_eq!(too_big.status(), 413);

    // A chunked body with no Content-Length is cut off at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'y'; 700]), Ok(vec![b'y'; 700])];
    let chunked = client
        .post(&url)
        .header("epistula-version", "2")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(chunked.status(), 413);
}
