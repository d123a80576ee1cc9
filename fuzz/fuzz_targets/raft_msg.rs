//! Raft message and snapshot-blob decoding from arbitrary bytes: never panics; a decoded
//! message re-encodes to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::raft::{codec, conf};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = codec::decode(data) {
        let mut again = Vec::new();
        codec::encode(&m, &mut again);
        assert_eq!(&again[..], data);
    }
    let _ = conf::split_snapshot(&bytes::Bytes::copy_from_slice(data));
});
