//! The JSON API through the router (`oneshot`) against a seeded SQLite store without a
//! chain: the metagraph comes from recorded snapshots.

use crate::common;

use axum::http::StatusCode;
use common::{COMPUTE, INFERENCE, ROWS, compute_subnet, get, get_json, inference_subnet, seeded_sqlite};
use ganglion_hub::{HubConfig, HubState, router};
use serde_json::Value;

async fn app(dir: &std::path::Path, netuid: Option<u16>) -> axum::Router {
    let records = seeded_sqlite(dir).await;
    let mut config = HubConfig::new(records, None, "none");
    config.netuid = netuid;
    router(HubState::new(config))
}

#[tokio::test]
async fn subnets_list_both_views() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), None).await;
    let (status, body) = get_json(&app, "/api/subnets").await;
    assert_eq!(status, StatusCode::OK);
    let subnets = body["subnets"].as_array().expect("list");
    assert_eq!(subnets.len(), 2);
    assert_eq!(subnets[0]["netuid"], INFERENCE);
    assert_eq!(subnets[0]["views"], serde_json::json!({"inference": true, "compute": false, "reward": false, "evaluation": false}));
    assert_eq!(subnets[1]["views"], serde_json::json!({"inference": false, "compute": true, "reward": false, "evaluation": false}));
    assert_eq!(subnets[0]["records"]["inference_n"], ROWS);
    assert_eq!(body["chain"]["configured"], false);
}

#[tokio::test]
async fn overview_joins_the_snapshot_metagraph_with_miner_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), None).await;
    let s = inference_subnet();
    let (status, body) = get_json(&app, "/api/subnets/1/overview?window=1h").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metagraph"]["source"], "snapshot");
    assert_eq!(body["metagraph"]["block"], 30);
    let neurons = body["neurons"].as_array().expect("neurons");
    assert_eq!(neurons.len(), 8);
    let mut total = 0;
    for row in neurons {
        let uid = row["neuron"]["uid"].as_u64().expect("uid") as u16;
        assert_eq!(row["neuron"]["hotkey"], s.hotkey(uid));
        if uid < 2 {
            assert_eq!(row["neuron"]["role"], "validator");
            assert!(row["miner"].is_null());
            assert!(row["validator"]["n"].as_u64().expect("sent") > 0);
        } else {
            assert_eq!(row["neuron"]["role"], "miner");
            let n = row["miner"]["n"].as_u64().expect("miner figures");
            assert_eq!(n, ROWS / 6);
            total += n;
            let expected_verified =
                (0..ROWS).map(|i| s.inference(i)).filter(|r| r.miner_uid == uid && r.verified).count() as u64;
            assert_eq!(row["miner"]["verified"], expected_verified);
            if expected_verified < n {
                assert!(!row["miner"]["causes"].as_array().expect("causes").is_empty());
            }
        }
    }
    assert_eq!(total, ROWS);
    assert_eq!(body["totals"]["n"], ROWS);
    assert!(!body["series"].as_array().expect("series").is_empty());
    // The bad miner (uid 4 of every 5) shows up in the causes.
    assert!(body["causes"].as_array().expect("causes").iter().map(|c| c["n"].as_u64().unwrap_or(0)).sum::<u64>() > 0);
    // A short window sees fewer requests.
    let (_, short) = get_json(&app, "/api/subnets/1/overview?window=15m").await;
    assert!(short["totals"]["n"].as_u64().expect("n") < ROWS);
}

#[tokio::test]
async fn miner_validator_and_request_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), None).await;
    let s = inference_subnet();
    let bad = s.hotkey(4);
    let (status, miner) = get_json(&app, &format!("/api/subnets/1/miners/{bad}?window=6h")).await;
    assert_eq!(status, StatusCode::OK, "{miner}");
    assert_eq!(miner["neuron"]["uid"], 4);
    assert_eq!(miner["stats"]["n"], ROWS / 6);
    assert!(miner["stats"]["verified_rate"].as_f64().expect("rate") < 0.5);
    let causes: u64 = miner["causes"].as_array().expect("causes").iter().map(|c| c["n"].as_u64().unwrap_or(0)).sum();
    assert_eq!(causes, miner["stats"]["n"].as_u64().unwrap_or(0) - miner["stats"]["verified"].as_u64().unwrap_or(0));
    assert_eq!(miner["recent"].as_array().expect("recent").len(), 50);
    assert_eq!(miner["incentive"].as_array().expect("incentive").len(), 3);
    assert_eq!(miner["scores"].as_array().expect("scores").len(), 6); // 2 validators × 3 blocks
    assert!(!miner["models"].as_array().expect("models").is_empty());
    let points = miner["series"].as_array().expect("series");
    assert!(points.len() > 10 && points[0]["avg_ttft_ms"].is_number());

    let validator = s.hotkey(0);
    let (status, v) = get_json(&app, &format!("/api/subnets/1/validators/{validator}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["neuron"]["role"], "validator");
    assert!(v["stats"]["n"].as_u64().expect("n") > 0);
    assert_eq!(v["scores"].as_array().expect("scores").len(), 6);
    assert!(v["recent"].as_array().expect("recent").iter().all(|r| r["validator_hotkey"] == validator));

    let (status, list) = get_json(&app, &format!("/api/subnets/1/requests?miner={bad}&verified=false&limit=5")).await;
    assert_eq!(status, StatusCode::OK);
    let rows = list["requests"].as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["verified"] == false && r["cause"].is_string()));
    let before = list["next_before"].as_i64().expect("next page");
    let (_, next) = get_json(&app, &format!("/api/subnets/1/requests?miner={bad}&verified=false&limit=5&before={before}")).await;
    assert!(next["requests"].as_array().expect("rows").iter().all(|r| r["created_at_ms"].as_i64().unwrap_or(i64::MAX) < before));

    let id = rows[0]["id"].as_str().expect("id");
    let (status, request) = get_json(&app, &format!("/api/requests/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let expected = (0..ROWS).map(|i| s.inference(i)).find(|r| r.id == id).expect("seeded");
    assert_eq!(request["request"], serde_json::to_value(&expected).expect("json"));
    let seed = expected.seed.expect("seed").to_string();
    assert_eq!(request["seed_text"], seed.as_str());
    assert_eq!(request["sampling_text"]["seed"], seed.as_str());
}

#[tokio::test]
async fn compute_pages_show_specs_challenges_and_allocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), None).await;
    let c = compute_subnet();
    let (status, body) = get_json(&app, "/api/subnets/2/compute?window=24h").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["specs"].as_array().expect("specs").len(), 4);
    let stats = body["challenge_stats"].as_array().expect("stats");
    assert_eq!(stats.iter().map(|s| s["n"].as_u64().unwrap_or(0)).sum::<u64>(), 80);
    assert_eq!(body["allocations"][0]["id"], "alloc-seed");
    assert_eq!(body["recent"].as_array().expect("recent").len(), 80);
    let miner = c.hotkey(2);
    let (status, m) = get_json(&app, &format!("/api/subnets/{COMPUTE}/compute/miners/{miner}?limit=10")).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["challenges"].as_array().expect("challenges").len(), 10);
    assert_eq!(m["specs"]["miner_hotkey"], miner);
    assert_eq!(m["neuron"]["uid"], 2);
}

#[tokio::test]
async fn bad_input_gets_a_400_with_a_json_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), None).await;
    let hotkey = inference_subnet().hotkey(3);
    let cases = [
        ("/api/subnets/x/overview", "netuid"),
        ("/api/subnets/70000/overview", "netuid"),
        ("/api/subnets/1/overview?window=2y", "window"),
        ("/api/subnets/1/overview?windw=1h", "unknown query parameter"),
        ("/api/subnets/1/requests?limit=0", "limit"),
        ("/api/subnets/1/requests?limit=100000", "limit"),
        ("/api/subnets/1/requests?verified=maybe", "verified"),
        ("/api/subnets/1/requests?before=-3", "before"),
        ("/api/subnets/1/requests?miner=not%20a%20key", "hotkey"),
        ("/api/subnets/1/miners/..%2Fetc", "hotkey"),
        ("/api/requests/a%20b", "record id"),
        ("/api/events?netuid=abc", "netuid"),
    ];
    for (path, needle) in cases {
        let (status, body) = get_json(&app, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{path}: {message}");
    }
    let (status, body) = get_json(&app, "/api/requests/nope").await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::NOT_FOUND, Value::from("not_found")));
    let (status, body) = get_json(&app, "/api/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("openapi"));
    // A miner without records is a page, not an error.
    let (status, body) = get_json(&app, &format!("/api/subnets/9/miners/{hotkey}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["stats"].is_null() && body["neuron"].is_null());
}

#[tokio::test]
async fn netuid_filter_hides_other_subnets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), Some(COMPUTE)).await;
    let (_, body) = get_json(&app, "/api/subnets").await;
    assert_eq!(body["subnets"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["subnets"][0]["netuid"], COMPUTE);
    let (status, body) = get_json(&app, "/api/subnets/1/overview").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let id = inference_subnet().inference(0).id;
    let (status, _) = get_json(&app, &format!("/api/requests/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dashboard_assets_metrics_and_openapi_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), None).await;
    let (status, html) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    let html = String::from_utf8(html).expect("utf8");
    assert!(html.contains("/assets/app.js") && !html.contains("http://") && !html.contains("https://"));
    for asset in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
        let (status, body) = get(&app, asset).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        let text = String::from_utf8(body).expect("utf8");
        // No CDN: nothing is loaded from another host (the SVG namespace URI is not a load).
        assert!(!text.contains("https://"), "{asset} references an external URL");
    }
    assert_eq!(get(&app, "/assets/nope.js").await.0, StatusCode::NOT_FOUND);
    let (_, _) = get_json(&app, "/api/subnets").await;
    let (status, metrics) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(metrics).expect("utf8");
    assert!(metrics.contains("ganglion_hub_requests_total{route=\"/api/subnets\",status=\"200\"} 1.0"), "{metrics}");
    assert!(metrics.contains("ganglion_hub_request_seconds_count{route=\"/api/subnets\"} 1"), "{metrics}");
    assert!(metrics.contains("ganglion_hub_chain_reachable{} 0.0"), "{metrics}");
    let (status, doc) = get_json(&app, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/subnets/{netuid}/overview"]["get"]["parameters"].is_array());
}

#[tokio::test]
async fn reward_and_evaluation_pages() {
    use common::{EVALUATION, EVALUATION_ROUNDS, REWARD, REWARD_STEPS};
    let dir = tempfile::tempdir().expect("tempdir");
    let records = seeded_sqlite(dir.path()).await;
    common::seed_pages(&records).await;
    let app = router(HubState::new(HubConfig::new(records, None, "none")));

    let (_, list) = get_json(&app, "/api/subnets").await;
    let views: Vec<(u64, Value)> =
        list["subnets"].as_array().expect("list").iter().map(|s| (s["netuid"].as_u64().unwrap_or(0), s["views"].clone())).collect();
    assert_eq!(views.len(), 4, "{views:?}");
    assert_eq!(views[2], (u64::from(REWARD), serde_json::json!({"inference": false, "compute": false, "reward": true, "evaluation": false})));
    assert_eq!(views[3], (u64::from(EVALUATION), serde_json::json!({"inference": false, "compute": false, "reward": false, "evaluation": true})));

    // Distribution: combined reward and both functions; every step's three uids.
    let (status, body) = get_json(&app, "/api/subnets/3/reward?window=24h&bins=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = &body["distribution"];
    assert_eq!(d["samples"], REWARD_STEPS * 3);
    assert_eq!(d["truncated"], false);
    let names: Vec<&str> = d["histograms"].as_array().expect("histograms").iter().filter_map(|h| h["name"].as_str()).collect();
    assert_eq!(names, ["total", "relevance_filter", "rlhf_reward_model"]);
    let total = &d["histograms"][0];
    assert_eq!(total["bins"].as_array().expect("bins").len(), 10);
    assert_eq!(total["bins"].as_array().expect("bins").iter().map(|b| b["n"].as_u64().unwrap_or(0)).sum::<u64>(), REWARD_STEPS as u64 * 3);
    assert_eq!(d["uids"].as_array().expect("uids").len(), 3);
    assert_eq!(body["recent"].as_array().expect("recent").len(), 40);
    // A shorter window sees fewer samples.
    let (_, short) = get_json(&app, "/api/subnets/3/reward?window=15m").await;
    assert!(short["distribution"]["samples"].as_u64().expect("n") < REWARD_STEPS as u64 * 3);

    // A uid's history: oldest first, rising, with each function.
    let (status, body) = get_json(&app, "/api/subnets/3/reward/uids/1?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let history = body["history"].as_array().expect("history");
    assert_eq!(history.len(), 10);
    let rewards: Vec<f64> = history.iter().filter_map(|p| p["reward"].as_f64()).collect();
    assert!(rewards.windows(2).all(|w| w[0] < w[1]), "{rewards:?}");
    assert_eq!(body["functions"], serde_json::json!(["relevance_filter", "rlhf_reward_model"]));
    assert!(history[0]["functions"]["rlhf_reward_model"].is_number());

    // The latest round: one row per uid, the rejected one with its cause.
    let (status, body) = get_json(&app, "/api/subnets/4/evaluation").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["round"]["step"], EVALUATION_ROUNDS - 1);
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.iter().filter_map(|r| r["uid"].as_u64()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(rows[3]["status"], "rejected");
    assert!(rows[3]["reason"].as_str().expect("cause").contains("does not match"));
    assert_eq!(rows[0]["win_rate"], 1.0);

    // A uid's evaluations over time: falling loss, steady weight.
    let (status, body) = get_json(&app, "/api/subnets/4/evaluation/uids/0?window=24h").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let history = body["history"].as_array().expect("history");
    assert_eq!(history.len() as u64, EVALUATION_ROUNDS);
    let losses: Vec<f64> = history.iter().filter_map(|p| p["mean_loss"].as_f64()).collect();
    assert!(losses.windows(2).all(|w| w[0] > w[1]), "{losses:?}");
    assert!(history.iter().all(|p| p["weight"] == 0.8));

    // Empty subnets answer empty pages; bad parameters are 400s.
    let (status, body) = get_json(&app, "/api/subnets/1/evaluation").await;
    assert_eq!((status, body["rows"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let (_, body) = get_json(&app, "/api/subnets/1/reward").await;
    assert_eq!(body["distribution"]["samples"], 0);
    for bad in [
        "/api/subnets/3/reward?bins=0",
        "/api/subnets/3/reward?bins=101",
        "/api/subnets/3/reward?window=2y",
        "/api/subnets/3/reward?uid=1",
        "/api/subnets/3/reward/uids/70000",
        "/api/subnets/3/reward/uids/1?limit=1001",
        "/api/subnets/4/evaluation/uids/x",
        "/api/subnets/4/evaluation?window=1h",
    ] {
        let (status, body) = get_json(&app, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}
