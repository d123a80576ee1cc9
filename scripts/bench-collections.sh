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
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "== installing redis-server and redis-tools from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
echo "== building release binaries"
cargo build --release -q -p shardline -p shardline-bench
mkdir -p target/bench
exec python3 scripts/bench_collections.py "$@"
