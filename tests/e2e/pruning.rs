//! A study with a pruner stops weak trials between epochs: the worker is told (its stream is
//! cancelled), the trial ends `pruned` with the epochs it reported, and the study still completes.

use crate::common::{shapes_zip, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asha_prunes_weak_trials_and_the_study_completes() {
    let app = TestApp::spawn().await;
    app.spawn_worker("w1").await;
    let (status, ds) = app.upload(shapes_zip(30, 4, 21), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let body = serde_json::json!({
        "dataset_id": ds["id"],
        "bounds": {"epochs": {"low": 4, "high": 4}, "image_size": {"low": 16, "high": 16},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 4, "high": 8},
                   "learning_rate": {"low": 0.000001, "high": 0.01}},
        "budget": {"trials": 8},
        "sampler": "random",
        "pruner": {"type": "asha", "min_resource": 1, "reduction_factor": 3},
        "seed": 4
    });
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    assert_eq!(study["pruner"]["type"], "asha", "{study}");
    let id = study["id"].as_i64().unwrap();
    let done = app.wait_study(id, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "complete", "{done}");

    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let trials = trials["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8);
    let mut pruned = 0;
    for t in trials {
        let full = app.get(&format!("/api/v1/trials/{}", t["id"])).await;
        let epochs = full["epochs"].as_array().unwrap().len();
        match t["state"].as_str().unwrap() {
            "complete" => assert_eq!(epochs, 4, "{t}"),
            "pruned" => {
                pruned += 1;
                assert!(
                    (1..4).contains(&epochs),
                    "a pruned trial stops early with what it reported: {full}"
                );
                assert!(t["val_accuracy"].is_null() && t["error"].is_null(), "{t}");
            }
            other => panic!("trial ended {other}: {t}"),
        }
    }
    assert!(
        pruned >= 1,
        "ASHA with reduction factor 3 pruned none of 8 trials"
    );
    assert_eq!(done["progress"]["pruned"], pruned, "{done}");
    assert_eq!(
        done["progress"]["complete"].as_u64().unwrap() + pruned,
        8,
        "{done}"
    );
}
