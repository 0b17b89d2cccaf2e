//! The REST clients: each loops over the read routes a dashboard or the CLI calls, as fast as the
//! server answers (plus an optional think time), until the deadline. The trials list is walked page
//! by page with `next_cursor`, and each complete walk of the seeded study must see every trial once.

use crate::stats::Samples;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

pub struct Target {
    pub url: String,
    pub big: i64,
    pub live: i64,
    /// Trial ids of the seeded study (contiguous).
    pub big_trials: std::ops::Range<i64>,
    pub big_count: usize,
}

#[derive(Default)]
pub struct ClientReport {
    pub routes: BTreeMap<String, Samples>,
    /// Complete walks of the seeded study's trial pages, and those that did not see each trial once.
    pub walks: u64,
    pub bad_walks: Vec<String>,
}

const ROUTES: &[&str] = &[
    "GET /studies",
    "GET /studies/{big}",
    "GET /studies/{live}",
    "GET /studies/{big}/trials?limit=100&after=",
    "GET /studies/{live}/trials?limit=100",
    "GET /trials/{big trial}",
    "GET /studies/{big}/model/trial",
    "GET /workers",
    "GET /datasets",
];

pub async fn client(
    n: usize,
    http: reqwest::Client,
    t: std::sync::Arc<Target>,
    deadline: Instant,
    think: Duration,
) -> ClientReport {
    let mut report = ClientReport::default();
    let mut cursor: Option<String> = None;
    let mut seen: HashSet<i64> = HashSet::new();
    let mut dup = false;
    let mut k = n; // clients start at different routes
    let mut rng = n as u64 * 2654435761 + 1;
    while Instant::now() < deadline {
        let route = ROUTES[k % ROUTES.len()];
        k += 1;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let path = match route {
            "GET /studies" => "/api/v1/studies".to_string(),
            "GET /studies/{big}" => format!("/api/v1/studies/{}", t.big),
            "GET /studies/{live}" => format!("/api/v1/studies/{}", t.live),
            "GET /studies/{big}/trials?limit=100&after=" => format!(
                "/api/v1/studies/{}/trials?limit=100{}",
                t.big,
                cursor.as_ref().map(|c| format!("&after={c}")).unwrap_or_default()
            ),
            "GET /studies/{live}/trials?limit=100" => {
                format!("/api/v1/studies/{}/trials?limit=100", t.live)
            }
            "GET /trials/{big trial}" => {
                let span = (t.big_trials.end - t.big_trials.start).max(1) as u64;
                format!("/api/v1/trials/{}", t.big_trials.start + (rng % span) as i64)
            }
            "GET /studies/{big}/model/trial" => format!("/api/v1/studies/{}/model/trial", t.big),
            "GET /workers" => "/api/v1/workers".to_string(),
            "GET /datasets" => "/api/v1/datasets".to_string(),
            other => unreachable!("route {other}"),
        };
        let start = Instant::now();
        let answer = async {
            let r = http.get(format!("{}{path}", t.url)).send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let took = start.elapsed();
        let error = match &answer {
            Ok((status, _)) if status.is_success() => None,
            Ok((status, body)) => Some(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Err(e) => Some(format!("{e}")),
        };
        let walking = route.contains("{big}/trials");
        if let (true, None, Ok((_, body))) = (walking, &error, &answer) {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            for tr in v["trials"].as_array().into_iter().flatten() {
                dup |= !seen.insert(tr["id"].as_i64().unwrap_or(-1));
            }
            cursor = v["next_cursor"].as_str().map(String::from);
            if cursor.is_none() {
                report.walks += 1;
                if dup || seen.len() != t.big_count {
                    report.bad_walks.push(format!(
                        "a walk saw {} distinct trials of {} (duplicates: {dup})",
                        seen.len(),
                        t.big_count
                    ));
                }
                seen.clear();
                dup = false;
            }
        }
        report
            .routes
            .entry(route.to_string())
            .or_default()
            .record(took, error);
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
    report
}
