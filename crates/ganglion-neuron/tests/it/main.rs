//! The runtime against a real local chain (in-process node, over HTTP as a separate node
//! would reach it).
#![allow(clippy::unwrap_used)]

mod axon;
mod commit_reveal;
mod weights;
