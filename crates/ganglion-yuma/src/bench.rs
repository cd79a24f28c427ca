//! A seeded benchmark of one epoch on synthetic subnets with dense random weights.
//!
//! Each case builds a subnet of `uids` neurons in which the first `validators` uids hold
//! stake and permits and weight every other uid with random u16 values. One warm-up epoch
//! fills the bonds, then the timed epochs run on that steady state. The caller (the
//! `ganglion bench yuma` command) prints the numbers and measures memory; this module only
//! builds inputs and times [`crate::run_epoch`]. It uses no clock other than `Instant`.

use std::time::{Duration, Instant};

use crate::{EpochInput, EpochOutput, EpochParams, YumaError, run_epoch};

/// The sizes the issue asks for: 256, 1024 and 4096 uids with 64, 128 and 256 validators.
pub const DEFAULT_CASES: [(u16, u16); 9] = [
    (256, 64),
    (256, 128),
    (256, 256),
    (1024, 64),
    (1024, 128),
    (1024, 256),
    (4096, 64),
    (4096, 128),
    (4096, 256),
];

/// Which bonds path a benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondsMode {
    /// Classic EMA bonds (`Yuma3On = false`, the runtime default).
    Classic,
    /// Yuma3 with liquid alpha (what new subnets run when liquid alpha is switched on).
    Yuma3LiquidAlpha,
}

/// Timing of one benchmark case.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Number of uids.
    pub uids: u16,
    /// Number of validators setting weights.
    pub validators: u16,
    /// Bonds path.
    pub mode: BondsMode,
    /// Stored weight entries (validators × (uids − 1)).
    pub weight_entries: usize,
    /// Timed epochs.
    pub iterations: u32,
    /// Fastest epoch.
    pub min: Duration,
    /// Mean epoch.
    pub mean: Duration,
}

/// A synthetic subnet: owned per-uid state from which an [`EpochInput`] borrows.
#[derive(Debug, Clone)]
pub struct SyntheticSubnet {
    /// Subnet parameters (k = number of validators; bonds mode applied).
    pub params: EpochParams,
    /// Current block.
    pub current_block: u64,
    /// Stake per uid (rao).
    pub stake: Vec<u64>,
    /// Last weight update per uid.
    pub last_update: Vec<u64>,
    /// Registration block per uid.
    pub block_at_registration: Vec<u64>,
    /// Permits from the previous epoch.
    pub validator_permit: Vec<bool>,
    /// Stored weights.
    pub weights: Vec<Vec<(u16, u16)>>,
    /// Stored bonds.
    pub bonds: Vec<Vec<(u16, u16)>>,
}

impl SyntheticSubnet {
    /// Build a subnet of `uids` neurons whose first `validators` uids weight all others.
    /// `validators` is clamped to `uids`. The same seed gives the same subnet.
    pub fn new(uids: u16, validators: u16, mode: BondsMode, seed: u64) -> Self {
        let n = uids as usize;
        let v = validators.min(uids) as usize;
        let mut rng = SplitMix64(seed);
        let current_block = 10_000;
        let stake: Vec<u64> = (0..n)
            .map(|i| {
                if i < v {
                    1_000_000_000 + rng.next() % 1_000_000_000_000
                } else {
                    0
                }
            })
            .collect();
        let weights: Vec<Vec<(u16, u16)>> = (0..n)
            .map(|i| {
                if i >= v {
                    return Vec::new();
                }
                let raw: Vec<u16> = (0..n).map(|_| 1 + (rng.next() % 65_535) as u16).collect();
                let up = crate::math::vec_u16_max_upscale_to_u16(&raw);
                (0..n)
                    .filter(|j| *j != i)
                    .map(|j| (j as u16, up[j]))
                    .collect()
            })
            .collect();
        let mut params = EpochParams {
            max_allowed_validators: validators.min(uids),
            ..EpochParams::default()
        };
        if mode == BondsMode::Yuma3LiquidAlpha {
            params.yuma3 = true;
            params.liquid_alpha = true;
            params.bonds_penalty = 0;
        }
        Self {
            params,
            current_block,
            stake,
            last_update: vec![current_block - 1; n],
            block_at_registration: vec![1; n],
            validator_permit: (0..n).map(|i| i < v).collect(),
            weights,
            bonds: vec![Vec::new(); n],
        }
    }

    /// Borrow the state as epoch input.
    pub fn input(&self) -> EpochInput<'_> {
        EpochInput {
            current_block: self.current_block,
            last_tempo_block: self.current_block - 360,
            stake: &self.stake,
            last_update: &self.last_update,
            block_at_registration: &self.block_at_registration,
            validator_permit: &self.validator_permit,
            weights: &self.weights,
            bonds: &self.bonds,
            commit_blocks: None,
        }
    }

    /// Run one epoch and store its permits and bonds, as the chain would.
    pub fn step(&mut self, rao_emission: u64) -> Result<EpochOutput, YumaError> {
        let out = run_epoch(&self.params, &self.input(), rao_emission)?;
        self.validator_permit.clone_from(&out.new_validator_permit);
        self.bonds.clone_from(&out.new_bonds);
        Ok(out)
    }
}

/// Time `iterations` epochs (at least 1) of one case after a warm-up epoch that fills bonds.
pub fn bench_case(
    uids: u16,
    validators: u16,
    mode: BondsMode,
    iterations: u32,
    seed: u64,
) -> Result<BenchResult, YumaError> {
    let iterations = iterations.max(1);
    let mut subnet = SyntheticSubnet::new(uids, validators, mode, seed);
    subnet.step(1_000_000_000)?;
    let mut total = Duration::ZERO;
    let mut min = Duration::MAX;
    for _ in 0..iterations {
        let start = Instant::now();
        let out = run_epoch(&subnet.params, &subnet.input(), 1_000_000_000)?;
        let took = start.elapsed();
        std::hint::black_box(&out);
        total += took;
        min = min.min(took);
    }
    Ok(BenchResult {
        uids,
        validators,
        mode,
        weight_entries: subnet.weights.iter().map(Vec::len).sum(),
        iterations,
        min,
        mean: total / iterations,
    })
}

/// Run every case of [`DEFAULT_CASES`] in `mode`.
pub fn bench(mode: BondsMode, iterations: u32, seed: u64) -> Result<Vec<BenchResult>, YumaError> {
    DEFAULT_CASES
        .iter()
        .map(|&(u, v)| bench_case(u, v, mode, iterations, seed))
        .collect()
}

impl BondsMode {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Yuma3LiquidAlpha => "yuma3+liquid-alpha",
        }
    }
}

/// A plain-text table of results: one line per case with time per epoch and its growth
/// relative to the smallest case of the same mode.
pub fn render_table(results: &[BenchResult]) -> String {
    let mut out = String::from(
        "mode                 uids  validators  weights    min ms   mean ms  x smallest\n",
    );
    for r in results {
        let base = results
            .iter()
            .find(|b| b.mode == r.mode)
            .map_or(r.mean, |b| b.mean);
        let growth = r.mean.as_secs_f64() / base.as_secs_f64().max(f64::MIN_POSITIVE);
        out.push_str(&format!(
            "{:<19} {:>5} {:>11} {:>8} {:>9.3} {:>9.3} {:>11.1}\n",
            r.mode.name(),
            r.uids,
            r.validators,
            r.weight_entries,
            r.min.as_secs_f64() * 1e3,
            r.mean.as_secs_f64() * 1e3,
            growth,
        ));
    }
    out
}

/// The results as a JSON array (hand-written: the crate has no serde on purpose).
pub fn render_json(results: &[BenchResult]) -> String {
    let items: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{{\"mode\":\"{}\",\"uids\":{},\"validators\":{},\"weight_entries\":{},\"iterations\":{},\"min_ms\":{:.4},\"mean_ms\":{:.4}}}",
                r.mode.name(),
                r.uids,
                r.validators,
                r.weight_entries,
                r.iterations,
                r.min.as_secs_f64() * 1e3,
                r.mean.as_secs_f64() * 1e3
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// SplitMix64: a tiny seeded generator so the library needs no RNG dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_subnet_is_seeded_and_dense() {
        let a = SyntheticSubnet::new(64, 8, BondsMode::Classic, 7);
        let b = SyntheticSubnet::new(64, 8, BondsMode::Classic, 7);
        let c = SyntheticSubnet::new(64, 8, BondsMode::Classic, 8);
        assert_eq!(a.weights, b.weights);
        assert_ne!(a.weights, c.weights);
        assert_eq!(a.weights.iter().map(Vec::len).sum::<usize>(), 8 * 63);
        assert!(a.weights[8..].iter().all(Vec::is_empty));
        // Every validator row is max-upscaled: its largest value is 65535.
        for row in &a.weights[..8] {
            assert_eq!(row.iter().map(|(_, w)| *w).max(), Some(u16::MAX));
        }
    }

    #[test]
    fn bench_case_runs_both_modes_and_fills_bonds() {
        for mode in [BondsMode::Classic, BondsMode::Yuma3LiquidAlpha] {
            let mut s = SyntheticSubnet::new(32, 4, mode, 1);
            let out = s.step(1_000_000).expect("valid synthetic input");
            assert!(out.new_bonds[..4].iter().all(|r| !r.is_empty()), "{mode:?}");
            let r = bench_case(32, 4, mode, 2, 1).expect("valid synthetic input");
            assert_eq!(r.weight_entries, 4 * 31);
            assert!(r.min <= r.mean);
        }
    }
}
