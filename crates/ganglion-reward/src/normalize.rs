//! Running normalisation of a reward function's raw rewards (openvalidators'
//! `BaseRewardModel.normalize_rewards`) and the validator's moving average of scores.
//!
//! The batch's mean m and unbiased variance v over the n successful completions are merged
//! into the stored (μ, σ², N) with w_new = n/(N+n), w_old = N/(N+n):
//! μ ← w_new·m + w_old·μ; σ² ← w_new·v + w_old·σ² + w_new·w_old·(m−μ_old)²;
//! N ← min(3000, N+n). Each reward is standardised with them and mapped through the normal
//! CDF, 0.5·(1 + erf(z/√2)); with σ² = 0 it is only centred.
//!
//! One departure, a fix: the original takes `torch.var` of a batch of one, which is NaN, and
//! the NaN then sits in σ² for ever (every later reward is only centred). Here the variance of
//! a single reward is 0.

use serde::{Deserialize, Serialize};

/// The original's `count_limit`.
pub const COUNT_LIMIT: u64 = 3000;
/// The original's `moving_average_alpha`.
pub const MOVING_AVERAGE_ALPHA: f64 = 0.05;

/// The running statistics of one reward function (saved with the validator's state).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct RunningNormalizer {
    /// Running mean μ.
    pub mean: f64,
    /// Running variance σ².
    pub var: f64,
    /// Rewards merged so far, capped at [`COUNT_LIMIT`].
    pub count: u64,
}

impl RunningNormalizer {
    /// Merges `rewards` into the statistics, then returns them normalised to [0, 1].
    pub fn normalize(&mut self, rewards: &[f64]) -> Vec<f64> {
        let n = rewards.len();
        if n > 0 {
            let new_mean = rewards.iter().sum::<f64>() / n as f64;
            let new_var = if n > 1 {
                rewards.iter().map(|r| (r - new_mean).powi(2)).sum::<f64>() / (n - 1) as f64
            } else {
                0.0
            };
            let total = self.count as f64 + n as f64;
            let new_weight = n as f64 / total;
            let old_weight = self.count as f64 / total;
            let diff = new_mean - self.mean;
            self.mean = new_weight * new_mean + old_weight * self.mean;
            self.var = new_weight * new_var
                + old_weight * self.var
                + new_weight * old_weight * diff * diff;
            self.count = COUNT_LIMIT.min(self.count + n as u64);
        }
        let sd = (self.var > 0.0).then(|| self.var.sqrt());
        rewards
            .iter()
            .map(|r| {
                let z = match sd {
                    Some(sd) => (r - self.mean) / sd,
                    None => r - self.mean,
                };
                normal_cdf(z)
            })
            .collect()
    }
}

/// The standard normal CDF, 0.5·(1 + erf(z/√2)).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// The error function (`libm`'s, a port of FreeBSD's msun `erf`, within 1 ulp).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// The validator's per-uid scores: a queried uid's score becomes α·r + (1−α)·old, others are
/// unchanged (the original scatters the step's rewards into a copy of the scores and mixes).
pub fn moving_average(scores: &mut [f64], uids: &[u16], rewards: &[f64], alpha: f64) {
    for (&uid, &reward) in uids.iter().zip(rewards) {
        if let Some(score) = scores.get_mut(usize::from(uid)) {
            let r = if reward.is_finite() { reward } else { 0.0 };
            *score = alpha * r + (1.0 - alpha) * *score;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun table 7.1 / mpmath.
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (5.0, 0.999_999_999_998_462_5),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!(
                (erf(x) - want).abs() < 1e-15,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
        assert!(erf(f64::NAN).is_nan());
        assert_eq!(erf(f64::INFINITY), 1.0);
    }
}
