//! The WebSocket watchers: each opens a study's event stream with the admin token, takes the
//! snapshot (its time is the connect latency), then reads every event until the deadline. A close
//! from the server before the deadline (e.g. "too slow"), a read error or a failed connect is an
//! error.

use crate::stats::Samples;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
pub struct WatchReport {
    /// Time to the first message (the snapshot), per connect.
    pub connect: Samples,
    pub messages: u64,
    pub bytes: u64,
}

pub async fn watcher(url: String, token: String, deadline: Instant) -> WatchReport {
    let mut report = WatchReport::default();
    let start = Instant::now();
    let request = url.as_str().into_client_request().map(|mut r| {
        r.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        r
    });
    let mut socket = match request {
        Ok(r) => match tokio_tungstenite::connect_async(r).await {
            Ok((s, _)) => s,
            Err(e) => {
                report
                    .connect
                    .record(start.elapsed(), Some(format!("connect: {e}")));
                return report;
            }
        },
        Err(e) => {
            report
                .connect
                .record(start.elapsed(), Some(format!("request: {e}")));
            return report;
        }
    };
    let mut first = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let next = tokio::time::timeout(left.min(Duration::from_secs(3600)), socket.next()).await;
        let error = match next {
            Err(_) => break, // the deadline
            Ok(Some(Ok(Message::Text(t)))) => {
                report.messages += 1;
                report.bytes += t.len() as u64;
                None
            }
            Ok(Some(Ok(Message::Close(c)))) => Some(format!("closed by the server: {c:?}")),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => Some(format!("read: {e}")),
            Ok(None) => Some("stream ended".to_string()),
        };
        if first || error.is_some() {
            let connect_error = error.clone().map(|e| format!("before the deadline: {e}"));
            if first {
                report.connect.record(start.elapsed(), connect_error);
                first = false;
            } else if let Some(e) = connect_error {
                // Counted once, on the connect's row: this watcher's stream broke.
                report.connect.errors += 1;
                if report.connect.examples.is_empty() {
                    report.connect.examples.push(e);
                }
            }
        }
        if error.is_some() {
            return report;
        }
    }
    if first {
        report
            .connect
            .record(start.elapsed(), Some("no snapshot before the deadline".into()));
    }
    let _ = socket.close(None).await;
    report
}
