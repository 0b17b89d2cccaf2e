//! Prometheus metrics of one worker (`GET /metrics` on `--metrics-listen`, text format 0.0.4): trials
//! run and how they ended, trial and epoch durations, dataset preparation, and device memory (read at
//! scrape time: CUDA from the driver, the CPU from `/proc`). A plain HTTP listener of its own, apart
//! from the gRPC port (which only the control plane may call); off unless asked for, and a bearer token
//! is required when it listens beyond loopback.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tanren_api::prometheus::{esc, family, Histogram, DURATION_BUCKETS};
use tch::Device;

/// How a trial ended on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Trained, evaluated, weights uploaded, result sent.
    Completed,
    /// The control plane cancelled it (prune, stop, budget) or went away.
    Stopped,
    /// Refused or failed (bad config, dataset, libtorch, upload).
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
        }
    }
}

/// The worker's counters; shared by the gRPC service (which updates them) and the metrics endpoint.
#[derive(Default)]
pub struct WorkerMetrics {
    running: AtomicI64,
    trials: Mutex<BTreeMap<Outcome, Histogram>>,
    epochs: Mutex<Histogram>,
    prepare: Mutex<Histogram>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// The last finished trial's peak device memory (CUDA only), 0 before.
    last_peak_memory: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a trial as running until dropped.
pub struct Running(Arc<WorkerMetrics>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WorkerMetrics {
    pub fn trial_started(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self.clone())
    }

    pub fn trial_ended(&self, outcome: Outcome, seconds: f64) {
        lock(&self.trials)
            .entry(outcome)
            .or_default()
            .observe(DURATION_BUCKETS, seconds);
    }

    pub fn prepared(&self, seconds: f64, cache_hit: bool) {
        lock(&self.prepare).observe(DURATION_BUCKETS, seconds);
        let c = if cache_hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn epoch(&self, seconds: f64) {
        lock(&self.epochs).observe(DURATION_BUCKETS, seconds);
    }

    pub fn peak_memory(&self, bytes: Option<u64>) {
        if let Some(b) = bytes {
            self.last_peak_memory.store(b, Ordering::Relaxed);
        }
    }

    /// The scrape answer.
    pub fn render(&self, about: &About) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "tanren_worker_info",
            "gauge",
            "This worker: id, device and libtorch (always 1).",
        );
        let _ = writeln!(
            out,
            "tanren_worker_info{{worker_id=\"{}\",device=\"{}\",device_name=\"{}\",torch=\"{}\"}} 1",
            esc(&about.worker_id),
            esc(&about.device_label),
            esc(&about.device_name),
            esc(&about.torch_version)
        );
        family(
            &mut out,
            "tanren_worker_slots",
            "gauge",
            "Trials this worker runs at once.",
        );
        let _ = writeln!(out, "tanren_worker_slots {}", about.slots);
        family(
            &mut out,
            "tanren_worker_trials_running",
            "gauge",
            "Trials running now.",
        );
        let _ = writeln!(
            out,
            "tanren_worker_trials_running {}",
            self.running.load(Ordering::Relaxed)
        );
        let trials = lock(&self.trials).clone();
        family(
            &mut out,
            "tanren_worker_trials_total",
            "counter",
            "Trials run to their end, by outcome (completed, stopped by the control plane, failed).",
        );
        for o in [Outcome::Completed, Outcome::Stopped, Outcome::Failed] {
            let n = trials.get(&o).map_or(0, Histogram::count);
            let _ = writeln!(out, "tanren_worker_trials_total{{outcome=\"{}\"}} {n}", o.label());
        }
        family(
            &mut out,
            "tanren_worker_trial_duration_seconds",
            "histogram",
            "Wall time of a trial on this worker (dataset preparation to result), by outcome.",
        );
        for (o, h) in &trials {
            let labels = format!("outcome=\"{}\"", o.label());
            h.render(
                &mut out,
                "tanren_worker_trial_duration_seconds",
                &labels,
                DURATION_BUCKETS,
            );
        }
        family(
            &mut out,
            "tanren_worker_epoch_duration_seconds",
            "histogram",
            "Seconds per training epoch.",
        );
        lock(&self.epochs).render(
            &mut out,
            "tanren_worker_epoch_duration_seconds",
            "",
            DURATION_BUCKETS,
        );
        family(
            &mut out,
            "tanren_worker_dataset_prepare_seconds",
            "histogram",
            "Dataset download, decode and upload to the device, per trial.",
        );
        lock(&self.prepare).render(
            &mut out,
            "tanren_worker_dataset_prepare_seconds",
            "",
            DURATION_BUCKETS,
        );
        family(
            &mut out,
            "tanren_worker_dataset_cache_total",
            "counter",
            "Trials whose decoded dataset was already cached (hit) or was decoded (miss).",
        );
        let _ = writeln!(
            out,
            "tanren_worker_dataset_cache_total{{result=\"hit\"}} {}",
            self.cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "tanren_worker_dataset_cache_total{{result=\"miss\"}} {}",
            self.cache_misses.load(Ordering::Relaxed)
        );
        let dev = esc(&about.device_label);
        if let Some((used, total)) = device_memory(about.device) {
            if let Some(used) = used {
                family(
                    &mut out,
                    "tanren_worker_device_memory_used_bytes",
                    "gauge",
                    "Memory in use on the training device (CUDA: driver view, all processes; CPU: the host's total minus available).",
                );
                let _ = writeln!(
                    out,
                    "tanren_worker_device_memory_used_bytes{{device=\"{dev}\"}} {used}"
                );
            }
            family(
                &mut out,
                "tanren_worker_device_memory_total_bytes",
                "gauge",
                "Memory of the training device (CUDA) or the host (CPU).",
            );
            let _ = writeln!(
                out,
                "tanren_worker_device_memory_total_bytes{{device=\"{dev}\"}} {total}"
            );
        }
        if let Some(rss) = resident_bytes() {
            family(
                &mut out,
                "tanren_worker_resident_memory_bytes",
                "gauge",
                "This process's resident host memory.",
            );
            let _ = writeln!(out, "tanren_worker_resident_memory_bytes {rss}");
        }
        family(
            &mut out,
            "tanren_worker_trial_peak_memory_bytes",
            "gauge",
            "Peak device memory of the last finished trial (CUDA; 0 on the CPU or before the first).",
        );
        let _ = writeln!(
            out,
            "tanren_worker_trial_peak_memory_bytes{{device=\"{dev}\"}} {}",
            self.last_peak_memory.load(Ordering::Relaxed)
        );
        out
    }
}

/// What the info line and the memory gauges describe.
#[derive(Debug, Clone)]
pub struct About {
    pub worker_id: String,
    pub device: Device,
    pub device_label: String,
    pub device_name: String,
    pub torch_version: String,
    pub slots: u32,
}

/// (used, total) bytes of the training device: CUDA from the driver (used unknown when only the
/// device's total is known), the CPU from `/proc/meminfo`.
fn device_memory(device: Device) -> Option<(Option<u64>, u64)> {
    if let Some((free, total)) = tanren_trainer::memory::device_memory(device) {
        return Some((free.map(|f| total.saturating_sub(f)), total));
    }
    if device != Device::Cpu {
        return None;
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = kib_field(&info, "MemTotal:")?;
    let available = kib_field(&info, "MemAvailable:")?;
    Some((Some(total.saturating_sub(available)), total))
}

fn resident_bytes() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")
}

/// A `Name:   1234 kB` line of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Where the metrics endpoint listens and what it asks of a scraper. The listener is bound by the
/// caller (so a test can bind port 0 and read the address) and taken once by `run`.
#[derive(Clone)]
pub struct MetricsEndpoint {
    listener: Arc<Mutex<Option<std::net::TcpListener>>>,
    addr: SocketAddr,
    token: Option<String>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl MetricsEndpoint {
    /// Refuses an address beyond loopback without a token: the numbers name the host's device and
    /// workload, and the endpoint is plain HTTP.
    pub fn new(listener: std::net::TcpListener, token: Option<String>) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let token = token
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_string());
        if !addr.ip().is_loopback() && token.is_none() {
            anyhow::bail!(
                "the metrics endpoint would listen on {addr}, beyond this host, without a token: set \
                 TANREN_WORKER_METRICS_TOKEN (or --metrics-token) and give Prometheus the same value as \
                 its bearer token, or listen on 127.0.0.1"
            );
        }
        listener.set_nonblocking(true)?;
        Ok(MetricsEndpoint {
            listener: Arc::new(Mutex::new(Some(listener))),
            addr,
            token,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `GET /metrics` until `shutdown`. Errors if the listener was already taken.
    pub async fn serve(
        &self,
        metrics: Arc<WorkerMetrics>,
        about: About,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        use axum::http::{header, HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        let std_listener = lock(&self.listener)
            .take()
            .ok_or_else(|| anyhow::anyhow!("the metrics listener is already in use"))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let token = self.token.clone();
        let handler = move |headers: HeaderMap| {
            let (metrics, about, token) = (metrics.clone(), about.clone(), token.clone());
            async move {
                if let Some(t) = &token {
                    let presented = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "));
                    if !presented.is_some_and(|p| crate::same(p.as_bytes(), t.as_bytes())) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            "this worker's metrics need its metrics token as a bearer token\n",
                        )
                            .into_response();
                    }
                }
                (
                    [(header::CONTENT_TYPE, tanren_api::prometheus::CONTENT_TYPE)],
                    metrics.render(&about),
                )
                    .into_response()
            }
        };
        let app = axum::Router::new().route("/metrics", axum::routing::get(handler));
        tracing::info!(addr = %self.addr, "worker metrics listening (GET /metrics)");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_read_in_bytes() {
        let text = "MemTotal:       16384 kB\nMemAvailable:    4096 kB\n";
        assert_eq!(kib_field(text, "MemTotal:"), Some(16384 * 1024));
        assert_eq!(kib_field(text, "MemAvailable:"), Some(4096 * 1024));
        assert_eq!(kib_field(text, "VmRSS:"), None);
    }

    #[test]
    fn a_non_loopback_endpoint_needs_a_token() {
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let err = MetricsEndpoint::new(any, None).unwrap_err().to_string();
        assert!(err.contains("TANREN_WORKER_METRICS_TOKEN"), "{err}");
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        assert!(MetricsEndpoint::new(any, Some("s3cret".into())).is_ok());
        let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(MetricsEndpoint::new(local, None).is_ok());
    }

    #[tokio::test]
    async fn a_token_endpoint_refuses_scrapes_without_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = MetricsEndpoint::new(l, Some("s3cret".into())).unwrap();
        let url = format!("http://{}/metrics", endpoint.local_addr());
        let about = test_about();
        let stop = tokio_util::sync::CancellationToken::new();
        let e2 = endpoint.clone();
        let server = tokio::spawn({
            let stop = stop.clone();
            async move { e2.serve(Arc::default(), about, stop).await }
        });
        let http = reqwest::Client::new();
        let none = http.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401);
        let wrong = http.get(&url).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let ok = http.get(&url).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert!(ok
            .text()
            .await
            .unwrap()
            .contains("tanren_worker_trials_running 0"));
        stop.cancel();
        server.await.unwrap().unwrap();
        let taken = endpoint.serve(Arc::default(), test_about(), stop).await;
        assert!(taken.is_err(), "the listener is taken once");
    }

    fn test_about() -> About {
        About {
            worker_id: "w1".into(),
            device: Device::Cpu,
            device_label: "cpu".into(),
            device_name: "x86".into(),
            torch_version: "2.11.0".into(),
            slots: 1,
        }
    }

    #[test]
    fn the_render_counts_outcomes_and_epochs() {
        let m = Arc::new(WorkerMetrics::default());
        let running = m.trial_started();
        m.prepared(0.5, false);
        m.epoch(2.0);
        m.epoch(3.0);
        let about = test_about();
        let text = m.render(&about);
        assert!(text.contains("tanren_worker_trials_running 1\n"), "{text}");
        drop(running);
        m.trial_ended(Outcome::Completed, 6.0);
        let text = m.render(&about);
        assert!(text.contains("tanren_worker_trials_running 0\n"), "{text}");
        assert!(
            text.contains("tanren_worker_trials_total{outcome=\"completed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tanren_worker_trials_total{outcome=\"failed\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("tanren_worker_epoch_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tanren_worker_epoch_duration_seconds_sum 5\n"),
            "{text}"
        );
        assert!(
            text.contains("tanren_worker_dataset_cache_total{result=\"miss\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tanren_worker_device_memory_total_bytes{device=\"cpu\"}"),
            "{text}"
        );
        assert!(text.contains("tanren_worker_info{worker_id=\"w1\""), "{text}");
    }
}
