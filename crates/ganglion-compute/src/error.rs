//! The crate's error type. Every message says what was wrong and what to do about it.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ComputeError> = std::result::Result<T, E>;

/// Everything that can go wrong in the compute subnet.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// A field of a request or response is malformed or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field (wire name).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The solver stopped at the deadline without finding the password.
    #[error("no password found before the deadline ({searched} of {keyspace} candidates searched)")]
    DeadlineExceeded {
        /// Candidates tried.
        searched: u64,
        /// Size of the keyspace.
        keyspace: u64,
    },
    /// The whole keyspace was searched and nothing matched (the challenge is inconsistent).
    #[error("searched all {keyspace} candidates and none matches the hash: the challenge is not solvable")]
    Exhausted {
        /// Size of the keyspace.
        keyspace: u64,
    },
    /// The solver or the node is shutting down.
    #[error("cancelled: the node is shutting down")]
    Cancelled,
    /// hashcat is missing or failed.
    #[error("hashcat: {0}")]
    Hashcat(String),
    /// A file or process operation failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// On which path (or program).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The allocation sandbox cannot run on this machine or failed.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The request asks for more than this machine has (or has free).
    #[error("allocation refused: {resource} requested {requested}, this machine has {available}")]
    TooLarge {
        /// cpu, ram, disk or gpu.
        resource: &'static str,
        /// What was asked for.
        requested: String,
        /// What there is.
        available: String,
    },
    /// The machine is already reserved.
    #[error("allocation refused: this machine is already allocated until {until_ms} (Unix ms); try another miner")]
    Busy {
        /// When the current allocation expires.
        until_ms: u64,
    },
    /// No such allocation (unknown, ended or expired).
    #[error("no active allocation {0}: it is unknown, ended or expired")]
    UnknownAllocation(String),
    /// The caller is not the renter of the allocation.
    #[error("only the hotkey that made the reservation may change or end it")]
    NotRenter,
    /// A configuration value is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// Sealing or opening the access information failed.
    #[error("sealed access: {0}")]
    Seal(String),
    /// No miner of the subnet can take the reservation.
    #[error("no miner on subnet {netuid} can take this reservation: {reason}")]
    NoFit {
        /// The subnet.
        netuid: u16,
        /// Why (nothing fits, or what each fitting miner said).
        reason: String,
    },
    /// A peer answered with an error or something unexpected.
    #[error("peer {peer}: {reason}")]
    Peer {
        /// Which peer (URL or hotkey).
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// A call to a miner failed (typed: timeout, refusal, transport, …).
    #[error("calling a miner: {0}")]
    Call(#[from] ganglion_neuron::PeerFailure),
    /// The chain refused or could not be reached.
    #[error(transparent)]
    Chain(#[from] ganglion_chain::ChainError),
    /// The records store failed.
    #[error("records store: {0}")]
    Records(String),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A key could not be loaded or used.
    #[error(transparent)]
    Core(#[from] ganglion_core::CoreError),
}

impl ComputeError {
    /// An [`ComputeError::Invalid`] with a formatted reason.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> ComputeError {
        ComputeError::Invalid { field, reason: reason.into() }
    }

    /// An [`ComputeError::Io`].
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> ComputeError {
        ComputeError::Io { context, path: path.into(), source }
    }

    /// A stable machine-readable code for wire errors.
    pub fn code(&self) -> &'static str {
        match self {
            ComputeError::Invalid { .. } => "invalid",
            ComputeError::DeadlineExceeded { .. } => "deadline_exceeded",
            ComputeError::Exhausted { .. } => "exhausted",
            ComputeError::Cancelled => "cancelled",
            ComputeError::Hashcat(_) => "hashcat",
            ComputeError::Io { .. } => "io",
            ComputeError::Sandbox(_) => "sandbox",
            ComputeError::TooLarge { .. } => "too_large",
            ComputeError::Busy { .. } => "busy",
            ComputeError::UnknownAllocation(_) => "unknown_allocation",
            ComputeError::NotRenter => "not_renter",
            ComputeError::Config(_) => "config",
            ComputeError::Seal(_) => "seal",
            ComputeError::NoFit { .. } => "no_fit",
            ComputeError::Peer { .. } | ComputeError::Call(_) => "peer",
            ComputeError::Chain(_) => "chain",
            ComputeError::Records(_) => "records",
            ComputeError::Json(_) => "json",
            ComputeError::Core(_) => "key",
        }
    }
}
