//! The integration tests of `ganglion-compute`, as one test binary (one link instead of one per file).

mod common;
mod allocation;
mod bad_input;
mod e2e;
mod hashcat;
mod integrity;
mod restart;
mod sandbox;
