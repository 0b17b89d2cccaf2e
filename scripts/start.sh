#!/usr/bin/env bash
# Set up (first run only: apt packages, torch venv, release build) and start the platform: the control
# plane on 127.0.0.1:8080 (SQLite + files under ./data/control) and one local worker (./data/worker).
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/release"
LISTEN="${TANREN_LISTEN:-127.0.0.1:8080}"
export TANREN_LISTEN="$LISTEN"
export TANREN_CONTROL_URL="${TANREN_CONTROL_URL:-http://$LISTEN}"
export TANREN_DATA_DIR="${TANREN_DATA_DIR:-data/control}"
export TANREN_WORKER_DATA="${TANREN_WORKER_DATA:-data/worker}"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/tanren-control" & pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "tanren: control plane failed to start" >&2; exit 1; }
  sleep 0.1
done
# The control plane made the join token on its first start (unless TANREN_JOIN_TOKEN was given).
export TANREN_JOIN_TOKEN="${TANREN_JOIN_TOKEN:-$(cat "$TANREN_DATA_DIR/join-token")}"
"$BIN/tanren-worker" & pids+=($!)
cat <<MSG

  tanren is running:  http://$LISTEN   (REST API under /api/v1)
  sign in:            the login URL printed above (the admin token is in $TANREN_DATA_DIR/admin-token)
  CLI:                $BIN/tanren --help   (finds the admin token in ~/.config/tanren/credentials.json)
  data:               $TANREN_DATA_DIR (database, datasets, models), $TANREN_WORKER_DATA (worker cache)
  stop:               Ctrl-C

MSG
wait -n "${pids[@]}"
