//! The live table of `ganglion localnet`: the chain's view (incentive, emission) joined with
//! each validator's own view of the miners (speed, verified share, score, last failure), read
//! from the validator's `GET /status` in the runtime's one schema
//! ([`ganglion_neuron::status::NodeStatus`]), whatever the subnet. The reward subnet's rows
//! also carry the reward validator's per-uid means of each reward function and mask
//! ([`RewardMeans`], from the status' `details`), printed as a second table; the
//! model-evaluation subnet's rows carry the model validator's last evaluation of each uid
//! ([`ModelEvaluation`]: status, mean loss, win rate, rejection cause), printed as a third.

use std::collections::HashMap;

use ganglion_chain::{Chain, Metagraph, u16_to_float};
use ganglion_neuron::status::{MinerStatus, NodeStatus, Speed};
use serde_json::{Value, json};

use super::setup::{Neuron, Role};

/// One neuron's figures at one epoch.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) netuid: u16,
    pub(crate) subnet: &'static str,
    pub(crate) uid: u16,
    pub(crate) name: String,
    pub(crate) hotkey: String,
    pub(crate) role: Role,
    pub(crate) incentive: f64,
    pub(crate) emission_tao: f64,
    /// The validator's view of the uid (None for validators, or before the first status).
    pub(crate) seen: Option<MinerStatus>,
}

impl Row {
    fn speed(&self) -> Option<&Speed> {
        self.seen.as_ref().and_then(|s| s.speed.as_ref())
    }

    fn speed_in(&self, unit: &str) -> Option<f64> {
        self.speed().filter(|s| s.unit == unit).map(|s| s.value)
    }

    fn last_cause(&self) -> Option<&str> {
        self.seen.as_ref().and_then(|s| s.last_failure.as_ref()).map(|f| f.cause.as_str())
    }

    /// The reward validator's means for this uid (reward subnet only, once asked).
    pub(crate) fn reward_means(&self) -> Option<RewardMeans> {
        if self.subnet != "reward" {
            return None;
        }
        let details = &self.seen.as_ref()?.details;
        serde_json::from_value(details.clone()).ok()
    }

    /// The model validator's last evaluation of this uid (model-evaluation subnet only, once
    /// it has a commitment).
    pub(crate) fn model_evaluation(&self) -> Option<ModelEvaluation> {
        if self.subnet != "model-eval" {
            return None;
        }
        let details = &self.seen.as_ref()?.details;
        serde_json::from_value::<ModelEvaluation>(details.clone()).ok().filter(|m| m.commitment.is_some())
    }
}

/// A uid's last evaluation by the model validator (its status `details`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub(crate) struct ModelEvaluation {
    /// What it committed.
    pub(crate) commitment: Option<String>,
    /// The block of the commitment.
    pub(crate) commit_block: Option<u64>,
    /// The validator step of the evaluation.
    pub(crate) step: Option<u64>,
    /// `evaluated`, `duplicate` or `rejected` (none before its first round).
    pub(crate) status: Option<String>,
    /// Mean loss over the step's samples.
    pub(crate) mean_loss: Option<f64>,
    /// Share of the comparisons it won (epsilon applied).
    pub(crate) win_rate: Option<f64>,
    /// Why it has no weight: the rejection's cause, or the earlier commit it copies.
    pub(crate) reason: Option<String>,
}

/// A uid's means over the steps the reward validator asked it in (its status `details`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub(crate) struct RewardMeans {
    pub(crate) steps: u64,
    pub(crate) answered: u64,
    /// Mean combined reward.
    pub(crate) reward: f64,
    /// Mean normalised value of each function, by name.
    pub(crate) functions: std::collections::BTreeMap<String, f64>,
}

/// The reward functions' columns: (status name, column title).
const REWARD_COLUMNS: &[(&str, &str)] = &[
    ("dpo_reward_model", "dpo"),
    ("rlhf_reward_model", "judge"),
    ("blacklist_filter", "blacklist"),
    ("task_validator_filter", "task"),
    ("relevance_filter", "relevance"),
    ("diversity_reward_model", "diversity"),
];

/// The miner rows of a status document, by uid; a document in another shape gives nothing
/// (the table then shows only the chain's view).
fn parse_status(doc: Value) -> HashMap<u16, MinerStatus> {
    serde_json::from_value::<NodeStatus>(doc).map(|s| s.miners.into_iter().map(|m| (m.uid, m)).collect()).unwrap_or_default()
}

/// Joins the metagraphs with the validators' status.
pub(crate) async fn collect(
    chain: &dyn Chain,
    http: &reqwest::Client,
    neurons: &[Neuron],
    subnets: &[(u16, &'static str)],
    status_urls: &[(u16, String)],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &(netuid, subnet) in subnets {
        let metagraph = Metagraph::fetch(chain, netuid).await?;
        let mut seen = HashMap::new();
        for (_, url) in status_urls.iter().filter(|(n, _)| *n == netuid) {
            // A validator that is busy or restarting just leaves its columns empty this epoch.
            if let Ok(response) = http.get(url).send().await
                && let Ok(doc) = response.json::<Value>().await {
                    seen.extend(parse_status(doc));
                }
        }
        for neuron in neurons.iter().filter(|n| n.netuid == netuid) {
            let Some(info) = metagraph.by_hotkey(&neuron.hotkey.public()) else { continue };
            // A validator's status lists the validator itself too; its figures mean nothing.
            let figures = if neuron.role == Role::Validator { None } else { seen.remove(&info.uid) };
            rows.push(Row {
                netuid,
                subnet,
                uid: info.uid,
                name: neuron.name.clone(),
                hotkey: info.hotkey.to_ss58(),
                role: neuron.role,
                incentive: u16_to_float(info.incentive),
                emission_tao: info.emission_tao(),
                seen: figures,
            });
        }
    }
    Ok(rows)
}

/// Work rate as the subnet measures it (tokens/s, seconds per challenge at a difficulty).
fn speed(row: &Row) -> String {
    row.speed().map_or_else(|| "-".into(), Speed::display)
}

fn opt(value: Option<f64>, width: usize, precision: usize) -> String {
    value.map_or_else(|| format!("{:>width$}", "-"), |v| format!("{v:>width$.precision$}"))
}

/// The table printed after each epoch.
pub(crate) fn render(block: u64, epochs: u32, rows: &[Row]) -> String {
    let mut out = format!(
        "\nblock {block} · epochs with weights: {epochs}\n{:<10} {:>4}  {:<20} {:<10} {:>12} {:>9} {:>9} {:>10} {:>11}  {}\n",
        "subnet", "uid", "name", "role", "speed", "verified", "score", "incentive", "emission τ", "last failure"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>4}  {:<20} {:<10} {:>12} {} {} {:>10.4} {:>11.4}  {}\n",
            r.subnet,
            r.uid,
            r.name,
            r.role.label(),
            speed(r),
            r.seen.as_ref().and_then(|s| s.verified_share).map_or_else(|| format!("{:>9}", "-"), |v| format!("{:>8.0}%", v * 100.0)),
            opt(r.seen.as_ref().map(|s| s.score), 9, 3),
            r.incentive,
            r.emission_tao,
            r.last_cause().unwrap_or(""),
        ));
    }
    out.push_str(&render_rewards(rows));
    out.push_str(&render_models(rows));
    out
}

/// The model-evaluation subnet: each miner's last evaluation (status, mean loss over the
/// step's samples, win rate), incentive, and why a model has no weight. Empty without that
/// subnet.
pub(crate) fn render_models(rows: &[Row]) -> String {
    let miners: Vec<&Row> = rows.iter().filter(|r| r.subnet == "model-eval" && r.role != Role::Validator).collect();
    if miners.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "model evaluation (last step)\n{:>4}  {:<16} {:<10} {:<10} {:>9} {:>9} {:>10}  {}\n",
        "uid", "name", "role", "status", "loss", "win rate", "incentive", "cause"
    );
    for r in miners {
        let m = r.model_evaluation().unwrap_or_default();
        out.push_str(&format!(
            "{:>4}  {:<16} {:<10} {:<10} {} {} {:>10.4}  {}\n",
            r.uid,
            r.name,
            r.role.label(),
            m.status.as_deref().unwrap_or("-"),
            opt(m.mean_loss, 9, 4),
            m.win_rate.map_or_else(|| format!("{:>9}", "-"), |w| format!("{:>8.0}%", w * 100.0)),
            r.incentive,
            m.reason.as_deref().unwrap_or(""),
        ));
    }
    out
}

/// The reward subnet's components: each function's mean normalised value per miner over the
/// steps it was asked in (a mask's mean is the share of its answers it let through), the mean
/// combined reward, and the incentive. Empty without a reward subnet.
pub(crate) fn render_rewards(rows: &[Row]) -> String {
    let miners: Vec<&Row> = rows.iter().filter(|r| r.subnet == "reward" && r.role != Role::Validator).collect();
    if miners.is_empty() {
        return String::new();
    }
    let present: Vec<(&str, &str)> = REWARD_COLUMNS
        .iter()
        .copied()
        .filter(|(name, _)| miners.iter().any(|r| r.reward_means().is_some_and(|m| m.functions.contains_key(*name))))
        .collect();
    let mut out = format!("reward components (mean normalised value per step asked)\n{:<20} {:>6}", "name", "asked");
    for (_, title) in &present {
        out.push_str(&format!(" {title:>9}"));
    }
    out.push_str(&format!(" {:>9} {:>10}\n", "reward", "incentive"));
    for r in miners {
        let means = r.reward_means();
        let asked = means.as_ref().map_or_else(|| "-".into(), |m| format!("{}/{}", m.answered, m.steps));
        out.push_str(&format!("{:<20} {asked:>6}", r.name));
        for (name, _) in &present {
            out.push_str(&format!(" {}", opt(means.as_ref().and_then(|m| m.functions.get(*name).copied()), 9, 3)));
        }
        out.push_str(&format!(" {} {:>10.4}\n", opt(means.as_ref().map(|m| m.reward), 9, 3), r.incentive));
    }
    out
}

/// What the run ended with.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) block: u64,
    pub(crate) epochs: u32,
    pub(crate) rows: Vec<Row>,
    /// How each child ended on SIGTERM.
    pub(crate) exits: Vec<ganglion_neuron::supervisor::ChildExit>,
    /// `--model-eval`: the training report, the byte cap and the commitments made.
    pub(crate) model_eval: Option<Value>,
}

impl Summary {
    pub(crate) fn to_json(&self, hub_url: &str) -> Value {
        let uids: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "subnet": r.subnet, "netuid": r.netuid, "uid": r.uid, "name": r.name, "hotkey": r.hotkey,
                    "role": r.role.label(), "incentive": r.incentive, "emission_tao": r.emission_tao,
                    "speed": r.speed(), "mean_tps": r.speed_in("tok/s"), "mean_solve_s": r.speed_in("s"),
                    "verified_fraction": r.seen.as_ref().and_then(|s| s.verified_share), "score": r.seen.as_ref().map(|s| s.score),
                    "last_failure": r.last_cause(), "reward_components": r.reward_means(),
                    "model_evaluation": r.model_evaluation(),
                })
            })
            .collect();
        let mut out = json!({ "block": self.block, "epochs": self.epochs, "hub": hub_url, "uids": uids, "shutdown": self.exits });
        if let Some(model_eval) = &self.model_eval {
            out["model_eval"] = model_eval.clone();
        }
        out
    }

    /// The closing line (the last epoch's table was printed just before it).
    pub(crate) fn render_final(&self) -> String {
        // Each role's share of the miner incentive of its subnet.
        let share = |subnet: &str, role: Role| {
            let miners = || self.rows.iter().filter(|r| r.subnet == subnet && r.role != Role::Validator);
            let total: f64 = miners().map(|r| r.incentive).sum();
            100.0 * miners().filter(|r| r.role == role).map(|r| r.incentive).sum::<f64>() / total.max(f64::MIN_POSITIVE)
        };
        let mut line = format!(
            "summary: after {} epochs (block {}), inference miner incentive: honest {:.1}%",
            self.epochs,
            self.block,
            share("inference", Role::Honest),
        );
        let adversaries = |subnet: &str| {
            let mut out: Vec<&'static str> = Vec::new();
            for row in self.rows.iter().filter(|r| r.subnet == subnet) {
                if let Role::Adversary(strategy) = row.role
                    && !out.contains(&strategy)
                {
                    out.push(strategy);
                }
            }
            out
        };
        for strategy in adversaries("inference") {
            line.push_str(&format!(", {strategy} {:.1}%", share("inference", Role::Adversary(strategy))));
        }
        if self.rows.iter().any(|r| r.subnet == "reward") {
            line.push_str(&format!("; reward: good {:.1}%", share("reward", Role::Honest)));
            for strategy in adversaries("reward") {
                line.push_str(&format!(", {strategy} {:.1}%", share("reward", Role::Adversary(strategy))));
            }
        }
        let parts: Vec<&'static str> = self
            .rows
            .iter()
            .filter_map(|r| match r.role {
                Role::Model(part) if r.subnet == "model-eval" => Some(part),
                _ => None,
            })
            .collect();
        if !parts.is_empty() {
            let shares: Vec<String> = parts.iter().map(|part| format!("{part} {:.1}%", share("model-eval", Role::Model(part)))).collect();
            line.push_str(&format!("; model evaluation: {}", shares.join(", ")));
        }
        if self.rows.iter().any(|r| r.subnet == "compute") {
            line.push_str(&format!(
                "; compute: fast {:.1}%, slow {:.1}%",
                share("compute", Role::ComputeFast),
                share("compute", Role::ComputeSlow)
            ));
        }
        let unclean: Vec<String> = self.exits.iter().filter(|e| !e.clean()).map(|e| format!("{} ({})", e.name, e.exit)).collect();
        if !unclean.is_empty() {
            line.push_str(&format!("\nnot stopped cleanly on SIGTERM: {}", unclean.join(", ")));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_documents_are_read_in_the_runtime_schema() {
        let mut status = NodeStatus::new("compute", ganglion_neuron::status::Role::Validator, 2, "5V".into());
        status.miners.push(MinerStatus {
            uid: 4,
            score: 0.2,
            verified_share: Some(0.5),
            last_failure: Some(ganglion_neuron::status::Failure { cause: "timeout".into(), detail: String::new() }),
            speed: Some(Speed { value: 1.5, unit: "s".into(), context: "@d8".into() }),
            ..MinerStatus::default()
        });
        let seen = parse_status(serde_json::to_value(&status).unwrap_or_default());
        assert_eq!(seen.len(), 1);
        let row = Row { netuid: 2, subnet: "compute", uid: 4, name: "m".into(), hotkey: "5M".into(), role: Role::ComputeFast, incentive: 0.5, emission_tao: 1.0, seen: seen.get(&4).cloned() };
        assert_eq!(speed(&row), "1.50 s @d8");
        assert_eq!(row.speed_in("s"), Some(1.5));
        assert_eq!(row.speed_in("tok/s"), None);
        assert_eq!(row.last_cause(), Some("timeout"));
        assert!(parse_status(json!({"unexpected": true})).is_empty());
        assert_eq!(row.reward_means(), None);
        assert_eq!(render_rewards(&[row]), "", "no reward subnet, no second table");
    }

    #[test]
    fn reward_components_come_from_the_status_details() {
        let mut status = NodeStatus::new("reward", ganglion_neuron::status::Role::Validator, 3, "5V".into());
        status.miners.push(MinerStatus {
            uid: 2,
            score: 0.1,
            details: json!({"steps": 9, "answered": 9, "reward": 0.05, "functions": {"dpo_reward_model": 0.4, "relevance_filter": 0.25}}),
            ..MinerStatus::default()
        });
        let seen = parse_status(serde_json::to_value(&status).unwrap_or_default());
        let row = Row { netuid: 3, subnet: "reward", uid: 2, name: "off-topic".into(), hotkey: "5M".into(), role: Role::Adversary("off-topic"), incentive: 0.01, emission_tao: 0.0, seen: seen.get(&2).cloned() };
        let means = row.reward_means().unwrap_or_else(|| panic!("no means in {row:?}"));
        assert_eq!((means.steps, means.answered), (9, 9));
        assert_eq!(means.functions.get("relevance_filter"), Some(&0.25));
        let table = render_rewards(std::slice::from_ref(&row));
        assert!(table.contains("relevance") && table.contains("dpo") && !table.contains("judge"), "{table}");
        assert!(table.contains("off-topic") && table.contains("9/9") && table.contains("0.250"), "{table}");
    }

    #[test]
    fn model_evaluations_come_from_the_status_details() {
        let mut status = NodeStatus::new("evaluation", ganglion_neuron::status::Role::Validator, 4, "5V".into());
        status.miners.push(MinerStatus {
            uid: 3,
            details: json!({"commitment": "axon:copier:None:h:g1", "commit_block": 40, "step": 2, "status": "duplicate", "mean_loss": null, "win_rate": null, "reason": "a copy of uid 2's earlier commit"}),
            ..MinerStatus::default()
        });
        status.miners.push(MinerStatus {
            uid: 2,
            details: json!({"commitment": "axon:base:None:h:g1", "commit_block": 39, "step": 2, "status": "evaluated", "mean_loss": 3.0379, "win_rate": 1.0, "reason": null}),
            ..MinerStatus::default()
        });
        // The validator's own row: no commitment, no evaluation.
        status.miners.push(MinerStatus { uid: 0, details: json!({"commitment": null, "status": null}), ..MinerStatus::default() });
        let seen = parse_status(serde_json::to_value(&status).unwrap_or_default());
        let row = |uid: u16, part: &'static str, incentive: f64| Row {
            netuid: 4,
            subnet: "model-eval",
            uid,
            name: format!("model-{part}"),
            hotkey: "5M".into(),
            role: Role::Model(part),
            incentive,
            emission_tao: 0.0,
            seen: seen.get(&uid).cloned(),
        };
        let (base, copier, unseen) = (row(2, "base", 1.0), row(3, "copier", 0.0), row(0, "oversized", 0.0));
        let m = base.model_evaluation().unwrap_or_else(|| panic!("no evaluation in {base:?}"));
        assert_eq!((m.status.as_deref(), m.mean_loss, m.win_rate), (Some("evaluated"), Some(3.0379), Some(1.0)));
        assert_eq!(copier.model_evaluation().and_then(|m| m.reason).as_deref(), Some("a copy of uid 2's earlier commit"));
        assert_eq!(unseen.model_evaluation(), None, "no commitment, no evaluation");
        assert_eq!(base.reward_means(), None);
        let table = render_models(&[base, copier, unseen]);
        assert!(table.contains("model-base") && table.contains("evaluated") && table.contains("3.0379") && table.contains("100%"), "{table}");
        assert!(table.contains("duplicate") && table.contains("a copy of uid 2's earlier commit"), "{table}");
        assert!(render_models(&[]).is_empty());
    }
}
