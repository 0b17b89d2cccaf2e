#!/usr/bin/env bash
# Benchmark: tanren-serve against the server a user would write (reference_server.py: FastAPI +
# uvicorn + torch 2.11, model preloaded, one forward per request), same model, same machine, same
# load generator (single-image requests), in one run. Prints images/s and p50/p99 at concurrency
# 1, 8, 64 and the ratios; then batching on vs --max-batch 1; then ONNX FP32 / INT8 (onnxruntime) vs
# libtorch FP32 at batch 1 and 64 with the accuracy of each on the test split.
#   bench/serve/run.sh                 # 8 s per point
#   SECONDS_PER_POINT=4 bench/serve/run.sh
#   DEVICE=cuda bench/serve/run.sh     # on a GPU host (tanren-serve also with --precision bf16)
# The reference runs torch with 1 intra-op thread (REF_THREADS): its best setting here — with 2 threads
# beside uvicorn and the load generator on 2 cores its latency jumped to ~48 ms per 28 px image (OpenMP
# threads waking per request), which would flatter tanren. tanren-serve keeps libtorch's default.
# Models: (1) the best model of a 1-trial study on the MNIST sample (../shared/datasets/mnist-digits.zip,
# or a generated digits zip), (2) the seed's SimpleCNN at 128 px (the baseline trial, 1 epoch).
# Writes nothing into the repository: venv under $TANREN_CACHE/bench-serve-venv, scratch in a temp dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$root/scripts/env.sh"
secs="${SECONDS_PER_POINT:-8}"
device="${DEVICE:-cpu}"
zip="${DATASET_ZIP:-$root/../shared/datasets/mnist-digits.zip}"
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

venv="$TANREN_CACHE/bench-serve-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
main_site="$("$TANREN_VENV/bin/python" -c 'import sysconfig, torch; assert torch.__version__.startswith("2.11.0"); print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
[ -n "$main_site" ] && echo "$main_site" >"$site/tanren-main-venv.pth"
if ! "$venv/bin/python" -c 'import fastapi, uvicorn, multipart, PIL, safetensors, numpy, onnxruntime, torch' 2>/dev/null; then
  "$venv/bin/pip" install --quiet "fastapi==0.115.*" "uvicorn==0.34.*" python-multipart pillow safetensors numpy onnxruntime
  "$venv/bin/python" -c 'import torch' 2>/dev/null || "$venv/bin/pip" install --quiet "torch==2.11.0"
fi
py="$venv/bin/python"

echo "== building (release)" >&2
(cd "$root" && cargo build --quiet --release --bins && cargo build --quiet --release -p tanren-serve --example load)
bin="$CARGO_TARGET_DIR/release"
load="$bin/examples/load"

if [ ! -f "$zip" ]; then
  echo "== $zip not found; generating a digits dataset" >&2
  zip="$work/generated.zip"; "$py" "$root/bench/train/make_dataset.py" "$zip"
fi
mkdir -p "$work/folder" && "$py" -m zipfile -e "$zip" "$work/folder"
images="$(find "$work/folder" -type d -name test | head -1)"

port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out waiting for $1" >&2; return 1; }

echo "== training the two models (control plane + one worker)" >&2
cport=$(port); wport=$(port)
# The control plane accepts this admin token (the scripts below send it) and this join token (the worker).
export TANREN_TOKEN="tnr_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" TANREN_JOIN_TOKEN="join_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export TANREN_ADMIN_TOKEN="$TANREN_TOKEN" TANREN_CREDENTIALS_FILE=none
"$bin/tanren-control" --listen "127.0.0.1:$cport" --data-dir "$work/control" >"$work/control.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$cport/healthz"
"$bin/tanren-worker" --listen "127.0.0.1:$wport" --control-url "http://127.0.0.1:$cport" --data-dir "$work/worker" \
  --device "$device" --heartbeat-ms 500 >"$work/worker.log" 2>&1 & pids+=($!)
"$py" "$here/train_models.py" --url "http://127.0.0.1:$cport" --zip "$zip" --out "$work" >&2
kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()

results="$work/results.jsonl"; : >"$results"
point() { # model impl concurrency url
  local out; out="$("$load" --url "$4" --model best --images "$images" --concurrency "$3" --seconds "$secs" --warmup 1)"
  echo "{\"model\":\"$1\",\"impl\":\"$2\",\"r\":$out}" >>"$results"
  echo "   $1 $2 c=$3: $out" >&2
}
for model in mnist seed128; do
  m="$work/$model.zip"
  sport=$(port)
  echo "== $model: tanren-serve (batching: --max-batch 64 --max-delay-ms 2)" >&2
  "$bin/tanren-serve" --model "best=$m" --listen "127.0.0.1:$sport" --device "$device" >"$work/serve-$model.log" 2>&1 & pids+=($!)
  wait_http "http://127.0.0.1:$sport/v2/health/ready"
  for c in 1 8 64; do point "$model" tanren "$c" "http://127.0.0.1:$sport"; done
  kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
  echo "== $model: tanren-serve --max-batch 1" >&2
  "$bin/tanren-serve" --model "best=$m" --listen "127.0.0.1:$sport" --device "$device" --max-batch 1 >>"$work/serve-$model.log" 2>&1 & pids+=($!)
  wait_http "http://127.0.0.1:$sport/v2/health/ready"
  point "$model" tanren-nobatch 64 "http://127.0.0.1:$sport"
  kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
  echo "== $model: reference (FastAPI + uvicorn + torch)" >&2
  rport=$(port)
  "$py" "$here/reference_server.py" --model "$m" --port "$rport" --device "$device" --threads "${REF_THREADS:-1}" >"$work/ref-$model.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$rport/docs" && break; sleep 0.2; done
  for c in 1 8 64; do point "$model" reference "$c" "http://127.0.0.1:$rport"; done
  kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
done

echo "== ONNX: FP32 and INT8 (onnxruntime) vs libtorch FP32 on the test split" >&2
onnx_json="$work/onnx.json"
if "$py" "$here/onnx_bench.py" --model "$work/mnist-int8.zip" --images "$images" >"$onnx_json" 2>"$work/onnx.log"; then :; else
  echo "onnx step failed:" >&2; tail -5 "$work/onnx.log" >&2; echo '{}' >"$onnx_json"; fi
"$py" "$here/report.py" "$results" "$onnx_json"
