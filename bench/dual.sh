#!/usr/bin/env bash
# Write throughput in dual-json against json mode (issue 6: "write throughput in dual-json mode within 2x of json
# mode"): the release server on a fresh data dir, POST task at 32 connections for BENCH_DURATION per mode, first in
# json mode, then in dual-json on a fresh PostgreSQL database (every write also records its outbox entries in the
# same journal record, and the replay worker applies them to PostgreSQL while the load runs). After the dual-json
# phase it waits for the outbox to drain and reports how long that took. Loopback only, bounded.
#   bash bench/dual.sh            (PostgreSQL from BENCH_DATABASE_URL, else postgres@127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${BENCH_DURATION:-10s}
case "$ADMIN_URL" in
  *@127.0.0.1*|*@localhost*|*@\[::1\]*) ;;
  *) echo "BENCH_DATABASE_URL must point at a loopback server" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --bin fluxstudio
BIN=target/release/fluxstudio

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/fluxstudio-dual-bench.XXXXXX")
DB="flux_bench_dual_$$"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  psql "$ADMIN_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$ADMIN_URL" -qc "create database $DB" >/dev/null
DB_URL="${ADMIN_URL%/*}/$DB"
"$BIN" --no-env-file --database-url "$DB_URL" db migrate >/dev/null

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
start() { # mode data-dir
  JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') FLUX_RATE_LIMIT=off RUST_LOG=warn \
    "$BIN" --no-env-file --data-dir "$2" --store "$1" --database-url "$DB_URL" serve --host 127.0.0.1 --port 0 \
    >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
  BASE="http://$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$WORK/server.out")"
}
run_phase() { # mode
  start "$1" "$WORK/data-$1"
  TOKEN=$(curl -s "$BASE/api/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$1@example.com\",\"password\":\"bench-password\",\"name\":\"Bench\"}" | json "['token']")
  PROJECT=$(curl -s "$BASE/api/projects" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"Writes"}' | json "['project']['id']")
  wrk -t2 -c32 -d2s -s bench/post_task.lua -H "Authorization: Bearer $TOKEN" "$BASE/api/projects/$PROJECT/tasks" >/dev/null
  wrk -t2 -c32 -d"$DURATION" --latency -s bench/post_task.lua -H "Authorization: Bearer $TOKEN" \
    "$BASE/api/projects/$PROJECT/tasks" >"$WORK/post-$1.txt"
  if [ "$1" = dual-json ]; then
    local t0 depth
    t0=$(date +%s.%N)
    for _ in $(seq 600); do
      depth=$(curl -s "$BASE/health/ready" | json "['outbox']['depth']" 2>/dev/null || echo "?")
      [ "$depth" = 0 ] && break
      sleep 0.1
    done
    DRAIN=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    DRAIN_DEPTH=$depth
  fi
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}
summary() { # label file
  awk -v l="$1" '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
    END {printf "%-22s %10s req/s  p50 %-8s p99 %-8s non-2xx %s\n", l, r, p50, p99, (bad==""?0:bad)}' "$2"
}
run_phase json
run_phase dual-json

echo "== Flux Studio dual-json write benchmark, $(date -u +%FT%RZ), $(git describe --always --dirty), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), wrk -t2 -c32 -d$DURATION"
summary "POST task, json" "$WORK/post-json.txt"
summary "POST task, dual-json" "$WORK/post-dual-json.txt"
J=$(awk '/Requests\/sec/ {print $2}' "$WORK/post-json.txt"); D=$(awk '/Requests\/sec/ {print $2}' "$WORK/post-dual-json.txt")
awk -v j="$J" -v d="$D" 'BEGIN { printf "dual-json = %.1f%% of json mode (target: within 2x, i.e. >= 50%%)\n", 100*d/j }'
echo "outbox drained to ${DRAIN_DEPTH} in ${DRAIN} s after the load stopped"
