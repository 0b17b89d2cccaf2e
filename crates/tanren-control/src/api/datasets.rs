//! Dataset upload (multipart, streamed to disk with a size limit, validated by tanren-dataset before
//! anything is recorded), listing, and the archive download workers use.

use super::S;
use crate::error::{ApiError, ApiResult};
use crate::views;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tanren_dataset::{ingest_zip_cancellable, Limits, Manifest};
use tanren_store::{DatasetRow, NewDataset};
use tokio::io::AsyncWriteExt;

/// Per-sha256 locks: two identical uploads at once would otherwise extract into the same directory and
/// the loser's cleanup would delete the winner's files.
#[derive(Default)]
pub struct UploadLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl UploadLocks {
    async fn acquire(&self, sha: &str) -> UploadGuard<'_> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(sha.to_string()).or_default().clone()
        };
        UploadGuard {
            locks: self,
            sha: sha.to_string(),
            _guard: Some(lock.clone().lock_owned().await),
            lock,
        }
    }
}

struct UploadGuard<'a> {
    locks: &'a UploadLocks,
    sha: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self._guard.take();
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard hold it: nobody waits, so the entry can go.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.sha);
        }
    }
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    #[serde(default = "default_split_seed")]
    split_seed: u64,
}

fn default_split_seed() -> u64 {
    42
}

fn summary(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "layout": m.layout,
        "classes": m.classes,
        "skipped": m.skipped,
        "split_seed": m.split_seed,
        "stats": m.stats,
    })
}

/// The dataset's statistics (image sizes, colour, class balance): from the row's summary when ingest
/// recorded them, else from the files (computed once, then cached beside the manifest).
pub async fn dataset_stats(s: &crate::AppState, row: &DatasetRow) -> ApiResult<tanren_dataset::DatasetStats> {
    if let Some(stats) = views::dataset(row).stats {
        return Ok(stats);
    }
    let dir = s.files.dataset_dir(&row.sha256);
    tokio::task::spawn_blocking(move || {
        let m = tanren_dataset::load_manifest(&dir)?;
        tanren_dataset::stats::load_or_compute(&dir, &m)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn upload(
    State(s): State<S>,
    Query(q): Query<UploadQuery>,
    mut mp: Multipart,
) -> ApiResult<Response> {
    // Each upload holds its zip on disk and an ingest thread: a bounded number at once.
    let _permit = s
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy {
            message: format!(
                "{} dataset uploads are being processed; retry shortly",
                s.config.max_concurrent_uploads
            ),
            retry_after: 5,
        })?;
    let limit = s.config.max_upload_bytes;
    let mut field = loop {
        match mp
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?
        {
            Some(f) if f.name() == Some("file") => break f,
            Some(_) => continue,
            None => {
                return Err(ApiError::BadRequest(
                    "multipart form has no `file` field; send -F file=@data.zip".into(),
                ))
            }
        }
    };
    let name = q
        .name
        .or_else(|| field.file_name().map(|f| f.trim_end_matches(".zip").to_string()))
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "dataset".into());
    // Stream to a temp file that deletes itself unless it is moved into place.
    let tmp = tempfile::Builder::new()
        .suffix(".zip")
        .tempfile_in(s.files.uploads())?;
    let mut file = tokio::fs::File::create(tmp.path()).await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::BadRequest(format!("upload interrupted: {e}")))?
    {
        size += chunk.len() as u64;
        s.metrics
            .upload_bytes
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if size > limit {
            drain(&mut field).await;
            return Err(ApiError::PayloadTooLarge {
                limit,
                setting: "TANREN_MAX_UPLOAD_BYTES",
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    if size == 0 {
        return Err(ApiError::BadRequest("the uploaded file is empty".into()));
    }
    let sha = hex::encode(hasher.finalize());
    // From here to the insert, one upload of this content at a time; the others then find its row.
    let _turn = s.upload_locks.acquire(&sha).await;
    if let Some(existing) = s.store.dataset_by_sha(&sha).await? {
        return Ok((StatusCode::OK, Json(views::dataset(&existing))).into_response());
    }
    let out = s.files.dataset_dir(&sha);
    if out.exists() {
        // Left by a crash between extraction and the database insert: rebuild it from this upload.
        tokio::fs::remove_dir_all(&out).await?;
    }
    let zip = tmp.path().to_path_buf();
    let out2 = out.clone();
    let split_seed = q.split_seed;
    // When the client goes away, axum drops this future: the guard tells the ingest thread to stop
    // (it then removes its staging dir), and the thread keeps the upload permit until it has.
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = cancel.0.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let _permit = _permit;
        ingest_zip_cancellable(&zip, &out2, &Limits::default(), split_seed, &flag)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| {
        if e.is_client_error() {
            ApiError::Dataset {
                code: e.code(),
                message: e.to_string(),
            }
        } else {
            ApiError::Internal(e.to_string())
        }
    })?;
    let zip_dest = s.files.dataset_zip(&sha);
    let summary = summary(&manifest).to_string();
    let row = async {
        tmp.persist(&zip_dest)
            .map_err(|e| ApiError::Internal(format!("disk: {e}")))?;
        let row = s
            .store
            .insert_dataset(NewDataset {
                name: &name,
                sha256: &sha,
                num_classes: manifest.classes.len() as i64,
                num_train: manifest.train.len() as i64,
                num_test: manifest.test.len() as i64,
                size_bytes: size as i64,
                summary: &summary,
            })
            .await?;
        Ok::<_, ApiError>(row)
    }
    .await;
    match row {
        Ok(row) => {
            tracing::info!(dataset_id = row.id, %sha, classes = row.num_classes, train = row.num_train, test = row.num_test, "dataset stored");
            Ok((StatusCode::CREATED, Json(views::dataset(&row))).into_response())
        }
        Err(e) => {
            // Another control plane on the same database stored this content first: its row and files
            // (the same bytes, same paths) stay.
            if let Ok(Some(existing)) = s.store.dataset_by_sha(&sha).await {
                return Ok((StatusCode::OK, Json(views::dataset(&existing))).into_response());
            }
            // Nothing half-written: the extraction and the zip go if the row could not be recorded.
            let _ = tokio::fs::remove_dir_all(&out).await;
            let _ = tokio::fs::remove_file(&zip_dest).await;
            Err(e)
        }
    }
}

/// Read and discard what the client is still sending (bounded), so it gets to read our 413 instead of
/// a connection reset: closing a socket with unread data makes the kernel reset it, and the client then
/// loses the response. Past the cap we stop reading and let the connection drop.
async fn drain(field: &mut axum::extract::multipart::Field<'_>) {
    const DRAIN_CAP: u64 = 64 << 20;
    let mut drained = 0u64;
    while let Ok(Some(chunk)) = field.chunk().await {
        drained += chunk.len() as u64;
        if drained > DRAIN_CAP {
            break;
        }
    }
}

pub async fn list(State(s): State<S>) -> ApiResult<Json<tanren_api::DatasetList>> {
    let rows = s.store.datasets().await?;
    Ok(Json(tanren_api::DatasetList {
        datasets: rows.iter().map(views::dataset).collect(),
    }))
}

pub async fn get_one(State(s): State<S>, Path(id): Path<i64>) -> ApiResult<Json<tanren_api::Dataset>> {
    let row = s.store.dataset(id).await?;
    let mut d = views::dataset(&row);
    if d.stats.is_none() {
        d.stats = Some(dataset_stats(&s, &row).await?);
    }
    Ok(Json(d))
}

pub async fn archive(State(s): State<S>, Path(id): Path<i64>) -> ApiResult<Response> {
    let row = s.store.dataset(id).await?;
    send_zip(&s, &row.sha256).await
}

pub async fn archive_by_sha(State(s): State<S>, Path(sha): Path<String>) -> ApiResult<Response> {
    match s.store.dataset_by_sha(&sha).await? {
        Some(row) => send_zip(&s, &row.sha256).await,
        None => Err(ApiError::NotFound(format!("no dataset with sha256 {sha}"))),
    }
}

async fn send_zip(s: &S, sha: &str) -> ApiResult<Response> {
    let file = tokio::fs::File::open(s.files.dataset_zip(sha)).await?;
    let len = file.metadata().await?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{sha}.zip\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ThumbQuery {
    #[serde(default = "default_thumb")]
    size: u32,
}

fn default_thumb() -> u32 {
    64
}

/// The `k`-th sample of a class (training split first, then test) decoded and resized exactly as
/// training sees it, as a PNG: the dashboard's grid of examples per class. Immutable for a dataset,
/// so browsers may cache it for good.
pub async fn thumbnail(
    State(s): State<S>,
    Path((id, class, k)): Path<(i64, usize, usize)>,
    Query(q): Query<ThumbQuery>,
) -> ApiResult<Response> {
    if !(8..=256).contains(&q.size) {
        return Err(ApiError::InvalidField {
            field: "size".into(),
            message: format!("thumbnail size must be 8..=256, got {}", q.size),
        });
    }
    let row = s.store.dataset(id).await?;
    let dir = s.files.dataset_dir(&row.sha256);
    let size = q.size;
    let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let m = tanren_dataset::load_manifest(&dir).map_err(|e| ApiError::Internal(e.to_string()))?;
        let sample = m
            .train
            .iter()
            .chain(m.test.iter())
            .filter(|x| x.label == class)
            .nth(k)
            .ok_or_else(|| ApiError::NotFound(format!("dataset {id} has no sample {k} of class {class}")))?;
        let bytes = std::fs::read(dir.join(&sample.path))?;
        let chw = tanren_dataset::decode_resize(&bytes, size, 3)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", sample.path)))?;
        let hw = (size * size) as usize;
        let hwc: Vec<u8> = (0..hw)
            .flat_map(|i| [chw[i], chw[hw + i], chw[2 * hw + i]])
            .collect();
        let img = image::RgbImage::from_raw(size, size, hwc)
            .ok_or_else(|| ApiError::Internal("thumbnail buffer size".into()))?;
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(out.into_inner())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        png,
    )
        .into_response())
}

/// Sets its flag when dropped: a dropped upload handler (the client went away) cancels its ingest.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
