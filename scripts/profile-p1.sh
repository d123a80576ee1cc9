#!/usr/bin/env bash
# Profiles one server core under redis-benchmark at pipeline 1 (issue 22's profile): Shardline
# (a node alone, fsync every second) and redis-server (AOF everysec), each pinned to core 0,
# redis-benchmark on core 1, `perf record -g` of the server for SECONDS. Prints, per server,
# the kernel / user split of its samples, the top kernel and user symbols, and syscalls and
# context switches per request.
#
#   scripts/profile-p1.sh [set|get] [SHARDLINE_BINARY]
#
# Use a frame-pointer build for call graphs through Shardline's frames:
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/fptarget \
#       cargo build --release --bin shardline
# Needs perf (Debian: linux-perf) and root (or perf_event_paranoid <= 1).
set -eu
WORKLOAD=${1:-get}
BIN=${2:-target/release/shardline}
SECONDS_=${SECONDS_:-6}
OUT=${OUT:-/tmp/profile-p1}
mkdir -p "$OUT"

run() { # name, command...
  local name=$1; shift
  local dir; dir=$(mktemp -d)
  local port=$((20000 + RANDOM % 20000))
  taskset -c 0 "$@" --port "$port" --dir-or-data "$dir" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$WORKLOAD" = get ]; then
    taskset -c 1 redis-benchmark -p "$port" -c 50 -n 400000 -r 100000 -d 64 -P 16 -t set -q >/dev/null
  fi
  taskset -c 1 redis-benchmark -p "$port" -c 50 -n 4000000 -r 100000 -d 64 -t "$WORKLOAD" -q \
    >"$OUT/$name.bench" 2>&1 &
  local bench=$!
  sleep 1
  perf stat -e 'syscalls:sys_enter_*,context-switches' -p "$pid" -o "$OUT/$name.stat" \
    -- sleep 2 2>/dev/null || true
  perf record -g -p "$pid" -o "$OUT/$name.data" -- sleep "$SECONDS_" >/dev/null 2>&1
  kill "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  local rps
  # The last progress line's overall rate (the run is stopped before its summary).
  rps=$(tr '\r' '\n' <"$OUT/$name.bench" | grep -o 'overall: [0-9.]*' | tail -1 | cut -d' ' -f2)
  echo "== $name ($WORKLOAD, pipeline 1): redis-benchmark ${rps:-?} requests per second"
  echo "  samples by object (kernel, the server, libc, vdso):"
  perf report -i "$OUT/$name.data" --no-children --sort dso -q -g none 2>/dev/null \
    | awk 'NF' | head -6 | sed 's/^/    /' || true
  echo "  top symbols (self):"
  perf report -i "$OUT/$name.data" --no-children --sort sym -q -g none 2>/dev/null \
    | awk 'NF' | head -25 | sed 's/^/    /'
  echo "  per request over 2 s (perf stat; ${rps:-?} req/s):"
  awk -v rps="${rps:-0}" '/syscalls:|context-switches/ { n = $1; gsub(",", "", n);
      if (n + 0 > 0 && rps > 0) printf "    %8.3f  %s\n", n / (2 * rps), $2 }' "$OUT/$name.stat" \
    | sort -rn | head -8 || true
}

# redis-server takes --dir; shardline --data-dir: a small shim keeps `run` one function.
redis() { local a=(); while [ $# -gt 0 ]; do
  if [ "$1" = --dir-or-data ]; then a+=(--dir "$2"); shift 2; else a+=("$1"); shift; fi; done
  exec redis-server --save '' --appendonly yes --appendfsync everysec "${a[@]}"; }
shardline() { local a=(); while [ $# -gt 0 ]; do
  if [ "$1" = --dir-or-data ]; then a+=(--data-dir "$2"); shift 2; else a+=("$1"); shift; fi; done
  exec "$BIN" --cores 0 --log-level warn "${a[@]}"; }
export -f redis shardline; export BIN

run shardline bash -c 'shardline "$@"' _
run redis bash -c 'redis "$@"' _
