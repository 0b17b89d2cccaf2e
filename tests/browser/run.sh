#!/usr/bin/env bash
# The real-browser test of the dashboard: installs Debian chromium (apt) and playwright-core (npm ci)
# when missing, checks the committed dashboard bundle is up to date, then runs dashboard.test.mjs
# against the release binaries (built by `cargo build --release --bins`, as scripts/setup.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check)
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release --bin tanren-control --bin tanren-worker
cd tests/browser && node --test --test-concurrency=1 dashboard.test.mjs
