//! Stop mid-epoch: the worker stops within a training step, not at the end of the epoch, so the study
//! reads stopped at once and the worker takes the next trial within seconds while an epoch of the
//! stopped trial takes far longer.

use crate::common::shapes_zip;
use crate::harness::{check_clean, quick_study, quick_zip, Api, ControlSpec, WorkerSpec};
use crate::report;
use std::time::{Duration, Instant};

/// Generous for a loaded 2-core machine; an epoch of the slow trial takes several times this.
const BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_mid_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ControlSpec::new(dir.path(), "control");
    let _control = spec.start().await;
    let api = Api::new(&spec.url());
    let w = WorkerSpec::new(dir.path(), "w1", &spec.url());
    let worker = w.start(&api).await;

    // 180 images at 128 px through three wide blocks, batch 8, one CPU thread: tens of seconds an epoch.
    let slow = api.upload(shapes_zip(60, 3, 21)).await;
    let quick = api.upload(quick_zip()).await;
    let study = api
        .study(serde_json::json!({
            "dataset_id": slow,
            "bounds": {"epochs": {"low": 2, "high": 2}, "image_size": {"low": 128, "high": 128},
                       "conv_blocks": {"low": 3, "high": 3}, "channels": {"low": 64, "high": 64},
                       "batch_size": {"low": 8, "high": 8}},
            "budget": {"trials": 1},
            "sampler": "random"
        }))
        .await;
    // Training has begun (the worker said Started), then a little more.
    api.wait_until(Duration::from_secs(120), "the slow trial started", || async {
        api.trials(study)
            .await
            .first()
            .is_some_and(|t| t["device"].is_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let trial_id = api.trials(study).await[0]["id"].as_i64().unwrap();

    let stopped_at = Instant::now();
    let (status, s) = api
        .post(&format!("/api/v1/studies/{study}/stop"), &serde_json::json!({}))
        .await;
    assert_eq!((status, s["state"].as_str()), (200, Some("stopped")), "{s}");
    api.wait_until(BOUND, "the stopped trial ended", || async {
        api.get(&format!("/api/v1/trials/{trial_id}")).await["state"] == "failed"
    })
    .await;
    let t = api.get(&format!("/api/v1/trials/{trial_id}")).await;
    assert_eq!(t["failure_kind"], "stopped", "{t}");
    assert!(
        t["epochs"].as_array().unwrap().is_empty(),
        "the first epoch should still have been running when the stop came (else this test proves \
         nothing about stopping mid-epoch): {t}"
    );
    api.wait_until(BOUND, "the worker stopped training mid-epoch", || async {
        worker.log_text().contains("trial cancelled mid-epoch")
    })
    .await;
    let freed = stopped_at.elapsed();

    // The worker takes the next trial at once and finishes it.
    let next = api.study(quick_study(quick, 1, 1)).await;
    let done = api.wait_study(next, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "complete", "{done}");
    check_clean(&api, study, &spec.data_dir).await;
    check_clean(&api, next, &spec.data_dir).await;
    report::row(
        "stop mid-epoch",
        &format!(
            "stopped; worker free after {:.1} s (bound {} s)",
            freed.as_secs_f64(),
            BOUND.as_secs()
        ),
        "0",
        Some(freed),
    );
}
