//! Hash-based weight commit-reveal, as subtensor's first commit-reveal (v1) did it.
//!
//! A validator on a subnet with `commit_reveal_weights_enabled` cannot `set_weights`
//! (`CommitRevealEnabled`). It sends `commit_weights` with [`weight_hash`] of the weights it
//! means to set and a random salt, and later `reveal_weights` with the weights and the salt;
//! the chain recomputes the hash and, if it matches a pending commit whose reveal window is
//! open, applies the weights as `set_weights` would (same checks, same storage).
//!
//! # Rules (subtensor's `do_commit_weights` / `do_reveal_weights`)
//! - The epoch of a commit is the subnet's epoch index (epochs run so far) when it is
//!   applied. It can be revealed only while the index is exactly `commit_epoch +
//!   commit_reveal_period` (`RevealTooEarly` before); after that it has expired
//!   (`ExpiredWeightCommit`) and is dropped. Subtensor counts epochs as
//!   `(block + netuid + 1) / (tempo + 1)`, which is its epoch schedule; the local chain runs
//!   epochs every `tempo` blocks after the last one, so it counts the epochs it ran.
//! - Up to [`MAX_PENDING_COMMITS`] unrevealed commits per hotkey, oldest first
//!   (`TooManyUnrevealedCommits`); a commit is rate-limited like `set_weights`
//!   (`CommittingWeightsTooFast`) and sets the neuron's `last_update`; a reveal is not
//!   rate-limited and does not set it.
//! - Revealing a commit also drops every older pending commit of the hotkey.
//! - No commit at all → `NoWeightsCommitFound`; a hash matching no live commit →
//!   `InvalidRevealCommitHashNotMatch` (or `ExpiredWeightCommit` if it matches an expired one).
//!
//! The hash is byte for byte the Bittensor SDK's
//! `bittensor.utils.weight_utils.generate_weight_hash` (checked against it by this crate's
//! interop test).

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ganglion_core::keys::PublicKey;
use serde::{Deserialize, Serialize};

/// Most unrevealed commits a hotkey may hold on a subnet (subtensor's limit).
pub const MAX_PENDING_COMMITS: usize = 10;

/// Default `commit_reveal_period` in epochs (subtensor's `RevealPeriodEpochs` default).
pub const DEFAULT_REVEAL_PERIOD: u64 = 1;

/// Appends the SCALE compact encoding of a length.
fn compact_len(out: &mut Vec<u8>, n: usize) {
    let n = n as u64;
    if n < 1 << 6 {
        out.push((n as u8) << 2);
    } else if n < 1 << 14 {
        out.extend_from_slice(&(((n as u16) << 2) | 0b01).to_le_bytes());
    } else if n < 1 << 30 {
        out.extend_from_slice(&(((n as u32) << 2) | 0b10).to_le_bytes());
    } else {
        let bytes = n.to_le_bytes();
        let len = 8 - bytes.iter().rev().take_while(|b| **b == 0).count();
        out.push((((len - 4) as u8) << 2) | 0b11);
        out.extend_from_slice(&bytes[..len]);
    }
}

/// Appends the SCALE encoding of a `Vec<u16>`.
fn vec_u16(out: &mut Vec<u8>, values: &[u16]) {
    compact_len(out, values.len());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The SCALE encoding of `(AccountId32, u16, Vec<u16>, Vec<u16>, Vec<u16>, u64)`: what
/// subtensor hashes with `BlakeTwo256::hash_of`.
pub fn weight_hash_preimage(hotkey: &PublicKey, netuid: u16, uids: &[u16], values: &[u16], salt: &[u16], version_key: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 2 + 3 * 4 + 2 * (uids.len() + values.len() + salt.len()) + 8);
    out.extend_from_slice(hotkey.as_bytes());
    out.extend_from_slice(&netuid.to_le_bytes());
    vec_u16(&mut out, uids);
    vec_u16(&mut out, values);
    vec_u16(&mut out, salt);
    out.extend_from_slice(&version_key.to_le_bytes());
    out
}

/// The commit hash of weights: BLAKE2b-256 of [`weight_hash_preimage`]. Equal to the SDK's
/// `generate_weight_hash(address, netuid, uids, values, version_key, salt)`.
pub fn weight_hash(hotkey: &PublicKey, netuid: u16, uids: &[u16], values: &[u16], salt: &[u16], version_key: u64) -> [u8; 32] {
    let digest = Blake2b::<U32>::digest(weight_hash_preimage(hotkey, netuid, uids, values, salt, version_key));
    digest.into()
}

/// `0x`-prefixed lowercase hex of a hash (as the SDK prints it).
pub fn hash_hex(hash: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(hash))
}

/// Serde helpers writing a 32-byte hash as `0x…` hex.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as `0x` + 64 lowercase hex digits.
    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hash_hex(hash))
    }

    /// Deserialize from 64 hex digits, with or without `0x`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        let bytes = hex::decode(digits).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("a commit hash is 32 bytes"))
    }
}

/// One pending (unrevealed) weight commit, as the chain stores and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightCommit {
    /// The committed hash.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    /// Block the commit was included in.
    pub commit_block: u64,
    /// The subnet's epoch index when it was committed.
    pub commit_epoch: u64,
    /// The epoch index in which it can be revealed (`commit_epoch + commit_reveal_period`).
    pub reveal_epoch: u64,
    /// First block of the reveal window, as scheduled at commit time (a tempo change moves it).
    pub first_reveal_block: u64,
    /// Last block of the reveal window, as scheduled at commit time.
    pub last_reveal_block: u64,
}

impl WeightCommit {
    /// Whether it can be revealed while the subnet is at `epoch_index`.
    pub fn revealable(&self, epoch_index: u64) -> bool {
        epoch_index == self.reveal_epoch
    }

    /// Whether it has expired at `epoch_index`.
    pub fn expired(&self, epoch_index: u64) -> bool {
        epoch_index > self.reveal_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_lengths_follow_scale() {
        let enc = |n| {
            let mut v = Vec::new();
            compact_len(&mut v, n);
            v
        };
        assert_eq!(enc(0), vec![0x00]);
        assert_eq!(enc(1), vec![0x04]);
        assert_eq!(enc(63), vec![0xfc]);
        assert_eq!(enc(64), vec![0x01, 0x01]);
        assert_eq!(enc(16383), vec![0xfd, 0xff]);
        assert_eq!(enc(16384), vec![0x02, 0x00, 0x01, 0x00]);
        assert_eq!(enc(1 << 30), vec![0x03, 0x00, 0x00, 0x00, 0x40]);
    }

    #[test]
    fn preimage_layout() {
        let key = PublicKey::from_bytes([7u8; 32]);
        let pre = weight_hash_preimage(&key, 0x0102, &[1, 2], &[3], &[], 0x0a0b);
        let mut expected = vec![7u8; 32];
        expected.extend_from_slice(&[0x02, 0x01, 0x08, 1, 0, 2, 0, 0x04, 3, 0, 0x00, 0x0b, 0x0a, 0, 0, 0, 0, 0, 0]);
        assert_eq!(pre, expected);
        assert_ne!(weight_hash(&key, 1, &[1], &[1], &[1], 0), weight_hash(&key, 1, &[1], &[1], &[2], 0));
    }

    #[test]
    fn hex32_round_trips() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct H(#[serde(with = "hex32")] [u8; 32]);
        let h = H([0xab; 32]);
        let text = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(text, format!("\"0x{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<H>(&text).ok(), Some(h));
        assert!(serde_json::from_str::<H>("\"0xabcd\"").is_err());
    }
}
