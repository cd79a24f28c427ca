//! The red team: dishonest miners and validators, each a real process that talks to real
//! validators on a local chain, and the runner that measures what each earns.
//!
//! Nothing here is linked into the binaries operators run (`ganglion`): the strategies live
//! in this crate and its own binary, `ganglion-redteam`; `ganglion redteam` and
//! `ganglion localnet --adversaries` start that binary as a child process.
//!
//! - [`inference`]: the inference strategies (`ganglion-redteam inference --strategy …`):
//!   dishonest upstreams behind the unmodified production miner, miner-level cheats
//!   wrapping it, and the `other-model` fixture.
//! - [`runner`]: `ganglion-redteam run`: a local chain, the real validators, honest miners
//!   of equal hardware and the chosen strategies for N epochs, then the table of reward
//!   shares, recorded causes and the honest false-positive rate.
//! - [`compute`], [`validators`]: the compute-subnet and validator strategies.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod compute;
pub mod error;
pub mod inference;
pub mod runner;
pub mod validators;

pub use error::{RedteamError, Result};
