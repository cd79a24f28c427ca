//! Wall-clock time as every crate records it: milliseconds since the Unix epoch. The one
//! definition in the workspace (logs, records, status files and Epistula all agree on it).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// [`now_ms`] as the signed integer SQL stores use.
pub fn now_ms_i64() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}
