"""Prints the benchmark table from the JSON files run.sh collected (one reference + one tanren per
configuration). Totals: reference = its epochs + test pass (it decodes every epoch); tanren = decode
cache build + epochs + test pass. A training step is counted as 3 forward passes of FLOPs."""

import json
import sys


def summary(r, flops):
    ep = r["epoch_seconds"]
    steady = ep[1:] if len(ep) > 1 else ep
    steady_s = sum(steady) / len(steady)
    first = r["decode_seconds"] + ep[0]
    total = r["decode_seconds"] + sum(ep) + r["test_seconds"]
    ips = r["images"] / steady_s
    return {"first": first, "steady": steady_s, "total": total, "acc": r["test_accuracy"], "ips": ips,
            "gflops": ips * 3 * flops / 1e9}


def main():
    work, names = sys.argv[1], sys.argv[2:]
    rows = []
    for name in names:
        ref = json.load(open(f"{work}/{name}-reference.json"))
        tan = json.load(open(f"{work}/{name}-tanren.json"))
        flops, peak = tan["forward_flops"], tan["matmul_gflops"]
        m = tan["model"]
        a, b = summary(ref, flops), summary(tan, flops)
        rows.append((name, m, ref, tan, a, b, flops, peak, len(ref["epoch_seconds"])))
    print(f"threads: {rows[0][2]['threads']} (reference) / {rows[0][3]['threads']} (tanren); "
          f"torch {rows[0][2]['torch']}; CPU matmul (1024², f32): {rows[0][7]:.1f} GFLOP/s")
    print()
    print("| config | impl | epochs | 1st epoch s (incl. decode) | steady s/epoch | total s | test acc | "
          "steady img/s | GFLOP/s (3×fwd) | % of matmul |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, m, ref, tan, a, b, flops, peak, n in rows:
        cfg = f"{name}: {m['image_size']}px, CNN {'-'.join(str(x['out_channels']) for x in m['blocks'])}, {flops / 1e6:.1f} MFLOP/img"
        for impl, s in (("reference", a), ("tanren", b)):
            print(f"| {cfg} | {impl} | {n} | {s['first']:.2f} | {s['steady']:.2f} | {s['total']:.2f} | "
                  f"{s['acc']:.3f} | {s['ips']:.0f} | {s['gflops']:.1f} | {100 * s['gflops'] / peak:.0f}% |")
        print(f"| {cfg} | **tanren / reference** | | {b['first'] / a['first']:.2f}× | {b['steady'] / a['steady']:.2f}× | "
              f"**{b['total'] / a['total']:.2f}×** | {b['acc'] - a['acc']:+.3f} | {b['ips'] / a['ips']:.2f}× | | |")
    print()
    for name, m, ref, tan, a, b, flops, peak, n in rows:
        print(f"{name}: CPU matmul measured before this configuration {peak:.1f} GFLOP/s (the % column); tanren "
              f"ingest (once per upload, not in the totals) {tan['ingest_seconds']:.2f} s, decode-cache build "
              f"{tan['decode_seconds']:.2f} s")


if __name__ == "__main__":
    main()
