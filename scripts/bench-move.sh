#!/usr/bin/env bash
# An operator's move under load (issue 19, step 4): foreground latency before and during a
# move, and the moved vShard's write gap at cutover, REPEATS times, medians quoted; results
# also go to target/bench/move.md.
#   Four nodes (RF 3, fsync always, --vshards 16, a small in-memory log so the new replica
#   gets a snapshot) on cores 0, 1, 0, 1, filled with KEYS keys of VALUE bytes
#   (shardline-bench --prefill). Two client processes (redis-py's RedisCluster, following
#   MOVED and TRYAGAIN as cluster clients do), one connection each, SET VALUE-byte values at
#   pipeline 1 as fast as they are answered: one on keys of the vShard that moves, one on
#   keys of the others. After BASELINE seconds, CLUSTER MOVE sends the vShard's replica on
#   its preferred leader's node to the fourth node that does not hold it (so the leadership
#   moves too); the clients go on until 2 s after the move is done.
#   Reported per client: p50 and p99 before and during the move (ratio), and the longest gap
#   between two accepted writes of the moving vShard's client during the move (the cutover's
#   unavailability as a client sees it) against its longest before.
#   NODE_ARGS adds flags to every node (e.g. "--bulk-max-bytes-per-sec 50mb").
#   scripts/bench-move.sh            # REPEATS=3 KEYS=200000 VALUE=1000 BASELINE=5
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
exec /usr/bin/python3 scripts/bench_move.py "$@"
