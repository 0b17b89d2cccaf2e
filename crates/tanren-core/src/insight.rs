//! What mattered, in plain words: sentences from a study's parameter importances
//! (`tanren_search::importance`) and its best trials, and the bounds of a follow-up study narrowed
//! around those trials ("narrow the bounds and run again"). Pure: REST, the dashboard and the CLI
//! all show what this returns.

use crate::params::{bound_of, catalogue, param_info};
use crate::space::{Bound, Bounds, ImageSpace};
use serde::{Deserialize, Serialize};
use tanren_search::importance::{best_k, top_count, ImportanceReport, Observation};
use tanren_search::{Direction, Distribution, ParamValue};

/// At least this share: "decided most of the result".
pub const MOST: f64 = 0.5;
/// At least this share: worth a sentence with its range, and narrowed in a follow-up study.
pub const NOTABLE: f64 = 0.15;
/// Below this share: "barely mattered".
pub const NEGLIGIBLE: f64 = 0.05;

/// One parameter's importance with what a person needs to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamInsight {
    pub param: String,
    pub label: String,
    pub importance: f64,
    /// What the best trials used: `{low, high}` or `{choices}` (the bounds' shape); null when no
    /// best trial had the parameter (a branch they did not take).
    pub best_range: Option<Bound>,
    /// The same in words: "2e-3 to 6e-3", "64", "adam or sgd".
    pub best_range_text: Option<String>,
    /// Important enough to narrow ([`NOTABLE`] or more).
    pub notable: bool,
    /// The follow-up study's bound differs from this study's (a notable parameter whose best
    /// trials spread over its whole range keeps it).
    pub narrowed: bool,
}

/// The whole explanation of a study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insight {
    /// How many complete trials count as "the best trials" (a fifth, at least 3).
    pub best_trials: usize,
    pub importances: Vec<ParamInsight>,
    pub sentences: Vec<String>,
    /// Bounds for a follow-up study (the shape of the create request's `bounds`).
    pub narrowed: Bounds,
}

/// A parameter's human name; the name itself for one the catalogue does not know.
pub fn label(param: &str) -> String {
    param_info(param).map_or_else(|| param.to_string(), |p| p.label.to_string())
}

/// Explains `report` (importances over `space.space`) with the best of `observations`.
pub fn explain(
    space: &ImageSpace,
    report: &ImportanceReport,
    observations: &[Observation],
    direction: Direction,
) -> Insight {
    let best: Vec<&Observation> = best_k(observations, direction, top_count(observations.len()))
        .into_iter()
        .map(|i| &observations[i])
        .collect();
    let mut importances: Vec<ParamInsight> = report
        .importances
        .iter()
        .map(|p| {
            let dist = space.space.get(&p.param).map(|d| &d.distribution);
            let best_range = dist.and_then(|d| best_range(&p.param, d, &best));
            ParamInsight {
                param: p.param.clone(),
                label: label(&p.param),
                importance: p.importance,
                best_range_text: best_range
                    .as_ref()
                    .zip(dist)
                    .map(|(b, d)| range_text(&p.param, d, b, &best)),
                best_range,
                notable: p.importance >= NOTABLE,
                narrowed: false,
            }
        })
        .collect();
    let narrowed = narrow(space, &importances);
    let before = current_bounds(space);
    for p in &mut importances {
        p.narrowed = narrowed.get(&p.param) != before.get(&p.param);
    }
    Insight {
        best_trials: best.len(),
        sentences: sentences(&importances),
        narrowed,
        importances,
    }
}

/// The range (numbers) or the choices (categories, in the bounds' order) the best trials used.
fn best_range(param: &str, d: &Distribution, best: &[&Observation]) -> Option<Bound> {
    let values = best.iter().filter_map(|o| o.params.get(param));
    match d {
        Distribution::Categorical { choices } => {
            let used: Vec<&str> = values.filter_map(ParamValue::as_str).collect();
            let choices: Vec<String> = choices
                .iter()
                .filter(|c| used.contains(&c.as_str()))
                .cloned()
                .collect();
            (!choices.is_empty()).then_some(Bound::Choices { choices })
        }
        _ => {
            let xs: Vec<f64> = values
                .filter_map(ParamValue::as_f64)
                .filter(|x| x.is_finite())
                .collect();
            let low = xs.iter().copied().reduce(f64::min)?;
            let high = xs.iter().copied().reduce(f64::max)?;
            Some(Bound::Range { low, high })
        }
    }
}

/// A number as a person would write it for this parameter: ints as ints, small values on a log
/// scale as `2e-3` / `2.5e-3`, the rest with at most two decimals.
pub fn format_value(d: &Distribution, x: f64) -> String {
    match d {
        Distribution::Int { .. } => format!("{}", x.round() as i64),
        _ if x != 0.0 && x.abs() < 0.01 => {
            let s = format!("{x:.1e}");
            // 2.0e-3 -> 2e-3
            s.replace(".0e", "e")
        }
        _ => {
            let s = format!("{x:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            s.to_string()
        }
    }
}

fn range_text(param: &str, d: &Distribution, b: &Bound, best: &[&Observation]) -> String {
    match b {
        Bound::Range { low, high } => {
            let (l, h) = (format_value(d, *low), format_value(d, *high));
            if l == h {
                l
            } else {
                format!("{l} to {h}")
            }
        }
        Bound::Choices { choices } => {
            // Most used first; "adam" alone, or "adam (4) or sgd (1)".
            let count = |c: &str| {
                best.iter()
                    .filter(|o| o.params.get(param).and_then(ParamValue::as_str) == Some(c))
                    .count()
            };
            let mut cs: Vec<(&String, usize)> = choices.iter().map(|c| (c, count(c))).collect();
            cs.sort_by_key(|c| std::cmp::Reverse(c.1));
            if let [(c, _)] = cs[..] {
                return c.clone();
            }
            let parts: Vec<String> = cs.iter().map(|(c, n)| format!("{c} ({n})")).collect();
            join(&parts, "or")
        }
    }
}

fn join(parts: &[String], word: &str) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {word} {last}", rest.join(", ")),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// One sentence per notable parameter, most important first, then one for the negligible ones:
/// "Learning rate decided most of the result (62%); the best trials used 2e-3 to 6e-3."
pub fn sentences(importances: &[ParamInsight]) -> Vec<String> {
    let mut out = Vec::new();
    let mut barely = Vec::new();
    for (i, p) in importances.iter().enumerate() {
        let pct = (100.0 * p.importance).round();
        let used = |s: String| match (&p.best_range_text, &p.best_range) {
            (Some(t), Some(Bound::Range { low, high })) if low == high => {
                format!("{s}; the best trials all used {t}.")
            }
            (Some(t), Some(Bound::Choices { choices })) if choices.len() == 1 => {
                format!("{s}; the best trials all used {t}.")
            }
            (Some(t), _) => format!("{s}; the best trials used {t}."),
            (None, _) => format!("{s}; none of the best trials used it."),
        };
        let label = capitalise(&p.label);
        if i == 0 && p.importance >= MOST {
            out.push(used(format!("{label} decided most of the result ({pct}%)")));
        } else if i == 0 && p.importance >= NOTABLE {
            out.push(used(format!("{label} mattered most ({pct}%)")));
        } else if p.importance >= NOTABLE {
            out.push(used(format!("{label} mattered too ({pct}%)")));
        } else if p.importance >= NEGLIGIBLE {
            out.push(format!("{label} mattered a little ({pct}%)."));
        } else {
            barely.push(p.label.clone());
        }
    }
    if !barely.is_empty() {
        out.push(format!("{} barely mattered.", capitalise(&join(&barely, "and"))));
    }
    out
}

/// The bounds a study with `space` was created with, as the create request writes them: searched
/// parameters as their range or choices, pinned ones as one value; the rest are left out (their
/// default is the seed's behaviour or they are inactive).
pub fn current_bounds(space: &ImageSpace) -> Bounds {
    let mut b = Bounds::new();
    for info in catalogue() {
        if let Some(def) = space.space.get(info.name) {
            b.insert(info.name.into(), bound_of(&def.distribution));
        } else if let Some(v) = space.fixed.get(info.name) {
            let bound = match v {
                ParamValue::Cat(c) => Bound::Choices {
                    choices: vec![c.clone()],
                },
                _ => {
                    let x = v.as_f64().unwrap_or_default();
                    Bound::Range { low: x, high: x }
                }
            };
            b.insert(info.name.into(), bound);
        }
    }
    b
}

/// "Narrow the bounds and run again": the study's bounds with every notable parameter narrowed to
/// what the best trials used, widened a little (a quarter of that range, at least 5% of the old
/// one, on the parameter's log or linear scale), rounded outward and clipped to the old bounds;
/// categories keep the choices the best trials used. Parameters that did not matter keep their
/// bounds. The result always passes `ImageSpace::from_bounds`: a narrowing that makes another
/// parameter inactive (optimizer narrowed to adam: momentum) drops that parameter's bound, and a
/// narrowing the validation refuses is undone.
pub fn narrow(space: &ImageSpace, importances: &[ParamInsight]) -> Bounds {
    let original = current_bounds(space);
    let mut b = original.clone();
    for p in importances.iter().filter(|p| p.notable) {
        let (Some(def), Some(best)) = (space.space.get(&p.param), &p.best_range) else {
            continue;
        };
        if let Some(n) = narrowed(&def.distribution, best) {
            b.insert(p.param.clone(), n);
        }
    }
    // Each refusal names its parameter: undo that narrowing, or drop a bound left inactive.
    for _ in 0..=2 * catalogue().len() {
        match ImageSpace::from_bounds(&b) {
            Ok(_) => return b,
            Err(e) => match original.get(&e.param) {
                Some(o) if b.get(&e.param) != Some(o) => {
                    b.insert(e.param.clone(), o.clone());
                }
                _ => {
                    if b.remove(&e.param).is_none() {
                        break;
                    }
                }
            },
        }
    }
    original
}

fn narrowed(d: &Distribution, best: &Bound) -> Option<Bound> {
    match (d, best) {
        (Distribution::Categorical { .. }, Bound::Choices { .. }) => Some(best.clone()),
        (Distribution::Float { low, high, log }, Bound::Range { low: l, high: h }) => {
            let (nl, nh) = widen(*low, *high, *l, *h, *log);
            let (nl, nh) = (round_sig(nl, false).max(*low), round_sig(nh, true).min(*high));
            Some(Bound::Range { low: nl, high: nh })
        }
        (Distribution::Int { low, high, log, step }, Bound::Range { low: l, high: h }) => {
            let (wl, wh) = widen(*low as f64, *high as f64, *l, *h, *log);
            let step = step.unwrap_or(1).max(1);
            // Nearest whole numbers that still hold what the best trials used, then outward onto
            // the grid low, low + step, ...
            let (wl, wh) = (wl.round().min(l.floor()) as i64, wh.round().max(h.ceil()) as i64);
            let snap_down = |x: i64| low + (x - low).max(0) / step * step;
            let snap_up = |x: i64| low + ((x - low).max(0) + step - 1) / step * step;
            let (mut nl, mut nh) = (snap_down(wl).max(*low), snap_up(wh).min(*high));
            // One value would pin it; keep a neighbour so the next study can still move.
            if nl == nh {
                if nh + step <= *high {
                    nh += step;
                } else if nl - step >= *low {
                    nl -= step;
                }
            }
            Some(Bound::Range {
                low: nl as f64,
                high: nh as f64,
            })
        }
        _ => None,
    }
}

/// `[l, h]` widened by a quarter of its width (at least 5% of `[low, high]`) each side on the
/// parameter's scale, clipped to `[low, high]`.
fn widen(low: f64, high: f64, l: f64, h: f64, log: bool) -> (f64, f64) {
    let to = |x: f64| if log { x.ln() } else { x };
    let from = |x: f64| if log { x.exp() } else { x };
    let (a, b) = (to(low), to(high));
    let (x, y) = (to(l.clamp(low, high)), to(h.clamp(low, high)));
    let margin = (0.25 * (y - x)).max(0.05 * (b - a));
    (
        from((x - margin).max(a)).max(low),
        from((y + margin).min(b)).min(high),
    )
}

/// `x` rounded to two significant digits, up or down.
fn round_sig(x: f64, up: bool) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(x.abs().log10().floor() as i32 - 1);
    let r = if up {
        (x / scale).ceil()
    } else {
        (x / scale).floor()
    } * scale;
    // Undo float noise such as 0.0021000000000000003.
    format!("{r:.12e}").parse().unwrap_or(r)
}

#[cfg(test)]
#[path = "insight_tests.rs"]
mod tests;
