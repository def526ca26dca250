#!/usr/bin/env bash
# PostgreSQL-mode load benchmark: authenticated GET tasks and POST task at 32 connections against the release
# server in `postgres` mode, next to pgbench on the same machine in the same run (select-only `-S`, 16 clients, as
# the read limit; and an INSERT-only script as the write limit). Loopback only, bounded (10 s per phase).
#   bash bench/postgres.sh            (PostgreSQL from BENCH_DATABASE_URL, else postgres@127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${BENCH_DURATION:-10s}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v pgbench >/dev/null || { echo "pgbench is needed (Debian: postgresql-client)" >&2; exit 2; }
# BENCH_BIN=path measures a given server binary (before/after pairs) instead of building this tree's.
if [ -n "${BENCH_BIN:-}" ]; then BIN=$BENCH_BIN; else
  cargo build --release --locked --bin fluxstudio
  BIN=target/release/fluxstudio
fi

WORK=$(mktemp -d)
DB="flux_bench_$$"
SERVER_PID=""
base_url() { echo "${ADMIN_URL%/*}"; }
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  psql "$ADMIN_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  psql "$ADMIN_URL" -qc "drop database if exists ${DB}_pgbench with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$ADMIN_URL" -qc "create database $DB" >/dev/null
DB_URL="$(base_url)/$DB"

JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') FLUX_RATE_LIMIT=off RUST_LOG=warn \
  "$BIN" --no-env-file --data-dir "$WORK/data" --store postgres --database-url "$DB_URL" serve --host 127.0.0.1 --port 0 \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
BASE="http://$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$WORK/server.out")"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
TOKEN=$(curl -s "$BASE/api/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password","name":"Bench"}' | json "['token']")
PROJECT=$(curl -s "$BASE/api/projects" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"Bench"}' | json "['project']['id']")
for i in $(seq 50); do
  curl -s -o /dev/null "$BASE/api/projects/$PROJECT/tasks" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d "{\"title\":\"task $i\"}"
done
WRITE_PROJECT=$(curl -s "$BASE/api/projects" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"Writes"}' | json "['project']['id']")

summary() { # label file
  awk -v l="$1" '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
    END {printf "%-28s %10s req/s  p50 %-8s p99 %-8s non-2xx %s\n", l, r, p50, p99, (bad==""?0:bad)}' "$2"
}
# Where the two cores went during a phase (in cores): the server, wrk, and the rest of the machine — which is
# PostgreSQL when nothing else runs (a build or test elsewhere shows up there too, and makes the figures low).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
HZ=$(getconf CLK_TCK)
load() { # name wrk-args...
  local name=$1 c0 c1 m0 m1 t0 t1
  shift
  c0=$(cpu_ticks "$SERVER_PID"); m0=$(machine_ticks); t0=$(date +%s.%N)
  { TIMEFORMAT='%U %S'; time wrk -t2 -c32 -d"$DURATION" --latency "$@" >"$WORK/$name.txt"; } 2>"$WORK/$name.time"
  c1=$(cpu_ticks "$SERVER_PID"); m1=$(machine_ticks); t1=$(date +%s.%N)
  awk -v c=$((c1 - c0)) -v m=$((m1 - m0)) -v hz="$HZ" -v a="$t0" -v b="$t1" '{ w = $1 + $2 } END {
    d = b - a; s = c / hz / d; w = w / d; o = m / hz / d - s - w; if (o < 0) o = 0
    printf "CPU cores: server %.2f, wrk %.2f, PostgreSQL and the rest %.2f\n", s, w, o }' "$WORK/$name.time" \
    >"$WORK/$name.cpu"
}
wrk -t2 -c32 -d2s -H "Authorization: Bearer $TOKEN" "$BASE/api/projects/$PROJECT/tasks" >/dev/null
load get -H "Authorization: Bearer $TOKEN" "$BASE/api/projects/$PROJECT/tasks"
load post -s bench/post_task.lua -H "Authorization: Bearer $TOKEN" "$BASE/api/projects/$WRITE_PROJECT/tasks"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

# PostgreSQL's own ceiling for the server's write: pgbench running the statement a POST task runs (the shape of
# `rows::INSERT_TASK_AT_END`: access check, task row, activity row, one statement; values inlined) on the bench
# database, with no server on the machine. The INSERT-only figure below is a one-row, index-free insert.
USER_ID=$(psql "$DB_URL" -Atc "select id from users limit 1")
cat >"$WORK/post_statement.sql" <<SQL
with acc as (select p.id from projects p where p.id = '$WRITE_PROJECT'::uuid and (p.manager_id = '$USER_ID'::uuid
    or exists (select 1 from project_members m where m.project_id = p.id and m.user_id = '$USER_ID'::uuid
      and m.member_ref is null and m.role <> 'viewer'))),
  mark as (update projects set progress_derived = true where id = (select id from acc) and not progress_derived),
  ins as (insert into tasks (id, project_id, position, title, description, status, priority, assigned_to, due_date,
      created_by, created_at, updated_at, completed_at, tags, attachments, extra)
    select gen_random_uuid(), acc.id, coalesce((select max(position) + 1 from tasks where project_id = acc.id), 0),
      'bench task', '', 'todo', 'medium', null, null, '$USER_ID'::uuid, now(), now(), null, null, null, '{}'::jsonb
    from acc returning id)
insert into activities (id, project_id, type, user_id, user_name, user_email, user_avatar, entity_type, entity_id,
    entity_ref, entity_title, action, metadata, "timestamp", extra)
  select gen_random_uuid(), '$WRITE_PROJECT'::uuid, 'task.created', '$USER_ID'::uuid, 'Bench', 'bench@example.com',
    null, 'task', ins.id, null, 'bench task', 'created task', '{}'::jsonb, now(), '{}'::jsonb from ins;
SQL
STMT=$(pgbench -n -M prepared -f "$WORK/post_statement.sql" -c16 -j2 -T"${DURATION%s}" "$DB_URL" 2>/dev/null \
  | awk '/^tps/ {print int($3)}' || true)

# The machine's own limits, measured in the same run.
psql "$ADMIN_URL" -qc "create database ${DB}_pgbench" >/dev/null
PGB_URL="$(base_url)/${DB}_pgbench"
pgbench -q -i -s 10 "$PGB_URL" >/dev/null 2>&1
SEL=$(pgbench -S -c16 -j2 -T"${DURATION%s}" "$PGB_URL" 2>/dev/null | awk '/^tps/ {print int($3)}')
cat >"$WORK/insert.sql" <<'SQL'
insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 1, now());
SQL
INS=$(pgbench -n -f "$WORK/insert.sql" -c16 -j2 -T"${DURATION%s}" "$PGB_URL" 2>/dev/null | awk '/^tps/ {print int($3)}')
# For reference: the shape every write of the server had while its realtime fan-out was a pg_notify inside the
# write's transaction. PostgreSQL serialises the commits of notifying transactions (one database-wide lock from
# pre-commit to the end of the commit, WAL flush included), which capped those writes at this figure; the fan-out
# is now published after commit, batched, by one task per instance (src/store/postgres/fanout.rs).
cat >"$WORK/insert_notify.sql" <<'SQL'
begin;
insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 1, now());
select pg_notify('flux_bench', 'x');
commit;
SQL
INSN=$(pgbench -n -f "$WORK/insert_notify.sql" -c16 -j2 -T"${DURATION%s}" "$PGB_URL" 2>/dev/null | awk '/^tps/ {print int($3)}')

echo "== Flux Studio postgres-mode benchmark, $(date -u +%FT%RZ), load average $(cut -d' ' -f1-3 /proc/loadavg), $(git describe --always --dirty), $(nproc) CPUs, wrk -t2 -c32 -d$DURATION"
summary "GET tasks (50 tasks)" "$WORK/get.txt"; echo "  $(cat "$WORK/get.cpu")"
summary "POST task" "$WORK/post.txt"; echo "  $(cat "$WORK/post.cpu")"
echo "pgbench -S (16 clients)          $SEL tps"
echo "pgbench INSERT-only (16 clients) $INS tps"
echo "pgbench INSERT + pg_notify in one transaction (16 clients; the old write shape) $INSN tps"
echo "pgbench running the server's task-insert statement, no server (16 clients) $STMT tps"
GET=$(awk '/Requests\/sec/ {print int($2)}' "$WORK/get.txt"); POST=$(awk '/Requests\/sec/ {print int($2)}' "$WORK/post.txt")
awk -v g="$GET" -v s="$SEL" -v p="$POST" -v i="$INS" -v n="$INSN" -v t="${STMT:-0}" 'BEGIN {
  printf "GET tasks = %.1f%% of pgbench -S (target >= 20%%); POST task = %.1f%% of INSERT-only pgbench (target >= 20%%)\n", 100*g/s, 100*p/i
  printf "POST task = %.1f%% of INSERT + pg_notify pgbench\n", 100*p/n
  if (t > 0) printf "POST task = %.1f%% of PostgreSQL alone running its statement\n", 100*p/t }'
