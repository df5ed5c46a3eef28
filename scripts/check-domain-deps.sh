#!/usr/bin/env bash
# The dependency rule: the domain crate is framework-free. Fails when its normal dependency
# tree contains a web framework, an ORM, an LLM or HTTP client, or a JWT library.
set -euo pipefail
forbidden='^(actix|actix-web|actix-http|diesel|async-openai|jsonwebtoken|argon2|reqwest|hyper|sqlx|tokio-postgres)( |$)'
tree=$(cargo tree -p agentry-domain -e normal --prefix none --format '{p}' | sed 's/ v[0-9].*//' | sort -u)
bad=$(grep -E "$forbidden" <<<"$tree" || true)
if [ -n "$bad" ]; then
  echo "check-domain-deps: agentry-domain must not depend on:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "check-domain-deps: agentry-domain depends on none of actix, diesel, async-openai, jsonwebtoken, argon2, reqwest ($(wc -l <<<"$tree") crates checked)"

# The embedding example (examples/embedded) runs turns with no web framework: its tree must
# not contain an HTTP server, so that embedding the domain never drags one in.
web='^(actix|actix-web|actix-http|actix-server|agentry-http|agentry)( |$)'
tree=$(cargo tree -p agentry-example-embedded -e normal --prefix none --format '{p}' | sed 's/ v[0-9].*//' | sort -u)
bad=$(grep -E "$web" <<<"$tree" || true)
if [ -n "$bad" ]; then
  echo "check-domain-deps: agentry-example-embedded must not depend on:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "check-domain-deps: the embedding example depends on no web framework ($(wc -l <<<"$tree") crates checked)"
