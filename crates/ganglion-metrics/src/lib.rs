//! One Prometheus registry for every server ([`Metrics`]): labelled counters, gauges and
//! histograms over `prometheus-client`, rendered in the OpenMetrics text format that
//! Prometheus scrapes, and the `GET /metrics` route ([`routes`]). Miners, validators, the
//! engine server, the hub and `ganglion chain serve` all expose their metrics through it,
//! so names, label escaping and histograms are the same everywhere.
//!
//! Metrics are declared once with their help text ([`Metrics::counter`], [`Metrics::gauge`],
//! [`Metrics::histogram`]) and then updated by name with label pairs. Updating a name that
//! was never declared declares it on the fly (as a counter, gauge or histogram with
//! [`LATENCY_BUCKETS`]), so a forgotten declaration costs a help line, never a sample.
//! Label values are escaped by the library, identically for every node.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
type CounterFamily = Family<Labels, Counter<f64, AtomicU64>>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type HistogramFamily = Family<Labels, Histogram, Buckets>;

/// Buckets for latencies in seconds: 5 ms to 2 minutes (requests, TTFT, verification,
/// solve times).
pub const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The bucket bounds of one histogram family.
#[derive(Debug, Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Debug, Default)]
struct Families {
    counters: HashMap<String, CounterFamily>,
    gauges: HashMap<String, GaugeFamily>,
    histograms: HashMap<String, HistogramFamily>,
}

/// A node's metrics. Cheap to share (`Arc<Metrics>`); updates take a read lock and an
/// atomic operation.
pub struct Metrics {
    registry: RwLock<Registry>,
    families: RwLock<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Label values are escaped here (`\\`, `\"`, `\n`, as the exposition format requires):
/// prometheus-client writes them as given.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_string(), v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect()
}

/// OpenMetrics appends `_total` to counters itself: declare `x_total` as `x`.
fn counter_base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics { registry: RwLock::new(Registry::default()), families: RwLock::new(Families::default()) }
    }

    fn families_read(&self) -> std::sync::RwLockReadGuard<'_, Families> {
        self.families.read().unwrap_or_else(|p| p.into_inner())
    }

    fn families_write(&self) -> std::sync::RwLockWriteGuard<'_, Families> {
        self.families.write().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        // prometheus-client ends every help text with a full stop of its own.
        let help = help.strip_suffix('.').unwrap_or(help);
        self.registry.write().unwrap_or_else(|p| p.into_inner()).register(name, help, metric);
    }

    /// Declares a counter (`name` may end in `_total`; it is exposed with that suffix).
    pub fn counter(&self, name: &str, help: &str) {
        let mut families = self.families_write();
        if !families.counters.contains_key(name) {
            let family = CounterFamily::default();
            self.register(counter_base(name), help, family.clone());
            families.counters.insert(name.to_string(), family);
        }
    }

    /// Declares a gauge.
    pub fn gauge(&self, name: &str, help: &str) {
        let mut families = self.families_write();
        if !families.gauges.contains_key(name) {
            let family = GaugeFamily::default();
            self.register(name, help, family.clone());
            families.gauges.insert(name.to_string(), family);
        }
    }

    /// Declares a histogram with these bucket upper bounds (see [`LATENCY_BUCKETS`]).
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) {
        let mut families = self.families_write();
        if !families.histograms.contains_key(name) {
            let family = HistogramFamily::new_with_constructor(Buckets(buckets.into()));
            self.register(name, help, family.clone());
            families.histograms.insert(name.to_string(), family);
        }
    }

    /// Adds `by` (≥ 0) to a counter.
    pub fn add(&self, name: &str, pairs: &[(&str, &str)], by: f64) {
        if !(by.is_finite() && by >= 0.0) {
            return;
        }
        if let Some(family) = self.families_read().counters.get(name) {
            family.get_or_create(&labels(pairs)).inc_by(by);
            return;
        }
        self.counter(name, name);
        self.add(name, pairs, by);
    }

    /// Increments a counter.
    pub fn inc(&self, name: &str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, pairs: &[(&str, &str)], value: f64) {
        if let Some(family) = self.families_read().gauges.get(name) {
            family.get_or_create(&labels(pairs)).set(value);
            return;
        }
        self.gauge(name, name);
        self.set(name, pairs, value);
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &str, pairs: &[(&str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        if let Some(family) = self.families_read().histograms.get(name) {
            family.get_or_create(&labels(pairs)).observe(value);
            return;
        }
        self.histogram(name, name, LATENCY_BUCKETS);
        self.observe(name, pairs, value);
    }

    /// The current value of a counter or gauge (0 when absent): for tests and status.
    pub fn get(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        let families = self.families_read();
        let key = labels(pairs);
        if let Some(family) = families.counters.get(name) {
            return family.get_or_create(&key).get();
        }
        if let Some(family) = families.gauges.get(name) {
            return family.get_or_create(&key).get();
        }
        0.0
    }

    /// The OpenMetrics text exposition (what `GET /metrics` serves).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` over `metrics`, to merge into a server's router.
pub fn routes(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(render)).with_state(metrics)
}

async fn render(axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_histograms_render_with_escaped_labels() {
        let m = Metrics::new();
        m.counter("x_requests_total", "Requests.");
        m.inc("x_requests_total", &[("cause", "TIMEOUT")]);
        m.add("x_requests_total", &[("cause", "TIMEOUT")], 2.0);
        m.set("x_queue", &[], 3.5);
        m.histogram("x_latency_seconds", "Latency.", LATENCY_BUCKETS);
        m.observe("x_latency_seconds", &[("route", "chat")], 0.2);
        m.observe("x_latency_seconds", &[("route", "chat")], 7.0);
        m.inc("x_requests_total", &[("cause", "a\"b\\c\nd")]);
        let text = m.render();
        assert!(text.contains("# TYPE x_requests counter"), "{text}");
        assert!(text.contains("# HELP x_requests Requests.\n"), "{text}");
        assert!(text.contains("x_requests_total{cause=\"TIMEOUT\"} 3.0"), "{text}");
        assert!(text.contains("x_queue{} 3.5"), "{text}");
        assert!(text.contains("# TYPE x_latency_seconds histogram"), "{text}");
        assert!(text.contains("x_latency_seconds_count{route=\"chat\"} 2"), "{text}");
        assert!(text.contains("x_latency_seconds_bucket{le=\"0.25\",route=\"chat\"} 1") || text.contains("x_latency_seconds_bucket{route=\"chat\",le=\"0.25\"} 1"), "{text}");
        assert!(text.contains(r#"cause="a\"b\\c\nd""#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
        assert_eq!(m.get("x_requests_total", &[("cause", "TIMEOUT")]), 3.0);
        assert_eq!(m.get("x_queue", &[]), 3.5);
        // Undeclared names are declared on first use, never dropped; bad values are.
        m.inc("y_total", &[]);
        m.add("y_total", &[], f64::NAN);
        m.add("y_total", &[], -1.0);
        assert_eq!(m.get("y_total", &[]), 1.0);
    }
}
