//! The protocol and the epsilon against the real reference package, macrocosm-os/taoverse
//! 2.0.2 from PyPI (installed into the venv without its torch/bittensor dependencies by
//! `scripts/setup-venv`): `ModelId.to_compressed_str` / `from_compressed_str`,
//! `get_hash_of_directory`, `get_hash_of_two_strings` (the hotkey-bound hash) and
//! `LinearDecay` / `FixedEpsilon`, on seeded random cases and hand-picked edges. One Python
//! process runs `tests/taoverse_reference.py`.
//!
//! Python: `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python`. Without it the test is
//! skipped, unless `GANGLION_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};

use ganglion_evaluation::commitment::ModelCommitment;
use ganglion_evaluation::dirhash::{HashLimits, bind_to_hotkey, directory_hash};
use ganglion_evaluation::scoring::Epsilon;
use serde_json::{Value, json};

#[path = "../../../../tests/support/python.rs"]
mod support;

#[path = "../../../../tests/support/splitmix.rs"]
mod splitmix;
use splitmix::Rng;

const NAME: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
const HEX: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn commitments(rng: &mut Rng) -> Vec<ModelCommitment> {
    (0..200)
        .map(|i| {
            let ns_len = 1 + rng.below(18) as usize;
            let name_len = 1 + rng.below(19) as usize;
            ModelCommitment {
                namespace: rng.pick(NAME, ns_len),
                name: rng.pick(NAME, name_len),
                commit: (i % 7 != 0).then(|| rng.pick(HEX, 40)),
                hash: (i % 11 != 0).then(|| format!("{}=", rng.pick(B64, 43))),
                competition_id: Some(rng.below(100).to_string()),
            }
        })
        .collect()
}

/// A directory tree with what the walk order depends on: nesting, case and punctuation in
/// names, non-ASCII names, empty files and directories, files over one 64 KiB block, and
/// symbolic links to a file and to a directory.
fn tree(root: &Path, rng: &mut Rng, variant: u64) {
    let names = ["a", "B", "a.b", "a-", "_x", "Z9", "é", "日本", "config.json", "model.gguf", "aa"];
    let mut dirs = vec![root.to_path_buf()];
    for d in 0..(2 + variant % 4) {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let dir = parent.join(names[rng.below(names.len() as u64) as usize]).with_extension(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        dirs.push(dir);
    }
    for f in 0..(1 + variant % 7) {
        let dir = &dirs[rng.below(dirs.len() as u64) as usize];
        let size = match f % 4 {
            0 => 0,
            1 => rng.below(100) as usize,
            2 => 64 * 1024 + rng.below(3000) as usize,
            _ => rng.below(5000) as usize,
        };
        let name = format!("{}{}", names[rng.below(names.len() as u64) as usize], f);
        std::fs::write(dir.join(name), rng.bytes(size)).unwrap();
    }
    if variant.is_multiple_of(3) {
        std::fs::write(root.join("target.bin"), rng.bytes(777)).unwrap();
        std::os::unix::fs::symlink(root.join("target.bin"), dirs[dirs.len() - 1].join("link-to-file")).unwrap();
        std::os::unix::fs::symlink(&dirs[1], root.join("link-to-dir")).unwrap();
    }
}

#[test]
fn protocol_and_epsilon_match_taoverse() {
    let Some(python) = support::find_python() else {
        assert!(
            std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"),
            "GANGLION_REQUIRE_ALL=1 but no Python with taoverse: run scripts/setup-venv"
        );
        println!("skipped: no .venv/bin/python with taoverse (run scripts/setup-venv)");
        return;
    };
    let mut rng = Rng(0x7461_6f76_6572_7365);
    let work = tempfile::tempdir().unwrap();

    let render = commitments(&mut rng);
    let mut parse: Vec<String> = render.iter().map(|c| c.render().unwrap()).collect();
    // Legacy 4-field forms, nulls, the longest repo id.
    parse.extend([
        "Nous:fine-7b:0123456789abcdef0123456789abcdef01234567:AAAA".to_string(),
        "ns:n:None:None".to_string(),
        format!("{}:{}:{}:{}:99", "n".repeat(18), "m".repeat(19), "f".repeat(40), "h".repeat(44)),
    ]);

    let mut dirs: Vec<PathBuf> = Vec::new();
    for v in 0..24 {
        let d = work.path().join(format!("tree{v}"));
        std::fs::create_dir_all(&d).unwrap();
        tree(&d, &mut rng, v);
        dirs.push(d);
    }
    let bind: Vec<(String, String)> = (0..50)
        .map(|i| (format!("{}=", rng.pick(B64, 43)), if i == 0 { String::new() } else { format!("5{}", rng.pick(B64, 47)) }))
        .collect();
    let mut decay: Vec<(f64, f64, u64, u64, u64)> = vec![
        (0.005, 0.0001, 14_400, 5_000_000, 5_000_000),
        (0.005, 0.0001, 14_400, 5_007_200, 5_000_000),
        (0.005, 0.0005, 50_400, 10, 1_000),
        (0.05, 0.01, 7_200, 9_999_999, 0),
    ];
    for _ in 0..200 {
        let start = (rng.below(10_000) as f64) / 100_000.0;
        let end = start * (rng.below(1000) as f64) / 1000.0;
        let d = 1 + rng.below(100_000);
        let blk = rng.below(6_000_000);
        let cur = blk.saturating_add(rng.below(200_000)).saturating_sub(rng.below(1000));
        decay.push((start, end, d, cur, blk));
    }
    let fixed = vec![(0.01, 100u64, 5u64), (0.005, 0, 1_000_000)];

    let cases = json!({
        "render": render.iter().map(|c| json!({
            "namespace": c.namespace, "name": c.name, "commit": c.commit, "hash": c.hash,
            "competition_id": c.competition_id.as_ref().unwrap().parse::<i64>().unwrap(),
        })).collect::<Vec<_>>(),
        "parse": parse,
        "dirhash": dirs.iter().map(|d| d.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "bind": bind,
        "decay": decay,
        "fixed": fixed,
    });
    let input = work.path().join("cases.json");
    let output = work.path().join("answers.json");
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/taoverse_reference.py");
    let run = std::process::Command::new(&python).arg(&script).arg(&input).arg(&output).output().unwrap();
    assert!(
        run.status.success(),
        "{} failed ({}); is taoverse in the venv (scripts/setup-venv)?\n{}\n{}",
        script.display(),
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let answers: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();

    // Rendering: byte-identical strings.
    for (c, theirs) in render.iter().zip(answers["render"].as_array().unwrap()) {
        assert_eq!(c.render().unwrap(), theirs.as_str().unwrap(), "{c:?}");
    }
    // Parsing: the same fields (taoverse's int competition id; -1 = its default for 4 fields).
    for (s, theirs) in parse.iter().zip(answers["parse"].as_array().unwrap()) {
        let ours = ModelCommitment::parse(s).unwrap();
        assert_eq!(ours.namespace, theirs["namespace"].as_str().unwrap(), "{s}");
        assert_eq!(ours.name, theirs["name"].as_str().unwrap(), "{s}");
        assert_eq!(ours.commit.as_deref(), theirs["commit"].as_str(), "{s}");
        assert_eq!(ours.hash.as_deref(), theirs["hash"].as_str(), "{s}");
        let comp = ours.competition_id.map_or(-1, |c| c.parse::<i64>().unwrap());
        assert_eq!(comp, theirs["competition_id"].as_i64().unwrap(), "{s}");
    }
    // Directory hashes.
    for (d, theirs) in dirs.iter().zip(answers["dirhash"].as_array().unwrap()) {
        assert_eq!(directory_hash(d, &HashLimits::default()).unwrap(), theirs.as_str().unwrap(), "{}", d.display());
    }
    // The hotkey-bound hash.
    for ((h, k), theirs) in bind.iter().zip(answers["bind"].as_array().unwrap()) {
        assert_eq!(bind_to_hotkey(h, k), theirs.as_str().unwrap());
    }
    // Epsilon: bit-identical floats.
    for (&(start, end, decay_blocks, cur, blk), theirs) in decay.iter().zip(answers["decay"].as_array().unwrap()) {
        let ours = Epsilon::LinearDecay { start, end, decay_blocks }.at(cur, blk);
        assert_eq!(ours.to_bits(), theirs.as_f64().unwrap().to_bits(), "LinearDecay({start}, {end}, {decay_blocks}) at {cur}, {blk}");
    }
    for (&(epsilon, cur, blk), theirs) in fixed.iter().zip(answers["fixed"].as_array().unwrap()) {
        assert_eq!(Epsilon::Fixed { epsilon }.at(cur, blk), theirs.as_f64().unwrap());
    }
    println!(
        "taoverse agrees: {} renders, {} parses, {} directory hashes, {} bound hashes, {} epsilons",
        render.len(),
        parse.len(),
        dirs.len(),
        bind.len(),
        decay.len() + fixed.len()
    );
}
