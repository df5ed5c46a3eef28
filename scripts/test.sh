#!/usr/bin/env bash
# `make test`: formatting, lints, the dependency rule, then every test on SQLite and, when it
# is reachable, PostgreSQL. With AGENTRY_TEST_REQUIRE_POSTGRES=1 (set by CI) an unreachable
# PostgreSQL is a failure instead of a skip.
set -euo pipefail
export RUST_BACKTRACE=${RUST_BACKTRACE_TESTS:-0}
cd "$(dirname "$0")/.."

pg_url=${AGENTRY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_hostport=$(sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#' <<<"$pg_url")
pg_host=${pg_hostport%:*}
pg_port=${pg_hostport##*:}
[ "$pg_port" = "$pg_hostport" ] && pg_port=5432

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "dependency rule"
scripts/check-domain-deps.sh

pg_up=0
if (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null; then pg_up=1; fi
if [ "$pg_up" = 0 ] && [ "${AGENTRY_TEST_REQUIRE_POSTGRES:-0}" = 1 ]; then
  echo "PostgreSQL is required (AGENTRY_TEST_REQUIRE_POSTGRES=1) but not reachable at $pg_host:$pg_port" >&2
  exit 1
fi

step "third-party MCP servers for the MCP tests (outside the source tree)"
eval "$(scripts/mcp-servers.sh)"
if [ -z "${AGENTRY_TEST_MCP_TIME:-}" ] || [ -z "${AGENTRY_TEST_MCP_EVERYTHING:-}" ]; then
  echo "WARNING: an MCP test server is missing; its tests will be SKIPPED (AGENTRY_TEST_REQUIRE_MCP=1 makes that a failure)."
fi

step "an S3-compatible server (moto) for the file storage tests (outside the source tree)"
eval "$(scripts/s3-server.sh)"
if [ -z "${AGENTRY_TEST_MOTO_SERVER:-}" ]; then
  echo "WARNING: moto is missing; the S3 tests will be SKIPPED (AGENTRY_TEST_REQUIRE_S3=1 makes that a failure)."
fi

step "tests on SQLite (storage contract tests also on PostgreSQL when reachable)"
cargo nextest run --workspace --no-fail-fast

step "doc tests"
cargo test --workspace --doc --quiet

step "the official OpenAI Python SDK against a running server"
scripts/sdk-test.sh

if [ "$pg_up" = 1 ]; then
  step "API tests on PostgreSQL"
  AGENTRY_TEST_DATABASE=postgres AGENTRY_TEST_REQUIRE_POSTGRES=1 cargo nextest run --workspace --no-fail-fast -E 'binary(api)'
else
  echo
  echo "SKIPPED: PostgreSQL is not reachable at $pg_host:$pg_port; only the SQLite suite ran."
  echo "         Start PostgreSQL (or set AGENTRY_TEST_POSTGRES_URL) to run the PostgreSQL suite."
fi
