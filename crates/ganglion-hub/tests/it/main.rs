//! The integration tests of `ganglion-hub`, as one test binary (one link instead of one per file).

mod common;
mod api;
mod browser;
mod live;
mod tls;
