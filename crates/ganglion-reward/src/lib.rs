//! The reward-pipeline subnet, after opentensor's openvalidators 1.2.0: validators send prompt
//! chains (augment, then follow-up questions and answers) to text-prompting miners — the
//! OpenAI-compatible inference miners of `ganglion-inference` — and score every completion
//! with a pipeline of reward functions and masks, normalised online, into a moving average
//! that becomes weights.
//!
//! # Map
//! - [`forward`]: one forward (augment, four follow-up/answer rounds), uid selection, the
//!   [`forward::Querier`] miners are asked through; events.
//! - [`validator`]: [`validator::RewardValidator`], the runtime's validator, and
//!   [`validator::MinerQuerier`] (signed, bounded queries to the inference miners).
//! - [`events`]: the event log in the records store and its export (jsonl, csv).
//! - [`pipeline`]: the [`pipeline::RewardModel`] trait, the functions behind it and their
//!   combination (weighted rewards × masks, best completion).
//! - [`dpo`]: the DPO reward on the engine; [`judge`]: the LLM judge in the RLHF slot.
//! - [`masks`]: task validator and blacklist; [`similarity`]: relevance and diversity.
//! - [`normalize`]: running normalisation and the moving average.
//! - [`embed`]: sentence embeddings (all-MiniLM-L6-v2, BERT in candle), checked against
//!   sentence-transformers.
//! - [`bench`]: the figures of `ganglion bench reward` (embedding throughput, one full
//!   forward's scoring time against an in-process querier).
//! - [`error`]: the typed error.
//!
//! **Architecture invariant:** the reward functions ([`pipeline`], [`dpo`], [`masks`],
//! [`similarity`], [`normalize`], [`embed`]) know nothing of the chain or HTTP; [`forward`]
//! knows no chain (miners are reached through [`forward::Querier`]); only [`validator`]
//! touches the metagraph, and only through the runtime.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod dpo;
pub mod embed;
pub mod error;
pub mod events;
pub mod forward;
pub mod judge;
pub mod masks;
pub mod normalize;
pub mod pipeline;
pub mod similarity;
pub mod validator;

pub use error::{Result, RewardError};
