//! The advisor's probes on a worker: claim a free worker (the scheduler sends it no trial meanwhile),
//! call its `Probe` RPC with the worker credential and a download-only token for the dataset, and
//! hand the report back. Any failure is a reason in words: the advice then falls back to the
//! dataset's statistics and says why.

use crate::AppState;
use std::time::Duration;
use tanren_core::probe::{ProbePlan, ProbeReport};
use tanren_proto::v1::{worker_client::WorkerClient, ProbeRequest};
use tanren_store::DatasetRow;
use tracing::Instrument;

/// Time for the worker to fetch and decode the dataset on top of the plan's own deadline.
const FETCH_SLACK: Duration = Duration::from_secs(120);

/// What came of asking for probes.
pub enum Probed {
    Ran {
        worker_id: String,
        report: Box<ProbeReport>,
    },
    /// Why none ran (no worker, all busy, the call failed).
    Skipped(String),
}

pub async fn run(s: &AppState, ds: &DatasetRow, plan: &ProbePlan) -> Probed {
    let workers = match s.store.workers().await {
        Ok(w) => s.scheduler.live_workers(w),
        Err(e) => return Probed::Skipped(format!("the worker list could not be read: {e}")),
    };
    if workers.is_empty() {
        return Probed::Skipped("no worker is connected".into());
    }
    let Some(worker) = s.scheduler.claim_probe_worker(workers) else {
        return Probed::Skipped("every worker is busy with a trial".into());
    };
    let summary: serde_json::Value = serde_json::from_str(&ds.summary).unwrap_or_default();
    let split_seed = summary["split_seed"].as_u64().unwrap_or(0);
    let (grant, token) = s.auth.grant_probe(&ds.sha256);
    let base = &s.scheduler.public_url;
    let req = ProbeRequest {
        dataset_sha256: ds.sha256.clone(),
        dataset_url: format!("{base}/api/v1/datasets/by-sha/{}/archive", ds.sha256),
        split_seed,
        trial_token: token,
        plan_json: serde_json::to_string(plan).unwrap_or_default(),
    };
    let limit = Duration::from_secs_f64(plan.deadline_seconds) + FETCH_SLACK;
    let span = tracing::info_span!("probe", worker_id = %worker.id, dataset_id = ds.id);
    let answer = tokio::time::timeout(limit, call(s, &worker, req))
        .instrument(span)
        .await;
    s.auth.end_probe(grant);
    s.scheduler.release_probe_worker(&worker.id);
    match answer {
        Ok(Ok(report)) => Probed::Ran {
            worker_id: worker.id,
            report: Box::new(report),
        },
        Ok(Err(why)) => {
            tracing::warn!(error = %why, "probe failed");
            Probed::Skipped(format!("the probe on worker {} failed: {why}", worker.id))
        }
        Err(_) => Probed::Skipped(format!(
            "the probe on worker {} did not finish within {} s",
            worker.id,
            limit.as_secs()
        )),
    }
}

async fn call(
    s: &AppState,
    worker: &tanren_store::WorkerRow,
    req: ProbeRequest,
) -> Result<ProbeReport, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(worker.grpc_url.clone())
        .map_err(|e| format!("invalid gRPC URL {}: {e}", worker.grpc_url))?
        .connect_timeout(Duration::from_secs(5));
    let endpoint = match s.scheduler.worker_tls() {
        Some(tls) if worker.grpc_url.starts_with("https://") => endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS to {}: {e}", worker.grpc_url))?,
        _ => endpoint,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("unreachable at {}: {e}", worker.grpc_url))?;
    let credential = s
        .scheduler
        .credential(&worker.id)
        .ok_or("it has not registered with this control plane")?;
    let mut req = tonic::Request::new(req);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}")
            .parse()
            .map_err(|_| "its credential is not a valid header")?,
    );
    let reply = WorkerClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .probe(req)
        .await
        .map_err(|st| format!("{:?}: {}", st.code(), st.message()))?
        .into_inner();
    tanren_proto::decode_probe_report(&reply.report_json).map_err(|st| st.message().to_string())
}
