use super::*;

fn c(id: i64, acc: f64, ms: f64) -> Candidate {
    Candidate {
        id,
        val_accuracy: acc,
        inference_ms: Some(ms),
    }
}

fn both(limit: Option<f64>) -> Objectives {
    Objectives::parse(Some(&["accuracy".into(), "latency".into()]), limit).unwrap()
}

fn ids(v: &[Candidate]) -> Vec<i64> {
    v.iter().map(|t| t.id).collect()
}

#[test]
fn parse_defaults_orders_and_refuses() {
    assert_eq!(Objectives::parse(None, None).unwrap(), Objectives::default());
    let o = Objectives::parse(Some(&["latency".into(), "accuracy".into()]), Some(2.0)).unwrap();
    assert_eq!(o.objectives, vec![Objective::Accuracy, Objective::Latency]);
    assert_eq!(o.directions(), vec![Direction::Maximize, Direction::Minimize]);
    let bad = |names: &[&str], ms: Option<f64>| {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        Objectives::parse(Some(&names), ms).unwrap_err()
    };
    assert_eq!(bad(&["latency"], None).field, "objectives");
    assert!(bad(&["speed"], None)
        .message
        .contains("unknown objective `speed`"));
    assert!(bad(&["accuracy", "accuracy"], None).message.contains("twice"));
    for ms in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(bad(&["accuracy"], Some(ms)).field, "max_latency_ms");
    }
    // An old stored spec has no objectives: accuracy alone.
    let old: Objectives = serde_json::from_str(r#"{"objectives":["accuracy"]}"#).unwrap();
    assert_eq!(old, Objectives::default());
}

#[test]
fn infeasible_trials_rank_below_every_feasible_one_and_by_violation() {
    let o = Objectives::parse(None, Some(2.0)).unwrap();
    assert_eq!(o.values(0.4, Some(1.0)), vec![0.4]);
    assert_eq!(o.values(0.4, Some(2.0)), vec![0.4], "the limit itself is allowed");
    let over_a_little = o.values(0.99, Some(2.2))[0];
    let over_a_lot = o.values(0.99, Some(8.0))[0];
    assert!(over_a_little < 0.0 && over_a_lot < over_a_little);
    assert!(
        o.values(0.9, None)[0].is_nan(),
        "no latency with a limit: the trial fails"
    );
    // Without a limit, accuracy is told as is and latency is not consulted.
    assert_eq!(Objectives::default().values(0.7, None), vec![0.7]);
    // Two objectives: every feasible trial dominates every infeasible one.
    let b = both(Some(2.0));
    let feasible = b.values(0.0, Some(2.0));
    let infeasible = b.values(1.0, Some(2.01));
    assert!(feasible[0] > infeasible[0] && feasible[1] < infeasible[1]);
}

#[test]
fn best_ignores_infeasible_and_keeps_the_first_on_a_tie() {
    let trials = [c(1, 0.8, 1.0), c(2, 0.95, 5.0), c(3, 0.9, 1.5), c(4, 0.9, 0.5)];
    assert_eq!(Objectives::default().best(&trials).unwrap().id, 2);
    assert_eq!(
        Objectives::parse(None, Some(2.0))
            .unwrap()
            .best(&trials)
            .unwrap()
            .id,
        3
    );
    assert_eq!(Objectives::default().best(&[]), None);
}

#[test]
fn pareto_front_matches_the_definition() {
    let trials = [
        c(1, 0.80, 1.0),
        c(2, 0.95, 5.0),
        c(3, 0.90, 1.5),
        c(4, 0.85, 1.5), // dominated by 3
        c(5, 0.90, 2.0), // dominated by 3
        c(6, 0.90, 1.5), // same point as 3
        c(7, 0.70, 0.5),
        c(8, 0.99, 9.0),
    ];
    let o = both(None);
    assert_eq!(ids(&o.pareto_front(&trials)), vec![7, 1, 3, 6, 2, 8]);
    assert_eq!(ids(&both(Some(5.0)).pareto_front(&trials)), vec![7, 1, 3, 6, 2]);
    // Brute force on pseudo-random points, ties included.
    let mut x: u64 = 42;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % 7
    };
    for _ in 0..200 {
        let pts: Vec<Candidate> = (0..12)
            .map(|i| c(i, next() as f64 / 7.0, 1.0 + next() as f64))
            .collect();
        let dominated = |t: &Candidate| {
            pts.iter().any(|u| {
                let (ua, ta) = (u.val_accuracy, t.val_accuracy);
                let (um, tm) = (u.inference_ms.unwrap(), t.inference_ms.unwrap());
                ua >= ta && um <= tm && (ua > ta || um < tm)
            })
        };
        let mut want: Vec<i64> = pts.iter().filter(|t| !dominated(t)).map(|t| t.id).collect();
        let mut got = ids(&o.pareto_front(&pts));
        want.sort();
        got.sort();
        assert_eq!(got, want, "{pts:?}");
    }
}

#[test]
fn choose_the_fastest_within_points_under_a_limit() {
    let trials = [
        c(1, 0.80, 1.0),
        c(2, 0.95, 5.0),
        c(3, 0.94, 1.5),
        c(4, 0.935, 1.2),
        c(5, 0.94, 3.0),
    ];
    let o = both(None);
    assert_eq!(o.choose(&trials, None, None).unwrap().id, 2);
    assert_eq!(o.choose(&trials, Some(1.0), None).unwrap().id, 3);
    assert_eq!(o.choose(&trials, Some(1.5), None).unwrap().id, 4);
    assert_eq!(o.choose(&trials, Some(20.0), None).unwrap().id, 1);
    assert_eq!(o.choose(&trials, Some(0.0), None).unwrap().id, 2);
    // A download limit: best under 2 ms, then the fastest within a point of that.
    assert_eq!(o.choose(&trials, None, Some(2.0)).unwrap().id, 3);
    assert_eq!(o.choose(&trials, Some(1.0), Some(2.0)).unwrap().id, 4);
    let err = o.choose(&trials, None, Some(0.5)).unwrap_err().0;
    assert!(
        err.contains("within 0.5 ms") && err.contains("trial 1, takes 1.00 ms"),
        "{err}"
    );
    // The study's own limit.
    let limited = both(Some(0.9));
    let err = limited.choose(&trials, None, None).unwrap_err().0;
    assert!(
        err.contains("limit of 0.9 ms") && err.contains("trial 1"),
        "{err}"
    );
    let err = o.choose(&[], None, None).unwrap_err().0;
    assert!(err.contains("no complete trial yet"), "{err}");
}

#[test]
fn multi_objective_refuses_pruning() {
    assert!(check_pruner(&both(None), true).is_ok());
    assert_eq!(check_pruner(&both(None), false).unwrap_err().field, "pruner");
    assert!(check_pruner(&Objectives::parse(None, Some(1.0)).unwrap(), false).is_ok());
}
