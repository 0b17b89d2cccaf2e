//! Bad input is refused with a 4xx JSON error that says what is wrong, and leaves nothing behind.

use crate::common::{shape_png, shapes_zip, zip_of, Lcg, TestApp};

fn leftovers(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["control/datasets", "control/uploads"] {
        for e in std::fs::read_dir(app.data_path(d)).unwrap() {
            out.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let app = TestApp::spawn().await;
    let mut rng = Lcg::new(1);
    let png = shape_png("circle", &mut rng);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a zip", b"hello, this is not a zip file".to_vec()),
        (
            "zip slip",
            zip_of(&[
                ("train/a/1.png".into(), png.clone()),
                ("../evil.png".into(), png.clone()),
            ]),
        ),
        (
            "one class",
            zip_of(&[
                ("train/a/1.png".into(), png.clone()),
                ("test/a/1.png".into(), png.clone()),
            ]),
        ),
        (
            "class mismatch",
            zip_of(&[
                ("train/a/1.png".into(), png.clone()),
                ("train/b/1.png".into(), png.clone()),
                ("test/a/1.png".into(), png.clone()),
                ("test/c/1.png".into(), png.clone()),
            ]),
        ),
        (
            "empty class after skipping",
            zip_of(&[
                ("train/a/1.png".into(), png.clone()),
                ("train/b/1.png".into(), b"not really a png".to_vec()),
                ("test/a/1.png".into(), png.clone()),
                ("test/b/1.png".into(), png.clone()),
            ]),
        ),
    ];
    for (what, zip) in cases {
        let (status, body) = app.upload(zip, what).await;
        assert!((400..500).contains(&status), "{what}: status {status} {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "{what}: no message in {body}");
        assert!(body["error"]["code"].is_string(), "{what}: {body}");
    }
    assert_eq!(
        app.get("/api/v1/datasets").await["datasets"],
        serde_json::json!([])
    );
    assert_eq!(leftovers(&app), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_study_requests_name_the_field() {
    let app = TestApp::spawn().await;
    let (status, ds) = app.upload(shapes_zip(3, 1, 2), "tiny").await;
    assert_eq!(status, 201, "{ds}");
    let id = ds["id"].clone();
    let cases = [
        (
            serde_json::json!({"dataset_id": id, "bounds": {"learning_rate": {"low": 0.1, "high": 0.01}}}),
            "learning_rate",
        ),
        (
            serde_json::json!({"dataset_id": id, "bounds": {"wings": {"low": 1, "high": 2}}}),
            "wings",
        ),
        (
            serde_json::json!({"dataset_id": id, "bounds": {"optimizer": {"choices": ["rmsprop"]}}}),
            "optimizer",
        ),
        (
            serde_json::json!({"dataset_id": id, "budget": {"trials": 0}}),
            "budget.trials",
        ),
        (serde_json::json!({"dataset_id": 999}), "dataset_id"),
        (
            serde_json::json!({"dataset_id": id, "sampler": "magic"}),
            "sampler",
        ),
        (
            serde_json::json!({"dataset_id": id, "pruner": "sometimes"}),
            "pruner",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = app.post("/api/v1/studies", &body).await;
        assert_eq!(status, 400, "{body}: {resp}");
        let f = resp["error"]["field"].as_str().unwrap_or_default();
        assert!(f.ends_with(field), "{body}: expected field {field}, got {resp}");
    }
    // NaN is not JSON; the body is refused with serde's position, as a 400.
    let r = app
        .http
        .post(format!("{}/api/v1/studies", app.url))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"dataset_id\": {id}, \"bounds\": {{\"dropout\": {{\"low\": NaN, \"high\": 0.2}}}}}}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, resp) = app
        .post(
            "/api/v1/studies",
            &serde_json::json!({"dataset_id": id, "colour": "red"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        resp["error"]["message"].as_str().unwrap().contains("colour"),
        "{resp}"
    );
    assert_eq!(app.get("/api/v1/studies").await["studies"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_size_limit_are_refused_while_streaming() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 60_000).await;
    let (status, body) = app.upload(shapes_zip(30, 10, 3), "big").await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TANREN_MAX_UPLOAD_BYTES"),
        "{body}"
    );
    assert_eq!(leftovers(&app), Vec::<String>::new());
    let (status, body) = app.upload(shapes_zip(2, 1, 3), "small").await;
    assert_eq!(status, 201, "a zip under the limit still goes through: {body}");
}
