//! TLS for every Ganglion client and server, in one place: rustls with the `ring` crypto
//! provider.
//!
//! - **Clients** ([`ClientTls`]): every `reqwest` client the project builds comes from
//!   [`ClientTls::http_builder`]. It trusts the system's roots (through
//!   `rustls-platform-verifier`: the OS store, e.g. `/etc/ssl/certs`) plus, optionally, the
//!   certificates of one PEM file — a private CA (`[tls] ca_file`, `--tls.ca_file`,
//!   `GANGLION_TLS_CA_FILE`). A CA file that cannot be read or holds no valid certificate is
//!   a [`TlsError`] naming the file, reported at start-up.
//! - **Diagnostics**: [`certificate_problem`] finds a rustls certificate error anywhere in an
//!   error's source chain, and [`describe_http_error`] turns a failed request into a
//!   sentence that says so ("TLS certificate problem: … (a private CA? give it with
//!   --tls.ca_file)").
//! - **Servers** ([`ServerTls`]): a certificate chain and its private key (`[tls] cert`,
//!   `[tls] key`), served with [`ServerTls::listener`], an [`axum::serve::Listener`] that
//!   does TLS handshakes concurrently (bounded in number and time) so that a slow or
//!   silent client never holds up the others.
//! - The `[tls]` TOML section every node shares: [`TlsSection`].
//!
//! `reqwest` is built with `rustls-no-provider`, so a client built while no rustls
//! provider is installed would panic: [`install_crypto_provider`] installs `ring` as the
//! process default, and [`ClientTls::http_builder`] calls it. Build clients only through
//! it (`clippy.toml` forbids `reqwest::Client::new` and `reqwest::Client::builder`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Largest certificate or key file read (a CA bundle is a few hundred KiB at most).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// A TLS file or setting that cannot be used. Every variant names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read the TLS file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file holds no PEM certificate.
    #[error("{path} holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the file cannot be parsed or used.
    #[error("{path}: not a usable X.509 certificate: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file holds no usable private key.
    #[error("{path}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate and the key do not make a server configuration.
    #[error("the certificate {cert} and the key {key} cannot be served: {reason}")]
    Server {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason (e.g. the key does not match the certificate).
        reason: String,
    },
    /// Only one of `tls.cert` and `tls.key` is set.
    #[error("tls.cert and tls.key go together: {missing} is not set")]
    Incomplete {
        /// The missing key.
        missing: &'static str,
    },
}

/// `[tls]`: the section every node's TOML file shares (`--tls.ca_file`, `--tls.cert`,
/// `--tls.key`; `GANGLION_TLS_CA_FILE`, `GANGLION_TLS_CERT`, `GANGLION_TLS_KEY`).
///
/// ```toml
/// [tls]
/// ca_file = "/etc/ganglion/private-ca.pem"   # trusted besides the system roots (clients)
/// cert = "/etc/ganglion/server.pem"          # serve HTTPS (servers that offer it)
/// key = "/etc/ganglion/server.key"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of extra CA certificates clients trust besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) a server presents.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

impl TlsSection {
    /// The client settings: system roots, plus `ca_file`'s certificates.
    pub fn client(&self) -> Result<ClientTls, TlsError> {
        match &self.ca_file {
            Some(path) => ClientTls::with_ca_file(path),
            None => Ok(ClientTls::system()),
        }
    }

    /// The server settings: `None` without `cert` and `key` (plain HTTP), an error with
    /// only one of them.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ServerTls::load(cert, key).map(Some),
            (Some(_), None) => Err(TlsError::Incomplete { missing: "tls.key" }),
            (None, Some(_)) => Err(TlsError::Incomplete { missing: "tls.cert" }),
        }
    }
}

/// Installs `ring` as the process's rustls crypto provider (once; a provider installed
/// before, by anyone, is kept). Every client and server here passes `ring` explicitly or
/// calls this first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let read_err = |e: std::io::Error| TlsError::Read { path: path.to_path_buf(), reason: e.to_string() };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Read { path: path.to_path_buf(), reason: format!("larger than {} MiB", MAX_PEM_BYTES >> 20) });
    }
    Ok(bytes)
}

fn parse_certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate { path: path.to_path_buf(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// How a node's HTTP clients verify servers: the system's roots, plus extra CA
/// certificates. Cheap to clone; equal when they trust the same extra roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    extra_roots: Arc<Vec<CertificateDer<'static>>>,
    ca_file: Option<PathBuf>,
}

impl ClientTls {
    /// The system's roots only.
    pub fn system() -> ClientTls {
        ClientTls::default()
    }

    /// The system's roots and every certificate in the PEM file `path`, each checked to be
    /// a usable trust anchor now (so a bad file fails at start-up, naming it).
    pub fn with_ca_file(path: &Path) -> Result<ClientTls, TlsError> {
        let pem = read_pem(path)?;
        ClientTls::from_pem(&pem, path)
    }

    /// As [`ClientTls::with_ca_file`], from the file's contents (`origin` names it in errors).
    pub fn from_pem(pem: &[u8], origin: &Path) -> Result<ClientTls, TlsError> {
        let certs = parse_certificates(pem, origin)?;
        let mut store = rustls::RootCertStore::empty();
        for cert in &certs {
            store.add(cert.clone()).map_err(|e| TlsError::BadCertificate { path: origin.to_path_buf(), reason: e.to_string() })?;
        }
        Ok(ClientTls { extra_roots: Arc::new(certs), ca_file: Some(origin.to_path_buf()) })
    }

    /// The CA file whose certificates are trusted besides the system's roots.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Number of extra trusted certificates.
    pub fn extra_roots(&self) -> usize {
        self.extra_roots.len()
    }

    /// A `reqwest` client builder that verifies servers against the system's roots and the
    /// extra ones (rustls, ring). Every client the project builds starts here.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        install_crypto_provider();
        #[allow(clippy::disallowed_methods)] // the one place clients are built from
        let builder = reqwest::Client::builder();
        // Each certificate was parsed and accepted as a trust anchor when loaded.
        let certs = self.extra_roots.iter().filter_map(|der| reqwest::Certificate::from_der(der).ok());
        // Idle pooled connections are dropped before our axons close them (their header-read
        // timer, 30 s, also runs between keep-alive requests): reqwest's 90 s default would
        // send a request on a connection the server is closing ("connection closed before
        // message completed").
        builder.tls_certs_merge(certs).pool_idle_timeout(std::time::Duration::from_secs(20))
    }

    /// A rustls client configuration that verifies servers against the system's roots and
    /// the extra ones (ring), for clients that are not reqwest (the subtensor WebSocket).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        install_crypto_provider();
        let origin = || self.ca_file.clone().unwrap_or_default();
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra_roots.iter().cloned())
            .map_err(|e| TlsError::BadCertificate { path: origin(), reason: e.to_string() })?
            .with_provider(Arc::new(rustls::crypto::ring::default_provider()));
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::BadCertificate { path: origin(), reason: e.to_string() })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    /// A client with `reqwest`'s defaults otherwise.
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        self.http_builder().build()
    }
}

/// A sentence describing the rustls certificate problem anywhere in `error`'s source chain
/// (an untrusted issuer, an expired certificate, a name mismatch, …), or `None` when the
/// failure is not a certificate problem.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(e) = current {
        if let Some(found) = rustls_problem(e) {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps: look inside it explicitly.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(found) = certificate_problem(inner)
        {
            return Some(found);
        }
        depth += 1;
        if depth > 32 {
            break;
        }
        current = e.source();
    }
    None
}

fn rustls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{AlertDescription, Error};
    match e.downcast_ref::<Error>()? {
        Error::InvalidCertificate(reason) => Some(format!("the server's certificate was refused: {reason:?}")),
        Error::NoCertificatesPresented => Some("the server presented no certificate".into()),
        Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate),
        ) => Some(format!("the peer refused a certificate ({alert:?})")),
        _ => None,
    }
}

/// A failed request as one sentence: a certificate problem says so and how to fix it,
/// anything else is `reqwest`'s error with its causes.
pub fn describe_http_error(error: &reqwest::Error) -> String {
    match certificate_problem(error) {
        Some(problem) => format!(
            "TLS certificate problem{}: {problem} (if the server uses a private CA, trust it with --tls.ca_file / [tls] ca_file)",
            error.url().map(|u| format!(" with {}", u.origin().ascii_serialization())).unwrap_or_default()
        ),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(e) = source {
                text.push_str(": ");
                text.push_str(&e.to_string());
                source = e.source();
            }
            text
        }
    }
}

/// A server certificate and key, ready to serve HTTPS. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    cert: PathBuf,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("cert", &self.cert).finish_non_exhaustive()
    }
}

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; more connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;

impl ServerTls {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let cert_pem = read_pem(cert)?;
        let key_pem = read_pem(key)?;
        ServerTls::from_pem(&cert_pem, &key_pem, cert, key)
    }

    /// As [`ServerTls::load`], from the files' contents (the paths name them in errors).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let chain = parse_certificates(cert_pem, cert)?;
        let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey { path: key.to_path_buf(), reason: e.to_string() })?;
        let server_err = |reason: String| TlsError::Server { cert: cert.to_path_buf(), key: key.to_path_buf(), reason };
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| server_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| server_err(e.to_string()))?;
        // axum serves HTTP/1.1 (its `http2` feature is off).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { config: Arc::new(config), cert: cert.to_path_buf() })
    }

    /// The certificate file.
    pub fn cert_file(&self) -> &Path {
        &self.cert
    }

    /// Serves TLS on `tcp`: an [`axum::serve::Listener`] yielding connections whose
    /// handshake completed. Handshakes run concurrently, at most [`MAX_HANDSHAKES`] at once,
    /// each within [`HANDSHAKE_TIMEOUT`]; failed ones are logged at debug level and dropped.
    pub fn listener(&self, tcp: TcpListener) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener { rx, addr, task })
    }
}

async fn accept_loop(tcp: TcpListener, acceptor: tokio_rustls::TlsAcceptor, tx: mpsc::Sender<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = tx.closed() => return,
        };
        let Ok(slot) = slot else { return };
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // As axum's own listener: transient errors (e.g. too many open files)
                    // are waited out, not fatal.
                    tracing::debug!(target: "ganglion::tls", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(target: "ganglion::tls", %peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(target: "ganglion::tls", %peer, "TLS handshake timed out"),
            }
        });
    }
}

/// TLS connections on a TCP listener, for `axum::serve` (see [`ServerTls::listener`]).
/// Dropping it stops accepting.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(pair) => pair,
            // The accept loop ended (it only does once the listener is dropped, or its
            // task panicked): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Serves `router` on `tcp`, over TLS when `tls` is given, until `shutdown` completes
/// (graceful: open requests finish). With `connect_info`, handlers can extract
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(tcp: TcpListener, router: axum::Router, tls: Option<&ServerTls>, connect_info: bool, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    match tls {
        Some(tls) => {
            let listener = tls.listener(tcp)?;
            if connect_info {
                // axum derives `ConnectInfo<SocketAddr>` from a tapped listener's address.
                let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
                axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await
            } else {
                axum::serve(listener, router).with_graceful_shutdown(shutdown).await
            }
        }
        None => {
            if connect_info {
                axum::serve(tcp, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await
            } else {
                axum::serve(tcp, router).with_graceful_shutdown(shutdown).await
            }
        }
    }
}

#[cfg(feature = "test-utils")]
pub mod testkit;

#[cfg(test)]
mod tests;
