//! The control plane SIGKILLed mid-study and started again on the same data dir: what was running is
//! interrupted and retried, completed trials stay, the study completes.

use crate::harness::{check_clean, quick_study, quick_zip, Api, ControlSpec, WorkerSpec};
use crate::report;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_sigkill_mid_study() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ControlSpec::new(dir.path(), "control");
    let mut control = spec.start().await;
    let api = Api::new(&spec.url());
    let _worker = WorkerSpec::new(dir.path(), "w1", &spec.url()).start(&api).await;
    let ds = api.upload(quick_zip()).await;
    let study = api.study(quick_study(ds, 4, 15)).await;
    let running = api.wait_running_after(study, 1, Duration::from_secs(180)).await;
    let before = api.completed_ids(study).await;

    control.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _control = spec.start().await;
    // Recovered once a trial runs again (the worker re-registered with the new process).
    let running_id = running["id"].as_i64().unwrap();
    api.wait_until(
        Duration::from_secs(60),
        "a trial running after the restart",
        || async {
            api.trials(study)
                .await
                .iter()
                .any(|t| t["state"] == "running" && t["id"].as_i64() > Some(running_id))
        },
    )
    .await;
    let recovered = killed.elapsed();

    let done = api.wait_study(study, Duration::from_secs(300)).await;
    assert_eq!(
        (done["state"].as_str(), done["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{done}"
    );
    assert_eq!(done["progress"]["complete"], 4, "{done}");
    let after = api.completed_ids(study).await;
    let lost: Vec<_> = before.iter().filter(|id| !after.contains(id)).collect();
    assert!(lost.is_empty(), "complete trials lost: {lost:?}");
    let t = api.get(&format!("/api/v1/trials/{running_id}")).await;
    assert_eq!(t["failure_kind"], "interrupted", "{t}");
    let trials = check_clean(&api, study, &spec.data_dir).await;
    assert!(
        trials.iter().any(|r| r["retry_of"] == running_id),
        "the interrupted trial was retried"
    );
    report::row(
        "control plane SIGKILL mid-study, restart",
        "complete 4/4; the running trial interrupted and retried",
        "0",
        Some(recovered),
    );
}
