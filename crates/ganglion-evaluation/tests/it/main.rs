//! The integration tests of `ganglion-evaluation`, as one test binary.
#![allow(clippy::unwrap_used)]

mod interop_taoverse;
mod loss;
mod model_check;
mod round;
mod store;
mod train;
mod validator_e2e;
