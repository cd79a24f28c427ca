//! Request parameters: parsing and bounds. Everything a client sends goes through here, so
//! every handler sees validated values and every mistake becomes a 400 with a JSON message.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use ganglion_records::Bucket;

use crate::error::ApiError;

/// Query parameters as a map, rejecting malformed query strings with our JSON error.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params, ApiError> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        Ok(Params(map))
    }
}

impl Params {
    /// Rejects parameters not in `allowed` (a typo should not be silently ignored).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&str> = self.0.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        Err(ApiError::bad_request(format!(
            "unknown query parameter(s) {}; this endpoint accepts: {}",
            unknown.join(", "),
            if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
        )))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `window` (default `default`).
    pub fn window(&self, default: Window) -> Result<Window, ApiError> {
        self.get("window").map(Window::parse).unwrap_or(Ok(default))
    }

    /// `limit` in 1..=`max` (default `default`).
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        self.limit_named("limit", default, max)
    }

    /// An integer parameter `key` in 1..=`max` (default `default`).
    pub fn limit_named(&self, key: &'static str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!("{key} must be an integer from 1 to {max}, got `{text}`"))),
            },
        }
    }

    /// An optional hotkey parameter.
    pub fn hotkey(&self, key: &'static str) -> Result<Option<String>, ApiError> {
        self.get(key).map(|v| hotkey(v).map(str::to_string)).transpose()
    }

    /// An optional free-text filter of at most 200 characters (a model name).
    pub fn text(&self, key: &'static str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            Some(v) if v.len() > 200 => Err(ApiError::bad_request(format!("{key} is longer than 200 characters"))),
            other => Ok(other.map(str::to_string)),
        }
    }

    /// An optional `true`/`false` parameter.
    pub fn bool(&self, key: &'static str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!("{key} must be true or false, got `{other}`"))),
        }
    }

    /// An optional millisecond timestamp.
    pub fn time_ms(&self, key: &'static str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("{key} must be a non-negative time in ms since 1970, got `{text}`"))),
        }
    }

    /// An optional netuid.
    pub fn netuid(&self, key: &'static str) -> Result<Option<u16>, ApiError> {
        self.get(key).map(netuid).transpose()
    }
}

/// A netuid path segment.
pub fn netuid(text: &str) -> Result<u16, ApiError> {
    text.parse::<u16>().map_err(|_| ApiError::bad_request(format!("netuid must be an integer from 0 to 65535, got `{text}`")))
}

/// A uid path segment (0–65535).
pub fn uid(text: &str) -> Result<u16, ApiError> {
    text.parse::<u16>().map_err(|_| ApiError::bad_request(format!("uid must be an integer from 0 to 65535, got `{}`", truncate(text, 40))))
}

/// A hotkey path segment: an SS58 address (base58 characters, at most 64).
pub fn hotkey(text: &str) -> Result<&str, ApiError> {
    let ok = !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric());
    if ok { Ok(text) } else { Err(ApiError::bad_request(format!("`{}` is not a hotkey (an SS58 address)", truncate(text, 80)))) }
}

/// A record id path segment: 1 to 200 characters of `[A-Za-z0-9_.:-]`.
pub fn record_id(text: &str) -> Result<&str, ApiError> {
    let ok = !text.is_empty()
        && text.len() <= 200
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok { Ok(text) } else { Err(ApiError::bad_request(format!("`{}` is not a record id", truncate(text, 80)))) }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A time window ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Name as clients send it (`1h`).
    pub name: &'static str,
    /// Length.
    pub ms: i64,
}

/// The windows clients may ask for.
pub const WINDOWS: [Window; 6] = [
    Window { name: "15m", ms: 15 * 60_000 },
    Window { name: "1h", ms: 3_600_000 },
    Window { name: "6h", ms: 6 * 3_600_000 },
    Window { name: "24h", ms: 24 * 3_600_000 },
    Window { name: "7d", ms: 7 * 24 * 3_600_000 },
    Window { name: "30d", ms: 30 * 24 * 3_600_000 },
];

impl Window {
    /// The default for pages: one hour.
    pub const HOUR: Window = WINDOWS[1];
    /// A day.
    pub const DAY: Window = WINDOWS[3];

    /// Parses a window name.
    pub fn parse(text: &str) -> Result<Window, ApiError> {
        WINDOWS.iter().copied().find(|w| w.name == text).ok_or_else(|| {
            let names: Vec<&str> = WINDOWS.iter().map(|w| w.name).collect();
            ApiError::bad_request(format!("window must be one of {}, got `{}`", names.join(", "), truncate(text, 40)))
        })
    }

    /// Start of the window relative to `now_ms`.
    pub fn since(self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.ms)
    }

    /// Rollup resolution for this window.
    pub fn bucket(self) -> Bucket {
        Bucket::for_window(self.ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn windows_parse_and_pick_buckets() {
        assert_eq!(Window::parse("1h").ok(), Some(Window::HOUR));
        assert_eq!(Window::parse("7d").map(|w| w.bucket()).ok(), Some(Bucket::Hour));
        assert_eq!(Window::parse("6h").map(|w| w.bucket()).ok(), Some(Bucket::Minute));
        let err = Window::parse("2y").err().map(|e| e.message).unwrap_or_default();
        assert!(err.contains("15m, 1h"), "{err}");
        assert_eq!(Window::HOUR.since(10_000_000), 10_000_000 - 3_600_000);
    }

    #[test]
    fn limits_and_filters_are_bounded() {
        assert_eq!(params(&[]).limit(50, 500).ok(), Some(50));
        assert_eq!(params(&[("limit", "500")]).limit(50, 500).ok(), Some(500));
        for bad in ["0", "501", "-1", "x", "1e3"] {
            assert!(params(&[("limit", bad)]).limit(50, 500).is_err(), "{bad}");
        }
        assert_eq!(params(&[("verified", "false")]).bool("verified").ok(), Some(Some(false)));
        assert!(params(&[("verified", "maybe")]).bool("verified").is_err());
        assert!(params(&[("before", "-5")]).time_ms("before").is_err());
        assert!(params(&[("model", &"m".repeat(201))]).text("model").is_err());
        assert!(params(&[("x", "1")]).only(&["window"]).is_err());
        assert!(params(&[("window", "1h")]).only(&["window"]).is_ok());
    }

    #[test]
    fn path_segments_are_checked() {
        assert!(hotkey("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY").is_ok());
        for bad in ["", "has space", "../etc", &"5".repeat(65)] {
            assert!(hotkey(bad).is_err(), "{bad}");
        }
        assert!(record_id("syn-1-000000000001").is_ok());
        assert!(record_id("a/b").is_err());
        assert_eq!(netuid("7").ok(), Some(7));
        assert!(netuid("70000").is_err());
    }
}
