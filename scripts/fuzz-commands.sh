#!/usr/bin/env bash
# Long run of the seeded command fuzzer (shards/src/cmdfuzz.rs): SEEDS sequences of 400 random
# commands through the command table and routing on two shard threads, in a debug build (so
# arithmetic overflow panics) unless RELEASE=1. A failure prints the seed and the commands.
#   SEEDS=10000 scripts/fuzz-commands.sh
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
[ -n "${RELEASE:-}" ] && profile=(--release)
CMD_FUZZ_SEEDS="${SEEDS:-5000}" cargo test "${profile[@]}" -p shardline-shards cmdfuzz -- --nocapture
