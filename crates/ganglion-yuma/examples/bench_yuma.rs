//! Times one Yuma epoch at 256/1024/4096 uids × 64/128/256 validators with dense random
//! weights (classic bonds, then Yuma3 with liquid alpha) and prints a table.
//!
//! Run: `cargo run --release -p ganglion-yuma --example bench_yuma -- [--json]
//! [--iterations N] [--case UIDS VALIDATORS] [--mode classic|yuma3]`

use ganglion_yuma::bench::{self, BondsMode};

fn parse<T: std::str::FromStr>(arg: Option<String>, what: &str) -> Result<T, String> {
    let arg = arg.ok_or_else(|| format!("{what} is missing"))?;
    arg.parse()
        .map_err(|_| format!("{what}: cannot parse {arg:?}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut json = false;
    let mut iterations = 5;
    let mut case: Option<(u16, u16)> = None;
    let mut modes = vec![BondsMode::Classic, BondsMode::Yuma3LiquidAlpha];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--iterations" => iterations = parse(args.next(), "--iterations")?,
            "--mode" => {
                modes = match args.next().as_deref() {
                    Some("classic") => vec![BondsMode::Classic],
                    Some("yuma3") => vec![BondsMode::Yuma3LiquidAlpha],
                    other => {
                        return Err(format!("--mode takes classic or yuma3, got {other:?}").into());
                    }
                }
            }
            "--case" => {
                case = Some((
                    parse(args.next(), "uids")?,
                    parse(args.next(), "validators")?,
                ))
            }
            other => return Err(format!("unknown argument {other:?}; see the file header").into()),
        }
    }
    let mut all = Vec::new();
    for mode in modes {
        match case {
            Some((u, v)) => all.push(bench::bench_case(u, v, mode, iterations, 42)?),
            None => all.extend(bench::bench(mode, iterations, 42)?),
        }
    }
    if json {
        println!("{}", bench::render_json(&all));
    } else {
        print!("{}", bench::render_table(&all));
    }
    Ok(())
}
