//! What the control plane's REST-level tests share lives in `tanren-testkit` (also used by the load
//! bench): the real control plane on port 0 (temp data dir, SQLite, a fake dataset row) and a fake
//! worker serving the real tonic service without libtorch, whose trial results come from a function
//! of the trial's config.

#![allow(unused_imports)] // each test file uses part of it

pub use tanren_testkit::{App, Score, ADMIN, JOIN};
