//! The node: one [`State`] behind a mutex, persisted by a [`Store`], a block loop, and a
//! broadcast of new blocks. [`Node`] also implements [`Chain`] in-process.
//!
//! ```text
//!  submit(tx) ──► State::apply (checks, mutate) ──► Store::append_mempool (fsync) ──► receipt
//!  every block_time ──► State::finalize_block (coinbase, epochs) ──► Store::commit_block ──► broadcast
//!  open() ──► Store::open ──► state at last committed block ──► replay mempool in order
//! ```
//!
//! **Invariant:** a transaction is acknowledged only after its mempool record is committed,
//! and a block's commit also empties the mempool, so after `kill -9` the reopened node is at
//! the last committed block with every acknowledged transaction re-applied. If a write fails
//! the node stops accepting work (the in-memory state may be ahead of disk); restart it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ganglion_core::keys::{Keypair, PublicKey};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use ganglion_chain::api::{
    AccountId, AccountInfo, BlockHeader, BlockStream, Chain, ChainInfo, Commitment, NeuronsSnapshot, RAO_PER_TAO,
    SubnetInfo, TxReceipt,
};
use ganglion_chain::commit_reveal::WeightCommit;
use ganglion_chain::error::{ChainError, ChainResult, TxError};
use ganglion_chain::hyperparams::Hyperparams;
use crate::state::{ChainConfig, State};
use crate::store::Store;
use ganglion_chain::tx::SignedTransaction;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Directory of `chain.redb`.
    pub data_dir: PathBuf,
    /// Target time between blocks.
    pub block_time: Duration,
    /// State-machine settings. `chain_id`, `block_emission` and `network_lock_cost` are fixed
    /// at genesis (a reopened chain keeps its own); the others apply from this start on.
    pub chain: ChainConfig,
}

/// Genesis balance of `//Alice` and `//Bob`, as on subtensor's localnet: 1 000 000 TAO.
pub const GENESIS_ENDOWMENT: u64 = 1_000_000 * RAO_PER_TAO;

struct Inner {
    state: State,
    store: Store,
    next_seq: u64,
    pending: Vec<String>,
    failed: Option<String>,
}

/// A running chain node (without its HTTP server; see [`crate::http`]).
pub struct Node {
    inner: Mutex<Inner>,
    config: ChainConfig,
    block_time: Duration,
    genesis_hex: String,
    blocks: broadcast::Sender<BlockHeader>,
    closed: tokio::sync::watch::Sender<bool>,
    metrics: Arc<ganglion_metrics::Metrics>,
}

fn describe(metrics: &ganglion_metrics::Metrics) {
    metrics.counter("ganglion_chain_blocks_total", "Blocks produced.");
    metrics.gauge("ganglion_chain_best_block", "Number of the last committed block.");
    metrics.histogram("ganglion_chain_block_seconds", "Time to finalise and durably commit a block.", &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]);
    metrics.counter("ganglion_chain_transactions_total", "Transactions submitted, by call and result (accepted or the chain's error name).");
    metrics.counter("ganglion_chain_epochs_total", "Subnet epochs run.");
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("chain_id", &self.config.chain_id).field("genesis", &self.genesis_hex).finish()
    }
}

fn block_hash(parent: &str, number: u64, timestamp_ms: u64, txs: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update(number.to_le_bytes());
    h.update(timestamp_ms.to_le_bytes());
    for tx in txs {
        h.update(tx.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Node {
    /// Open the chain in `config.data_dir`, creating genesis if it is new, and replay
    /// accepted transactions of the interrupted pending block.
    pub fn open(config: NodeConfig) -> ChainResult<Arc<Node>> {
        let (store, loaded) = Store::open(&config.data_dir)?;
        let mut chain = config.chain.clone();
        let (state, next_seq, pending) = match loaded {
            Some(loaded) => {
                chain.chain_id = loaded.config.chain_id;
                chain.block_emission = loaded.config.block_emission;
                chain.network_lock_cost = loaded.config.network_lock_cost;
                let mut state = loaded.state;
                let mut pending = Vec::new();
                let mut next_seq = 0;
                for (seq, tx) in loaded.mempool {
                    next_seq = seq + 1;
                    match state.apply(&tx, &chain) {
                        Ok(_) => pending.push(tx.hash()),
                        Err(e) => tracing::warn!(target: "ganglion::chain", "dropping mempool transaction {seq} on replay: {e}"),
                    }
                }
                tracing::info!(target: "ganglion::chain", block = state.block, replayed = pending.len(), "chain reopened");
                (state, next_seq, pending)
            }
            None => {
                let salt: [u8; 32] = rand::random();
                let mut h = Sha256::new();
                h.update(chain.chain_id.as_bytes());
                h.update(salt);
                let genesis: [u8; 32] = h.finalize().into();
                let endowed: Vec<(PublicKey, u64)> = ["//Alice", "//Bob"]
                    .iter()
                    .filter_map(|uri| Keypair::from_uri(uri).ok())
                    .map(|k| (k.public(), GENESIS_ENDOWMENT))
                    .collect();
                let mut state = State::genesis(genesis, &endowed);
                let header = BlockHeader {
                    number: 0,
                    hash: hex::encode(genesis),
                    parent_hash: hex::encode([0u8; 32]),
                    timestamp_ms: ganglion_core::clock::now_ms(),
                    extrinsics: Vec::new(),
                    epochs: Vec::new(),
                };
                store.write_genesis(&mut state, &chain, &header)?;
                tracing::info!(target: "ganglion::chain", genesis = %hex::encode(genesis), "new chain created");
                (state, 0, Vec::new())
            }
        };
        let genesis_hex = hex::encode(state.genesis);
        let (blocks, _) = broadcast::channel(256);
        Ok(Arc::new(Node {
            inner: Mutex::new(Inner { state, store, next_seq, pending, failed: None }),
            config: chain,
            block_time: config.block_time,
            genesis_hex,
            blocks,
            closed: tokio::sync::watch::channel(false).0,
            metrics: {
                let metrics = Arc::new(ganglion_metrics::Metrics::new());
                describe(&metrics);
                metrics
            },
        }))
    }

    fn lock(&self) -> ChainResult<MutexGuard<'_, Inner>> {
        let guard = self.inner.lock().map_err(|_| ChainError::Node("node state lock poisoned; restart the node".into()))?;
        if let Some(reason) = &guard.failed {
            return Err(ChainError::Node(format!("node stopped after a storage failure ({reason}); restart it")));
        }
        Ok(guard)
    }

    /// The effective chain config.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The node's metrics (served as `GET /metrics`).
    pub fn metrics(&self) -> &Arc<ganglion_metrics::Metrics> {
        &self.metrics
    }

    /// Apply and durably accept a transaction.
    pub fn submit_tx(&self, tx: SignedTransaction) -> ChainResult<TxReceipt> {
        let call = tx.call.name();
        let result = self.submit_inner(tx);
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(e) => e.name().unwrap_or("NodeFailure"),
        };
        self.metrics.inc("ganglion_chain_transactions_total", &[("call", call), ("result", outcome)]);
        result
    }

    fn submit_inner(&self, tx: SignedTransaction) -> ChainResult<TxReceipt> {
        let mut inner = self.lock()?;
        let applied = inner.state.apply(&tx, &self.config).map_err(ChainError::from)?;
        let seq = inner.next_seq;
        if let Err(e) = inner.store.append_mempool(seq, &tx) {
            inner.failed = Some(e.to_string());
            return Err(e.into());
        }
        inner.next_seq += 1;
        let hash = tx.hash();
        inner.pending.push(hash.clone());
        tracing::debug!(target: "ganglion::chain", call = tx.call.name(), %hash, "transaction accepted");
        Ok(TxReceipt { hash, block: inner.state.pending_block(), uid: applied.uid, netuid: applied.netuid })
    }

    /// Decode, apply and accept a raw transaction body.
    pub fn submit_bytes(&self, body: &[u8]) -> ChainResult<TxReceipt> {
        let tx = SignedTransaction::decode(body).map_err(ChainError::from)?;
        self.submit_tx(tx)
    }

    /// Finalise and commit the pending block, then announce it.
    pub fn produce_block(&self) -> ChainResult<BlockHeader> {
        let started = std::time::Instant::now();
        let mut inner = self.lock()?;
        let number = inner.state.block + 1;
        let epochs = inner.state.finalize_block(number, &self.config);
        let timestamp_ms = ganglion_core::clock::now_ms();
        let extrinsics = std::mem::take(&mut inner.pending);
        let hash = block_hash(&inner.state.block_hash, number, timestamp_ms, &extrinsics);
        let header = BlockHeader { number, hash: hash.clone(), parent_hash: inner.state.block_hash.clone(), timestamp_ms, extrinsics, epochs };
        let Inner { state, store, failed, .. } = &mut *inner;
        if let Err(e) = store.commit_block(state, &header) {
            *failed = Some(e.to_string());
            return Err(e.into());
        }
        inner.state.block = number;
        inner.state.block_hash = hash;
        drop(inner);
        self.metrics.inc("ganglion_chain_blocks_total", &[]);
        self.metrics.add("ganglion_chain_epochs_total", &[], header.epochs.len() as f64);
        self.metrics.set("ganglion_chain_best_block", &[], number as f64);
        self.metrics.observe("ganglion_chain_block_seconds", &[], started.elapsed().as_secs_f64());
        let _ = self.blocks.send(header.clone());
        Ok(header)
    }

    /// Produce a block every `block_time` until `shutdown` resolves or storage fails.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send) {
        let mut ticker = tokio::time::interval(self.block_time);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {
                    let node = self.clone();
                    match tokio::task::spawn_blocking(move || node.produce_block()).await {
                        Ok(Ok(header)) => tracing::debug!(target: "ganglion::chain", block = header.number, txs = header.extrinsics.len(), "block"),
                        Ok(Err(e)) => {
                            tracing::error!(target: "ganglion::chain", "block production stopped: {e}");
                            break;
                        }
                        Err(e) => {
                            tracing::error!(target: "ganglion::chain", "block production task failed: {e}");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Read access to the state (for the HTTP layer and tests).
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> ChainResult<T> {
        let inner = self.lock()?;
        Ok(f(&inner.state))
    }

    /// A committed block header.
    pub fn block(&self, number: u64) -> ChainResult<Option<BlockHeader>> {
        let inner = self.lock()?;
        Ok(inner.store.block(number)?)
    }

    /// Chain info.
    pub fn info_now(&self) -> ChainResult<ChainInfo> {
        let block = self.with_state(|s| s.block)?;
        Ok(ChainInfo {
            chain_id: self.config.chain_id.clone(),
            genesis_hash: self.genesis_hex.clone(),
            block,
            block_time_ms: self.block_time.as_millis() as u64,
            faucet: self.config.faucet,
        })
    }

    /// Mark the node closed: block subscriptions end (so servers can shut down gracefully).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`Node::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static + use<> {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// Subscribe to committed blocks.
    pub fn block_receiver(&self) -> broadcast::Receiver<BlockHeader> {
        self.blocks.subscribe()
    }

    /// Subnet summaries.
    pub fn subnets_now(&self) -> ChainResult<Vec<SubnetInfo>> {
        self.with_state(|s| {
            let e = s.emission_per_subnet(&self.config);
            s.subnets.values().map(|sn| sn.info(e)).collect()
        })
    }

    /// One subnet summary.
    pub fn subnet_now(&self, netuid: u16) -> ChainResult<SubnetInfo> {
        self.with_state(|s| {
            let e = s.emission_per_subnet(&self.config);
            s.subnets.get(&netuid).map(|sn| sn.info(e))
        })?
        .ok_or_else(|| TxError::SubnetNotExists(netuid).into())
    }

    /// Hyperparameters of a subnet.
    pub fn hyperparams_now(&self, netuid: u16) -> ChainResult<Hyperparams> {
        self.with_state(|s| s.subnets.get(&netuid).map(|sn| sn.params.clone()))?
            .ok_or_else(|| TxError::SubnetNotExists(netuid).into())
    }

    /// Neurons of a subnet (None if unchanged since `since`).
    pub fn neurons_now(&self, netuid: u16, since: Option<u64>) -> ChainResult<Option<NeuronsSnapshot>> {
        self.with_state(|s| {
            let subnet = s.subnets.get(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
            if let Some(since) = since
                && subnet.changed_at <= since
            {
                return Ok(None);
            }
            Ok(Some(NeuronsSnapshot { netuid, block: s.block, changed_at: subnet.changed_at, neurons: subnet.neuron_infos() }))
        })?
        .map_err(|e: TxError| e.into())
    }

    /// A commitment.
    pub fn commitment_now(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Option<Commitment>> {
        self.with_state(|s| {
            let subnet = s.subnets.get(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
            Ok(subnet.commitments.get(&AccountId(*hotkey)).cloned())
        })?
        .map_err(|e: TxError| e.into())
    }
}

impl Node {
    /// The weights matrix of a subnet, rows by uid.
    pub fn weights_now(&self, netuid: u16) -> ChainResult<Vec<Vec<(u16, u16)>>> {
        self.with_state(|s| {
            let subnet = s.subnets.get(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
            Ok(subnet.neurons.iter().map(|n| n.weights.clone()).collect())
        })?
        .map_err(|e: TxError| e.into())
    }

    /// A hotkey's pending weight commits (live ones, oldest first).
    pub fn weight_commits_now(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Vec<WeightCommit>> {
        self.with_state(|s| {
            let subnet = s.subnets.get(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
            Ok(subnet.weight_commit_infos(&AccountId(*hotkey)))
        })?
        .map_err(|e: TxError| e.into())
    }
}

#[async_trait]
impl Chain for Node {
    async fn info(&self) -> ChainResult<ChainInfo> {
        self.info_now()
    }

    async fn subscribe_blocks(&self) -> ChainResult<BlockStream> {
        let stream = tokio_stream::wrappers::BroadcastStream::new(self.block_receiver())
            .filter_map(|item| async move { item.ok().map(Ok) })
            .take_until(self.closed());
        Ok(Box::pin(stream))
    }

    async fn account(&self, account: &PublicKey) -> ChainResult<AccountInfo> {
        self.with_state(|s| s.account(account))
    }

    async fn subnets(&self) -> ChainResult<Vec<SubnetInfo>> {
        self.subnets_now()
    }

    async fn subnet(&self, netuid: u16) -> ChainResult<SubnetInfo> {
        self.subnet_now(netuid)
    }

    async fn hyperparams(&self, netuid: u16) -> ChainResult<Hyperparams> {
        self.hyperparams_now(netuid)
    }

    async fn neurons(&self, netuid: u16, since: Option<u64>) -> ChainResult<Option<NeuronsSnapshot>> {
        self.neurons_now(netuid, since)
    }

    async fn commitment(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Option<Commitment>> {
        self.commitment_now(netuid, hotkey)
    }

    async fn weights(&self, netuid: u16) -> ChainResult<Vec<Vec<(u16, u16)>>> {
        self.weights_now(netuid)
    }

    async fn weight_commits(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Vec<WeightCommit>> {
        self.weight_commits_now(netuid, hotkey)
    }

    async fn submit(&self, tx: SignedTransaction) -> ChainResult<TxReceipt> {
        self.submit_tx(tx)
    }
}
