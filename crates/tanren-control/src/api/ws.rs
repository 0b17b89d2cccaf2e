//! `GET /api/v1/studies/{id}/events`: the study's live event stream over a WebSocket. The schema and
//! the guarantees (snapshot then deltas, resume with `?since=`, slow clients dropped) are in
//! crate::events; this file only serves them.

use super::studies::study_view;
use super::S;
use crate::error::ApiResult;
use crate::events::{Curve, Event, Frame, Message, Snapshot};
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tanren_core::TrialState;
use tanren_store::{now_ms, EpochRow, TrialRow};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::OnceCell;

/// Learning curves in a snapshot: every running trial, the best ones, then the most recent ones.
const MAX_CURVES: usize = 400;
const BEST_CURVES: usize = 40;
/// RFC 6455 "policy violation": the client broke the stream's rule of keeping up.
const CLOSE_TOO_SLOW: u16 = 1008;

#[derive(Deserialize)]
pub struct EventsQuery {
    since: Option<u64>,
    stream: Option<u64>,
}

pub async fn events(
    State(s): State<S>,
    Path(id): Path<i64>,
    Query(q): Query<EventsQuery>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    // Refuse unknown studies with a plain 404 before upgrading.
    s.store.study(id).await?;
    Ok(ws.on_upgrade(move |socket| stream(s, id, q, socket)))
}

async fn stream(s: S, study_id: i64, q: EventsQuery, socket: WebSocket) {
    use std::sync::atomic::Ordering;
    s.metrics.ws_clients.fetch_add(1, Ordering::Relaxed);
    serve_stream(&s, study_id, q, socket).await;
    s.metrics.ws_clients.fetch_sub(1, Ordering::Relaxed);
}

async fn serve_stream(s: &S, study_id: i64, q: EventsQuery, mut socket: WebSocket) {
    let since = q.since.filter(|_| q.stream == Some(s.events.stream()));
    let mut sub = s.events.subscribe(study_id, since);
    let mut last_sent = sub.last;
    match sub.replay.take() {
        Some(frames) => {
            for f in frames {
                last_sent = f.seq;
                if !send(s, &mut socket, &f.json).await {
                    return;
                }
            }
        }
        None => match s
            .snapshots
            .get_or_build(study_id, sub.last, || snapshot(s, study_id, sub.last))
            .await
        {
            Ok(json) => {
                if !send(s, &mut socket, &json).await {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(study_id, error = %e, "snapshot failed");
                close(&mut socket, 1011, "snapshot failed; reconnect").await;
                return;
            }
        },
    }
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => {
                close(&mut socket, 1001, "control plane shutting down").await;
                return;
            }
            r = sub.rx.recv() => match r {
                Ok(Frame { seq, json }) => {
                    if seq <= last_sent {
                        continue;
                    }
                    last_sent = seq;
                    if !send(s, &mut socket, &json).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::info!(study_id, missed = n, "dropping a slow event client");
                    let reason = format!("too slow: {n} events behind; reconnect with ?since={last_sent}");
                    close(&mut socket, CLOSE_TOO_SLOW, &reason).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            m = socket.recv() => match m {
                // The client sends nothing we need; pings are answered by axum.
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// How long a snapshot is shared at most, even with no event since: it also carries the workers and
/// the ETA, which change without an event of the study.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// Each study's last snapshot, keyed by the event sequence number it was built at. Watchers that
/// connect at the same event within `SNAPSHOT_TTL` share one build (single flight: the others wait
/// for it), so 500 dashboards opening a 10,000-trial study read the store and serialise the JSON
/// once, not 500 times. A failed build is not kept: the next watcher builds again.
#[derive(Default)]
pub struct SnapshotCache(Mutex<HashMap<i64, SnapshotEntry>>);

struct SnapshotEntry {
    seq: u64,
    at: Instant,
    cell: Arc<OnceCell<Arc<str>>>,
}

impl SnapshotCache {
    pub async fn get_or_build<F, Fut>(&self, study_id: i64, seq: u64, build: F) -> anyhow::Result<Arc<str>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<String>>,
    {
        let cell = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, e| e.at.elapsed() < SNAPSHOT_TTL * 60);
            match map.get(&study_id) {
                Some(e) if e.seq == seq && e.at.elapsed() < SNAPSHOT_TTL => e.cell.clone(),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    map.insert(
                        study_id,
                        SnapshotEntry {
                            seq,
                            at: Instant::now(),
                            cell: cell.clone(),
                        },
                    );
                    cell
                }
            }
        };
        let json = cell
            .get_or_try_init(|| async { build().await.map(Arc::from) })
            .await?;
        Ok(json.clone())
    }
}

/// Send one frame, giving up on a client that does not take it in time (its connection is dropped).
async fn send(s: &S, socket: &mut WebSocket, json: &str) -> bool {
    let msg = WsMessage::Text(json.into());
    match tokio::time::timeout(s.config.event_send_timeout, socket.send(msg)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!("dropping an event client that stopped reading");
            false
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        socket.send(WsMessage::Close(Some(frame))),
    )
    .await;
}

async fn snapshot(s: &S, study_id: i64, seq: u64) -> anyhow::Result<String> {
    let row = s.store.study(study_id).await?;
    // Without result blobs: a snapshot shows trials as lists do.
    let trials = s.store.trials_light(study_id).await?;
    let epochs = s.store.epochs_for_study(study_id).await?;
    let study = study_view(s, &row).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (curves, curves_omitted) = curves(&trials, &epochs);
    let snap = Snapshot {
        stream: s.events.stream(),
        study,
        trials: trials.iter().map(crate::views::trial).collect(),
        curves,
        curves_omitted,
        workers: super::workers::views(s)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let msg = Message {
        seq,
        study_id,
        at: now_ms(),
        event: Event::Snapshot(Box::new(snap)),
    };
    Ok(serde_json::to_string(&msg)?)
}

/// Pick the learning curves worth drawing: running trials, the best by validation accuracy, then the
/// most recent, up to `MAX_CURVES`.
fn curves(trials: &[TrialRow], epochs: &[EpochRow]) -> (Vec<Curve>, usize) {
    let mut by_trial: HashMap<i64, Vec<[f64; 2]>> = HashMap::new();
    for e in epochs {
        by_trial
            .entry(e.trial_id)
            .or_default()
            .push([e.epoch as f64, e.val_accuracy]);
    }
    let with_epochs: Vec<&TrialRow> = trials.iter().filter(|t| by_trial.contains_key(&t.id)).collect();
    let mut chosen: Vec<i64> = with_epochs
        .iter()
        .filter(|t| t.state == TrialState::Running.as_str())
        .map(|t| t.id)
        .collect();
    let mut best: Vec<&&TrialRow> = with_epochs.iter().filter(|t| t.val_accuracy.is_some()).collect();
    best.sort_by(|a, b| {
        b.val_accuracy
            .partial_cmp(&a.val_accuracy)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    chosen.extend(best.iter().take(BEST_CURVES).map(|t| t.id));
    chosen.extend(with_epochs.iter().rev().map(|t| t.id));
    let mut seen = std::collections::HashSet::new();
    chosen.retain(|id| seen.insert(*id));
    chosen.truncate(MAX_CURVES);
    let omitted = with_epochs.len() - chosen.len();
    chosen.sort_unstable();
    let curves = chosen
        .into_iter()
        .map(|id| Curve {
            trial_id: id,
            points: by_trial.remove(&id).unwrap_or_default(),
        })
        .collect();
    (curves, omitted)
}
