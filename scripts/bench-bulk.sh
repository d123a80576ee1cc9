#!/usr/bin/env bash
# Base-copy throughput (issue 19): how fast a joining node takes its share of a cluster's data
# through the snapshot copies, side by side in one run with iperf3's TCP throughput on the same
# loopback and the same two cores (Debian's iperf3), REPEATS times, medians quoted; results
# also go to target/bench/bulk.md.
#   1. iperf3 -s pinned to core 1, iperf3 -c pinned to core 0, 5 s, one stream;
#   2. the bulk lane alone: the ignored test `bulk_lane_throughput` copies LANE_BYTES (2 GiB)
#      between two shard runtimes (io_uring, as the shard threads build them) pinned to cores
#      0 and 1 through the real lane tasks and hubs, checked byte for byte; the source's bytes
#      on TCP, then on QUIC (quinn-proto driven by the shard threads, issue 19 step 5); and the
#      same copy through quinn on a tokio runtime per side handing bytes to and from the shard
#      threads over channels (bench/quinn-peer, built here: the alternative step 5 weighed);
#   3. three Shardline nodes (RF 3, fsync always, --vshards VSHARDS, a small in-memory log so
#      groups are compacted into snapshots) on cores 0, 1, 0, filled with KEYS keys of VALUE
#      bytes; a fourth node joins on core 1 and takes its share. Measured on the joining node
#      (INFO cluster's bulk_bytes_in, sampled every 20 ms): the bytes its copies brought, over
#      the time from the first byte to the last (the copy rate), and the time from its start
#      until no move is pending anywhere (the whole join).
#   BASE=/path/to/an/older/shardline also runs the join with that binary (its snapshots
#   travelled on the bus before bulk lanes; only the whole-join time compares).
#
#   NODE_ARGS="--bulk-max-bytes-per-sec 50000000" adds flags to every node; JOIN=0 skips 3.
#   scripts/bench-bulk.sh            # REPEATS=3 KEYS=300000 VALUE=1000 VSHARDS=16 LANE_BYTES=2147483648
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-prepare.sh
if ! command -v iperf3 >/dev/null; then
  echo "== installing iperf3 from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null
fi
echo "== building bench/quinn-peer (quinn on tokio, for the comparison)"
cargo build --release -q --manifest-path bench/quinn-peer/Cargo.toml
exec python3 scripts/bench_bulk.py "$@"
