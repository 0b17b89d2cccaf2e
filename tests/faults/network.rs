//! A worker that hangs (stops answering gRPC but keeps heartbeating) and a network cut between the
//! control plane and a worker (neither gRPC nor heartbeats get through, no FIN either way), both made
//! with a TCP proxy the test controls. The trial on the silent worker is interrupted (gRPC keepalive:
//! within ~10 s) and retried on a healthy worker; the silent one gets no trial while it stays silent.

use crate::harness::{check_clean, quick_study, quick_zip, Api, ControlSpec, Proxy, WorkerSpec};
use crate::report;
use std::time::{Duration, Instant};

/// Keepalive notices silence within 10 s; a loaded machine gets a generous margin.
const NOTICE: Duration = Duration::from_secs(40);
/// Enough trials that the study outlives the first interruption: the silent worker, still
/// heartbeating in the hang case, must not be handed one trial after another.
const TRIALS: u32 = 6;

async fn silent_worker(cut_heartbeats: bool, scenario: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec = ControlSpec::new(dir.path(), "control");
    let _control = spec.start().await;
    let api = Api::new(&spec.url());
    let ds = api.upload(quick_zip()).await;

    let mut silent = WorkerSpec::new(dir.path(), "silent", &spec.url());
    let grpc = Proxy::start(silent.grpc_addr()).await;
    silent.advertise = Some(grpc.url());
    let control_addr = format!("127.0.0.1:{}", spec.port).parse().unwrap();
    let heartbeat = Proxy::start(control_addr).await;
    if cut_heartbeats {
        silent.control_url = heartbeat.url();
    }
    let silent_proc = silent.start(&api).await;

    let study = api.study(quick_study(ds, TRIALS, 20)).await;
    let first = api.wait_running_epoch(study, Duration::from_secs(120)).await;
    let first_id = first["id"].as_i64().unwrap();
    assert_eq!(first["worker_id"], "silent");
    grpc.set_cut(true);
    heartbeat.set_cut(cut_heartbeats);
    let cut = Instant::now();
    let _healthy = WorkerSpec::new(dir.path(), "healthy", &spec.url())
        .start(&api)
        .await;

    api.wait_until(NOTICE, "the silent worker's trial interrupted", || async {
        api.get(&format!("/api/v1/trials/{first_id}")).await["state"] == "failed"
    })
    .await;
    let t = api.get(&format!("/api/v1/trials/{first_id}")).await;
    assert_eq!(t["failure_kind"], "interrupted", "{t}");
    api.wait_until(
        Duration::from_secs(60),
        "the retry running on the healthy worker",
        || async {
            api.trials(study)
                .await
                .iter()
                .any(|r| r["retry_of"] == first_id && r["state"] != "queued" && r["worker_id"] == "healthy")
        },
    )
    .await;
    let recovered = cut.elapsed();

    let done = api.wait_study(study, Duration::from_secs(300)).await;
    assert_eq!(
        (done["state"].as_str(), done["end_reason"].as_str()),
        (Some("complete"), Some("trial_budget")),
        "{done}"
    );
    assert_eq!(done["progress"]["complete"], TRIALS, "{done}");
    let trials = check_clean(&api, study, &spec.data_dir).await;
    let lost = trials
        .iter()
        .filter(|t| t["state"] == "failed" && t["failure_kind"] != "interrupted")
        .count();
    assert_eq!(lost, 0, "only interruptions, no trial lost: {trials:?}");
    let interrupted = trials
        .iter()
        .filter(|t| t["failure_kind"] == "interrupted")
        .count();
    assert_eq!(
        trials.iter().filter(|t| t["worker_id"] == "silent").count(),
        1,
        "the silent worker got no trial after the one it went silent on: {trials:?}"
    );
    let t = api.get(&format!("/api/v1/trials/{first_id}")).await;
    assert!(
        t["error"].as_str().unwrap().contains("does not answer at all"),
        "the reason names the silence: {t}"
    );
    report::row(
        scenario,
        &format!("complete {TRIALS}/{TRIALS}; {interrupted} interrupted (keepalive), retried; the silent worker sits out"),
        "0",
        Some(recovered),
    );

    if cut_heartbeats {
        // The network comes back: the worker registers again (its sit-out then still runs).
        grpc.set_cut(false);
        heartbeat.set_cut(false);
        api.wait_until(
            Duration::from_secs(60),
            "the cut worker registered again",
            || async {
                silent_proc
                    .log_text()
                    .matches("registered with control plane")
                    .count()
                    >= 2
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_hang_while_heartbeating() {
    silent_worker(false, "worker hang (gRPC silent, heartbeats go on)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_between_control_plane_and_worker() {
    silent_worker(true, "network cut control plane <-> worker").await;
}
