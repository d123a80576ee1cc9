#!/usr/bin/env bash
# Replicated figures (issue 3), each side by side with its peer in one run, REPEATS times,
# medians quoted; results also go to target/bench/replicated.md.
#   1. a 3-node Shardline cluster (RF 3, fsync always) against a 3-member etcd cluster (Debian's
#      etcd-server), same load generator (shardline-bench; --etcd for etcd's v3 JSON gateway),
#      same connections, 64-byte values, node/member i pinned to core (i-1) mod 2 on both sides;
#   2. one Shardline node, RF 1, fsync always, against redis-server with appendonly yes and
#      appendfsync always, pipeline 1 and 16;
#   3. idle CPU of a node hosting 1,024 vShard replicas (3 nodes, --vshards 1024, RF 3);
#   4. failover time over KILLS kill -9s of a node (median and max).
#   5. with TLS=1 (or ONLY_TLS=1 for it alone): the cost of mutual TLS on the bus, the same
#      3-node RF 3 cluster with its links under TLS and in clear, runs interleaved, 1 KB values,
#      pipeline 1 and 16.
#
#   scripts/bench-replicated.sh                 # REPEATS=3 DURATION=10 KILLS=10
# Environment: REPEATS, DURATION (s per run), CONNECTIONS (50), KILLS, SKIP_ETCD=1, SKIP_AOF=1,
# SKIP_IDLE=1, SKIP_FAILOVER=1, SHARDLINE=<binary> (another build than target/release's).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "== installing etcd-server and etcd-client from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
exec python3 scripts/bench_replicated.py "$@"
