//! [`HubConfig`] (what the caller decides) and [`HubState`] (what the handlers share):
//! the store, the chain, the cached metagraphs and chain status, the live feed and metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ganglion_chain::{Chain, Metagraph};
use ganglion_records::Records;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::feed::FeedEvent;

/// How to run a hub.
#[derive(Clone)]
pub struct HubConfig {
    /// The records store to show.
    pub records: Records,
    /// The chain for metagraphs (None: records only).
    pub chain: Option<Arc<dyn Chain>>,
    /// Where the chain is, for display (`http://127.0.0.1:9944`).
    pub chain_label: String,
    /// Show only this netuid.
    pub netuid: Option<u16>,
    /// Record a metagraph snapshot every this many blocks (what "incentive over time" plots).
    pub snapshot_every_blocks: u64,
    /// How often to sync metagraphs from the chain.
    pub chain_poll: Duration,
    /// How often the live feed polls the store for new rows.
    pub feed_poll: Duration,
    /// Most concurrent live-feed (SSE) clients.
    pub max_sse_clients: usize,
    /// Serve HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<ganglion_tls::ServerTls>,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("records", &self.records.display_url())
            .field("chain", &self.chain_label)
            .field("netuid", &self.netuid)
            .field("snapshot_every_blocks", &self.snapshot_every_blocks)
            .finish_non_exhaustive()
    }
}

impl HubConfig {
    /// Defaults around a store and an optional chain: snapshots every 5 blocks, chain synced
    /// every 2 s, feed polled every 500 ms, at most 64 live clients.
    pub fn new(records: Records, chain: Option<Arc<dyn Chain>>, chain_label: impl Into<String>) -> HubConfig {
        HubConfig {
            records,
            chain,
            chain_label: chain_label.into(),
            netuid: None,
            snapshot_every_blocks: 5,
            chain_poll: Duration::from_secs(2),
            feed_poll: Duration::from_millis(500),
            max_sse_clients: 64,
            tls: None,
        }
    }
}

/// What the hub knows about the chain right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainStatus {
    /// Whether a chain is configured at all.
    pub configured: bool,
    /// Where it is.
    pub url: String,
    /// The last sync succeeded.
    pub reachable: bool,
    /// Best block at the last successful sync.
    pub block: Option<u64>,
    /// Why the last sync failed.
    pub error: Option<String>,
    /// When the last sync succeeded (ms since 1970).
    pub last_ok_ms: Option<i64>,
    /// Netuids on the chain at the last sync.
    pub netuids: Vec<u16>,
}

/// The hub's metrics for `/metrics`, in the workspace's one registry (`ganglion-metrics`).
#[derive(Debug)]
pub struct Metrics {
    registry: ganglion_metrics::Metrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = ganglion_metrics::Metrics::new();
        registry.counter("ganglion_hub_requests_total", "HTTP requests by route and status.");
        registry.histogram("ganglion_hub_request_seconds", "HTTP request latency by route.", ganglion_metrics::LATENCY_BUCKETS);
        registry.counter("ganglion_hub_feed_events_total", "Records pushed to live clients.");
        registry.counter("ganglion_hub_snapshot_rows_total", "Metagraph snapshot rows recorded.");
        registry.counter("ganglion_hub_chain_errors_total", "Chain syncs that failed.");
        registry.counter("ganglion_hub_store_errors_total", "Background store operations that failed.");
        registry.gauge("ganglion_hub_live_clients", "Connected live-feed clients.");
        registry.gauge("ganglion_hub_chain_reachable", "1 if the last chain sync succeeded.");
        registry.gauge("ganglion_hub_chain_block", "Best block at the last successful sync.");
        Metrics { registry }
    }
}

impl Metrics {
    /// Records pushed to live clients.
    pub fn feed_event(&self) {
        self.registry.inc("ganglion_hub_feed_events_total", &[]);
    }

    /// Metagraph snapshot rows recorded.
    pub fn snapshot_rows(&self, n: usize) {
        self.registry.add("ganglion_hub_snapshot_rows_total", &[], n as f64);
    }

    /// A chain sync failed.
    pub fn chain_error(&self) {
        self.registry.inc("ganglion_hub_chain_errors_total", &[]);
    }

    /// A background store operation failed.
    pub fn store_error(&self) {
        self.registry.inc("ganglion_hub_store_errors_total", &[]);
    }

    /// The registry.
    pub fn registry(&self) -> &ganglion_metrics::Metrics {
        &self.registry
    }
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) metagraphs: RwLock<HashMap<u16, Metagraph>>,
    pub(crate) chain_status: RwLock<ChainStatus>,
    pub(crate) feed: broadcast::Sender<FeedEvent>,
    pub(crate) sse_clients: AtomicUsize,
    pub(crate) metrics: Metrics,
    // Set to true on shutdown: ends live-feed streams, which would otherwise hold the
    // graceful shutdown open forever.
    pub(crate) shutdown: watch::Sender<bool>,
}

/// Shared state of one hub; cheap to clone.
#[derive(Clone)]
pub struct HubState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for HubState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubState").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// Events buffered per live client before it counts as lagging (bounded memory per client).
pub(crate) const FEED_BUFFER: usize = 256;

impl HubState {
    /// State for `config`, with no background task running (see [`crate::serve`]).
    pub fn new(config: HubConfig) -> HubState {
        let (feed, _) = broadcast::channel(FEED_BUFFER);
        let status = ChainStatus { configured: config.chain.is_some(), url: config.chain_label.clone(), ..ChainStatus::default() };
        HubState {
            inner: Arc::new(Inner {
                config,
                metagraphs: RwLock::new(HashMap::new()),
                chain_status: RwLock::new(status),
                feed,
                sse_clients: AtomicUsize::new(0),
                metrics: Metrics::default(),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// The store.
    pub fn records(&self) -> &Records {
        &self.inner.config.records
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The chain status as of the last sync.
    pub fn chain_status(&self) -> ChainStatus {
        self.inner.chain_status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The cached metagraph of `netuid`, if the chain was reached.
    pub fn metagraph(&self, netuid: u16) -> Option<Metagraph> {
        self.inner.metagraphs.read().ok().and_then(|m| m.get(&netuid).cloned())
    }

    /// Puts a metagraph in the cache (the chain watcher does this; tests may too).
    pub fn set_metagraph(&self, metagraph: Metagraph) {
        if let Ok(mut map) = self.inner.metagraphs.write() {
            map.insert(metagraph.netuid(), metagraph);
        }
    }

    pub(crate) fn set_chain_status(&self, update: impl FnOnce(&mut ChainStatus)) {
        if let Ok(mut status) = self.inner.chain_status.write() {
            update(&mut status);
        }
    }

    /// Whether `netuid` passes the `--netuid` filter.
    pub fn shows(&self, netuid: u16) -> bool {
        self.inner.config.netuid.is_none_or(|only| only == netuid)
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn count_request(&self, route: &str, status: u16, seconds: f64) {
        let registry = self.inner.metrics.registry();
        registry.inc("ganglion_hub_requests_total", &[("route", route), ("status", &status.to_string())]);
        registry.observe("ganglion_hub_request_seconds", &[("route", route)], seconds);
    }

    pub(crate) fn sse_clients(&self) -> usize {
        self.inner.sse_clients.load(Ordering::Relaxed)
    }
}
