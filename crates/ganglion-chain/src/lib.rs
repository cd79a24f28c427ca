//! Ganglion's local chain: an embedded, persistent Bittensor-style chain and the [`Chain`]
//! trait that every miner and validator uses.
//!
//! # Map
//! - [`api`]: the [`Chain`] trait (object-safe; hold `Arc<dyn Chain>`), the types it returns
//!   (metagraph fields of spec/chain.md §3) and [`Metagraph`]. **API boundary.**
//! - [`tx`]: calls and the sr25519-signed transaction envelope (nonce + genesis hash).
//! - [`hyperparams`]: subnet hyperparameters with the originals' new-subnet defaults.
//! - [`state`]: the pure state machine: transaction checks (spec §2, §4), the simplified
//!   coinbase and epochs through `ganglion_yuma::run_epoch`.
//! - [`store`]: redb persistence; one write transaction per block.
//! - [`node`]: state + store + block loop; implements [`Chain`] in-process.
//! - [`http`]: the HTTP/JSON + SSE API and [`spawn_node`].
//! - [`client`]: [`LocalChain`], the [`Chain`] over HTTP.
//!
//! **Architecture invariant:** `state` does no I/O and knows no clock; all durability lives
//! in `store`, all networking in `http` and `client`.
//!
//! # Differences from subtensor (deliberate, documented)
//! - No dTAO: stake is TAO per (subnet, hotkey, coldkey); see [`state`] for the coinbase.
//! - Commit-reveal is off and not implemented (no drand beacon on a local chain).
//! - Loopback axon addresses are accepted (a local chain serves 127.0.0.1).
//! - Transactions are applied when accepted (so a rejection is immediate and names the
//!   failed check) and included in the next block; a rejected transaction consumes no nonce.

pub mod api;
pub mod client;
pub mod error;
pub mod http;
pub mod hyperparams;
pub mod node;
pub mod state;
pub mod store;
pub mod tx;

pub use api::{
    AccountId, AccountInfo, AxonInfo, BlockHeader, BlockStream, Chain, ChainInfo, Commitment, Metagraph, NeuronInfo,
    NeuronsSnapshot, RAO_PER_TAO, SubnetInfo, TxReceipt, u16_to_float,
};
pub use client::{LocalChain, resolve_network};
pub use error::{ChainError, ChainResult, TxError};
pub use http::{NodeHandle, spawn_node};
pub use hyperparams::{HyperparamUpdate, Hyperparams};
pub use node::{Node, NodeConfig};
pub use state::ChainConfig;
pub use tx::{Call, SignedTransaction};
