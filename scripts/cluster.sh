#!/usr/bin/env bash
# A local replicated cluster on loopback.
#   scripts/cluster.sh start [N]   start N nodes (default 3) on ports BASE_PORT.. (default 7001),
#                                  wait until every slot has a leader, print the addresses
#   scripts/cluster.sh add         start one more node that joins the running cluster (through
#                                  the first node; it takes its share of the replicas)
#   scripts/cluster.sh remove I    node I hands its replicas to the others (CLUSTER FORGET), then
#                                  leaves and exits; a node that is down is removed the same way
#                                  (its replicas are made again on the others); `start` skips it
#                                  from then on
#   scripts/cluster.sh status      each node's process and CLUSTER INFO
#   scripts/cluster.sh stop        stop every node (SIGTERM); returns once each has exited and
#                                  released its data directory
# Environment: BASE_PORT (7001), CLUSTER_DIR (/tmp/shardline-cluster: data and logs),
# REPLICAS (cluster-replicas, default min(3, N)), FSYNC (always), SHARDLINE (the binary; built in
# release mode if not given), CORES_PER_NODE (1: node i is pinned to core (i-1) mod cores),
# EXTRA (more flags for every node), TLS (1, the default: the nodes' links are mutual TLS under a
# development CA and secret that `shardline ctl certs` makes in $CLUSTER_DIR/certs, each node's
# certificate made when it first starts; 0: links in clear).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PORT=${BASE_PORT:-7001}
DIR=${CLUSTER_DIR:-/tmp/shardline-cluster}
FSYNC=${FSYNC:-always}
CORES_PER_NODE=${CORES_PER_NODE:-1}
TLS=${TLS:-1}

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
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  local line; read -r -t 1 line <&3 || true
  exec 3<&- 3>&-
  [[ "$line" == +PONG* ]]
}

cluster_state() { # port -> prints ok/fail
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || { echo down; return; }
  printf '*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n' >&3
  local line state=unknown
  while read -r -t 1 line <&3; do
    case "$line" in cluster_state:*) state=${line#cluster_state:}; state=${state%$'\r'}; break;; esac
  done
  exec 3<&- 3>&-
  echo "$state"
}

# One command to a node: prints the first line of its reply (`cmd port arg...`).
cmd() {
  local port=$1; shift
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "-ERR node on port $port is down"; return; }
  local req="*$#"$'\r\n' a
  for a in "$@"; do req+="\$${#a}"$'\r\n'"$a"$'\r\n'; done
  printf '%s' "$req" >&3
  local line=""; read -r -t 5 line <&3 || true
  exec 3<&- 3>&-
  echo "${line%$'\r'}"
}

# A node that left (it wrote REMOVED) or that was removed while it was down (`remove I`).
removed() { [ -f "$DIR/node-$1/REMOVED" ] || [ -f "$DIR/node-$1.removed" ]; }

# The 40-character name of the node whose client port is $2, as the member on port $1 lists it
# in CLUSTER NODES (prints nothing if it is not listed).
name_by_port() {
  local via=$1 port=$2 line
  { exec 3<>"/dev/tcp/127.0.0.1/$via"; } 2>/dev/null || return 0
  printf '*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n' >&3
  while read -r -t 1 line <&3; do
    case "$line" in *" 127.0.0.1:$port@"*) echo "${line%% *}"; break;; esac
  done
  exec 3<&- 3>&-
}

# The first node that was not removed (joins go through it).
first_member() {
  local n; n=$(cat "$DIR/size")
  for i in $(seq 1 "$n"); do removed "$i" || { echo "$i"; return; }; done
  echo 1
}

# Starts node i (1-based): one of the first `listed` nodes from the static list, any later one
# by joining through the first node.
start_node() {
  local i=$1 listed=$2 shardline=$3
  local port=$((BASE_PORT + i - 1)) ncpu; ncpu=$(nproc)
  if [ -f "$DIR/node-$i.pid" ] && alive "$(cat "$DIR/node-$i.pid")"; then
    echo "node $i (port $port) is already running"; return
  fi
  if removed "$i"; then echo "node $i was removed from the cluster: not started"; return; fi
  local cores="" c
  for c in $(seq 0 $((CORES_PER_NODE - 1))); do
    cores+="${cores:+,}$(( ((i - 1) * CORES_PER_NODE + c) % ncpu ))"
  done
  local nodes="" j
  for j in $(seq 1 "$listed"); do nodes+="${nodes:+,}127.0.0.1:$((BASE_PORT + j - 1))"; done
  local membership=(--cluster-nodes "$nodes")
  [ "$i" -le "$listed" ] || membership=(--cluster-join "127.0.0.1:$((BASE_PORT + $(first_member) - 1))")
  local tls=()
  if [ "$TLS" = 1 ]; then
    local certs="$DIR/certs" stem="127.0.0.1_$port"
    [ -f "$certs/$stem.pem" ] || "$shardline" ctl certs "$certs" "127.0.0.1:$port" >/dev/null
    tls=(--cluster-tls-ca-file "$certs/ca.pem" --cluster-tls-cert-file "$certs/$stem.pem"
         --cluster-tls-key-file "$certs/$stem.key" --cluster-secret-file "$certs/cluster.secret")
  fi
  # shellcheck disable=SC2086
  "$shardline" --port "$port" --cores "$cores" --data-dir "$DIR/node-$i" \
    "${membership[@]}" "${tls[@]}" ${REPLICAS:+--cluster-replicas "$REPLICAS"} --fsync "$FSYNC" \
    ${EXTRA:-} >>"$DIR/node-$i.log" 2>&1 &
  echo $! > "$DIR/node-$i.pid"
}

start() {
  local n=${1:-3}
  local shardline; shardline=$(bin)
  mkdir -p "$DIR"
  # A cluster started before (and maybe grown by `add`) restarts with the same nodes.
  local listed=$n
  if [ -f "$DIR/listed" ]; then listed=$(cat "$DIR/listed"); n=$(cat "$DIR/size"); fi
  echo "$listed" > "$DIR/listed"
  echo "$n" > "$DIR/size"
  for i in $(seq 1 "$n"); do start_node "$i" "$listed" "$shardline"; done
  wait_up "$n"
  echo "cluster of $n nodes is up; data and logs under $DIR"
  for i in $(seq 1 "$n"); do removed "$i" || echo "127.0.0.1:$((BASE_PORT + i - 1))"; done
}

add() {
  [ -f "$DIR/size" ] || { echo "no cluster under $DIR: start one first" >&2; exit 1; }
  local n listed shardline; n=$(( $(cat "$DIR/size") + 1 )); listed=$(cat "$DIR/listed")
  shardline=$(bin)
  echo "$n" > "$DIR/size"
  start_node "$n" "$listed" "$shardline"
  wait_up "$n"
  echo "node $n joined: 127.0.0.1:$((BASE_PORT + n - 1)) (replicas move to it in the background)"
}

wait_up() { # n: waits until nodes 1..n see a leader for every slot
  local n=$1
  local deadline=$((SECONDS + 60))
  for i in $(seq 1 "$n"); do
    local port=$((BASE_PORT + i - 1))
    removed "$i" && continue
    until [ "$(cluster_state "$port")" = ok ]; do
      if ! alive "$(cat "$DIR/node-$i.pid")"; then
        echo "node $i exited; its log:" >&2; tail -20 "$DIR/node-$i.log" >&2; exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then echo "node $i: not every slot has a leader after 60 s" >&2; exit 1; fi
      sleep 0.2
    done
  done
}

status() {
  local n; n=$(cat "$DIR/size" 2>/dev/null || echo 0)
  [ "$n" -gt 0 ] || { echo "no cluster under $DIR"; return 1; }
  for i in $(seq 1 "$n"); do
    local port=$((BASE_PORT + i - 1)) pid state
    pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
    if alive "$pid"; then state="running (pid $pid), cluster_state:$(cluster_state "$port")";
    elif removed "$i"; then state="removed from the cluster"; else state="stopped"; fi
    echo "node $i 127.0.0.1:$port $state"
  done
}

remove() {
  local i=${1:?which node (1-based)}
  local port=$((BASE_PORT + i - 1)) id="" line down=""
  local via=$BASE_PORT n; n=$(cat "$DIR/size")
  for j in $(seq 1 "$n"); do
    [ "$j" != "$i" ] && ! removed "$j" && ping $((BASE_PORT + j - 1)) && { via=$((BASE_PORT + j - 1)); break; }
  done
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    printf '*2\r\n$4\r\nINFO\r\n$7\r\ncluster\r\n' >&3
    while read -r -t 1 line <&3; do
      case "$line" in cluster_member_id:*) id=${line#cluster_member_id:}; id=${id%$'\r'}; break;; esac
    done
    exec 3<&- 3>&-
    [ -n "$id" ] || { echo "node $i did not say its member id" >&2; exit 1; }
  else
    # Down: a live member names it by its address.
    down=1
    id=$(name_by_port "$via" "$port")
    [ -n "$id" ] || { echo "node $i (port $port) does not answer and no live member lists it" >&2; exit 1; }
  fi
  local reply
  for _ in $(seq 1 16); do
    reply=$(cmd "$via" CLUSTER FORGET "$id")
    case "$reply" in
      -NOTLEADER*) via=$(echo "$reply" | awk '{print $2}'); via=${via##*:} ;;
      -TRYAGAIN*) sleep 0.2 ;;
      *) break ;;
    esac
  done
  [ "$reply" = "+OK" ] || { echo "CLUSTER FORGET $id: $reply" >&2; exit 1; }
  if [ -n "$down" ]; then
    touch "$DIR/node-$i.removed"
    echo "node $i (member $id) was down and is removed: its replicas are made again on the others; start will not start it"
    return
  fi
  echo "node $i (member $id) is leaving: its replicas move to the others"
  local pid deadline=$((SECONDS + 300)); pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
  while alive "$pid"; do
    [ $SECONDS -lt $deadline ] || { echo "node $i still runs after 300 s (see cluster_moves_pending)" >&2; exit 1; }
    sleep 0.2
  done
  echo "node $i left the cluster and exited"
}

stop() {
  local n; n=$(cat "$DIR/size" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    local pid; pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 "$n"); do
    local pid deadline=$((SECONDS + 120)); pid=$(cat "$DIR/node-$i.pid" 2>/dev/null || echo "")
    while alive "$pid"; do
      [ $SECONDS -lt $deadline ] || { echo "node $i (pid $pid) still runs 120 s after SIGTERM" >&2; exit 1; }
      sleep 0.1
    done
    # A process whose main thread is gone can still hold the data directory while its other
    # threads finish (a long fsync): done only once its lock is free.
    if [ -f "$DIR/node-$i/LOCK" ]; then
      until flock -n "$DIR/node-$i/LOCK" true; do
        [ $SECONDS -lt $deadline ] || { echo "node $i: its data directory is still locked 120 s after SIGTERM" >&2; exit 1; }
        sleep 0.1
      done
    fi
    rm -f "$DIR/node-$i.pid"
  done
  echo "stopped"
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  add) add ;;
  remove) remove "${2:-}" ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start [N] | add | remove I | status | stop" >&2; exit 2 ;;
esac
