//! Registration with the control plane: a POST of this worker's description with the join token,
//! repeated as a heartbeat, so a restarted control plane or worker finds the other without any
//! ordering. The answer carries the credential the control plane will present on every gRPC call; the
//! worker's interceptor accepts only that (crate::Credential).

use std::time::Duration;
use tanren_proto::v1::WorkerInfo;
use tokio_util::sync::CancellationToken;

#[allow(clippy::too_many_arguments)]
pub async fn heartbeat(
    http: reqwest::Client,
    control: String,
    grpc_url: String,
    info: WorkerInfo,
    every: Duration,
    join_token: String,
    credential: crate::Credential,
    shutdown: CancellationToken,
) {
    let client = http;
    let url = format!("{}/api/v1/workers", control.trim_end_matches('/'));
    let body = tanren_api::WorkerRegistration {
        id: info.worker_id,
        grpc_url,
        device: info.device,
        device_name: info.device_name,
        torch_version: info.torch_version,
        cuda_available: info.cuda_available,
        slots: info.slots,
    };
    let mut was_ok = None;
    loop {
        let ok = match client
            .post(&url)
            .timeout(Duration::from_secs(10))
            .bearer_auth(&join_token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.json::<tanren_api::Registered>().await {
                Ok(v) => {
                    credential.set(&v.credential);
                    true
                }
                Err(_) => {
                    if was_ok != Some(false) {
                        tracing::warn!(%url, "control plane answered registration without a credential");
                    }
                    false
                }
            },
            Ok(r) => {
                if was_ok != Some(false) {
                    let status = r.status();
                    // The body says why (e.g. 409: another live worker already has this id).
                    let why = r.text().await.unwrap_or_default();
                    tracing::warn!(%status, %url, %why, "control plane refused registration");
                }
                false
            }
            Err(e) => {
                if was_ok != Some(false) {
                    tracing::warn!(error = %e, %url, "control plane unreachable; will keep trying");
                }
                false
            }
        };
        if ok && was_ok != Some(true) {
            tracing::info!(%url, "registered with control plane");
        }
        was_ok = Some(ok);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
