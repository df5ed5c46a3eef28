#!/usr/bin/env bash
# Installs the third-party programs the tests start for real, outside the source tree (the
# MCP servers, and `requests` for seed 004's Python client):
#   - the Python package `mcp-server-time` into a virtual environment (~/.cache/agentry-mcp-venv),
#   - the npm package `@modelcontextprotocol/server-everything` into ~/.cache/agentry-mcp-node
#     (Node from Debian's packages; .ci/run installs it when missing).
# Prints `export` lines for AGENTRY_TEST_MCP_TIME and AGENTRY_TEST_MCP_EVERYTHING; a package
# that cannot be installed is reported on stderr and left out (the tests then skip loudly,
# or fail under AGENTRY_TEST_REQUIRE_MCP=1, as in CI).
set -uo pipefail
venv=${MCP_VENV:-$HOME/.cache/agentry-mcp-venv}
node_dir=${MCP_NODE_DIR:-$HOME/.cache/agentry-mcp-node}

if [ ! -x "$venv/bin/mcp-server-time" ]; then
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'mcp-server-time>=2025.1'; } >&2 \
    || echo "mcp-servers: could not install mcp-server-time" >&2
fi
if [ -x "$venv/bin/mcp-server-time" ]; then
  echo "export AGENTRY_TEST_MCP_TIME=$venv/bin/mcp-server-time"
fi
# Seed 004's Python client (tests/api/compat.rs) needs `requests`: the same environment.
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import requests' 2>/dev/null; then
  "$venv/bin/pip" install -q requests >&2 || echo "mcp-servers: could not install requests" >&2
fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import requests' 2>/dev/null; then
  echo "export AGENTRY_TEST_PYTHON=$venv/bin/python"
fi

entry=$node_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js
if [ ! -f "$entry" ] && command -v npm >/dev/null; then
  { mkdir -p "$node_dir" && npm install --silent --no-audit --no-fund --prefix "$node_dir" \
      '@modelcontextprotocol/server-everything'; } >&2 \
    || echo "mcp-servers: could not install @modelcontextprotocol/server-everything" >&2
fi
if [ -f "$entry" ] && command -v node >/dev/null; then
  echo "export AGENTRY_TEST_MCP_EVERYTHING=$entry"
fi
