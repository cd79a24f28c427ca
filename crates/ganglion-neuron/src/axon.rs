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
    pub fn serve(self, router: axum::Router, mut shutdown: Shutdown, drain: Duration) -> tokio::task::JoinHandle<()> {
        let listener = self.listener;
        tokio::spawn(async move {
            let mut stop = shutdown.clone();
            let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move { stop.wait().await });
            let server = tokio::spawn(async move {
                if let Err(e) = server.await {
                    tracing::error!(target: "ganglion::neuron", "axon server failed: {e}");
                }
            });
            let abort = server.abort_handle();
            tokio::pin!(server);
            tokio::select! {
                _ = &mut server => {}
                () = shutdown.wait() => {
                    if tokio::time::timeout(drain, &mut server).await.is_err() {
                        tracing::warn!(target: "ganglion::neuron", "in-flight requests did not finish within {drain:?}; closing them");
                        abort.abort();
                    }
                }
            }
        })
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
