//! Concurrent clients against one node, their histories checked for linearizability per key with
//! the Wing-Gong checker (`shardline-testkit`). The crash and partition tests of replication will
//! feed it the same way.

mod common;

use common::Server;
use redis::Commands;
use shardline_testkit::lincheck::{Op, OpKind, check_register};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[test]
fn concurrent_sets_and_gets_on_shared_keys_are_linearizable() {
    let s = Server::start("0-1", &[]);
    let start = Instant::now();
    let keys = ["lin:a", "lin:b", "lin:c"];
    // (key index, operation) from every client.
    type Shared = Arc<Mutex<Vec<(usize, Op<u64>)>>>;
    let history: Shared = Arc::default();
    let clients: Vec<_> = (0..6u32)
        .map(|client| {
            let url = s.url();
            let history = history.clone();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut x = 0x9E37_79B9u64 ^ client as u64;
                for n in 0..150u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (x % 3) as usize;
                    let call = start.elapsed().as_nanos() as u64;
                    let kind = if x & 8 == 0 {
                        let v = client as u64 * 1_000_000 + n;
                        let _: () = c.set(keys[k], v).unwrap();
                        OpKind::Write(v)
                    } else {
                        OpKind::Read(c.get(keys[k]).unwrap())
                    };
                    let ret = Some(start.elapsed().as_nanos() as u64);
                    history.lock().unwrap().push((
                        k,
                        Op {
                            client,
                            call,
                            ret,
                            kind,
                        },
                    ));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let all = history.lock().unwrap();
    for (k, key) in keys.iter().enumerate() {
        let ops: Vec<Op<u64>> = all
            .iter()
            .filter(|(i, _)| *i == k)
            .map(|(_, o)| o.clone())
            .collect();
        assert!(ops.len() > 100, "{key}: {} operations", ops.len());
        if let Err(history) = check_register(&ops) {
            panic!("{key}: {history}");
        }
    }
}
