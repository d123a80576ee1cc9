#!/usr/bin/env bash
# The replicated path's restart check (what a change to the log, snapshots or recovery should
# pass before it lands): a 3-node cluster (RF 3, fsync always) on loopback, 60,000 keys of
# 1 KB written through redis-py's cluster client, then 15 s of 4 KB pipelined writes from
# shardline-bench, then every node stopped and started again; each node must then hold all
# 60,000 keys (read with READONLY from its own replicas).
#   scripts/restart-check.sh        # BASE_PORT 7001..7003, CLUSTER_DIR /tmp/restart-check
# Needs redis-py (Debian: python3-redis) for /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLUSTER_DIR=${CLUSTER_DIR:-/tmp/restart-check}
export BASE_PORT=${BASE_PORT:-7001}
PY=/usr/bin/python3
cargo build --release -q -p shardline -p shardline-bench
export SHARDLINE=$PWD/target/release/shardline
bash scripts/cluster.sh stop >/dev/null 2>&1 || true
rm -rf "$CLUSTER_DIR"
trap 'bash scripts/cluster.sh stop >/dev/null 2>&1 || true' EXIT
bash scripts/cluster.sh start 3 >/dev/null
$PY - "$BASE_PORT" <<'PY'
import sys, time, redis
from redis.cluster import RedisCluster, ClusterNode
# Right after formation the nodes may still disagree on who leads what for a moment (leaders'
# hints travel once a second), and leaders are handed to the preferred replicas (a slot is
# unserved for a moment each): start once every node serves every slot, has no handover
# pending, and all three answer the same CLUSTER SLOTS.
base = int(sys.argv[1])
deadline = time.time() + 30
while time.time() < deadline:
    nodes = [redis.Redis(port=base + i) for i in range(3)]
    views = [n.execute_command("CLUSTER", "SLOTS") for n in nodes]
    settled = all(
        n.info("cluster").get("cluster_moves_pending") == 0
        and b"cluster_slots_ok:16384" in n.execute_command("CLUSTER", "INFO")
        for n in nodes
    )
    if settled and all(sorted(map(str, v)) == sorted(map(str, views[0])) for v in views):
        break
    time.sleep(0.2)
rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", int(sys.argv[1]))])
v = b"x" * 1000
p = rc.pipeline()
for i in range(60000):
    p.set(f"k:{i}", v)
    if i % 500 == 499:
        p.execute()
        p = rc.pipeline()
p.execute()
print("written: 60000 keys of 1 KB")
PY
target/release/shardline-bench --port "$BASE_PORT" --cluster --workload set --connections 16 \
  --pipeline 16 --keys 20000 --value-size 4096 --duration 15 --quiet >/dev/null
echo "load: 15 s of 4 KB writes"
bash scripts/cluster.sh stop >/dev/null
bash scripts/cluster.sh start 3 >/dev/null
$PY - "$BASE_PORT" <<'PY'
import sys, time, redis
base = int(sys.argv[1])
bad_nodes = 0
for port in (base, base + 1, base + 2):
    r = redis.Redis(port=port)
    r.execute_command("READONLY")
    missing = list(range(60000))
    deadline = time.time() + 20  # a follower applies once it hears the commit index
    while missing and time.time() < deadline:
        missing = [i for i in missing if r.get(f"k:{i}") != b"x" * 1000]
        if missing:
            time.sleep(0.5)
    print(f"node {port}: {60000 - len(missing)} of 60000 keys after the restart")
    bad_nodes += bool(missing)
sys.exit(1 if bad_nodes else 0)
PY
