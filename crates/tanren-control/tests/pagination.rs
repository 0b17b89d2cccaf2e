//! The trials list at scale: cursor pages (`limit`, `after`, `next_cursor`) walk every trial exactly
//! once, in order, also while trials are being recorded; pages carry no result blobs; the study view
//! of a large finished study is built from counts, not rows. Seeded through `tanren_testkit::seed`.

mod common;

use common::App;
use serde_json::{json, Value};
use std::collections::HashSet;

/// A finished study of `n` seeded trials (spec taken from a fresh study), and its id.
async fn seeded(app: &App, n: usize) -> i64 {
    let (status, s) = app
        .post(
            "/api/v1/studies",
            &json!({"dataset_id": app.dataset_id, "sampler": "random", "seed": 1, "budget": {"trials": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let spec = app
        .state
        .store
        .study(s["id"].as_i64().unwrap())
        .await
        .unwrap()
        .spec;
    tanren_testkit::seed::finished_study(&app.database_url, app.dataset_id, &spec, "seeded", n, 7)
        .await
        .unwrap()
}

/// Every page of the study's trials with this page size: (ids in order, number of pages).
async fn walk(app: &App, study: i64, limit: usize) -> (Vec<i64>, usize) {
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, String::new());
    loop {
        let (status, page) = app
            .get(&format!(
                "/api/v1/studies/{study}/trials?limit={limit}&after={after}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let trials = page["trials"].as_array().unwrap();
        assert!(trials.len() <= limit);
        ids.extend(trials.iter().map(|t| t["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_string(),
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_walk_every_trial_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn(dir.path()).await;
    let study = seeded(&app, 250).await;
    let all: Vec<i64> = app
        .state
        .store
        .trials(study)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(all.len(), 250);
    for limit in [1, 7, 100, 250, 1000] {
        let (ids, pages) = walk(&app, study, limit).await;
        assert_eq!(ids, all, "limit {limit}: every trial once, in trial number order");
        assert_eq!(pages, 250usize.div_ceil(limit).max(1), "limit {limit}");
    }
    // Without a limit: one page of up to 1000, and the shape lists always had.
    let (_, page) = app.get(&format!("/api/v1/studies/{study}/trials")).await;
    assert_eq!(page["trials"].as_array().unwrap().len(), 250);
    assert_eq!(page["next_cursor"], Value::Null);
    let first = &page["trials"][0];
    assert_eq!(first["number"], 0);
    assert!(
        first.get("result").is_none() && first.get("config").is_none(),
        "{first}"
    );
    assert!(first["params"].is_object(), "{first}");
    // The full trial still has its result blob.
    let (status, detail) = app.get(&format!("/api/v1/trials/{}", first["id"])).await;
    assert_eq!(status, 200);
    if first["state"] == "complete" {
        assert!(detail["result"]["confusion"].is_array(), "{detail}");
    }
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=abc",
        "after=-3",
        "after=99999999999999999999",
    ] {
        let (status, body) = app.get(&format!("/api/v1/studies/{study}/trials?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
    let (status, _) = app.get("/api/v1/studies/99999/trials?limit=5").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_is_stable_while_trials_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn(dir.path()).await;
    let study = seeded(&app, 120).await;
    let before: HashSet<i64> = app
        .state
        .store
        .trials(study)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    // Trials are recorded between every two pages of the walk.
    let (mut seen, mut after, mut number) = (Vec::new(), String::new(), 120i64);
    loop {
        let (status, page) = app
            .get(&format!("/api/v1/studies/{study}/trials?limit=9&after={after}"))
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["trials"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap()),
        );
        if number < 150 {
            for _ in 0..3 {
                app.state
                    .store
                    .insert_trial(study, number, "{}", "{}")
                    .await
                    .unwrap();
                number += 1;
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_string(),
            None => break,
        }
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no trial twice");
    assert!(
        before.is_subset(&unique),
        "every trial that existed when the walk began"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted, "in recorded order");
    // The walk reached the end after the last insert: it saw the new trials too.
    assert_eq!(seen.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_finished_study_reads_as_counts() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn(dir.path()).await;
    let study = seeded(&app, 400).await;
    let rows = app.state.store.trials(study).await.unwrap();
    let count = |s: &str| rows.iter().filter(|t| t.state == s).count() as u64;
    let (status, s) = app.get(&format!("/api/v1/studies/{study}")).await;
    assert_eq!(status, 200, "{s}");
    let p = &s["progress"];
    assert_eq!(p["complete"].as_u64(), Some(count("complete")), "{s}");
    assert_eq!(p["pruned"].as_u64(), Some(count("pruned")), "{s}");
    assert_eq!(p["failed"].as_u64(), Some(count("failed")), "{s}");
    assert_eq!(p["done"].as_u64(), Some(400), "{s}");
    let best = rows
        .iter()
        .filter(|t| t.state == "complete")
        .max_by(|a, b| {
            a.val_accuracy
                .partial_cmp(&b.val_accuracy)
                .unwrap()
                .then(b.number.cmp(&a.number))
        })
        .unwrap();
    assert_eq!(s["best_trial"]["id"].as_i64(), Some(best.id), "{s}");
    let (_, chosen) = app.get(&format!("/api/v1/studies/{study}/model/trial")).await;
    assert_eq!(chosen["id"].as_i64(), Some(best.id), "{chosen}");
    let (_, list) = app.get("/api/v1/studies").await;
    let listed = list["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"].as_i64() == Some(study))
        .cloned()
        .unwrap();
    assert_eq!(listed["progress"], s["progress"]);
}
