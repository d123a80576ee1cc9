//! Calvin's messages between nodes (`shardline_shards::calvin::msg`) from arbitrary bytes, as
//! a peer's bus frame carries them: never panics, never takes an id out of range, and what
//! decodes encodes to bytes that decode to the same messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::calvin::msg;

fuzz_target!(|data: &[u8]| {
    let Some((&[threads, vshards], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (threads, vshards) = (threads as usize % 8 + 1, vshards as usize + 1);
    let Ok(msgs) = msg::decode_all(rest, threads, vshards) else {
        return;
    };
    let mut again = Vec::new();
    for (t, m) in &msgs {
        assert!(*t < threads);
        msg::encode(*t as u16, m, &mut again);
    }
    let back = msg::decode_all(&again, threads, vshards).expect("our own encoding decodes");
    assert_eq!(back, msgs);
});
