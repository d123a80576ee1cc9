#!/usr/bin/env bash
# Shardline against redis-server, side by side in one run: each server pinned to the same single
# core (taskset), the load generator on another core, A/B runs alternated, REPEATS times.
# Prints per-workload throughput ratios, p99s and server CPU per request, the 1 -> 2 shard-core
# scaling, and bytes per key for 1M keys. Results also go to target/bench/vs-redis.md.
#
#   scripts/bench-vs-redis.sh                 # defaults: REPEATS=3 DURATION=5
#   REPEATS=5 DURATION=10 scripts/bench-vs-redis.sh
#
# Environment: SERVER_CORE (0), CLIENT_CORE (1), REPEATS, DURATION (s per shardline-bench run),
# SKIP_MEMORY=1, SKIP_SCALING=1, SKIP_REDIS_BENCHMARK=1, REDIS_AOF=everysec|always|no (how the
# redis-server peer persists; everysec by default, as Shardline's node alone does), VALUE (bytes,
# 64), TLS=1 (both servers' TLS ports, client certificates required, driven by redis-benchmark
# --tls; the shardline-bench comparison, scaling and memory are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
exec python3 scripts/bench_vs_redis.py "$@"
