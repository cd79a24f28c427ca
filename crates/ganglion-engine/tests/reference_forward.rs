//! Cross-checks our all-position llama forward against candle-transformers' own
//! `quantized_llama` (which only returns the last position) on the real SmolLM2 GGUF.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use ganglion_engine::model::Logits;
use ganglion_engine::Engine;

#[test]
fn last_position_logits_match_candle_quantized_llama() {
    let path = common::smollm2_path();
    let engine = Engine::load(&path).unwrap();
    let tokens = engine.tokenizer().encode("The capital of France is Paris. The capital of Germany is");
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let input = candle_core::Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let want = reference.forward(&input, 0).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
    let model = engine.model();
    let all = model.forward(&tokens, &mut model.new_cache(), Logits::All).unwrap().to_vec2::<f32>().unwrap();
    let got = all.last().unwrap();
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "max |logit difference| {diff}");
    let argmax = |v: &[f32]| ganglion_engine::sampling::argmax(v);
    assert_eq!(argmax(got), argmax(&want));
    assert_eq!(engine.tokenizer().decode(&[argmax(got)], false).trim(), "Berlin");
}
