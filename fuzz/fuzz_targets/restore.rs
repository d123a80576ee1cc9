//! RESTORE's payload decoder from arbitrary bytes: the value bytes as they are (the checksum
//! checked by `rdb::verify` is bypassed, so the decoder proper is reached). Never panics, never
//! allocates beyond a bound of the input's size; whatever it accepts, DUMP writes and RESTORE
//! reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::db::Tunables;
use shardline_shards::rdb;

fuzz_target!(|data: &[u8]| {
    let t = Tunables::default();
    let _ = rdb::verify(data);
    if let Ok(v) = rdb::load(data, &t) {
        let again = rdb::dump(&v);
        let body = rdb::verify(&again).expect("our own payload verifies");
        rdb::load(body, &t).expect("our own payload loads");
    }
});
