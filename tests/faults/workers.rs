//! Worker identity and speed: a second worker with an id already live is refused and runs nothing; a
//! very slow worker (frozen 80% of the time) beside a fast one slows nothing down but its own trials.

use crate::harness::{check_clean, quick_study, quick_zip, Api, ControlSpec, WorkerSpec};
use crate::report;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_worker_id() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ControlSpec::new(dir.path(), "control");
    let _control = spec.start().await;
    let api = Api::new(&spec.url());
    let first = WorkerSpec::new(dir.path(), "twin", &spec.url());
    let _first = first.start(&api).await;
    let mut other = WorkerSpec::new(&dir.path().join("other"), "twin", &spec.url());
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    other.log = dir.path().join("twin-2.log");
    let impostor = other.spawn();
    api.wait_until(
        Duration::from_secs(60),
        "the second registration refused",
        || async {
            let log = impostor.log_text();
            log.contains("refused registration") && log.contains("409")
        },
    )
    .await;
    let workers = api.get("/api/v1/workers").await;
    let twins: Vec<_> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["id"] == "twin")
        .collect();
    assert_eq!(twins.len(), 1, "{workers}");
    assert!(
        twins[0]["grpc_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", first.port)),
        "the first keeps its id: {workers}"
    );

    let ds = api.upload(quick_zip()).await;
    let study = api.study(quick_study(ds, 2, 3)).await;
    let done = api.wait_study(study, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "complete", "{done}");
    check_clean(&api, study, &spec.data_dir).await;
    assert!(
        !impostor.log_text().contains("trial complete"),
        "the refused worker ran nothing"
    );
    report::row(
        "duplicate worker id",
        "second registration refused (409, logged by it); study complete 2/2 on the first",
        "0",
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn very_slow_worker_beside_a_fast_one() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ControlSpec::new(dir.path(), "control");
    let _control = spec.start().await;
    let api = Api::new(&spec.url());
    let _fast = WorkerSpec::new(dir.path(), "fast", &spec.url()).start(&api).await;
    let slow = WorkerSpec::new(dir.path(), "slow", &spec.url()).start(&api).await;
    let ds = api.upload(quick_zip()).await;
    let study = api.study(quick_study(ds, 6, 10)).await;

    // Frozen (SIGSTOP) 400 ms of every 500: a fifth of the speed, and silent in bursts.
    let stop = tokio_util::sync::CancellationToken::new();
    let throttle = {
        let stop = stop.clone();
        let pid = slow.pid();
        tokio::spawn(async move {
            let sig = |s: &str| {
                let _ = std::process::Command::new("kill")
                    .args([format!("-{s}"), pid.to_string()])
                    .status();
            };
            while !stop.is_cancelled() {
                sig("STOP");
                tokio::time::sleep(Duration::from_millis(400)).await;
                sig("CONT");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let done = api.wait_study(study, Duration::from_secs(300)).await;
    stop.cancel();
    throttle.await.unwrap();
    assert_eq!(
        (done["state"].as_str(), done["progress"]["complete"].as_u64()),
        (Some("complete"), Some(6)),
        "{done}"
    );
    let trials = check_clean(&api, study, &spec.data_dir).await;
    assert_eq!(trials.len(), 6, "nothing failed or was retried: {trials:?}");
    let on = |w: &str| trials.iter().filter(|t| t["worker_id"] == w).count();
    let (fast, slow_n) = (on("fast"), on("slow"));
    assert!(fast > slow_n, "the fast worker ran more ({fast} vs {slow_n})");
    report::row(
        "very slow worker beside a fast one",
        &format!("complete 6/6; fast ran {fast}, slow ran {slow_n}; nothing failed"),
        "0",
        None,
    );
}
