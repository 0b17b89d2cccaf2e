//! tanren's side of bench/train/run.sh: ingest a dataset zip, build the decode cache from nothing,
//! train a configuration the way a worker does (data on the device, batched normalisation), evaluate
//! on the test split, and measure the CPU's matmul GFLOP/s with the same thread count. Prints one JSON
//! object.
//!
//! Unlike a trial it trains on the whole train split and validates on the test split each epoch,
//! because the PyTorch reference it is compared with has no holdout: both see the same images.
//!
//! cargo run --release -p tanren-trainer --example train_bench -- \
//!     --zip digits.zip --work /tmp/w --size 128 --batch 10 --epochs 2 --channels 16 --blocks 1

use std::path::PathBuf;
use std::time::Instant;
use tanren_core::{seed_params, train_config};
use tanren_dataset::{ingest_zip, load_or_build, Limits, Split};
use tanren_search::ParamValue;
use tanren_trainer::{evaluate, forward_flops, from_packed, train, EpochControl};
use tch::{Device, Kind, Tensor};

struct Args {
    zip: PathBuf,
    work: PathBuf,
    size: i64,
    batch: i64,
    epochs: i64,
    channels: i64,
    blocks: i64,
    lr: f64,
    threads: i32,
    seed: u64,
    /// `cpu` (default), `cuda`, `cuda:N` or `auto`: bench/gpu/run.sh runs it on the GPU.
    device: String,
    bf16: bool,
}

fn args() -> Args {
    let mut a = Args {
        zip: PathBuf::new(),
        work: std::env::temp_dir().join("tanren-train-bench"),
        size: 128,
        batch: 10,
        epochs: 2,
        channels: 16,
        blocks: 1,
        lr: 1e-3,
        threads: 2,
        seed: 0,
        device: "cpu".into(),
        bf16: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair.get(1).map(String::as_str).unwrap_or(""));
        let num = || {
            v.parse::<i64>()
                .unwrap_or_else(|_| panic!("{k} wants a number, got {v:?}"))
        };
        match k {
            "--zip" => a.zip = v.into(),
            "--work" => a.work = v.into(),
            "--size" => a.size = num(),
            "--batch" => a.batch = num(),
            "--epochs" => a.epochs = num(),
            "--channels" => a.channels = num(),
            "--blocks" => a.blocks = num(),
            "--threads" => a.threads = num() as i32,
            "--seed" => a.seed = num() as u64,
            "--lr" => a.lr = v.parse().expect("--lr wants a number"),
            "--device" => a.device = v.into(),
            "--bf16" => a.bf16 = matches!(v, "1" | "true" | "on"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Achievable f32 GFLOP/s of this CPU at this thread count: a 1024² matmul, best of several runs.
fn matmul_gflops() -> f64 {
    let n = 1024i64;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&b);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..4 {
            let _ = a.matmul(&b);
        }
        best = best.min(t.elapsed().as_secs_f64() / 4.0);
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    tanren_trainer::ensure_torch_cuda();
    tch::set_num_threads(a.threads);
    let device = tanren_trainer::pick_device(&a.device)?;
    let gflops = matmul_gflops();

    // Ingest happens once per upload in tanren, so it is reported apart from training.
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    let t = Instant::now();
    let manifest = ingest_zip(&a.zip, &a.work.join("dataset"), &Limits::default(), 0)?;
    let ingest_seconds = t.elapsed().as_secs_f64();

    let mut params = seed_params();
    params.insert("image_size".into(), ParamValue::Int(a.size));
    params.insert("batch_size".into(), ParamValue::Int(a.batch));
    params.insert("epochs".into(), ParamValue::Int(a.epochs));
    params.insert("channels".into(), ParamValue::Int(a.channels));
    params.insert("conv_blocks".into(), ParamValue::Int(a.blocks));
    params.insert("learning_rate".into(), ParamValue::Float(a.lr));
    let mut cfg = train_config(&params, manifest.classes.len() as u32, a.seed)?;
    cfg.bf16_autocast = a.bf16;

    // First use of this (dataset, size, channels) on the machine: an empty cache, so this decodes.
    let t = Instant::now();
    let dir = a.work.join("dataset");
    let cache = a.work.join("cache");
    let load = |s| load_or_build(&dir, &manifest, s, cfg.image_size, cfg.channels(), &cache);
    let (train_p, _) = load(Split::Train)?;
    let (test_p, _) = load(Split::Test)?;
    let data = from_packed(&train_p, &test_p, None, false, device);
    let decode_seconds = t.elapsed().as_secs_f64();

    let mut ends = Vec::new();
    let trained = train(&cfg, &data, device, |m| {
        eprintln!(
            "tanren epoch {}: train loss {:.4}, test acc {:.4}",
            m.epoch, m.train_loss, m.val_accuracy
        );
        ends.push(m.elapsed_seconds);
        EpochControl::Continue
    })?;
    let epoch_seconds: Vec<f64> = ends
        .iter()
        .scan(0.0, |prev, &e| {
            let d = e - *prev;
            *prev = e;
            Some(d)
        })
        .collect();
    let t = Instant::now();
    let test = evaluate(&trained.net, &data.test_x, &data.test_y, cfg.normalize)?;
    let test_seconds = t.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "impl": "tanren",
        "images": data.train_x.size()[0],
        "ingest_seconds": ingest_seconds,
        "decode_seconds": decode_seconds,
        "epoch_seconds": epoch_seconds,
        "test_seconds": test_seconds,
        "test_accuracy": test.accuracy,
        "threads": tch::get_num_threads(),
        "forward_flops": forward_flops(&cfg.model),
        "matmul_gflops": gflops,
        "model": cfg.model,
        "device": tanren_trainer::device_report(device).device_name,
        "bf16": a.bf16,
        "peak_memory_bytes": trained.peak_memory_bytes,
    });
    println!("{out}");
    Ok(())
}
