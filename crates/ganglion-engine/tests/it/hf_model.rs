//! Hugging Face model directories (`ganglion_engine::hf_model`): a GGUF exported to
//! safetensors + `config.json` + `tokenizer.json` loads back to the same model, and
//! candle-transformers' own Hugging Face llama (which reads the rotate-half query/key layout
//! natively) computes the same logits from the directory; hostile directories are refused
//! with their cause.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ganglion_engine::hf_model::{self, ExportDType, ModelFiles};
use ganglion_engine::model::Logits;
use ganglion_engine::tokenizer::ChatMessage;
use ganglion_engine::{Engine, EngineError};

use crate::common;

/// candle-transformers' llama on a Hugging Face directory: the last position's logits.
fn candle_llama_last_logits(dir: &Path, tokens: &[u32]) -> Vec<f32> {
    use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
    let dev = Device::Cpu;
    let cfg: LlamaConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let config = cfg.into_config(false);
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &dev).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &dev);
    let model = Llama::load(vb, &config).unwrap();
    let mut cache = Cache::new(false, DType::F32, &config, &dev).unwrap();
    let input = Tensor::new(tokens, &dev).unwrap().unsqueeze(0).unwrap();
    model.forward(&input, 0, &mut cache).unwrap().squeeze(0).unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

fn all_logits(engine: &Engine, tokens: &[u32]) -> Vec<Vec<f32>> {
    let m = engine.model();
    m.forward(tokens, &mut m.new_cache(), Logits::All).unwrap().to_vec2::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: content.into() }
}

fn chat() -> Vec<ChatMessage> {
    vec![message("system", "Answer briefly."), message("user", "Name a river in France.")]
}

#[test]
fn an_exported_gguf_loads_back_and_matches_candle_transformers_llama() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    ganglion_engine::model::write_random_llama_gguf(&gguf, 11).unwrap();
    let dir = tmp.path().join("tiny-hf");
    hf_model::export_gguf(&gguf, &dir, ExportDType::F32).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert!(dir.join(f).is_file(), "{f} was not written");
    }
    assert!(hf_model::export_gguf(&gguf, &dir, ExportDType::F32).is_err(), "an export over an existing directory must be refused");
    assert_eq!(hf_model::locate(&dir).unwrap(), ModelFiles::Safetensors(dir.clone()));

    let original = Engine::load(&gguf).unwrap();
    let loaded = Engine::load(&dir).unwrap();
    assert_eq!(loaded.model().config(), original.model().config(), "config.json must carry every hyper-parameter");

    // The tokenizer: the same ids, special tokens, BOS/EOS and chat rendering.
    let text = "Hello world, <|im_start|>user\nnaïve café 1234 <|im_end|>";
    assert_eq!(loaded.tokenizer().encode(text), original.tokenizer().encode(text));
    assert_eq!(loaded.tokenizer().encode_plain(text), original.tokenizer().encode_plain(text));
    assert_eq!((loaded.tokenizer().bos_token(), loaded.tokenizer().eos_token()), (original.tokenizer().bos_token(), original.tokenizer().eos_token()));
    assert_eq!(loaded.tokenizer().apply_chat_template(&chat(), true).unwrap(), original.tokenizer().apply_chat_template(&chat(), true).unwrap());

    // The weights: every position's logits as the GGUF's (dequantized exactly, so only the
    // order of float additions differs), and candle-transformers' llama on the directory at
    // each prefix's last position.
    let tokens = original.tokenizer().encode("The quick brown fox jumps over the lazy dog again and again");
    assert!(tokens.len() >= 12);
    let (want, got) = (all_logits(&original, &tokens), all_logits(&loaded, &tokens));
    for (pos, (w, g)) in want.iter().zip(&got).enumerate() {
        let d = max_diff(w, g);
        assert!(d < 1e-4, "position {pos}: |logit difference| {d} between the GGUF and its export");
    }
    for len in [1, 2, 5, tokens.len()] {
        let reference = candle_llama_last_logits(&dir, &tokens[..len]);
        let d = max_diff(&got[len - 1], &reference);
        assert!(d < 1e-4, "prefix of {len}: |logit difference| {d} against candle-transformers' llama");
    }

    // Scoring runs on it as on the GGUF (the packed path the validators use).
    let prompt = &tokens[..4];
    let completions = vec![tokens[4..9].to_vec(), tokens[4..12].to_vec()];
    let (a, b) = (original.score(prompt, &completions, 3).unwrap(), loaded.score(prompt, &completions, 3).unwrap());
    for (ca, cb) in a.completions.iter().zip(&b.completions) {
        assert!((ca.total_logprob() - cb.total_logprob()).abs() < 1e-3, "{} vs {}", ca.total_logprob(), cb.total_logprob());
    }
}

/// The real model: SmolLM2 exported in bf16 gives candle-transformers' llama's logits and the
/// right next word, and transformers' `AutoTokenizer` reads the directory's tokenizer files to
/// the ids and chat text of the GGUF's tokenizer.
#[test]
fn smollm2_exported_to_safetensors_runs_and_its_tokenizer_reads_in_transformers() {
    let gguf = common::smollm2_path();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2-hf");
    hf_model::export_gguf(&gguf, &dir, ExportDType::Bf16).unwrap();
    let original = Engine::load(&gguf).unwrap();
    let loaded = Engine::load(&dir).unwrap();
    let tokens = loaded.tokenizer().encode("The capital of France is Paris. The capital of Germany is");
    assert_eq!(tokens, original.tokenizer().encode("The capital of France is Paris. The capital of Germany is"));
    let got = all_logits(&loaded, &tokens).pop().unwrap();
    let reference = candle_llama_last_logits(&dir, &tokens);
    let d = max_diff(&got, &reference);
    assert!(d < 1e-2, "|logit difference| {d} against candle-transformers' llama");
    let best = ganglion_engine::sampling::argmax(&got);
    assert_eq!(best, ganglion_engine::sampling::argmax(&reference));
    assert_eq!(loaded.tokenizer().decode(&[best], false).trim(), "Berlin");

    let texts = [
        "Plain prose, with punctuation; and numbers 12,345.67 — plus naïve café.",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
        "日本語のテキスト 😀👍🏽 https://example.com/a?b=1",
    ];
    let chats = vec![chat(), vec![message("user", "Hi")]];
    let out = crate::tokenizers::reference(
        &common::python(),
        &["hf-dir", dir.to_str().unwrap()],
        &serde_json::json!({ "texts": texts, "chats": chats }),
    );
    for (text, ids) in texts.iter().zip(crate::tokenizers::ids_of(&out)) {
        assert_eq!(original.tokenizer().encode(text), ids, "transformers reads the exported tokenizer differently on {text:?}");
    }
    for (messages, text) in chats.iter().zip(out["chats"].as_array().unwrap()) {
        assert_eq!(original.tokenizer().apply_chat_template(messages, true).unwrap(), text.as_str().unwrap());
    }
    let eos = original.tokenizer().eos_token().map(|id| original.tokenizer().token_text(id));
    assert_eq!(out["eos"].as_str().map(str::to_string), eos);
}

fn expect_err(dir: &Path, what: &str) -> EngineError {
    match Engine::load(dir) {
        Ok(_) => panic!("{what}: the directory was accepted"),
        Err(e) => e,
    }
}

#[test]
fn hostile_or_incomplete_directories_are_refused_with_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    ganglion_engine::model::write_random_llama_gguf(&gguf, 5).unwrap();
    let good = tmp.path().join("good");
    hf_model::export_gguf(&gguf, &good, ExportDType::Bf16).unwrap();
    assert!(Engine::load(&good).is_ok());
    let copy = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for f in std::fs::read_dir(&good).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
        }
        d
    };
    let weights = std::fs::read(good.join("model.safetensors")).unwrap();

    let truncated = copy("truncated");
    std::fs::write(truncated.join("model.safetensors"), &weights[..weights.len() - 100]).unwrap();
    let e = expect_err(&truncated, "truncated weights");
    assert!(e.to_string().contains("truncated"), "{e}");

    let padded = copy("padded");
    let mut more = weights.clone();
    more.extend_from_slice(&[0u8; 64]);
    std::fs::write(padded.join("model.safetensors"), more).unwrap();
    expect_err(&padded, "padded weights");

    let huge = copy("huge-header");
    let mut bytes = weights.clone();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(huge.join("model.safetensors"), bytes).unwrap();
    let e = expect_err(&huge, "a header claiming a terabyte");
    assert!(e.to_string().contains("header"), "{e}");

    // A header whose shapes do not match the byte ranges (absurd shapes): the safetensors
    // crate's validation refuses it.
    let absurd = copy("absurd-shape");
    let n = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(weights[8..8 + n].to_vec()).unwrap();
    let hacked = header.replacen("[64]", "[4000000000000]", 1);
    assert_ne!(hacked, header);
    let mut bytes = (hacked.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(hacked.as_bytes());
    bytes.extend_from_slice(&weights[8 + n..]);
    std::fs::write(absurd.join("model.safetensors"), bytes).unwrap();
    expect_err(&absurd, "an absurd tensor shape");

    let wrong_config = copy("wrong-config");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(good.join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = 256.into();
    std::fs::write(wrong_config.join("config.json"), cfg.to_string()).unwrap();
    let e = expect_err(&wrong_config, "a config.json that disagrees with the weights");
    assert!(e.to_string().contains("shape"), "{e}");

    let scaled = copy("rope-scaling");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(good.join("config.json")).unwrap()).unwrap();
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
    std::fs::write(scaled.join("config.json"), cfg.to_string()).unwrap();
    assert!(matches!(expect_err(&scaled, "scaled RoPE"), EngineError::Unsupported(_)));

    let qwen = copy("other-architecture");
    cfg["rope_scaling"] = serde_json::Value::Null;
    cfg["model_type"] = "qwen2".into();
    std::fs::write(qwen.join("config.json"), cfg.to_string()).unwrap();
    assert!(matches!(expect_err(&qwen, "another architecture"), EngineError::UnsupportedArchitecture { .. }));

    let escaping = copy("escaping-index");
    std::fs::write(escaping.join("model.safetensors.index.json"), r#"{"weight_map":{"model.norm.weight":"../good/model.safetensors"}}"#).unwrap();
    let e = expect_err(&escaping, "a shard outside the directory");
    assert!(e.to_string().contains("plain file name"), "{e}");

    let no_tokenizer = copy("no-tokenizer");
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    assert!(matches!(hf_model::locate(&no_tokenizer), Err(EngineError::CorruptDirectory { .. })));
}
