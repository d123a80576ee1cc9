//! The cluster metadata's state machine under a peer's bytes (issue 19's moves and drains
//! included): arbitrary bytes as a metadata state, and as a sequence of commands applied to a
//! four-node state. Never panics; a refused command changes nothing; every state reached
//! encodes and decodes to itself (so it holds the rules `Meta::decode` checks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::meta::{Cmd, Meta};
use std::net::SocketAddr;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Meta::decode(data) {
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(Meta::decode(&b).as_ref(), Ok(&m), "a decoded state round-trips");
    }
    let list: Vec<_> = (0..4).map(|i| (addr(7001 + i), addr(17001 + i))).collect();
    let mut m = Meta::from_list([7; 16], 16, 3, &list, 2).expect("a listed cluster");
    // Commands: a length byte, then that many bytes, repeated.
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        let (cmd, tail) = tail.split_at(n);
        rest = tail;
        let Ok(cmd) = Cmd::decode(cmd) else { continue };
        let before = m.clone();
        if m.apply(&cmd).is_err() {
            assert_eq!(m, before, "a refused {cmd:?} changed the state");
        }
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(Meta::decode(&b).as_ref(), Ok(&m), "after {cmd:?}");
    }
});
