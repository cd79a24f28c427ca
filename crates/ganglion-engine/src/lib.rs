//! `ganglion-engine`: a deterministic CPU LLM engine with full logprobs and an
//! OpenAI-compatible server.
//!
//! Layers, inner to outer (each knows nothing about the ones after it):
//! - [`store`]: where model files live, `model pull`/`list` (no tensors);
//! - [`tokenizer`]: Hugging Face `tokenizers` built from GGUF metadata (byte-level BPE and
//!   SentencePiece, as llama.cpp reads them) or a `tokenizer.json`, and the chat template
//!   (no tensors);
//! - [`matvec`]: exact one-row products on 32-weight quantized blocks (decoding);
//! - [`model`]: the llama and Gemma 3 forwards over GGUF quantized weights with all-position logits and a
//!   reusable KV cache (no tokenizer, no sampling);
//! - [`hf_model`]: Hugging Face llama directories (safetensors, `config.json`, `tokenizer.json`)
//!   loaded into the same model, and written from a GGUF (`ganglion model export`);
//! - [`sampling`]: seeded, deterministic token selection;
//! - [`engine`]: generation and teacher-forced scoring, the API validators use (no HTTP);
//! - [`server`]: axum, OpenAI wire types, SSE, metrics; the only module that knows HTTP;
//! - [`bench`]: throughput measurements for `ganglion bench engine`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod distribution;
pub mod engine;
pub mod error;
pub mod hf_model;
mod kernels;
mod kv;
pub mod matvec;
pub mod model;
pub mod sampling;
pub mod server;
pub mod store;
pub mod tokenizer;

pub use engine::Engine;
pub use error::{EngineError, EngineResult};
