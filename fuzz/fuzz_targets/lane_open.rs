//! A bulk lane's lane-open record (`shardline_transport::lane::LaneOpen`, issue 19, steps 5
//! and 6) from arbitrary bytes, as a peer sends it right after the lane's hello: never
//! panics; what decodes encodes to the same bytes and names TCP, names a queue pair exactly
//! when it offers RDMA and a certificate exactly when it offers QUIC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::lane::{LaneOpen, QUIC, RDMA, TCP};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = LaneOpen::decode(data) {
        assert_eq!(r.encode().as_slice(), data, "one encoding");
        assert!(r.transports & TCP != 0);
        assert_eq!(r.rdma.is_some(), r.transports & RDMA != 0);
        assert_eq!(r.quic.is_some(), r.transports & QUIC != 0);
        let _ = r.carrier(&r);
    }
});
