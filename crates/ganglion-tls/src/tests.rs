use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::AsyncWriteExt as _;

use super::testkit::TestPki;
use super::*;

fn refused<T: std::fmt::Debug>(result: Result<T, TlsError>) -> TlsError {
    match result {
        Ok(value) => panic!("accepted: {value:?}"),
        Err(e) => e,
    }
}

fn pki() -> TestPki {
    TestPki::new().unwrap_or_else(|e| panic!("{e}"))
}

/// Serves `GET /` → "hello" over TLS on a loopback port; returns the port.
async fn serve_hello(tls: &ServerTls) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = tcp.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Router::new().route("/", get(|| async { "hello" }));
    let tls = tls.clone();
    tokio::spawn(async move {
        let _ = serve(tcp, router, Some(&tls), true, async move {
            let _ = stopped.await;
        })
        .await;
    });
    (port, stop)
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_through_and_one_without_it_reports_a_certificate_problem() {
    let pki = pki();
    let (port, _stop) = serve_hello(&pki.server().unwrap_or_else(|e| panic!("{e}"))).await;
    let url = format!("https://localhost:{port}/");

    let trusting = pki.client().unwrap_or_else(|e| panic!("{e}")).http_builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|e| panic!("{e}"));
    let response = trusting.get(&url).send().await.unwrap_or_else(|e| panic!("{}", describe_http_error(&e)));
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap_or_else(|e| panic!("{e}")), "hello");
    // The IP address is in the certificate too.
    let by_ip = trusting.get(format!("https://127.0.0.1:{port}/")).send().await.unwrap_or_else(|e| panic!("{}", describe_http_error(&e)));
    assert_eq!(by_ip.status(), 200);
    // Plain HTTP to a TLS port does not get an answer.
    assert!(trusting.get(format!("http://127.0.0.1:{port}/")).send().await.is_err());

    let system_only = ClientTls::system().http_builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|e| panic!("{e}"));
    let err = match system_only.get(&url).send().await {
        Ok(r) => panic!("a server signed by an unknown CA was accepted: {}", r.status()),
        Err(e) => e,
    };
    let problem = certificate_problem(&err).unwrap_or_else(|| panic!("not seen as a certificate problem: {}", describe_http_error(&err)));
    assert!(problem.contains("UnknownIssuer"), "{problem}");
    let sentence = describe_http_error(&err);
    assert!(sentence.starts_with("TLS certificate problem with https://localhost:") && sentence.contains("--tls.ca_file"), "{sentence}");

    // Another CA's certificate is not this one's.
    let other = pki_other();
    let stranger = other.client().unwrap_or_else(|e| panic!("{e}")).http_builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|e| panic!("{e}"));
    let err = stranger.get(&url).send().await.err().unwrap_or_else(|| panic!("a foreign CA was accepted"));
    assert!(certificate_problem(&err).is_some(), "{}", describe_http_error(&err));
}

fn pki_other() -> TestPki {
    TestPki::for_names(&["localhost"]).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_wrong_host_name_is_a_certificate_problem() {
    let pki = TestPki::for_names(&["elsewhere.example"]).unwrap_or_else(|e| panic!("{e}"));
    let (port, _stop) = serve_hello(&pki.server().unwrap_or_else(|e| panic!("{e}"))).await;
    let client = pki.client().unwrap_or_else(|e| panic!("{e}")).http_client().unwrap_or_else(|e| panic!("{e}"));
    let err = client.get(format!("https://127.0.0.1:{port}/")).timeout(Duration::from_secs(10)).send().await.err().unwrap_or_else(|| panic!("a certificate for another name was accepted"));
    let problem = certificate_problem(&err).unwrap_or_else(|| panic!("{}", describe_http_error(&err)));
    assert!(problem.contains("NotValidForName"), "{problem}");
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_the_handshakes_of_others() {
    let pki = pki();
    let (port, _stop) = serve_hello(&pki.server().unwrap_or_else(|e| panic!("{e}"))).await;
    // Two connections that never say hello, and one that sends garbage.
    let _silent1 = TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    let _silent2 = TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap_or_else(|e| panic!("{e}"));
    let client = pki.client().unwrap_or_else(|e| panic!("{e}")).http_client().unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let response = client.get(format!("https://localhost:{port}/")).timeout(Duration::from_secs(5)).send().await.unwrap_or_else(|e| panic!("{}", describe_http_error(&e)));
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < HANDSHAKE_TIMEOUT / 2, "served while others stalled their handshakes");
}

#[test]
fn bad_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pki = pki();
    let files = pki.write(dir.path()).unwrap_or_else(|e| panic!("{e}"));

    let ok = TlsSection { ca_file: Some(files.ca.clone()), ..TlsSection::default() }.client().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ok.extra_roots(), ok.ca_file()), (1, Some(files.ca.as_path())));
    assert_eq!(TlsSection::default().client().map(|c| c.extra_roots()), Ok(0));

    let missing = dir.path().join("nope.pem");
    let err = refused(ClientTls::with_ca_file(&missing));
    assert!(matches!(err, TlsError::Read { .. }) && err.to_string().contains("nope.pem"), "{err}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "just text\n").unwrap_or_else(|e| panic!("{e}"));
    let err = refused(ClientTls::with_ca_file(&empty));
    assert!(matches!(err, TlsError::NoCertificate { .. }) && err.to_string().contains("empty.pem"), "{err}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_or_else(|e| panic!("{e}"));
    let err = refused(ClientTls::with_ca_file(&junk));
    assert!(matches!(err, TlsError::BadCertificate { .. }) && err.to_string().contains("junk.pem"), "{err}");

    // A key given as the certificate, a certificate given as the key, a key of another pair.
    let err = refused(ServerTls::load(&files.key, &files.key));
    assert!(matches!(err, TlsError::NoCertificate { .. }) && err.to_string().contains("server.key"), "{err}");
    let err = refused(ServerTls::load(&files.cert, &files.cert));
    assert!(matches!(err, TlsError::BadKey { .. }) && err.to_string().contains("server.pem"), "{err}");
    let other = pki_other().write(&{
        let sub = dir.path().join("other");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        sub
    });
    let other = other.unwrap_or_else(|e| panic!("{e}"));
    let err = refused(ServerTls::load(&files.cert, &other.key));
    assert!(matches!(err, TlsError::Server { .. }), "{err}");

    assert!(ServerTls::load(&files.cert, &files.key).is_ok());
    let only_cert = TlsSection { cert: Some(files.cert.clone()), ..TlsSection::default() };
    assert_eq!(refused(only_cert.server()), TlsError::Incomplete { missing: "tls.key" });
    assert!(TlsSection::default().server().unwrap_or_else(|e| panic!("{e}")).is_none());
}
