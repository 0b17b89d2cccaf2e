#!/usr/bin/env bash
# The control plane under load, on fake workers (no libtorch, no GPU): builds `tanren-load`
# (crates/tanren-testkit) in release and runs it. Prints per-route request counts, errors, p50/p99,
# the WebSocket watchers' counts, and the 1-vs-N fake-worker throughput with the dispatch overhead.
# Exits non-zero on any error.
#
#   bench/load/run.sh                 # 200 REST clients, 500 watchers, 60 s, 10,000 seeded trials
#   bench/load/run.sh --smoke         # 5 s, 20 clients, 50 watchers, 1,000 trials (bounded, for CI)
#   bench/load/run.sh --seconds 30 --rest-clients 100   # any flag of `tanren-load --help`
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
# 500 watchers and 200 clients talk to an in-process server: about 2 descriptors per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p tanren-testkit --bin tanren-load
exec "$CARGO_TARGET_DIR/release/tanren-load" "$@"
