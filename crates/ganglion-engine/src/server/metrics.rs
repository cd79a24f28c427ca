//! Counters for `GET /metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Server-wide counters; the worker and the handlers update them.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by (endpoint, HTTP status).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Prompt tokens processed.
    pub prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generation_tokens: AtomicU64,
    /// Generations dropped because the client went away.
    pub cancelled: AtomicU64,
    /// Generations in the worker queue.
    pub running: AtomicU64,
    /// Time spent processing prompts, microseconds.
    pub prompt_micros: AtomicU64,
    /// Time spent generating tokens, microseconds.
    pub generation_micros: AtomicU64,
}

impl Metrics {
    /// Counts one finished request.
    pub fn record_request(&self, endpoint: &str, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((endpoint.to_string(), status)).or_insert(0) += 1;
        }
    }

    /// Renders the Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP ganglion_engine_requests_total HTTP requests by endpoint and status.");
        let _ = writeln!(out, "# TYPE ganglion_engine_requests_total counter");
        if let Ok(map) = self.requests.lock() {
            for ((endpoint, status), n) in map.iter() {
                let _ = writeln!(out, "ganglion_engine_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
            }
        }
        let counters = [
            ("ganglion_engine_prompt_tokens_total", "Prompt tokens processed.", &self.prompt_tokens, 1.0),
            ("ganglion_engine_generation_tokens_total", "Tokens generated.", &self.generation_tokens, 1.0),
            ("ganglion_engine_cancelled_total", "Generations stopped because the client disconnected.", &self.cancelled, 1.0),
            ("ganglion_engine_prompt_seconds_total", "Time spent processing prompts.", &self.prompt_micros, 1e-6),
            ("ganglion_engine_generation_seconds_total", "Time spent generating tokens.", &self.generation_micros, 1e-6),
        ];
        for (name, help, value, scale) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let v = value.load(Ordering::Relaxed) as f64 * scale;
            let _ = writeln!(out, "{name} {v}");
        }
        let _ = writeln!(out, "# HELP ganglion_engine_requests_running Generations queued or running.");
        let _ = writeln!(out, "# TYPE ganglion_engine_requests_running gauge");
        let _ = writeln!(out, "ganglion_engine_requests_running {}", self.running.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.record_request("chat", 200);
        m.record_request("chat", 200);
        m.generation_tokens.store(7, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("ganglion_engine_requests_total{endpoint=\"chat\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("ganglion_engine_generation_tokens_total 7"), "{text}");
    }
}
