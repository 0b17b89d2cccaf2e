//! Killing a worker process mid-trial (SIGKILL, default control-plane settings) interrupts that trial:
//! it ends failed with kind `interrupted`, the worker is down at once, the study keeps running, and when
//! the worker comes back (same id, new address) the trial is retried there with the same parameters and
//! the study completes. Interruptions use no budget and never count as the study's failures.

use crate::common::{shapes_zip, TestApp};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_comes_back_and_the_trial_is_retried() {
    // Default settings: 20 s worker timeout, 2 retries (only the tick is quicker).
    let app = TestApp::spawn_with(|c| {
        let defaults = tanren_control::Config::new(c.data_dir.clone());
        c.worker_timeout = defaults.worker_timeout;
        c.max_retries = defaults.max_retries;
    })
    .await;
    let mut first = app.spawn_worker_process("doomed").await;
    let (status, ds) = app.upload(shapes_zip(10, 3, 5), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    // Many short epochs: long enough to be killed in the middle, short enough to finish afterwards.
    let body = serde_json::json!({
        "dataset_id": ds["id"],
        "bounds": {"epochs": {"low": 60, "high": 60}, "image_size": {"low": 16, "high": 16},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 4, "high": 4},
                   "batch_size": {"low": 16, "high": 16}},
        "budget": {"trials": 1},
        "sampler": "random"
    });
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();

    // Wait until the first trial has reported an epoch, then kill the worker outright.
    let start = Instant::now();
    let trial_id = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch reported in time"
        );
        let ts = app.get(&format!("/api/v1/studies/{id}/trials")).await;
        if let Some(t) = ts["trials"].as_array().unwrap().first() {
            let trial_id = t["id"].as_i64().unwrap();
            let full = app.get(&format!("/api/v1/trials/{trial_id}")).await;
            if !full["epochs"].as_array().unwrap().is_empty() {
                break trial_id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let worker = |workers: serde_json::Value| {
        workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == "doomed")
            .unwrap()
            .clone()
    };
    let doomed = worker(app.get("/api/v1/workers").await);
    assert_eq!(
        (doomed["busy"].as_bool(), doomed["trial_id"].as_i64()),
        (Some(true), Some(trial_id)),
        "{doomed}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();

    app.wait_until(Duration::from_secs(10), || async {
        app.get(&format!("/api/v1/trials/{trial_id}")).await["state"] == "failed"
    })
    .await;
    let t = app.get(&format!("/api/v1/trials/{trial_id}")).await;
    assert_eq!(t["failure_kind"], "interrupted", "{t}");
    let down = worker(app.get("/api/v1/workers").await);
    assert_eq!(
        down["alive"], false,
        "down at once, not after the 20 s timeout: {down}"
    );

    // Back after ~8 s, longer than any cool-down, shorter than the heartbeat timeout.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(killed.elapsed())).await;
    let s = app.get(&format!("/api/v1/studies/{id}")).await;
    assert_eq!(
        s["state"], "running",
        "an interrupted trial neither uses the budget nor fails the study: {s}"
    );
    let mut second = app.spawn_worker_process("doomed").await;
    app.wait_until(Duration::from_secs(60), || async {
        let ts = app.get(&format!("/api/v1/studies/{id}/trials")).await;
        ts["trials"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["retry_of"] == trial_id && t["state"] != "queued")
    })
    .await;
    let recovered = killed.elapsed();
    let done = app.wait_study(id, Duration::from_secs(300)).await;
    second.kill().unwrap();
    let _ = second.wait();
    assert_eq!(
        (done["state"].as_str(), done["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{done}"
    );
    assert_eq!(done["progress"]["complete"], 1, "{done}");
    assert_eq!(done["progress"]["interrupted"], 1, "{done}");
    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let trials = trials["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2, "{trials:?}");
    let retry = &trials[1];
    assert_eq!(retry["retry_of"], trial_id, "{retry}");
    assert_eq!(retry["params"], t["params"], "retried with the same parameters");
    assert_eq!(retry["worker_id"], "doomed");
    assert_eq!(done["best_trial"]["id"], retry["id"]);
    crate::report::row(
        "worker SIGKILL mid-trial (defaults; back after 8 s)",
        "complete 1/1; the trial interrupted at once, retried on the returning worker",
        "0",
        Some(recovered),
    );
}
