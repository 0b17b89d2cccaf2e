#!/usr/bin/env bash
# The fault scenarios with real processes (tests/faults/, plus tests/e2e/worker_loss.rs for a worker
# SIGKILLed mid-trial), then one table: scenario | outcome | trials lost | time to recover.
# PostgreSQL scenarios start a server of their own (initdb under /usr/lib/postgresql/*/bin); the
# disk-full one mounts a small tmpfs and needs root. Either says SKIPPED in the table otherwise.
# `cargo test --release --workspace` (scripts/test.sh) runs the same tests without the table.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
report=$(mktemp); log=$(mktemp)
trap 'rm -f "$report" "$log"' EXIT
export TANREN_FAULTS_REPORT="$report"
start=$(date +%s)
status=0
cargo test --release -p tanren-e2e --test faults 2>&1 | tee "$log" || status=1
cargo test --release -p tanren-e2e --test e2e worker_loss 2>&1 | tee -a "$log" || status=1
# A scenario that failed wrote no row: it gets one saying so.
grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1 | FAILED (see its output above) | ? | -/' >> "$report"
echo
echo "== fault scenarios ($(( $(date +%s) - start )) s)"
awk -F ' \\| ' '
  { for (i = 1; i <= 4; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
  END {
    h[1] = "scenario"; h[2] = "outcome"; h[3] = "trials lost"; h[4] = "time to recover"
    for (i = 1; i <= 4; i++) if (length(h[i]) > w[i]) w[i] = length(h[i])
    printf "%-*s | %-*s | %-*s | %s\n", w[1], h[1], w[2], h[2], w[3], h[3], h[4]
    line = ""; for (k = 0; k < w[1] + w[2] + w[3] + w[4] + 9; k++) line = line "-"
    print line
    for (r = 1; r <= NR; r++)
      printf "%-*s | %-*s | %-*s | %s\n", w[1], c[r, 1], w[2], c[r, 2], w[3], c[r, 3], c[r, 4]
  }' "$report"
exit $status
