#!/usr/bin/env bash
# The one GPU check (issue: GPU link), run on a GPU machine from binaries built here — no build there:
#   bench/gpu/pack.sh                                   # here: release build, stripped into bench-out/gpu/
#   run(command="bench/gpu/run.sh", carry=["bench-out/gpu"], timeout_s=540)   # the device tool
#   DEVICE=cpu bench/gpu/run.sh                         # dry run of the same steps on a CPU machine
# Uses the machine's own python3 + torch 2.11.0 (LD_LIBRARY_PATH points at its lib dir), prints one
# table, and writes raw output (JSON per step, logs) under $OUT (default bench-out/gpu/out).
# Budget: about 6 minutes on an H200 (every step has its own timeout), inside the 8 the issue allows.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
if [ -x "$root/bench-out/gpu/bin/tanren-worker" ]; then BIN="${BIN:-$root/bench-out/gpu/bin}"; else
  BIN="${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/tanren/target}/release}"; fi
TRAIN_BENCH="$BIN/train_bench"; [ -x "$TRAIN_BENCH" ] || TRAIN_BENCH="$BIN/examples/train_bench"
ZIP="${DATASET_ZIP:-}"
for z in "$root/bench-out/gpu/mnist-digits.zip" "$root/../shared/datasets/mnist-digits.zip" "$root/shared/datasets/mnist-digits.zip"; do
  [ -z "$ZIP" ] && [ -f "$z" ] && ZIP="$z"
done
OUT="${OUT:-$root/bench-out/gpu/out}"
mkdir -p "$OUT"
TORCH_LIB="$("$PY" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')" || {
  echo "python3 has no torch: set PYTHON to one with torch 2.11.0" >&2; exit 1; }
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "== $*" | tee -a "$OUT/steps.log" >&2; }
{ echo "device=$DEVICE bin=$BIN zip=$ZIP torch_lib=$TORCH_LIB"; "$PY" -c 'import torch;print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; nvidia-smi -L 2>/dev/null; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >&2

log "1. what the worker binary sees (--self-check reads its own /proc/self/maps)"
timeout 60 "$BIN/tanren-worker" --self-check --device "$DEVICE" >"$OUT/self_check.json" 2>"$OUT/self_check.log"
echo "exit $?" >>"$OUT/self_check.log"
{ echo "ldd:"; ldd "$BIN/tanren-worker" | grep -E 'torch' ; echo "readelf NEEDED:"; readelf -d "$BIN/tanren-worker" 2>/dev/null | grep NEEDED; } >"$OUT/link.txt" 2>&1

log "2. a small study on the MNIST sample (control plane + one worker on $DEVICE)"
# The control plane accepts this admin token (the scripts below send it) and this join token (the worker).
export TANREN_TOKEN="tnr_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" TANREN_JOIN_TOKEN="join_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export TANREN_ADMIN_TOKEN="$TANREN_TOKEN" TANREN_CREDENTIALS_FILE=none
if [ -n "$ZIP" ] && [ -x "$BIN/tanren-control" ]; then
  port=$((18000 + RANDOM % 1000)); wport=$((port + 1000))
  "$BIN/tanren-control" --listen "127.0.0.1:$port" --data-dir "$work/control" >"$OUT/control.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 100); do "$PY" -c "import urllib.request;urllib.request.urlopen('http://127.0.0.1:$port/healthz')" 2>/dev/null && break; sleep 0.2; done
  "$BIN/tanren-worker" --listen "127.0.0.1:$wport" --control-url "http://127.0.0.1:$port" --data-dir "$work/worker" \
    --device "$DEVICE" --heartbeat-ms 500 >"$OUT/worker.log" 2>&1 & pids+=($!)
  timeout 200 "$PY" bench/gpu/study.py --url "http://127.0.0.1:$port" --zip "$ZIP" --trials "${TRIALS:-4}" \
    --model-out "$work/best.zip" >"$OUT/study.json" 2>"$OUT/study.log" || echo "study step failed (see study.log)" >&2
  kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; pids=()
else
  echo "no dataset zip or no tanren-control binary: study skipped" >&2
fi

log "3. trainer vs the PyTorch reference on $DEVICE (bench/train configurations), bf16 on/off, peak memory"
if [ -n "$ZIP" ] && [ -x "$TRAIN_BENCH" ]; then
  mkdir -p "$work/folder" && "$PY" -m zipfile -e "$ZIP" "$work/folder"
  data="$work/folder"; [ -d "$data/train" ] || data="$(dirname "$(find "$work/folder" -maxdepth 2 -type d -name train | head -1)")"
  threads="${THREADS:-$(nproc)}"
  bench() { # name size batch channels blocks epochs bf16
    local name=$1 size=$2 batch=$3 ch=$4 blocks=$5 ep=$6 bf=$7 chans=""
    for ((b = 0; b < blocks; b++)); do chans+="${chans:+,}$(( (ch << b) > 256 ? 256 : ch << b ))"; done
    if [ "$bf" = 0 ]; then
      timeout 150 "$PY" bench/train/reference.py --data "$data" --size "$size" --batch "$batch" --epochs "$ep" \
        --blocks "$chans" --threads "$threads" --device "${DEVICE%%:*}" >"$OUT/$name-reference.json" 2>"$OUT/$name-reference.log" \
        || echo "reference $name failed" >&2
    fi
    timeout 120 "$TRAIN_BENCH" --zip "$ZIP" --work "$work/tb-$name" --size "$size" --batch "$batch" --epochs "$ep" \
      --channels "$ch" --blocks "$blocks" --threads "$threads" --device "$DEVICE" --bf16 "$bf" \
      >"$OUT/$name-tanren.json" 2>"$OUT/$name-tanren.log" || echo "tanren $name failed" >&2
  }
  bench seed 128 10 16 1 2 0
  bench search 32 128 32 2 3 0
  bench search-bf16 32 128 32 2 3 1
else
  echo "no dataset zip or no train_bench binary: trainer bench skipped" >&2
fi

log "4. inference server on $DEVICE"
LOAD="$BIN/load"; [ -x "$LOAD" ] || LOAD="$BIN/examples/load"
if [ -x "$BIN/tanren-serve" ] && [ -x "$LOAD" ] && [ -f "$work/best.zip" ]; then
  [ -d "$work/folder" ] || { mkdir -p "$work/folder" && "$PY" -m zipfile -e "$ZIP" "$work/folder"; }
  images="$(find "$work/folder" -type d -name test | head -1)"
  sport=$((19500 + RANDOM % 400))
  for prec in f32 bf16; do
    [ "$prec" = bf16 ] && [ "${DEVICE%%:*}" != cuda ] && continue
    "$BIN/tanren-serve" --model "best=$work/best.zip" --listen "127.0.0.1:$sport" --device "$DEVICE" --precision "$prec" \
      >>"$OUT/serve.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 150); do "$PY" -c "import urllib.request;urllib.request.urlopen('http://127.0.0.1:$sport/v2/health/ready')" 2>/dev/null && break; sleep 0.2; done
    for c in 1 64; do
      timeout 30 "$LOAD" --url "http://127.0.0.1:$sport" --model best --images "$images" --concurrency "$c" --seconds 6 \
        >"$OUT/serve-$prec-c$c.json" 2>>"$OUT/serve.log" || echo "load $prec c=$c failed" >&2
    done
    kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; pids=()
  done
else
  echo "no tanren-serve or load binary, or no model from the study step: serving step skipped" >&2
fi

"$PY" bench/gpu/report.py "$OUT" | tee "$OUT/table.md"
