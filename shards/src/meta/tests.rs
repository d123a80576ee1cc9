//! The metadata state machine, step by step.

use super::*;
use crate::meta::moves::{FINISHED_KEPT, OPEN_MAX};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn add(port: u16, threads: u16) -> Cmd {
    Cmd::AddNode {
        client: addr(port),
        bus: addr(port + 10000),
        threads,
    }
}

fn three_nodes() -> Meta {
    let mut m = Meta::bootstrap([9; 16], 16, 3, addr(7001), addr(17001), 2).unwrap();
    for p in [7002, 7003] {
        m.apply(&add(p, 2)).unwrap();
    }
    m
}

#[test]
fn a_bootstrapped_cluster_holds_every_vshard_on_its_one_node() {
    let m = Meta::bootstrap([9; 16], 16, 3, addr(7001), addr(17001), 2).unwrap();
    assert_eq!(m.nodes.len(), 1);
    assert!(
        m.replicas
            .iter()
            .all(|s| s.len() == 1 && s[0].node == NodeId(1))
    );
    // With one node the target is that node, whatever the factor asked for.
    assert_eq!(m.target().unwrap().replicas, m.replicas);
}

#[test]
fn a_listed_cluster_starts_alike_everywhere_and_ids_run_out_at_the_limit() {
    let list: Vec<_> = (0..3).map(|i| (addr(7001 + i), addr(17001 + i))).collect();
    let a = Meta::from_list([9; 16], 16, 3, &list, 2).unwrap();
    assert_eq!(a, Meta::from_list([9; 16], 16, 3, &list, 2).unwrap());
    assert_eq!(
        a.nodes.iter().map(|n| n.id.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(a.replicas.iter().all(|r| r.len() == 3));
    let mut m = a.clone();
    // A 4th node is given its share of the replicas to be: 12 of 48, moved off the others.
    m.apply(&add(7004, 2)).unwrap();
    let on = |m: &Meta, id: u64| {
        m.replicas
            .iter()
            .flatten()
            .filter(|r| r.node.0 == id)
            .count()
    };
    assert_eq!(on(&m, 4), 12);
    assert_eq!(a.replicas.len(), m.replicas.len());
    assert!(m.replicas.iter().all(|r| r.len() == 3));
    assert_eq!(
        m.replicas
            .iter()
            .zip(&a.replicas)
            .filter(|(x, y)| x != y)
            .count(),
        12
    );
    for p in 5..=NODES_MAX as u16 {
        let add = Cmd::AddNode {
            client: addr(7000 + p),
            bus: addr(17000 + p),
            threads: 2,
        };
        assert!(matches!(
            m.apply(&add),
            Ok(Applied::Added { new: true, .. })
        ));
    }
    let epoch = m.epoch;
    let one_more = Cmd::AddNode {
        client: addr(9999),
        bus: addr(19999),
        threads: 2,
    };
    assert_eq!(m.apply(&one_more), Err(MetaError::Full));
    assert_eq!(m.epoch, epoch, "a refused change changes nothing");
}

#[test]
fn joining_assigns_ids_in_order_and_is_idempotent() {
    let mut m = Meta::bootstrap([9; 16], 16, 3, addr(7001), addr(17001), 2).unwrap();
    let e = m.epoch;
    assert_eq!(
        m.apply(&add(7002, 2)),
        Ok(Applied::Added {
            id: NodeId(2),
            new: true
        })
    );
    assert_eq!(
        m.apply(&add(7002, 2)),
        Ok(Applied::Added {
            id: NodeId(2),
            new: false
        }),
        "joining twice answers the same id"
    );
    assert_eq!(m.epoch, e + 1, "a repeated join changes nothing");
    assert_eq!(
        m.apply(&add(7002, 4)),
        Err(MetaError::AddressTaken(NodeId(2)))
    );
    assert_eq!(m.apply(&add(7003, 0)), Err(MetaError::BadThreads(0)));
    assert_eq!(m.nodes.len(), 2);
}

#[test]
fn the_target_spreads_rf_replicas_over_the_nodes_and_moves_only_what_it_must() {
    let m = three_nodes();
    let t = m.target().unwrap();
    assert_eq!(t.rf, 3);
    for set in &t.replicas {
        let mut nodes: Vec<u64> = set.iter().map(|r| r.node.0).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, vec![1, 2, 3]);
    }
    // Once the groups got there, a fourth node takes its share: 3 x 16 / 4 = 12.
    let mut m = m;
    m.apply(&add(7004, 2)).unwrap();
    let t4 = m.target().unwrap();
    let moved = t4.moves_from(&t);
    assert_eq!(moved, 12, "{}", t4.render());
}

#[test]
fn a_leaving_node_gets_nothing_and_is_dropped_once_drained() {
    let mut m = three_nodes();
    m.apply(&add(7004, 1)).unwrap();
    let before = m.replicas.clone();
    let e = m.epoch;
    assert_eq!(
        m.apply(&Cmd::Drained { id: NodeId(2) }),
        Err(MetaError::NotLeaving(NodeId(2)))
    );
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(2) }),
        Ok(Applied::Leaving { new: true })
    );
    assert!(
        m.node(NodeId(2)).is_some_and(|n| n.leaving),
        "a member while it drains"
    );
    assert!(m.replicas.iter().flatten().all(|r| r.node != NodeId(2)));
    // Only what node 2 held moves: every other replica stays where it was.
    for (v, (a, b)) in before.iter().zip(&m.replicas).enumerate() {
        let kept = a
            .iter()
            .filter(|r| r.node != NodeId(2))
            .all(|r| b.contains(r));
        assert!(kept, "vShard {v}: {a:?} -> {b:?}");
    }
    assert_eq!(m.epoch, e + 1);
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(2) }),
        Ok(Applied::Leaving { new: false }),
        "asking twice is harmless"
    );
    assert_eq!(
        m.apply(&Cmd::Drained { id: NodeId(2) }),
        Ok(Applied::Dropped)
    );
    assert_eq!(m.node(NodeId(2)), None);
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(2) }),
        Err(MetaError::UnknownNode(NodeId(2)))
    );
    // Three nodes for three replicas: none may leave.
    let e = m.epoch;
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(1) }),
        Err(MetaError::TooFewNodes { left: 2, rf: 3 })
    );
    assert_eq!(m.epoch, e, "a refused change changes nothing");
    assert!(m.nodes.iter().all(|n| !n.leaving));
}

#[test]
fn a_leaving_node_that_joins_again_stays_and_gets_its_share_back() {
    let mut m = three_nodes();
    m.apply(&add(7004, 2)).unwrap();
    let placed = m.replicas.clone();
    m.apply(&Cmd::RemoveNode { id: NodeId(4) }).unwrap();
    assert_eq!(
        m.apply(&add(7004, 2)),
        Ok(Applied::Added {
            id: NodeId(4),
            new: false
        })
    );
    assert!(!m.node(NodeId(4)).unwrap().leaving);
    let share = |r: &Vec<Vec<Replica>>| r.iter().flatten().filter(|r| r.node == NodeId(4)).count();
    assert_eq!(share(&m.replicas), share(&placed));
}

#[test]
fn a_one_replica_cluster_can_shrink_to_one_node_but_not_to_none() {
    let mut m = Meta::bootstrap([9; 16], 16, 1, addr(7001), addr(17001), 2).unwrap();
    m.apply(&add(7002, 2)).unwrap();
    m.apply(&Cmd::RemoveNode { id: NodeId(1) }).unwrap();
    assert!(m.replicas.iter().flatten().all(|r| r.node == NodeId(2)));
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(2) }),
        Err(MetaError::TooFewNodes { left: 0, rf: 1 })
    );
}

#[test]
fn state_and_commands_round_trip_and_damage_is_refused_without_panicking() {
    let mut m = three_nodes();
    m.apply(&Cmd::AddNode {
        client: "[::1]:7009".parse().unwrap(),
        bus: "[::1]:17009".parse().unwrap(),
        threads: 3,
    })
    .unwrap();
    round_trips(&m);
    let cmds = [
        add(7005, 2),
        Cmd::RemoveNode { id: NodeId(3) },
        Cmd::Drained { id: NodeId(4) },
        Cmd::Move {
            vshard: 3,
            to: NodeId(4),
            from: Some(NodeId(2)),
        },
        move_to(3, 4),
        Cmd::CancelMove { id: 7 },
        Cmd::MoveDone { id: 7 },
        Cmd::Drain { id: NodeId(2) },
        Cmd::Undrain { id: NodeId(2) },
    ];
    for c in cmds {
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(Cmd::decode(&b), Ok(c.clone()));
        for cut in 0..b.len() {
            assert!(Cmd::decode(&b[..cut]).is_err());
        }
        b.push(0);
        assert!(Cmd::decode(&b).is_err(), "trailing bytes");
    }
}

#[test]
fn decoded_metadata_names_only_members_in_range() {
    let m = three_nodes();
    let mut b = Vec::new();
    m.encode(&mut b);
    assert_eq!(Meta::decode(&b).expect("round trip"), m);
    let bad = |f: &dyn Fn(&mut Meta)| {
        let mut x = m.clone();
        f(&mut x);
        let mut b = Vec::new();
        x.encode(&mut b);
        Meta::decode(&b).expect_err("refused")
    };
    bad(&|x| x.nodes[0].id = NodeId(0));
    bad(&|x| x.nodes[0].id = NodeId(1000));
    bad(&|x| x.nodes[1].id = x.nodes[0].id);
    bad(&|x| x.next_id = NODES_MAX + 2);
    bad(&|x| x.replicas[0][0].node = NodeId(9));
    bad(&|x| x.replicas[0][0].thread = 99);
    bad(&|x| {
        let r = x.replicas[0][0];
        x.replicas[0].push(r)
    });
}

#[test]
fn damaged_metadata_is_refused_or_holds_the_checked_rules_never_a_panic() {
    let mut b = Vec::new();
    three_nodes().encode(&mut b);
    let mut rng = crate::rng::Rng::new(0x3e7a);
    for _ in 0..20_000 {
        let mut x = b.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(x.len() as u64) as usize;
            x[at] = match rng.below(3) {
                0 => x[at] ^ (1 << rng.below(8)),
                1 => 0xff,
                _ => rng.next_u64() as u8,
            };
        }
        if rng.below(8) == 0 {
            x.truncate(rng.below(x.len() as u64) as usize);
        }
        // Refused or accepted (with `check` passed inside), never a panic or an overflow.
        let _ = Meta::decode(&x);
    }
}

/// Four nodes, RF 3, and a vShard that node 4 does not hold.
fn four_nodes_and_a_vshard_off_node_4() -> (Meta, u16) {
    let mut m = three_nodes();
    m.apply(&add(7004, 2)).unwrap();
    // The join's moves, closed as the metadata leader closes them once the groups arrived.
    close_all(&mut m);
    let v = (0..16u16)
        .find(|&v| !m.replicas[v as usize].iter().any(|r| r.node == NodeId(4)))
        .unwrap();
    (m, v)
}

fn close_all(m: &mut Meta) {
    let open: Vec<u64> = m
        .moves
        .iter()
        .filter(|r| r.state == MoveState::Open)
        .map(|r| r.id)
        .collect();
    for id in open {
        assert_eq!(m.apply(&Cmd::MoveDone { id }), Ok(Applied::MoveEnded));
    }
}

fn held(m: &Meta, id: u64) -> usize {
    m.replicas
        .iter()
        .flatten()
        .filter(|r| r.node.0 == id)
        .count()
}

#[test]
fn a_move_replaces_one_replica_in_place_and_opens_a_record() {
    let (mut m, v) = four_nodes_and_a_vshard_off_node_4();
    let before = m.replicas.clone();
    let from = before[v as usize][0].node;
    let e = m.epoch;
    let first = m.next_move;
    let mv = |to: u64, from: Option<u64>| Cmd::Move {
        vshard: v,
        to: NodeId(to),
        from: from.map(NodeId),
    };
    assert_eq!(
        m.apply(&mv(4, Some(from.0))),
        Ok(Applied::MoveStarted { id: first })
    );
    assert_eq!(m.epoch, e + 1);
    // In the same position: the preferred leader's replacement is preferred in turn.
    assert_eq!(m.replicas[v as usize][0].node, NodeId(4));
    assert_eq!(m.replicas[v as usize][1..], before[v as usize][1..]);
    for (w, set) in m.replicas.iter().enumerate() {
        if w != v as usize {
            assert_eq!(set, &before[w], "only vShard {v} changes");
        }
    }
    let rec = *m.open_move(v).unwrap();
    assert_eq!(
        (rec.id, rec.from, rec.to, rec.state, rec.kind),
        (first, from, NodeId(4), MoveState::Open, MoveKind::Operator)
    );
    // Refused, and nothing changes: one move per vShard, a holder, unknown names.
    let e = m.epoch;
    let w = (v + 1) % 16;
    let w_holder = m.replicas[w as usize][0].node;
    let w_free = (1..=4)
        .map(NodeId)
        .find(|id| !m.replicas[w as usize].iter().any(|r| r.node == *id))
        .unwrap();
    let refusals = [
        (
            mv(from.0, None),
            MetaError::MoveOpen {
                vshard: v,
                id: first,
            },
        ),
        (
            Cmd::Move {
                vshard: w,
                to: w_holder,
                from: None,
            },
            MetaError::AlreadyHolds {
                vshard: w,
                node: w_holder,
            },
        ),
        (
            Cmd::Move {
                vshard: w,
                to: w_free,
                from: Some(w_free),
            },
            MetaError::NotHolding {
                vshard: w,
                node: w_free,
            },
        ),
        (move_to(16, 4), MetaError::NoSuchVShard(16)),
        (mv(9, None), MetaError::UnknownNode(NodeId(9))),
        (
            Cmd::MoveDone { id: first + 1 },
            MetaError::NoOpenMove(first + 1),
        ),
    ];
    for (cmd, err) in refusals {
        assert_eq!(m.apply(&cmd), Err(err), "{cmd:?}");
    }
    assert_eq!(m.epoch, e, "a refused change changes nothing");
    // Done: the record closes, the placement stays.
    let placed = m.replicas.clone();
    assert_eq!(
        m.apply(&Cmd::MoveDone { id: first }),
        Ok(Applied::MoveEnded)
    );
    assert_eq!(m.replicas, placed);
    assert_eq!(m.moves.last().unwrap().state, MoveState::Done);
    assert_eq!(
        m.apply(&Cmd::CancelMove { id: first }),
        Err(MetaError::NoOpenMove(first))
    );
}

#[test]
fn a_move_without_a_source_takes_the_busiest_node_s_replica_and_cancel_puts_it_back() {
    let (mut m, v) = four_nodes_and_a_vshard_off_node_4();
    // Make a holder of `v` the busiest: a vShard moved onto it from elsewhere.
    let busy = m.replicas[v as usize][2].node;
    let w = (0..16u16)
        .find(|&w| w != v && !m.replicas[w as usize].iter().any(|r| r.node == busy))
        .unwrap();
    m.apply(&Cmd::Move {
        vshard: w,
        to: busy,
        from: None,
    })
    .unwrap();
    let before = m.replicas[v as usize].clone();
    assert!(
        before
            .iter()
            .all(|r| r.node == busy || held(&m, r.node.0) < held(&m, busy.0))
    );
    let Ok(Applied::MoveStarted { id }) = m.apply(&move_to(v, 4)) else {
        panic!("refused")
    };
    assert_eq!(m.open_move(v).unwrap().from, busy);
    assert_eq!(m.apply(&Cmd::CancelMove { id }), Ok(Applied::MoveEnded));
    assert_eq!(m.replicas[v as usize], before, "back where it was");
    assert!(m.open_move(v).is_none());
    assert_eq!(m.moves.last().unwrap().state, MoveState::Cancelled);
}

#[test]
fn a_drained_node_holds_nothing_stays_a_member_and_undrain_gives_it_a_share() {
    let (mut m, v) = four_nodes_and_a_vshard_off_node_4();
    let Ok(Applied::MoveStarted { id }) = m.apply(&move_to(v, 4)) else {
        panic!("refused")
    };
    assert_eq!(
        m.apply(&Cmd::Drain { id: NodeId(4) }),
        Ok(Applied::Drain { new: true })
    );
    assert_eq!(held(&m, 4), 0);
    assert!(m.replicas.iter().all(|s| s.len() == 3));
    let n = m.node(NodeId(4)).unwrap();
    assert!(n.drained && !n.leaving, "still a member");
    // The open move onto it was overtaken; each replica the drain moves has its record.
    let rec = |id| *m.moves.iter().find(|r| r.id == id).unwrap();
    assert_eq!(rec(id).state, MoveState::Cancelled);
    let drained: Vec<MoveRec> = m
        .moves
        .iter()
        .filter(|r| r.state == MoveState::Open)
        .copied()
        .collect();
    assert_eq!(
        drained.len(),
        13,
        "the join's 12 and the moved one: {drained:?}"
    );
    assert!(
        drained
            .iter()
            .all(|r| r.kind == MoveKind::Drain && r.from == NodeId(4))
    );
    // A drain's move has nowhere to go back to.
    assert_eq!(
        m.apply(&Cmd::CancelMove { id: drained[0].id }),
        Err(MetaError::CannotUndo(drained[0].id))
    );
    close_all(&mut m);
    assert_eq!(
        m.apply(&Cmd::Drain { id: NodeId(4) }),
        Ok(Applied::Drain { new: false })
    );
    assert_eq!(
        m.apply(&move_to(v, 4)),
        Err(MetaError::NotPlaceable(NodeId(4)))
    );
    // Three placeable nodes for three replicas: none may be drained or removed.
    assert_eq!(
        m.apply(&Cmd::Drain { id: NodeId(1) }),
        Err(MetaError::TooFewNodes { left: 2, rf: 3 })
    );
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(1) }),
        Err(MetaError::TooFewNodes { left: 2, rf: 3 })
    );
    assert_eq!(
        m.apply(&Cmd::Undrain { id: NodeId(4) }),
        Ok(Applied::Drain { new: true })
    );
    assert_eq!(held(&m, 4), 12, "3 x 16 / 4");
    let back = m.moves.iter().filter(|r| r.state == MoveState::Open);
    assert!(
        back.clone()
            .all(|r| r.to == NodeId(4) && r.kind == MoveKind::Drain)
    );
    assert_eq!(back.count(), 12);
    close_all(&mut m);
    // A drained node may still be removed (it holds nothing: the placement does not change).
    m.apply(&Cmd::Drain { id: NodeId(4) }).unwrap();
    let placed = m.replicas.clone();
    assert_eq!(
        m.apply(&Cmd::RemoveNode { id: NodeId(4) }),
        Ok(Applied::Leaving { new: true })
    );
    assert_eq!(m.replicas, placed);
    assert_eq!(
        m.apply(&Cmd::Undrain { id: NodeId(4) }),
        Err(MetaError::NotPlaceable(NodeId(4)))
    );
}

#[test]
fn finished_moves_are_kept_to_a_bound_and_records_round_trip() {
    let (mut m, v) = four_nodes_and_a_vshard_off_node_4();
    for _ in 0..FINISHED_KEPT + 5 {
        let Ok(Applied::MoveStarted { id }) = m.apply(&move_to(v, 4)) else {
            panic!("refused")
        };
        m.apply(&Cmd::CancelMove { id }).unwrap();
    }
    assert_eq!(m.moves.len(), FINISHED_KEPT);
    assert_eq!(
        m.moves[0].id,
        m.next_move - FINISHED_KEPT as u64,
        "the oldest dropped first"
    );
    m.apply(&move_to(v, 4)).unwrap();
    round_trips(&m);
    let bad = |f: &dyn Fn(&mut Meta)| {
        let mut x = m.clone();
        f(&mut x);
        let mut b = Vec::new();
        x.encode(&mut b);
        Meta::decode(&b).expect_err("refused")
    };
    bad(&|x| x.moves[0].id = 0);
    bad(&|x| x.moves[0].vshard = 99);
    bad(&|x| x.moves[1].id = x.moves[0].id);
    bad(&|x| x.moves.swap(0, 1));
    bad(&|x| x.next_move = x.moves.last().unwrap().id);
    bad(&|x| {
        let open = *x.moves.last().unwrap();
        x.moves = (0..=OPEN_MAX as u64)
            .map(|i| MoveRec { id: i + 1, ..open })
            .collect();
        x.next_move = OPEN_MAX as u64 + 2;
    });
}

#[test]
fn a_state_written_before_moves_existed_still_reads() {
    let mut m = three_nodes();
    m.moves.clear();
    m.next_move = 1;
    let mut b = Vec::new();
    m.encode(&mut b);
    // Version 1: no drained flag per node, no move section (next id and a count of 0).
    let mut v1 = b[..38].to_vec();
    v1[0] = 1;
    let mut at = 38;
    for _ in 0..m.nodes.len() {
        v1.extend_from_slice(&b[at..at + 25]);
        at += 26;
    }
    v1.extend_from_slice(&b[at..b.len() - 12]);
    assert_eq!(Meta::decode(&v1), Ok(m));
}

#[test]
fn joins_and_removals_record_each_replica_they_move() {
    let mut m = Meta::bootstrap([9; 16], 16, 3, addr(7001), addr(17001), 2).unwrap();
    m.apply(&add(7002, 2)).unwrap();
    // One node to two: every vShard gains a replica there, added rather than moved.
    assert!(
        m.moves
            .iter()
            .all(|r| r.from == NodeId(0) && r.to == NodeId(2) && r.kind == MoveKind::Join)
    );
    assert_eq!(m.moves.len(), 16);
    assert_eq!(
        m.apply(&Cmd::CancelMove { id: m.moves[0].id }),
        Err(MetaError::CannotUndo(m.moves[0].id)),
        "an added replica has nowhere to go back to"
    );
    m.apply(&add(7003, 2)).unwrap();
    close_all(&mut m);
    let before = m.replicas.clone();
    m.apply(&add(7004, 2)).unwrap();
    let open: Vec<MoveRec> = m
        .moves
        .iter()
        .filter(|r| r.state == MoveState::Open)
        .copied()
        .collect();
    assert_eq!(open.len(), 12);
    for r in &open {
        assert_eq!((r.to, r.kind), (NodeId(4), MoveKind::Join));
        assert!(before[r.vshard as usize].iter().any(|x| x.node == r.from));
        assert!(
            !m.replicas[r.vshard as usize]
                .iter()
                .any(|x| x.node == r.from)
        );
    }
    close_all(&mut m);
    let on_2 = held(&m, 2);
    m.apply(&Cmd::RemoveNode { id: NodeId(2) }).unwrap();
    let open = m.moves.iter().filter(|r| r.state == MoveState::Open);
    assert!(
        open.clone()
            .all(|r| r.from == NodeId(2) && r.kind == MoveKind::Leave)
    );
    assert_eq!(open.count(), on_2);
}

fn move_to(vshard: u16, to: u64) -> Cmd {
    Cmd::Move {
        vshard,
        to: NodeId(to),
        from: None,
    }
}

/// `m` encodes and decodes to itself, and every cut of its encoding is refused.
fn round_trips(m: &Meta) {
    let mut b = Vec::new();
    m.encode(&mut b);
    assert_eq!(Meta::decode(&b).as_ref(), Ok(m));
    for cut in 0..b.len() {
        assert!(Meta::decode(&b[..cut]).is_err(), "cut at {cut}");
    }
}
