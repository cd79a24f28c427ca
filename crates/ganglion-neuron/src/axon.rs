//! A miner's axon, the same for every subnet: bind the listen address, work out the address
//! to publish, keep the Epistula caller policy's directory in step with the metagraph, and
//! publish the axon with `serve_axon` at start and whenever the chain's copy differs —
//! within the chain's `serving_rate_limit` (a refusal names the block to wait for).
//!
//! [`Axon::bind`] gives the listener and the verifier; [`attach_chain`] does the first sync
//! and `serve_axon` and starts [`run_chain_sync`], the background task that syncs the
//! metagraph, refreshes the caller table, (re)publishes and keeps the status's chain fields;
//! [`Axon::serve`] runs the subnet's router behind it until the [`Shutdown`] token fires.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::{Chain, ChainError, Metagraph};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_protocol::epistula::{Verifier, VerifierConfig};
use ganglion_protocol::policy::{CallerInfo, CallerPolicy, PolicyConfig, SharedDirectory, StandardPolicy};

use crate::config::AxonConfig;
use crate::metrics::Metrics;
use crate::signals::Shutdown;
use crate::status::{Phase, StatusBoard};
use crate::sync::{MetagraphSync, SyncOutcome};

/// An axon could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AxonError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {reason} (is another node using the port? pick one with --axon.port)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The caller table of a metagraph (hotkey → coldkey, stake, permit).
pub fn caller_table(metagraph: &Metagraph) -> HashMap<PublicKey, CallerInfo> {
    metagraph
        .neurons()
        .iter()
        .map(|n| (n.hotkey, CallerInfo { coldkey: n.coldkey, stake_rao: n.stake, validator_permit: n.validator_permit }))
        .collect()
}

/// The address to publish: the configured external one, else the listen address, else
/// loopback (with a warning: a public miner must set `--axon.external_ip`).
pub fn external_address(config: &AxonConfig, bound: SocketAddr) -> SocketAddr {
    let ip = config.external_ip.unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            tracing::warn!(target: "ganglion::neuron", "listening on all interfaces without --axon.external_ip: publishing 127.0.0.1 (only local validators can reach it)");
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        }
    });
    SocketAddr::new(ip, config.external_port.unwrap_or(bound.port()))
}

/// Publishes an axon and keeps it published.
#[derive(Debug)]
pub struct AxonPublisher {
    hotkey: Keypair,
    netuid: u16,
    external: SocketAddr,
    /// Do not try before this block (after a rate-limit refusal).
    not_before: u64,
    warned_unregistered: bool,
}

/// `protocol` published with the axon (the SDK's value).
pub const AXON_PROTOCOL: u8 = 4;

impl AxonPublisher {
    /// A publisher of `external` for `hotkey` on `netuid`.
    pub fn new(hotkey: Keypair, netuid: u16, external: SocketAddr) -> AxonPublisher {
        AxonPublisher { hotkey, netuid, external, not_before: 0, warned_unregistered: false }
    }

    /// The published address.
    pub fn external(&self) -> SocketAddr {
        self.external
    }

    /// Serves the axon if the metagraph's copy differs from ours; returns true when a
    /// `serve_axon` was accepted.
    pub async fn ensure(&mut self, chain: &dyn Chain, metagraph: &Metagraph, metrics: &Metrics) -> bool {
        let hotkey = self.hotkey.public();
        let Some(neuron) = metagraph.by_hotkey(&hotkey) else {
            if !self.warned_unregistered {
                tracing::warn!(target: "ganglion::neuron", %hotkey, netuid = self.netuid, "hotkey is not registered on the subnet; register it (ganglion neuron register) and the axon will be served");
                self.warned_unregistered = true;
            }
            return false;
        };
        self.warned_unregistered = false;
        let version = u32::try_from(crate::weights::version_key()).unwrap_or(u32::MAX);
        if neuron.axon.as_ref().is_some_and(|a| a.ip == self.external.ip() && a.port == self.external.port() && a.version == version) {
            return false;
        }
        if metagraph.block() < self.not_before {
            return false;
        }
        match chain.serve_axon(&self.hotkey, self.netuid, self.external.ip(), self.external.port(), version, AXON_PROTOCOL).await {
            Ok(receipt) => {
                // Until the chain's copy shows it (a block later on subtensor), do not send again.
                self.not_before = receipt.block.saturating_add(1);
                metrics.inc("ganglion_axon_served_total", &[]);
                tracing::info!(target: "ganglion::neuron", external = %self.external, block = receipt.block, "axon served");
                true
            }
            Err(e) => {
                // The chain's answer says how long to wait: a rate-limit refusal until the
                // limit has passed (read from the hyperparameters), anything else a few blocks.
                let wait = if e.name() == Some("ServingRateLimitExceeded") {
                    chain.hyperparams(self.netuid).await.map_or(10, |hp| hp.serving_rate_limit.max(1))
                } else {
                    5
                };
                self.not_before = metagraph.block().saturating_add(wait);
                metrics.inc("ganglion_axon_serve_errors_total", &[("error", e.name().unwrap_or("ChainUnreachable"))]);
                tracing::warn!(target: "ganglion::neuron", external = %self.external, retry_at = self.not_before, "serve_axon refused: {e}");
                false
            }
        }
    }
}

/// A bound axon with its Epistula verifier.
pub struct Axon {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    external: SocketAddr,
    directory: Arc<SharedDirectory>,
    verifier: Arc<Verifier>,
}

impl std::fmt::Debug for Axon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Axon").field("addr", &self.addr).field("external", &self.external).finish_non_exhaustive()
    }
}

impl Axon {
    /// Binds `config`'s listen address; callers are verified for `hotkey` as receiver and
    /// judged by `policy` over a directory that [`run_chain_sync`] keeps current.
    pub async fn bind(config: &AxonConfig, hotkey: &Keypair, policy: PolicyConfig, verifier: VerifierConfig) -> Result<Axon, AxonError> {
        let listen = config.listen();
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| AxonError::Bind { addr: listen, reason: e.to_string() })?;
        let addr = listener.local_addr().map_err(|e| AxonError::Bind { addr: listen, reason: e.to_string() })?;
        let directory = Arc::new(SharedDirectory::default());
        let policy: Arc<dyn CallerPolicy> = Arc::new(StandardPolicy::new(policy, directory.clone()));
        let verifier = Arc::new(Verifier::new(VerifierConfig { receiver: Some(hotkey.public()), ..verifier }, policy));
        Ok(Axon { listener, addr, external: external_address(config, addr), directory, verifier })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address published on chain.
    pub fn external(&self) -> SocketAddr {
        self.external
    }

    /// The Epistula verifier (for the subnet's router).
    pub fn verifier(&self) -> Arc<Verifier> {
        self.verifier.clone()
    }

    /// The caller directory the policy reads.
    pub fn directory(&self) -> Arc<SharedDirectory> {
        self.directory.clone()
    }

    /// Serves `router` until `shutdown`; in-flight requests then get `drain` to finish.
    /// Connections are held to [`ServeLimits::default`].
    pub fn serve(self, router: axum::Router, shutdown: Shutdown, drain: Duration) -> tokio::task::JoinHandle<()> {
        self.serve_with(router, shutdown, drain, ServeLimits::default())
    }

    /// As [`Axon::serve`], with the HTTP server's `limits` (and their refusals reported).
    ///
    /// HTTP/1.1 only, served by hyper directly rather than `axum::serve`: `axum::serve` sets
    /// no timer on hyper's connection builder, and hyper then silently drops its header-read
    /// timeout, so a client sending its headers a byte at a time (slowloris) held a
    /// connection and its task for as long as it liked. Handlers can extract
    /// `ConnectInfo<SocketAddr>` as before.
    pub fn serve_with(self, router: axum::Router, mut shutdown: Shutdown, drain: Duration, limits: ServeLimits) -> tokio::task::JoinHandle<()> {
        let listener = self.listener;
        let limits = Arc::new(limits);
        tokio::spawn(async move {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // As axum's listener: transient errors (e.g. too many open files)
                            // are waited out, not fatal.
                            tracing::debug!(target: "ganglion::neuron", "accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = shutdown.wait() => break,
                };
                while connections.try_join_next().is_some() {}
                // Streamed responses are many small writes (one per token): without
                // TCP_NODELAY, Nagle's algorithm can hold each behind the previous one's ACK.
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(stream, peer, router.clone(), limits.clone(), stop_rx.clone()));
            }
            drop(listener);
            let _ = stop_tx.send(true);
            let drained = tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                tracing::warn!(target: "ganglion::neuron", "in-flight requests did not finish within {drain:?}; closing them");
                connections.abort_all();
            }
        })
    }
}

/// What the axon's HTTP server allows a connection, and whom it tells when one is cut off.
#[derive(Clone)]
pub struct ServeLimits {
    /// A request's line and headers must arrive within this long of the server starting to
    /// read them; a connection idle between keep-alive requests is also closed after it.
    pub header_read_timeout: Duration,
    /// Largest request line plus headers, in bytes; larger heads are answered 431 and the
    /// connection closed.
    pub max_header_bytes: usize,
    /// A response write that makes no progress for this long (the client stopped reading)
    /// closes the connection: a streamed response is only produced as fast as it is read,
    /// so without this a client that never reads would hold the response (and whatever it
    /// holds upstream) for ever.
    pub write_stall_timeout: Duration,
    /// Called with the reason whenever a connection is cut off before a request was read:
    /// `header_timeout` (headers too slow, the slowloris case; not reported on a connection
    /// that sent nothing or already served a request, where it is most likely an idle
    /// keep-alive one), `header_too_large`, `bad_request` (unparsable), `incomplete_request`
    /// (the client hung up mid-request); and `write_stalled` when a client stopped reading
    /// its response.
    pub on_refused: Option<Arc<dyn Fn(&'static str) + Send + Sync>>,
}

impl Default for ServeLimits {
    /// 30 s for headers (hyper's own default, which `axum::serve` loses), 32 KiB of head,
    /// 30 s of stalled writes.
    fn default() -> Self {
        ServeLimits { header_read_timeout: Duration::from_secs(30), max_header_bytes: 32 * 1024, write_stall_timeout: Duration::from_secs(30), on_refused: None }
    }
}

impl std::fmt::Debug for ServeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeLimits")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("write_stall_timeout", &self.write_stall_timeout)
            .finish_non_exhaustive()
    }
}

/// The router as one connection's hyper service: inserts `ConnectInfo(peer)` (as
/// `into_make_service_with_connect_info` does) and counts the requests served.
#[derive(Clone)]
struct ConnectionService {
    inner: hyper_util::service::TowerToHyperService<axum::Router>,
    peer: SocketAddr,
    served: Arc<std::sync::atomic::AtomicU64>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = hyper_util::service::TowerToHyperServiceFuture<axum::Router, http::Request<hyper::body::Incoming>>;

    fn call(&self, mut request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        self.inner.call(request)
    }
}

/// One connection under `limits`, shut down gracefully (the response in flight finishes)
/// once `stop` turns true.
async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, router: axum::Router, limits: Arc<ServeLimits>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let service = ConnectionService { inner: hyper_util::service::TowerToHyperService::new(router), peer, served: served.clone() };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let seen = Arc::new(Seen::default());
    let stream = StallGuard { inner: stream, limit: limits.write_stall_timeout, stall: None, seen: seen.clone() };
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    let Err(e) = result else { return };
    let reason = if seen.stalled.load(std::sync::atomic::Ordering::Relaxed) {
        "write_stalled"
    } else if e.is_timeout() {
        if served.load(std::sync::atomic::Ordering::Relaxed) > 0 || !seen.read.load(std::sync::atomic::Ordering::Relaxed) {
            // A keep-alive connection left idle, or one a client's pool opened and never
            // used (most likely; neither is an attack): not a refusal.
            tracing::trace!(target: "ganglion::neuron", %peer, "idle connection closed: {e}");
            return;
        }
        "header_timeout"
    } else if e.is_parse_too_large() {
        "header_too_large"
    } else if e.is_parse() {
        "bad_request"
    } else if e.is_incomplete_message() {
        "incomplete_request"
    } else {
        tracing::trace!(target: "ganglion::neuron", %peer, "connection ended: {e}");
        return;
    };
    tracing::debug!(target: "ganglion::neuron", %peer, reason, "connection refused: {e}");
    if let Some(report) = &limits.on_refused {
        report(reason);
    }
}

/// What a connection's [`StallGuard`] saw.
#[derive(Default)]
struct Seen {
    /// Any byte read.
    read: std::sync::atomic::AtomicBool,
    /// A write stalled past the limit.
    stalled: std::sync::atomic::AtomicBool,
}

/// A connection's socket whose writes fail once they made no progress for `limit`.
struct StallGuard {
    inner: tokio::net::TcpStream,
    limit: Duration,
    stall: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    seen: Arc<Seen>,
}

impl StallGuard {
    /// After a write returned `Pending`: `Pending` until the stall lasted `limit`, then an error.
    fn pending<T>(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<T>> {
        let limit = self.limit;
        let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                self.seen.stalled.store(true, std::sync::atomic::Ordering::Relaxed);
                std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client stopped reading")))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// After a write completed: the stall (if any) is over.
    fn progressed<T>(&mut self, result: std::task::Poll<T>) -> std::task::Poll<T> {
        self.stall = None;
        result
    }
}

impl tokio::io::AsyncRead for StallGuard {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.read.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}

impl tokio::io::AsyncWrite for StallGuard {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Pending => self.pending(cx),
            done => self.progressed(done),
        }
    }

    fn poll_write_vectored(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            std::task::Poll::Pending => self.pending(cx),
            done => self.progressed(done),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A miner's link to the chain, set up by [`attach_chain`].
#[derive(Debug)]
pub struct ChainLink {
    /// The miner's uid at start (`None`: not registered yet).
    pub uid: Option<u16>,
    /// The background sync task ([`run_chain_sync`]); ends on the shutdown token.
    pub task: tokio::task::JoinHandle<()>,
}

/// The chain's part of a miner's status: uid, block, phase (running or unregistered).
fn chain_status(board: &StatusBoard, metagraph: &Metagraph, me: &PublicKey) {
    let uid = metagraph.uid_of(me);
    board.update(|s| {
        s.uid = uid;
        s.block = metagraph.block();
        if s.phase != Phase::Stopping {
            s.phase = if uid.is_some() { Phase::Running } else { Phase::Unregistered };
        }
    });
}

/// Connects a bound axon to the chain, the same way for every miner: the first metagraph
/// sync and caller table before the first request is served, the first `serve_axon` (when
/// `serve`), the status's chain fields, then [`run_chain_sync`] in the background, which
/// also calls the subnet's `on_sync` hook after each sync.
#[allow(clippy::too_many_arguments)]
pub async fn attach_chain(
    axon: &Axon,
    chain: Arc<dyn Chain>,
    netuid: u16,
    hotkey: &Keypair,
    serve: bool,
    interval: Duration,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    shutdown: Shutdown,
    mut on_sync: impl FnMut(&Metagraph, &SyncOutcome) + Send + 'static,
) -> Result<ChainLink, ChainError> {
    let mut sync = MetagraphSync::fetch(chain.clone(), netuid, metrics.clone()).await?;
    axon.directory().replace(caller_table(sync.metagraph()));
    let mut publisher = serve.then(|| AxonPublisher::new(hotkey.clone(), netuid, axon.external()));
    if let Some(p) = publisher.as_mut()
        && p.ensure(chain.as_ref(), sync.metagraph(), &metrics).await
    {
        // See our own axon before the background task compares against it.
        let _ = sync.sync().await;
    }
    let me = hotkey.public();
    let uid = sync.metagraph().uid_of(&me);
    chain_status(&board, sync.metagraph(), &me);
    let hook = move |metagraph: &Metagraph, outcome: &SyncOutcome| {
        chain_status(&board, metagraph, &me);
        on_sync(metagraph, outcome);
    };
    let task = tokio::spawn(run_chain_sync(sync, axon.directory(), publisher, interval, metrics, shutdown, hook));
    Ok(ChainLink { uid, task })
}

/// The miner's chain task: every `interval`, sync the metagraph, refresh the caller table
/// when it changed, call `on_sync` (the subnet's hook, e.g. to reset state of uids that
/// changed hands) and (re)publish the axon. Returns when `shutdown` fires.
pub async fn run_chain_sync(
    mut sync: MetagraphSync,
    directory: Arc<SharedDirectory>,
    mut publisher: Option<AxonPublisher>,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
    mut on_sync: impl FnMut(&Metagraph, &SyncOutcome) + Send,
) {
    metrics.counter("ganglion_axon_served_total", "serve_axon transactions accepted.");
    directory.replace(caller_table(sync.metagraph()));
    let chain = sync.chain().clone();
    if let Some(p) = publisher.as_mut() {
        p.ensure(chain.as_ref(), sync.metagraph(), &metrics).await;
    }
    loop {
        if shutdown.sleep(interval).await {
            return;
        }
        let Ok(outcome) = sync.sync().await else { continue };
        if outcome.changed {
            directory.replace(caller_table(sync.metagraph()));
        }
        on_sync(sync.metagraph(), &outcome);
        if let Some(p) = publisher.as_mut() {
            p.ensure(chain.as_ref(), sync.metagraph(), &metrics).await;
        }
    }
}
