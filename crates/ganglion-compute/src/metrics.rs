//! A small Prometheus text-format registry (counters and gauges with labels) for the
//! miner's and validator's `GET /metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: &'static str,
    samples: BTreeMap<String, f64>,
}

/// Metric families by name.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn label_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl Metrics {
    fn update(&self, name: &'static str, help: &'static str, kind: Kind, labels: &[(&str, &str)], f: impl FnOnce(&mut f64)) {
        let mut families = match self.families.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let family = families.entry(name).or_insert_with(|| Family { kind, help, samples: BTreeMap::new() });
        f(family.samples.entry(label_text(labels)).or_insert(0.0));
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: f64) {
        self.update(name, help, Kind::Counter, labels, |v| *v += by);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.update(name, help, Kind::Gauge, labels, |v| *v = value);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let families = match self.families.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} {kind}\n", family.help));
            for (labels, value) in &family.samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc("compute_challenges_total", "Challenges answered.", &[("outcome", "solved")], 1.0);
        m.inc("compute_challenges_total", "Challenges answered.", &[("outcome", "solved")], 2.0);
        m.set("compute_allocations_active", "Active allocations.", &[], 1.0);
        m.set("x", "Escapes.", &[("v", "a\"b")], 0.5);
        let text = m.render();
        assert!(text.contains("# TYPE compute_challenges_total counter\ncompute_challenges_total{outcome=\"solved\"} 3\n"));
        assert!(text.contains("compute_allocations_active 1\n"));
        assert!(text.contains("x{v=\"a\\\"b\"} 0.5"));
    }
}
