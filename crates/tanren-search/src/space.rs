//! The search space: parameter definitions, conditional activation, values and validation.
//!
//! This is the one definition of a search space that REST, the database and the dashboard share,
//! so it is plain serde data with validation that names the offending parameter in every error.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How one parameter's values are distributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Distribution {
    Float {
        low: f64,
        high: f64,
        #[serde(default)]
        log: bool,
    },
    Int {
        low: i64,
        high: i64,
        #[serde(default)]
        log: bool,
        /// Values are `low, low + step, ...`; `high - low` must be a multiple of it.
        #[serde(default)]
        step: Option<i64>,
    },
    Categorical {
        choices: Vec<String>,
    },
}

/// One named parameter of the space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamDef {
    pub name: String,
    #[serde(flatten)]
    pub distribution: Distribution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// When a parameter is active. A conditional parameter is active only when its `parent` is active
/// and the parent's current value satisfies every constraint given here:
///
/// * `values`: the parent's value is one of these (categorical parent: the choice string; int
///   parent: the integer in decimal, e.g. `"3"`), e.g. `momentum` only when `optimizer = sgd`;
/// * `min` / `max` (int parent only): the parent's value is `>= min` / `<= max`, e.g. the third
///   block's `channels_2` only when `n_blocks >= 3`.
///
/// At least one constraint must be given. The parent must be defined earlier in the space (which
/// also rules out cycles) and may not be a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub parent: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

impl Condition {
    /// Whether the condition holds for the parent's value (activity of the parent is checked by
    /// the caller).
    pub fn holds(&self, parent_value: &ParamValue) -> bool {
        if !self.values.is_empty() {
            let rendered = match parent_value {
                ParamValue::Int(i) => i.to_string(),
                ParamValue::Cat(s) => s.clone(),
                ParamValue::Float(_) => return false,
            };
            if !self.values.contains(&rendered) {
                return false;
            }
        }
        if self.min.is_some() || self.max.is_some() {
            let Some(v) = parent_value.as_i64() else {
                return false;
            };
            if self.min.is_some_and(|m| v < m) || self.max.is_some_and(|m| v > m) {
                return false;
            }
        }
        true
    }
}

/// A parameter's value. Untagged so that JSON reads naturally: `3`, `0.01`, `"adam"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Cat(String),
}

impl ParamValue {
    /// The numeric value; ints convert.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(i) => Some(*i as f64),
            ParamValue::Float(f) => Some(*f),
            ParamValue::Cat(_) => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Cat(s) => Some(s),
            _ => None,
        }
    }
}

/// One configuration: active parameter name to value. Sorted so serialisation is canonical.
pub type Params = BTreeMap<String, ParamValue>;

/// A validated search space: parameters in definition order (parents before children).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ParamDef>", into = "Vec<ParamDef>")]
pub struct Space {
    params: Vec<ParamDef>,
}

/// A search-space or parameter-value problem, always naming the parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpaceError {
    #[error("parameter `{param}`: the name must be non-empty")]
    EmptyName { param: String },
    #[error("parameter `{param}`: defined more than once; names must be unique")]
    DuplicateName { param: String },
    #[error("parameter `{param}`: {what} {value} is not a finite number")]
    NotFinite {
        param: String,
        what: &'static str,
        value: f64,
    },
    #[error("parameter `{param}`: lower bound {low} is not below upper bound {high}")]
    BoundsOrder {
        param: String,
        low: String,
        high: String,
    },
    #[error("parameter `{param}`: log scale needs a lower bound above 0, got {low}")]
    LogNonPositive { param: String, low: String },
    #[error("parameter `{param}`: {reason}")]
    InvalidStep { param: String, reason: String },
    #[error("parameter `{param}`: a categorical parameter needs at least one choice")]
    EmptyChoices { param: String },
    #[error("parameter `{param}`: choice `{choice}` is listed more than once")]
    DuplicateChoice { param: String, choice: String },
    #[error("parameter `{param}`: condition refers to `{parent}`, which is not defined before it")]
    UnknownParent { param: String, parent: String },
    #[error("parameter `{param}`: invalid condition on `{parent}`: {reason}")]
    InvalidCondition {
        param: String,
        parent: String,
        reason: String,
    },
    #[error("parameter `{param}`: not part of the search space")]
    UnknownParam { param: String },
    #[error("parameter `{param}`: missing, but it is active for these values")]
    MissingParam { param: String },
    #[error("parameter `{param}`: given, but its condition is not met so it must be left out")]
    InactiveParam { param: String },
    #[error("parameter `{param}`: expected {expected}, got {got}")]
    WrongType {
        param: String,
        expected: &'static str,
        got: String,
    },
    #[error("parameter `{param}`: value {value} is {reason}")]
    OutOfRange {
        param: String,
        value: String,
        reason: String,
    },
}

impl SpaceError {
    /// The parameter the error is about.
    pub fn param(&self) -> Option<&str> {
        use SpaceError::*;
        match self {
            EmptyName { param }
            | DuplicateName { param }
            | NotFinite { param, .. }
            | BoundsOrder { param, .. }
            | LogNonPositive { param, .. }
            | InvalidStep { param, .. }
            | EmptyChoices { param }
            | DuplicateChoice { param, .. }
            | UnknownParent { param, .. }
            | InvalidCondition { param, .. }
            | UnknownParam { param }
            | MissingParam { param }
            | InactiveParam { param }
            | WrongType { param, .. }
            | OutOfRange { param, .. } => Some(param),
        }
    }
}

impl TryFrom<Vec<ParamDef>> for Space {
    type Error = SpaceError;
    fn try_from(params: Vec<ParamDef>) -> Result<Space, SpaceError> {
        Space::new(params)
    }
}

impl From<Space> for Vec<ParamDef> {
    fn from(space: Space) -> Vec<ParamDef> {
        space.params
    }
}

impl Space {
    pub fn new(params: Vec<ParamDef>) -> Result<Space, SpaceError> {
        for (i, def) in params.iter().enumerate() {
            let param = || def.name.clone();
            if def.name.is_empty() {
                return Err(SpaceError::EmptyName { param: param() });
            }
            if params[..i].iter().any(|p| p.name == def.name) {
                return Err(SpaceError::DuplicateName { param: param() });
            }
            validate_distribution(&def.name, &def.distribution)?;
            if let Some(cond) = &def.condition {
                let parent = params[..i]
                    .iter()
                    .find(|p| p.name == cond.parent)
                    .ok_or_else(|| SpaceError::UnknownParent {
                        param: param(),
                        parent: cond.parent.clone(),
                    })?;
                validate_condition(&def.name, cond, &parent.distribution)?;
            }
        }
        Ok(Space { params })
    }

    pub fn params(&self) -> &[ParamDef] {
        &self.params
    }

    pub fn get(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Whether `def` is active given the values chosen so far (parents come first, so a partially
    /// built configuration in definition order is enough).
    pub fn is_active(&self, def: &ParamDef, params: &Params) -> bool {
        match &def.condition {
            None => true,
            Some(cond) => params.get(&cond.parent).is_some_and(|v| cond.holds(v)),
        }
    }

    /// Checks a full configuration: every active parameter present and valid, nothing else.
    pub fn validate_params(&self, params: &Params) -> Result<(), SpaceError> {
        if let Some(unknown) = params.keys().find(|k| self.get(k).is_none()) {
            return Err(SpaceError::UnknownParam {
                param: unknown.clone(),
            });
        }
        for def in &self.params {
            let active = self.is_active(def, params);
            match (active, params.get(&def.name)) {
                (true, None) => {
                    return Err(SpaceError::MissingParam {
                        param: def.name.clone(),
                    })
                }
                (false, Some(_)) => {
                    return Err(SpaceError::InactiveParam {
                        param: def.name.clone(),
                    })
                }
                (true, Some(v)) => validate_value(&def.name, &def.distribution, v)?,
                (false, None) => {}
            }
        }
        Ok(())
    }

    /// The configuration as numbers in definition order, for the samplers' hot loops: floats and
    /// ints as themselves, categories as the choice's index, inactive parameters as NaN.
    pub(crate) fn numeric_row(&self, params: &Params) -> Vec<f64> {
        self.params
            .iter()
            .map(|def| match (params.get(&def.name), &def.distribution) {
                (None, _) => f64::NAN,
                (Some(ParamValue::Cat(s)), Distribution::Categorical { choices }) => {
                    choices.iter().position(|c| c == s).map_or(f64::NAN, |i| i as f64)
                }
                (Some(v), _) => v.as_f64().unwrap_or(f64::NAN),
            })
            .collect()
    }

    /// Converts int values given for float parameters into floats (JSON `1` for a float `lr`), so
    /// stored configurations are canonical. Other mismatches are left for validation to report.
    pub fn normalize_params(&self, params: &mut Params) {
        for def in &self.params {
            if let (Distribution::Float { .. }, Some(v)) = (&def.distribution, params.get_mut(&def.name)) {
                if let ParamValue::Int(i) = *v {
                    *v = ParamValue::Float(i as f64);
                }
            }
        }
    }

    /// Number of distinct configurations, counting conditional sub-spaces exactly; `None` when a
    /// float parameter makes the space continuous. Saturates at `u128::MAX`.
    pub fn grid_size(&self) -> Option<u128> {
        crate::grid::GridShape::new(self).map(|g| g.size())
    }
}

fn validate_distribution(name: &str, dist: &Distribution) -> Result<(), SpaceError> {
    let param = || name.to_string();
    match dist {
        Distribution::Float { low, high, log } => {
            for (what, value) in [("lower bound", *low), ("upper bound", *high)] {
                if !value.is_finite() {
                    return Err(SpaceError::NotFinite {
                        param: param(),
                        what,
                        value,
                    });
                }
            }
            if low >= high {
                return Err(SpaceError::BoundsOrder {
                    param: param(),
                    low: low.to_string(),
                    high: high.to_string(),
                });
            }
            if *log && *low <= 0.0 {
                return Err(SpaceError::LogNonPositive {
                    param: param(),
                    low: low.to_string(),
                });
            }
        }
        Distribution::Int { low, high, log, step } => {
            if low >= high {
                return Err(SpaceError::BoundsOrder {
                    param: param(),
                    low: low.to_string(),
                    high: high.to_string(),
                });
            }
            if *log && *low <= 0 {
                return Err(SpaceError::LogNonPositive {
                    param: param(),
                    low: low.to_string(),
                });
            }
            if let Some(step) = *step {
                let invalid = |reason: String| SpaceError::InvalidStep {
                    param: param(),
                    reason,
                };
                if step < 1 {
                    return Err(invalid(format!("step must be at least 1, got {step}")));
                }
                if *log && step != 1 {
                    return Err(invalid(format!(
                        "a log-scaled int cannot have step {step}; leave the step out or use 1"
                    )));
                }
                if (high - low) % step != 0 {
                    return Err(invalid(format!(
                        "range {low}..={high} is not a whole number of steps of {step}; \
                         set the upper bound to {}",
                        high - (high - low) % step
                    )));
                }
            }
        }
        Distribution::Categorical { choices } => {
            if choices.is_empty() {
                return Err(SpaceError::EmptyChoices { param: param() });
            }
            for (i, c) in choices.iter().enumerate() {
                if choices[..i].contains(c) {
                    return Err(SpaceError::DuplicateChoice {
                        param: param(),
                        choice: c.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn validate_condition(name: &str, cond: &Condition, parent: &Distribution) -> Result<(), SpaceError> {
    let invalid = |reason: String| SpaceError::InvalidCondition {
        param: name.to_string(),
        parent: cond.parent.clone(),
        reason,
    };
    if cond.values.is_empty() && cond.min.is_none() && cond.max.is_none() {
        return Err(invalid("give `values`, `min` or `max`".into()));
    }
    match parent {
        Distribution::Float { .. } => return Err(invalid("a float parameter cannot enable others".into())),
        Distribution::Categorical { choices } => {
            if cond.min.is_some() || cond.max.is_some() {
                return Err(invalid("`min`/`max` need an int parent".into()));
            }
            if let Some(v) = cond.values.iter().find(|v| !choices.contains(v)) {
                return Err(invalid(format!("`{v}` is not one of the parent's choices")));
            }
        }
        Distribution::Int { .. } => {
            for v in &cond.values {
                let ok = v
                    .parse::<i64>()
                    .is_ok_and(|i| validate_value("", parent, &ParamValue::Int(i)).is_ok());
                if !ok {
                    return Err(invalid(format!("`{v}` is not a value the parent can take")));
                }
            }
        }
    }
    Ok(())
}

/// Checks one value against its distribution (bounds, step grid, choice membership).
pub(crate) fn validate_value(name: &str, dist: &Distribution, value: &ParamValue) -> Result<(), SpaceError> {
    let param = || name.to_string();
    let got = || format!("{value:?}");
    let out_of_range = |reason: String| SpaceError::OutOfRange {
        param: param(),
        value: match value {
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::Cat(s) => format!("`{s}`"),
        },
        reason,
    };
    match dist {
        Distribution::Float { low, high, .. } => {
            let ParamValue::Float(v) = value else {
                return Err(SpaceError::WrongType {
                    param: param(),
                    expected: "a float",
                    got: got(),
                });
            };
            if !v.is_finite() {
                return Err(SpaceError::NotFinite {
                    param: param(),
                    what: "value",
                    value: *v,
                });
            }
            if v < low || v > high {
                return Err(out_of_range(format!("outside [{low}, {high}]")));
            }
        }
        Distribution::Int { low, high, step, .. } => {
            let ParamValue::Int(v) = value else {
                return Err(SpaceError::WrongType {
                    param: param(),
                    expected: "an integer",
                    got: got(),
                });
            };
            if v < low || v > high {
                return Err(out_of_range(format!("outside [{low}, {high}]")));
            }
            let step = step.unwrap_or(1);
            if (v - low) % step != 0 {
                return Err(out_of_range(format!(
                    "not on the grid {low}, {}, ...",
                    low + step
                )));
            }
        }
        Distribution::Categorical { choices } => {
            let ParamValue::Cat(v) = value else {
                return Err(SpaceError::WrongType {
                    param: param(),
                    expected: "one of the choices (a string)",
                    got: got(),
                });
            };
            if !choices.contains(v) {
                return Err(out_of_range(format!("not one of {choices:?}")));
            }
        }
    }
    Ok(())
}
