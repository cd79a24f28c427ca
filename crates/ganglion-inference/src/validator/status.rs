//! What the validator reports about itself: [`ValidatorStatus`], written atomically to
//! `<data_dir>/status.json` after every step and served as `GET /status` next to
//! `GET /metrics`. `ganglion localnet` reads it for its live table.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Shared;

/// One miner as the validator sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinerStatus {
    /// Uid.
    pub uid: u16,
    /// Hotkey (SS58).
    pub hotkey: String,
    /// Score: sum over models of the windowed mean verified tokens/s.
    pub score: f64,
    /// Share of the weights this validator would set now.
    pub weight: f64,
    /// Mean verified tokens/s over the windows' verified entries.
    pub tps: Option<f64>,
    /// Verified share of the windows' entries, in percent.
    pub verified_percent: Option<f64>,
    /// Verified responses.
    pub verified: u64,
    /// Failed responses.
    pub failed: u64,
    /// Verified organic responses.
    pub organic_verified: u64,
    /// Cause of the last failure.
    pub last_cause: Option<String>,
    /// Per-model window means.
    pub models: BTreeMap<String, f64>,
}

/// The validator's state for dashboards and scripts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidatorStatus {
    /// Subnet.
    pub netuid: u16,
    /// The validator's hotkey.
    pub hotkey: String,
    /// Its uid, once registered.
    pub uid: Option<u16>,
    /// Chain block at the last step.
    pub block: u64,
    /// Steps completed.
    pub steps: u64,
    /// `logprob` or `ground-truth`.
    pub verify_mode: String,
    /// Models asked for.
    pub models: Vec<String>,
    /// Block of the last accepted `set_weights`.
    pub last_weights_block: Option<u64>,
    /// Blocks since then.
    pub blocks_since_weights: Option<u64>,
    /// Accepted `set_weights` calls.
    pub weights_set: u64,
    /// The chain's answer to the last attempt (`ok` or its error).
    pub last_weights_result: Option<String>,
    /// Per miner, by uid.
    pub miners: Vec<MinerStatus>,
    /// When this was written (Unix ms).
    pub updated_at_ms: u64,
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/status", get(status)).with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render())
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<ValidatorStatus> {
    Json(shared.status())
}
