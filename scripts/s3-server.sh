#!/usr/bin/env bash
# Installs the S3-compatible server the blob store tests run against for real: the Python
# package `moto[server]` (its `moto_server` command) into a virtual environment outside the
# source tree (~/.cache/agentry-s3-venv). Prints an `export` line for AGENTRY_TEST_MOTO_SERVER;
# when it cannot be installed it says so on stderr and prints nothing (the S3 tests then skip
# loudly, or fail under AGENTRY_TEST_REQUIRE_S3=1, as in CI).
set -uo pipefail
venv=${S3_VENV:-$HOME/.cache/agentry-s3-venv}
if [ ! -x "$venv/bin/moto_server" ]; then
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'moto[server]>=5'; } >&2 \
    || echo "s3-server: could not install moto[server]" >&2
fi
if [ -x "$venv/bin/moto_server" ]; then
  echo "export AGENTRY_TEST_MOTO_SERVER=$venv/bin/moto_server"
fi
