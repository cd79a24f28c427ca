//! The integration tests of `ganglion`, as one test binary (one link instead of one per file).

mod architecture;
mod bench_evaluation;
mod chain_kill;
mod config_files;
mod interop_wallet;
mod localnet;
mod logging;
mod model_pull_hf;
mod subtensor;
