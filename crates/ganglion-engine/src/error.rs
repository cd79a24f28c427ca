//! The engine's typed errors. Every message says what went wrong and what to do about it.
//!
//! This module knows nothing about HTTP: the server maps these errors to status codes itself.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type EngineResult<T> = Result<T, EngineError>;

/// Everything that can go wrong while loading, tokenizing, running or fetching a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}; check that the path exists and is readable/writable")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The GGUF file is truncated, corrupt or not a GGUF at all.
    #[error("{path} is not a valid GGUF model ({reason}); re-download it with `ganglion model pull` or pass another --model")]
    CorruptModel {
        /// The model file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A Hugging Face model directory (`config.json`, safetensors, `tokenizer.json`) that is
    /// incomplete, truncated or inconsistent.
    #[error("{path} is not a valid Hugging Face model directory ({reason})")]
    CorruptDirectory {
        /// The directory, or the file in it that was wrong.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The model is valid but describes one this engine cannot run.
    #[error("unsupported model: {0}; supported are GGUF files of the llama and gemma3 architectures with gpt2 (byte-level BPE) or llama (SentencePiece) tokenizers, and Hugging Face llama directories (safetensors in f32, f16 or bf16 with a tokenizer.json)")]
    Unsupported(String),
    /// The GGUF's `general.architecture` is not one this engine runs.
    #[error("{path}: architecture `{architecture}` is not supported; this engine runs `llama` and `gemma3` GGUF files")]
    UnsupportedArchitecture {
        /// The model file.
        path: PathBuf,
        /// Its `general.architecture`.
        architecture: String,
    },
    /// A model name was given that is neither a known name nor an existing file.
    #[error("model `{name}` not found in {dir}; run `ganglion model pull {name}` or pass a path to a .gguf file")]
    ModelNotFound {
        /// The name that was asked for.
        name: String,
        /// The models directory that was searched.
        dir: PathBuf,
    },
    /// A name was given to `pull` that the engine does not know how to fetch.
    #[error("unknown model `{0}`; known models: smollm2, gemma3-270m (or pass a .gguf path to --model)")]
    UnknownModelName(String),
    /// Fetching a model failed.
    #[error("model download failed: {0}")]
    Pull(String),
    /// The downloaded file does not have the expected SHA-256.
    #[error("checksum mismatch for {path}: expected {expected}, got {actual}; the file was deleted, run the pull again")]
    Checksum {
        /// The file that was checked.
        path: PathBuf,
        /// The committed SHA-256.
        expected: String,
        /// The SHA-256 of the downloaded bytes.
        actual: String,
    },
    /// The prompt plus the requested completion does not fit in the context window.
    #[error("this model's maximum context length is {limit} tokens, but {requested} tokens were requested ({prompt} in the prompt); shorten the prompt or lower max_tokens")]
    ContextOverflow {
        /// The model's context length.
        limit: usize,
        /// Prompt plus completion tokens.
        requested: usize,
        /// Prompt tokens alone.
        prompt: usize,
    },
    /// A caller passed an invalid argument (empty prompt, token id out of range, bad sampling value).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// The chat template in the model could not be rendered.
    #[error("cannot apply the model's chat template: {0}; check the message roles and contents")]
    Template(String),
    /// Another sequence's failure ended the batched decode step this one was part of.
    #[error("the batched decode step this request shared failed: {0}")]
    BatchStep(String),
    /// A tensor operation failed; this points to a bug or an inconsistent model file.
    #[error("tensor computation failed: {0}; the model file may be inconsistent, try re-pulling it")]
    Tensor(#[from] candle_core::Error),
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
