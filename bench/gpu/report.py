"""The one short table bench/gpu/run.sh prints, from the raw JSON it left in OUT (stdlib only).
A step that did not run shows '-' and the reason is in OUT/steps.log and that step's .log file."""

import json
import os
import sys

out = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def total(r):
    return r["decode_seconds"] + sum(r["epoch_seconds"]) + r["test_seconds"]


def steady(r):
    ep = r["epoch_seconds"]
    ep = ep[1:] if len(ep) > 1 else ep
    return sum(ep) / len(ep)


def mib(b):
    return f"{b / 2**20:.0f} MiB" if b else "-"


rows = []
sc = load("self_check.json")
if sc:
    rows.append(("CUDA seen by the worker", f"libtorch_cuda loaded: {sc['torch_cuda_loaded']}; cuda_available: "
                 f"{sc['cuda_available']} ({sc['cuda_device_count']} device(s)); --device -> {sc['device'] or sc.get('device_error')}"))
    rows.append(("device name", sc["device_name"]))
else:
    rows.append(("CUDA seen by the worker", "- (self-check failed: self_check.log)"))
try:
    link = open(os.path.join(out, "link.txt")).read()
    rows.append(("libtorch_cuda in NEEDED", "yes" if "libtorch_cuda" in link else "no (loaded at start-up instead)"))
except OSError:
    pass
st = load("study.json")
if st:
    rows.append(("MNIST-sample study", f"{st['trials_complete']}/{st['trials']} trials complete ({st['state']}) on "
                 f"{','.join(st['devices']) or '-'}; best val {st['best_val_accuracy']}, test {st['best_test_accuracy']}; "
                 f"{st['mean_train_seconds'] and round(st['mean_train_seconds'], 2)} s training per trial; "
                 f"{st['wall_seconds']:.1f} s wall"))
else:
    rows.append(("MNIST-sample study", "- (study.log)"))
for name, label in (("seed", "seed config 128px b10"), ("search", "search config 32px b128")):
    ref, tan = load(f"{name}-reference.json"), load(f"{name}-tanren.json")
    if ref and tan:
        rows.append((f"bench/train {label}", f"tanren {total(tan):.2f} s vs PyTorch {total(ref):.2f} s total = "
                     f"**{total(tan) / total(ref):.2f}x**; steady epoch {steady(tan):.3f} vs {steady(ref):.3f} s; "
                     f"test acc {tan['test_accuracy']:.3f} vs {ref['test_accuracy']:.3f}; peak mem tanren "
                     f"{mib(tan.get('peak_memory_bytes'))}, PyTorch {mib(ref.get('peak_memory_bytes'))}"))
    else:
        rows.append((f"bench/train {label}", "- (see *.log)"))
f32, bf = load("search-tanren.json"), load("search-bf16-tanren.json")
if f32 and bf:
    rows.append(("bf16 autocast on/off (search config)", f"steady epoch {steady(bf):.3f} vs {steady(f32):.3f} s = "
                 f"{steady(bf) / steady(f32):.2f}x; test acc {bf['test_accuracy']:.3f} vs {f32['test_accuracy']:.3f}; "
                 f"peak mem {mib(bf.get('peak_memory_bytes'))} vs {mib(f32.get('peak_memory_bytes'))}"))
serve = []
for prec in ("f32", "bf16"):
    for c in (1, 64):
        r = load(f"serve-{prec}-c{c}.json")
        if r:
            serve.append(f"{prec} c={c}: {r['images_per_second']:.0f} img/s, p50 {r['p50_ms'] or 0:.2f} / p99 {r['p99_ms'] or 0:.2f} ms, {r['errors']} errors")
rows.append(("inference server (tanren-serve, single-image requests)", "; ".join(serve) if serve else "- (serve.log)"))

print("| check | result |\n|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
