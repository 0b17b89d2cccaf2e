//! The scheduler's core: every decision, none of the IO. It owns the search engine's `Study` of each
//! running study, the slots each worker has taken, the trials waiting to be retried or inserted again,
//! and which workers sit out. The driver (`super`) feeds it what happened (`on_tick`, `on_inserted`,
//! `on_epoch`, `on_busy`, `on_trial_end`, `on_worker_lost`, `stop`, `on_shutdown`) with the time as an
//! argument, and carries out the `Action`s it answers: store a study's end, insert and start a trial,
//! cancel a running one. Nothing here awaits, reads a clock or touches the database, so its tests run
//! in microseconds (see `core_tests.rs`).

use crate::study_spec::StudySpec;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tanren_core::{EndReason, FailureKind, StudyState, TrainConfig};
use tanren_search::{Params, PruneDecision, Study, TellOutcome};
use tanren_store::{StudyRow, WorkerRow};

/// A study ends after this many trial faults in a row (interruptions never count).
pub(super) const MAX_CONSECUTIVE_FAILURES: u32 = 5;

/// Why a running trial was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopWhy {
    Stopped,
    StudyFailed,
    Budget,
    Shutdown,
}

/// What the driver must do, in order.
#[derive(Debug)]
pub(super) enum Action {
    /// Cancel a running trial (its task ends it as stopped or interrupted, and reports the end).
    Cancel { trial_id: i64, why: StopWhy },
    /// Store that a study ended, and publish it.
    EndStudy {
        study_id: i64,
        state: StudyState,
        reason: EndReason,
        error: Option<String>,
    },
    /// Insert the trial's row, then start it on `worker` (`on_inserted`), or hand it back
    /// (`on_insert_failed`).
    Start {
        study_id: i64,
        plan: Box<Plan>,
        worker: WorkerRow,
    },
}

/// A trial the sampler handed out, not yet in the database.
#[derive(Debug)]
pub(super) struct Plan {
    pub number: u64,
    pub params_json: String,
    pub config: Result<TrainConfig, String>,
    pub retry_of: Option<i64>,
    pub attempt: u32,
}

/// An interrupted trial to run again with the same parameters and seed.
#[derive(Debug)]
pub(super) struct Retry {
    pub params: Params,
    pub params_json: String,
    pub config: TrainConfig,
    pub retry_of: i64,
    pub attempt: u32,
}

/// A trial handed to a worker, as the core remembers it until it ends.
#[derive(Debug, Clone)]
pub(super) struct RunningTrial {
    pub number: u64,
    pub params: Params,
    pub params_json: String,
    pub config: TrainConfig,
    pub attempt: u32,
}

/// What the driver needs to run a trial it inserted (`on_inserted`).
pub(super) struct Job {
    pub trial: RunningTrial,
    pub max_retries: u32,
    pub dataset_sha: String,
    pub split_seed: u64,
    pub objectives: tanren_core::Objectives,
}

/// How a trial ended, as the driver stored it.
#[derive(Debug)]
pub(super) struct TrialEnd {
    pub study_id: i64,
    pub trial_id: i64,
    pub worker_id: String,
    /// What the search engine hears.
    pub tell: TellOutcome,
    /// `None` for complete and pruned trials.
    pub kind: Option<FailureKind>,
    pub error: Option<String>,
    /// The worker answered "busy": retried without using an attempt, and its cap stays.
    pub busy: bool,
    /// The end reached the database. When it did not, the sampler hears "failed" and nothing is
    /// counted: the row stays running, and a restart marks it interrupted and retries it.
    pub stored: bool,
}

pub(super) struct Live {
    pub row: StudyRow,
    pub spec: StudySpec,
    study: Study,
    pub max_retries: u32,
    /// trial id -> the trial.
    running: HashMap<i64, RunningTrial>,
    /// Asked and being inserted right now.
    reserved: usize,
    /// Asked, but the insert failed: inserted again before anything new is asked.
    unsaved: VecDeque<Plan>,
    pub retries: VecDeque<Retry>,
    /// Finished trials that use the trial budget (all but interrupted ones).
    pub counted: u32,
    consecutive_failures: u32,
    /// The sampler has no configuration left (a finite grid).
    exhausted: bool,
}

impl Live {
    pub fn new(row: StudyRow, spec: StudySpec, study: Study, max_retries: u32) -> Live {
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

    fn deadline_passed(&self, now_ms: i64) -> bool {
        match self.row.max_minutes {
            Some(m) => now_ms >= self.row.created_at + (m * 60_000.0) as i64,
            None => false,
        }
    }

    /// May a new configuration be asked for now? Pending retries and unsaved trials hold their place
    /// in the budget.
    fn wants_more(&self, now_ms: i64) -> bool {
        let used = self.counted as usize
            + self.running.len()
            + self.reserved
            + self.unsaved.len()
            + self.retries.len();
        !self.deadline_passed(now_ms)
            && !self.exhausted
            && self.row.max_trials.is_none_or(|max| (used as i64) < max)
    }

    /// Why the study is over, once nothing of it runs any more.
    fn end_reason(&self, now_ms: i64) -> Option<EndReason> {
        if !self.running.is_empty() || self.reserved > 0 {
            return None;
        }
        if self.deadline_passed(now_ms) {
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

    fn cancel_all(&self, why: StopWhy, out: &mut Vec<Action>) {
        let mut ids: Vec<i64> = self.running.keys().copied().collect();
        ids.sort_unstable();
        out.extend(ids.into_iter().map(|trial_id| Action::Cancel { trial_id, why }));
    }

    /// The study's next trial: an unsaved one first, then a retry, then a new configuration, if it
    /// wants one. `None` when it has nothing to start now.
    fn next_plan(&mut self, now_ms: i64) -> Option<Plan> {
        let id = self.row.id;
        loop {
            if let Some(p) = self.unsaved.pop_front() {
                return Some(p);
            }
            if let Some(r) = (!self.deadline_passed(now_ms))
                .then(|| self.retries.pop_front())
                .flatten()
            {
                // The retry gets a new number (restore needs one row per number) and the same
                // parameters and seed.
                let asked = self
                    .study
                    .enqueue(r.params.clone())
                    .and_then(|_| self.study.ask());
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
            if !self.wants_more(now_ms) {
                return None;
            }
            let (number, sampled) = match self.study.ask() {
                Ok(x) => x,
                Err(e) => {
                    // A finite space (grid) can run out: that ends the study normally.
                    tracing::info!(study_id = id, reason = %e, "sampler has no more trials");
                    self.exhausted = true;
                    return None;
                }
            };
            let full = self.spec.image_space.full_params(&sampled);
            let seed = self.spec.seed.wrapping_mul(1_000_003).wrapping_add(number);
            return Some(Plan {
                number,
                params_json: serde_json::to_string(&full).unwrap_or_else(|_| "{}".into()),
                config: tanren_core::train_config(&full, self.spec.num_classes, seed)
                    .map_err(|e| e.to_string()),
                retry_of: None,
                attempt: 0,
            });
        }
    }
}

/// The kind a failed trial is stored with: an interruption past its last attempt is final.
pub(super) fn final_kind(kind: FailureKind, attempt: u32, max_retries: u32) -> FailureKind {
    if kind == FailureKind::Interrupted && attempt >= max_retries {
        FailureKind::RetriesExhausted
    } else {
        kind
    }
}

#[derive(Default)]
pub(super) struct Core {
    studies: HashMap<i64, Live>,
    /// worker id -> the (study id, trial id) it runs, one per taken slot; trial id 0 while the row is
    /// being inserted. A worker with nothing running has no entry.
    assigned: HashMap<String, Vec<(i64, i64)>>,
    /// worker id -> the most trials it takes for now: it answered "busy" (not enough memory) with
    /// this many of ours running. Lifted when one of its trials ends.
    full: HashMap<String, usize>,
    /// worker id -> (unix ms when it refused a connection or lost one mid-trial, unix ms before which
    /// it gets nothing at all): it gets no trial until it registers (heartbeats) again after the first,
    /// and not before the second (a hung worker that still heartbeats sits out a while).
    down: HashMap<String, (i64, i64)>,
    /// Set at shutdown: interrupted trials are not retried in this process (a restart retries them).
    shutting_down: bool,
}

impl Core {
    /// Slots of `w` free now.
    fn free_slots_of(&self, w: &WorkerRow) -> usize {
        let cap = (w.slots.max(1) as usize).min(self.full.get(&w.id).copied().unwrap_or(usize::MAX));
        cap.saturating_sub(self.assigned.get(&w.id).map_or(0, Vec::len))
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

    pub fn add_study(&mut self, live: Live) {
        self.studies.insert(live.row.id, live);
    }

    pub fn running_studies(&self) -> usize {
        self.studies.len()
    }

    pub fn running_count(&self, study_id: i64) -> usize {
        self.studies.get(&study_id).map_or(0, |l| l.running.len())
    }

    pub fn busy_workers(&self) -> HashMap<String, Vec<(i64, i64)>> {
        self.assigned.clone()
    }

    /// Workers heard from since `cutoff_ms`, `registered` with this process, and not found down since
    /// their last registration.
    pub fn live_workers(
        &self,
        workers: Vec<WorkerRow>,
        now_ms: i64,
        cutoff_ms: i64,
        registered: impl Fn(&str) -> bool,
    ) -> Vec<WorkerRow> {
        workers
            .into_iter()
            .filter(|w| w.last_seen_at >= cutoff_ms)
            .filter(|w| registered(&w.id))
            .filter(|w| {
                self.down
                    .get(&w.id)
                    .is_none_or(|&(at, until)| w.last_seen_at > at && now_ms >= until)
            })
            .collect()
    }

    /// The worker refused a connection, lost one mid-trial or hung: nothing more for it until it
    /// registers again, and nothing at all for `sit_out`.
    pub fn on_worker_lost(&mut self, worker_id: &str, now_ms: i64, sit_out: Duration) {
        self.down.insert(
            worker_id.to_string(),
            (now_ms, now_ms + sit_out.as_millis() as i64),
        );
    }

    /// Take a worker (of the live ones) that runs nothing, in every slot, for a probe.
    pub fn claim_probe_worker(&mut self, live: Vec<WorkerRow>) -> Option<WorkerRow> {
        let w = live
            .into_iter()
            .find(|w| self.assigned.get(&w.id).is_none_or(Vec::is_empty))?;
        // Study 0, trial 0 in every slot: busy with no trial (the workers view shows it busy), so no
        // trial shares the device with the probe.
        self.assigned
            .insert(w.id.clone(), vec![(0, 0); w.slots.max(1) as usize]);
        Some(w)
    }

    pub fn release_probe_worker(&mut self, worker_id: &str) {
        self.assigned.remove(worker_id);
    }

    /// One planning round over the `live` workers: cancel what ran past a minutes budget, end the
    /// studies that are over, and hand each free slot to the study with the fewest trials running
    /// (lowest id on a tie), an idle worker before a second slot of a busy one.
    pub fn on_tick(&mut self, now_ms: i64, live: Vec<WorkerRow>) -> Vec<Action> {
        if self.shutting_down {
            // Nothing new starts, and no study ends, while the trials are drained.
            return Vec::new();
        }
        let mut free = self.free_slots(live);
        let mut out = Vec::new();
        let Core {
            studies, assigned, ..
        } = self;
        let mut active: Vec<i64> = studies.keys().copied().collect();
        active.sort_unstable();
        active.retain(|&id| {
            let live = studies.get_mut(&id).expect("id from keys");
            if live.deadline_passed(now_ms) {
                live.cancel_all(StopWhy::Budget, &mut out);
            }
            match live.end_reason(now_ms) {
                Some(reason) => {
                    studies.remove(&id);
                    out.push(Action::EndStudy {
                        study_id: id,
                        state: StudyState::Complete,
                        reason,
                        error: None,
                    });
                    false
                }
                None => true,
            }
        });
        while !free.is_empty() {
            let load = |id: &i64| studies.get(id).map_or(0, |l| l.running.len() + l.reserved);
            let Some(&id) = active.iter().min_by_key(|id| (load(id), **id)) else {
                break;
            };
            let live = studies.get_mut(&id).expect("active studies are live");
            match live.next_plan(now_ms) {
                Some(plan) => {
                    let worker = free.pop().expect("not empty");
                    assigned.entry(worker.id.clone()).or_default().push((id, 0));
                    live.reserved += 1;
                    out.push(Action::Start {
                        study_id: id,
                        plan: Box::new(plan),
                        worker,
                    });
                }
                None => active.retain(|&a| a != id),
            }
        }
        out
    }

    /// One entry per free slot, in rounds (every worker's first free slot, then every second one, ...),
    /// the last round first, so that `pop` hands out the first round first. Within a round the workers
    /// keep the store's order (`pop` takes the last one first).
    fn free_slots(&self, workers: Vec<WorkerRow>) -> Vec<WorkerRow> {
        let counted: Vec<(usize, WorkerRow)> = workers
            .into_iter()
            .map(|w| (self.free_slots_of(&w), w))
            .filter(|(n, _)| *n > 0)
            .collect();
        let rounds = counted.iter().map(|(n, _)| *n).max().unwrap_or(0);
        let mut out = Vec::new();
        for round in (0..rounds).rev() {
            out.extend(counted.iter().filter(|(n, _)| *n > round).map(|(_, w)| w.clone()));
        }
        out
    }

    /// The row of a `Start` could not be inserted: the trial waits, with its number, for the next tick.
    pub fn on_insert_failed(&mut self, study_id: i64, plan: Plan, worker_id: &str) {
        self.release_slot(worker_id, study_id, 0);
        if let Some(live) = self.studies.get_mut(&study_id) {
            live.reserved -= 1;
            live.unsaved.push_back(plan);
        }
    }

    /// The row of a `Start` whose configuration is invalid was stored as failed: it used its place.
    pub fn on_invalid_config(&mut self, study_id: i64, number: u64, worker_id: &str) {
        self.release_slot(worker_id, study_id, 0);
        if let Some(live) = self.studies.get_mut(&study_id) {
            live.reserved -= 1;
            if let Err(e) = live.study.tell(number, TellOutcome::Failed) {
                tracing::error!(study_id, number, error = %e, "search engine refused the outcome");
            }
            live.counted += 1;
        }
    }

    /// The row of a `Start` is in the database as `trial_id`: the trial runs from now on. `None` when
    /// the study was stopped meanwhile (the driver ends the row as stopped).
    pub fn on_inserted(
        &mut self,
        study_id: i64,
        trial_id: i64,
        plan: &Plan,
        config: TrainConfig,
        worker_id: &str,
    ) -> Option<Job> {
        let Some(live) = self.studies.get_mut(&study_id) else {
            self.release_slot(worker_id, study_id, 0);
            return None;
        };
        live.reserved -= 1;
        let trial = RunningTrial {
            number: plan.number,
            params: space_params(&plan.params_json, &live.spec),
            params_json: plan.params_json.clone(),
            config,
            attempt: plan.attempt,
        };
        live.running.insert(trial_id, trial.clone());
        let job = Job {
            trial,
            max_retries: live.max_retries,
            dataset_sha: live.spec.dataset_sha256.clone(),
            split_seed: live.spec.split_seed,
            objectives: live.spec.objectives.clone(),
        };
        if let Some(slot) = self
            .assigned
            .get_mut(worker_id)
            .and_then(|v| v.iter_mut().find(|s| **s == (study_id, 0)))
        {
            slot.1 = trial_id;
        }
        Some(job)
    }

    /// An epoch's validation accuracy, reported to the pruner. `None` once the study is gone.
    pub fn on_epoch(
        &mut self,
        study_id: i64,
        number: u64,
        epoch: u64,
        val_accuracy: f64,
    ) -> Option<Result<PruneDecision, tanren_search::StudyError>> {
        let live = self.studies.get_mut(&study_id)?;
        Some(live.study.report(number, epoch, val_accuracy))
    }

    /// The worker answered "busy" (its memory is short beside the trials it runs). With other trials
    /// of ours running there, it takes no more than those until one ends: `true`, and the trial is
    /// retried without using an attempt. With none of ours there, something else holds it: `false`,
    /// handled as a lost connection.
    pub fn on_busy(&mut self, worker_id: &str, trial_id: i64) -> bool {
        let others = self
            .assigned
            .get(worker_id)
            .map_or(0, |v| v.iter().filter(|t| t.1 != trial_id).count());
        if others == 0 {
            return false;
        }
        self.full.insert(worker_id.to_string(), others);
        true
    }

    /// A trial's end is stored (or could not be): free its slot, tell the search engine, count it,
    /// queue a retry for an interruption, and fail the study after too many faults in a row.
    pub fn on_trial_end(&mut self, end: TrialEnd) -> Vec<Action> {
        let mut out = Vec::new();
        let TrialEnd {
            study_id,
            trial_id,
            worker_id,
            mut tell,
            kind,
            error,
            busy,
            stored,
        } = end;
        self.release_slot(&worker_id, study_id, trial_id);
        // A trial of its ended: memory came free, so a worker that said "busy" may take more again.
        if !busy {
            self.full.remove(&worker_id);
        }
        if !stored {
            tell = TellOutcome::Failed;
        }
        let shutting_down = self.shutting_down;
        let Some(live) = self.studies.get_mut(&study_id) else {
            return out;
        };
        let Some(trial) = live.running.remove(&trial_id) else {
            return out;
        };
        let succeeded = matches!(tell, TellOutcome::Complete(_) | TellOutcome::Pruned);
        if let Err(e) = live.study.tell(trial.number, tell) {
            tracing::error!(trial_id, number = trial.number, error = %e, "search engine refused the outcome");
        }
        match (stored, kind) {
            (false, _) => {}
            (true, None) => {
                live.counted += 1;
                if succeeded {
                    live.consecutive_failures = 0;
                }
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
                        params: trial.params,
                        params_json: trial.params_json,
                        config: trial.config,
                        retry_of: trial_id,
                        // "Busy" is not an attempt at running it.
                        attempt: if busy { trial.attempt } else { trial.attempt + 1 },
                    });
                }
            }
        }
        if live.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            let msg = format!(
                "{MAX_CONSECUTIVE_FAILURES} trials in a row failed; last error: {}",
                error.as_deref().unwrap_or("unknown")
            );
            let live = self.studies.remove(&study_id).expect("looked up above");
            live.cancel_all(StopWhy::StudyFailed, &mut out);
            out.push(Action::EndStudy {
                study_id,
                state: StudyState::Failed,
                reason: EndReason::Failed,
                error: Some(msg),
            });
        }
        out
    }

    /// Stop a study: no new trials, and its running ones are cancelled. `None` if it is not running.
    pub fn stop(&mut self, study_id: i64) -> Option<Vec<Action>> {
        let live = self.studies.remove(&study_id)?;
        let mut out = Vec::new();
        live.cancel_all(StopWhy::Stopped, &mut out);
        Some(out)
    }

    /// The control plane shuts down: every running trial is cancelled as interrupted, and none is
    /// retried in this process.
    pub fn on_shutdown(&mut self) -> Vec<Action> {
        self.shutting_down = true;
        let mut out = Vec::new();
        let mut ids: Vec<&i64> = self.studies.keys().collect();
        ids.sort_unstable();
        for id in ids {
            self.studies[id].cancel_all(StopWhy::Shutdown, &mut out);
        }
        out
    }
}

fn parse_params(json: &str) -> Params {
    serde_json::from_str(json).unwrap_or_default()
}

/// The search-space part of a trial's stored (full) parameters.
pub(super) fn space_params(json: &str, spec: &StudySpec) -> Params {
    let mut params = parse_params(json);
    params.retain(|k, _| spec.image_space.space.get(k).is_some());
    params
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
