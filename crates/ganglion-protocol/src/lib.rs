//! Authenticated requests between nodes.
//!
//! - [`epistula`]: Epistula v2, the signed-HTTP scheme Targon and other subnets use:
//!   signing outgoing `reqwest` requests and an axum layer that verifies incoming ones
//!   (freshness window in both directions, bounded UUID replay cache, body limit).
//! - [`policy`]: who may call — registered, minimum stake, validator permit, hotkey and
//!   coldkey black/whitelists — answered from a [`policy::CallerDirectory`] that the
//!   subnets fill from the metagraph.
//!
//! **Architecture invariant:** this crate knows nothing about the chain; it sees callers
//! only through the `CallerDirectory` trait.

pub mod epistula;
pub mod policy;
mod replay;

pub use replay::ReplayCache;
