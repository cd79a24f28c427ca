//! Bit-exact Yuma Consensus: subtensor's sparse epoch and weight rules as pure functions.
//!
//! # What is here
//! - [`run_epoch`] / [`run_epoch_traced`]: one epoch of a subnet (subtensor's
//!   `epoch_mechanism`, `spec/chain.md` §1.2), from [`EpochParams`] and [`EpochInput`] to the
//!   [`EpochOutput`] the chain stores.
//! - [`weights`]: the SDK's float → u16 conversion and the chain's `set_weights` checks, with
//!   errors named after the chain's (`DuplicateUids`, `MaxWeightExceeded`, …).
//! - [`math`]: the fixed-point primitives, public so tests and tools can reproduce any step.
//! - [`mod@bench`]: a seeded, dense-weights timing of the epoch at several sizes.
//!
//! # Numerics
//! Values are `substrate_fixed` `I32F32` (i64 raw, 32 fractional bits), exactly as on chain:
//! multiplication floors, division is `(a << 32) / b` with division by zero giving 0
//! (`safe_div`), additions saturate, float → fixed rounds to nearest, fixed → integer
//! truncates. Stake is normalised in `I64F64` before narrowing; emission is `I96F32`.
//! `exp` is substrate-fixed's own series, so liquid alpha matches. Tie rules matter and are
//! kept: the top-k permit sort is stable ascending (equal stake ⇒ lower uid loses), and the
//! weighted median pivots on the middle element of each partition in uid order.
//!
//! Speed without drift: the chain's quadratic helpers (dense scratch rows, a full liquid-alpha
//! matrix) are replaced by merges that touch only stored entries; the generic 128-bit fixed
//! division is replaced by an exact 128/64 long division and, for repeated divisors, a
//! precomputed exact reciprocal; `exp` is the same series with constant divisors; masks are
//! fused into one pass and large matrices are moved instead of copied when no trace is asked
//! for. Each shortcut has a test that compares it bit for bit with the straightforward form
//! (`tests/reference.rs` recomputes whole random epochs the chain's step-by-step way).
//!
//! # Tests that pin the numbers
//! `epoch::tests::test_bonds` (every intermediate vector of subtensor's `test_bonds`),
//! `tests/scenarios.rs` (`test_1_graph`, `test_10_graph`, `test_512_graph`,
//! `test_active_stake`, `test_outdated_weights`, `test_zero_weights`,
//! `test_validator_permits`), `tests/yuma3.rs` (the `test_yuma_3_*` tables, 1e-3) and
//! `math::tests` (subtensor's `tests/math.rs` values for the functions here).
//!
//! # Deliberately absent
//! No I/O, no storage, no clock, no hotkeys, no serde on the core types (wire formats belong
//! to the crates that own a wire). Commit-reveal masking takes precomputed commit blocks
//! (`EpochInput::commit_blocks`) but the crate does not decide which commits are live. The
//! coinbase (owner cut, root split, delegate take) is the caller's; the epoch returns server
//! and validator emission as the chain's epoch does. Rank, trust and pruning score were
//! removed from subtensor in v3.3.10 and are not computed.

pub mod bench;
mod epoch;
mod error;
pub mod math;
pub mod weights;

pub use epoch::{EpochInput, EpochOutput, EpochParams, EpochTrace, run_epoch, run_epoch_traced};
pub use error::YumaError;
pub use substrate_fixed::types::{I32F32, I64F64, I96F32};
