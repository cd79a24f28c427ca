//! Bittensor-compatible identities: the byte-level ground everything else stands on.
//!
//! - [`ss58`]: SS58 addresses (prefix 42 by default) with verified checksums.
//! - [`keys`]: sr25519 keypairs with Substrate's signing context, BIP39 mnemonics and
//!   secret URIs (`//Alice//stash`, `/soft`, `///password`) derived exactly as Substrate does.
//! - [`keyfile`]: the Bittensor keyfile JSON and its `$NACL` encryption.
//! - [`clock`]: `now_ms`, the one wall-clock helper of the workspace.
//! - [`wallet`]: the `~/.bittensor/wallets/<name>/…` layout, with atomic 0600 writes.
//!
//! **Architecture invariant:** this crate does no network I/O and knows nothing about
//! HTTP, the chain or subnets. Its only file I/O is the wallet directory.

pub mod clock;
pub mod error;
pub mod fsutil;
pub mod keyfile;
pub mod keys;
pub mod password;
pub mod ss58;
pub mod wallet;

pub use error::{CoreError, CoreResult};
