#!/usr/bin/env bash
# Collections against redis-server in one run: bytes per element of a 1M-member set, sorted set
# and hash (and of many small hashes, the packed encoding), and LPUSH/LPOP/ZADD/ZRANGE throughput
# with redis-benchmark as the client of both, each server pinned to the same core. Results also go
# to target/bench/collections.md.
#
#   scripts/bench-collections.sh                  # REPEATS=3, pipelines 1 and 16
#   REPEATS=5 PIPELINES=16 scripts/bench-collections.sh
#
# Environment: SERVER_CORE (0), CLIENT_CORE (1), REPEATS, PIPELINES, REQUESTS, MEMBERS,
# SKIP_MEMORY=1, SKIP_THROUGHPUT=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
exec python3 scripts/bench_collections.py "$@"
