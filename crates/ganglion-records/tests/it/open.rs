//! Opening the store: URL errors, an unreachable server, in-memory stores, SQLite WAL mode
//! and durability when the writing process is killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ganglion_records::synthetic::SyntheticSubnet;
use ganglion_records::{Records, RecordsError};

#[tokio::test]
async fn bad_urls_say_what_to_use() {
    for url in ["mysql://u:secret@h/db", "", "sqlite:", "/tmp/records.db"] {
        let err = Records::open(url).await.expect_err("refused");
        assert!(matches!(err, RecordsError::BadUrl { .. }), "{url}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("postgres://") && text.contains("sqlite:"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}

#[tokio::test]
async fn unreachable_server_is_named() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let err = tokio::time::timeout(Duration::from_secs(30), Records::open("postgres://ganglion:pw@127.0.0.1:1/x"))
        .await
        .expect("fails in time")
        .expect_err("refused");
    assert!(matches!(err, RecordsError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1") && text.contains("install-postgres") && !text.contains(":pw@"), "{text}");
}

#[tokio::test]
async fn memory_store_keeps_data_across_queries() {
    let records = Records::open("sqlite::memory:").await.expect("open");
    let s = SyntheticSubnet::ending_at(1, 1, 3, 10, 1_000_000, 1000);
    let rows: Vec<_> = (0..10).map(|i| s.inference(i)).collect();
    records.insert_inference(&rows).await.expect("insert");
    for _ in 0..3 {
        assert_eq!(records.subnets().await.expect("subnets")[0].inference_n, 10);
    }
}

#[tokio::test]
async fn default_url_creates_the_directory_and_uses_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join(".ganglion");
    let url = Records::default_url(&data_dir);
    assert!(url.starts_with("sqlite:") && url.ends_with("records.db"), "{url}");
    let records = Records::open(&url).await.expect("open");
    let s = SyntheticSubnet::ending_at(1, 1, 3, 10, 1_000_000, 1000);
    records.insert_inference(&[s.inference(0)]).await.expect("insert");
    assert!(data_dir.join("records.db").exists());
    assert!(data_dir.join("records.db-wal").exists(), "SQLite must run in WAL mode");
    records.close().await;
}

/// Child half of `committed_batches_survive_sigkill`: writes batches forever, printing the
/// number of committed rows after each commit.
#[tokio::test]
async fn sigkill_writer_child() {
    let Ok(url) = std::env::var("GANGLION_RECORDS_KILL_CHILD_URL") else { return };
    let records = Records::open(&url).await.expect("open");
    let s = SyntheticSubnet::ending_at(1, 1, 4, 1_000_000, 1_000_000_000, 10);
    let mut next = 0u64;
    // Bounded: the parent kills us long before this ends.
    for _ in 0..10_000 {
        let batch: Vec<_> = (next..next + 50).map(|i| s.inference(i)).collect();
        records.insert_inference(&batch).await.expect("insert");
        next += 50;
        println!("committed {next}");
    }
}

#[tokio::test]
async fn committed_batches_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("records.db").display());
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "open::sigkill_writer_child", "--nocapture", "--test-threads=1"])
        .env("GANGLION_RECORDS_KILL_CHILD_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut committed = 0u64;
    while committed < 500 && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(n) = line.strip_prefix("committed ") {
                    committed = n.trim().parse().expect("count");
                }
            }
            _ => break,
        }
    }
    child.kill().expect("SIGKILL the writer");
    let _ = child.wait();
    assert!(committed >= 500, "the writer committed only {committed} rows in 60 s");

    let records = Records::open(&url).await.expect("reopen after kill");
    let stored = records.subnets().await.expect("subnets").first().map(|s| s.inference_n).unwrap_or(0);
    assert!(stored >= committed, "{stored} rows stored, {committed} reported committed");
    assert_eq!(stored % 50, 0, "a batch was partially stored: {stored}");
    let cursor = records.cursor().await.expect("cursor");
    assert_eq!(u64::try_from(cursor.inference).expect("seq"), stored);
}
