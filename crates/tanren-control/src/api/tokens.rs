//! API tokens (admin: create, list, revoke), the dashboard's sign-in from a login URL into a session
//! cookie, sign-out, and `whoami`. Secrets are shown once, at creation, and stored only as SHA-256.

use super::{parse_json, S};
use crate::auth::{self, Principal, Scope};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use tanren_api::{NewToken, Token, TokenCreated, TokenList, Whoami};
use tanren_store::{now_ms, TokenRow};

fn view(t: TokenRow) -> Token {
    Token {
        id: t.id,
        name: t.name,
        scope: t.scope,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    }
}

pub async fn create(
    State(s): State<S>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let n: NewToken = parse_json(&body)?;
    let scope = Scope::parse(&n.scope).ok_or_else(|| ApiError::InvalidField {
        field: "scope".into(),
        message: format!("scope must be read, write or admin, got `{}`", n.scope),
    })?;
    let name = n.name.unwrap_or_else(|| format!("{} token", scope.as_str()));
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(ApiError::InvalidField {
            field: "name".into(),
            message: "name must be 1 to 100 characters".into(),
        });
    }
    let secret = auth::new_api_token();
    let row = s
        .store
        .insert_token(name.trim(), scope.as_str(), &auth::sha256_hex(&secret))
        .await?;
    tracing::info!(token_id = row.id, scope = %row.scope, by = %who.token_name, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: view(row),
            secret,
        }),
    ))
}

pub async fn list(State(s): State<S>) -> ApiResult<Json<TokenList>> {
    let tokens = s.store.tokens().await?.into_iter().map(view).collect();
    Ok(Json(TokenList { tokens }))
}

pub async fn revoke(
    State(s): State<S>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Token>> {
    let tokens = s.store.tokens().await?;
    let target = tokens
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("token {id} does not exist")))?;
    let live_admins = tokens
        .iter()
        .filter(|t| t.scope == "admin" && t.revoked_at.is_none())
        .count();
    if target.scope == "admin" && target.revoked_at.is_none() && live_admins == 1 {
        return Err(ApiError::Conflict(
            "this is the last admin token; create another admin token first, or nobody could manage tokens"
                .into(),
        ));
    }
    let row = s.store.revoke_token(id).await?;
    tracing::info!(token_id = id, by = %who.token_name, "API token revoked");
    Ok(Json(view(row)))
}

pub async fn whoami(Extension(who): Extension<Principal>) -> Json<Whoami> {
    Json(Whoami {
        token_id: who.token_id,
        name: who.token_name,
        scope: who.scope.as_str().into(),
        via: if who.via_session { "session" } else { "bearer" }.into(),
    })
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

fn page(status: StatusCode, text: &str) -> Response {
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>tanren</title>\
         <body style=\"font-family:system-ui;margin:3em\"><h1>tanren</h1><p>{text}</p>"
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// `GET /login?token=…`: the login URL tanren-control prints. A valid token opens a session (an
/// HttpOnly, SameSite=Strict cookie) and goes to the dashboard; the token itself is not kept.
pub async fn login(State(s): State<S>, Query(q): Query<LoginQuery>) -> ApiResult<Response> {
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            "Open the login URL that <code>tanren-control</code> printed when it started \
             (<code>/login?token=…</code>), or ask an admin for a token \
             (<code>tanren token create --scope read</code>).",
        ));
    };
    let Some(row) = s.store.live_token(&auth::sha256_hex(&token)).await? else {
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            "This sign-in link is not valid: the token is mistyped or was revoked.",
        ));
    };
    let session = auth::random_secret();
    s.store
        .insert_session(&auth::sha256_hex(&session), row.id, now_ms() + auth::SESSION_MS)
        .await?;
    tracing::info!(token_id = row.id, "dashboard session opened");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                cookie(&session, auth::SESSION_MS / 1000, s.config.tls.is_some()),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response())
}

/// `Secure` when this process serves HTTPS itself. Behind a TLS-terminating proxy it stays off: the
/// browser would then keep it anyway (it sees https), and over plain-HTTP loopback it must.
fn cookie(value: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        auth::SESSION_COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

/// `POST /logout`: ends this browser's session.
pub async fn logout(State(s): State<S>, headers: HeaderMap) -> ApiResult<Response> {
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == auth::SESSION_COOKIE)
        .map(|(_, v)| v.to_string());
    if let Some(session) = session {
        s.store.delete_session(&auth::sha256_hex(&session)).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie("", 0, s.config.tls.is_some()))],
    )
        .into_response())
}
