//! `tanren predict --server URL FILES…`: classify image files with a running `tanren-serve`. Files go
//! in chunks (a few requests in flight, answers printed in input order), one line per image; `--json`
//! prints one JSON object per line. A busy server (503) is retried after its Retry-After; an image the
//! server refuses is reported on its own line and the others are still classified.

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::Value;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

pub struct Predict {
    pub server: String,
    pub model: Option<String>,
    pub files: Vec<PathBuf>,
    pub top_k: usize,
    pub chunk: usize,
    pub json: bool,
}

/// Returns the number of files that could not be classified.
pub async fn run(p: Predict) -> Result<usize> {
    if p.files.is_empty() {
        bail!("no image files given: tanren predict --server URL cat.jpg dog.png …");
    }
    let base = p.server.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    let model = match p.model.clone() {
        Some(m) => m,
        None => only_model(&http, &base).await?,
    };
    let url = format!("{base}/v1/models/{model}/classify?top_k={}", p.top_k.max(1));
    let total = p.files.len();
    let progress = total > p.chunk && std::io::stderr().is_terminal();
    let chunks: Vec<Vec<PathBuf>> = p.files.chunks(p.chunk.max(1)).map(<[PathBuf]>::to_vec).collect();
    let mut answers = futures::stream::iter(chunks.into_iter().map(|c| {
        let (http, url) = (http.clone(), url.clone());
        async move { classify_chunk(&http, &url, c).await }
    }))
    .buffered(4);
    let (mut done, mut failed) = (0usize, 0usize);
    while let Some(lines) = answers.next().await {
        for (file, answer) in lines? {
            done += 1;
            match answer {
                Ok(pred) if p.json => {
                    let mut v = pred;
                    v["file"] = Value::String(file.display().to_string());
                    outln!("{v}");
                }
                Ok(pred) => outln!(
                    "{}\t{}\t{:.4}",
                    file.display(),
                    pred["class"].as_str().unwrap_or("?"),
                    pred["probability"].as_f64().unwrap_or(f64::NAN)
                ),
                Err(msg) => {
                    failed += 1;
                    if p.json {
                        outln!(
                            "{}",
                            serde_json::json!({"file": file.display().to_string(), "error": msg})
                        );
                    } else {
                        errln!("{}: {msg}", file.display());
                    }
                }
            }
        }
        if progress {
            err!("\r  {done}/{total} images");
        }
    }
    if progress {
        errln!("");
    }
    Ok(failed)
}

async fn only_model(http: &reqwest::Client, base: &str) -> Result<String> {
    let r = http
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .with_context(|| format!("cannot reach tanren-serve at {base} (is it running? set --server)"))?;
    let v: Value = r
        .json()
        .await
        .context("tanren-serve answered /v1/models with something that is not JSON")?;
    let names: Vec<&str> = v["models"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("tanren-serve at {base} has no model loaded yet"),
        many => bail!(
            "tanren-serve serves several models ({}); pick one with --model",
            many.join(", ")
        ),
    }
}

type Answers = Vec<(PathBuf, std::result::Result<Value, String>)>;

/// One request for the chunk; if the server refuses one image of it, each file is sent alone so the
/// good ones are still answered and the bad one gets its own message.
async fn classify_chunk(http: &reqwest::Client, url: &str, files: Vec<PathBuf>) -> Result<Answers> {
    let mut parts = Vec::with_capacity(files.len());
    for f in &files {
        let bytes = tokio::fs::read(f)
            .await
            .with_context(|| format!("reading {}", f.display()))?;
        parts.push(bytes);
    }
    match send(http, url, &files, &parts).await? {
        Ok(preds) => Ok(files.into_iter().zip(preds.into_iter().map(Ok)).collect()),
        Err(msg) if files.len() == 1 => Ok(vec![(files[0].clone(), Err(msg))]),
        Err(_) => {
            let mut out = Vec::with_capacity(files.len());
            for (f, b) in files.iter().zip(&parts) {
                let one = send(http, url, std::slice::from_ref(f), std::slice::from_ref(b)).await?;
                out.push((f.clone(), one.map(|mut v| v.remove(0))));
            }
            Ok(out)
        }
    }
}

/// `Ok(Err(message))` when the server refused the images (4xx); `Err` when it cannot be used at all.
async fn send(
    http: &reqwest::Client,
    url: &str,
    files: &[PathBuf],
    parts: &[Vec<u8>],
) -> Result<std::result::Result<Vec<Value>, String>> {
    for attempt in 0..20 {
        let mut form = reqwest::multipart::Form::new();
        for (f, b) in files.iter().zip(parts) {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            form = form.part(
                "image",
                reqwest::multipart::Part::bytes(b.clone()).file_name(name),
            );
        }
        let r = http
            .post(url)
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("cannot reach tanren-serve at {url}"))?;
        let status = r.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 19 {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(1.0);
            tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.05, 30.0))).await;
            continue;
        }
        let body: Value = r.json().await.unwrap_or_default();
        if status.is_success() {
            let preds = body["predictions"].as_array().cloned().unwrap_or_default();
            if preds.len() != files.len() {
                bail!(
                    "tanren-serve answered {} predictions for {} images",
                    preds.len(),
                    files.len()
                );
            }
            return Ok(Ok(preds));
        }
        let msg = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string());
        if status.is_client_error() && status != reqwest::StatusCode::NOT_FOUND {
            return Ok(Err(msg));
        }
        bail!("{msg} ({status})");
    }
    bail!("tanren-serve stayed busy (503) through 20 retries")
}
