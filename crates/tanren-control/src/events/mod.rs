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

//!
//! Layout: the message schema is `tanren_api::events` (the contract); `hub.rs` the in-memory hub (pure: no store, no clock but
//! `now_ms` for forgetting idle rings); `publish.rs` the publishers that read the store and feed the hub.

mod hub;
mod publish;

pub use hub::{Frame, Hub, Subscription};
pub use publish::{run, study_finished, trial_changed};

pub use tanren_api::events::{Curve, Event, Message, Snapshot};
pub use tanren_api::{Trial, WorkerView};
