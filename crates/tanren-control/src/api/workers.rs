//! Worker registration (also the heartbeat; needs the join token, answers the worker's gRPC credential)
//! and the worker list.

use super::{parse_json, S};
use crate::error::{ApiError, ApiResult};
use crate::events::WorkerView;
use crate::views::worker as worker_view;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use tanren_api::{Registered, WorkerList, WorkerRegistration};
use tanren_store::{now_ms, WorkerRow};

pub async fn register(State(s): State<S>, body: Bytes) -> ApiResult<Json<Registered>> {
    let r: WorkerRegistration = parse_json(&body)?;
    if r.id.is_empty() || r.id.len() > 128 {
        return Err(ApiError::InvalidField {
            field: "id".into(),
            message: "worker id must be 1 to 128 characters".into(),
        });
    }
    if !(r.grpc_url.starts_with("http://") || r.grpc_url.starts_with("https://")) {
        return Err(ApiError::InvalidField {
            field: "grpc_url".into(),
            message: format!(
                "grpc_url must start with http:// or https://, got `{}`",
                r.grpc_url
            ),
        });
    }
    let now = now_ms();
    let row = WorkerRow {
        id: r.id,
        grpc_url: r.grpc_url,
        device: r.device,
        device_name: r.device_name,
        torch_version: r.torch_version,
        cuda_available: r.cuda_available as i64,
        slots: r.slots.max(1) as i64,
        registered_at: now,
        last_seen_at: now,
    };
    let live = s.scheduler.live_workers(s.store.workers().await?);
    let same_id = live.iter().find(|w| w.id == row.id);
    if let Some(other) = same_id.filter(|w| w.grpc_url != row.grpc_url) {
        // Two hosts with one id would overwrite each other's row and trials would go to either.
        tracing::warn!(worker_id = %row.id, registered = %other.grpc_url, refused = %row.grpc_url, "duplicate worker id refused");
        return Err(ApiError::Conflict(format!(
            "worker id `{}` is already registered by a live worker at {} (heard from {} s ago); \
             start this worker ({}) with another --id / TANREN_WORKER_ID, or stop the other one \
             (its id is free {} s after its last heartbeat)",
            row.id,
            other.grpc_url,
            (now - other.last_seen_at).max(0) / 1000,
            row.grpc_url,
            s.config.worker_timeout.as_secs()
        )));
    }
    let fresh = same_id.is_none();
    // The join token was checked by the guard; from here on this worker trusts only this credential.
    let credential = s.scheduler.issue_credential(&row.id);
    s.store.upsert_worker(&row).await?;
    if fresh {
        tracing::info!(worker_id = %row.id, grpc_url = %row.grpc_url, device = %row.device, "worker registered");
        s.scheduler.wake();
    }
    Ok(Json(Registered { ok: true, credential }))
}

pub async fn list(State(s): State<S>) -> ApiResult<Json<WorkerList>> {
    Ok(Json(WorkerList {
        workers: views(&s).await?,
    }))
}

/// Every known worker with liveness (heartbeat within the timeout) and whether it runs a trial now.
pub async fn views(s: &S) -> ApiResult<Vec<WorkerView>> {
    let all = s.store.workers().await?;
    let live: Vec<String> = s
        .scheduler
        .live_workers(all.clone())
        .into_iter()
        .map(|w| w.id)
        .collect();
    let busy = s.scheduler.busy_workers().await;
    Ok(all
        .iter()
        .map(|w| {
            worker_view(
                w,
                live.contains(&w.id),
                busy.get(&w.id).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect())
}
