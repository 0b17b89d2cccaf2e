//! Study requests from the shell: `--set PARAM=...` bounds and `--space space.toml` files, both turned
//! into the JSON body of `POST /api/v1/studies` (the server validates and names what is wrong).
//!
//! A space file:
//! ```toml
//! dataset = 1            # optional here, or --dataset
//! trials = 30            # budget; `minutes = 10` too
//! sampler = "tpe"        # or "random", "nsga2"
//! objectives = ["accuracy", "latency"]   # optional: trade accuracy against ms per image
//! max_latency_ms = 2.0   # optional: slower models never count
//! pruner = "asha"        # or "none", "median", "hyperband"
//! [bounds]
//! learning_rate = { low = 1e-4, high = 1e-2 }
//! optimizer = ["adam", "sgd"]
//! architecture = ["cnn", "resnet"]   # the wider space: see GET /api/v1/search-space
//! horizontal_flip = [false, true]
//! epochs = 3             # fixed
//! image_size = "32..64"  # the --set syntax works as well
//! ```

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// `lr=1e-4..1e-2` -> range; `optimizer=adam,sgd` -> choices; `epochs=3` -> fixed (low == high).
pub fn parse_bound(s: &str) -> Result<(String, Value)> {
    let (name, v) = s
        .split_once('=')
        .with_context(|| format!("--set {s}: expected PARAM=VALUE"))?;
    Ok((
        name.trim().to_string(),
        bound_text(v).with_context(|| format!("--set {s}"))?,
    ))
}

fn bound_text(v: &str) -> Result<Value> {
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .with_context(|| format!("`{x}` is not a number"))
    };
    Ok(if let Some((lo, hi)) = v.split_once("..") {
        json!({"low": num(lo)?, "high": num(hi)?})
    } else if let Ok(x) = v.trim().parse::<f64>() {
        json!({"low": x, "high": x})
    } else {
        json!({"choices": v.split(',').map(|c| c.trim()).collect::<Vec<_>>()})
    })
}

fn bound_value(name: &str, v: &Value) -> Result<Value> {
    Ok(match v {
        Value::Number(n) => json!({"low": n, "high": n}),
        Value::String(s) => bound_text(s).with_context(|| format!("bounds.{name}"))?,
        // Flags are categorical on the server (`horizontal_flip = [false, true]` or `= true`).
        Value::Array(a) => json!({ "choices": a.iter().map(|c| match c {
            Value::Bool(b) => Value::String(b.to_string()),
            other => other.clone(),
        }).collect::<Vec<_>>() }),
        Value::Bool(b) => json!({ "choices": [b.to_string()] }),
        Value::Object(_) => v.clone(),
        Value::Null => {
            bail!("bounds.{name}: expected a number, \"LOW..HIGH\", a list of choices or {{low, high}}")
        }
    })
}

/// What a space file holds, as the fields of the request body.
pub struct SpaceFile {
    pub dataset: Option<i64>,
    pub body: Map<String, Value>,
    pub bounds: Map<String, Value>,
}

pub fn parse_space_file(text: &str, path: &str) -> Result<SpaceFile> {
    let v: Value = toml::from_str(text).with_context(|| format!("{path} is not valid TOML"))?;
    let Value::Object(top) = v else {
        bail!("{path}: expected a table")
    };
    let mut out = SpaceFile {
        dataset: None,
        body: Map::new(),
        bounds: Map::new(),
    };
    let mut budget = Map::new();
    for (k, v) in top {
        match k.as_str() {
            "dataset" | "dataset_id" => {
                out.dataset = Some(v.as_i64().with_context(|| format!("{path}: dataset must be an id"))?)
            }
            "trials" | "minutes" => {
                budget.insert(k, v);
            }
            "name" | "sampler" | "pruner" | "seed" | "baseline" | "objectives" | "max_latency_ms" => {
                out.body.insert(k, v);
            }
            "bounds" => {
                let Value::Object(b) = v else { bail!("{path}: [bounds] must be a table") };
                for (name, b) in b {
                    let parsed = bound_value(&name, &b).with_context(|| path.to_string())?;
                    out.bounds.insert(name, parsed);
                }
            }
            other => bail!("{path}: unknown key `{other}` (known: dataset, name, trials, minutes, sampler, pruner, seed, baseline, objectives, max_latency_ms, [bounds])"),
        }
    }
    if !budget.is_empty() {
        out.body.insert("budget".into(), Value::Object(budget));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_file_becomes_the_request_fields() {
        let f = parse_space_file(
            "dataset = 2\ntrials = 5\nsampler = \"random\"\n[bounds]\nlearning_rate = { low = 1e-4, high = 1e-2 }\noptimizer = [\"adam\", \"sgd\"]\nepochs = 3\nimage_size = \"16..32\"\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(f.dataset, Some(2));
        assert_eq!(f.body["budget"], json!({"trials": 5}));
        assert_eq!(f.body["sampler"], "random");
        assert_eq!(f.bounds["optimizer"], json!({"choices": ["adam", "sgd"]}));
        assert_eq!(f.bounds["epochs"], json!({"low": 3, "high": 3}));
        assert_eq!(f.bounds["image_size"], json!({"low": 16.0, "high": 32.0}));
        assert!(parse_space_file("bogus = 1", "s.toml").is_err());
        let f = parse_space_file(
            "[bounds]\narchitecture = [\"cnn\", \"resnet\"]\nhorizontal_flip = [false, true]\nbatch_norm = true\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(f.bounds["architecture"], json!({"choices": ["cnn", "resnet"]}));
        assert_eq!(f.bounds["horizontal_flip"], json!({"choices": ["false", "true"]}));
        assert_eq!(f.bounds["batch_norm"], json!({"choices": ["true"]}));
        let (_, b) = parse_bound("horizontal_flip=false,true").unwrap();
        assert_eq!(b, json!({"choices": ["false", "true"]}));
    }
}
