//! Scores: per miner and model, a moving window of the last N results, each the verified
//! tokens per second of one synthetic round ([`Scoreboard::record_round`]: tokens delivered
//! within the round's window over its length) or of one organic response, or 0 for a
//! failure. A model's score is the window's
//! mean — so failures pull it down in proportion — and a miner's score is the sum over the
//! models it serves (Targon v4's "sum of the average TPS per model"). Results older than the
//! validator's `score_ttl` drop out ([`Scoreboard::expire`]): a score must be kept up by
//! answering, not only built once.
//!
//! Each miner also accumulates the verifier's statistical evidence across its judged
//! responses, passed or failed ([`Scoreboard::accumulate`]): per response the tests have
//! little power against a subtle cheat (a slightly different model, a cached sample), but
//! the same statistics summed over hundreds of responses have a lot. The accumulated sums
//! are tested after every response with a budget `alpha / (k(k+1))` at the k-th test, so
//! over a miner's whole history an honest miner is condemned with probability at most
//! `alpha`; a condemned miner's window for that model is wiped ([`Scoreboard::condemn`]).
//!
//! Differences from the original, on purpose:
//! - no min-max normalisation: weights are scores divided by their sum, so the weakest
//!   honest miner keeps a weight proportional to its speed instead of being zeroed;
//! - state is keyed by hotkey, so a uid taken over by a new hotkey starts from nothing
//!   (v4's `resync_hotkeys` compared the metagraph with itself and let new hotkeys inherit);
//! - the board is saved after every step as JSON through the runtime's atomic state file
//!   (`ganglion_neuron::state::StateFile`, `<data_dir>/scores.json`) and restored on start
//!   (the original's `cache.pickle`).

use std::collections::{BTreeMap, VecDeque};

use ganglion_chain::Metagraph;
use ganglion_core::keys::PublicKey;
use ganglion_engine::distribution::{Family, LOGLIK_CLIP};
use serde::{Deserialize, Serialize};

use crate::verify::stats::Evidence;

/// A miner's accumulated evidence for one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accumulated {
    /// Per sampler family ([`Family::ALL`] order).
    pub families: Vec<Evidence>,
    /// Tests run on these sums so far.
    pub checks: u64,
}

/// One miner's loaded round, as [`Scoreboard::record_round`] takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundEntry {
    /// Verified tokens per second of the round's window, after penalties (0: a failed round).
    pub value: f64,
    /// Answers verified.
    pub verified: u64,
    /// Answers failed (those that count).
    pub failed: u64,
}

/// Format version of the saved board.
pub const STATE_VERSION: u32 = 1;

/// One miner's windows and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinerScore {
    /// The uid the hotkey held when last seen.
    pub uid: u16,
    /// Window per model: verified tokens/s, or 0 for a failure; newest last.
    pub models: BTreeMap<String, VecDeque<f64>>,
    /// Verified responses (lifetime of this hotkey's entry).
    pub verified: u64,
    /// Failed responses.
    pub failed: u64,
    /// Verified organic responses.
    #[serde(default)]
    pub organic_verified: u64,
    /// The cause of the last failure.
    pub last_cause: Option<String>,
    /// What exactly was wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_detail: Option<String>,
    /// When each window entry was recorded (ms since the epoch), parallel to `models`.
    /// Boards saved before this field existed get the restore time.
    #[serde(default)]
    pub stamps: BTreeMap<String, VecDeque<i64>>,
    /// Accumulated verifier evidence per model.
    #[serde(default)]
    pub evidence: BTreeMap<String, Accumulated>,
}

impl MinerScore {
    /// Mean of one model's window.
    pub fn model_score(&self, model: &str) -> f64 {
        self.models.get(model).map_or(0.0, mean)
    }

    /// Sum of the per-model means.
    pub fn score(&self) -> f64 {
        self.models.values().map(mean).sum()
    }

    /// Mean verified tokens/s over the verified entries of all windows.
    pub fn verified_tps(&self) -> Option<f64> {
        let values: Vec<f64> = self.models.values().flatten().copied().filter(|&v| v > 0.0).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// Verified share of the entries currently in the windows, in percent.
    pub fn verified_percent(&self) -> Option<f64> {
        let total: usize = self.models.values().map(VecDeque::len).sum();
        let ok = self.models.values().flatten().filter(|&&v| v > 0.0).count();
        (total > 0).then(|| 100.0 * ok as f64 / total as f64)
    }
}

fn mean(window: &VecDeque<f64>) -> f64 {
    if window.is_empty() { 0.0 } else { window.iter().sum::<f64>() / window.len() as f64 }
}

/// All miners' scores; see the module doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoreboard {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The subnet.
    pub netuid: u16,
    /// Window length.
    pub window: usize,
    /// Block of the last save.
    pub block: u64,
    /// Scores by hotkey (SS58).
    pub miners: BTreeMap<String, MinerScore>,
}

impl Scoreboard {
    /// An empty board.
    pub fn new(netuid: u16, window: usize) -> Scoreboard {
        Scoreboard { version: STATE_VERSION, netuid, window: window.max(1), block: 0, miners: BTreeMap::new() }
    }

    /// Records one result: `Some(tps)` for a verified response, `None` for a failure with
    /// its `(cause, detail)`.
    pub fn record(&mut self, uid: u16, hotkey: &PublicKey, model: &str, tps: Option<f64>, failure: Option<(&str, &str)>, organic: bool) {
        let window = self.window;
        let entry = self.miners.entry(hotkey.to_ss58()).or_default();
        entry.uid = uid;
        let values = entry.models.entry(model.to_string()).or_default();
        let stamps = entry.stamps.entry(model.to_string()).or_default();
        let now = ganglion_core::clock::now_ms_i64();
        // Entries from before stamps existed count as recorded now.
        while stamps.len() < values.len() {
            stamps.push_front(now);
        }
        let value = tps.filter(|v| v.is_finite() && *v > 0.0);
        values.push_back(value.unwrap_or(0.0));
        stamps.push_back(now);
        while values.len() > window {
            values.pop_front();
            stamps.pop_front();
        }
        match value {
            Some(_) => {
                entry.verified += 1;
                if organic {
                    entry.organic_verified += 1;
                }
            }
            None => {
                entry.failed += 1;
                entry.last_cause = failure.map(|(cause, _)| cause.to_string());
                entry.last_detail = failure.map(|(_, detail)| detail.chars().take(300).collect());
            }
        }
    }

    /// Records one loaded round of a miner: one window entry, `round.value`, with the
    /// round's answers added to the counters and `failure` (the first counted one) as the
    /// last cause.
    pub fn record_round(&mut self, uid: u16, hotkey: &PublicKey, model: &str, round: RoundEntry, failure: Option<(&str, &str)>) {
        let RoundEntry { value, verified, failed } = round;
        let value = if value.is_finite() && value > 0.0 { Some(value) } else { None };
        self.record(uid, hotkey, model, value, failure, false);
        let entry = self.miners.entry(hotkey.to_ss58()).or_default();
        // `record` counted the round once; count its answers instead.
        match value {
            Some(_) => entry.verified = entry.verified.saturating_sub(1),
            None => entry.failed = entry.failed.saturating_sub(1),
        }
        entry.verified += verified;
        entry.failed += failed;
        if let Some((cause, detail)) = failure {
            entry.last_cause = Some(cause.to_string());
            entry.last_detail = Some(detail.chars().take(300).collect());
        }
    }

    /// Drops window entries recorded before `cutoff_ms` (entries without a stamp are
    /// stamped now, so boards from before stamps expire a full TTL later).
    pub fn expire(&mut self, cutoff_ms: i64) {
        let now = ganglion_core::clock::now_ms_i64();
        for entry in self.miners.values_mut() {
            for (model, values) in entry.models.iter_mut() {
                let stamps = entry.stamps.entry(model.clone()).or_default();
                while stamps.len() < values.len() {
                    stamps.push_front(now);
                }
                while stamps.front().is_some_and(|&t| t < cutoff_ms) {
                    stamps.pop_front();
                    values.pop_front();
                }
            }
        }
    }

    /// Adds one judged response's evidence (per family, [`Family::ALL`] order) to the
    /// miner's sums for `model` and tests them (module doc). Returns what was found when
    /// every family's sums left their band — the miner is then to be [`condemned`]
    /// (its sums restart).
    ///
    /// [`condemned`]: Scoreboard::condemn
    pub fn accumulate(&mut self, hotkey: &PublicKey, model: &str, evidence: &[Evidence], alpha: f64) -> Option<String> {
        if evidence.is_empty() || evidence.iter().all(|e| e.n == 0) {
            return None;
        }
        let entry = self.miners.entry(hotkey.to_ss58()).or_default();
        let acc = entry.evidence.entry(model.to_string()).or_default();
        if acc.families.len() != evidence.len() {
            acc.families = vec![Evidence::default(); evidence.len()];
        }
        for (sum, e) in acc.families.iter_mut().zip(evidence) {
            sum.add(e);
        }
        acc.checks += 1;
        let k = acc.checks as f64;
        let budget = alpha / (k * (k + 1.0));
        let mut reasons = Vec::new();
        for (i, sum) in acc.families.iter().enumerate() {
            match sum.test(budget, LOGLIK_CLIP, true) {
                Some((_, why)) => reasons.push(format!("{}: {why}", Family::ALL.get(i).map_or("?", |f| f.name))),
                None => return None,
            }
        }
        let detail = format!("over {} verified responses the tokens are not fair draws from the requested sampling ({})", acc.checks, reasons.join("; "));
        acc.families.iter_mut().for_each(|e| *e = Evidence::default());
        acc.checks = 0;
        Some(detail)
    }

    /// Wipes `model`'s window of a miner whose accumulated evidence failed: every entry
    /// becomes a failure (the verified answers it was built from are not trusted).
    pub fn condemn(&mut self, uid: u16, hotkey: &PublicKey, model: &str, failure: (&str, &str)) {
        let window = self.window;
        let entry = self.miners.entry(hotkey.to_ss58()).or_default();
        entry.uid = uid;
        let now = ganglion_core::clock::now_ms_i64();
        let values = entry.models.entry(model.to_string()).or_default();
        values.iter_mut().for_each(|v| *v = 0.0);
        values.push_back(0.0);
        while values.len() > window {
            values.pop_front();
        }
        let stamps = entry.stamps.entry(model.to_string()).or_default();
        stamps.clear();
        stamps.extend(std::iter::repeat_n(now, values.len()));
        entry.failed += 1;
        entry.last_cause = Some(failure.0.to_string());
        entry.last_detail = Some(failure.1.chars().take(300).collect());
    }

    /// The score of a hotkey (0 if unknown).
    pub fn score(&self, hotkey: &PublicKey) -> f64 {
        self.miners.get(&hotkey.to_ss58()).map_or(0.0, MinerScore::score)
    }

    /// Drops every entry whose hotkey no longer holds the uid it was scored under (a
    /// deregistered hotkey, or a uid taken over). Returns the hotkeys dropped.
    pub fn sync(&mut self, metagraph: &Metagraph) -> Vec<String> {
        let mut dropped = Vec::new();
        self.miners.retain(|hotkey, entry| {
            let keep = hotkey
                .parse::<PublicKey>()
                .ok()
                .and_then(|key| metagraph.uid_of(&key))
                .is_some_and(|uid| uid == entry.uid);
            if !keep {
                dropped.push(hotkey.clone());
            }
            keep
        });
        dropped
    }

    /// Forgets a uid that changed hands: the entry scored under `uid`, and the entry of
    /// the hotkey that held it (`old`). Returns the hotkeys dropped.
    pub fn reset_uid(&mut self, uid: u16, old: Option<&PublicKey>) -> Vec<String> {
        let old = old.map(PublicKey::to_ss58);
        let mut dropped = Vec::new();
        self.miners.retain(|hotkey, entry| {
            let keep = entry.uid != uid && old.as_deref() != Some(hotkey.as_str());
            if !keep {
                dropped.push(hotkey.clone());
            }
            keep
        });
        dropped
    }

    /// Normalised weights over `uids` (scores divided by their sum), skipping `exclude`.
    /// Empty when no uid has a positive score.
    pub fn weights(&self, metagraph: &Metagraph, exclude: Option<u16>) -> (Vec<u16>, Vec<f64>) {
        let mut uids = Vec::new();
        let mut scores = Vec::new();
        for neuron in metagraph.neurons() {
            if Some(neuron.uid) == exclude {
                continue;
            }
            let score = self.score(&neuron.hotkey);
            if score > 0.0 {
                uids.push(neuron.uid);
                scores.push(score);
            }
        }
        let total: f64 = scores.iter().sum();
        if total > 0.0 {
            scores.iter_mut().for_each(|s| *s /= total);
        }
        (uids, scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglion_chain::{NeuronInfo, NeuronsSnapshot};
    use ganglion_core::keys::Keypair;

    fn key(uri: &str) -> PublicKey {
        Keypair::from_uri(uri).unwrap().public()
    }

    fn metagraph(hotkeys: &[PublicKey]) -> Metagraph {
        let neurons = hotkeys
            .iter()
            .enumerate()
            .map(|(uid, &hotkey)| NeuronInfo::registered(uid as u16, hotkey, hotkey, 0))
            .collect();
        Metagraph::from_snapshot(NeuronsSnapshot { netuid: 1, block: 10, changed_at: 1, neurons })
    }

    #[test]
    fn windows_average_failures_as_zero_and_sum_over_models() {
        let mut board = Scoreboard::new(1, 4);
        let a = key("//A");
        for tps in [10.0, 10.0, 10.0] {
            board.record(1, &a, "m1", Some(tps), None, false);
        }
        board.record(1, &a, "m1", None, Some(("TIMEOUT", "total deadline of 1.0s passed")), false);
        assert_eq!(board.score(&a), 7.5);
        board.record(1, &a, "m2", Some(4.0), None, false);
        assert_eq!(board.score(&a), 11.5);
        // The window slides: four more successes push the failure out.
        for _ in 0..4 {
            board.record(1, &a, "m1", Some(10.0), None, false);
        }
        assert_eq!(board.miners[&a.to_ss58()].model_score("m1"), 10.0);
        let entry = &board.miners[&a.to_ss58()];
        assert_eq!((entry.verified, entry.failed, entry.last_cause.as_deref()), (8, 1, Some("TIMEOUT")));
        // Non-finite or zero "successes" count as failures.
        board.record(1, &a, "m2", Some(f64::NAN), None, false);
        assert_eq!(board.miners[&a.to_ss58()].model_score("m2"), 2.0);
    }

    #[test]
    fn a_round_is_one_window_entry_and_counts_its_answers() {
        let mut board = Scoreboard::new(1, 4);
        let a = key("//A");
        let round = |value, verified, failed| RoundEntry { value, verified, failed };
        board.record_round(1, &a, "m1", round(12.0, 6, 0), None);
        board.record_round(1, &a, "m1", round(0.0, 1, 2), Some(("REFUSED", "403")));
        let entry = &board.miners[&a.to_ss58()];
        assert_eq!(entry.models["m1"].iter().copied().collect::<Vec<_>>(), vec![12.0, 0.0]);
        assert_eq!((entry.verified, entry.failed, entry.last_cause.as_deref()), (7, 2, Some("REFUSED")));
        // A round with a failure and a positive value keeps the value and names the cause.
        board.record_round(1, &a, "m1", round(3.0, 4, 1), Some(("TIMEOUT", "idle")));
        let entry = &board.miners[&a.to_ss58()];
        assert_eq!((entry.model_score("m1"), entry.verified, entry.failed, entry.last_cause.as_deref()), (5.0, 11, 3, Some("TIMEOUT")));
    }

    #[test]
    fn old_results_expire_so_a_silent_miner_loses_its_score() {
        let mut board = Scoreboard::new(1, 10);
        let a = key("//A");
        for _ in 0..5 {
            board.record(1, &a, "m", Some(10.0), None, false);
        }
        let now = ganglion_core::clock::now_ms_i64();
        board.expire(now - 60_000);
        assert_eq!(board.score(&a), 10.0, "recent results stay");
        board.expire(now + 1);
        assert_eq!(board.score(&a), 0.0, "everything older than the cutoff is gone");
        // Boards saved before stamps existed count their entries as recorded at restore.
        let mut old = Scoreboard::new(1, 10);
        old.miners.entry(a.to_ss58()).or_default().models.insert("m".into(), [5.0, 5.0].into_iter().collect());
        old.expire(now - 1);
        assert_eq!(old.score(&a), 5.0);
    }

    #[test]
    fn accumulated_evidence_condemns_a_cheat_and_spares_a_fair_miner() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut board = Scoreboard::new(1, 30);
        let (fair, cheat) = (key("//Fair"), key("//Cheat"));
        // Per response: 40 tokens; the cheat's ranks are shifted low by 0.06 on average —
        // far too little to fail any single response.
        let response = |rng: &mut rand::rngs::StdRng, shift: f64| {
            let pit: f64 = (0..40).map(|_| rng.r#gen::<f64>() * (1.0 - shift) - 0.5).sum();
            vec![Evidence { n: 40, pit, loglik: 0.0, loglik_var: 40.0 }; 2]
        };
        let mut condemned_at = None;
        for i in 1..=400 {
            assert!(board.accumulate(&fair, "m", &response(&mut rng, 0.0), 1e-4).is_none(), "fair miner condemned at {i}");
            if condemned_at.is_none() && board.accumulate(&cheat, "m", &response(&mut rng, 0.12), 1e-4).is_some() {
                condemned_at = Some(i);
            }
        }
        let at = condemned_at.expect("the cheat is condemned within 400 responses");
        assert!(at > 3, "not on the first response: {at}");
        board.record(2, &cheat, "m", Some(10.0), None, false);
        board.condemn(2, &cheat, "m", ("SAMPLING_MISMATCH", "x"));
        assert_eq!(board.score(&cheat), 0.0);
        assert_eq!(board.miners[&cheat.to_ss58()].last_cause.as_deref(), Some("SAMPLING_MISMATCH"));
    }

    #[test]
    fn weights_are_proportional_not_min_max() {
        let (v, fast, slow) = (key("//V"), key("//Fast"), key("//Slow"));
        let mg = metagraph(&[v, fast, slow]);
        let mut board = Scoreboard::new(1, 30);
        board.record(1, &fast, "m", Some(30.0), None, false);
        board.record(2, &slow, "m", Some(10.0), None, false);
        let (uids, weights) = board.weights(&mg, Some(0));
        assert_eq!(uids, vec![1, 2]);
        assert_eq!(weights, vec![0.75, 0.25], "the slowest honest miner keeps its share");
        assert_eq!(Scoreboard::new(1, 3).weights(&mg, None).0, Vec::<u16>::new());
    }

    #[test]
    fn a_new_hotkey_on_a_uid_starts_from_nothing() {
        let (old, new) = (key("//Old"), key("//New"));
        let mut board = Scoreboard::new(1, 30);
        board.record(0, &old, "m", Some(50.0), None, false);
        assert!(board.sync(&metagraph(&[old])).is_empty());
        assert_eq!(board.sync(&metagraph(&[new])), vec![old.to_ss58()]);
        assert_eq!(board.score(&new), 0.0);
        assert!(board.miners.is_empty());
    }

    #[test]
    fn a_uid_that_changed_hands_is_reset() {
        let (a, b) = (key("//A"), key("//B"));
        let mut board = Scoreboard::new(1, 30);
        board.record(0, &a, "m", Some(5.0), None, false);
        board.record(1, &b, "m", Some(7.0), None, false);
        assert_eq!(board.reset_uid(0, Some(&a)), vec![a.to_ss58()]);
        assert_eq!(board.score(&a), 0.0);
        assert_eq!(board.score(&b), 7.0, "other uids keep their scores");
        assert!(board.reset_uid(5, None).is_empty());
    }

    #[test]
    fn state_round_trips_through_the_runtimes_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = ganglion_neuron::state::StateFile::new(dir.path().join("scores.json"), 1);
        assert_eq!(file.load::<Scoreboard>().unwrap(), None);
        let mut board = Scoreboard::new(1, 30);
        board.record(3, &key("//M"), "m", Some(12.5), None, true);
        board.block = 77;
        file.save(&board).unwrap();
        assert_eq!(file.load::<Scoreboard>().unwrap(), Some(board.clone()));
        let other = ganglion_neuron::state::StateFile::new(dir.path().join("scores.json"), 2);
        assert_eq!(other.load::<Scoreboard>().unwrap(), None);
        std::fs::write(dir.path().join("scores.json"), b"{ torn").unwrap();
        assert!(file.load::<Scoreboard>().is_err(), "a corrupt file is an error, not silently empty scores");
    }
}
