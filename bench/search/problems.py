"""Benchmark problems, mirrored line for line from
crates/tanren-search/examples/search_bench/problems.rs (report.py re-evaluates tanren's best
configurations here to prove the two definitions agree). All are minimised.

Each problem is (name, space, f): space is a list of parameter dicts in the same JSON shape as
tanren's search space; f takes a dict of active parameter values.
"""

import math

PI, E = math.pi, math.e


def flt(name, low, high, log=False, cond=None):
    return dict(name=name, type="float", low=low, high=high, log=log, condition=cond)


def int_(name, low, high, log=False, step=None, cond=None):
    return dict(name=name, type="int", low=low, high=high, log=log, step=step, condition=cond)


def cat(name, choices, cond=None):
    return dict(name=name, type="categorical", choices=choices, condition=cond)


def when(parent, values=(), min=None):
    return dict(parent=parent, values=list(values), min=min)


def box(d, low, high):
    return [flt(f"x{i}", low, high) for i in range(d)]


def xs(p, d):
    return [p[f"x{i}"] for i in range(d)]


def branin(p):
    x1, x2 = p["x0"], p["x1"]
    b = 5.1 / (4.0 * PI * PI)
    c = 5.0 / PI
    t = 1.0 / (8.0 * PI)
    return (x2 - b * x1 * x1 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


def goldstein_price(p):
    a, b = p["x0"], p["x1"]
    t1 = 1.0 + (a + b + 1.0) ** 2 * (19.0 - 14.0 * a + 3.0 * a * a - 14.0 * b + 6.0 * a * b + 3.0 * b * b)
    t2 = 30.0 + (2.0 * a - 3.0 * b) ** 2 * (18.0 - 32.0 * a + 12.0 * a * a + 48.0 * b - 36.0 * a * b + 27.0 * b * b)
    return t1 * t2


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
]
P = [
    [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
    [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
    [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
    [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
]


def hartmann6(p):
    v = xs(p, 6)
    total = 0.0
    for i in range(4):
        inner = sum(A[i][j] * (v[j] - 1e-4 * P[i][j]) ** 2 for j in range(6))
        total += ALPHA[i] * math.exp(-inner)
    return -total


def rosenbrock(p):
    v = xs(p, 4)
    return sum(100.0 * (v[i + 1] - v[i] * v[i]) ** 2 + (v[i] - 1.0) ** 2 for i in range(3))


def styblinski_tang(p):
    return 0.5 * sum(v**4 - 16.0 * v * v + 5.0 * v for v in xs(p, 4))


def ackley_int(p):
    v = [float(a) for a in xs(p, 5)]
    n = len(v)
    sq = sum(a * a for a in v) / n
    cs = sum(math.cos(2.0 * PI * a) for a in v) / n
    return -20.0 * math.exp(-0.2 * math.sqrt(sq)) - math.exp(cs) + 20.0 + E


def rastrigin(p):
    v = xs(p, 4)
    return 10.0 * len(v) + sum(a * a - 10.0 * math.cos(2.0 * PI * a) for a in v)


def levy(p):
    w = [1.0 + (a - 1.0) / 4.0 for a in xs(p, 4)]
    d = len(w)
    f = math.sin(PI * w[0]) ** 2
    for wi in w[: d - 1]:
        f += (wi - 1.0) ** 2 * (1.0 + 10.0 * math.sin(PI * wi + 1.0) ** 2)
    return f + (w[d - 1] - 1.0) ** 2 * (1.0 + math.sin(2.0 * PI * w[d - 1]) ** 2)


def log_quadratic(p):
    return (
        (math.log10(p["lr"]) + 2.5) ** 2
        + 0.5 * (math.log10(p["wd"]) + 4.2) ** 2
        + 0.3 * (math.log2(p["batch"]) - 6.5) ** 2
    )


def cnn_a(p):
    opt = p["optimizer"]
    best_lr = {"sgd": -1.3, "adam": -3.0}.get(opt, -3.5)
    err = 0.08 + 0.04 * (math.log10(p["lr"]) - best_lr) ** 2
    err += {"sgd": 0.1 * (p["momentum"] - 0.9) ** 2 if opt == "sgd" else 0.0, "adam": 0.0}.get(opt, 0.01)
    n = float(p["n_blocks"])
    cap = sum((math.log2(p[f"ch_{i}"]) - (5.0 + i)) ** 2 for i in range(int(n)))
    err += 0.01 * cap / n + 0.03 * abs(n - 3.0)
    err += 0.05 * (p["dropout"] - 0.3) ** 2
    return err + 0.0001 * ((p["batch"] - 64.0) / 16.0) ** 2


def cnn_b(p):
    act = {"relu": 0.01, "gelu": 0.0, "tanh": 0.04}.get(p["activation"], 0.08)
    aug = p["augment"]
    err = 0.1 + act + 0.01 * ((p["kernel"] - 5.0) / 2.0) ** 2
    err += 0.02 * (math.log10(p["weight_decay"]) + 4.0) ** 2
    err += {"none": 0.05, "flip": 0.02}.get(aug, 0.0)
    if aug != "none":
        err += 0.2 * (p["label_smoothing"] - 0.1) ** 2
    n = float(p["n_blocks"])
    w = sum(((p[f"width_{i}"] - 64.0) / 16.0) ** 2 for i in range(int(n)))
    return err + 0.02 * abs(n - 2.0) + 0.005 * w / n


def _cnn_a_space():
    s = [
        cat("optimizer", ["sgd", "adam", "rmsprop"]),
        flt("lr", 1e-5, 1.0, log=True),
        flt("momentum", 0.0, 0.99, cond=when("optimizer", ["sgd"])),
        int_("n_blocks", 1, 4),
    ]
    for i in range(4):
        s.append(int_(f"ch_{i}", 8, 256, log=True, cond=None if i == 0 else when("n_blocks", min=i + 1)))
    s.append(flt("dropout", 0.0, 0.7))
    s.append(int_("batch", 16, 256, step=16))
    return s


def _cnn_b_space():
    s = [
        cat("activation", ["relu", "gelu", "tanh", "sigmoid"]),
        int_("kernel", 3, 7, step=2),
        flt("weight_decay", 1e-6, 1e-2, log=True),
        cat("augment", ["none", "flip", "flip_crop"]),
        flt("label_smoothing", 0.0, 0.3, cond=when("augment", ["flip", "flip_crop"])),
        int_("n_blocks", 1, 3),
    ]
    for i in range(3):
        s.append(int_(f"width_{i}", 16, 128, step=16, cond=None if i == 0 else when("n_blocks", min=i + 1)))
    return s


PROBLEMS = [
    ("branin", [flt("x0", -5.0, 10.0), flt("x1", 0.0, 15.0)], branin),
    ("goldstein_price", box(2, -2.0, 2.0), goldstein_price),
    ("hartmann6", box(6, 0.0, 1.0), hartmann6),
    ("rosenbrock4", box(4, -2.048, 2.048), rosenbrock),
    ("styblinski_tang4", box(4, -5.0, 5.0), styblinski_tang),
    ("ackley5_int", [int_(f"x{i}", -32, 32) for i in range(5)], ackley_int),
    ("rastrigin4", box(4, -5.12, 5.12), rastrigin),
    ("levy4", box(4, -10.0, 10.0), levy),
    ("log_quadratic", [flt("lr", 1e-6, 1.0, log=True), flt("wd", 1e-8, 1e-1, log=True), int_("batch", 8, 1024, log=True)], log_quadratic),
    ("cnn_a_mixed", _cnn_a_space(), cnn_a),
    ("cnn_b_mixed", _cnn_b_space(), cnn_b),
]


def active(param, values):
    """Same rule as tanren's Condition: parent active and its value matches every constraint."""
    c = param.get("condition")
    if c is None:
        return True
    if c["parent"] not in values:
        return False
    v = values[c["parent"]]
    if c.get("values") and str(v) not in c["values"]:
        return False
    if c.get("min") is not None and v < c["min"]:
        return False
    return True
