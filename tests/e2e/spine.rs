//! The whole path once: upload a generated zip, run a 3-trial study on a real libtorch worker over gRPC,
//! check the stored metrics are real, download the best model, rebuild it from model.json + safetensors
//! and get the worker's own test predictions; the ONNX files in the download give libtorch's logits
//! (FP32) and keep its predictions (INT8).

use crate::common::{shapes_zip, TestApp, SHAPES};
use std::io::Read;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn study_runs_end_to_end_and_the_model_rebuilds() {
    let app = TestApp::spawn().await;
    let worker_metrics = app.spawn_worker("w1").await;

    let zip = shapes_zip(40, 12, 7);
    let (status, ds) = app.upload(zip.clone(), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let names: Vec<_> = ds["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, SHAPES, "classes are alphabetical like ImageFolder");
    for c in ds["classes"].as_array().unwrap() {
        assert_eq!((c["train"].as_u64(), c["test"].as_u64()), (Some(40), Some(12)));
    }
    assert_eq!(ds["sha256"].as_str().unwrap().len(), 64);
    // The same bytes again are the same dataset.
    let (status, again) = app.upload(zip, "shapes").await;
    assert_eq!((status, &again["id"]), (200, &ds["id"]));

    let (status, study) = app
        .post(
            "/api/v1/studies",
            &serde_json::json!({
                "dataset_id": ds["id"],
                "bounds": {
                    "epochs": {"low": 3, "high": 4},
                    "image_size": {"low": 16, "high": 24},
                    "batch_size": {"low": 8, "high": 32},
                    "conv_blocks": {"low": 1, "high": 2},
                    "channels": {"low": 8, "high": 16},
                    "learning_rate": {"low": 0.001, "high": 0.005}
                },
                "budget": {"trials": 3},
                "sampler": "random",
                "seed": 3
            }),
        )
        .await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    let done = app.wait_study(id, Duration::from_secs(600)).await;
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(done["progress"]["complete"], 3, "{done}");
    assert_eq!(done["progress"]["eta_seconds"], 0.0);

    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let trials = trials["trials"].as_array().unwrap().clone();

    // The worker's own metrics agree with what the control plane stored.
    let scrape = reqwest::get(format!("http://{worker_metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    let sample = |line: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse::<f64>().unwrap()))
            .unwrap_or_else(|| panic!("no `{line}` in:\n{text}"))
    };
    assert_eq!(
        sample("tanren_worker_trials_total{outcome=\"completed\"}"),
        3.0,
        "{text}"
    );
    assert_eq!(sample("tanren_worker_trials_running"), 0.0, "{text}");
    let epochs: i64 = trials
        .iter()
        .map(|t| t["epochs_completed"].as_i64().unwrap())
        .sum();
    assert_eq!(
        sample("tanren_worker_epoch_duration_seconds_count") as i64,
        epochs,
        "{text}"
    );
    assert!(sample("tanren_worker_epoch_duration_seconds_sum") > 0.0, "{text}");
    assert!(
        sample("tanren_worker_device_memory_total_bytes{device=\"cpu\"}") > 0.0,
        "{text}"
    );
    let prepared = sample("tanren_worker_dataset_cache_total{result=\"miss\"}")
        + sample("tanren_worker_dataset_cache_total{result=\"hit\"}");
    assert_eq!(prepared, 3.0, "one dataset preparation per trial: {text}");
    assert_eq!(trials.len(), 3);
    // Trial 0 is the seed's configuration moved inside the bounds.
    let p0 = &trials[0]["params"];
    assert_eq!(
        (
            p0["batch_size"].as_i64(),
            p0["conv_blocks"].as_i64(),
            p0["channels"].as_i64()
        ),
        (Some(10), Some(1), Some(16))
    );
    assert_eq!(
        (p0["optimizer"].as_str(), p0["learning_rate"].as_f64()),
        (Some("adam"), Some(0.001))
    );
    assert_eq!(
        (p0["epochs"].as_i64(), p0["image_size"].as_i64()),
        (Some(4), Some(24))
    );
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        assert!(t["train_seconds"].as_f64().unwrap() > 0.0);
        assert!(t["inference_ms"].as_f64().unwrap() > 0.0);
        assert!(t["inference_ips"].as_f64().unwrap() > 0.0);
        assert!(t["parameter_count"].as_i64().unwrap() > 0);
        assert!(t["model_bytes"].as_i64().unwrap() > 0);
        assert_eq!(t["worker_id"], "w1");
        assert_eq!(t["device"], "cpu");
        let full = app.get(&format!("/api/v1/trials/{}", t["id"])).await;
        let epochs = full["epochs"].as_array().unwrap();
        assert_eq!(
            epochs.len() as i64,
            t["params"]["epochs"].as_i64().unwrap(),
            "one row per epoch"
        );
        assert!(epochs.iter().all(|e| e["train_loss"].as_f64().unwrap() > 0.0));
    }
    let best = &done["best_trial"];
    let best_acc = best["val_accuracy"].as_f64().unwrap();
    assert!(
        best_acc > 0.6,
        "best validation accuracy {best_acc} is not above chance (1/3) by a margin"
    );
    assert!(best["test_accuracy"].as_f64().unwrap() > 0.5, "{best}");

    // Download the best model and rebuild it here.
    let r = app
        .http
        .get(format!("{}/api/v1/studies/{id}/model", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-tanren-trial-id"].to_str().unwrap(),
        best["id"].to_string()
    );
    let bytes = r.bytes().await.unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut card = String::new();
    z.by_name("model.json")
        .unwrap()
        .read_to_string(&mut card)
        .unwrap();
    let card: serde_json::Value = serde_json::from_str(&card).unwrap();
    assert_eq!(card["classes"], serde_json::json!(SHAPES));
    assert_eq!(card["provenance"]["trial_id"], best["id"]);
    let out = tempfile::tempdir().unwrap();
    let weights = out.path().join("model.safetensors");
    std::io::copy(
        &mut z.by_name("model.safetensors").unwrap(),
        &mut std::fs::File::create(&weights).unwrap(),
    )
    .unwrap();
    let spec: tanren_core::ModelSpec = serde_json::from_value(card["architecture"].clone()).unwrap();
    let cfg: tanren_core::TrainConfig = serde_json::from_value(card["train_config"].clone()).unwrap();
    let (_vs, net) = tanren_trainer::load_model(&spec, &weights, tch::Device::Cpu).unwrap();

    // Test images decoded exactly as model.json says, from an independent ingest of the same zip.
    let sha = card["provenance"]["dataset_sha256"].as_str().unwrap();
    let zip_path = app.data_path(&format!("control/datasets/{sha}.zip"));
    let ds_dir = out.path().join("ds");
    let manifest = tanren_dataset::ingest_zip(&zip_path, &ds_dir, &Default::default(), 42).unwrap();
    let (packed, _) = tanren_dataset::load_or_build(
        &ds_dir,
        &manifest,
        tanren_dataset::Split::Test,
        cfg.image_size,
        3,
        &out.path().join("c"),
    )
    .unwrap();
    let s = cfg.image_size as i64;
    let x = tch::Tensor::from_slice(&packed.pixels).view([packed.n as i64, 3, s, s]);
    let y = tch::Tensor::from_slice(&packed.labels);
    let eval = tanren_trainer::evaluate(&net, &x, &y, cfg.normalize).unwrap();
    let trial = app.get(&format!("/api/v1/trials/{}", best["id"])).await;
    let worker_preds: Vec<i64> = trial["result"]["test_predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert_eq!(
        eval.predictions, worker_preds,
        "rebuilt model predicts what the worker's evaluation did"
    );
    assert!((eval.accuracy - best["test_accuracy"].as_f64().unwrap()).abs() < 1e-9);

    // The same model as ONNX: model.onnx gives libtorch's logits; ?int8=true adds a calibrated INT8
    // model that keeps the worker's predictions, cached so a second download is the same file.
    let x = tanren_trainer::data::normalize(&x, cfg.normalize);
    let torch = tch::no_grad(|| tch::nn::ModuleT::forward_t(&net, &x, false));
    let torch = Vec::<f32>::try_from(torch.flatten(0, -1)).unwrap();
    let xs = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
    let shape = [packed.n, 3, s as usize, s as usize];
    assert_eq!(
        card["files"],
        serde_json::json!(["model.json", "model.safetensors", "model.onnx"])
    );
    let fp32 = read_entry(&mut z, "model.onnx");
    let (_, logits) = tanren_onnx::ort::run(&fp32, tanren_onnx::ort::Input::F32(&xs), shape).unwrap();
    let diff = torch
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-4, "model.onnx differs from libtorch by {diff}");

    // Within 100 points of the best is every trial: the download is the fastest one's model.
    let fastest = trials
        .iter()
        .min_by(|a, b| {
            let ms = |t: &serde_json::Value| t["inference_ms"].as_f64().unwrap();
            ms(a).total_cmp(&ms(b))
        })
        .unwrap();
    let mut zf = download_zip(&app, &format!("/api/v1/studies/{id}/model?within_points=100")).await;
    let card_f: serde_json::Value = serde_json::from_slice(&read_entry(&mut zf, "model.json")).unwrap();
    assert_eq!(card_f["provenance"]["trial_id"], fastest["id"], "{card_f}");

    let mut z8 = download_zip(&app, &format!("/api/v1/studies/{id}/model?int8=true")).await;
    let card8: serde_json::Value = serde_json::from_slice(&read_entry(&mut z8, "model.json")).unwrap();
    assert_eq!(
        card8["files"],
        serde_json::json!(["model.json", "model.safetensors", "model.onnx", "model.int8.onnx"])
    );
    let int8 = read_entry(&mut z8, "model.int8.onnx");
    let (_, logits) = tanren_onnx::ort::run(&int8, tanren_onnx::ort::Input::F32(&xs), shape).unwrap();
    let k = SHAPES.len();
    let agree = logits
        .chunks(k)
        .zip(&worker_preds)
        .filter(|(l, &p)| (0..k).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap() as i64 == p)
        .count();
    println!(
        "model.onnx: max |diff| to libtorch {diff:.2e}; model.int8.onnx keeps {agree}/{} predictions",
        packed.n
    );
    assert!(
        agree * 100 >= packed.n * 90,
        "int8 keeps only {agree}/{} predictions",
        packed.n
    );
    let cached = app.data_path(&format!("control/models/{}/model.int8.onnx", best["id"]));
    assert_eq!(
        std::fs::read(cached).unwrap(),
        int8,
        "the int8 model is cached next to the weights"
    );
    assert_eq!(
        read_entry(
            &mut download_zip(&app, &format!("/api/v1/studies/{id}/model?int8=true")).await,
            "model.int8.onnx"
        ),
        int8
    );
}

async fn download_zip(app: &TestApp, path: &str) -> zip::ZipArchive<std::io::Cursor<Vec<u8>>> {
    let r = app.http.get(format!("{}{path}", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    zip::ZipArchive::new(std::io::Cursor::new(r.bytes().await.unwrap().to_vec())).unwrap()
}

fn read_entry(z: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut out).unwrap();
    out
}
