//! The proof-of-work challenge, compatible with the original (spec/compute.md §3): hashcat
//! mode 610, `BLAKE2b-512(password ‖ salt)`.
//!
//! Generation: shuffle the 86-character set, keep the first 10 characters, draw a password
//! of `difficulty` characters from them, draw an 8-byte salt (16 hex digits), and publish
//! `"$BLAKE2$" + hex(blake2b512(password ‖ salt))` with the mask `?1` × difficulty. The
//! search space is 10^difficulty. Unlike the original (Python's `random`), every draw comes
//! from the operating system's CSPRNG.
//!
//! Difficulty adaptation: version B ([`AdaptRule::B`]) starts from
//! `ceil(mean difficulty of the last 20 successes)`, and once a miner has more than 4
//! successes in the window, a failure rate over the last 20 below 10 % adds 2, below 20 %
//! adds 1 and above 25 % removes 1. The default is [`AdaptRule::Work`], which keeps the
//! keyspace at or above what the miner searches by the deadline (the scoring's work
//! estimate needs it; see the rule). Results are clamped to the configured range.

use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};

/// The 86 characters passwords are drawn from: `ascii_letters + digits + "!@#$%^&*()-_+=[]{};:,.<>"`.
pub const CHARSET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#$%^&*()-_+=[]{};:,.<>";
/// How many characters of the shuffled set a challenge uses.
pub const CHALLENGE_CHARS: usize = 10;
/// Hex digits of the salt (`secrets.token_hex(8)`).
pub const SALT_HEX_LEN: usize = 16;
/// Prefix of the published hash (hashcat's mode 610 format).
pub const HASH_PREFIX: &str = "$BLAKE2$";
/// hashcat's mode for BLAKE2b-512($pass.$salt).
pub const MODE: &str = "610";
/// Smallest difficulty the protocol accepts (the validator's range is configured inside it).
pub const MIN_DIFFICULTY: u8 = 1;
/// Largest difficulty (the original's maximum; 10^12 candidates).
pub const MAX_DIFFICULTY: u8 = 12;
/// Default validator range (issue 6: 6–12).
pub const DEFAULT_DIFFICULTY_RANGE: (u8, u8) = (6, 12);
/// How many of the newest rounds the statistics look at (the original's last 60 rows, one
/// challenge per round).
pub const STATS_WINDOW: usize = 60;
/// The "last 20" of the failure penalty and the difficulty average.
pub const RECENT: usize = 20;

/// A challenge as the validator keeps it (the wire form is [`crate::protocol::Challenge`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeSpec {
    /// 128 lowercase hex digits of `blake2b512(password ‖ salt)` (without the `$BLAKE2$` prefix).
    pub hash_hex: String,
    /// 16 hex digits.
    pub salt: String,
    /// The 10 characters the password is made of.
    pub chars: String,
    /// Number of password characters.
    pub difficulty: u8,
}

impl ChallengeSpec {
    /// The published `challenge_hash`: `$BLAKE2$<hex>`.
    pub fn hash_field(&self) -> String {
        format!("{HASH_PREFIX}{}", self.hash_hex)
    }

    /// `?1` repeated `difficulty` times.
    pub fn mask(&self) -> String {
        "?1".repeat(usize::from(self.difficulty))
    }

    /// 10^difficulty.
    pub fn keyspace(&self) -> u64 {
        10u64.pow(u32::from(self.difficulty))
    }

    /// The 64-byte target digest.
    pub fn target(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        // Validated on construction from the wire; a bad value here yields a target that
        // nothing matches, which the solver reports as exhausted.
        let _ = hex::decode_to_slice(&self.hash_hex, &mut out);
        out
    }

    /// Whether `password` solves this challenge.
    pub fn is_solved_by(&self, password: &str) -> bool {
        hash_hex(password, &self.salt) == self.hash_hex
    }
}

/// `blake2b512(password ‖ salt)` as 128 lowercase hex digits.
pub fn hash_hex(password: &str, salt: &str) -> String {
    let mut state = blake2b_simd::State::new();
    state.update(password.as_bytes());
    state.update(salt.as_bytes());
    state.finalize().to_hex().to_string()
}

/// Draws a challenge of `difficulty` characters; returns it with its password.
pub fn generate<R: RngCore + CryptoRng>(difficulty: u8, rng: &mut R) -> (ChallengeSpec, String) {
    let difficulty = difficulty.clamp(MIN_DIFFICULTY, MAX_DIFFICULTY);
    let mut set: Vec<char> = CHARSET.chars().collect();
    set.shuffle(rng);
    let chars: String = set[..CHALLENGE_CHARS].iter().collect();
    let pool: Vec<char> = chars.chars().collect();
    let password: String = (0..difficulty).map(|_| pool[rng.gen_range(0..pool.len())]).collect();
    let mut salt_bytes = [0u8; SALT_HEX_LEN / 2];
    rng.fill_bytes(&mut salt_bytes);
    let salt = hex::encode(salt_bytes);
    let spec = ChallengeSpec { hash_hex: hash_hex(&password, &salt), salt, chars, difficulty };
    (spec, password)
}

/// One round's result for one miner as the statistics need it: the round's challenges
/// (`validator.challenges_per_round` in flight, each solved one replaced, see
/// [`crate::validator`]) count as one attempt, solved when any of them was, so that the
/// quality terms and the difficulty rule see what they saw with the original's one challenge
/// per round; the work estimate counts every solved challenge ([`Outcome::work`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether an answer verified.
    pub success: bool,
    /// The round's highest difficulty (replacements may climb within a round).
    pub difficulty: u8,
    /// Validator-measured time into the round, seconds: of the first solved challenge, else
    /// the longest.
    pub elapsed_s: f64,
    /// How many of the round's challenges were solved.
    #[serde(default)]
    pub solved: u32,
    /// `Σ 10^d` over the solved challenges, `d` each one's difficulty (the work estimate;
    /// 0 in states saved before it existed: [`Outcome::work`] falls back to `solved · 10^d`).
    #[serde(default)]
    pub work: f64,
}

impl Outcome {
    /// One challenge's result (a round of one).
    pub fn single(success: bool, difficulty: u8, elapsed_s: f64) -> Outcome {
        Outcome::of_round(&[(success, difficulty, elapsed_s)]).unwrap_or(Outcome { success, difficulty, elapsed_s, solved: 0, work: 0.0 })
    }

    /// A round's outcome from its challenges' `(success, difficulty, elapsed_s)`, in any
    /// order (None for no challenge).
    pub fn of_round(challenges: &[(bool, u8, f64)]) -> Option<Outcome> {
        let difficulty = challenges.iter().map(|c| c.1).max()?;
        let solved = challenges.iter().filter(|c| c.0).count() as u32;
        let work = challenges.iter().filter(|c| c.0).map(|c| 10f64.powi(i32::from(c.1))).sum();
        let times = challenges.iter().filter(|c| c.0 || solved == 0).map(|c| c.2);
        let elapsed_s = if solved > 0 { times.fold(f64::INFINITY, f64::min) } else { times.fold(0.0, f64::max) };
        Some(Outcome { success: solved > 0, difficulty, elapsed_s, solved, work })
    }

    /// The round's work estimate: `Σ 10^d` over its solved challenges.
    pub fn work(&self) -> f64 {
        if self.work > 0.0 { self.work } else { f64::from(self.solved) * 10f64.powi(i32::from(self.difficulty)) }
    }
}

/// The statistics the original computes from `challenge_details` (spec §3, "Stats window").
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ChallengeStats {
    /// Rounds in the window.
    pub attempts: u32,
    /// Successful ones (at least one challenge solved) in the window.
    pub successes: u32,
    /// Mean elapsed seconds of the successful ones (0 when none).
    pub mean_success_elapsed_s: f64,
    /// Failures among the newest 20.
    pub last20_failed: u32,
    /// Mean difficulty of the newest 20 successes (0 when none).
    pub last20_difficulty_avg: f64,
    /// Difficulty of the newest challenge (0 when none).
    #[serde(default)]
    pub last_difficulty: u8,
    /// Among the newest [`WORK_RULE_SAMPLES`] challenges at `last_difficulty`: how many.
    #[serde(default)]
    pub at_last_attempts: u32,
    /// … and how many of them were solved.
    #[serde(default)]
    pub at_last_successes: u32,
    /// Whether the newest challenge was solved within a quarter of the timeout (set by the
    /// validator, which knows the timeout; [`AdaptRule::Work`] climbs at once then).
    #[serde(default)]
    pub newest_solved_fast: bool,
    /// The newest round's work estimate ([`Outcome::work`]).
    #[serde(default)]
    pub newest_work: f64,
    /// Whether the newest round stopped at the validator's most challenges per round rather
    /// than at its deadline (set by the validator, which knows that limit): the miner
    /// searched more than its solves show.
    #[serde(default)]
    pub newest_capped: bool,
}

/// How many of the newest challenges at the current difficulty rule [`AdaptRule::Work`] reads.
pub const WORK_RULE_SAMPLES: usize = 10;

impl ChallengeStats {
    /// Statistics of `newest_first` (only the newest [`STATS_WINDOW`] count).
    pub fn from_outcomes(newest_first: &[Outcome]) -> ChallengeStats {
        let window = &newest_first[..newest_first.len().min(STATS_WINDOW)];
        let successes: Vec<&Outcome> = window.iter().filter(|o| o.success).collect();
        let mean_success_elapsed_s = if successes.is_empty() {
            0.0
        } else {
            successes.iter().map(|o| o.elapsed_s).sum::<f64>() / successes.len() as f64
        };
        let last20_failed = window.iter().take(RECENT).filter(|o| !o.success).count() as u32;
        let recent_successes: Vec<&&Outcome> = successes.iter().take(RECENT).collect();
        let last20_difficulty_avg = if recent_successes.is_empty() {
            0.0
        } else {
            recent_successes.iter().map(|o| f64::from(o.difficulty)).sum::<f64>() / recent_successes.len() as f64
        };
        let last_difficulty = window.first().map_or(0, |o| o.difficulty);
        let at_last: Vec<&Outcome> = window.iter().filter(|o| o.difficulty == last_difficulty).take(WORK_RULE_SAMPLES).collect();
        ChallengeStats {
            last_difficulty,
            at_last_attempts: at_last.len() as u32,
            at_last_successes: at_last.iter().filter(|o| o.success).count() as u32,
            newest_solved_fast: false,
            newest_work: window.first().map_or(0.0, Outcome::work),
            newest_capped: false,
            attempts: window.len() as u32,
            successes: successes.len() as u32,
            mean_success_elapsed_s,
            last20_failed,
            last20_difficulty_avg,
        }
    }
}

/// Which version's difficulty rule to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdaptRule {
    /// v1.4.0: with at least 20 successes, ≤ 1 failure in the last 20 adds 1, > 2 removes 1.
    A,
    /// v1.5.3: with more than 4 successes, failure rate < 10 % adds 2, < 20 % adds 1,
    /// > 25 % removes 1.
    B,
    /// The default (issue 12): keep the keyspace at or above what the miner can search by the
    /// deadline. From the newest challenge's difficulty, with at least 4 of the newest 10
    /// challenges at it: ≥ 90 % solved adds 1, and so does a newest challenge solved within a
    /// quarter of the timeout (a ten times larger keyspace likely still fits: new miners
    /// climb in a round per level); a round with 20 or more solves (about 10 keyspaces
    /// searched) climbs `⌊log10⌋` of the keyspaces estimated, one more when it was cut at
    /// the validator's most challenges per round; none solved of at least 6 removes 1. The
    /// score's work estimate (`10^d` per solve) is unbiased only while `10^d` is at least
    /// the hashes the miner does by the deadline; below that it is capped at `10^d`, and a
    /// machine split across hotkeys would be capped less (each part fills its own
    /// keyspace). B drops a miner a level as soon as a quarter of its challenges fail, i.e.
    /// into the capped regime; this rule stays while any meaningful share is solved and
    /// steps down only when solves vanish (where the cap costs less than a tenth).
    #[default]
    Work,
}

/// The difficulty of the next challenge for a miner with these statistics, in `[min, max]`.
pub fn next_difficulty(stats: &ChallengeStats, rule: AdaptRule, min: u8, max: u8) -> u8 {
    let (min, max) = (min.min(max), max.max(min));
    let current = if stats.successes == 0 { i32::from(min) } else { stats.last20_difficulty_avg.ceil() as i32 };
    let step = match rule {
        AdaptRule::A if stats.successes >= 20 => {
            if stats.last20_failed <= 1 {
                1
            } else if stats.last20_failed > 2 {
                -1
            } else {
                0
            }
        }
        AdaptRule::B if stats.successes > 4 => {
            let fail_rate = f64::from(stats.last20_failed) / RECENT as f64;
            if fail_rate < 0.1 {
                2
            } else if fail_rate < 0.2 {
                1
            } else if fail_rate > 0.25 {
                -1
            } else {
                0
            }
        }
        AdaptRule::Work => {
            if stats.attempts == 0 {
                return min;
            }
            let current = i32::from(stats.last_difficulty);
            let (n, solved) = (stats.at_last_attempts, stats.at_last_successes);
            let step = if stats.newest_solved_fast || (n >= 4 && f64::from(solved) >= 0.9 * f64::from(n)) {
                1
            } else if n >= 6 && solved == 0 {
                -1
            } else {
                0
            };
            // Many solves in one round: the keyspaces searched by the deadline, from the
            // renewal function (`2c − 1/3` solves for `c` keyspaces), say how many levels to
            // climb at once; a round cut at the validator's most challenges searched more.
            let keyspaces = (stats.newest_work / 10f64.powi(current) + 1.0 / 3.0) / 2.0;
            let levels = if keyspaces >= 10.0 { keyspaces.log10().floor() as i32 } else { 0 } + i32::from(stats.newest_capped);
            let step = if levels > 0 { step.max(levels) } else { step };
            return (current + step).clamp(i32::from(min), i32::from(max)) as u8;
        }
        _ => 0,
    };
    (current + step).clamp(i32::from(min), i32::from(max)) as u8
}

#[cfg(test)]
mod tests;
