//! The rebalancer's decisions, sample by sample.

use super::*;
use crate::meta::{Applied, MetaError};
use std::net::SocketAddr;

fn cluster(nodes: u16, rf: u8) -> Meta {
    let list: Vec<(SocketAddr, SocketAddr)> = (0..nodes)
        .map(|i| {
            (
                SocketAddr::from(([127, 0, 0, 1], 7001 + i)),
                SocketAddr::from(([127, 0, 0, 1], 17001 + i)),
            )
        })
        .collect();
    Meta::from_list([3; 16], 16, rf, &list, 2).unwrap()
}

const ALL: u64 = u64::MAX;

fn fast() -> Settings {
    Settings {
        samples: 3,
        ..Settings::default()
    }
}

/// `ops` a second on each of the vShards `hot`, 10 on every other.
fn loads(m: &Meta, hot: &[usize], ops: u32) -> Vec<Load> {
    (0..m.replicas.len())
        .map(|v| Load {
            ops: if hot.contains(&v) { ops } else { 10 },
            ..Load::default()
        })
        .collect()
}

fn led_by(m: &Meta, id: u64) -> Vec<usize> {
    (0..m.replicas.len())
        .filter(|&v| m.replicas[v][0].node == NodeId(id))
        .collect()
}

/// Node loads as the planner counts them (by preferred leader).
fn node_loads(m: &Meta, l: &[Load]) -> Vec<u64> {
    m.nodes
        .iter()
        .map(|n| {
            (0..m.replicas.len())
                .filter(|&v| m.replicas[v][0].node == n.id)
                .map(|v| l[v].weight())
                .sum()
        })
        .collect()
}

/// Applies a decision and closes its record (the group got there).
fn apply(m: &mut Meta, d: &Decision) {
    let Ok(Applied::MoveStarted { id }) = m.apply(&d.cmd()) else {
        panic!("{:?} refused", d.cmd());
    };
    m.apply(&Cmd::MoveDone { id }).unwrap();
}

#[test]
fn nothing_moves_when_balanced_idle_or_alone() {
    let mut r = Rebalancer::default();
    let m = cluster(3, 3);
    let even = loads(&m, &[], 0);
    for _ in 0..50 {
        assert_eq!(r.sample(&m, &even, ALL, &fast()), None);
    }
    // Skewed, but the whole cluster does less than `min_total`: noise.
    let idle: Vec<Load> = (0..16)
        .map(|v| Load {
            ops: (v == 0) as u32 * 90,
            ..Load::default()
        })
        .collect();
    for _ in 0..50 {
        assert_eq!(r.sample(&m, &idle, ALL, &fast()), None);
    }
    // One node: nowhere to go.
    let one = cluster(1, 1);
    let hot = loads(&one, &[0], 10_000);
    for _ in 0..50 {
        assert_eq!(r.sample(&one, &hot, ALL, &fast()), None);
    }
}

#[test]
fn a_hot_node_must_stay_hot_for_the_samples_before_anything_moves() {
    let mut r = Rebalancer::default();
    let m = cluster(3, 3);
    // Two hot vShards on node 1 (one alone could not be split: nothing would help).
    let two = &led_by(&m, 1)[..2];
    let hot = loads(&m, two, 5_000);
    let even = loads(&m, &[], 0);
    // A burst shorter than the hysteresis moves nothing, and resets it.
    for _ in 0..2 {
        assert_eq!(r.sample(&m, &hot, ALL, &fast()), None);
    }
    assert_eq!(r.sample(&m, &even, ALL, &fast()), None);
    for _ in 0..2 {
        assert_eq!(r.sample(&m, &hot, ALL, &fast()), None);
    }
    let d = r
        .sample(&m, &hot, ALL, &fast())
        .expect("third sample in a row");
    // Leadership first: every vShard has replicas on the other two nodes.
    let Cmd::Rebalance {
        vshard,
        from,
        to,
        lead,
    } = d.cmd()
    else {
        panic!()
    };
    assert!(lead);
    assert!(two.contains(&(vshard as usize)));
    assert_eq!(from, NodeId(1));
    let v = vshard as usize;
    assert!(m.replicas[v].iter().any(|r| r.node == to) && to != NodeId(1));
    assert_eq!(d.weight, 5_000);
}

#[test]
fn leaders_move_before_replicas_and_the_highest_load_only_falls() {
    let mut r = Rebalancer::default();
    let mut m = cluster(3, 3);
    let before = m.replicas.clone();
    // Three hot vShards, all led by node 1.
    let hot: Vec<usize> = led_by(&m, 1).into_iter().take(3).collect();
    let l = loads(&m, &hot, 3_000);
    let mut highest = *node_loads(&m, &l).iter().max().unwrap();
    let mut actions = 0;
    for _ in 0..200 {
        if let Some(d) = r.sample(&m, &l, ALL, &fast()) {
            assert!(matches!(d.cmd(), Cmd::Rebalance { lead: true, .. }));
            apply(&mut m, &d);
            actions += 1;
            let now = *node_loads(&m, &l).iter().max().unwrap();
            assert!(now < highest, "the highest load fell: {now} < {highest}");
            highest = now;
        }
    }
    // One hot vShard on each node in the end, with the same replica sets (only their order
    // changed: no data moved).
    assert_eq!(actions, 2);
    let mut leaders: Vec<NodeId> = hot.iter().map(|&v| m.replicas[v][0].node).collect();
    leaders.sort();
    assert_eq!(leaders, [NodeId(1), NodeId(2), NodeId(3)]);
    for (a, b) in m.replicas.iter().zip(&before) {
        let (mut a, mut b) = (a.clone(), b.clone());
        a.sort_by_key(|r| r.node);
        b.sort_by_key(|r| r.node);
        assert_eq!(a, b);
    }
    assert!(
        m.moves
            .iter()
            .all(|rec| rec.kind == MoveKind::Lead && rec.state == MoveState::Done)
    );
}

#[test]
fn with_one_replica_per_vshard_replicas_move_to_the_coolest_node() {
    let mut r = Rebalancer::default();
    let mut m = cluster(3, 1);
    let hot: Vec<usize> = led_by(&m, 2).into_iter().take(2).collect();
    let l = loads(&m, &hot, 4_000);
    let mut decisions = Vec::new();
    for _ in 0..100 {
        if let Some(d) = r.sample(&m, &l, ALL, &fast()) {
            apply(&mut m, &d);
            decisions.push(d.cmd());
        }
    }
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let Cmd::Rebalance {
        vshard,
        from,
        to,
        lead,
    } = decisions[0]
    else {
        panic!()
    };
    assert!(!lead);
    assert_eq!(from, NodeId(2));
    assert!(hot.contains(&(vshard as usize)));
    assert_ne!(to, NodeId(2));
    assert_eq!(m.replicas[vshard as usize][0].node, to);
    assert_eq!(m.moves[0].kind, MoveKind::Rebalance);
    let mut leaders: Vec<NodeId> = hot.iter().map(|&v| m.replicas[v][0].node).collect();
    leaders.sort();
    leaders.dedup();
    assert_eq!(leaders.len(), 2);
}

#[test]
fn open_moves_limit_it_acted_on_vshards_rest_and_down_nodes_get_nothing() {
    let s = Settings {
        samples: 1,
        max_open: 1,
        cooldown: 5,
        ..Settings::default()
    };
    let mut r = Rebalancer::default();
    let mut m = cluster(3, 3);
    let (v, v2) = (led_by(&m, 1)[0], led_by(&m, 1)[1]);
    let l = loads(&m, &[v, v2], 5_000);
    // Nodes 2 and 3 down: nowhere to go.
    assert_eq!(r.sample(&m, &l, 0b001, &s), None);
    // Node 3 down: only node 2 can take it.
    let d = r.sample(&m, &l, 0b011, &s).expect("node 2 is up");
    let Cmd::Rebalance { vshard, to, .. } = d.cmd() else {
        panic!()
    };
    assert_eq!(to, NodeId(2));
    // (The first in a tie of weights.)
    assert_eq!(vshard as usize, v);
    let Ok(Applied::MoveStarted { id }) = m.apply(&d.cmd()) else {
        panic!()
    };
    // Its record is open: nothing more while `max_open` are.
    let second = led_by(&m, 2).into_iter().find(|&x| x != v).unwrap();
    let l = loads(&m, &[v, v2, second], 5_000);
    for _ in 0..3 {
        assert_eq!(r.sample(&m, &l, ALL, &s), None);
    }
    m.apply(&Cmd::MoveDone { id }).unwrap();
    // vShard v (now on node 2, with another hot one there) rests for the cooldown: the
    // other one moves first.
    let d = r.sample(&m, &l, ALL, &s).expect("node 2 is hot");
    let Cmd::Rebalance { vshard, .. } = d.cmd() else {
        panic!()
    };
    assert_eq!(vshard as usize, second);
}

#[test]
fn a_leadership_move_swaps_the_preferred_replica_and_cancel_swaps_it_back() {
    let mut m = cluster(3, 3);
    let v = led_by(&m, 1)[0] as u16;
    let other = m.replicas[v as usize][2].node;
    let lead = |from, to| Cmd::Rebalance {
        vshard: v,
        from,
        to,
        lead: true,
    };
    let mut b = Vec::new();
    lead(NodeId(1), other).encode(&mut b);
    assert_eq!(Cmd::decode(&b).unwrap(), lead(NodeId(1), other));
    assert_eq!(
        m.apply(&lead(other, NodeId(1))),
        Err(MetaError::NotPreferred {
            vshard: v,
            node: other
        })
    );
    assert_eq!(
        m.apply(&lead(NodeId(1), NodeId(1))),
        Err(MetaError::AlreadyHolds {
            vshard: v,
            node: NodeId(1)
        })
    );
    let before = m.replicas[v as usize].clone();
    let Ok(Applied::MoveStarted { id }) = m.apply(&lead(NodeId(1), other)) else {
        panic!()
    };
    assert_eq!(m.replicas[v as usize][0].node, other);
    assert_eq!(m.replicas[v as usize][2].node, NodeId(1));
    assert!(matches!(
        m.apply(&lead(other, NodeId(1))),
        Err(MetaError::MoveOpen { .. })
    ));
    m.apply(&Cmd::CancelMove { id }).unwrap();
    assert_eq!(m.replicas[v as usize], before);
    // A replica move by the rebalancer is a move like an operator's, its own kind.
    let four = cluster(4, 3);
    let mut m = four.clone();
    let v = (0..16)
        .find(|&v| {
            m.replicas[v][0].node != NodeId(4) && !m.replicas[v].iter().any(|r| r.node == NodeId(4))
        })
        .unwrap();
    let from = m.replicas[v][0].node;
    let mv = Cmd::Rebalance {
        vshard: v as u16,
        from,
        to: NodeId(4),
        lead: false,
    };
    let mut b = Vec::new();
    mv.encode(&mut b);
    assert_eq!(Cmd::decode(&b).unwrap(), mv);
    m.apply(&mv).unwrap();
    assert_eq!(m.replicas[v][0].node, NodeId(4));
    assert_eq!(m.moves.last().unwrap().kind, MoveKind::Rebalance);
    let mut enc = Vec::new();
    m.encode(&mut enc);
    assert_eq!(Meta::decode(&enc).unwrap(), m);
}

/// The same commands a second everywhere, but node 1's vShards run costly ones (sorted-set
/// ranges, scripts): by operations and bytes the nodes are even, by CPU node 1 is hot, and
/// its leaderships move.
#[test]
fn cpu_time_makes_a_node_hot_at_an_even_rate_of_commands() {
    let mut r = Rebalancer::default();
    let m = cluster(3, 3);
    let costly = &led_by(&m, 1)[..2];
    let l: Vec<Load> = (0..m.replicas.len())
        .map(|v| Load {
            ops: 1_000,
            bytes: 200_000,
            cpu_us: if costly.contains(&v) { 40_000 } else { 100 },
        })
        .collect();
    let even: Vec<Load> = l.iter().map(|l| Load { cpu_us: 100, ..*l }).collect();
    for _ in 0..50 {
        assert_eq!(r.sample(&m, &even, ALL, &fast()), None, "even without CPU");
    }
    let mut r = Rebalancer::default();
    let d = (0..fast().samples)
        .find_map(|_| r.sample(&m, &l, ALL, &fast()))
        .expect("node 1 is hot by CPU");
    assert!(d.lead && d.from == NodeId(1), "{d:?}");
    assert!(costly.contains(&(d.vshard as usize)), "{d:?}");
    assert_eq!(
        d.weight,
        1_000 + 200_000 / BYTES_PER_OP + 40_000 / CPU_US_PER_OP
    );
}
