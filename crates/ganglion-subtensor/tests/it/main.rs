//! The subtensor client's tests, one binary:
//! - `signing`: our keys as subxt signers, against subxt-signer's dev keys and verification;
//! - `encoding`: call encodings offline against the spec-346 and spec-381 metadata
//!   (`fixtures/subtensor/`);
//! - `live`: the real spec-218 runtime under chopsticks (`chopsticks` starts it): the whole
//!   flow read back from storage, and typed failures. Skipped when chopsticks is not
//!   installed (`scripts/install-chopsticks`), unless `GANGLION_REQUIRE_ALL=1`.

mod chopsticks;
mod encoding;
mod live;
mod signing;

use std::path::PathBuf;

/// `fixtures/subtensor/<name>` in the repository.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/subtensor")
        .join(name)
}
