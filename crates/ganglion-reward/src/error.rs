//! The crate's error type. Failures of *miners* are not errors: a failed or bad completion
//! gets the reward the original gives it. Errors here are the validator's own trouble (its
//! models, its files, its configuration).

use std::path::PathBuf;

/// Result alias for [`RewardError`].
pub type Result<T> = std::result::Result<T, RewardError>;

/// What can go wrong in the reward pipeline itself.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// The sentence-embedding model is not installed where it was looked for.
    #[error(
        "sentence-embedding model not found at {path}: {reason}; install it with scripts/install-minilm"
    )]
    ModelMissing {
        /// The directory looked in.
        path: PathBuf,
        /// What was missing.
        reason: String,
    },
    /// The model's files are there but unusable (bad config, bad tensors).
    #[error("sentence-embedding model {path}: {reason}")]
    ModelInvalid {
        /// The model directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The reference model (engine) failed.
    #[error("engine: {0}")]
    Engine(#[from] ganglion_engine::EngineError),
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file operation failed.
    #[error("{what} {path}: {reason}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
