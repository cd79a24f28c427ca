//! `ganglion_chain::timelock` (drand-timelocked weight commits, subtensor's commit-reveal v3)
//! against the PyPI package `bittensor-drand` 2.0.0, offline.
//!
//! The only real drand pulse used is quicknet round 1000 and its BLS signature, a public
//! value, from the `timelock` crate's test `tlock_encrypt_decrypt_drand_quicknet_works`
//! (`timelock` 0.3.0, `src/tlock.rs`), which cites
//! `https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/public/1000`.
//! No network is needed: every ciphertext here is locked to round 1000 (or 1001, whose
//! signature we do not have, for the negative cases).
//!
//! To make `bittensor_drand.get_encrypted_commit_v2` (which reads the wall clock) target round
//! 1000, it is given a *negative* block time chosen so that `now + blocks × block_time`
//! lands 1.5 s into round 1000's interval; the round it returns is asserted to be 1000.
//!
//! Python: `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python` (`scripts/setup-venv`). Without
//! it (or without `bittensor_drand` in it) the tests are skipped, unless
//! `GANGLION_REQUIRE_ALL=1`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ganglion_chain::timelock::{
    self, EpochSchedule, QUICKNET_GENESIS_TIME, QUICKNET_PERIOD, TimelockError, WeightsTlockPayload,
};
use ganglion_core::keys::PublicKey;
use serde_json::{Value, json};

/// `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python` if it exists (as
/// `tests/support/python.rs`'s `find_python`, which `sdk_hash` already includes in this binary).
fn find_python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GANGLION_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    venv.is_file().then_some(venv)
}

/// Quicknet round 1000 (source: see the module doc).
const ROUND: u64 = 1000;
/// Quicknet's signature of round 1000, compressed G1, hex (source: see the module doc).
const ROUND_1000_SIGNATURE: &str =
    "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

fn key(p: &WeightsTlockPayload) -> PublicKey {
    PublicKey::from_bytes(p.hotkey.as_slice().try_into().unwrap())
}

fn signature() -> Vec<u8> {
    hex::decode(ROUND_1000_SIGNATURE).unwrap()
}

/// The venv's Python if it has `bittensor_drand`; `None` (after printing why) to skip.
fn python_with_drand() -> Option<PathBuf> {
    let require = std::env::var("GANGLION_REQUIRE_ALL").as_deref() == Ok("1");
    let Some(python) = find_python() else {
        assert!(!require, "GANGLION_REQUIRE_ALL=1 but no Python: run scripts/setup-venv");
        println!("skipped: no .venv/bin/python (run scripts/setup-venv)");
        return None;
    };
    let ok = Command::new(&python)
        .args(["-c", "import bittensor_drand"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(!require, "GANGLION_REQUIRE_ALL=1 but {} has no bittensor_drand", python.display());
        println!("skipped: {} has no bittensor_drand (run scripts/setup-venv)", python.display());
        return None;
    }
    Some(python)
}

/// Runs `script` with `input` as JSON on stdin; returns its stdout parsed as JSON.
fn run_python(python: &PathBuf, script: &str, input: &Value) -> Value {
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Payloads crossing SCALE's one-/two-byte compact length boundary (63/64 entries).
fn payloads() -> Vec<WeightsTlockPayload> {
    let alice: Vec<u8> = hex::decode("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d").unwrap();
    vec![
        WeightsTlockPayload { hotkey: alice.clone(), uids: vec![0, 1, 2], values: vec![65535, 32767, 0], version_key: 2_001_000 },
        WeightsTlockPayload { hotkey: vec![7; 32], uids: vec![], values: vec![], version_key: 0 },
        WeightsTlockPayload {
            hotkey: alice,
            uids: (0..100).collect(),
            values: (0..100).map(|i| (i * 655) as u16).collect(),
            version_key: u64::MAX,
        },
    ]
}

/// Parses a SCALE `WeightsTlockPayload` in Python by hand (independent of our decoder) after
/// `bittensor_drand.decrypt_with_signature`.
const DECRYPT_WITH_THEIRS: &str = r#"
import json, sys
import bittensor_drand as d

def compact(b, i):
    mode = b[i] & 3
    if mode == 0: return b[i] >> 2, i + 1
    if mode == 1: return int.from_bytes(b[i:i+2], "little") >> 2, i + 2
    if mode == 2: return int.from_bytes(b[i:i+4], "little") >> 2, i + 4
    raise ValueError("big compact")

inp = json.load(sys.stdin)
out = []
for case in inp["cases"]:
    try:
        pt = d.decrypt_with_signature(bytes.fromhex(case["user_data"]), inp["signature"])
    except ValueError as e:
        out.append({"error": str(e)})
        continue
    n, i = compact(pt, 0); hotkey = pt[i:i+n]; i += n
    n, i = compact(pt, i); uids = [int.from_bytes(pt[i+2*k:i+2*k+2], "little") for k in range(n)]; i += 2 * n
    n, i = compact(pt, i); values = [int.from_bytes(pt[i+2*k:i+2*k+2], "little") for k in range(n)]; i += 2 * n
    version_key = int.from_bytes(pt[i:i+8], "little"); i += 8
    out.append({"hotkey": hotkey.hex(), "uids": uids, "values": values, "version_key": version_key, "rest": len(pt) - i})
print(json.dumps(out))
"#;

/// `get_encrypted_commit_v2` for each case; `target` set: block time chosen to land in that
/// round; else the given block time, with the wall clock read before and after.
const COMMIT_WITH_THEIRS: &str = r#"
import json, sys, time
import bittensor_drand as d

inp = json.load(sys.stdin)
out = []
for c in inp["cases"]:
    s = c["schedule"]
    t0 = time.time()
    bt = c["block_time"]
    if c.get("target") is not None:
        bt = -(t0 - (inp["genesis"] + inp["period"] * c["target"] + 1.5)) / c["blocks"]
    try:
        ct, rnd = d.get_encrypted_commit_v2(
            c["uids"], c["values"], c["version_key"],
            s["last_epoch_block"], s["pending_epoch_at"], s["subnet_epoch_index"], s["tempo"],
            s["blocks_since_last_step"], s["current_block"], c["period"], bt, bytes.fromhex(c["hotkey"]))
    except ValueError as e:
        out.append({"error": str(e)})
        continue
    t1 = time.time()
    out.append({"commit": ct.hex(), "round": rnd, "t0": t0, "t1": t1})
print(json.dumps(out))
"#;

fn schedule_json(s: &EpochSchedule) -> Value {
    json!({
        "last_epoch_block": s.last_epoch_block, "pending_epoch_at": s.pending_epoch_at,
        "subnet_epoch_index": s.subnet_epoch_index, "tempo": s.tempo,
        "blocks_since_last_step": s.blocks_since_last_step, "current_block": s.current_block,
    })
}

/// A plain schedule: `bittensor-drand`'s "cycle_reset" vector (first reveal block 60).
const PLAIN: EpochSchedule = EpochSchedule {
    last_epoch_block: 10,
    pending_epoch_at: 0,
    subnet_epoch_index: 0,
    tempo: 50,
    blocks_since_last_step: 0,
    current_block: 10,
};

/// `get_encrypted_commit_v2` for `payload`, made to target `round`.
fn their_commit_at(python: &PathBuf, payloads: &[WeightsTlockPayload], round: u64) -> Vec<Vec<u8>> {
    let reveal_block = timelock::predict_first_reveal_block(&PLAIN, 1).unwrap();
    let blocks = reveal_block + timelock::SECURITY_BLOCK_OFFSET - PLAIN.current_block;
    let cases: Vec<Value> = payloads
        .iter()
        .map(|p| {
            json!({
                "schedule": schedule_json(&PLAIN), "period": 1, "blocks": blocks, "target": round,
                "block_time": 12.0, "uids": p.uids, "values": p.values, "version_key": p.version_key,
                "hotkey": hex::encode(&p.hotkey),
            })
        })
        .collect();
    let input = json!({"cases": cases, "genesis": QUICKNET_GENESIS_TIME, "period": QUICKNET_PERIOD});
    let out = run_python(python, COMMIT_WITH_THEIRS, &input);
    out.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["round"], json!(round), "get_encrypted_commit_v2 did not target round {round}: {r}");
            hex::decode(r["commit"].as_str().unwrap()).unwrap()
        })
        .collect()
}

/// Check 1: The round-1000 signature is quicknet's: our ciphertext to round 1000 opens with it
/// (IBE decryption succeeds only with the BLS signature of that round's message under
/// quicknet's public key), and the payload comes back; our commit has the exact size of the
/// documented layout.
#[test]
fn quicknet_round_1000_signature_opens_our_commits() {
    for p in payloads() {
        let ct = timelock::encrypt_weights(&key(&p), &p.uids, &p.values, p.version_key, ROUND).unwrap();
        assert_eq!(ct.len(), 244 + parity_len(&p));
        assert_eq!(timelock::decrypt_with_signature(&ct, &signature()).unwrap(), p);
    }
}

fn parity_len(p: &WeightsTlockPayload) -> usize {
    let compact = |n: usize| if n < 64 { 1 } else { 2 };
    compact(p.hotkey.len()) + p.hotkey.len() + compact(p.uids.len()) + 2 * p.uids.len() + compact(p.values.len())
        + 2 * p.values.len()
        + 8
}

/// Check 2: Ours → theirs: `bittensor_drand.decrypt_with_signature` opens our ciphertexts (in its
/// `UserData` envelope) with the round-1000 signature; the plaintext, parsed by hand in
/// Python, is our hotkey, uids, values and version key with nothing left over.
#[test]
fn our_commits_decrypt_with_bittensor_drand() {
    let Some(python) = python_with_drand() else { return };
    let payloads = payloads();
    let cases: Vec<Value> = payloads
        .iter()
        .map(|p| {
            let ct = timelock::encrypt_weights(&key(p), &p.uids, &p.values, p.version_key, ROUND).unwrap();
            json!({"user_data": hex::encode(timelock::wrap_user_data(&ct, ROUND))})
        })
        .collect();
    let out = run_python(&python, DECRYPT_WITH_THEIRS, &json!({"cases": cases, "signature": ROUND_1000_SIGNATURE}));
    for (p, theirs) in payloads.iter().zip(out.as_array().unwrap()) {
        assert_eq!(
            theirs,
            &json!({"hotkey": hex::encode(&p.hotkey), "uids": p.uids, "values": p.values, "version_key": p.version_key, "rest": 0}),
        );
    }
}

/// Check 3: Theirs → ours: the bytes `bittensor_drand.get_encrypted_commit_v2` makes for
/// `commit_timelocked_weights` (targeted at round 1000) open with our decryption and the
/// round-1000 signature into the SDK's hotkey, uids, values and version key.
#[test]
fn bittensor_drand_commits_decrypt_with_ours() {
    let Some(python) = python_with_drand() else { return };
    let payloads = payloads();
    let commits = their_commit_at(&python, &payloads, ROUND);
    for (p, ct) in payloads.iter().zip(&commits) {
        assert_eq!(ct.len(), 244 + parity_len(p), "their commit has the documented layout's size");
        assert_eq!(&timelock::decrypt_with_signature(ct, &signature()).unwrap(), p);
        // And the SDK's UserData envelope of its generic API round-trips through ours.
        let env = timelock::unwrap_user_data(&timelock::wrap_user_data(ct, ROUND)).unwrap();
        assert_eq!((env.encrypted_data.as_slice(), env.reveal_round), (ct.as_slice(), ROUND));
    }
}

/// Check 4: Another round's ciphertext does not open with round 1000's signature, with a typed
/// error: ours and theirs (round 1001) → [`TimelockError::WrongSignature`] in ours; ours
/// (round 1001) → `ValueError` in `bittensor_drand`. Malformed inputs give their own errors.
#[test]
fn another_rounds_signature_is_refused() {
    let p = &payloads()[0];
    let ours = timelock::encrypt_weights(&key(p), &p.uids, &p.values, p.version_key, ROUND + 1).unwrap();
    assert_eq!(timelock::decrypt_with_signature(&ours, &signature()), Err(TimelockError::WrongSignature));
    assert!(matches!(
        timelock::decrypt_with_signature(&ours, &signature()[..47]),
        Err(TimelockError::MalformedSignature(_))
    ));
    assert!(matches!(
        timelock::decrypt_with_signature(&ours[..ours.len() - 3], &signature()),
        Err(TimelockError::MalformedCiphertext(_))
    ));
    // A plaintext that is not a payload: opens, then fails to decode.
    let junk = timelock::encrypt_at_round(b"not a payload", ROUND).unwrap();
    assert!(matches!(timelock::decrypt_with_signature(&junk, &signature()), Err(TimelockError::PayloadDecode(_))));
    assert_eq!(timelock::decrypt_bytes(&junk, &signature()).unwrap(), b"not a payload");

    let Some(python) = python_with_drand() else { return };
    let theirs = their_commit_at(&python, std::slice::from_ref(p), ROUND + 1);
    assert_eq!(timelock::decrypt_with_signature(&theirs[0], &signature()), Err(TimelockError::WrongSignature));
    let case = json!({"user_data": hex::encode(timelock::wrap_user_data(&ours, ROUND + 1))});
    let out = run_python(&python, DECRYPT_WITH_THEIRS, &json!({"cases": [case], "signature": ROUND_1000_SIGNATURE}));
    let err = out[0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("InvalidSignature"), "bittensor_drand should refuse: {out}");
}

/// Check 5: [`timelock::reveal_round`] equals the round `get_encrypted_commit_v2` returns. It reads
/// the wall clock, so Python records `time.time()` just before and after the call and ours
/// must give `ours(t0) ≤ theirs ≤ ours(t1)`. With block time 3 000 000 s a block is worth a
/// million rounds, so that bracket pins the predicted reveal block exactly; with 12 s
/// (mainnet) the f64 arithmetic is compared too. Tempo 0 is an error on both sides.
#[test]
fn reveal_round_matches_bittensor_drand() {
    let Some(python) = python_with_drand() else { return };
    let s = |last, pending, index, tempo, since, head| EpochSchedule {
        last_epoch_block: last,
        pending_epoch_at: pending,
        subnet_epoch_index: index,
        tempo,
        blocks_since_last_step: since,
        current_block: head,
    };
    let table: Vec<(&str, EpochSchedule, u64)> = vec![
        ("plain", PLAIN, 1),
        ("mid epoch, period 1", s(1000, 0, 7, 360, 123, 1123), 1),
        ("mid epoch, period 2", s(1000, 0, 7, 360, 123, 1123), 2),
        ("mid epoch, period 3", s(1000, 0, 7, 360, 123, 1123), 3),
        ("epoch runs in the inclusion block", s(1000, 0, 7, 360, 359, 1359), 1),
        ("epoch ran in the head block", s(1000, 0, 7, 360, 0, 1000), 1),
        ("pending owner epoch", s(80, 95, 3, 20, 11, 91), 1),
        ("pending owner epoch, period 2", s(80, 95, 3, 20, 11, 91), 2),
        ("overdue step counter forces an epoch", s(4990, 0, 5, 100, 60_000, 5000), 1),
        ("reveal period 0", s(1000, 0, 0, 99, 5, 1005), 0),
        ("tempo 1", s(500, 0, 0, 1, 0, 500), 4),
        ("max tempo", s(0, 0, 0, 50_400, 10, 10), 1),
        ("tempo 0", s(0, 0, 0, 0, 10, 10), 1),
    ];
    let mut cases = Vec::new();
    for block_time in [12.0, 3_000_000.0] {
        for (name, sched, period) in &table {
            cases.push((*name, *sched, *period, block_time));
        }
    }
    let input: Vec<Value> = cases
        .iter()
        .map(|(_, sched, period, bt)| {
            json!({"schedule": schedule_json(sched), "period": period, "block_time": bt, "uids": [1], "values": [2],
                   "version_key": 3, "hotkey": "00".repeat(32)})
        })
        .collect();
    let out = run_python(&python, COMMIT_WITH_THEIRS, &json!({"cases": input}));
    for ((name, sched, period, bt), theirs) in cases.iter().zip(out.as_array().unwrap()) {
        if sched.tempo == 0 {
            assert!(theirs["error"].as_str().is_some(), "{name}: theirs should fail: {theirs}");
            assert_eq!(timelock::reveal_round(sched, *period, *bt, 0.0), Err(TimelockError::TempoZero));
            continue;
        }
        let round = theirs["round"].as_u64().unwrap();
        let lo = timelock::reveal_round(sched, *period, *bt, theirs["t0"].as_f64().unwrap()).unwrap();
        let hi = timelock::reveal_round(sched, *period, *bt, theirs["t1"].as_f64().unwrap()).unwrap();
        assert!(lo <= round && round <= hi, "{name} (block time {bt}): theirs {round}, ours {lo}..={hi}");
    }
    println!("{} reveal rounds equal to get_encrypted_commit_v2's", cases.len());
}
