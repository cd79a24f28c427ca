//! Verification on the real model: honest miners (the engine behind the miner proxy) pass
//! both modes; each dishonest strategy is caught with its cause; the upstream reference
//! (`engine serve` with `prompt_logprobs`) agrees with the in-process one.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{MODEL, canned, chat_body, engine, engine_server, key, target};
use ganglion_inference::cause::Cause;
use common::dishonest::{Cheat, upstream as dishonest};
use ganglion_inference::miner::{self, MinerConfig, UpstreamConfig};
use ganglion_inference::openai::{Endpoint, InferenceRequest, Message, Prompt, Sampling};
use ganglion_inference::reference::{LocalReference, Reference, UpstreamReference};
use ganglion_inference::validator::{Dendrite, RoundResult, Target, run_round};
use ganglion_inference::verify::{VerifyConfig, VerifyMode};
use ganglion_protocol::policy::PolicyConfig;

/// A miner proxy (no chain, admits any signed caller) in front of `upstream` (the honest
/// engine server), or of a dishonest upstream in front of it with `cheat`. Keep the handle:
/// dropping it stops the miner.
async fn proxy(name: &str, upstream: SocketAddr, cheat: Option<Cheat>) -> (Target, miner::MinerHandle) {
    let upstream = match cheat {
        Some(cheat) => dishonest(upstream, engine(), cheat).await,
        None => upstream,
    };
    let upstreams = vec![UpstreamConfig { name: MODEL.into(), url: format!("http://{upstream}/v1"), api_key: None, max_concurrency: 4 }];
    let mut config = MinerConfig::new(1, key(&format!("//{name}")), "127.0.0.1:0".parse().unwrap(), upstreams);
    config.policy = PolicyConfig::default();
    config.axon.serve = false;
    let handle = miner::start(config, None, None).await.unwrap();
    (target(0, name, handle.addr()), handle)
}

fn chat(content: &str, sampling: Sampling) -> InferenceRequest {
    InferenceRequest {
        model: MODEL.into(),
        endpoint: Endpoint::Chat,
        prompt: Prompt::Chat(vec![Message { role: "user".into(), content: content.into() }]),
        sampling,
    }
}

async fn round(request: &InferenceRequest, targets: &[Target], mode: VerifyMode, reference: &dyn Reference) -> Vec<RoundResult> {
    let dendrite = Dendrite::new(key("//Validator"), Duration::from_secs(2)).unwrap();
    let config = VerifyConfig { mode, ..VerifyConfig::default() };
    let limits = common::limits(request.sampling.max_tokens, Duration::from_secs(120), Duration::from_secs(240));
    run_round(&dendrite, Some(reference), &config, request, targets, limits).await
}

fn cause(r: &RoundResult) -> Option<Cause> {
    r.failure().map(|f| f.cause)
}

fn show(results: &[RoundResult]) -> String {
    results.iter().map(|r| format!("uid {}: {:?} {:?}\n", r.target.addr, r.verdict.outcome, r.verdict.stats)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_passes_and_each_cheat_is_caught() {
    let engine = engine();
    let upstream = engine_server(engine.clone()).await;
    let reference = LocalReference::new(engine.clone(), MODEL);
    let (honest, _h1) = proxy("Honest", upstream, None).await;
    let (slow, _h2) = proxy("Slow", upstream, Some(Cheat::Slow(3.0))).await;
    let (truncate, _h3) = proxy("Truncate", upstream, Some(Cheat::Truncate(0.3))).await;
    let (random, _h4) = proxy("Random", upstream, Some(Cheat::RandomTokens)).await;

    // A replay: a real answer, but to another prompt.
    let other = chat("Describe the moon in one sentence.", Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 16, seed: Some(1), ..Sampling::default() });
    let other_ids = other.prompt_tokens(engine.tokenizer()).unwrap();
    let replayed = reference.generate(other_ids.clone(), other.sampling).await.unwrap();
    let replay = target(0, "Replay", canned(chat_body(&engine, &replayed.tokens, replayed.finish, 30)).await);

    // Greedy: everything is exact, so every cheat is caught with a precise cause.
    let request = chat("Explain what a lighthouse does.", Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 16, seed: Some(11), ..Sampling::default() });
    let targets = vec![honest.clone(), slow.clone(), truncate.clone(), random.clone(), replay.clone()];
    let results = round(&request, &targets, VerifyMode::Logprob, &reference).await;
    let text = show(&results);
    assert!(results[0].verdict.verified(), "honest:\n{text}");
    assert!(results[1].verdict.verified(), "slow but honest:\n{text}");
    assert!(results[1].tps().unwrap() < results[0].tps().unwrap(), "the slow miner is slower:\n{text}");
    assert_eq!(cause(&results[2]), Some(Cause::EarlyEnd), "truncated:\n{text}");
    assert_eq!(cause(&results[3]), Some(Cause::UnlikelyToken), "random tokens:\n{text}");
    assert_eq!(cause(&results[4]), Some(Cause::UnlikelyToken), "replayed answer:\n{text}");

    // Sampled: the nucleus and the statistics catch the random and replayed tokens.
    let request = chat("Write two sentences about bread.", Sampling { temperature: 0.8, top_p: 0.9, max_tokens: 24, seed: Some(4242), ..Sampling::default() });
    let results = round(&request, &[honest.clone(), random.clone(), replay.clone()], VerifyMode::Logprob, &reference).await;
    let text = show(&results);
    assert!(results[0].verdict.verified(), "honest sampled:\n{text}");
    assert!(matches!(cause(&results[1]), Some(Cause::UnlikelyToken | Cause::UnlikelyTokens)), "random:\n{text}");
    assert!(cause(&results[2]).is_some(), "replay:\n{text}");

    // Ground truth: same seed, same engine, so honest answers match token for token.
    let results = round(&request, &[honest, slow, truncate, random], VerifyMode::GroundTruth, &reference).await;
    let text = show(&results);
    assert!(results[0].verdict.verified() && results[0].verdict.stats["exact"] == true, "honest GT:\n{text}");
    assert!(results[1].verdict.verified(), "slow GT:\n{text}");
    assert!(matches!(cause(&results[2]), Some(Cause::Similarity | Cause::EarlyEnd)), "truncated GT:\n{text}");
    assert_eq!(cause(&results[3]), Some(Cause::Similarity), "random GT:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_the_end_and_sampling_hotter_than_declared_are_caught() {
    let engine = engine();
    let reference = LocalReference::new(engine.clone(), MODEL);
    let request = chat("Answer with a single word: is water wet?", Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 32, seed: Some(3), ..Sampling::default() });
    let prompt = request.prompt_tokens(engine.tokenizer()).unwrap();
    let honest = reference.generate(prompt.clone(), request.sampling).await.unwrap();
    assert_eq!(honest.finish, "stop", "the prompt must make the model stop by itself: {honest:?}");
    let ends = ganglion_inference::reference::end_tokens(engine.tokenizer());
    let mut padded: Vec<u32> = honest.tokens.iter().copied().filter(|t| !ends.contains(t)).collect();
    padded.extend(engine.tokenizer().encode(" And here is a lot more text to earn more tokens."));
    padded.truncate(32);
    let skipper = target(1, "Skipper", canned(chat_body(&engine, &padded, "stop", prompt.len())).await);

    // Tokens sampled at temperature 1.6 while 0.3 was asked for.
    let mut hot = request.sampling;
    hot.temperature = 1.6;
    hot.max_tokens = 24;
    let cold = Sampling { temperature: 0.3, top_p: 0.95, max_tokens: 24, seed: Some(9), ..Sampling::default() };
    let prose = chat("Tell a short story about a cat.", cold);
    let prose_prompt = prose.prompt_tokens(engine.tokenizer()).unwrap();
    let sampled = reference.generate(prose_prompt.clone(), Sampling { seed: Some(9), ..hot }).await.unwrap();
    let hotter = target(2, "Hotter", canned(chat_body(&engine, &sampled.tokens, sampled.finish, prose_prompt.len())).await);

    let results = round(&request, &[skipper], VerifyMode::Logprob, &reference).await;
    assert_eq!(cause(&results[0]), Some(Cause::SkippedEos), "{}", show(&results));
    let results = round(&prose, &[hotter], VerifyMode::Logprob, &reference).await;
    assert!(matches!(cause(&results[0]), Some(Cause::UnlikelyToken | Cause::UnlikelyTokens | Cause::SkippedEos | Cause::EarlyEnd)), "{}", show(&results));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_reference_agrees_with_the_built_in_one() {
    let engine = engine();
    let server = engine_server(engine.clone()).await;
    let local = LocalReference::new(engine.clone(), MODEL);
    // The upstream reference reads only the GGUF's header: no weights.
    let (tokenizer, context) = ganglion_engine::tokenizer::Tokenizer::from_gguf_with_context(&common::smollm2_path()).unwrap();
    assert_eq!(context, Some(engine.context_length()));
    let upstream =
        UpstreamReference::new(&format!("http://{server}/v1"), None, MODEL, std::sync::Arc::new(tokenizer), engine.context_length(), Duration::from_secs(120)).unwrap();
    let request = chat("Name three rivers.", Sampling { temperature: 0.7, top_p: 0.95, max_tokens: 12, seed: Some(77), ..Sampling::default() });
    let prompt = request.prompt_tokens(engine.tokenizer()).unwrap();
    let a = local.generate(prompt.clone(), request.sampling).await.unwrap();
    let b = upstream.generate(prompt.clone(), request.sampling).await.unwrap();
    assert_eq!(a.tokens, b.tokens, "same seed, same engine, same tokens");
    let random: Vec<u32> = (0..8).map(|i| 1000 + i * 997).collect();
    let completions = vec![a.tokens.clone(), random];
    let sa = local.score(prompt.clone(), completions.clone(), 20).await.unwrap();
    let sb = upstream.score(prompt.clone(), completions, 20).await.unwrap();
    for (x, y) in sa.iter().flatten().zip(sb.iter().flatten()) {
        assert_eq!(x.token, y.token);
        // The two paths batch the forward pass differently (one shared-prefix batch against one
        // request per completion), so logits differ in the last float bits. Ranks near the top
        // — the ones verification judges — must agree; deep in the 49k-token tail, near-ties
        // may swap places (CI saw rank 14507 against 14506 for a random token).
        if x.rank < 100 {
            assert_eq!(x.rank, y.rank, "{x:?} vs {y:?}");
        } else {
            assert!(x.rank.abs_diff(y.rank) <= 1 + x.rank / 1000, "{x:?} vs {y:?}");
        }
        assert!((x.logprob - y.logprob).abs() < 1e-3, "{x:?} vs {y:?}");
        assert_eq!(x.top.iter().map(|t| t.0).collect::<Vec<_>>(), y.top.iter().map(|t| t.0).collect::<Vec<_>>());
    }
    // And the verdicts agree on an honest and a random miner.
    let honest = target(1, "Honest", server);
    let (random, _handle) = proxy("Random", server, Some(Cheat::RandomTokens)).await;
    let random = Target { uid: 2, ..random };
    let by_local = round(&request, &[honest.clone(), random.clone()], VerifyMode::Logprob, &local).await;
    let by_upstream = round(&request, &[honest, random], VerifyMode::Logprob, &upstream).await;
    assert!(by_local[0].verdict.verified() && by_upstream[0].verdict.verified(), "{}{}", show(&by_local), show(&by_upstream));
    assert!(cause(&by_local[1]).is_some() && cause(&by_upstream[1]).is_some());
}

/// Gemma's template writes `<bos>` and its servers add BOS to completion prompts
/// (`add_bos_token`): the validator's requests reach the model with exactly one BOS on both
/// endpoints, and its references stop at Gemma's `<end_of_turn>`. The tokenizer is read from
/// the GGUF's header alone, as an upstream reference reads it.
#[test]
fn gemma_requests_carry_one_bos_and_end_at_end_of_turn() {
    use ganglion_inference::prompts::PromptBank;
    use rand::SeedableRng;
    let dir = ganglion_engine::store::models_dir().unwrap();
    let path = ganglion_engine::store::resolve_model("gemma3-270m", &dir)
        .unwrap_or_else(|e| panic!("{e}: run `ganglion model pull gemma3-270m`"));
    let (tokenizer, context) = ganglion_engine::tokenizer::Tokenizer::from_gguf_with_context(&path).unwrap();
    assert_eq!(context, Some(32_768));
    let bos = tokenizer.bos_token().unwrap();
    assert!(tokenizer.adds_bos());
    let bank = PromptBank::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut endpoints = std::collections::HashSet::new();
    for _ in 0..40 {
        let request = ganglion_inference::validator::synthetic_request(&bank, &mut rng, "gemma3-270m", Some(&tokenizer), (16, 32), false);
        let ids = request.prompt_tokens(&tokenizer).unwrap();
        assert_eq!(ids.iter().filter(|&&id| id == bos).count(), 1, "{:?}: {:?}", request.endpoint, &ids[..ids.len().min(8)]);
        assert_eq!(ids[0], bos);
        endpoints.insert(format!("{:?}", request.endpoint));
    }
    assert_eq!(endpoints.len(), 2, "both endpoints were drawn");
    let end_of_turn = tokenizer.token_id("<end_of_turn>").unwrap();
    assert!(ganglion_inference::reference::end_tokens(&tokenizer).contains(&end_of_turn));
}
