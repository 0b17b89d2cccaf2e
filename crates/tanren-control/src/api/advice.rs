//! Guidance routes. `POST /api/v1/studies/estimate`: the same body as creating a study, answered
//! with what creating it would say about cost and bounds (the new-study form calls it as bounds
//! change), without creating anything. `POST /api/v1/datasets/{id}/advice`: suggested bounds.

use super::{parse_json, S};
use crate::error::{ApiError, ApiResult};
use crate::probe::Probed;
use crate::study_spec::CreateStudy;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use tanren_api::{AdviceRequest, ProbeSummary};
use tanren_core::advisor;
use tanren_core::estimate::TimeModel;
use tanren_core::warnings::Measured;
use tanren_core::{ImageSpace, OptimizerKind};
use tanren_store::StoreError;

pub async fn estimate(State(s): State<S>, body: Bytes) -> ApiResult<Json<serde_json::Value>> {
    let req: CreateStudy = parse_json(&body)?;
    let ds = match s.store.dataset(req.dataset_id).await {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::InvalidField {
                field: "dataset_id".into(),
                message: format!("dataset {} does not exist; upload one first", req.dataset_id),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let space = ImageSpace::from_bounds(&req.bounds)?;
    let mut budget = req.budget.clone();
    if budget.trials.is_none() && budget.minutes.is_none() {
        budget.trials = Some(20);
    }
    if budget.trials.is_some_and(|t| !(1..=100_000).contains(&t)) {
        return Err(ApiError::InvalidField {
            field: "budget.trials".into(),
            message: "must be 1..=100000".into(),
        });
    }
    if budget.minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
        return Err(ApiError::InvalidField {
            field: "budget.minutes".into(),
            message: "must be a positive number of minutes".into(),
        });
    }
    let (estimate, warnings) = crate::estimate::assess(&s, &ds, &req.bounds, &space, &budget).await?;
    Ok(Json(
        serde_json::json!({ "estimate": estimate, "warnings": warnings }),
    ))
}

/// How long the probes may take on a worker (the dataset's fetch and decode come on top).
const PROBE_SECONDS_CPU: f64 = 30.0;
const PROBE_SECONDS_CUDA: f64 = 60.0;

/// `POST /api/v1/datasets/{id}/advice`: suggested bounds for every searched parameter with a reason
/// each, a budget, and the estimate of a study with them. Probes run first on a free worker unless
/// the body says `"probe": false`; without one the advice rests on the statistics (and earlier
/// probes) and says so. Kept in the dataset's directory (`advice.json`) so later studies' estimates
/// and warnings use what the probes measured.
pub async fn advise(
    State(s): State<S>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> ApiResult<Json<tanren_api::Advice>> {
    let req: AdviceRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AdviceRequest::default()
    } else {
        parse_json(&body)?
    };
    let optimizers = match &req.optimizers {
        None => vec![OptimizerKind::Adam, OptimizerKind::Sgd],
        Some(v) => {
            let mut out = Vec::new();
            for name in v {
                let k = OptimizerKind::parse(name).ok_or_else(|| ApiError::InvalidField {
                    field: "optimizers".into(),
                    message: format!("unknown optimizer `{name}`; use adam, adamw or sgd"),
                })?;
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            if out.len() > 3 {
                return Err(ApiError::InvalidField {
                    field: "optimizers".into(),
                    message: "at most three optimizers".into(),
                });
            }
            out
        }
    };
    if req
        .probe_seconds
        .is_some_and(|x| !(x.is_finite() && (1.0..=300.0).contains(&x)))
    {
        return Err(ApiError::InvalidField {
            field: "probe_seconds".into(),
            message: "must be 1 to 300 seconds".into(),
        });
    }
    let ds = s.store.dataset(id).await?;
    let stats = super::dataset_stats(&s, &ds).await?;
    let data = crate::estimate::data_size(&ds);
    let earlier = stored(&s, &ds).await;
    let cuda = s
        .scheduler
        .live_workers(s.store.workers().await?)
        .iter()
        .any(|w| w.cuda_available != 0);

    // The statistics' bounds span the probes' timing configurations.
    let (measured, probe) = if req.probe.unwrap_or(true) {
        let first = advisor::advise(&stats, data, None, &TimeModel::prior(cuda));
        let space = ImageSpace::from_bounds(&first.bounds)?;
        let limits = tanren_core::probe::PlanLimits {
            cuda,
            deadline_seconds: req.probe_seconds.unwrap_or(if cuda {
                PROBE_SECONDS_CUDA
            } else {
                PROBE_SECONDS_CPU
            }),
        };
        match tanren_core::probe::plan(&space, ds.num_classes as u32, data, &optimizers, &limits) {
            Some(plan) => match crate::probe::run(&s, &ds, &plan).await {
                Probed::Ran { worker_id, report } => {
                    let note = if report.cut_short.is_empty() {
                        format!("probes ran on worker {worker_id} in {:.0} s", report.seconds)
                    } else {
                        format!(
                            "probes ran on worker {worker_id} in {:.0} s; cut short: {}",
                            report.seconds,
                            report.cut_short.join("; ")
                        )
                    };
                    (
                        Some(Measured::from_report(&report)),
                        ProbeSummary {
                            ran: true,
                            note,
                            worker_id: Some(worker_id),
                            seconds: Some(report.seconds),
                            report: serde_json::to_value(&report).ok(),
                        },
                    )
                }
                Probed::Skipped(why) => fallback(earlier, &why),
            },
            None => fallback(earlier, "no probe configuration fits these bounds"),
        }
    } else {
        fallback(earlier, "probes were not asked for")
    };

    // Probes are too short to see where accuracy levels off; earlier trials on the dataset may have.
    let measured = crate::estimate::with_plateau(&s, &ds, measured).await;
    let model_cuda = measured.as_ref().and_then(Measured::on_cuda).unwrap_or(cuda);
    let probes = crate::estimate::probe_measurements(measured.as_ref(), model_cuda, data);
    let model = crate::estimate::model_with(&s, model_cuda, probes, ds.id).await?;
    let advice = advisor::advise(&stats, data, measured.as_ref(), &model);
    let space = ImageSpace::from_bounds(&advice.bounds)?;
    let budget = tanren_api::Budget {
        trials: Some(advice.budget.trials),
        minutes: None,
    };
    let (estimate, warnings) =
        crate::estimate::assess_with(&s, &ds, &advice.bounds, &space, &budget, measured.as_ref()).await?;
    let answer = tanren_api::Advice {
        dataset_id: id,
        bounds: advice.bounds.clone(),
        suggestions: advice
            .suggestions
            .iter()
            .map(|x| tanren_api::SuggestedBound {
                param: x.param.clone(),
                bound: x.bound.clone(),
                reason: x.reason.clone(),
            })
            .collect(),
        budget: tanren_api::BudgetSuggestion {
            trials: advice.budget.trials,
            minutes: advice.budget.minutes,
            reason: advice.budget.reason.clone(),
        },
        probe,
        measured: json(&advice.measured),
        stats: json(&stats),
        estimate: json(&estimate),
        warnings: warnings
            .into_iter()
            .map(|w| tanren_api::BoundWarning {
                param: w.param,
                message: w.message,
            })
            .collect(),
    };
    let dir = s.files.dataset_dir(&ds.sha256);
    let path = dir.join(crate::estimate::ADVICE_FILE);
    let tmp = dir.join(format!(".{}.tmp", crate::estimate::ADVICE_FILE));
    let bytes = serde_json::to_vec_pretty(&answer).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Best effort: the advice is still answered when the dataset dir is not writable.
    if tokio::fs::write(&tmp, bytes).await.is_ok() {
        let _ = tokio::fs::rename(&tmp, &path).await;
    }
    Ok(Json(answer))
}

/// One of the answer's open objects.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The probe results and report an earlier advice stored for this dataset.
async fn stored(s: &S, ds: &tanren_store::DatasetRow) -> Option<(Measured, Option<serde_json::Value>)> {
    let path = s.files.dataset_dir(&ds.sha256).join(crate::estimate::ADVICE_FILE);
    let v: serde_json::Value = serde_json::from_slice(&tokio::fs::read(path).await.ok()?).ok()?;
    let m: Measured = serde_json::from_value(v["measured"].clone()).ok()?;
    let report = v["probe"]["report"].clone();
    (m != Measured::default()).then_some((m, (!report.is_null()).then_some(report)))
}

/// No probe now: earlier probes of this dataset if there are any, else the statistics alone.
fn fallback(
    earlier: Option<(Measured, Option<serde_json::Value>)>,
    why: &str,
) -> (Option<Measured>, ProbeSummary) {
    match earlier {
        Some((m, report)) => (
            Some(m),
            ProbeSummary {
                ran: false,
                note: format!("no probe ran now ({why}); the advice uses the dataset's statistics and the probes measured earlier"),
                worker_id: None,
                seconds: None,
                report,
            },
        ),
        None => (
            None,
            ProbeSummary {
                ran: false,
                note: format!("no probe ran ({why}); the advice comes from the dataset's statistics alone"),
                worker_id: None,
                seconds: None,
                report: None,
            },
        ),
    }
}
