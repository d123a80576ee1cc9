# Sourced by the bench-*.sh scripts: installs redis-server, redis-tools and python3-redis from
# Debian's packages when missing, and builds the release binaries.
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "== installing redis-server and redis-tools from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# The Python drivers' client (redis-py).
if ! /usr/bin/python3 -c "import redis" 2>/dev/null; then
  echo "== installing python3-redis from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq python3-redis >/dev/null
fi
echo "== building release binaries"
cargo build --release -q -p shardline -p shardline-bench
mkdir -p target/bench
