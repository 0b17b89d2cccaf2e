//! The KServe / Triton Open Inference Protocol v2 over HTTP/REST (JSON tensors), so existing v2
//! clients work unchanged: server and model health, model metadata, and `infer`.
//!
//! Each model has one input, `input`, `[-1, C, H, W]`: FP32 already normalised
//! (`(pixel / 255 - mean) / std`, exactly what the ONNX export takes), or UINT8 raw pixels (0..255,
//! normalised by the server as in training). Outputs: `probabilities` and `logits`, FP32 `[-1, K]`.
//! Errors answer `{"error": "message"}` as the protocol says.

use crate::batcher::{ImageData, Row};
use crate::error::{ServeError, V2};
use crate::http::{admit, deadline, served};
use crate::S;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<S> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { Json(serde_json::json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}", get(versioned_metadata))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(versioned_infer),
        )
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "tanren-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

async fn server_ready(State(s): State<S>) -> Response {
    let ready = s.models.get().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({"ready": ready}))).into_response()
}

async fn model_ready(State(s): State<S>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, V2> {
    let m = served(&s, &name)?;
    Ok(Json(serde_json::json!({"name": m.info.name, "ready": true})))
}

async fn model_metadata(State(s): State<S>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, V2> {
    let m = served(&s, &name)?;
    let i = &m.info;
    let (c, h) = (i.channels as i64, i.image_size as i64);
    Ok(Json(serde_json::json!({
        "name": i.name,
        "versions": [i.version],
        "platform": "tanren_libtorch",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, c, h, h]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, i.classes.len()]},
            {"name": "logits", "datatype": "FP32", "shape": [-1, i.classes.len()]},
        ],
        "parameters": {
            "classes": i.classes,
            "normalize": i.normalize,
            "input_uint8": "the input may also be sent as UINT8 raw pixels [-1, C, H, W]; the server normalises them",
        },
    })))
}

async fn versioned_metadata(
    State(s): State<S>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, V2> {
    check_version(&s, &name, &version)?;
    model_metadata(State(s), Path(name)).await
}

fn check_version(s: &S, name: &str, version: &str) -> Result<(), ServeError> {
    let m = served(s, name)?;
    if m.info.version != version {
        return Err(ServeError::UnknownModel {
            name: format!("{name}` version `{version}"),
            loaded: format!("`{name}` version `{}`", m.info.version),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
}

async fn versioned_infer(
    State(s): State<S>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, V2> {
    check_version(&s, &name, &version)?;
    infer(State(s), Path(name), headers, body).await
}

async fn infer(
    State(s): State<S>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, V2> {
    let model = served(&s, &name)?;
    let deadline = deadline(&s, &headers)?;
    let _permit = admit(&s)?;
    let coming = model.batcher.announce();
    let req: InferRequest = serde_json::from_slice(&body)
        .map_err(|e| ServeError::BadRequest(format!("the body is not a v2 inference request: {e}")))?;
    let [input] = <[InputTensor; 1]>::try_from(req.inputs).map_err(|v| {
        ServeError::BadRequest(format!(
            "expected exactly one input tensor (`input`), got {}",
            v.len()
        ))
    })?;
    if input.name != "input" {
        return Err(ServeError::BadRequest(format!(
            "unknown input `{}`; this model's input is `input`",
            input.name
        ))
        .into());
    }
    let (c, h) = (model.info.channels as i64, model.info.image_size as i64);
    let n = match input.shape.as_slice() {
        [n, cc, hh, ww] if [*cc, *hh, *ww] == [c, h, h] && *n >= 1 => *n as usize,
        _ => {
            return Err(ServeError::BadRequest(format!(
                "input shape {:?} does not match [N, {c}, {h}, {h}] with N >= 1",
                input.shape
            ))
            .into())
        }
    };
    let max = s.config.max_images_per_request;
    if n > max {
        return Err(ServeError::TooLarge(format!(
            "{n} images in one request; the limit is {max} (--max-images-per-request)"
        ))
        .into());
    }
    let per = (c * h * h) as usize;
    let flat = flatten(&input.data, n * per)?;
    if flat.len() != n * per {
        return Err(ServeError::BadRequest(format!(
            "input data has {} values; shape {:?} needs {}",
            flat.len(),
            input.shape,
            n * per
        ))
        .into());
    }
    let images: Vec<ImageData> = match input.datatype.as_str() {
        "FP32" => {
            if let Some(bad) = flat.iter().position(|v| !v.is_finite()) {
                return Err(
                    ServeError::BadRequest(format!("input value {bad} is not a finite number")).into(),
                );
            }
            flat.chunks(per)
                .map(|c| ImageData::Normalized(c.iter().map(|&v| v as f32).collect()))
                .collect()
        }
        "UINT8" => {
            if let Some(bad) = flat
                .iter()
                .position(|&v| !(0.0..=255.0).contains(&v) || v.fract() != 0.0)
            {
                return Err(ServeError::BadRequest(format!(
                    "UINT8 input value {bad} ({}) is not an integer in 0..=255",
                    flat[bad]
                ))
                .into());
            }
            flat.chunks(per)
                .map(|c| ImageData::Pixels(c.iter().map(|&v| v as u8).collect()))
                .collect()
        }
        other => {
            return Err(ServeError::BadRequest(format!(
                "datatype {other} is not accepted for `input`: send FP32 (normalised) or UINT8 (raw pixels)"
            ))
            .into())
        }
    };
    let wanted: Vec<String> = match req.outputs {
        Some(o) if !o.is_empty() => o.into_iter().map(|o| o.name).collect(),
        _ => vec!["probabilities".into(), "logits".into()],
    };
    if let Some(bad) = wanted
        .iter()
        .find(|w| !matches!(w.as_str(), "probabilities" | "logits"))
    {
        return Err(ServeError::BadRequest(format!(
            "unknown output `{bad}`; outputs are `probabilities` and `logits`"
        ))
        .into());
    }
    let rows = model.batcher.submit(images, deadline, coming).await?;
    let k = model.info.classes.len();
    let outputs: Vec<serde_json::Value> = wanted
        .iter()
        .map(|w| {
            let pick = |r: &Row| {
                if w == "logits" {
                    r.logits.clone()
                } else {
                    r.probabilities.clone()
                }
            };
            let data: Vec<f32> = rows.iter().flat_map(pick).collect();
            serde_json::json!({"name": w, "datatype": "FP32", "shape": [n, k], "data": data})
        })
        .collect();
    let mut resp = serde_json::json!({
        "model_name": model.info.name,
        "model_version": model.info.version,
        "outputs": outputs,
    });
    if let Some(id) = req.id {
        resp["id"] = id.into();
    }
    Ok(Json(resp))
}

/// The protocol allows flat or nested row-major arrays. Stops early once past `limit` values.
fn flatten(v: &serde_json::Value, limit: usize) -> Result<Vec<f64>, ServeError> {
    fn walk(v: &serde_json::Value, out: &mut Vec<f64>, limit: usize) -> Result<(), ServeError> {
        match v {
            serde_json::Value::Number(n) => {
                out.push(
                    n.as_f64()
                        .ok_or_else(|| ServeError::BadRequest("a number is out of range".into()))?,
                );
                Ok(())
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    if out.len() > limit {
                        return Ok(());
                    }
                    walk(x, out, limit)?;
                }
                Ok(())
            }
            other => Err(ServeError::BadRequest(format!(
                "input data must be numbers (flat or nested arrays), found {}",
                match other {
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Null => "null",
                    _ => "an object",
                }
            ))),
        }
    }
    let mut out = Vec::with_capacity(limit.min(1 << 24));
    walk(v, &mut out, limit)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_nested_data_flatten_alike() {
        let flat = serde_json::json!([1, 2, 3, 4]);
        let nested = serde_json::json!([[[1, 2]], [[3, 4]]]);
        assert_eq!(flatten(&flat, 4).unwrap(), flatten(&nested, 4).unwrap());
        assert!(flatten(&serde_json::json!([1, "x"]), 4).is_err());
        assert_eq!(
            flatten(&serde_json::json!([1, 2, 3, 4, 5, 6, 7]), 4)
                .unwrap()
                .len(),
            5,
            "stops past the limit"
        );
    }
}
