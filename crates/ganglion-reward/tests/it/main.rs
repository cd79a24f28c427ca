//! Integration tests of `ganglion-reward`, one binary.
#![allow(clippy::unwrap_used)]

mod common;
mod dpo;
mod embeddings;
mod events;
mod network;
mod pipeline;
mod worked;
