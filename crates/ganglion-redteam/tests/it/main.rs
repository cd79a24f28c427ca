//! The integration tests of `ganglion-redteam`, as one test binary.

mod compute;
mod inference;
mod support;
mod validators;
