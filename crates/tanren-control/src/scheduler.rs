//! The scheduler: keeps one search-engine `Study` per running study in memory (rebuilt from the
//! database at start), asks it for trials when a live worker is free, dispatches each trial over gRPC,
//! writes every event to the database as it arrives, and tells the outcome back to the search engine.
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
//! - the state lock (`std::sync::Mutex`) is never held across an `.await`: the compiler enforces it,
//!   because a guard held there would make the spawned futures `!Send`.

use crate::study_spec::StudySpec;
use crate::AppState;
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tanren_core::{EndReason, EpochMetrics, FailureKind, StudyState, TrainConfig, TrialResult, TrialState};
use tanren_proto::v1::{trial_event::Event, worker_client::WorkerClient, TrialRequest};
use tanren_search::{Params, PruneDecision, Study, TellOutcome, TrialRecord, TrialStatus};
use tanren_store::{now_ms, FinishedTrial, StoreError, StudyRow, TrialRow, WorkerRow};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;
use tracing::Instrument;

pub const INTERRUPTED_RESTART: &str =
    "interrupted: the control plane restarted while this trial was queued or running";
const MAX_CONSECUTIVE_FAILURES: u32 = 5;
const INTERRUPTED_SHUTDOWN: &str = "interrupted: the control plane shut down while this trial was running";
/// Results carry the confusion matrix and every test prediction; tonic's default 4 MiB is too small
/// for a large test split.
const MAX_RESULT_BYTES: usize = 256 << 20;
/// How long shutdown waits for trial tasks to record that they were interrupted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Scheduler {
    pub(crate) public_url: String,
    worker_timeout: Duration,
    max_retries: u32,
    /// Used for workers that advertise `https://` (crate::tls::worker_client_config).
    worker_tls: Option<tonic::transport::ClientTlsConfig>,
    inner: Mutex<Inner>,
    /// worker id -> (unix ms when it refused a connection or lost one mid-trial, unix ms before which it
    /// gets nothing at all): it gets no trial until it registers (heartbeats) again after the first, and
    /// not before the second (a hung worker that still heartbeats sits out a while).
    down: Mutex<HashMap<String, (i64, i64)>>,
    /// worker id -> the secret this process shows it on every RPC (crate::auth); in memory only, so a
    /// restarted control plane dispatches to a worker only after it registered again.
    credentials: Mutex<HashMap<String, String>>,
    wake: Notify,
    /// Trial tasks, drained at shutdown so each records its interruption before the store closes.
    tasks: TaskTracker,
    /// Set when the control plane shuts down: trials it cancels then are interrupted, not stopped.
    shutting_down: AtomicBool,
}

#[derive(Default)]
struct Inner {
    studies: HashMap<i64, Live>,
    /// worker id -> the (study id, trial id) it runs, one per taken slot; trial id 0 while the row is
    /// being inserted. A worker with nothing running has no entry.
    assigned: HashMap<String, Vec<(i64, i64)>>,
    /// worker id -> the most trials it takes for now: it answered "busy" (not enough memory) with
    /// this many of ours running. Lifted when one of its trials ends.
    full: HashMap<String, usize>,
}

impl Inner {
    /// Slots of `w` free now.
    fn free_slots(&self, w: &WorkerRow) -> usize {
        let cap = (w.slots.max(1) as usize).min(self.full.get(&w.id).copied().unwrap_or(usize::MAX));
        cap.saturating_sub(self.assigned.get(&w.id).map_or(0, Vec::len))
    }

    /// The slot taken for a trial of `study_id` now runs `trial_id`.
    fn bind_slot(&mut self, worker_id: &str, study_id: i64, trial_id: i64) {
        if let Some(slot) = self
            .assigned
            .get_mut(worker_id)
            .and_then(|v| v.iter_mut().find(|s| **s == (study_id, 0)))
        {
            slot.1 = trial_id;
        }
    }

    fn release_slot(&mut self, worker_id: &str, study_id: i64, trial_id: i64) {
        if let Some(v) = self.assigned.get_mut(worker_id) {
            if let Some(i) = v.iter().position(|s| *s == (study_id, trial_id)) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.assigned.remove(worker_id);
            }
        }
    }
}

/// Why a running trial was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopWhy {
    Stopped,
    StudyFailed,
    Budget,
    Shutdown,
}

struct Running {
    token: CancellationToken,
    why: Arc<OnceLock<StopWhy>>,
}

impl Running {
    fn cancel(&self, why: StopWhy) {
        let _ = self.why.set(why);
        self.token.cancel();
    }
}

/// A trial the sampler handed out, not yet in the database.
struct Plan {
    number: u64,
    params_json: String,
    config: Result<TrainConfig, String>,
    retry_of: Option<i64>,
    attempt: u32,
}

/// An interrupted trial to run again with the same parameters and seed.
struct Retry {
    params: Params,
    params_json: String,
    config: TrainConfig,
    retry_of: i64,
    attempt: u32,
}

struct Live {
    row: StudyRow,
    spec: StudySpec,
    study: Study,
    max_retries: u32,
    /// trial id -> its cancellation.
    running: HashMap<i64, Running>,
    /// Asked and being inserted right now.
    reserved: usize,
    /// Asked, but the insert failed: inserted again before anything new is asked.
    unsaved: VecDeque<Plan>,
    retries: VecDeque<Retry>,
    /// Finished trials that use the trial budget (all but interrupted ones).
    counted: u32,
    consecutive_failures: u32,
    /// The sampler has no configuration left (a finite grid).
    exhausted: bool,
}

impl Live {
    fn new(row: StudyRow, spec: StudySpec, study: Study, max_retries: u32) -> Live {
        Live {
            max_retries: spec.max_retries.unwrap_or(max_retries),
            row,
            spec,
            study,
            running: HashMap::new(),
            reserved: 0,
            unsaved: VecDeque::new(),
            retries: VecDeque::new(),
            counted: 0,
            consecutive_failures: 0,
            exhausted: false,
        }
    }

    fn deadline_passed(&self) -> bool {
        match self.row.max_minutes {
            Some(m) => now_ms() >= self.row.created_at + (m * 60_000.0) as i64,
            None => false,
        }
    }

    /// May a new configuration be asked for now? Pending retries and unsaved trials hold their place
    /// in the budget.
    fn wants_more(&self) -> bool {
        let used = self.counted as usize
            + self.running.len()
            + self.reserved
            + self.unsaved.len()
            + self.retries.len();
        !self.deadline_passed()
            && !self.exhausted
            && self.row.max_trials.is_none_or(|max| (used as i64) < max)
    }

    /// Why the study is over, once nothing of it runs any more.
    fn end_reason(&self) -> Option<EndReason> {
        if !self.running.is_empty() || self.reserved > 0 {
            return None;
        }
        if self.deadline_passed() {
            return Some(EndReason::MinutesBudget);
        }
        if !self.unsaved.is_empty() || !self.retries.is_empty() {
            return None;
        }
        if self.exhausted {
            return Some(EndReason::SpaceExhausted);
        }
        self.row
            .max_trials
            .is_some_and(|max| self.counted as i64 >= max)
            .then_some(EndReason::TrialBudget)
    }

    fn cancel_all(&self, why: StopWhy) {
        for r in self.running.values() {
            r.cancel(why);
        }
    }
}

enum Outcome {
    Complete(Box<TrialResult>),
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

fn parse_params(json: &str) -> Params {
    serde_json::from_str(json).unwrap_or_default()
}

/// The search-space part of a trial's stored (full) parameters.
fn space_params(json: &str, spec: &StudySpec) -> Params {
    let mut params = parse_params(json);
    params.retain(|k, _| spec.image_space.space.get(k).is_some());
    params
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
            inner: Mutex::new(Inner::default()),
            down: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            tasks: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The state lock. A panic while it was held cannot leave it half-updated in a way that matters
    /// more than stopping the scheduler would, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn down_map(&self) -> MutexGuard<'_, HashMap<String, (i64, i64)>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut inner = self.lock();
        let w = live
            .into_iter()
            .find(|w| inner.assigned.get(&w.id).is_none_or(Vec::is_empty))?;
        // Study 0, trial 0 in every slot: busy with no trial (the workers view shows it busy), so no
        // trial shares the device with the probe.
        inner
            .assigned
            .insert(w.id.clone(), vec![(0, 0); w.slots.max(1) as usize]);
        Some(w)
    }

    pub fn release_probe_worker(&self, worker_id: &str) {
        self.lock().assigned.remove(worker_id);
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
                    self.lock().studies.insert(id, live);
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
        let live = Live::new(row, spec, study, self.max_retries);
        self.lock().studies.insert(live.row.id, live);
        self.wake();
        Ok(())
    }

    /// Stop a study: no new trials; running ones are cancelled (their workers stop at the next epoch).
    pub async fn stop(&self, study_id: i64) -> bool {
        match self.lock().studies.remove(&study_id) {
            Some(live) => {
                live.cancel_all(StopWhy::Stopped);
                true
            }
            None => false,
        }
    }

    /// Number of trials running right now, per study (for progress).
    pub async fn running_count(&self, study_id: i64) -> usize {
        self.lock().studies.get(&study_id).map_or(0, |l| l.running.len())
    }

    /// What each busy worker runs now: worker id -> (study id, trial id) per taken slot.
    pub async fn busy_workers(&self) -> HashMap<String, Vec<(i64, i64)>> {
        self.lock().assigned.clone()
    }

    /// Workers heard from within the timeout and not found down since their last registration.
    pub fn live_workers(&self, workers: Vec<WorkerRow>) -> Vec<WorkerRow> {
        let now = now_ms();
        let cutoff = now - self.worker_timeout.as_millis() as i64;
        let down = self.down_map();
        workers
            .into_iter()
            .filter(|w| w.last_seen_at >= cutoff)
            // Registered with this process: only then do both sides hold its credential.
            .filter(|w| self.credential(&w.id).is_some())
            .filter(|w| {
                down.get(&w.id)
                    .is_none_or(|&(at, until)| w.last_seen_at > at && now >= until)
            })
            .collect()
    }

    fn mark_down(&self, worker_id: &str, sit_out: Duration) {
        let now = now_ms();
        self.down_map()
            .insert(worker_id.to_string(), (now, now + sit_out.as_millis() as i64));
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
    let sched = &state.scheduler;
    sched.shutting_down.store(true, Ordering::SeqCst);
    for live in sched.lock().studies.values() {
        live.cancel_all(StopWhy::Shutdown);
    }
    sched.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, sched.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("trial tasks still running at shutdown; they restart as interrupted");
    }
}

/// Studies that are over, and trials to start (each with the worker it goes to). Decided under the lock
/// without any IO.
/// What one planning step decided: studies that ended (and why), trials to start (study, trial, worker).
type Decisions = (Vec<(i64, EndReason)>, Vec<(i64, Plan, WorkerRow)>);

/// `free` holds one entry per free slot, the next to hand out last.
fn plan(inner: &mut Inner, mut free: Vec<WorkerRow>) -> Decisions {
    let Inner {
        studies, assigned, ..
    } = inner;
    let mut finished = Vec::new();
    let mut plans = Vec::new();
    let mut active: Vec<i64> = studies.keys().copied().collect();
    active.sort_unstable();
    active.retain(|&id| {
        let live = studies.get_mut(&id).expect("id from keys");
        if live.deadline_passed() {
            live.cancel_all(StopWhy::Budget);
        }
        match live.end_reason() {
            Some(reason) => {
                studies.remove(&id);
                finished.push((id, reason));
                false
            }
            None => true,
        }
    });
    // Fair sharing: each free slot goes to the study with the fewest trials running (or being
    // started) right now, lowest id first on a tie, so a study created later is not starved by an
    // earlier one that could use every slot.
    while !free.is_empty() {
        let load = |id: &i64| studies.get(id).map_or(0, |l| l.running.len() + l.reserved);
        let Some(&id) = active.iter().min_by_key(|id| (load(id), **id)) else {
            break;
        };
        let live = studies.get_mut(&id).expect("active studies are live");
        match next_plan(id, live) {
            Some(next) => {
                let worker = free.pop().expect("not empty");
                assigned.entry(worker.id.clone()).or_default().push((id, 0));
                live.reserved += 1;
                plans.push((id, next, worker));
            }
            None => active.retain(|&a| a != id),
        }
    }
    (finished, plans)
}

/// The study's next trial: an unsaved one first, then a retry, then a new configuration, if it wants
/// one. `None` when it has nothing to start now.
fn next_plan(id: i64, live: &mut Live) -> Option<Plan> {
    loop {
        if let Some(p) = live.unsaved.pop_front() {
            return Some(p);
        }
        if let Some(r) = (!live.deadline_passed())
            .then(|| live.retries.pop_front())
            .flatten()
        {
            // The retry gets a new number (restore needs one row per number) and the same
            // parameters and seed.
            let asked = live
                .study
                .enqueue(r.params.clone())
                .and_then(|_| live.study.ask());
            match asked {
                Ok((number, _)) => {
                    return Some(Plan {
                        number,
                        params_json: r.params_json,
                        config: Ok(r.config),
                        retry_of: Some(r.retry_of),
                        attempt: r.attempt,
                    })
                }
                Err(e) => {
                    tracing::error!(study_id = id, trial_id = r.retry_of, error = %e, "retry dropped");
                    continue;
                }
            }
        }
        if !live.wants_more() {
            return None;
        }
        let (number, sampled) = match live.study.ask() {
            Ok(x) => x,
            Err(e) => {
                // A finite space (grid) can run out: that ends the study normally.
                tracing::info!(study_id = id, reason = %e, "sampler has no more trials");
                live.exhausted = true;
                return None;
            }
        };
        let full = live.spec.image_space.full_params(&sampled);
        let seed = live.spec.seed.wrapping_mul(1_000_003).wrapping_add(number);
        return Some(Plan {
            number,
            params_json: serde_json::to_string(&full).unwrap_or_else(|_| "{}".into()),
            config: tanren_core::train_config(&full, live.spec.num_classes, seed).map_err(|e| e.to_string()),
            retry_of: None,
            attempt: 0,
        });
    }
}

async fn tick(state: &Arc<AppState>) -> anyhow::Result<()> {
    let sched = &state.scheduler;
    let workers = sched.live_workers(state.store.workers().await?);
    let (finished, plans) = {
        let mut inner = sched.lock();
        let free = free_slots(&inner, workers);
        plan(&mut inner, free)
    };
    for (id, reason) in finished {
        let r = with_retry("finish study", || {
            state.store.finish_study(id, StudyState::Complete, reason, None)
        })
        .await;
        match r {
            Ok(_) => {
                crate::events::study_finished(state, id).await;
                tracing::info!(study_id = id, %reason, "study complete");
            }
            // It stays `running` in the database: a restart resumes it and ends it then.
            Err(e) => tracing::error!(study_id = id, error = %e, "study end not stored"),
        }
    }
    let mut insert_failed = HashSet::new();
    for (id, plan, worker) in plans {
        if insert_failed.contains(&id) {
            // Keep the numbers gap-free: nothing after a failed insert is written before it.
            unsave(sched, id, plan, &worker.id);
            continue;
        }
        let config_json = match &plan.config {
            Ok(c) => serde_json::to_string(c)?,
            Err(_) => "null".into(),
        };
        let inserted = with_retry("insert trial", || {
            state.store.insert_trial_attempt(
                id,
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
            Err(e) if !e.is_transient() => existing_row(state, id, &plan).await.ok_or(e),
            other => other,
        };
        let row = match inserted {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(study_id = id, number = plan.number, error = %e, "trial row not inserted; will insert it again");
                insert_failed.insert(id);
                unsave(sched, id, plan, &worker.id);
                continue;
            }
        };
        state.events.trial(&row);
        start_or_fail(state, id, plan, row, worker).await;
    }
    Ok(())
}

/// One entry per free slot, in rounds (every worker's first free slot, then every second one, ...),
/// the last round first, so that `pop` hands out the first round first: an idle worker gets a trial
/// before a worker already running one gets another. Within a round the workers keep the store's
/// order (`pop` takes the last one first, as it did when a worker had one slot).
fn free_slots(inner: &Inner, workers: Vec<WorkerRow>) -> Vec<WorkerRow> {
    let counted: Vec<(usize, WorkerRow)> = workers
        .into_iter()
        .map(|w| (inner.free_slots(&w), w))
        .filter(|(n, _)| *n > 0)
        .collect();
    let rounds = counted.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut out = Vec::new();
    for round in (0..rounds).rev() {
        out.extend(counted.iter().filter(|(n, _)| *n > round).map(|(_, w)| w.clone()));
    }
    out
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

/// The insert failed: the sampler's trial waits, with its number, for the next tick.
fn unsave(sched: &Scheduler, study_id: i64, plan: Plan, worker_id: &str) {
    let mut inner = sched.lock();
    inner.release_slot(worker_id, study_id, 0);
    if let Some(live) = inner.studies.get_mut(&study_id) {
        live.reserved -= 1;
        live.unsaved.push_back(plan);
    }
}

/// The row exists: hand the trial to its worker, or fail it at once if its config is invalid.
async fn start_or_fail(state: &Arc<AppState>, study_id: i64, plan: Plan, row: TrialRow, worker: WorkerRow) {
    let sched = &state.scheduler;
    let cfg = match plan.config {
        Ok(cfg) => cfg,
        Err(msg) => {
            let stored = with_retry("fail trial", || {
                state.store.end_trial_without_result(
                    row.id,
                    TrialState::Failed,
                    Some(FailureKind::Error),
                    Some(&msg),
                )
            })
            .await;
            if let Err(e) = &stored {
                tracing::error!(trial_id = row.id, error = %e, "trial end not stored");
            }
            crate::events::trial_changed(state, row.id).await;
            let mut inner = sched.lock();
            inner.release_slot(&worker.id, study_id, 0);
            if let Some(live) = inner.studies.get_mut(&study_id) {
                live.reserved -= 1;
                if let Err(e) = live.study.tell(plan.number, TellOutcome::Failed) {
                    tracing::error!(trial_id = row.id, error = %e, "search engine refused the outcome");
                }
                live.counted += 1;
            }
            return;
        }
    };
    let token = CancellationToken::new();
    let why = Arc::new(OnceLock::new());
    let job = {
        let mut inner = sched.lock();
        match inner.studies.get_mut(&study_id) {
            Some(live) => {
                live.reserved -= 1;
                live.running.insert(
                    row.id,
                    Running {
                        token: token.clone(),
                        why: why.clone(),
                    },
                );
                let job = Dispatch {
                    study_id,
                    trial_id: row.id,
                    number: plan.number,
                    worker: worker.clone(),
                    cfg,
                    params: space_params(&plan.params_json, &live.spec),
                    params_json: plan.params_json,
                    attempt: plan.attempt,
                    max_retries: live.max_retries,
                    dataset_sha: live.spec.dataset_sha256.clone(),
                    split_seed: live.spec.split_seed,
                    objectives: live.spec.objectives.clone(),
                    token,
                    why,
                };
                inner.bind_slot(&worker.id, study_id, row.id);
                Some(job)
            }
            None => {
                inner.release_slot(&worker.id, study_id, 0);
                None
            }
        }
    };
    match job {
        Some(job) => {
            tracing::info!(study_id, trial_id = row.id, number = plan.number, attempt = plan.attempt, worker_id = %worker.id, "dispatching trial");
            let st = state.clone();
            sched.tasks.spawn(dispatch(st, job));
        }
        None => {
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
    number: u64,
    worker: WorkerRow,
    cfg: TrainConfig,
    params: Params,
    params_json: String,
    attempt: u32,
    max_retries: u32,
    dataset_sha: String,
    split_seed: u64,
    /// How the result is told to the search engine (accuracy, latency, limit).
    objectives: tanren_core::Objectives,
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

/// Record how a trial ended, then tell the search engine and the study's counters.
async fn finish(state: &Arc<AppState>, d: &Dispatch, outcome: Outcome, unsaved_epochs: &[EpochMetrics]) {
    // First: an upload still streaming can no longer land, and the worker's trial token is dead.
    state.auth.end_trial(d.trial_id);
    let sched = &state.scheduler;
    let shutting_down = sched.shutting_down.load(Ordering::SeqCst);
    let store = &state.store;
    let trial_id = d.trial_id;
    // A lost worker gets nothing more from now on, before the trial's end is even stored.
    if let Outcome::Failed {
        worker_down: true,
        sit_out,
        ..
    } = &outcome
    {
        sched.mark_down(&d.worker.id, *sit_out);
    }
    let busy = matches!(outcome, Outcome::Busy(_));
    // (what the sampler hears, why it failed, the error, the write).
    let (mut tell, kind, error, stored) = match outcome {
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
                    (
                        TellOutcome::Complete(
                            d.objectives
                                .values(r.val_accuracy, Some(r.inference_ms_per_image)),
                        ),
                        None,
                        None,
                        stored,
                    )
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
            let kind = if kind == FailureKind::Interrupted && d.attempt >= d.max_retries {
                FailureKind::RetriesExhausted
            } else {
                kind
            };
            let error = match kind {
                FailureKind::RetriesExhausted => {
                    format!(
                        "{error} (attempt {} of {}; not retried again)",
                        d.attempt + 1,
                        d.max_retries + 1
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
    if let Err(e) = &stored {
        // The row stays `running`; a restart marks it interrupted and retries it. The search engine
        // hears "failed" so it does not build on a result the database does not have.
        tracing::error!(trial_id, error = %e, "trial end not stored");
        tell = TellOutcome::Failed;
    } else {
        crate::events::trial_changed(state, trial_id).await;
    }
    let fail_study = {
        let mut inner = sched.lock();
        inner.release_slot(&d.worker.id, d.study_id, trial_id);
        // A trial of its ended: memory came free, so a worker that said "busy" may take more again.
        if !busy {
            inner.full.remove(&d.worker.id);
        }
        let mut fail_study = None;
        if let Some(live) = inner.studies.get_mut(&d.study_id) {
            live.running.remove(&trial_id);
            let succeeded = matches!(tell, TellOutcome::Complete(_) | TellOutcome::Pruned);
            if let Err(e) = live.study.tell(d.number, tell) {
                tracing::error!(trial_id, number = d.number, error = %e, "search engine refused the outcome");
            }
            match (stored.is_ok(), kind) {
                (false, _) => {}
                (true, None) => {
                    live.counted += 1;
                    live.consecutive_failures = if succeeded { 0 } else { live.consecutive_failures };
                }
                (true, Some(kind)) => {
                    if kind.uses_budget() {
                        live.counted += 1;
                    }
                    if kind.is_trial_fault() {
                        live.consecutive_failures += 1;
                    }
                    if kind == FailureKind::Interrupted && !shutting_down {
                        live.retries.push_back(Retry {
                            params: d.params.clone(),
                            params_json: d.params_json.clone(),
                            config: d.cfg.clone(),
                            retry_of: trial_id,
                            // "Busy" is not an attempt at running it.
                            attempt: if busy { d.attempt } else { d.attempt + 1 },
                        });
                    }
                }
            }
            if live.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                fail_study = Some(format!(
                    "{MAX_CONSECUTIVE_FAILURES} trials in a row failed; last error: {}",
                    error.as_deref().unwrap_or("unknown")
                ));
            }
        }
        if fail_study.is_some() {
            if let Some(live) = inner.studies.remove(&d.study_id) {
                live.cancel_all(StopWhy::StudyFailed);
            }
        }
        fail_study
    };
    if let Some(msg) = fail_study {
        let r = with_retry("fail study", || {
            store.finish_study(d.study_id, StudyState::Failed, EndReason::Failed, Some(&msg))
        })
        .await;
        match r {
            Ok(_) => crate::events::study_finished(state, d.study_id).await,
            Err(e) => tracing::error!(study_id = d.study_id, error = %e, "study failure not stored"),
        }
    }
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
    let lost = |what: String| Outcome::Failed {
        kind: FailureKind::Interrupted,
        error: format!("interrupted: worker {} {what}", worker.id),
        worker_down: true,
        sit_out: Duration::ZERO,
    };
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
    let endpoint = match tonic::transport::Endpoint::from_shared(worker.grpc_url.clone()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(5))
            // A silent network (no FIN) is noticed within 10 s; the worker's runtime answers pings
            // while the trainer thread works.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true),
        Err(e) => return lost(format!("has an invalid gRPC URL {}: {e}", worker.grpc_url)),
    };
    let endpoint = match &state.scheduler.worker_tls {
        Some(tls) if worker.grpc_url.starts_with("https://") => match endpoint.tls_config(tls.clone()) {
            Ok(e) => e,
            Err(e) => return lost(format!("cannot be dialled over TLS at {}: {e}", worker.grpc_url)),
        },
        _ => endpoint,
    };
    let channel = tokio::select! {
        _ = d.token.cancelled() => return stopped(),
        c = endpoint.connect() => match c {
            Ok(c) => c,
            Err(e) => return lost(format!("is unreachable at {}: {e}", worker.grpc_url)),
        }
    };
    let Some(credential) = state.scheduler.credential(&worker.id) else {
        return lost("has not registered with this control plane yet".into());
    };
    let trial_token = state.auth.grant_trial(trial_id, &d.dataset_sha);
    let base = &state.scheduler.public_url;
    let mut req = tonic::Request::new(TrialRequest {
        trial_id,
        study_id: d.study_id,
        dataset_sha256: d.dataset_sha.clone(),
        dataset_url: format!("{base}/api/v1/datasets/by-sha/{}/archive", d.dataset_sha),
        artifact_url: format!("{base}/api/v1/internal/trials/{trial_id}/weights"),
        config_json: tanren_proto::encode_config(&d.cfg),
        split_seed: d.split_seed,
        trial_token,
    });
    match format!("Bearer {credential}").parse() {
        Ok(v) => {
            req.metadata_mut().insert("authorization", v);
        }
        Err(_) => return lost("has a credential that is not a valid header".into()),
    }
    let mut client = WorkerClient::new(channel).max_decoding_message_size(MAX_RESULT_BYTES);
    let mut stream = tokio::select! {
        _ = d.token.cancelled() => return stopped(),
        _ = tokio::time::sleep_until(hard_cap) => return hung(last_heard.elapsed(), None),
        r = client.run_trial(req) => match r {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == Code::ResourceExhausted => {
                if let Some(busy) = refused_as_busy(&state.scheduler, d, &s) {
                    return busy;
                }
                return after_error(state, &endpoint, worker, s).await;
            }
            Err(s) => return after_error(state, &endpoint, worker, s).await,
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
            m = stream.message() => m,
        };
        last_heard = tokio::time::Instant::now();
        let event = match msg {
            Ok(Some(ev)) => ev.event,
            Ok(None) => return lost("closed the trial stream without a result".into()),
            Err(s) => return after_error(state, &endpoint, worker, s).await,
        };
        match event {
            Some(Event::Started(s)) => {
                if let Err(e) = state.store.set_trial_device(trial_id, &s.device).await {
                    tracing::warn!(trial_id, error = %e, "could not store the trial's device");
                }
                crate::events::trial_changed(state, trial_id).await;
            }
            Some(Event::Epoch(e)) => {
                let m: EpochMetrics = match e.try_into() {
                    Ok(m) => m,
                    Err(s) => {
                        return Outcome::Failed {
                            kind: FailureKind::Error,
                            error: format!("worker sent an invalid epoch: {}", s.message()),
                            worker_down: false,
                            sit_out: Duration::ZERO,
                        }
                    }
                };
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
                state.events.epoch(d.study_id, trial_id, d.number as i64, &m);
                let decision = {
                    let mut inner = state.scheduler.lock();
                    inner
                        .studies
                        .get_mut(&d.study_id)
                        .map(|live| live.study.report(d.number, m.epoch as u64, m.val_accuracy))
                };
                // After the last epoch the training is done: pruning would only throw away the
                // evaluation and the weights, so the trial completes whatever the pruner says.
                if decision.is_some_and(|d| d.is_ok_and(|d| d == PruneDecision::Prune))
                    && m.epoch < d.cfg.epochs
                {
                    tracing::info!(trial_id, epoch = m.epoch, "pruned");
                    return Outcome::Pruned; // dropping the stream stops the worker
                }
            }
            Some(Event::Result(r)) => {
                return match tanren_proto::decode_result(r) {
                    Ok(result) if state.files.weights(trial_id).exists() => {
                        Outcome::Complete(Box::new(result))
                    }
                    Ok(_) => Outcome::Failed {
                        kind: FailureKind::Error,
                        error: "worker reported a result but uploaded no weights".into(),
                        worker_down: false,
                        sit_out: Duration::ZERO,
                    },
                    Err(s) => Outcome::Failed {
                        kind: FailureKind::Error,
                        error: format!("worker sent an invalid result: {}", s.message()),
                        worker_down: false,
                        sit_out: Duration::ZERO,
                    },
                };
            }
            None => {}
        }
    }
}

/// The worker answered "busy" (its memory is short beside the trials it runs). With other trials of
/// ours running there, it takes no more than those until one ends, and this trial is retried without
/// using an attempt. With none of ours there, something else holds it: `None`, handled as a lost
/// connection (no trial until it registers again, and the attempt counts, so it cannot go on forever).
fn refused_as_busy(sched: &Scheduler, d: &Dispatch, s: &tonic::Status) -> Option<Outcome> {
    let mut inner = sched.lock();
    let others = inner
        .assigned
        .get(&d.worker.id)
        .map_or(0, |v| v.iter().filter(|t| t.1 != d.trial_id).count());
    if others == 0 {
        return None;
    }
    inner.full.insert(d.worker.id.clone(), others);
    Some(Outcome::Busy(format!(
        "interrupted: worker {} is busy: {}",
        d.worker.id,
        s.message()
    )))
}

/// How long a worker whose trial connection broke has to answer a fresh `Info` call.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A trial's connection broke with `s`. A worker that died refuses the next connection and is welcome
/// back as soon as it registers again; one that does not answer at all hangs (or the network to it is
/// cut), and it sits out `trial_silence` even if it still heartbeats, so it does not swallow one trial
/// after another. (The broken connection alone cannot tell: a keepalive timeout and a reset both end
/// as a broken stream.)
async fn after_error(
    state: &AppState,
    endpoint: &tonic::transport::Endpoint,
    worker: &WorkerRow,
    s: tonic::Status,
) -> Outcome {
    let outcome = classify(s, worker);
    let Outcome::Failed {
        kind: FailureKind::Interrupted,
        error,
        ..
    } = &outcome
    else {
        return outcome;
    };
    let probe = async {
        let channel = endpoint.connect().await?;
        let mut req = tonic::Request::new(tanren_proto::v1::InfoRequest {});
        if let Some(v) = state
            .scheduler
            .credential(&worker.id)
            .and_then(|c| format!("Bearer {c}").parse().ok())
        {
            req.metadata_mut().insert("authorization", v);
        }
        // Any answer, a refusal included, means it is there.
        let _ = WorkerClient::new(channel).info(req).await;
        Ok::<(), tonic::transport::Error>(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(_) => outcome,
        Err(_) => {
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
    }
}

/// A status's message and the causes under it ("h2 protocol error: ...: keep-alive timed out").
fn status_chain(s: &tonic::Status) -> String {
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

/// Errors from the worker's side: trial faults count as failures, lost workers as interruptions.
fn classify(s: tonic::Status, worker: &WorkerRow) -> Outcome {
    // The connection broke, the worker went away, or it is still busy with a trial this process no
    // longer knows about: retry elsewhere, or here once it has registered again.
    let interrupted = match s.code() {
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
    };
    if interrupted {
        Outcome::Failed {
            kind: FailureKind::Interrupted,
            error: format!(
                "interrupted: worker {} connection lost mid-trial: {}",
                worker.id,
                status_chain(&s)
            ),
            worker_down: true,
            sit_out: Duration::ZERO,
        }
    } else {
        Outcome::Failed {
            kind: FailureKind::Error,
            error: s.message().to_string(),
            worker_down: false,
            sit_out: Duration::ZERO,
        }
    }
}
