//! Datasets on the worker: fetched once from the control plane, verified by sha256, ingested with the
//! same code and split seed as the control plane (so the split is identical), kept by sha256.

use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tanren_dataset::{ingest_zip, load_manifest, Limits, Manifest};
use tokio::io::AsyncWriteExt;
use tonic::Status;

pub fn valid_sha(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// One fetch per dataset at a time: trials in several slots asking for a dataset not yet here wait
/// for the first one's download and ingest instead of racing it into the same directory.
#[derive(Default)]
pub struct Fetches(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Fetches {
    pub async fn ensure(
        &self,
        http: &reqwest::Client,
        data_dir: &Path,
        sha: &str,
        url: &str,
        trial_token: &str,
        split_seed: u64,
    ) -> Result<(PathBuf, Manifest, bool), Status> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(sha.to_string()).or_default().clone()
        };
        let _turn = lock.lock().await;
        ensure(http, data_dir, sha, url, trial_token, split_seed).await
    }
}

/// Return the extracted dataset directory and its manifest, downloading and ingesting on first use.
async fn ensure(
    http: &reqwest::Client,
    data_dir: &Path,
    sha: &str,
    url: &str,
    trial_token: &str,
    split_seed: u64,
) -> Result<(PathBuf, Manifest, bool), Status> {
    if !valid_sha(sha) {
        return Err(Status::invalid_argument(
            "dataset_sha256 must be 64 lowercase hex digits",
        ));
    }
    let dir = data_dir.join("datasets").join(sha);
    if dir.join("manifest.json").exists() {
        let m = load_manifest(&dir).map_err(|e| Status::internal(format!("cached dataset {sha}: {e}")))?;
        return Ok((dir, m, true));
    }
    let downloads = data_dir.join("downloads");
    tokio::fs::create_dir_all(&downloads).await.map_err(io)?;
    tokio::fs::create_dir_all(data_dir.join("datasets"))
        .await
        .map_err(io)?;
    let part = tempfile::Builder::new()
        .suffix(".zip")
        .tempfile_in(&downloads)
        .map_err(io)?;
    let resp = http
        .get(url)
        .bearer_auth(trial_token)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| Status::unavailable(format!("fetching dataset from {url}: {e}")))?;
    let mut file = tokio::fs::File::create(part.path()).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Status::unavailable(format!("fetching dataset from {url}: {e}")))?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    drop(file);
    let got = hex::encode(hasher.finalize());
    if got != sha {
        return Err(Status::data_loss(format!(
            "dataset download has sha256 {got}, expected {sha}"
        )));
    }
    let zip_path = part.path().to_path_buf();
    let out = dir.clone();
    let manifest =
        tokio::task::spawn_blocking(move || ingest_zip(&zip_path, &out, &Limits::default(), split_seed))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| {
                Status::failed_precondition(format!("dataset {sha} does not ingest on the worker: {e}"))
            })?;
    drop(part);
    Ok((dir, manifest, false))
}

/// Images (train and test) of a dataset already in this worker's cache; `None` before its first
/// download.
pub async fn cached_images(data_dir: &Path, sha: &str) -> Option<u64> {
    if !valid_sha(sha) {
        return None;
    }
    let dir = data_dir.join("datasets").join(sha);
    tokio::task::spawn_blocking(move || {
        let m = load_manifest(&dir).ok()?;
        Some((m.train.len() + m.test.len()) as u64)
    })
    .await
    .ok()
    .flatten()
}

fn io(e: std::io::Error) -> Status {
    Status::internal(format!("worker disk: {e}"))
}
