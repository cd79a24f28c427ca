//! Where the hub is, who we are, and where files go: the same environment variables as
//! Python's `huggingface_hub`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{HfError, HfResult};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// Client settings.
#[derive(Clone)]
pub struct HubConfig {
    /// Base URL without a trailing `/` (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// Sent as `Authorization: Bearer …` to the endpoint (`HF_TOKEN`, else the token file
    /// `huggingface-cli login` writes, unless `HF_HUB_DISABLE_IMPLICIT_TOKEN`).
    pub token: Option<String>,
    /// The hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Further attempts after a broken download (each resumes with a `Range` request).
    pub retries: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("cache_dir", &self.cache_dir)
            .field("retries", &self.retries)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn truthy(name: &str) -> bool {
    env(name).is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> Option<PathBuf> {
    if let Some(home) = env("HF_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("huggingface"));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".cache").join("huggingface"))
}

/// The hub cache directory as Python computes it: `$HF_HUB_CACHE`, else `<hf_home>/hub`.
pub fn hub_cache_dir() -> HfResult<PathBuf> {
    if let Some(dir) = env("HF_HUB_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    hf_home().map(|h| h.join("hub")).ok_or(HfError::NoCacheDir)
}

fn read_token_file(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE).read_to_string(&mut text).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Checks an endpoint and drops a trailing `/`.
pub fn normalize_endpoint(endpoint: &str) -> HfResult<String> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let bad = |reason: &str| HfError::BadEndpoint { endpoint: endpoint.to_string(), reason: reason.to_string() };
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| bad("not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(bad("no host, or a query or fragment"));
    }
    Ok(trimmed.to_string())
}

impl HubConfig {
    /// Settings for `endpoint` with no token, caching in `cache_dir`.
    pub fn new(endpoint: &str, cache_dir: PathBuf) -> HfResult<HubConfig> {
        Ok(HubConfig {
            endpoint: normalize_endpoint(endpoint)?,
            token: None,
            cache_dir,
            retries: 3,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        })
    }

    /// From the environment, as `huggingface_hub` reads it: `HF_ENDPOINT`, `HF_TOKEN` (else
    /// `HF_TOKEN_PATH` or `<hf_home>/token`, unless `HF_HUB_DISABLE_IMPLICIT_TOKEN`),
    /// `HF_HUB_CACHE` / `HF_HOME`.
    pub fn from_env() -> HfResult<HubConfig> {
        let endpoint = env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let mut config = HubConfig::new(&endpoint, hub_cache_dir()?)?;
        config.token = match env("HF_TOKEN") {
            Some(token) => Some(token.trim().to_string()),
            None if truthy("HF_HUB_DISABLE_IMPLICIT_TOKEN") => None,
            None => env("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .or_else(|| hf_home().map(|h| h.join("token")))
                .and_then(|p| read_token_file(&p)),
        };
        Ok(config)
    }

    /// With `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> HubConfig {
        self.token = Some(token.into());
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_trimmed() {
        assert_eq!(normalize_endpoint("https://huggingface.co/").unwrap(), "https://huggingface.co");
        assert_eq!(normalize_endpoint("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        for bad in ["huggingface.co", "ftp://x", "https://", "https://x?y=1"] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }
}
