//! Cross-checks our all-position llama forward against candle-transformers' own
//! `quantized_llama` (which only returns the last position) on the real SmolLM2 GGUF.
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use ganglion_engine::model::{Logits, WeightFormat};
use ganglion_engine::Engine;

#[test]
fn last_position_logits_match_candle_quantized_llama() {
    let path = common::smollm2_path();
    let engine = Engine::load_as(&path, WeightFormat::AsStored).unwrap();
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

/// The fast weight format (Q4_1 requantised to Q8_0) stays close to the weights as stored.
#[test]
fn fast_weights_stay_close_to_the_stored_ones() {
    let path = common::smollm2_path();
    let exact = Engine::load_as(&path, WeightFormat::AsStored).unwrap();
    let fast = Engine::load(&path).unwrap();
    let tokens = exact.tokenizer().encode("Write one sentence about rivers. Rivers carry water from mountains to the sea, and");
    let run = |e: &Engine| {
        let m = e.model();
        let logits = m.forward(&tokens, &mut m.new_cache(), Logits::All).unwrap();
        ganglion_engine::model::log_softmax_rows(&logits).unwrap()
    };
    let (a, b) = (run(&exact), run(&fast));
    let mut worst = 0.0f32;
    let mut same_argmax = 0;
    for (ra, rb) in a.iter().zip(&b) {
        let diff = ra.iter().zip(rb).map(|(x, y)| (x.exp() - y.exp()).abs()).fold(0.0f32, f32::max);
        worst = worst.max(diff);
        same_argmax += usize::from(ganglion_engine::sampling::argmax(ra) == ganglion_engine::sampling::argmax(rb));
    }
    eprintln!("largest probability difference {worst}, same argmax at {same_argmax}/{} positions", a.len());
    assert!(worst < 0.05, "largest probability difference {worst}");
    assert!(same_argmax * 10 >= a.len() * 9, "argmax agrees at only {same_argmax}/{} positions", a.len());
}
