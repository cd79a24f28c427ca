//! One module per command group; each exposes a clap type and a `run` function.

pub(crate) mod bench;
pub(crate) mod bench_engine;
pub(crate) mod bench_epistula;
pub(crate) mod bench_yuma;
pub(crate) mod chain;
pub(crate) mod compute;
pub(crate) mod engine;
pub(crate) mod hub;
pub(crate) mod inference;
pub(crate) mod localnet;
pub(crate) mod wallet;

/// `ganglion miner …`: one subcommand per subnet kind.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MinerCommand {
    /// Inference miner: Epistula-protected OpenAI endpoints routed to upstream LLM servers.
    Inference(inference::MinerArgs),
    /// Compute miner: hardware specs, hash challenges and sandboxed allocations.
    Compute(compute::MinerArgs),
}

/// `ganglion validator …`: one subcommand per subnet kind.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ValidatorCommand {
    /// Inference validator: query, time, verify and score miners; set weights.
    Inference(inference::ValidatorArgs),
    /// Compute validator: challenges, specs, scoring and weights.
    Compute(compute::ValidatorArgs),
}
