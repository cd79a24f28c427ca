//! Scoring as the finetuning subnet (`neurons/validator.py`) and taoverse/pretraining did
//! it: `iswin` with the time-advantage epsilon, win rates over shared samples, softmax with
//! temperature, per-competition shares with an EMA, duplicates by hash, and retry rules.
//!
//! Losses are "lower is better"; a NaN loss counts as `+inf` (a failed evaluation) so that
//! it can never win a comparison.

use std::collections::BTreeMap;

/// The finetuning subnet's constants (spec A1).
pub mod finetuning {
    /// EMA: `weights = ALPHA·weights + (1 − ALPHA)·new`.
    pub const ALPHA: f64 = 0.9;
    /// Softmax temperature over win rates.
    pub const TEMPERATURE: f64 = 0.08;
    /// The fixed time-advantage epsilon.
    pub const TIMESTAMP_EPSILON: f64 = 0.01;
    /// Tokens per sample (prompt + response, truncated).
    pub const SEQUENCE_LENGTH: usize = 2048;
    /// Samples per step.
    pub const SAMPLES_PER_STEP: usize = 400;
    /// Models kept for the next round, by win rate.
    pub const KEEP_TOP: usize = 5;
}

/// taoverse/pretraining's constants (spec A6).
pub mod pretraining {
    /// EMA of normalised per-competition weights (`CompetitionTracker`).
    pub const ALPHA: f64 = 0.5;
    /// Softmax temperature over win rates.
    pub const TEMPERATURE: f64 = 0.01;
    /// `LinearDecay(0.005, 0.0001, 14400)` at HEAD.
    pub const EPSILON: super::Epsilon =
        super::Epsilon::LinearDecay { start: 0.005, end: 0.0001, decay_blocks: 14_400 };
}

/// The time advantage of an earlier commit, as a fraction of its loss.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Epsilon {
    /// The same value whatever the model's age (finetuning: 0.01).
    Fixed {
        /// ε.
        epsilon: f64,
    },
    /// taoverse's `LinearDecay`: ε = s − min(max(current − block, 0)/D, 1)·(s − e).
    LinearDecay {
        /// s.
        start: f64,
        /// e.
        end: f64,
        /// D (blocks); 0 means "already decayed".
        decay_blocks: u64,
    },
}

impl Epsilon {
    /// ε for a model committed at `model_block`, seen at `current_block`.
    pub fn at(&self, current_block: u64, model_block: u64) -> f64 {
        match *self {
            Epsilon::Fixed { epsilon } => epsilon,
            Epsilon::LinearDecay { start, end, decay_blocks } => {
                let age = current_block.saturating_sub(model_block) as f64;
                let progress = if decay_blocks == 0 { 1.0 } else { (age / decay_blocks as f64).min(1.0) };
                start - progress * (start - end)
            }
        }
    }

    /// The value it decays to (the fixed value for [`Epsilon::Fixed`]).
    pub fn floor(&self) -> f64 {
        match *self {
            Epsilon::Fixed { epsilon } => epsilon,
            Epsilon::LinearDecay { end, .. } => end,
        }
    }
}

fn sane(loss: f64) -> f64 {
    if loss.is_nan() { f64::INFINITY } else { loss }
}

/// Whether model a (loss `loss_a`, committed at `block_a`) beats model b on one sample: the
/// strictly earlier model's loss is multiplied by `1 − ε` (ε of its own age at
/// `current_block`), and a must then be strictly lower.
pub fn iswin(loss_a: f64, block_a: u64, loss_b: f64, block_b: u64, epsilon: &Epsilon, current_block: u64) -> bool {
    let mut a = sane(loss_a);
    let mut b = sane(loss_b);
    if block_a < block_b {
        a *= 1.0 - epsilon.at(current_block, block_a);
    } else if block_b < block_a {
        b *= 1.0 - epsilon.at(current_block, block_b);
    }
    a < b
}

/// One model's evaluation in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    /// Its uid.
    pub uid: u16,
    /// The block of its commitment.
    pub block: u64,
    /// One loss per sample, in the round's sample order; empty when it was not evaluated.
    pub losses: Vec<f64>,
}

/// Wins and win rate of one uid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WinRecord {
    /// Samples won against all others.
    pub wins: u64,
    /// Samples compared.
    pub matches: u64,
    /// `wins / matches` (or the no-opponent value).
    pub win_rate: f64,
}

/// Every ordered pair and every shared sample (index below both lengths): a win when
/// [`iswin`]. `win_rate = wins / matches`, or `no_match_rate` when nothing was compared (0 in
/// the finetuning subnet, 1 in taoverse's `compute_wins`).
pub fn compute_wins(
    contenders: &[Contender],
    epsilon: &Epsilon,
    current_block: u64,
    no_match_rate: f64,
) -> BTreeMap<u16, WinRecord> {
    let mut out = BTreeMap::new();
    for (i, a) in contenders.iter().enumerate() {
        let (mut wins, mut matches) = (0u64, 0u64);
        for (j, b) in contenders.iter().enumerate() {
            if i == j {
                continue;
            }
            for (&la, &lb) in a.losses.iter().zip(&b.losses) {
                matches += 1;
                if iswin(la, a.block, lb, b.block, epsilon, current_block) {
                    wins += 1;
                }
            }
        }
        let win_rate = if matches > 0 { wins as f64 / matches as f64 } else { no_match_rate };
        out.insert(a.uid, WinRecord { wins, matches, win_rate });
    }
    out
}

/// `softmax(x / temperature)`, stable (max subtracted); empty in, empty out.
pub fn softmax(values: &[f64], temperature: f64) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let t = if temperature > 0.0 { temperature } else { f64::MIN_POSITIVE };
    let scaled: Vec<f64> = values.iter().map(|v| if v.is_finite() { v / t } else { f64::NEG_INFINITY }).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0 / values.len() as f64; values.len()];
    }
    let exps: Vec<f64> = scaled.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// The finetuning subnet's weight update (spec A5.8): `softmax(win_rate / T)` over the
/// evaluated uids, scattered into zeros, rescaled to sum `n_competitions · share`, then
/// `weights = α·weights + (1 − α)·new` over every uid (the uids of other competitions decay).
pub fn finetuning_update(
    weights: &mut BTreeMap<u16, f64>,
    win_rates: &BTreeMap<u16, WinRecord>,
    temperature: f64,
    share: f64,
    n_competitions: usize,
    alpha: f64,
) {
    let uids: Vec<u16> = win_rates.keys().copied().collect();
    let rates: Vec<f64> = win_rates.values().map(|r| r.win_rate).collect();
    let soft = softmax(&rates, temperature);
    let scale = n_competitions as f64 * share;
    let new: BTreeMap<u16, f64> = uids.into_iter().zip(soft.into_iter().map(|w| w * scale)).collect();
    let mut all: Vec<u16> = weights.keys().chain(new.keys()).copied().collect();
    all.sort_unstable();
    all.dedup();
    for uid in all {
        let old = weights.get(&uid).copied().unwrap_or(0.0);
        let fresh = new.get(&uid).copied().unwrap_or(0.0);
        weights.insert(uid, alpha * old + (1.0 - alpha) * fresh);
    }
}

/// taoverse's `CompetitionTracker`: per competition an EMA of normalised weights; the subnet's
/// weights are `Σ share_c · w_c`, renormalised.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompetitionTracker {
    /// EMA weights by competition, then uid.
    pub by_competition: BTreeMap<String, BTreeMap<u16, f64>>,
}

impl CompetitionTracker {
    /// Records a round's weights for `competition` (normalised first; an all-zero round is
    /// all zeros, as `nan_to_num` makes it), moving the average with `alpha` (weight of the old).
    pub fn record(&mut self, competition: &str, new: &BTreeMap<u16, f64>, alpha: f64) {
        let total: f64 = new.values().filter(|v| v.is_finite() && **v > 0.0).sum();
        let normalised: BTreeMap<u16, f64> = new
            .iter()
            .map(|(&u, &w)| (u, if total > 0.0 && w.is_finite() && w > 0.0 { w / total } else { 0.0 }))
            .collect();
        match self.by_competition.get_mut(competition) {
            None => {
                self.by_competition.insert(competition.to_string(), normalised);
            }
            Some(old) => {
                let mut uids: Vec<u16> = old.keys().chain(normalised.keys()).copied().collect();
                uids.sort_unstable();
                uids.dedup();
                for uid in uids {
                    let o = old.get(&uid).copied().unwrap_or(0.0);
                    let n = normalised.get(&uid).copied().unwrap_or(0.0);
                    old.insert(uid, alpha * o + (1.0 - alpha) * n);
                }
            }
        }
    }

    /// Forgets a uid everywhere (it changed hands).
    pub fn forget(&mut self, uid: u16) {
        for w in self.by_competition.values_mut() {
            w.remove(&uid);
        }
    }

    /// `Σ share · w_c` over `shares` (competition id → share), renormalised to sum 1.
    pub fn subnet_weights(&self, shares: &[(String, f64)]) -> BTreeMap<u16, f64> {
        let mut out: BTreeMap<u16, f64> = BTreeMap::new();
        for (comp, share) in shares {
            if let Some(w) = self.by_competition.get(comp) {
                for (&uid, &v) in w {
                    *out.entry(uid).or_insert(0.0) += v * share;
                }
            }
        }
        let total: f64 = out.values().sum();
        for v in out.values_mut() {
            *v = if total > 0.0 { *v / total } else { 0.0 };
        }
        out
    }
}

/// One model's identity for duplicate resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// Its uid.
    pub uid: u16,
    /// The block of its commitment.
    pub block: u64,
    /// The plain directory hash of the files actually downloaded.
    pub hash: String,
}

/// Uids whose model is a copy of an earlier commit of the same files (same plain hash):
/// only the earliest block (then the lowest uid) is evaluated; these get no losses.
pub fn duplicates(submissions: &[Submission]) -> Vec<u16> {
    let mut first: BTreeMap<&str, (u64, u16)> = BTreeMap::new();
    for s in submissions {
        let key = (s.block, s.uid);
        first.entry(s.hash.as_str()).and_modify(|k| *k = (*k).min(key)).or_insert(key);
    }
    let mut out: Vec<u16> = submissions
        .iter()
        .filter(|s| first.get(s.hash.as_str()).is_some_and(|&(_, uid)| uid != s.uid))
        .map(|s| s.uid)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// One past evaluation of a model (taoverse's `EvalResult`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalResult {
    /// The block it was evaluated at.
    pub block: u64,
    /// Its score (loss); `+inf` when the evaluation failed.
    pub score: f64,
    /// The block of the round's winning model.
    pub winning_model_block: u64,
    /// The winner's score (its own score if it won).
    pub winning_model_score: f64,
}

/// pretraining's `should_retry_model` (`pretrain/models/retry.py`): never evaluated → retry;
/// last successful score worse than that round's winner → no; otherwise retry when the score
/// now beats the winner's adjusted by the winner's current ε; every evaluation failed → one retry.
pub fn should_retry(epsilon: &Epsilon, current_block: u64, history: &[EvalResult]) -> bool {
    if history.is_empty() {
        return true;
    }
    if let Some(last) = history.iter().rev().find(|r| r.score.is_finite()) {
        if last.score > last.winning_model_score {
            return false;
        }
        let eps = epsilon.at(current_block, last.winning_model_block);
        return last.score < last.winning_model_score * (1.0 - eps);
    }
    history.len() < 2
}

/// The uids to keep for the next round: the `k` best by win rate (ties: lower uid).
pub fn top_by_win_rate(win_rates: &BTreeMap<u16, WinRecord>, k: usize) -> Vec<u16> {
    let mut v: Vec<(u16, f64)> = win_rates.iter().map(|(&u, r)| (u, r.win_rate)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(k).map(|(u, _)| u).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED: Epsilon = Epsilon::Fixed { epsilon: finetuning::TIMESTAMP_EPSILON };

    #[test]
    fn iswin_is_the_seed_readme_function() {
        // The later model must be more than 1% better to win.
        assert!(!iswin(0.995, 20, 1.0, 10, &FIXED, 100)); // 0.995 vs 0.99: loses
        assert!(iswin(0.985, 20, 1.0, 10, &FIXED, 100)); // 0.985 vs 0.99: wins
        assert!(iswin(1.0, 10, 0.995, 20, &FIXED, 100)); // the earlier one, adjusted to 0.99
        // Same block: plain comparison, ties win for neither.
        assert!(!iswin(1.0, 10, 1.0, 10, &FIXED, 100));
        assert!(iswin(0.9, 10, 1.0, 10, &FIXED, 100));
        // NaN is a failed evaluation.
        assert!(!iswin(f64::NAN, 10, 5.0, 20, &FIXED, 100));
        assert!(iswin(5.0, 20, f64::NAN, 10, &FIXED, 100));
    }

    #[test]
    fn linear_decay_worked_values() {
        let e = pretraining::EPSILON;
        assert_eq!(e.at(1000, 1000), 0.005);
        assert!((e.at(1000 + 7200, 1000) - (0.005 - 0.5 * 0.0049)).abs() < 1e-15);
        assert!((e.at(1000 + 14_400, 1000) - 0.0001).abs() < 1e-15);
        assert!((e.at(1_000_000, 1000) - 0.0001).abs() < 1e-15);
        assert_eq!(e.at(10, 1000), 0.005, "a model from the future has age 0");
        assert_eq!(e.floor(), 0.0001);
    }

    #[test]
    fn win_rates_of_a_worked_round() {
        // Three models, four samples. uid 1 is earliest.
        let c = vec![
            Contender { uid: 1, block: 10, losses: vec![1.0, 1.0, 1.0, 1.0] },
            Contender { uid: 2, block: 20, losses: vec![0.995, 0.98, 1.2, 0.5] },
            Contender { uid: 3, block: 30, losses: vec![2.0, 2.0] },
        ];
        let w = compute_wins(&c, &FIXED, 100, 0.0);
        // uid 1 (adjusted 0.99) vs 2: wins samples 0 and 2; vs 3: wins 0, 1. 4 of 6.
        assert_eq!(w[&1], WinRecord { wins: 4, matches: 6, win_rate: 4.0 / 6.0 });
        // uid 2 vs 1: wins 1 (0.98 < 0.99) and 3; vs 3 (2 adjusted 0.995 vs 0.98·… ): wins 0, 1.
        assert_eq!(w[&2], WinRecord { wins: 4, matches: 6, win_rate: 4.0 / 6.0 });
        assert_eq!(w[&3], WinRecord { wins: 0, matches: 4, win_rate: 0.0 });
        let alone = compute_wins(&c[..1], &FIXED, 100, 1.0);
        assert_eq!(alone[&1].win_rate, 1.0);
    }

    #[test]
    fn softmax_with_temperature() {
        let s = softmax(&[1.0, 0.5, 0.0], 0.08);
        let e = [(0.0f64).exp(), (-6.25f64).exp(), (-12.5f64).exp()];
        let t: f64 = e.iter().sum();
        for (a, b) in s.iter().zip(e.iter().map(|x| x / t)) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert!(s[0] > 0.998);
        assert_eq!(softmax(&[], 0.08), Vec::<f64>::new());
        assert_eq!(softmax(&[0.3, 0.3], 0.01), vec![0.5, 0.5]);
    }

    #[test]
    fn finetuning_update_rescales_to_the_share_and_decays_others() {
        let mut weights = BTreeMap::from([(7u16, 1.0)]);
        let rates = BTreeMap::from([
            (1u16, WinRecord { wins: 1, matches: 1, win_rate: 1.0 }),
            (2u16, WinRecord { wins: 0, matches: 1, win_rate: 0.0 }),
        ]);
        finetuning_update(&mut weights, &rates, 0.08, 0.6, 2, 0.9);
        let soft = softmax(&[1.0, 0.0], 0.08);
        assert!((weights[&1] - 0.1 * 1.2 * soft[0]).abs() < 1e-12);
        assert!((weights[&2] - 0.1 * 1.2 * soft[1]).abs() < 1e-12);
        assert!((weights[&7] - 0.9).abs() < 1e-12, "another competition's uid decays by α");
        let fresh: f64 = 1.2 * soft.iter().sum::<f64>();
        assert!((weights[&1] + weights[&2] - 0.1 * fresh).abs() < 1e-12);
    }

    #[test]
    fn competition_tracker_worked_example() {
        let mut t = CompetitionTracker::default();
        t.record("b3", &BTreeMap::from([(1, 3.0), (2, 1.0)]), 0.5);
        t.record("b3", &BTreeMap::from([(1, 0.0), (2, 2.0)]), 0.5);
        assert_eq!(t.by_competition["b3"], BTreeMap::from([(1, 0.375), (2, 0.625)]));
        t.record("b14", &BTreeMap::from([(3, 5.0)]), 0.5);
        let w = t.subnet_weights(&[("b3".into(), 0.3), ("b14".into(), 0.7)]);
        assert!((w[&1] - 0.1125).abs() < 1e-12 && (w[&2] - 0.1875).abs() < 1e-12 && (w[&3] - 0.7).abs() < 1e-12);
        // A competition that has not run yet: the others are renormalised to 1.
        let only = t.subnet_weights(&[("b3".into(), 0.3), ("new".into(), 0.7)]);
        assert!((only.values().sum::<f64>() - 1.0).abs() < 1e-12);
        t.forget(3);
        assert!(!t.by_competition["b14"].contains_key(&3));
    }

    #[test]
    fn duplicates_resolve_to_the_earliest_commit() {
        let s = |uid, block, hash: &str| Submission { uid, block, hash: hash.into() };
        let subs = [s(4, 100, "h1"), s(2, 50, "h1"), s(3, 50, "h1"), s(5, 10, "h2"), s(6, 20, "h3")];
        assert_eq!(duplicates(&subs), vec![3, 4]);
    }

    #[test]
    fn retry_rules() {
        let e = pretraining::EPSILON;
        assert!(should_retry(&e, 0, &[]));
        let r = |score: f64, wscore: f64| EvalResult { block: 100, score, winning_model_block: 0, winning_model_score: wscore };
        // Worse than the winner: never again.
        assert!(!should_retry(&e, 100, &[r(2.1, 2.0)]));
        // Better, but not by the winner's epsilon at block 100 (age 100 → ε ≈ 0.004966).
        assert!(!should_retry(&e, 100, &[r(1.995, 2.0)]));
        // Once the winner's epsilon has decayed to 0.0001, 1.995 < 2·0.9999.
        assert!(should_retry(&e, 20_000, &[r(1.995, 2.0)]));
        // Failures only: one retry.
        assert!(should_retry(&e, 100, &[r(f64::INFINITY, 2.0)]));
        assert!(!should_retry(&e, 100, &[r(f64::INFINITY, 2.0), r(f64::INFINITY, 2.0)]));
        // The last successful one counts, failures after it do not.
        assert!(!should_retry(&e, 100, &[r(2.1, 2.0), r(f64::INFINITY, 2.0)]));
    }

    #[test]
    fn top_k_by_win_rate() {
        let r = |w| WinRecord { wins: 0, matches: 0, win_rate: w };
        let m = BTreeMap::from([(1, r(0.2)), (2, r(0.9)), (3, r(0.9)), (4, r(0.1))]);
        assert_eq!(top_by_win_rate(&m, 3), vec![2, 3, 1]);
    }
}
