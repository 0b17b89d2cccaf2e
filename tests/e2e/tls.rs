//! TLS on both hops, across two processes: the control plane serves REST over HTTPS with a certificate
//! from a CA the test makes, and a worker process serves gRPC over TLS with another certificate from
//! that CA, trusting it for the control plane (`TANREN_CA_CERT`) while the control plane trusts it for
//! workers (`worker_ca_cert`). A study runs end to end: registration, dataset download and weights
//! upload over HTTPS, the trial over gRPC+TLS. Plain HTTP to the TLS port and a client that does not
//! trust the CA are both refused.

use crate::common::{shapes_zip, TestApp, ADMIN_TOKEN};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A CA, and two server certificates it signed for 127.0.0.1 and localhost: (ca, [(cert, key); 2]).
fn make_pki(dir: &Path) -> (PathBuf, [(PathBuf, PathBuf); 2]) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tanren test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    (ca_path, [leaf("control"), leaf("worker")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_runs_over_tls_on_rest_and_grpc() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, [(control_cert, control_key), (worker_cert, worker_key)]) = make_pki(pki.path());
    let app = TestApp::spawn_trusting(Some(ca.clone()), |c| {
        c.tls = Some(tanren_control::tls::TlsPaths {
            cert: control_cert,
            key: control_key,
        });
        c.worker_ca_cert = Some(ca.clone());
    })
    .await;
    assert!(app.url.starts_with("https://127.0.0.1:"), "{}", app.url);
    let addr = app.url.trim_start_matches("https://");

    // Plain HTTP to the TLS port gets no answer; nor does a client that does not trust the CA.
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let untrusted = reqwest::Client::new()
        .get(format!("{}/healthz", app.url))
        .send()
        .await;
    let err = untrusted.expect_err("a client without the CA was served");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "refused for another reason: {err:?}"
    );

    // The session cookie from the login URL is Secure on an HTTPS listener.
    let no_redirect = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = no_redirect
        .get(format!("{}/login?token={ADMIN_TOKEN}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // The worker: a separate process, gRPC over TLS, registering over HTTPS. Killed on the way out,
    // even when an assertion fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _worker = KillOnDrop(
        app.spawn_worker_process_with(
            "tls-worker",
            &[
                ("TANREN_WORKER_TLS_CERT", worker_cert.as_os_str()),
                ("TANREN_WORKER_TLS_KEY", worker_key.as_os_str()),
            ],
        )
        .await,
    );
    let workers = app.get("/api/v1/workers").await;
    let grpc_url = workers["workers"][0]["grpc_url"].as_str().unwrap().to_string();
    assert!(
        grpc_url.starts_with("https://127.0.0.1:"),
        "the worker advertises TLS: {grpc_url}"
    );
    // Its port speaks only TLS, with a certificate from the CA.
    let grpc_addr = grpc_url.trim_start_matches("https://");
    assert!(reqwest::get(format!("http://{grpc_addr}/")).await.is_err());
    let dial = |tls: tonic::transport::ClientTlsConfig| {
        let endpoint = tonic::transport::Endpoint::from_shared(grpc_url.clone()).unwrap();
        async move { endpoint.tls_config(tls).unwrap().connect().await }
    };
    let e = dial(tonic::transport::ClientTlsConfig::new()).await.unwrap_err();
    assert!(format!("{e:?}").to_lowercase().contains("certificate"), "{e:?}");
    let ca_pem = std::fs::read(&ca).unwrap();
    dial(
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem)),
    )
    .await
    .expect("a client trusting the CA connects");

    let (status, ds) = app.upload(shapes_zip(6, 2, 11), "shapes").await;
    assert_eq!(status, 201, "{ds}");
    let body = serde_json::json!({
        "dataset_id": ds["id"],
        "bounds": {"epochs": {"low": 1, "high": 1}, "image_size": {"low": 16, "high": 16},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 4, "high": 4},
                   "batch_size": {"low": 16, "high": 16}},
        "budget": {"trials": 1},
        "sampler": "random"
    });
    let (status, study) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();
    let done = app.wait_study(id, Duration::from_secs(120)).await;
    assert_eq!(
        (done["state"].as_str(), done["progress"]["complete"].as_i64()),
        (Some("complete"), Some(1)),
        "{done}"
    );
    // The weights came back over HTTPS: the best model downloads.
    let model = app
        .http
        .get(format!("{}/api/v1/studies/{id}/model", app.url))
        .send()
        .await
        .unwrap();
    assert!(model.status().is_success(), "{}", model.status());
    assert!(model.bytes().await.unwrap().starts_with(b"PK"), "a zip");
}
