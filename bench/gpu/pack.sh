#!/usr/bin/env bash
# Builds here (release) what bench/gpu/run.sh runs on a GPU machine, and lays it out under
# bench-out/gpu/ (git-ignored) for the device tool to carry: stripped binaries (the worker is 127 MB
# with line tables, ~11 MB stripped; the carry limit is 64 MiB in all) and the MNIST sample.
#   bench/gpu/pack.sh        # then: run(command="bench/gpu/run.sh", carry=["bench-out/gpu"])
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/env.sh
cargo build --release --bins
cargo build --release -p tanren-trainer --example train_bench
cargo build --release -p tanren-serve --example load
out="$root/bench-out/gpu"
rm -rf "$out" && mkdir -p "$out/bin"
bins=(tanren-control tanren-worker)
[ -x "$CARGO_TARGET_DIR/release/tanren-serve" ] && bins+=(tanren-serve)
for b in "${bins[@]}"; do strip -o "$out/bin/$b" "$CARGO_TARGET_DIR/release/$b"; done
strip -o "$out/bin/train_bench" "$CARGO_TARGET_DIR/release/examples/train_bench"
strip -o "$out/bin/load" "$CARGO_TARGET_DIR/release/examples/load"
zip="$root/../shared/datasets/mnist-digits.zip"
if [ -f "$zip" ]; then cp "$zip" "$out/"; fi
du -sh "$out" "$out"/bin/* "$out"/*.zip 2>/dev/null
total=$(du -sm "$out" | cut -f1)
[ "$total" -lt 62 ] || { echo "bench-out/gpu is ${total} MiB: over the device tool's 64 MiB carry limit" >&2; exit 1; }
echo "packed: carry bench-out/gpu"
