//! From a study to predictions: a real study on a real worker, its best model downloaded from the
//! control plane, served by tanren-serve, asked about every test image (by HTTP and with
//! `tanren predict`) — and the answers are the worker's own test-split predictions, class for class.

use crate::common::{shapes_zip, TestApp};
use std::io::Read;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn served_predictions_equal_the_workers_test_predictions() {
    let app = TestApp::spawn().await;
    app.spawn_worker("w1").await;
    let (status, ds) = app.upload(shapes_zip(30, 10, 11), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let (status, study) = app
        .post(
            "/api/v1/studies",
            &serde_json::json!({
                "dataset_id": ds["id"],
                "bounds": {"epochs": {"low": 2, "high": 2}, "image_size": {"low": 20, "high": 20}},
                "budget": {"trials": 1},
                "seed": 5
            }),
        )
        .await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    let done = app.wait_study(id, Duration::from_secs(600)).await;
    assert_eq!(done["state"], "complete", "{done}");
    let best = &done["best_trial"];

    // Serve the study's best model straight from the control plane (`--control-url … --study N`).
    let dir = tempfile::tempdir().unwrap();
    let mut config = tanren_serve::Config::new(vec![tanren_serve::ModelSource::Study {
        name: "best".into(),
        control_url: app.url.clone(),
        study: id,
        token: Some(crate::common::ADMIN_TOKEN.into()),
        ca_cert: None,
    }]);
    config.device = "cpu".into();
    config.data_dir = dir.path().join("serve");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(tanren_serve::run(config, listener, shutdown.clone()));
    app.wait_until(Duration::from_secs(60), || async {
        app.http
            .get(format!("{url}/v2/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // The test images in the worker's order: the manifest of an independent ingest of the same zip.
    let mut card = String::new();
    zip::ZipArchive::new(std::fs::File::open(dir.path().join(format!("serve/study-{id}.zip"))).unwrap())
        .unwrap()
        .by_name("model.json")
        .unwrap()
        .read_to_string(&mut card)
        .unwrap();
    let card: serde_json::Value = serde_json::from_str(&card).unwrap();
    let sha = card["provenance"]["dataset_sha256"].as_str().unwrap();
    let ds_dir = dir.path().join("ds");
    let manifest = tanren_dataset::ingest_zip(
        &app.data_path(&format!("control/datasets/{sha}.zip")),
        &ds_dir,
        &Default::default(),
        1,
    )
    .unwrap();
    let paths: Vec<_> = manifest
        .samples(tanren_dataset::Split::Test)
        .iter()
        .map(|s| ds_dir.join(&s.path))
        .collect();
    let mut form = reqwest::multipart::Form::new();
    for p in &paths {
        form = form.part(
            "image",
            reqwest::multipart::Part::bytes(std::fs::read(p).unwrap()).file_name("t.png"),
        );
    }
    let r = app
        .http
        .post(format!("{url}/v1/models/best/classify"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let served: Vec<i64> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["index"].as_i64().unwrap())
        .collect();
    let trial = app.get(&format!("/api/v1/trials/{}", best["id"])).await;
    let worker: Vec<i64> = trial["result"]["test_predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert_eq!(
        served, worker,
        "tanren-serve predicts what the worker predicted on the test split"
    );

    // The same through the CLI, one line per file, in order.
    let exe = std::env::current_exe().unwrap();
    let tanren = exe.parent().and_then(|d| d.parent()).unwrap().join("tanren");
    assert!(
        tanren.exists(),
        "build the CLI first (cargo build --release --bins)"
    );
    let out = std::process::Command::new(&tanren)
        .args(["predict", "--server", &url, "--chunk", "7"])
        .args(&paths)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let classes: Vec<String> = card["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), paths.len());
    for ((line, p), w) in lines.iter().zip(&paths).zip(&worker) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], p.display().to_string());
        assert_eq!(cols[1], classes[*w as usize], "{line}");
    }

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
