//! A bulk session's messages (`shardline_shards::migrate::session`, issue 19) from arbitrary
//! bytes, as a peer's transport carries them: never panics; what decodes encodes to the same
//! bytes; a target and a source fed whatever decodes never accept a byte past the copy, and
//! the target never holds more than the copy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::migrate::session::{BulkMsg, Limits, Received, Receiver, Sender};

fuzz_target!(|data: &[u8]| {
    let mut target = Receiver::new(1, 1 << 16);
    let mut source = Sender::new(1, 1 << 16, Limits::default(), 0);
    // Messages as `len: u16 | bytes`, one after another.
    let mut rest = data;
    let mut now = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = (u16::from_le_bytes(*len) as usize).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let Ok(msg) = BulkMsg::decode(bytes) else {
            continue;
        };
        let mut again = Vec::new();
        msg.encode(&mut again);
        assert_eq!(again, bytes, "one encoding");
        now += 7;
        let _ = source.on_msg(&msg, now);
        let _ = source.tick(now);
        assert!(source.acked() <= 1 << 16);
        let before = target.held();
        if let (Received::Accepted(b), _) = target.on_msg(msg) {
            assert_eq!(before + b.len() as u64, target.held());
        }
        assert!(target.held() <= 1 << 16);
    }
});
