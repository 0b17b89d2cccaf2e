//! The scheduler's gRPC adapter: dials a worker (TLS and keepalive included), starts a trial with the
//! control plane's credential, and turns the worker's stream into typed events and typed errors, so
//! the driver never sees protobuf or a raw transport error.

use std::time::Duration;
use tanren_core::{EpochMetrics, TrialResult};
use tanren_proto::v1::{
    trial_event::Event, worker_client::WorkerClient, InfoRequest, TrialEvent, TrialRequest,
};
use tanren_store::WorkerRow;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};

/// Results carry the confusion matrix and every test prediction; tonic's default 4 MiB is too small
/// for a large test split.
const MAX_RESULT_BYTES: usize = 256 << 20;
/// How long a worker whose trial connection broke has to answer a fresh `Info` call.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// What a worker said about a trial.
#[derive(Debug)]
pub(super) enum WorkerEvent {
    Started { device: String },
    Epoch(EpochMetrics),
    Result(Box<TrialResult>),
}

/// Why a dispatch did not go on.
#[derive(Debug)]
pub(super) enum DispatchError {
    /// It cannot be dialled or holds no credential of ours: the worker is lost (the text says how,
    /// after "worker <id> ").
    Lost(String),
    /// It answered "busy" (RESOURCE_EXHAUSTED): its memory is short beside what it runs.
    Busy(Status),
    /// The call failed or the stream broke: see `classify`.
    Status(Status),
    /// It sent an epoch or a result that does not decode: a fault of the trial.
    Invalid(String),
}

pub(super) struct WorkerConn {
    endpoint: Endpoint,
    client: WorkerClient<Channel>,
    credential: String,
}

impl WorkerConn {
    /// Dial `worker`; `credential` is the secret this control plane shows it (`None`: it has not
    /// registered with this process).
    pub async fn connect(
        worker: &WorkerRow,
        tls: Option<&ClientTlsConfig>,
        credential: Option<String>,
    ) -> Result<WorkerConn, DispatchError> {
        let lost = DispatchError::Lost;
        let endpoint = Endpoint::from_shared(worker.grpc_url.clone())
            .map_err(|e| lost(format!("has an invalid gRPC URL {}: {e}", worker.grpc_url)))?
            .connect_timeout(Duration::from_secs(5))
            // A silent network (no FIN) is noticed within 10 s; the worker's runtime answers pings
            // while the trainer thread works.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let endpoint = match tls {
            Some(tls) if worker.grpc_url.starts_with("https://") => endpoint
                .tls_config(tls.clone())
                .map_err(|e| lost(format!("cannot be dialled over TLS at {}: {e}", worker.grpc_url)))?,
            _ => endpoint,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| lost(format!("is unreachable at {}: {e}", worker.grpc_url)))?;
        let credential =
            credential.ok_or_else(|| lost("has not registered with this control plane yet".into()))?;
        Ok(WorkerConn {
            endpoint,
            client: WorkerClient::new(channel).max_decoding_message_size(MAX_RESULT_BYTES),
            credential,
        })
    }

    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, DispatchError> {
        let mut req = tonic::Request::new(body);
        let v = format!("Bearer {}", self.credential)
            .parse()
            .map_err(|_| DispatchError::Lost("has a credential that is not a valid header".into()))?;
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }

    pub async fn run_trial(&mut self, body: TrialRequest) -> Result<TrialStream, DispatchError> {
        let req = self.request(body)?;
        match self.client.run_trial(req).await {
            Ok(s) => Ok(TrialStream(s.into_inner())),
            Err(s) if s.code() == Code::ResourceExhausted => Err(DispatchError::Busy(s)),
            Err(s) => Err(DispatchError::Status(s)),
        }
    }

    /// Does the worker answer a fresh connection within a few seconds? Any answer, a refusal
    /// included, means it is there; silence means it hangs or the network to it is cut.
    pub async fn answers(&self) -> bool {
        let call = async {
            let channel = self.endpoint.connect().await?;
            if let Ok(req) = self.request(InfoRequest {}) {
                let _ = WorkerClient::new(channel).info(req).await;
            }
            Ok::<(), tonic::transport::Error>(())
        };
        tokio::time::timeout(ANSWER_TIMEOUT, call).await.is_ok()
    }
}

pub(super) struct TrialStream(Streaming<TrialEvent>);

impl TrialStream {
    /// The next event; `Ok(None)` when the worker closed the stream.
    pub async fn next(&mut self) -> Result<Option<WorkerEvent>, DispatchError> {
        loop {
            let Some(ev) = self.0.message().await.map_err(DispatchError::Status)? else {
                return Ok(None);
            };
            return Ok(Some(match ev.event {
                Some(Event::Started(s)) => WorkerEvent::Started { device: s.device },
                Some(Event::Epoch(e)) => WorkerEvent::Epoch(e.try_into().map_err(|s: Status| {
                    DispatchError::Invalid(format!("worker sent an invalid epoch: {}", s.message()))
                })?),
                Some(Event::Result(r)) => {
                    WorkerEvent::Result(Box::new(tanren_proto::decode_result(r).map_err(|s| {
                        DispatchError::Invalid(format!("worker sent an invalid result: {}", s.message()))
                    })?))
                }
                // An event kind this control plane does not know (a newer worker): skip it.
                None => continue,
            }));
        }
    }
}

/// A status's message and the causes under it ("h2 protocol error: ...: keep-alive timed out").
pub(super) fn status_chain(s: &Status) -> String {
    let mut out = s.message().to_string();
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}

/// Did the worker go away (the connection broke, it restarted, it is still busy with a trial this
/// process no longer knows about), or did the trial itself fail?
pub(super) fn is_interruption(code: Code) -> bool {
    match code {
        Code::Unknown
        | Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        // The worker restarted (it forgot our credential) and has not registered again yet.
        | Code::Unauthenticated => true,
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => false,
    }
}
