#!/usr/bin/env bash
# Scripts and functions against redis-server, side by side in one run (issue 18): EVALSHA of a
# small script (GET + INCR + EXPIRE of one key) and FCALL of the same logic as a function, at
# pipeline 1 and 16, each server pinned to the same single core (taskset), redis-benchmark on
# another, A/B runs alternated, REPEATS times; medians, ratios and p99s. Results also go to
# target/bench/scripts.md.
#
#   scripts/bench-scripts.sh                 # defaults: REPEATS=3 N=200000
#
# Environment: SERVER_CORE (0), CLIENT_CORE (1), REPEATS, N (requests per run at pipeline 1;
# 4x that at 16), REDIS_AOF (everysec: how the redis-server peer persists).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
exec python3 scripts/bench_scripts.py "$@"
