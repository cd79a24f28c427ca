//! The integration tests of `ganglion-protocol`, as one test binary (one link instead of one per file).

mod interop_epistula;
mod layer;
