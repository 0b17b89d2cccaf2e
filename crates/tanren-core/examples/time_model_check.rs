//! The time model against measured trials: reads the advice bench's `results.json` (every trial of
//! every study, with its config and times), predicts each trial's wall time from the model fitted on
//! the trials that finished before it (what the control plane's estimate knows at that moment), and
//! prints the share within ±30% of the measured time.
//!
//!     cargo run --release -p tanren-core --example time_model_check -- results.json

use tanren_core::estimate::{DataSize, Measurement, TimeModel};
use tanren_core::TrainConfig;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: time_model_check results.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    // (finished_at, measurement) of every trial that trained.
    let mut all: Vec<(i64, Measurement)> = Vec::new();
    for (_, ds) in v.as_object().expect("object") {
        let st = &ds["stats"];
        let train: u64 = st["train_per_class"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|x| x.as_u64()).sum());
        let images = st["images"].as_u64().unwrap_or(train);
        let data = DataSize {
            train: train as usize,
            test: (images - train) as usize,
        };
        for arm in ds["arms"].as_object().expect("arms").values() {
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
                    Measurement {
                        config,
                        data,
                        epochs,
                        train_seconds: train_s,
                        wall_seconds: Some((end - start) as f64 / 1000.0),
                    },
                ));
            }
        }
    }
    all.sort_by_key(|(end, _)| *end);
    let (mut n, mut within) = (0, 0);
    for i in 1..all.len() {
        let earlier: Vec<Measurement> = all[..i].iter().map(|(_, m)| m.clone()).collect();
        let model = TimeModel::fit(&TimeModel::prior(false), &earlier);
        let m = &all[i].1;
        let mut cfg = m.config.clone();
        cfg.epochs = m.epochs.max(1);
        let predicted = model.trial_seconds(&cfg, m.data);
        let measured = m.wall_seconds.unwrap_or(0.0);
        let ok = (predicted / measured - 1.0).abs() <= 0.3;
        n += 1;
        within += ok as usize;
        println!(
            "trial {i:3}: predicted {predicted:7.1} s, measured {measured:7.1} s {}",
            if ok { "" } else { " (off by more than 30%)" }
        );
    }
    println!(
        "time model: {within}/{n} trials within ±30% ({:.0}%)",
        100.0 * within as f64 / n.max(1) as f64
    );
}
