//! Load generator for bench/serve/run.sh: `concurrency` clients, each sending single-image
//! multipart requests (`image` field) back to back to `POST {url}/v1/models/{model}/classify` for
//! `seconds`, cycling through the image files of a directory. Prints one JSON object: requests, errors,
//! images/s, latency p50/p99 in ms. The same requests go to tanren-serve and to the reference server.
//!
//! cargo run --release -p tanren-serve --example load -- --url http://127.0.0.1:8500 --model best \
//!     --images DIR --concurrency 64 --seconds 10

use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url", "http://127.0.0.1:8500");
    let model = arg(&args, "--model", "best");
    let dir = arg(&args, "--images", ".");
    let concurrency: usize = arg(&args, "--concurrency", "8").parse()?;
    let seconds: f64 = arg(&args, "--seconds", "10").parse()?;
    let warmup: f64 = arg(&args, "--warmup", "1").parse()?;
    let mut images = Vec::new();
    for e in walk(std::path::Path::new(&dir))? {
        images.push(std::fs::read(e)?);
        if images.len() == 512 {
            break;
        }
    }
    anyhow::ensure!(!images.is_empty(), "no image files under {dir}");
    let images = Arc::new(images);
    let endpoint = format!("{}/v1/models/{model}/classify", url.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (http, endpoint, images) = (http.clone(), endpoint.clone(), images.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, c * 7919);
                while Instant::now() < end {
                    let img = images[i % images.len()].clone();
                    i += 1;
                    let form = reqwest::multipart::Form::new()
                        .part("image", reqwest::multipart::Part::bytes(img).file_name("x.png"));
                    let t = Instant::now();
                    let ok = match http.post(&endpoint).multipart(form).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if t >= measure_from && Instant::now() <= end {
                        if ok {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied();
    println!(
        "{}",
        serde_json::json!({
            "concurrency": concurrency,
            "requests": lat.len(),
            "errors": errors,
            "images_per_second": lat.len() as f64 / seconds,
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
        })
    );
    Ok(())
}

fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("png" | "jpg" | "jpeg" | "bmp" | "gif" | "webp")
            ) {
                out.push(p);
            }
        }
    }
    Ok(out)
}
