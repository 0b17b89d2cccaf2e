#!/usr/bin/env bash
# Idempotent set-up: system packages (protoc, mold), the torch 2.11.0 venv, and a release build of every
# binary (skipped with --no-build, for callers that build themselves). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v mold >/dev/null || need_apt+=(mold)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "tanren setup: installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! "$TANREN_VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TANREN_TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "tanren setup: creating $TANREN_VENV with torch==$TANREN_TORCH_VERSION (a few GB, once)"
  python3 -m venv "$TANREN_VENV"
  "$TANREN_VENV/bin/pip" install -q --upgrade pip
  "$TANREN_VENV/bin/pip" install -q "torch==$TANREN_TORCH_VERSION"
fi
# onnxruntime (with numpy) runs the exported ONNX models in tanren-onnx's and tanren-trainer's tests.
if ! "$TANREN_VENV/bin/python" -c "import onnxruntime,sys; sys.exit(0 if onnxruntime.__version__=='$TANREN_ORT_VERSION' else 1)" 2>/dev/null; then
  echo "tanren setup: installing onnxruntime==$TANREN_ORT_VERSION into $TANREN_VENV"
  "$TANREN_VENV/bin/pip" install -q "onnxruntime==$TANREN_ORT_VERSION"
fi
source scripts/env.sh

if [ "${1:-}" != "--no-build" ]; then
  echo "tanren setup: building (release; the first build takes a while on few cores)"
  cargo build --release --bins
fi
