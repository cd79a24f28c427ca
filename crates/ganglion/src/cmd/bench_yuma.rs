//! `ganglion bench yuma`: one Yuma Consensus epoch at 256, 1024 and 4096 uids with 64, 128
//! and 256 validators setting dense random (seeded) weights, for classic bonds and for Yuma3
//! with liquid alpha; prints time per epoch and growth relative to the smallest case.
//! The workload and timing live in `ganglion_yuma::bench`; this file only prints.

use ganglion_yuma::bench::{self, BondsMode};

/// Timed epochs per case (after one warm-up epoch that fills the bonds).
const ITERATIONS: u32 = 5;
/// RNG seed for the synthetic subnets, so runs are comparable.
const SEED: u64 = 42;

/// Run every case and print a table, or a JSON array when `json` is set.
pub(crate) fn run(json: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for mode in [BondsMode::Classic, BondsMode::Yuma3LiquidAlpha] {
        results.extend(bench::bench(mode, ITERATIONS, SEED)?);
    }
    if json {
        println!("{}", bench::render_json(&results));
    } else {
        print!("{}", bench::render_table(&results));
    }
    Ok(())
}
