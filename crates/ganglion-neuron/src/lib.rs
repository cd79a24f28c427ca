//! The neuron runtime: what every subnet node is assembled from, so that a subnet writes only
//! its protocol, its work and its scoring.
//!
//! # Map
//! - [`axon`]: bind, external address, Epistula verifier with a caller policy over a
//!   directory kept in step with the metagraph, `serve_axon` at start and on change within
//!   the chain's serving rate limit, and the miner's link to the chain
//!   ([`axon::attach_chain`], [`axon::run_chain_sync`]) that both miners use.
//! - [`sync`]: [`sync::MetagraphSync`]: incremental sync, full refetch after errors, uids
//!   that changed hands.
//! - [`weights`]: [`weights::WeightSetter`]: due at `max(epoch_length, weights_rate_limit)`
//!   after the chain's `last_update`, the SDK's `process_weights_for_netuid` with the
//!   chain's limits and u16 conversion, one `version_key` policy, backoff from the chain's answer,
//!   and the [`weights::WeightStrategy`] trait (plain; commit-reveal where the chain has it).
//! - [`validator`]: the [`validator::Validator`] trait the subnets implement and the
//!   stoppable loop that runs it ([`validator::run_validator`]).
//! - [`status`]: one status schema ([`status::NodeStatus`]) for every node, served at
//!   `/status` and written atomically to `status.json`.
//! - [`metrics`]: the one Prometheus registry (`ganglion-metrics`, re-exported); [`server`]
//!   serves `/status` and `/metrics`.
//! - [`signals`]: SIGINT/SIGTERM and the [`signals::Shutdown`] token every task watches.
//! - [`config`]: the shared TOML sections and the one layering rule (file, then env and
//!   flags), durations with units.
//! - [`state`]: atomic JSON state files.
//! - [`peer`]: typed failures of calls to other nodes ([`peer::PeerFailure`]) and a signed
//!   JSON client.
//!
//! **Architecture invariant:** this crate knows the [`ganglion_chain::Chain`] trait, never a
//! chain implementation, and no subnet.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod axon;
pub mod config;
pub mod peer;
pub mod server;
pub mod signals;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod sync;
pub mod validator;
pub mod weights;

/// The shared registry (re-exported from `ganglion-metrics`).
pub mod metrics {
    pub use ganglion_metrics::*;
}
pub use ganglion_metrics::Metrics;
pub use peer::PeerFailure;
pub use signals::Shutdown;
pub use status::{NodeStatus, StatusBoard};
