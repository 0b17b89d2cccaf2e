#!/usr/bin/env bash
# Benchmark: tanren's trainer beside the seed's PyTorch pipeline (reference.py) on the same dataset,
# same thread count, in one run; prints seconds per epoch, test accuracy, ratios and how far the
# steady state is from the CPU's matmul GFLOP/s. Writes nothing into the repository: the venv lives at
# $TANREN_CACHE/bench-train-venv, the build in $CARGO_TARGET_DIR, scratch data in a temp dir.
#   bench/train/run.sh                          # 2 epochs per configuration, 2 threads
#   THREADS=1 EPOCHS=1 bench/train/run.sh       # a quicker look on a busy machine
#   DATASET_ZIP=other.zip bench/train/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../../scripts/env.sh
source "$root/scripts/env.sh"
venv="$TANREN_CACHE/bench-train-venv"
threads="${THREADS:-2}"
epochs="${EPOCHS:-2}"
search_epochs="${SEARCH_EPOCHS:-$epochs}"
zip="${DATASET_ZIP:-$root/../shared/datasets/mnist-digits.zip}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# torch 2.11.0 + torchvision 0.26.0. The main venv's torch (GBs) is reused through a .pth file when it
# is there and the right version; otherwise pip installs torch into this venv too.
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
main_site="$("$TANREN_VENV/bin/python" -c 'import sysconfig, torch; assert torch.__version__.startswith("2.11.0"); print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
if [ -n "$main_site" ]; then
  echo "$main_site" >"$site/tanren-main-venv.pth"
fi
if ! "$venv/bin/python" -c 'import torch, torchvision, numpy, sys; sys.exit(0 if torch.__version__.startswith("2.11.0") and torchvision.__version__.startswith("0.26.0") else 1)' 2>/dev/null; then
  "$venv/bin/pip" install --quiet "torch==2.11.0" "torchvision==0.26.0" numpy
fi
py="$venv/bin/python"

if [ ! -f "$zip" ]; then
  echo "== $zip not found; generating a digits dataset" >&2
  zip="$work/generated.zip"
  "$py" "$here/make_dataset.py" "$zip"
fi
mkdir -p "$work/folder"
"$py" -m zipfile -e "$zip" "$work/folder"
data="$work/folder"
if [ ! -d "$data/train" ]; then data="$(dirname "$(find "$work/folder" -maxdepth 2 -type d -name train | head -1)")"; fi

echo "== building tanren's train_bench (release)" >&2
(cd "$root" && cargo build --quiet --release -p tanren-trainer --example train_bench)
bench="$CARGO_TARGET_DIR/release/examples/train_bench"

run() { # name size batch channels blocks epochs
  local name=$1 size=$2 batch=$3 channels=$4 blocks=$5 ep=$6
  local chans=""; for ((b = 0; b < blocks; b++)); do chans+="${chans:+,}$(( (channels << b) > 256 ? 256 : channels << b ))"; done
  echo "== $name: reference (PyTorch, ImageFolder + DataLoader), ${size}px batch $batch, $ep epochs, $threads threads" >&2
  "$py" "$here/reference.py" --data "$data" --size "$size" --batch "$batch" --epochs "$ep" \
    --blocks "$chans" --threads "$threads" 2> >(grep -v -e 'Failed to initialize NumPy' -e '_conversion_method_template' >&2) >"$work/$name-reference.json"
  echo "== $name: tanren" >&2
  "$bench" --zip "$zip" --work "$work/tanren" --size "$size" --batch "$batch" --epochs "$ep" \
    --channels "$channels" --blocks "$blocks" --threads "$threads" >"$work/$name-tanren.json"
}
run seed 128 10 16 1 "$epochs"
run search 32 128 32 2 "$search_epochs"
"$py" "$here/report.py" "$work" seed search
