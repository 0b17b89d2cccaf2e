//! The wider search space on a real libtorch worker: a tiny study over both architectures with
//! augmentation, schedules and label smoothing switched on. Every trial completes, records exactly
//! the parameters active for it, and trains what it records (the stored TrainConfig).

use crate::common::{shapes_zip, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_study_over_cnn_and_resnet_with_augmentation_completes() {
    let app = TestApp::spawn().await;
    app.spawn_worker("w1").await;

    // The listing offers the new parameters with their defaults pinned to the seed's behaviour.
    let space = app.get("/api/v1/search-space").await;
    let arch = space["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "architecture")
        .cloned()
        .unwrap();
    assert_eq!(arch["choices"], serde_json::json!(["cnn"]), "{arch}");
    assert_eq!(
        arch["allowed"]["choices"],
        serde_json::json!(["cnn", "resnet"]),
        "{arch}"
    );

    let (status, ds) = app.upload(shapes_zip(30, 10, 5), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let (status, study) = app
        .post(
            "/api/v1/studies",
            &serde_json::json!({
                "dataset_id": ds["id"],
                "bounds": {
                    "epochs": {"low": 2, "high": 2},
                    "image_size": {"low": 16, "high": 16},
                    "batch_size": {"low": 16, "high": 32},
                    "conv_blocks": {"low": 1, "high": 2},
                    "channels": {"low": 8, "high": 16},
                    "learning_rate": {"low": 0.002, "high": 0.005},
                    "architecture": {"choices": ["cnn", "resnet"]},
                    "resnet_depth": {"low": 8, "high": 8},
                    "resnet_width": {"low": 8, "high": 16},
                    "crop_padding": {"low": 0, "high": 2},
                    "horizontal_flip": {"choices": ["false", "true"]},
                    "lr_schedule": {"choices": ["constant", "cosine", "one_cycle"]},
                    "label_smoothing": {"low": 0.0, "high": 0.1}
                },
                "budget": {"trials": 3},
                "sampler": "random",
                // With this seed the random sampler draws a resnet for trial 1 and a cnn for trial 2.
                "seed": 3
            }),
        )
        .await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    let done = app.wait_study(id, Duration::from_secs(600)).await;
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(done["progress"]["complete"], 3, "{done}");

    let trials = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    let trials = trials["trials"].as_array().unwrap().clone();
    assert_eq!(trials.len(), 3);
    let mut families = Vec::new();
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let p = &t["params"];
        let full = app.get(&format!("/api/v1/trials/{}", t["id"])).await;
        let cfg = &full["config"];
        let arch = p["architecture"].as_str().unwrap().to_string();
        assert_eq!(cfg["model"]["family"], arch.as_str(), "{full}");
        if arch == "resnet" {
            assert!(
                p.get("conv_blocks").is_none() && p.get("channels").is_none(),
                "{p}"
            );
            assert_eq!(cfg["model"]["depth"], p["resnet_depth"], "{full}");
            assert_eq!(cfg["model"]["width"], p["resnet_width"], "{full}");
        } else {
            assert!(p.get("resnet_depth").is_none(), "{p}");
            assert_eq!(
                cfg["model"]["blocks"].as_array().unwrap().len() as i64,
                p["conv_blocks"].as_i64().unwrap()
            );
        }
        assert_eq!(cfg["crop_padding"], p["crop_padding"], "{full}");
        assert_eq!(
            cfg["horizontal_flip"].as_bool().unwrap().to_string(),
            p["horizontal_flip"].as_str().unwrap()
        );
        assert_eq!(cfg["lr_schedule"], p["lr_schedule"], "{full}");
        assert_eq!(cfg["label_smoothing"], p["label_smoothing"], "{full}");
        // Pinned at the seed's behaviour, so not recorded.
        assert!(
            p.get("batch_norm").is_none() && p.get("momentum").is_none(),
            "{p}"
        );
        assert_eq!(full["epochs"].as_array().unwrap().len(), 2, "{full}");
        families.push(arch);
    }
    // Trial 0 is the seed's CNN (moved inside the bounds); the sampler then tried both families.
    assert_eq!(families, ["cnn", "resnet", "cnn"]);
    assert_eq!(trials[0]["params"]["crop_padding"], 0);
    assert!(trials
        .iter()
        .any(|t| t["params"]["crop_padding"].as_i64() > Some(0)));
}
