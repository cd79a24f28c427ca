//! The integration tests of `ganglion-inference`, as one test binary (one link instead of one per file).

mod common;
mod adversarial;
mod bad_input_load;
mod e2e;
mod jaro_reference;
mod miner_proxy;
mod model_sources;
mod records_store;
mod third_party;
mod tls;
mod validator_loop;
mod verify_engine;
