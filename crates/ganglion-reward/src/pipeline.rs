//! The reward pipeline: reward functions and masks behind one trait ([`RewardModel`]) and
//! their combination, as openvalidators 1.2.0's `run_step` does it:
//!
//! ```text
//! responses ─► successful ones, stripped ─► each function: raw ─► normalise ─► filled
//!   (failed: raw None, normalised 0)
//! r = Σ weight·normalised(reward functions)      dpo 0.3, rlhf 0.4 (here: the LLM judge)
//! r *= normalised(mask) for each mask           blacklist, task validator, relevance, diversity
//! best = completions[argmax r], stripped
//! ```
//!
//! Reward functions see the step's prompt; masks see the *base* prompt (the augment prompt,
//! then the best summary for follow-ups, the best question for answers). Embeddings of the
//! base prompt and the completions are computed once per step and shared by the relevance and
//! diversity masks; judge scores come from an async pre-pass ([`crate::judge`]).
//!
//! Absent from the original's pipeline, because their models cannot be had here: the
//! reciprocate reward (GPT-J, weight 0.3), the NSFW mask (RoBERTa hate speech), and the two
//! zero-weight functions (dahoas, prompt). Their weights are not redistributed: scores are
//! L1-normalised before they become weights, so only the 0.3 : 0.4 ratio of DPO to the judge
//! matters.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dpo::Dpo;
use crate::embed::{Embedding, SentenceEmbedder};
use crate::error::{Result, RewardError};
use crate::masks::{Blacklist, task_validator};
use crate::normalize::RunningNormalizer;
use crate::similarity::{Diversity, Relevance};

/// The original's DPO weight.
pub const DPO_WEIGHT: f64 = 0.3;
/// The original's RLHF weight (the judge's slot).
pub const RLHF_WEIGHT: f64 = 0.4;

/// Whether a function adds to the reward with a weight, or multiplies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `r += weight · normalised`.
    Reward {
        /// The weight.
        weight: f64,
    },
    /// `r *= normalised`.
    Mask,
}

/// What a function sees of one step.
#[derive(Debug)]
pub struct StepInput<'a> {
    /// The step's name: `augment`, `followup{k}`, `answer{k}`.
    pub name: &'a str,
    /// The prompt the miners answered (reward functions compare with it).
    pub prompt: &'a str,
    /// The base prompt (masks compare with it).
    pub base_prompt: &'a str,
    /// The successful completions, stripped.
    pub completions: &'a [String],
    /// Shared per-step features.
    pub features: &'a Features,
}

/// Features computed once per step for every function.
#[derive(Debug, Default)]
pub struct Features {
    /// Embedding of the base prompt.
    pub base_prompt_embedding: Option<Embedding>,
    /// Embeddings of the completions, in order.
    pub completion_embeddings: Option<Vec<Embedding>>,
    /// Chunk-averaged embeddings of the base prompt and of each completion (for the RMSE
    /// relevance criterion when configured).
    pub chunked: Option<(Embedding, Vec<Embedding>)>,
    /// Judge scores in [0, 1] per completion (`None`: the judge gave none).
    pub judge: Option<Vec<Option<f64>>>,
}

/// One reward function or mask.
pub trait RewardModel: Send {
    /// The name in events and exports (`dpo_reward_model`, `blacklist_filter`…).
    fn name(&self) -> &'static str;
    /// Reward or mask.
    fn kind(&self) -> Kind;
    /// Raw rewards, one per completion of `input`.
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>>;
    /// Normalised rewards (masks: unchanged).
    fn normalize(&mut self, raw: &[f64]) -> Vec<f64> {
        raw.to_vec()
    }
    /// Needs the embeddings in [`Features`].
    fn needs_embeddings(&self) -> bool {
        false
    }
    /// Saves the function's state under `dir` (atomically).
    fn save(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Loads the function's state from `dir` (nothing there: fresh state).
    fn load(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Called with the step's best completion (the blacklist remembers questions, answers).
    fn on_best(&mut self, _name: &str, _best: &str) {}
}

/// One function's results for a step, over all responses (failed ones included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRewards {
    /// [`RewardModel::name`].
    pub name: String,
    /// Raw values; `None` for failed responses (the original's NaN).
    pub raw: Vec<Option<f64>>,
    /// Normalised values; 0 for failed responses.
    pub normalized: Vec<f64>,
}

/// The result of scoring one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRewards {
    /// The combined reward per response.
    pub rewards: Vec<f64>,
    /// Each function's values.
    pub functions: Vec<FunctionRewards>,
    /// The index of the best response (first of the maxima; 0 when all are 0, as `argmax`).
    pub best: usize,
}

/// The pipeline: functions in order, rewards first then masks (the order does not change
/// the result).
pub struct Pipeline {
    models: Vec<Box<dyn RewardModel>>,
    embedder: Option<Arc<SentenceEmbedder>>,
    chunked_relevance: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.models.iter().map(|m| m.name()).collect();
        f.debug_struct("Pipeline").field("models", &names).finish()
    }
}

impl Pipeline {
    /// A pipeline of the given functions. `embedder` is required if any needs embeddings.
    pub fn new(
        models: Vec<Box<dyn RewardModel>>,
        embedder: Option<Arc<SentenceEmbedder>>,
    ) -> Result<Self> {
        if embedder.is_none() && models.iter().any(|m| m.needs_embeddings()) {
            return Err(RewardError::Config(
                "a function needs sentence embeddings but no model is loaded".into(),
            ));
        }
        Ok(Pipeline {
            models,
            embedder,
            chunked_relevance: false,
        })
    }

    /// The original's pipeline with what can be had: DPO (if an engine is given), the judge
    /// (if `judge` is true; its scores come with each step), and the four masks.
    pub fn standard(
        dpo: Option<Dpo>,
        judge: bool,
        embedder: Arc<SentenceEmbedder>,
        relevance: Relevance,
    ) -> Result<Self> {
        let mut models: Vec<Box<dyn RewardModel>> = Vec::new();
        if let Some(dpo) = dpo {
            models.push(Box::new(DpoReward {
                dpo,
                norm: RunningNormalizer::default(),
            }));
        }
        if judge {
            models.push(Box::new(JudgeReward {
                norm: RunningNormalizer::default(),
            }));
        }
        models.push(Box::new(BlacklistMask::default()));
        models.push(Box::new(TaskValidatorMask));
        models.push(Box::new(RelevanceMask { relevance }));
        models.push(Box::new(DiversityMask::default()));
        let mut pipeline = Pipeline::new(models, Some(embedder))?;
        pipeline.chunked_relevance = relevance.rmse_bound.is_some();
        Ok(pipeline)
    }

    /// Names of the functions, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.name()).collect()
    }

    /// Scores one step. `responses[i]` is `None` for a failed query; `judge[i]`, when given,
    /// is the judge's score of response i.
    pub fn score(
        &mut self,
        name: &str,
        prompt: &str,
        base_prompt: &str,
        responses: &[Option<String>],
        judge: Option<&[Option<f64>]>,
    ) -> Result<StepRewards> {
        let ok: Vec<usize> = (0..responses.len())
            .filter(|&i| responses[i].is_some())
            .collect();
        let completions: Vec<String> = ok
            .iter()
            .map(|&i| {
                responses[i]
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .collect();
        let mut features = Features::default();
        if let Some(embedder) = &self.embedder
            && self.models.iter().any(|m| m.needs_embeddings())
        {
            let mut texts: Vec<&str> = vec![base_prompt];
            texts.extend(completions.iter().map(String::as_str));
            let mut embeddings = embedder.embed(&texts)?;
            let rest = embeddings.split_off(1);
            features.base_prompt_embedding = embeddings.pop();
            features.completion_embeddings = Some(rest);
            if self.chunked_relevance {
                let p = embedder.embed_chunked(base_prompt)?;
                let c = completions
                    .iter()
                    .map(|c| embedder.embed_chunked(c))
                    .collect::<Result<Vec<_>>>()?;
                features.chunked = Some((p, c));
            }
        }
        if let Some(judge) = judge {
            features.judge = Some(
                ok.iter()
                    .map(|&i| judge.get(i).copied().flatten())
                    .collect(),
            );
        }
        let input = StepInput {
            name,
            prompt,
            base_prompt,
            completions: &completions,
            features: &features,
        };
        let mut rewards = vec![0.0; responses.len()];
        let mut masks = Vec::new();
        let mut functions = Vec::with_capacity(self.models.len());
        for model in &mut self.models {
            let started = std::time::Instant::now();
            let raw = model.rewards(&input)?;
            tracing::debug!(target: "reward::pipeline", step = name, function = model.name(), completions = completions.len(), seconds = started.elapsed().as_secs_f64(), "reward function scored");
            let normalized = model.normalize(&raw);
            let mut filled_raw = vec![None; responses.len()];
            let mut filled = vec![0.0; responses.len()];
            for ((&i, r), n) in ok.iter().zip(&raw).zip(&normalized) {
                filled_raw[i] = Some(*r);
                filled[i] = *n;
            }
            match model.kind() {
                Kind::Reward { weight } => {
                    for (acc, n) in rewards.iter_mut().zip(&filled) {
                        *acc += weight * n;
                    }
                }
                Kind::Mask => masks.push(filled.clone()),
            }
            functions.push(FunctionRewards {
                name: model.name().to_owned(),
                raw: filled_raw,
                normalized: filled,
            });
        }
        for mask in masks {
            for (acc, m) in rewards.iter_mut().zip(mask) {
                *acc *= m;
            }
        }
        let best = argmax(&rewards);
        if let Some(Some(best_text)) = responses.get(best) {
            let best_text = best_text.trim();
            for model in &mut self.models {
                model.on_best(name, best_text);
            }
        }
        Ok(StepRewards {
            rewards,
            functions,
            best,
        })
    }

    /// Saves every function's state under `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.models.iter().try_for_each(|m| m.save(dir))
    }

    /// Loads every function's state from `dir`.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        self.models.iter_mut().try_for_each(|m| m.load(dir))
    }
}

/// The first index of the maximum (NaN never wins), 0 for an empty slice.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values.get(best).copied().unwrap_or(f64::NEG_INFINITY)
            || values[best].is_nan() && !v.is_nan()
        {
            best = i;
        }
    }
    best
}

fn save_json<T: Serialize>(dir: &Path, file: &str, value: &T) -> Result<()> {
    let path = dir.join(file);
    let bytes = serde_json::to_vec(value).map_err(|e| RewardError::Config(e.to_string()))?;
    ganglion_core::fsutil::write_atomic(&path, &bytes, 0o600).map_err(|e| RewardError::Io {
        what: "writing",
        path,
        reason: e.to_string(),
    })
}

/// Replaces `slot` with the state saved in `dir/file`, if there is one.
fn load_into<T: serde::de::DeserializeOwned>(dir: &Path, file: &str, slot: &mut T) -> Result<()> {
    if let Some(value) = load_json(dir, file)? {
        *slot = value;
    }
    Ok(())
}

fn load_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<Option<T>> {
    let path = dir.join(file);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = crate::embed::read_bounded(&path, 64 * 1024 * 1024)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RewardError::Io {
            what: "parsing",
            path,
            reason: e.to_string(),
        })
}

/// The DPO reward (weight 0.3), normalised online.
#[derive(Debug)]
pub struct DpoReward {
    /// The reward function.
    pub dpo: Dpo,
    /// Its running statistics.
    pub norm: RunningNormalizer,
}

impl RewardModel for DpoReward {
    fn name(&self) -> &'static str {
        "dpo_reward_model"
    }
    fn kind(&self) -> Kind {
        Kind::Reward { weight: DPO_WEIGHT }
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>> {
        self.dpo.rewards(input.prompt, input.completions)
    }
    fn normalize(&mut self, raw: &[f64]) -> Vec<f64> {
        self.norm.normalize(raw)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        save_json(dir, "reward-dpo.json", &self.norm)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        load_into(dir, "reward-dpo.json", &mut self.norm)
    }
}

/// The LLM judge in the RLHF slot (weight 0.4), normalised online. A completion the judge
/// gave no score for gets 0, the bottom of its scale.
#[derive(Debug, Default)]
pub struct JudgeReward {
    /// Its running statistics.
    pub norm: RunningNormalizer,
}

impl RewardModel for JudgeReward {
    fn name(&self) -> &'static str {
        "rlhf_reward_model"
    }
    fn kind(&self) -> Kind {
        Kind::Reward {
            weight: RLHF_WEIGHT,
        }
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>> {
        let judged = input.features.judge.as_deref().unwrap_or_default();
        Ok((0..input.completions.len())
            .map(|i| judged.get(i).copied().flatten().unwrap_or(0.0))
            .collect())
    }
    fn normalize(&mut self, raw: &[f64]) -> Vec<f64> {
        self.norm.normalize(raw)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        save_json(dir, "reward-judge.json", &self.norm)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        load_into(dir, "reward-judge.json", &mut self.norm)
    }
}

/// The blacklist mask ([`Blacklist`]), against the base prompt.
#[derive(Debug, Default)]
pub struct BlacklistMask {
    /// Its memory of best questions and answers.
    pub blacklist: Blacklist,
}

impl RewardModel for BlacklistMask {
    fn name(&self) -> &'static str {
        "blacklist_filter"
    }
    fn kind(&self) -> Kind {
        Kind::Mask
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>> {
        Ok(input
            .completions
            .iter()
            .map(|c| self.blacklist.reward(input.base_prompt, c))
            .collect())
    }
    fn on_best(&mut self, name: &str, best: &str) {
        if name.starts_with("followup") {
            self.blacklist.add_question(best);
        } else if name.starts_with("answer") {
            self.blacklist.add_answer(best);
        }
    }
    fn save(&self, dir: &Path) -> Result<()> {
        save_json(dir, "reward-blacklist.json", &self.blacklist)
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        load_into(dir, "reward-blacklist.json", &mut self.blacklist)
    }
}

/// The task-validator mask ([`task_validator`]).
#[derive(Debug, Default)]
pub struct TaskValidatorMask;

impl RewardModel for TaskValidatorMask {
    fn name(&self) -> &'static str {
        "task_validator_filter"
    }
    fn kind(&self) -> Kind {
        Kind::Mask
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>> {
        Ok(input
            .completions
            .iter()
            .map(|c| task_validator(input.name, c))
            .collect())
    }
}

/// The relevance mask ([`Relevance`]) on the shared embeddings.
#[derive(Debug, Default)]
pub struct RelevanceMask {
    /// Its bounds.
    pub relevance: Relevance,
}

impl RewardModel for RelevanceMask {
    fn name(&self) -> &'static str {
        "relevance_filter"
    }
    fn kind(&self) -> Kind {
        Kind::Mask
    }
    fn needs_embeddings(&self) -> bool {
        true
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>> {
        let (Some(prompt), Some(completions)) = (
            &input.features.base_prompt_embedding,
            &input.features.completion_embeddings,
        ) else {
            return Err(RewardError::Config("relevance needs embeddings".into()));
        };
        Ok(completions
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let chunked = input
                    .features
                    .chunked
                    .as_ref()
                    .and_then(|(p, cs)| cs.get(i).map(|c| (p.as_slice(), c.as_slice())));
                self.relevance.reward(prompt, c, chunked)
            })
            .collect())
    }
}

/// The diversity mask ([`Diversity`]) on the shared embeddings, its history persisted.
#[derive(Debug, Default)]
pub struct DiversityMask {
    /// The history.
    pub diversity: Diversity,
}

impl RewardModel for DiversityMask {
    fn name(&self) -> &'static str {
        "diversity_reward_model"
    }
    fn kind(&self) -> Kind {
        Kind::Mask
    }
    fn needs_embeddings(&self) -> bool {
        true
    }
    fn rewards(&mut self, input: &StepInput<'_>) -> Result<Vec<f64>> {
        let Some(completions) = &input.features.completion_embeddings else {
            return Err(RewardError::Config("diversity needs embeddings".into()));
        };
        Ok(self.diversity.rewards(completions))
    }
    fn save(&self, dir: &Path) -> Result<()> {
        self.diversity
            .save(&dir.join("reward-diversity-history.bin"))
    }
    fn load(&mut self, dir: &Path) -> Result<()> {
        self.diversity = Diversity::load(&dir.join("reward-diversity-history.bin"))?;
        Ok(())
    }
}
