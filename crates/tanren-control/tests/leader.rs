//! Two control planes on one PostgreSQL database: the second waits as a standby (503 everywhere, no
//! trial touched) until the first stops, then takes over. Needs `TANREN_TEST_POSTGRES_URL` (CI sets
//! it); each run makes a database of its own on that server, so the store's conformance suite still
//! finds its own empty.

use sqlx::Connection;
use std::time::{Duration, Instant};
use tanren_control::Config;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "tnr_leader_test_admin_token_0123";
const JOIN: &str = "leader-test-join-token-0123456789";

/// A new, empty database on the server of `url`; its URL.
async fn fresh_database(url: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "tanren_leader_{}_{}_{}",
        std::process::id(),
        tanren_store::now_ms(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn config(dir: &std::path::Path, db: &str) -> Config {
    let mut c = Config::new(dir);
    c.database_url = Some(db.to_string());
    c.tick = Duration::from_millis(50);
    c.admin_token = Some(ADMIN.into());
    c.join_token = Some(JOIN.into());
    c
}

async fn health(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_control_plane_waits_as_a_standby_and_takes_over() {
    let Ok(url) = std::env::var("TANREN_TEST_POSTGRES_URL") else {
        eprintln!("TANREN_TEST_POSTGRES_URL not set; leader lock test not run");
        return;
    };
    let db = fresh_database(&url).await;
    let dir = tempfile::tempdir().unwrap();

    let first_stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = tanren_control::start(config(&dir.path().join("a"), &db), listener, first_stop.clone())
        .await
        .unwrap();
    // The test's own connection (the first control plane closes its pool when it stops).
    let store = tanren_store::Store::connect(&db).await.unwrap();
    let first_url = first.url().to_string();
    let first = tokio::spawn(first.serve());
    assert_eq!(health(&first_url).await.0, 200);

    // A trial the first one runs (written behind its scheduler's back: it does not know the study).
    let ds = store
        .insert_dataset(tanren_store::NewDataset {
            name: "d",
            sha256: "00aa",
            num_classes: 2,
            num_train: 10,
            num_test: 4,
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
    let trial = store
        .insert_trial_attempt(study.id, 0, "{}", "null", None, 0)
        .await
        .unwrap();
    store.start_trial(trial.id, "w").await.unwrap();

    let second_stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_url = format!("http://{}", listener.local_addr().unwrap());
    let second = tokio::spawn(tanren_control::run(
        config(&dir.path().join("b"), &db),
        listener,
        second_stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = health(&second_url).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("standby")),
        "{body}"
    );
    let r = reqwest::Client::new()
        .get(format!("{second_url}/api/v1/studies"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "a standby serves nothing");
    assert_eq!(
        store.trial(trial.id).await.unwrap().state,
        "running",
        "a standby leaves the leader's trials alone"
    );
    assert_eq!(health(&first_url).await.0, 200, "the leader goes on serving");

    // The leader stops: the standby takes the lock and starts as a restarted control plane would.
    first_stop.cancel();
    first.await.unwrap().unwrap();
    let stopped = Instant::now();
    while health(&second_url).await.0 != 200 {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the standby did not take over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = store.trial(trial.id).await.unwrap();
    assert_eq!(
        (t.state.as_str(), t.failure_kind.as_deref()),
        ("failed", Some("interrupted")),
        "the new leader marks what the old one ran as interrupted: {t:?}"
    );
    second_stop.cancel();
    second.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_standby_stopped_while_waiting_exits_cleanly() {
    let Ok(url) = std::env::var("TANREN_TEST_POSTGRES_URL") else {
        eprintln!("TANREN_TEST_POSTGRES_URL not set; leader lock test not run");
        return;
    };
    let db = fresh_database(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let leader = tanren_store::LeaderLock::try_acquire(&db).await.unwrap().unwrap();
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let standby = tokio::spawn(tanren_control::run(
        config(dir.path(), &db),
        listener,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!standby.is_finished(), "it waits while the lock is held");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), standby)
        .await
        .expect("a standby stops when told")
        .unwrap()
        .unwrap();
    leader.release().await;
}
