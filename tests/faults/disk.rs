//! The control plane's disk is full when a worker uploads weights (a full tmpfs under its models dir,
//! so only root can run this; otherwise the table says SKIPPED): each trial fails saying so, the study
//! fails after five in a row with that reason, and once space is freed the next study completes.

use crate::harness::{check_clean, is_root, quick_study, quick_zip, Api, ControlSpec, WorkerSpec};
use crate::report;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SCENARIO: &str = "disk full on weight write";

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn small_tmpfs(at: &Path) -> Option<Mount> {
    std::fs::create_dir_all(at).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_path_buf()))
}

/// Write until the file system says it is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_on_weight_write() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ControlSpec::new(dir.path(), "control");
    let models = spec.data_dir.join("models");
    let mount = if is_root() { small_tmpfs(&models) } else { None };
    let Some(_mount) = mount else {
        report::row(
            SCENARIO,
            "SKIPPED: needs root to mount a small tmpfs (CI runs as root)",
            "-",
            None,
        );
        return;
    };
    let filler = models.join("filler");
    fill(&filler);

    let _control = spec.start().await;
    let api = Api::new(&spec.url());
    let _worker = WorkerSpec::new(dir.path(), "w1", &spec.url()).start(&api).await;
    let ds = api.upload(quick_zip()).await;
    let study = api.study(quick_study(ds, 8, 2)).await;
    let done = api.wait_study(study, Duration::from_secs(300)).await;
    let error = done["error"].as_str().unwrap_or_default();
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        error.contains("disk is full") && error.contains("free space"),
        "the reason says what to do: {done}"
    );
    let trials = check_clean(&api, study, &spec.data_dir).await;
    assert_eq!(
        trials.len(),
        5,
        "five failures in a row end the study: {trials:?}"
    );

    // Space freed: the same worker's next trial completes.
    std::fs::remove_file(&filler).unwrap();
    let next = api.study(quick_study(ds, 1, 2)).await;
    let again = api.wait_study(next, Duration::from_secs(120)).await;
    assert_eq!(again["state"], "complete", "{again}");
    check_clean(&api, next, &spec.data_dir).await;
    report::row(
        SCENARIO,
        &format!(
            "study failed after 5 trials (\"...{}...\"); once space is freed the next completes",
            &error[error.find("disk is full").unwrap()..]
                .chars()
                .take(50)
                .collect::<String>()
        ),
        "0 (none had completed)",
        None,
    );
}
