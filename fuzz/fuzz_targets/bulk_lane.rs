//! A bulk lane's bytes (`shardline_shards::migrate::hub`, issue 19) from a peer, arbitrary, on
//! either side of the lane (as target of a copy its group wants, and as source of one it
//! offers), in pieces as reads return them: never panics; a read never takes more than it was
//! given; a copy installs only at the offered length; what the hub writes back is whole frames.
//! With the first byte odd the target's copies go to a store (as a node's vShards' do), which
//! must get them in order, from offset 0 on.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardline_shards::ids::NodeId;
use shardline_shards::migrate::hub::{Dir, Hub};
use shardline_shards::migrate::session::Limits;
use shardline_shards::raft::{LogId, SnapshotWanted};

const PEER: NodeId = NodeId(1);
const TOTAL: u64 = 1 << 12;

fuzz_target!(|data: &[u8]| {
    let mut hub = Hub::new(Limits {
        chunk_bytes: 1 << 10,
        window_bytes: 1 << 11,
        resend_after_ms: 50,
    });
    let last = LogId { term: 1, index: 9 };
    hub.lane_up(PEER, Dir::Source);
    hub.lane_up(PEER, Dir::Target);
    let wanted = SnapshotWanted {
        from: PEER,
        term: 2,
        last,
        total: TOTAL,
    };
    let stored = data.first().is_some_and(|b| b & 1 == 1);
    if stored {
        hub.store_copies(|g| g == 3);
    }
    let mut kept: Vec<u8> = Vec::new();
    hub.want(3, Some(wanted), 0);
    let blob = Bytes::from(vec![7u8; TOTAL as usize]);
    hub.offer(PEER, 4, 2, last, &blob, 0);
    // Pieces as `dir: u8 | len: u16 | bytes`, one after another.
    let mut bufs = [Vec::new(), Vec::new()];
    let mut rest = data;
    let mut now = 0;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let dir = if head[0] & 1 == 0 { Dir::Source } else { Dir::Target };
        let len = (u16::from_le_bytes([head[1], head[2]]) as usize).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let buf = &mut bufs[dir as usize];
        buf.extend_from_slice(bytes);
        now += 13;
        let mut store = |g: u32, w: &SnapshotWanted, at: u64, b: &[u8]| {
            assert_eq!((g, *w), (3, wanted));
            if at == 0 {
                kept.clear();
            }
            assert_eq!(at, kept.len() as u64, "in order, no gap");
            kept.extend_from_slice(b);
            Ok(())
        };
        match hub.on_bytes(PEER, dir, buf, now, &mut store) {
            Ok(took) => {
                assert!(took <= buf.len());
                buf.drain(..took);
            }
            // The driver ends the connection: the lane goes down and up again.
            Err(_) => {
                buf.clear();
                hub.lane_down(PEER, dir);
                hub.lane_up(PEER, dir);
            }
        }
        for i in hub.take_installs() {
            let len = i.blob.map_or(kept.len(), |b| b.len());
            assert_eq!(len as u64, TOTAL);
            assert_eq!(i.wanted, wanted);
        }
        if head[0] & 2 != 0 {
            hub.tick(now);
        }
        for d in [Dir::Source, Dir::Target] {
            let mut out = Vec::new();
            hub.poll(PEER, d, &mut out, 1 << 14, now, &mut shardline_shards::migrate::hub::no_files);
            // Whole frames: each length covers what follows it, to the end.
            let mut at = 0;
            while at < out.len() {
                let len = u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize;
                at += 4 + len;
            }
            assert_eq!(at, out.len());
        }
    }
});
