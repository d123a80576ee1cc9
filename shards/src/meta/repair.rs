//! Automatic repair (issue 20, step 3; docs/design/control.md): which dead member the metadata
//! leader removes (`Cmd::RemoveNode`, as `CLUSTER FORGET` does), or why it removes none.
//! Pure: the metadata, the vShards' voters, and how long each member has been held dead in;
//! one decision out. The leader proposes it; the metadata group's majority commits it or
//! nothing happens (a minority's leader cannot commit, so a partition's small side never
//! removes anyone).
//!
//! Rules: a member held dead (SWIM's `Dead`) for at least `down_after_ms` is removed, the one
//! dead longest first, one at a time (none while a node is leaving: its replicas are still
//! being made again elsewhere by the moves machinery, throttled by `bulk-thread-share` and
//! `bulk-max-bytes-per-sec`). Never below quorum: a member is removed only if every vShard
//! with a voter there keeps a majority of its voters alive without it; a vShard that lost
//! its majority is reported and nothing is removed for it (forgetting members cannot give
//! it a quorum back; its dead replicas must come back). A removal the metadata would refuse
//! (fewer nodes left than the replication factor) is reported too.

use super::{Cmd, Meta, MetaError};
use crate::placement::NodeId;

/// What the metadata leader does about the dead members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Nobody has been dead long enough, or a removal is under way.
    Nothing,
    /// Propose `Cmd::RemoveNode { id }`.
    Remove(NodeId),
    /// Member `id` has been dead long enough but cannot be removed.
    Blocked { id: NodeId, why: Blocked },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// These vShards (with a voter on it) have no live majority of their voters.
    NoMajority(Vec<u16>),
    /// The metadata refuses the removal (too few nodes would be left).
    Refused(MetaError),
}

/// The decision for `meta`: `voters(v)` are vShard `v`'s voters (as routing knows them),
/// `dead_ms(id)` how long member `id` has been held dead (`None`: it is not).
pub fn decide(
    meta: &Meta,
    vshards: u16,
    voters: impl Fn(u16) -> Vec<NodeId>,
    dead_ms: impl Fn(NodeId) -> Option<u64>,
    down_after_ms: u64,
) -> Repair {
    if meta.nodes.iter().any(|n| n.leaving) {
        return Repair::Nothing;
    }
    let Some(id) = meta
        .nodes
        .iter()
        .filter_map(|n| dead_ms(n.id).map(|ms| (ms, n.id)))
        .filter(|&(ms, _)| ms >= down_after_ms)
        .max_by_key(|&(ms, id)| (ms, std::cmp::Reverse(id.0)))
        .map(|(_, id)| id)
    else {
        return Repair::Nothing;
    };
    let no_majority: Vec<u16> = (0..vshards)
        .filter(|&v| {
            let vs = voters(v);
            vs.contains(&id) && {
                let live = vs.iter().filter(|&&x| dead_ms(x).is_none()).count();
                live * 2 <= vs.len()
            }
        })
        .collect();
    if !no_majority.is_empty() {
        return Repair::Blocked {
            id,
            why: Blocked::NoMajority(no_majority),
        };
    }
    // What the metadata would answer (it checks more than this module knows: the nodes left
    // for the replication factor).
    if let Err(e) = meta.clone().apply(&Cmd::RemoveNode { id }) {
        return Repair::Blocked {
            id,
            why: Blocked::Refused(e),
        };
    }
    Repair::Remove(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    fn meta(n: u64, rf: u8) -> Meta {
        let addrs: Vec<(SocketAddr, SocketAddr)> = (0..n)
            .map(|i| {
                (
                    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                    SocketAddr::from(([127, 0, 0, 1], 17000 + i as u16)),
                )
            })
            .collect();
        Meta::from_list([7; 16], 8, rf, &addrs, 1).expect("a placement")
    }

    fn voters(m: &Meta) -> impl Fn(u16) -> Vec<NodeId> + '_ {
        |v| m.replicas[v as usize].iter().map(|r| r.node).collect()
    }

    #[test]
    fn the_member_dead_longest_is_removed_once_past_the_time_and_only_then() {
        let m = meta(5, 3);
        // Every vShard on nodes 1, 3, 5 (as routing knows them); 1 and 2 dead.
        let on135 = |_: u16| vec![NodeId(1), NodeId(3), NodeId(5)];
        let dead: HashMap<NodeId, u64> = [(NodeId(1), 6_000), (NodeId(2), 4_000)].into();
        let d = |id| dead.get(&id).copied();
        assert_eq!(decide(&m, 8, on135, d, 5_000), Repair::Remove(NodeId(1)));
        assert_eq!(
            decide(&m, 8, on135, d, 3_000),
            Repair::Remove(NodeId(1)),
            "the one dead longest first"
        );
        assert_eq!(decide(&m, 8, on135, d, 7_000), Repair::Nothing);
        assert_eq!(decide(&m, 8, voters(&m), |_| None, 0), Repair::Nothing);
        // Through the real placement: one dead member keeps every majority.
        let only4 = |id: NodeId| (id == NodeId(4)).then_some(6_000);
        assert_eq!(
            decide(&m, 8, voters(&m), only4, 5_000),
            Repair::Remove(NodeId(4))
        );
    }

    #[test]
    fn one_removal_at_a_time() {
        let mut m = meta(5, 3);
        m.apply(&Cmd::RemoveNode { id: NodeId(1) }).unwrap();
        let d = |id: NodeId| (id == NodeId(3)).then_some(60_000);
        assert_eq!(decide(&m, 8, voters(&m), d, 1_000), Repair::Nothing);
    }

    #[test]
    fn a_vshard_without_a_live_majority_blocks_the_removal_and_is_named() {
        let m = meta(5, 3);
        // Two of vShard 0's three voters dead.
        let vs = voters(&m)(0);
        let (a, b) = (vs[0], vs[1]);
        let d = |id: NodeId| {
            if id == a {
                Some(9_000)
            } else if id == b {
                Some(8_000)
            } else {
                None
            }
        };
        match decide(&m, 8, voters(&m), d, 1_000) {
            Repair::Blocked {
                id,
                why: Blocked::NoMajority(vshards),
            } => {
                assert_eq!(id, a);
                assert!(vshards.contains(&0));
                for v in vshards {
                    let vs = voters(&m)(v);
                    assert!(vs.contains(&a) && vs.contains(&b));
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_removal_the_metadata_would_refuse_is_reported() {
        // Three nodes, three replicas each: two would be left.
        let m = meta(3, 3);
        let d = |id: NodeId| (id == NodeId(3)).then_some(60_000);
        assert!(matches!(
            decide(&m, 8, voters(&m), d, 1_000),
            Repair::Blocked {
                id: NodeId(3),
                why: Blocked::Refused(MetaError::TooFewNodes { .. })
            }
        ));
    }
}
