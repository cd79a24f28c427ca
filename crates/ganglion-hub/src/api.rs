//! The JSON API handlers. Each reads validated parameters ([`crate::params`]), runs
//! index- or rollup-backed store queries, merges in the metagraph (from the chain, or the
//! last recorded snapshot when the chain is unreachable) and answers one JSON document.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use ganglion_chain::{RAO_PER_TAO, u16_to_float};
use ganglion_records::{InferenceFilter, MinerStats, NeuronSnapshot, now_ms};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::params::{self, Params, Window};
use crate::state::HubState;

type ApiResult = Result<Json<Value>, ApiError>;

/// One neuron as pages show it, from the chain or from a recorded snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeuronView {
    /// Uid.
    pub uid: u16,
    /// Hotkey (SS58).
    pub hotkey: String,
    /// Coldkey (SS58).
    pub coldkey: String,
    /// Stake in TAO.
    pub stake_tao: f64,
    /// Incentive in [0, 1].
    pub incentive: f64,
    /// Emission of the last epoch in TAO.
    pub emission_tao: f64,
    /// Consensus in [0, 1].
    pub consensus: f64,
    /// Dividends in [0, 1].
    pub dividends: f64,
    /// Validator trust in [0, 1].
    pub validator_trust: f64,
    /// Holds a validator permit.
    pub validator_permit: bool,
    /// Block of the last weight update (unknown in snapshots).
    pub last_update: Option<u64>,
    /// Set weights recently (unknown in snapshots).
    pub active: Option<bool>,
    /// `validator` or `miner` (see [`role`]).
    pub role: &'static str,
}

/// A neuron is shown as a validator when it holds a permit and acts as one (has stake, trust,
/// or sent requests); with few neurons every uid holds a permit, miners included.
pub fn role(validator_permit: bool, stake: f64, validator_trust: f64, sent_requests: bool) -> &'static str {
    if validator_permit && (stake > 0.0 || validator_trust > 0.0 || sent_requests) { "validator" } else { "miner" }
}

fn tao(rao: u64) -> f64 {
    rao as f64 / RAO_PER_TAO as f64
}

/// Where a metagraph came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetagraphSource {
    /// `chain`, `snapshot` or `none`.
    pub source: &'static str,
    /// Block of the metagraph.
    pub block: Option<u64>,
    /// When the snapshot was taken (snapshots only).
    pub snapshot_ms: Option<i64>,
}

/// The neurons of `netuid`: cached from the chain, else the latest recorded snapshot.
pub async fn neurons(state: &HubState, netuid: u16, validators: &HashSet<String>) -> Result<(MetagraphSource, Vec<NeuronView>), ApiError> {
    if let Some(metagraph) = state.metagraph(netuid) {
        let views = metagraph
            .neurons()
            .iter()
            .map(|n| {
                let hotkey = n.hotkey.to_ss58();
                let vtrust = u16_to_float(n.validator_trust);
                NeuronView {
                    uid: n.uid,
                    role: role(n.validator_permit, tao(n.stake), vtrust, validators.contains(&hotkey)),
                    coldkey: n.coldkey.to_ss58(),
                    hotkey,
                    stake_tao: tao(n.stake),
                    incentive: u16_to_float(n.incentive),
                    emission_tao: tao(n.emission),
                    consensus: u16_to_float(n.consensus),
                    dividends: u16_to_float(n.dividends),
                    validator_trust: vtrust,
                    validator_permit: n.validator_permit,
                    last_update: Some(n.last_update),
                    active: Some(n.active),
                }
            })
            .collect();
        return Ok((MetagraphSource { source: "chain", block: Some(metagraph.block()), snapshot_ms: None }, views));
    }
    let snapshot = state.records().latest_snapshot(netuid).await?;
    let Some(first) = snapshot.first() else {
        return Ok((MetagraphSource { source: "none", block: None, snapshot_ms: None }, Vec::new()));
    };
    let source = MetagraphSource { source: "snapshot", block: Some(first.block), snapshot_ms: Some(first.created_at_ms) };
    Ok((source, snapshot.iter().map(|n| snapshot_view(n, validators)).collect()))
}

fn snapshot_view(n: &NeuronSnapshot, validators: &HashSet<String>) -> NeuronView {
    NeuronView {
        uid: n.uid,
        hotkey: n.hotkey.clone(),
        coldkey: n.coldkey.clone(),
        stake_tao: tao(n.stake),
        incentive: n.incentive,
        emission_tao: tao(n.emission),
        consensus: n.consensus,
        dividends: n.dividends,
        validator_trust: n.validator_trust,
        validator_permit: n.validator_permit,
        last_update: None,
        active: None,
        role: role(n.validator_permit, tao(n.stake), n.validator_trust, validators.contains(&n.hotkey)),
    }
}

fn shown(state: &HubState, netuid_text: &str) -> Result<u16, ApiError> {
    let netuid = params::netuid(netuid_text)?;
    if !state.shows(netuid) {
        return Err(ApiError::not_found(format!(
            "netuid {netuid} is not shown by this hub (it was started with --netuid {})",
            state.config().netuid.map(|n| n.to_string()).unwrap_or_default()
        )));
    }
    Ok(netuid)
}

/// `GET /api/status`.
pub(crate) async fn status(State(state): State<HubState>, params: Params) -> ApiResult {
    params.only(&[])?;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": now_ms(),
        "store": {"backend": format!("{:?}", state.records().backend()).to_lowercase(), "url": state.records().display_url()},
        "chain": state.chain_status(),
        "netuid_filter": state.config().netuid,
        "live_clients": state.sse_clients(),
    })))
}

/// `GET /api/subnets`: netuids with records or on the chain, and which views they have.
pub(crate) async fn subnets(State(state): State<HubState>, params: Params) -> ApiResult {
    params.only(&[])?;
    let store = state.records();
    let (records, reward, evaluation) = futures::try_join!(store.subnets(), store.reward_netuids(), store.evaluation_netuids())?;
    let chain = state.chain_status();
    let mut netuids: Vec<u16> = records
        .iter()
        .map(|r| r.netuid)
        .chain(chain.netuids.iter().copied())
        .chain(reward.iter().copied())
        .chain(evaluation.iter().copied())
        .collect();
    netuids.sort_unstable();
    netuids.dedup();
    let by_netuid: HashMap<u16, &ganglion_records::SubnetRecords> = records.iter().map(|r| (r.netuid, r)).collect();
    let list: Vec<Value> = netuids
        .into_iter()
        .filter(|n| state.shows(*n))
        .map(|netuid| {
            let rec = by_netuid.get(&netuid);
            let inference = rec.is_some_and(|r| r.inference_n > 0);
            let compute = rec.is_some_and(|r| r.challenge_n > 0 || r.specs_n > 0 || r.allocation_n > 0);
            json!({
                "netuid": netuid,
                "on_chain": chain.netuids.contains(&netuid),
                "neurons": state.metagraph(netuid).map(|m| m.n()),
                "views": {
                    "inference": inference,
                    "compute": compute,
                    "reward": reward.contains(&netuid),
                    "evaluation": evaluation.contains(&netuid),
                },
                "records": rec,
            })
        })
        .collect();
    Ok(Json(json!({"chain": chain, "subnets": list})))
}

/// `GET /api/subnets/{netuid}/overview?window=`: the metagraph joined with per-miner figures.
pub(crate) async fn overview(State(state): State<HubState>, Path(netuid): Path<String>, params: Params) -> ApiResult {
    params.only(&["window"])?;
    let netuid = shown(&state, &netuid)?;
    let window = params.window(Window::HOUR)?;
    let now = now_ms();
    let (since, bucket) = (window.since(now), window.bucket());
    let records = state.records();
    let (miners, series, validators, causes) = futures::try_join!(
        records.miner_stats(netuid, since),
        records.inference_series(netuid, None, since, bucket),
        records.validator_stats(netuid, since),
        records.cause_counts(netuid, None, since),
    )?;
    let validator_keys: HashSet<String> = validators.iter().map(|v| v.hotkey.clone()).collect();
    let (source, views) = neurons(&state, netuid, &validator_keys).await?;
    let mut by_hotkey: HashMap<String, MinerStats> = miners.into_iter().map(|m| (m.hotkey.clone(), m)).collect();
    let validator_by_key: HashMap<&str, &ganglion_records::ValidatorStats> =
        validators.iter().map(|v| (v.hotkey.as_str(), v)).collect();
    let rows: Vec<Value> = views
        .iter()
        .map(|n| {
            json!({
                "neuron": n,
                "miner": by_hotkey.remove(&n.hotkey),
                "validator": validator_by_key.get(n.hotkey.as_str()),
            })
        })
        .collect();
    // Miners with records in the window but not in the metagraph (deregistered, or another chain).
    let mut unregistered: Vec<MinerStats> = by_hotkey.into_values().collect();
    unregistered.sort_by_key(|m| m.uid);
    let totals = series.iter().fold(ganglion_records::InferenceStats::default(), |mut acc, p| {
        acc.n += p.stats.n;
        acc.verified += p.stats.verified;
        acc.organic += p.stats.organic;
        acc.tokens += p.stats.tokens;
        acc.last_ms = acc.last_ms.max(p.stats.last_ms);
        acc
    });
    let verified_rate = if totals.n > 0 { totals.verified as f64 / totals.n as f64 } else { 0.0 };
    Ok(Json(json!({
        "netuid": netuid,
        "now_ms": now,
        "window": window.name,
        "bucket": bucket,
        "chain": state.chain_status(),
        "metagraph": source,
        "neurons": rows,
        "unregistered": unregistered,
        "validators": validators,
        "series": series,
        "causes": causes,
        "totals": {"n": totals.n, "verified": totals.verified, "verified_rate": verified_rate, "organic": totals.organic, "tokens": totals.tokens, "last_ms": totals.last_ms},
    })))
}

/// `GET /api/subnets/{netuid}/miners/{hotkey}?window=`: one miner's figures and history.
pub(crate) async fn miner(State(state): State<HubState>, Path((netuid, hotkey)): Path<(String, String)>, params: Params) -> ApiResult {
    params.only(&["window"])?;
    let netuid = shown(&state, &netuid)?;
    let hotkey = params::hotkey(&hotkey)?.to_string();
    let window = params.window(Window::HOUR)?;
    let now = now_ms();
    let (since, bucket) = (window.since(now), window.bucket());
    let records = state.records();
    let recent_filter = InferenceFilter { netuid, miner_hotkey: Some(hotkey.clone()), limit: 50, ..InferenceFilter::default() };
    let (series, models, causes, recent, history, scores, miners) = futures::try_join!(
        records.inference_series(netuid, Some(&hotkey), since, bucket),
        records.model_stats(netuid, Some(&hotkey), since),
        records.cause_counts(netuid, Some(&hotkey), since),
        records.recent_inference(&recent_filter),
        records.neuron_history(netuid, &hotkey, 500),
        records.scores_for(netuid, &hotkey, 200),
        records.miner_stats_one(netuid, &hotkey, since),
    )?;
    let (source, views) = neurons(&state, netuid, &HashSet::new()).await?;
    let neuron = views.into_iter().find(|n| n.hotkey == hotkey);
    let incentive: Vec<Value> = history
        .iter()
        .rev()
        .map(|s| json!({"block": s.block, "t_ms": s.created_at_ms, "incentive": s.incentive, "emission_tao": tao(s.emission), "stake_tao": tao(s.stake), "uid": s.uid}))
        .collect();
    Ok(Json(json!({
        "netuid": netuid,
        "hotkey": hotkey,
        "now_ms": now,
        "window": window.name,
        "bucket": bucket,
        "chain": state.chain_status(),
        "metagraph": source,
        "neuron": neuron,
        "stats": miners,
        "causes": causes,
        "series": series,
        "models": models,
        "recent": recent,
        "incentive": incentive,
        "scores": scores,
    })))
}

/// `GET /api/subnets/{netuid}/validators/{hotkey}?window=`.
pub(crate) async fn validator(
    State(state): State<HubState>,
    Path((netuid, hotkey)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    params.only(&["window"])?;
    let netuid = shown(&state, &netuid)?;
    let hotkey = params::hotkey(&hotkey)?.to_string();
    let window = params.window(Window::HOUR)?;
    let now = now_ms();
    let (since, bucket) = (window.since(now), window.bucket());
    let records = state.records();
    let filter = InferenceFilter { netuid, validator_hotkey: Some(hotkey.clone()), limit: 50, ..InferenceFilter::default() };
    let (series, stats, recent, scores) = futures::try_join!(
        records.validator_series(netuid, &hotkey, since, bucket),
        records.validator_stats(netuid, since),
        records.recent_inference(&filter),
        records.latest_scores_by(netuid, &hotkey),
    )?;
    let keys: HashSet<String> = [hotkey.clone()].into_iter().collect();
    let (source, views) = neurons(&state, netuid, &keys).await?;
    Ok(Json(json!({
        "netuid": netuid,
        "hotkey": hotkey,
        "now_ms": now,
        "window": window.name,
        "bucket": bucket,
        "chain": state.chain_status(),
        "metagraph": source,
        "neuron": views.into_iter().find(|n| n.hotkey == hotkey),
        "stats": stats.into_iter().find(|v| v.hotkey == hotkey),
        "series": series,
        "recent": recent,
        "scores": scores,
    })))
}

/// `GET /api/subnets/{netuid}/requests?miner=&validator=&model=&verified=&since=&before=&limit=`.
pub(crate) async fn requests(State(state): State<HubState>, Path(netuid): Path<String>, params: Params) -> ApiResult {
    params.only(&["miner", "validator", "model", "verified", "since", "before", "limit"])?;
    let netuid = shown(&state, &netuid)?;
    let filter = InferenceFilter {
        netuid,
        miner_hotkey: params.hotkey("miner")?,
        validator_hotkey: params.hotkey("validator")?,
        model: params.text("model")?,
        verified: params.bool("verified")?,
        since_ms: params.time_ms("since")?,
        before_ms: params.time_ms("before")?,
        limit: params.limit(50, 500)?,
    };
    let rows = state.records().recent_inference(&filter).await?;
    let next_before = (rows.len() == filter.limit as usize).then(|| rows.last().map(|r| r.created_at_ms)).flatten();
    Ok(Json(json!({"netuid": netuid, "requests": rows, "next_before": next_before})))
}

/// `GET /api/requests/{id}`: one request with prompt, response and verification detail.
pub(crate) async fn request(State(state): State<HubState>, Path(id): Path<String>, params: Params) -> ApiResult {
    params.only(&[])?;
    let id = params::record_id(&id)?;
    let record = state.records().inference(id).await?.ok_or_else(|| ApiError::not_found(format!("no request with id `{id}`")))?;
    if !state.shows(record.netuid) {
        return Err(ApiError::not_found(format!("no request with id `{id}` in the netuid this hub shows")));
    }
    // JavaScript numbers lose u64 precision (seeds use all 64 bits): send exact text too.
    let sampling_text: serde_json::Map<String, Value> = match &record.sampling {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect(),
        _ => serde_json::Map::new(),
    };
    Ok(Json(json!({
        "request": record,
        "seed_text": record.seed.map(|s| s.to_string()),
        "sampling_text": sampling_text,
    })))
}

/// `GET /api/subnets/{netuid}/compute?window=`: specs, challenge figures, allocations.
pub(crate) async fn compute(State(state): State<HubState>, Path(netuid): Path<String>, params: Params) -> ApiResult {
    params.only(&["window"])?;
    let netuid = shown(&state, &netuid)?;
    let window = params.window(Window::DAY)?;
    let now = now_ms();
    let records = state.records();
    let (specs, stats, allocations, recent) = futures::try_join!(
        records.specs(netuid),
        records.challenge_stats(netuid, window.since(now)),
        records.allocations(netuid),
        records.challenges(netuid, None, 100),
    )?;
    let (source, views) = neurons(&state, netuid, &HashSet::new()).await?;
    Ok(Json(json!({
        "netuid": netuid,
        "now_ms": now,
        "window": window.name,
        "chain": state.chain_status(),
        "metagraph": source,
        "neurons": views,
        "specs": specs,
        "challenge_stats": stats,
        "allocations": allocations,
        "recent": recent,
    })))
}

/// `GET /api/subnets/{netuid}/compute/miners/{hotkey}?limit=`: a compute miner's history.
pub(crate) async fn compute_miner(
    State(state): State<HubState>,
    Path((netuid, hotkey)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    params.only(&["limit"])?;
    let netuid = shown(&state, &netuid)?;
    let hotkey = params::hotkey(&hotkey)?.to_string();
    let limit = params.limit(200, 1000)?;
    let records = state.records();
    let (specs, challenges, scores, history, allocations) = futures::try_join!(
        records.specs(netuid),
        records.recent_challenges(netuid, &hotkey, limit),
        records.scores_for(netuid, &hotkey, 200),
        records.neuron_history(netuid, &hotkey, 500),
        records.allocations(netuid),
    )?;
    let (source, views) = neurons(&state, netuid, &HashSet::new()).await?;
    let incentive: Vec<Value> =
        history.iter().rev().map(|s| json!({"block": s.block, "t_ms": s.created_at_ms, "incentive": s.incentive})).collect();
    Ok(Json(json!({
        "netuid": netuid,
        "hotkey": hotkey,
        "now_ms": now_ms(),
        "chain": state.chain_status(),
        "metagraph": source,
        "neuron": views.into_iter().find(|n| n.hotkey == hotkey),
        "specs": specs.into_iter().find(|s| s.miner_hotkey == hotkey),
        "challenges": challenges,
        "scores": scores,
        "incentive": incentive,
        "allocations": allocations.into_iter().filter(|a| a.miner_hotkey == hotkey).collect::<Vec<_>>(),
    })))
}

/// `GET /api/subnets/{netuid}/reward?window=&bins=`: the reward subnet's distributions
/// (combined reward and each function's normalised value) over the window, per-uid figures
/// and the latest steps.
pub(crate) async fn reward(State(state): State<HubState>, Path(netuid): Path<String>, params: Params) -> ApiResult {
    params.only(&["window", "bins"])?;
    let netuid = shown(&state, &netuid)?;
    let window = params.window(Window::DAY)?;
    let bins = params.limit_named("bins", 20, ganglion_records::reward::MAX_BINS)?;
    let now = now_ms();
    let records = state.records();
    let (distribution, recent) =
        futures::try_join!(records.reward_distribution(netuid, window.since(now), bins), records.recent_reward_events(netuid, 50))?;
    Ok(Json(json!({
        "netuid": netuid,
        "now_ms": now,
        "window": window.name,
        "max_samples": ganglion_records::reward::MAX_DISTRIBUTION_SAMPLES,
        "distribution": distribution,
        "recent": recent,
    })))
}

/// `GET /api/subnets/{netuid}/reward/uids/{uid}?window=&limit=`: one uid's rewards over time.
pub(crate) async fn reward_uid(State(state): State<HubState>, Path((netuid, uid)): Path<(String, String)>, params: Params) -> ApiResult {
    params.only(&["window", "limit"])?;
    let netuid = shown(&state, &netuid)?;
    let uid = params::uid(&uid)?;
    let window = params.window(Window::DAY)?;
    let limit = params.limit(500, 1000)?;
    let now = now_ms();
    let history = state.records().reward_uid_history(netuid, uid, window.since(now), limit).await?;
    let functions: std::collections::BTreeSet<&str> = history.iter().flat_map(|s| s.functions.keys().map(String::as_str)).collect();
    Ok(Json(json!({
        "netuid": netuid,
        "uid": uid,
        "now_ms": now,
        "window": window.name,
        "limit": limit,
        "functions": functions,
        "history": history,
    })))
}

/// `GET /api/subnets/{netuid}/evaluation`: the latest evaluation round, one row per uid.
pub(crate) async fn evaluation(State(state): State<HubState>, Path(netuid): Path<String>, params: Params) -> ApiResult {
    params.only(&[])?;
    let netuid = shown(&state, &netuid)?;
    let round = state.records().latest_evaluation_round(netuid).await?;
    let first = round.first().map(|(_, e)| e);
    Ok(Json(json!({
        "netuid": netuid,
        "now_ms": now_ms(),
        "round": first.map(|e| json!({
            "validator_hotkey": e.validator_hotkey,
            "step": e.step,
            "block": e.block,
            "created_at_ms": e.created_at_ms,
            "competition": e.competition,
        })),
        "rows": round.iter().map(|(_, e)| e).collect::<Vec<_>>(),
    })))
}

/// `GET /api/subnets/{netuid}/evaluation/uids/{uid}?window=&limit=`: one uid's loss, win
/// rate and weight over time (every validator's rows).
pub(crate) async fn evaluation_uid(
    State(state): State<HubState>,
    Path((netuid, uid)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    params.only(&["window", "limit"])?;
    let netuid = shown(&state, &netuid)?;
    let uid = params::uid(&uid)?;
    let window = params.window(params::WINDOWS[4])?;
    let limit = params.limit(500, 1000)?;
    let now = now_ms();
    let history = state.records().evaluation_history(netuid, uid, window.since(now), limit).await?;
    Ok(Json(json!({
        "netuid": netuid,
        "uid": uid,
        "now_ms": now,
        "window": window.name,
        "limit": limit,
        "history": history.iter().map(|(_, e)| e).collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permit_holders_without_stake_or_requests_are_miners() {
        assert_eq!(role(true, 0.0, 0.0, false), "miner");
        assert_eq!(role(true, 100.0, 0.0, false), "validator");
        assert_eq!(role(true, 0.0, 0.0, true), "validator");
        assert_eq!(role(false, 100.0, 0.5, true), "miner");
    }
}
