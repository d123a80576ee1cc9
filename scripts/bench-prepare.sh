# Sourced by the bench-*.sh scripts: installs redis-server and redis-tools from Debian's packages
# when missing, and builds the release binaries.
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "== installing redis-server and redis-tools from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
echo "== building release binaries"
cargo build --release -q -p shardline -p shardline-bench
mkdir -p target/bench
