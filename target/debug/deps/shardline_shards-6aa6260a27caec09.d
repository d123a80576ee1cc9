/work/main/target/debug/deps/shardline_shards-6aa6260a27caec09.d: shards/src/lib.rs shards/src/bytes.rs shards/src/command/mod.rs shards/src/command/connection.rs shards/src/command/hashes.rs shards/src/command/keys.rs shards/src/command/strings.rs shards/src/db.rs shards/src/dict.rs shards/src/glob.rs shards/src/mem.rs shards/src/num.rs shards/src/reply.rs shards/src/rng.rs shards/src/route.rs shards/src/slot.rs

/work/main/target/debug/deps/libshardline_shards-6aa6260a27caec09.rlib: shards/src/lib.rs shards/src/bytes.rs shards/src/command/mod.rs shards/src/command/connection.rs shards/src/command/hashes.rs shards/src/command/keys.rs shards/src/command/strings.rs shards/src/db.rs shards/src/dict.rs shards/src/glob.rs shards/src/mem.rs shards/src/num.rs shards/src/reply.rs shards/src/rng.rs shards/src/route.rs shards/src/slot.rs

/work/main/target/debug/deps/libshardline_shards-6aa6260a27caec09.rmeta: shards/src/lib.rs shards/src/bytes.rs shards/src/command/mod.rs shards/src/command/connection.rs shards/src/command/hashes.rs shards/src/command/keys.rs shards/src/command/strings.rs shards/src/db.rs shards/src/dict.rs shards/src/glob.rs shards/src/mem.rs shards/src/num.rs shards/src/reply.rs shards/src/rng.rs shards/src/route.rs shards/src/slot.rs

shards/src/lib.rs:
shards/src/bytes.rs:
shards/src/command/mod.rs:
shards/src/command/connection.rs:
shards/src/command/hashes.rs:
shards/src/command/keys.rs:
shards/src/command/strings.rs:
shards/src/db.rs:
shards/src/dict.rs:
shards/src/glob.rs:
shards/src/mem.rs:
shards/src/num.rs:
shards/src/reply.rs:
shards/src/rng.rs:
shards/src/route.rs:
shards/src/slot.rs:
