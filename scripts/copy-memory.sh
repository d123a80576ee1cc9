#!/usr/bin/env bash
# Memory of a base copy of a large vShard (issue 19, step 3): two nodes (RF 1, 16 vShards),
# one vShard filled with SIZE_MB MiB of VALUE-byte values (every key in one hash tag), then
# moved to the other node with CLUSTER MOVE. Reported for each node: resident memory before
# the move, its peak during the move (VmHWM, reset before the move through
# /proc/<pid>/clear_refs) and after it, against the vShard's bytes; and the move's time.
# OLD=<shardline binary> runs the same with that build too, in the same run (for example a
# build from before copies were decoded as they arrived).
#   scripts/copy-memory.sh            # SIZE_MB=2048 VALUE=16384 REPEATS=1
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
exec /usr/bin/python3 scripts/copy_memory.py "$@"
