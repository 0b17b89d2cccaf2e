//! The dashboard, embedded: `web/` is bundled by esbuild into `crates/tanren-control/assets/` (committed,
//! so `cargo build` needs no Node), and served from here at `/` and `/assets/*` — one origin, offline.
//! Responses are gzipped once on first use when the browser accepts it, and carry an ETag so reloads
//! revalidate instead of downloading again.

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
];

struct Prepared {
    etag: String,
    gzip: Vec<u8>,
}

fn prepared(i: usize) -> &'static Prepared {
    static CELLS: [OnceLock<Prepared>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    CELLS[i].get_or_init(|| {
        let body = ASSETS[i].body;
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body))[..16]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = gz.write_all(body).and_then(|_| gz.finish()).unwrap_or_default();
        Prepared { etag, gzip }
    })
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let p = prepared(i);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == p.etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, p.etag.clone())]).into_response();
    }
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"))
        && !p.gzip.is_empty();
    let common = [
        (header::CONTENT_TYPE, asset.mime.to_string()),
        (header::ETAG, p.etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::VARY, "accept-encoding".to_string()),
    ];
    if gzip_ok {
        (common, [(header::CONTENT_ENCODING, "gzip")], p.gzip.clone()).into_response()
    } else {
        (common, asset.body).into_response()
    }
}

pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS
        .iter()
        .position(|a| a.name == name && a.name != "index.html")
    {
        Some(i) => serve(i, &headers),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
