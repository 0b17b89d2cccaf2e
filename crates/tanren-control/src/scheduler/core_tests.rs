//! The scheduler's decisions without IO: no database, no gRPC, no clock (the time is an argument), no
//! libtorch. Each test drives the core the way the driver does and checks the actions it answers.

use super::*;
use std::collections::HashSet;
use tanren_core::{ImageSpace, Objectives};
use tanren_search::{PrunerConfig, SamplerConfig};

fn spec() -> StudySpec {
    let image_space = ImageSpace::from_bounds(&Default::default()).unwrap();
    let objectives = Objectives::default();
    let search = StudySpec::search_config(
        &image_space,
        &objectives,
        SamplerConfig::Random,
        PrunerConfig::None,
        7,
    );
    StudySpec {
        image_space,
        search,
        baseline: false,
        num_classes: 3,
        dataset_sha256: "sha".into(),
        split_seed: 1,
        seed: 7,
        max_retries: None,
        objectives,
        warnings: Vec::new(),
        estimate: None,
    }
}

fn live(id: i64, max_trials: Option<i64>, max_minutes: Option<f64>) -> Live {
    let spec = spec();
    let row = StudyRow {
        id,
        name: format!("study {id}"),
        dataset_id: 1,
        state: "running".into(),
        spec: String::new(),
        max_trials,
        max_minutes,
        error: None,
        end_reason: None,
        created_at: 0,
        finished_at: None,
    };
    let study = Study::new(spec.search.clone()).unwrap();
    Live::new(row, spec, study, 2)
}

fn worker(id: &str, slots: i64) -> WorkerRow {
    WorkerRow {
        id: id.into(),
        grpc_url: format!("http://{id}:50051"),
        device: "cpu".into(),
        device_name: "cpu".into(),
        torch_version: "2.11.0".into(),
        cuda_available: 0,
        slots,
        registered_at: 0,
        last_seen_at: 0,
    }
}

/// A trial the fake driver started: (study id, trial id, worker id, number, params json, attempt).
#[derive(Debug, Clone)]
struct Started {
    study: i64,
    trial: i64,
    worker: String,
    number: u64,
    params: String,
    attempt: u32,
    retry_of: Option<i64>,
    max_retries: u32,
}

/// The driver, minus the IO: every `Start` is inserted (trial ids from `next_id`) and started; the
/// other actions are returned.
struct Driver {
    core: Core,
    next_id: i64,
}

impl Driver {
    fn new(studies: Vec<Live>) -> Driver {
        let mut core = Core::default();
        for l in studies {
            core.add_study(l);
        }
        Driver { core, next_id: 1 }
    }

    fn tick(&mut self, now: i64, workers: &[WorkerRow]) -> (Vec<Started>, Vec<Action>) {
        let mut started = Vec::new();
        let mut other = Vec::new();
        for a in self.core.on_tick(now, workers.to_vec()) {
            match a {
                Action::Start {
                    study_id,
                    plan,
                    worker,
                } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let cfg = plan.config.clone().expect("valid config");
                    let job = self
                        .core
                        .on_inserted(study_id, id, &plan, cfg, &worker.id)
                        .expect("study is running");
                    assert_eq!(job.trial.number, plan.number);
                    started.push(Started {
                        study: study_id,
                        trial: id,
                        worker: worker.id.clone(),
                        number: plan.number,
                        params: plan.params_json.clone(),
                        attempt: plan.attempt,
                        retry_of: plan.retry_of,
                        max_retries: job.max_retries,
                    });
                }
                a => other.push(a),
            }
        }
        (started, other)
    }

    fn end(&mut self, t: &Started, outcome: &str) -> Vec<Action> {
        let (tell, kind, busy) = match outcome {
            "complete" => (TellOutcome::Complete(vec![0.9]), None, false),
            "error" => (TellOutcome::Failed, Some(FailureKind::Error), false),
            // As the driver stores it: past its last attempt an interruption is final.
            "interrupted" => (
                TellOutcome::Failed,
                Some(final_kind(FailureKind::Interrupted, t.attempt, t.max_retries)),
                false,
            ),
            "busy" => (TellOutcome::Failed, Some(FailureKind::Interrupted), true),
            "stopped" => (TellOutcome::Failed, Some(FailureKind::Stopped), false),
            other => panic!("unknown outcome {other}"),
        };
        self.core.on_trial_end(TrialEnd {
            study_id: t.study,
            trial_id: t.trial,
            worker_id: t.worker.clone(),
            tell,
            kind,
            error: Some(outcome.into()),
            busy,
            stored: true,
        })
    }
}

fn cancels(actions: &[Action]) -> Vec<(i64, StopWhy)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { trial_id, why } => Some((*trial_id, *why)),
            _ => None,
        })
        .collect()
}

fn ended(actions: &[Action]) -> Vec<(i64, StudyState, EndReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::EndStudy {
                study_id,
                state,
                reason,
                ..
            } => Some((*study_id, *state, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn free_slots_go_to_idle_workers_first_and_are_shared_between_studies() {
    let mut d = Driver::new(vec![live(1, Some(100), None), live(2, Some(100), None)]);
    let workers = [worker("a", 2), worker("b", 1), worker("c", 1)];
    let (started, other) = d.tick(0, &workers);
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(started.len(), 4, "every slot is used");
    let first_round: HashSet<&str> = started[..3].iter().map(|s| s.worker.as_str()).collect();
    assert_eq!(
        first_round.len(),
        3,
        "an idle worker before a second slot: {started:?}"
    );
    assert_eq!(started[3].worker, "a");
    let per_study = |id| started.iter().filter(|s| s.study == id).count();
    assert_eq!((per_study(1), per_study(2)), (2, 2));
    // Full: nothing more until a trial ends, then exactly that slot is handed out again.
    assert!(d.tick(1, &workers).0.is_empty());
    let b = started.iter().find(|s| s.worker == "b").unwrap().clone();
    d.end(&b, "complete");
    let (again, _) = d.tick(2, &workers);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].worker.as_str(), again[0].study), ("b", b.study));
}

#[test]
fn an_interruption_is_retried_with_the_same_parameters_and_never_ends_the_study() {
    let mut l = live(1, Some(3), None);
    l.max_retries = 100;
    let mut d = Driver::new(vec![l]);
    let w = [worker("a", 1)];
    // Ten interruptions in a row: more than the five faults that end a study, yet it goes on, and
    // nothing of its budget is used.
    let mut t = d.tick(0, &w).0.remove(0);
    for i in 0..10 {
        let actions = d.end(&t, "interrupted");
        assert!(ended(&actions).is_empty(), "interruption {i} ended the study");
        let next = d.tick(i + 1, &w).0.remove(0);
        assert_eq!(next.retry_of, Some(t.trial));
        assert_eq!(next.params, t.params, "a retry keeps the parameters");
        assert_eq!(next.attempt, t.attempt + 1);
        assert_ne!(next.number, t.number, "a retry gets its own number");
        t = next;
    }
    // Three completions end it by its trial budget.
    for i in 0..3 {
        d.end(&t, "complete");
        let (next, actions) = d.tick(100 + i, &w);
        if i < 2 {
            t = next[0].clone();
        } else {
            assert!(next.is_empty());
            assert_eq!(
                ended(&actions),
                vec![(1, StudyState::Complete, EndReason::TrialBudget)]
            );
        }
    }
}

#[test]
fn an_interruption_past_its_last_attempt_is_final_and_uses_the_budget() {
    let mut d = Driver::new(vec![live(1, Some(2), None)]);
    let w = [worker("a", 1)];
    let mut t = d.tick(0, &w).0.remove(0);
    assert_eq!(t.max_retries, 2);
    for attempt in 0..3 {
        assert_eq!(t.attempt, attempt);
        d.end(&t, "interrupted");
        t = d.tick(1, &w).0.remove(0);
    }
    // After attempts 0, 1 and 2 it is not retried again: the next trial is a new one.
    assert_eq!((t.retry_of, t.attempt), (None, 0));
    d.end(&t, "complete");
    let (next, actions) = d.tick(2, &w);
    assert!(next.is_empty());
    assert_eq!(
        ended(&actions),
        vec![(1, StudyState::Complete, EndReason::TrialBudget)]
    );
}

#[test]
fn five_faults_in_a_row_fail_the_study_and_cancel_its_other_trials() {
    let mut d = Driver::new(vec![live(1, Some(20), None)]);
    let (started, _) = d.tick(0, &[worker("a", 6)]);
    assert_eq!(started.len(), 6);
    for t in &started[..4] {
        assert!(d.end(t, "error").is_empty());
    }
    let actions = d.end(&started[4], "error");
    assert_eq!(cancels(&actions), vec![(started[5].trial, StopWhy::StudyFailed)]);
    assert_eq!(ended(&actions), vec![(1, StudyState::Failed, EndReason::Failed)]);
    match actions.last() {
        Some(Action::EndStudy { error: Some(e), .. }) => {
            assert!(e.contains("5 trials in a row failed; last error: error"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A success in between resets the count.
    let mut d = Driver::new(vec![live(1, Some(20), None)]);
    let (started, _) = d.tick(0, &[worker("a", 6)]);
    for (i, t) in started.iter().enumerate() {
        let actions = d.end(t, if i == 2 { "complete" } else { "error" });
        assert!(ended(&actions).is_empty());
    }
}

#[test]
fn the_minutes_budget_cancels_running_trials_then_ends_the_study() {
    let mut d = Driver::new(vec![live(1, None, Some(1.0))]);
    let w = [worker("a", 2)];
    let (started, _) = d.tick(1_000, &w);
    assert_eq!(started.len(), 2);
    // Before the deadline nothing is cancelled.
    assert!(cancels(&d.tick(59_999, &w).1).is_empty());
    let (none, actions) = d.tick(60_000, &w);
    assert!(none.is_empty(), "no trial starts after the deadline");
    let mut c = cancels(&actions);
    c.sort_by_key(|c| c.0);
    assert_eq!(
        c,
        vec![
            (started[0].trial, StopWhy::Budget),
            (started[1].trial, StopWhy::Budget)
        ]
    );
    assert!(ended(&actions).is_empty(), "it ends once its trials have stopped");
    d.end(&started[0], "stopped");
    // An interruption after the deadline is not retried: the study is over.
    d.end(&started[1], "interrupted");
    let (none, actions) = d.tick(61_000, &w);
    assert!(none.is_empty());
    assert_eq!(
        ended(&actions),
        vec![(1, StudyState::Complete, EndReason::MinutesBudget)]
    );
}

#[test]
fn a_busy_worker_takes_no_more_until_one_of_its_trials_ends_and_busy_uses_no_attempt() {
    let mut d = Driver::new(vec![live(1, Some(10), None)]);
    let w = [worker("a", 3)];
    let (started, _) = d.tick(0, &w);
    assert_eq!(started.len(), 3);
    // The third one is refused while two of ours run there.
    assert!(d.core.on_busy("a", started[2].trial));
    d.end(&started[2], "busy");
    let (next, _) = d.tick(1, &w);
    assert!(next.is_empty(), "capped at the two it runs: {next:?}");
    d.end(&started[0], "complete");
    let (next, _) = d.tick(2, &w);
    assert_eq!(next.len(), 2, "the cap is lifted when a trial ends");
    let retry = next
        .iter()
        .find(|s| s.retry_of == Some(started[2].trial))
        .expect("the busy trial is retried first");
    assert_eq!(retry.attempt, 0, "busy is not an attempt");
    assert_eq!(retry.params, started[2].params);
    // With none of ours on it, a "busy" answer is someone else's: not capped here.
    let mut d = Driver::new(vec![live(1, Some(10), None)]);
    let (started, _) = d.tick(0, &[worker("a", 1)]);
    assert!(!d.core.on_busy("a", started[0].trial));
}

#[test]
fn a_failed_insert_is_planned_again_first_with_the_same_number() {
    let mut d = Driver::new(vec![live(1, Some(5), None)]);
    let w = [worker("a", 1)];
    let actions = d.core.on_tick(0, w.to_vec());
    let Some(Action::Start { plan, .. }) = actions.into_iter().next() else {
        panic!("a trial is planned")
    };
    let (number, params) = (plan.number, plan.params_json.clone());
    d.core.on_insert_failed(1, *plan, "a");
    let (again, _) = d.tick(1, &w);
    assert_eq!((again[0].number, &again[0].params), (number, &params));
}

#[test]
fn an_end_the_database_did_not_take_counts_nothing() {
    let mut d = Driver::new(vec![live(1, Some(1), None)]);
    let w = [worker("a", 1)];
    let t = d.tick(0, &w).0.remove(0);
    d.core.on_trial_end(TrialEnd {
        study_id: 1,
        trial_id: t.trial,
        worker_id: "a".into(),
        tell: TellOutcome::Complete(vec![0.9]),
        kind: None,
        error: None,
        busy: false,
        stored: false,
    });
    // Not counted: the budget of one is still open (a restart retries the row), so no end yet.
    let (_, actions) = d.tick(1, &w);
    assert!(ended(&actions).is_empty(), "{actions:?}");
}

#[test]
fn stop_and_shutdown_cancel_every_running_trial_and_shutdown_retries_nothing() {
    let mut d = Driver::new(vec![live(1, Some(10), None), live(2, Some(10), None)]);
    let w = [worker("a", 4)];
    let (started, _) = d.tick(0, &w);
    let of = |id| {
        started
            .iter()
            .filter(|s| s.study == id)
            .map(|s| s.trial)
            .collect::<Vec<_>>()
    };
    let c = cancels(&d.core.stop(1).expect("running"));
    assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), of(1));
    assert!(c.iter().all(|c| c.1 == StopWhy::Stopped));
    assert!(d.core.stop(1).is_none(), "stopped already");
    let c = cancels(&d.core.on_shutdown());
    assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), of(2));
    assert!(c.iter().all(|c| c.1 == StopWhy::Shutdown));
    for t in started.iter().filter(|s| s.study == 2) {
        d.end(t, "interrupted");
    }
    assert!(d.tick(1, &w).0.is_empty(), "nothing starts at shutdown");
    assert_eq!(d.core.running_count(2), 0);
}

#[test]
fn a_lost_worker_gets_nothing_until_it_registers_again_and_a_hung_one_sits_out() {
    let mut core = Core::default();
    let mut a = worker("a", 1);
    a.last_seen_at = 1_000;
    let ids = |v: Vec<WorkerRow>| v.into_iter().map(|w| w.id).collect::<Vec<_>>();
    let yes = |_: &str| true;
    assert_eq!(ids(core.live_workers(vec![a.clone()], 1_000, 0, yes)), ["a"]);
    assert!(
        ids(core.live_workers(vec![a.clone()], 1_000, 0, |_| false)).is_empty(),
        "not registered here"
    );
    assert!(
        ids(core.live_workers(vec![a.clone()], 30_000, 20_000, yes)).is_empty(),
        "not heard from"
    );
    core.on_worker_lost("a", 2_000, Duration::ZERO);
    assert!(ids(core.live_workers(vec![a.clone()], 2_500, 0, yes)).is_empty());
    a.last_seen_at = 3_000; // it registered again
    assert_eq!(ids(core.live_workers(vec![a.clone()], 3_000, 0, yes)), ["a"]);
    core.on_worker_lost("a", 4_000, Duration::from_secs(120));
    a.last_seen_at = 5_000; // still heartbeating: hung, it sits out
    assert!(ids(core.live_workers(vec![a.clone()], 5_000, 0, yes)).is_empty());
    assert_eq!(ids(core.live_workers(vec![a], 124_000, 0, yes)), ["a"]);
}

#[test]
fn a_probe_takes_every_slot_of_an_idle_worker_only() {
    let mut d = Driver::new(vec![live(1, Some(10), None)]);
    let (busy, idle) = (worker("busy", 2), worker("idle", 3));
    let (started, _) = d.tick(0, std::slice::from_ref(&busy));
    assert_eq!(started.len(), 2);
    let claimed = d
        .core
        .claim_probe_worker(vec![busy.clone(), idle.clone()])
        .expect("one is idle");
    assert_eq!(claimed.id, "idle");
    assert!(d
        .core
        .claim_probe_worker(vec![busy.clone(), idle.clone()])
        .is_none());
    assert!(
        d.tick(1, std::slice::from_ref(&idle)).0.is_empty(),
        "no trial beside a probe"
    );
    d.core.release_probe_worker("idle");
    assert_eq!(d.tick(2, &[idle]).0.len(), 3);
}
