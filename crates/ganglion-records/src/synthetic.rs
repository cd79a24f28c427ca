//! Deterministic synthetic records: a pretend subnet whose miners differ in speed and
//! honesty. Tests, the hub's browser test and `ganglion bench hub` seed stores with these.
//! Row `i` is a pure function of the subnet description and `i`, so seeds are reproducible.

use crate::types::{ChallengeRecord, InferenceRecord, NeuronSnapshot, ScoreRecord, SpecsRecord};

/// Failure causes the synthetic miners produce (codes the inference validator uses).
pub const CAUSES: [&str; 4] = ["timeout", "mismatch", "too_short", "bad_signature"];

/// A pretend subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSubnet {
    /// Subnet id.
    pub netuid: u16,
    /// Miners (uids `validators..validators + miners`).
    pub miners: u16,
    /// Validators (uids `0..validators`).
    pub validators: u16,
    /// Models served.
    pub models: Vec<String>,
    /// Time of row 0.
    pub start_ms: i64,
    /// Time between consecutive rows.
    pub step_ms: i64,
    /// Block of row 0 (blocks advance every 12 s of record time).
    pub start_block: u64,
}

/// SplitMix64: a tiny, well-mixed deterministic hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform float in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl SyntheticSubnet {
    /// `miners` miners and `validators` validators serving one model, rows every `step_ms`
    /// ending near `end_ms` after `rows` rows.
    pub fn ending_at(netuid: u16, validators: u16, miners: u16, rows: u64, end_ms: i64, step_ms: i64) -> SyntheticSubnet {
        let span = i64::try_from(rows).unwrap_or(i64::MAX).saturating_mul(step_ms);
        SyntheticSubnet {
            netuid,
            miners,
            validators,
            models: vec!["SmolLM2-135M-Instruct".to_string(), "SmolLM2-360M-Instruct".to_string()],
            start_ms: end_ms.saturating_sub(span),
            step_ms,
            start_block: 1,
        }
    }

    /// A fake, stable, SS58-looking hotkey for a uid (48 characters, starting with `5`).
    pub fn hotkey(&self, uid: u16) -> String {
        fake_address(u64::from(self.netuid) << 32 | u64::from(uid) << 1)
    }

    /// A fake coldkey for a uid.
    pub fn coldkey(&self, uid: u16) -> String {
        fake_address(u64::from(self.netuid) << 32 | u64::from(uid) << 1 | 1)
    }

    /// Miner uids.
    pub fn miner_uids(&self) -> std::ops::Range<u16> {
        self.validators..self.validators.saturating_add(self.miners)
    }

    /// How good miner `uid` is, in [0, 1]: every fifth miner is bad (verifies rarely).
    pub fn quality(&self, uid: u16) -> f64 {
        if uid % 5 == 4 { 0.15 } else { 0.6 + 0.4 * unit(mix(u64::from(uid) ^ 0xA5A5)) }
    }

    fn time_and_block(&self, i: u64) -> (i64, u64) {
        let at = self.start_ms.saturating_add(i64::try_from(i).unwrap_or(i64::MAX).saturating_mul(self.step_ms));
        let block = self.start_block + u64::try_from((at - self.start_ms).max(0) / 12_000).unwrap_or(0);
        (at, block)
    }

    /// Inference row `i`.
    pub fn inference(&self, i: u64) -> InferenceRecord {
        let h = mix(i ^ u64::from(self.netuid) << 48);
        let miners = u64::from(self.miners.max(1));
        let uid = self.validators + (i % miners) as u16;
        let validator = (mix(h) % u64::from(self.validators.max(1))) as u16;
        let (created_at_ms, block) = self.time_and_block(i);
        let quality = self.quality(uid);
        let verified = unit(mix(h ^ 1)) < quality;
        let tokens = 32 + (mix(h ^ 2) % 96) as u32;
        let tps = 20.0 + 180.0 * quality * (0.8 + 0.4 * unit(mix(h ^ 3)));
        let ttft_ms = 40.0 + 400.0 * (1.0 - quality) * (0.5 + unit(mix(h ^ 4)));
        let total_ms = ttft_ms + f64::from(tokens) / tps * 1000.0;
        let cause = (!verified).then(|| CAUSES[(mix(h ^ 5) % CAUSES.len() as u64) as usize].to_string());
        let similarity = if verified { 0.95 + 0.05 * unit(mix(h ^ 6)) } else { 0.3 + 0.5 * unit(mix(h ^ 6)) };
        let model = match self.models.len() {
            0 => "model".to_string(),
            n => self.models[(mix(h ^ 7) % n as u64) as usize].clone(),
        };
        let seed = mix(h ^ 8);
        let organic = mix(h ^ 9).is_multiple_of(10);
        InferenceRecord {
            id: format!("syn-{}-{i:012}", self.netuid),
            created_at_ms,
            netuid: self.netuid,
            block,
            validator_hotkey: self.hotkey(validator),
            miner_uid: uid,
            miner_hotkey: self.hotkey(uid),
            miner_coldkey: self.coldkey(uid),
            model,
            endpoint: if i.is_multiple_of(3) { "completion" } else { "chat" }.to_string(),
            organic,
            sampling: serde_json::json!({"temperature": 0.7, "top_p": 0.95, "top_k": 40, "max_tokens": 128, "seed": seed}),
            seed: Some(seed),
            prompt: serde_json::json!([
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": format!("Write a short note about topic #{}.", i % 97)}
            ]),
            response: format!("Here is a short note about topic #{}. It has {tokens} tokens of text.", i % 97),
            ttft_ms: Some(ttft_ms),
            total_ms,
            tokens,
            tps,
            verified,
            cause: cause.clone(),
            similarity: Some(similarity),
            detail: serde_json::json!({"checked_tokens": tokens.min(16), "mismatches": if verified { 0 } else { 3 }, "cause": cause}),
        }
    }

    /// Challenge row `i`.
    pub fn challenge(&self, i: u64) -> ChallengeRecord {
        let h = mix(i ^ 0xC0FFEE ^ u64::from(self.netuid) << 40);
        let uid = self.validators + (i % u64::from(self.miners.max(1))) as u16;
        let (created_at_ms, _) = self.time_and_block(i);
        let success = unit(mix(h ^ 1)) < self.quality(uid);
        let difficulty = 6 + (i / u64::from(self.miners.max(1)) % 5) as u8;
        ChallengeRecord {
            id: format!("chal-{}-{i:012}", self.netuid),
            created_at_ms,
            netuid: self.netuid,
            validator_hotkey: self.hotkey((mix(h) % u64::from(self.validators.max(1))) as u16),
            miner_uid: uid,
            miner_hotkey: self.hotkey(uid),
            success,
            elapsed_ms: 200.0 + 3000.0 * (1.0 - self.quality(uid)) * unit(mix(h ^ 2)),
            difficulty,
            cause: (!success).then(|| "wrong_answer".to_string()),
        }
    }

    /// Specs of miner `uid`.
    pub fn specs(&self, uid: u16, updated_at_ms: i64) -> SpecsRecord {
        SpecsRecord {
            netuid: self.netuid,
            miner_uid: uid,
            miner_hotkey: self.hotkey(uid),
            updated_at_ms,
            specs: serde_json::json!({
                "cpu": {"count": 4 + uid % 4 * 4, "model": "AMD EPYC"},
                "memory_gb": 16 + u32::from(uid % 3) * 16,
                "disk_gb": 200,
                "gpu": if uid.is_multiple_of(2) { serde_json::json!({"count": 1, "name": "RTX 4090", "memory_gb": 24}) } else { serde_json::Value::Null },
            }),
        }
    }

    /// The metagraph at `block`: validators hold permits and stake; incentive follows quality.
    pub fn snapshot(&self, block: u64, created_at_ms: i64) -> Vec<NeuronSnapshot> {
        let total_quality: f64 = self.miner_uids().map(|uid| self.quality(uid)).sum::<f64>().max(f64::MIN_POSITIVE);
        let wobble = |uid: u16| 1.0 + 0.1 * (unit(mix(block ^ u64::from(uid))) - 0.5);
        (0..self.validators.saturating_add(self.miners))
            .map(|uid| {
                let validator = uid < self.validators;
                let incentive = if validator { 0.0 } else { self.quality(uid) * wobble(uid) / total_quality };
                NeuronSnapshot {
                    netuid: self.netuid,
                    block,
                    created_at_ms,
                    uid,
                    hotkey: self.hotkey(uid),
                    coldkey: self.coldkey(uid),
                    stake: if validator { 10_000_000_000_000 / u64::from(uid + 1) } else { 0 },
                    incentive,
                    emission: (incentive * 500_000_000.0) as u64,
                    consensus: incentive,
                    dividends: if validator { 1.0 / f64::from(self.validators.max(1)) } else { 0.0 },
                    validator_trust: if validator { 0.9 } else { 0.0 },
                    validator_permit: validator,
                }
            })
            .collect()
    }

    /// Each validator's scores of every miner at `block`.
    pub fn scores(&self, block: u64, created_at_ms: i64) -> Vec<ScoreRecord> {
        (0..self.validators)
            .flat_map(|v| {
                self.miner_uids().map(move |uid| ScoreRecord {
                    created_at_ms,
                    netuid: self.netuid,
                    block,
                    validator_hotkey: self.hotkey(v),
                    uid,
                    hotkey: self.hotkey(uid),
                    score: self.quality(uid),
                    components: serde_json::json!({"verified_rate": self.quality(uid), "speed": 0.5}),
                })
            })
            .collect()
    }
}

const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn fake_address(seed: u64) -> String {
    let mut out = String::with_capacity(48);
    out.push('5');
    let mut h = 0;
    for i in 0..47u64 {
        // A fresh 64-bit hash every 10 characters (58^10 < 2^64).
        if i % 10 == 0 {
            h = mix(seed ^ mix(i));
        }
        out.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_varied() {
        let subnet = SyntheticSubnet::ending_at(3, 2, 10, 1000, 1_000_000_000, 1000);
        assert_eq!(subnet.inference(7), subnet.inference(7));
        assert_ne!(subnet.inference(7).id, subnet.inference(8).id);
        let rows: Vec<_> = (0..1000).map(|i| subnet.inference(i)).collect();
        let verified = rows.iter().filter(|r| r.verified).count();
        assert!(verified > 300 && verified < 950, "{verified}");
        assert!(rows.iter().all(|r| r.verified == r.cause.is_none()));
        assert!(rows.iter().all(|r| subnet.miner_uids().contains(&r.miner_uid)));
        assert_eq!(subnet.hotkey(3).len(), 48);
        assert_ne!(subnet.hotkey(3), subnet.hotkey(4));
        assert_eq!(subnet.snapshot(10, 0).len(), 12);
    }
}
