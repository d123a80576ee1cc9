//! Recovery of a write-ahead log from arbitrary segment bytes: never panics, and whatever it
//! accepts it accepts consistently (a valid header then any tail).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::wal::record::Header;
use shardline_shards::wal::{Engine, FsyncPolicy, WalConfig};

fuzz_target!(|data: &[u8]| {
    let cfg = WalConfig {
        shard: 0,
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::Always,
    };
    // As given, and behind a valid header so the record decoder is reached.
    let _ = Engine::recover(cfg, vec![(1, data.to_vec())]);
    let mut seg = Header { shard: 0, seq: 1 }.encode().to_vec();
    seg.extend_from_slice(data);
    let _ = Engine::recover(cfg, vec![(1, seg)]);
});
