//! The inference subnet (Targon-style): miners serve OpenAI-compatible endpoints behind
//! Epistula; validators query them with seeded synthetic prompts, time the streams, verify
//! the output against their own model, score verified tokens per second and set weights.
//! `ganglion miner inference`, `ganglion validator inference` and `ganglion bench inference`
//! are thin wrappers over this crate (flags become the runtime's `Overrides`); `ganglion
//! localnet` runs those commands as processes and reads their `/status`.
//!
//! # Map
//! Everything every node shares — axon, metagraph sync, weight setting, the validator loop,
//! status, metrics, signals, configuration layering, state files, typed peer failures —
//! is the runtime's ([`ganglion_neuron`]); this crate holds only the subnet:
//! - [`miner`]: the proxy (Epistula, `X-Targon-Model` routing, per-caller and per-model
//!   limits, byte streaming) on the runtime's [`ganglion_neuron::axon::Axon`] (caller policy
//!   over the metagraph, `serve_axon`) and the TOML config ([`miner::MinerFile`]). The miner
//!   has no cheating modes: dishonest miners live in `ganglion-redteam`, as dishonest
//!   upstreams this unmodified miner proxies to.
//! - [`validator`]: [`validator::InferenceValidator`], the runtime's
//!   [`ganglion_neuron::validator::Validator`] (a step: models, sampling, targets, a round,
//!   scores; its status rows; its state), [`validator::round`] (one request to many miners,
//!   chain-free), the dendrite ([`validator::Dendrite`]), the TOML config.
//! - [`stream`]: the bounded SSE reader (bytes, lines, events, UTF-8, three deadlines).
//! - [`verify`]: structural checks and the two verifiers, [`verify::logprob`] and
//!   [`verify::ground_truth`], each failure with a typed [`cause::Cause`] (transport causes
//!   are the image of the runtime's [`ganglion_neuron::PeerFailure`]).
//! - [`reference`]: the validator's own model — the built-in engine in-process, or an
//!   OpenAI-compatible upstream with `prompt_logprobs`.
//! - [`jaro`]: standard Jaro/Jaro-Winkler (checked against `jellyfish`), the original's
//!   variant bug for bug, and the chunked ground-truth rule.
//! - [`scoring`]: windowed verified TPS per model, summed per miner (saved through the
//!   runtime's [`ganglion_neuron::state::StateFile`]).
//! - [`prompts`]: the shipped seed set of instructions, varied by the model.
//! - [`organic`]: the validator's own OpenAI endpoint for users.
//! - [`records`]: non-blocking writes into `ganglion-records`.
//! - [`openai`], [`bench`], [`error`].
//!
//! **Architecture invariant:** [`stream`], [`verify`], [`jaro`], [`scoring`] and
//! [`prompts`] know nothing of the chain or HTTP servers; [`validator::round`] knows no
//! chain; only [`miner`] and [`validator`] touch the [`ganglion_chain::Chain`] trait, and
//! only through the runtime.
//!
//! # Library API (for tests, benches and embedding)
//! ```text
//! // A miner: an upstream per model, a hotkey, a port. It stops when `shutdown` fires
//! // (SIGINT/SIGTERM with Shutdown::on_signal()) or on handle.shutdown(), draining streams.
//! let upstreams = miner::upstreams_from_url("http://127.0.0.1:8000/v1", None, 8, &ganglion_tls::ClientTls::system()).await?;
//! let mut config = MinerConfig::new(netuid, hotkey, "127.0.0.1:8091".parse()?, upstreams);
//! let miner: MinerHandle = miner::start(config, Some(chain.clone()), Some(shutdown.clone())).await?;
//! let status: NodeStatus = miner.status();            // role miner; details: models, active_streams
//!
//! // A validator: its reference model, then start (the runtime's loop in the background).
//! let reference: Arc<dyn Reference> = Arc::new(LocalReference::new(engine, "smollm2"));
//! let mut config = ValidatorConfig::new(netuid, hotkey, data_dir);
//! config.epoch_length = 20;
//! config.metrics_listen = Some("127.0.0.1:9100".parse()?);
//! let validator: ValidatorHandle = validator::start(config, chain, vec![reference], Some(shutdown)).await?;
//! let status: NodeStatus = validator.status();       // miners[]: score, weight, verified_share,
//!                                                    // last_failure, speed (tok/s), details
//! validator.wait().await;                            // or validator.shutdown().await
//! ```
//! Separate processes expose the same [`ganglion_neuron::NodeStatus`] as `GET /status` (on
//! the validator's metrics address; on the miner's axon for loopback callers) and as
//! `<data_dir>/status.json` (rewritten atomically after every step), next to `GET /metrics`.
//! Configuration files and flags: [`validator::ValidatorFile`] and [`miner::MinerFile`],
//! loaded with `ValidatorFile::load(file, &overrides)` / `MinerFile::load(file, &overrides)`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod cause;
pub mod error;
pub mod jaro;
pub mod miner;
pub mod openai;
pub mod organic;
pub mod prompts;
pub mod records;
pub mod reference;
pub mod scoring;
pub mod soundness;
pub mod stream;
pub mod validator;
pub mod verify;

pub use error::{InferenceError, Result};
