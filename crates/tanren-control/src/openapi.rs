//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the REST API, built from the route table
//! (`auth::ROUTES`: paths, methods, who may call) and the contract types (`tanren-api`: schemas). A
//! route cannot be served without an entry in that table, and every entry is documented here, so the
//! document and the router cannot drift; `tests/auth.rs` also calls every documented operation.

use crate::auth::{Access, BodyKind, Route, ROUTES};
use axum::http::Method;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// What a successful answer is.
enum Success {
    Json(&'static str),
    AnyJson,
    Bytes(&'static str),
    Html,
    Text,
    Redirect,
    NoContent,
    WebSocket,
}

/// (summary, success status, success body) per route. `None`: a route this table does not know,
/// which the unit test below refuses.
fn describe(method: &Method, path: &str) -> Option<(&'static str, u16, Success)> {
    use Success::*;
    let m = method.as_str();
    Some(match (m, path) {
        ("GET", "/healthz") => ("Liveness probe", 200, Text),
        ("GET", "/metrics") => ("Prometheus metrics (text format 0.0.4)", 200, Text),
        ("GET", "/") => ("The dashboard", 200, Html),
        ("GET", "/assets/{name}") => ("A dashboard asset", 200, Bytes("application/octet-stream")),
        ("GET", "/login") => (
            "Sign in from a login URL: sets a session cookie, redirects to /",
            303,
            Redirect,
        ),
        ("POST", "/logout") => ("End this browser's session", 204, NoContent),
        ("GET", "/api/v1/openapi.json") => ("This document", 200, AnyJson),
        ("GET", "/api/v1/auth/whoami") => ("The caller's token", 200, Json("Whoami")),
        ("POST", "/api/v1/datasets") => ("Upload a zip of image folders", 201, Json("Dataset")),
        ("GET", "/api/v1/datasets") => ("Every dataset", 200, Json("DatasetList")),
        ("GET", "/api/v1/datasets/{id}") => (
            "One dataset with its classes and skipped files",
            200,
            Json("Dataset"),
        ),
        ("POST", "/api/v1/datasets/{id}/advice") => (
            "Suggested bounds for every searched parameter, each with a reason, and a budget; from probes on a free worker (learning-rate range test, batch sizes, epoch times) and the dataset's statistics",
            200,
            Json("Advice"),
        ),
        ("GET", "/api/v1/datasets/{id}/archive") => ("The dataset's zip", 200, Bytes("application/zip")),
        ("GET", "/api/v1/datasets/{id}/classes/{class}/thumbnails/{k}") => (
            "The k-th training image of a class, as a thumbnail",
            200,
            Bytes("image/png"),
        ),
        ("GET", "/api/v1/datasets/by-sha/{sha}/archive") => (
            "The dataset's zip by sha256 (workers, with their trial token)",
            200,
            Bytes("application/zip"),
        ),
        ("GET", "/api/v1/search-space") => (
            "Every tunable parameter: default bounds, allowed range, help",
            200,
            Json("SearchSpace"),
        ),
        ("POST", "/api/v1/studies") => ("Create a study", 201, Json("Study")),
        ("GET", "/api/v1/studies") => ("Every study", 200, Json("StudyList")),
        ("GET", "/api/v1/studies/{id}") => ("One study: progress, ETA, best trial", 200, Json("Study")),
        ("POST", "/api/v1/studies/{id}/stop") => ("Stop a study", 200, Json("Study")),
        ("POST", "/api/v1/studies/estimate") => (
            "Dry run of creating a study: its time estimate and warnings about its bounds",
            200,
            AnyJson,
        ),
        ("GET", "/api/v1/studies/{id}/events") => {
            ("The study's live event stream (WebSocket)", 101, WebSocket)
        }
        ("GET", "/api/v1/studies/{id}/trials") => (
            "A page of the study's trials in recorded order, without result blobs; `next_cursor` continues",
            200,
            Json("TrialList"),
        ),
        ("GET", "/api/v1/studies/{id}/importance") => (
            "Which parameters mattered, in numbers and sentences",
            200,
            Json("Importance"),
        ),
        ("GET", "/api/v1/studies/{id}/model") => (
            "The best model, or the fastest within X points or under a latency (zip: weights, model.json, ONNX)",
            200,
            Bytes("application/zip"),
        ),
        ("GET", "/api/v1/studies/{id}/model/trial") => (
            "Which trial the model download with the same query would give",
            200,
            Json("Trial"),
        ),
        ("GET", "/api/v1/trials/{id}") => ("One trial in full", 200, Json("TrialDetail")),
        ("GET", "/api/v1/trials/{id}/model") => {
            ("A complete trial's model (zip)", 200, Bytes("application/zip"))
        }
        ("PUT", "/api/v1/internal/trials/{id}/weights") => {
            ("A worker's weight upload (its trial token, once)", 200, Json("WeightsStored"))
        }
        ("POST", "/api/v1/workers") => (
            "Register a worker (join token); also its heartbeat",
            200,
            Json("Registered"),
        ),
        ("GET", "/api/v1/workers") => ("Every known worker", 200, Json("WorkerList")),
        ("POST", "/api/v1/tokens") => ("Create an API token (admin)", 201, Json("TokenCreated")),
        ("GET", "/api/v1/tokens") => (
            "Every API token, never its secret (admin)",
            200,
            Json("TokenList"),
        ),
        ("DELETE", "/api/v1/tokens/{id}") => ("Revoke a token and its sessions (admin)", 200, Json("Token")),
        _ => return None,
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_response(what: &str) -> Value {
    json!({ "description": what, "content": { "application/json": { "schema": schema_ref("ErrorBody") } } })
}

fn parameters(route: &Route) -> Vec<Value> {
    let mut out = Vec::new();
    for seg in route.path.split('/') {
        let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            continue;
        };
        let schema = match name {
            "id" | "k" => json!({ "type": "integer", "format": "int64" }),
            "sha" => json!({ "type": "string", "pattern": "^[0-9a-f]{64}$" }),
            _ => json!({ "type": "string" }),
        };
        out.push(json!({ "name": name, "in": "path", "required": true, "schema": schema }));
    }
    let query = |name: &str, schema: Value, what: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": what });
    match (route.method.as_str(), route.path) {
        ("POST", "/api/v1/datasets") => {
            out.push(query(
                "name",
                json!({"type": "string"}),
                "dataset name (default: the file's name)",
            ));
            out.push(query(
                "split_seed",
                json!({"type": "integer", "format": "int64", "minimum": 0}),
                "seed of the 80/20 split when the zip has only class folders",
            ));
        }
        ("GET", "/api/v1/studies/{id}/model") | ("GET", "/api/v1/trials/{id}/model") => {
            out.push(query(
                "int8",
                json!({"type": "boolean"}),
                "also include model.int8.onnx",
            ));
        }
        ("GET", "/api/v1/studies/{id}/events") => {
            out.push(query(
                "since",
                json!({"type": "integer", "minimum": 0}),
                "resume after this sequence number",
            ));
            out.push(query(
                "stream",
                json!({"type": "integer", "minimum": 0}),
                "the stream id `since` belongs to",
            ));
        }
        ("GET", "/api/v1/studies/{id}/trials") => {
            out.push(query(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": 1000}),
                "at most this many trials (default 1000)",
            ));
            out.push(query(
                "after",
                json!({"type": "string", "pattern": "^[0-9]{1,18}$"}),
                "the previous page's next_cursor",
            ));
        }
        ("GET", "/login") => out.push(query("token", json!({"type": "string"}), "an API token")),
        _ => {}
    }
    if route.path.starts_with("/api/v1/studies/{id}/model") {
        out.push(query(
            "within_points",
            json!({"type": "number", "minimum": 0, "maximum": 100}),
            "the fastest trial within this many accuracy points of the best",
        ));
        out.push(query(
            "max_latency_ms",
            json!({"type": "number", "exclusiveMinimum": 0}),
            "only trials at most this many ms per image",
        ));
    }
    out
}

fn request_body(route: &Route) -> Option<Value> {
    let json_schema = match (route.method.as_str(), route.path) {
        ("POST", "/api/v1/studies") | ("POST", "/api/v1/studies/estimate") => schema_ref("CreateStudy"),
        ("POST", "/api/v1/tokens") => schema_ref("NewToken"),
        ("POST", "/api/v1/datasets/{id}/advice") => schema_ref("AdviceRequest"),
        ("POST", "/api/v1/workers") => schema_ref("WorkerRegistration"),
        _ => json!({ "type": "object" }),
    };
    match route.body {
        BodyKind::None => None,
        BodyKind::Json => Some(json!({
            "required": !(route.path.ends_with("/stop") || route.path.ends_with("/advice")),
            "content": { "application/json": { "schema": json_schema } }
        })),
        BodyKind::Multipart => Some(json!({
            "required": true,
            "content": { "multipart/form-data": { "schema": {
                "type": "object",
                "required": ["file"],
                "properties": { "file": { "type": "string", "contentMediaType": "application/zip" } }
            } } }
        })),
        BodyKind::Bytes => Some(json!({
            "required": true,
            "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } }
        })),
    }
}

fn security(access: Access) -> Option<Value> {
    match access {
        Access::Public => Some(json!([])),
        Access::User(_) | Access::ReadOrTrialDataset => Some(json!([{ "bearer": [] }, { "session": [] }])),
        Access::Join | Access::Trial => Some(json!([{ "bearer": [] }])),
    }
}

fn operation(route: &Route) -> Value {
    let (summary, status, ok) =
        describe(&route.method, route.path).unwrap_or(("(undocumented)", 200, Success::AnyJson));
    let success = match ok {
        Success::Json(name) => {
            json!({ "description": summary, "content": { "application/json": { "schema": schema_ref(name) } } })
        }
        Success::AnyJson => {
            json!({ "description": summary, "content": { "application/json": { "schema": {} } } })
        }
        Success::Bytes(ct) => {
            json!({ "description": summary, "content": { ct: { "schema": { "type": "string", "contentMediaType": ct } } } })
        }
        Success::Html => {
            json!({ "description": summary, "content": { "text/html": { "schema": { "type": "string" } } } })
        }
        Success::Text => {
            json!({ "description": summary, "content": { "text/plain": { "schema": { "type": "string" } } } })
        }
        Success::Redirect | Success::NoContent | Success::WebSocket => json!({ "description": summary }),
    };
    let mut responses = Map::new();
    if route.path == "/api/v1/datasets" && route.method == Method::POST {
        // The same zip uploaded again answers the existing dataset.
        responses.insert("200".into(), success.clone());
    }
    responses.insert(status.to_string(), success);
    if route.path == "/login" {
        responses.insert(
            "401".into(),
            json!({ "description": "not a valid token", "content": { "text/html": { "schema": { "type": "string" } } } }),
        );
    }
    responses.insert(
        "4XX".into(),
        error_response("refused: bad input (400, 413, 415, 422), no or wrong credential (401, 403), not found (404), conflict (409), rate limit (429)"),
    );
    responses.insert(
        "5XX".into(),
        error_response("server fault (an id to find it in the log) or busy (503)"),
    );
    let mut op = json!({
        "summary": summary,
        "operationId": operation_id(route),
        "parameters": parameters(route),
        "responses": responses,
    });
    if let Some(b) = request_body(route) {
        op["requestBody"] = b;
    }
    if let Some(s) = security(route.access) {
        op["security"] = s;
    }
    op
}

fn operation_id(route: &Route) -> String {
    let mut id = route.method.as_str().to_ascii_lowercase();
    for seg in route
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api" && *s != "v1")
    {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.extend(
            seg.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        for route in ROUTES {
            let item = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
            item[route.method.as_str().to_ascii_lowercase()] = operation(route);
        }
        let mut components = serde_json::to_value(tanren_api::components()).unwrap_or_else(|_| json!({}));
        components["securitySchemes"] = json!({
            "bearer": { "type": "http", "scheme": "bearer", "description": "an API token (`tnr_…`), a worker's join token, or a trial token" },
            "session": { "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE }
        });
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "tanren",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Find the best image classifier for your pictures: datasets, studies, trials, workers, models."
            },
            "paths": paths,
            "components": components,
        })
    })
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(document().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_every_schema_it_names_exists() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for route in ROUTES {
            assert!(
                describe(&route.method, route.path).is_some(),
                "{} {} has no entry in describe()",
                route.method,
                route.path
            );
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {}", route.method, route.path);
        }
        let text = doc.to_string();
        for r in text.split("#/components/schemas/").skip(1) {
            let name: String = r.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(
                schemas[&name].is_object(),
                "schema {name} is referenced but missing"
            );
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<String> = ROUTES.iter().map(operation_id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
