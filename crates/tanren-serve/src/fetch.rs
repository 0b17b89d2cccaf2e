//! `--control-url URL --study ID`: download a study's best model (the same zip a person gets from
//! `GET /api/v1/studies/{id}/model`) into the data dir, atomically, before loading it.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

pub async fn study_model(
    control_url: &str,
    study: i64,
    token: Option<&str>,
    ca_cert: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let url = format!(
        "{}/api/v1/studies/{study}/model",
        control_url.trim_end_matches('/')
    );
    let mut http = reqwest::Client::builder();
    if let Some(ca) = ca_cert {
        let pem =
            std::fs::read(ca).with_context(|| format!("cannot read CA certificate {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("CA certificate {} is not valid PEM", ca.display()))?;
        if certs.is_empty() {
            bail!("CA certificate {} holds no PEM certificate", ca.display());
        }
        for cert in certs {
            http = http.add_root_certificate(cert);
        }
    }
    let mut req = http.build()?.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the control plane at {control_url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        bail!("GET {url}: {status}: {msg}");
    }
    let bytes = resp.bytes().await.context("downloading the model")?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(format!("study-{study}.zip"));
    let tmp = tempfile::NamedTempFile::new_in(data_dir)?;
    std::fs::write(tmp.path(), &bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    tracing::info!(study, path = %path.display(), bytes = bytes.len(), "downloaded the study's best model");
    Ok(path)
}
