//! The WebSocket event-stream contract (crate tanren_control::events): a snapshot then gapless deltas
//! while a real study runs, a late client's snapshot, resuming with `?since=`, unknown studies refused,
//! and a slow client dropped with a reason while publishing never waits.

use crate::common::{shapes_zip, ws_request, TestApp};
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(base: &str, study: i64, query: &str) -> Client {
    let url = format!(
        "{}/api/v1/studies/{study}/events{query}",
        base.replacen("http", "ws", 1)
    );
    tokio_tungstenite::connect_async(ws_request(&url))
        .await
        .expect("websocket connects")
        .0
}

/// The next JSON message, or `None` on close (with the close frame's code and reason, if any).
async fn next(c: &mut Client, timeout: Duration) -> Result<Value, Option<(u16, String)>> {
    loop {
        let m = tokio::time::timeout(timeout, c.next())
            .await
            .expect("a message within the timeout");
        match m {
            Some(Ok(Ws::Text(t))) => return Ok(serde_json::from_str(&t).expect("JSON message")),
            Some(Ok(Ws::Close(f))) => return Err(f.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

fn ty(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_study_streams_snapshot_then_gapless_deltas_and_late_clients_resume() {
    let app = TestApp::spawn().await;
    app.spawn_worker("w1").await;
    let (status, ds) = app.upload(shapes_zip(16, 6, 5), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let (status, study) = app
        .post(
            "/api/v1/studies",
            &serde_json::json!({
                "dataset_id": ds["id"],
                "bounds": {
                    "epochs": {"low": 2, "high": 2},
                    "image_size": {"low": 16, "high": 16},
                    "batch_size": {"low": 16, "high": 16},
                    "conv_blocks": {"low": 1, "high": 1},
                    "channels": {"low": 8, "high": 8}
                },
                "budget": {"trials": 2},
                "sampler": "random"
            }),
        )
        .await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();

    // A client watching from the start: a snapshot, then deltas numbered one by one until the end.
    let mut c = connect(&app.url, id, "").await;
    let snap = next(&mut c, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ty(&snap), "snapshot", "{snap}");
    assert_eq!(snap["study_id"], id);
    assert_eq!(snap["study"]["id"], id);
    let stream = snap["stream"].as_u64().unwrap();
    let mut seq = snap["seq"].as_u64().unwrap();
    let mut deltas = Vec::new();
    let mut trials: std::collections::BTreeMap<i64, String> = snap["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    loop {
        let m = next(&mut c, Duration::from_secs(300))
            .await
            .expect("stream stays open");
        assert_eq!(m["seq"].as_u64().unwrap(), seq + 1, "no gap after seq {seq}: {m}");
        seq += 1;
        if let Some(t) = m.get("trial") {
            trials.insert(
                t["id"].as_i64().unwrap(),
                t["state"].as_str().unwrap().to_string(),
            );
        }
        let done = ty(&m) == "study_finished";
        deltas.push(m);
        if done {
            break;
        }
    }
    let kinds: Vec<&str> = deltas.iter().map(ty).collect();
    for k in ["trial_queued", "trial_started", "trial_completed", "progress"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // The first trial may have reported epochs before this client connected: those are in the
    // snapshot's curves, the rest arrive as deltas.
    let epochs = kinds.iter().filter(|k| **k == "trial_epoch").count();
    let in_snapshot: usize = snap["curves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["points"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        epochs + in_snapshot,
        4,
        "two trials of two epochs: {kinds:?} + {in_snapshot} in the snapshot"
    );
    let finished = deltas.last().unwrap();
    assert_eq!(finished["state"], "complete", "{finished}");
    // Applying the deltas gives the state the REST API reports.
    let rest = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let rest: std::collections::BTreeMap<i64, String> = rest["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(trials, rest);
    // A progress event follows the end (debounced), with the final counts.
    let last_progress = loop {
        let m = next(&mut c, Duration::from_secs(10)).await.unwrap();
        assert_eq!(m["seq"].as_u64().unwrap(), seq + 1);
        seq += 1;
        deltas.push(m.clone());
        if ty(&m) == "progress" && m["progress"]["eta_seconds"] == 0.0 {
            break m;
        }
    };
    assert_eq!(last_progress["progress"]["complete"], 2, "{last_progress}");
    assert!(last_progress["best_trial"]["val_accuracy"].as_f64().is_some());
    drop(c);

    // A late client gets the whole finished study in its snapshot, learning curves included.
    let mut late = connect(&app.url, id, "").await;
    let snap = next(&mut late, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ty(&snap), "snapshot");
    assert_eq!(snap["seq"].as_u64().unwrap(), seq);
    assert_eq!(snap["study"]["state"], "complete");
    assert_eq!(snap["study"]["progress"]["done"], 2);
    assert_eq!(snap["trials"].as_array().unwrap().len(), 2);
    let curves = snap["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2);
    assert!(curves.iter().all(|c| c["points"].as_array().unwrap().len() == 2));
    assert_eq!(snap["curves_omitted"], 0);

    // Resuming from the middle replays exactly what followed, byte for byte the same events.
    let from = deltas.iter().find(|m| ty(m) == "trial_epoch").unwrap()["seq"]
        .as_u64()
        .unwrap();
    let mut again = connect(&app.url, id, &format!("?since={from}&stream={stream}")).await;
    for want in deltas.iter().filter(|m| m["seq"].as_u64().unwrap() > from) {
        let got = next(&mut again, Duration::from_secs(10)).await.unwrap();
        assert_eq!(&got, want);
    }
    // A `since` from another process's numbering cannot be trusted: a snapshot instead.
    let mut other = connect(&app.url, id, &format!("?since={from}&stream=1")).await;
    assert_eq!(
        ty(&next(&mut other, Duration::from_secs(10)).await.unwrap()),
        "snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_study_is_refused_before_the_upgrade() {
    let app = TestApp::spawn().await;
    let url = format!("{}/api/v1/studies/999/events", app.url.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(ws_request(&url)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
}

/// On a current-thread runtime the publishing loop runs to its end before the server's connection task
/// runs again, so the client is behind by construction, not by timing luck.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_client_is_dropped_with_a_reason_and_can_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tanren_control::Config::new(dir.path().join("control"));
    config.event_buffer = 16;
    config.event_ring = 10_000;
    config.admin_token = Some(crate::common::ADMIN_TOKEN.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tanren_control::start(config, listener, shutdown.clone())
        .await
        .unwrap();
    let (url, state) = (server.url().to_string(), server.state.clone());
    tokio::spawn(server.serve());
    let store = &state.store;
    let ds = store
        .insert_dataset(tanren_store::NewDataset {
            name: "d",
            sha256: "00",
            num_classes: 2,
            num_train: 1,
            num_test: 1,
            size_bytes: 1,
            summary: "{}",
        })
        .await
        .unwrap();
    let study = store
        .insert_study(tanren_store::NewStudy {
            name: "s",
            dataset_id: ds.id,
            spec: "{}",
            max_trials: Some(1),
            max_minutes: None,
        })
        .await
        .unwrap();

    let mut c = connect(&url, study.id, "").await;
    let snap = next(&mut c, Duration::from_secs(10)).await.unwrap();
    assert_eq!((ty(&snap), snap["seq"].as_u64()), ("snapshot", Some(0)));
    let stream = snap["stream"].as_u64().unwrap();

    let started = Instant::now();
    let metrics = tanren_core::EpochMetrics {
        epoch: 1,
        train_loss: 1.0,
        val_loss: 1.0,
        val_accuracy: 0.5,
        elapsed_seconds: 1.0,
    };
    for i in 0..5000 {
        state.events.epoch(study.id, i, i, &metrics);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "publishing waited for the client: {:?}",
        started.elapsed()
    );

    let mut last = 0;
    let close = loop {
        match next(&mut c, Duration::from_secs(10)).await {
            Ok(m) => last = m["seq"].as_u64().unwrap(),
            Err(close) => break close,
        }
    };
    let (code, reason) = close.expect("a close frame with a reason");
    assert_eq!(code, u16::from(CloseCode::Policy), "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    assert!(reason.contains(&format!("since={last}")), "{reason}");
    assert!(last < 5000);

    // Reconnecting from the last seq seen gets every missing event, in order.
    let mut again = connect(&url, study.id, &format!("?since={last}&stream={stream}")).await;
    for want in last + 1..=5000 {
        let m = next(&mut again, Duration::from_secs(10)).await.unwrap();
        assert_eq!(m["seq"].as_u64(), Some(want));
        assert_eq!(ty(&m), "trial_epoch");
    }
    let _ = again.close(None).await;
    shutdown.cancel();
}
