//! The live table of `ganglion localnet`: the chain's view (incentive, emission) joined with
//! each validator's own view of the miners (tokens/s, verified fraction, score), read from the
//! validator's `GET /status`.

use std::collections::HashMap;

use ganglion_chain::{Chain, Metagraph, u16_to_float};
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
    /// From the validator's status: mean verified tokens/s (inference).
    pub(crate) tps: Option<f64>,
    /// From the validator's status: fraction of responses verified (inference) or challenges
    /// solved (compute).
    pub(crate) verified: Option<f64>,
    /// From the validator's status: its current score for the uid.
    pub(crate) score: Option<f64>,
}

/// Per-uid figures a validator reports about its miners.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    tps: Option<f64>,
    verified: Option<f64>,
    score: Option<f64>,
}

/// Reads a validator status document: `{"miners": [{"uid": …, …}]}`. Unknown shapes give
/// nothing rather than an error (the table then shows only the chain's view).
fn parse_status(doc: &Value) -> HashMap<u16, Seen> {
    let number = |v: &Value, keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(Value::as_f64));
    doc.get("miners")
        .and_then(Value::as_array)
        .map(|miners| {
            miners
                .iter()
                .filter_map(|m| {
                    let uid = u16::try_from(m.get("uid")?.as_u64()?).ok()?;
                    Some((
                        uid,
                        Seen {
                            tps: number(m, &["tps", "mean_tps"]),
                            verified: number(m, &["verified_fraction", "success_rate", "verified"]),
                            score: number(m, &["score"]),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
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
            if let Ok(response) = http.get(url).send().await {
                if let Ok(doc) = response.json::<Value>().await {
                    seen.extend(parse_status(&doc));
                }
            }
        }
        for neuron in neurons.iter().filter(|n| n.netuid == netuid) {
            let Some(info) = metagraph.by_hotkey(&neuron.hotkey.public()) else { continue };
            let figures = seen.get(&info.uid).copied().unwrap_or_default();
            rows.push(Row {
                netuid,
                subnet: if netuid == inference_netuid { "inference" } else { "compute" },
                uid: info.uid,
                name: neuron.name.clone(),
                hotkey: info.hotkey.to_ss58(),
                role: neuron.role,
                incentive: u16_to_float(info.incentive),
                emission_tao: info.emission_tao(),
                tps: figures.tps,
                verified: figures.verified,
                score: figures.score,
            });
        }
    }
    Ok(rows)
}

fn opt(value: Option<f64>, width: usize, precision: usize) -> String {
    value.map_or_else(|| format!("{:>width$}", "-"), |v| format!("{v:>width$.precision$}"))
}

/// The table printed after each epoch.
pub(crate) fn render(block: u64, epochs: u32, rows: &[Row]) -> String {
    let mut out = format!(
        "\nblock {block} · epochs with weights: {epochs}\n{:<10} {:>4}  {:<20} {:<10} {:>8} {:>9} {:>9} {:>10} {:>11}\n",
        "subnet", "uid", "name", "role", "tps", "verified", "score", "incentive", "emission τ"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>4}  {:<20} {:<10} {} {} {} {:>10.4} {:>11.4}\n",
            r.subnet,
            r.uid,
            r.name,
            r.role.label(),
            opt(r.tps, 8, 1),
            opt(r.verified.map(|v| v * 100.0), 8, 0) + "%",
            opt(r.score, 9, 3),
            r.incentive,
            r.emission_tao,
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
                    "mean_tps": r.tps, "verified_fraction": r.verified, "score": r.score,
                })
            })
            .collect();
        json!({ "block": self.block, "epochs": self.epochs, "hub": hub_url, "uids": uids })
    }

    pub(crate) fn render_final(&self) -> String {
        let miners: Vec<&Row> = self.rows.iter().filter(|r| r.subnet == "inference" && r.role != Role::Validator).collect();
        let total: f64 = miners.iter().map(|r| r.incentive).sum();
        let share = |role: Role| miners.iter().filter(|r| r.role == role).map(|r| r.incentive).sum::<f64>() / total.max(f64::MIN_POSITIVE);
        format!(
            "{}\nsummary: after {} epochs, inference miner incentive: honest {:.1}%, slow {:.1}%, dishonest {:.1}%",
            render(self.block, self.epochs, &self.rows),
            self.epochs,
            100.0 * share(Role::Honest),
            100.0 * share(Role::Slow),
            100.0 * share(Role::Dishonest)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_documents_are_read_tolerantly() {
        let doc = json!({"miners": [{"uid": 3, "tps": 12.5, "verified_fraction": 0.75, "score": 1.5}, {"uid": "x"}, {"uid": 70000}]});
        let seen = parse_status(&doc);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[&3].tps, Some(12.5));
        assert_eq!(seen[&3].verified, Some(0.75));
        assert!(parse_status(&json!({"unexpected": true})).is_empty());
    }
}
