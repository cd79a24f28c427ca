//! Errors: [`TxError`] (why the chain refused a transaction, named after subtensor's errors)
//! and [`ChainError`] (what a [`crate::Chain`] caller sees, including transport failures).

use ganglion_yuma::weights::WeightsError;

/// Result alias for [`ChainError`].
pub type ChainResult<T> = Result<T, ChainError>;

/// What a caller of [`crate::Chain`] can get back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainError {
    /// The chain refused the transaction or query. `name` is the chain's error name
    /// (`SettingWeightsTooFast`, `NotEnoughStake`, …), `message` a one-line explanation.
    #[error("{name}: {message}")]
    Rejected {
        /// The chain's error name.
        name: String,
        /// One-line explanation with what to do.
        message: String,
    },
    /// The chain could not be reached or the connection broke.
    #[error("cannot reach the chain at {url}: {reason}; {}", transport_hint(.url))]
    Transport {
        /// Endpoint.
        url: String,
        /// Underlying error.
        reason: String,
    },
    /// The chain answered something this client does not understand.
    #[error("unexpected answer from the chain: {0}; check that client and node versions match")]
    Protocol(String),
    /// The local node failed internally (storage).
    #[error("chain node failure: {0}")]
    Node(String),
}

/// What to check when a chain cannot be reached, by the kind of endpoint.
fn transport_hint(url: &str) -> &'static str {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        "check the subtensor endpoint (--subtensor.network, --subtensor.chain_endpoint) and that the node is up and reachable from here"
    } else {
        "is `ganglion chain serve` running there?"
    }
}

impl ChainError {
    /// The chain error name, if this is a rejection.
    pub fn name(&self) -> Option<&str> {
        match self {
            ChainError::Rejected { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl From<TxError> for ChainError {
    fn from(err: TxError) -> Self {
        let name = err.name();
        let full = err.to_string();
        let message = full.strip_prefix(name).and_then(|m| m.strip_prefix(": ")).unwrap_or(&full).to_string();
        ChainError::Rejected { name: name.to_string(), message }
    }
}

/// Why the chain refused a transaction. Display is `Name: explanation`; [`TxError::name`]
/// gives the bare name. State is unchanged whenever one of these is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TxError {
    /// The transaction body could not be decoded.
    #[error("Malformed: {0}")]
    Malformed(String),
    /// Signature invalid, or signed for another chain (genesis hash).
    #[error("BadProof: the signature does not verify for the signer over this chain's genesis hash; sign with the right key for this chain")]
    BadProof,
    /// Nonce already used.
    #[error("Stale: nonce {got} was already used (next is {expected}); re-read the account nonce and sign again")]
    Stale {
        /// Nonce sent.
        got: u64,
        /// Expected nonce.
        expected: u64,
    },
    /// Nonce ahead of the account's.
    #[error("Future: nonce {got} is ahead of the account's next nonce {expected}; send transactions in nonce order")]
    Future {
        /// Nonce sent.
        got: u64,
        /// Expected nonce.
        expected: u64,
    },
    /// Subnet does not exist.
    #[error("SubnetNotExists: subnet {0} does not exist; see `ganglion subnet list`")]
    SubnetNotExists(u16),
    /// The netuid asked for is taken or reserved.
    #[error("NetuidInUse: netuid {0} is taken or reserved (0 is root); omit it to get the next free one")]
    NetuidInUse(u16),
    /// No more subnets allowed.
    #[error("SubnetLimitReached: the chain already has {0} subnets")]
    SubnetLimitReached(usize),
    /// Not the subnet owner.
    #[error("NotSubnetOwner: only the owner coldkey of subnet {0} may do this")]
    NotSubnetOwner(u16),
    /// Coldkey cannot pay.
    #[error("NotEnoughBalanceToStake: balance {balance} rao is below the {needed} rao needed; fund the coldkey (e.g. `ganglion faucet`)")]
    NotEnoughBalanceToStake {
        /// Free balance.
        balance: u64,
        /// Amount needed.
        needed: u64,
    },
    /// Transfer exceeds the balance.
    #[error("InsufficientBalance: balance {balance} rao is below the {needed} rao to transfer")]
    InsufficientBalance {
        /// Free balance.
        balance: u64,
        /// Amount asked.
        needed: u64,
    },
    /// Not enough stake to remove.
    #[error("NotEnoughStakeToWithdraw: this coldkey has {stake} rao staked on the hotkey, less than the {needed} rao asked")]
    NotEnoughStakeToWithdraw {
        /// Stake held.
        stake: u64,
        /// Amount asked.
        needed: u64,
    },
    /// Amount zero or below the minimum.
    #[error("AmountTooLow: {amount} rao is below the minimum of {min} rao")]
    AmountTooLow {
        /// Amount sent.
        amount: u64,
        /// Minimum.
        min: u64,
    },
    /// Hotkey already registered in the subnet.
    #[error("HotKeyAlreadyRegisteredInSubNet: this hotkey already has uid {0} in the subnet")]
    HotKeyAlreadyRegisteredInSubNet(u16),
    /// Hotkey not registered in the subnet.
    #[error("HotKeyNotRegisteredInSubNet: hotkey {0} is not registered in subnet {1}; register it first")]
    HotKeyNotRegisteredInSubNet(String, u16),
    /// Hotkey belongs to another coldkey.
    #[error("NonAssociatedColdKey: hotkey {0} is owned by another coldkey; use that coldkey or another hotkey")]
    NonAssociatedColdKey(String),
    /// Registration limit for this block reached.
    #[error("TooManyRegistrationsThisBlock: subnet {netuid} allows {max} registration(s) per block; retry next block")]
    TooManyRegistrationsThisBlock {
        /// Subnet.
        netuid: u16,
        /// `MaxRegistrationsPerBlock`.
        max: u16,
    },
    /// Registration disabled by the owner.
    #[error("SubNetRegistrationDisabled: registration is disabled on subnet {0}")]
    SubNetRegistrationDisabled(u16),
    /// Subnet full and every neuron immune.
    #[error("NoNeuronIdAvailable: subnet {0} is full and no neuron can be pruned (all immune); retry later")]
    NoNeuronIdAvailable(u16),
    /// Weight submission refused.
    #[error("{0}")]
    Weights(WeightsError),
    /// Commit-reveal is on: plain `set_weights` refused.
    #[error("CommitRevealEnabled: subnet {0} has commit-reveal on; commit the weights' hash (`commit_weights`) and reveal them in the reveal epoch (`reveal_weights`)")]
    CommitRevealEnabled(u16),
    /// Commit-reveal is off: `commit_weights` / `reveal_weights` refused.
    #[error("CommitRevealDisabled: subnet {0} has commit-reveal off; use `set_weights`")]
    CommitRevealDisabled(u16),
    /// A commit within the weights rate limit.
    #[error("CommittingWeightsTooFast: last update at block {last_update}, now {current_block}, limit {rate_limit} blocks; wait and retry")]
    CommittingWeightsTooFast {
        /// `LastUpdate` of the neuron.
        last_update: u64,
        /// The block the commit executes in.
        current_block: u64,
        /// `WeightsSetRateLimit`.
        rate_limit: u64,
    },
    /// The hotkey already holds the most unrevealed commits allowed.
    #[error("TooManyUnrevealedCommits: this hotkey already has {0} unrevealed weight commits on the subnet; reveal or let them expire first")]
    TooManyUnrevealedCommits(usize),
    /// A reveal with no pending commit.
    #[error("NoWeightsCommitFound: this hotkey has no pending weight commit on the subnet; commit first")]
    NoWeightsCommitFound,
    /// A reveal before its commit's reveal epoch.
    #[error("RevealTooEarly: the commit can be revealed in epoch {reveal_epoch} only; the subnet is in epoch {epoch}")]
    RevealTooEarly {
        /// The subnet's epoch index now.
        epoch: u64,
        /// The commit's reveal epoch.
        reveal_epoch: u64,
    },
    /// A reveal of a commit whose reveal epoch has passed.
    #[error("ExpiredWeightCommit: the matching commit expired (its reveal epoch has passed); commit again")]
    ExpiredWeightCommit,
    /// A reveal whose hash matches no pending commit.
    #[error("InvalidRevealCommitHashNotMatch: the hash of the revealed weights, salt and version key matches no pending commit of this hotkey")]
    InvalidRevealCommitHashNotMatch,
    /// `ip_type` not 4 or 6, or the address family disagrees.
    #[error("InvalidIpType: the address must be IPv4 or IPv6")]
    InvalidIpType,
    /// Unusable address.
    #[error("InvalidIpAddress: {0} cannot be served (loopback is allowed only on a local chain; unspecified, multicast and broadcast never)")]
    InvalidIpAddress(String),
    /// Port 0.
    #[error("InvalidPort: port 0 cannot be served; pass the port the axon listens on")]
    InvalidPort,
    /// Served again too soon.
    #[error("ServingRateLimitExceeded: last served at block {last}, limit {limit} blocks; wait and retry")]
    ServingRateLimitExceeded {
        /// Last serve block.
        last: u64,
        /// `ServingRateLimit`.
        limit: u64,
    },
    /// Commitment too long.
    #[error("SpaceLimitExceeded: commitment is {0} bytes, the limit is 128")]
    SpaceLimitExceeded(usize),
    /// Hyperparameter value out of range.
    #[error("InvalidHyperparameter: {0}")]
    InvalidHyperparameter(String),
    /// Faucet disabled on this node.
    #[error("FaucetDisabled: this node was started without the dev faucet")]
    FaucetDisabled,
    /// Faucet amount too large.
    #[error("FaucetAmountTooHigh: at most {max} rao per faucet call")]
    FaucetAmountTooHigh {
        /// Cap.
        max: u64,
    },
    /// Arithmetic overflow (absurd amounts).
    #[error("Overflow: the amount would overflow a balance; use a smaller amount")]
    Overflow,
}

impl TxError {
    /// The bare chain error name (`SettingWeightsTooFast`, `NotEnoughBalanceToStake`, …).
    pub fn name(&self) -> &'static str {
        match self {
            TxError::Malformed(_) => "Malformed",
            TxError::BadProof => "BadProof",
            TxError::Stale { .. } => "Stale",
            TxError::Future { .. } => "Future",
            TxError::SubnetNotExists(_) => "SubnetNotExists",
            TxError::NetuidInUse(_) => "NetuidInUse",
            TxError::SubnetLimitReached(_) => "SubnetLimitReached",
            TxError::NotSubnetOwner(_) => "NotSubnetOwner",
            TxError::NotEnoughBalanceToStake { .. } => "NotEnoughBalanceToStake",
            TxError::InsufficientBalance { .. } => "InsufficientBalance",
            TxError::NotEnoughStakeToWithdraw { .. } => "NotEnoughStakeToWithdraw",
            TxError::AmountTooLow { .. } => "AmountTooLow",
            TxError::HotKeyAlreadyRegisteredInSubNet(_) => "HotKeyAlreadyRegisteredInSubNet",
            TxError::HotKeyNotRegisteredInSubNet(..) => "HotKeyNotRegisteredInSubNet",
            TxError::NonAssociatedColdKey(_) => "NonAssociatedColdKey",
            TxError::TooManyRegistrationsThisBlock { .. } => "TooManyRegistrationsThisBlock",
            TxError::SubNetRegistrationDisabled(_) => "SubNetRegistrationDisabled",
            TxError::NoNeuronIdAvailable(_) => "NoNeuronIdAvailable",
            TxError::Weights(w) => weights_error_name(w),
            TxError::CommitRevealEnabled(_) => "CommitRevealEnabled",
            TxError::CommitRevealDisabled(_) => "CommitRevealDisabled",
            TxError::CommittingWeightsTooFast { .. } => "CommittingWeightsTooFast",
            TxError::TooManyUnrevealedCommits(_) => "TooManyUnrevealedCommits",
            TxError::NoWeightsCommitFound => "NoWeightsCommitFound",
            TxError::RevealTooEarly { .. } => "RevealTooEarly",
            TxError::ExpiredWeightCommit => "ExpiredWeightCommit",
            TxError::InvalidRevealCommitHashNotMatch => "InvalidRevealCommitHashNotMatch",
            TxError::InvalidIpType => "InvalidIpType",
            TxError::InvalidIpAddress(_) => "InvalidIpAddress",
            TxError::InvalidPort => "InvalidPort",
            TxError::ServingRateLimitExceeded { .. } => "ServingRateLimitExceeded",
            TxError::SpaceLimitExceeded(_) => "SpaceLimitExceeded",
            TxError::InvalidHyperparameter(_) => "InvalidHyperparameter",
            TxError::FaucetDisabled => "FaucetDisabled",
            TxError::FaucetAmountTooHigh { .. } => "FaucetAmountTooHigh",
            TxError::Overflow => "Overflow",
        }
    }
}

/// The chain error name of a weights error.
pub fn weights_error_name(err: &WeightsError) -> &'static str {
    match err {
        WeightsError::NegativeWeight { .. } => "NegativeWeight",
        WeightsError::NonFiniteWeight { .. } => "NonFiniteWeight",
        WeightsError::WeightVecNotEqualSize { .. } => "WeightVecNotEqualSize",
        WeightsError::UidsLengthExceedUidsInSubNet { .. } => "UidsLengthExceedUidsInSubNet",
        WeightsError::NotEnoughStakeToSetWeights { .. } => "NotEnoughStakeToSetWeights",
        WeightsError::IncorrectWeightVersionKey { .. } => "IncorrectWeightVersionKey",
        WeightsError::SettingWeightsTooFast { .. } => "SettingWeightsTooFast",
        WeightsError::NeuronNoValidatorPermit { .. } => "NeuronNoValidatorPermit",
        WeightsError::DuplicateUids { .. } => "DuplicateUids",
        WeightsError::UidVecContainInvalidOne { .. } => "UidVecContainInvalidOne",
        WeightsError::WeightVecLengthIsLow { .. } => "WeightVecLengthIsLow",
        WeightsError::MaxWeightExceeded { .. } => "MaxWeightExceeded",
    }
}

/// The JSON body of an error answer of the node's HTTP API (see `ganglion_chain_node::http`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Error name.
    pub error: String,
    /// One-line explanation.
    pub message: String,
}
