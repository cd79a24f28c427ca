//! One module per command group; each exposes a clap type and a `run` function.

pub(crate) mod bench;
pub(crate) mod chain;
pub(crate) mod bench_engine;
pub(crate) mod bench_epistula;
pub(crate) mod engine;
pub(crate) mod wallet;
