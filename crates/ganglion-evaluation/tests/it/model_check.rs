//! The model checks of spec A3 on generated GGUF files: a good tiny llama passes with its
//! parameter count; the wrong architecture, too many parameters, an oversized file, a
//! truncated file, garbage, absurd tensor shapes, a string length past the end of the file,
//! NaN weights and over-limit norms each fail with their own typed error.

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use ganglion_evaluation::gguf::{ModelCheckError, ModelLimits, NORM_TENSORS, NormLimits, check_model, layer_norms, open};

fn limits() -> ModelLimits {
    ModelLimits {
        max_bytes: 64 * 1024 * 1024,
        architectures: vec!["llama".into()],
        max_parameters: 1_000_000,
        min_parameters: 0,
        norms: Some(NormLimits::default()),
    }
}

fn tiny(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    ganglion_engine::model::write_random_llama_gguf(&path, 3).unwrap();
    path
}

/// A llama-shaped GGUF with F32 matrices: every element of layer `l`'s kind `k` is
/// `value(l, k)` (so its norm is `value · √elements`), `layers` blocks of width 8.
fn constant_model(path: &Path, layers: usize, value: impl Fn(usize, usize) -> f32) {
    let dev = Device::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let t = |v: f32, shape: &[usize]| QTensor::quantize(&Tensor::full(v, shape, &dev).unwrap(), GgmlDType::F32).unwrap();
    tensors.push(("token_embd.weight".into(), t(0.5, &[32, 8])));
    for l in 0..layers {
        for (k, kind) in NORM_TENSORS.iter().enumerate() {
            let shape: &[usize] = if *kind == "ffn_up" { &[16, 8] } else if *kind == "ffn_down" { &[8, 16] } else { &[8, 8] };
            tensors.push((format!("blk.{l}.{kind}.weight"), t(value(l, k), shape)));
        }
    }
    let meta = [
        ("general.architecture", gguf_file::Value::String("llama".into())),
        ("llama.block_count", gguf_file::Value::U32(layers as u32)),
    ];
    let meta_refs: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
}

#[test]
fn a_good_model_passes_with_its_parameter_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path());
    let info = check_model(&path, &limits()).unwrap();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.layers, 2);
    // The writer's shapes: vocab 265 × 64 embedding, output norm, and per layer two norms,
    // q/o 64×64, k/v 32×64 (GQA), gate/up 128×64, down 64×128.
    let per_layer = 64 + 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64;
    assert_eq!(info.parameters, 265 * 64 + 64 + 2 * per_layer);
    assert_eq!(info.bytes, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn wrong_architecture_size_and_parameter_count_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path());
    let gemma = ModelLimits { architectures: vec!["gemma3".into()], ..limits() };
    assert!(matches!(check_model(&path, &gemma), Err(ModelCheckError::Architecture { found, .. }) if found == "llama"));
    let small = ModelLimits { max_parameters: 10_000, ..limits() };
    assert!(matches!(check_model(&path, &small), Err(ModelCheckError::Parameters { max: 10_000, .. })));
    let big = ModelLimits { min_parameters: 10_000_000, ..limits() };
    assert!(matches!(check_model(&path, &big), Err(ModelCheckError::Parameters { .. })));
    let tight = ModelLimits { max_bytes: 1000, ..limits() };
    assert!(matches!(check_model(&path, &tight), Err(ModelCheckError::TooLarge { limit: 1000, .. })));
}

#[test]
fn hostile_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    // Truncated mid-tensor.
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    match check_model(&cut, &limits()) {
        Err(ModelCheckError::BadTensor { reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Garbage.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model at all, just text").unwrap();
    assert!(matches!(check_model(&junk, &limits()), Err(ModelCheckError::Malformed(_))));
    // A header whose first key claims 2^60 bytes: refused without allocating it.
    let mut liar = b"GGUF".to_vec();
    liar.extend(3u32.to_le_bytes());
    liar.extend(0u64.to_le_bytes()); // tensors
    liar.extend(1u64.to_le_bytes()); // kv pairs
    liar.extend((1u64 << 60).to_le_bytes());
    liar.extend([b'x'; 64]);
    let liar_path = dir.path().join("liar.gguf");
    std::fs::write(&liar_path, &liar).unwrap();
    assert!(matches!(check_model(&liar_path, &limits()), Err(ModelCheckError::Malformed(_))));
    // A tensor of 2^40 × 2^40 F32 elements in a small file.
    let mut absurd = b"GGUF".to_vec();
    absurd.extend(3u32.to_le_bytes());
    absurd.extend(1u64.to_le_bytes()); // one tensor
    absurd.extend(1u64.to_le_bytes()); // one kv
    let key = b"general.architecture";
    absurd.extend((key.len() as u64).to_le_bytes());
    absurd.extend(key);
    absurd.extend(8u32.to_le_bytes()); // string
    absurd.extend(5u64.to_le_bytes());
    absurd.extend(b"llama");
    let name = b"blk.0.attn_q.weight";
    absurd.extend((name.len() as u64).to_le_bytes());
    absurd.extend(name);
    absurd.extend(2u32.to_le_bytes());
    absurd.extend((1u64 << 40).to_le_bytes());
    absurd.extend((1u64 << 40).to_le_bytes());
    absurd.extend(0u32.to_le_bytes()); // F32
    absurd.extend(0u64.to_le_bytes());
    absurd.resize(absurd.len() + 256, 0);
    let absurd_path = dir.path().join("absurd.gguf");
    std::fs::write(&absurd_path, &absurd).unwrap();
    match check_model(&absurd_path, &limits()) {
        Err(ModelCheckError::BadTensor { name, .. }) => assert_eq!(name, "blk.0.attn_q.weight"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn norms_are_frobenius_and_judged_by_the_originals_rule() {
    let dir = tempfile::tempdir().unwrap();
    // Layer l, kind k: value (l + 1)·(k + 1)/10; norm = value · √elements.
    let path = dir.path().join("c.gguf");
    constant_model(&path, 3, |l, k| ((l + 1) * (k + 1)) as f32 / 10.0);
    let (info, content) = open(&path, u64::MAX).unwrap();
    let norms = layer_norms(&path, &info, &content).unwrap();
    for (l, row) in norms.iter().enumerate() {
        for (k, &n) in row.iter().enumerate() {
            let elems = if k >= 4 { 128.0 } else { 64.0 };
            let want = f64::from(((l + 1) * (k + 1)) as f32 / 10.0) * f64::sqrt(elems);
            assert!((n - want).abs() < 1e-9, "layer {l} kind {k}: {n} vs {want}");
        }
    }
    let lim = ModelLimits { max_parameters: u64::MAX, ..limits() };
    check_model(&path, &lim).unwrap();
    // One matrix at norm 8·130 = 1040 > 1000.
    let hard = dir.path().join("hard.gguf");
    constant_model(&hard, 3, |l, k| if l == 1 && k == 2 { 130.0 } else { 0.1 });
    assert!(matches!(check_model(&hard, &lim), Err(ModelCheckError::HardNorm { name, .. }) if name == "blk.1.attn_v.weight"));
    // All q and k matrices at norm 8·30 = 240 > 200 in every layer: (1 + 1)/6 = 0.33 > 0.15.
    let soft = dir.path().join("soft.gguf");
    constant_model(&soft, 3, |_, k| if k < 2 { 30.0 } else { 0.1 });
    assert!(matches!(check_model(&soft, &lim), Err(ModelCheckError::SoftNorm { .. })));
    // A NaN weight.
    let nan = dir.path().join("nan.gguf");
    constant_model(&nan, 2, |l, k| if l == 1 && k == 5 { f32::NAN } else { 0.1 });
    assert!(matches!(check_model(&nan, &lim), Err(ModelCheckError::NonFinite(name)) if name == "blk.1.ffn_down.weight"));
}

/// A Hugging Face safetensors directory takes the same checks: the exported tiny llama passes
/// with the GGUF's parameter count and norms, and the architecture, size, parameter, layer
/// count and NaN rules each reject a changed copy.
#[test]
fn safetensors_directories_take_the_same_checks() {
    use ganglion_engine::hf_model::{ExportDType, export_gguf};
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tiny(tmp.path());
    let dir = tmp.path().join("hf");
    export_gguf(&gguf, &dir, ExportDType::F32).unwrap();
    let from_gguf = check_model(&gguf, &limits()).unwrap();
    let info = check_model(&dir, &limits()).unwrap();
    assert_eq!((info.architecture.as_str(), info.layers, info.parameters), ("llama", 2, from_gguf.parameters));
    // The norms: the same matrices (dequantised exactly), so the same verdicts on the same limits.
    let strict = ModelLimits { norms: Some(NormLimits { soft: 0.0, soft_fraction: 0.0, hard: 1e9 }), ..limits() };
    assert!(matches!(check_model(&dir, &strict), Err(ModelCheckError::SoftNorm { .. })));
    assert!(matches!(check_model(&gguf, &strict), Err(ModelCheckError::SoftNorm { .. })));

    let other = ModelLimits { architectures: vec!["gemma3".into()], ..limits() };
    assert!(matches!(check_model(&dir, &other), Err(ModelCheckError::Architecture { .. })));
    let small = ModelLimits { max_bytes: 1000, ..limits() };
    assert!(matches!(check_model(&dir, &small), Err(ModelCheckError::TooLarge { .. })));
    let few = ModelLimits { max_parameters: 1000, ..limits() };
    assert!(matches!(check_model(&dir, &few), Err(ModelCheckError::Parameters { .. })));

    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["num_hidden_layers"] = 3.into();
    let three = tmp.path().join("three");
    std::fs::create_dir(&three).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join(f), three.join(f)).unwrap();
    }
    std::fs::write(three.join("config.json"), config.to_string()).unwrap();
    assert!(matches!(check_model(&three, &limits()), Err(ModelCheckError::Malformed(_))));

    // A NaN in a value projection: find its bytes through the header and poison one weight.
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&weights[8..8 + n]).unwrap();
    let start = header["model.layers.1.self_attn.v_proj.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut poisoned = weights.clone();
    poisoned[8 + n + start..8 + n + start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(dir.join("model.safetensors"), poisoned).unwrap();
    match check_model(&dir, &limits()) {
        Err(ModelCheckError::NonFinite(name)) => assert_eq!(name, "model.layers.1.self_attn.v_proj.weight"),
        other => panic!("{other:?}"),
    }
}
