//! Accuracy-vs-latency studies on the real control plane (port 0, temp data dir, SQLite) with a fake
//! worker (the real tonic service, no libtorch) whose bigger models are more accurate and slower: the
//! refusals, the Pareto front against a brute-force one, a latency limit that keeps slow trials out of
//! "best", the fastest-within-X download, and a restart in the middle (the stored trials must restore
//! into the two-objective search engine).

mod common;

use common::App;
use serde_json::{json, Value};
use std::time::Duration;
use tanren_core::{ModelSpec, TrainConfig};
use tokio_util::sync::CancellationToken;

/// Bigger (pixels × channels) is slower and, with diminishing returns, more accurate; the learning
/// rate shifts accuracy alone, so the front is not simply "every size".
fn trade_off(cfg: &TrainConfig) -> (f64, f64) {
    let channels: u32 = match &cfg.model {
        ModelSpec::Cnn(c) => c.blocks.iter().map(|b| b.out_channels).sum(),
        ModelSpec::Resnet(_) => 64,
    };
    let cost = f64::from(cfg.image_size).powi(2) * f64::from(channels);
    let acc =
        0.55 + 0.4 * (1.0 - (-cost / 40_000.0).exp()) - 0.04 * (cfg.learning_rate.log10() + 2.5).powi(2);
    (acc.clamp(0.0, 1.0), 0.05 + cost / 200_000.0)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

async fn complete_trials(app: &App, id: i64) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/v1/studies/{id}/trials")).await;
    assert_eq!(status, 200, "{body}");
    body["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "complete")
        .cloned()
        .collect()
}

/// The trial a model download would give (`/model/trial` takes the download's query; the fake
/// worker's weights are not a real model, so the zip itself is for the e2e tests).
async fn downloaded_trial(app: &App, path: &str) -> Result<i64, (u16, String)> {
    let path = path.replacen("/model", "/model/trial", 1);
    let (status, body) = app.get(&path).await;
    if status != 200 {
        return Err((status, body.to_string()));
    }
    Ok(body["id"].as_i64().unwrap_or_else(|| panic!("{body}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn(dir.path()).await;
    let ds = app.dataset_id;
    for (body, field, words) in [
        (
            json!({"objectives": ["speed"]}),
            "objectives",
            "unknown objective `speed`",
        ),
        (
            json!({"objectives": ["latency"]}),
            "objectives",
            "untrained model",
        ),
        (
            json!({"objectives": ["accuracy", "accuracy"]}),
            "objectives",
            "twice",
        ),
        (json!({"max_latency_ms": 0}), "max_latency_ms", "positive"),
        (json!({"max_latency_ms": -2.5}), "max_latency_ms", "positive"),
        (
            json!({"objectives": ["accuracy", "latency"], "pruner": "median"}),
            "pruner",
            "pruner none",
        ),
        (json!({"sampler": "cmaes"}), "sampler", "nsga2"),
    ] {
        let mut body = body;
        body["dataset_id"] = json!(ds);
        let (status, err) = app.post("/api/v1/studies", &body).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{body} -> {msg}");
    }
    // A single-objective study says so, and has no front.
    let (status, s) = app
        .post(
            "/api/v1/studies",
            &json!({"dataset_id": ds, "budget": {"trials": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["objectives"], json!(["accuracy"]), "{s}");
    assert!(
        s["max_latency_ms"].is_null() && s.get("pareto_front").is_none(),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accuracy_vs_latency_front_survives_a_restart_and_downloads_trade_accuracy_for_speed() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn(dir.path()).await;
    let create = json!({
        "dataset_id": app.dataset_id, "seed": 5, "budget": {"trials": 24},
        "objectives": ["latency", "accuracy"], "sampler": "tpe",
    });
    let (status, study) = app.post("/api/v1/studies", &create).await;
    assert_eq!(status, 201, "{study}");
    assert_eq!(study["objectives"], json!(["accuracy", "latency"]), "{study}");
    assert_eq!(study["pareto_front"], json!([]), "{study}");
    let id = study["id"].as_i64().unwrap();

    // Run about half of it, then stop the control plane and start a new one on the same data dir.
    let stop = CancellationToken::new();
    app.fake_worker(trade_off, stop.clone()).await;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while complete_trials(&app, id).await.len() < 10 {
        assert!(std::time::Instant::now() < until, "trials do not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    app.shutdown.cancel();
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = App::spawn(dir.path()).await;
    let stop = CancellationToken::new();
    app.fake_worker(trade_off, stop.clone()).await;
    let s = app.wait_until_done(id, Duration::from_secs(60)).await;
    stop.cancel();
    assert_eq!(
        s["state"], "complete",
        "a restored two-objective study must go on: {s}"
    );
    assert_eq!(s["progress"]["complete"], 24, "{s}");

    // The front is exactly the non-dominated trials, fastest first.
    let trials = complete_trials(&app, id).await;
    let point = |t: &Value| (num(&t["val_accuracy"]), num(&t["inference_ms"]));
    let dominated = |t: &Value| {
        let (a, m) = point(t);
        trials.iter().any(|u| {
            let (ua, um) = point(u);
            ua >= a && um <= m && (ua > a || um < m)
        })
    };
    let mut want: Vec<i64> = trials
        .iter()
        .filter(|t| !dominated(t))
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let front = s["pareto_front"].as_array().unwrap();
    let mut got: Vec<i64> = front.iter().map(|p| p["trial_id"].as_i64().unwrap()).collect();
    let ms: Vec<f64> = front.iter().map(|p| num(&p["inference_ms"])).collect();
    assert!(ms.windows(2).all(|w| w[0] <= w[1]), "fastest first: {ms:?}");
    want.sort();
    got.sort();
    assert_eq!(got, want, "{s}");
    assert!(
        got.len() >= 3,
        "a trade-off this clear has a front of several trials: {s}"
    );

    // Downloads: the best; the fastest within 5 points of it; the best under a latency.
    let best = trials
        .iter()
        .fold(None::<&Value>, |b, t| match b {
            Some(b) if num(&b["val_accuracy"]) >= num(&t["val_accuracy"]) => Some(b),
            _ => Some(t),
        })
        .unwrap();
    assert_eq!(s["best_trial"]["id"], best["id"], "{s}");
    let base = format!("/api/v1/studies/{id}/model");
    assert_eq!(
        downloaded_trial(&app, &base).await.unwrap(),
        best["id"].as_i64().unwrap()
    );
    let floor = num(&best["val_accuracy"]) - 0.05;
    let fastest_near = trials
        .iter()
        .filter(|t| num(&t["val_accuracy"]) >= floor - 1e-9)
        .min_by(|a, b| num(&a["inference_ms"]).total_cmp(&num(&b["inference_ms"])))
        .unwrap();
    let got = downloaded_trial(&app, &format!("{base}?within_points=5"))
        .await
        .unwrap();
    assert_eq!(got, fastest_near["id"].as_i64().unwrap());
    assert!(
        num(&fastest_near["inference_ms"]) < num(&best["inference_ms"]),
        "the test wants a real trade-off: {fastest_near} vs {best}"
    );
    let median_ms = {
        let mut v: Vec<f64> = trials.iter().map(|t| num(&t["inference_ms"])).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let best_under = trials
        .iter()
        .filter(|t| num(&t["inference_ms"]) <= median_ms)
        .fold(None::<&Value>, |b, t| match b {
            Some(b) if num(&b["val_accuracy"]) >= num(&t["val_accuracy"]) => Some(b),
            _ => Some(t),
        })
        .unwrap();
    let got = downloaded_trial(&app, &format!("{base}?max_latency_ms={median_ms}"))
        .await
        .unwrap();
    assert_eq!(got, best_under["id"].as_i64().unwrap());

    // Limits nothing meets, and bad values, are explained.
    let (status, body) = downloaded_trial(&app, &format!("{base}?max_latency_ms=0.001"))
        .await
        .unwrap_err();
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("within 0.001 ms") && body.contains("the fastest, trial"),
        "{body}"
    );
    for q in ["within_points=-1", "within_points=101", "max_latency_ms=0"] {
        let (status, body) = downloaded_trial(&app, &format!("{base}?{q}")).await.unwrap_err();
        assert_eq!(status, 400, "{q}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_limit_keeps_slow_trials_out_and_steers_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn(dir.path()).await;
    // The default space's latencies under trade_off span about 0.1..27 ms; 1 ms rules out most
    // of it, including the most accurate configurations.
    let limit = 1.0;
    let mut ids = Vec::new();
    for max in [Some(limit), None] {
        let create = json!({
            "dataset_id": app.dataset_id, "seed": 11, "budget": {"trials": 30}, "max_latency_ms": max,
        });
        let (status, study) = app.post("/api/v1/studies", &create).await;
        assert_eq!(status, 201, "{study}");
        assert_eq!(study["max_latency_ms"], json!(max), "{study}");
        ids.push(study["id"].as_i64().unwrap());
    }
    let stop = CancellationToken::new();
    app.fake_worker(trade_off, stop.clone()).await;
    let mut feasible_share = Vec::new();
    for &id in &ids {
        let s = app.wait_until_done(id, Duration::from_secs(90)).await;
        assert_eq!(s["state"], "complete", "{s}");
        let trials = complete_trials(&app, id).await;
        let ok = |t: &&Value| num(&t["inference_ms"]) <= limit;
        let best = &s["best_trial"];
        if id == ids[0] {
            assert!(
                num(&best["inference_ms"]) <= limit,
                "best must meet the limit: {best}"
            );
            let best_ok = trials
                .iter()
                .filter(ok)
                .map(|t| num(&t["val_accuracy"]))
                .fold(f64::MIN, f64::max);
            assert_eq!(num(&best["val_accuracy"]), best_ok, "{s}");
            let got = downloaded_trial(&app, &format!("/api/v1/studies/{id}/model"))
                .await
                .unwrap();
            assert_eq!(got, best["id"].as_i64().unwrap());
        }
        // After the 10 start-up trials, how many of TPE's own suggestions meet the limit.
        let later: Vec<&Value> = trials
            .iter()
            .filter(|t| t["number"].as_i64().unwrap() >= 10)
            .collect();
        feasible_share.push(later.iter().filter(|t| ok(t)).count() as f64 / later.len() as f64);
    }
    stop.cancel();
    eprintln!("share of TPE's trials under {limit} ms: with the limit {feasible_share:.2?} (with, without)");
    // Same seed, same start-up trials: told about the limit, TPE proposes clearly more trials that
    // meet it than when it only chases accuracy (which pulls it towards big, slow models).
    assert!(
        feasible_share[0] >= feasible_share[1] + 0.25,
        "share of TPE's trials under {limit} ms: with the limit {:.2}, without {:.2}",
        feasible_share[0],
        feasible_share[1]
    );
}
