//! One row of the fault table (`tests/faults/run.sh`): printed to stderr, and appended to the file
//! named by `TANREN_FAULTS_REPORT` when it is set, as `scenario | outcome | trials lost | recover`.

use std::io::Write;
use std::time::Duration;

pub fn row(scenario: &str, outcome: &str, trials_lost: &str, recover: Option<Duration>) {
    let recover = recover.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    let line = format!("{scenario} | {outcome} | {trials_lost} | {recover}");
    eprintln!("FAULT ROW: {line}");
    if let Ok(path) = std::env::var("TANREN_FAULTS_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot append to TANREN_FAULTS_REPORT {path}: {e}"));
        writeln!(f, "{line}").unwrap();
    }
}
