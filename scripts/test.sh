#!/usr/bin/env bash
# The project's test command (README): every unit and integration test, through the public HTTP API of real
# servers on 127.0.0.1, plus the CLI binary, on the JSON store and again on PostgreSQL. Tests are quiet unless
# TEST_LOG=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared/fixtures/legacy ]; then
  echo "scripts/test.sh: ../shared/fixtures/legacy is missing (the legacy fixture set must sit beside the repository)" >&2
  exit 2
fi
# The Socket.IO compatibility suite drives the server with the real socket.io-client (tests/js).
if ! command -v node >/dev/null 2>&1; then
  echo "scripts/test.sh: node (Node.js 20+) is needed for the Socket.IO compatibility tests" >&2
  exit 2
fi
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
# PostgreSQL for the store conformance tests (each test creates and drops its own database).
source scripts/ensure-postgres.sh
# Databases left by earlier runs of this suite (each server/test gets a fresh one).
psql "$TEST_DATABASE_URL" -Atqc "select datname from pg_database where datname like 'flux\_it\_%' or datname like 'flux\_test\_%'" 2>/dev/null |
  while read -r db; do psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true; done
cargo test --locked "$@"
# The HTTP suite once more on the PostgreSQL store, once more in dual-json (JSON primary, every write replayed
# into PostgreSQL through the outbox) and once more in dual-postgres (the reverse); same test bodies; JSON-file-specific
# tests stay on JSON.
FLUX_TEST_STORE=postgres cargo test --locked --test it "$@" -- --skip json_only
FLUX_TEST_STORE=dual-json cargo test --locked --test it "$@" -- --skip json_only
FLUX_TEST_STORE=dual-postgres cargo test --locked --test it "$@" -- --skip json_only
# Last: schemathesis fuzzes the API from its own OpenAPI document, on each store (scripts/fuzz-api.sh; about a
# minute each; skipped, loudly, without python3).
bash scripts/fuzz-api.sh
bash scripts/fuzz-api.sh --postgres
