//! The advisor's probes on a real libtorch worker: `POST /datasets/{id}/advice` runs the `Probe` RPC
//! on the in-process CPU worker (range tests, batch sizes, epoch timings on a tiny generated
//! dataset), the answer carries what it measured, and the worker's slot is free again afterwards.

use crate::common::{shapes_zip, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_run_on_a_real_worker_and_free_it_again() {
    let app = TestApp::spawn().await;
    app.spawn_worker("prober").await;
    let (status, ds) = app.upload(shapes_zip(20, 5, 11), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let id = ds["id"].as_i64().unwrap();

    let body = json!({"optimizers": ["adam", "sgd"], "probe_seconds": 8});
    let (status, advice) = app.post(&format!("/api/v1/datasets/{id}/advice"), &body).await;
    assert_eq!(status, 200, "{advice}");
    let probe = &advice["probe"];
    assert_eq!(probe["ran"], true, "{probe}");
    assert_eq!(probe["worker_id"], "prober");
    let report = &probe["report"];
    assert_eq!(report["device"], "cpu");

    // One range test per optimizer: rising learning rates, a finite loss at least at the start, and
    // the steepest descent (when found) below the blow-up (when it came).
    let curves = report["lr"].as_array().unwrap();
    assert_eq!(curves.len(), 2, "{report}");
    for c in curves {
        let lrs: Vec<f64> = c["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(lrs.len() >= 10, "{c}");
        assert!(lrs.windows(2).all(|w| w[0] < w[1]), "{c}");
        assert!(c["losses"][0].as_f64().is_some_and(f64::is_finite), "{c}");
        if let (Some(s), Some(d)) = (c["steepest_lr"].as_f64(), c["divergence_lr"].as_f64()) {
            assert!(s < d, "{c}");
        }
    }
    // On a CPU: the knee of images/s, no memory limit.
    let batch = &report["batch"];
    assert!(batch["knee_batch"].as_u64().is_some(), "{batch}");
    assert!(batch["max_batch"].is_null(), "{batch}");
    // Epoch times of 3 to 5 configurations, which calibrate the estimate.
    let timing = report["timing"].as_array().unwrap();
    assert!((1..=5).contains(&timing.len()), "{report}");
    assert!(
        timing.iter().all(|t| t["epoch_seconds"].as_f64().unwrap() > 0.0),
        "{report}"
    );
    assert_eq!(
        advice["estimate"]["calibrated_on_probes"].as_u64(),
        Some(timing.len() as u64),
        "{advice}"
    );
    // What a trial does outside its epochs, timed on the base network: it calibrates the overhead.
    let overhead = &report["overhead"];
    assert!(
        overhead["prepare_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{overhead}"
    );
    assert!(
        overhead["tail_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{overhead}"
    );
    assert!(advice["suggestions"].as_array().unwrap().len() >= 6);

    // The worker is free again: a one-trial study with the advised bounds runs on it.
    let workers = app.get("/api/v1/workers").await;
    assert_eq!(workers["workers"][0]["busy"], false, "{workers}");
    let mut bounds = advice["bounds"].clone();
    bounds["epochs"] = json!({"low": 1, "high": 1});
    let (status, study) = app
        .post(
            "/api/v1/studies",
            &json!({"dataset_id": id, "bounds": bounds, "budget": {"trials": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{study}");
    let done = app
        .wait_study(study["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["progress"]["complete"], 1, "{done}");
}
