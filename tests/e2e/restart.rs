//! A control plane that restarts mid-study marks what was running as interrupted, rebuilds the
//! search-engine state from the database, and finishes the study with the workers that come back.

use crate::common::{shapes_zip, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_resumes_after_a_control_plane_restart() {
    let mut app = TestApp::spawn().await;
    app.spawn_worker("w1").await;
    let (status, ds) = app.upload(shapes_zip(10, 3, 9), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let body = serde_json::json!({
        "dataset_id": ds["id"],
        "bounds": {"epochs": {"low": 2, "high": 2}, "image_size": {"low": 16, "high": 16},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 4, "high": 8}},
        "budget": {"trials": 3},
        "sampler": "tpe",
        "seed": 11
    });
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    app.wait_until(Duration::from_secs(120), || async {
        app.get(&format!("/api/v1/studies/{id}")).await["progress"]["complete"]
            .as_u64()
            .unwrap()
            >= 1
    })
    .await;

    app.restart_control().await;

    let done = app.wait_study(id, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(done["progress"]["complete"], 3, "{done}");
    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let trials = trials["trials"].as_array().unwrap();
    let numbers: Vec<i64> = trials.iter().map(|t| t["number"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (0..numbers.len() as i64).collect();
    assert_eq!(
        numbers, expected,
        "trial numbers continue without gaps after the restart"
    );
    for t in trials {
        if t["state"] == "failed" {
            assert!(t["error"].as_str().unwrap().starts_with("interrupted:"), "{t}");
            assert_eq!(t["failure_kind"], "interrupted", "{t}");
            // Whatever the restart interrupted was retried with the same parameters.
            let retry = trials
                .iter()
                .find(|r| r["retry_of"] == t["id"])
                .unwrap_or_else(|| panic!("no retry of {t}"));
            assert_eq!(retry["params"], t["params"]);
        }
    }
}
