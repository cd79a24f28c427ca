//! The tokenizers and chat templates against independent references:
//! * llama.cpp's own vocab-only GGUFs with their expected ids (`scripts/install-llama-vocab`);
//! * llama.cpp itself (llama-cpp-python, `scripts/install-llama-cpp-python`) on a few hundred
//!   KB of the shared corpus plus tricky strings, for SmolLM2 and Gemma 3 270M;
//! * transformers' GGUF → `tokenizer.json` conversion and Hugging Face `tokenizers` (Python)
//!   for the `tokenizer.json` constructor;
//! * transformers' `apply_chat_template` for the chat templates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ganglion_engine::tokenizer::{ChatMessage, Tokenizer, VocabSpec, GEMMA3_CHAT_TEMPLATE};

/// `${GANGLION_HOME:-$HOME/.ganglion}/llama-vocab`, installed by `scripts/install-llama-vocab`.
fn llama_vocab_dir() -> PathBuf {
    let home = std::env::var_os("GANGLION_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ganglion")))
        .expect("HOME or GANGLION_HOME must be set");
    let dir = home.join("llama-vocab");
    assert!(
        dir.join("ggml-vocab-llama-spm.gguf").is_file(),
        "llama.cpp's test vocabularies are missing from {}: run scripts/install-llama-vocab",
        dir.display()
    );
    dir
}

/// The Python of `scripts/install-llama-cpp-python`'s venv.
fn llama_cpp_python() -> PathBuf {
    let venv = std::env::var_os("GANGLION_LLAMACPP_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ganglion/venv-llamacpp")))
        .expect("HOME must be set");
    let python = venv.join("bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/install-llama-cpp-python", python.display());
    python
}

fn models_dir() -> PathBuf {
    ganglion_engine::store::models_dir().expect("HOME or GANGLION_HOME must be set")
}

fn gemma3_path() -> PathBuf {
    let path = models_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(path.is_file(), "{} is missing: run `ganglion model pull gemma3-270m`", path.display());
    path
}

/// Runs `tests/tokenizer_reference.py <args>` with `python`, JSON in and out.
pub(crate) fn reference(python: &Path, args: &[&str], input: &serde_json::Value) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tokenizer_reference.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = serde_json::to_vec(input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}\n(run scripts/setup-venv for transformers/tokenizers, scripts/install-llama-cpp-python for llama-cpp-python)",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn ids_of(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v["ids"].as_array().unwrap().iter().map(|ids| ids.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()).collect()
}

fn gguf_tokenizer(path: &Path) -> Tokenizer {
    Tokenizer::from_spec(VocabSpec::from_gguf(path).unwrap()).unwrap()
}

/// llama.cpp's tests/test-tokenizer-0 cases: `.inp` inputs separated by `__ggml_vocab_test__`
/// lines, `.out` one line of ids per input (Hugging Face's `encode(add_special_tokens=False)`).
fn vocab_cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let mut inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|i| i.parse().unwrap()).collect()).collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: inputs and outputs differ in number");
    inputs.into_iter().map(String::from).zip(outputs).collect()
}

fn mismatches(tok: &Tokenizer, cases: &[(String, Vec<u32>)]) -> Vec<String> {
    cases
        .iter()
        .filter_map(|(text, want)| {
            let got = tok.encode_plain(text);
            (&got != want).then(|| format!("{text:?}\n  want {want:?}\n  got  {got:?}"))
        })
        .collect()
}

/// The vocabularies whose every case we reproduce (the others are listed in
/// `other_llama_cpp_vocabularies`).
const PASSING_VOCABS: &[&str] =
    &["gpt-2", "llama-bpe", "qwen2", "llama-spm", "starcoder", "refact", "mpt", "phi-3", "command-r", "qwen35", "falcon", "deepseek-coder"];

#[test]
fn llama_cpp_test_vocabularies_tokenize_to_the_expected_ids() {
    let dir = llama_vocab_dir();
    let mut failures = Vec::new();
    for name in PASSING_VOCABS {
        let tok = gguf_tokenizer(&dir.join(format!("ggml-vocab-{name}.gguf")));
        let cases = vocab_cases(&dir, name);
        assert!(cases.len() >= 30, "{name}: only {} cases", cases.len());
        let bad = mismatches(&tok, &cases);
        if !bad.is_empty() {
            failures.push(format!("{name}: {} of {} cases differ:\n{}", bad.len(), cases.len(), bad.join("\n")));
        }
        // Decoding gives the text back (SentencePiece: with the prefixed space).
        for (text, want) in &cases {
            let decoded = tok.decode(want, false);
            let expect = if *name == "llama-spm" || *name == "phi-3" { format!(" {text}") } else { text.clone() };
            if !text.is_empty() && decoded != expect && !decoded.contains('\u{FFFD}') {
                failures.push(format!("{name}: decode({want:?}) = {decoded:?}, want {expect:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Builds the tokenizers that are not in [`PASSING_VOCABS`] and reports (without failing) how
/// many of their cases match: the record of what is left.
#[test]
fn other_llama_cpp_vocabularies() {
    let dir = llama_vocab_dir();
    for name in ["deepseek-llm", "bert-bge", "gemma-4"] {
        let path = dir.join(format!("ggml-vocab-{name}.gguf"));
        match VocabSpec::from_gguf(&path).and_then(Tokenizer::from_spec) {
            Err(e) => eprintln!("{name}: not supported: {e}"),
            Ok(tok) => {
                let cases = vocab_cases(&dir, name);
                eprintln!("{name}: {} of {} cases match", cases.len() - mismatches(&tok, &cases).len(), cases.len());
            }
        }
    }
}

/// A few hundred KB of the shared corpus in ~2 KB texts, plus strings that stress the
/// pre-tokenizers, byte fallback and special-token splitting.
fn corpus_texts() -> &'static [String] {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let corpus = ganglion_corpus::Corpus::locate().expect("the corpus is missing: run scripts/install-corpus");
        let entries = corpus.entries();
        let mut texts = Vec::new();
        let mut current = String::new();
        let mut total = 0;
        // Every 31st sense: nouns, verbs, adjectives and adverbs alike.
        for entry in entries.iter().step_by(31) {
            current.push_str(&entry.passage());
            current.push(if total % 3 == 0 { '\n' } else { ' ' });
            if current.len() > 2000 {
                total += current.len();
                texts.push(std::mem::take(&mut current));
                if total > 300_000 {
                    break;
                }
            }
        }
        texts.extend(TRICKY.iter().map(|s| s.to_string()));
        texts
    })
}

const TRICKY: &[&str] = &[
    "",
    " ",
    "  leading spaces and trailing   ",
    "\n\n\nnewlines\r\n\tand tabs\t\t \n",
    "1234567890 12.50 3,141,592 -7e10 0x1F ½ ² ③ Ⅻ ١٢٣",
    "I'm sure you'll see they're right, we've done it, he'd say, it's 'quoted'. DON'T SHOUT I'LL",
    "naïve café déjà vu — Straße Œuvre e\u{301} a\u{308}",
    "日本語のテキスト、中文文本。한국어 Ελληνικά и русский текст मानक हिन्दी",
    "Emoji: 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷 🦙.cpp",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "https://example.com/path?query=1&b=2#frag email@example.org $100 50% ~tilde^",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "text<eos>after<pad> and <unk> and <|endoftext|> and <mask>",
    "not special: <|im_start and <start_of_turn",
    "    indented\n        code   \n",
    "\u{0}\u{1}\u{7f} control bytes \u{1b}[0m",
];

/// Our ids against llama.cpp's for one model, in both modes (special tokens parsed and BOS
/// as the model asks; plain text without BOS).
fn compare_with_llama_cpp(path: &Path) {
    let tok = gguf_tokenizer(path);
    let texts = corpus_texts();
    let python = llama_cpp_python();
    let path_str = path.to_str().unwrap();
    for (add_bos, special) in [(true, true), (false, false)] {
        let want = ids_of(&reference(
            &python,
            &["llama-cpp", path_str],
            &serde_json::json!({ "texts": texts, "add_bos": add_bos, "special": special }),
        ));
        let mut bad = Vec::new();
        for (text, want) in texts.iter().zip(&want) {
            let got = if special { tok.encode(text) } else { tok.encode_plain(text) };
            if &got != want {
                let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
                let lo = at.saturating_sub(3);
                bad.push(format!(
                    "{:?}…\n  at token {at}: want {:?}\n                got  {:?}",
                    text.chars().take(60).collect::<String>(),
                    &want[lo..(at + 4).min(want.len())],
                    &got[lo..(at + 4).min(got.len())]
                ));
            }
        }
        let bytes: usize = texts.iter().map(String::len).sum();
        assert!(bytes > 250_000);
        assert!(
            bad.is_empty(),
            "{}: {} of {} texts differ from llama.cpp (special={special}):\n{}",
            path.display(),
            bad.len(),
            texts.len(),
            bad.join("\n")
        );
    }
}

#[test]
fn smollm2_matches_llama_cpp_on_the_corpus() {
    compare_with_llama_cpp(&common::smollm2_path());
}

#[test]
fn gemma3_matches_llama_cpp_on_the_corpus() {
    compare_with_llama_cpp(&gemma3_path());
}

#[test]
fn bos_follows_add_bos_token() {
    let smol = gguf_tokenizer(&common::smollm2_path());
    assert!(!smol.adds_bos());
    assert_eq!(smol.encode("Hello"), smol.encode_plain("Hello"));
    let gemma = gguf_tokenizer(&gemma3_path());
    assert!(gemma.adds_bos());
    assert_eq!(gemma.bos_token(), Some(2));
    assert_eq!(gemma.encode("Hello")[0], 2);
    // The chat template writes <bos> itself: exactly one.
    let msgs = [ChatMessage { role: "user".into(), content: "Hi".into() }];
    let ids = gemma.encode_chat(&msgs, true).unwrap();
    assert_eq!(ids[0], 2);
    assert_ne!(ids[1], 2);
    // Byte-fallback tokens stand for their byte, `▁` for a space.
    let byte = gemma.token_id("<0x0A>").unwrap();
    assert_eq!(gemma.token_bytes(byte), b"\n");
    assert_eq!(gemma.token_bytes(gemma.token_id("▁the").unwrap()), b" the");
}

/// The Python venv with transformers and tokenizers (`scripts/setup-venv`).
fn hf_python() -> PathBuf {
    common::python()
}

/// transformers' conversion of a GGUF's tokenizer to a `tokenizer.json` (slow: cached in the
/// target directory by file name and size).
fn converted_tokenizer_json(gguf: &Path) -> PathBuf {
    let size = std::fs::metadata(gguf).unwrap().len();
    let name = gguf.file_stem().unwrap().to_string_lossy();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hf-tokenizer-{name}-{size}"));
    let json = dir.join("tokenizer.json");
    if !json.is_file() {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        reference(&hf_python(), &["gguf-to-json", gguf.to_str().unwrap(), tmp.path().to_str().unwrap()], &serde_json::json!({}));
        // Another test process may have won the race; either copy is the same.
        let _ = std::fs::rename(tmp.keep(), &dir);
    }
    json
}

/// Drops the BOS a tokenizer put in front.
fn without_bos(tok: &Tokenizer, ids: &[u32]) -> Vec<u32> {
    match ids.split_first() {
        Some((first, rest)) if tok.adds_bos() && Some(*first) == tok.bos_token() => rest.to_vec(),
        _ => ids.to_vec(),
    }
}

/// The `tokenizer.json` constructor against Hugging Face `tokenizers` (Python) on the same
/// file, and against the GGUF-built tokenizer (BOS aside), on the corpus. The files are
/// transformers' conversions of llama.cpp's Llama (SentencePiece) and Qwen2 (byte-level BPE)
/// test vocabularies: no real tokenizer.json is at hand offline. SmolLM2 is not among them
/// because transformers 5.24 converts it without its `smollm` digit split.
#[test]
fn tokenizer_json_agrees_with_gguf_and_with_hugging_face() {
    let vocab = llama_vocab_dir();
    let texts = corpus_texts();
    let mut bad = Vec::new();
    for gguf in [vocab.join("ggml-vocab-llama-spm.gguf"), vocab.join("ggml-vocab-qwen2.gguf")] {
        let json_path = converted_tokenizer_json(&gguf);
        let from_json = Tokenizer::from_tokenizer_json_file(&json_path).unwrap();
        let from_gguf = gguf_tokenizer(&gguf);
        // transformers may append a token of its own (an `<unk>`/pad) to the converted vocabulary.
        assert!(from_json.vocab_size() >= from_gguf.vocab_size(), "{}", gguf.display());
        let want = ids_of(&reference(&hf_python(), &["hf-encode", json_path.to_str().unwrap()], &serde_json::json!({ "texts": texts })));
        let name = gguf.file_name().unwrap().to_string_lossy().into_owned();
        for (text, want) in texts.iter().zip(&want) {
            let json_ids = from_json.encode(text);
            let gguf_ids = from_gguf.encode(text);
            // transformers' SentencePiece (Metaspace, prepend "first") and llama.cpp (a space
            // before every stretch of text, then `▁` for every space) differ on leading
            // whitespace and on text after a special token: the GGUF side follows llama.cpp
            // (see the tests above), so those texts are compared with Python only.
            let spm_whitespace = name.contains("spm") && (text.starts_with(char::is_whitespace) || text.contains('<'));
            if &json_ids != want || (!spm_whitespace && without_bos(&from_gguf, &gguf_ids) != without_bos(&from_json, &json_ids)) {
                bad.push(format!("{name}: {text:?}\n  python {want:?}\n  json   {json_ids:?}\n  gguf   {gguf_ids:?}"));
            } else if !spm_whitespace && from_json.decode_bytes(&json_ids, true) != from_gguf.decode_bytes(&gguf_ids, true) {
                bad.push(format!("{name}: {text:?} decodes differently"));
            }
        }
    }
    assert!(bad.is_empty(), "{} texts differ:\n{}", bad.len(), bad.join("\n"));
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: content.into() }
}

/// Our rendering of chat templates against transformers' `apply_chat_template`.
#[test]
fn chat_templates_render_as_transformers_does() {
    let vocab = llama_vocab_dir();
    let template = |name: &str| std::fs::read_to_string(vocab.join("templates").join(name)).unwrap();
    let smol = VocabSpec::from_gguf(&common::smollm2_path()).unwrap();
    let templates: Vec<(&str, String, &str, &str)> = vec![
        ("SmolLM2 (GGUF)", smol.chat_template.clone().unwrap(), "<|im_start|>", "<|im_end|>"),
        ("Gemma 3 (built in)", GEMMA3_CHAT_TEMPLATE.to_string(), "<bos>", "<eos>"),
        ("Gemma 2", template("google-gemma-2-2b-it.jinja"), "<bos>", "<eos>"),
        ("Llama 3.1", template("meta-llama-Llama-3.1-8B-Instruct.jinja"), "<|begin_of_text|>", "<|eot_id|>"),
        ("Qwen 2.5", template("Qwen-Qwen2.5-7B-Instruct.jinja"), "<|endoftext|>", "<|im_end|>"),
        ("Phi 3.5", template("microsoft-Phi-3.5-mini-instruct.jinja"), "<s>", "<|endoftext|>"),
    ];
    let conversations: Vec<Vec<ChatMessage>> = vec![
        vec![msg("user", "Hi")],
        vec![msg("system", "Be brief."), msg("user", "  What is 2+2?\n"), msg("assistant", "4"), msg("user", "And 3+3?")],
        vec![msg("user", "naïve 日本 😀 \"quotes\" {braces} {{ not jinja }}")],
        vec![msg("user", "a"), msg("user", "b")],
    ];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (name, text, bos, eos) in &templates {
        let mut spec = ganglion_engine::tokenizer::tiny_byte_level_spec();
        for special in [*bos, *eos] {
            if !spec.tokens.iter().any(|t| t == special) {
                spec.tokens.push(special.to_string());
                spec.token_types.push(3);
            }
        }
        spec.bos = spec.tokens.iter().position(|t| t == bos).map(|i| i as u32);
        spec.eos = spec.tokens.iter().position(|t| t == eos).map(|i| i as u32);
        spec.chat_template = Some(text.clone());
        let tok = Tokenizer::from_spec(spec).unwrap();
        for messages in &conversations {
            for add_generation_prompt in [true, false] {
                cases.push(serde_json::json!({
                    "template": text, "bos": bos, "eos": eos, "messages": messages,
                    "add_generation_prompt": add_generation_prompt,
                }));
                ours.push((*name, tok.apply_chat_template(messages, add_generation_prompt)));
            }
        }
    }
    // The renderer needs some tokenizer; a one-word vocabulary will do.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    let word_level = r#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": null, "truncation": null, "padding": null,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"}}"#;
    std::fs::write(&json, word_level).unwrap();
    let want = reference(
        &hf_python(),
        &["chat", json.to_str().unwrap()],
        &serde_json::json!({ "cases": cases }),
    );
    let want = want["texts"].as_array().unwrap();
    let mut bad = Vec::new();
    let mut rendered = 0;
    for ((name, got), want) in ours.iter().zip(want) {
        match (got, want.as_str()) {
            (Ok(got), Some(want)) if got == want => rendered += 1,
            // Both refuse (e.g. roles that do not alternate).
            (Err(_), None) => {}
            (got, _) => bad.push(format!("{name}:\n  transformers {want}\n  ours         {got:?}")),
        }
    }
    assert!(rendered >= templates.len() * 5, "only {rendered} renderings compared");
    assert!(bad.is_empty(), "{} of {} renderings differ:\n{}", bad.len(), ours.len(), bad.join("\n"));
}

/// Tokenization speed, ours against llama.cpp's (llama-cpp-python, vocabulary load excluded),
/// on 1 MB of the corpus: `cargo test -p ganglion-engine --test it tokenize_speed -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn tokenize_speed() {
    let corpus = ganglion_corpus::Corpus::locate().expect("the corpus is missing: run scripts/install-corpus");
    let mut texts = Vec::new();
    let mut current = String::new();
    let mut total = 0;
    for entry in corpus.entries() {
        current.push_str(&entry.passage());
        current.push('\n');
        if current.len() > 2000 {
            total += current.len();
            texts.push(std::mem::take(&mut current));
            if total >= 1_000_000 {
                break;
            }
        }
    }
    for path in [common::smollm2_path(), gemma3_path()] {
        let start = std::time::Instant::now();
        let tok = gguf_tokenizer(&path);
        let load = start.elapsed().as_secs_f64();
        let mut best = f64::INFINITY;
        let mut count = 0;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            count = texts.iter().map(|t| tok.encode(t).len()).sum::<usize>();
            best = best.min(start.elapsed().as_secs_f64());
        }
        let theirs = reference(&llama_cpp_python(), &["llama-cpp-time", path.to_str().unwrap()], &serde_json::json!({ "texts": texts }));
        let their_secs = theirs["seconds"].as_f64().unwrap();
        let mb = total as f64 / 1e6;
        eprintln!(
            "{}: {mb:.2} MB, {count} tokens (llama.cpp {}): ours {:.3} s = {:.2} MB/s (tokenizer built in {load:.2} s), llama.cpp {their_secs:.3} s = {:.2} MB/s",
            path.file_name().unwrap().to_string_lossy(),
            theirs["tokens"],
            best,
            mb / best,
            mb / their_secs
        );
    }
}
