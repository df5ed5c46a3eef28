#!/usr/bin/env bash
# `make bench`: builds Agentry and the fake upstream in release mode, installs the load
# generator (oha) and, with BENCH_LITELLM=1, LiteLLM's proxy, into a cache directory outside the
# source tree, then runs scripts/bench.py, which starts every process, measures, kills what it
# started and rewrites the results section of docs/performance.md.
#
# Options (environment):
#   BENCH_QUICK=1          a smoke run: tiny durations, few points; docs/performance.md untouched
#   BENCH_LITELLM=1        also measure LiteLLM's proxy (single worker) side by side
#   BENCH_DB=postgres      PostgreSQL instead of SQLite (BENCH_PG_URL, default
#                          postgres://postgres@127.0.0.1:5432/test; a fresh database per start)
#   AGENTRY_BENCH_TOKEN    sent as `Authorization: Bearer …` on every request to Agentry
#   BENCH_CACHE            where tools are installed (default ~/.cache/agentry-bench)
#   more in scripts/bench.py (BENCH_DURATION, BENCH_LATENCIES, BENCH_STREAMS, …)
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${BENCH_CACHE:-$HOME/.cache/agentry-bench}
export BENCH_CACHE=$cache
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$cache"

step() { printf '\n==> %s\n' "$*"; }

step "cargo build --release (agentry, agentry-fake-upstream) into $CARGO_TARGET_DIR"
# Two invocations: built with the fake upstream, the server's dependencies would take its
# features, their symbol names would change, and the server's recorded code order
# (decision 129) would not apply; `make run` builds it alone too.
if ! cargo build --release --locked -p agentry || ! cargo build --release --locked -p agentry-fake-upstream; then
  echo "bench: the release build failed; nothing was measured" >&2
  exit 1
fi
export BENCH_AGENTRY_BIN=$CARGO_TARGET_DIR/release/agentry
export BENCH_FAKE_BIN=$CARGO_TARGET_DIR/release/agentry-fake-upstream

oha=$(command -v oha || true)
if [ -z "$oha" ]; then
  oha=$cache/oha/bin/oha
  if [ ! -x "$oha" ]; then
    step "installing oha (the load generator) into $cache/oha"
    # Its own target dir, so it does not churn the project's build cache.
    if ! CARGO_TARGET_DIR=$cache/oha-target cargo install oha --locked --root "$cache/oha"; then
      echo "bench: cannot install oha (cargo install oha --locked); install it and re-run" >&2
      exit 1
    fi
    rm -rf "$cache/oha-target"
  fi
fi
export BENCH_OHA=$oha

if [ "${BENCH_LITELLM:-0}" = 1 ] || [ "${LITELLM:-0}" = 1 ]; then
  export BENCH_LITELLM=1
  venv=$cache/litellm-venv
  if [ ! -x "$venv/bin/litellm" ]; then
    step "installing LiteLLM's proxy into $venv"
    if python3 -m venv "$venv" && "$venv/bin/pip" install --disable-pip-version-check -q 'litellm[proxy]'; then
      :
    else
      echo "bench: pip could not install litellm[proxy]; continuing without LiteLLM" >&2
      export BENCH_LITELLM_FAILED="pip install 'litellm[proxy]' failed"
    fi
  fi
  export BENCH_LITELLM_BIN=$venv/bin/litellm
fi

# 10,000 open streams need as many descriptors (twice as many in Agentry: client + upstream).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "measuring (scripts/bench.py)"
exec python3 scripts/bench.py "$@"
