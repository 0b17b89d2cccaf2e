"""Trains the two models bench/serve/run.sh serves, through the REST API, and downloads them:
mnist.zip (best of a 1-trial study at 28 px), mnist-int8.zip (the same with ?int8=true: model.onnx +
model.int8.onnx), seed128.zip (the seed's SimpleCNN at 128 px: the baseline trial, 1 epoch)."""

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gpu"))
from study import authed, call, upload  # noqa: E402


def run_study(base, spec):
    s = call(f"{base}/api/v1/studies", "POST", json.dumps(spec).encode(), {"content-type": "application/json"})
    while s["state"] == "running":
        time.sleep(0.5)
        s = call(f"{base}/api/v1/studies/{s['id']}")
    if s["state"] != "complete" or not s.get("best_trial"):
        sys.exit(f"study {s['id']} ended {s['state']}: {s.get('error')}")
    print(f"study {s['id']}: best val {s['best_trial']['val_accuracy']:.4f}, params {s['best_trial']['params']}")
    return s["id"]


def download(url, path):
    with urllib.request.urlopen(authed(url), timeout=600) as r, open(path, "wb") as f:
        f.write(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--zip", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    base = a.url.rstrip("/")
    ds = upload(base, a.zip)["id"]
    mnist = run_study(base, {"dataset_id": ds, "budget": {"trials": 1}, "seed": 1, "baseline": False,
                             "bounds": {"epochs": {"low": 2, "high": 2}, "image_size": {"low": 28, "high": 28},
                                        "conv_blocks": {"low": 2, "high": 2}, "channels": {"low": 16, "high": 16},
                                        "learning_rate": {"low": 0.002, "high": 0.002}}})
    seed = run_study(base, {"dataset_id": ds, "budget": {"trials": 1}, "seed": 1, "baseline": True,
                            "bounds": {"epochs": {"low": 1, "high": 1}, "image_size": {"low": 128, "high": 128}}})
    download(f"{base}/api/v1/studies/{mnist}/model", os.path.join(a.out, "mnist.zip"))
    download(f"{base}/api/v1/studies/{mnist}/model?int8=true", os.path.join(a.out, "mnist-int8.zip"))
    download(f"{base}/api/v1/studies/{seed}/model", os.path.join(a.out, "seed128.zip"))


if __name__ == "__main__":
    main()
