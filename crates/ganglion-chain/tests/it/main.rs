//! `ganglion-chain` against the reference implementations.
#![allow(clippy::unwrap_used)]

mod drand_timelock;
mod sdk_hash;
