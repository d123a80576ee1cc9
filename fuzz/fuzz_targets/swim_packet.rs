//! SWIM's datagrams (`shardline_shards::swim`, issue 20), as anyone on the network may send
//! them to a node's UDP port: the fuzzer's bytes are a sequence of steps, each a raw
//! datagram, a well-formed packet from a member or a stranger (any message, any updates, any
//! incarnations) or time passing. Never panics; what decodes encodes to the same bytes; the
//! node's incarnation never goes down; every datagram it sends decodes, is from it and fits
//! the size limit; it never holds itself as anything but a member that is up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_shards::ids::NodeId;
use shardline_shards::swim::msg::{self, Msg, Update};
use shardline_shards::swim::{Config, Swim};

const C: [u8; 16] = [7; 16];

fuzz_target!(|data: &[u8]| {
    let cfg = Config::default();
    let max = cfg.packet_bytes_max;
    let mut s = Swim::new(NodeId(1), C, 0, cfg, 5, 0);
    let ids: Vec<NodeId> = (1..=5).map(NodeId).collect();
    s.set_members(&ids, 0);
    let mut now = 0u64;
    let mut inc = s.incarnation();
    let mut b = data;
    let mut take = |n: usize| -> Option<Vec<u8>> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        b = t;
        Some(h.to_vec())
    };
    while let Some(op) = take(1) {
        match op[0] % 4 {
            0 => {
                let Some(n) = take(1) else { break };
                let Some(raw) = take(n[0] as usize) else { break };
                check_round_trip(&raw);
                let _ = s.handle_packet(now, &raw);
            }
            1 | 2 => {
                let Some(h) = take(12) else { break };
                let from = NodeId(1 + h[0] as u64 % 7); // 6 and 7: strangers
                let from_inc = u32::from_le_bytes([h[1], h[2], 0, 0]) % 8;
                let seq = u32::from_le_bytes([h[3], h[4], 0, 0]) % 8;
                let m = match h[5] % 5 {
                    0 => Msg::Ping { seq },
                    1 => Msg::Ack { seq },
                    2 => Msg::PingReq { seq, target: NodeId(1 + h[6] as u64 % 7) },
                    3 => Msg::Nack { seq },
                    _ => Msg::Notify,
                };
                let mut out = Vec::new();
                msg::encode_head(&C, from, from_inc, m, &mut out);
                let at = msg::count_at(&m);
                for k in 0..(h[7] % 6) {
                    let Some(u) = take(3) else { break };
                    let member = NodeId(1 + u[0] as u64 % 7);
                    let inc = (u[1] % 8) as u32;
                    let up = match u[2].wrapping_add(k) % 4 {
                        0 => Update::Alive { member, inc },
                        1 => Update::Suspect { member, inc, from: NodeId(1 + u[2] as u64 % 7) },
                        2 => Update::Dead { member, inc },
                        _ => Update::Left { member, inc },
                    };
                    msg::push_update(&mut out, at, &up, max);
                }
                check_round_trip(&out);
                s.handle_packet(now, &out).expect("a well-formed packet");
            }
            _ => {
                let Some(t) = take(2) else { break };
                now += u16::from_le_bytes([t[0], t[1]]) as u64 % 5_000;
                s.handle_timeout(now);
            }
        }
        assert!(s.incarnation() >= inc, "the incarnation went down");
        inc = s.incarnation();
        while let Some(t) = s.poll_transmit() {
            assert!(t.bytes.len() <= max, "{} bytes", t.bytes.len());
            let p = msg::decode(&t.bytes).expect("our packets decode");
            assert_eq!((p.from, p.from_inc), (NodeId(1), s.incarnation()));
            assert!(ids.contains(&t.to) && t.to != NodeId(1), "to {:?}", t.to);
        }
        while s.poll_event().is_some() {}
        assert!(s.state(NodeId(1)).is_none(), "a node is not its own member");
    }
});

/// A datagram that decodes has one encoding.
fn check_round_trip(raw: &[u8]) {
    let Ok(p) = msg::decode(raw) else { return };
    let mut out = Vec::new();
    msg::encode_head(&p.cluster, p.from, p.from_inc, p.msg, &mut out);
    let at = msg::count_at(&p.msg);
    for u in &p.updates {
        assert!(msg::push_update(&mut out, at, u, usize::MAX));
    }
    assert_eq!(out.as_slice(), raw, "one encoding");
}
