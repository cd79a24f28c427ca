//! The subtensor backend's foundation: a client for a node of a real node-subtensor runtime
//! over [subxt](https://docs.rs/subxt) 0.51 (jsonrpsee WebSocket, dynamic API).
//!
//! - [`signer`]: our [`ganglion_core::keys::Keypair`] as a subxt signer (sr25519,
//!   `substrate` signing context, `MultiSignature::Sr25519`).
//! - [`calls`]: the runtime calls as dynamic payloads, shaped from the runtime's metadata
//!   (pallet and call indices are resolved from the metadata by name, never compiled in).
//! - [`client`]: [`Subtensor`] — connect (bounded), read storage (`Uids`, `Keys`, `Axons`,
//!   `Weights`, `NetworksAdded`, balances), submit and wait for inclusion (bounded), with
//!   the runtime's dispatch errors decoded by name ([`SubtensorError::Dispatch`]).
//!
//! Only the `ganglion` binary is to depend on this crate (the `Chain` trait in
//! `ganglion-chain` is the API; this is an implementation). What is tested, and against
//! which runtime: `tests/it/` (the live flow on the spec-218 runtime under chopsticks, the
//! call encodings offline against the spec-346 and spec-381 metadata).

pub mod calls;
pub mod chain;
pub mod client;
pub mod error;
pub mod signer;
#[cfg(feature = "test-utils")]
pub mod testkit;

pub use calls::{AxonEndpoint, Call};
pub use chain::{NETWORKS, SubtensorChain, network_endpoint};
pub use client::{Included, MORTAL_BLOCKS, Pending, RuntimeEvent, SignedTx, Subtensor, Timeouts};
pub use error::{SubtensorError, SubtensorResult};
pub use signer::KeypairSigner;

/// Re-exported so that callers can build call arguments ([`subxt::dynamic::Value`]) and read
/// metadata without depending on subxt themselves.
pub use subxt::{Metadata, dynamic::Value};
