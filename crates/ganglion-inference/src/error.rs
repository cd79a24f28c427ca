//! The crate's error type. Failures of *miners* are not errors: they are
//! [`crate::cause::Failure`]s recorded against the miner. Errors here are the node's own
//! trouble (configuration, the chain, its own model, its files).

use std::path::PathBuf;

/// Result alias for [`InferenceError`].
pub type Result<T> = std::result::Result<T, InferenceError>;

/// What can go wrong for a miner or validator node itself.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration (file, flags, env) could not be read or does not fit.
    #[error(transparent)]
    Settings(#[from] ganglion_neuron::config::ConfigError),
    /// The axon could not be set up.
    #[error(transparent)]
    Axon(#[from] ganglion_neuron::axon::AxonError),
    /// The score state could not be read or written.
    #[error(transparent)]
    State(#[from] ganglion_neuron::state::StateError),
    /// The chain refused or could not be reached.
    #[error("chain: {0}")]
    Chain(#[from] ganglion_chain::ChainError),
    /// The validator's own model (engine or upstream) failed.
    #[error("reference model: {0}")]
    Reference(String),
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
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {reason}; pick another port")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The records store failed to open.
    #[error("records store: {0}")]
    Records(String),
    /// An HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
    /// A TLS file (`--tls.ca_file`, `--tls.cert`, `--tls.key`) that cannot be used.
    #[error("TLS configuration: {0}")]
    Tls(#[from] ganglion_tls::TlsError),
}

impl InferenceError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, err: impl std::fmt::Display) -> InferenceError {
        InferenceError::Io { what, path: path.into(), reason: err.to_string() }
    }
}

impl From<ganglion_engine::EngineError> for InferenceError {
    fn from(err: ganglion_engine::EngineError) -> Self {
        InferenceError::Reference(err.to_string())
    }
}
