#!/usr/bin/env bash
# Load benchmark of the JSON store: see bench/README.md for what it measures and the targets.
#
#   bash bench/run.sh
#
# Knobs (environment): BENCH_DURATION (wrk run per phase, default 15s), BENCH_CONNECTIONS (default 32),
# BENCH_THREADS (wrk threads, default 2), BENCH_TMPDIR (where the scratch dir goes, default $TMPDIR or /tmp;
# it must be a real disk, on tmpfs fsync costs nothing and the POST figure means nothing).
set -euo pipefail

DURATION=${BENCH_DURATION:-15s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
# The fixed data set of the issue; gen-legacy is seeded (default seed 1), so every run loads the same data.
USERS=1000
PROJECTS=2000
TASKS_PER_PROJECT=50
# user1@example.org is always a plain client without legacy quirks (gen-legacy --help), password
# flux-pass-<1 mod 4>. A plain client makes the GET go through the ordinary membership check, not an admin path.
LOGIN_EMAIL=user1@example.org
LOGIN_PASSWORD=flux-pass-1
# A fixed, obviously fake 64-hex secret: the tokens only have to live as long as this run.
JWT_SECRET_HEX=$(printf 'be%.0s' {1..32})

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(cd "$ROOT/../shared" && pwd)
cd "$ROOT"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# Scratch dir and clean-up: every server this script starts is killed and the scratch dir removed, however the
# script ends.
# ---------------------------------------------------------------------------------------------------------------
SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/fluxstudio-bench.XXXXXX")
SERVER_PIDS=()
cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "wrk missing: installing it with apt-get"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq wrk >/dev/null
fi
command -v python3 >/dev/null || die "python3 is needed (gen-legacy and the API set-up)"

log "building the release binary (cargo build --release --locked)"
cargo build --release --locked
# Which source the figures belong to (a dirty tree is measured as it is).
REVISION=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/fluxstudio"
[ -x "$BIN" ] || die "no binary at $BIN"

# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------

# start_server DATA_DIR NAME: starts the server on a kernel-chosen free loopback port (PORT=0), waits for its
# "listening on ADDR" line and sets SERVER_PID and BASE_URL. `env -i` keeps the caller's FLUX_*, DATABASE_URL,
# RUST_LOG ... out of the measurement, and --no-env-file keeps a stray ./.env out too.
start_server() {
    local dir=$1 name=$2 i addr
    env -i PATH="$PATH" \
        JWT_SECRET="$JWT_SECRET_HEX" FLUX_RATE_LIMIT=off RUST_LOG=warn HOST=127.0.0.1 PORT=0 \
        "$BIN" --no-env-file --data-dir "$dir" serve \
        >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    # Up to 120 s: with the data set the server parses ~55 MB of JSON before it listens.
    for ((i = 0; i < 1200; i++)); do
        addr=$(sed -n 's/^listening on \([^ ]*\) .*/\1/p' "$SCRATCH/$name.out" | head -n1)
        if [ -n "$addr" ]; then
            BASE_URL="http://$addr"
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || {
            cat "$SCRATCH/$name.err" >&2
            die "server ($name) exited before listening"
        }
        sleep 0.1
    done
    die "server ($name) did not report 'listening on' within 120 s"
}

# stop_server PID: SIGTERM (graceful shutdown with its final compaction), SIGKILL after 30 s.
stop_server() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# status_kib PID FIELD...: /proc/PID/status fields (VmRSS = now, VmHWM = peak since start) in KiB, one line,
# all from one read of the file.
status_kib() {
    local pid=$1
    shift
    awk -v want="$*" 'BEGIN { n = split(want, w, " ") } { v[$1] = $2 }
        END { for (i = 1; i <= n; i++) printf "%s%s", v[w[i] ":"], (i < n ? " " : "\n") }' "/proc/$pid/status"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# cpu_ticks PID: user + system CPU time of the whole process (all threads), in clock ticks. The fields after
# the ")" of the command name start at field 3 (state), so utime and stime are fields 14 and 15 of stat.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
CLK_TCK=$(getconf CLK_TCK)

# machine_ticks: busy (user+nice+system+irq+softirq) and steal clock ticks of all CPUs, from /proc/stat.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }

# run_wrk NAME URL [wrk args...]: one bounded load; prints wrk's report and records req/s, p50, p99, errors
# and where the machine's CPU went in RESULT_<NAME>_*. The CPU split (server / wrk / everything else) is
# there because wrk and the server share the 2 cores: a build or test run elsewhere on the machine skews
# the figures, and this makes that visible instead of silent.
run_wrk() {
    local name=$1 url=$2
    shift 2
    local out="$SCRATCH/wrk-$name.txt" t0 t1 c0 c1 m0 m1 s0 s1 wrk_cpu
    c0=$(cpu_ticks "$SERVER_PID")
    read -r m0 s0 < <(machine_ticks)
    t0=$(date +%s.%N)
    # The bash `time` keyword reports wrk's own user+system CPU seconds (TIMEFORMAT %U %S) on stderr.
    { TIMEFORMAT='wrk-cpu %U %S'; time wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" \
        >"$out" 2>"$out.err"; } 2>"$SCRATCH/time-$name"
    t1=$(date +%s.%N)
    read -r m1 s1 < <(machine_ticks)
    c1=$(cpu_ticks "$SERVER_PID")
    wrk_cpu=$(awk '$1 == "wrk-cpu" { print $2 + $3 }' "$SCRATCH/time-$name")
    cat "$out" "$out.err" >&2
    local rps p50 p99 non2xx sockerr srv wrkc other steal
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    sockerr=$(grep -o 'Socket errors:.*' "$out" || true)
    # CPU over the run in cores (2.00 = both cores busy the whole time).
    read -r srv wrkc other steal < <(awk -v c="$((c1 - c0))" -v m="$((m1 - m0))" -v st="$((s1 - s0))" \
        -v w="$wrk_cpu" -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN {
            d = b - a; srv = c / hz / d; wrk = w / d; other = m / hz / d - srv - wrk
            if (other < 0) other = 0
            printf "%.2f %.2f %.2f %.2f\n", srv, wrk, other, st / hz / d }')
    printf -v "RESULT_${name}_RPS" '%s' "$rps"
    printf -v "RESULT_${name}_P50" '%s' "$p50"
    printf -v "RESULT_${name}_P99" '%s' "$p99"
    printf -v "RESULT_${name}_CPU" 'CPU cores: server %s, wrk %s, other %s, steal %s' "$srv" "$wrkc" "$other" "$steal"
    printf -v "RESULT_${name}_ERRORS" '%s' "${non2xx:-0} non-2xx${sockerr:+, $sockerr}"
    [ -z "$non2xx" ] || log "WARNING: $name: $non2xx responses were not 2xx/3xx (see above)"
    awk -v o="$other" -v s="$steal" 'BEGIN { exit !(o + s > 0.15) }' &&
        log "WARNING: $name: other processes (or the hypervisor) took $other + $steal cores during the run: figures are low"
    return 0
}

# ---------------------------------------------------------------------------------------------------------------
# 1. Idle RSS on an empty data dir
# ---------------------------------------------------------------------------------------------------------------
log "scratch dir $SCRATCH (file system: $(stat -f -c %T "$SCRATCH"))"
log "phase 0: idle server on an empty data dir"
mkdir "$SCRATCH/empty"
start_server "$SCRATCH/empty" empty
sleep 1
read -r IDLE_RSS IDLE_HWM < <(status_kib "$SERVER_PID" VmRSS VmHWM)
stop_server "$SERVER_PID"
log "idle RSS $(mib "$IDLE_RSS") MiB (peak $(mib "$IDLE_HWM") MiB)"

# ---------------------------------------------------------------------------------------------------------------
# 2. The data set
# ---------------------------------------------------------------------------------------------------------------
DATA="$SCRATCH/data"
log "generating the data set ($USERS users, $PROJECTS projects x $TASKS_PER_PROJECT tasks)"
python3 "$SHARED/tools/gen-legacy" --out "$DATA" --users "$USERS" --projects "$PROJECTS" \
    --tasks-per-project "$TASKS_PER_PROJECT" >"$SCRATCH/gen.txt"
# Measured before the server touches the dir: these bytes are the "JSON size" of the RSS target.
JSON_BYTES=$(cat "$DATA"/*.json | wc -c)
JSON_KIB=$((JSON_BYTES / 1024))
log "JSON files: $(mib "$JSON_KIB") MiB ($JSON_BYTES bytes): $(cd "$DATA" && ls -- *.json | tr '\n' ' ')"

log "starting the server on the data set"
t0=$(date +%s.%N)
start_server "$DATA" loaded
STARTUP_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
sleep 1
read -r LOADED_RSS LOADED_HWM < <(status_kib "$SERVER_PID" VmRSS VmHWM)
log "listening at $BASE_URL after ${STARTUP_S}s; RSS $(mib "$LOADED_RSS") MiB (peak while loading $(mib "$LOADED_HWM") MiB)"

# ---------------------------------------------------------------------------------------------------------------
# 3. Set-up through the API: log in, pick a gen-legacy project of the user, create the POST targets.
#    Python's standard library only, so nothing beyond python3 (already needed by gen-legacy) is required.
# ---------------------------------------------------------------------------------------------------------------
SETUP=$(python3 - "$BASE_URL" "$DATA/projects.json" "$LOGIN_EMAIL" "$LOGIN_PASSWORD" "$TASKS_PER_PROJECT" <<'PY'
import json, sys, urllib.request

base, projects_file, email, password, want_tasks = sys.argv[1:6]
want_tasks = int(want_tasks)

def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw), len(raw)

login, _ = call("POST", "/api/auth/login", {"email": email, "password": password})
token, uid = login["token"], login["user"]["id"]

# A generated project with the full task count where the user is a member by id (or the creator); projects
# in the rollback shape or with members stored by e-mail are legacy quirks, not the common case, so skip them.
projects = json.load(open(projects_file, encoding="utf-8"))["projects"]
def mine(p):
    return p.get("createdBy") == uid or any(m.get("userId") == uid for m in p.get("members", []))
candidates = [p for p in projects if mine(p) and len(p.get("tasks", [])) == want_tasks]
plain = [p for p in candidates if "organizationId" not in p]
if not candidates:
    sys.exit(f"no generated project with {want_tasks} tasks has {email} as a member")
get_project = (plain or candidates)[0]["id"]

# Sanity check before the load: the GET must succeed and return every task.
tasks, size = call("GET", f"/api/projects/{get_project}/tasks", token=token)
if len(tasks["tasks"]) != want_tasks:
    sys.exit(f"GET tasks returned {len(tasks['tasks'])} tasks, expected {want_tasks}")

# A few fresh projects through the API; the POST load writes into the first one.
created = []
for i in range(3):
    r, _ = call("POST", "/api/projects", {"name": f"bench project {i}"}, token=token)
    created.append(r["project"]["id"])
r, _ = call("POST", f"/api/projects/{created[0]}/tasks", {"title": "bench task"}, token=token)
assert r["success"], r

print(token, get_project, created[0], size)
PY
) || die "API set-up failed"
read -r TOKEN GET_PROJECT POST_PROJECT GET_BYTES <<<"$SETUP"
log "GET target: generated project $GET_PROJECT ($TASKS_PER_PROJECT tasks, ~$GET_BYTES byte response)"
log "POST target: API-created project $POST_PROJECT"
AUTH="Authorization: Bearer $TOKEN"

# ---------------------------------------------------------------------------------------------------------------
# 4. Load
# ---------------------------------------------------------------------------------------------------------------
log "phase 1: GET /api/projects/$GET_PROJECT/tasks (2 s warm-up, then $DURATION at $CONNECTIONS connections)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "$AUTH" "$BASE_URL/api/projects/$GET_PROJECT/tasks" >/dev/null
run_wrk GET "$BASE_URL/api/projects/$GET_PROJECT/tasks" -H "$AUTH"
read -r GET_RSS GET_HWM < <(status_kib "$SERVER_PID" VmRSS VmHWM)

log "phase 2: POST /api/projects/$POST_PROJECT/tasks ($DURATION at $CONNECTIONS connections, every write fsynced)"
run_wrk POST "$BASE_URL/api/projects/$POST_PROJECT/tasks" -H "$AUTH" -s "$ROOT/bench/post_task.lua"
read -r POST_RSS POST_HWM < <(status_kib "$SERVER_PID" VmRSS VmHWM)

# Every 2xx POST was acknowledged as durable, so the project must now hold that many tasks (+1 from set-up).
STORED=$(python3 - "$BASE_URL" "$POST_PROJECT" "$TOKEN" <<'PY'
import json, sys, urllib.request
base, pid, token = sys.argv[1:4]
req = urllib.request.Request(f"{base}/api/projects/{pid}/tasks", headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(req, timeout=60) as r:
    print(len(json.load(r)["tasks"]))
PY
)
JOURNAL_BYTES=$(cat "$DATA"/journal/*.wal 2>/dev/null | wc -c)
log "POST project now holds $STORED tasks; journal $(mib $((JOURNAL_BYTES / 1024))) MiB"

# The POST phase is too short to reach a scheduled compaction (64 MiB of journal or 300 s), but shutdown runs
# one: it rewrites the legacy files from memory. Sample VmHWM until the process is gone so that the memory
# peak of a compaction is part of the figures too (VmHWM only grows; the last sample is the best we can see).
log "stopping the server (final compaction)"
SHUTDOWN_HWM=$POST_HWM
t0=$(date +%s.%N)
kill -TERM "$SERVER_PID"
for ((i = 0; i < 1200; i++)); do
    # An exited child stays a zombie (state Z, no memory fields) until it is waited for.
    state=$(sed 's/^.*) //' "/proc/$SERVER_PID/stat" 2>/dev/null | cut -d' ' -f1) || state=
    [ -n "$state" ] && [ "$state" != Z ] || break
    h=$(status_kib "$SERVER_PID" VmHWM 2>/dev/null) || h=
    [ -z "$h" ] || SHUTDOWN_HWM=$h
    sleep 0.05
done
stop_server "$SERVER_PID"
SHUTDOWN_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "server stopped after ${SHUTDOWN_S}s; peak RSS seen $(mib "$SHUTDOWN_HWM") MiB"

# ---------------------------------------------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------------------------------------------
ratio=$(awk -v r="$LOADED_RSS" -v j="$JSON_KIB" 'BEGIN { printf "%.2f", r / j }')
peak_ratio=$(awk -v r="$SHUTDOWN_HWM" -v j="$JSON_KIB" 'BEGIN { printf "%.2f", r / j }')
cat <<EOF

== Flux Studio JSON-store benchmark, $(date -u +%Y-%m-%dT%H:%MZ), revision $REVISION, $(nproc) CPUs, wrk -t$THREADS -c$CONNECTIONS -d$DURATION on 127.0.0.1
data set          : $USERS users, $PROJECTS projects x $TASKS_PER_PROJECT tasks; JSON files $(mib "$JSON_KIB") MiB
idle RSS (empty)  : $(mib "$IDLE_RSS") MiB                     target < 20 MiB
loaded RSS        : $(mib "$LOADED_RSS") MiB = ${ratio}x JSON (peak while loading $(mib "$LOADED_HWM") MiB; ready in ${STARTUP_S}s)   target <= 3x
GET tasks         : $RESULT_GET_RPS req/s, p50 $RESULT_GET_P50, p99 $RESULT_GET_P99 ($RESULT_GET_ERRORS)   target >= 5000 req/s, p99 < 10 ms
  $RESULT_GET_CPU
  after GET       : RSS $(mib "$GET_RSS") MiB, peak RSS (VmHWM) $(mib "$GET_HWM") MiB
POST task         : $RESULT_POST_RPS req/s, p50 $RESULT_POST_P50, p99 $RESULT_POST_P99 ($RESULT_POST_ERRORS)   target >= 1000 req/s, fsynced
  $RESULT_POST_CPU
  after POST      : RSS $(mib "$POST_RSS") MiB, peak RSS (VmHWM) $(mib "$POST_HWM") MiB; $STORED tasks stored in the POST project
peak RSS overall  : $(mib "$SHUTDOWN_HWM") MiB = ${peak_ratio}x JSON (VmHWM including the final compaction; shutdown took ${SHUTDOWN_S}s)
EOF
# (The stored task count can exceed wrk's request count by up to the connection count: requests still in flight
# when wrk stops are completed, and made durable, by the server but not counted by wrk.)
