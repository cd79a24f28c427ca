//! [`Records`]: opening the store (URL parsing, pool set-up, SQLite pragmas, migrations) and
//! the conversions between record fields and the column types the `Any` driver supports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::{RecordsError, RecordsResult, redact_url};

/// Which server a [`Records`] talks to. SQL is shared; this only selects the few statements
/// whose syntax differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file in WAL mode, or in memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The records store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Records {
    pub(crate) pool: AnyPool,
    backend: Backend,
    // Invariant: never contains a password.
    display_url: String,
}

/// Where and how to connect, as parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgres(String),
}

fn parse_url(url: &str) -> RecordsResult<Target> {
    let trimmed = url.trim();
    let bad = |reason: &str| RecordsError::BadUrl { url: redact_url(trimmed), reason: reason.to_string() };
    if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
        if path == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
            return Ok(Target::SqliteMemory);
        }
        if path.is_empty() {
            return Err(bad("the SQLite URL names no file"));
        }
        if !params.is_empty() && params.split('&').any(|p| !p.starts_with("mode=")) {
            return Err(bad("only the `mode` parameter is supported in SQLite URLs"));
        }
        return Ok(Target::SqliteFile(expand_home(Path::new(path))));
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(Target::Postgres(trimmed.to_string()));
    }
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    Err(bad("the scheme must be `sqlite:` or `postgres://`"))
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// A SQLite URL for `path` as sqlx parses it: `%`, `?` and `#` percent-encoded.
fn sqlite_url(path: &Path) -> String {
    let text = path.to_string_lossy().replace('%', "%25").replace('?', "%3F").replace('#', "%23");
    format!("sqlite://{text}?mode=rwc")
}

/// Milliseconds since the Unix epoch, now (the workspace's one clock, as SQL's signed integer).
pub use ganglion_core::clock::now_ms_i64 as now_ms;

impl Records {
    /// Opens the store: `sqlite:/path/file.db` (created if missing, with its directory),
    /// `sqlite::memory:` (one connection; gone when the last clone drops), or
    /// `postgres://user:password@host:port/db`. Applies pending migrations.
    pub async fn open(url: &str) -> RecordsResult<Records> {
        sqlx::any::install_default_drivers();
        let target = parse_url(url)?;
        let (connect_url, backend, options) = match &target {
            Target::SqliteFile(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|err| RecordsError::File {
                        path: path.display().to_string(),
                        reason: format!("creating {}: {err}", dir.display()),
                    })?;
                }
                (sqlite_url(path), Backend::Sqlite, AnyPoolOptions::new().max_connections(4))
            }
            // Every connection to `:memory:` is its own database, so the pool holds exactly one
            // connection and never lets it go.
            Target::SqliteMemory => (
                "sqlite::memory:".to_string(),
                Backend::Sqlite,
                AnyPoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None),
            ),
            Target::Postgres(url) => (url.clone(), Backend::Postgres, AnyPoolOptions::new().max_connections(8)),
        };
        let display_url = match &target {
            Target::SqliteFile(path) => format!("sqlite:{}", path.display()),
            Target::SqliteMemory => "sqlite::memory:".to_string(),
            Target::Postgres(url) => redact_url(url),
        };
        let memory = target == Target::SqliteMemory;
        let options = options.acquire_timeout(Duration::from_secs(15)).after_connect(move |conn, _meta| {
            Box::pin(async move {
                if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                    // WAL: readers never block the writer; NORMAL sync in WAL mode keeps every
                    // committed transaction across a crash or kill -9 of the process (only a
                    // power loss can roll back the last commits, never corrupt the file).
                    if !memory {
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    }
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 15000").execute(&mut *conn).await?;
                }
                Ok(())
            })
        });
        if let Target::Postgres(url) = &target {
            // One direct attempt first: the pool would retry until its acquire timeout, but a
            // refused connection or a bad password should be reported at once.
            let attempt = tokio::time::timeout(Duration::from_secs(10), <sqlx::AnyConnection as sqlx::Connection>::connect(url));
            match attempt.await {
                Ok(Ok(conn)) => {
                    let _ = sqlx::Connection::close(conn).await;
                }
                Ok(Err(err)) => return Err(connect_error(&target, &display_url, err)),
                Err(_) => {
                    return Err(RecordsError::Unreachable { url: display_url, reason: "no answer within 10 s".into() });
                }
            }
        }
        let pool = options.connect(&connect_url).await.map_err(|err| connect_error(&target, &display_url, err))?;
        let mut conn = pool.acquire().await.map_err(|err| connect_error(&target, &display_url, err))?;
        let found = crate::migrations::migrate(&mut conn, backend).await?;
        drop(conn);
        tracing::debug!(url = %display_url, schema_found = found, "records store open");
        Ok(Records { pool, backend, display_url })
    }

    /// The default SQLite URL under a data dir: `sqlite:<data_dir>/records.db`.
    pub fn default_url(data_dir: &Path) -> String {
        format!("sqlite:{}", data_dir.join("records.db").display())
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL it was opened with, password removed.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// The schema version of the database (after migrations: [`crate::SCHEMA_VERSION`]).
    pub async fn schema_version(&self) -> RecordsResult<i64> {
        let row = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS v FROM ganglion_records_schema")
            .fetch_one(&self.pool)
            .await
            .map_err(RecordsError::db("reading the schema version"))?;
        row.try_get("v").map_err(RecordsError::db("reading the schema version"))
    }

    /// Closes the pool, waiting for connections to finish (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates schema `name` (lowercase letters, digits, `_`) on the PostgreSQL server at
/// `base_url` and returns a URL whose connections use it: a scratch store for tests and
/// benchmarks that leaves the rest of the database alone. Drop it with [`drop_postgres_schema`].
pub async fn create_postgres_schema(base_url: &str, name: &str) -> RecordsResult<String> {
    run_on_server(base_url, &format!("CREATE SCHEMA IF NOT EXISTS {}", schema_name(name)?)).await?;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!("{base_url}{sep}options=-c%20search_path%3D{name}"))
}

/// Drops schema `name` and everything in it.
pub async fn drop_postgres_schema(base_url: &str, name: &str) -> RecordsResult<()> {
    run_on_server(base_url, &format!("DROP SCHEMA IF EXISTS {} CASCADE", schema_name(name)?)).await
}

fn schema_name(name: &str) -> RecordsResult<&str> {
    let ok = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(RecordsError::InvalidInput { field: "schema", reason: format!("`{name}` must be 1 to 63 of a-z, 0-9 and _") })
    }
}

async fn run_on_server(base_url: &str, statement: &str) -> RecordsResult<()> {
    sqlx::any::install_default_drivers();
    let target = parse_url(base_url)?;
    if !matches!(target, Target::Postgres(_)) {
        return Err(RecordsError::BadUrl { url: redact_url(base_url), reason: "schemas need a postgres:// URL".into() });
    }
    let display = redact_url(base_url);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(base_url).await.map_err(|e| connect_error(&target, &display, e))?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await
        .map_err(RecordsError::db("managing a scratch schema"))?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

fn connect_error(target: &Target, display_url: &str, err: sqlx::Error) -> RecordsError {
    match (target, err) {
        (Target::SqliteFile(path), err) => RecordsError::File { path: path.display().to_string(), reason: err.to_string() },
        (Target::SqliteMemory, err) => RecordsError::Database { context: "opening an in-memory SQLite database", reason: err.to_string() },
        (Target::Postgres(_), sqlx::Error::Database(db)) => {
            RecordsError::Refused { url: display_url.to_string(), reason: db.message().to_string() }
        }
        (Target::Postgres(_), sqlx::Error::Configuration(reason)) => {
            RecordsError::BadUrl { url: display_url.to_string(), reason: reason.to_string() }
        }
        (Target::Postgres(_), sqlx::Error::Tls(reason)) => RecordsError::Tls { url: display_url.to_string(), reason: error_chain(reason.as_ref()) },
        // A certificate refused during the handshake comes back as an I/O error.
        (Target::Postgres(_), sqlx::Error::Io(io)) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            RecordsError::Tls { url: display_url.to_string(), reason: io.to_string() }
        }
        (Target::Postgres(_), err) => RecordsError::Unreachable { url: display_url.to_string(), reason: err.to_string() },
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

// Conversions between record fields and the column types (BIGINT, DOUBLE PRECISION, TEXT).

pub(crate) fn u64_to_i64(field: &'static str, value: u64) -> RecordsResult<i64> {
    i64::try_from(value).map_err(|_| RecordsError::OutOfRange {
        field,
        value: value.to_string(),
        reason: "larger than the store's 64-bit signed integer range (9223372036854775807)",
    })
}

pub(crate) fn finite(field: &'static str, value: f64) -> RecordsResult<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(RecordsError::OutOfRange { field, value: value.to_string(), reason: "not a finite number" })
    }
}

pub(crate) fn finite_opt(field: &'static str, value: Option<f64>) -> RecordsResult<Option<f64>> {
    value.map(|v| finite(field, v)).transpose()
}

pub(crate) fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

/// Typed column reads that turn a bad stored value into [`RecordsError::Corrupt`].
pub(crate) struct Cols<'r> {
    pub(crate) row: &'r AnyRow,
    pub(crate) table: &'static str,
}

impl Cols<'_> {
    fn corrupt(&self, column: &'static str, reason: impl ToString) -> RecordsError {
        RecordsError::Corrupt { table: self.table, column, reason: reason.to_string() }
    }

    pub(crate) fn i64(&self, column: &'static str) -> RecordsResult<i64> {
        self.row.try_get::<i64, _>(column).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn opt_i64(&self, column: &'static str) -> RecordsResult<Option<i64>> {
        self.row.try_get::<Option<i64>, _>(column).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn u64(&self, column: &'static str) -> RecordsResult<u64> {
        let v = self.i64(column)?;
        u64::try_from(v).map_err(|_| self.corrupt(column, format!("{v} is negative")))
    }

    pub(crate) fn u32(&self, column: &'static str) -> RecordsResult<u32> {
        let v = self.i64(column)?;
        u32::try_from(v).map_err(|_| self.corrupt(column, format!("{v} is out of range")))
    }

    pub(crate) fn u16(&self, column: &'static str) -> RecordsResult<u16> {
        let v = self.i64(column)?;
        u16::try_from(v).map_err(|_| self.corrupt(column, format!("{v} is out of range")))
    }

    pub(crate) fn u8(&self, column: &'static str) -> RecordsResult<u8> {
        let v = self.i64(column)?;
        u8::try_from(v).map_err(|_| self.corrupt(column, format!("{v} is out of range")))
    }

    pub(crate) fn bool(&self, column: &'static str) -> RecordsResult<bool> {
        match self.i64(column)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.corrupt(column, format!("{v} is not 0 or 1"))),
        }
    }

    pub(crate) fn f64(&self, column: &'static str) -> RecordsResult<f64> {
        self.row.try_get::<f64, _>(column).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn opt_f64(&self, column: &'static str) -> RecordsResult<Option<f64>> {
        self.row.try_get::<Option<f64>, _>(column).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn text(&self, column: &'static str) -> RecordsResult<String> {
        self.row.try_get::<String, _>(column).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn opt_text(&self, column: &'static str) -> RecordsResult<Option<String>> {
        self.row.try_get::<Option<String>, _>(column).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn json(&self, column: &'static str) -> RecordsResult<serde_json::Value> {
        let text = self.text(column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(column, e))
    }

    pub(crate) fn opt_u64_text(&self, column: &'static str) -> RecordsResult<Option<u64>> {
        match self.opt_text(column)? {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|e| self.corrupt(column, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_targets() {
        assert_eq!(parse_url("sqlite::memory:").ok(), Some(Target::SqliteMemory));
        assert_eq!(parse_url("sqlite:/tmp/x.db").ok(), Some(Target::SqliteFile(PathBuf::from("/tmp/x.db"))));
        assert_eq!(parse_url("sqlite:///tmp/x.db?mode=rwc").ok(), Some(Target::SqliteFile(PathBuf::from("/tmp/x.db"))));
        assert_eq!(parse_url("sqlite:rel.db").ok(), Some(Target::SqliteFile(PathBuf::from("rel.db"))));
        assert!(matches!(parse_url("postgresql://u:p@h/d"), Ok(Target::Postgres(_))));
        for bad in ["", "mysql://x", "sqlite:", "sqlite:/x.db?journal=wal", "/tmp/x.db"] {
            assert!(matches!(parse_url(bad), Err(RecordsError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn sqlite_urls_escape_special_characters() {
        assert_eq!(sqlite_url(Path::new("/a b/c?d#e%f.db")), "sqlite:///a b/c%3Fd%23e%25f.db?mode=rwc");
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        let err = parse_url("mysql://user:hunter2@host/db").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("user:***@host/db"), "{err}");
        assert!(!err.contains("hunter2"));
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("postgres://u:p@h:1/d?x=y"), "postgres://u:***@h:1/d?x=y");
    }

    #[test]
    fn u64_range_is_checked() {
        assert_eq!(u64_to_i64("block", 7).ok(), Some(7));
        assert!(matches!(u64_to_i64("block", u64::MAX), Err(RecordsError::OutOfRange { field: "block", .. })));
        assert!(finite("tps", f64::NAN).is_err());
        assert!(finite_opt("ttft_ms", None).is_ok());
    }
}
