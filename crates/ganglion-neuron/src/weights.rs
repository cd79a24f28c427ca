//! Setting weights, the same for every validator ([`WeightSetter`]):
//!
//! - **When**: due once `block + 1 ≥ last_update + max(epoch_length, weights_rate_limit)`,
//!   with `last_update` the chain's (or our last accepted submission, if newer) and the
//!   rate limit read from the chain's hyperparameters. A transaction built on best block `b`
//!   executes in block `b + 1`, which is the block the chain checks its rate limit against,
//!   so a due submission is never refused as `SettingWeightsTooFast`.
//! - **What**: the subnet's float scores through the SDK's `process_weights_for_netuid` with
//!   the chain's `min_allowed_weights` and `max_weights_limit` (read just before submitting),
//!   then the SDK's u16 conversion: what the chain would refuse is reshaped first, exactly as
//!   Python validators do it.
//! - **version_key**: one policy, the SDK's `version_as_int` of this build
//!   ([`version_key`]), unless the operator sets `neuron.version_key`.
//! - **After a refusal**: the chain's answer decides the wait (the rate limit's end, the next
//!   epoch for a missing permit or stake, exponential backoff in blocks otherwise), never a
//!   blind timer.
//! - **How**: a [`WeightStrategy`] puts the u16 weights on chain, picked from the chain's
//!   hyperparameters as the SDK does: [`PlainWeights`] (`set_weights`) when
//!   `commit_reveal_weights_enabled` is off, [`CommitReveal`] (commit the hash now, reveal in
//!   the commit's reveal epoch) when it is on, [`TimelockedCommits`] when it is on with the
//!   chain's `commit_reveal_version` 3 or above (drand-timelocked; the chain reveals). [`WeightStrategy::poll`] runs on every pass of
//!   the loop, so a reveal goes out when its window opens, not when weights are next due; the
//!   pending reveals live in an atomic state file ([`WeightSetter::with_state_file`]), so a
//!   restart (even `kill -9`) between commit and reveal still reveals.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ganglion_chain::commit_reveal::hash_hex;
use ganglion_chain::{Chain, ChainError, ChainResult, Hyperparams, Metagraph, TxReceipt, weight_hash};
use ganglion_core::keys::Keypair;
use ganglion_yuma::weights::{WeightsError, convert_weights_and_uids_for_emit, process_weights_for_netuid};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::state::StateFile;
use crate::status::{PendingCommitStatus, WeightsStatus};

/// The SDK's `version_as_int` of this build: `major·10⁶ + minor·10³ + patch`. The one
/// version number of every node: the axon's `version` and the weights' `version_key`.
pub fn version_key() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION").split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major * 1_000_000 + minor * 1_000 + patch
}

/// Weights a strategy put on chain outside [`WeightStrategy::submit`] (a reveal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revealed {
    /// Block the reveal is included in.
    pub block: u64,
    /// Uids revealed.
    pub uids: Vec<u16>,
    /// u16 values revealed.
    pub values: Vec<u16>,
}

/// How u16 weights go on chain.
#[async_trait]
pub trait WeightStrategy: Send + Sync {
    /// Its name in status and logs (`plain`, `commit-reveal`).
    fn name(&self) -> &'static str;

    /// Whether this strategy commits and reveals (it is used only on subnets with
    /// `commit_reveal_weights_enabled`, plain ones only on subnets without).
    fn commit_reveal(&self) -> bool {
        false
    }

    /// Submits the weights (or a commitment to them).
    async fn submit(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt>;

    /// Called on every pass of the weight loop with the best block: finishes what earlier
    /// submissions started (reveals). Returns what reached the chain; errors are the
    /// strategy's to log and retry.
    async fn poll(&self, _chain: &dyn Chain, _hotkey: &Keypair, _netuid: u16, _block: u64) -> Vec<Revealed> {
        Vec::new()
    }

    /// Commits waiting for their reveal, oldest first.
    fn pending(&self) -> Vec<PendingCommitStatus> {
        Vec::new()
    }
}

/// Drand-timelocked commits (subtensor's commit-reveal v3 and later): the weights are
/// encrypted to the drand round of their reveal epoch and committed once; the chain decrypts
/// and applies them when that round's signature arrives, so there is no reveal to send
/// ([`Chain::commit_timelocked_weights`], `ganglion_chain::timelock`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TimelockedCommits;

#[async_trait]
impl WeightStrategy for TimelockedCommits {
    fn name(&self) -> &'static str {
        "timelocked-commit"
    }

    fn commit_reveal(&self) -> bool {
        true
    }

    async fn submit(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        chain.commit_timelocked_weights(hotkey, netuid, uids, values, version_key).await
    }
}

/// `set_weights` in the clear.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainWeights;

#[async_trait]
impl WeightStrategy for PlainWeights {
    fn name(&self) -> &'static str {
        "plain"
    }

    async fn submit(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        chain.set_weights(hotkey, netuid, uids, values, version_key).await
    }
}

/// Commit-reveal ([`ganglion_chain::commit_reveal`]): `submit` commits the hash of the
/// weights with a fresh random salt and keeps (uids, values, salt, version_key, commit block)
/// in memory and, when given, in an atomic state file (saved before the commit is sent, so a
/// crash cannot lose a salt the chain holds a commit for); `poll` reveals each commit once
/// the chain says its reveal epoch has come, and forgets commits the chain no longer holds
/// (expired, or never accepted).
pub struct CommitReveal {
    file: Option<StateFile>,
    pending: Mutex<Vec<PendingReveal>>,
}

impl std::fmt::Debug for CommitReveal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitReveal").field("file", &self.file.as_ref().map(StateFile::path)).finish_non_exhaustive()
    }
}

/// A commit waiting for its reveal, as [`CommitReveal`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReveal {
    /// `0x` hex of the committed hash.
    pub hash: String,
    /// Uids to reveal.
    pub uids: Vec<u16>,
    /// u16 values to reveal.
    pub values: Vec<u16>,
    /// The salt hashed with them.
    pub salt: Vec<u16>,
    /// The version key hashed with them.
    pub version_key: u64,
    /// Block the commit was included in (`None` until the chain acknowledged it).
    pub commit_block: Option<u64>,
    /// The epoch in which the chain accepts the reveal (from the chain, once known).
    pub reveal_epoch: Option<u64>,
    /// First block of the reveal window as the chain scheduled it.
    pub first_reveal_block: Option<u64>,
    /// Last block of the reveal window as the chain scheduled it.
    pub last_reveal_block: Option<u64>,
}

/// Salt length in u16s (the SDK's default salt is 8 random u16s).
pub const SALT_LEN: usize = 8;

/// A fresh commit-reveal salt: [`SALT_LEN`] random u16s from the thread's CSPRNG.
pub fn random_salt() -> Vec<u16> {
    let mut rng = rand::thread_rng();
    (0..SALT_LEN).map(|_| rng.r#gen::<u16>()).collect()
}

impl CommitReveal {
    /// Pending reveals in memory only (lost on restart).
    pub fn in_memory() -> CommitReveal {
        CommitReveal { file: None, pending: Mutex::new(Vec::new()) }
    }

    /// Pending reveals kept in `file` (loaded now: a restart reveals what the last run
    /// committed). An unreadable file is logged and starts empty.
    pub fn with_file(file: StateFile) -> CommitReveal {
        let pending = match file.load::<Vec<PendingReveal>>() {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(target: "ganglion::neuron", "cannot read the pending weight reveals: {e}; starting with none");
                Vec::new()
            }
        };
        CommitReveal { file: Some(file), pending: Mutex::new(pending) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PendingReveal>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves `pending` (atomically) if there is a file; a failure is logged.
    fn save(&self, pending: &[PendingReveal]) {
        if let Some(file) = &self.file
            && let Err(e) = file.save(&pending)
        {
            tracing::error!(target: "ganglion::neuron", "cannot save the pending weight reveals: {e}; a restart before the reveal loses them");
        }
    }

    /// Changes the pending reveals and saves them, under the lock so that saves keep the
    /// order of the changes (the write is synchronous; no await is held across it).
    fn update(&self, f: impl FnOnce(&mut Vec<PendingReveal>)) {
        let mut pending = self.lock();
        f(&mut pending);
        self.save(&pending);
    }
}

#[async_trait]
impl WeightStrategy for CommitReveal {
    fn name(&self) -> &'static str {
        "commit-reveal"
    }

    fn commit_reveal(&self) -> bool {
        true
    }

    async fn submit(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        let salt = random_salt();
        let hash = weight_hash(&hotkey.public(), netuid, &uids, &values, &salt, version_key);
        let hex = hash_hex(&hash);
        let entry = PendingReveal {
            hash: hex.clone(),
            uids,
            values,
            salt,
            version_key,
            commit_block: None,
            reveal_epoch: None,
            first_reveal_block: None,
            last_reveal_block: None,
        };
        self.update(|p| p.push(entry));
        match chain.commit_weights(hotkey, netuid, hash).await {
            Ok(receipt) => {
                let window = chain.weight_commits(netuid, &hotkey.public()).await.ok().and_then(|list| list.into_iter().find(|c| c.hash == hash));
                self.update(|p| {
                    if let Some(e) = p.iter_mut().find(|e| e.hash == hex) {
                        e.commit_block = Some(receipt.block);
                        if let Some(w) = window {
                            e.reveal_epoch = Some(w.reveal_epoch);
                            e.first_reveal_block = Some(w.first_reveal_block);
                            e.last_reveal_block = Some(w.last_reveal_block);
                        }
                    }
                });
                tracing::info!(target: "ganglion::neuron", netuid, block = receipt.block, hash = %hex, "weights committed; revealing in the reveal epoch");
                Ok(receipt)
            }
            Err(e) => {
                // A transport error may hide an accepted commit: `poll` asks the chain.
                if e.name().is_some() {
                    self.update(|p| p.retain(|x| x.hash != hex));
                }
                Err(e)
            }
        }
    }

    async fn poll(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, block: u64) -> Vec<Revealed> {
        let pending = self.lock().clone();
        // Nothing can be revealed before the earliest known window (a reveal built on best
        // block `b` executes in `b + 1`).
        if pending.is_empty() || pending.iter().all(|p| p.first_reveal_block.is_some_and(|first| block.saturating_add(1) < first)) {
            return Vec::new();
        }
        let (commits, subnet) = match (chain.weight_commits(netuid, &hotkey.public()).await, chain.subnet(netuid).await) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(target: "ganglion::neuron", "cannot read the weight commits: {e}; retrying");
                return Vec::new();
            }
        };
        let mut revealed = Vec::new();
        let mut gone: Vec<String> = Vec::new();
        let mut learned: Vec<(String, ganglion_chain::WeightCommit)> = Vec::new();
        for entry in &pending {
            let Some(on_chain) = commits.iter().find(|c| hash_hex(&c.hash) == entry.hash) else {
                tracing::warn!(target: "ganglion::neuron", netuid, hash = %entry.hash, "the chain holds no such weight commit (expired or never accepted); dropping it");
                gone.push(entry.hash.clone());
                continue;
            };
            learned.push((entry.hash.clone(), on_chain.clone()));
            if !on_chain.revealable(subnet.epoch_index) {
                continue;
            }
            match chain.reveal_weights(hotkey, netuid, entry.uids.clone(), entry.values.clone(), entry.salt.clone(), entry.version_key).await {
                Ok(receipt) => {
                    tracing::info!(target: "ganglion::neuron", netuid, block = receipt.block, hash = %entry.hash, uids = ?entry.uids, values = ?entry.values, "weights revealed");
                    revealed.push(Revealed { block: receipt.block, uids: entry.uids.clone(), values: entry.values.clone() });
                    gone.push(entry.hash.clone());
                }
                Err(e) if matches!(e.name(), Some("RevealTooEarly")) || e.name().is_none() => {
                    tracing::debug!(target: "ganglion::neuron", netuid, "reveal not accepted yet: {e}");
                }
                Err(e) => {
                    tracing::warn!(target: "ganglion::neuron", netuid, hash = %entry.hash, "the chain refused the reveal: {e}; dropping the commit");
                    gone.push(entry.hash.clone());
                }
            }
        }
        if !gone.is_empty() || !learned.is_empty() {
            self.update(|p| {
                p.retain(|e| !gone.contains(&e.hash));
                for (hash, c) in learned {
                    if let Some(e) = p.iter_mut().find(|e| e.hash == hash) {
                        e.commit_block = Some(c.commit_block);
                        e.reveal_epoch = Some(c.reveal_epoch);
                        e.first_reveal_block = Some(c.first_reveal_block);
                        e.last_reveal_block = Some(c.last_reveal_block);
                    }
                }
            });
        }
        revealed
    }

    fn pending(&self) -> Vec<PendingCommitStatus> {
        self.lock()
            .iter()
            .map(|p| PendingCommitStatus {
                hash: p.hash.clone(),
                commit_block: p.commit_block,
                reveal_epoch: p.reveal_epoch,
                first_reveal_block: p.first_reveal_block,
                last_reveal_block: p.last_reveal_block,
                uids: p.uids.len(),
            })
            .collect()
    }
}

/// What a call to [`WeightSetter::maybe_set`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsOutcome {
    /// Not due before this block.
    NotDue {
        /// The first block at which it is due.
        due: u64,
    },
    /// Due, but no miner has a score yet.
    NothingToSet,
    /// Accepted (with commit-reveal: committed; [`WeightSetter::poll`] reveals it later).
    Set {
        /// Block it is included in.
        block: u64,
        /// Uids sent.
        uids: Vec<u16>,
        /// u16 values sent.
        values: Vec<u16>,
        /// The processed float weights by uid (what the values encode).
        weights: Vec<(u16, f32)>,
    },
    /// The chain refused or could not be reached.
    Failed {
        /// The chain's error name (`ChainUnreachable` for transport errors).
        name: String,
        /// The full error.
        message: String,
        /// The block before which it will not try again.
        retry_at: u64,
    },
}

/// A validator's weight setting. See the module doc.
pub struct WeightSetter {
    netuid: u16,
    hotkey: Keypair,
    strategy: Box<dyn WeightStrategy>,
    commit_reveal: CommitReveal,
    revealed: Vec<Revealed>,
    epoch_length: u64,
    version_key: u64,
    exclude_quantile: u16,
    metrics: Arc<Metrics>,
    hyperparams: Option<(u64, Hyperparams)>,
    last_accepted: Option<u64>,
    retry_at: u64,
    failures: u32,
    status: WeightsStatus,
}

impl std::fmt::Debug for WeightSetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightSetter").field("netuid", &self.netuid).field("status", &self.status).finish_non_exhaustive()
    }
}

/// Hyperparameters older than this many blocks are read again before deciding.
const HYPERPARAMS_MAX_AGE: u64 = 100;

impl WeightSetter {
    /// A setter for `hotkey` on `netuid` submitting every `epoch_length` blocks (at least the
    /// chain's rate limit) with `strategy`; `version_key` `None` means [`version_key`].
    pub fn new(netuid: u16, hotkey: Keypair, epoch_length: u64, version_key: Option<u64>, strategy: Box<dyn WeightStrategy>, metrics: Arc<Metrics>) -> WeightSetter {
        metrics.counter("ganglion_weights_submissions_total", "Weight submissions, by the chain's answer (ok or its error name).");
        metrics.gauge("ganglion_weights_last_set_block", "Block of the last accepted weight submission.");
        metrics.gauge("ganglion_weights_next_due_block", "First block at which weights are due again.");
        metrics.counter("ganglion_weights_reveals_total", "Committed weights revealed (commit-reveal).");
        let version_key = version_key.unwrap_or_else(self::version_key);
        let status = WeightsStatus { strategy: strategy.name().to_string(), version_key, ..WeightsStatus::default() };
        WeightSetter {
            netuid,
            hotkey,
            strategy,
            commit_reveal: CommitReveal::in_memory(),
            revealed: Vec::new(),
            epoch_length: epoch_length.max(1),
            version_key,
            exclude_quantile: 0,
            metrics,
            hyperparams: None,
            last_accepted: None,
            retry_at: 0,
            failures: 0,
            status,
        }
    }

    /// Keeps commit-reveal's pending reveals in `path` (an atomic JSON state file, e.g.
    /// `<data_dir>/weight_commits.json`) and loads what a previous run left there. Without
    /// it they live in memory and a restart between a commit and its reveal loses the reveal.
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> WeightSetter {
        self.commit_reveal = CommitReveal::with_file(StateFile::new(path, self.netuid));
        self.status.pending_commits = self.pending_commits();
        self
    }

    fn pending_commits(&self) -> Vec<PendingCommitStatus> {
        let mut all = self.commit_reveal.pending();
        all.extend(self.strategy.pending());
        all
    }

    /// Weights revealed since the last call (commit-reveal), oldest first.
    pub fn take_revealed(&mut self) -> Vec<Revealed> {
        std::mem::take(&mut self.revealed)
    }

    /// The strategy for a subnet with these hyperparameters: the given one if it suits, else
    /// the built-in [`CommitReveal`] or [`PlainWeights`].
    fn pick(&self, hp: &Hyperparams) -> &dyn WeightStrategy {
        if hp.timelocked_commits() {
            // The chain reveals these itself: nothing to keep, nothing to poll.
            return &TimelockedCommits;
        }
        match (hp.commit_reveal_weights_enabled, self.strategy.commit_reveal()) {
            (true, true) | (false, false) => self.strategy.as_ref(),
            (true, false) => &self.commit_reveal,
            (false, true) => &PlainWeights,
        }
    }

    /// Runs the strategies' [`WeightStrategy::poll`] (reveals due at `block`).
    pub async fn poll(&mut self, chain: &dyn Chain, block: u64) {
        let mut revealed = self.commit_reveal.poll(chain, &self.hotkey, self.netuid, block).await;
        revealed.extend(self.strategy.poll(chain, &self.hotkey, self.netuid, block).await);
        for r in &revealed {
            self.status.revealed_count += 1;
            self.status.last_reveal_block = Some(r.block);
            self.metrics.inc("ganglion_weights_reveals_total", &[]);
        }
        self.revealed.extend(revealed);
        self.status.pending_commits = self.pending_commits();
    }

    /// Whether any commit waits for its reveal.
    pub fn has_pending_reveals(&self) -> bool {
        !self.commit_reveal.pending().is_empty() || !self.strategy.pending().is_empty()
    }

    /// The SDK's `exclude_quantile` (u16 proportion; 0 by default, as the SDK).
    pub fn with_exclude_quantile(mut self, q: u16) -> WeightSetter {
        self.exclude_quantile = q;
        self
    }

    /// The status section.
    pub fn status(&self) -> &WeightsStatus {
        &self.status
    }

    /// Blocks between submissions under these hyperparameters.
    pub fn interval(&self, hp: &Hyperparams) -> u64 {
        self.epoch_length.max(hp.weights_rate_limit).max(1)
    }

    /// The first best block at which a submission is due, given the chain's `last_update`.
    pub fn due_block(&self, last_update: u64, hp: &Hyperparams) -> u64 {
        let last = self.last_accepted.map_or(last_update, |own| own.max(last_update));
        last.saturating_add(self.interval(hp)).saturating_sub(1).max(self.retry_at)
    }

    async fn hyperparams(&mut self, chain: &dyn Chain, block: u64, fresh: bool) -> ChainResult<Hyperparams> {
        match &self.hyperparams {
            Some((at, hp)) if !fresh && block < at + HYPERPARAMS_MAX_AGE => Ok(hp.clone()),
            _ => {
                let hp = chain.hyperparams(self.netuid).await?;
                self.hyperparams = Some((block, hp.clone()));
                Ok(hp)
            }
        }
    }

    /// Forgets the cached hyperparameters (e.g. after the metagraph changed).
    pub fn invalidate(&mut self) {
        self.hyperparams = None;
    }

    /// Submits `scores` (raw, ≥ 0, by uid) if due at `block` (the best block of `metagraph`).
    pub async fn maybe_set(&mut self, chain: &dyn Chain, metagraph: &Metagraph, scores: &[(u16, f32)]) -> WeightsOutcome {
        let block = metagraph.block();
        let Some(me) = metagraph.by_hotkey(&self.hotkey.public()) else {
            return WeightsOutcome::NotDue { due: u64::MAX };
        };
        // Blocks remembered from a chain that has since been reset (a wiped local chain)
        // would put the next submission out of reach.
        if self.last_accepted.is_some_and(|b| b > block) || self.retry_at > block.saturating_add(self.epoch_length.max(1 << 16)) {
            self.last_accepted = None;
            self.retry_at = 0;
        }
        let last_update = me.last_update;
        self.poll(chain, block).await;
        let hp = match self.hyperparams(chain, block, false).await {
            Ok(hp) => hp,
            Err(e) => return self.failed(block, &e, None),
        };
        self.status.strategy = self.pick(&hp).name().to_string();
        let due = self.due_block(last_update, &hp);
        self.status.next_due_block = Some(due);
        self.metrics.set("ganglion_weights_next_due_block", &[], due as f64);
        if block < due {
            return WeightsOutcome::NotDue { due };
        }
        let (uids, raw): (Vec<u16>, Vec<f32>) = scores.iter().filter(|(uid, w)| *uid < metagraph.n() && w.is_finite() && *w > 0.0).copied().unzip();
        if uids.is_empty() {
            self.status.last_result = Some("skipped: no miner has a score yet".into());
            return WeightsOutcome::NothingToSet;
        }
        // The limits as they are now: an owner may have changed them since the cache.
        let hp = match self.hyperparams(chain, block, true).await {
            Ok(hp) => hp,
            Err(e) => return self.failed(block, &e, None),
        };
        let processed = process_weights_for_netuid(&uids, &raw, metagraph.n(), hp.min_allowed_weights, hp.max_weights_limit, self.exclude_quantile);
        let (p_uids, p_weights) = match processed {
            Ok(p) => p,
            Err(e) => return self.refused_locally(block, &e, &hp),
        };
        let (emit_uids, emit_values) = match convert_weights_and_uids_for_emit(&p_uids, &p_weights) {
            Ok(v) if !v.0.is_empty() => v,
            Ok(_) => {
                self.status.last_result = Some("skipped: all processed weights are zero".into());
                return WeightsOutcome::NothingToSet;
            }
            Err(e) => return self.refused_locally(block, &e, &hp),
        };
        let strategy = self.pick(&hp);
        let strategy_name = strategy.name();
        let submitted = strategy.submit(chain, &self.hotkey, self.netuid, emit_uids.clone(), emit_values.clone(), self.version_key).await;
        self.status.strategy = strategy_name.to_string();
        self.status.pending_commits = self.pending_commits();
        match submitted {
            Ok(receipt) => {
                self.last_accepted = Some(receipt.block);
                self.failures = 0;
                self.retry_at = 0;
                self.status.last_set_block = Some(receipt.block);
                self.status.set_count += 1;
                self.status.last_result = Some("ok".into());
                self.status.next_due_block = Some(self.due_block(receipt.block, &hp));
                self.metrics.inc("ganglion_weights_submissions_total", &[("result", "ok")]);
                self.metrics.set("ganglion_weights_last_set_block", &[], receipt.block as f64);
                tracing::info!(target: "ganglion::neuron", netuid = self.netuid, block = receipt.block, strategy = strategy_name, uids = ?emit_uids, values = ?emit_values, "weights set");
                WeightsOutcome::Set { block: receipt.block, uids: emit_uids, values: emit_values, weights: p_uids.into_iter().zip(p_weights.into_iter().map(|w| w as f32)).collect() }
            }
            Err(e) => self.failed(block, &e, Some(&hp)),
        }
    }

    fn refused_locally(&mut self, block: u64, e: &WeightsError, hp: &Hyperparams) -> WeightsOutcome {
        let error = ChainError::Rejected { name: "InvalidWeights".into(), message: e.to_string() };
        self.failed(block, &error, Some(hp))
    }

    fn failed(&mut self, block: u64, e: &ChainError, hp: Option<&Hyperparams>) -> WeightsOutcome {
        self.failures = self.failures.saturating_add(1);
        let name = e.name().unwrap_or("ChainUnreachable").to_string();
        let interval = hp.map_or(self.epoch_length, |hp| self.interval(hp));
        let tempo = hp.map_or(self.epoch_length, |hp| u64::from(hp.tempo).max(1));
        let backoff = (1u64 << self.failures.min(16)).min(interval);
        let wait = match name.as_str() {
            // Our view of last_update was stale, or the owner just switched commit-reveal
            // on or off: re-read the hyperparameters, try again in a block.
            "SettingWeightsTooFast" | "CommittingWeightsTooFast" | "CommitRevealEnabled" | "CommitRevealDisabled" => {
                self.hyperparams = None;
                1
            }
            // Pending commits expire or get revealed at epochs.
            "TooManyUnrevealedCommits" => tempo,
            // Permits and stake change at epochs.
            "NeuronNoValidatorPermit" | "NotEnoughStakeToSetWeights" => tempo,
            // The subnet requires a newer version: nothing changes until the operator acts.
            "IncorrectWeightVersionKey" => {
                tracing::error!(target: "ganglion::neuron", netuid = self.netuid, version_key = self.version_key, "the subnet requires a newer weights version_key: {e}; upgrade ganglion or set neuron.version_key");
                interval
            }
            _ => {
                self.hyperparams = None;
                backoff
            }
        };
        self.retry_at = block.saturating_add(wait);
        self.status.refused_count += 1;
        self.status.last_result = Some(e.to_string());
        self.status.next_due_block = Some(self.retry_at);
        self.metrics.inc("ganglion_weights_submissions_total", &[("result", name.as_str())]);
        tracing::warn!(target: "ganglion::neuron", netuid = self.netuid, chain_answer = %name, retry_at = self.retry_at, "weights not set: {e}");
        WeightsOutcome::Failed { name, message: e.to_string(), retry_at: self.retry_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strategy_follows_the_chains_commit_reveal() {
        let hotkey = Keypair::from_uri("//PickStrategy").unwrap_or_else(|e| panic!("{e}"));
        let setter = WeightSetter::new(1, hotkey, 10, None, Box::new(PlainWeights), Arc::new(Metrics::new()));
        let mut hp = Hyperparams::new_subnet(10);
        assert_eq!(setter.pick(&hp).name(), "plain");
        hp.commit_reveal_weights_enabled = true;
        assert_eq!(setter.pick(&hp).name(), "commit-reveal", "version 1: hash-based");
        hp.commit_reveal_version = 4;
        assert_eq!(setter.pick(&hp).name(), "timelocked-commit");
        hp.commit_reveal_weights_enabled = false;
        assert_eq!(setter.pick(&hp).name(), "plain", "the version alone turns nothing on");
    }

    #[test]
    fn version_key_is_the_sdks_version_as_int() {
        let mut parts = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        let expected = parts.next().unwrap_or(0) * 1_000_000 + parts.next().unwrap_or(0) * 1_000 + parts.next().unwrap_or(0);
        assert_eq!(version_key(), expected);
    }

    #[test]
    fn pending_reveals_are_reloaded_and_a_corrupt_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weight_commits.json");
        let entry = PendingReveal {
            hash: "0xab".into(),
            uids: vec![1, 2],
            values: vec![65535, 7],
            salt: random_salt(),
            version_key: 3,
            commit_block: Some(10),
            reveal_epoch: Some(2),
            first_reveal_block: Some(21),
            last_reveal_block: Some(30),
        };
        let cr = CommitReveal::with_file(StateFile::new(&path, 4));
        assert!(cr.pending().is_empty());
        cr.update(|p| p.push(entry.clone()));
        let again = CommitReveal::with_file(StateFile::new(&path, 4));
        assert_eq!(*again.lock(), vec![entry]);
        assert_eq!(again.pending()[0].first_reveal_block, Some(21));
        assert_eq!(entry_salt_len(&again), SALT_LEN);
        std::fs::write(&path, b"{torn").unwrap();
        assert!(CommitReveal::with_file(StateFile::new(&path, 4)).pending().is_empty());
    }

    fn entry_salt_len(cr: &CommitReveal) -> usize {
        cr.lock()[0].salt.len()
    }

    #[test]
    fn due_respects_the_longer_of_epoch_and_rate_limit() {
        let hotkey = Keypair::from_uri("//V").unwrap_or_else(|e| panic!("{e}"));
        let setter = WeightSetter::new(1, hotkey, 10, None, Box::new(PlainWeights), Arc::new(Metrics::new()));
        let mut hp = Hyperparams::new_subnet(20);
        hp.weights_rate_limit = 25;
        // last_update 100: the chain accepts a transaction executing in block 125, i.e. built
        // on best block 124.
        assert_eq!(setter.due_block(100, &hp), 124);
        hp.weights_rate_limit = 5;
        assert_eq!(setter.due_block(100, &hp), 109);
    }
}
