//! What tests and benchmarks of the control plane share, without libtorch (this crate never links
//! it): the real control plane on port 0 with a fresh data dir (`App`), a fake worker serving the
//! real tonic worker service whose trials take a set time and score from their config (`fake`), one
//! whose trials follow a script of failures (`scripted`), and
//! fixtures (`seed`: a finished study of many trials written straight into the database).
//!
//! `crates/tanren-control/tests` use it through `tests/common`; `tanren-load` (bench/load) runs it
//! at scale.

pub mod app;
pub mod fake;
pub mod scripted;
pub mod seed;

pub use app::{App, ADMIN, JOIN};
pub use fake::{Behaviour, FakeWorker, Score};
pub use scripted::{ScriptedWorker, Step};
