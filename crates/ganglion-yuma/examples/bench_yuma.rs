//! Times one Yuma epoch at 256/1024/4096 uids × 64/128/256 validators with dense random
//! weights (classic bonds, then Yuma3 with liquid alpha) and prints a table.
//!
//! Run: `cargo run --release -p ganglion-yuma --example bench_yuma [-- --json] [-- ITERATIONS]`

use ganglion_yuma::bench::{self, BondsMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut json = false;
    let mut iterations = 5;
    for arg in std::env::args().skip(1) {
        if arg == "--json" {
            json = true;
        } else {
            iterations = arg
                .parse()
                .map_err(|e| format!("expected --json or an iteration count, got {arg:?}: {e}"))?;
        }
    }
    let mut all = Vec::new();
    for mode in [BondsMode::Classic, BondsMode::Yuma3LiquidAlpha] {
        all.extend(bench::bench(mode, iterations, 42)?);
    }
    if json {
        println!("{}", bench::render_json(&all));
    } else {
        print!("{}", bench::render_table(&all));
    }
    Ok(())
}
