//! A bulk lane's QUIC ends (`shardline_transport::quic::Pipe`, issue 19 step 5) fed arbitrary
//! datagrams, as anyone who can reach a lane's UDP port may send them: a target waiting for
//! its source, and a source connecting, each given the pieces of the input (a length byte
//! before each) as datagrams from the peer's address and from a stranger's, with their
//! timers run between: nothing panics, and no bytes are read from a connection nobody
//! authenticated.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardline_transport::quic::{Identity, Pipe};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn ids() -> &'static (Identity, Identity) {
    static IDS: OnceLock<(Identity, Identity)> = OnceLock::new();
    IDS.get_or_init(|| (Identity::generate().unwrap(), Identity::generate().unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let (ours, theirs) = ids();
    let mut now = Instant::now();
    let peer = "127.0.0.1:4000".parse().unwrap();
    let stranger = "127.0.0.9:1".parse().unwrap();
    let target_at = "127.0.0.1:5000".parse().unwrap();
    let mut target = Pipe::server(ours, theirs.fingerprint).unwrap();
    let mut source = Pipe::client(ours, theirs.fingerprint, target_at, now).unwrap();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize * 8).min(tail.len());
        let (d, tail) = tail.split_at(n);
        rest = tail;
        let from = if i % 3 == 2 { stranger } else { peer };
        target.datagram(now, from, BytesMut::from(d));
        source.datagram(now, target_at, BytesMut::from(d));
        for p in [&mut target, &mut source] {
            while p.transmit(now, &mut out).is_some() {}
            now += Duration::from_millis(7);
            p.on_timeout(now);
            let mut got = Vec::new();
            let _ = p.read(&mut got, 1 << 16);
            assert!(got.is_empty(), "bytes from a connection nobody authenticated");
            let _ = p.write(b"x");
        }
        i += 1;
    }
    assert!(!target.connected());
});
