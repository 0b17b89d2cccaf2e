//! The live event stream of a study, defined once: the message schema that the WebSocket
//! `GET /api/v1/studies/{id}/events` sends (and the dashboard and `tanren study watch` read), and the
//! in-memory hub that numbers, keeps and fans out events. The scheduler publishes where it writes to
//! the database; nothing here waits for a client.
//!
//! Contract (tested in tests/e2e/ws.rs):
//! - Every message is one JSON text frame `{"seq", "study_id", "at", "type", ...}` (`Message`).
//! - The first message is a `snapshot` whose `seq` is the last event it covers, unless the client asks
//!   `?since=SEQ&stream=ID` and the hub still holds every event after SEQ of that stream: then exactly
//!   those events are replayed, so a reconnecting client resumes without gaps or a reload.
//! - After that, deltas with `seq` increasing by one per study.
//! - Deltas are idempotent upserts (trials by id, epochs by (trial, epoch), progress absolute): the
//!   snapshot is read from the database after its `seq` is taken, so it may already reflect the next
//!   few events, and applying them again changes nothing.
//! - A client more than `Config::event_buffer` events behind, or that does not take a message within
//!   `Config::event_send_timeout`, is closed with code 1008 and a reason naming the `since` to resume
//!   from; the study never slows down for it.
//! - `stream` changes when the control plane restarts (numbering starts over); a `since` from another
//!   stream gets a snapshot.

use crate::AppState;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tanren_core::{EpochMetrics, StudyState, TrialState};
use tanren_store::{now_ms, TrialRow, WorkerRow};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    pub study_id: i64,
    /// Unix milliseconds when the event was published.
    pub at: i64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Full state; the first message of a connection (never stored in the ring).
    Snapshot(Box<Snapshot>),
    TrialQueued {
        trial: TrialView,
    },
    /// Sent when a worker takes the trial, and again when it reports its device.
    TrialStarted {
        trial: TrialView,
    },
    TrialEpoch {
        trial_id: i64,
        number: i64,
        metrics: EpochMetrics,
    },
    TrialCompleted {
        trial: TrialView,
    },
    TrialPruned {
        trial: TrialView,
    },
    TrialFailed {
        trial: TrialView,
    },
    /// Counts, ETA and the best trial; sent (debounced) after trial changes.
    Progress {
        progress: crate::progress::Progress,
        best_trial: Option<TrialView>,
    },
    StudyFinished {
        state: String,
        error: Option<String>,
        /// `tanren_core::EndReason`: trial_budget, minutes_budget, space_exhausted, stopped, failed.
        #[serde(default)]
        end_reason: Option<String>,
    },
    WorkerUp {
        worker: WorkerView,
    },
    WorkerDown {
        worker_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Identifies this process's numbering; pass it back as `?stream=` with `?since=`.
    pub stream: u64,
    /// The study as `GET /api/v1/studies/{id}` shows it (progress and best trial included).
    pub study: serde_json::Value,
    pub trials: Vec<TrialView>,
    /// Validation accuracy per epoch, for the running trials, the best ones and the most recent ones
    /// (all of them for small studies): learning curves of 10,000 trials would drown the page.
    pub curves: Vec<Curve>,
    /// Trials with epochs whose curve was left out.
    pub curves_omitted: usize,
    pub workers: Vec<WorkerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub trial_id: i64,
    /// `[epoch, val_accuracy]`.
    pub points: Vec<[f64; 2]>,
}

/// A trial as streams and lists show it: what a table row or chart point needs, absent fields omitted.
/// The full record (config, confusion matrix, epochs) is `GET /api/v1/trials/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialView {
    pub id: i64,
    pub number: i64,
    pub state: String,
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs_completed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

impl From<&TrialRow> for TrialView {
    fn from(t: &TrialRow) -> Self {
        TrialView {
            id: t.id,
            number: t.number,
            state: t.state.clone(),
            params: serde_json::from_str(&t.params).unwrap_or_default(),
            worker_id: t.worker_id.clone(),
            device: t.device.clone(),
            val_accuracy: t.val_accuracy,
            test_accuracy: t.test_accuracy,
            train_seconds: t.train_seconds,
            inference_ms: t.inference_ms,
            parameter_count: t.parameter_count,
            epochs_completed: t.epochs_completed,
            error: t.error.clone(),
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
        }
    }
}

pub use tanren_api::WorkerView;

/// A worker row as REST and the event stream show it.
pub fn worker_view(w: &WorkerRow, alive: bool, running: Option<(i64, i64)>) -> WorkerView {
    {
        WorkerView {
            id: w.id.clone(),
            grpc_url: w.grpc_url.clone(),
            device: w.device.clone(),
            device_name: w.device_name.clone(),
            torch_version: w.torch_version.clone(),
            cuda_available: w.cuda_available != 0,
            slots: w.slots,
            registered_at: w.registered_at,
            last_seen_at: w.last_seen_at,
            alive,
            busy: running.is_some(),
            study_id: running.map(|r| r.0),
            trial_id: running.map(|r| r.1),
        }
    }
}

/// A published event, serialised once for every subscriber.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub json: Arc<str>,
}

struct Channel {
    last: u64,
    ring: VecDeque<Frame>,
    tx: broadcast::Sender<Frame>,
    /// When the study ended (unix ms), so an idle channel can be forgotten later.
    finished_at: Option<i64>,
}

/// What a new connection starts from.
pub struct Subscription {
    /// The last seq published before subscribing; a snapshot taken now covers it.
    pub last: u64,
    /// `Some` when the requested `since` could be served from the ring: the frames after it.
    pub replay: Option<Vec<Frame>>,
    pub rx: broadcast::Receiver<Frame>,
}

pub struct Hub {
    stream: u64,
    buffer: usize,
    ring: usize,
    channels: Mutex<HashMap<i64, Channel>>,
    dirty: Mutex<HashSet<i64>>,
    wake: Notify,
}

/// Forget the ring of a finished study nobody watches after this long.
const FORGET_AFTER_MS: i64 = 10 * 60_000;
/// Progress events are debounced to at most one per study per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(400);

impl Hub {
    /// `buffer`: how far a client may fall behind before it is dropped; `ring`: how many recent events
    /// each study keeps for resuming clients.
    pub fn new(buffer: usize, ring: usize) -> Hub {
        Hub {
            stream: now_ms() as u64,
            buffer: buffer.max(1),
            ring,
            channels: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        }
    }

    pub fn stream(&self) -> u64 {
        self.stream
    }

    fn channel<'a>(&self, map: &'a mut HashMap<i64, Channel>, study_id: i64) -> &'a mut Channel {
        map.entry(study_id).or_insert_with(|| Channel {
            last: 0,
            ring: VecDeque::new(),
            tx: broadcast::channel(self.buffer).0,
            finished_at: None,
        })
    }

    /// Number, store and fan out one event. Never waits: slow receivers lag and are dropped.
    pub fn publish(&self, study_id: i64, event: Event) -> u64 {
        let mut map = self.channels.lock().expect("hub lock");
        let ch = self.channel(&mut map, study_id);
        ch.last += 1;
        if matches!(event, Event::StudyFinished { .. }) {
            ch.finished_at = Some(now_ms());
        }
        let msg = Message {
            seq: ch.last,
            study_id,
            at: now_ms(),
            event,
        };
        let json: Arc<str> = match serde_json::to_string(&msg) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(study_id, error = %e, "event not serialisable; dropped");
                ch.last -= 1;
                return ch.last;
            }
        };
        let frame = Frame { seq: ch.last, json };
        if self.ring > 0 {
            if ch.ring.len() >= self.ring {
                ch.ring.pop_front();
            }
            ch.ring.push_back(frame.clone());
        }
        let _ = ch.tx.send(frame); // no receivers is fine
        ch.last
    }

    /// Worker events concern every study being watched.
    pub fn publish_all(&self, event: Event) {
        let ids: Vec<i64> = self.channels.lock().expect("hub lock").keys().copied().collect();
        for id in ids {
            self.publish(id, event.clone());
        }
    }

    /// Subscribe, and take the ring's frames after `since` in the same critical section so that no
    /// event falls between the replay and the live receiver.
    pub fn subscribe(&self, study_id: i64, since: Option<u64>) -> Subscription {
        let mut map = self.channels.lock().expect("hub lock");
        let ch = self.channel(&mut map, study_id);
        let replay = since.and_then(|since| {
            if since > ch.last {
                return None;
            }
            if since == ch.last {
                return Some(Vec::new());
            }
            let first = ch.ring.front()?.seq;
            (first <= since + 1).then(|| ch.ring.iter().filter(|f| f.seq > since).cloned().collect())
        });
        Subscription {
            last: ch.last,
            replay,
            rx: ch.tx.subscribe(),
        }
    }

    /// Ask for a progress event for this study soon (debounced).
    pub fn progress_changed(&self, study_id: i64) {
        self.dirty.lock().expect("hub lock").insert(study_id);
        self.wake.notify_one();
    }

    /// A trial row changed: publish the event its state calls for, and schedule progress.
    pub fn trial(&self, t: &TrialRow) {
        let trial = TrialView::from(t);
        let event = match t.state.parse::<TrialState>() {
            Ok(TrialState::Queued) => Event::TrialQueued { trial },
            Ok(TrialState::Running) => Event::TrialStarted { trial },
            Ok(TrialState::Complete) => Event::TrialCompleted { trial },
            Ok(TrialState::Pruned) => Event::TrialPruned { trial },
            Ok(TrialState::Failed) | Err(_) => Event::TrialFailed { trial },
        };
        self.publish(t.study_id, event);
        self.progress_changed(t.study_id);
    }

    pub fn epoch(&self, study_id: i64, trial_id: i64, number: i64, metrics: &EpochMetrics) {
        self.publish(
            study_id,
            Event::TrialEpoch {
                trial_id,
                number,
                metrics: metrics.clone(),
            },
        );
    }

    fn take_dirty(&self) -> Vec<i64> {
        self.dirty.lock().expect("hub lock").drain().collect()
    }

    fn forget_idle(&self) {
        let now = now_ms();
        self.channels.lock().expect("hub lock").retain(|_, ch| {
            ch.tx.receiver_count() > 0 || ch.finished_at.is_none_or(|t| now - t < FORGET_AFTER_MS)
        });
    }
}

/// Re-read a trial after the scheduler wrote it and publish its new state. Errors are logged only:
/// a missed event must not fail a trial (a reconnecting client gets a snapshot from the database).
pub async fn trial_changed(state: &AppState, trial_id: i64) {
    match state.store.trial(trial_id).await {
        Ok(t) => state.events.trial(&t),
        Err(e) => tracing::warn!(trial_id, error = %e, "trial event not published"),
    }
}

/// A study left `running`: publish its final progress right away (not debounced), then its final
/// state, so `study_finished` is the last event and a client never ends on stale counts.
pub async fn study_finished(state: &AppState, study_id: i64) {
    match state.store.study(study_id).await {
        Ok(row) if row.state != StudyState::Running.as_str() => {
            if let Err(e) = publish_progress(state, study_id).await {
                tracing::warn!(study_id, error = %e, "final progress event not published");
            }
            state.events.publish(
                study_id,
                Event::StudyFinished {
                    state: row.state,
                    error: row.error,
                    end_reason: row.end_reason,
                },
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(study_id, error = %e, "study event not published"),
    }
}

/// Background task: debounced progress events, and worker up/down from heartbeats (a worker is down
/// when it has not been heard from within the worker timeout, which no request announces).
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut live: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.events.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for id in state.events.take_dirty() {
            if let Err(e) = publish_progress(&state, id).await {
                tracing::warn!(study_id = id, error = %e, "progress event not published");
            }
        }
        if let Err(e) = workers_changed(&state, &mut live).await {
            tracing::warn!(error = %e, "worker events not published");
        }
        state.events.forget_idle();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
    }
}

async fn publish_progress(state: &AppState, study_id: i64) -> Result<(), tanren_store::StoreError> {
    let row = state.store.study(study_id).await?;
    let trials = state.store.trials(study_id).await?;
    let parallel = state.scheduler.live_workers(state.store.workers().await?).len();
    let eta = crate::estimate::eta_inputs(state, &row, &trials).await;
    let progress = crate::progress::progress(&row, &trials, parallel, eta.as_ref());
    let best_trial = crate::progress::best_view(&trials);
    state
        .events
        .publish(study_id, Event::Progress { progress, best_trial });
    Ok(())
}

async fn workers_changed(
    state: &AppState,
    prev: &mut Option<HashSet<String>>,
) -> Result<(), tanren_store::StoreError> {
    let all = state.store.workers().await?;
    let live = state.scheduler.live_workers(all.clone());
    let now: HashSet<String> = live.iter().map(|w| w.id.clone()).collect();
    if let Some(before) = prev.as_ref() {
        let busy = state.scheduler.busy_workers().await;
        for w in live.iter().filter(|w| !before.contains(&w.id)) {
            state.events.publish_all(Event::WorkerUp {
                worker: worker_view(w, true, busy.get(&w.id).copied()),
            });
        }
        for id in before.iter().filter(|id| !now.contains(*id)) {
            state.events.publish_all(Event::WorkerDown {
                worker_id: id.clone(),
            });
        }
    }
    *prev = Some(now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: i64) -> Event {
        Event::WorkerDown {
            worker_id: format!("w{n}"),
        }
    }

    #[test]
    fn resume_replays_exactly_the_missing_events_or_asks_for_a_snapshot() {
        let hub = Hub::new(8, 4);
        for i in 0..6 {
            hub.publish(1, ev(i));
        }
        let seqs = |s: &Subscription| {
            s.replay
                .as_ref()
                .map(|r| r.iter().map(|f| f.seq).collect::<Vec<_>>())
        };
        assert_eq!(seqs(&hub.subscribe(1, Some(3))), Some(vec![4, 5, 6]));
        assert_eq!(seqs(&hub.subscribe(1, Some(6))), Some(vec![]));
        // The ring holds 3..=6: since=1 would miss seq 2, so the client gets a snapshot instead.
        assert_eq!(seqs(&hub.subscribe(1, Some(1))), None);
        assert_eq!(seqs(&hub.subscribe(1, Some(9))), None, "a seq from the future");
        assert_eq!(hub.subscribe(1, None).last, 6);
    }

    #[test]
    fn a_lagging_receiver_is_told_and_publishing_never_blocks() {
        let hub = Hub::new(4, 0);
        let mut sub = hub.subscribe(7, None);
        for i in 0..100 {
            hub.publish(7, ev(i));
        }
        assert!(matches!(
            sub.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(96))
        ));
    }

    #[test]
    fn messages_round_trip_with_a_flat_type_tag() {
        let hub = Hub::new(4, 4);
        hub.publish(
            2,
            Event::StudyFinished {
                state: "complete".into(),
                error: None,
                end_reason: Some("trial_budget".into()),
            },
        );
        let sub = hub.subscribe(2, Some(0));
        let json = &sub.replay.unwrap()[0].json;
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["seq"].as_u64()),
            (Some("study_finished"), Some(1))
        );
        let m: Message = serde_json::from_str(json).unwrap();
        assert!(matches!(m.event, Event::StudyFinished { .. }));
    }
}
