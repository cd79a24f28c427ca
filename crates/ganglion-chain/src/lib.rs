//! Ganglion's chain API: the [`Chain`] trait that every miner and validator uses, the types it
//! returns, signed transactions, and [`LocalChain`], the trait over a node's HTTP API.
//!
//! The node itself (state machine, redb store, block loop, HTTP server) lives in
//! `ganglion-chain-node`, which depends on this crate; subnets depend on this crate only, so
//! they compile neither redb nor the node's server.
//!
//! # Map
//! - [`api`]: the [`Chain`] trait (object-safe; hold `Arc<dyn Chain>`), the types it returns
//!   (metagraph fields of spec/chain.md §3), [`Metagraph`] and chain-wide constants
//!   ([`RAO_PER_TAO`], [`MAX_COMMITMENT_BYTES`]). **API boundary.**
//! - [`tx`]: calls and the sr25519-signed transaction envelope (nonce + genesis hash).
//! - [`hyperparams`]: subnet hyperparameters with the originals' new-subnet defaults.
//! - [`commit_reveal`]: hash-based weight commit-reveal (subtensor's v1): the SDK's
//!   `generate_weight_hash`, the rules, [`WeightCommit`].
//! - [`timelock`]: drand-timelocked weight commits (subtensor's commit-reveal v3,
//!   `commit_timelocked_weights`), byte-compatible with `bittensor-drand`.
//! - [`error`]: [`TxError`] (the chain's refusal reasons), [`ChainError`], and the HTTP
//!   error body shared with the node.
//! - [`client`]: [`LocalChain`], the [`Chain`] over HTTP, and [`resolve_network`].
//!
//! # Differences from subtensor (deliberate, documented)
//! - No dTAO: stake is TAO per (subnet, hotkey, coldkey); see `ganglion_chain_node::state`
//!   for the coinbase.
//! - Commit-reveal is the hash-based one (subtensor's v1: commit a hash, reveal after
//!   `commit_reveal_period` epochs), not the drand-timelocked v3 (no beacon on a local chain);
//!   off by default.
//! - Loopback axon addresses are accepted (a local chain serves 127.0.0.1).
//! - Transactions are applied when accepted (so a rejection is immediate and names the
//!   failed check) and included in the next block; a rejected transaction consumes no nonce.

pub mod api;
pub mod client;
pub mod commit_reveal;
pub mod error;
pub mod hyperparams;
pub mod timelock;
pub mod tx;

pub use api::{
    AccountId, AccountInfo, AxonInfo, BlockHeader, BlockStream, Chain, ChainInfo, Commitment, MAX_COMMITMENT_BYTES, Metagraph,
    NeuronInfo, NeuronsSnapshot, RAO_PER_TAO, SubnetInfo, TxReceipt, u16_to_float,
};
pub use client::{LocalChain, resolve_network};
pub use commit_reveal::{WeightCommit, weight_hash};
pub use error::{ChainError, ChainResult, TxError};
pub use hyperparams::{HyperparamUpdate, Hyperparams};
pub use tx::{Call, SignedTransaction};
