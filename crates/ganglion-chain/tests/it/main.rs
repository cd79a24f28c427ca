//! `ganglion-chain` against the reference implementations.
#![allow(clippy::unwrap_used)]

mod sdk_hash;
