//! `https://` upstreams behind the miner: a fake OpenAI server on loopback serving TLS
//! (tokio-rustls) with a certificate from a CA made in the test. A miner that trusts the CA
//! (`[tls] ca_file`) streams a completion through; one that does not answers 502 with a
//! certificate error and counts it as `kind="tls"`. A bad CA file is a start-up error
//! naming the file.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::{get, post};
use futures::StreamExt;
use ganglion_core::keys::Keypair;
use ganglion_inference::miner::{self, MinerFile};
use ganglion_neuron::config::Overrides;
use ganglion_protocol::epistula::EpistulaRequestExt;
use ganglion_protocol::policy::PolicyConfig;
use ganglion_tls::testkit::TestPki;

use crate::common::key;

fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// An OpenAI-compatible upstream over HTTPS on 127.0.0.1: `GET /v1/models` lists `tls-model`,
/// completions stream three chunks 20 ms apart, then `[DONE]`.
async fn https_upstream(pki: &TestPki) -> SocketAddr {
    let stream = || async {
        let chunks = futures::stream::iter(["first", "second", "third"]).then(|word| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let chunk = serde_json::json!({"object": "chat.completion.chunk", "model": "tls-model", "choices": [{"index": 0, "delta": {"content": word}}]});
            Ok::<_, std::io::Error>(Bytes::from(format!("data: {chunk}\n\n")))
        });
        let done = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"data: [DONE]\n\n")) });
        let mut response = Response::new(Body::from_stream(chunks.chain(done)));
        response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("text/event-stream"));
        response
    };
    let models = || async { axum::Json(serde_json::json!({"object": "list", "data": [{"id": "tls-model", "object": "model"}]})) };
    let router = axum::Router::new().route("/v1/chat/completions", post(stream)).route("/v1/models", get(models));
    let tcp = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let addr = ok(tcp.local_addr());
    let tls = ok(pki.server());
    tokio::spawn(async move {
        let _ = ganglion_tls::serve(tcp, router, Some(&tls), false, std::future::pending()).await;
    });
    addr
}

/// A miner config from a TOML file, as `ganglion miner inference --config` reads it.
fn miner_file(dir: &std::path::Path, upstream: SocketAddr, ca_file: Option<&std::path::Path>) -> MinerFile {
    let tls = ca_file.map(|p| format!("[tls]\nca_file = {:?}\n", p.display().to_string())).unwrap_or_default();
    let text = format!(
        "netuid = 1\n[axon]\nip = \"127.0.0.1\"\nport = 0\nserve = false\n[[models]]\nname = \"tls-model\"\nurl = \"https://localhost:{}/v1\"\n{tls}",
        upstream.port()
    );
    let path = dir.join(if ca_file.is_some() { "trusting.toml" } else { "plain.toml" });
    ok(std::fs::write(&path, text));
    ok(MinerFile::load(Some(&path), &Overrides::new()))
}

async fn start_miner(file: MinerFile, hotkey: &Keypair) -> miner::MinerHandle {
    let mut config = ok(file.into_config(hotkey.clone()));
    // No chain here: every signed caller is served.
    config.policy = PolicyConfig::default();
    ok(miner::start(config, None, None).await)
}

fn completion(http: &reqwest::Client, miner: &miner::MinerHandle, caller: &Keypair, hotkey: &Keypair) -> reqwest::RequestBuilder {
    let body = r#"{"model":"tls-model","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    http.post(format!("http://{}/v1/chat/completions", miner.addr()))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(20))
        .epistula(caller, Some(&hotkey.public()), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_streams_through_a_miner_that_trusts_its_ca_and_not_otherwise() {
    let pki = ok(TestPki::new());
    let dir = ok(tempfile::tempdir());
    let files = ok(pki.write(dir.path()));
    let upstream = https_upstream(&pki).await;
    let http = ok(ganglion_tls::ClientTls::system().http_client());
    let (hotkey, caller) = (key("//TlsMiner"), key("//Alice"));

    // Trusting the CA: the stream goes through, chunk by chunk, to the end.
    let trusting = start_miner(miner_file(dir.path(), upstream, Some(&files.ca)), &hotkey).await;
    let response = ok(completion(&http, &trusting, &caller, &hotkey).send().await);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-type").map(|v| v.as_bytes()), Some(&b"text/event-stream"[..]));
    let mut chunks = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = ok(tokio::time::timeout(Duration::from_secs(20), chunks.next()).await) {
        text.push_str(&String::from_utf8_lossy(&ok(chunk)));
    }
    let positions: Vec<usize> = ["first", "second", "third", "[DONE]"].iter().map(|w| text.find(w).unwrap_or_else(|| panic!("{w} missing from {text}"))).collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "in order: {text}");
    let metrics = trusting.metrics().render();
    assert!(!metrics.contains("kind=\"tls\""), "{metrics}");

    // `--upstream https://…` discovery goes through the same roots.
    let tls = ok(ganglion_tls::ClientTls::with_ca_file(&files.ca));
    let found = ok(miner::upstreams_from_url(&format!("https://localhost:{}/v1", upstream.port()), None, 2, &tls).await);
    assert_eq!(found.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["tls-model"]);
    let refused = miner::upstreams_from_url(&format!("https://localhost:{}/v1", upstream.port()), None, 2, &ganglion_tls::ClientTls::system()).await;
    let refused = refused.err().unwrap_or_else(|| panic!("a server signed by an unknown CA was accepted")).to_string();
    assert!(refused.contains("TLS certificate problem") && refused.contains("UnknownIssuer"), "{refused}");
    trusting.shutdown().await;

    // Not trusting it (system roots only): a 502 that says so, counted as a TLS failure.
    let plain = start_miner(miner_file(dir.path(), upstream, None), &hotkey).await;
    let response = ok(completion(&http, &plain, &caller, &hotkey).send().await);
    assert_eq!(response.status(), 502);
    let body = ok(response.text().await);
    assert!(body.contains("upstream_certificate") && body.contains("certificate"), "{body}");
    let metrics = plain.metrics().render();
    assert!(metrics.contains("ganglion_miner_upstream_errors_total{model=\"tls-model\",kind=\"tls\"} 1"), "{metrics}");
    plain.shutdown().await;
}

#[test]
fn a_bad_ca_file_is_a_config_error_naming_the_file() {
    let dir = ok(tempfile::tempdir());
    let bogus = dir.path().join("not-a-ca.pem");
    ok(std::fs::write(&bogus, "hello\n"));
    let upstream: SocketAddr = ok("127.0.0.1:9".parse());
    let err = miner_file(dir.path(), upstream, Some(&bogus)).into_config(key("//TlsMiner")).err().unwrap_or_else(|| panic!("accepted"));
    assert!(err.to_string().contains("not-a-ca.pem"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err = miner_file(dir.path(), upstream, Some(&missing)).into_config(key("//TlsMiner")).err().unwrap_or_else(|| panic!("accepted"));
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
