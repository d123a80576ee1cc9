#!/usr/bin/env bash
# A local replicated cluster on loopback.
#   scripts/cluster.sh start [N]   start N nodes (default 3) on ports BASE_PORT.. (default 7001),
#                                  wait until every slot has a leader, print the addresses
#   scripts/cluster.sh status      each node's process and CLUSTER INFO
#   scripts/cluster.sh stop        stop every node (SIGTERM)
# Environment: BASE_PORT (7001), CLUSTER_DIR (/tmp/shardline-cluster: data and logs),
# REPLICAS (cluster-replicas, default min(3, N)), FSYNC (always), SHARDLINE (the binary; built in
# release mode if not given), CORES_PER_NODE (1: node i is pinned to core (i-1) mod cores),
# EXTRA (more flags for every node).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PORT=${BASE_PORT:-7001}
DIR=${CLUSTER_DIR:-/tmp/shardline-cluster}
FSYNC=${FSYNC:-always}
CORES_PER_NODE=${CORES_PER_NODE:-1}

bin() {
  if [ -n "${SHARDLINE:-}" ]; then echo "$SHARDLINE"; return; fi
  if [ ! -x target/release/shardline ] || [ -n "$(find src shards/src transport/src -newer target/release/shardline -name '*.rs' | head -1)" ]; then
    cargo build --release -q -p shardline >&2
  fi
  echo "$PWD/target/release/shardline"
}

alive() { # pid -> exit 0 when the process runs (a zombie does not count)
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null
}

ping() { # port -> exit 0 when the node answers
  exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  local line; read -r -t 1 line <&3 || true
  exec 3<&- 3>&-
  [[ "$line" == +PONG* ]]
}

cluster_state() { # port -> prints ok/fail
  exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null || { echo down; return; }
  printf '*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n' >&3
  local line state=unknown
  while read -r -t 1 line <&3; do
    case "$line" in cluster_state:*) state=${line#cluster_state:}; state=${state%$'\r'}; break;; esac
  done
  exec 3<&- 3>&-
  echo "$state"
}

start() {
  local n=${1:-3}
  local shardline; shardline=$(bin)
  local ncpu; ncpu=$(nproc)
  mkdir -p "$DIR"
  local nodes=""
  for i in $(seq 1 "$n"); do nodes+="${nodes:+,}127.0.0.1:$((BASE_PORT + i - 1))"; done
  echo "$n" > "$DIR/size"
  for i in $(seq 1 "$n"); do
    local port=$((BASE_PORT + i - 1))
    if [ -f "$DIR/node-$i.pid" ] && alive "$(cat "$DIR/node-$i.pid")"; then
      echo "node $i (port $port) is already running"; continue
    fi
    local cores="" c
    for c in $(seq 0 $((CORES_PER_NODE - 1))); do
      cores+="${cores:+,}$(( ((i - 1) * CORES_PER_NODE + c) % ncpu ))"
    done
    # shellcheck disable=SC2086
    "$shardline" --port "$port" --cores "$cores" --data-dir "$DIR/node-$i" \
      --cluster-nodes "$nodes" ${REPLICAS:+--cluster-replicas "$REPLICAS"} --fsync "$FSYNC" \
      ${EXTRA:-} >>"$DIR/node-$i.log" 2>&1 &
    echo $! > "$DIR/node-$i.pid"
  done
  local deadline=$((SECONDS + 60))
  for i in $(seq 1 "$n"); do
    local port=$((BASE_PORT + i - 1))
    until [ "$(cluster_state "$port")" = ok ]; do
      if ! alive "$(cat "$DIR/node-$i.pid")"; then
        echo "node $i exited; its log:" >&2; tail -20 "$DIR/node-$i.log" >&2; exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then echo "node $i: not every slot has a leader after 60 s" >&2; exit 1; fi
      sleep 0.2
    done
  done
  echo "cluster of $n nodes is up; data and logs under $DIR"
  for i in $(seq 1 "$n"); do echo "127.0.0.1:$((BASE_PORT + i - 1))"; done
}

status() {
  local n; n=$(cat "$DIR/size" 2>/dev/null || echo 0)
  [ "$n" -gt 0 ] || { echo "no cluster under $DIR"; return 1; }
  for i in $(seq 1 "$n"); do
    local port=$((BASE_PORT + i - 1)) pid state
    pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
    if alive "$pid"; then state="running (pid $pid), cluster_state:$(cluster_state "$port")"; else state="stopped"; fi
    echo "node $i 127.0.0.1:$port $state"
  done
}

stop() {
  local n; n=$(cat "$DIR/size" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    local pid; pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 "$n"); do
    local pid; pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
    while alive "$pid"; do sleep 0.1; done
    rm -f "$DIR/node-$i.pid"
  done
  echo "stopped"
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start [N] | status | stop" >&2; exit 2 ;;
esac
