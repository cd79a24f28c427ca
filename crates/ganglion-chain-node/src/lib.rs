//! Ganglion's local chain node: an embedded, persistent Bittensor-style chain that implements
//! the [`ganglion_chain::Chain`] trait in-process and serves it over HTTP/JSON + SSE.
//!
//! The API (the trait, its types, transactions, errors and the HTTP client `LocalChain`)
//! lives in `ganglion-chain`; this crate depends on it, never the reverse.
//!
//! # Map
//! - [`config`]: [`ServeConfig`], the TOML configuration of `ganglion chain serve`.
//! - [`state`]: the pure state machine: transaction checks (spec §2, §4), the simplified
//!   coinbase and epochs through `ganglion_yuma::run_epoch`.
//! - [`store`]: redb persistence; one write transaction per block.
//! - [`node`]: state + store + block loop; implements [`ganglion_chain::Chain`] in-process.
//! - [`http`]: the HTTP/JSON + SSE API and [`spawn_node`].
//! - `testkit` (feature `test-utils`): a subnet on an in-process node with N neurons, the
//!   shared fixture of the subnets' tests.
//!
//! **Architecture invariant:** `state` does no I/O and knows no clock; all durability lives
//! in `store`, all networking in `http`.

pub mod config;
pub mod http;
pub mod node;
pub mod state;
pub mod store;
#[cfg(feature = "test-utils")]
pub mod testkit;

pub use config::ServeConfig;
pub use http::{NodeHandle, spawn_node};
pub use node::{Node, NodeConfig};
pub use state::ChainConfig;
pub use store::StoreError;
