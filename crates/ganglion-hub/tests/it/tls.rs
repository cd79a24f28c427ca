//! The hub over HTTPS (`--tls.cert`, `--tls.key`) with a certificate from a CA made in the
//! test: a client trusting the CA gets the API and the live feed; one that does not gets a
//! certificate error; plain HTTP on the TLS port gets no answer.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use ganglion_hub::{HubConfig, ServeConfig, bind};
use ganglion_records::Records;
use ganglion_tls::testkit::TestPki;

fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_serves_https_to_clients_that_trust_its_ca() {
    let pki = ok(TestPki::new());
    let dir = ok(tempfile::tempdir());
    let files = ok(pki.write(dir.path()));

    // As `ganglion hub --config` reads it: `[tls] cert` and `key`.
    let text = format!("[tls]\ncert = {:?}\nkey = {:?}\n", files.cert.display().to_string(), files.key.display().to_string());
    let serve: ServeConfig = ok(toml::from_str(&text));
    let server_tls = ok(serve.tls.server()).unwrap_or_else(|| panic!("no TLS from {text}"));

    let records = ok(Records::open("sqlite::memory:").await);
    let mut config = HubConfig::new(records.clone(), None, "none");
    config.tls = Some(server_tls);
    config.feed_poll = Duration::from_millis(50);
    let hub = ok(bind(config, SocketAddr::from(([127, 0, 0, 1], 0))).await);
    assert!(hub.url().starts_with("https://127.0.0.1:"), "{}", hub.url());
    let base = format!("https://localhost:{}/", hub.addr().port());

    let trusting = ok(ok(ganglion_tls::ClientTls::with_ca_file(&files.ca)).http_builder().timeout(Duration::from_secs(10)).build());
    let response = ok(trusting.get(format!("{base}api/status")).send().await);
    assert_eq!(response.status(), 200);
    let status: serde_json::Value = ok(response.json().await);
    assert!(status.is_object(), "{status}");
    // The dashboard page and the live feed (a long-lived stream) work over TLS too.
    let page = ok(trusting.get(&base).send().await);
    assert_eq!(page.status(), 200);
    let feed = ok(trusting.get(format!("{base}api/events")).timeout(Duration::from_secs(30)).send().await);
    assert_eq!(feed.status(), 200);
    let mut stream = feed.bytes_stream();
    let first = ok(tokio::time::timeout(Duration::from_secs(10), stream.next()).await).unwrap_or_else(|| panic!("the feed ended"));
    assert!(String::from_utf8_lossy(&ok(first)).contains("hello"), "the feed's first event");
    drop(stream);

    // Without the CA: refused as a certificate problem.
    let system = ok(ganglion_tls::ClientTls::system().http_builder().timeout(Duration::from_secs(10)).build());
    let err = system.get(format!("{base}api/status")).send().await.err().unwrap_or_else(|| panic!("an unknown CA was accepted"));
    let problem = ganglion_tls::certificate_problem(&err).unwrap_or_else(|| panic!("not a certificate problem: {}", ganglion_tls::describe_http_error(&err)));
    assert!(problem.contains("UnknownIssuer"), "{problem}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = system.get(format!("http://127.0.0.1:{}/api/status", hub.addr().port())).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {:?}", plain.map(|r| r.status()));

    hub.shutdown().await;
    records.close().await;
}

#[test]
fn tls_keys_in_the_config_are_checked() {
    let dir = ok(tempfile::tempdir());
    let files = ok(ok(TestPki::new()).write(dir.path()));
    let only_cert: ServeConfig = ok(toml::from_str(&format!("[tls]\ncert = {:?}\n", files.cert.display().to_string())));
    let err = only_cert.tls.server().err().unwrap_or_else(|| panic!("a certificate without a key was accepted"));
    assert!(err.to_string().contains("tls.key"), "{err}");
    let swapped: ServeConfig = ok(toml::from_str(&format!("[tls]\ncert = {:?}\nkey = {:?}\n", files.key.display().to_string(), files.cert.display().to_string())));
    let err = swapped.tls.server().err().unwrap_or_else(|| panic!("swapped files were accepted"));
    assert!(err.to_string().contains("server.key"), "{err}");
    let unknown = toml::from_str::<ServeConfig>("[tls]\ncertificate = \"x\"\n").err().unwrap_or_else(|| panic!("an unknown key was accepted"));
    assert!(unknown.to_string().contains("certificate"), "{unknown}");
}
