#!/usr/bin/env bash
# Run every test from nothing: set-up (apt packages, torch venv, build), then the whole workspace's
# tests in release mode (the same compiled dependencies as the binaries), then clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
source scripts/env.sh
# Binaries first: tests/e2e/cuda_link.rs checks every libtorch binary (worker, serve) as built.
cargo build --release --workspace --bins
cargo test --release --workspace
cargo clippy --release --workspace --all-targets -- -D warnings
# The live API fuzzed from its own OpenAPI document (Schemathesis, bounded to ~2 minutes).
tests/api/fuzz.sh
# The Kubernetes manifests and docker-compose.yml, rendered and validated offline (no cluster, no Docker).
deploy/k8s/check.sh
echo "tanren: all tests passed"

# The dashboard in a real browser (chromium + playwright-core), after the Rust suites.
tests/browser/run.sh
echo "tanren: browser test passed"
