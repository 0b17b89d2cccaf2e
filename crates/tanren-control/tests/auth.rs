//! The doors, tried from outside on a real control plane (port 0, temp SQLite, no workers): every route
//! in `tanren_control::auth::ROUTES` × {no token, wrong token, read, write, admin, join token}, refused
//! with 401/403 and no side effect where it must be; sessions from the login URL, cross-origin
//! requests and WebSockets, foreign Host names, content types, token management and revocation, and
//! a non-loopback bind without TLS.

use axum::http::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tanren_control::auth::{Access, Scope, ROUTES};
use tanren_control::Config;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "tnr_auth_test_admin_token_0123456789";
const JOIN: &str = "auth-test-join-token-0123456789";

struct App {
    url: String,
    state: Arc<tanren_control::AppState>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("control"));
    c.admin_token = Some(ADMIN.into());
    c.join_token = Some(JOIN.into());
    c.tick = Duration::from_millis(50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let server = tanren_control::start(c, listener, shutdown.clone())
        .await
        .unwrap();
    let (url, state) = (server.url().to_string(), server.state.clone());
    tokio::spawn(server.serve());
    App {
        url,
        state,
        shutdown,
        _dir: dir,
    }
}

/// No redirects followed (the login answer is looked at, not followed).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl App {
    async fn token(&self, scope: &str) -> String {
        let r = http()
            .post(format!("{}/api/v1/tokens", self.url))
            .bearer_auth(ADMIN)
            .json(&json!({ "scope": scope, "name": format!("{scope} for tests") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn count(&self) -> (usize, usize, usize, usize) {
        let s = &self.state.store;
        (
            s.studies().await.unwrap().len(),
            s.datasets().await.unwrap().len(),
            s.tokens().await.unwrap().len(),
            s.workers().await.unwrap().len(),
        )
    }

    /// A session cookie from the login URL.
    async fn session(&self, token: &str) -> String {
        let r = http()
            .get(format!("{}/login?token={token}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        cookie.split(';').next().unwrap().to_string()
    }
}

/// A registration with the join token; the answer's JSON.
async fn register(app: &App, body: &Value) -> Value {
    http()
        .post(format!("{}/api/v1/workers", app.url))
        .bearer_auth(JOIN)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A concrete path for a route pattern.
fn concrete(path: &str) -> String {
    path.replace("{sha}", &"0".repeat(64))
        .replace("{name}", "app.js")
        .replace("{class}", "a")
        .replace("{k}", "0")
        .replace("{id}", "1")
}

async fn call(app: &App, method: &Method, path: &str, bearer: Option<&str>) -> u16 {
    let url = format!("{}{}", app.url, concrete(path));
    let mut r = http().request(method.clone(), url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if *method == Method::POST || *method == Method::PUT {
        r = if path == "/api/v1/datasets" {
            r.header("content-type", "multipart/form-data; boundary=x")
                .body("--x--\r\n")
        } else {
            r.header("content-type", "application/json").body("{}")
        };
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_callers_without_the_right_credential_and_lets_the_right_one_in() {
    let app = app().await;
    let read = app.token("read").await;
    let write = app.token("write").await;
    let before = app.count().await;
    let callers: [(&str, Option<&str>); 6] = [
        ("none", None),
        ("wrong", Some("tnr_not_a_real_token")),
        ("read", Some(&read)),
        ("write", Some(&write)),
        ("admin", Some(ADMIN)),
        ("join", Some(JOIN)),
    ];
    let mut table = Vec::new();
    let mut refused_mutations = 0;
    for route in ROUTES {
        if route.method == Method::DELETE || route.path == "/login" || route.path == "/logout" {
            continue; // revocation and sign-in have their own tests (their effects are the point)
        }
        for (who, bearer) in &callers {
            let status = call(&app, &route.method, route.path, *bearer).await;
            let allowed = match route.access {
                Access::Public => true,
                Access::User(need) => match *who {
                    "read" => Scope::Read >= need,
                    "write" => Scope::Write >= need,
                    "admin" => true,
                    _ => false,
                },
                Access::Join => *who == "join",
                Access::ReadOrTrialDataset => matches!(*who, "read" | "write" | "admin"),
                Access::Trial => false,
            };
            let refused = status == 401 || status == 403;
            table.push(format!(
                "{:6} {:55} {:6} -> {status}",
                route.method, route.path, who
            ));
            if allowed {
                assert!(!refused, "{} {} as {who}: {status}", route.method, route.path);
            } else {
                assert!(refused, "{} {} as {who}: {status}", route.method, route.path);
                // Nobody authenticated: 401; authenticated but not enough: 403.
                let expect = match (route.access, *who) {
                    (Access::Trial, _) => 403,
                    (Access::Join, _) => 401,
                    (_, "none" | "wrong" | "join") => 401,
                    _ => 403,
                };
                assert_eq!(status, expect, "{} {} as {who}", route.method, route.path);
                if route.method != Method::GET {
                    refused_mutations += 1;
                }
            }
        }
    }
    println!("{}", table.join("\n"));
    assert!(refused_mutations > 20, "{refused_mutations}");
    // The refused calls changed nothing; the allowed ones here all had invalid bodies, except the
    // join token's registration (also invalid: `{}` has no id) and token creation (`{}`: no scope).
    assert_eq!(app.count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_from_its_own_pages_only() {
    let app = app().await;
    let cookie = app.session(ADMIN).await;
    let host = app.url.trim_start_matches("http://").to_string();
    let get = http()
        .get(format!("{}/api/v1/studies", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200, "a plain GET with the cookie");
    let post = |origin: Option<String>| {
        let mut r = http()
            .post(format!("{}/api/v1/studies", app.url))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(r#"{"dataset_id": 999}"#);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        async { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post(Some("http://evil.example".into())).await,
        403,
        "another site's page"
    );
    assert_eq!(post(None).await, 403, "a cookie without an Origin");
    let own = post(Some(format!("http://{host}"))).await;
    assert!(
        ![401, 403].contains(&own),
        "its own page gets past the door: {own}"
    );
    // WebSocket: another origin is refused before the upgrade, with or without a session.
    let ws = |origin: &str| {
        let r = http()
            .get(format!("{}/api/v1/studies/1/events", app.url))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        async { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ws("http://evil.example").await, 403);
    assert_eq!(
        ws(&format!("http://{host}")).await,
        404,
        "own origin: the unknown study"
    );
    // Signing out ends the session.
    let out = http()
        .post(format!("{}/logout", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = http()
        .get(format!("{}/api/v1/studies", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    // A bad login link opens nothing.
    let bad = http()
        .get(format!("{}/login?token=tnr_wrong", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_names_and_wrong_content_types_are_refused_before_anything_happens() {
    let app = app().await;
    let before = app.count().await;
    let rebound = http()
        .get(format!("{}/api/v1/studies", app.url))
        .bearer_auth(ADMIN)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403, "DNS rebinding: a Host this server is not");
    let health = http()
        .get(format!("{}/healthz", app.url))
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "probes come by IP");
    let plain = http()
        .post(format!("{}/api/v1/studies", app.url))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body(r#"{"dataset_id": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let body: Value = plain.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{body}"
    );
    assert_eq!(app.count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_listed_and_revoked_and_a_revoked_token_ends_its_sessions() {
    let app = app().await;
    let w = app.token("write").await;
    let cookie = app.session(&w).await;
    let listed: Value = http()
        .get(format!("{}/api/v1/tokens", app.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    assert!(!listed.to_string().contains(&w), "a listing never shows a secret");
    assert!(!listed.to_string().contains("sha256"), "nor its hash");
    let id = tokens.iter().find(|t| t["scope"] == "write").unwrap()["id"]
        .as_i64()
        .unwrap();
    let del = http()
        .delete(format!("{}/api/v1/tokens/{id}", app.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    for (what, r) in [
        (
            "bearer",
            http().get(format!("{}/api/v1/studies", app.url)).bearer_auth(&w),
        ),
        (
            "session",
            http()
                .get(format!("{}/api/v1/studies", app.url))
                .header("cookie", &cookie),
        ),
    ] {
        assert_eq!(r.send().await.unwrap().status(), 401, "revoked token via {what}");
    }
    // The last admin token cannot be revoked (nobody could manage tokens after).
    let admin_id = tokens.iter().find(|t| t["scope"] == "admin").unwrap()["id"]
        .as_i64()
        .unwrap();
    let last = http()
        .delete(format!("{}/api/v1/tokens/{admin_id}", app.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 409);
    // A bad scope is a 400 that names the field.
    let bad = http()
        .post(format!("{}/api/v1/tokens", app.url))
        .bearer_auth(ADMIN)
        .json(&json!({"scope": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Only hashes are stored.
    let rows = app.state.store.tokens().await.unwrap();
    assert!(rows
        .iter()
        .all(|t| t.token_sha256.len() == 64 && t.token_sha256 != w));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registers_only_with_the_join_token_and_gets_its_own_credential() {
    let app = app().await;
    let body = json!({"id": "w1", "grpc_url": "http://127.0.0.1:1", "device": "cpu"});
    for bad in [None, Some(ADMIN), Some("wrong-join-token-0123456789")] {
        let mut r = http().post(format!("{}/api/v1/workers", app.url)).json(&body);
        if let Some(t) = bad {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
    }
    assert!(app.state.store.workers().await.unwrap().is_empty());
    let ok = register(&app, &body).await;
    let cred = ok["credential"].as_str().unwrap();
    assert_eq!(cred.len(), 64);
    let again = register(&app, &body).await;
    assert_eq!(again["credential"], cred, "a heartbeat gets the same credential");
    let other = register(
        &app,
        &json!({"id": "w2", "grpc_url": "http://127.0.0.1:2", "device": "cpu"}),
    )
    .await;
    assert_ne!(other["credential"], cred, "each worker has its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_past_the_rate_limit_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("control"));
    c.admin_token = Some(ADMIN.into());
    c.join_token = Some(JOIN.into());
    c.mutations_per_second = 0.05; // a burst of 3
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let server = tanren_control::start(c, listener, shutdown.clone())
        .await
        .unwrap();
    let url = server.url().to_string();
    tokio::spawn(server.serve());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = http()
            .post(format!("{url}/api/v1/studies/1/stop"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").cloned()));
    }
    assert_eq!(
        statuses.iter().filter(|(s, _)| *s == 404).count(),
        3,
        "{statuses:?}"
    );
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(limited.len(), 2, "{statuses:?}");
    assert!(limited.iter().all(|(_, ra)| ra.is_some()));
    // Reads are not limited.
    let r = http()
        .get(format!("{url}/api/v1/studies"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_makes_an_admin_token_for_the_cli_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("cfg").join("credentials.json");
    let mut c = Config::new(dir.path().join("control"));
    c.credentials_file = Some(creds.clone());
    c.join_token = Some(JOIN.into());
    for round in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tanren_control::start(c.clone(), listener, shutdown.clone())
            .await
            .unwrap();
        let url = server.url().to_string();
        let store = server.state.store.clone();
        let serving = tokio::spawn(server.serve());
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
        let token = doc["servers"][&url]["token"].as_str().unwrap().to_string();
        let kept = std::fs::read_to_string(dir.path().join("control").join("admin-token")).unwrap();
        assert_eq!(kept.trim(), token);
        use std::os::unix::fs::PermissionsExt;
        for f in [creds.clone(), dir.path().join("control").join("admin-token")] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let r = http()
            .get(format!("{url}/api/v1/auth/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let who: Value = r.json().await.unwrap();
        assert_eq!(who["scope"], "admin", "{who}");
        assert_eq!(
            store.tokens().await.unwrap().len(),
            1,
            "round {round}: a restart reuses the first admin token"
        );
        shutdown.cancel();
        // Stopped for good (data dir lock released) before the next round starts on the same dir.
        serving.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_rest_beyond_loopback_without_tls_needs_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::new(dir.path().join("control"));
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = match tanren_control::start(c.clone(), listener, CancellationToken::new()).await {
        Ok(_) => panic!("started on 0.0.0.0 without TLS"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("without TLS") && err.contains("--insecure-http"),
        "{err}"
    );
    let mut c = c;
    c.insecure_http = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let shutdown = CancellationToken::new();
    assert!(tanren_control::start(c, listener, shutdown.clone()).await.is_ok());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_read_token_and_count_requests_by_route_and_status() {
    let app = app().await;
    let read = app.token("read").await;
    let r = http()
        .get(format!("{}/api/v1/studies", app.url))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 16, "a fresh request id: {id}");
    let echoed = http()
        .get(format!("{}/api/v1/studies", app.url))
        .bearer_auth(&read)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    let refused = http()
        .get(format!("{}/api/v1/studies", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        http()
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let m = http()
        .get(format!("{}/metrics", app.url))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |route_status: &str| -> u64 {
        let key = format!("tanren_http_request_duration_seconds_count{{method=\"GET\",route=\"/api/v1/studies\",status=\"{route_status}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{m}"))
            .parse()
            .unwrap()
    };
    assert_eq!(count("200"), 2);
    assert_eq!(count("401"), 1);
    for line in [
        "tanren_trials{state=\"queued\"} 0",
        "tanren_workers{state=\"up\"} 0",
        "tanren_websocket_clients 0",
    ] {
        assert!(m.contains(line), "{line} missing in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let app = app().await;
    let doc: Value = http()
        .get(format!("{}/api/v1/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut table: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table, "documented operations = the route table");
    // Every documented operation reaches a handler (no `no_route` 404, no 405).
    for (method, path) in &documented {
        if method == "DELETE" {
            continue;
        }
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}{}", app.url, concrete(path));
        let mut r = http().request(m, url).bearer_auth(ADMIN);
        if method == "POST" || method == "PUT" {
            r = r.header("content-type", "application/json").body("{}");
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(!body.contains("\"no_route\""), "{method} {path}: {body}");
    }
    // An unknown path and a malformed parameter are JSON errors like every other.
    for (path, status) in [("/api/v1/nope", 404), ("/api/v1/studies/not-a-number", 400)] {
        let r = http()
            .get(format!("{}{path}", app.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
}
