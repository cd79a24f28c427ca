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
//! # Speed without drift
//! The outputs are the chain's to the bit; only the route differs. Without a trace and
//! with every stored row sorted by column (what the chain stores), [`run_epoch`] runs
//! steps 5-13 in a fused form (`epoch/fused.rs`) instead of one primitive per step:
//! - **Fewer passes, flat rows.** Masks, conversion and row normalisation are one pass;
//!   clipping, validator trust, ranks and the weights for bonds (classic: the bond delta)
//!   another; the EMA with its column sums and maxima a third; dividends and the stored rows
//!   a last one. Matrices are flat column and value arrays of raw `I32F32` bits, and each
//!   step writes over the storage of the one before, so one large allocation serves the
//!   epoch. Stored bonds are read in step with the weights row they belong to and
//!   normalised on the fly from column sums taken first.
//! - **The consensus table in cache-sized blocks.** The chain's dense column-major median
//!   table is built and consumed one block of columns (128 KiB) at a time.
//! - **The weighted median** keeps the chain's pivots (middle of each partition in uid
//!   order) but measures both sides first and then compacts only the side it keeps, without
//!   branches, with plain sums where normalised stakes cannot overflow.
//! - **Cheaper exact arithmetic.** Multiplication is one widening 64-bit product with an
//!   overflow check (substrate-fixed checks a 128-bit product); the generic 128-bit fixed
//!   division is an exact 128/64 long division and, for repeated divisors, a precomputed
//!   exact reciprocal with one branch-free formula for every positive divisor; `exp` is the
//!   same series on plain integers where it cannot overflow, stopping at the first zero term.
//! - **Liquid alpha** depends on the edge only through a clamped difference, whose two
//!   common values (0 and 1) are computed once. Otherwise the sigmoid's series is bracketed
//!   by one f64 polynomial evaluation with a proven error bound; as the rest of the curve is
//!   monotone, equal alphas at both ends of the bracket are the exact alpha, and the exact
//!   series runs only for the rare brackets that straddle a step.
//! - **Algebraic identities, each stated where used:** a clipped-away entry and an absent one
//!   give the same sums and classic EMA; the classic delta's column sums at bonds penalty 1
//!   are the ranks; the normalised EMA's column maxima are the normalised maxima.
//!
//! Each shortcut has a test that compares it bit for bit with the straightforward form:
//! `math::tests::ours_*` against substrate-fixed and the chain's primitives, and
//! `tests/reference.rs`, which recomputes random epochs (and the benchmark's subnets) the
//! chain's step-by-step way, in both bonds modes, with masks, zero weights and several
//! epochs of bonds fed back. With a trace, or with an unsorted row, the step-by-step form
//! runs (its own shortcuts: merges that touch only stored entries instead of the chain's
//! dense scratch rows and full liquid-alpha matrix, and moves instead of copies).
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
