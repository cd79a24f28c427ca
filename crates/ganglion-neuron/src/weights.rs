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
//! - **How**: a [`WeightStrategy`] puts the u16 weights on chain: [`PlainWeights`]
//!   (`set_weights`) here; commit-reveal strategies come with chains that support it (the
//!   local chain does not; see `ganglion_chain`'s crate docs).

use std::sync::Arc;

use async_trait::async_trait;
use ganglion_chain::{Chain, ChainError, ChainResult, Hyperparams, Metagraph, TxReceipt};
use ganglion_core::keys::Keypair;
use ganglion_yuma::weights::{WeightsError, convert_weights_and_uids_for_emit, process_weights_for_netuid};

use crate::metrics::Metrics;
use crate::status::WeightsStatus;

/// The SDK's `version_as_int` of this build: `major·10⁶ + minor·10³ + patch`. The one
/// version number of every node: the axon's `version` and the weights' `version_key`.
pub fn version_key() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION").split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major * 1_000_000 + minor * 1_000 + patch
}

/// How u16 weights go on chain.
#[async_trait]
pub trait WeightStrategy: Send + Sync {
    /// Its name in status and logs (`plain`, `commit-reveal`).
    fn name(&self) -> &'static str;

    /// Submits the weights (or a commitment to them).
    async fn submit(&self, chain: &dyn Chain, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt>;
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
    /// Accepted.
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
        let version_key = version_key.unwrap_or_else(self::version_key);
        let status = WeightsStatus { strategy: strategy.name().to_string(), version_key, ..WeightsStatus::default() };
        WeightSetter {
            netuid,
            hotkey,
            strategy,
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
        let hp = match self.hyperparams(chain, block, false).await {
            Ok(hp) => hp,
            Err(e) => return self.failed(block, &e, None),
        };
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
        let submitted = self.strategy.submit(chain, &self.hotkey, self.netuid, emit_uids.clone(), emit_values.clone(), self.version_key).await;
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
                tracing::info!(target: "ganglion::neuron", netuid = self.netuid, block = receipt.block, strategy = self.strategy.name(), uids = ?emit_uids, values = ?emit_values, "weights set");
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
            // Our view of last_update was stale: re-read both, try again in a block.
            "SettingWeightsTooFast" => {
                self.hyperparams = None;
                1
            }
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
    fn version_key_is_the_sdks_version_as_int() {
        let mut parts = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        let expected = parts.next().unwrap_or(0) * 1_000_000 + parts.next().unwrap_or(0) * 1_000 + parts.next().unwrap_or(0);
        assert_eq!(version_key(), expected);
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
