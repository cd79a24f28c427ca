//! Test stores: a fresh SQLite file per test, and a fresh schema per test on the PostgreSQL
//! server named by `GANGLION_TEST_POSTGRES_URL` (`scripts/install-postgres` prints one).
//! Without that variable the PostgreSQL half is skipped, unless `GANGLION_REQUIRE_ALL=1`.

#![allow(dead_code, unreachable_pub)]

use ganglion_records::Records;

/// A store plus whatever keeps it alive (temp dir, or the schema to drop).
pub struct TestStore {
    pub records: Records,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestStore {
    /// Drops the PostgreSQL schema (best effort; SQLite temp dirs clean themselves).
    pub async fn cleanup(self) {
        self.records.close().await;
        if let Some((base, schema)) = self.pg {
            let _ = ganglion_records::drop_postgres_schema(&base, &schema).await;
        }
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("records.db").display());
    let records = Records::open(&url).await.expect("open sqlite store");
    TestStore { records, url, _dir: Some(dir), pg: None }
}

/// The PostgreSQL base URL, or None (after printing why) when the test should skip.
pub fn postgres_url() -> Option<String> {
    match std::env::var("GANGLION_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty()) {
        Some(url) => Some(url),
        None if std::env::var("GANGLION_REQUIRE_ALL").as_deref() == Ok("1") => {
            panic!("GANGLION_TEST_POSTGRES_URL is not set and GANGLION_REQUIRE_ALL=1: run scripts/install-postgres and export the URL it prints")
        }
        None => {
            eprintln!("skipped: GANGLION_TEST_POSTGRES_URL is not set (scripts/install-postgres prints one)");
            None
        }
    }
}

pub async fn postgres() -> Option<TestStore> {
    let base = postgres_url()?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let url = ganglion_records::create_postgres_schema(&base, &schema).await.expect("create a test schema on the PostgreSQL server");
    let records = Records::open(&url).await.expect("open postgres store");
    Some(TestStore { records, url, _dir: None, pg: Some((base, schema)) })
}

/// A one-connection pool on `url` that bypasses the store's API: for tests that read the raw
/// tables (the reference side of rollup checks) or fake an older or newer schema.
pub fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") && !url.contains('?') { format!("{url}?mode=rw") } else { url.to_string() };
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect_lazy(&url).expect("lazy pool")
}

/// Defines `mod sqlite { #[tokio::test] fn NAME }` and `mod postgres { … }` for each async
/// test function `NAME(&TestStore)` so that every test runs against both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = $crate::common::sqlite().await;
                    super::$name(&store).await;
                    store.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = $crate::common::postgres().await else { return };
                    super::$name(&store).await;
                    store.cleanup().await;
                }
            )*
        }
    };
}
