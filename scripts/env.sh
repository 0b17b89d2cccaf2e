# shellcheck shell=bash
# Sourced by every tanren script: one place that says where the torch venv and caches live and how the
# build finds libtorch. Nothing here installs anything; scripts/setup.sh does that.
TANREN_CACHE="${TANREN_CACHE:-$HOME/.cache/tanren}"
TANREN_VENV="${TANREN_VENV:-$TANREN_CACHE/venv}"
TANREN_TORCH_VERSION="2.11.0"
TANREN_ORT_VERSION="1.32.0"
export TANREN_CACHE TANREN_VENV TANREN_TORCH_VERSION TANREN_ORT_VERSION
# torch-sys asks this python for torch's include/lib dirs and checks the version (tch 0.24 <-> torch 2.11.0).
export LIBTORCH_USE_PYTORCH=1
export PYTHON_SYS_EXECUTABLE="$TANREN_VENV/bin/python"
export PATH="$TANREN_VENV/bin:$PATH"
if [ -x "$TANREN_VENV/bin/python" ]; then
  TANREN_TORCH_LIB="$("$TANREN_VENV/bin/python" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2>/dev/null || true)"
  export TANREN_TORCH_LIB
  export LD_LIBRARY_PATH="${TANREN_TORCH_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# One target dir outside the clone so CI and fresh clones reuse compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TANREN_CACHE/target}"
