//! The records validators write. Plain data: no behaviour, no subnet logic.
//!
//! Times are milliseconds since the Unix epoch (the writer's clock). Hotkeys and coldkeys
//! are SS58 strings. JSON fields are stored as text and must be objects, arrays or strings
//! as documented per field.

use serde::{Deserialize, Serialize};

/// One validator request to one miner on the inference subnet, with its timings and the
/// verification outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceRecord {
    /// Unique id (a UUID); inserting the same id twice stores it once.
    pub id: String,
    /// When the request was made.
    pub created_at_ms: i64,
    /// Subnet.
    pub netuid: u16,
    /// Chain block at the time of the request.
    pub block: u64,
    /// Validator hotkey (SS58).
    pub validator_hotkey: String,
    /// Miner uid at the time of the request.
    pub miner_uid: u16,
    /// Miner hotkey (SS58).
    pub miner_hotkey: String,
    /// Miner coldkey (SS58).
    pub miner_coldkey: String,
    /// Model requested.
    pub model: String,
    /// `"chat"` or `"completion"`.
    pub endpoint: String,
    /// An organic (user) request rather than a synthetic one.
    pub organic: bool,
    /// Sampling parameters: temperature, top_p, top_k, max_tokens, seed, …
    pub sampling: serde_json::Value,
    /// Seed sent with the request.
    pub seed: Option<u64>,
    /// The messages array (chat) or prompt string (completion).
    pub prompt: serde_json::Value,
    /// The miner's response text.
    pub response: String,
    /// Time to first token, if any token arrived.
    pub ttft_ms: Option<f64>,
    /// Total request time.
    pub total_ms: f64,
    /// Tokens received.
    pub tokens: u32,
    /// Tokens per second.
    pub tps: f64,
    /// Whether the response passed verification.
    pub verified: bool,
    /// Failure cause code when not verified (`timeout`, `mismatch`, …).
    pub cause: Option<String>,
    /// Jaro-Winkler similarity to the validator's ground truth, when computed.
    pub similarity: Option<f64>,
    /// Verification detail (per-token checks, chunk scores, …).
    pub detail: serde_json::Value,
}

/// One hash challenge of the compute subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// Unique id; inserting the same id twice stores it once.
    pub id: String,
    /// When the challenge was sent.
    pub created_at_ms: i64,
    /// Subnet.
    pub netuid: u16,
    /// Validator hotkey.
    pub validator_hotkey: String,
    /// Miner uid.
    pub miner_uid: u16,
    /// Miner hotkey.
    pub miner_hotkey: String,
    /// Solved correctly in time.
    pub success: bool,
    /// Time to the answer (or to the timeout).
    pub elapsed_ms: f64,
    /// Difficulty of the challenge.
    pub difficulty: u8,
    /// Failure cause code when not successful.
    pub cause: Option<String>,
}

/// A compute miner's latest reported hardware specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecsRecord {
    /// Subnet.
    pub netuid: u16,
    /// Miner uid.
    pub miner_uid: u16,
    /// Miner hotkey; with `netuid`, the key.
    pub miner_hotkey: String,
    /// When these specs were received.
    pub updated_at_ms: i64,
    /// The specs document (CPU, GPU, memory, disk, …).
    pub specs: serde_json::Value,
}

/// A compute allocation (a renter's lease on a miner's machine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationRecord {
    /// Unique id; the key.
    pub id: String,
    /// Subnet.
    pub netuid: u16,
    /// Miner uid.
    pub miner_uid: u16,
    /// Miner hotkey.
    pub miner_hotkey: String,
    /// Renter (hotkey or user name).
    pub renter: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it expires.
    pub expires_at_ms: i64,
    /// When it ended, if it did.
    pub ended_at_ms: Option<i64>,
    /// `active`, `ended` or `expired`.
    pub status: String,
    /// Resources allocated (CPU, GPU, memory, …).
    pub resources: serde_json::Value,
    /// How to reach it: host, port, user. Never secrets.
    pub access: serde_json::Value,
}

/// A validator's score of one uid at one block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// When the score was computed.
    pub created_at_ms: i64,
    /// Subnet.
    pub netuid: u16,
    /// Block.
    pub block: u64,
    /// Validator hotkey.
    pub validator_hotkey: String,
    /// Scored uid.
    pub uid: u16,
    /// Scored hotkey.
    pub hotkey: String,
    /// The score (the weight's input).
    pub score: f64,
    /// The score's parts (verification rate, speed, …).
    pub components: serde_json::Value,
}

/// One neuron of the metagraph at one block, as the hub records it every few blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronSnapshot {
    /// Subnet.
    pub netuid: u16,
    /// Block of the snapshot.
    pub block: u64,
    /// When the snapshot was taken.
    pub created_at_ms: i64,
    /// Uid.
    pub uid: u16,
    /// Hotkey.
    pub hotkey: String,
    /// Coldkey.
    pub coldkey: String,
    /// Stake, rao.
    pub stake: u64,
    /// Incentive in [0, 1].
    pub incentive: f64,
    /// Emission, rao.
    pub emission: u64,
    /// Consensus in [0, 1].
    pub consensus: f64,
    /// Dividends in [0, 1].
    pub dividends: f64,
    /// Validator trust in [0, 1].
    pub validator_trust: f64,
    /// Holds a validator permit.
    pub validator_permit: bool,
}
