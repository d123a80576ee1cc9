#!/usr/bin/env bash
# Compactions of a large vShard while it serves (issue 19, step 3): foreground latency on
# one shard thread whose large vShard compacts again and again, this build against OLD (a
# binary built before captures, e.g. from 822d770) alternated in one run, REPEATS times,
# medians quoted; results also go to target/bench/compaction.md.
#   One node on core 0 (`--raft-log-memory-bytes LOG_BYTES`, default 16mb), filled with a
#   vShard of SIZE_MB MB (one hash tag, VALUE-byte values); clients on core 1: a reader GETs
#   100-byte keys of other vShards at pipeline 1 (its latencies: p50, p99, p99.9, max) and a
#   writer overwrites the large vShard's values 16 to a pipeline, so its log passes the
#   budget and the vShard compacts every LOG_BYTES of writes. Before captures, each
#   compaction walked the whole vShard in one step of the thread; with them, a piece a step.
#   OLD=/path/to/old/shardline scripts/bench-compaction.sh   # SIZE_MB=256 SECONDS=20 REPEATS=3
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
exec /usr/bin/python3 scripts/bench_compaction.py "$@"
