//! Prometheus metrics (`GET /metrics`, text format 0.0.4) and the request log. Counters and histograms
//! live in memory and are updated where things happen; gauges that the database already knows (trials
//! by state, queue depth) are read at scrape time, so they cannot drift.
//!
//! Every request gets an id (`x-request-id`, taken from the request when it brings a sane one) and one
//! log line with method, route, status and duration, inside a span carrying the id.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument;

use tanren_api::prometheus::{esc, Histogram, DURATION_BUCKETS as TRIAL_BUCKETS};
use tanren_api::prometheus::{CONTENT_TYPE, LATENCY_BUCKETS as HTTP_BUCKETS};

#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) → latency histogram.
    http: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    /// Trial wall time by how it ended.
    trials: Mutex<BTreeMap<String, Histogram>>,
    epochs: Mutex<Histogram>,
    pub ws_clients: AtomicI64,
    pub upload_bytes: AtomicU64,
    pub weights_bytes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn trial_ended(&self, state: &str, seconds: f64) {
        lock(&self.trials)
            .entry(state.to_string())
            .or_default()
            .observe(TRIAL_BUCKETS, seconds);
    }

    pub fn epoch(&self, seconds: f64) {
        lock(&self.epochs).observe(TRIAL_BUCKETS, seconds);
    }

    fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        lock(&self.http)
            .entry((method.to_string(), route.to_string(), status))
            .or_default()
            .observe(HTTP_BUCKETS, seconds);
    }
}

pub async fn render(State(s): State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    let m = &s.metrics;
    out.push_str("# HELP tanren_http_request_duration_seconds REST and WebSocket-upgrade latency by route and status.\n");
    out.push_str("# TYPE tanren_http_request_duration_seconds histogram\n");
    for ((method, route, status), h) in lock(&m.http).iter() {
        let labels = format!(
            "method=\"{}\",route=\"{}\",status=\"{status}\"",
            esc(method),
            esc(route)
        );
        h.render(
            &mut out,
            "tanren_http_request_duration_seconds",
            &labels,
            HTTP_BUCKETS,
        );
    }
    out.push_str("# HELP tanren_trial_duration_seconds Wall time of finished trials (dispatch to end) by final state.\n");
    out.push_str("# TYPE tanren_trial_duration_seconds histogram\n");
    for (state, h) in lock(&m.trials).iter() {
        h.render(
            &mut out,
            "tanren_trial_duration_seconds",
            &format!("state=\"{}\"", esc(state)),
            TRIAL_BUCKETS,
        );
    }
    out.push_str("# HELP tanren_epoch_duration_seconds Seconds per training epoch as workers report them.\n");
    out.push_str("# TYPE tanren_epoch_duration_seconds histogram\n");
    lock(&m.epochs).render(&mut out, "tanren_epoch_duration_seconds", "", TRIAL_BUCKETS);
    match s.store.trial_state_counts().await {
        Ok(counts) => {
            out.push_str("# HELP tanren_trials Trials in the database by state (queued = the queue).\n");
            out.push_str("# TYPE tanren_trials gauge\n");
            for state in ["queued", "running", "complete", "pruned", "failed"] {
                let n = counts.iter().find(|(k, _)| k == state).map_or(0, |(_, n)| *n);
                let _ = writeln!(out, "tanren_trials{{state=\"{state}\"}} {n}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: trial counts unavailable"),
    }
    if let Ok(workers) = s.store.workers().await {
        let all = workers.len();
        let live = s.scheduler.live_workers(workers).len();
        let busy = s.scheduler.busy_workers().await.len();
        out.push_str("# HELP tanren_workers Known workers: up (heard from, registered with this process), busy, total.\n");
        out.push_str("# TYPE tanren_workers gauge\n");
        let _ = writeln!(out, "tanren_workers{{state=\"up\"}} {live}");
        let _ = writeln!(out, "tanren_workers{{state=\"busy\"}} {busy}");
        let _ = writeln!(out, "tanren_workers{{state=\"known\"}} {all}");
    }
    out.push_str(
        "# HELP tanren_websocket_clients Open study event streams.\n# TYPE tanren_websocket_clients gauge\n",
    );
    let _ = writeln!(
        out,
        "tanren_websocket_clients {}",
        m.ws_clients.load(Ordering::Relaxed)
    );
    out.push_str("# HELP tanren_upload_bytes_total Dataset bytes received.\n# TYPE tanren_upload_bytes_total counter\n");
    let _ = writeln!(
        out,
        "tanren_upload_bytes_total {}",
        m.upload_bytes.load(Ordering::Relaxed)
    );
    out.push_str("# HELP tanren_weights_bytes_total Model weight bytes received from workers.\n# TYPE tanren_weights_bytes_total counter\n");
    let _ = writeln!(
        out,
        "tanren_weights_bytes_total {}",
        m.weights_bytes.load(Ordering::Relaxed)
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response()
}

/// A request id from the client (`x-request-id`, up to 64 visible ASCII characters) or a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| crate::auth::random_secret()[..16].to_string())
}

/// Outermost layer: request id, span, one log line, latency metric.
pub async fn observe(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    s.metrics.request(&method, &route, status, secs);
    span.in_scope(|| {
        if route != "/healthz" && route != "/metrics" {
            tracing::info!(status, ms = (secs * 1000.0).round(), "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    json_errors(resp).await
}

/// Every error answer is an `ErrorBody`, including the plain-text rejections axum's extractors make
/// (a malformed path parameter or query string, a missing WebSocket upgrade header).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let body = tanren_api::ErrorBody {
        error: tanren_api::ErrorDetail {
            code: reason.to_ascii_lowercase().replace([' ', '-'], "_"),
            message: if text.is_empty() { reason.to_string() } else { text },
            field: None,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
