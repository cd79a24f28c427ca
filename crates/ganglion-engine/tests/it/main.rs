//! The integration tests of `ganglion-engine`, as one test binary (one link instead of one per file).

mod common;
mod gemma3;
mod hf_model;
mod interop;
mod reference_forward;
mod server_http;
mod smollm2;
mod tokenizers;
