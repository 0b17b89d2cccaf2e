//! A real worker with `--slots 2` trains two trials at once on its one device, and refuses a trial
//! whose estimated memory is larger than the device with the estimate and the limit.

use crate::common::{shapes_zip, TestApp};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_two_slots_trains_two_trials_at_once() {
    let app = TestApp::spawn().await;
    app.spawn_worker_with_slots("w2", 2).await;
    let workers = app.get("/api/v1/workers").await;
    assert_eq!(workers["workers"][0]["slots"], 2, "{workers}");
    let (status, ds) = app.upload(shapes_zip(20, 4, 5), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let body = json!({
        "dataset_id": ds["id"],
        "bounds": {"epochs": {"low": 3, "high": 3}, "image_size": {"low": 16, "high": 16},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 4, "high": 8}},
        "budget": {"trials": 4},
        "sampler": "random",
        "seed": 3
    });
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    // Two trials training at the same moment: both running, both past the worker's `Started` (which
    // it sends once it admitted the trial and prepared its data), neither finished.
    let start = Instant::now();
    let mut most = 0;
    loop {
        let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
        let training = trials["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "running" && t["device"].is_string())
            .count();
        most = most.max(training);
        let s = app.get(&format!("/api/v1/studies/{id}")).await;
        if most >= 2 || s["state"] != "running" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most, 2, "the worker never trained two trials at once");
    let done = app.wait_study(id, Duration::from_secs(120)).await;
    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    assert_eq!(
        (done["state"].as_str(), done["progress"]["complete"].as_u64()),
        (Some("complete"), Some(4)),
        "{trials}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_larger_than_the_device_is_refused_naming_the_estimate_and_the_limit() {
    let app = TestApp::spawn().await;
    app.spawn_worker_with_slots("w2", 2).await;
    let (status, ds) = app.upload(shapes_zip(6, 2, 9), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    // 512 px, 512 channels, batch 4096: terabytes of activations, on any host.
    let body = json!({
        "dataset_id": ds["id"],
        "bounds": {"image_size": {"low": 512, "high": 512}, "batch_size": {"low": 4096, "high": 4096},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 512, "high": 512},
                   "epochs": {"low": 1, "high": 1}},
        "budget": {"trials": 1},
        "sampler": "random",
        "seed": 1
    });
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    let done = app.wait_study(id, Duration::from_secs(60)).await;
    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let t = &trials["trials"][0];
    assert_eq!(
        (t["state"].as_str(), t["failure_kind"].as_str()),
        (Some("failed"), Some("error")),
        "{done} {t}"
    );
    let error = t["error"].as_str().unwrap();
    assert!(
        error.contains("needs about") && error.contains("in all") && error.contains("batch 4096"),
        "{error}"
    );
}
