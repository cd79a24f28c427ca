//! The live table of `ganglion localnet`: the chain's view (incentive, emission) joined with
//! each validator's own view of the miners (speed, verified share, score, last failure), read
//! from the validator's `GET /status` in the runtime's one schema
//! ([`ganglion_neuron::status::NodeStatus`]), whatever the subnet.

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
}

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
    inference_netuid: u16,
    compute_netuid: Option<u16>,
    status_urls: &[(u16, String)],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for netuid in std::iter::once(inference_netuid).chain(compute_netuid) {
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
                subnet: if netuid == inference_netuid { "inference" } else { "compute" },
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
                    "last_failure": r.last_cause(),
                })
            })
            .collect();
        json!({ "block": self.block, "epochs": self.epochs, "hub": hub_url, "uids": uids, "shutdown": self.exits })
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
        let mut adversaries: Vec<&'static str> = Vec::new();
        for row in &self.rows {
            if let Role::Adversary(strategy) = row.role
                && !adversaries.contains(&strategy)
            {
                adversaries.push(strategy);
            }
        }
        for strategy in adversaries {
            line.push_str(&format!(", {strategy} {:.1}%", share("inference", Role::Adversary(strategy))));
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
    }
}
