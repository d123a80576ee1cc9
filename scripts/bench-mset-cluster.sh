#!/usr/bin/env bash
# Multi-key writes across the nodes of a cluster (Calvin transactions, issue 17) against
# single-key writes, in one run, on a 3-node cluster with replication factor 3 on loopback
# (scripts/cluster.sh: fsync always, node i pinned to core (i-1) mod 2), redis-benchmark with
# 50 connections, 100,000 random keys, 64-byte values:
#   SET (--cluster)        single-key writes, each to its slot's leader: one Raft commit
#   MSET tagged (--cluster) 10 keys in one hash tag: one vShard, one Raft commit
#   MSET across            10 random keys on a plain connection to node 1: spans vShards led
#                          by all three nodes, a Calvin transaction (sequencer commit, reads
#                          exchanged, one execution entry per participant vShard)
#   MSET2 across           the same with 2 random keys (two participants; the nodes run with
#                          `--cluster-routing proxy`, as the rare pair in one vShard led
#                          elsewhere would be -MOVED to a plain connection)
# and redis-server's MSET (appendonly yes, appendfsync always, core 0) on one node as the
# single-node reference. ROUNDS rounds (default 3), N requests per test (default 20000).
#   scripts/bench-mset-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p shardline
export SHARDLINE=$PWD/target/release/shardline
export CLUSTER_DIR=$(mktemp -d /tmp/bench-mset-cluster.XXXXXX)
export BASE_PORT=7701
R=$(mktemp -d /tmp/bench-mset-redis.XXXXXX)
trap 'scripts/cluster.sh stop >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$CLUSTER_DIR" "$R"' EXIT
N=${N:-20000}
row() { # name, then redis-benchmark arguments
  local name=$1; shift
  redis-benchmark -c 50 -n "$N" -r 100000 -d 64 --csv "$@" 2>/dev/null \
    | tr -d '"' | awk -F, -v n="$name" 'NR>1 && $2+0>0{printf "%-24s %10.0f req/s  p50 %s ms  p99 %s ms\n", n, $2, $5, $7}'
}
for round in $(seq 1 "${ROUNDS:-3}"); do
  echo "== round $round"
  rm -rf "${CLUSTER_DIR:?}"/* "${R:?}"/*
  EXTRA="--cluster-routing proxy" scripts/cluster.sh start 3 >/dev/null
  row "shardline SET" --cluster -p 7701 -t set
  row "shardline MSET tagged" --cluster -p 7701 -t mset
  row "shardline MSET across" -p 7701 -t mset
  row "shardline MSET2 across" -p 7701 MSET 'k:__rand_int__' v 'k:__rand_int__' v
  scripts/cluster.sh stop >/dev/null
  taskset -c 0 redis-server --port 7799 --save "" --appendonly yes --appendfsync always \
    --dir "$R" >/dev/null & P=$!
  sleep 1
  row "redis MSET (one node)" -p 7799 -t mset
  row "redis MSET2 (one node)" -p 7799 MSET 'k:__rand_int__' v 'k:__rand_int__' v
  kill $P; wait $P 2>/dev/null || true
done
