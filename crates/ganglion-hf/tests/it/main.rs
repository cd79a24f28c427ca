//! The integration tests of `ganglion-hf`, as one test binary: the client against the fake
#![allow(clippy::unwrap_used)]
//! hub (`testkit`), and the fake hub against Python's `huggingface_hub`.

mod client;
mod python_client;
mod support;
