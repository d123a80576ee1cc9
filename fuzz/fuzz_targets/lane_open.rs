//! A bulk lane's lane-open record (`shardline_transport::rdma::LaneOpen`, issue 19, step 6)
//! from arbitrary bytes, as a peer sends it right after the lane's hello: never panics; what
//! decodes encodes to the same bytes and names TCP, and names a queue pair exactly when it
//! offers RDMA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::rdma::{LaneOpen, RDMA, TCP};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = LaneOpen::decode(data) {
        assert_eq!(r.encode().as_slice(), data, "one encoding");
        assert!(r.transports & TCP != 0);
        assert_eq!(r.rdma.is_some(), r.transports & RDMA != 0);
        let _ = r.rdma_with(&r);
    }
});
