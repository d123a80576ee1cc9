//! vShard snapshot decoding from arbitrary bytes (and from bytes with a valid checksum, so the
//! decoder proper is reached): never panics, never allocates beyond the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::db::Tunables;
use shardline_shards::snapshot;

fuzz_target!(|data: &[u8]| {
    let t = Tunables::default();
    let _ = snapshot::decode(data, &t);
    let mut sealed = data.to_vec();
    let crc = crc32c::crc32c(&sealed);
    sealed.extend_from_slice(&crc.to_le_bytes());
    let _ = snapshot::decode(&sealed, &t);
});
