//! The weight commit hash against the real Bittensor SDK (`bittensor==10.5.0`, from
//! `scripts/requirements-interop.txt`): `ganglion_chain::weight_hash` must equal
//! `bittensor.utils.weight_utils.generate_weight_hash` on seeded random cases (random
//! hotkeys, netuids over the whole u16 range, empty to 300-long uid/value vectors so that
//! every SCALE compact-length width up to two bytes is crossed, salts of 0–40 entries,
//! version keys up to u64::MAX) plus hand-picked edges. One Python process runs
//! `tests/sdk_weight_hash.py`, a thin caller of the SDK.
//!
//! Python: `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python` (`scripts/setup-venv`). Without
//! it the test is skipped, unless `GANGLION_REQUIRE_ALL=1`.

use std::path::PathBuf;

use ganglion_chain::commit_reveal::hash_hex;
use ganglion_chain::weight_hash;
use ganglion_core::keys::PublicKey;

#[path = "../../../../tests/support/python.rs"]
mod support;

#[path = "../../../../tests/support/splitmix.rs"]
mod splitmix;
use splitmix::Rng;

#[derive(Debug, Clone)]
struct Case {
    hotkey: PublicKey,
    netuid: u16,
    uids: Vec<u16>,
    values: Vec<u16>,
    salt: Vec<u16>,
    version_key: u64,
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(0x6761_6e67_6c69_6f6e);
    let mut out = Vec::new();
    for i in 0..300 {
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        let len = match i % 5 {
            0 => 0,
            1 => rng.below(64) as usize,
            2 => 60 + rng.below(10) as usize, // across the one-byte / two-byte boundary
            _ => rng.below(301) as usize,
        };
        let values_len = if i % 17 == 0 { rng.below(5) as usize } else { len }; // unequal lengths hash too
        let version_key = match i % 4 {
            0 => 0,
            1 => u64::MAX,
            2 => rng.below(10_000_000),
            _ => rng.next(),
        };
        let salt_len = rng.below(41) as usize;
        out.push(Case {
            hotkey: PublicKey::from_bytes(key),
            netuid: if i % 7 == 0 { u16::MAX } else { rng.next() as u16 },
            uids: rng.u16s(len),
            values: rng.u16s(values_len),
            salt: rng.u16s(salt_len),
            version_key,
        });
    }
    let alice = PublicKey::from_bytes([0xd4, 0x35, 0x93, 0xc7, 0x15, 0xfd, 0xd3, 0x1c, 0x61, 0x14, 0x1a, 0xbd, 0x04, 0xa9, 0x9f, 0xd6, 0x82, 0x2c, 0x85, 0x58, 0x85, 0x4c, 0xcd, 0xe3, 0x9a, 0x56, 0x84, 0xe7, 0xa5, 0x6d, 0xa2, 0x7d]);
    out.push(Case { hotkey: alice, netuid: 1, uids: vec![0, 1, 2], values: vec![65535, 32767, 0], salt: vec![1, 2, 3, 4, 5, 6, 7, 8], version_key: 2_001_000 });
    out.push(Case { hotkey: alice, netuid: 0, uids: vec![], values: vec![], salt: vec![], version_key: 0 });
    out.push(Case { hotkey: alice, netuid: 3, uids: (0..16_384).map(|u| u as u16).collect(), values: vec![u16::MAX; 16_384], salt: vec![9; 8], version_key: 1 });
    out
}

#[test]
fn commit_hash_matches_the_sdks_generate_weight_hash() {
    let Some(python) = support::find_python() else {
        assert!(
            std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"),
            "GANGLION_REQUIRE_ALL=1 but no Python with bittensor: run scripts/setup-venv"
        );
        println!("skipped: no .venv/bin/python with bittensor (run scripts/setup-venv)");
        return;
    };
    let cases = cases();
    let json: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "address": c.hotkey.to_ss58(), "netuid": c.netuid, "uids": c.uids, "values": c.values,
                "salt": c.salt, "version_key": c.version_key,
            })
        })
        .collect();
    let dir = tempfile_dir();
    let input = dir.join("cases.json");
    let output = dir.join("hashes.txt");
    std::fs::write(&input, serde_json::to_vec(&json).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_weight_hash.py");
    let run = std::process::Command::new(&python).arg(&script).arg(&input).arg(&output).output().unwrap();
    assert!(
        run.status.success(),
        "{} failed ({}):\n{}\n{}",
        script.display(),
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&output).unwrap();
    let sdk: Vec<&str> = text.lines().collect();
    assert_eq!(sdk.len(), cases.len(), "one SDK hash per case");
    let mut mismatches = Vec::new();
    for (case, theirs) in cases.iter().zip(&sdk) {
        let ours = hash_hex(&weight_hash(&case.hotkey, case.netuid, &case.uids, &case.values, &case.salt, case.version_key));
        if ours != *theirs {
            mismatches.push(format!("{case:?}: ours {ours}, sdk {theirs}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(mismatches.is_empty(), "{} of {} cases differ, first: {}", mismatches.len(), cases.len(), mismatches[0]);
    println!("{} commit hashes equal to the SDK's generate_weight_hash", cases.len());
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ganglion-sdk-hash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
