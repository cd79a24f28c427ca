//! The inference subnet (Targon-style): miners serve OpenAI-compatible endpoints behind
//! Epistula; validators query them with seeded synthetic prompts, time the streams, verify
//! the output against their own model, score verified tokens per second and set weights.
//! `ganglion miner inference`, `ganglion validator inference` and `ganglion bench inference`
//! are thin wrappers over this crate; `ganglion localnet` builds on its library API (below).
//!
//! # Map
//! - [`miner`]: the proxy (Epistula, `X-Targon-Model` routing, per-caller and per-model
//!   limits, byte streaming), caller policy from the metagraph, axon serving, the TOML
//!   config ([`miner::MinerFile`]) and the demo [`miner::Adversary`] modes.
//! - [`validator`]: the loop (models, sampling, targets, rounds, scores, weights),
//!   [`validator::round`] (one request to many miners, chain-free), the dendrite
//!   ([`validator::Dendrite`]), status and metrics, the TOML config.
//! - [`stream`]: the bounded SSE reader (bytes, lines, events, UTF-8, three deadlines).
//! - [`verify`]: structural checks and the two verifiers, [`verify::logprob`] and
//!   [`verify::ground_truth`], each failure with a typed [`cause::Cause`].
//! - [`reference`]: the validator's own model — the built-in engine in-process, or an
//!   OpenAI-compatible upstream with `prompt_logprobs`.
//! - [`jaro`]: standard Jaro/Jaro-Winkler (checked against `jellyfish`), the original's
//!   variant bug for bug, and the chunked ground-truth rule.
//! - [`scoring`]: windowed verified TPS per model, summed per miner; JSON state.
//! - [`prompts`]: the shipped seed set of instructions, varied by the model.
//! - [`organic`]: the validator's own OpenAI endpoint for users.
//! - [`records`]: non-blocking writes into `ganglion-records`.
//! - [`openai`], [`metrics`], [`bench`], [`error`].
//!
//! **Architecture invariant:** [`stream`], [`verify`], [`jaro`], [`scoring`] and
//! [`prompts`] know nothing of the chain or HTTP servers; [`validator::round`] knows no
//! chain; only [`miner`] and [`validator`] touch the [`ganglion_chain::Chain`] trait.
//!
//! # Library API (for `ganglion localnet` and tests)
//! ```text
//! // A miner: an upstream per model, a hotkey, a port. Dropping the handle stops it.
//! let upstreams = miner::upstreams_from_url("http://127.0.0.1:8000/v1", None, 8).await?;
//! let mut config = MinerConfig::new(netuid, hotkey, "127.0.0.1:8091".parse()?, upstreams);
//! config.adversary = Some(Adversary::Slow { factor: 3.0, max_tps: None });  // demo only
//! let miner: MinerHandle = miner::start(config, Some(chain.clone())).await?;  // miner.addr()
//!
//! // A validator: its reference model, then start; status() is what /status serves.
//! let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine, "smollm2"));
//! let mut config = ValidatorConfig::new(netuid, hotkey, data_dir);
//! config.epoch_length = 20;
//! config.metrics_listen = Some("127.0.0.1:9100".parse()?);
//! let validator: ValidatorHandle = validator::start(config, chain, vec![reference]).await?;
//! let table: ValidatorStatus = validator.status();   // per uid: tps, verified %, score, weight
//! validator.shutdown().await;
//! ```
//! Separate processes expose the same [`validator::ValidatorStatus`] as `GET /status` on the
//! metrics address and as `<data_dir>/status.json` (rewritten atomically after every step).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod cause;
pub mod error;
pub mod jaro;
pub mod metrics;
pub mod miner;
pub mod openai;
pub mod organic;
pub mod prompts;
pub mod records;
pub mod reference;
pub mod scoring;
pub mod stream;
pub mod validator;
pub mod verify;

pub use error::{InferenceError, Result};
