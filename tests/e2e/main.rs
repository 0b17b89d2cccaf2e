//! End-to-end tests: a real control plane and real libtorch workers (in-process or as processes) on
//! ephemeral ports, each with a fresh temp data dir and SQLite database.

mod auth;
mod common;
mod cuda_link;
mod probe;
mod pruning;
mod refusals;
// A row in the fault table of tests/faults/run.sh (worker_loss is its worker-SIGKILL scenario).
#[path = "../faults/report.rs"]
mod report;
mod restart;
mod serve;
mod slots;
mod spine;
mod tls;
mod wide_space;
mod worker_loss;
mod ws;
