//! The global logging flags of the real binary: `--logging.json` (or
//! `GANGLION_LOGGING_JSON=1`) makes every stderr line one JSON object with a level, while data
//! stays on stdout; `--logging.debug` turns our own debug logs on; `--help` lists the flags.
//!
//! The command that logs is `chain serve` on a fresh data directory: no network beyond
//! loopback, its first log line ("new chain created") comes at once, and with 50 ms blocks
//! `--logging.debug` adds a debug line per block. The node is killed after what the test
//! needs, or after 30 s at most.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn ganglion() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ganglion"));
    // The test decides the logging: nothing inherited from the environment.
    for var in ["RUST_LOG", "GANGLION_LOGGING_JSON", "GANGLION_LOGGING_DEBUG", "GANGLION_LOGGING_TRACE"] {
        command.env_remove(var);
    }
    command
}

/// Runs `chain serve` with `configure`'s flags or environment until a stderr line satisfies
/// `enough` (or the deadline passes), then kills it. Returns (stdout lines, stderr lines).
fn chain_serve(configure: impl FnOnce(&mut Command), enough: impl Fn(&str) -> bool) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut command = ganglion();
    command
        .args(["chain", "serve", "--port", "0", "--block-time", "50ms", "--json", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    configure(&mut command);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn ganglion: {e}"));

    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });

    let started = Instant::now();
    let mut lines = Vec::new();
    let mut satisfied = false;
    while let Some(left) = DEADLINE.checked_sub(started.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                satisfied = enough(&line);
                lines.push(line);
                if satisfied {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    lines.extend(rx.try_iter());
    let stdout = out_reader.join().unwrap_or_default();
    assert!(satisfied, "no expected log line within {DEADLINE:?}; stderr so far:\n{}", lines.join("\n"));
    (stdout.lines().map(str::to_string).collect(), lines)
}

/// Every line parses as a JSON object with a timestamp, a known level and a target.
fn assert_json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    assert!(!lines.is_empty(), "no log lines at all");
    lines
        .iter()
        .map(|line| {
            let doc: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
            let level = doc["level"].as_str().unwrap_or_else(|| panic!("no `level` in {line}"));
            assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level), "level {level} in {line}");
            assert!(doc["timestamp"].is_string(), "no `timestamp` in {line}");
            assert!(doc["target"].is_string(), "no `target` in {line}");
            assert!(doc["fields"].is_object(), "no `fields` in {line}");
            doc
        })
        .collect()
}

fn is_debug(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|doc| doc["level"] == "DEBUG")
}

#[test]
fn logging_json_flag_gives_json_lines_on_stderr_and_data_on_stdout() {
    let (stdout, stderr) = chain_serve(
        |c| {
            c.args(["--logging.json", "--logging.debug"]);
        },
        is_debug,
    );
    let docs = assert_json_lines(&stderr);
    assert!(
        docs.iter().any(|d| d["level"] == "INFO" && d["fields"]["message"] == "new chain created"),
        "no `new chain created` line:\n{}",
        stderr.join("\n")
    );
    assert!(docs.iter().any(|d| d["level"] == "DEBUG" && d["target"] == "ganglion::chain"), "--logging.debug gave no debug line");
    // Data on stdout: the startup document, and nothing of it on stderr.
    let startup = stdout.first().unwrap_or_else(|| panic!("nothing on stdout"));
    let doc: serde_json::Value = serde_json::from_str(startup).unwrap_or_else(|e| panic!("stdout `{startup}`: {e}"));
    assert!(doc["url"].is_string(), "no url in {startup}");
    assert!(!stderr.iter().any(|l| l.contains("genesis_hash")), "the startup document leaked to stderr");
}

#[test]
fn logging_json_env_var_without_debug() {
    let (_, stderr) = chain_serve(
        |c| {
            c.env("GANGLION_LOGGING_JSON", "1");
        },
        |line| line.contains("new chain created"),
    );
    let docs = assert_json_lines(&stderr);
    assert!(docs.iter().all(|d| d["level"] != "DEBUG"), "debug lines without --logging.debug:\n{}", stderr.join("\n"));
}

#[test]
fn help_lists_the_logging_flags() {
    for args in [&["--help"][..], &["validator", "inference", "--help"], &["miner", "compute", "--help"]] {
        let out = ganglion().args(args).output().unwrap_or_else(|e| panic!("ganglion {args:?}: {e}"));
        assert!(out.status.success(), "ganglion {args:?} failed");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in ["--logging.debug", "--logging.trace", "--logging.json"] {
            assert!(help.contains(flag), "`ganglion {}` does not mention {flag}:\n{help}", args.join(" "));
        }
    }
}
