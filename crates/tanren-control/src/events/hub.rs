//! The in-memory hub: numbers each study's events, keeps a ring of the recent ones for resuming
//! clients, and fans them out over a broadcast channel. Nothing here reads the store or waits for a
//! client.

use super::{Event, Message};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tanren_core::{EpochMetrics, TrialState};
use tanren_store::{now_ms, TrialRow};
use tokio::sync::{broadcast, Notify};

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
    pub(super) wake: Notify,
}

/// Forget the ring of a finished study nobody watches after this long.
const FORGET_AFTER_MS: i64 = 10 * 60_000;

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
        let trial = crate::views::trial(t);
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

    pub(super) fn take_dirty(&self) -> Vec<i64> {
        self.dirty.lock().expect("hub lock").drain().collect()
    }

    pub(super) fn forget_idle(&self) {
        let now = now_ms();
        self.channels.lock().expect("hub lock").retain(|_, ch| {
            ch.tx.receiver_count() > 0 || ch.finished_at.is_none_or(|t| now - t < FORGET_AFTER_MS)
        });
    }
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
