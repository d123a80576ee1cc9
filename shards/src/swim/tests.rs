//! SWIM step by step: one input, the exact packets and events out.

use super::msg::{self, Msg, Packet, Update};
use super::*;

const C: [u8; 16] = [7; 16];

fn cfg() -> Config {
    Config::default()
}

/// Node `me` of members 1..=n at time 0, its first probe due at or before 100 ms.
fn node(me: u64, n: u64) -> Swim {
    let mut s = Swim::new(NodeId(me), C, 0, cfg(), 9, 0);
    let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
    s.set_members(&ids, 0);
    s
}

fn sent(s: &mut Swim) -> Vec<(NodeId, Packet)> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|t| (t.to, msg::decode(&t.bytes).unwrap()))
        .collect()
}

fn packet(from: u64, inc: u32, m: Msg, updates: Vec<Update>) -> Vec<u8> {
    let mut out = Vec::new();
    msg::encode_head(&C, NodeId(from), inc, m, &mut out);
    let at = msg::count_at(&m);
    for u in &updates {
        assert!(msg::push_update(&mut out, at, u, 1400));
    }
    out
}

/// Runs the node's first probe: the period's start; the target and the ping's seq.
fn first_probe(s: &mut Swim) -> (u64, NodeId, u32) {
    let t = s.poll_timeout();
    s.handle_timeout(t);
    let out = sent(s);
    assert_eq!(out.len(), 1, "{out:?}");
    let Msg::Ping { seq } = out[0].1.msg else {
        panic!("{out:?}")
    };
    (t, out[0].0, seq)
}

#[test]
fn an_answered_probe_suspects_nobody() {
    let mut s = node(1, 3);
    let (t, target, seq) = first_probe(&mut s);
    s.handle_packet(t + 5, &packet(target.0, 0, Msg::Ack { seq }, vec![]))
        .unwrap();
    // No indirect stage, and the period ends with everyone alive.
    assert_eq!(s.poll_timeout(), t + 100);
    s.handle_timeout(t + 100);
    assert_eq!(s.state(target), Some((State::Alive, 0)));
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.health(), 0);
}

#[test]
fn a_silent_member_is_pinged_through_others_then_suspected() {
    let mut s = node(1, 5);
    let (t, target, seq) = first_probe(&mut s);
    assert_eq!(s.poll_timeout(), t + 40, "the direct ack's timeout");
    s.handle_timeout(t + 40);
    let reqs = sent(&mut s);
    assert_eq!(
        reqs.len(),
        3,
        "PingReq through `indirect` members: {reqs:?}"
    );
    for (via, p) in &reqs {
        assert_ne!(*via, target);
        assert_eq!(p.msg, Msg::PingReq { seq, target });
    }
    // Nobody answered: suspected at the period's end, the suspicion sent with the next probe.
    s.handle_timeout(t + 100);
    assert_eq!(
        s.poll_event(),
        Some(Event {
            member: target,
            state: State::Suspect,
            inc: 0
        })
    );
    let next = sent(&mut s);
    assert!(next[0].1.updates.contains(&Update::Suspect {
        member: target,
        inc: 0,
        from: NodeId(1)
    }));
    // A failed probe with its nacks missing: the local health multiplier goes up twice, and
    // the next period is that much longer.
    assert_eq!(s.health(), 2);
    assert_eq!(s.poll_timeout(), t + 100 + 40 * 3);
}

#[test]
fn a_relay_forwards_the_ack_or_owes_a_nack() {
    let mut s = node(2, 4);
    s.handle_packet(
        10,
        &packet(
            1,
            0,
            Msg::PingReq {
                seq: 77,
                target: NodeId(3),
            },
            vec![],
        ),
    )
    .unwrap();
    let out = sent(&mut s);
    let Msg::Ping { seq } = out[0].1.msg else {
        panic!()
    };
    assert_eq!(out[0].0, NodeId(3));
    s.handle_packet(12, &packet(3, 0, Msg::Ack { seq }, vec![]))
        .unwrap();
    let out = sent(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.msg), (NodeId(1), Msg::Ack { seq: 77 }));
    // Another one nobody answers: a nack at 80% of the probe timeout.
    s.handle_packet(
        20,
        &packet(
            1,
            0,
            Msg::PingReq {
                seq: 78,
                target: NodeId(4),
            },
            vec![],
        ),
    )
    .unwrap();
    sent(&mut s);
    let nacks = |s: &mut Swim| {
        sent(s)
            .into_iter()
            .filter(|(to, p)| *to == NodeId(1) && p.msg == Msg::Nack { seq: 78 })
            .count()
    };
    s.handle_timeout(51);
    assert_eq!(nacks(&mut s), 0);
    s.handle_timeout(52);
    assert_eq!(nacks(&mut s), 1, "a nack at 80% of the probe timeout");
}

#[test]
fn a_suspicion_of_this_node_is_refuted_with_a_new_incarnation() {
    let mut s = node(1, 3);
    let suspicion = Update::Suspect {
        member: NodeId(1),
        inc: 0,
        from: NodeId(2),
    };
    s.handle_packet(5, &packet(2, 0, Msg::Ping { seq: 4 }, vec![suspicion]))
        .unwrap();
    assert_eq!(s.incarnation(), 1);
    assert_eq!(s.health(), 1, "refuting counts against local health");
    let out = sent(&mut s);
    assert_eq!(out[0].1.msg, Msg::Ack { seq: 4 });
    assert_eq!(out[0].1.from_inc, 1);
    assert!(out[0].1.updates.contains(&Update::Alive {
        member: NodeId(1),
        inc: 1
    }));
    // A stale verdict (an older incarnation) changes nothing.
    s.handle_packet(
        6,
        &packet(
            3,
            0,
            Msg::Ping { seq: 5 },
            vec![Update::Dead {
                member: NodeId(1),
                inc: 0,
            }],
        ),
    )
    .unwrap();
    assert_eq!(s.incarnation(), 1);
}

#[test]
fn the_newest_incarnation_wins_and_at_the_same_one_the_stronger_verdict() {
    let mut s = node(1, 4);
    let x = NodeId(3);
    let apply = |s: &mut Swim, u: Update| {
        s.handle_packet(1, &packet(2, 0, Msg::Ack { seq: 999 }, vec![u]))
            .unwrap()
    };
    apply(
        &mut s,
        Update::Suspect {
            member: x,
            inc: 2,
            from: NodeId(2),
        },
    );
    assert_eq!(s.state(x), Some((State::Suspect, 2)));
    apply(&mut s, Update::Alive { member: x, inc: 2 });
    assert_eq!(
        s.state(x),
        Some((State::Suspect, 2)),
        "alive at the same incarnation loses"
    );
    apply(&mut s, Update::Dead { member: x, inc: 2 });
    assert_eq!(s.state(x), Some((State::Dead, 2)));
    apply(
        &mut s,
        Update::Suspect {
            member: x,
            inc: 2,
            from: NodeId(4),
        },
    );
    assert_eq!(s.state(x), Some((State::Dead, 2)), "dead beats suspect");
    apply(&mut s, Update::Alive { member: x, inc: 3 });
    assert_eq!(
        s.state(x),
        Some((State::Alive, 3)),
        "a refutation brings it back"
    );
    let states: Vec<State> = std::iter::from_fn(|| s.poll_event())
        .map(|e| e.state)
        .collect();
    assert_eq!(states, [State::Suspect, State::Dead, State::Alive]);
}

#[test]
fn confirmations_shorten_a_suspicion_from_its_maximum_to_its_minimum() {
    let x = NodeId(6);
    let suspect = |from: u64| Update::Suspect {
        member: x,
        inc: 0,
        from: NodeId(from),
    };
    let hear = |s: &mut Swim, at: u64, from: u64| {
        s.handle_packet(
            at,
            &packet(from, 0, Msg::Ack { seq: 999 }, vec![suspect(from)]),
        )
        .unwrap()
    };
    // One suspecter (the update's `from`) is one confirmation of this node's view: K = 3,
    // timeout = max - (max - min) * ln 2 / ln 4 = 4,200 ms.
    let mut s = node(1, 6);
    hear(&mut s, 1_000, 2);
    s.handle_timeout(1_000 + 4_199);
    assert_eq!(s.state(x).unwrap().0, State::Suspect);
    s.handle_timeout(1_000 + 4_200);
    assert_eq!(s.state(x).unwrap().0, State::Dead);
    // Three: the minimum, counted from when this node began to suspect; the same suspecter
    // twice counts once.
    let mut s = node(1, 6);
    hear(&mut s, 1_000, 2);
    for from in [3, 3, 4] {
        hear(&mut s, 1_100, from);
    }
    s.handle_timeout(1_000 + 2_399);
    assert_eq!(s.state(x).unwrap().0, State::Suspect);
    s.handle_timeout(1_000 + 2_400);
    assert_eq!(s.state(x).unwrap().0, State::Dead);
}

#[test]
fn a_packet_to_a_suspect_carries_the_suspicion_first() {
    let mut s = node(1, 3);
    let x = NodeId(2);
    s.handle_packet(
        1,
        &packet(
            3,
            0,
            Msg::Ack { seq: 999 },
            vec![Update::Suspect {
                member: x,
                inc: 0,
                from: NodeId(3),
            }],
        ),
    )
    .unwrap();
    sent(&mut s);
    // The suspect pings us (its header: incarnation 0): our ack tells it.
    s.handle_packet(2, &packet(2, 0, Msg::Ping { seq: 1 }, vec![]))
        .unwrap();
    let out = sent(&mut s);
    assert_eq!(out[0].0, x);
    assert_eq!(
        out[0].1.updates[0],
        Update::Suspect {
            member: x,
            inc: 0,
            from: NodeId(1)
        }
    );
}

#[test]
fn strangers_other_clusters_and_garbage_are_refused_and_counted() {
    let mut s = node(1, 3);
    // Not a member.
    s.handle_packet(1, &packet(9, 0, Msg::Ping { seq: 1 }, vec![]))
        .unwrap();
    // Another cluster.
    let mut other = Vec::new();
    msg::encode_head(&[8; 16], NodeId(2), 0, Msg::Ping { seq: 1 }, &mut other);
    s.handle_packet(1, &other).unwrap();
    // Garbage and a cut packet.
    assert!(s.handle_packet(1, b"GET / HTTP/1.1\r\n").is_err());
    let good = packet(
        2,
        0,
        Msg::Ping { seq: 1 },
        vec![Update::Dead {
            member: NodeId(3),
            inc: 4,
        }],
    );
    for cut in 0..good.len() {
        assert!(s.handle_packet(1, &good[..cut]).is_err(), "cut {cut}");
    }
    assert_eq!(s.stats.refused as usize, 3 + good.len());
    assert!(sent(&mut s).is_empty(), "nothing answered");
    assert_eq!(
        s.state(NodeId(3)),
        Some((State::Alive, 0)),
        "nothing applied"
    );
}

#[test]
fn packets_round_trip_and_updates_stop_at_the_size_limit() {
    let updates = vec![
        Update::Alive {
            member: NodeId(5),
            inc: 1,
        },
        Update::Suspect {
            member: NodeId(6),
            inc: 2,
            from: NodeId(1),
        },
        Update::Dead {
            member: NodeId(7),
            inc: 3,
        },
        Update::Left {
            member: NodeId(8),
            inc: u32::MAX,
        },
    ];
    for m in [
        Msg::Ping { seq: 1 },
        Msg::Ack { seq: 2 },
        Msg::PingReq {
            seq: 3,
            target: NodeId(4),
        },
        Msg::Nack { seq: u32::MAX },
        Msg::Notify,
    ] {
        let b = packet(2, 7, m, updates.clone());
        let p = msg::decode(&b).unwrap();
        assert_eq!(
            (p.from, p.from_inc, p.msg, &p.updates),
            (NodeId(2), 7, m, &updates)
        );
    }
    let mut out = Vec::new();
    msg::encode_head(&C, NodeId(1), 0, Msg::Ping { seq: 1 }, &mut out);
    let mut n = 0;
    while msg::push_update(
        &mut out,
        msg::count_at(&Msg::Ping { seq: 1 }),
        &updates[1],
        200,
    ) {
        n += 1;
    }
    assert!(out.len() <= 200);
    assert_eq!(n, (200 - 36) / msg::UPDATE_BYTES_MAX);
    assert_eq!(msg::decode(&out).unwrap().updates.len(), n);
}
