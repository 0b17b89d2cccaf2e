//! The time model against measured trials: reads the advice bench's `results.json` (every trial of
//! every study, with its config and times, and each dataset's advice with the epoch times its probes
//! measured), predicts each trial's wall time from the model fitted on what the control plane knows
//! at that moment, and prints the share within ±30% of the measured time four ways: fitted on the
//! earlier trials of every dataset only (as before probes existed), on the dataset's probe timings
//! only, on both (the probes with earlier trials on the same dataset: a new study's estimate), and
//! on the study's own earlier trials with its dataset's probes (what the live ETA fits).
//!
//!     cargo run --release -p tanren-core --example time_model_check -- results.json

use tanren_core::estimate::{DataSize, Measurement, TimeModel};
use tanren_core::probe::{ProbeOverhead, TimingProbe};
use tanren_core::TrainConfig;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: time_model_check results.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    // (finished_at, dataset, measurement) of every trial that trained; each dataset's probe timings.
    let mut all: Vec<(i64, usize, String, Measurement)> = Vec::new();
    let mut probes: Vec<Vec<Measurement>> = Vec::new();
    for (k, (_, ds)) in v.as_object().expect("object").iter().enumerate() {
        let st = &ds["stats"];
        let train: u64 = st["train_per_class"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|x| x.as_u64()).sum());
        let images = st["images"].as_u64().unwrap_or(train);
        let data = DataSize {
            train: train as usize,
            test: (images - train) as usize,
        };
        let timing: Vec<TimingProbe> =
            serde_json::from_value(ds["advice"]["measured"]["timing"].clone()).unwrap_or_default();
        let overhead: Option<ProbeOverhead> =
            serde_json::from_value(ds["advice"]["measured"]["overhead"].clone()).unwrap_or_default();
        probes.push(tanren_core::probe::measurements(&timing, overhead.as_ref(), data));
        for (arm_name, arm) in ds["arms"].as_object().expect("arms") {
            for t in arm["trials"].as_array().expect("trials") {
                let (Some(train_s), Some(start), Some(end)) = (
                    t["train_seconds"].as_f64(),
                    t["started_at"].as_i64(),
                    t["finished_at"].as_i64(),
                ) else {
                    continue;
                };
                let Ok(config) = serde_json::from_value::<TrainConfig>(t["config"].clone()) else {
                    continue;
                };
                let epochs = t["epochs_completed"].as_u64().unwrap_or(config.epochs as u64) as u32;
                all.push((
                    end,
                    k,
                    arm_name.clone(),
                    Measurement {
                        config,
                        data,
                        epochs,
                        train_seconds: train_s,
                        wall_seconds: Some((end - start) as f64 / 1000.0),
                        inference_ms: t["inference_ms"].as_f64(),
                        inference_ips: t["inference_ips"].as_f64(),
                    },
                ));
            }
        }
    }
    all.sort_by_key(|(end, _, _, _)| *end);
    let prior = TimeModel::prior(false);
    let (mut n, mut within) = (0, [0usize; 4]);
    for i in 1..all.len() {
        let (_, k, arm, m) = &all[i];
        let earlier: Vec<Measurement> = all[..i].iter().map(|(_, _, _, m)| m.clone()).collect();
        // A new study's estimate: the dataset's probes with earlier trials on the same dataset.
        let with_probes: Vec<Measurement> = all[..i]
            .iter()
            .filter(|(_, k2, _, _)| k2 == k)
            .map(|(_, _, _, m)| m.clone())
            .chain(probes[*k].iter().cloned())
            .collect();
        // What a running study's ETA fits: its own finished trials and its dataset's probes.
        let own: Vec<Measurement> = all[..i]
            .iter()
            .filter(|(_, k2, a2, _)| k2 == k && a2 == arm)
            .map(|(_, _, _, m)| m.clone())
            .chain(probes[*k].iter().cloned())
            .collect();
        let models = [
            TimeModel::fit(&prior, &earlier),
            TimeModel::fit(&prior, &probes[*k]),
            TimeModel::fit(&prior, &with_probes),
            TimeModel::fit(&prior, &own),
        ];
        let mut cfg = m.config.clone();
        cfg.epochs = m.epochs.max(1);
        let measured = m.wall_seconds.unwrap_or(0.0);
        let predicted: Vec<f64> = models
            .iter()
            .map(|model| model.trial_seconds(&cfg, m.data))
            .collect();
        n += 1;
        for (w, p) in within.iter_mut().zip(&predicted) {
            *w += ((p / measured - 1.0).abs() <= 0.3) as usize;
        }
        let b = &models[2];
        println!(
            "trial {i:3}: measured {measured:7.1} s (train {:6.1}); predicted {:7.1} s (trials), {:7.1} s (probes), {:7.1} s (both: train {:6.1}, overhead {:4.1}, final {:4.1}), {:7.1} s (study+probes); {} px, batch {}, {} epochs, work {:.2}",
            m.train_seconds,
            predicted[0],
            predicted[1],
            predicted[2],
            cfg.epochs as f64 * b.epoch_seconds(&cfg, m.data),
            b.overhead_seconds,
            b.final_seconds(&cfg, m.data),
            predicted[3],
            cfg.image_size,
            cfg.batch_size,
            cfg.epochs,
            tanren_core::estimate::epoch_work(&cfg, m.data)
        );
    }
    let pct = |w: usize| 100.0 * w as f64 / n.max(1) as f64;
    println!(
        "time model: within ±30% for {}/{n} trials fitted on earlier trials ({:.0}%), {}/{n} on the probes alone ({:.0}%), {}/{n} on both ({:.0}%), {}/{n} on the study's own earlier trials and its probes as the live ETA fits ({:.0}%)",
        within[0],
        pct(within[0]),
        within[1],
        pct(within[1]),
        within[2],
        pct(within[2]),
        within[3],
        pct(within[3])
    );
}
