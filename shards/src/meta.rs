//! The cluster's metadata as a replicated state machine (issue 3, cluster formation, step 1 in
//! docs/design/formation.md): the cluster id, an epoch bumped by every change, the nodes, and where every
//! vShard's replicas are to be. Sans-IO and deterministic: the metadata group feeds it committed
//! commands, every node applies them in the same order and holds the same state; the vShards'
//! leaders walk their groups to `replicas` with `raft::conf::next_change`. Removing a node is
//! two commands: `RemoveNode` marks it leaving (the placement moves everything off it), and
//! `Drained`, proposed by the metadata leader once no group holds a replica there, drops it.

use crate::placement::{self, NodeId, NodeSpec, Placement, PlacementError, Replica};
use shardline_transport::wire::{Reader, WireError};
use std::net::{IpAddr, SocketAddr};

/// The encoding's version (the first byte of a command or a state snapshot).
const VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Where clients connect (and the node's identity: joining again from the same address
    /// returns the same id).
    pub client: SocketAddr,
    pub bus: SocketAddr,
    pub threads: u16,
    /// Asked to leave (`RemoveNode`): the placement holds nothing there; `Drained` drops it
    /// once no group does either.
    pub leaving: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub cluster_id: [u8; 16],
    /// Bumped by every change: routing tables carry it, so a node can tell a newer one.
    pub epoch: u64,
    /// The replication factor asked for; vShards have fewer replicas while the cluster has
    /// fewer nodes.
    pub rf: u8,
    /// By id, ascending.
    pub nodes: Vec<NodeInfo>,
    /// Where the replicas of every vShard are to be (preferred leader first): set when the
    /// cluster starts and recomputed by every join (`target`, which moves as few as it can);
    /// the groups' memberships converge to it (routing follows the memberships themselves).
    pub replicas: Vec<Vec<Replica>>,
    next_id: u64,
}

/// A change, as the metadata group's log carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    AddNode {
        client: SocketAddr,
        bus: SocketAddr,
        threads: u16,
    },
    /// Start removing a node: it is marked leaving and the placement moves its replicas to
    /// the others. Refused when fewer nodes than the replication factor would be left.
    RemoveNode { id: NodeId },
    /// A leaving node holds no replica of any group any more (the metadata leader saw every
    /// group's committed voters leave it out): it stops being a member.
    Drained { id: NodeId },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// `new`: false when a node at that client address was already a member (joining twice
    /// is harmless and answers the same id).
    Added {
        id: NodeId,
        new: bool,
    },
    /// `RemoveNode`: `new` is false when the node was already leaving.
    Leaving {
        new: bool,
    },
    Dropped,
}

/// Why a command changed nothing (every replica refuses it the same way).
#[derive(Debug, PartialEq, Eq)]
pub enum MetaError {
    /// A member already uses this client address with another bus address or thread count.
    AddressTaken(NodeId),
    UnknownNode(NodeId),
    /// A node with no shard threads, or more than a placement can name.
    BadThreads(u16),
    Placement(PlacementError),
    /// Every member id (`1..=NODES_MAX`) has been given out.
    Full,
    /// Removing the node would leave `left` nodes for `rf` replicas per vShard.
    TooFewNodes {
        left: usize,
        rf: usize,
    },
    /// `Drained` for a node that was not asked to leave.
    NotLeaving(NodeId),
}

impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaError::AddressTaken(id) => write!(
                f,
                "node {} already uses this client address with another bus address or core count",
                id.0
            ),
            MetaError::UnknownNode(id) => write!(f, "no node {} in this cluster", id.0),
            MetaError::BadThreads(t) => write!(f, "a node runs 1 to 1024 shard threads, not {t}"),
            MetaError::Placement(e) => write!(f, "cannot place replicas: {e:?}"),
            MetaError::Full => write!(f, "a cluster has at most {NODES_MAX} members"),
            MetaError::TooFewNodes { left, rf } => write!(
                f,
                "removing it would leave {left} node(s) for {rf} replicas per vShard: add a node first"
            ),
            MetaError::NotLeaving(id) => write!(f, "node {} is not leaving", id.0),
        }
    }
}

/// Bytes that are not a command or a state.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

const THREADS_MAX: u16 = 1024;
/// Member ids run from 1 to this (routing keeps a vShard's replicas in a 64-bit set).
pub const NODES_MAX: u64 = 64;

impl Meta {
    /// Member ids below this one have been handed out (ids are never reused): one below it
    /// that `nodes` lacks was removed, in this state's history.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// A new cluster of one node (id 1) holding every vShard.
    pub fn bootstrap(
        cluster_id: [u8; 16],
        vshards: usize,
        rf: u8,
        client: SocketAddr,
        bus: SocketAddr,
        threads: u16,
    ) -> Result<Meta, MetaError> {
        if threads == 0 || threads > THREADS_MAX {
            return Err(MetaError::BadThreads(threads));
        }
        let first = NodeInfo {
            id: NodeId(1),
            client,
            bus,
            threads,
            leaving: false,
        };
        let spec = [NodeSpec {
            id: first.id,
            threads,
        }];
        let p = placement::place(&spec, vshards, 1).map_err(MetaError::Placement)?;
        Ok(Meta {
            cluster_id,
            epoch: 1,
            rf,
            nodes: vec![first],
            replicas: p.replicas,
            next_id: 2,
        })
    }

    /// The state every node of a cluster started from a static member list (`cluster-nodes`)
    /// computes alike: members `1..=n` in list order, placed by `placement::place`.
    pub fn from_list(
        cluster_id: [u8; 16],
        vshards: usize,
        rf: u8,
        members: &[(SocketAddr, SocketAddr)],
        threads: u16,
    ) -> Result<Meta, MetaError> {
        if threads == 0 || threads > THREADS_MAX {
            return Err(MetaError::BadThreads(threads));
        }
        let nodes: Vec<NodeInfo> = members
            .iter()
            .enumerate()
            .map(|(i, &(client, bus))| NodeInfo {
                id: NodeId(i as u64 + 1),
                client,
                bus,
                threads,
                leaving: false,
            })
            .collect();
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .map(|n| NodeSpec { id: n.id, threads })
            .collect();
        // `rf` is what is asked for: fewer replicas while the cluster is smaller.
        let placed = rf.min(nodes.len() as u8).max(1);
        let p = placement::place(&specs, vshards, placed).map_err(MetaError::Placement)?;
        Ok(Meta {
            cluster_id,
            epoch: 1,
            rf,
            next_id: nodes.len() as u64 + 1,
            nodes,
            replicas: p.replicas,
        })
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Applies one committed command. An error changes nothing (and is the same on every
    /// replica, so it is the command's answer, not a fault).
    pub fn apply(&mut self, cmd: &Cmd) -> Result<Applied, MetaError> {
        let applied = match cmd {
            Cmd::AddNode {
                client,
                bus,
                threads,
            } => {
                if *threads == 0 || *threads > THREADS_MAX {
                    return Err(MetaError::BadThreads(*threads));
                }
                if let Some(n) = self.nodes.iter_mut().find(|n| n.client == *client) {
                    if n.bus != *bus || n.threads != *threads {
                        return Err(MetaError::AddressTaken(n.id));
                    }
                    // Joining again (an answer lost, a restart): the same id; a node that was
                    // leaving stays a member after all, and gets its share back.
                    let changed = std::mem::replace(&mut n.leaving, false);
                    let id = n.id;
                    if changed {
                        self.retarget(|m| {
                            let n = m.nodes.iter_mut().find(|n| n.id == id).expect("found");
                            n.leaving = true;
                        })?;
                        self.epoch += 1;
                    }
                    return Ok(Applied::Added { id, new: false });
                }
                if self.next_id > NODES_MAX {
                    return Err(MetaError::Full);
                }
                let id = NodeId(self.next_id);
                self.next_id += 1;
                self.nodes.push(NodeInfo {
                    id,
                    client: *client,
                    bus: *bus,
                    threads: *threads,
                    leaving: false,
                });
                // Where the replicas are to be from now on: the vShards' leaders walk their
                // groups there (`raft::conf::next_change`); the next change starts from it.
                self.retarget(|m| {
                    m.nodes.pop();
                    m.next_id -= 1;
                })?;
                Applied::Added { id, new: true }
            }
            Cmd::RemoveNode { id } => {
                let n = self.node(*id).ok_or(MetaError::UnknownNode(*id))?;
                if n.leaving {
                    return Ok(Applied::Leaving { new: false });
                }
                let staying = self.nodes.iter().filter(|n| !n.leaving).count();
                let rf = (self.rf as usize).min(staying);
                if staying - 1 < rf.max(1) {
                    return Err(MetaError::TooFewNodes {
                        left: staying - 1,
                        rf: rf.max(1),
                    });
                }
                let n = self.nodes.iter_mut().find(|n| n.id == *id).expect("found");
                n.leaving = true;
                self.retarget(|m| {
                    let n = m.nodes.iter_mut().find(|n| n.id == *id).expect("found");
                    n.leaving = false;
                })?;
                Applied::Leaving { new: true }
            }
            Cmd::Drained { id } => {
                let n = self.node(*id).ok_or(MetaError::UnknownNode(*id))?;
                if !n.leaving {
                    return Err(MetaError::NotLeaving(*id));
                }
                debug_assert!(self.replicas.iter().flatten().all(|r| r.node != *id));
                self.nodes.retain(|n| n.id != *id);
                Applied::Dropped
            }
        };
        self.epoch += 1;
        Ok(applied)
    }

    /// Recomputes where the replicas are to be after the nodes changed; on failure `undo`
    /// restores the nodes and nothing changed.
    fn retarget(&mut self, undo: impl FnOnce(&mut Meta)) -> Result<(), MetaError> {
        match self.target() {
            Ok(t) => {
                self.replicas = t.replicas;
                Ok(())
            }
            Err(e) => {
                undo(self);
                Err(e)
            }
        }
    }

    /// Where the replicas should be: on the nodes not leaving, `rf` of them per vShard (fewer
    /// while there are fewer nodes), moving as few as it can from where they are.
    pub fn target(&self) -> Result<Placement, MetaError> {
        let specs: Vec<NodeSpec> = self
            .nodes
            .iter()
            .filter(|n| !n.leaving)
            .map(|n| NodeSpec {
                id: n.id,
                threads: n.threads,
            })
            .collect();
        let rf = (self.rf as usize).min(specs.len()).max(1) as u8;
        let current = Placement {
            rf,
            replicas: self.replicas.clone(),
        };
        placement::rebalance(&current, &specs).map_err(MetaError::Placement)
    }

    /// The state's encoding (the metadata group's snapshot).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&self.cluster_id);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.push(self.rf);
        out.extend_from_slice(&self.next_id.to_le_bytes());
        out.extend_from_slice(&(self.nodes.len() as u32).to_le_bytes());
        for n in &self.nodes {
            out.extend_from_slice(&n.id.0.to_le_bytes());
            put_addr(out, n.client);
            put_addr(out, n.bus);
            out.extend_from_slice(&n.threads.to_le_bytes());
            out.push(n.leaving as u8);
        }
        out.extend_from_slice(&(self.replicas.len() as u32).to_le_bytes());
        for set in &self.replicas {
            put_replicas(out, set);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Meta, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8()? != VERSION {
            return Err(DecodeError("unknown metadata version"));
        }
        let cluster_id = r.array()?;
        let epoch = r.u64()?;
        let rf = r.u8()?;
        let next_id = r.u64()?;
        let n = count(&mut r, 4 + 8)?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(NodeInfo {
                id: NodeId(r.u64()?),
                client: addr(&mut r)?,
                bus: addr(&mut r)?,
                threads: r.u16()?,
                leaving: r.flag()?,
            });
        }
        let v = count(&mut r, 1)?;
        let mut replicas = Vec::with_capacity(v);
        for _ in 0..v {
            replicas.push(replica_set(&mut r)?);
        }
        r.finish()?;
        let m = Meta {
            cluster_id,
            epoch,
            rf,
            nodes,
            replicas,
            next_id,
        };
        m.check()?;
        Ok(m)
    }

    /// What every metadata state this code makes holds, checked on what comes from a peer or
    /// a file: member ids in `1..=NODES_MAX`, each once, below `next_id` (at most one past the
    /// last id); replicas only on members, on a thread they have, each member once per set.
    fn check(&self) -> Result<(), DecodeError> {
        if self.next_id > NODES_MAX + 1 {
            return Err(DecodeError("a next member id past the member limit"));
        }
        let mut seen = 0u64;
        for n in &self.nodes {
            if n.id.0 == 0 || n.id.0 >= self.next_id {
                return Err(DecodeError("a member id out of range"));
            }
            let bit = 1u64 << (n.id.0 - 1);
            if seen & bit != 0 {
                return Err(DecodeError("a member listed twice"));
            }
            seen |= bit;
            if n.threads == 0 || n.threads > THREADS_MAX {
                return Err(DecodeError("a member with no or too many shard threads"));
            }
        }
        for set in &self.replicas {
            let mut in_set = 0u64;
            for r in set {
                let Some(n) = self.nodes.iter().find(|n| n.id == r.node) else {
                    return Err(DecodeError("a replica on a node that is not a member"));
                };
                let bit = 1u64 << (r.node.0 - 1);
                if r.thread >= n.threads || in_set & bit != 0 {
                    return Err(DecodeError(
                        "a replica on a thread its node lacks, or twice",
                    ));
                }
                in_set |= bit;
            }
        }
        Ok(())
    }
}

impl Cmd {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        match self {
            Cmd::AddNode {
                client,
                bus,
                threads,
            } => {
                out.push(1);
                put_addr(out, *client);
                put_addr(out, *bus);
                out.extend_from_slice(&threads.to_le_bytes());
            }
            Cmd::RemoveNode { id } => {
                out.push(2);
                out.extend_from_slice(&id.0.to_le_bytes());
            }
            Cmd::Drained { id } => {
                out.push(3);
                out.extend_from_slice(&id.0.to_le_bytes());
            }
        }
    }

    pub fn decode(b: &[u8]) -> Result<Cmd, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8()? != VERSION {
            return Err(DecodeError("unknown metadata version"));
        }
        let cmd = match r.u8()? {
            1 => Cmd::AddNode {
                client: addr(&mut r)?,
                bus: addr(&mut r)?,
                threads: r.u16()?,
            },
            2 => Cmd::RemoveNode {
                id: NodeId(r.u64()?),
            },
            3 => Cmd::Drained {
                id: NodeId(r.u64()?),
            },
            _ => return Err(DecodeError("unknown metadata command")),
        };
        r.finish()?;
        Ok(cmd)
    }
}

/// `family: u8 (4 or 6) | ip (4 or 16 bytes) | port: u16`.
fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_le_bytes());
}

/// `count: u8 | (node: u64, thread: u16)...`.
fn put_replicas(out: &mut Vec<u8>, set: &[Replica]) {
    out.push(set.len() as u8);
    for r in set {
        out.extend_from_slice(&r.node.0.to_le_bytes());
        out.extend_from_slice(&r.thread.to_le_bytes());
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError(e.what())
    }
}

/// A `u32` count of items taking at least `min_bytes` each.
fn count(r: &mut Reader, min_bytes: usize) -> Result<usize, DecodeError> {
    let n = r.u32()?;
    Ok(r.count(n as u64, min_bytes)?)
}

fn addr(r: &mut Reader) -> Result<SocketAddr, DecodeError> {
    let ip = match r.u8()? {
        4 => IpAddr::from(r.array::<4>()?),
        6 => IpAddr::from(r.array::<16>()?),
        _ => return Err(DecodeError("unknown address family")),
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}

fn replica_set(r: &mut Reader) -> Result<Vec<Replica>, DecodeError> {
    let n = r.u8()?;
    let n = r.count(n as u64, 10)?;
    (0..n)
        .map(|_| {
            Ok(Replica {
                node: NodeId(r.u64()?),
                thread: r.u16()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let share =
            |r: &Vec<Vec<Replica>>| r.iter().flatten().filter(|r| r.node == NodeId(4)).count();
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
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(Meta::decode(&b), Ok(m.clone()));
        for cut in 0..b.len() {
            assert!(Meta::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let cmds = [
            add(7005, 2),
            Cmd::RemoveNode { id: NodeId(3) },
            Cmd::Drained { id: NodeId(4) },
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
}
