#!/usr/bin/env bash
# Runs every test: installs what is missing, then the whole suite on SQLite and, when
# JIFEN_TEST_DATABASE_URL names a PostgreSQL server (e.g.
# postgres://postgres@127.0.0.1:5432/test), the whole suite again on PostgreSQL.
# Extra arguments go to `cargo nextest run`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tools.sh
source "$root/deploy/local/tools.sh"
jifen_rust_check
jifen_tools_install
jifen_nextest_install
cd "$root"

postgres_url=${JIFEN_TEST_DATABASE_URL:-}
echo "== tests on SQLite" >&2
JIFEN_TEST_DATABASE_URL='' cargo nextest run --workspace --no-fail-fast "$@"
if [ -n "$postgres_url" ]; then
  echo "== tests on PostgreSQL ($postgres_url)" >&2
  JIFEN_TEST_DATABASE_URL=$postgres_url cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "== PostgreSQL pass skipped: set JIFEN_TEST_DATABASE_URL to run it" >&2
fi
