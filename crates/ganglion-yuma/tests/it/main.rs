//! The integration tests of `ganglion-yuma`, as one test binary (one link instead of one per file).

mod reference;
mod scenarios;
mod sdk_weights;
mod yuma3;
