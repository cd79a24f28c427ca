//! The DPO reward on the engine's SmolLM2: the −11 rules, and without the penalty the exact
//! mean of the engine's own teacher-forced log-probabilities (`Engine::score_sequence`, an
//! independent code path); the penalty hurts a repetitive completion far more than a varied one.

use ganglion_reward::dpo::{Dpo, LOWEST};

use crate::common::engine;

#[test]
fn dpo_rules_and_values() {
    let engine = engine();
    let dpo = Dpo::new(engine.clone());
    for bad in ["", "     ", "short", "\n\t\n\t\n\t"] {
        assert_eq!(
            dpo.reward("Tell me about bees.", bad).unwrap(),
            LOWEST,
            "{bad:?}"
        );
    }
    let long_prompt = "bees ".repeat(engine.context_length() + 10);
    assert_eq!(dpo.reward(&long_prompt, " a fine answer").unwrap(), LOWEST);

    let prompt = "The capital of France is";
    let completion = " Paris, a city known for the Eiffel Tower and its museums.";
    let plain = Dpo::with_penalty(engine.clone(), 1.0)
        .reward(prompt, completion)
        .unwrap();
    let tokens = engine.tokenizer().encode(&format!("{prompt}{completion}"));
    let p = engine.tokenizer().encode(prompt).len();
    let scores = engine.score_sequence(&tokens, 0).unwrap();
    let want: f64 = scores[p - 1..]
        .iter()
        .map(|s| f64::from(s.logprob))
        .sum::<f64>()
        / (tokens.len() - p) as f64;
    assert!((plain - want).abs() < 1e-4, "dpo {plain} vs engine {want}");
    assert!(plain < 0.0 && plain > LOWEST);

    // Without repeats the penalty only moves the normalisation a little (earlier tokens'
    // logits shrink), never the way a repeat does.
    let penalised = dpo.reward(prompt, completion).unwrap();
    assert!((penalised - plain).abs() < 0.5, "{penalised} vs {plain}");
    // The prompt's prefill is run once and reused for the next completion of the same
    // prompt (and replaced for another prompt): the values are a fresh instance's.
    let lyon = " Lyon, a city on the Rhone.";
    assert_eq!(
        dpo.reward(prompt, lyon).unwrap(),
        Dpo::new(engine.clone()).reward(prompt, lyon).unwrap()
    );
    assert_eq!(dpo.reward(prompt, completion).unwrap(), penalised);
    let bees = dpo.reward("Bees make", " honey in their hives.").unwrap();
    assert_eq!(
        bees,
        Dpo::new(engine.clone())
            .reward("Bees make", " honey in their hives.")
            .unwrap()
    );
    // A repetitive completion is predictable without the penalty and much less so with it.
    let repetitive = " Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris";
    let rep_plain = Dpo::with_penalty(engine.clone(), 1.0)
        .reward(prompt, repetitive)
        .unwrap();
    let rep_penalised = dpo.reward(prompt, repetitive).unwrap();
    assert!(
        rep_penalised < rep_plain - 1.0,
        "penalised {rep_penalised} vs plain {rep_plain}"
    );
}

/// A step's completions scored together (packed several to a forward pass, more rows than
/// one pass takes) get the rewards each gets alone, the −11 rules included, in order.
#[test]
fn batched_rewards_equal_one_at_a_time() {
    let engine = engine();
    let dpo = Dpo::new(engine.clone());
    let prompt = "Explain briefly how rivers shape the land around them.\n\n";
    let mut completions: Vec<String> = vec![
        "short".into(),
        " Rivers carve valleys by eroding rock and carrying sediment downstream.".into(),
        String::new(),
        " Paris Paris Paris Paris Paris Paris Paris Paris".into(),
    ];
    // Long ones, so the batch needs more than one packed pass (1,024 rows each).
    for i in 0..12 {
        completions.push(format!(
            " Answer {i}: {}",
            "Water flows downhill, cutting channels, depositing silt on floodplains and building deltas where it meets the sea. ".repeat(4)
        ));
    }
    let rows: usize = completions.iter().map(|c| engine.tokenizer().encode(c).len()).sum();
    assert!(rows > 1100, "{rows} rows should need two passes");
    let batched = dpo.rewards(prompt, &completions).unwrap();
    assert_eq!(batched.len(), completions.len());
    let one_at_a_time = Dpo::new(engine.clone());
    for (c, got) in completions.iter().zip(&batched) {
        let alone = one_at_a_time.reward(prompt, c).unwrap();
        assert!((got - alone).abs() < 1e-5, "{c:?}: batched {got} vs alone {alone}");
    }
    assert_eq!(batched[0], LOWEST);
    assert_eq!(batched[2], LOWEST);
    assert!(batched[1] > LOWEST && batched[1] < 0.0);
}
