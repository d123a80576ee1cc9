#!/usr/bin/env bash
# Long differential run against redis-server (Debian's redis-server package): every data
# command, the ones known to differ included, over SEEDS seeded sequences of 500 commands.
# Prints each command that differs with one example, and exits non-zero while any does.
#   SEEDS=500 scripts/differential.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIFF_ALL=1 DIFF_SEEDS="${SEEDS:-200}" cargo test --release --test differential -- --nocapture
