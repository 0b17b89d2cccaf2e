//! Killing a worker process mid-trial fails that trial with a reason (it does not stay running), and
//! the study carries on when a worker is back.

use crate::common::{shapes_zip, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_fails_the_trial_and_the_study_resumes() {
    let app = TestApp::spawn().await;
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
    let start = std::time::Instant::now();
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
    let workers = app.get("/api/v1/workers").await;
    let doomed = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "doomed")
        .unwrap()
        .clone();
    assert_eq!(
        (doomed["busy"].as_bool(), doomed["trial_id"].as_i64()),
        (Some(true), Some(trial_id)),
        "{doomed}"
    );
    first.kill().unwrap();
    first.wait().unwrap();

    app.wait_until(Duration::from_secs(30), || async {
        app.get(&format!("/api/v1/trials/{trial_id}")).await["state"] == "failed"
    })
    .await;
    let t = app.get(&format!("/api/v1/trials/{trial_id}")).await;
    assert!(t["error"].as_str().unwrap().contains("interrupted"), "{t}");
    let s = app.get(&format!("/api/v1/studies/{id}")).await;
    assert_eq!(
        s["state"], "running",
        "an interrupted trial does not use the budget: {s}"
    );

    // A worker comes back; the study finishes its one trial.
    let mut second = app.spawn_worker_process("phoenix").await;
    let done = app.wait_study(id, Duration::from_secs(300)).await;
    second.kill().unwrap();
    let _ = second.wait();
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(done["progress"]["complete"], 1, "{done}");
    assert_eq!(done["progress"]["interrupted"], 1, "{done}");
    assert_eq!(done["best_trial"]["worker_id"], "phoenix");
}
