#![no_main]
//! Snapshot captures (issue 19, step 3) under command sequences the fuzzer's bytes choose:
//! a node's vShards captured at one point, then changed by commands of every family, time
//! passing, active expiry, eviction, growth, shrinking and flushes between the walks'
//! pieces (`shardline_shards::snapshot::capture::check`): every capture decodes to exactly
//! what its vShard held at the start, and nothing panics.

use libfuzzer_sys::fuzz_target;
use shardline_shards::cmdfuzz::{Bytes, Choices};
use shardline_shards::snapshot::capture::check::captured_sequence;

fuzz_target!(|data: &[u8]| {
    let mut choices = Bytes { data, at: 0 };
    let n = 20 + choices.below(200);
    if let Err(e) = captured_sequence(&mut choices, n, 1) {
        panic!("{e}");
    }
});
