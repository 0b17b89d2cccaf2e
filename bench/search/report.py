"""Prints the benchmark table from tanren_results.json and optuna_results.json.

Win/tie/loss rule (stated in the output too): two-sided Mann-Whitney U test on the 10 per-seed
best values of tanren-TPE vs Optuna-TPE (normal approximation with tie and continuity
correction); p < 0.05 is a win or a loss by the direction of the rank sums, otherwise a tie.
Also checks that tanren's best configurations score the same under problems.py's objectives,
i.e. that both sides really ran the same problem definitions.
"""

import json
import math
import statistics
import sys

from problems import PROBLEMS


def quartiles(xs):
    s = sorted(xs)
    def q(p):
        pos = p * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)
    return q(0.25), q(0.5), q(0.75)


def mann_whitney(a, b):
    """Returns (U_a, two-sided p). U_a small means a's values are smaller (better)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    i = 0
    tie_term = 0.0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2.0 + 1.0
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, g) in zip(ranks, pooled) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return u1, p


def fmt(v):
    return f"{v:.4g}"


def main():
    tr = json.load(open(sys.argv[1]))
    op = json.load(open(sys.argv[2]))
    funcs = {name: f for name, _, f in PROBLEMS}
    worst_mismatch = 0.0
    for name, entry in tr["results"].items():
        for params, value in zip(entry["tanren_tpe_params"], entry["tanren_tpe"]):
            py = funcs[name](params)
            worst_mismatch = max(worst_mismatch, abs(py - value) / max(1.0, abs(value)))
    print(f"Optuna {op['optuna_version']} TPESampler (defaults) vs tanren-search; {tr['n_trials']} trials x {tr['n_seeds']} seeds; all problems minimised.")
    print(f"Same-problem check: tanren's best configurations re-scored in Python differ by at most {worst_mismatch:.1e} (relative).")
    print()
    print("best value per seed: median [IQR q1..q3]")
    head = f"{'problem':<18} {'tanren-TPE':<32} {'tanren-random':<32} {'Optuna-TPE':<32} {'vs Optuna':<9} {'p':>6}"
    print(head)
    print("-" * len(head))
    tally = {"win": 0, "tie": 0, "loss": 0}
    for name, _, _ in PROBLEMS:
        t = tr["results"][name]["tanren_tpe"]
        r = tr["results"][name]["tanren_random"]
        o = op["results"][name]["optuna_tpe"]
        cells = []
        for xs in (t, r, o):
            q1, med, q3 = quartiles(xs)
            cells.append(f"{fmt(med)} [{fmt(q1)}..{fmt(q3)}]")
        u, p = mann_whitney(t, o)
        if p < 0.05:
            verdict = "win" if u < len(t) * len(o) / 2.0 else "loss"
        else:
            verdict = "tie"
        tally[verdict] += 1
        print(f"{name:<18} {cells[0]:<32} {cells[1]:<32} {cells[2]:<32} {verdict:<9} {p:>6.3f}")
    print()
    print(f"tanren-TPE vs Optuna-TPE: {tally['win']} wins, {tally['tie']} ties, {tally['loss']} losses "
          f"(no worse on {tally['win'] + tally['tie']}/{len(PROBLEMS)})")
    print("Rule: two-sided Mann-Whitney U on the per-seed best values (normal approximation, tie- and")
    print("continuity-corrected); p < 0.05 is a win/loss by rank-sum direction, otherwise a tie.")
    print()
    print("ask+tell latency, median ms per call with N completed trials in the study (TPE sampler)")
    print(f"{'problem':<14} {'N':>6} {'tanren':>10} {'Optuna':>10} {'speed-up':>9}")
    for name in tr["latency_ms"]:
        for n, ms in tr["latency_ms"][name].items():
            o = op["latency_ms"].get(name, {}).get(n)
            if o is None:
                print(f"{name:<14} {n:>6} {ms:>10.3f} {'-':>10} {'-':>9}")
            else:
                print(f"{name:<14} {n:>6} {ms:>10.3f} {o:>10.2f} {o / ms:>8.0f}x")
    if op.get("latency_note"):
        print(op["latency_note"])


if __name__ == "__main__":
    main()
