//! Fault scenarios with real processes: the control plane binary (`tanren-e2e-control`, the real
//! `main.rs`), worker processes (`tanren-e2e-worker`), a TCP proxy the test cuts, a PostgreSQL server
//! of the test's own. Each scenario ends with the same checks (`harness::check_clean`): the study
//! finished with its budgeted trials complete (or failed with a reason a person can act on), nothing
//! left queued or running, no complete trial lost, no orphan or half-written file. Each writes one row
//! of the table `tests/faults/run.sh` prints (`report.rs`).

#[allow(dead_code)]
#[path = "../e2e/common.rs"]
mod common;
mod harness;
mod report;

mod disk;
mod network;
mod postgres;
mod restart;
mod stop;
mod workers;
