"""The table bench/serve/run.sh prints: per model and concurrency, images/s and p50/p99 for
tanren-serve and the reference, and the ratios the issue sets targets for; then the ONNX table."""

import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
onnx = json.load(open(sys.argv[2]))


def get(model, impl, c):
    for r in rows:
        if r["model"] == model and r["impl"] == impl and r["r"]["concurrency"] == c:
            return r["r"]
    return None


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


print("| model | concurrency | tanren img/s | reference img/s | **throughput ratio** | tanren p50 / p99 ms | reference p50 / p99 ms | errors (t/r) |")
print("|---|---|---|---|---|---|---|---|")
for model in ("mnist", "seed128"):
    for c in (1, 8, 64):
        t, r = get(model, "tanren", c), get(model, "reference", c)
        if not t or not r:
            continue
        ratio = t["images_per_second"] / r["images_per_second"] if r["images_per_second"] else float("nan")
        print(f"| {model} | {c} | {fmt(t['images_per_second'])} | {fmt(r['images_per_second'])} | **{ratio:.2f}x** | "
              f"{fmt(t['p50_ms'], 2)} / {fmt(t['p99_ms'], 2)} | {fmt(r['p50_ms'], 2)} / {fmt(r['p99_ms'], 2)} | {t['errors']} / {r['errors']} |")
print()
print("| model | batching on (c=64) img/s | --max-batch 1 (c=64) img/s | **batching gain** | p99 on / off ms |")
print("|---|---|---|---|---|")
for model in ("mnist", "seed128"):
    on, off = get(model, "tanren", 64), get(model, "tanren-nobatch", 64)
    if on and off:
        print(f"| {model} | {fmt(on['images_per_second'])} | {fmt(off['images_per_second'])} | "
              f"**{on['images_per_second'] / max(off['images_per_second'], 1e-9):.2f}x** | {fmt(on['p99_ms'], 2)} / {fmt(off['p99_ms'], 2)} |")
if onnx.get("rows"):
    print()
    print(f"ONNX on the MNIST model, {onnx['images']} test images, CPU ({onnx['threads']} threads):")
    print()
    print("| runtime | batch 1 ms/img | batch 64 ms/img | top-1 accuracy | vs libtorch FP32 (b1 / b64 speed, accuracy) |")
    print("|---|---|---|---|---|")
    base = onnx["rows"][0]
    for r in onnx["rows"]:
        print(f"| {r['name']} | {r['b1_ms']:.4f} | {r['b64_ms']:.4f} | {r['accuracy']:.4f} | "
              f"{base['b1_ms'] / r['b1_ms']:.2f}x / {base['b64_ms'] / r['b64_ms']:.2f}x, {100 * (r['accuracy'] - base['accuracy']):+.1f} pt |")
elif onnx.get("error"):
    print("\nONNX: " + onnx["error"])
