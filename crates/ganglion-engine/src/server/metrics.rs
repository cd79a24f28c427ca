//! The server's metrics for `GET /metrics`, in the workspace's one registry
//! (`ganglion-metrics`): names and helps declared here, rendering shared with every node.

use ganglion_metrics::LATENCY_BUCKETS;

/// Buckets for one engine step (a prompt chunk or one decoded token for one request).
const STEP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Server-wide metrics; the worker and the handlers update them.
#[derive(Debug)]
pub struct Metrics {
    registry: ganglion_metrics::Metrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = ganglion_metrics::Metrics::new();
        registry.counter("ganglion_engine_requests_total", "HTTP requests by endpoint and status.");
        registry.counter("ganglion_engine_prompt_tokens_total", "Prompt tokens processed.");
        registry.counter("ganglion_engine_generation_tokens_total", "Tokens generated.");
        registry.counter("ganglion_engine_cancelled_total", "Generations stopped because the client disconnected.");
        registry.gauge("ganglion_engine_requests_running", "Generations queued or running.");
        registry.histogram("ganglion_engine_step_seconds", "Duration of one engine step, by phase (prompt, decode).", STEP_BUCKETS);
        registry.histogram("ganglion_engine_prompt_seconds", "Time from accepting a request to its prompt being processed (time to first token).", LATENCY_BUCKETS);
        Metrics { registry }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn record_request(&self, endpoint: &str, status: u16) {
        self.registry.inc("ganglion_engine_requests_total", &[("endpoint", endpoint), ("status", &status.to_string())]);
    }

    /// One engine step of `seconds` that produced `tokens` tokens.
    pub fn step(&self, prefilling: bool, seconds: f64, tokens: usize) {
        self.registry.observe("ganglion_engine_step_seconds", &[("phase", if prefilling { "prompt" } else { "decode" })], seconds);
        self.registry.add("ganglion_engine_generation_tokens_total", &[], tokens as f64);
    }

    /// Tokens generated in a batched step whose time was already counted by [`Metrics::step`].
    pub fn generated(&self, tokens: usize) {
        self.registry.add("ganglion_engine_generation_tokens_total", &[], tokens as f64);
    }

    /// A request's prompt is processed: `tokens` long, `seconds` after it was accepted.
    pub fn prompt_done(&self, tokens: usize, seconds: f64) {
        self.registry.add("ganglion_engine_prompt_tokens_total", &[], tokens as f64);
        self.registry.observe("ganglion_engine_prompt_seconds", &[], seconds);
    }

    /// A generation was dropped because its client went away.
    pub fn cancelled(&self) {
        self.registry.inc("ganglion_engine_cancelled_total", &[]);
    }

    /// Generations queued or running.
    pub fn running(&self, n: usize) {
        self.registry.set("ganglion_engine_requests_running", &[], n as f64);
    }

    /// Tokens generated so far (tests).
    pub fn generation_tokens(&self) -> f64 {
        self.registry.get("ganglion_engine_generation_tokens_total", &[])
    }

    /// Generations cancelled so far (tests).
    pub fn cancelled_count(&self) -> f64 {
        self.registry.get("ganglion_engine_cancelled_total", &[])
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record_request("chat", 200);
        m.record_request("chat", 200);
        m.step(false, 0.02, 7);
        m.prompt_done(12, 0.3);
        let text = m.render();
        assert!(text.contains("ganglion_engine_requests_total{endpoint=\"chat\",status=\"200\"} 2.0"), "{text}");
        assert!(text.contains("ganglion_engine_generation_tokens_total{} 7.0"), "{text}");
        assert!(text.contains("ganglion_engine_step_seconds_count{phase=\"decode\"} 1"), "{text}");
        assert!(text.contains("ganglion_engine_prompt_seconds_count{} 1"), "{text}");
        assert_eq!(m.generation_tokens(), 7.0);
    }
}
