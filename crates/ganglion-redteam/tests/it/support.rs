//! Helpers shared by the red-team tests: the two executables, and bounded runs of
//! `ganglion-redteam run`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// This crate's executable.
pub(crate) fn redteam() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ganglion-redteam"))
}

/// The `ganglion` executable next to it (built by `cargo build --workspace`, as the suite
/// does), or `None` with the reason.
pub(crate) fn ganglion() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GANGLION_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = redteam().with_file_name("ganglion");
    if path.is_file() { Ok(path) } else { Err(format!("{} is missing: build it with `cargo build -p ganglion`", path.display())) }
}

/// Whether a missing tool fails the test (under `scripts/test`) or skips it.
pub(crate) fn require_all() -> bool {
    std::env::var("GANGLION_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Runs `ganglion-redteam run <args> --json` within `limit` and returns its report, or `None`
/// (skipped) when `ganglion` or the model is missing outside `scripts/test`.
pub(crate) async fn run(args: &[&str], limit: Duration) -> Option<Value> {
    let ganglion = match ganglion() {
        Ok(path) => path,
        Err(why) if !require_all() => {
            eprintln!("skipped: {why}");
            return None;
        }
        Err(why) => panic!("{why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("redteam");
    let run = tokio::process::Command::new(redteam())
        .arg("run")
        .args(args)
        .args(["--json", "--timeout", &format!("{}s", limit.as_secs().saturating_sub(30).max(30)), "--data-dir"])
        .arg(&data_dir)
        .env("GANGLION_BIN", &ganglion)
        .env("RUST_LOG", "warn")
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    // Bounded: a hung run fails here (its children die with it).
    let output = match tokio::time::timeout(limit, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("running ganglion-redteam: {e}"),
        Err(_) => panic!("ganglion-redteam run did not finish within {limit:?}; logs in {}", data_dir.join("logs").display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("could not fetch the default model") && !require_all() {
        eprintln!("skipped: no model ({stderr})");
        return None;
    }
    assert!(output.status.success(), "ganglion-redteam run failed ({}):\n{stderr}\n{stdout}", output.status);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}"));
    // Keep the logs of a failing run: the tempdir goes, so print where the figures came from.
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    Some(report)
}

/// A strategy's row of a report.
pub(crate) fn row<'a>(report: &'a Value, strategy: &str) -> &'a Value {
    report["strategies"].as_array().and_then(|rows| rows.iter().find(|r| r["strategy"] == strategy)).unwrap_or_else(|| panic!("no `{strategy}` in {report}"))
}

/// A share figure of a row (`share_of_honest`, `final_share`); `None` when honest earned nothing.
pub(crate) fn share(row: &Value, key: &str) -> Option<f64> {
    row[key].as_f64()
}
