//! PostgreSQL faults, on a server of the test's own (initdb + pg_ctl, as `.ci/run` does): the server
//! restarts mid-study; and two control planes share one database, the second waiting as a standby
//! until the first is SIGKILLed, then taking over (workers and clients reach them through one address,
//! a proxy the test switches as a load balancer would).

use crate::harness::{check_clean, quick_study, quick_zip, Api, ControlSpec, Postgres, Proxy, WorkerSpec};
use crate::report;
use std::time::{Duration, Instant};

fn no_postgres(scenario: &str) {
    report::row(
        scenario,
        "SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)",
        "-",
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_study() {
    let scenario = "PostgreSQL restart mid-study";
    let Some(pg) = Postgres::start() else {
        return no_postgres(scenario);
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ControlSpec::new(dir.path(), "control");
    spec.database_url = Some(pg.database("restart"));
    let control = spec.start().await;
    let api = Api::new(&spec.url());
    let _worker = WorkerSpec::new(dir.path(), "w1", &spec.url()).start(&api).await;
    let ds = api.upload(quick_zip()).await;
    let study = api.study(quick_study(ds, 4, 15)).await;
    api.wait_running_after(study, 1, Duration::from_secs(180)).await;
    let before = api.completed_ids(study).await;

    let restarted = Instant::now();
    pg.restart();
    api.wait_until(
        Duration::from_secs(120),
        "a trial completes after the restart",
        || async {
            api.try_get(&format!("/api/v1/studies/{study}"))
                .await
                .is_some_and(|s| s["progress"]["complete"].as_u64() > Some(before.len() as u64))
        },
    )
    .await;
    let recovered = restarted.elapsed();
    let done = api.wait_study(study, Duration::from_secs(300)).await;
    assert_eq!(
        (done["state"].as_str(), done["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{done}"
    );
    assert_eq!(done["progress"]["complete"], 4, "{done}");
    let after = api.completed_ids(study).await;
    assert!(before.iter().all(|id| after.contains(id)), "complete trials lost");
    let trials = check_clean(&api, study, &spec.data_dir).await;
    let interrupted = trials
        .iter()
        .filter(|t| t["failure_kind"] == "interrupted")
        .count();
    assert!(
        !control.log_text().contains("took the leader lock"),
        "the control plane kept (or quietly re-took) its lock"
    );
    report::row(
        scenario,
        &format!("complete 4/4; {interrupted} interrupted and retried"),
        "0",
        Some(recovered),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_on_one_postgres() {
    let scenario = "two control planes on one PostgreSQL";
    let Some(pg) = Postgres::start() else {
        return no_postgres(scenario);
    };
    let dir = tempfile::tempdir().unwrap();
    let db = pg.database("two");
    let mut a = ControlSpec::new(dir.path(), "a");
    let vip = Proxy::start(format!("127.0.0.1:{}", a.port).parse().unwrap()).await;
    a.database_url = Some(db.clone());
    a.public_url = Some(vip.url());
    let mut b = ControlSpec::new(dir.path(), "b");
    b.data_dir = a.data_dir.clone();
    b.database_url = Some(db);
    b.public_url = Some(vip.url());

    let mut first = a.start().await;
    let api = Api::new(&vip.url());
    let _worker = WorkerSpec::new(dir.path(), "w1", &vip.url()).start(&api).await;
    // The second one stands by before the study starts (a process start can take a while here).
    let second = b.spawn();
    let standby = Api::new(&b.url());
    api.wait_until(
        Duration::from_secs(60),
        "the second control plane answers as a standby",
        || async { standby.status("/healthz").await == Some(503) },
    )
    .await;
    let ds = api.upload(quick_zip()).await;
    let study = api.study(quick_study(ds, 4, 15)).await;
    let running = api.wait_running_after(study, 1, Duration::from_secs(180)).await;
    let trials = api.trials(study).await;
    assert!(
        trials.iter().all(|t| t["failure_kind"].is_null()),
        "the standby interrupted nothing: {trials:?}"
    );
    assert_eq!(standby.status("/healthz").await, Some(503), "still a standby");
    let before = api.completed_ids(study).await;

    first.kill();
    let killed = Instant::now();
    vip.retarget(format!("127.0.0.1:{}", b.port).parse().unwrap());
    api.wait_until(Duration::from_secs(30), "the standby took over", || async {
        standby.status("/healthz").await == Some(200)
    })
    .await;
    let took_over = killed.elapsed();

    let done = api.wait_study(study, Duration::from_secs(300)).await;
    assert_eq!(
        (done["state"].as_str(), done["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{done}"
    );
    assert_eq!(done["progress"]["complete"], 4, "{done}");
    let after = api.completed_ids(study).await;
    assert!(before.iter().all(|id| after.contains(id)), "complete trials lost");
    let running_id = running["id"].as_i64().unwrap();
    let trials = check_clean(&api, study, &a.data_dir).await;
    // Unless it finished in the moment before the kill (a loaded machine), the trial the first one
    // was running is interrupted and retried by the second.
    let finished_first = trials
        .iter()
        .any(|t| t["id"] == running_id && t["state"] == "complete");
    assert!(
        finished_first || trials.iter().any(|t| t["retry_of"] == running_id),
        "what the first ran was retried by the second: {trials:?}"
    );
    let log = second.log_text();
    assert!(
        log.contains("standby") && log.contains("took the leader lock"),
        "{log}"
    );
    report::row(
        scenario,
        "second stood by (503, touched nothing); took over after the first's SIGKILL; complete 4/4",
        "0",
        Some(took_over),
    );
}
