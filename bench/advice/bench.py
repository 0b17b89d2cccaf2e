"""Drives the advice bench through the REST API (stdlib only). For each dataset: ask for advice, then
run the same budget and seed with (a) advised bounds, (b) the defaults, (d) expert bounds written
down before running (each dataset its own seed, `--seed` plus its position: one seed everywhere made
every study draw the same random sequence, so the ETA's calibration measured one sequence nine times); (c) absurd bounds are only estimated (POST /studies/estimate), since running
500 epochs of 512 px images is exactly the waste the warnings are for. Polls each study's progress to
measure the ETA's calibration; writes every trial (config, times) for the time-model check.

    python3 bench.py --url URL --out DIR --trials 5 --minutes 2 NAME=ZIP ...
"""

import argparse
import json
import os
import time
import urllib.error
import urllib.request
import uuid

# (d) Expert bounds, written before any run: native resolution or a little above, small CNNs, Adam
# around 1e-3, a handful of epochs.
OUT = "."
EXPERT = {
    "mnist": {"image_size": {"low": 28, "high": 32}, "learning_rate": {"low": 5e-4, "high": 5e-3},
              "batch_size": {"low": 16, "high": 64}, "epochs": {"low": 2, "high": 5},
              "conv_blocks": {"low": 1, "high": 2}, "channels": {"low": 16, "high": 32},
              "optimizer": {"choices": ["adam"]}},
    "shapes": {"image_size": {"low": 32, "high": 32}, "learning_rate": {"low": 5e-4, "high": 5e-3},
               "batch_size": {"low": 16, "high": 32}, "epochs": {"low": 3, "high": 8},
               "conv_blocks": {"low": 2, "high": 3}, "channels": {"low": 16, "high": 32},
               "optimizer": {"choices": ["adam"]}},
    "bars": {"image_size": {"low": 12, "high": 16}, "learning_rate": {"low": 1e-3, "high": 1e-2},
             "batch_size": {"low": 16, "high": 32}, "epochs": {"low": 5, "high": 15},
             "conv_blocks": {"low": 1, "high": 2}, "channels": {"low": 8, "high": 32},
             "optimizer": {"choices": ["adam"]}},
}
# (c) What a beginner might type.
ABSURD = {"learning_rate": {"low": 1e-7, "high": 5.0}, "epochs": {"low": 1, "high": 500},
          "image_size": {"low": 256, "high": 512}, "dropout": {"low": 0.0, "high": 0.9}}
ABSURD_BATCH = {"batch_size": {"low": 1, "high": 4096}}


def call(url, method="GET", body=None, headers=None):
    h = dict(headers or {})
    h["Authorization"] = f"Bearer {os.environ['TANREN_TOKEN']}"
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h["content-type"] = "application/json"
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def upload(base, path):
    b = uuid.uuid4().hex
    data = open(path, "rb").read()
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.zip\"\r\n"
            f"Content-Type: application/zip\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return call(f"{base}/api/v1/datasets", "POST", body, {"content-type": f"multipart/form-data; boundary={b}"})[1]


def run_study(base, ds, bounds, trials, minutes, seed):
    spec = {"dataset_id": ds, "bounds": bounds, "budget": {"trials": trials, "minutes": minutes},
            "sampler": "tpe", "seed": seed, "baseline": False}
    st, s = call(f"{base}/api/v1/studies", "POST", spec)
    assert st == 201, s
    sid, t0, points = s["id"], time.time(), []
    while True:
        st, s = call(f"{base}/api/v1/studies/{sid}")
        p = s["progress"]
        if s["state"] != "running":
            break
        if p.get("eta_range_seconds") and p["done"] < (p["total"] or 0):
            points.append((time.time(), p["eta_seconds"], p["eta_range_seconds"]))
        time.sleep(2)
    # The study's own end, not when this poll noticed it.
    end = (s.get("finished_at") or time.time() * 1000) / 1000.0
    _, tl = call(f"{base}/api/v1/studies/{sid}/trials")
    full = [call(f"{base}/api/v1/trials/{t['id']}")[1] for t in tl["trials"]]
    cover = [lo <= end - t <= hi for t, _, (lo, hi) in points]
    over = sum(end - t < lo for t, _, (lo, _) in points)
    json.dump({"points": points, "end": end}, open(f"{OUT}/eta-{sid}.json", "w"))
    return {"id": sid, "created": s["created_at"] / 1000.0, "end": end, "warnings": s.get("warnings", []),
            "estimate": s.get("estimate"), "trials": full, "eta_points": len(points),
            "eta_covered": sum(cover), "eta_too_high": over}


def time_to(study, target):
    """Seconds from the study's start until a complete trial reached `target` test accuracy."""
    done = sorted((t for t in study["trials"] if t.get("test_accuracy") is not None), key=lambda t: t["finished_at"])
    for t in done:
        if t["test_accuracy"] >= target:
            return t["finished_at"] / 1000.0 - study["created"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--probe-seconds", type=float, default=30)
    ap.add_argument("datasets", nargs="+")
    a = ap.parse_args()
    global OUT
    OUT = a.out
    base = a.url.rstrip("/")
    results = {}
    for k, item in enumerate(a.datasets):
        name, path = item.split("=", 1)
        seed = a.seed + k
        ds = upload(base, path)
        t0 = time.time()
        st, advice = call(f"{base}/api/v1/datasets/{ds['id']}/advice", "POST", {"probe_seconds": a.probe_seconds})
        assert st == 200, advice
        print(f"{name}: advice in {time.time() - t0:.0f}s; {advice['probe']['note']}", flush=True)
        for s in advice["suggestions"]:
            print(f"  {s['param']:14} {json.dumps(s['bound'])}: {s['reason']}", flush=True)
        r = {"stats": ds.get("stats"), "advice": advice, "arms": {}}
        st, absurd = call(f"{base}/api/v1/studies/estimate", "POST",
                          {"dataset_id": ds["id"], "bounds": ABSURD, "budget": {"trials": a.trials, "minutes": a.minutes}})
        # A batch larger than the training set (when the allowed 4096 is larger than it).
        st_b, refused = call(f"{base}/api/v1/studies/estimate", "POST", {"dataset_id": ds["id"], "bounds": ABSURD_BATCH})
        fit = int(sum((ds.get("stats") or {}).get("train_per_class", [])) * 0.85)
        warned = {w["param"] for w in absurd.get("warnings", [])}
        r["absurd"] = {"status": st, "warnings": absurd.get("warnings"), "estimate": absurd.get("estimate"),
                       "all_warned": all(k in warned for k in ABSURD), "batch_status": st_b, "batch_error": refused,
                       "batch_applies": fit < 4096}
        for arm, bounds in [("a", advice["bounds"]), ("b", {}), ("d", EXPERT[name])]:
            print(f"{name} ({arm}) ...", flush=True)
            r["arms"][arm] = run_study(base, ds["id"], bounds, a.trials, a.minutes, seed)
        results[name] = r
        json.dump(results, open(f"{a.out}/results.json", "w"), indent=1)
    # The table.
    rows = []
    for name, r in results.items():
        best = {k: max((t["test_accuracy"] or 0) for t in v["trials"] if t.get("test_accuracy") is not None)
                if any(t.get("test_accuracy") is not None for t in v["trials"]) else 0.0 for k, v in r["arms"].items()}
        target = 0.97 * best["d"]
        tt = {k: time_to(v, target) for k, v in r["arms"].items()}
        rows.append((name, best, tt, r["absurd"]))
    fmt = lambda x: "-" if x is None else f"{x:.0f}s"
    print()
    print(f"{'dataset':8} {'best a':>7} {'best b':>7} {'best d':>7} {'a>=97%d':>8} {'t97 a':>6} {'t97 b':>6} {'t97 d':>6} {'absurd warned':>13} {'batch 400':>9}")
    for name, best, tt, ab in rows:
        print(f"{name:8} {best['a']:7.3f} {best['b']:7.3f} {best['d']:7.3f} {str(best['a'] >= 0.97 * best['d']):>8} "
              f"{fmt(tt['a']):>6} {fmt(tt['b']):>6} {fmt(tt['d']):>6} {str(ab['all_warned']):>13} {(str(ab['batch_status'] == 400) if ab['batch_applies'] else 'n/a'):>9}")
    pts = sum(v["eta_points"] for r in results.values() for v in r["arms"].values())
    cov = sum(v["eta_covered"] for r in results.values() for v in r["arms"].values())
    high = sum(v["eta_too_high"] for r in results.values() for v in r["arms"].values())
    per = ", ".join(f"{n}({k}) {v['eta_covered']}/{v['eta_points']}" for n, r in results.items() for k, v in r["arms"].items())
    print("t97 = seconds from the study's start until a trial reached 97% of (d)'s best test accuracy;"
          " batch 400 = batch 1..4096 refused when 4096 exceeds the training set")
    print(f"ETA calibration: the 80% range held the true remaining time at {cov}/{pts} progress points"
          f" ({100 * cov / max(pts, 1):.0f}%); of the misses {high} were too high (above the truth), {pts - cov - high} too low;"
          f" per study: {per}")
    json.dump(results, open(f"{a.out}/results.json", "w"), indent=1)


if __name__ == "__main__":
    main()
