#!/usr/bin/env bash
# Schema-based fuzzing of the whole OpenAPI document with schemathesis: every generated request
# must get an answer that is not a server error (5xx), whose status, content type and body are
# the ones the document declares for that operation. Installs schemathesis into a virtual
# environment outside the source tree; starts a debug server on a temporary SQLite database.
# Usage: make fuzz [FUZZ_EXAMPLES=100] [FUZZ_CHECKS=not_a_server_error]. .ci/run runs it with
# FUZZ_EXAMPLES=10 (~14,000 requests, about 2.5 minutes: the coverage phase tries every bound
# the document states). FUZZ_CHECKS=positive_data_acceptance lists the schema-valid requests
# the server refuses (decision 77 says which it must). One worker: with two, CPython 3.11's
# ast module, which hypothesis uses from both threads to describe a strategy, sometimes fails
# ("AST constructor recursion depth mismatch"), and on two cores one worker is no slower.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FUZZ_VENV:-$HOME/.cache/agentry-fuzz-venv}
examples=${FUZZ_EXAMPLES:-50}
[ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q "schemathesis==4.32.5"; }
cargo build --bin agentry
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password=fuzz-$RANDOM$RANDOM$RANDOM
DATABASE_URL="sqlite://$dir/fuzz.db" AGENTRY_ADDR="127.0.0.1:$port" AGENTRY_LOG=warn \
  AGENTRY_ADMIN_PASSWORD="$password" AGENTRY_RATE_LIMIT_PER_MINUTE=1000000 AGENTRY_RATE_LIMIT_BURST=1000000 \
  "${CARGO_TARGET_DIR:-target}/debug/agentry" serve >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
# Fuzz as the admin, so requests reach the handlers instead of stopping at 401.
token=$(curl -s -X POST "http://127.0.0.1:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" -H "Authorization: Bearer $token" \
  --exclude-path /api/v1/auth/logout \
  --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}" --max-examples "$examples" --workers 1
if grep -q 'panicked' "$dir/server.log"; then
  echo "the server panicked:" >&2; grep -A5 panicked "$dir/server.log" >&2; exit 1
fi
