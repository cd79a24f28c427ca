//! [`RecordsError`]: what can go wrong opening, migrating, writing or reading the store.
//! Every message names the problem and what to do about it; URLs are shown with their
//! password removed.

/// Result alias for [`RecordsError`].
pub type RecordsResult<T> = Result<T, RecordsError>;

/// Errors of the records store.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The database URL is not one this store understands.
    #[error(
        "unsupported database URL `{url}`: {reason}; use `sqlite:/path/to/records.db`, `sqlite::memory:` or `postgres://user:password@host:5432/database`"
    )]
    BadUrl {
        /// The URL as given (password removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SQLite file or its directory could not be created or opened.
    #[error("cannot open the SQLite database at {path}: {reason}; check that the directory exists and is writable")]
    File {
        /// Path of the database file.
        path: String,
        /// Underlying error.
        reason: String,
    },
    /// The PostgreSQL server could not be reached.
    #[error(
        "cannot reach the database server at {url}: {reason}; is PostgreSQL running and listening there? (`scripts/install-postgres` starts one on loopback)"
    )]
    Unreachable {
        /// The URL (password removed).
        url: String,
        /// Underlying error.
        reason: String,
    },
    /// The TLS connection to the server failed (certificate not trusted, wrong host name,
    /// the server does not offer TLS, …).
    #[error(
        "TLS to the database server at {url} failed: {reason}; check the URL's sslmode (disable, prefer, require, verify-ca, verify-full) and, for verify-ca/verify-full, sslrootcert=/path/to/the/server's/ca.pem"
    )]
    Tls {
        /// The URL (password removed).
        url: String,
        /// Underlying error.
        reason: String,
    },
    /// The server refused the credentials or the database does not exist.
    #[error("the database server at {url} refused the connection: {reason}; check the user, password and database name in the URL")]
    Refused {
        /// The URL (password removed).
        url: String,
        /// The server's message.
        reason: String,
    },
    /// The database was migrated by a newer Ganglion than this one.
    #[error(
        "the records database is at schema version {found}, newer than this build supports ({supported}); upgrade ganglion, or point --database.url at another database"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A migration failed; the transaction was rolled back and the database is unchanged.
    #[error("migration {version} ({name}) failed: {reason}; the database was left at the previous version")]
    Migration {
        /// Migration version.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// Underlying error.
        reason: String,
    },
    /// A value cannot be stored (out of the column's range, or not a finite number).
    #[error("cannot store {field} = {value}: {reason}")]
    OutOfRange {
        /// Record field.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// A query argument is invalid (an empty id, a limit of zero, …).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Argument name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A stored row does not decode into a record (edited by hand, or written by a broken client).
    #[error("stored {table} row is invalid ({column}: {reason}); the database may have been edited by hand")]
    Corrupt {
        /// Table read.
        table: &'static str,
        /// Column that failed.
        column: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A statement failed on the server.
    #[error("database error while {context}: {reason}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// The driver's message.
        reason: String,
    },
}

impl RecordsError {
    /// Wraps a driver error that happened while doing `context`.
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> RecordsError {
        move |err| RecordsError::Database { context, reason: err.to_string() }
    }
}

/// Removes the password from a `scheme://user:password@host/…` URL for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else { return url.to_string() };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}://{}:***@{}", &url[..scheme_end], &userinfo[..colon], &rest[at + 1..]),
        None => url.to_string(),
    }
}
