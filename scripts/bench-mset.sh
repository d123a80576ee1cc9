#!/usr/bin/env bash
# Multi-key writes across shard threads (Calvin transactions, issue 17) against single-key
# writes, in one run: redis-benchmark's SET and MSET (10 keys of 100,000 random ones, so an
# MSET spans both threads), 50 connections, against
#   shardline-2t  a node alone on two shard threads (cores 0,1): MSET is a Calvin transaction
#   shardline-1t  a node alone on one shard thread (core 0): MSET runs at once on the thread
#   redis         redis-server with appendonly yes, appendfsync everysec (core 0)
# and an MSET of 2 random keys (`MSET2`: on two threads, half of them span both).
# ROUNDS rounds (default 3), N requests per test (default 60000), P pipeline (default 1).
#   scripts/bench-mset.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p shardline
B=$PWD/target/release/shardline
D=$(mktemp -d /tmp/bench-mset.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"' EXIT
run() { # name port
  redis-benchmark -p "$2" -c 50 -n "${N:-60000}" -r 100000 -d 64 -P "${P:-1}" -t set,mset --csv 2>/dev/null \
    | tr -d '"' | awk -F, -v n="$1" 'NR>1{printf "%-13s %-15s %10.0f req/s  p50 %s ms  p99 %s ms\n", n, $1, $2, $5, $7}'
  redis-benchmark -p "$2" -c 50 -n "${N:-60000}" -r 100000 -P "${P:-1}" --csv \
    MSET 'k:__rand_int__' v 'k:__rand_int__' v 2>/dev/null \
    | tr -d '"' | awk -F, -v n="$1" 'NR>1{printf "%-13s %-15s %10.0f req/s  p50 %s ms  p99 %s ms\n", n, "MSET2", $2, $5, $7}'
}
for round in $(seq 1 "${ROUNDS:-3}"); do
  echo "== round $round"
  rm -rf "$D"/*; mkdir -p "$D/a" "$D/b" "$D/r"
  taskset -c 0,1 "$B" --port 7601 --cores 0,1 --data-dir "$D/a" --log-level warn & A=$!
  taskset -c 0 "$B" --port 7602 --cores 0 --data-dir "$D/b" --log-level warn & S=$!
  taskset -c 0 redis-server --port 7603 --save "" --appendonly yes --appendfsync everysec \
    --dir "$D/r" >/dev/null & R=$!
  sleep 1.5
  run shardline-2t 7601; run shardline-1t 7602; run redis 7603
  kill $A $S $R; wait $A $S $R 2>/dev/null || true
done
