//! Which models the validator asks for (`--models.mode`):
//! - `default`: the models it can verify (its references);
//! - `config`: one name per line of a file (`models.txt`; `#` starts a comment);
//! - `endpoint`: a JSON list fetched from a URL (a list of names, or an OpenAI
//!   `{"data": [{"id": …}]}` models list).
//!
//! Models without a reference are queried but not scored, as v4 did, so miners cannot tell
//! which requests are checked.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::error::{InferenceError, Result};

/// Where the model list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The reference models.
    Default,
    /// A file of names.
    Config(PathBuf),
    /// A URL answering a JSON list.
    Endpoint(String),
}

fn clean(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim().to_string();
        if !name.is_empty() && name.len() <= 256 && !out.contains(&name) {
            out.push(name);
        }
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// Parses a models file.
pub fn parse_models_file(text: &str) -> Vec<String> {
    clean(text.lines().map(|l| l.split('#').next().unwrap_or("").to_string()))
}

/// Parses an endpoint's answer.
pub fn parse_models_json(value: &Value) -> Vec<String> {
    let items = value.get("data").and_then(Value::as_array).or_else(|| value.as_array());
    let names = items.into_iter().flatten().filter_map(|item| match item {
        Value::String(s) => Some(s.clone()),
        other => other.get("id").or_else(|| other.get("name")).and_then(Value::as_str).map(str::to_string),
    });
    clean(names)
}

/// Loads the list; `verifiable` are the reference models (the `default` list).
pub async fn load(source: &ModelSource, verifiable: &[String], tls: &ganglion_tls::ClientTls) -> Result<Vec<String>> {
    let names = match source {
        ModelSource::Default => clean(verifiable.iter().cloned()),
        ModelSource::Config(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| InferenceError::io("reading the models file", path, e))?;
            parse_models_file(&text)
        }
        ModelSource::Endpoint(url) => {
            let http = tls.http_builder().connect_timeout(Duration::from_secs(5)).build().map_err(|e| InferenceError::Http(e.to_string()))?;
            let fail = |why: String| InferenceError::Config(format!("--models.endpoint {url}: {why}"));
            let response = http.get(url).timeout(Duration::from_secs(15)).send().await.map_err(|e| fail(ganglion_tls::describe_http_error(&e)))?;
            if !response.status().is_success() {
                return Err(fail(format!("answered {}", response.status())));
            }
            let bytes = crate::reference::read_limited(response, 1 << 20).await.map_err(fail)?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not JSON: {e}")))?;
            parse_models_json(&value)
        }
    };
    if names.is_empty() {
        return Err(InferenceError::Config(format!("the model list from {source:?} is empty")));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_parse_and_dedupe() {
        assert_eq!(parse_models_file("a\n# comment\n b # trailing\n\na\n"), vec!["a", "b"]);
        assert_eq!(parse_models_json(&json!(["x", "y", "x"])), vec!["x", "y"]);
        assert_eq!(parse_models_json(&json!({"data": [{"id": "m1"}, {"name": "m2"}, 5]})), vec!["m1", "m2"]);
        assert!(parse_models_json(&json!({"nothing": 1})).is_empty());
    }
}
