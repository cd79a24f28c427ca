//! The chain watcher: keeps the metagraph cache and [`crate::ChainStatus`] current and
//! records a [`NeuronSnapshot`] of every shown subnet every few blocks.
//!
//! It never stops on errors: an unreachable chain is shown on the pages (which keep serving
//! records and the last recorded snapshot) and retried at the next tick.

use std::collections::HashMap;
use std::time::Duration;

use ganglion_chain::{Chain, ChainError, Metagraph, u16_to_float};
use ganglion_records::{NeuronSnapshot, now_ms};

use crate::feed::FeedEvent;
use crate::state::HubState;

/// Longest wait for one chain call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, call: impl std::future::Future<Output = Result<T, ChainError>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{what}: no answer within {} s", CALL_TIMEOUT.as_secs())),
    }
}

/// The snapshot rows of a metagraph.
pub fn snapshot_rows(metagraph: &Metagraph, created_at_ms: i64) -> Vec<NeuronSnapshot> {
    metagraph
        .neurons()
        .iter()
        .map(|n| NeuronSnapshot {
            netuid: metagraph.netuid(),
            block: metagraph.block(),
            created_at_ms,
            uid: n.uid,
            hotkey: n.hotkey.to_ss58(),
            coldkey: n.coldkey.to_ss58(),
            stake: n.stake,
            incentive: u16_to_float(n.incentive),
            emission: n.emission,
            consensus: u16_to_float(n.consensus),
            dividends: u16_to_float(n.dividends),
            validator_trust: u16_to_float(n.validator_trust),
            validator_permit: n.validator_permit,
        })
        .collect()
}

/// One sync: subnets, metagraphs, and snapshots that are due. `last_snapshot` maps netuid
/// to the block of its last recorded snapshot.
pub async fn sync_once(state: &HubState, chain: &dyn Chain, last_snapshot: &mut HashMap<u16, u64>) -> Result<u64, String> {
    let subnets = bounded("listing subnets", chain.subnets()).await?;
    let mut block = None;
    let netuids: Vec<u16> = subnets.iter().map(|s| s.netuid).collect();
    for netuid in netuids.iter().copied().filter(|n| state.shows(*n)) {
        let metagraph = match state.metagraph(netuid) {
            Some(mut cached) => {
                bounded("syncing the metagraph", cached.sync(chain)).await?;
                cached
            }
            None => bounded("fetching the metagraph", Metagraph::fetch(chain, netuid)).await?,
        };
        block = Some(metagraph.block());
        let every = state.config().snapshot_every_blocks.max(1);
        let due = last_snapshot.get(&netuid).is_none_or(|last| metagraph.block() >= last + every);
        if due && metagraph.n() > 0 {
            let rows = snapshot_rows(&metagraph, now_ms());
            match state.records().insert_neuron_snapshots(&rows).await {
                Ok(()) => {
                    state.metrics().snapshot_rows(rows.len());
                    last_snapshot.insert(netuid, metagraph.block());
                }
                Err(e) => {
                    state.metrics().store_error();
                    tracing::warn!(target: "ganglion::hub", netuid, "cannot record the metagraph snapshot: {e}");
                }
            }
        }
        state.set_metagraph(metagraph);
    }
    let block = match block {
        Some(b) => b,
        None => bounded("reading the block number", chain.block_number()).await?,
    };
    let previous = state.chain_status().block;
    state.set_chain_status(|s| {
        s.reachable = true;
        s.block = Some(block);
        s.error = None;
        s.last_ok_ms = Some(now_ms());
        s.netuids = netuids;
    });
    if previous != Some(block) {
        let _ = state.inner.feed.send(FeedEvent::Chain { block, reachable: true });
    }
    Ok(block)
}

/// Runs [`sync_once`] every `chain_poll` until the task is aborted.
pub(crate) async fn run(state: HubState, chain: std::sync::Arc<dyn Chain>) {
    let mut last_snapshot = HashMap::new();
    let mut interval = tokio::time::interval(state.config().chain_poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = sync_once(&state, chain.as_ref(), &mut last_snapshot).await {
            state.metrics().chain_error();
            let was_reachable = state.chain_status().reachable;
            if was_reachable || state.chain_status().error.is_none() {
                tracing::warn!(target: "ganglion::hub", "chain unreachable: {error}; pages show records and the last recorded metagraph");
            }
            state.set_chain_status(|s| {
                s.reachable = false;
                s.error = Some(error);
            });
            if was_reachable {
                let block = state.chain_status().block.unwrap_or(0);
                let _ = state.inner.feed.send(FeedEvent::Chain { block, reachable: false });
            }
        }
    }
}
