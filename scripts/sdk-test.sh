#!/usr/bin/env bash
# The official OpenAI Python and Node SDKs against a running Agentry (a debug build on a
# temporary SQLite database). Installs the Python `openai` package into a virtual environment
# and the Node one into a folder, both outside the source tree (Node itself comes from the
# Debian packages; .ci/run installs them when missing). The server gets a generous rate limit:
# the scripts make more calls than the default burst of 20.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SDK_VENV:-$HOME/.cache/agentry-sdk-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q 'openai>=1.60'
fi
node_dir=${SDK_NODE_DIR:-$HOME/.cache/agentry-sdk-node}
if ! command -v node >/dev/null; then
  echo "sdk-test: node is not installed (apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -f "$node_dir/node_modules/openai/package.json" ]; then
  mkdir -p "$node_dir" && npm install --silent --no-audit --no-fund --prefix "$node_dir" 'openai@>=5'
fi
cargo build --bin agentry --quiet
dir=$(mktemp -d)
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password=sdk-test-$RANDOM$RANDOM
DATABASE_URL="sqlite://$dir/sdk.db" AGENTRY_ADDR="127.0.0.1:$port" AGENTRY_LOG=warn \
  AGENTRY_RATE_LIMIT_PER_MINUTE=6000 AGENTRY_RATE_LIMIT_BURST=1000 \
  AGENTRY_ADMIN_PASSWORD="$password" "${CARGO_TARGET_DIR:-target}/debug/agentry" serve >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
token=""
login=$(curl -s -X POST "http://127.0.0.1:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" || true)
token=$("$venv/bin/python" -c 'import json,sys
try: print(json.loads(sys.argv[1]).get("access_token",""))
except Exception: print("")' "$login")
AGENTRY_URL="http://127.0.0.1:$port" AGENTRY_TOKEN="$token" "$venv/bin/python" tests/sdk/test_openai_sdk.py
AGENTRY_URL="http://127.0.0.1:$port" AGENTRY_TOKEN="$token" NODE_PATH="$node_dir/node_modules" \
  node tests/sdk/test_openai_node.cjs
