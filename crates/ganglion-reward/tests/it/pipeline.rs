//! The pipeline on real MiniLM embeddings: bad completions (failed, empty, enormous, a copy
//! of the prompt, keyword-stuffed, off-topic, identical) get what the spec gives them, and in
//! a whole forward of fake miners each bad one is held down at the steps its mask targets.
//!
//! A constant reward function (1 for every completion) stands in for DPO and the judge, so the
//! masks alone decide: each bad miner must be held down by the mask that targets it.

use std::time::Duration;

use async_trait::async_trait;
use rand::SeedableRng;

use ganglion_reward::forward::{Answer, Candidate, Forward, Querier};
use ganglion_reward::normalize::{MOVING_AVERAGE_ALPHA, moving_average};
use ganglion_reward::pipeline::{
    BlacklistMask, DiversityMask, Kind, Pipeline, RelevanceMask, RewardModel, StepInput,
    TaskValidatorMask,
};

use crate::common::embedder;

/// 1 for every completion, unnormalised.
struct Constant;

impl RewardModel for Constant {
    fn name(&self) -> &'static str {
        "constant"
    }
    fn kind(&self) -> Kind {
        Kind::Reward { weight: 1.0 }
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> ganglion_reward::Result<Vec<f64>> {
        Ok(vec![1.0; input.completions.len()])
    }
}

fn pipeline() -> Pipeline {
    let models: Vec<Box<dyn RewardModel>> = vec![
        Box::new(Constant),
        Box::new(BlacklistMask::default()),
        Box::new(TaskValidatorMask),
        Box::new(RelevanceMask::default()),
        Box::new(DiversityMask::default()),
    ];
    Pipeline::new(models, Some(embedder())).unwrap()
}

const SUMMARY: &str = "Honey bees tell their nest mates where flowers are with a waggle dance. \
The angle of the dance shows the direction relative to the sun, and its length shows the distance.";

#[test]
fn bad_completions_get_what_the_spec_gives_them() {
    let mut pipeline = pipeline();
    let prompt = format!(
        "{SUMMARY}\n\nAsk a single relevant and insightful question about the preceding context. Do not try to return an answer or a summary:"
    );
    let enormous = "bees dance ".repeat(100_000);
    let responses: Vec<Option<String>> = vec![
        Some("How do honey bees use the waggle dance to tell the direction of flowers?".into()), // 0 good
        None,                                                           // 1 failed
        Some(String::new()),                                            // 2 empty
        Some(enormous),                                                 // 3 enormous
        Some(prompt.clone()),                                           // 4 a copy of the prompt
        Some("Answer: the bees dance. Answer: the bees dance.".into()), // 5 keyword-stuffed
        Some("To bake bread, knead flour, water and yeast, then bake it in a hot oven.".into()), // 6 off-topic
        Some("Why does the length of the waggle dance matter to the other bees?".into()), // 7 identical
        Some("Why does the length of the waggle dance matter to the other bees?".into()), // 8 identical
    ];
    let out = pipeline
        .score("followup0", &prompt, SUMMARY, &responses, None)
        .unwrap();
    let get = |name: &str| {
        out.functions
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .clone()
    };
    let (task, relevance, diversity) = (
        get("task_validator_filter"),
        get("relevance_filter"),
        get("diversity_reward_model"),
    );
    assert!(
        out.rewards
            .iter()
            .all(|r| r.is_finite() && (0.0..=1.0).contains(r)),
        "{:?}",
        out.rewards
    );
    // Failed: raw NaN (None), normalised 0, reward 0.
    assert!(
        out.functions
            .iter()
            .all(|f| f.raw[1].is_none() && f.normalized[1] == 0.0)
    );
    assert_eq!(out.rewards[1], 0.0);
    // The prompt's own "…or a summary:" is a summary keyword at a follow-up step.
    assert_eq!(task.normalized[4], 0.0);
    assert_eq!(
        task.normalized[5], 0.0,
        "answer keyword at a follow-up step"
    );
    assert_eq!(relevance.normalized[6], 0.0, "off-topic");
    assert_eq!(relevance.normalized[2], 0.0, "empty");
    assert_eq!(
        relevance.normalized[0], 1.0,
        "the good question is relevant"
    );
    // Identical completions are each other's nearest neighbour at distance 0: 1/(1+e^4).
    for i in [7, 8] {
        assert!(
            (diversity.normalized[i] - 1.0 / (1.0 + 4f64.exp())).abs() < 1e-3,
            "{}",
            diversity.normalized[i]
        );
    }
    // The enormous repetition is on topic, so no mask holds it down: with the constant reward
    // it ties with the good question. The DPO reward's repetition penalty is what ranks it
    // low (tests/it/dpo.rs).
    assert!(relevance.normalized[3] == 1.0 && out.rewards[3].is_finite());
    assert!(out.best == 0 || out.best == 3, "rewards {:?}", out.rewards);
    assert!(out.rewards[0] > 0.9);
    for i in [2, 4, 5, 6] {
        assert_eq!(out.rewards[i], 0.0, "response {i}");
    }
    assert!(out.rewards[7] < 0.02 && out.rewards[8] < 0.02);
}

#[test]
fn blacklist_remembers_best_questions_and_state_persists() {
    let mut pipeline = pipeline();
    let question = "How do honey bees use the waggle dance to tell the direction of flowers?";
    let responses = vec![
        Some(question.to_owned()),
        Some("What does the angle of the dance show to the other bees?".into()),
    ];
    let first = pipeline
        .score("followup0", "prompt", SUMMARY, &responses, None)
        .unwrap();
    assert_eq!(first.best, 0);
    let dir = tempfile::tempdir().unwrap();
    pipeline.save(dir.path()).unwrap();
    // A fresh pipeline loaded from the saved state refuses the remembered best question.
    let mut reloaded = self::pipeline();
    reloaded.load(dir.path()).unwrap();
    let again = reloaded
        .score("followup1", "prompt", SUMMARY, &responses, None)
        .unwrap();
    let blacklist = again
        .functions
        .iter()
        .find(|f| f.name == "blacklist_filter")
        .unwrap();
    assert_eq!(blacklist.normalized, vec![0.0, 1.0]);
    assert_eq!(again.best, 1);
    assert!(dir.path().join("reward-diversity-history.bin").is_file());
}

/// Fake miners that read the prompt and answer as their kind does.
struct FakeMiners;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind2 {
    Good,
    GoodToo,
    Echo,
    OffTopic,
    Duplicate,
    RuleBreaker,
}

const MINERS: [Kind2; 6] = [
    Kind2::Good,
    Kind2::GoodToo,
    Kind2::Echo,
    Kind2::OffTopic,
    Kind2::Duplicate,
    Kind2::RuleBreaker,
];

fn context_of(prompt: &str) -> &str {
    prompt.split("\n\n").next().unwrap_or(prompt)
}

fn sentences(text: &str) -> Vec<String> {
    text.split(". ")
        .map(|s| s.trim().trim_end_matches('.').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn topic(text: &str) -> String {
    text.split(':').next().unwrap_or(text).trim().to_owned()
}

fn good(prompt: &str, variant: usize) -> String {
    let context = context_of(prompt);
    let s = sentences(context);
    let pick = |i: usize| s.get(i).or(s.first()).cloned().unwrap_or_default();
    if prompt.contains("Summarize the preceding context") {
        return if variant == 0 {
            format!("{}. {}.", pick(0), pick(1))
        } else {
            format!("{}. {}.", pick(2), pick(3))
        };
    }
    if prompt.contains("Ask a single relevant") {
        return if variant == 0 {
            format!("What is meant by {}?", topic(context))
        } else {
            format!("Could you explain why {}?", pick(0))
        };
    }
    let question = prompt
        .rsplit("Question:")
        .next()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    if variant == 0 {
        format!("{} is explained as follows. {}.", topic(question), pick(0))
    } else {
        format!(
            "Step by step: {} The context says {}.",
            question.trim_end_matches('?'),
            pick(0)
        )
    }
}

#[async_trait]
impl Querier for FakeMiners {
    async fn query(&self, uids: &[u16], prompt: &str, _timeout: Duration) -> Vec<Answer> {
        uids.iter()
            .map(|&uid| {
                let text = match MINERS[usize::from(uid)] {
                    Kind2::Good | Kind2::Duplicate => good(prompt, 0),
                    Kind2::GoodToo => good(prompt, 1),
                    Kind2::Echo => prompt.to_owned(),
                    Kind2::OffTopic => "To bake bread, knead flour, water, salt and yeast, let it rise, then bake it in a hot oven.".to_owned(),
                    Kind2::RuleBreaker => format!("Summary: Question: Answer: {}", good(prompt, 1)),
                };
                Answer { uid, completion: Some(text), seconds: 0.1, failure: None }
            })
            .collect()
    }
}

#[tokio::test]
async fn a_forward_with_bad_miners_puts_the_honest_ones_first() {
    let corpus = ganglion_corpus::Corpus::locate().unwrap_or_else(|e| panic!("{e}"));
    let mut pipeline = pipeline();
    let candidates: Vec<Candidate> = (0..MINERS.len() as u16)
        .map(|uid| Candidate {
            uid,
            serving: true,
            validator_permit: false,
            stake: 0.0,
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut scores = vec![0.0; MINERS.len()];
    let started = std::time::Instant::now();
    let mut steps = 0;
    for _ in 0..1 {
        let context = ganglion_reward::forward::draw_context(&corpus, &mut rng);
        let mut forward = Forward {
            querier: &FakeMiners,
            rater: None,
            pipeline: &mut pipeline,
            sample_size: 50,
            timeout: Duration::from_secs(1),
            rounds: 4,
        };
        let events = forward.run(&context, &candidates, &mut rng).await.unwrap();
        assert_eq!(events.len(), 9);
        assert_eq!(events[0].name, "augment");
        assert_eq!(events[8].name, "answer3");
        for event in &events {
            assert_eq!(
                event.uids.len(),
                MINERS.len(),
                "all six asked, refilled from the excluded"
            );
            moving_average(
                &mut scores,
                &event.uids,
                &event.rewards,
                MOVING_AVERAGE_ALPHA,
            );
            steps += 1;
            let reward_of = |kind: Kind2| {
                let i = event
                    .uids
                    .iter()
                    .position(|&u| MINERS[usize::from(u)] == kind)
                    .unwrap();
                event.rewards[i]
            };
            assert_eq!(
                reward_of(Kind2::OffTopic),
                0.0,
                "{}: off-topic passes relevance",
                event.name
            );
            assert_eq!(
                reward_of(Kind2::RuleBreaker),
                0.0,
                "{}: keywords pass the task validator",
                event.name
            );
            assert!(
                reward_of(Kind2::Duplicate) < 0.02,
                "{}: the duplicate passes diversity",
                event.name
            );
            if event.name != "augment" {
                // The follow-up prompt says "…or a summary:", the answer prompt "Question:".
                assert_eq!(
                    reward_of(Kind2::Echo),
                    0.0,
                    "{}: the echo passes",
                    event.name
                );
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "forward: {steps} steps × {} miners scored in {elapsed:.2?}; scores {scores:.4?}",
        MINERS.len()
    );
    let good_too = scores[1];
    assert!(good_too > 0.0);
    // An echo of the augment prompt passes every mask, as in the original: the blacklist
    // compares the stripped completion with the prompt, which ends in "\n\n", and the
    // prompt has no task keyword; so the echo is only held down at the other eight steps
    // (checked above), and it is not compared with the honest miner here.
    for kind in [
        Kind2::OffTopic,
        Kind2::Duplicate,
        Kind2::RuleBreaker,
        Kind2::Good,
    ] {
        let i = MINERS.iter().position(|k| *k == kind).unwrap();
        assert!(
            good_too > scores[i],
            "{kind:?} ({}) not below the honest miner ({good_too})",
            scores[i]
        );
    }
}
