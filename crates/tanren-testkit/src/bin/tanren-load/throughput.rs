//! Trial throughput on fake workers with fixed-length trials, and the scheduler's dispatch overhead:
//! on each worker, the time from sending a trial's result to the arrival of its next trial (the
//! control plane stores the result, tells the search engine, plans, inserts the next trial and calls
//! the worker in between). Each run gets a fresh control plane with nothing else to do.

use crate::stats::quantile;
use serde_json::json;
use std::time::{Duration, Instant};
use tanren_testkit::{App, Behaviour};
use tokio_util::sync::CancellationToken;

pub struct Run {
    pub workers: usize,
    pub trials: usize,
    pub complete: u64,
    /// From the first trial's arrival to the last result.
    pub wall: Duration,
    /// Dispatch overhead samples in microseconds.
    pub gaps: Vec<u64>,
    /// Study created → first trial on a worker.
    pub first_dispatch: Duration,
}

impl Run {
    pub fn trials_per_second(&self) -> f64 {
        self.complete as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

pub async fn run(
    workers: usize,
    trials_per_worker: usize,
    trial_time: Duration,
    sampler: &str,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let mut config = tanren_testkit::app::test_config(dir.path());
    // The shipped scheduler: only its own wake-ups (a trial's end, a new worker) or the default tick.
    config.tick = tanren_control::Config::new(dir.path()).tick;
    let app = App::start(config, 2, 10, 4).await?;
    let behaviour = Behaviour {
        trial_time,
        epochs: 3,
        ..Behaviour::default()
    };
    let stop = CancellationToken::new();
    let mut fakes = Vec::new();
    for i in 0..workers {
        let id = format!("fake-{i}");
        fakes.push(
            app.worker(&id, behaviour, Duration::from_secs(2), stop.clone())
                .await,
        );
    }
    // Every worker registered and alive before the study starts.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = app.get("/api/v1/workers").await;
        let alive = v["workers"]
            .as_array()
            .map_or(0, |w| w.iter().filter(|w| w["alive"] == true).count());
        if alive == workers {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "only {alive} of {workers} fake workers registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trials = workers * trials_per_worker;
    let created = Instant::now();
    let (status, s) = app
        .post(
            "/api/v1/studies",
            &json!({"dataset_id": app.dataset_id, "sampler": sampler, "seed": 3, "budget": {"trials": trials}}),
        )
        .await;
    anyhow::ensure!(status == 201, "study not created: {status} {s}");
    let id = s["id"].as_i64().unwrap_or_default();
    let limit = trial_time * (trials_per_worker as u32 * 3) + Duration::from_secs(60);
    let s = app.wait_until_done(id, limit).await;
    stop.cancel();
    let complete = s["progress"]["complete"].as_u64().unwrap_or(0);
    let visits: Vec<Vec<tanren_testkit::fake::Visit>> = fakes.iter().map(|f| f.visits()).collect();
    let first = visits.iter().flatten().map(|v| v.arrived).min();
    let last = visits.iter().flatten().filter_map(|v| v.result_sent).max();
    let mut gaps = Vec::new();
    for vs in &visits {
        for pair in vs.windows(2) {
            if let Some(sent) = pair[0].result_sent {
                gaps.push(pair[1].arrived.saturating_duration_since(sent).as_micros() as u64);
            }
        }
    }
    gaps.sort_unstable();
    app.shutdown.cancel();
    Ok(Run {
        workers,
        trials,
        complete,
        wall: match (first, last) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        },
        gaps,
        first_dispatch: first.map_or(Duration::ZERO, |f| f.saturating_duration_since(created)),
    })
}

pub fn print(runs: &[Run]) {
    println!("\nthroughput (fake workers, fixed-length trials)");
    println!(
        "{:>8} {:>7} {:>9} {:>8} {:>9} {:>14} {:>14} {:>14} {:>14}",
        "workers",
        "trials",
        "complete",
        "wall s",
        "trials/s",
        "overhead p50",
        "overhead p99",
        "overhead mean",
        "first trial"
    );
    for r in runs {
        let mean = r.gaps.iter().sum::<u64>() as f64 / r.gaps.len().max(1) as f64;
        println!(
            "{:>8} {:>7} {:>9} {:>8.2} {:>9.3} {:>11.1} ms {:>11.1} ms {:>11.1} ms {:>11.1} ms",
            r.workers,
            r.trials,
            r.complete,
            r.wall.as_secs_f64(),
            r.trials_per_second(),
            quantile(&r.gaps, 0.5) as f64 / 1000.0,
            quantile(&r.gaps, 0.99) as f64 / 1000.0,
            mean / 1000.0,
            r.first_dispatch.as_secs_f64() * 1000.0
        );
    }
}
