//! The scheduler: keeps one search-engine `Study` per running study in memory (rebuilt from the
//! database at start), asks it for trials when a live worker is free, dispatches each trial over gRPC,
//! writes every event to the database as it arrives, and tells the outcome back to the search engine.
//!
//! It is split in three: `core` decides (a state machine with no IO: it is fed events and the time and
//! answers `Action`s), `worker_client` talks gRPC to workers (typed events and errors), and this module
//! is the driver that carries out the actions (database writes, events, trial tasks) and feeds their
//! results back to the core. ARCHITECTURE.md ("The scheduler's concurrency model") says who owns what.
//!
//! Invariants:
//! - a trial row exists (queued) before its dispatch starts, and ends complete, pruned or failed with a
//!   `FailureKind`; nothing stays running after its worker connection ends;
//! - the sampler and the database never disagree for long: a trial the sampler handed out whose row
//!   could not be inserted is inserted (same number, same parameters) before anything else is asked, so
//!   a restart finds gap-free numbers; the sampler hears a trial's outcome only after its end is stored;
//! - an interrupted trial (worker lost, connection refused, shutdown) is retried with the same parameters
//!   and seed as a new trial that points at it (`retry_of`), up to `max_retries` times; interrupted
//!   trials use no budget and never count toward the consecutive failures that end a study. Pending
//!   retries are derived from the rows, so a restart resumes them too;
//! - a worker that refuses a connection or loses one mid-trial gets no trial until it registers again;
//! - no trial waits forever: once epochs are measured, a worker silent for 5 mean epochs plus
//!   `trial_silence` has hung (it may still heartbeat) and the trial is interrupted; `trial_timeout` caps
//!   every trial; at a study's minutes deadline its running trials are cancelled;
//! - a worker runs at most its `slots` trials at once (it registers how many); free slots are handed
//!   out one per worker per round (an idle worker before a second trial on a busy one), each to the
//!   study with the fewest trials running; a worker that answers "busy" (its memory is short) gets no
//!   more than it runs now until one of those ends, and the trial is retried without using an attempt;
//! - the locks (`std::sync::Mutex`, the core's and the cancel tokens') are never held across an
//!   `.await` nor together: the compiler enforces the first, because a guard held there would make the
//!   spawned futures `!Send`.

mod core;
mod worker_client;

use self::core::{final_kind, space_params, Action, Core, Job, Live, Plan, Retry, StopWhy, TrialEnd};
use self::worker_client::{is_interruption, status_chain, DispatchError, WorkerConn, WorkerEvent};
use crate::study_spec::StudySpec;
use crate::AppState;
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tanren_core::{EndReason, EpochMetrics, FailureKind, StudyState, TrainConfig, TrialState};
use tanren_proto::v1::TrialRequest;
use tanren_search::{PruneDecision, Study, TellOutcome, TrialRecord, TrialStatus};
use tanren_store::{now_ms, FinishedTrial, StoreError, StudyRow, TrialRow, WorkerRow};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub const INTERRUPTED_RESTART: &str =
    "interrupted: the control plane restarted while this trial was queued or running";
const INTERRUPTED_SHUTDOWN: &str = "interrupted: the control plane shut down while this trial was running";
/// How long shutdown waits for trial tasks to record that they were interrupted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Scheduler {
    pub(crate) public_url: String,
    worker_timeout: Duration,
    max_retries: u32,
    /// Used for workers that advertise `https://` (crate::tls::worker_client_config).
    worker_tls: Option<tonic::transport::ClientTlsConfig>,
    /// Every decision (core.rs).
    core: Mutex<Core>,
    /// trial id -> how to cancel its task; inserted before the core hears the trial started, so a
    /// `Cancel` the core answers after that always finds it.
    running: Mutex<HashMap<i64, Running>>,
    /// worker id -> the secret this process shows it on every RPC (crate::auth); in memory only, so a
    /// restarted control plane dispatches to a worker only after it registered again.
    credentials: Mutex<HashMap<String, String>>,
    wake: Notify,
    /// Trial tasks, drained at shutdown so each records its interruption before the store closes.
    tasks: TaskTracker,
}

struct Running {
    token: CancellationToken,
    why: Arc<OnceLock<StopWhy>>,
}

/// How a trial's run on its worker ended, before it is stored.
enum Outcome {
    Complete(Box<tanren_core::TrialResult>),
    Pruned,
    /// The worker refused it for now (not enough memory beside its running trials): interrupted and
    /// retried without using an attempt.
    Busy(String),
    Failed {
        kind: FailureKind,
        error: String,
        /// The worker refused or dropped the connection: it gets no trial until it registers again.
        worker_down: bool,
        /// ... and none at all for this long (it hung).
        sit_out: Duration,
    },
    Stopped(StopWhy),
}

fn failure_kind(t: &TrialRow) -> Option<FailureKind> {
    t.failure_kind.as_deref().and_then(|k| k.parse().ok())
}

/// Rebuild what the search engine knows about a trial from its row and epochs.
fn record(t: &TrialRow, epochs: &[tanren_store::EpochRow], spec: &StudySpec) -> TrialRecord {
    let state: TrialState = t.state.parse().unwrap_or(TrialState::Failed);
    let status = match state {
        TrialState::Complete => TrialStatus::Complete,
        TrialState::Pruned => TrialStatus::Pruned,
        TrialState::Queued | TrialState::Running | TrialState::Failed => TrialStatus::Failed,
    };
    // The values the trial was told as when it ended; NaN ones failed it then (as `tell` does).
    let values = (status == TrialStatus::Complete).then(|| {
        spec.objectives
            .values(t.val_accuracy.unwrap_or(0.0), t.inference_ms)
    });
    let nan = values.as_ref().is_some_and(|v| v.iter().any(|x| x.is_nan()));
    let (status, values) = if nan {
        (TrialStatus::Failed, None)
    } else {
        (status, values)
    };
    TrialRecord {
        number: t.number as u64,
        params: space_params(&t.params, spec),
        status,
        values,
        intermediate: epochs
            .iter()
            .filter(|e| e.trial_id == t.id)
            .map(|e| (e.epoch as u64, e.val_accuracy))
            .collect(),
    }
}

/// Records for `Study::restore`, which needs numbers 0, 1, 2, ...: a number with no row (a database
/// written before inserts were made safe) becomes a failed trial at the baseline configuration, which
/// samplers ignore.
fn records_without_gaps(
    trials: &[TrialRow],
    epochs: &[tanren_store::EpochRow],
    spec: &StudySpec,
) -> Vec<TrialRecord> {
    let mut filler = spec.image_space.baseline();
    filler.retain(|k, _| spec.image_space.space.get(k).is_some());
    spec.search.space.normalize_params(&mut filler);
    let mut out: Vec<TrialRecord> = Vec::with_capacity(trials.len());
    let mut sorted: Vec<&TrialRow> = trials.iter().collect();
    sorted.sort_by_key(|t| t.number);
    for t in sorted {
        while (out.len() as i64) < t.number {
            out.push(TrialRecord {
                number: out.len() as u64,
                params: filler.clone(),
                status: TrialStatus::Failed,
                values: None,
                intermediate: Vec::new(),
            });
        }
        out.push(record(t, epochs, spec));
    }
    out
}

/// Retry a database write a few times (about 4 s in all) before giving up: a busy SQLite file or a
/// PostgreSQL failover should not lose a trial's end. Constraint violations are not retried.
async fn with_retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tries < 5 && e.is_transient() => {
                tracing::warn!(error = %e, tries, "{what}: database write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 3;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Scheduler {
    pub fn with_worker_tls(mut self, tls: tonic::transport::ClientTlsConfig) -> Self {
        self.worker_tls = Some(tls);
        self
    }

    pub fn new(public_url: String, worker_timeout: Duration, max_retries: u32) -> Self {
        Scheduler {
            public_url,
            worker_timeout,
            max_retries,
            worker_tls: None,
            core: Mutex::new(Core::default()),
            running: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The core's lock. A panic while it was held cannot leave it half-updated in a way that matters
    /// more than stopping the scheduler would, so poisoning is ignored.
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<i64, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The credential this control plane presents to a worker over gRPC, made when the worker first
    /// registers (with the join token) in this process and answered on every registration after.
    pub fn issue_credential(&self, worker_id: &str) -> String {
        let mut c = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(worker_id.to_string())
            .or_insert_with(crate::auth::random_secret)
            .clone()
    }

    /// Take a live worker that runs nothing for a probe: the scheduler sends it no trial until
    /// `release_probe_worker`. `None` when every live worker is busy.
    pub fn claim_probe_worker(&self, live: Vec<WorkerRow>) -> Option<WorkerRow> {
        self.core().claim_probe_worker(live)
    }

    pub fn release_probe_worker(&self, worker_id: &str) {
        self.core().release_probe_worker(worker_id);
        self.wake();
    }

    /// The TLS client config for `https://` workers.
    pub(crate) fn worker_tls(&self) -> Option<&tonic::transport::ClientTlsConfig> {
        self.worker_tls.as_ref()
    }

    pub(crate) fn credential(&self, worker_id: &str) -> Option<String> {
        let c = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        c.get(worker_id).cloned()
    }

    /// Load every running study from the database (start-up). A study that cannot be resumed (its spec
    /// no longer parses, its trials cannot be restored) is marked failed with the reason; the others
    /// start. Only a database that cannot be read is an error.
    pub async fn restore(&self, state: &AppState) -> anyhow::Result<()> {
        for row in state.store.studies_in_state(StudyState::Running).await? {
            let id = row.id;
            match self.restore_one(state, row).await {
                Ok(live) => {
                    self.core().add_study(live);
                }
                Err(e) => {
                    let why = format!("could not resume after a restart: {e:#}");
                    tracing::error!(study_id = id, error = %why, "study not resumed");
                    state
                        .store
                        .finish_study(id, StudyState::Failed, EndReason::Failed, Some(&why))
                        .await?;
                }
            }
        }
        self.wake();
        Ok(())
    }

    async fn restore_one(&self, state: &AppState, row: StudyRow) -> anyhow::Result<Live> {
        let spec: StudySpec = serde_json::from_str(&row.spec).context("its stored spec no longer parses")?;
        let trials = state.store.trials(row.id).await?;
        let epochs = state.store.epochs_for_study(row.id).await?;
        let mut study = Study::restore(spec.search.clone(), records_without_gaps(&trials, &epochs, &spec))
            .context("its trials cannot be restored")?;
        if spec.baseline && trials.is_empty() {
            study.enqueue(spec.image_space.baseline())?;
        }
        let mut live = Live::new(row, spec, study, self.max_retries);
        // Interrupted trials nobody retried yet (the process ended first) are retried now.
        let retried: HashSet<i64> = trials.iter().filter_map(|t| t.retry_of).collect();
        let mut exhausted = HashSet::new();
        for t in &trials {
            if failure_kind(t) != Some(FailureKind::Interrupted) || retried.contains(&t.id) {
                continue;
            }
            let config = serde_json::from_str::<TrainConfig>(&t.config);
            match config {
                Ok(config) if (t.attempt as u32) < live.max_retries => live.retries.push_back(Retry {
                    params: space_params(&t.params, &live.spec),
                    params_json: t.params.clone(),
                    config,
                    retry_of: t.id,
                    attempt: t.attempt as u32 + 1,
                }),
                _ => {
                    let why = format!(
                        "{}; not retried again after {} attempt(s)",
                        t.error.as_deref().unwrap_or("interrupted"),
                        t.attempt + 1
                    );
                    state
                        .store
                        .set_failure_kind(t.id, FailureKind::RetriesExhausted, &why)
                        .await?;
                    exhausted.insert(t.id);
                }
            }
        }
        live.counted = trials
            .iter()
            .filter(|t| {
                exhausted.contains(&t.id)
                    || t.state != TrialState::Failed.as_str()
                    || failure_kind(t).is_none_or(FailureKind::uses_budget)
            })
            .count() as u32;
        tracing::info!(
            study_id = live.row.id,
            trials = trials.len(),
            retries = live.retries.len(),
            "resuming study"
        );
        Ok(live)
    }

    pub async fn add_study(&self, row: StudyRow, spec: StudySpec) -> Result<(), tanren_search::StudyError> {
        let mut study = Study::new(spec.search.clone())?;
        if spec.baseline {
            study.enqueue(spec.image_space.baseline())?;
        }
        self.core()
            .add_study(Live::new(row, spec, study, self.max_retries));
        self.wake();
        Ok(())
    }

    /// Stop a study: no new trials; running ones are cancelled (their workers stop within a step).
    pub async fn stop(&self, study_id: i64) -> bool {
        let actions = self.core().stop(study_id);
        match actions {
            Some(actions) => {
                self.cancel(actions);
                true
            }
            None => false,
        }
    }

    /// Carry out the core's `Cancel`s, which need no IO (`stop` and shutdown answer nothing else;
    /// `carry_out` handles every action).
    fn cancel(&self, actions: Vec<Action>) {
        let tokens = self.tokens();
        for a in actions {
            if let Action::Cancel { trial_id, why } = a {
                if let Some(r) = tokens.get(&trial_id) {
                    let _ = r.why.set(why);
                    r.token.cancel();
                }
            }
        }
    }

    /// Number of trials running right now, per study (for progress).
    pub async fn running_count(&self, study_id: i64) -> usize {
        self.core().running_count(study_id)
    }

    /// What each busy worker runs now: worker id -> (study id, trial id) per taken slot.
    pub async fn busy_workers(&self) -> HashMap<String, Vec<(i64, i64)>> {
        self.core().busy_workers()
    }

    /// How many trials of one running study run at once on `live` workers: their slots, shared
    /// fairly among the running studies (at least 1).
    pub fn slots_per_study(&self, live: &[WorkerRow]) -> usize {
        share(live, self.core().running_studies())
    }

    /// The same for a study about to start, beside the running ones.
    pub fn slots_for_new_study(&self, live: &[WorkerRow]) -> usize {
        share(live, self.core().running_studies() + 1)
    }

    /// Workers heard from within the timeout, registered with this process (only then do both sides
    /// hold its credential), and not found down since their last registration.
    pub fn live_workers(&self, workers: Vec<WorkerRow>) -> Vec<WorkerRow> {
        let now = now_ms();
        let cutoff = now - self.worker_timeout.as_millis() as i64;
        let creds = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        self.core()
            .live_workers(workers, now, cutoff, |id| creds.contains_key(id))
    }
}

/// The slots of `live` workers shared among `studies` (at least 1 each).
fn share(live: &[WorkerRow], studies: usize) -> usize {
    let slots: usize = live.iter().map(|w| w.slots.max(1) as usize).sum();
    (slots / studies.max(1)).max(1)
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
    let sched = &state.scheduler;
    let actions = sched.core().on_shutdown();
    sched.cancel(actions);
    sched.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, sched.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("trial tasks still running at shutdown; they restart as interrupted");
    }
}

async fn tick(state: &Arc<AppState>) -> anyhow::Result<()> {
    let sched = &state.scheduler;
    let workers = sched.live_workers(state.store.workers().await?);
    let actions = sched.core().on_tick(now_ms(), workers);
    let mut insert_failed = HashSet::new();
    for (study_id, plan, worker) in carry_out(state, actions).await {
        if insert_failed.contains(&study_id) {
            // Keep the numbers gap-free: nothing after a failed insert is written before it.
            sched.core().on_insert_failed(study_id, plan, &worker.id);
            continue;
        }
        if !insert_and_start(state, study_id, plan, worker).await {
            insert_failed.insert(study_id);
        }
    }
    Ok(())
}

/// Carry out the core's cancels and study ends, in order; the trials to start are returned, in
/// order, for the tick (only `on_tick` answers any).
async fn carry_out(state: &AppState, actions: Vec<Action>) -> Vec<(i64, Plan, WorkerRow)> {
    let mut starts = Vec::new();
    for action in actions {
        match action {
            Action::Cancel { .. } => state.scheduler.cancel(vec![action]),
            Action::EndStudy {
                study_id,
                state: end,
                reason,
                error,
            } => end_study(state, study_id, end, reason, error).await,
            Action::Start {
                study_id,
                plan,
                worker,
            } => starts.push((study_id, *plan, worker)),
        }
    }
    starts
}

/// Store a study's end and publish it. Not stored, it stays `running` in the database: a restart
/// resumes it and ends it then.
async fn end_study(state: &AppState, id: i64, end: StudyState, reason: EndReason, error: Option<String>) {
    let r = with_retry("end study", || {
        state.store.finish_study(id, end, reason, error.as_deref())
    })
    .await;
    match r {
        Ok(_) => {
            crate::events::study_finished(state, id).await;
            tracing::info!(study_id = id, %reason, state = %end.as_str(), "study ended");
        }
        Err(e) => tracing::error!(study_id = id, error = %e, "study end not stored"),
    }
}

/// Insert a planned trial's row and start it. `false` when the row could not be inserted (the core
/// has it back, to insert again before anything new).
async fn insert_and_start(state: &Arc<AppState>, study_id: i64, plan: Plan, worker: WorkerRow) -> bool {
    let sched = &state.scheduler;
    let config_json = match &plan.config {
        Ok(c) => serde_json::to_string(c).unwrap_or_else(|_| "null".into()),
        Err(_) => "null".into(),
    };
    let inserted = with_retry("insert trial", || {
        state.store.insert_trial_attempt(
            study_id,
            plan.number as i64,
            &plan.params_json,
            &config_json,
            plan.retry_of,
            plan.attempt as i64,
        )
    })
    .await;
    let inserted = match inserted {
        // The insert may have committed with only its answer lost (a dropped connection), and the
        // retry then hits the unique number: that row is this trial.
        Err(e) if !e.is_transient() => existing_row(state, study_id, &plan).await.ok_or(e),
        other => other,
    };
    let row = match inserted {
        Ok(row) => row,
        Err(e) => {
            tracing::error!(study_id, number = plan.number, error = %e, "trial row not inserted; will insert it again");
            sched.core().on_insert_failed(study_id, plan, &worker.id);
            return false;
        }
    };
    state.events.trial(&row);
    start(state, study_id, plan, row, worker).await;
    true
}

/// A queued row already holding this trial's number and parameters.
async fn existing_row(state: &AppState, study_id: i64, plan: &Plan) -> Option<TrialRow> {
    let row = state
        .store
        .trial_by_number(study_id, plan.number as i64)
        .await
        .ok()??;
    (row.state == TrialState::Queued.as_str() && row.params == plan.params_json).then_some(row)
}

/// The row exists: hand the trial to its worker, or fail it at once if its config is invalid.
async fn start(state: &Arc<AppState>, study_id: i64, plan: Plan, row: TrialRow, worker: WorkerRow) {
    let sched = &state.scheduler;
    let cfg = match &plan.config {
        Ok(cfg) => cfg.clone(),
        Err(msg) => {
            if let Err(e) = end_failed(state, row.id, FailureKind::Error, msg).await {
                tracing::error!(trial_id = row.id, error = %e, "trial end not stored");
            }
            crate::events::trial_changed(state, row.id).await;
            sched.core().on_invalid_config(study_id, plan.number, &worker.id);
            return;
        }
    };
    let token = CancellationToken::new();
    let why = Arc::new(OnceLock::new());
    sched.tokens().insert(
        row.id,
        Running {
            token: token.clone(),
            why: why.clone(),
        },
    );
    let job = sched.core().on_inserted(study_id, row.id, &plan, cfg, &worker.id);
    match job {
        Some(job) => {
            tracing::info!(study_id, trial_id = row.id, number = plan.number, attempt = plan.attempt, worker_id = %worker.id, "dispatching trial");
            let d = Dispatch {
                study_id,
                trial_id: row.id,
                worker,
                job,
                token,
                why,
            };
            sched.tasks.spawn(dispatch(state.clone(), d));
        }
        None => {
            sched.tokens().remove(&row.id);
            // Stopped while its row was being written.
            let msg = "stopped: the study was stopped";
            match end_failed(state, row.id, FailureKind::Stopped, msg).await {
                Ok(()) => crate::events::trial_changed(state, row.id).await,
                // Left queued: the next start marks it interrupted; its study is no longer running.
                Err(e) => tracing::error!(trial_id = row.id, error = %e, "trial end not stored"),
            }
        }
    }
}

struct Dispatch {
    study_id: i64,
    trial_id: i64,
    worker: WorkerRow,
    job: Job,
    token: CancellationToken,
    why: Arc<OnceLock<StopWhy>>,
}

async fn dispatch(state: Arc<AppState>, d: Dispatch) {
    let span =
        tracing::info_span!("trial", study_id = d.study_id, trial_id = d.trial_id, worker_id = %d.worker.id);
    let mut unsaved_epochs = Vec::new();
    let dispatched = std::time::Instant::now();
    let started = with_retry("start trial", || {
        state.store.start_trial(d.trial_id, &d.worker.id)
    })
    .await;
    let outcome = match started {
        Ok(()) => {
            crate::events::trial_changed(&state, d.trial_id).await;
            run_on_worker(&state, &d, &mut unsaved_epochs)
                .instrument(span.clone())
                .await
        }
        Err(e) => Outcome::Failed {
            kind: FailureKind::Interrupted,
            error: format!("interrupted: the trial's start could not be stored: {e}"),
            worker_down: false,
            sit_out: Duration::ZERO,
        },
    };
    let ended = match &outcome {
        Outcome::Complete(_) => "complete",
        Outcome::Pruned => "pruned",
        Outcome::Busy(_) => FailureKind::Interrupted.as_str(),
        Outcome::Failed { kind, .. } => kind.as_str(),
        Outcome::Stopped(_) => "stopped",
    };
    finish(&state, &d, outcome, &unsaved_epochs)
        .instrument(span)
        .await;
    state
        .metrics
        .trial_ended(ended, dispatched.elapsed().as_secs_f64());
}

/// Record how a trial ended, then tell the core (which tells the search engine and counts it).
async fn finish(state: &Arc<AppState>, d: &Dispatch, outcome: Outcome, unsaved_epochs: &[EpochMetrics]) {
    // First: an upload still streaming can no longer land, and the worker's trial token is dead.
    state.auth.end_trial(d.trial_id);
    let sched = &state.scheduler;
    let store = &state.store;
    let trial_id = d.trial_id;
    // A lost worker gets nothing more from now on, before the trial's end is even stored.
    if let Outcome::Failed {
        worker_down: true,
        sit_out,
        ..
    } = &outcome
    {
        sched.core().on_worker_lost(&d.worker.id, now_ms(), *sit_out);
    }
    let busy = matches!(outcome, Outcome::Busy(_));
    // (what the sampler hears, why it failed, the error, the write).
    let (tell, kind, error, stored) = match outcome {
        Outcome::Complete(r) => {
            let rel = format!("models/{trial_id}/model.safetensors");
            let weights = state.files.weights(trial_id);
            match tokio::task::spawn_blocking(move || {
                std::fs::read(weights).map(|b| hex::encode(Sha256::digest(b)))
            })
            .await
            {
                Ok(Ok(sha)) => {
                    let f = FinishedTrial {
                        state: TrialState::Complete,
                        result: &r,
                        epochs: unsaved_epochs,
                        weights_path: Some(&rel),
                        model_sha256: Some(&sha),
                    };
                    let stored = with_retry("finish trial", || store.finish_trial(trial_id, &f)).await;
                    let values = d
                        .job
                        .objectives
                        .values(r.val_accuracy, Some(r.inference_ms_per_image));
                    (TellOutcome::Complete(values), None, None, stored)
                }
                Ok(Err(e)) => {
                    let msg = format!("the uploaded weights cannot be read: {e}");
                    let stored = end_failed(state, trial_id, FailureKind::Error, &msg).await;
                    (TellOutcome::Failed, Some(FailureKind::Error), Some(msg), stored)
                }
                Err(e) => {
                    let msg = format!("hashing the weights: {e}");
                    let stored = end_failed(state, trial_id, FailureKind::Error, &msg).await;
                    (TellOutcome::Failed, Some(FailureKind::Error), Some(msg), stored)
                }
            }
        }
        Outcome::Pruned => {
            for m in unsaved_epochs {
                if let Err(e) = with_retry("store epoch", || store.insert_epoch(trial_id, m)).await {
                    tracing::error!(trial_id, epoch = m.epoch, error = %e, "epoch metrics lost");
                }
            }
            let stored = with_retry("prune trial", || {
                store.end_trial_without_result(trial_id, TrialState::Pruned, None, None)
            })
            .await;
            (TellOutcome::Pruned, None, None, stored)
        }
        Outcome::Busy(error) => {
            tracing::info!(%error, "worker busy; the trial is retried");
            let kind = FailureKind::Interrupted;
            let stored = end_failed(state, trial_id, kind, &error).await;
            (TellOutcome::Failed, Some(kind), Some(error), stored)
        }
        Outcome::Failed { kind, error, .. } => {
            let (attempt, max) = (d.job.trial.attempt, d.job.max_retries);
            let kind = final_kind(kind, attempt, max);
            let error = match kind {
                FailureKind::RetriesExhausted => {
                    format!(
                        "{error} (attempt {} of {}; not retried again)",
                        attempt + 1,
                        max + 1
                    )
                }
                _ => error,
            };
            tracing::warn!(kind = %kind, %error, "trial failed");
            let stored = end_failed(state, trial_id, kind, &error).await;
            (TellOutcome::Failed, Some(kind), Some(error), stored)
        }
        Outcome::Stopped(why) => {
            let (kind, msg) = match why {
                StopWhy::Shutdown => (FailureKind::Interrupted, INTERRUPTED_SHUTDOWN),
                StopWhy::Stopped => (FailureKind::Stopped, "stopped: the study was stopped"),
                StopWhy::StudyFailed => (FailureKind::Stopped, "stopped: the study failed"),
                StopWhy::Budget => (
                    FailureKind::Stopped,
                    "stopped: the study's minutes budget ran out",
                ),
            };
            let stored = end_failed(state, trial_id, kind, msg).await;
            (TellOutcome::Failed, Some(kind), Some(msg.to_string()), stored)
        }
    };
    // Weights of a trial that did not complete (uploaded before a lost result, or half of a failed
    // upload) can never be used: they go now, with the trial token already dead.
    if !matches!(tell, TellOutcome::Complete(_)) {
        remove_model_dir(state, trial_id).await;
    }
    match &stored {
        // The row stays `running`; a restart marks it interrupted and retries it. The search engine
        // hears "failed" so it does not build on a result the database does not have.
        Err(e) => tracing::error!(trial_id, error = %e, "trial end not stored"),
        Ok(()) => crate::events::trial_changed(state, trial_id).await,
    }
    sched.tokens().remove(&trial_id);
    let actions = sched.core().on_trial_end(TrialEnd {
        study_id: d.study_id,
        trial_id,
        worker_id: d.worker.id.clone(),
        tell,
        kind,
        error,
        busy,
        stored: stored.is_ok(),
    });
    let starts = carry_out(state, actions).await;
    debug_assert!(starts.is_empty(), "only a tick starts trials");
    sched.wake();
}

async fn remove_model_dir(state: &AppState, trial_id: i64) {
    let dir = state.files.model_dir(trial_id);
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => tracing::info!(trial_id, "removed the weights of a trial that did not complete"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(trial_id, error = %e, dir = %dir.display(), "could not remove weights"),
    }
}

/// At start: model dirs whose trial is not complete (a previous process died between an upload and
/// the trial's end) are removed, so no file outlives its trial.
pub async fn sweep_orphan_models(state: &AppState) -> anyhow::Result<()> {
    let root = state.files.model_dir(0);
    let root = root.parent().context("models dir")?;
    let mut entries = tokio::fs::read_dir(root).await?;
    while let Some(e) = entries.next_entry().await? {
        let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        let keep = match state.store.trial(id).await {
            Ok(t) => t.state == TrialState::Complete.as_str(),
            Err(StoreError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if !keep {
            remove_model_dir(state, id).await;
        }
    }
    Ok(())
}

async fn end_failed(
    state: &AppState,
    trial_id: i64,
    kind: FailureKind,
    error: &str,
) -> Result<(), StoreError> {
    with_retry("fail trial", || {
        state
            .store
            .end_trial_without_result(trial_id, TrialState::Failed, Some(kind), Some(error))
    })
    .await
}

async fn run_on_worker(
    state: &Arc<AppState>,
    d: &Dispatch,
    unsaved_epochs: &mut Vec<EpochMetrics>,
) -> Outcome {
    let worker = &d.worker;
    let trial_id = d.trial_id;
    let sched = &state.scheduler;
    let cfg = &d.job.trial.config;
    let number = d.job.trial.number;
    let stopped = || Outcome::Stopped(d.why.get().copied().unwrap_or(StopWhy::Stopped));
    // A trial ends by its hard cap at the latest; once epochs are measured, a worker silent for five
    // mean epochs (plus a margin for evaluation and the weight upload) has hung.
    let hard_cap = tokio::time::Instant::now() + state.config.trial_timeout;
    let hung = |waited: Duration, expected: Option<f64>| Outcome::Failed {
        kind: FailureKind::Interrupted,
        error: match expected {
            Some(e) => format!(
                "interrupted: worker {} sent nothing for {:.0} s (an epoch takes ~{e:.1} s); deadline passed",
                worker.id,
                waited.as_secs_f64()
            ),
            None => format!(
                "interrupted: trial exceeded the {:.0} min trial timeout on worker {}",
                state.config.trial_timeout.as_secs_f64() / 60.0,
                worker.id
            ),
        },
        worker_down: true,
        // It may still heartbeat: keep trials away from it for a while.
        sit_out: state.config.trial_silence,
    };
    let mut last_heard = tokio::time::Instant::now();
    let mut epoch_secs: Option<f64> = None;
    let mut conn = tokio::select! {
        _ = d.token.cancelled() => return stopped(),
        c = WorkerConn::connect(worker, sched.worker_tls(), sched.credential(&worker.id)) => match c {
            Ok(c) => c,
            Err(e) => return dispatch_failed(state, d, None, e).await,
        }
    };
    let trial_token = state.auth.grant_trial(trial_id, &d.job.dataset_sha);
    let base = &sched.public_url;
    let req = TrialRequest {
        trial_id,
        study_id: d.study_id,
        dataset_sha256: d.job.dataset_sha.clone(),
        dataset_url: format!("{base}/api/v1/datasets/by-sha/{}/archive", d.job.dataset_sha),
        artifact_url: format!("{base}/api/v1/internal/trials/{trial_id}/weights"),
        config_json: tanren_proto::encode_config(cfg),
        split_seed: d.job.split_seed,
        trial_token,
    };
    let mut stream = tokio::select! {
        _ = d.token.cancelled() => return stopped(),
        _ = tokio::time::sleep_until(hard_cap) => return hung(last_heard.elapsed(), None),
        r = conn.run_trial(req) => match r {
            Ok(s) => s,
            Err(e) => return dispatch_failed(state, d, Some(&conn), e).await,
        }
    };
    loop {
        let silence_deadline =
            epoch_secs.map(|e| last_heard + Duration::from_secs_f64(5.0 * e) + state.config.trial_silence);
        let deadline = silence_deadline.map_or(hard_cap, |s| s.min(hard_cap));
        let msg = tokio::select! {
            _ = d.token.cancelled() => return stopped(),
            _ = tokio::time::sleep_until(deadline) => {
                let expected = epoch_secs.filter(|_| deadline < hard_cap);
                return hung(last_heard.elapsed(), expected);
            }
            m = stream.next() => m,
        };
        last_heard = tokio::time::Instant::now();
        let event = match msg {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                return dispatch_failed(
                    state,
                    d,
                    None,
                    DispatchError::Lost("closed the trial stream without a result".into()),
                )
                .await
            }
            Err(e) => return dispatch_failed(state, d, Some(&conn), e).await,
        };
        match event {
            WorkerEvent::Started { device } => {
                if let Err(e) = state.store.set_trial_device(trial_id, &device).await {
                    tracing::warn!(trial_id, error = %e, "could not store the trial's device");
                }
                crate::events::trial_changed(state, trial_id).await;
            }
            WorkerEvent::Epoch(m) => {
                if m.epoch > 0 && m.elapsed_seconds.is_finite() && m.elapsed_seconds > 0.0 {
                    let previous = epoch_secs.map_or(0.0, |e| e * (m.epoch - 1) as f64);
                    state.metrics.epoch((m.elapsed_seconds - previous).max(0.0));
                    epoch_secs = Some(m.elapsed_seconds / m.epoch as f64);
                }
                if let Err(err) = state.store.insert_epoch(trial_id, &m).await {
                    // Written again with the trial's end, in its transaction.
                    tracing::warn!(trial_id, error = %err, "could not store epoch metrics; kept for the trial's end");
                    unsaved_epochs.push(m.clone());
                }
                state.events.epoch(d.study_id, trial_id, number as i64, &m);
                let decision = sched
                    .core()
                    .on_epoch(d.study_id, number, m.epoch as u64, m.val_accuracy);
                // After the last epoch the training is done: pruning would only throw away the
                // evaluation and the weights, so the trial completes whatever the pruner says.
                if decision.is_some_and(|d| d.is_ok_and(|d| d == PruneDecision::Prune))
                    && m.epoch < cfg.epochs
                {
                    tracing::info!(trial_id, epoch = m.epoch, "pruned");
                    return Outcome::Pruned; // dropping the stream stops the worker
                }
            }
            WorkerEvent::Result(result) => {
                return if state.files.weights(trial_id).exists() {
                    Outcome::Complete(result)
                } else {
                    Outcome::Failed {
                        kind: FailureKind::Error,
                        error: "worker reported a result but uploaded no weights".into(),
                        worker_down: false,
                        sit_out: Duration::ZERO,
                    }
                };
            }
        }
    }
}

/// What a failed dispatch means for the trial and its worker. A worker that answered "busy" with
/// other trials of ours running takes no more for now, and the trial is retried without using an
/// attempt (with none of ours there, something else holds it: treated as a lost connection, so the
/// attempt counts and it cannot go on forever). A broken connection is an interruption: a worker that
/// died refuses the next connection and is welcome back as soon as it registers again; one that does
/// not answer at all hangs (or the network to it is cut) and sits out `trial_silence` even if it still
/// heartbeats, so it does not swallow one trial after another.
async fn dispatch_failed(
    state: &AppState,
    d: &Dispatch,
    conn: Option<&WorkerConn>,
    e: DispatchError,
) -> Outcome {
    let worker = &d.worker;
    let status = match e {
        DispatchError::Lost(what) => {
            return Outcome::Failed {
                kind: FailureKind::Interrupted,
                error: format!("interrupted: worker {} {what}", worker.id),
                worker_down: true,
                sit_out: Duration::ZERO,
            }
        }
        DispatchError::Invalid(error) => {
            return Outcome::Failed {
                kind: FailureKind::Error,
                error,
                worker_down: false,
                sit_out: Duration::ZERO,
            }
        }
        DispatchError::Busy(s) => {
            if state.scheduler.core().on_busy(&worker.id, d.trial_id) {
                return Outcome::Busy(format!(
                    "interrupted: worker {} is busy: {}",
                    worker.id,
                    s.message()
                ));
            }
            s
        }
        DispatchError::Status(s) => s,
    };
    if !is_interruption(status.code()) {
        return Outcome::Failed {
            kind: FailureKind::Error,
            error: status.message().to_string(),
            worker_down: false,
            sit_out: Duration::ZERO,
        };
    }
    let error = format!(
        "interrupted: worker {} connection lost mid-trial: {}",
        worker.id,
        status_chain(&status)
    );
    match conn {
        Some(conn) if !conn.answers().await => {
            let sit_out = state.config.trial_silence;
            Outcome::Failed {
                kind: FailureKind::Interrupted,
                error: format!(
                    "{error}; it does not answer at all (hung, or the network to it is cut), so it gets \
                     no trial for {} s",
                    sit_out.as_secs()
                ),
                worker_down: true,
                sit_out,
            }
        }
        _ => Outcome::Failed {
            kind: FailureKind::Interrupted,
            error,
            worker_down: true,
            sit_out: Duration::ZERO,
        },
    }
}
