//! The Prometheus text exposition format (0.0.4) as both services write it: the control plane's
//! `/metrics` and the worker's. Histograms and a header helper; no registry, no IO. The metric names
//! are part of the contract (dashboards and alerts are written against them).

use std::fmt::Write;

/// `Content-Type` of a scrape answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) for request latencies.
pub const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

/// Upper bounds (seconds) for trial and epoch durations: a second to a day.
pub const DURATION_BUCKETS: &[f64] = &[
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    24.0 * 3600.0,
];

/// A cumulative histogram over fixed bucket bounds (given at each call, so one value type serves
/// every bucket set).
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// `name_bucket{labels,le=…}` for every bound and `+Inf`, then `_sum` and `_count`. `labels` is
    /// `k="v",…` (escaped with [`esc`]) or empty.
    pub fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the format requires.
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_renders_every_bucket() {
        let mut h = Histogram::default();
        let mut empty = String::new();
        h.render(&mut empty, "x", "", &[1.0, 2.0]);
        assert!(empty.contains("x_bucket{le=\"1\"} 0\n"), "{empty}");
        assert!(empty.contains("x_count 0\n"), "{empty}");
        for v in [0.5, 1.5, 3.0] {
            h.observe(&[1.0, 2.0], v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "k=\"a\"", &[1.0, 2.0]);
        assert_eq!(
            out,
            "x_bucket{k=\"a\",le=\"1\"} 1\nx_bucket{k=\"a\",le=\"2\"} 2\nx_bucket{k=\"a\",le=\"+Inf\"} 3\n\
             x_sum{k=\"a\"} 5\nx_count{k=\"a\"} 3\n"
        );
        assert_eq!(h.count(), 3);
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
