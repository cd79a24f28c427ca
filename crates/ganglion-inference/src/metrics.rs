//! A minimal Prometheus registry: labelled counters and gauges rendered in the text
//! exposition format. Enough for the node's own `/metrics`; no dependency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counters and gauges by `(name, labels)`.
#[derive(Debug, Default)]
pub struct Metrics {
    help: Mutex<BTreeMap<&'static str, (&'static str, &'static str)>>,
    values: Mutex<BTreeMap<(&'static str, String), f64>>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    /// Declares a metric's type (`counter` | `gauge`) and help text.
    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        if let Ok(mut h) = self.help.lock() {
            h.insert(name, (kind, help));
        }
    }

    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], by: f64) {
        if let Ok(mut v) = self.values.lock() {
            *v.entry((name, labels(pairs))).or_insert(0.0) += by;
        }
    }

    /// Increments a counter.
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], value: f64) {
        if let Ok(mut v) = self.values.lock() {
            v.insert((name, labels(pairs)), value);
        }
    }

    /// The current value (tests, status).
    pub fn get(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        self.values.lock().ok().and_then(|v| v.get(&(name, labels(pairs))).copied()).unwrap_or(0.0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let help = self.help.lock().map(|h| h.clone()).unwrap_or_default();
        let values = self.values.lock().map(|v| v.clone()).unwrap_or_default();
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), value) in &values {
            if *name != last {
                if let Some((kind, text)) = help.get(name) {
                    let _ = writeln!(out, "# HELP {name} {text}");
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                }
                last = name;
            }
            let _ = writeln!(out, "{name}{labels} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::default();
        m.describe("x_total", "counter", "Things.");
        m.inc("x_total", &[("cause", "TIMEOUT")]);
        m.inc("x_total", &[("cause", "TIMEOUT")]);
        m.set("y", &[], 3.5);
        let text = m.render();
        assert!(text.contains("# TYPE x_total counter\nx_total{cause=\"TIMEOUT\"} 2\n"), "{text}");
        assert!(text.contains("y 3.5\n"));
        assert_eq!(m.get("x_total", &[("cause", "TIMEOUT")]), 2.0);
        m.inc("x_total", &[("cause", "a\"b")]);
        assert!(m.render().contains("cause=\"a\\\"b\""));
    }
}
