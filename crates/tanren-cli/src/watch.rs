//! `tanren study watch ID`: follow a study over its WebSocket event stream (see tanren-control's
//! events.rs for the contract) with one live progress line: counts, ETA (a range while uncertain) and
//! the best trial so far. A dropped connection resumes with `?since=`; `--json` prints every event as
//! one JSON line instead.

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::Value;
use std::io::IsTerminal;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct View {
    state: String,
    progress: Value,
    best: Value,
    /// (seq, stream) of the last event seen, to resume from.
    resume: Option<(u64, u64)>,
    error: Option<String>,
}

fn ws_url(base: &str, id: i64, resume: Option<(u64, u64)>) -> String {
    let base = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    match resume {
        Some((seq, stream)) => format!("{base}/api/v1/studies/{id}/events?since={seq}&stream={stream}"),
        None => format!("{base}/api/v1/studies/{id}/events"),
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `[#######.....] 12/30 done, 2 running, 1 pruned, 0 failed · ETA 3m-5m · best 0.9312 (#7)`
pub fn line(progress: &Value, best: &Value, state: &str) -> String {
    let p = progress;
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    let done = n("done");
    let total = p["total"].as_u64();
    let width = 24usize;
    let filled = total
        .map_or(0, |t| {
            ((done as f64 / t.max(1) as f64) * width as f64).round() as usize
        })
        .min(width);
    let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled));
    let total_s = total.map_or("?".to_string(), |t| t.to_string());
    let eta = if state != "running" {
        state.to_string()
    } else {
        match (p["eta_seconds"].as_f64(), p["eta_range_seconds"].as_array()) {
            (Some(e), Some(r)) if r.len() == 2 => {
                let (lo, hi) = (r[0].as_f64().unwrap_or(e), r[1].as_f64().unwrap_or(e));
                if hi - lo > 0.25 * e.max(1.0) {
                    format!("ETA {}-{}", fmt_secs(lo), fmt_secs(hi))
                } else {
                    format!("ETA ~{}", fmt_secs(e))
                }
            }
            (Some(e), _) => format!("ETA ~{}", fmt_secs(e)),
            (None, _) => "ETA estimating".into(),
        }
    };
    let best = match best["val_accuracy"].as_f64() {
        Some(a) => format!("best {a:.4} (#{})", best["number"]),
        None => "best -".into(),
    };
    format!(
        "{bar} {done}/{total_s} done, {} running, {} pruned, {} failed · {eta} · {best}",
        n("running"),
        n("pruned"),
        n("failed").saturating_sub(n("interrupted")),
    )
}

fn apply(v: &mut View, m: &Value) {
    if let (Some(seq), Some(stream)) = (m["seq"].as_u64(), v.resume.map(|r| r.1).or(m["stream"].as_u64())) {
        v.resume = Some((seq, stream));
    }
    match m["type"].as_str().unwrap_or("") {
        "snapshot" => {
            v.state = m["study"]["state"].as_str().unwrap_or("").to_string();
            v.progress = m["study"]["progress"].clone();
            v.best = m["study"]["best_trial"].clone();
            v.error = m["study"]["error"].as_str().map(String::from);
            v.resume = Some((m["seq"].as_u64().unwrap_or(0), m["stream"].as_u64().unwrap_or(0)));
        }
        "progress" => {
            v.progress = m["progress"].clone();
            v.best = m["best_trial"].clone();
        }
        "study_finished" => {
            v.state = m["state"].as_str().unwrap_or("").to_string();
            v.error = m["error"].as_str().map(String::from);
        }
        _ => {}
    }
}

/// Follow until the study ends. Returns its final state; the caller prints the summary.
/// `wss://` trusting `ca_pem` (`--ca-cert`) when given; otherwise tungstenite's own connector (the OS
/// trust store for `wss://`).
fn connector(ca_pem: Option<&[u8]>) -> Result<Option<tokio_tungstenite::Connector>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let Some(pem) = ca_pem else { return Ok(None) };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.context("the CA certificate is not valid PEM")?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
        config,
    ))))
}

pub async fn watch(
    base: &str,
    token: Option<&str>,
    ca_pem: Option<&[u8]>,
    id: i64,
    json: bool,
) -> Result<String> {
    let connector = connector(ca_pem)?;
    let tty = std::io::stdout().is_terminal() && !json;
    let mut v = View::default();
    let mut failures = 0u32;
    let mut last_line = String::new();
    loop {
        let url = ws_url(base, id, v.resume);
        let mut req = url.as_str().into_client_request()?;
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse()?);
        }
        let mut ws =
            match tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector.clone()).await
            {
                Ok((ws, _)) => {
                    failures = 0;
                    ws
                }
                // Refused (no or wrong token, unknown study): retrying cannot help.
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status().is_client_error() => {
                    let body: serde_json::Value = r
                        .body()
                        .as_deref()
                        .and_then(|b| serde_json::from_slice(b).ok())
                        .unwrap_or_default();
                    anyhow::bail!(
                        "cannot follow study {id}: {} ({})",
                        body["error"]["message"].as_str().unwrap_or("refused"),
                        r.status()
                    );
                }
                Err(e) => {
                    failures += 1;
                    if failures > 10 {
                        return Err(e).with_context(|| format!("cannot follow study {id} at {url}"));
                    }
                    tokio::time::sleep(Duration::from_millis(500 * failures as u64)).await;
                    continue;
                }
            };
        while let Some(msg) = ws.next().await {
            let text = match msg {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(frame)) => {
                    if let Some(f) = frame.filter(|f| !f.reason.is_empty()) {
                        if !json {
                            errln!("\nstream closed by the server: {} (resuming)", f.reason);
                        }
                    }
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            };
            let m: Value = serde_json::from_str(&text).context("the server sent an unreadable event")?;
            apply(&mut v, &m);
            if json {
                outln!("{text}");
            } else if !v.progress.is_null() {
                let l = line(&v.progress, &v.best, &v.state);
                if l != last_line {
                    if tty {
                        out!("\r\x1b[2K{l}");
                        crate::out::flush();
                    } else {
                        outln!("{l}");
                    }
                    last_line = l;
                }
            }
            if !v.state.is_empty() && v.state != "running" {
                if tty {
                    outln!();
                }
                if let Some(e) = &v.error {
                    if v.state == "failed" {
                        bail!("study {id} failed: {e}");
                    }
                }
                return Ok(v.state);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_progress_line_shows_counts_eta_range_and_best() {
        let p = json!({"done": 6, "total": 12, "running": 2, "pruned": 1, "failed": 1, "interrupted": 0,
                       "eta_seconds": 240.0, "eta_range_seconds": [180.0, 330.0]});
        let b = json!({"val_accuracy": 0.93125, "number": 4});
        assert_eq!(
            line(&p, &b, "running"),
            "[############............] 6/12 done, 2 running, 1 pruned, 1 failed · ETA 3m00s-5m30s · best 0.9313 (#4)"
        );
        assert!(line(&p, &Value::Null, "complete").ends_with("· complete · best -"));
    }
}
