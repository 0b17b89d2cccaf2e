//! `tanren-load` (bench/load/run.sh): the control plane under load, in-process, on fake workers.
//!
//! 1. Load: a control plane holding a finished study of `--seed-trials` trials (written straight into
//!    its database) while a live study runs on `--workers` fake workers with `--trial-seconds`
//!    trials; `--rest-clients` clients loop over the read routes a dashboard or the CLI calls and
//!    `--ws-watchers` watchers hold the event stream (one in 20 on the seeded study, the rest on the
//!    live one) for `--seconds`. Prints per route: requests, errors, p50, p99.
//! 2. Throughput: 1 fake worker, then `--workers`, each on a fresh control plane with a study of
//!    `--trials-per-worker` trials per worker; prints trials/s, their ratio and the dispatch overhead
//!    (a worker's result sent → its next trial arrived).
//!
//! Exits non-zero when any request or stream failed (with `--strict`, also when a target is missed:
//! ratio ≥ 0.875 × workers, dispatch overhead p50 ≤ 20 ms).

mod rest;
mod stats;
mod throughput;
mod ws;

use clap::Parser;
use serde_json::json;
use stats::{ms, quantile, Samples};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tanren_testkit::{App, Behaviour, ADMIN};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Load and throughput bench of the tanren control plane on fake workers")]
struct Args {
    /// How long the REST clients and WebSocket watchers run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 200)]
    rest_clients: usize,
    #[arg(long, default_value_t = 500)]
    ws_watchers: usize,
    /// Trials of the finished study the control plane holds.
    #[arg(long, default_value_t = 10_000)]
    seed_trials: usize,
    /// Fake workers of the live study, and of the many-worker throughput run.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Length of a fake trial.
    #[arg(long, default_value_t = 1.0)]
    trial_seconds: f64,
    /// Throughput runs: trials per worker.
    #[arg(long, default_value_t = 10)]
    trials_per_worker: usize,
    /// Sampler of the live and throughput studies (tpe, random, nsga2).
    #[arg(long, default_value = "tpe")]
    sampler: String,
    /// Pause of each REST client between its requests, in ms (0: as fast as answers come).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// A short bounded run for CI: 5 s, 20 clients, 50 watchers, 1,000 seeded trials, 3 trials per
    /// worker (flags given explicitly still win).
    #[arg(long)]
    smoke: bool,
    /// Skip the load part / the throughput part.
    #[arg(long)]
    no_load: bool,
    #[arg(long)]
    no_throughput: bool,
    /// Also fail when a throughput target is missed.
    #[arg(long)]
    strict: bool,
}

impl Args {
    fn apply_smoke(&mut self) {
        if !self.smoke {
            return;
        }
        let given = |name: &str| std::env::args().any(|a| a == name || a.starts_with(&format!("{name}=")));
        if !given("--seconds") {
            self.seconds = 5;
        }
        if !given("--rest-clients") {
            self.rest_clients = 20;
        }
        if !given("--ws-watchers") {
            self.ws_watchers = 50;
        }
        if !given("--seed-trials") {
            self.seed_trials = 1000;
        }
        if !given("--trials-per-worker") {
            self.trials_per_worker = 3;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.apply_smoke();
    let trial_time = Duration::from_secs_f64(args.trial_seconds);
    let mut failures = 0u64;
    if !args.no_load {
        failures += load(&args, trial_time).await?;
    }
    if !args.no_throughput {
        let one = throughput::run(1, args.trials_per_worker, trial_time, &args.sampler).await?;
        let many = throughput::run(args.workers, args.trials_per_worker, trial_time, &args.sampler).await?;
        let runs = [one, many];
        throughput::print(&runs);
        let ratio = runs[1].trials_per_second() / runs[0].trials_per_second().max(1e-9);
        let want = 0.875 * args.workers as f64;
        let mean_ms =
            |r: &throughput::Run| r.gaps.iter().sum::<u64>() as f64 / r.gaps.len().max(1) as f64 / 1000.0;
        let overhead = mean_ms(&runs[0]).max(mean_ms(&runs[1]));
        println!(
            "{} workers give {ratio:.2}x one worker's trials/s (target >= {want:.1}x: {}); dispatch overhead per trial, mean {overhead:.1} ms (target <= 20 ms: {})",
            args.workers,
            if ratio >= want { "met" } else { "MISSED" },
            if overhead <= 20.0 { "met" } else { "MISSED" },
        );
        for r in &runs {
            if r.complete < r.trials as u64 {
                println!(
                    "  {} of {} trials complete with {} workers",
                    r.complete, r.trials, r.workers
                );
                failures += 1;
            }
        }
        if args.strict && (ratio < want || overhead > 20.0) {
            failures += 1;
        }
    }
    if failures > 0 {
        eprintln!("\n{failures} errors");
        std::process::exit(1);
    }
    Ok(())
}

async fn load(args: &Args, trial_time: Duration) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let mut config = tanren_testkit::app::test_config(dir.path());
    config.tick = tanren_control::Config::new(dir.path()).tick;
    let app = App::start(config, 2, 10, 4).await?;
    let (status, s) = app
        .post(
            "/api/v1/studies",
            &json!({"dataset_id": app.dataset_id, "name": "live", "sampler": args.sampler, "seed": 1,
                    "budget": {"trials": 100000}}),
        )
        .await;
    anyhow::ensure!(status == 201, "live study not created: {status} {s}");
    let live = s["id"].as_i64().unwrap_or_default();
    let spec = app.state.store.study(live).await?.spec;
    let seeding = Instant::now();
    let big = tanren_testkit::seed::finished_study(
        &app.database_url,
        app.dataset_id,
        &spec,
        &format!("seeded {} trials", args.seed_trials),
        args.seed_trials,
        1,
    )
    .await?;
    let ids: Vec<i64> = app
        .state
        .store
        .trial_page(big, None, 1)
        .await?
        .iter()
        .map(|t| t.id)
        .collect();
    let first_id = ids.first().copied().unwrap_or(1);
    println!(
        "seeded study {big}: {} trials in {:.1} s; live study {live} on {} fake workers ({} s trials, {})",
        args.seed_trials,
        seeding.elapsed().as_secs_f64(),
        args.workers,
        args.trial_seconds,
        args.sampler
    );
    let stop = CancellationToken::new();
    let behaviour = Behaviour {
        trial_time,
        epochs: 3,
        ..Behaviour::default()
    };
    let mut fakes = Vec::new();
    for i in 0..args.workers {
        fakes.push(
            app.worker(
                &format!("fake-{i}"),
                behaviour,
                Duration::from_secs(2),
                stop.clone(),
            )
            .await,
        );
    }
    let target = Arc::new(rest::Target {
        url: app.url.clone(),
        big,
        live,
        big_trials: first_id..first_id + args.seed_trials as i64,
        big_count: args.seed_trials,
    });
    let http = reqwest::Client::builder()
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("authorization", format!("Bearer {ADMIN}").parse()?);
            h
        })
        .timeout(Duration::from_secs(60))
        .build()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let ws_base = app.url.replacen("http://", "ws://", 1);
    let mut watchers = Vec::new();
    for i in 0..args.ws_watchers {
        let study = if i % 20 == 19 { big } else { live };
        let url = format!("{ws_base}/api/v1/studies/{study}/events");
        watchers.push((
            study == big,
            tokio::spawn(ws::watcher(url, ADMIN.to_string(), deadline)),
        ));
    }
    let think = Duration::from_millis(args.think_ms);
    let clients: Vec<_> = (0..args.rest_clients)
        .map(|n| tokio::spawn(rest::client(n, http.clone(), target.clone(), deadline, think)))
        .collect();
    let mut routes: BTreeMap<String, Samples> = BTreeMap::new();
    let (mut walks, mut bad_walks) = (0, Vec::new());
    for c in clients {
        let r = c.await?;
        for (route, s) in r.routes {
            routes.entry(route).or_default().merge(s);
        }
        walks += r.walks;
        bad_walks.extend(r.bad_walks);
    }
    let mut ws_rows: BTreeMap<String, (Samples, u64, u64)> = BTreeMap::new();
    for (on_big, w) in watchers {
        let r = w.await?;
        let key = if on_big {
            format!("WS /studies/{{big}}/events ({} trials)", args.seed_trials)
        } else {
            "WS /studies/{live}/events".to_string()
        };
        let row = ws_rows.entry(key).or_default();
        row.0.merge(r.connect);
        row.1 += r.messages;
        row.2 += r.bytes;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (_, s) = app.get(&format!("/api/v1/studies/{live}")).await;
    let live_done = s["progress"]["complete"].as_u64().unwrap_or(0);
    let _ = app
        .post(&format!("/api/v1/studies/{live}/stop"), &json!({}))
        .await;
    stop.cancel();
    println!(
        "\nload: {} REST clients, {} WebSocket watchers, {seconds:.1} s; the live study completed {live_done} trials meanwhile",
        args.rest_clients, args.ws_watchers
    );
    let mut errors = stats::print_table("REST (latency in ms)", &routes, seconds);
    println!(
        "trial list walks of the seeded study: {walks} complete, {} not seeing every trial exactly once",
        bad_walks.len()
    );
    for b in bad_walks.iter().take(3) {
        println!("  {b}");
    }
    errors += bad_walks.len() as u64;
    println!("\nWebSocket");
    println!(
        "{:<44} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "stream", "connects", "errors", "messages", "MB", "snap p50", "snap p99"
    );
    for (key, (c, messages, bytes)) in &ws_rows {
        let mut v = c.micros.clone();
        v.sort_unstable();
        println!(
            "{:<44} {:>9} {:>7} {:>10} {:>10.1} {:>10} {:>10}",
            key,
            v.len(),
            c.errors,
            messages,
            *bytes as f64 / 1e6,
            ms(quantile(&v, 0.5)),
            ms(quantile(&v, 0.99))
        );
        for e in &c.examples {
            println!("  error: {e}");
        }
        errors += c.errors;
    }
    drop(fakes);
    app.shutdown.cancel();
    Ok(errors)
}
