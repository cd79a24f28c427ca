//! [`SubtensorError`]: what a caller of [`crate::Subtensor`] can get back. Every variant
//! names the endpoint or the call it is about; a runtime's refusal carries the runtime's own
//! error name (decoded through the node's metadata) and a sentence saying what to do.

use std::time::Duration;

use ganglion_chain::ChainError;

/// Result alias for [`SubtensorError`].
pub type SubtensorResult<T> = Result<T, SubtensorError>;

/// Errors of the subtensor client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubtensorError {
    /// The WebSocket connection or the first exchange with the node failed.
    #[error(
        "cannot connect to the subtensor node at {url}: {reason}; check the URL and that the node is running and reachable"
    )]
    Connect {
        /// Endpoint.
        url: String,
        /// Underlying error.
        reason: String,
    },
    /// The node did not answer within the bound.
    #[error(
        "the subtensor node at {url} did not answer {what} within {after:?}; check that it is running and not overloaded"
    )]
    Timeout {
        /// Endpoint.
        url: String,
        /// What was waited for.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// A request to the node failed after the connection was made.
    #[error("request to the subtensor node at {url} failed ({what}): {reason}")]
    Rpc {
        /// Endpoint.
        url: String,
        /// What was asked.
        what: String,
        /// Underlying error.
        reason: String,
    },
    /// The runtime's metadata lacks what this client needs.
    #[error("the runtime at {url} has no {what}; it is not a subtensor runtime this client knows")]
    Metadata {
        /// Endpoint (or the metadata file).
        url: String,
        /// The missing pallet, call, storage entry or argument.
        what: String,
    },
    /// A call's arguments do not fit the runtime's call type.
    #[error("cannot encode {call} for this runtime: {reason}")]
    Encode {
        /// `Pallet.call`.
        call: String,
        /// Underlying error.
        reason: String,
    },
    /// A value read from the node does not decode as the runtime's metadata says.
    #[error("cannot decode {what} from the node: {reason}")]
    Decode {
        /// What was read.
        what: String,
        /// Underlying error.
        reason: String,
    },
    /// The node refused the transaction before inclusion (bad nonce, signature, fees,
    /// a signed extension's check).
    #[error(
        "the node refused {call}: {reason}; the transaction was not included, check the account's balance and nonce and resubmit"
    )]
    Invalid {
        /// `Pallet.call`.
        call: String,
        /// The node's message.
        reason: String,
    },
    /// The transaction was not seen in a block within the bound.
    #[error(
        "{call} was not included in a block within {after:?}; the node builds no blocks or dropped it; check the node, then resubmit"
    )]
    NotIncluded {
        /// `Pallet.call`.
        call: String,
        /// The bound.
        after: Duration,
    },
    /// The transaction was included and its dispatch failed in the runtime.
    #[error("{call} failed in the runtime: {name}: {hint}")]
    Dispatch {
        /// `Pallet.call` as submitted (for a sudo call, the wrapped call).
        call: String,
        /// The pallet whose error it is (`SubtensorModule`), or `None` for a non-pallet
        /// dispatch error (`BadOrigin`, `Token`, …).
        pallet: Option<String>,
        /// The runtime's error name (`NetworkTxRateLimitExceeded`).
        name: String,
        /// What to do about it.
        hint: String,
    },
}

impl SubtensorError {
    /// The runtime's error name, when the runtime refused the call.
    pub fn name(&self) -> Option<&str> {
        match self {
            SubtensorError::Dispatch { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl From<SubtensorError> for ChainError {
    fn from(err: SubtensorError) -> Self {
        match err {
            SubtensorError::Dispatch { name, hint, .. } => ChainError::Rejected {
                name,
                message: hint,
            },
            SubtensorError::Connect { url, reason } => ChainError::Transport { url, reason },
            SubtensorError::Timeout { ref url, .. } | SubtensorError::Rpc { ref url, .. } => {
                ChainError::Transport {
                    url: url.clone(),
                    reason: err.to_string(),
                }
            }
            other => ChainError::Protocol(other.to_string()),
        }
    }
}

/// What to do about a runtime error, by its name; `docs` is the error's documentation from
/// the metadata, used when the name is not one of the common ones below.
pub(crate) fn hint(name: &str, docs: &[String]) -> String {
    let known = match name {
        "NetworkTxRateLimitExceeded" => {
            "subnet registration is rate-limited (NetworkRateLimit blocks since the last one); wait and retry, or on a dev chain lift it with AdminUtils.sudo_set_network_rate_limit(0)"
        }
        "SettingWeightsTooFast" => {
            "weights were set too recently for this subnet's weights_rate_limit; wait that many blocks after the last update and retry"
        }
        "HotKeyNotRegisteredInSubNet" => {
            "the hotkey has no uid on this subnet; register it (burned_register) first"
        }
        "HotKeyAccountNotExists" => {
            "the hotkey is not registered anywhere; register it (burned_register) first"
        }
        "HotKeyAlreadyRegisteredInSubNet" => {
            "the hotkey already has a uid on this subnet; nothing to do"
        }
        "SubNetworkDoesNotExist" | "NetworkDoesNotExist" => {
            "no subnet with this netuid; check the netuid (register_network creates one)"
        }
        "NotEnoughBalanceToStake" | "NotEnoughBalance" | "NotEnoughBalanceToPaySwapHotKey" => {
            "the coldkey's free balance is too low; fund it and retry"
        }
        "TooManyRegistrationsThisBlock" | "TooManyRegistrationsThisInterval" => {
            "the subnet's registration limit for this block or interval is reached; retry in a later block"
        }
        "ServingRateLimitExceeded" => {
            "the axon was served too recently for the subnet's serving_rate_limit; wait and retry"
        }
        "InvalidIpType" | "InvalidIpAddress" | "InvalidPort" => {
            "the axon address is not acceptable; use a routable IPv4/IPv6 address and a non-zero port"
        }
        "WeightVecNotEqualSize"
        | "WeightVecLengthIsLow"
        | "UidVecContainInvalidOne"
        | "DuplicateUids"
        | "MaxWeightExceeded" => {
            "the weights do not pass the subnet's checks; normalise them with the subnet's limits (min_allowed_weights, max_weight_limit) and use registered uids"
        }
        "NotEnoughStakeToSetWeights" => {
            "the hotkey's stake is below the subnet's weights_min_stake; stake more to it"
        }
        "IncorrectWeightVersionKey" | "IncorrectNetworkVersionKey" => {
            "the version_key is below the subnet's weights_version; upgrade and send the current version key"
        }
        "CommitRevealEnabled" => {
            "this subnet uses commit-reveal; commit the weights instead of setting them"
        }
        "RequireSudo" | "BadOrigin" => {
            "the call needs the sudo key (or the subnet owner); sign with that key"
        }
        "NonAssociatedColdKey" => {
            "the hotkey belongs to another coldkey; sign with the hotkey's owner"
        }
        "SubnetLimitReached" => {
            "the chain has as many subnets as it allows; wait for one to be pruned"
        }
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let doc = docs
        .iter()
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if doc.is_empty() {
        format!(
            "the runtime refused the call with {name}; look the error up in the runtime's documentation"
        )
    } else {
        format!("{doc} (the runtime refused the call with {name}; fix that condition and retry)")
    }
}
