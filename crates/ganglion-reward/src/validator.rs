//! The reward-pipeline validator on the runtime: [`RewardValidator`] is the runtime's
//! [`Validator`]; one step is one forward ([`crate::forward`]) over the inference miners'
//! OpenAI endpoints ([`MinerQuerier`]: Epistula-signed `POST /v1/chat/completions`, bounded
//! in flight, in time and in bytes), each step's rewards folded into the per-uid moving
//! average (α = 0.05) that becomes weights (the runtime L1-normalises them and runs
//! `process_weights_for_netuid`).
//!
//! The status (`/status`) carries, per uid, the mean of each function's normalised value and
//! of the combined reward over the steps it was asked in since the process started
//! ([`UidTally`]): which mask or reward holds a miner down.
//!
//! State (saved atomically after every step): the scores by uid with their hotkeys
//! (`reward-scores.json`, the runtime's [`StateFile`]) and each function's state — running
//! statistics, blacklist memory, diversity history — next to it ([`Pipeline::save`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use ganglion_chain::Metagraph;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_neuron::peer::{PeerClient, axon_url};
use ganglion_neuron::state::{StateError, StateFile};
use ganglion_neuron::status::MinerStatus;
use ganglion_neuron::sync::HotkeyChange;
use ganglion_neuron::validator::{StepContext, Validator};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RewardError};
use crate::forward::{Answer, Candidate, Forward, Querier, Rater, StepEvent, draw_context};
use crate::normalize::{MOVING_AVERAGE_ALPHA, moving_average};
use crate::pipeline::Pipeline;

/// Bytes of a miner's answer read at most.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Asks miners through their OpenAI-compatible endpoints.
#[derive(Debug, Clone)]
pub struct MinerQuerier {
    client: PeerClient,
    targets: HashMap<u16, (String, PublicKey)>,
    model: String,
    max_tokens: u32,
    concurrency: usize,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
}
#[derive(Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}
#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<String>,
}

impl MinerQuerier {
    /// A querier signing with `hotkey`, asking for `model` with at most `max_tokens` tokens,
    /// `concurrency` queries in flight.
    pub fn new(
        hotkey: Keypair,
        model: String,
        max_tokens: u32,
        concurrency: usize,
    ) -> Result<Self> {
        let client = PeerClient::new(hotkey, MAX_ANSWER_BYTES)
            .map_err(|e| RewardError::Config(e.to_string()))?;
        Ok(MinerQuerier {
            client,
            targets: HashMap::new(),
            model,
            max_tokens,
            concurrency: concurrency.max(1),
        })
    }

    /// The served axons of the metagraph.
    pub fn set_targets(&mut self, metagraph: &Metagraph) {
        self.targets = metagraph
            .neurons()
            .iter()
            .filter_map(|n| n.axon.as_ref().map(|a| (n.uid, (axon_url(a), n.hotkey))))
            .collect();
    }

    /// Adds or replaces one target (`base`: `http://ip:port`).
    pub fn set_target(&mut self, uid: u16, base: String, hotkey: PublicKey) {
        self.targets.insert(uid, (base, hotkey));
    }

    async fn ask(&self, uid: u16, prompt: &str, timeout: Duration) -> Answer {
        let started = Instant::now();
        let Some((base, hotkey)) = self.targets.get(&uid) else {
            return Answer {
                uid,
                completion: None,
                seconds: 0.0,
                failure: Some("no axon".into()),
            };
        };
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "stream": false,
        });
        let reply = self
            .client
            .call::<_, ChatResponse>(base, hotkey, "/v1/chat/completions", &body, timeout)
            .await;
        let seconds = started.elapsed().as_secs_f64();
        match reply {
            Ok(reply) => match reply
                .body
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
            {
                Some(text) => Answer {
                    uid,
                    completion: Some(text),
                    seconds,
                    failure: None,
                },
                None => Answer {
                    uid,
                    completion: None,
                    seconds,
                    failure: Some("no choices".into()),
                },
            },
            Err(e) => Answer {
                uid,
                completion: None,
                seconds,
                failure: Some(e.to_string()),
            },
        }
    }
}

#[async_trait]
impl Querier for MinerQuerier {
    async fn query(&self, uids: &[u16], prompt: &str, timeout: Duration) -> Vec<Answer> {
        let mut out: Vec<Option<Answer>> = vec![None; uids.len()];
        let mut stream = futures::stream::iter(uids.iter().copied().enumerate())
            .map(|(i, uid)| async move { (i, self.ask(uid, prompt, timeout).await) })
            .buffer_unordered(self.concurrency);
        while let Some((i, answer)) = stream.next().await {
            out[i] = Some(answer);
        }
        out.into_iter()
            .zip(uids)
            .map(|(a, &uid)| {
                a.unwrap_or(Answer {
                    uid,
                    completion: None,
                    seconds: 0.0,
                    failure: Some("not asked".into()),
                })
            })
            .collect()
    }
}

/// One uid's figures over the steps it was asked in (since the process started).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UidTally {
    /// Steps it was asked in.
    pub steps: u64,
    /// Steps it answered.
    pub answered: u64,
    /// Sum of its combined rewards.
    pub reward_sum: f64,
    /// Sum of each function's normalised value (0 for failed answers), by function name.
    pub functions: std::collections::BTreeMap<String, f64>,
}

impl UidTally {
    /// Folds in a step event's figures for the uid at `index` of the event.
    pub fn add(&mut self, event: &StepEvent, index: usize) {
        self.steps += 1;
        if event.failures.get(index).is_some_and(Option::is_none) {
            self.answered += 1;
        }
        self.reward_sum += event.rewards.get(index).copied().unwrap_or(0.0);
        for function in &event.functions {
            *self.functions.entry(function.name.clone()).or_default() +=
                function.normalized.get(index).copied().unwrap_or(0.0);
        }
    }

    /// Means per step: `{"steps", "answered", "reward", "functions": {name: mean}}`.
    pub fn means(&self) -> serde_json::Value {
        let n = self.steps.max(1) as f64;
        let functions: serde_json::Map<String, serde_json::Value> = self
            .functions
            .iter()
            .map(|(name, sum)| (name.clone(), serde_json::json!(sum / n)))
            .collect();
        serde_json::json!({
            "steps": self.steps,
            "answered": self.answered,
            "reward": self.reward_sum / n,
            "functions": functions,
        })
    }
}

/// Where a forward's events go (the records store, a test's memory).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Stores one forward's events.
    async fn record(&self, block: u64, forward: u64, events: &[StepEvent]);
}

/// Settings of the validator.
#[derive(Debug, Clone)]
pub struct RewardSettings {
    /// Subnet.
    pub netuid: u16,
    /// Directory of the state files.
    pub data_dir: PathBuf,
    /// Uids per step (50).
    pub sample_size: usize,
    /// Deadline per query (10 s).
    pub timeout: Duration,
    /// Follow-up/answer rounds (4).
    pub rounds: usize,
    /// Seed of the validator's RNG (`None`: from the OS).
    pub seed: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedScores {
    scores: Vec<f64>,
    forwards: u64,
}

/// The reward-pipeline validator.
pub struct RewardValidator {
    settings: RewardSettings,
    querier: MinerQuerier,
    rater: Option<Arc<dyn Rater>>,
    pipeline: Pipeline,
    corpus: Arc<ganglion_corpus::Corpus>,
    sink: Option<Arc<dyn EventSink>>,
    scores: Vec<f64>,
    forwards: u64,
    rng: StdRng,
    state: StateFile,
    last: Vec<StepSummary>,
    tallies: HashMap<u16, UidTally>,
}

impl std::fmt::Debug for RewardValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewardValidator")
            .field("forwards", &self.forwards)
            .field("pipeline", &self.pipeline)
            .finish()
    }
}

/// One step of the last forward, for the status.
#[derive(Debug, Clone, Serialize)]
struct StepSummary {
    name: String,
    uids: usize,
    answered: usize,
    best_reward: f64,
    step_seconds: f64,
    scoring_seconds: f64,
}

impl RewardValidator {
    /// A validator; loads the saved scores and function states from `settings.data_dir`.
    pub fn new(
        settings: RewardSettings,
        querier: MinerQuerier,
        rater: Option<Arc<dyn Rater>>,
        mut pipeline: Pipeline,
        corpus: Arc<ganglion_corpus::Corpus>,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<Self> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| RewardError::Io {
            what: "creating",
            path: settings.data_dir.clone(),
            reason: e.to_string(),
        })?;
        let state = StateFile::new(
            settings.data_dir.join("reward-scores.json"),
            settings.netuid,
        );
        let saved: SavedScores = state
            .load()
            .map_err(|e| RewardError::Config(e.to_string()))?
            .unwrap_or_default();
        pipeline.load(&settings.data_dir)?;
        let rng = match settings.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Ok(RewardValidator {
            settings,
            querier,
            rater,
            pipeline,
            corpus,
            sink,
            scores: saved.scores,
            forwards: saved.forwards,
            rng,
            state,
            last: Vec::new(),
            tallies: HashMap::new(),
        })
    }

    /// The moving-average scores by uid.
    pub fn raw_scores(&self) -> &[f64] {
        &self.scores
    }

    /// Each uid's figures since the process started.
    pub fn tallies(&self) -> &HashMap<u16, UidTally> {
        &self.tallies
    }

    /// Runs one forward against `metagraph` (all but `own_uid`) and folds it into the scores.
    pub async fn forward(
        &mut self,
        metagraph: &Metagraph,
        own_uid: Option<u16>,
        block: u64,
    ) -> Result<Vec<StepEvent>> {
        self.querier.set_targets(metagraph);
        let n = usize::from(metagraph.n());
        if self.scores.len() < n {
            self.scores.resize(n, 0.0);
        }
        let candidates: Vec<Candidate> = metagraph
            .neurons()
            .iter()
            .filter(|neuron| Some(neuron.uid) != own_uid)
            .map(|neuron| Candidate {
                uid: neuron.uid,
                serving: neuron.axon.is_some(),
                validator_permit: neuron.validator_permit,
                stake: neuron.stake_tao(),
            })
            .collect();
        let context = draw_context(&self.corpus, &mut self.rng);
        let mut forward = Forward {
            querier: &self.querier,
            rater: self.rater.as_deref(),
            pipeline: &mut self.pipeline,
            sample_size: self.settings.sample_size,
            timeout: self.settings.timeout,
            rounds: self.settings.rounds,
        };
        let events = forward.run(&context, &candidates, &mut self.rng).await?;
        for event in &events {
            moving_average(
                &mut self.scores,
                &event.uids,
                &event.rewards,
                MOVING_AVERAGE_ALPHA,
            );
            for (index, uid) in event.uids.iter().enumerate() {
                self.tallies.entry(*uid).or_default().add(event, index);
            }
        }
        self.forwards += 1;
        self.last = events
            .iter()
            .map(|e| StepSummary {
                name: e.name.clone(),
                uids: e.uids.len(),
                answered: e.failures.iter().filter(|f| f.is_none()).count(),
                best_reward: e.rewards.iter().copied().fold(0.0, f64::max),
                step_seconds: e.step_length,
                scoring_seconds: e.scoring_seconds,
            })
            .collect();
        if let Some(sink) = &self.sink {
            sink.record(block, self.forwards, &events).await;
        }
        Ok(events)
    }
}

#[async_trait]
impl Validator for RewardValidator {
    async fn step(&mut self, ctx: &StepContext<'_>) -> std::result::Result<(), String> {
        self.forward(ctx.metagraph, Some(ctx.uid), ctx.block)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn scores(&self, metagraph: &Metagraph) -> Vec<(u16, f32)> {
        (0..metagraph.n())
            .map(|uid| {
                let s = self.scores.get(usize::from(uid)).copied().unwrap_or(0.0);
                (
                    uid,
                    if s.is_finite() && s > 0.0 {
                        s as f32
                    } else {
                        0.0
                    },
                )
            })
            .collect()
    }

    fn on_hotkey_change(&mut self, change: &HotkeyChange) {
        if let Some(score) = self.scores.get_mut(usize::from(change.uid)) {
            *score = 0.0;
        }
        self.tallies.remove(&change.uid);
    }

    fn status(
        &self,
        metagraph: &Metagraph,
        weights: &[(u16, f32)],
    ) -> (Vec<MinerStatus>, serde_json::Value) {
        let weight: HashMap<u16, f32> = weights.iter().copied().collect();
        let rows = metagraph
            .neurons()
            .iter()
            .map(|n| MinerStatus {
                uid: n.uid,
                hotkey: n.hotkey.to_ss58(),
                score: self.scores.get(usize::from(n.uid)).copied().unwrap_or(0.0),
                weight: f64::from(weight.get(&n.uid).copied().unwrap_or(0.0)),
                verified_share: None,
                last_failure: None,
                speed: None,
                details: self
                    .tallies
                    .get(&n.uid)
                    .map_or(serde_json::Value::Null, UidTally::means),
            })
            .collect();
        let details = serde_json::json!({
            "forwards": self.forwards,
            "functions": self.pipeline.names(),
            "last_forward": self.last,
        });
        (rows, details)
    }

    fn save(&mut self) -> std::result::Result<(), StateError> {
        self.state.save(&SavedScores {
            scores: self.scores.clone(),
            forwards: self.forwards,
        })?;
        self.pipeline
            .save(&self.settings.data_dir)
            .map_err(|e| StateError::Io {
                action: "writing",
                path: self.settings.data_dir.clone(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::FunctionRewards;

    fn event(
        uids: Vec<u16>,
        rewards: Vec<f64>,
        mask: Vec<f64>,
        failures: Vec<Option<String>>,
    ) -> StepEvent {
        StepEvent {
            name: "augment".into(),
            prompt: String::new(),
            base_prompt: String::new(),
            completions: vec![String::new(); uids.len()],
            completion_times: vec![0.0; uids.len()],
            failures,
            rewards,
            functions: vec![FunctionRewards {
                name: "task_validator_filter".into(),
                raw: mask.iter().map(|m| Some(*m)).collect(),
                normalized: mask,
            }],
            best: String::new(),
            step_length: 0.0,
            scoring_seconds: 0.0,
            uids,
        }
    }

    #[test]
    fn tallies_are_means_over_the_steps_a_uid_was_asked_in() {
        let mut tallies: HashMap<u16, UidTally> = HashMap::new();
        let steps = [
            event(vec![1, 2], vec![0.6, 0.0], vec![1.0, 0.0], vec![None, None]),
            event(
                vec![2, 1],
                vec![0.0, 0.2],
                vec![0.0, 1.0],
                vec![Some("timeout".into()), None],
            ),
            event(vec![1], vec![0.4], vec![0.0], vec![None]),
        ];
        for e in &steps {
            for (i, uid) in e.uids.iter().enumerate() {
                tallies.entry(*uid).or_default().add(e, i);
            }
        }
        let one = tallies[&1].means();
        assert_eq!(one["steps"], 3);
        assert_eq!(one["answered"], 3);
        assert!(
            (one["reward"].as_f64().unwrap() - 0.4).abs() < 1e-12,
            "{one}"
        );
        assert!(
            (one["functions"]["task_validator_filter"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12,
            "{one}"
        );
        let two = tallies[&2].means();
        assert_eq!(
            (two["steps"].as_u64(), two["answered"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(
            two["functions"]["task_validator_filter"].as_f64(),
            Some(0.0)
        );
    }
}
