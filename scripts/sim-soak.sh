#!/usr/bin/env bash
# Long runs of the whole-cluster simulator (src/cluster/replica/sim/): SIM_SEEDS seeds of each
# scenario from SIM_SEED_START (hex; default: the time), in release. A failure prints its seed;
# replay it with
#   SIM_SEED=<hex> cargo test --release --bin shardline sim_ -- --nocapture
# Usage: SIM_SEEDS=2000 SIM_SEED_START=100000 scripts/sim-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SIM_SEEDS="${SIM_SEEDS:-1000}"
export SIM_SEED_START="${SIM_SEED_START:-$(printf '%x' "$(date +%s)")}"
echo "sim soak: $SIM_SEEDS seeds per scenario from $SIM_SEED_START"
out=$(mktemp)
status=0
cargo test --release --bin shardline sim_ -- --nocapture --test-threads 1 >"$out" 2>&1 || status=$?
grep -E 'panicked|^seed 0x|test result' "$out" || true
echo "$(grep -c '^sim seed' "$out") seeds run; full output in $out"
exit "$status"
