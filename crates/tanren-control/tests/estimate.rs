//! The cost estimate and the warnings about bounds on the real control plane (port 0, temp data dir,
//! SQLite), before any worker exists: `POST /api/v1/studies` answers with both and keeps the
//! warnings for the study page; `POST /api/v1/studies/estimate` answers the same without creating
//! anything; a batch larger than the training set is a warning naming the limit.

mod common;

use common::App;
use serde_json::{json, Value};

/// A dataset row of 400 training and 100 test images in 10 classes (no files: the statistics of
/// the images are then unknown, and only the counts inform the checks).
async fn spawn() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn_with(dir.path(), 10, 400, 100).await;
    (dir, app)
}

fn warned(body: &Value) -> Vec<String> {
    body["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings list: {body}"))
        .iter()
        .map(|w| w["param"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_estimate_and_warnings_and_the_study_keeps_them() {
    let (_dir, app) = spawn().await;
    let absurd = json!({
        "dataset_id": app.dataset_id,
        "bounds": {
            "learning_rate": {"low": 1e-7, "high": 5.0},
            "epochs": {"low": 1, "high": 500},
            "image_size": {"low": 28, "high": 512},
        },
        "budget": {"trials": 10, "minutes": 5},
    });
    // The dry run: the same answer, and no study.
    let (status, dry) = app.post("/api/v1/studies/estimate", &absurd).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(app.get("/api/v1/studies").await.1["studies"], json!([]));
    let (status, created) = app.post("/api/v1/studies", &absurd).await;
    assert_eq!(status, 201, "warned, not refused: {created}");
    for body in [&dry, &created] {
        let w = warned(body);
        for p in ["learning_rate", "epochs", "budget.minutes"] {
            assert!(w.contains(&p.to_string()), "{p} not warned: {body}");
        }
        let e = &body["estimate"];
        let (mean, worst) = (
            e["trial_seconds"].as_f64().unwrap(),
            e["worst_trial_seconds"].as_f64().unwrap(),
        );
        assert!(mean > 0.0 && worst > mean, "{e}");
        // 500 epochs of 512 px images take far more than the 5 minutes the budget has.
        assert!(worst > 300.0, "{e}");
        assert_eq!(
            e["total_seconds"],
            json!(300.0),
            "capped by the minutes budget: {e}"
        );
        assert!(e["summary"].as_str().unwrap().contains("per trial"), "{e}");
    }
    assert_eq!(dry["warnings"], created["warnings"]);
    let id = created["id"].as_i64().unwrap();
    let page = app.get(&format!("/api/v1/studies/{id}")).await.1;
    assert_eq!(page["warnings"], created["warnings"], "{page}");
    assert!(
        page["estimate"]["worst_trial_seconds"].as_f64().is_some(),
        "{page}"
    );
    // Running, no worker: the ETA comes from the time model, not from nothing.
    assert!(page["progress"]["eta_seconds"].as_f64().is_some(), "{page}");

    // Narrower bounds: cheaper, and none of those warnings.
    let sensible = json!({
        "dataset_id": app.dataset_id,
        "bounds": {"image_size": {"low": 28, "high": 48}, "epochs": {"low": 1, "high": 5}},
        "budget": {"trials": 20},
    });
    let (status, ok) = app.post("/api/v1/studies/estimate", &sensible).await;
    assert_eq!(status, 200, "{ok}");
    assert!(warned(&ok).is_empty(), "{ok}");
    assert!(
        ok["estimate"]["worst_trial_seconds"].as_f64().unwrap() * 10.0
            < created["estimate"]["worst_trial_seconds"].as_f64().unwrap(),
        "{ok}"
    );
    assert!(ok["estimate"]["total_seconds"].as_f64().unwrap() > 0.0, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_training_set_is_a_warning_naming_the_limit() {
    let (_dir, app) = spawn().await;
    let body = json!({
        "dataset_id": app.dataset_id,
        "bounds": {"batch_size": {"low": 512, "high": 2048}},
    });
    for path in ["/api/v1/studies/estimate", "/api/v1/studies"] {
        let (status, v) = app.post(path, &body).await;
        assert!(status == 200 || status == 201, "{path}: {v}");
        let w = v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["param"] == "batch_size")
            .unwrap_or_else(|| panic!("{path}: {v}"));
        // 400 images less 15% held out for validation.
        assert!(w["message"].as_str().unwrap().contains("340"), "{w}");
    }
}

/// A zip of two class folders of greyscale 20x20 PNGs (a bright and a dark class).
fn tiny_zip() -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (class, base) in [("dark", 40u8), ("light", 200u8)] {
        for i in 0..12u32 {
            let img = image::GrayImage::from_fn(20, 20, |x, y| {
                image::Luma([base.wrapping_add(((x * 7 + y * 3 + i) % 23) as u8)])
            });
            let mut png = std::io::Cursor::new(Vec::new());
            image::DynamicImage::ImageLuma8(img)
                .write_to(&mut png, image::ImageFormat::Png)
                .unwrap();
            w.start_file(
                format!("{class}/{i}.png"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.write_all(&png.into_inner()).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_follows_the_dataset_and_its_bounds_create_a_study_without_warnings() {
    let (_dir, app) = spawn().await;
    let (status, _) = app.post("/api/v1/datasets/999/advice", &json!({})).await;
    assert_eq!(status, 404);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(tiny_zip()).file_name("tiny.zip"),
    );
    let r = app
        .http
        .post(format!("{}/api/v1/datasets", app.url))
        .bearer_auth(common::ADMIN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let ds: Value = r.json().await.unwrap();
    let id = ds["id"].as_i64().unwrap();
    let shown = app.get(&format!("/api/v1/datasets/{id}")).await.1;
    let stats = &shown["stats"];
    assert_eq!(
        stats["short_side"],
        json!({"min": 20, "median": 20, "max": 20}),
        "{shown}"
    );
    assert_eq!(stats["colour_mode"], "greyscale", "{shown}");
    assert_eq!(stats["per_class"], json!([12, 12]), "{shown}");

    let (status, advice) = app
        .post(&format!("/api/v1/datasets/{id}/advice"), &json!({}))
        .await;
    assert_eq!(status, 200, "{advice}");
    // 20 px images: no suggested size far above them, and no more pooling blocks than 20 px allows.
    assert_eq!(
        advice["bounds"]["image_size"],
        json!({"low": 20.0, "high": 30.0}),
        "{advice}"
    );
    assert!(
        advice["bounds"]["conv_blocks"]["high"].as_f64().unwrap() <= 3.0,
        "{advice}"
    );
    // 19 training images: batches small enough for several steps per epoch.
    assert!(
        advice["bounds"]["batch_size"]["high"].as_f64().unwrap() <= 16.0,
        "{advice}"
    );
    let sugg = advice["suggestions"].as_array().unwrap();
    assert!(
        sugg.iter()
            .all(|s| s["reason"].as_str().is_some_and(|r| r.len() > 20)),
        "{advice}"
    );
    let img = sugg.iter().find(|s| s["param"] == "image_size").unwrap();
    assert!(img["reason"].as_str().unwrap().contains("20 px"), "{img}");
    assert_eq!(advice["warnings"], json!([]), "{advice}");

    // The advice as a study: accepted, warned about nothing.
    let trials = advice["budget"]["trials"].as_u64().unwrap();
    let body = json!({"dataset_id": id, "bounds": advice["bounds"], "budget": {"trials": trials}});
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    assert_eq!(study["warnings"], json!([]), "{study}");
}
