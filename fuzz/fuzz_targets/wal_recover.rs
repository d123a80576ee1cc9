//! Recovery of a write-ahead log from arbitrary segment bytes: never panics, and whatever it
//! accepts it accepts consistently (a valid header then any tail). A third run frames the
//! input as records with valid checksums, so what is inside a record (kinds, unit records'
//! entries, entries that do not follow their group's log) is reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::wal::record::{self, Header, Kind, Record};
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
    // Records: kind byte, group byte, index byte, term byte, payload length byte, payload.
    let mut seg = Header { shard: 0, seq: 1 }.encode().to_vec();
    let mut rest = data;
    while rest.len() >= 5 {
        let kind = match rest[0] % 6 {
            0 => Kind::Entry,
            1 => Kind::Truncate,
            2 => Kind::Purge,
            3 => Kind::State,
            4 => Kind::Reset,
            _ => Kind::Unit,
        };
        let n = (rest[4] as usize).min(rest.len() - 5);
        let r = Record {
            kind,
            group: rest[1] as u32 % 4,
            index: rest[2] as u64 % 16,
            term: rest[3] as u64 % 4,
            payload: &rest[5..5 + n],
        };
        record::encode(&r, &mut seg);
        rest = &rest[5 + n..];
    }
    let _ = Engine::recover(cfg, vec![(1, seg)]);
});
