#!/usr/bin/env bash
# Benchmark: tanren-search's TPE and random samplers beside Optuna 5.0's TPESampler on the same
# problems (bench/search/problems.py mirrors crates/tanren-search/examples/search_bench/problems.rs),
# then prints the comparison table. Creates its own venv with Optuna from PyPI.
#   bench/search/run.sh            # 80 trials x 10 seeds, latency at 100/1,000/10,000 trials
#   TRIALS=40 SEEDS=3 LATENCY_SIZES=100,1000 bench/search/run.sh   # a quicker look
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${TANREN_CACHE:-$HOME/.cache/tanren}"
venv="$cache/bench-venv"
out="${OUT_DIR:-$cache/bench-search}"
trials="${TRIALS:-80}"
seeds="${SEEDS:-10}"
sizes="${LATENCY_SIZES:-100,1000,10000}"
mkdir -p "$out"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import optuna, sys; sys.exit(0 if optuna.__version__.startswith("5.0") else 1)' 2>/dev/null; then
  "$venv/bin/pip" install --quiet 'optuna==5.0.*'
fi

echo "== tanren-search (Rust, release build)" >&2
(cd "$root" && cargo run --quiet --release -p tanren-search --example search_bench -- \
  --trials "$trials" --seeds "$seeds" --out "$out/tanren_results.json")

echo "== Optuna (single process)" >&2
(cd "$here" && "$venv/bin/python" optuna_bench.py --trials "$trials" --seeds "$seeds" \
  --latency-sizes "$sizes" --out "$out/optuna_results.json")

echo >&2
(cd "$here" && "$venv/bin/python" report.py "$out/tanren_results.json" "$out/optuna_results.json")
