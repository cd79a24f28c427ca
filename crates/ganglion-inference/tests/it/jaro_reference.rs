//! Our standard Jaro and Jaro-Winkler against the `jellyfish` Python package on a corpus of
//! pairs: random strings over small alphabets (so that matches and transpositions are
//! common), edits of one another, Unicode, empty strings, and word sequences (each distinct
//! word mapped to one private-use character, which is how jellyfish, a string library,
//! compares sequences). Values must agree to 1e-12.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use ganglion_inference::jaro::{jaro, jaro_winkler, words};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../../../../tests/support/python.rs"]
mod support;

fn python() -> Option<PathBuf> {
    support::find_python()
}

fn random_string(rng: &mut StdRng, alphabet: &[char], max_len: usize) -> String {
    let len = rng.gen_range(0..=max_len);
    (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect()
}

fn edit(rng: &mut StdRng, s: &str, alphabet: &[char]) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..rng.gen_range(0..4) {
        match rng.gen_range(0..4) {
            0 if chars.len() > 1 => {
                let i = rng.gen_range(0..chars.len() - 1);
                chars.swap(i, i + 1);
            }
            1 if !chars.is_empty() => {
                chars.remove(rng.gen_range(0..chars.len()));
            }
            2 => chars.insert(rng.gen_range(0..=chars.len()), alphabet[rng.gen_range(0..alphabet.len())]),
            _ if !chars.is_empty() => {
                let i = rng.gen_range(0..chars.len());
                chars[i] = alphabet[rng.gen_range(0..alphabet.len())];
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn corpus() -> Vec<(String, String)> {
    let mut rng = StdRng::seed_from_u64(20_240_901);
    let small: Vec<char> = "abcd".chars().collect();
    let latin: Vec<char> = "abcdefghijklmnopqrstuvwxyz ".chars().collect();
    let unicode: Vec<char> = "aéü漢字😀ß".chars().collect();
    let mut pairs = vec![
        ("MARTHA".to_string(), "MARHTA".to_string()),
        ("DWAYNE".into(), "DUANE".into()),
        ("DIXON".into(), "DICKSONX".into()),
        ("".into(), "".into()),
        ("abc".into(), "".into()),
        ("a".into(), "a".into()),
        ("ab".into(), "ba".into()),
        ("The quick brown fox".into(), "The quick brown fox".into()),
    ];
    for alphabet in [&small, &latin, &unicode] {
        for _ in 0..150 {
            let a = random_string(&mut rng, alphabet, 24);
            let b = if rng.gen_bool(0.5) { edit(&mut rng, &a, alphabet) } else { random_string(&mut rng, alphabet, 24) };
            pairs.push((a, b));
        }
    }
    pairs
}

/// Word-level pairs, each word mapped to a private-use character.
fn word_corpus() -> Vec<(Vec<String>, Vec<String>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let vocabulary = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "and", "then"];
    let sentence = |rng: &mut StdRng| -> Vec<String> { (0..rng.gen_range(0..15)).map(|_| vocabulary[rng.gen_range(0..vocabulary.len())].to_string()).collect() };
    let mut pairs = vec![(
        words("The quick brown fox jumps over the lazy dog").iter().map(|w| w.to_string()).collect(),
        words("The quick brown cat jumps over a lazy dog").iter().map(|w| w.to_string()).collect(),
    )];
    for _ in 0..150 {
        let a = sentence(&mut rng);
        let mut b = a.clone();
        if rng.gen_bool(0.5) {
            b = sentence(&mut rng);
        } else if b.len() > 2 {
            b.swap(0, 1);
            b.pop();
        }
        pairs.push((a, b));
    }
    pairs
}

#[test]
fn standard_jaro_matches_jellyfish() {
    let Some(python) = python() else {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "the project venv (.venv) with jellyfish is required");
        println!("skipped: no .venv/bin/python with jellyfish (run scripts/setup-venv)");
        return;
    };
    let chars = corpus();
    let word_pairs = word_corpus();
    let mut codes: HashMap<String, char> = HashMap::new();
    let mut encode = |ws: &[String]| -> String {
        ws.iter()
            .map(|w| {
                let next = char::from_u32(0xE000 + codes.len() as u32).unwrap();
                *codes.entry(w.clone()).or_insert(next)
            })
            .collect()
    };
    let mut all: Vec<(String, String)> = chars.clone();
    for (a, b) in &word_pairs {
        let (ea, eb) = (encode(a), encode(b));
        all.push((ea, eb));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.json");
    std::fs::write(&input, serde_json::to_vec(&all).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jaro_reference.py");
    let output = std::process::Command::new(&python).arg(&script).arg(&input).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reference: Vec<(f64, f64)> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reference.len(), all.len());
    let mut checked = 0;
    for (i, ((a, b), (j_ref, jw_ref))) in all.iter().zip(&reference).enumerate() {
        let (ours_j, ours_jw) = if i < chars.len() {
            let (ca, cb): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            (jaro(&ca, &cb), jaro_winkler(&ca, &cb, 0.1))
        } else {
            let (wa, wb) = &word_pairs[i - chars.len()];
            (jaro(wa, wb), jaro_winkler(wa, wb, 0.1))
        };
        assert!((ours_j - j_ref).abs() < 1e-12, "jaro({a:?}, {b:?}) = {ours_j}, jellyfish {j_ref}");
        assert!((ours_jw - jw_ref).abs() < 1e-12, "jaro_winkler({a:?}, {b:?}) = {ours_jw}, jellyfish {jw_ref}");
        checked += 1;
    }
    assert!(checked > 500, "{checked} pairs");
    // The corpus exercises transpositions and the Winkler boost, not just trivial pairs.
    assert!(reference.iter().filter(|(j, jw)| jw > j).count() > 50);
}
