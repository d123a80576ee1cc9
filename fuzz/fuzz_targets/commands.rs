#![no_main]
//! Command sequences chosen by the fuzzer's bytes through the real command table and routing
//! on a node of two shard threads (`shardline_shards::cmdfuzz`): no panic, and the keyspace
//! invariants hold after every command.

use libfuzzer_sys::fuzz_target;
use shardline_shards::cmdfuzz::{Bytes, Node, command};

fuzz_target!(|data: &[u8]| {
    let mut choices = Bytes { data, at: 0 };
    let mut node = Node::new(2, 1);
    while !choices.exhausted() {
        let argv = command(&mut choices);
        node.run(&argv);
        if let Err(e) = node.check() {
            panic!("{e}");
        }
    }
});
