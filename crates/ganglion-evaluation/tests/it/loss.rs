//! Losses on the engine with a tiny generated llama (ChatML template): the response-only chat
//! loss equals a direct computation from the all-position logits of one forward pass (a
//! different engine path than `score_sequence`), the prompt's tokens are the full
//! sequence's prefix, truncation that leaves no response is an error, and the text loss
//! packs documents with one EOS each.

use ganglion_engine::Engine;
use ganglion_engine::model::{Logits, log_softmax_rows};
use ganglion_evaluation::loss::{LossError, Sample, chat_loss, chat_losses, pack_documents, text_loss, tokenize_sample};

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    ganglion_engine::model::write_random_llama_gguf(&path, 11).unwrap();
    let engine = Engine::load(&path).unwrap();
    (dir, engine)
}

/// Mean NLL of `ids[p]` over `p ≥ first`, from one all-position forward.
fn direct(engine: &Engine, ids: &[u32], first: usize) -> f64 {
    let model = engine.model();
    let mut cache = model.new_cache();
    let logits = model.forward(&ids[..ids.len() - 1], &mut cache, Logits::All).unwrap();
    let rows = log_softmax_rows(&logits).unwrap();
    let nll: Vec<f64> = (first.max(1)..ids.len()).map(|p| -f64::from(rows[p - 1][ids[p] as usize])).collect();
    nll.iter().sum::<f64>() / nll.len() as f64
}

#[test]
fn chat_loss_is_over_response_tokens_only() {
    let (_dir, engine) = engine();
    let sample = Sample { prompt: "hello world, what is a wordnet?".into(), response: "a lexical database of english.".into() };
    let t = tokenize_sample(engine.tokenizer(), &sample, 2048).unwrap();
    let prompt_ids = engine
        .tokenizer()
        .encode_chat(&[ganglion_engine::tokenizer::ChatMessage { role: "user".into(), content: sample.prompt.clone() }], true)
        .unwrap();
    assert_eq!(&t.ids[..t.prompt_len], &prompt_ids[..], "the rendered prompt is a prefix of the full chat");
    assert!(t.ids.len() > t.prompt_len + 10);
    let loss = chat_loss(&engine, &sample, 2048).unwrap();
    let want = direct(&engine, &t.ids, t.prompt_len);
    assert!((loss - want).abs() < 1e-4, "{loss} vs {want}");
    // Scoring the whole sequence gives another number: the prompt really is excluded.
    let all = direct(&engine, &t.ids, 1);
    assert!((all - loss).abs() > 1e-3, "{all} vs {loss}");
    // A random model is near log(vocab) = ln 265 ≈ 5.58 per token.
    assert!(loss > 3.0 && loss < 9.0, "{loss}");
    // Truncated inside the prompt: nothing to score.
    assert!(matches!(chat_loss(&engine, &sample, t.prompt_len - 2), Err(LossError::NoResponseTokens(_))));
    // Truncated inside the response: the loss of what is left.
    let cut = t.prompt_len + 4;
    let short = chat_loss(&engine, &sample, cut).unwrap();
    assert!((short - direct(&engine, &t.ids[..cut], t.prompt_len)).abs() < 1e-4);
}

#[test]
fn batched_chat_losses_equal_one_pass_per_sample() {
    let (_dir, engine) = engine();
    let ask = "Please tell me, in a few words, what this means: ";
    let mut samples: Vec<Sample> = ["lexicon", "gloss", "hypernym", "synset"]
        .iter()
        .enumerate()
        .map(|(i, w)| Sample { prompt: format!("{ask}{w}"), response: format!("answer {i}: {}", "a word about words ".repeat(i + 1)) })
        .collect();
    // Its prompt alone is longer than the cut: no response tokens, for this sample only.
    samples.push(Sample { prompt: format!("{ask}{}", "very long ".repeat(60)), response: "short".into() });
    let prefix = tokenize_sample(engine.tokenizer(), &samples[0], 2048).unwrap();
    let cut = prefix.ids.len() + 40;
    assert!(tokenize_sample(engine.tokenizer(), &samples[4], cut).unwrap().prompt_len >= cut);
    let batched = chat_losses(&engine, engine.tokenizer(), &samples, cut);
    assert_eq!(batched.len(), samples.len());
    for (sample, got) in samples.iter().zip(&batched) {
        match (chat_loss(&engine, sample, cut), got) {
            (Ok(want), Ok(got)) => assert!((want - got).abs() < 1e-4, "{want} vs {got}"),
            (Err(LossError::NoResponseTokens(_)), Err(LossError::NoResponseTokens(_))) => {}
            (want, got) => panic!("{want:?} vs {got:?}"),
        }
    }
    assert!(batched[..4].iter().all(Result::is_ok) && batched[4].is_err());
    // One sample alone takes the one-pass route and gives the same number.
    let alone = chat_losses(&engine, engine.tokenizer(), &samples[1..2], cut);
    assert!((alone[0].as_ref().unwrap() - batched[1].as_ref().unwrap()).abs() < 1e-4);
}

#[test]
fn text_loss_packs_documents_with_eos() {
    let (_dir, engine) = engine();
    let tok = engine.tokenizer();
    let docs = vec!["hello world ".repeat(8), "a second document, different".to_string(), "x".repeat(40)];
    let rows = pack_documents(tok, &docs, 32);
    let eos = tok.eos_token().unwrap();
    let stream: Vec<u32> = docs.iter().flat_map(|d| tok.encode_plain(d).into_iter().chain([eos])).collect();
    assert!(rows.iter().all(|r| r.len() == 32), "full rows only");
    assert_eq!(rows.len(), stream.len() / 32);
    assert_eq!(rows.concat(), stream[..rows.len() * 32]);
    let loss = text_loss(&engine, &rows).unwrap();
    let want = rows.iter().map(|r| direct(&engine, r, 1)).sum::<f64>() / rows.len() as f64;
    assert!((loss - want).abs() < 1e-4, "{loss} vs {want}");
    assert!(matches!(text_loss(&engine, &[]), Err(LossError::NoResponseTokens(0))));
}
