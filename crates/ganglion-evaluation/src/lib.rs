//! `ganglion-evaluation`: the model-evaluation subnet (NousResearch's finetuning subnet and
//! macrocosm-os's pretraining/taoverse, re-created): miners publish a model directory and
//! commit its identity on chain; validators download it, check it, measure its loss on fresh
//! data and reward the best with win rates against every other model.
//!
//! - [`commitment`]: `namespace:name:commit:hash:competition_id` (≤ 128 bytes);
//! - [`data`]: fresh samples: verified inference records (unwanted phrases filtered) or the corpus;
//! - [`dirhash`]: the original's directory hash and its hotkey-bound variant;
//! - [`scoring`]: `iswin` with the time-advantage epsilon (fixed or linear decay), win
//!   rates, softmax, competition shares with an EMA, duplicates, retry rules;
//! - [`gguf`]: a bounded GGUF header reader and the model checks (architecture, parameter
//!   count, Frobenius norms of q/k/v/o/up/down per layer);
//! - [`loss`]: teacher-forced cross-entropy over response tokens on the engine;
//! - [`round`]: one competition round: duplicates, checks, losses, win rates;
//! - [`store`]: the model store trait, miner-served (Epistula HTTP) and Hugging Face Hub;
//! - [`miner`]: publish (hash + commit) and serve a model directory on the axon;
//! - [`train`]: the reference miner's work: fine-tune the last blocks on the evaluation
//!   domain and write a publishable model directory;
//! - [`validator`]: the validator on the neuron runtime (sync commitments, fetch, round,
//!   weights, records, state);
//! - [`demo`]: demo fixtures (a degraded copy of a model, a model directory) for
//!   `ganglion localnet --model-eval` and the tests.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod commitment;
pub mod data;
pub mod demo;
pub mod dirhash;
pub mod gguf;
pub mod loss;
pub mod miner;
pub mod round;
pub mod scoring;
pub mod store;
pub mod train;
pub mod validator;
