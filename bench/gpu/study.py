"""Drives one small study through the REST API (stdlib only: it runs on the GPU machine's python3):
upload the dataset zip, create a study, wait for it, print one JSON object with the outcome.

    python3 bench/gpu/study.py --url http://127.0.0.1:18080 --zip mnist-digits.zip --trials 4
"""

import argparse
import json
import os
import time
import urllib.request
import uuid


def authed(url, method="GET", body=None, headers=None):
    """A request carrying the API token from $TANREN_TOKEN (the bench scripts start the control plane
    with that value as TANREN_ADMIN_TOKEN)."""
    h = dict(headers or {})
    if os.environ.get("TANREN_TOKEN"):
        h["Authorization"] = f"Bearer {os.environ['TANREN_TOKEN']}"
    return urllib.request.Request(url, data=body, method=method, headers=h)


def call(url, method="GET", body=None, headers=None):
    with urllib.request.urlopen(authed(url, method, body, headers), timeout=60) as r:
        return json.loads(r.read())


def upload(base, path):
    boundary = uuid.uuid4().hex
    data = open(path, "rb").read()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.zip\"\r\n"
        f"Content-Type: application/zip\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return call(f"{base}/api/v1/datasets", "POST", body, {"content-type": f"multipart/form-data; boundary={boundary}"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--zip", required=True)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=150)
    ap.add_argument("--model-out", help="also download the best model zip here (for the serving step)")
    a = ap.parse_args()
    base = a.url.rstrip("/")
    ds = upload(base, a.zip)
    spec = {
        "dataset_id": ds["id"],
        "bounds": {"epochs": {"low": 1, "high": 2}, "image_size": {"low": 28, "high": 32}},
        "budget": {"trials": a.trials, "minutes": 10},
        "sampler": "tpe",
        "seed": 1,
        "baseline": False,
    }
    study = call(f"{base}/api/v1/studies", "POST", json.dumps(spec).encode(), {"content-type": "application/json"})
    sid, start, s = study["id"], time.time(), study
    while time.time() - start < a.timeout:
        s = call(f"{base}/api/v1/studies/{sid}")
        if s["state"] != "running":
            break
        time.sleep(0.5)
    trials = call(f"{base}/api/v1/studies/{sid}/trials")
    trials = trials.get("trials", trials) if isinstance(trials, dict) else trials
    done = [t for t in trials if t.get("state") == "complete"]
    secs = [t["train_seconds"] for t in done if t.get("train_seconds") is not None]
    best = s.get("best_trial") or {}
    if a.model_out and best:
        with urllib.request.urlopen(authed(f"{base}/api/v1/studies/{sid}/model"), timeout=120) as r, open(a.model_out, "wb") as f:
            f.write(r.read())
    print(json.dumps({
        "state": s["state"],
        "wall_seconds": time.time() - start,
        "trials_complete": len(done),
        "trials": len(trials),
        "best_val_accuracy": best.get("val_accuracy"),
        "best_test_accuracy": best.get("test_accuracy"),
        "mean_train_seconds": sum(secs) / len(secs) if secs else None,
        "devices": sorted({t.get("device") for t in trials if t.get("device")}),
    }))


if __name__ == "__main__":
    main()
