//! The scheduler: keeps one search-engine `Study` per running study in memory (rebuilt from the
//! database at start), asks it for trials when a live worker is free, dispatches each trial over gRPC,
//! writes every event to the database as it arrives, and tells the outcome back to the search engine.
//!
//! Invariants:
//! - a trial row exists (queued) before its dispatch starts, and ends complete, pruned or failed;
//!   nothing stays running after its worker connection ends;
//! - trials that failed because the worker or connection went away ("interrupted") do not use up the
//!   trial budget; the study goes on when a worker is back;
//! - a worker runs one trial at a time.

use crate::study_spec::StudySpec;
use crate::AppState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tanren_core::{StudyState, TrainConfig, TrialResult, TrialState};
use tanren_proto::v1::{trial_event::Event, worker_client::WorkerClient, TrialRequest};
use tanren_search::{Params, PruneDecision, Study, TellOutcome, TrialRecord, TrialStatus};
use tanren_store::{now_ms, StudyRow, TrialRow, WorkerRow};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::Instrument;

pub const INTERRUPTED_PREFIX: &str = "interrupted:";
pub const INTERRUPTED_RESTART: &str =
    "interrupted: the control plane restarted while this trial was queued or running";
const MAX_CONSECUTIVE_FAILURES: u32 = 5;
const INTERRUPTED_SHUTDOWN: &str = "interrupted: the control plane shut down while this trial was running";
const WORKER_COOLDOWN: Duration = Duration::from_secs(3);

pub struct Scheduler {
    public_url: String,
    worker_timeout: Duration,
    inner: Mutex<Inner>,
    wake: Notify,
    /// Set when the control plane shuts down: trials it cancels then are interrupted, not stopped.
    shutting_down: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Inner {
    studies: HashMap<i64, Live>,
    /// worker id -> (study id, trial id) it is running.
    busy_workers: HashMap<String, (i64, i64)>,
    cooldown: HashMap<String, Instant>,
}

struct Live {
    row: StudyRow,
    spec: StudySpec,
    study: Study,
    running: HashMap<i64, CancellationToken>,
    /// Finished trials that count toward the trial budget (all but interrupted ones).
    counted: u32,
    consecutive_failures: u32,
}

impl Live {
    fn deadline_passed(&self) -> bool {
        match self.row.max_minutes {
            Some(m) => now_ms() >= self.row.created_at + (m * 60_000.0) as i64,
            None => false,
        }
    }

    /// May another trial start now?
    fn wants_more(&self) -> bool {
        let used = self.counted + self.running.len() as u32;
        !self.deadline_passed() && self.row.max_trials.is_none_or(|max| (used as i64) < max)
    }
}

enum Outcome {
    Complete(Box<TrialResult>),
    Pruned,
    Failed { error: String, interrupted: bool },
    Stopped,
}

fn parse_params(json: &str) -> Params {
    serde_json::from_str(json).unwrap_or_default()
}

/// Rebuild what the search engine knows about a trial from its row and epochs.
fn record(t: &TrialRow, epochs: &[tanren_store::EpochRow], spec: &StudySpec) -> TrialRecord {
    let mut params = parse_params(&t.params);
    params.retain(|k, _| spec.image_space.space.get(k).is_some());
    let state: TrialState = t.state.parse().unwrap_or(TrialState::Failed);
    let status = match state {
        TrialState::Complete => TrialStatus::Complete,
        TrialState::Pruned => TrialStatus::Pruned,
        TrialState::Queued | TrialState::Running | TrialState::Failed => TrialStatus::Failed,
    };
    TrialRecord {
        number: t.number as u64,
        params,
        status,
        values: (status == TrialStatus::Complete).then(|| vec![t.val_accuracy.unwrap_or(0.0)]),
        intermediate: epochs
            .iter()
            .filter(|e| e.trial_id == t.id)
            .map(|e| (e.epoch as u64, e.val_accuracy))
            .collect(),
    }
}

fn is_interrupted(t: &TrialRow) -> bool {
    t.state == TrialState::Failed.as_str()
        && t.error
            .as_deref()
            .is_some_and(|e| e.starts_with(INTERRUPTED_PREFIX))
}

impl Scheduler {
    pub fn new(public_url: String, worker_timeout: Duration) -> Self {
        Scheduler {
            public_url,
            worker_timeout,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            shutting_down: Default::default(),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Load every running study from the database (start-up).
    pub async fn restore(&self, state: &AppState) -> anyhow::Result<()> {
        for row in state.store.studies_in_state(StudyState::Running).await? {
            let spec: StudySpec = serde_json::from_str(&row.spec)?;
            let trials = state.store.trials(row.id).await?;
            let epochs = state.store.epochs_for_study(row.id).await?;
            let records: Vec<TrialRecord> = trials.iter().map(|t| record(t, &epochs, &spec)).collect();
            let counted = trials.iter().filter(|t| !is_interrupted(t)).count() as u32;
            let mut study = Study::restore(spec.search.clone(), records)?;
            if spec.baseline && trials.is_empty() {
                study.enqueue(spec.image_space.baseline())?;
            }
            tracing::info!(study_id = row.id, trials = trials.len(), "resuming study");
            let live = Live {
                row,
                spec,
                study,
                running: HashMap::new(),
                counted,
                consecutive_failures: 0,
            };
            self.inner.lock().await.studies.insert(live.row.id, live);
        }
        self.wake();
        Ok(())
    }

    pub async fn add_study(&self, row: StudyRow, spec: StudySpec) -> Result<(), tanren_search::StudyError> {
        let mut study = Study::new(spec.search.clone())?;
        if spec.baseline {
            study.enqueue(spec.image_space.baseline())?;
        }
        let live = Live {
            row,
            spec,
            study,
            running: HashMap::new(),
            counted: 0,
            consecutive_failures: 0,
        };
        self.inner.lock().await.studies.insert(live.row.id, live);
        self.wake();
        Ok(())
    }

    /// Stop a study: no new trials; running ones are cancelled (their workers stop at the next epoch).
    pub async fn stop(&self, study_id: i64) -> bool {
        let mut inner = self.inner.lock().await;
        match inner.studies.remove(&study_id) {
            Some(live) => {
                for token in live.running.values() {
                    token.cancel();
                }
                true
            }
            None => false,
        }
    }

    /// Number of trials running right now, per study (for progress).
    pub async fn running_count(&self, study_id: i64) -> usize {
        self.inner
            .lock()
            .await
            .studies
            .get(&study_id)
            .map_or(0, |l| l.running.len())
    }

    /// What each busy worker runs now: worker id -> (study id, trial id).
    pub async fn busy_workers(&self) -> HashMap<String, (i64, i64)> {
        self.inner.lock().await.busy_workers.clone()
    }

    pub fn live_workers(&self, workers: Vec<WorkerRow>) -> Vec<WorkerRow> {
        let cutoff = now_ms() - self.worker_timeout.as_millis() as i64;
        workers.into_iter().filter(|w| w.last_seen_at >= cutoff).collect()
    }
}

pub async fn run_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::error!(error = %e, "scheduler tick failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = state.scheduler.wake.notified() => {}
            _ = tokio::time::sleep(state.config.tick) => {}
        }
    }
    let inner = state.scheduler.inner.lock().await;
    state
        .scheduler
        .shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for live in inner.studies.values() {
        for token in live.running.values() {
            token.cancel();
        }
    }
}

async fn tick(state: &Arc<AppState>) -> anyhow::Result<()> {
    let sched = &state.scheduler;
    let workers = sched.live_workers(state.store.workers().await?);
    let mut guard = sched.inner.lock().await;
    let Inner {
        studies,
        busy_workers,
        cooldown,
    } = &mut *guard;
    let now = Instant::now();
    cooldown.retain(|_, until| *until > now);
    let mut free: Vec<WorkerRow> = workers
        .into_iter()
        .filter(|w| !busy_workers.contains_key(&w.id) && !cooldown.contains_key(&w.id))
        .collect();
    let mut ids: Vec<i64> = studies.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let live = studies.get_mut(&id).expect("id from keys");
        if !live.wants_more() {
            if live.running.is_empty() {
                studies.remove(&id);
                state.store.finish_study(id, StudyState::Complete, None).await?;
                crate::events::study_finished(state, id).await;
                tracing::info!(study_id = id, "study complete");
            }
            continue;
        }
        while live.wants_more() {
            let Some(worker) = free.pop() else { break };
            let (number, sampled) = match live.study.ask() {
                Ok(x) => x,
                Err(e) => {
                    // A finite space (grid) can run out: that ends the study normally.
                    tracing::info!(study_id = id, reason = %e, "sampler has no more trials");
                    live.row.max_trials = Some(live.counted as i64 + live.running.len() as i64);
                    free.push(worker);
                    break;
                }
            };
            let full = live.spec.image_space.full_params(&sampled);
            let seed = live.spec.seed.wrapping_mul(1_000_003).wrapping_add(number);
            let params_json = serde_json::to_string(&full)?;
            match tanren_core::train_config(&full, live.spec.num_classes, seed) {
                Ok(cfg) => {
                    let row = state
                        .store
                        .insert_trial(id, number as i64, &params_json, &serde_json::to_string(&cfg)?)
                        .await?;
                    state.events.trial(&row);
                    let token = CancellationToken::new();
                    live.running.insert(row.id, token.clone());
                    let sha = live.spec.dataset_sha256.clone();
                    let split_seed = live.spec.split_seed;
                    tracing::info!(study_id = id, trial_id = row.id, number, worker_id = %worker.id, "dispatching trial");
                    busy_workers.insert(worker.id.clone(), (id, row.id));
                    let st = state.clone();
                    tokio::spawn(async move {
                        dispatch(st, id, row.id, number, worker, cfg, sha, split_seed, token).await;
                    });
                }
                Err(e) => {
                    let row = state
                        .store
                        .insert_trial(id, number as i64, &params_json, "null")
                        .await?;
                    state
                        .store
                        .end_trial_without_result(row.id, TrialState::Failed, Some(&e.to_string()))
                        .await?;
                    state.events.trial(&row);
                    crate::events::trial_changed(state, row.id).await;
                    let _ = live.study.tell(number, TellOutcome::Failed);
                    live.counted += 1;
                    free.push(worker);
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: Arc<AppState>,
    study_id: i64,
    trial_id: i64,
    number: u64,
    worker: WorkerRow,
    cfg: TrainConfig,
    dataset_sha: String,
    split_seed: u64,
    token: CancellationToken,
) {
    let span = tracing::info_span!("trial", study_id, trial_id, worker_id = %worker.id);
    let _ = state.store.start_trial(trial_id, &worker.id).await;
    crate::events::trial_changed(&state, trial_id).await;
    let outcome = run_on_worker(
        &state,
        study_id,
        trial_id,
        number,
        &worker,
        &cfg,
        &dataset_sha,
        split_seed,
        &token,
    )
    .instrument(span)
    .await;
    let store = &state.store;
    let (tell, counts, failed) = match &outcome {
        Outcome::Complete(r) => {
            let _ = store.finish_trial(trial_id, TrialState::Complete, r).await;
            (TellOutcome::Complete(vec![r.val_accuracy]), true, false)
        }
        Outcome::Pruned => {
            let _ = store
                .end_trial_without_result(trial_id, TrialState::Pruned, None)
                .await;
            (TellOutcome::Pruned, true, false)
        }
        Outcome::Failed { error, interrupted } => {
            tracing::warn!(study_id, trial_id, worker_id = %worker.id, %error, "trial failed");
            let _ = store
                .end_trial_without_result(trial_id, TrialState::Failed, Some(error))
                .await;
            (TellOutcome::Failed, !interrupted, true)
        }
        Outcome::Stopped => {
            let why = if state
                .scheduler
                .shutting_down
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                INTERRUPTED_SHUTDOWN
            } else {
                "stopped: the study was stopped"
            };
            let _ = store
                .end_trial_without_result(trial_id, TrialState::Failed, Some(why))
                .await;
            (TellOutcome::Failed, false, true)
        }
    };
    crate::events::trial_changed(&state, trial_id).await;
    let mut inner = state.scheduler.inner.lock().await;
    inner.busy_workers.remove(&worker.id);
    if matches!(
        &outcome,
        Outcome::Failed {
            interrupted: true,
            ..
        }
    ) {
        inner
            .cooldown
            .insert(worker.id.clone(), Instant::now() + WORKER_COOLDOWN);
    }
    let mut fail_study = None;
    if let Some(live) = inner.studies.get_mut(&study_id) {
        live.running.remove(&trial_id);
        let _ = live.study.tell(number, tell);
        if counts {
            live.counted += 1;
        }
        live.consecutive_failures = if failed { live.consecutive_failures + 1 } else { 0 };
        if live.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            if let Outcome::Failed { error, .. } = &outcome {
                fail_study = Some(format!(
                    "{MAX_CONSECUTIVE_FAILURES} trials in a row failed; last error: {error}"
                ));
            }
        }
    }
    let study_failed = fail_study.is_some();
    if let Some(msg) = fail_study {
        if let Some(live) = inner.studies.remove(&study_id) {
            for t in live.running.values() {
                t.cancel();
            }
        }
        let _ = store.finish_study(study_id, StudyState::Failed, Some(&msg)).await;
    }
    drop(inner);
    if study_failed {
        crate::events::study_finished(&state, study_id).await;
    }
    state.scheduler.wake();
}

#[allow(clippy::too_many_arguments)]
async fn run_on_worker(
    state: &Arc<AppState>,
    study_id: i64,
    trial_id: i64,
    number: u64,
    worker: &WorkerRow,
    cfg: &TrainConfig,
    dataset_sha: &str,
    split_seed: u64,
    token: &CancellationToken,
) -> Outcome {
    let lost = |what: String| Outcome::Failed {
        error: format!("{INTERRUPTED_PREFIX} worker {} {what}", worker.id),
        interrupted: true,
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(worker.grpc_url.clone()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true),
        Err(e) => return lost(format!("has an invalid gRPC URL {}: {e}", worker.grpc_url)),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return lost(format!("is unreachable at {}: {e}", worker.grpc_url)),
    };
    let base = &state.scheduler.public_url;
    let req = TrialRequest {
        trial_id,
        study_id,
        dataset_sha256: dataset_sha.to_string(),
        dataset_url: format!("{base}/api/v1/datasets/by-sha/{dataset_sha}/archive"),
        artifact_url: format!("{base}/api/v1/internal/trials/{trial_id}/weights"),
        config_json: tanren_proto::encode_config(cfg),
        split_seed,
    };
    let mut client = WorkerClient::new(channel);
    let mut stream = tokio::select! {
        _ = token.cancelled() => return Outcome::Stopped,
        r = client.run_trial(req) => match r {
            Ok(s) => s.into_inner(),
            Err(s) => return classify(s, worker),
        }
    };
    loop {
        let msg = tokio::select! {
            _ = token.cancelled() => return Outcome::Stopped,
            m = stream.message() => m,
        };
        let event = match msg {
            Ok(Some(ev)) => ev.event,
            Ok(None) => return lost("closed the trial stream without a result".into()),
            Err(s) => return classify(s, worker),
        };
        match event {
            Some(Event::Started(s)) => {
                let _ = state.store.set_trial_device(trial_id, &s.device).await;
                crate::events::trial_changed(state, trial_id).await;
            }
            Some(Event::Epoch(e)) => {
                let m: tanren_core::EpochMetrics = e.into();
                if let Err(err) = state.store.insert_epoch(trial_id, &m).await {
                    tracing::error!(trial_id, error = %err, "could not store epoch metrics");
                }
                state.events.epoch(study_id, trial_id, number as i64, &m);
                let mut inner = state.scheduler.inner.lock().await;
                if let Some(live) = inner.studies.get_mut(&study_id) {
                    let decision = live.study.report(number, m.epoch as u64, m.val_accuracy);
                    // After the last epoch the training is done: pruning would only throw away the
                    // evaluation and the weights, so the trial completes whatever the pruner says.
                    if decision.is_ok_and(|d| d == PruneDecision::Prune) && m.epoch < cfg.epochs {
                        tracing::info!(trial_id, epoch = m.epoch, "pruned");
                        return Outcome::Pruned; // dropping the stream stops the worker
                    }
                }
            }
            Some(Event::Result(r)) => {
                return match tanren_proto::decode_result(r) {
                    Ok(result) if state.files.weights(trial_id).exists() => {
                        Outcome::Complete(Box::new(result))
                    }
                    Ok(_) => Outcome::Failed {
                        error: "worker reported a result but uploaded no weights".into(),
                        interrupted: false,
                    },
                    Err(s) => Outcome::Failed {
                        error: format!("worker sent an unreadable result: {}", s.message()),
                        interrupted: false,
                    },
                };
            }
            None => {}
        }
    }
}

/// Errors from the worker's side: trial faults count as failures, lost workers as interruptions.
fn classify(s: tonic::Status, worker: &WorkerRow) -> Outcome {
    let interrupted = match s.code() {
        Code::Unknown
        | Code::Unavailable
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::DeadlineExceeded => true,
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
        | Code::DataLoss
        | Code::Unauthenticated => false,
    };
    if interrupted {
        Outcome::Failed {
            error: format!(
                "{INTERRUPTED_PREFIX} worker {} connection lost mid-trial: {}",
                worker.id,
                s.message()
            ),
            interrupted: true,
        }
    } else {
        Outcome::Failed {
            error: s.message().to_string(),
            interrupted: false,
        }
    }
}
