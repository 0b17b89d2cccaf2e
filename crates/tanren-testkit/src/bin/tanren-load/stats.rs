//! Latency samples per route and the table they print as.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default, Clone)]
pub struct Samples {
    /// Microseconds of each answered request (errors included: their time counts too).
    pub micros: Vec<u64>,
    pub errors: u64,
    /// The first few errors, to say what went wrong.
    pub examples: Vec<String>,
}

impl Samples {
    pub fn record(&mut self, took: Duration, error: Option<String>) {
        self.micros.push(took.as_micros() as u64);
        if let Some(e) = error {
            self.errors += 1;
            if self.examples.len() < 3 {
                self.examples.push(e);
            }
        }
    }

    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        for e in other.examples {
            if self.examples.len() < 3 {
                self.examples.push(e);
            }
        }
    }
}

/// The q-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1000.0)
}

/// Per route: requests, errors, p50 and p99 in ms; returns the errors in all.
pub fn print_table(title: &str, routes: &BTreeMap<String, Samples>, seconds: f64) -> u64 {
    println!("\n{title}");
    println!(
        "{:<44} {:>9} {:>8} {:>7} {:>9} {:>9}",
        "route", "requests", "req/s", "errors", "p50 ms", "p99 ms"
    );
    let mut errors = 0;
    let mut all = Vec::new();
    for (route, s) in routes {
        let mut v = s.micros.clone();
        v.sort_unstable();
        println!(
            "{:<44} {:>9} {:>8.1} {:>7} {:>9} {:>9}",
            route,
            v.len(),
            v.len() as f64 / seconds,
            s.errors,
            ms(quantile(&v, 0.5)),
            ms(quantile(&v, 0.99))
        );
        errors += s.errors;
        all.extend(v);
    }
    all.sort_unstable();
    println!(
        "{:<44} {:>9} {:>8.1} {:>7} {:>9} {:>9}",
        "all",
        all.len(),
        all.len() as f64 / seconds,
        errors,
        ms(quantile(&all, 0.5)),
        ms(quantile(&all, 0.99))
    );
    for (route, s) in routes {
        for e in &s.examples {
            println!("  error on {route}: {e}");
        }
    }
    errors
}
