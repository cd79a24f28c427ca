//! The subtensor client's tests, one binary:
//! - `signing`: our keys as subxt signers, against subxt-signer's dev keys and verification;
//! - `encoding`: call encodings offline against the spec-346 and spec-381 metadata
//!   (`fixtures/subtensor/`);
//! - `live`: the real spec-218 runtime under chopsticks (`ganglion_subtensor::testkit`
//!   starts it): the whole flow read back from storage, and typed failures;
//! - `chain`: the `Chain` trait over that runtime, every query and call the nodes make.
//!
//! The live ones are skipped when chopsticks is not installed
//! (`scripts/install-chopsticks`), unless `GANGLION_REQUIRE_ALL=1`.

mod chain;
mod encoding;
mod live;
mod signing;

pub(crate) use ganglion_subtensor::testkit::fixture;
