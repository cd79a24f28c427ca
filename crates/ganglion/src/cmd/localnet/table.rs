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
    /// From the validator's status: mean seconds per solved challenge and the current
    /// difficulty (compute).
    pub(crate) solve: Option<(f64, u64)>,
    /// From the validator's status: fraction of responses verified (inference) or challenges
    /// solved (compute).
    pub(crate) verified: Option<f64>,
    /// From the validator's status: its current score for the uid.
    pub(crate) score: Option<f64>,
    /// From the validator's status: why the uid's last response or challenge failed.
    pub(crate) last_cause: Option<String>,
}

/// Per-uid figures a validator reports about its miners.
#[derive(Debug, Default, Clone)]
struct Seen {
    tps: Option<f64>,
    solve: Option<(f64, u64)>,
    verified: Option<f64>,
    score: Option<f64>,
    last_cause: Option<String>,
}

/// Reads a validator status document: `{"miners": [{"uid": …, …}]}` with the inference
/// validator's fields (`tps`, `verified_percent`, `score`, `last_cause`) or the compute
/// validator's (`success_rate` as a fraction, `score`, `mean_elapsed_s`, `difficulty`,
/// `last.cause`). Unknown shapes give
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
                            tps: number(m, &["tps"]),
                            solve: number(m, &["mean_elapsed_s"])
                                .filter(|s| *s > 0.0)
                                .zip(m.get("difficulty").and_then(Value::as_u64)),
                            verified: number(m, &["verified_percent"]).map(|p| p / 100.0).or_else(|| number(m, &["success_rate"])),
                            score: number(m, &["score"]),
                            last_cause: m
                                .get("last_cause")
                                .or_else(|| m.get("last").and_then(|l| l.get("cause")))
                                .and_then(Value::as_str)
                                .map(str::to_string),
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
            if let Ok(response) = http.get(url).send().await
                && let Ok(doc) = response.json::<Value>().await {
                    seen.extend(parse_status(&doc));
                }
        }
        for neuron in neurons.iter().filter(|n| n.netuid == netuid) {
            let Some(info) = metagraph.by_hotkey(&neuron.hotkey.public()) else { continue };
            // A validator's status lists the validator itself too; its figures mean nothing.
            let figures = if neuron.role == Role::Validator { Seen::default() } else { seen.remove(&info.uid).unwrap_or_default() };
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
                solve: figures.solve,
                verified: figures.verified,
                score: figures.score,
                last_cause: figures.last_cause,
            });
        }
    }
    Ok(rows)
}

/// Work rate: tokens/s of verified answers, or seconds per solved challenge at a difficulty.
fn speed(row: &Row) -> String {
    match (row.tps, row.solve) {
        (Some(tps), _) => format!("{tps:.1} tok/s"),
        (None, Some((seconds, difficulty))) => format!("{seconds:.2} s @d{difficulty}"),
        (None, None) => "-".into(),
    }
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
            r.verified.map_or_else(|| format!("{:>9}", "-"), |v| format!("{:>8.0}%", v * 100.0)),
            opt(r.score, 9, 3),
            r.incentive,
            r.emission_tao,
            r.last_cause.as_deref().unwrap_or(""),
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
                    "mean_tps": r.tps, "mean_solve_s": r.solve.map(|s| s.0), "difficulty": r.solve.map(|s| s.1), "verified_fraction": r.verified, "score": r.score, "last_failure": r.last_cause,
                })
            })
            .collect();
        json!({ "block": self.block, "epochs": self.epochs, "hub": hub_url, "uids": uids })
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
            "summary: after {} epochs (block {}), inference miner incentive: honest {:.1}%, slow {:.1}%, dishonest {:.1}%",
            self.epochs,
            self.block,
            share("inference", Role::Honest),
            share("inference", Role::Slow),
            share("inference", Role::Dishonest)
        );
        if self.rows.iter().any(|r| r.subnet == "compute") {
            line.push_str(&format!(
                "; compute: fast {:.1}%, slow {:.1}%",
                share("compute", Role::ComputeFast),
                share("compute", Role::ComputeSlow)
            ));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_documents_are_read_tolerantly() {
        let doc = json!({"miners": [
            {"uid": 3, "tps": 12.5, "verified_percent": 75.0, "score": 1.5, "last_cause": null},
            {"uid": 4, "success_rate": 0.5, "score": 0.2, "last": {"cause": "wrong answer"}, "mean_elapsed_s": 1.5, "difficulty": 8},
            {"uid": "x"}, {"uid": 70000}]});
        let seen = parse_status(&doc);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[&3].tps, Some(12.5));
        assert_eq!(seen[&3].verified, Some(0.75));
        assert_eq!(seen[&3].last_cause, None);
        assert_eq!(seen[&4].verified, Some(0.5));
        assert_eq!(seen[&4].last_cause.as_deref(), Some("wrong answer"));
        assert_eq!(seen[&4].solve, Some((1.5, 8)));
        assert_eq!(seen[&3].solve, None);
        assert!(parse_status(&json!({"unexpected": true})).is_empty());
    }
}
