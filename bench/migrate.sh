#!/usr/bin/env bash
# Migration benchmark: `fluxstudio migrate --json` (release build) of a large gen-legacy data set into a scratch
# PostgreSQL database, reported as rows per second (every entity's rows summed). See bench/README.md.
#
#   bash bench/migrate.sh
#
# Knobs (environment): BENCH_DATABASE_URL (a server to create the scratch database on, default
# postgres://postgres@127.0.0.1:5432/postgres; loopback only), BENCH_USERS (default 10000), BENCH_PROJECTS
# (default 10000), BENCH_TASKS (tasks per project, default 20), BENCH_BATCH (migrate --batch-size, default
# 5000), BENCH_TIMEOUT (seconds the migrate run may take, default 600), BENCH_DATA (an existing gen-legacy output
# directory to migrate instead of generating one; the size knobs are then ignored, and the directory is only read),
# BENCH_BIN (a fluxstudio binary to measure instead of building this checkout's release binary, e.g. a copy of
# an earlier build for a before/after pair), BENCH_VALIDATE=1 (run `fluxstudio validate --json` on the migrated set afterwards, untimed, and print its
# per-entity accuracy).
set -euo pipefail

ADMIN_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
USERS=${BENCH_USERS:-10000}
PROJECTS=${BENCH_PROJECTS:-10000}
TASKS=${BENCH_TASKS:-20}
BATCH=${BENCH_BATCH:-5000}
TIMEOUT=${BENCH_TIMEOUT:-600}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(cd "$ROOT/../shared" && pwd)
cd "$ROOT"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

case "$ADMIN_URL" in
    *@127.0.0.1*|*@localhost*|*@\[::1\]*) ;;
    *) die "BENCH_DATABASE_URL must point at a loopback server" ;;
esac

SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/fluxstudio-migrate-bench.XXXXXX")
DB="flux_bench_$(date +%s)_$$"
cleanup() {
    psql "$ADMIN_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

command -v psql >/dev/null || die "psql is needed"
if [ -n "${BENCH_BIN:-}" ]; then
    [ -x "$BENCH_BIN" ] || die "BENCH_BIN=$BENCH_BIN is not an executable"
    BIN=$BENCH_BIN
else
    log "release build"
    cargo build --release --locked --quiet
    BIN=./target/release/fluxstudio
fi

if [ -n "${BENCH_DATA:-}" ]; then
    # A copy, because migrate takes the data directory's lock file and may write its journal there.
    [ -f "$BENCH_DATA/users.json" ] || die "BENCH_DATA=$BENCH_DATA holds no users.json"
    log "data set: copy of $BENCH_DATA"
    cp -a "$BENCH_DATA" "$SCRATCH/data"
else
    log "data set: gen-legacy --users $USERS --projects $PROJECTS --tasks-per-project $TASKS"
    "$SHARED/tools/gen-legacy" --out "$SCRATCH/data" --users "$USERS" --projects "$PROJECTS" \
        --tasks-per-project "$TASKS" --teams $((USERS / 10)) --files "$USERS" >&2
fi
log "JSON size: $(du -sh --apparent-size "$SCRATCH/data" | cut -f1)"

psql "$ADMIN_URL" -qc "create database $DB" >/dev/null
TARGET_URL="${ADMIN_URL%/*}/$DB"
# Schema first, so that the timed run measures the backfill only.
"$BIN" --no-env-file --database-url "$TARGET_URL" db migrate >/dev/null

log "migrate (batch size $BATCH)"
start=$(date +%s.%N)
set +e
timeout "$TIMEOUT" "$BIN" --no-env-file --data-dir "$SCRATCH/data" \
    --database-url "$TARGET_URL" migrate --batch-size "$BATCH" --json >"$SCRATCH/report.json" 2>"$SCRATCH/err.log"
code=$?
set -e
end=$(date +%s.%N)
[ "$code" -eq 0 ] || { cat "$SCRATCH/err.log" >&2; head -c 2000 "$SCRATCH/report.json" >&2; die "migrate exit $code"; }

python3 - "$SCRATCH/report.json" "$start" "$end" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
rows = sum(e["inserted"] for e in r["entities"].values())
print(f"{'entity':<16}{'read':>10}{'inserted':>10}{'errors':>8}")
for name, e in r["entities"].items():
    print(f"{name:<16}{e['read']:>10}{e['inserted']:>10}{e['errors']:>8}")
print(f"rows inserted      {rows}")
print(f"migrate (report)   {r['durationSeconds']:.2f} s  ->  {rows / max(r['durationSeconds'], 1e-9):,.0f} rows/s")
print(f"process wall time  {wall:.2f} s (incl. loading the files) ->  {rows / wall:,.0f} rows/s")
print(f"row errors         {len(r['rowErrors'])}")
EOF

if [ "${BENCH_VALIDATE:-0}" = 1 ]; then
    log "validate (untimed)"
    set +e
    "$BIN" --no-env-file --data-dir "$SCRATCH/data" --database-url "$TARGET_URL" \
        validate --json >"$SCRATCH/validate.json" 2>"$SCRATCH/validate.err"
    vcode=$?
    set -e
    python3 - "$SCRATCH/validate.json" "$vcode" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(f"validate exit {sys.argv[2]}, no JSON report")
ents = r.get("entities", {})
print("validate accuracy  " + ", ".join(f"{k} {v.get('accuracy')}" for k, v in ents.items()) + f"  (exit {sys.argv[2]})")
EOF
fi
