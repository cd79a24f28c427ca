//! PostgreSQL over TLS (`scripts/install-postgres` turns `ssl = on` with a certificate
//! signed by a CA it makes): `sslmode=require` and `sslmode=verify-full` with `sslrootcert=` open the
//! store, data round-trips, and the store's own connections are encrypted, as the server
//! sees them (`pg_stat_ssl`). A root that did not sign the server's certificate is refused
//! with a TLS error. Skipped without `GANGLION_TEST_POSTGRES_URL` (unless
//! `GANGLION_REQUIRE_ALL=1`).

use std::path::PathBuf;
use std::time::Duration;

use ganglion_records::synthetic::SyntheticSubnet;
use ganglion_records::{Records, RecordsError};
use sqlx::Row as _;

use crate::common;

fn with_params(base: &str, params: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{params}")
}

/// Whether `url`'s host is this machine (where `scripts/install-postgres` wrote the
/// server's CA certificate).
fn is_loopback(url: &str) -> bool {
    let host = url.split('@').nth(1).unwrap_or(url).split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// The CA of the server's certificate, as `scripts/install-postgres` writes it (or
/// `GANGLION_TEST_POSTGRES_SSLROOTCERT`).
fn server_ca() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GANGLION_TEST_POSTGRES_SSLROOTCERT") {
        return Some(PathBuf::from(path));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .flatten()
        .map(|version| version.path().join("main").join("ganglion-ca.crt"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Whether every connection the server has under `application_name` is encrypted, and
/// how many there are (read through a separate, plain connection).
async fn encrypted_sessions(base: &str, application_name: &str) -> (usize, usize) {
    let pool = common::raw_pool(&with_params(base, "sslmode=disable"));
    let rows = sqlx::query("SELECT CASE WHEN s.ssl THEN 1 ELSE 0 END AS ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = $1")
        .bind(application_name.to_string())
        .fetch_all(&pool)
        .await
        .expect("pg_stat_ssl");
    pool.close().await;
    let encrypted = rows.iter().filter(|r| r.try_get::<i32, _>("ssl").expect("ssl column") == 1).count();
    (encrypted, rows.len())
}

/// `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()` on a fresh connection to `url`.
async fn own_connection_encrypted(url: &str) -> bool {
    let pool = common::raw_pool(url);
    let row = sqlx::query("SELECT CASE WHEN ssl THEN 1 ELSE 0 END AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("querying pg_stat_ssl over {url}: {e}"));
    pool.close().await;
    row.try_get::<i32, _>("ssl").expect("ssl column") == 1
}

/// Opens the store at `base` + `params` in a fresh schema, writes and reads back rows,
/// and checks that the store's connections are encrypted.
async fn round_trip_encrypted(base: &str, params: &str) {
    let app = format!("ganglion_tls_{}", uuid::Uuid::new_v4().simple());
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let base_tls = with_params(base, &format!("{params}&application_name={app}"));
    let url = ganglion_records::create_postgres_schema(&base_tls, &schema).await.unwrap_or_else(|e| panic!("{params}: {e}"));
    let records = tokio::time::timeout(Duration::from_secs(30), Records::open(&url)).await.expect("opens in time").unwrap_or_else(|e| panic!("{params}: {e}"));

    let subnet = SyntheticSubnet::ending_at(5, 1, 3, 20, 1_750_000_000_000, 1000);
    let rows: Vec<_> = (0..20).map(|i| subnet.inference(i)).collect();
    records.insert_inference(&rows).await.expect("insert over TLS");
    for row in &rows {
        assert_eq!(records.inference(&row.id).await.expect("read over TLS").as_ref(), Some(row));
    }
    assert_eq!(records.subnets().await.expect("subnets")[0].inference_n, 20);

    // The server's view of the store's own (pooled, still open) connections.
    let (encrypted, total) = encrypted_sessions(base, &app).await;
    assert!(total >= 1, "{params}: the store holds no connection named {app}");
    assert_eq!(encrypted, total, "{params}: {encrypted} of the store's {total} connections are encrypted");
    assert!(own_connection_encrypted(&with_params(base, params)).await, "{params}: pg_stat_ssl says the connection is not encrypted");

    records.close().await;
    ganglion_records::drop_postgres_schema(base, &schema).await.expect("drop the schema");
}

#[tokio::test]
async fn sslmode_require_encrypts_and_round_trips() {
    let Some(base) = common::postgres_url() else { return };
    // The check can tell: without TLS the same query says "not encrypted".
    assert!(!own_connection_encrypted(&with_params(&base, "sslmode=disable")).await, "sslmode=disable came out encrypted");
    round_trip_encrypted(&base, "sslmode=require").await;
}

#[tokio::test]
async fn sslmode_verify_full_checks_the_server_certificate() {
    let Some(base) = common::postgres_url() else { return };
    let Some(ca) = server_ca().filter(|_| is_loopback(&base)) else {
        if std::env::var("GANGLION_REQUIRE_ALL").as_deref() == Ok("1") && is_loopback(&base) {
            panic!("no /etc/postgresql/*/main/ganglion-ca.crt: run scripts/install-postgres (or set GANGLION_TEST_POSTGRES_SSLROOTCERT)");
        }
        eprintln!("skipped: the server's CA certificate is not on this machine (set GANGLION_TEST_POSTGRES_SSLROOTCERT)");
        return;
    };
    round_trip_encrypted(&base, &format!("sslmode=verify-full&sslrootcert={}", ca.display())).await;

    // A root that did not sign the server's certificate: refused, as a TLS error.
    let dir = tempfile::tempdir().expect("tempdir");
    let stranger = dir.path().join("stranger-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("a certificate");
    std::fs::write(&stranger, other.cert.pem()).expect("write");
    let url = with_params(&base, &format!("sslmode=verify-full&sslrootcert={}", stranger.display()));
    let err = tokio::time::timeout(Duration::from_secs(30), Records::open(&url)).await.expect("fails in time").expect_err("an untrusted server certificate was accepted");
    assert!(matches!(err, RecordsError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("sslrootcert") && !text.contains("ganglion:ganglion@"), "{text}");
}
