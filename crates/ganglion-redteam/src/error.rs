//! Typed errors of the red-team library (the binary's edges use `anyhow`).

use std::path::PathBuf;

/// What can go wrong running a strategy or building its fixtures.
#[derive(Debug, thiserror::Error)]
pub enum RedteamError {
    /// A file or socket operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The HTTP client could not be built or a request failed.
    #[error("http: {0}")]
    Http(String),
    /// The model file could not be read, changed or written.
    #[error("model fixture {path}: {message}")]
    Fixture {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The engine failed (loading a model, starting its server).
    #[error(transparent)]
    Engine(#[from] ganglion_engine::EngineError),
    /// The production miner failed to start.
    #[error(transparent)]
    Miner(#[from] ganglion_inference::InferenceError),
    /// A wallet could not be loaded.
    #[error(transparent)]
    Wallet(#[from] ganglion_core::CoreError),
    /// The chain refused or failed a call.
    #[error(transparent)]
    Chain(#[from] ganglion_chain::ChainError),
    /// A setting is out of range or missing.
    #[error("{0}")]
    Config(String),
}

/// The library's result type.
pub type Result<T, E = RedteamError> = std::result::Result<T, E>;
