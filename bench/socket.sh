#!/usr/bin/env bash
# Socket.IO fan-out benchmark: N websocket clients in R project rooms (one light Rust client process,
# examples/socket_load.rs), W task writes through REST, delivery latency p50/p99 and server RSS per 1,000 sockets.
# Loopback only, bounded: connects within 120 s, writes at ~50/s.
#   bash bench/socket.sh [SOCKETS] [ROOMS] [WRITES]      (defaults 10000 100 200)
# BENCH_BIN=path runs that server binary instead of building (to compare builds, e.g. allocators), with the load
# client at BENCH_LOAD (default target/release/examples/socket_load, which must have been built).
set -euo pipefail
cd "$(dirname "$0")/.."
SOCKETS=${1:-10000}
ROOMS=${2:-100}
WRITES=${3:-200}

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
  LOAD=${BENCH_LOAD:-target/release/examples/socket_load}
else
  cargo build --release --locked --bin fluxstudio --example socket_load
  BIN=target/release/fluxstudio
  LOAD=target/release/examples/socket_load
fi

# Each socket is one descriptor on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') FLUX_RATE_LIMIT=off RUST_LOG=warn \
  "$BIN" --no-env-file --data-dir "$WORK/data" serve --host 127.0.0.1 --port 0 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$WORK/server.out")
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
IDLE=$(rss_kib)

"$LOAD" --url "http://$ADDR" --sockets "$SOCKETS" --rooms "$ROOMS" --writes "$WRITES" >"$WORK/load.out" 2>&1 &
LOAD_PID=$!
for _ in $(seq 1300); do grep -q READY "$WORK/load.out" 2>/dev/null && break; sleep 0.1; done
LOADED=$(rss_kib)
wait "$LOAD_PID"
cat "$WORK/load.out" | grep -v READY
PEAK=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
awk -v idle="$IDLE" -v loaded="$LOADED" -v peak="$PEAK" -v n="$SOCKETS" 'BEGIN {
  printf "server RSS: idle %.1f MiB, with %d sockets %.1f MiB (%.2f MiB per 1,000 sockets), peak %.1f MiB\n",
    idle/1024, n, loaded/1024, (loaded-idle)/1024/n*1000, peak/1024 }'
