//! Tail bounds for the verifier's sequential tests.
//!
//! Both statistics are sums of martingale differences with known conditional variance and a
//! known bound on each step (see [`super::logprob`]), so Freedman's inequality applies:
//! for `S = Σ Xᵢ` with `|Xᵢ| ≤ c` and predictable variance `V`,
//! `P(S ≥ t) ≤ exp(−t² / (2(V + c·t/3)))`. [`freedman_threshold`] inverts it. No normal
//! approximation and no tuning: the false-positive rate of each tail is at most its `alpha`.

use serde::{Deserialize, Serialize};

/// The smallest `t` with `exp(−t² / (2(v + c·t/3))) ≤ alpha`.
pub fn freedman_threshold(variance: f64, step_bound: f64, alpha: f64) -> f64 {
    let l = (1.0 / alpha.clamp(f64::MIN_POSITIVE, 1.0)).ln();
    let b = step_bound * l / 3.0;
    b + (b * b + 2.0 * variance.max(0.0) * l).sqrt()
}

/// Running sums of the two statistics for one sampler family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Stochastic positions seen.
    pub n: u64,
    /// `Σ (uᵢ − ½)`, `uᵢ` the randomized probability integral transform (each step in
    /// `[−½, ½]`, conditional variance exactly 1/12 under a fair draw).
    pub pit: f64,
    /// `Σ (ℓᵢ − E ℓᵢ)`, `ℓᵢ` the clipped log-probability of the token.
    pub loglik: f64,
    /// `Σ Var ℓᵢ`.
    pub loglik_var: f64,
}

/// Which way a statistic left its band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deviation {
    /// Tokens ranked too high: too predictable for the requested sampling (a lower
    /// temperature, a cached greedy answer).
    TooPredictable,
    /// Tokens ranked too low: too surprising (another model, noise).
    TooSurprising,
}

impl Evidence {
    /// Adds another run of evidence.
    pub fn add(&mut self, other: &Evidence) {
        self.n += other.n;
        self.pit += other.pit;
        self.loglik += other.loglik;
        self.loglik_var += other.loglik_var;
    }

    /// Tests both statistics, both tails, with `alpha` shared equally by the four tails
    /// (the loglik tails only when `loglik` is set). `None` when everything is in its band.
    pub fn test(&self, alpha: f64, loglik_clip: f64, loglik: bool) -> Option<(Deviation, String)> {
        if self.n == 0 {
            return None;
        }
        let tails = if loglik { 4.0 } else { 2.0 };
        let a = alpha / tails;
        let t_pit = freedman_threshold(self.n as f64 / 12.0, 0.5, a);
        if self.pit <= -t_pit {
            return Some((Deviation::TooPredictable, format!("rank statistic {:.1} over {} tokens, below −{t_pit:.1}", self.pit, self.n)));
        }
        if self.pit >= t_pit {
            return Some((Deviation::TooSurprising, format!("rank statistic {:.1} over {} tokens, above {t_pit:.1}", self.pit, self.n)));
        }
        if loglik {
            let t_ll = freedman_threshold(self.loglik_var, loglik_clip, a);
            if self.loglik >= t_ll {
                return Some((Deviation::TooPredictable, format!("log-likelihood {:+.1} nats above a fair draw's over {} tokens (band ±{t_ll:.1})", self.loglik, self.n)));
            }
            if self.loglik <= -t_ll {
                return Some((Deviation::TooSurprising, format!("log-likelihood {:+.1} nats below a fair draw's over {} tokens (band ±{t_ll:.1})", self.loglik, self.n)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn threshold_inverts_the_bound() {
        for (v, c, a) in [(10.0, 0.5, 1e-4), (1000.0, 12.0, 1e-6), (0.0, 1.0, 0.01)] {
            let t = freedman_threshold(v, c, a);
            let bound = (-t * t / (2.0 * (v + c * t / 3.0))).exp();
            assert!((bound - a).abs() / a < 1e-9, "{v} {c} {a}: {bound}");
        }
    }

    #[test]
    fn uniform_sums_stay_inside_and_shifted_ones_leave() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut rejected = 0;
        for _ in 0..2000 {
            let n = 100;
            let pit: f64 = (0..n).map(|_| rng.r#gen::<f64>() - 0.5).sum();
            let e = Evidence { n, pit, loglik: 0.0, loglik_var: 0.0 };
            rejected += usize::from(e.test(0.01, 12.0, false).is_some());
        }
        assert!(rejected <= 20 * 2, "fair: {rejected} of 2000 rejected at alpha 1%");
        // u ~ U(0, 0.6): what replaying a greedy answer looks like.
        let pit: f64 = (0..200).map(|_| rng.r#gen::<f64>() * 0.6 - 0.5).sum();
        let e = Evidence { n: 200, pit, loglik: 0.0, loglik_var: 0.0 };
        assert_eq!(e.test(1e-4, 12.0, false).map(|d| d.0), Some(Deviation::TooPredictable));
    }
}
