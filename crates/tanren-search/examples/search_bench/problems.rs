//! Benchmark problems, mirrored line for line in `bench/search/optuna_bench.py` (the report
//! re-evaluates tanren's best configurations in Python to prove the definitions agree).
//! All are minimised.

use std::f64::consts::{E, PI};
use tanren_search::{Condition, Distribution, ParamDef, ParamValue, Params, Space};

pub struct Problem {
    pub name: &'static str,
    pub space: Space,
    pub f: fn(&Params) -> f64,
}

fn float(name: &str, low: f64, high: f64, log: bool) -> ParamDef {
    ParamDef {
        name: name.into(),
        distribution: Distribution::Float { low, high, log },
        condition: None,
    }
}
fn int(name: &str, low: i64, high: i64, log: bool, step: Option<i64>) -> ParamDef {
    ParamDef {
        name: name.into(),
        distribution: Distribution::Int { low, high, log, step },
        condition: None,
    }
}
fn cat(name: &str, choices: &[&str]) -> ParamDef {
    let choices = choices.iter().map(|s| s.to_string()).collect();
    ParamDef {
        name: name.into(),
        distribution: Distribution::Categorical { choices },
        condition: None,
    }
}
fn when(mut d: ParamDef, parent: &str, values: &[&str], min: Option<i64>) -> ParamDef {
    let values = values.iter().map(|s| s.to_string()).collect();
    d.condition = Some(Condition {
        parent: parent.into(),
        values,
        min,
        max: None,
    });
    d
}
fn x(p: &Params, k: &str) -> f64 {
    p[k].as_f64().expect("numeric")
}
fn s<'a>(p: &'a Params, k: &str) -> &'a str {
    p[k].as_str().expect("categorical")
}
fn xs(p: &Params, d: usize) -> Vec<f64> {
    (0..d).map(|i| x(p, &format!("x{i}"))).collect()
}
fn box_space(d: usize, low: f64, high: f64) -> Space {
    Space::new(
        (0..d)
            .map(|i| float(&format!("x{i}"), low, high, false))
            .collect(),
    )
    .unwrap()
}

fn branin(p: &Params) -> f64 {
    let (x1, x2) = (x(p, "x0"), x(p, "x1"));
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn goldstein_price(p: &Params) -> f64 {
    let (a, b) = (x(p, "x0"), x(p, "x1"));
    let t1 =
        1.0 + (a + b + 1.0).powi(2) * (19.0 - 14.0 * a + 3.0 * a * a - 14.0 * b + 6.0 * a * b + 3.0 * b * b);
    let t2 = 30.0
        + (2.0 * a - 3.0 * b).powi(2)
            * (18.0 - 32.0 * a + 12.0 * a * a + 48.0 * b - 36.0 * a * b + 27.0 * b * b);
    t1 * t2
}

fn hartmann6(p: &Params) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    let v = xs(p, 6);
    -(0..4)
        .map(|i| {
            let inner: f64 = (0..6).map(|j| A[i][j] * (v[j] - 1e-4 * P[i][j]).powi(2)).sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum::<f64>()
}

fn rosenbrock(p: &Params) -> f64 {
    let v = xs(p, 4);
    (0..3)
        .map(|i| 100.0 * (v[i + 1] - v[i] * v[i]).powi(2) + (v[i] - 1.0).powi(2))
        .sum()
}

fn styblinski_tang(p: &Params) -> f64 {
    0.5 * xs(p, 4)
        .iter()
        .map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v)
        .sum::<f64>()
}

fn ackley_int(p: &Params) -> f64 {
    let v = xs(p, 5);
    let n = v.len() as f64;
    let sq = v.iter().map(|a| a * a).sum::<f64>() / n;
    let cs = v.iter().map(|a| (2.0 * PI * a).cos()).sum::<f64>() / n;
    -20.0 * (-0.2 * sq.sqrt()).exp() - cs.exp() + 20.0 + E
}

fn rastrigin(p: &Params) -> f64 {
    let v = xs(p, 4);
    10.0 * v.len() as f64 + v.iter().map(|a| a * a - 10.0 * (2.0 * PI * a).cos()).sum::<f64>()
}

fn levy(p: &Params) -> f64 {
    let w: Vec<f64> = xs(p, 4).iter().map(|a| 1.0 + (a - 1.0) / 4.0).collect();
    let d = w.len();
    let mut f = (PI * w[0]).sin().powi(2);
    for wi in &w[..d - 1] {
        f += (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2));
    }
    f + (w[d - 1] - 1.0).powi(2) * (1.0 + (2.0 * PI * w[d - 1]).sin().powi(2))
}

fn log_quadratic(p: &Params) -> f64 {
    (x(p, "lr").log10() + 2.5).powi(2)
        + 0.5 * (x(p, "wd").log10() + 4.2).powi(2)
        + 0.3 * (x(p, "batch").log2() - 6.5).powi(2)
}

fn cnn_a(p: &Params) -> f64 {
    let opt = s(p, "optimizer");
    let best_lr = match opt {
        "sgd" => -1.3,
        "adam" => -3.0,
        _ => -3.5,
    };
    let mut err = 0.08 + 0.04 * (x(p, "lr").log10() - best_lr).powi(2);
    err += match opt {
        "sgd" => 0.1 * (x(p, "momentum") - 0.9).powi(2),
        "adam" => 0.0,
        _ => 0.01,
    };
    let n = x(p, "n_blocks");
    let mut cap = 0.0;
    for i in 0..n as usize {
        cap += (x(p, &format!("ch_{i}")).log2() - (5.0 + i as f64)).powi(2);
    }
    err += 0.01 * cap / n + 0.03 * (n - 3.0).abs();
    err += 0.05 * (x(p, "dropout") - 0.3).powi(2);
    err + 0.0001 * ((x(p, "batch") - 64.0) / 16.0).powi(2)
}

fn cnn_b(p: &Params) -> f64 {
    let act = match s(p, "activation") {
        "relu" => 0.01,
        "gelu" => 0.0,
        "tanh" => 0.04,
        _ => 0.08,
    };
    let aug = s(p, "augment");
    let mut err = 0.1 + act + 0.01 * ((x(p, "kernel") - 5.0) / 2.0).powi(2);
    err += 0.02 * (x(p, "weight_decay").log10() + 4.0).powi(2);
    err += match aug {
        "none" => 0.05,
        "flip" => 0.02,
        _ => 0.0,
    };
    if aug != "none" {
        err += 0.2 * (x(p, "label_smoothing") - 0.1).powi(2);
    }
    let n = x(p, "n_blocks");
    let mut w = 0.0;
    for i in 0..n as usize {
        w += ((x(p, &format!("width_{i}")) - 64.0) / 16.0).powi(2);
    }
    err + 0.02 * (n - 2.0).abs() + 0.005 * w / n
}

pub fn all() -> Vec<Problem> {
    let mut v = vec![
        Problem {
            name: "branin",
            space: Space::new(vec![
                float("x0", -5.0, 10.0, false),
                float("x1", 0.0, 15.0, false),
            ])
            .unwrap(),
            f: branin,
        },
        Problem {
            name: "goldstein_price",
            space: box_space(2, -2.0, 2.0),
            f: goldstein_price,
        },
        Problem {
            name: "hartmann6",
            space: box_space(6, 0.0, 1.0),
            f: hartmann6,
        },
        Problem {
            name: "rosenbrock4",
            space: box_space(4, -2.048, 2.048),
            f: rosenbrock,
        },
        Problem {
            name: "styblinski_tang4",
            space: box_space(4, -5.0, 5.0),
            f: styblinski_tang,
        },
        Problem {
            name: "ackley5_int",
            space: Space::new(
                (0..5)
                    .map(|i| int(&format!("x{i}"), -32, 32, false, None))
                    .collect(),
            )
            .unwrap(),
            f: ackley_int,
        },
        Problem {
            name: "rastrigin4",
            space: box_space(4, -5.12, 5.12),
            f: rastrigin,
        },
        Problem {
            name: "levy4",
            space: box_space(4, -10.0, 10.0),
            f: levy,
        },
        Problem {
            name: "log_quadratic",
            space: Space::new(vec![
                float("lr", 1e-6, 1.0, true),
                float("wd", 1e-8, 1e-1, true),
                int("batch", 8, 1024, true, None),
            ])
            .unwrap(),
            f: log_quadratic,
        },
    ];
    let mut a = vec![
        cat("optimizer", &["sgd", "adam", "rmsprop"]),
        float("lr", 1e-5, 1.0, true),
        when(float("momentum", 0.0, 0.99, false), "optimizer", &["sgd"], None),
        int("n_blocks", 1, 4, false, None),
    ];
    for i in 0..4 {
        let ch = int(&format!("ch_{i}"), 8, 256, true, None);
        a.push(if i == 0 {
            ch
        } else {
            when(ch, "n_blocks", &[], Some(i + 1))
        });
    }
    a.push(float("dropout", 0.0, 0.7, false));
    a.push(int("batch", 16, 256, false, Some(16)));
    v.push(Problem {
        name: "cnn_a_mixed",
        space: Space::new(a).unwrap(),
        f: cnn_a,
    });
    let mut b = vec![
        cat("activation", &["relu", "gelu", "tanh", "sigmoid"]),
        int("kernel", 3, 7, false, Some(2)),
        float("weight_decay", 1e-6, 1e-2, true),
        cat("augment", &["none", "flip", "flip_crop"]),
        when(
            float("label_smoothing", 0.0, 0.3, false),
            "augment",
            &["flip", "flip_crop"],
            None,
        ),
        int("n_blocks", 1, 3, false, None),
    ];
    for i in 0..3 {
        let w = int(&format!("width_{i}"), 16, 128, false, Some(16));
        b.push(if i == 0 {
            w
        } else {
            when(w, "n_blocks", &[], Some(i + 1))
        });
    }
    v.push(Problem {
        name: "cnn_b_mixed",
        space: Space::new(b).unwrap(),
        f: cnn_b,
    });
    v
}

/// A value for JSON output.
pub fn json_params(p: &Params) -> serde_json::Value {
    serde_json::Value::Object(
        p.iter()
            .map(|(k, v)| {
                let j = match v {
                    ParamValue::Int(i) => serde_json::json!(i),
                    ParamValue::Float(f) => serde_json::json!(f),
                    ParamValue::Cat(s) => serde_json::json!(s),
                };
                (k.clone(), j)
            })
            .collect(),
    )
}
