"""Runs Optuna's default TPESampler on the problems in problems.py (the same definitions as
tanren's benchmark) and measures its ask+tell latency; writes JSON for report.py.

Usage: optuna_bench.py --trials 80 --seeds 10 --out optuna_results.json
"""

import argparse
import json
import statistics
import sys
import time
import warnings

import optuna

from problems import PROBLEMS, active

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore")


def suggest_all(trial, space):
    values = {}
    for p in space:
        if not active(p, values):
            continue
        if p["type"] == "float":
            values[p["name"]] = trial.suggest_float(p["name"], p["low"], p["high"], log=p["log"])
        elif p["type"] == "int":
            values[p["name"]] = trial.suggest_int(p["name"], p["low"], p["high"], step=p["step"] or 1, log=p["log"])
        else:
            values[p["name"]] = trial.suggest_categorical(p["name"], p["choices"])
    return values


def run(space, f, seed, n_trials):
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: f(suggest_all(t, space)), n_trials=n_trials)
    return study.best_value


def latency(space, f, n, reps):
    """Median ms of one ask+tell (with suggestions) after n completed random trials."""
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=12345))
    study.optimize(lambda t: f(suggest_all(t, space)), n_trials=n)
    study.sampler = optuna.samplers.TPESampler(seed=0)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        trial = study.ask()
        value = f(suggest_all(trial, space))
        study.tell(trial, value)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=80)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--latency-sizes", default="100,1000,10000")
    ap.add_argument("--out", default="optuna_results.json")
    args = ap.parse_args()
    results = {}
    for name, space, f in PROBLEMS:
        t0 = time.time()
        results[name] = {"optuna_tpe": [run(space, f, seed, args.trials) for seed in range(args.seeds)]}
        print(f"{name:<18} optuna_tpe     {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    lat = {}
    for name, space, f in PROBLEMS:
        if name not in ("hartmann6", "cnn_a_mixed"):
            continue
        lat[name] = {}
        for n in [int(s) for s in args.latency_sizes.split(",")]:
            t0 = time.time()
            lat[name][str(n)] = latency(space, f, n, 3 if n >= 10000 else 10)
            print(f"latency {name:<14} n={n:<6} {lat[name][str(n)]:.3f} ms ({time.time() - t0:.0f}s incl. setup)", file=sys.stderr, flush=True)
    doc = {"optuna_version": optuna.__version__, "n_trials": args.trials, "n_seeds": args.seeds, "results": results, "latency_ms": lat}
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
