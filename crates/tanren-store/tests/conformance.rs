//! One conformance suite for every backend: always on a fresh SQLite file; also on PostgreSQL when
//! `TANREN_TEST_POSTGRES_URL` points at an empty database.

use tanren_core::{EndReason, EpochMetrics, FailureKind, StudyState, TrialResult, TrialState};
use tanren_store::{FinishedTrial, NewDataset, NewStudy, Store, WorkerRow};

fn result(acc: f64) -> TrialResult {
    TrialResult {
        val_accuracy: acc,
        val_loss: 0.5,
        test_accuracy: acc - 0.01,
        test_loss: 0.6,
        per_class_accuracy: vec![acc, acc],
        confusion: vec![vec![3, 1], vec![0, 4]],
        test_predictions: vec![0, 0, 1, 1],
        train_seconds: 1.5,
        prepare_seconds: 0.25,
        inference_ms_per_image: 0.125,
        inference_images_per_second: 8000.0,
        parameter_count: 1234,
        model_bytes: 5000,
        epochs_completed: 2,
        device: "cpu".into(),
        stopped_early: false,
        peak_memory_bytes: Some(1 << 20),
    }
}

async fn exercise(store: Store) {
    let d = store
        .insert_dataset(NewDataset {
            name: "shapes",
            sha256: "ab",
            num_classes: 2,
            num_train: 10,
            num_test: 4,
            size_bytes: 999,
            summary: "{}",
        })
        .await
        .unwrap();
    assert_eq!(store.dataset_by_sha("ab").await.unwrap().unwrap().id, d.id);
    assert!(store.dataset_by_sha("cd").await.unwrap().is_none());
    let dup = store
        .insert_dataset(NewDataset {
            name: "again",
            sha256: "ab",
            num_classes: 2,
            num_train: 10,
            num_test: 4,
            size_bytes: 999,
            summary: "{}",
        })
        .await;
    assert!(dup.is_err(), "sha256 is unique");

    let s = store
        .insert_study(NewStudy {
            name: "s",
            dataset_id: d.id,
            spec: "{}",
            max_trials: Some(3),
            max_minutes: Some(1.5),
        })
        .await
        .unwrap();
    assert_eq!(s.state, "running");
    assert_eq!(s.max_minutes, Some(1.5));
    let t = store.insert_trial(s.id, 0, "{\"lr\":0.001}", "{}").await.unwrap();
    assert_eq!(t.state, "queued");
    store.start_trial(t.id, "w1").await.unwrap();
    store.set_trial_device(t.id, "cpu").await.unwrap();
    let epoch = |e: u32| EpochMetrics {
        epoch: e,
        train_loss: 1.0 / e as f64,
        val_loss: 0.9,
        val_accuracy: 0.1 * e as f64,
        elapsed_seconds: e as f64,
    };
    store.insert_epoch(t.id, &epoch(1)).await.unwrap();
    // Epoch 2 could not be stored while the trial ran: it comes with the result, and epoch 1 given
    // again is not a conflict.
    let r = result(0.875);
    let finished = FinishedTrial {
        state: TrialState::Complete,
        result: &r,
        epochs: &[epoch(1), epoch(2)],
        weights_path: Some("models/1/model.safetensors"),
        model_sha256: Some("beef"),
    };
    store.finish_trial(t.id, &finished).await.unwrap();
    assert!(
        store.finish_trial(9999, &finished).await.is_err(),
        "finishing a trial that does not exist is an error, not a silent no-op"
    );
    let got = store.trial(t.id).await.unwrap();
    assert_eq!(
        (got.state.as_str(), got.val_accuracy, got.parameter_count),
        ("complete", Some(0.875), Some(1234))
    );
    assert_eq!(got.worker_id.as_deref(), Some("w1"));
    assert_eq!(
        (
            got.weights_path.as_deref(),
            got.model_sha256.as_deref(),
            got.failure_kind.as_deref()
        ),
        (Some("models/1/model.safetensors"), Some("beef"), None)
    );
    assert_eq!((got.attempt, got.retry_of), (0, None));
    let r: TrialResult = serde_json::from_str(got.result.as_deref().unwrap()).unwrap();
    assert_eq!(r, result(0.875), "the result JSON round-trips exactly");
    assert_eq!(store.epochs(t.id).await.unwrap().len(), 2);
    assert_eq!(store.epochs_for_study(s.id).await.unwrap().len(), 2);

    // A finished trial cannot be failed afterwards; an unfinished one is failed at restart.
    store
        .end_trial_without_result(t.id, TrialState::Failed, Some(FailureKind::Error), Some("late"))
        .await
        .unwrap();
    assert_eq!(store.trial(t.id).await.unwrap().state, "complete");
    let t2 = store.insert_trial(s.id, 1, "{}", "{}").await.unwrap();
    store.start_trial(t2.id, "w1").await.unwrap();
    assert_eq!(
        store
            .fail_unfinished_trials("interrupted: restart")
            .await
            .unwrap(),
        1
    );
    let t2 = store.trial(t2.id).await.unwrap();
    assert_eq!(
        (t2.state.as_str(), t2.error.as_deref(), t2.failure_kind.as_deref()),
        ("failed", Some("interrupted: restart"), Some("interrupted"))
    );
    assert!(
        store.insert_trial(s.id, 1, "{}", "{}").await.is_err(),
        "trial numbers are unique per study"
    );
    assert_eq!(
        store.trial_by_number(s.id, 1).await.unwrap().map(|t| t.id),
        Some(t2.id)
    );
    assert!(store.trial_by_number(s.id, 7).await.unwrap().is_none());
    // A retry is a new trial (new number, same parameters) that points at the attempt it repeats.
    let t3 = store
        .insert_trial_attempt(s.id, 2, "{}", "{}", Some(t2.id), 1)
        .await
        .unwrap();
    assert_eq!(
        (t3.retry_of, t3.attempt, t3.state.as_str()),
        (Some(t2.id), 1, "queued")
    );
    store
        .end_trial_without_result(
            t3.id,
            TrialState::Failed,
            Some(FailureKind::Interrupted),
            Some("lost"),
        )
        .await
        .unwrap();
    store
        .set_failure_kind(t3.id, FailureKind::RetriesExhausted, "gave up")
        .await
        .unwrap();
    let t3 = store.trial(t3.id).await.unwrap();
    assert_eq!(
        (t3.failure_kind.as_deref(), t3.error.as_deref()),
        (Some("retries_exhausted"), Some("gave up"))
    );

    // The reads that do not load every trial: pages (keyset on id, no result blob, no config),
    // light rows (no result blob), counts by state and failure kind, and the complete trials' scores.
    let ids: Vec<i64> = [t.id, t2.id, t3.id].into();
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.trial_page(s.id, after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|p| p.result.is_none() && p.config.is_empty()));
        after = page.last().map(|p| p.id);
        walked.extend(page.iter().map(|p| p.id));
    }
    assert_eq!(walked, ids, "pages walk every trial once, in id order");
    let light = store.trials_light(s.id).await.unwrap();
    assert_eq!(light.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    assert!(light.iter().all(|t| t.result.is_none() && t.config == "{}"));
    assert_eq!(light[0].val_accuracy, Some(0.875));
    let mut counts: Vec<(String, Option<String>, i64)> = store
        .trial_counts(s.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.state, c.failure_kind, c.count))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("complete".into(), None, 1),
            ("failed".into(), Some("interrupted".into()), 1),
            ("failed".into(), Some("retries_exhausted".into()), 1)
        ]
    );
    let scores = store.complete_scores(s.id).await.unwrap();
    assert_eq!(
        scores
            .iter()
            .map(|c| (c.id, c.number, c.val_accuracy, c.inference_ms))
            .collect::<Vec<_>>(),
        [(t.id, 0, 0.875, Some(0.125))]
    );

    assert!(store
        .finish_study(s.id, StudyState::Complete, EndReason::MinutesBudget, None)
        .await
        .unwrap());
    assert!(
        !store
            .finish_study(s.id, StudyState::Failed, EndReason::Failed, Some("x"))
            .await
            .unwrap(),
        "a finished study keeps its state"
    );
    let done = store.study(s.id).await.unwrap();
    assert_eq!(
        (done.state.as_str(), done.end_reason.as_deref(), done.error),
        ("complete", Some("minutes_budget"), None)
    );
    assert!(store
        .studies_in_state(StudyState::Running)
        .await
        .unwrap()
        .is_empty());

    let mut w = WorkerRow {
        id: "w1".into(),
        grpc_url: "http://127.0.0.1:1".into(),
        device: "cpu".into(),
        device_name: "cpu".into(),
        torch_version: "2.11.0".into(),
        cuda_available: 0,
        slots: 1,
        registered_at: 1,
        last_seen_at: 1,
    };
    store.upsert_worker(&w).await.unwrap();
    w.last_seen_at = 2;
    w.grpc_url = "http://127.0.0.1:2".into();
    store.upsert_worker(&w).await.unwrap();
    let ws = store.workers().await.unwrap();
    assert_eq!(ws.len(), 1);
    assert_eq!(
        (ws[0].last_seen_at, ws[0].registered_at, ws[0].grpc_url.as_str()),
        (2, 1, "http://127.0.0.1:2")
    );
    assert_eq!(
        store.forget_workers(2).await.unwrap(),
        0,
        "seen at 2 is not before 2"
    );
    assert_eq!(store.forget_workers(3).await.unwrap(), 1);
    assert!(store.workers().await.unwrap().is_empty());
    assert!(matches!(
        store.study(999).await,
        Err(tanren_store::StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    exercise(Store::connect(&url).await.unwrap()).await;
    // Reconnecting runs no migration twice.
    Store::connect(&url).await.unwrap();
}

#[tokio::test]
async fn postgres_conformance() {
    let Ok(url) = std::env::var("TANREN_TEST_POSTGRES_URL") else {
        eprintln!("TANREN_TEST_POSTGRES_URL not set; PostgreSQL conformance not run");
        return;
    };
    exercise(Store::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn unknown_url_scheme_is_refused() {
    assert!(matches!(
        Store::connect("mysql://x").await,
        Err(tanren_store::StoreError::UnsupportedUrl(_))
    ));
}
