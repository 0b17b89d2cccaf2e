#!/usr/bin/env bash
# Fuzz the live control plane from its own OpenAPI document with Schemathesis (PyPI), authenticated as
# admin: every operation gets generated valid and invalid requests; the run fails on any 5xx or any
# response that breaks the documented schema (status, content type, headers, body). Bounded by
# --max-examples per operation and --max-time. Prints Schemathesis's summary (the counts).
#   tests/api/fuzz.sh              (after `cargo build --release --bins`; scripts/test.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
CACHE="${TANREN_CACHE:-$HOME/.cache/tanren}"
VENV="$CACHE/schemathesis-venv"
ST_VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi
BIN="$CARGO_TARGET_DIR/release"
work=$(mktemp -d /tmp/tanren-fuzz.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
token="tnr_fuzz_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
TANREN_LISTEN="127.0.0.1:$port" TANREN_DATA_DIR="$work/control" TANREN_ADMIN_TOKEN="$token" \
  TANREN_JOIN_TOKEN="join_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" TANREN_CREDENTIALS_FILE=none \
  TANREN_MUTATIONS_PER_SECOND=1000 RUST_LOG=warn "$BIN/tanren-control" 2>"$work/control.log" & pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# Something to find: one small dataset (3 classes of drawn PNGs) and a study on it (no worker runs it).
python3 - "$work/shapes.zip" <<'PY'
import struct, sys, zipfile, zlib
def png(w, h, px):
    raw = b"".join(b"\0" + bytes(c for x in range(w) for c in px(x, y)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
shapes = {"dot": lambda x, y: (255,) * 3 if (x - 8) ** 2 + (y - 8) ** 2 < 20 else (0,) * 3,
          "bar": lambda x, y: (255,) * 3 if 6 < x < 10 else (0,) * 3,
          "box": lambda x, y: (255,) * 3 if 4 < x < 12 and 4 < y < 12 else (0,) * 3}
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for split, n in (("train", 6), ("test", 2)):
        for name, f in shapes.items():
            for i in range(n):
                z.writestr(f"{split}/{name}/{i}.png", png(16, 16, lambda x, y: f((x + i) % 16, y)))
PY
auth=(-H "Authorization: Bearer $token")
curl -fsS "${auth[@]}" -F "file=@$work/shapes.zip" "$url/api/v1/datasets" >/dev/null
curl -fsS "${auth[@]}" -H 'content-type: application/json' "$url/api/v1/studies" \
  -d '{"dataset_id": 1, "budget": {"trials": 2}}' >/dev/null
echo "== schemathesis $ST_VERSION against $url/api/v1/openapi.json"
"$VENV/bin/schemathesis" run "$url/api/v1/openapi.json" "${auth[@]}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${FUZZ_EXAMPLES:-15}" --seed 1 --max-time "${FUZZ_SECONDS:-120}" \
  --phases examples,coverage,fuzzing --suppress-health-check all --workers 2 --request-timeout 30 --no-color
echo "tanren: API fuzz passed (0 server errors, 0 schema violations)"
