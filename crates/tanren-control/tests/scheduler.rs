//! The scheduler against scripted fake workers (the real tonic service, no libtorch): retries of
//! interrupted trials, workers that refuse connections, restore after a restart with gaps and a broken
//! study, a failed trial insert, end reasons, duplicate worker ids and concurrent identical uploads.
//! Each runs in seconds on the real control plane (port 0, temp data dir, SQLite).

use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};
use tanren_control::Config;
use tokio_util::sync::CancellationToken;

// ---- the control plane (tanren_testkit::App, on a data dir that survives a restart) ----

use tanren_testkit::app::test_config as config;
use tanren_testkit::{ScriptedWorker, Step, JOIN};

struct App {
    kit: tanren_testkit::App,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for App {
    type Target = tanren_testkit::App;
    fn deref(&self) -> &tanren_testkit::App {
        &self.kit
    }
}

impl App {
    async fn spawn() -> App {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        App::boot(dir, c).await
    }

    /// The control plane with `c` on `dir` (the defaults: worker timeout 20 s, 2 retries, except a
    /// quicker tick), and the fake dataset of 2 classes.
    async fn boot(dir: tempfile::TempDir, c: Config) -> App {
        let kit = tanren_testkit::App::start(c, 2, 10, 4).await.unwrap();
        App { kit, dir }
    }

    /// Stop this control plane and start another on the same data dir (what a crash + restart does to
    /// the database, less the crash).
    async fn restart(mut self) -> App {
        self.kit.shut_down().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let c = config(dir.path());
        App::boot(dir, c).await
    }

    async fn get(&self, path: &str) -> Value {
        self.kit.get(path).await.1
    }

    async fn study(&self, extra: Value) -> i64 {
        let mut body = json!({"dataset_id": self.dataset_id, "sampler": "random", "seed": 7});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, s) = self.post("/api/v1/studies", &body).await;
        assert_eq!(status, 201, "{s}");
        s["id"].as_i64().unwrap()
    }

    async fn wait_study(&self, id: i64, timeout: Duration) -> Value {
        self.kit.wait_until_done(id, timeout).await
    }

    async fn trials(&self, id: i64) -> Vec<Value> {
        self.get(&format!("/api/v1/studies/{id}/trials")).await["trials"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn register(&self, id: &str, grpc_url: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/workers", self.url))
            .bearer_auth(JOIN)
            .json(&json!({"id": id, "grpc_url": grpc_url, "device": "cpu"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- a scripted worker (tanren_testkit::scripted) ----

/// A scripted fake worker registering with `app` every 100 ms, with one slot.
async fn fake_worker(app: &App, id: &str, script: Vec<Step>) -> ScriptedWorker {
    fake_worker_with_slots(app, id, 1, script).await
}

async fn fake_worker_with_slots(app: &App, id: &str, slots: u32, script: Vec<Step>) -> ScriptedWorker {
    ScriptedWorker::spawn(&app.url, JOIN, id, slots, script).await
}

// ---- retries ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_trials_are_retried_with_the_same_parameters_and_seed() {
    let app = App::spawn().await;
    let id = app.study(json!({"budget": {"trials": 2}})).await;
    use Step::*;
    let zero = Duration::ZERO;
    let w = fake_worker(
        &app,
        "w1",
        vec![Lost, Lost, Complete(zero), Lost, Lost, Complete(zero)],
    )
    .await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(
        (s["state"].as_str(), s["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{s}"
    );
    let p = &s["progress"];
    assert_eq!(
        (
            p["done"].as_u64(),
            p["complete"].as_u64(),
            p["interrupted"].as_u64()
        ),
        (Some(2), Some(2), Some(4)),
        "{s}"
    );
    let trials = app.trials(id).await;
    assert_eq!(trials.len(), 6, "{trials:?}");
    let numbers: Vec<i64> = trials.iter().map(|t| t["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5], "one row per number, no gaps");
    for chain in [&trials[0..3], &trials[3..6]] {
        assert_eq!(chain[0]["failure_kind"], "interrupted");
        assert_eq!(chain[1]["failure_kind"], "interrupted");
        assert_eq!(chain[2]["state"], "complete");
        assert!(
            chain[2]["model_sha256"].as_str().is_some_and(|h| h.len() == 64),
            "{}",
            chain[2]
        );
        for k in 1..3 {
            assert_eq!(chain[k]["retry_of"], chain[k - 1]["id"]);
            assert_eq!(chain[k]["attempt"], k as i64);
            assert_eq!(
                chain[k]["params"], chain[0]["params"],
                "a retry keeps the parameters"
            );
        }
    }
    // The worker was sent the same config (seed included) on every attempt of a trial.
    let seen = w.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0].config_json, seen[1].config_json);
    assert_eq!(seen[0].config_json, seen[2].config_json);
    assert_ne!(seen[0].config_json, seen[3].config_json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_interruptions_in_a_row_do_not_fail_the_study() {
    let app = App::spawn().await;
    // Five failures in a row end a study; interruptions are not failures.
    let id = app
        .study(json!({"budget": {"trials": 1}, "max_retries": 7}))
        .await;
    let mut script = vec![Step::Lost; 7];
    script.push(Step::Complete(Duration::ZERO));
    let _w = fake_worker(&app, "w1", script).await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(s["state"], "complete", "{s}");
    assert_eq!(s["progress"]["interrupted"], 7, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_and_then_count_as_a_failure() {
    let app = App::spawn().await;
    let id = app
        .study(json!({"budget": {"trials": 2}, "max_retries": 1}))
        .await;
    let _w = fake_worker(&app, "w1", vec![Step::Lost, Step::Lost]).await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let trials = app.trials(id).await;
    let kinds: Vec<&str> = trials
        .iter()
        .map(|t| t["failure_kind"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(kinds, ["interrupted", "retries_exhausted", "-"], "{trials:?}");
    assert!(
        trials[1]["error"].as_str().unwrap().contains("not retried again"),
        "{}",
        trials[1]
    );
    assert_eq!(
        (s["progress"]["done"].as_u64(), s["progress"]["failed"].as_u64()),
        (Some(2), Some(2)),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_refuses_connections_is_down_at_once_and_the_trial_moves_on() {
    let app = App::spawn().await;
    // A port nobody listens on: the worker "died" right after its last heartbeat.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    assert_eq!(app.register("ghost", &dead_url).await.0, 200);
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    let t0 = Instant::now();
    wait_for("the first attempt fails", Duration::from_secs(10), || async {
        app.trials(id)
            .await
            .first()
            .is_some_and(|t| t["state"] == "failed")
    })
    .await;
    let workers = app.get("/api/v1/workers").await;
    let ghost = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "ghost")
        .unwrap()
        .clone();
    assert_eq!(
        ghost["alive"], false,
        "down at once, not after the 20 s heartbeat timeout: {ghost}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let first = app.trials(id).await[0].clone();
    assert_eq!(first["failure_kind"], "interrupted", "{first}");
    assert_eq!(
        app.get(&format!("/api/v1/studies/{id}")).await["state"],
        "running"
    );

    let _w = fake_worker(&app, "real", vec![]).await;
    let s = app.wait_study(id, Duration::from_secs(20)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let trials = app.trials(id).await;
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert_eq!(trials[1]["retry_of"], first["id"]);
    assert_eq!(trials[1]["worker_id"], "real");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_that_still_heartbeats_loses_its_trial_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.trial_silence = Duration::from_secs(1);
    let app = App::boot(dir, c).await;
    // Free workers are taken from the end of the id order: the hung one gets the first trial.
    let _hung = fake_worker(&app, "z-hung", vec![Step::Hang; 5]).await;
    wait_for("z-hung registered", Duration::from_secs(5), || async {
        app.get("/api/v1/workers").await["workers"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    let _ok = fake_worker(&app, "a-ok", vec![]).await;
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    let s = app.wait_study(id, Duration::from_secs(20)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let trials = app.trials(id).await;
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert_eq!(
        (
            trials[0]["worker_id"].as_str(),
            trials[0]["failure_kind"].as_str()
        ),
        (Some("z-hung"), Some("interrupted"))
    );
    assert!(
        trials[0]["error"].as_str().unwrap().contains("deadline"),
        "{}",
        trials[0]
    );
    assert_eq!(
        trials[1]["worker_id"], "a-ok",
        "the retry went to the worker that answers"
    );
}

// ---- restore ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_tolerates_gaps_a_broken_study_and_resumes_retries() {
    let app = App::spawn().await;
    let good = app.study(json!({"budget": {"trials": 4}})).await;
    let broken = app.study(json!({"budget": {"trials": 4}})).await;
    let app = app.restart().await; // nothing ran: no workers
    let store = &app.state.store;
    let row = store.study(good).await.unwrap();
    let spec: tanren_control::study_spec::StudySpec = serde_json::from_str(&row.spec).unwrap();
    let params = serde_json::to_string(&spec.image_space.full_params(&spec.image_space.baseline())).unwrap();
    let cfg = serde_json::to_string(
        &tanren_core::train_config(&spec.image_space.full_params(&spec.image_space.baseline()), 2, 1)
            .unwrap(),
    )
    .unwrap();
    // Number 1 is missing (an insert that failed under an older version); number 2 was running when
    // the process died.
    let t0 = store.insert_trial(good, 0, &params, &cfg).await.unwrap();
    store
        .end_trial_without_result(
            t0.id,
            tanren_core::TrialState::Failed,
            Some(tanren_core::FailureKind::Error),
            Some("boom"),
        )
        .await
        .unwrap();
    let t2 = store.insert_trial(good, 2, &params, &cfg).await.unwrap();
    store.start_trial(t2.id, "gone").await.unwrap();
    // A spec this version cannot read.
    {
        let url = format!("sqlite://{}", app.dir.path().join("control/tanren.db").display());
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE studies SET spec = '{\"version\": 99}' WHERE id = $1")
            .bind(broken)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let app = app.restart().await;
    let b = app.get(&format!("/api/v1/studies/{broken}")).await;
    assert_eq!(
        (b["state"].as_str(), b["end_reason"].as_str()),
        (Some("failed"), Some("failed")),
        "{b}"
    );
    assert!(
        b["error"].as_str().unwrap().contains("spec no longer parses"),
        "{b}"
    );
    assert!(
        b["end_reason_text"]
            .as_str()
            .unwrap()
            .starts_with("failed: could not resume"),
        "{b}"
    );
    let t2 = app.get(&format!("/api/v1/trials/{}", t2.id)).await;
    assert_eq!(
        (t2["state"].as_str(), t2["failure_kind"].as_str()),
        (Some("failed"), Some("interrupted")),
        "{t2}"
    );

    let _w = fake_worker(&app, "w1", vec![]).await;
    let s = app.wait_study(good, Duration::from_secs(30)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let trials = app.trials(good).await;
    let numbers: Vec<i64> = trials.iter().map(|t| t["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [0, 2, 3, 4, 5], "numbering continues after the gap");
    // The trial interrupted by the restart is retried first, with its parameters.
    assert_eq!(trials[2]["retry_of"], t2["id"], "{trials:?}");
    assert_eq!(trials[2]["params"], t2["params"]);
    // Budget 4: trial 0 (failed) + 3 complete; the interrupted one used none.
    assert_eq!(s["progress"]["done"], 4, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_trial_insert_leaves_no_gap_in_the_numbers() {
    let app = App::spawn().await;
    let url = format!("sqlite://{}", app.dir.path().join("control/tanren.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    // Every trial insert fails (longer than the scheduler's own retries) until the trigger is dropped.
    sqlx::query(
        "CREATE TRIGGER block_trials BEFORE INSERT ON trials BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let id = app.study(json!({"budget": {"trials": 2}})).await;
    let _w = fake_worker(&app, "w1", vec![]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(app.trials(id).await.is_empty());
    sqlx::query("DROP TRIGGER block_trials")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let numbers: Vec<i64> = app
        .trials(id)
        .await
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [0, 1],
        "the sampler's trial 0 was inserted once the database took it"
    );
    // And a restart restores it.
    let app = app.restart().await;
    assert_eq!(
        app.get(&format!("/api/v1/studies/{id}")).await["state"],
        "complete"
    );
}

// ---- why a study ended ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_ended_by_its_minutes_budget_reads_as_complete() {
    let app = App::spawn().await;
    let id = app
        .study(json!({"budget": {"trials": 20, "minutes": 0.03}}))
        .await;
    let _w = fake_worker(&app, "w1", vec![Step::Complete(Duration::from_millis(400)); 40]).await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(
        (s["state"].as_str(), s["end_reason"].as_str()),
        (Some("complete"), Some("minutes_budget")),
        "{s}"
    );
    assert_eq!(s["end_reason_text"], "minutes budget reached");
    let p = &s["progress"];
    let done = p["done"].as_i64().unwrap();
    assert!(done > 0 && done < 20, "{s}");
    assert_eq!(
        p["total"].as_i64(),
        Some(done),
        "reads {done} / {done}, not {done} / 20: {s}"
    );
    assert_eq!(s["budget"]["trials"], 20, "the budget itself is still shown");
    assert_eq!(
        (p["running"].as_u64(), p["queued"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    // The trial running at the deadline was cancelled, not left to finish.
    let last = app.trials(id).await.last().unwrap().clone();
    assert_eq!(last["failure_kind"], "stopped", "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_trial_budget_end_reasons() {
    let app = App::spawn().await;
    let id = app.study(json!({"budget": {"trials": 3}})).await;
    let (status, s) = app.post(&format!("/api/v1/studies/{id}/stop"), &json!({})).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["end_reason"].as_str(), s["end_reason_text"].as_str()),
        (Some("stopped"), Some("stopped"))
    );
    assert_eq!(
        s["progress"]["total"], 3,
        "a stopped study keeps its budget as total"
    );
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    let _w = fake_worker(&app, "w1", vec![]).await;
    let s = app.wait_study(id, Duration::from_secs(20)).await;
    assert_eq!(s["end_reason_text"], "trial budget reached", "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_studys_view_follows_its_cancelled_trial_to_its_end() {
    // A finished study's view is built once and kept (progress::FinishedViews); a stopped study's
    // cancelled trials end a moment after its row does, so a view kept at the stop would count them
    // running forever. (Whether a request lands in that moment is up to timing; the rule itself is
    // unit-tested in progress.rs.)
    let app = App::spawn().await;
    let _w = fake_worker(&app, "w1", vec![Step::Complete(Duration::from_secs(30))]).await;
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    let path = format!("/api/v1/studies/{id}");
    wait_for("the trial runs", Duration::from_secs(10), || async {
        app.get(&path).await["progress"]["running"] == 1
    })
    .await;
    let (status, s) = app.post(&format!("{path}/stop"), &json!({})).await;
    assert_eq!(status, 200, "{s}");
    for _ in 0..5 {
        let _ = app.get(&path).await;
    }
    wait_for(
        "the view shows the cancelled trial ended",
        Duration::from_secs(10),
        || async {
            let s = app.get(&path).await;
            s["progress"]["running"] == 0 && s["progress"]["queued"] == 0 && s["progress"]["failed"] == 1
        },
    )
    .await;
    let listed = app.get("/api/v1/studies").await;
    let listed = listed["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(listed["progress"], app.get(&path).await["progress"], "{listed}");
}

// ---- fairness ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_studies_share_the_workers() {
    let app = App::spawn().await;
    let first = app.study(json!({"budget": {"trials": 4}})).await;
    let second = app.study(json!({"budget": {"trials": 4}})).await;
    // Each trial takes a while, so the first study could hold both workers all along.
    let slow = || vec![Step::Complete(Duration::from_millis(600)); 4];
    let _w1 = fake_worker(&app, "w1", slow()).await;
    wait_for("the first worker busy", Duration::from_secs(10), || async {
        !app.trials(first).await.is_empty()
    })
    .await;
    let _w2 = fake_worker(&app, "w2", slow()).await;
    for id in [first, second] {
        let s = app.wait_study(id, Duration::from_secs(30)).await;
        assert_eq!(s["state"], "complete", "{s}");
    }
    // The second worker went to the second study at once, not after the first study's last trial.
    let started =
        |ts: &[Value]| -> Vec<i64> { ts.iter().map(|t| t["started_at"].as_i64().unwrap()).collect() };
    let (a, b) = (
        started(&app.trials(first).await),
        started(&app.trials(second).await),
    );
    assert!(
        b[0] < a[2],
        "the second study waited for the first to start its last trials: {a:?} vs {b:?}"
    );
}

// ---- slots ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_two_slots_runs_two_trials_at_once_and_shows_them() {
    let app = App::spawn().await;
    let id = app.study(json!({"budget": {"trials": 4}})).await;
    let w = fake_worker_with_slots(&app, "w2", 2, vec![Step::Complete(Duration::from_millis(500)); 4]).await;
    // The worker list shows the slots and, while two trials run, both of them.
    let start = Instant::now();
    loop {
        let ws = app.get("/api/v1/workers").await;
        let view = &ws["workers"][0];
        if view["slots_in_use"] == 2 {
            assert_eq!(view["slots"], 2, "{ws}");
            assert_eq!(view["running"].as_array().map(Vec::len), Some(2), "{ws}");
            assert_eq!(view["busy"], true, "{ws}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never two in use: {ws}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(
        (s["state"].as_str(), s["progress"]["complete"].as_u64()),
        (Some("complete"), Some(4)),
        "{s}"
    );
    assert_eq!(w.most_at_once(), 2, "two trials ran at once, never more");
    let ws = app.get("/api/v1/workers").await;
    assert_eq!(ws["workers"][0]["slots_in_use"], 0, "{ws}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slots_of_one_worker_are_shared_between_running_studies() {
    let app = App::spawn().await;
    let first = app.study(json!({"budget": {"trials": 4}})).await;
    let second = app.study(json!({"budget": {"trials": 4}})).await;
    // Both studies exist before the worker does: its two slots go one to each, not both to the first.
    let w = fake_worker_with_slots(&app, "w2", 2, vec![Step::Complete(Duration::from_millis(300)); 8]).await;
    for id in [first, second] {
        let s = app.wait_study(id, Duration::from_secs(30)).await;
        assert_eq!(s["state"], "complete", "{s}");
    }
    let seen = w.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 8);
    let studies: Vec<i64> = seen.iter().map(|r| r.study_id).collect();
    assert_ne!(
        studies[0], studies[1],
        "the first two slots went to one study: {studies:?}"
    );
    // Round robin per slot: neither study ran ahead by more than the two slots allow.
    for k in 1..=8 {
        let a = studies[..k].iter().filter(|&&s| s == first).count() as i64;
        let b = k as i64 - a;
        assert!((a - b).abs() <= 2, "after {k} dispatches {a} vs {b}: {studies:?}");
    }
    assert_eq!(w.most_at_once(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_short_of_memory_says_busy_and_the_trial_waits_without_using_an_attempt() {
    let app = App::spawn().await;
    // No retries at all: an ordinary interruption would end the trial as retries_exhausted.
    let id = app
        .study(json!({"budget": {"trials": 3}, "max_retries": 0}))
        .await;
    // Two slots, but memory for one trial at a time.
    let w = fake_worker_with_slots(
        &app,
        "small-gpu",
        2,
        vec![Step::AloneOrBusy(Duration::from_millis(300)); 12],
    )
    .await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(
        (s["state"].as_str(), s["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{s}"
    );
    assert_eq!(s["progress"]["complete"], 3, "{s}");
    assert_eq!(w.most_at_once(), 1, "the busy answer was respected");
    let trials = app.trials(id).await;
    let busy: Vec<&Value> = trials
        .iter()
        .filter(|t| t["failure_kind"] == "interrupted")
        .collect();
    assert!(!busy.is_empty(), "the second slot was tried: {trials:?}");
    // After "busy" the worker gets no second trial until one of its trials ends: at most one busy
    // answer per completed trial.
    assert!(busy.len() <= 3, "{trials:?}");
    for b in &busy {
        assert!(b["error"].as_str().unwrap().contains("is busy"), "{b}");
        let retry = trials
            .iter()
            .find(|t| t["retry_of"] == b["id"])
            .unwrap_or_else(|| panic!("busy trial not retried: {trials:?}"));
        assert_eq!(retry["attempt"], b["attempt"], "a busy answer is not an attempt");
        assert_eq!(retry["params"], b["params"]);
    }
    assert!(
        trials.iter().all(|t| t["failure_kind"] != "retries_exhausted"),
        "{trials:?}"
    );
}

// ---- the data dir ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_control_plane_on_the_same_sqlite_data_dir_refuses_to_start() {
    let app = App::spawn().await;
    let data_dir = app.dir.path().join("control");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tanren_control::run(config(app.dir.path()), listener, CancellationToken::new())
        .await
        .expect_err("a second control plane started on the same data dir");
    let msg = format!("{err:#}");
    assert!(msg.contains(&data_dir.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())) && msg.contains(&app.url),
        "names the holder: {msg}"
    );
    // The first one is untouched and, once stopped, the data dir is free again.
    assert_eq!(app.get("/api/v1/studies").await["studies"], json!([]));
    let app = app.restart().await;
    assert_eq!(app.get("/api/v1/studies").await["studies"], json!([]));
}

// ---- workers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_worker_id_from_another_address_is_refused() {
    let app = App::spawn().await;
    assert_eq!(app.register("gpu", "http://10.0.0.1:50051").await.0, 200);
    assert_eq!(
        app.register("gpu", "http://10.0.0.1:50051").await.0,
        200,
        "its own heartbeat"
    );
    let (status, body) = app.register("gpu", "http://10.0.0.2:50051").await;
    assert_eq!(status, 409, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("http://10.0.0.1:50051") && msg.contains("--id"),
        "{msg}"
    );
    let workers = app.get("/api/v1/workers").await;
    assert_eq!(
        workers["workers"][0]["grpc_url"], "http://10.0.0.1:50051",
        "the first keeps its row"
    );
}

// ---- uploads ----

fn tiny_zip(seed: u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default();
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            for i in 0..6u8 {
                let img = image::RgbImage::from_fn(8, 8, |x, y| {
                    image::Rgb([
                        seed,
                        i.wrapping_mul(40),
                        (x * 30 + y) as u8 + (class == "b") as u8 * 100,
                    ])
                });
                let mut png = std::io::Cursor::new(Vec::new());
                img.write_to(&mut png, image::ImageFormat::Png).unwrap();
                z.start_file(format!("{split}/{class}/{i}.png"), opts).unwrap();
                z.write_all(png.get_ref()).unwrap();
            }
        }
    }
    z.finish().unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_uploads_at_once_all_get_the_one_dataset_and_its_files() {
    let app = App::spawn().await;
    for round in 0..4u8 {
        let zip = tiny_zip(round);
        let uploads = (0..4).map(|_| {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(zip.clone()).file_name("same.zip"),
            );
            app.http
                .post(format!("{}/api/v1/datasets", app.url))
                .multipart(form)
                .send()
        });
        let mut ids = Vec::new();
        for r in futures::future::join_all(uploads).await {
            let r = r.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert!(status == 200 || status == 201, "round {round}: {status} {body}");
            ids.push(body["id"].as_i64().unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        let row = app.state.store.dataset(ids[0]).await.unwrap();
        assert!(
            app.state.files.dataset_zip(&row.sha256).exists(),
            "round {round}: the zip is gone"
        );
        assert!(
            app.state
                .files
                .dataset_dir(&row.sha256)
                .join("manifest.json")
                .exists(),
            "round {round}: the extraction is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_end_the_database_refuses_for_a_while_is_stored_not_dropped() {
    let app = App::spawn().await;
    let url = format!("sqlite://{}", app.dir.path().join("control/tanren.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    // Recording a trial complete fails for the next second (the worker takes 300 ms).
    sqlx::query(
        "CREATE TRIGGER block_end BEFORE UPDATE OF state ON trials WHEN NEW.state = 'complete'
         BEGIN SELECT RAISE(ABORT, 'database is locked (injected)'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    let _w = fake_worker(&app, "w1", vec![Step::Complete(Duration::from_millis(300))]).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    sqlx::query("DROP TRIGGER block_end")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let s = app.wait_study(id, Duration::from_secs(20)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let t = app.trials(id).await[0].clone();
    assert_eq!(
        t["state"], "complete",
        "the row says what the search engine was told: {t}"
    );
    assert_eq!(s["best_trial"]["id"], t["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_that_committed_but_lost_its_answer_is_not_inserted_twice() {
    let app = App::spawn().await;
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    // The row the scheduler is about to insert (trial 0, the baseline) is already there, as after a
    // connection dropped between the commit and its answer: the retried insert hits the unique number.
    let row = app.state.store.study(id).await.unwrap();
    let spec: tanren_control::study_spec::StudySpec = serde_json::from_str(&row.spec).unwrap();
    let mut baseline = spec.image_space.baseline();
    spec.search.space.normalize_params(&mut baseline);
    let params = serde_json::to_string(&spec.image_space.full_params(&baseline)).unwrap();
    let pre = app.state.store.insert_trial(id, 0, &params, "{}").await.unwrap();
    let _w = fake_worker(&app, "w1", vec![]).await;
    let s = app.wait_study(id, Duration::from_secs(20)).await;
    assert_eq!(s["state"], "complete", "{s}");
    let trials = app.trials(id).await;
    assert_eq!(trials.len(), 1, "{trials:?}");
    assert_eq!(
        (trials[0]["id"].as_i64(), trials[0]["state"].as_str()),
        (Some(pre.id), Some("complete"))
    );
}

// ---- trial tokens ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_token_downloads_its_dataset_and_uploads_its_weights_once_and_nothing_else() {
    let app = App::spawn().await;
    let id = app.study(json!({"budget": {"trials": 1}})).await;
    let w = fake_worker(&app, "prober", vec![Step::Probe]).await;
    let s = app.wait_study(id, Duration::from_secs(30)).await;
    assert_eq!(s["state"], "complete", "{s}");
    wait_for("the late upload", Duration::from_secs(10), || async {
        w.probes.lock().unwrap().len() == 8
    })
    .await;
    let got: Vec<(&str, u16)> = w.probes.lock().unwrap().clone();
    let status = |what: &str| got.iter().find(|(w, _)| *w == what).unwrap().1;
    assert_eq!(status("upload without a token"), 403, "{got:?}");
    assert_eq!(status("upload with a forged token"), 403, "{got:?}");
    assert_eq!(status("upload to another trial"), 403, "{got:?}");
    assert_eq!(status("download another dataset"), 401, "{got:?}");
    // The fake dataset has no file behind it: past the door, the handler answers (not 401/403).
    assert!(
        ![401, 403].contains(&status("download its own dataset")),
        "{got:?}"
    );
    assert_eq!(status("its own upload"), 200, "{got:?}");
    assert_eq!(status("the upload replayed"), 403, "{got:?}");
    assert_eq!(status("an upload after the trial ended"), 403, "{got:?}");
    // The weights that landed are the one legitimate upload's.
    let t = &app.trials(id).await[0];
    assert_eq!(t["state"], "complete", "{t}");
}
