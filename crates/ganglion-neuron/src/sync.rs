//! Metagraph sync, the same for every node: a cheap incremental sync
//! ([`Metagraph::sync`] refetches only when the subnet changed), a full refetch after any
//! error (the chain may have restarted with other revisions, and an incremental sync would
//! then never see a change), and detection of uids whose hotkey changed (deregistered and
//! replaced), which the subnets use to reset that uid's state.

use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::{Chain, ChainError, Metagraph};
use ganglion_core::keys::PublicKey;

use crate::metrics::Metrics;
use crate::signals::Shutdown;

/// A uid whose hotkey is not the one it had at the previous sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotkeyChange {
    /// The uid.
    pub uid: u16,
    /// The hotkey before (`None`: the uid is new).
    pub old: Option<PublicKey>,
    /// The hotkey now (`None`: the uid is gone, the subnet shrank).
    pub new: Option<PublicKey>,
}

/// What one sync found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The metagraph was refetched (something changed on chain).
    pub changed: bool,
    /// Uids whose hotkey changed.
    pub hotkey_changes: Vec<HotkeyChange>,
}

/// One subnet's metagraph, kept in sync.
pub struct MetagraphSync {
    chain: Arc<dyn Chain>,
    metagraph: Metagraph,
    refetch: bool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MetagraphSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetagraphSync").field("netuid", &self.metagraph.netuid()).field("block", &self.metagraph.block()).finish_non_exhaustive()
    }
}

fn describe(metrics: &Metrics) {
    metrics.counter("ganglion_metagraph_syncs_total", "Metagraph syncs, by result (unchanged, changed, error).");
    metrics.gauge("ganglion_metagraph_block", "Chain block of the last metagraph sync.");
    metrics.gauge("ganglion_metagraph_neurons", "Neurons in the subnet at the last sync.");
}

/// The uids whose hotkey differs between two metagraphs.
pub fn hotkey_changes(old: &Metagraph, new: &Metagraph) -> Vec<HotkeyChange> {
    let n = old.n().max(new.n());
    (0..n)
        .filter_map(|uid| {
            let (a, b) = (old.neuron(uid).map(|x| x.hotkey), new.neuron(uid).map(|x| x.hotkey));
            (a != b).then_some(HotkeyChange { uid, old: a, new: b })
        })
        .collect()
}

impl MetagraphSync {
    /// Fetches the metagraph once.
    pub async fn fetch(chain: Arc<dyn Chain>, netuid: u16, metrics: Arc<Metrics>) -> Result<MetagraphSync, ChainError> {
        describe(&metrics);
        let metagraph = Metagraph::fetch(chain.as_ref(), netuid).await?;
        metrics.set("ganglion_metagraph_block", &[], metagraph.block() as f64);
        metrics.set("ganglion_metagraph_neurons", &[], f64::from(metagraph.n()));
        Ok(MetagraphSync { chain, metagraph, refetch: false, metrics })
    }

    /// Fetches the metagraph, retrying with backoff (1 s doubling to 30 s) until it comes or
    /// `shutdown` is set (then `None`).
    pub async fn connect(chain: Arc<dyn Chain>, netuid: u16, metrics: Arc<Metrics>, shutdown: &mut Shutdown) -> Option<MetagraphSync> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match MetagraphSync::fetch(chain.clone(), netuid, metrics.clone()).await {
                Ok(sync) => return Some(sync),
                Err(e) => {
                    metrics.inc("ganglion_metagraph_syncs_total", &[("result", "error")]);
                    tracing::warn!(target: "ganglion::neuron", netuid, "cannot read the metagraph: {e}; retrying in {}s", backoff.as_secs());
                    if shutdown.sleep(backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.chain
    }

    /// The current metagraph.
    pub fn metagraph(&self) -> &Metagraph {
        &self.metagraph
    }

    /// Brings the metagraph up to date. On error the old metagraph stays and the next call
    /// does a full refetch.
    pub async fn sync(&mut self) -> Result<SyncOutcome, ChainError> {
        let netuid = self.metagraph.netuid();
        let result = if self.refetch {
            Metagraph::fetch(self.chain.as_ref(), netuid).await.map(|fresh| {
                let changes = hotkey_changes(&self.metagraph, &fresh);
                self.metagraph = fresh;
                SyncOutcome { changed: true, hotkey_changes: changes }
            })
        } else {
            let before = self.metagraph.clone();
            self.metagraph.sync(self.chain.as_ref()).await.map(|changed| SyncOutcome {
                changed,
                hotkey_changes: if changed { hotkey_changes(&before, &self.metagraph) } else { Vec::new() },
            })
        };
        match &result {
            Ok(outcome) => {
                self.refetch = false;
                let label = if outcome.changed { "changed" } else { "unchanged" };
                self.metrics.inc("ganglion_metagraph_syncs_total", &[("result", label)]);
                self.metrics.set("ganglion_metagraph_block", &[], self.metagraph.block() as f64);
                self.metrics.set("ganglion_metagraph_neurons", &[], f64::from(self.metagraph.n()));
                for change in &outcome.hotkey_changes {
                    tracing::info!(target: "ganglion::neuron", uid = change.uid, old = ?change.old.map(|k| k.to_ss58()), new = ?change.new.map(|k| k.to_ss58()), "uid changed hands");
                }
            }
            Err(e) => {
                self.refetch = true;
                self.metrics.inc("ganglion_metagraph_syncs_total", &[("result", "error")]);
                tracing::warn!(target: "ganglion::neuron", netuid, "metagraph sync failed: {e}; keeping the last metagraph, refetching next time");
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use ganglion_chain::{NeuronInfo, NeuronsSnapshot};
    use ganglion_core::keys::Keypair;

    use super::*;

    fn neuron(uid: u16, uri: &str) -> NeuronInfo {
        let key = Keypair::from_uri(uri).unwrap().public();
        NeuronInfo::registered(uid, key, key, 0)
    }

    fn graph(neurons: Vec<NeuronInfo>) -> Metagraph {
        Metagraph::from_snapshot(NeuronsSnapshot { netuid: 1, block: 1, changed_at: 1, neurons })
    }

    #[test]
    fn replaced_new_and_gone_uids_are_reported() {
        let before = graph(vec![neuron(0, "//A"), neuron(1, "//B"), neuron(2, "//C")]);
        let after = graph(vec![neuron(0, "//A"), neuron(1, "//D")]);
        let changes = hotkey_changes(&before, &after);
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].uid, changes[0].new), (1, Some(Keypair::from_uri("//D").unwrap().public())));
        assert_eq!((changes[1].uid, changes[1].new), (2, None));
        assert!(hotkey_changes(&after, &after).is_empty());
        let grown = graph(vec![neuron(0, "//A"), neuron(1, "//D"), neuron(2, "//E")]);
        assert_eq!(hotkey_changes(&after, &grown).first().map(|c| (c.uid, c.old)), Some((2, None)));
    }
}
