//! Node-to-node frame decoding from arbitrary bytes: never panics; a decoded frame re-encodes to
//! the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::frame::{self, Frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((f, used))) = frame::decode(data, 1 << 20) {
        let mut again = Vec::new();
        match &f {
            Frame::Hello(h) => frame::encode_hello(h, &mut again),
            Frame::Batch(m) => frame::encode_batch(m, &mut again),
            Frame::Refused(r) => frame::encode_refused(r, &mut again),
        }
        assert_eq!(&again[..], &data[..used]);
    }
});
