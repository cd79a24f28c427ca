//! End to end in headless Chromium: seeds a store, starts the hub on loopback and runs
//! `browser/dashboard.mjs` (playwright-core driving Debian's /usr/bin/chromium): the overview
//! lists the seeded miners, plots render, a record inserted while the page is open appears
//! live, and the miner, request, compute, reward and model-evaluation pages show their parts. Screenshots go to
//! `target/tmp/hub-screenshots/`. Needs `scripts/install-chromium`; without it the test is
//! skipped, unless GANGLION_REQUIRE_ALL=1.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ganglion_hub::{HubConfig, bind};
use tokio::io::{AsyncBufReadExt, BufReader};

fn missing(what: &str) -> bool {
    if std::env::var("GANGLION_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{what} is missing and GANGLION_REQUIRE_ALL=1: run scripts/install-chromium");
    }
    eprintln!("skipped: {what} is missing (scripts/install-chromium installs it)");
    true
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("browser");
    let chromium = std::env::var("CHROMIUM").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() && missing(&format!("the browser {}", chromium.display())) {
        return;
    }
    if !on_path("node") && missing("node") {
        return;
    }
    if !browser_dir.join("node_modules/playwright-core/package.json").is_file()
        && missing("playwright-core in crates/ganglion-hub/tests/browser/node_modules")
    {
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let records = common::seeded_sqlite(dir.path()).await;
    common::seed_pages(&records).await;
    let mut config = HubConfig::new(records.clone(), None, "none");
    config.feed_poll = Duration::from_millis(200);
    let hub = bind(config, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("hub");

    let s = common::inference_subnet();
    let miners: Vec<String> = s.miner_uids().map(|uid| s.hotkey(uid)).collect();
    let mut live = s.inference(common::ROWS + 1);
    live.id = "live-record-0001".into();
    live.created_at_ms = ganglion_records::now_ms();
    let expect = serde_json::json!({
        "netuid": common::INFERENCE,
        "miners": miners,
        "bad_miner": s.hotkey(4),
        "request_id": s.inference(7).id,
        "request_seed": s.inference(7).seed.map(|v| v.to_string()),
        "live_id": live.id,
        "compute_netuid": common::COMPUTE,
        "reward_netuid": common::REWARD,
        "evaluation_netuid": common::EVALUATION,
    });
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .current_dir(&browser_dir)
        .env("HUB_URL", hub.url())
        .env("EXPECT", expect.to_string())
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .env("USER_DATA_DIR", dir.path().join("chromium-profile"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut out = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "LIVE_READY" {
                records.insert_inference(std::slice::from_ref(&live)).await.expect("insert the live record");
            }
            out.push(line);
        }
        (child.wait().await.expect("node exit"), out)
    };
    let (status, out) = match tokio::time::timeout(Duration::from_secs(180), run).await {
        Ok(done) => done,
        Err(_) => panic!("the browser test did not finish within 180 s"),
    };
    let errors = stderr_task.await.unwrap_or_default();
    assert!(status.success(), "dashboard.mjs failed ({status}):\n{}\n{errors}", out.join("\n"));
    assert!(out.iter().any(|l| l.contains("\"ok\":true")), "{}", out.join("\n"));
    for name in ["hub-overview.png", "hub-overview-live.png", "hub-miner.png", "hub-request.png", "hub-compute.png", "hub-reward.png", "hub-reward-uid.png",
        "hub-evaluation.png", "hub-evaluation-uid.png"] {
        let png = std::fs::read(shots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.len() > 10_000 && png.starts_with(b"\x89PNG"), "{name} is not a real screenshot");
    }
    eprintln!("screenshots in {}", shots.display());
    hub.shutdown().await;
}
