//! The integration tests of `ganglion-records`, as one test binary (one link instead of one per file).

#[macro_use]
mod common;
mod evaluation;
mod feed;
mod open;
mod pages;
mod rollup;
mod store;
mod tls;
