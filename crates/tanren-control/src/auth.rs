//! Who may call what. Every route has one entry in [`ROUTES`] (method, path, access, body); the
//! [`guard`] middleware looks the matched route up there and refuses before the handler runs, so a
//! route without an entry is refused too (fail closed).
//!
//! Credentials, all random 256-bit secrets compared through their SHA-256:
//! - **API tokens** (`tnr_…`, scopes `read` < `write` < `admin`), stored hashed in the database, sent
//!   as `Authorization: Bearer`. The dashboard trades one for a **session** (`/login?token=…` sets an
//!   HttpOnly, SameSite=Strict cookie); a cookie-authenticated request that changes state must also
//!   carry a matching `Origin`.
//! - The **join token** workers register with (`TANREN_JOIN_TOKEN`); registration answers with that
//!   worker's own **credential**, which the control plane presents on every gRPC call to it.
//! - A **trial token** per dispatched trial: it lets the worker download that trial's dataset while the
//!   trial runs and upload its weights once; it dies when the trial ends.
//!
//! Before any of that, the `Host` header must be one of the allowed hosts (DNS rebinding), and a body
//! must have the content type its route takes.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tanren_store::{now_ms, Store, TokenRow};

pub const SESSION_COOKIE: &str = "tanren_session";
/// A dashboard session lasts a week; signing in again from the login URL starts a new one.
pub const SESSION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health probe, dashboard shell and sign-in: no credential.
    Public,
    /// An API token (header) or a session (cookie) with at least this scope.
    User(Scope),
    /// The workers' join token.
    Join,
    /// A user with `read`, or the trial token of a running trial on this dataset (workers' download).
    ReadOrTrialDataset,
    /// The trial token of this running trial; checked by the handler, which knows the trial.
    Trial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    /// `application/json` when a body is sent (a bodiless POST is fine where every field is optional).
    Json,
    Multipart,
    /// Raw bytes (weights).
    Bytes,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub body: BodyKind,
}

const fn r(method: Method, path: &'static str, access: Access, body: BodyKind) -> Route {
    Route {
        method,
        path,
        access,
        body,
    }
}

use Access::*;
use BodyKind as B;

/// Every route the router serves, and who may call it. The auth tests walk this table.
pub static ROUTES: &[Route] = &[
    r(Method::GET, "/healthz", Public, B::None),
    // Prometheus scrapes with a read token (`bearer_token_file` in its scrape config).
    r(Method::GET, "/metrics", User(Scope::Read), B::None),
    r(Method::GET, "/", Public, B::None),
    r(Method::GET, "/assets/{name}", Public, B::None),
    r(Method::GET, "/login", Public, B::None),
    r(Method::POST, "/logout", Public, B::None),
    // The contract is public: it describes the doors, it does not open them.
    r(Method::GET, "/api/v1/openapi.json", Public, B::None),
    r(Method::GET, "/api/v1/auth/whoami", User(Scope::Read), B::None),
    r(Method::POST, "/api/v1/datasets", User(Scope::Write), B::Multipart),
    r(Method::GET, "/api/v1/datasets", User(Scope::Read), B::None),
    r(Method::GET, "/api/v1/datasets/{id}", User(Scope::Read), B::None),
    r(
        Method::POST,
        "/api/v1/datasets/{id}/advice",
        User(Scope::Write),
        B::Json,
    ),
    r(
        Method::GET,
        "/api/v1/datasets/{id}/archive",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::GET,
        "/api/v1/datasets/{id}/classes/{class}/thumbnails/{k}",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::GET,
        "/api/v1/datasets/by-sha/{sha}/archive",
        ReadOrTrialDataset,
        B::None,
    ),
    r(Method::GET, "/api/v1/search-space", User(Scope::Read), B::None),
    r(Method::POST, "/api/v1/studies", User(Scope::Write), B::Json),
    r(Method::GET, "/api/v1/studies", User(Scope::Read), B::None),
    r(Method::GET, "/api/v1/studies/{id}", User(Scope::Read), B::None),
    r(
        Method::POST,
        "/api/v1/studies/estimate",
        User(Scope::Read),
        B::Json,
    ),
    r(
        Method::POST,
        "/api/v1/studies/{id}/stop",
        User(Scope::Write),
        B::Json,
    ),
    r(
        Method::GET,
        "/api/v1/studies/{id}/importance",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::GET,
        "/api/v1/studies/{id}/events",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::GET,
        "/api/v1/studies/{id}/trials",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::GET,
        "/api/v1/studies/{id}/model",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::GET,
        "/api/v1/studies/{id}/model/trial",
        User(Scope::Read),
        B::None,
    ),
    r(Method::GET, "/api/v1/trials/{id}", User(Scope::Read), B::None),
    r(
        Method::GET,
        "/api/v1/trials/{id}/model",
        User(Scope::Read),
        B::None,
    ),
    r(
        Method::PUT,
        "/api/v1/internal/trials/{id}/weights",
        Trial,
        B::Bytes,
    ),
    r(Method::POST, "/api/v1/workers", Join, B::Json),
    r(Method::GET, "/api/v1/workers", User(Scope::Read), B::None),
    r(Method::POST, "/api/v1/tokens", User(Scope::Admin), B::Json),
    r(Method::GET, "/api/v1/tokens", User(Scope::Admin), B::None),
    r(Method::DELETE, "/api/v1/tokens/{id}", User(Scope::Admin), B::None),
];

fn route_for(method: &Method, path: &str) -> Option<&'static Route> {
    // HEAD is answered like GET by axum.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

/// The caller, once authenticated (handlers read it from the request extensions).
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: i64,
    pub token_name: String,
    pub scope: Scope,
    pub via_session: bool,
}

/// 256 random bits as 64 hex digits, from the operating system's generator.
pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the operating system's random generator failed");
    hex::encode(b)
}

pub fn new_api_token() -> String {
    format!("tnr_{}", random_secret())
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equal without an early exit, so the time taken says nothing about how much of a guess was right.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

struct TrialGrant {
    token: String,
    dataset_sha: String,
    uploaded: bool,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The credentials that live in memory: trial tokens, rate-limit buckets, the allowed hosts.
pub struct Auth {
    join_token: String,
    /// Lower-case host names (no port) a request may name in `Host`; `None` allows any.
    allowed_hosts: Option<Vec<String>>,
    trials: Mutex<HashMap<i64, TrialGrant>>,
    /// Probe id -> (token, dataset sha256): a probe downloads its dataset and uploads nothing.
    probes: Mutex<HashMap<u64, (String, String)>>,
    buckets: Mutex<HashMap<i64, Bucket>>,
    touched: Mutex<HashMap<i64, i64>>,
    /// Mutating requests per second per token (burst: one minute's worth, at most 120); 0 = no limit.
    rate: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lower-case host without the port (`[::1]:8080` → `[::1]`, `Example.com:80` → `example.com`).
pub fn host_only(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    if h.starts_with('[') {
        return h.split_once(']').map_or(h.clone(), |(a, _)| format!("{a}]"));
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => h,
    }
}

impl Auth {
    pub fn new(join_token: String, allowed_hosts: Option<Vec<String>>, rate_per_s: f64) -> Auth {
        Auth {
            join_token,
            allowed_hosts: allowed_hosts.map(|v| v.iter().map(|h| host_only(h)).collect()),
            trials: Mutex::default(),
            probes: Mutex::default(),
            buckets: Mutex::default(),
            touched: Mutex::default(),
            rate: rate_per_s,
        }
    }

    pub fn join_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| same_secret(p, &self.join_token))
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        // HTTP/1.1 requires Host; HTTP/2 carries it in :authority, which hyper exposes as Host too.
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        allowed.contains(&host_only(host))
    }

    /// A trial token for a dispatched trial: download `dataset_sha` while it runs, upload weights once.
    pub fn grant_trial(&self, trial_id: i64, dataset_sha: &str) -> String {
        let token = random_secret();
        lock(&self.trials).insert(
            trial_id,
            TrialGrant {
                token: token.clone(),
                dataset_sha: dataset_sha.to_string(),
                uploaded: false,
            },
        );
        token
    }

    /// The trial ended (however): its token stops working, an upload still streaming cannot land.
    pub fn end_trial(&self, trial_id: i64) {
        lock(&self.trials).remove(&trial_id);
    }

    /// A token for a probe on a worker: download `dataset_sha` until `end_probe`. Returns (id, token).
    pub fn grant_probe(&self, dataset_sha: &str) -> (u64, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = random_secret();
        lock(&self.probes).insert(id, (token.clone(), dataset_sha.to_string()));
        (id, token)
    }

    pub fn end_probe(&self, id: u64) {
        lock(&self.probes).remove(&id);
    }

    fn trial_may_download(&self, presented: &str, dataset_sha: &str) -> bool {
        lock(&self.trials)
            .values()
            .any(|g| g.dataset_sha == dataset_sha && same_secret(presented, &g.token))
            || lock(&self.probes)
                .values()
                .any(|(token, sha)| sha == dataset_sha && same_secret(presented, token))
    }

    /// Start a weight upload: the trial's own token, once.
    pub fn begin_upload(&self, trial_id: i64, presented: Option<&str>) -> Result<(), ApiError> {
        let mut trials = lock(&self.trials);
        let grant = trials
            .get_mut(&trial_id)
            .filter(|g| presented.is_some_and(|p| same_secret(p, &g.token)))
            .ok_or_else(|| {
                ApiError::Forbidden(format!(
                    "weights for trial {trial_id} are accepted only with that running trial's token"
                ))
            })?;
        if grant.uploaded {
            return Err(ApiError::Forbidden(format!(
                "the weights of trial {trial_id} were already uploaded; a trial token uploads once"
            )));
        }
        grant.uploaded = true;
        Ok(())
    }

    /// Run `land` (the final rename) only while the trial's grant still exists, holding the lock so the
    /// trial cannot end in between.
    pub fn finish_upload<T>(&self, trial_id: i64, land: impl FnOnce() -> T) -> Result<T, ApiError> {
        let trials = lock(&self.trials);
        if !trials.contains_key(&trial_id) {
            return Err(ApiError::Conflict(format!(
                "trial {trial_id} ended while its weights were uploading; they were discarded"
            )));
        }
        Ok(land())
    }

    /// Token bucket per API token for requests that change state.
    fn rate_ok(&self, token_id: i64) -> Result<(), ApiError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let burst = (self.rate * 60.0).clamp(1.0, 120.0);
        let mut buckets = lock(&self.buckets);
        let now = Instant::now();
        let b = buckets.entry(token_id).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::TooManyRequests {
                retry_after: ((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64,
            })
        }
    }

    /// Whether `last_used_at` is due a write (at most once a minute per token).
    fn touch_due(&self, token_id: i64) -> bool {
        let now = now_ms();
        let mut t = lock(&self.touched);
        match t.get(&token_id) {
            Some(&at) if now - at < 60_000 => false,
            _ => {
                t.insert(token_id, now);
                true
            }
        }
    }
}

/// `Origin` must name the host the request was sent to (same origin), when it is present.
fn origin_ok(headers: &HeaderMap) -> Option<bool> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok())?;
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    Some(origin_host.eq_ignore_ascii_case(host))
}

fn content_type_ok(kind: BodyKind, headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let has_body = match headers.get(header::CONTENT_LENGTH) {
        Some(n) => n.as_bytes() != b"0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    };
    let need = match kind {
        BodyKind::None | BodyKind::Bytes => return Ok(()),
        BodyKind::Json if !has_body && ct.is_none() => return Ok(()),
        BodyKind::Json => "application/json",
        BodyKind::Multipart => "multipart/form-data",
    };
    match ct.as_deref() {
        Some(c) if c == need => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "this route takes `{need}`; the request's Content-Type is {}",
            other.map_or("missing".to_string(), |c| format!("`{c}`"))
        ))),
    }
}

async fn user(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let store = &state.store;
    if let Some(token) = bearer(headers) {
        return Ok(store
            .live_token(&sha256_hex(token))
            .await?
            .map(|t| principal(t, false)));
    }
    if let Some(session) = cookie(headers, SESSION_COOKIE) {
        return Ok(store
            .session_token(&sha256_hex(session))
            .await?
            .map(|t| principal(t, true)));
    }
    Ok(None)
}

fn principal(t: TokenRow, via_session: bool) -> Principal {
    Principal {
        token_id: t.id,
        token_name: t.name,
        scope: Scope::parse(&t.scope).unwrap_or(Scope::Read),
        via_session,
    }
}

const SIGN_IN: &str = "send `Authorization: Bearer <token>` (the CLI reads TANREN_TOKEN or the \
     credentials file tanren-control wrote), or open the login URL tanren-control printed at start";

/// The middleware in front of every route (see the module docs for the order of checks).
pub async fn guard(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = matched.as_ref().map_or("", |m| m.as_str());
    let headers = req.headers();
    if path != "/healthz" && !state.auth.host_ok(headers) {
        return Err(ApiError::Forbidden(format!(
            "Host `{}` is not one this server answers to; add it with --allowed-host (TANREN_ALLOWED_HOSTS)",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
        )));
    }
    let Some(route) = route_for(req.method(), path) else {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} is not served on {path}",
            req.method()
        )));
    };
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    // A browser names the page that sent a request; another site's page is refused outright.
    if (mutating || websocket) && origin_ok(headers) == Some(false) {
        return Err(ApiError::Forbidden(
            "cross-origin request refused: Origin does not match this server".into(),
        ));
    }
    content_type_ok(route.body, headers)?;
    match route.access {
        Access::Public | Access::Trial => {}
        Access::Join => {
            if !state.auth.join_ok(bearer(headers)) {
                return Err(ApiError::Unauthorized(
                    "worker registration needs the join token as `Authorization: Bearer` \
                     (TANREN_JOIN_TOKEN on the worker, the same value the control plane uses)"
                        .into(),
                ));
            }
        }
        Access::ReadOrTrialDataset => {
            let sha = path_segment(req.uri().path(), 5);
            let trial_ok = bearer(headers).is_some_and(|t| state.auth.trial_may_download(t, &sha));
            if !trial_ok {
                let p = authenticate(&state, headers, Scope::Read, mutating, websocket).await?;
                req.extensions_mut().insert(p);
            }
        }
        Access::User(scope) => {
            let p = authenticate(&state, headers, scope, mutating, websocket).await?;
            if mutating {
                state.auth.rate_ok(p.token_id)?;
            }
            req.extensions_mut().insert(p);
        }
    }
    Ok(next.run(req).await)
}

fn path_segment(path: &str, i: usize) -> String {
    path.split('/').nth(i).unwrap_or("").to_string()
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
    mutating: bool,
    websocket: bool,
) -> Result<Principal, ApiError> {
    let Some(p) = user(state, headers).await? else {
        let why = if bearer(headers).is_some() {
            "this token is not valid (mistyped, or revoked)"
        } else if cookie(headers, SESSION_COOKIE).is_some() {
            "the dashboard session has ended (expired, signed out, or its token revoked)"
        } else {
            "sign in first"
        };
        return Err(ApiError::Unauthorized(format!("{why}: {SIGN_IN}")));
    };
    if p.via_session && (mutating || websocket) && origin_ok(headers) != Some(true) {
        // A cookie rides along on requests other sites make; the browser's Origin says who made it.
        return Err(ApiError::Forbidden(
            "a signed-in browser request that changes state must come from this server's own pages (Origin)"
                .into(),
        ));
    }
    if p.scope < scope {
        return Err(ApiError::Forbidden(format!(
            "token `{}` has scope `{}`; this needs `{}` (an admin creates one with `tanren token create --scope {}`)",
            p.token_name,
            p.scope.as_str(),
            scope.as_str(),
            scope.as_str()
        )));
    }
    if state.auth.touch_due(p.token_id) {
        let (store, id) = (state.store.clone(), p.token_id);
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id).await {
                tracing::debug!(error = %e, "could not record a token's last use");
            }
        });
    }
    Ok(p)
}

/// Start-up: make sure an admin can get in, and say how.
///
/// - `TANREN_ADMIN_TOKEN` set: that value is an admin token (created if new).
/// - Otherwise, when no admin token is live: create one, keep it in `<data_dir>/admin-token` (0600) and
///   in the CLI's credentials file for this server's URL.
/// - Either way, when the admin token is known here, print the login URL.
pub async fn bootstrap(
    store: &Store,
    data_dir: &Path,
    admin_token: Option<&str>,
    credentials_file: Option<&Path>,
    browse_url: &str,
) -> anyhow::Result<()> {
    let file = data_dir.join(ADMIN_TOKEN_FILE);
    let known = match admin_token {
        Some(t) => {
            if t.len() < 16 {
                anyhow::bail!("TANREN_ADMIN_TOKEN is too short: use at least 16 random characters (e.g. `openssl rand -hex 32`)");
            }
            if store.live_token(&sha256_hex(t)).await?.is_none() {
                if let Err(e) = store
                    .insert_token("admin (TANREN_ADMIN_TOKEN)", "admin", &sha256_hex(t))
                    .await
                {
                    anyhow::bail!("TANREN_ADMIN_TOKEN cannot be used (revoked before?): {e}");
                }
            }
            Some(t.to_string())
        }
        None => {
            let kept = std::fs::read_to_string(&file).ok().map(|s| s.trim().to_string());
            let kept_live = match &kept {
                Some(t) => store.live_token(&sha256_hex(t)).await?.is_some(),
                None => false,
            };
            if kept_live {
                kept
            } else if !store.has_live_admin_token().await? {
                let t = new_api_token();
                store
                    .insert_token("admin (first start)", "admin", &sha256_hex(&t))
                    .await?;
                write_secret(&file, &t)?;
                tracing::info!(path = %file.display(), "created the first admin token");
                Some(t)
            } else {
                None
            }
        }
    };
    match &known {
        Some(t) => {
            if let Some(cf) = credentials_file {
                if let Err(e) = save_credential(cf, browse_url, t) {
                    tracing::warn!(error = %e, path = %cf.display(), "could not write the CLI's credentials file");
                }
            }
            eprintln!("\n  tanren: sign in to the dashboard at {browse_url}/login?token={t}\n");
        }
        None => eprintln!(
            "\n  tanren: sign in with an admin token's login URL ({browse_url}/login?token=…); \
             {} no longer holds a live one\n",
            file.display()
        ),
    }
    Ok(())
}

pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const JOIN_TOKEN_FILE: &str = "join-token";

/// The join token: `TANREN_JOIN_TOKEN`, else the one kept in `<data_dir>/join-token` (made once).
pub fn join_token(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(t) = configured {
        if t.len() < 16 {
            anyhow::bail!("TANREN_JOIN_TOKEN is too short: use at least 16 random characters (e.g. `openssl rand -hex 32`)");
        }
        return Ok(t.to_string());
    }
    let file = data_dir.join(JOIN_TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&file) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let t = random_secret();
    write_secret(&file, &t)?;
    tracing::info!(path = %file.display(), "created the worker join token (give it to workers as TANREN_JOIN_TOKEN)");
    Ok(t)
}

/// Written whole (temp file, mode 0600, rename): never half a secret, never readable by others.
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?; // created 0600
    std::fs::write(tmp.path(), contents)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The CLI's credentials file: `{"servers": {"<url>": {"token": "…"}}}`; other entries are kept.
pub fn save_credential(path: &Path, url: &str, token: &str) -> anyhow::Result<()> {
    let mut doc: serde_json::Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .filter(|v: &serde_json::Value| v.is_object())
        .unwrap_or_else(|| serde_json::json!({}));
    if !doc["servers"].is_object() {
        doc["servers"] = serde_json::json!({});
    }
    doc["servers"][url.trim_end_matches('/')] = serde_json::json!({ "token": token });
    write_secret(path, &serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// `$TANREN_CREDENTIALS_FILE`, else `$XDG_CONFIG_HOME/tanren/credentials.json`, else
/// `~/.config/tanren/credentials.json`.
pub fn default_credentials_file() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("TANREN_CREDENTIALS_FILE") {
        return Some(p.into());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))?;
    Some(base.join("tanren").join("credentials.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_port_and_case() {
        assert_eq!(host_only("LocalHost:8080"), "localhost");
        assert_eq!(host_only("[::1]:8080"), "[::1]");
        assert_eq!(host_only("10.0.0.5"), "10.0.0.5");
    }

    #[test]
    fn every_route_entry_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn an_upload_lands_once_and_never_after_the_trial_ended() {
        let a = Auth::new("j".repeat(20), None, 0.0);
        let t = a.grant_trial(7, "abc");
        assert!(a.begin_upload(7, Some("nope")).is_err());
        assert!(a.begin_upload(8, Some(&t)).is_err());
        assert!(a.trial_may_download(&t, "abc"));
        assert!(!a.trial_may_download(&t, "other"));
        a.begin_upload(7, Some(&t)).unwrap();
        assert!(
            a.begin_upload(7, Some(&t)).is_err(),
            "a replayed upload is refused"
        );
        assert!(a.finish_upload(7, || ()).is_ok());
        a.end_trial(7);
        assert!(a.finish_upload(7, || ()).is_err());
        assert!(!a.trial_may_download(&t, "abc"));
    }

    #[test]
    fn the_rate_limit_refuses_past_the_burst_and_says_when_to_retry() {
        let a = Auth::new("j".repeat(20), None, 1.0);
        for _ in 0..60 {
            a.rate_ok(1).unwrap();
        }
        match a.rate_ok(1) {
            Err(ApiError::TooManyRequests { retry_after }) => assert!(retry_after >= 1),
            other => panic!("{other:?}"),
        }
        a.rate_ok(2).expect("another token has its own bucket");
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
