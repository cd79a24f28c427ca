//! Scoring (spec/compute.md §4, `calculate_pow_score.py`), versions A (default) and B.
//!
//! Shared terms: `S = 100·successes/attempts`, `Tm = 100·(T − t)/T` for the mean elapsed
//! time `t` of the successful challenges and the timeout `T` (100 when `t = 0`), and the
//! failure penalty `F = w_f·(fails in the last 20 / 20)^1.5·100`.
//!
//! **A** (v1.3.11–1.4.0, the README's weights 1 / 1 / 0.5 / 0.5 / 0.4, our default):
//! `dm = 100·(clamp(d̄, min, max) − min)/(max − min)` (A hard-codes min 6 and max 12: the
//! same with the default range), unallocated `w_s·S + w_d·dm + w_t·Tm·dm/100 − F`, allocated
//! `100·(w_s + w_d + w_t) + w_a·dm` ("maximum challenge score + allocation score"), zero
//! (unless allocated) with 10 or more failures in the last 20 or no success at all.
//!
//! **B** (v1.4.2–1.5.3, weights 1 / 1 / 0.3 / 0.4 / 0.21): `dm = 100·clamp(d̄, min, max)/max`,
//! unallocated `w_s·S + w_d·dm + w_t·Tm − F`, halved without a working sandbox (the original:
//! without docker), allocated `100·(w_s + w_d + w_t)·(1 − w_a) + w_a·dm`, zero (unless
//! allocated) with 19 or more failures or no success.
//!
//! Both normalise by the largest possible score, `100·(w_s + w_d + w_t) + 100·w_a` (290 for
//! A, 251 for B, as in the original).
//!
//! # Integrity changes to the original (issue 12)
//! - **Work, not just quality.** The formula above is a per-miner *quality* in [0, 1] that
//!   does not grow with the amount of work: N hotkeys sharing one solver each sit a little
//!   lower in difficulty and each score nearly what the whole machine would, so splitting
//!   paid about N times. The weight is therefore `quality × work / max work`, with
//!   [`work_per_round`]: the mean over the window of rounds of `10^d` for each solved
//!   challenge. For a password drawn uniformly from `10^d` candidates, a miner that tries
//!   `h ≤ 10^d` of them solves with probability `h/10^d`, so `E[10^d · solved] = h` whatever
//!   the search order. The validator sends all of a round's challenges together with one
//!   common deadline, so one machine behind N hotkeys shares one deadline's hashing among
//!   them (quality is computed per round, see [`crate::pow::Outcome`]).
//! - **Every miner hashes until the deadline** (`validator.challenges_per_round`, default 8
//!   in flight; `validator.challenges_max_per_round`, default 64). With one challenge per
//!   round the parts' budgets were not disjoint: when one part found its password early the
//!   others used the idle capacity, which an honest miner with a single challenge left
//!   unused, and a split machine earned more (measured 0.6–1.4× with the two parts searching
//!   side by side). A fixed number of challenges per round only moves the problem: an honest
//!   miner that solves all `k` is capped at `k` solves, and N parts at `N·k` (the red-team
//!   run found it: at its top difficulty the honest miners solved 48 of 48 challenges in six
//!   rounds, and a solver behind three hotkeys was credited 1.9× their work and paid 3.4×).
//!   So the validator keeps `k` challenges in flight per miner for the whole round: each one
//!   solved before the deadline is replaced by a fresh one at the same difficulty (up to
//!   `challenges_max_per_round` in all), and the miner's solver searches one caller's
//!   challenges one after another, oldest first ([`crate::solver`]). Replacements climb a
//!   level when the miner solved `k` at the current one within the first quarter of the
//!   timeout (it will search ten times that by the deadline), and a round's work is `Σ 10^d`
//!   over its solves at their own difficulties: a new or fast miner is measured near its own
//!   difficulty from its first round instead of being capped at 64 solves of a keyspace far
//!   below it, which paid whoever had climbed first (in a red-team run the Sybil's first
//!   hotkey, challenged a round before the honest miners, earned 3.1× over the run).
//!
//!   *The math.* Measure hashing in keyspaces: `c = C/10^d` for a machine that hashes `C`
//!   candidates by the deadline, and let the `j`-th challenge searched need `U_j·10^d`
//!   candidates, `U_j` uniform on [0, 1] and independent. A miner that always has a
//!   challenge waiting and searches them one after another solves the `j`-th when
//!   `S_j = U_1 + … + U_j ≤ c`: the expected solves are the renewal function
//!   `R(c) = Σ_j P(S_j ≤ c)` (Irwin–Hall distribution functions; `R(c) = e^c − 1` for
//!   `c ≤ 1`, `≈ 2c − 1/3` for large `c`). For a password whose chance of being in the next
//!   block grows with the part already searched, keeping to one challenge until it is solved
//!   is the best order a miner without the answer can use, so `R(c)` bounds what one machine
//!   earns at difficulty `d` behind any number of hotkeys, in any order and any split of its
//!   hashing; and the honest miner, never out of challenges, reaches it. At equal difficulty
//!   the Sybil/honest ratio of the work is therefore 1 in expectation, whatever `c`, until
//!   the honest miner meets `challenges_max_per_round` (64 solves: `c` ≈ 32 keyspaces per
//!   deadline, far past the point where the difficulty rule climbs a level). The network
//!   round trip of a replacement costs nothing: the miner has `k − 1` others to search
//!   meanwhile. The parts' quality is lower, not higher: a round counts as solved when any of
//!   its challenges is, and the first challenge of a part waits behind the other parts'.
//!
//!   *Measured* (`ganglion-redteam`'s `compute::compute_adversaries_earn_at_most_their_share`:
//!   two hotkeys on one solver against one honest miner with the same rate, `c` = 2.5 at the
//!   top difficulty, 24 rounds after a warm-up): with replacement and the climb, the pair's
//!   share of one honest miner's score after the last round 0.976, summed over the rounds
//!   1.010, incentive 0.948 (one run; with replacement alone 0.898, 0.957 and 0.887; the
//!   noise of 24 rounds is about ±0.08). Before replacement, with 8 challenges per round,
//!   the same test gave 1.004, 0.841 and 0.931 over three runs. The full red-team run
//!   (`ganglion redteam`, three hotkeys, every solver capped at 5 MH/s): 0.69 of one honest
//!   miner over 10 epochs, 0.73 in the last.
//!
//!   **Remaining limitation: keyspaces are powers of ten.** The bound above is for parts at
//!   the honest miner's difficulty. Work credited per hash is `R(c)/c`: 1 for a coarse
//!   miner (`c ≪ 1`), up to 2 for a fine one (`c ≫ 1`, many challenges solved per round).
//!   A Sybil that splits into enough hotkeys to sit a level (or two) lower, and games the
//!   difficulty rule to stay there (fails every fifth round outright and holds back its
//!   first answer past a quarter of the deadline), earns up to `0.8 · 2/(R(c)/c)` of an
//!   honest miner at `c`: about 1.07× at `c = 0.75`, 1.37× at `c = 0.3` and 1.5× at `c = 0.1`,
//!   less after the lower difficulty and time terms of its quality. Closing it needs finer
//!   keyspace steps than powers of ten (a challenge with fewer than 10 characters per
//!   position), which the original's protocol does not have.
//!   The hashcat backend (`[miner.hashcat]`) runs each challenge as its own process, so a
//!   round's challenges are searched side by side, which solves fewer of them than one after
//!   another: against hashcat miners a split machine on the built-in solver keeps part of
//!   the old gain.
//! - **`has_docker` pays only when proven.** B halves the score without a sandbox; the
//!   original took the miner's `has_docker` flag for it, so claiming it doubled the score for
//!   free. `ScoreInput::has_sandbox` is now set by the validator only for a miner whose
//!   sandbox it has proven alive itself (one of its own reservations answered the SSH
//!   host-key proof, see [`crate::liveness`]) in the last day; the claim is still stored (it
//!   tells renters whom to ask) but never raises the score. A probe of every miner's sandbox
//!   would need a reservation per miner per round, which costs the miners their machine.
//! - **Allocations pay only when proven** (see [`crate::validator`]).
//!
//! # The README's examples
//! The README gives 264.6 (allocated, 95 % success, difficulty 7, 4.6 s, 2.6 % failures) and
//! 193.7 (not allocated, 92 %, difficulty 9, 16 s, 3.1 %). No published commit produces
//! those numbers: version A's formula gives **256.7** (`250 + 0.4·16.7`) and **153.4**
//! (`92 + 50 + 0.5·46.7·0.5 − 0.27`), version B's gives **193.9** and **180.8**. The
//! differences are in the formula, not the inputs. A's allocated score ignores success and
//! time entirely, so 264.6 would need an allocation term of 14.6, i.e. `dm` ≈ 36.5 at
//! difficulty 7 where A's `dm` is 16.7 (no variant of `dm`, `Tm` and `F` we tried, A's or
//! B's, gives 264.6). For 193.7 the only match among those variants is
//! `92 + 100·9/12 + 0.5·(100·16/30)` with no failure penalty: B's `dm`, A's time weight and
//! an *inverted* time score (`100·t/T`, which would reward slowness), so the README's number
//! was most likely computed with a bug. We keep the published code's formulas.
//! `scoring::tests::readme_examples` pins the four published-formula numbers.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::pow::{ChallengeStats, RECENT};

/// Which version's formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoringVersion {
    /// v1.4.0 (README weights).
    #[default]
    A,
    /// v1.5.3.
    B,
}

/// Component weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Success rate.
    pub success: f64,
    /// Difficulty.
    pub difficulty: f64,
    /// Elapsed time.
    pub time: f64,
    /// Failure penalty.
    pub failure: f64,
    /// Allocation.
    pub allocation: f64,
}

impl Weights {
    /// The README's weights (issue 6): 1.0 / 1.0 / 0.5 / 0.5 / 0.4.
    pub const A: Weights = Weights { success: 1.0, difficulty: 1.0, time: 0.5, failure: 0.5, allocation: 0.4 };
    /// Version B's: 1 / 1 / 0.3 / 0.4 / 0.21.
    pub const B: Weights = Weights { success: 1.0, difficulty: 1.0, time: 0.3, failure: 0.4, allocation: 0.21 };

    /// Checks that every weight is finite and non-negative (allocation below 1 for B).
    pub fn validate(&self) -> Result<(), String> {
        let all = [self.success, self.difficulty, self.time, self.failure, self.allocation];
        if all.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err("scoring weights must be finite and non-negative".into());
        }
        if self.success + self.difficulty + self.time + self.allocation <= 0.0 {
            return Err("at least one positive scoring weight is needed".into());
        }
        Ok(())
    }
}

impl Default for Weights {
    fn default() -> Self {
        Weights::A
    }
}

/// Scoring settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Formula version.
    pub version: ScoringVersion,
    /// Weights (None: the version's own, [`Weights::A`] or [`Weights::B`]).
    pub weights: Option<Weights>,
    /// Challenge timeout in seconds (`T` of the time score).
    pub timeout_s: f64,
    /// Difficulty range of the validator.
    pub min_difficulty: u8,
    /// Difficulty range of the validator.
    pub max_difficulty: u8,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            version: ScoringVersion::A,
            weights: None,
            timeout_s: 30.0,
            min_difficulty: crate::pow::DEFAULT_DIFFICULTY_RANGE.0,
            max_difficulty: crate::pow::DEFAULT_DIFFICULTY_RANGE.1,
        }
    }
}

impl ScoringConfig {
    /// The weights in effect.
    pub fn effective_weights(&self) -> Weights {
        self.weights.unwrap_or(match self.version {
            ScoringVersion::A => Weights::A,
            ScoringVersion::B => Weights::B,
        })
    }
}

/// What a score is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreInput {
    /// Success rate in percent over the window.
    pub success_rate: f64,
    /// Whether there was at least one success.
    pub any_success: bool,
    /// Mean difficulty of the last 20 successes.
    pub difficulty_avg: f64,
    /// Mean seconds of the successful challenges.
    pub mean_elapsed_s: f64,
    /// Failures in the last 20, as a fraction (0–1).
    pub fail_rate: f64,
    /// Whether the miner is allocated (by a reservation of this validator's, proven alive
    /// this round).
    pub allocated: bool,
    /// Whether the validator has proven the miner's sandbox working (B halves the score
    /// without); never the miner's own claim.
    pub has_sandbox: bool,
}

impl ScoreInput {
    /// From challenge statistics.
    pub fn from_stats(stats: &ChallengeStats, allocated: bool, has_sandbox: bool) -> ScoreInput {
        ScoreInput {
            success_rate: if stats.attempts == 0 { 0.0 } else { 100.0 * f64::from(stats.successes) / f64::from(stats.attempts) },
            any_success: stats.successes > 0,
            difficulty_avg: stats.last20_difficulty_avg,
            mean_elapsed_s: stats.mean_success_elapsed_s,
            fail_rate: f64::from(stats.last20_failed) / RECENT as f64,
            allocated,
            has_sandbox,
        }
    }
}

/// The components and the total, as stored in `ScoreRecord.components`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Components {
    /// Formula version.
    pub version: ScoringVersion,
    /// `S`.
    pub success: f64,
    /// `dm`.
    pub difficulty: f64,
    /// `Tm`.
    pub time: f64,
    /// `F` (already weighted).
    pub penalty: f64,
    /// The allocation term (already weighted; 0 unless allocated).
    pub allocation: f64,
    /// Whether the allocated formula applied.
    pub allocated: bool,
    /// The score before normalisation.
    pub total: f64,
    /// `total / max`, in [0, 1].
    pub normalised: f64,
}

/// `percent_yield(t, T)`: 100 at t = 0, 0 at t ≥ T.
pub fn time_score(elapsed_s: f64, timeout_s: f64) -> f64 {
    if elapsed_s <= 0.0 || timeout_s <= 0.0 {
        return 100.0;
    }
    (100.0 * (timeout_s - elapsed_s) / timeout_s).clamp(0.0, 100.0)
}

/// The score of one miner.
pub fn score(config: &ScoringConfig, input: &ScoreInput) -> Components {
    let w = &config.effective_weights();
    let (min, max) = (f64::from(config.min_difficulty.min(config.max_difficulty)), f64::from(config.max_difficulty.max(config.min_difficulty)));
    let d = input.difficulty_avg.clamp(min, max);
    let success = input.success_rate.clamp(0.0, 100.0);
    let time = time_score(input.mean_elapsed_s, config.timeout_s);
    let penalty = w.failure * input.fail_rate.clamp(0.0, 1.0).powf(1.5) * 100.0;
    let max_challenge = 100.0 * (w.success + w.difficulty + w.time);
    let max_total = max_challenge + 100.0 * w.allocation;
    let (difficulty, total, allocation) = match config.version {
        ScoringVersion::A => {
            let dm = if max > min { 100.0 * (d - min).max(0.0) / (max - min) } else { 100.0 };
            if input.allocated {
                (dm, max_challenge + w.allocation * dm, w.allocation * dm)
            } else if input.fail_rate * RECENT as f64 >= 10.0 - 1e-9 || !input.any_success {
                (dm, 0.0, 0.0)
            } else {
                (dm, w.success * success + w.difficulty * dm + w.time * time * dm / 100.0 - penalty, 0.0)
            }
        }
        ScoringVersion::B => {
            let dm = 100.0 * d / max.max(1.0);
            if input.allocated {
                (dm, max_challenge * (1.0 - w.allocation) + w.allocation * dm, w.allocation * dm)
            } else if input.fail_rate * RECENT as f64 >= 19.0 - 1e-9 || !input.any_success {
                (dm, 0.0, 0.0)
            } else {
                let raw = w.success * success + w.difficulty * dm + w.time * time - penalty;
                (dm, if input.has_sandbox { raw } else { raw * 0.5 }, 0.0)
            }
        }
    };
    let total = total.max(0.0);
    Components {
        version: config.version,
        success,
        difficulty,
        time,
        penalty,
        allocation,
        allocated: input.allocated,
        total,
        normalised: if max_total > 0.0 { (total / max_total).clamp(0.0, 1.0) } else { 0.0 },
    }
}

/// The work estimate of a miner: the mean over `newest_first`'s window of rounds
/// ([`crate::pow::STATS_WINDOW`]) of `10^difficulty` for each solved challenge of the round
/// (see the module documentation for what it estimates and why splitting does not raise it).
pub fn work_per_round(newest_first: &[crate::pow::Outcome]) -> f64 {
    let window = &newest_first[..newest_first.len().min(crate::pow::STATS_WINDOW)];
    if window.is_empty() {
        return 0.0;
    }
    window.iter().map(crate::pow::Outcome::work).sum::<f64>() / window.len() as f64
}

/// The weight-rule score of one miner: `quality × work / max_work` (0 when nobody worked).
pub fn combine(quality: f64, work: f64, max_work: f64) -> f64 {
    if max_work <= 0.0 || !quality.is_finite() || !work.is_finite() {
        return 0.0;
    }
    (quality.clamp(0.0, 1.0) * (work / max_work).clamp(0.0, 1.0)).clamp(0.0, 1.0)
}

/// One uid's score with what the weight rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct UidScore {
    /// Uid.
    pub uid: u16,
    /// Normalised score.
    pub score: f64,
    /// Axon IP, if served.
    pub ip: Option<IpAddr>,
    /// Validators score zero.
    pub is_validator: bool,
}

/// Weights from scores: validators get 0; with `one_uid_per_ip` only the best-scoring uid of
/// each IP counts (ties: the lower uid); negative and non-finite scores count as 0; the rest
/// is L1-normalised. Returns `(uid, weight)` for every input uid (weights sum to 1, or all 0).
pub fn weights(scores: &[UidScore], one_uid_per_ip: bool) -> Vec<(u16, f64)> {
    let clean = |s: &UidScore| if s.is_validator || !s.score.is_finite() { 0.0 } else { s.score.max(0.0) };
    let mut best_of_ip: HashMap<IpAddr, (f64, u16)> = HashMap::new();
    if one_uid_per_ip {
        for s in scores {
            if let Some(ip) = s.ip {
                let candidate = (clean(s), s.uid);
                best_of_ip
                    .entry(ip)
                    .and_modify(|best| {
                        if candidate.0 > best.0 || (candidate.0 == best.0 && candidate.1 < best.1) {
                            *best = candidate;
                        }
                    })
                    .or_insert(candidate);
            }
        }
    }
    let raw: Vec<(u16, f64)> = scores
        .iter()
        .map(|s| {
            let keep = match (one_uid_per_ip, s.ip) {
                (true, Some(ip)) => best_of_ip.get(&ip).is_some_and(|best| best.1 == s.uid),
                _ => true,
            };
            (s.uid, if keep { clean(s) } else { 0.0 })
        })
        .collect();
    let sum: f64 = raw.iter().map(|(_, w)| w).sum();
    raw.into_iter().map(|(uid, w)| (uid, if sum > 0.0 { w / sum } else { 0.0 })).collect()
}

#[cfg(test)]
mod tests;
