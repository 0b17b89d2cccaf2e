//! tanren-serve on real libtorch, booted in-process on port 0 with a model zip made here: predictions
//! equal the trainer's own forward pass on the same files, results reach the right request under 64
//! concurrent clients, the v2 protocol round-trips, every refusal is a clear 4xx/503 and the server
//! keeps serving, deadlines hold, and shutdown drains.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tanren_core::{CnnSpec, ConvBlock, Head, ModelSpec, Normalize};
use tanren_serve::{Config, ModelSource};
use tch::nn::ModuleT;
use tokio_util::sync::CancellationToken;

const CLASSES: [&str; 3] = ["ant", "bee", "cat"];
const NORM: Normalize = Normalize { mean: 0.5, std: 0.5 };

fn spec(channels: u32) -> ModelSpec {
    ModelSpec::Cnn(CnnSpec {
        in_channels: channels,
        num_classes: 3,
        image_size: 16,
        blocks: vec![
            ConvBlock {
                out_channels: 8,
                kernel: 3,
            },
            ConvBlock {
                out_channels: 12,
                kernel: 5,
            },
        ],
        batch_norm: true,
        dropout: 0.2,
        head: Head::Flatten,
    })
}

/// A model zip as the control plane writes it (model.json + model.safetensors), random weights.
fn model_zip(dir: &Path, channels: u32) -> PathBuf {
    tch::manual_seed(7);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = tanren_trainer::build(&vs.root(), &spec(channels));
    let weights = dir.join("w.safetensors");
    vs.save(&weights).unwrap();
    let card = serde_json::json!({
        "format": "tanren-model/1",
        "architecture": spec(channels),
        "classes": CLASSES,
        "input": {"size": [16, 16], "channels": channels, "normalize": NORM},
        "provenance": {"study_id": 1, "trial_id": 9},
    });
    let path = dir.join("best.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    z.start_file("model.json", o).unwrap();
    z.write_all(card.to_string().as_bytes()).unwrap();
    z.start_file("model.safetensors", o).unwrap();
    z.write_all(&std::fs::read(&weights).unwrap()).unwrap();
    z.finish().unwrap();
    path
}

/// What the trainer's own code predicts for an image file: the reference for every comparison.
fn reference(zip: &Path, files: &[Vec<u8>], channels: u32) -> Vec<Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let w = dir.path().join("m.safetensors");
    std::io::copy(
        &mut z.by_name("model.safetensors").unwrap(),
        &mut std::fs::File::create(&w).unwrap(),
    )
    .unwrap();
    let (_vs, net) = tanren_trainer::load_model(&spec(channels), &w, tch::Device::Cpu).unwrap();
    files
        .iter()
        .map(|f| {
            let px = tanren_dataset::decode_resize(f, 16, channels).unwrap();
            let x = tch::Tensor::from_slice(&px).view([1, channels as i64, 16, 16]);
            let logits = tch::no_grad(|| net.forward_t(&tanren_trainer::data::normalize(&x, NORM), false));
            Vec::<f32>::try_from(logits.softmax(-1, tch::Kind::Float).view(-1)).unwrap()
        })
        .collect()
}

/// A distinct image per seed (different sizes, so resizing is exercised).
fn png(seed: u32) -> Vec<u8> {
    let (w, h) = (12 + seed % 17, 10 + (seed * 7) % 23);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 37 + seed * 11) % 256) as u8,
            ((y * 53 + seed * 29) % 256) as u8,
            ((x * y + seed * 5) % 256) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

struct Server {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
    zip: PathBuf,
}

async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let zip = model_zip(dir.path(), 3);
    let mut config = Config::new(vec![ModelSource::Zip {
        name: "best".into(),
        path: zip.clone(),
    }]);
    config.device = "cpu".into();
    config.data_dir = dir.path().join("serve");
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(tanren_serve::run(config, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{url}/v2/health/ready")).send().await {
            if r.status() == 200 {
                return Server {
                    url,
                    http,
                    shutdown,
                    handle,
                    _dir: dir,
                    zip,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tanren-serve did not become ready");
}

impl Server {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.url)).send().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.unwrap()
    }

    async fn classify(&self, files: &[Vec<u8>]) -> (u16, serde_json::Value) {
        let mut form = reqwest::multipart::Form::new();
        for (i, f) in files.iter().enumerate() {
            form = form.part(
                "image",
                reqwest::multipart::Part::bytes(f.clone()).file_name(format!("f{i}.png")),
            );
        }
        let r = self
            .http
            .post(format!("{}/v1/models/best/classify?top_k=3", self.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn infer(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/v2/models/best/infer", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classify_predicts_what_the_trainer_predicts() {
    let s = start(|_| {}).await;
    let files: Vec<Vec<u8>> = (0..9).map(png).collect();
    let want = reference(&s.zip, &files, 3);
    let (status, body) = s.classify(&files).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "best");
    assert_eq!(body["version"].as_str().unwrap().len(), 12);
    assert!(body["server_ms"].as_f64().unwrap() > 0.0);
    let preds = body["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), files.len());
    for (i, (p, w)) in preds.iter().zip(&want).enumerate() {
        assert_eq!(p["file"], format!("f{i}.png"));
        assert_eq!(p["index"].as_u64().unwrap() as usize, argmax(w), "image {i}: {p}");
        assert_eq!(p["class"], CLASSES[argmax(w)]);
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        for t in top {
            let c = t["index"].as_u64().unwrap() as usize;
            assert!(
                (t["probability"].as_f64().unwrap() - w[c] as f64).abs() < 1e-5,
                "{t} vs {w:?}"
            );
        }
    }
    // One image as a raw body gives the same answer.
    let r = s
        .http
        .post(format!("{}/v1/models/best/classify", s.url))
        .header("content-type", "image/png")
        .body(files[4].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        b["predictions"][0]["index"].as_u64().unwrap() as usize,
        argmax(&want[4])
    );
    s.shutdown.cancel();
    s.handle.await.unwrap().unwrap();
}

/// 64 clients at once, each with its own image: every answer is that image's, and the server did
/// batch them (fewer forward passes than images).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_each_gets_its_own_answer() {
    let s = start(|c| c.batch.max_delay = Duration::from_millis(20)).await;
    let files: Vec<Vec<u8>> = (100..164).map(png).collect();
    let want = reference(&s.zip, &files, 3);
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = files
        .iter()
        .cloned()
        .map(|f| {
            let s = s.clone();
            tokio::spawn(async move { s.classify(&[f]).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let top = &body["predictions"][0]["top"];
        for e in top.as_array().unwrap() {
            let c = e["index"].as_u64().unwrap() as usize;
            assert!(
                (e["probability"].as_f64().unwrap() - want[i][c] as f64).abs() < 1e-5,
                "client {i} got someone else's answer: {body} vs {:?}",
                want[i]
            );
        }
    }
    let stats: serde_json::Value = s.get_json("/v1/models").await;
    let st = &stats["models"][0]["stats"];
    assert!(st["images"].as_u64().unwrap() >= 64, "{st}");
    assert!(st["batches"].as_u64().unwrap() < 64, "no batching happened: {st}");
    assert!(st["largest_batch"].as_u64().unwrap() > 1, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_inference_protocol_v2_round_trip() {
    let s = start(|_| {}).await;
    let live = s.get("/v2/health/live").await;
    assert_eq!(live.status(), 200);
    let meta: serde_json::Value = s.get_json("/v2/models/best").await;
    assert_eq!(meta["name"], "best");
    assert_eq!(meta["inputs"][0]["shape"], serde_json::json!([-1, 3, 16, 16]));
    assert_eq!(meta["inputs"][0]["datatype"], "FP32");
    assert_eq!(meta["outputs"][0]["shape"], serde_json::json!([-1, 3]));
    let ready = s.get("/v2/models/best/ready").await;
    assert_eq!(ready.status(), 200);

    let files: Vec<Vec<u8>> = (0..3).map(png).collect();
    let want = reference(&s.zip, &files, 3);
    let pixels: Vec<u8> = files
        .iter()
        .flat_map(|f| tanren_dataset::decode_resize(f, 16, 3).unwrap())
        .collect();
    // UINT8 raw pixels, nested per image.
    let nested: Vec<Vec<u8>> = pixels.chunks(3 * 256).map(<[u8]>::to_vec).collect();
    let (st, out) = s
        .infer(serde_json::json!({"id": "r1", "inputs": [{"name": "input", "shape": [3, 3, 16, 16], "datatype": "UINT8", "data": nested}]}))
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["id"], "r1");
    assert_eq!(out["model_name"], "best");
    let probs = out["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap();
    assert_eq!(probs["shape"], serde_json::json!([3, 3]));
    let data: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, w) in want.iter().enumerate() {
        for c in 0..3 {
            assert!((data[i * 3 + c] - w[c] as f64).abs() < 1e-5);
        }
    }
    // FP32 normalised input, flat, asking for logits only.
    let floats: Vec<f32> = pixels
        .iter()
        .map(|&p| ((p as f64 / 255.0 - NORM.mean) / NORM.std) as f32)
        .collect();
    let (st, out) = s
        .infer(serde_json::json!({"inputs": [{"name": "input", "shape": [3, 3, 16, 16], "datatype": "FP32", "data": floats}], "outputs": [{"name": "logits"}]}))
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["outputs"].as_array().unwrap().len(), 1);
    let logits: Vec<f64> = out["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, w) in want.iter().enumerate() {
        assert_eq!(
            argmax(
                &logits[i * 3..i * 3 + 3]
                    .iter()
                    .map(|&v| v as f32)
                    .collect::<Vec<_>>()
            ),
            argmax(w)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_clearly_and_the_server_keeps_serving() {
    let s = start(|c| c.max_images_per_request = 16).await;
    let post_raw = |ctype: &'static str, body: Vec<u8>| {
        let (http, url) = (s.http.clone(), s.url.clone());
        async move {
            let r = http
                .post(format!("{url}/v1/models/best/classify"))
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (st, b) = post_raw("image/png", b"definitely not a picture".to_vec()).await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(b["error"]["code"], "bad_image");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("not an image"),
        "{b}"
    );

    let mut jpg = Cursor::new(Vec::new());
    image::RgbImage::from_fn(200, 200, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .write_to(&mut jpg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpg = jpg.into_inner();
    let (st, b) = post_raw("image/jpeg", jpg[..jpg.len() / 2].to_vec()).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("truncated"),
        "{b}"
    );

    // A PNG whose header declares 60000x60000 (with a valid CRC): refused from the header alone.
    let mut p = png(1);
    p[16..20].copy_from_slice(&60000u32.to_be_bytes());
    p[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let crc = crc32(&p[12..29]);
    p[29..33].copy_from_slice(&crc.to_be_bytes());
    let (st, b) = post_raw("image/png", p).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("60000x60000"),
        "{b}"
    );

    let (st, b) = s.classify(&[]).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("no images"),
        "{b}"
    );

    let many: Vec<Vec<u8>> = (0..17).map(|_| png(3)).collect();
    let (st, b) = s.classify(&many).await;
    assert_eq!(st, 413, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("limit is 16"),
        "{b}"
    );

    let (st, b) = post_raw("text/plain", b"hello".to_vec()).await;
    assert_eq!(st, 415, "{b}");

    let r = s
        .http
        .post(format!("{}/v1/models/nope/classify", s.url))
        .header("content-type", "image/png")
        .body(png(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.get("/v2/models/nope").await;
    assert_eq!(r.status(), 404);
    let b: serde_json::Value = r.json().await.unwrap();
    assert!(
        b["error"].as_str().unwrap().contains("nope"),
        "v2 error body is {{\"error\": msg}}: {b}"
    );

    for (body, why) in [
        (
            serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": vec![0.0; 192]}]}),
            "shape",
        ),
        (
            serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 16, 16], "datatype": "INT64", "data": vec![0; 768]}]}),
            "datatype",
        ),
        (
            serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 16, 16], "datatype": "FP32", "data": vec![0.0; 10]}]}),
            "values",
        ),
        (
            serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 16, 16], "datatype": "UINT8", "data": vec![300; 768]}]}),
            "0..=255",
        ),
        (serde_json::json!({"inputs": []}), "exactly one"),
        (serde_json::json!({"nonsense": true}), "not a v2"),
    ] {
        let (st, b) = s.infer(body).await;
        assert_eq!(st, 400, "{why}: {b}");
        assert!(b["error"].as_str().unwrap().contains(why), "{why}: {b}");
    }

    // Still serving.
    let (st, b) = s.classify(&[png(5)]).await;
    assert_eq!(st, 200, "{b}");
}

/// Under a flood the queue stays bounded: requests that do not fit are refused with 503 +
/// Retry-After (never queued without bound), the admitted ones are answered, and service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_is_refused_with_retry_after_not_queued_without_bound() {
    let s = std::sync::Arc::new(
        start(|c| {
            c.batch.max_batch = 4;
            c.batch.max_queue = 8;
            c.batch.max_delay = Duration::from_millis(30);
            c.max_inflight = 6;
        })
        .await,
    );
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut form = reqwest::multipart::Form::new();
                for j in 0..3 {
                    form = form.part(
                        "image",
                        reqwest::multipart::Part::bytes(png(i * 3 + j)).file_name("x.png"),
                    );
                }
                let r = s
                    .http
                    .post(format!("{}/v1/models/best/classify", s.url))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.headers().get("retry-after").is_some())
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (503, true) => refused += 1,
            other => panic!("unexpected answer under a flood: {other:?}"),
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    let stats: serde_json::Value = s.get_json("/v1/models").await;
    assert_eq!(stats["models"][0]["stats"]["queued"], 0, "{stats}");
    assert!(stats["models"][0]["stats"]["largest_batch"].as_u64().unwrap() <= 4);
    let (st, _) = s.classify(&[png(1)]).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_deadline_is_honoured() {
    // A slow request (many large images to decode) keeps the batcher waiting for company for up to
    // 2 s; a small request that allows itself 100 ms gets 504 in time instead of waiting with it.
    let s = std::sync::Arc::new(start(|c| c.batch.max_delay = Duration::from_secs(2)).await);
    let big: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let img = image::RgbImage::from_fn(1500, 1500, |x, y| image::Rgb([(x + i) as u8, y as u8, 3]));
            let mut out = Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            out.into_inner()
        })
        .collect();
    let s2 = s.clone();
    let slow = tokio::spawn(async move { s2.classify(&big).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let post = |timeout: &'static str| {
        let s = s.clone();
        async move {
            let t = std::time::Instant::now();
            let r = s
                .http
                .post(format!("{}/v1/models/best/classify", s.url))
                .header("content-type", "image/png")
                .header("x-request-timeout-ms", timeout)
                .body(png(2))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), t.elapsed())
        }
    };
    let (status, took) = post("100").await;
    assert_eq!(status, 504);
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(post("soon").await.0, 400, "a malformed deadline is refused");
    assert_eq!(slow.await.unwrap().0, 200, "the slow request is still answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_drains_in_flight_requests() {
    let s = start(|c| c.batch.max_delay = Duration::from_millis(300)).await;
    let (http, url) = (s.http.clone(), s.url.clone());
    let pending = tokio::spawn(async move {
        http.post(format!("{url}/v1/models/best/classify"))
            .header("content-type", "image/png")
            .body(png(4))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.shutdown.cancel();
    let r = pending.await.unwrap().unwrap();
    assert_eq!(
        r.status(),
        200,
        "an in-flight request is answered during shutdown"
    );
    tokio::time::timeout(Duration::from_secs(10), s.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_zip_that_cannot_be_served_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.zip");
    std::fs::write(&bad, b"not a zip").unwrap();
    let mut config = Config::new(vec![ModelSource::Zip {
        name: "bad".into(),
        path: bad,
    }]);
    config.device = "cpu".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tanren_serve::run(config, listener, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a model zip"), "{err}");
}

/// CRC-32 (IEEE) for patching a PNG chunk.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}
