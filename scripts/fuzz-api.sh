#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (http-api.md §14): starts the debug server on
# a copy of the legacy fixtures, signs in as a fixture user, and runs `schemathesis run` against /api/openapi.json.
# The checks (scripts/schemathesis.toml): no 5xx, every status, content type and body as documented, and no
# authenticated route served without a token. Exits non-zero on any finding (a 5xx, a status or body the document does not allow, an unauthenticated request
# that was served). Used as the last step of scripts/test.sh.
#
#   scripts/fuzz-api.sh [--postgres] [--max-examples N] [--seed N] [-- extra schemathesis args]
#
# --postgres serves from the PostgreSQL store, on a fresh database created on TEST_DATABASE_URL's server (default
# postgres@127.0.0.1:5432) and dropped afterwards; it starts empty, so the run signs up its own user.
#   FUZZ_CONFIG=other.toml scripts/fuzz-api.sh     # another schemathesis.toml (e.g. with more checks)
#   FUZZ_SERVER_ARGS="--json-compact-bytes 1MiB" scripts/fuzz-api.sh   # more server flags
#
# schemathesis comes from PyPI into a venv under target/ (reused while its version matches). With the default 40
# examples per operation the run takes about a minute on a 2-core machine (budget: three).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=40
SEED=20261127
POSTGRES=
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) POSTGRES=1; shift ;;
    --max-examples) MAX_EXAMPLES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "fuzz-api.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if ! command -v python3 >/dev/null 2>&1; then
  echo "################################################################################" >&2
  echo "## fuzz-api.sh: python3 is not installed: the schemathesis API fuzz run is SKIPPED" >&2
  echo "################################################################################" >&2
  exit 0
fi
FIXTURES=../shared/fixtures/legacy
if [ ! -d "$FIXTURES" ]; then
  echo "fuzz-api.sh: $FIXTURES is missing (the legacy fixture set must sit beside the repository)" >&2
  exit 2
fi

VENV=target/fuzz-venv
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --locked --quiet --bin fluxstudio

WORK=$(mktemp -d)
SERVER_PID=
ADMIN_URL=
DB=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -n "$DB" ]; then
    psql "$ADMIN_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

SERVER_ARGS=(${FUZZ_SERVER_ARGS:-})
if [ -n "$POSTGRES" ]; then
  ADMIN_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  # flux_it_* databases left by an interrupted run are dropped by scripts/test.sh.
  DB="flux_it_fuzz_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  psql "$ADMIN_URL" -qc "create database $DB"
  SERVER_ARGS+=(--store postgres --database-url "${ADMIN_URL%%/*}//$(echo "$ADMIN_URL" | cut -d/ -f3)/$DB")
fi

# A writable copy of the fixture data (the shared originals are read-only).
mkdir -p "$WORK/data"
cp -r "$FIXTURES"/. "$WORK/data/"
chmod -R u+w "$WORK/data"

# The server prints `listening on ADDR …` on stdout once it accepts connections; its log goes to a file that is
# shown when the run fails.
mkfifo "$WORK/stdout"
JWT_SECRET=fuzz-secret-0123456789abcdef0123456789abcdef RUST_LOG=warn \
  target/debug/fluxstudio --no-env-file --data-dir "$WORK/data" serve --host 127.0.0.1 --port 0 \
  --rate-limit off --bcrypt-cost 4 "${SERVER_ARGS[@]}" >"$WORK/stdout" 2>"$WORK/server.log" &
SERVER_PID=$!
exec 3<"$WORK/stdout"
if ! read -r -t 60 line <&3; then
  echo "fuzz-api.sh: the server did not start" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi
ADDR=$(echo "$line" | awk '{print $3}')
BASE="http://$ADDR"

# A fixture designer who is a member of fixture projects (PASSWORDS.md); a store without the fixtures (an empty
# PostgreSQL database) gets a new account instead.
TOKEN=$(python3 - "$BASE" <<'PY'
import json, sys, urllib.error, urllib.request
def post(path, body):
    req = urllib.request.Request(sys.argv[1] + path, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))["token"]
try:
    print(post("/api/auth/login", {"email": "lena.fischer@example.com", "password": "rocket-Lena-9000"}))
except urllib.error.HTTPError:
    print(post("/api/auth/signup", {"email": "fuzz@example.com", "password": "fuzz-password-1", "name": "Fuzz"}))
PY
)

# One worker: with two, hypothesis' lambda-source cache raced now and then ("AST constructor recursion depth
# mismatch"), a failure of the tool, not of the server; one worker also makes a seed reproduce exactly.
echo "fuzz-api.sh: schemathesis $SCHEMATHESIS_VERSION against $BASE (${POSTGRES:+PostgreSQL store, }max $MAX_EXAMPLES examples per operation, seed $SEED)"
status=0
"$VENV/bin/schemathesis" --config-file "${FUZZ_CONFIG:-scripts/schemathesis.toml}" run "$BASE/api/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check all \
  --report junit --report-dir target/fuzz-report \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "fuzz-api.sh: schemathesis reported findings (exit $status); server log:" >&2
  tail -n 50 "$WORK/server.log" >&2
fi
exit "$status"
