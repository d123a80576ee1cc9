//! The cluster's metadata as a replicated state machine (issue 3, cluster formation, step 1 in
//! docs/design/formation.md): the cluster id, an epoch bumped by every change, the nodes, and where every
//! vShard's replicas are to be. Sans-IO and deterministic: the metadata group feeds it committed
//! commands, every node applies them in the same order and holds the same state; the vShards'
//! leaders walk their groups to `replicas` with `raft::conf::next_change`. Removing a node is
//! two commands: `RemoveNode` marks it leaving (the placement moves everything off it), and
//! `Drained`, proposed by the metadata leader once no group holds a replica there, drops it.
//! Operators move replicas themselves (`Move`, `CancelMove`, closed by `MoveDone`) and drain a
//! node without removing it (`Drain`, `Undrain`): `moves.rs`.

mod moves;
pub mod rebalance;
pub mod repair;
pub use moves::{MoveKind, MoveRec, MoveState};

use crate::placement::{self, NodeId, NodeSpec, Placement, PlacementError, Replica};
use shardline_transport::wire::{Reader, WireError};
use std::net::{IpAddr, SocketAddr};

/// The encoding's version (the first byte of a command or a state snapshot).
const VERSION: u8 = 1;
/// The state's encoding from issue 19 on (drained nodes, move records); version 1 is still read.
const STATE_VERSION: u8 = 2;

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
    /// Drained by an operator (`Drain`): the placement holds nothing there, but it stays a
    /// member (and in the metadata group) until `Undrain` gives it a share again.
    pub drained: bool,
}

impl NodeInfo {
    /// Whether the placement may put replicas here.
    pub fn placeable(&self) -> bool {
        !self.leaving && !self.drained
    }
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
    /// Operators' moves: the open ones, then the last `moves::FINISHED_KEPT` finished, by id.
    pub moves: Vec<MoveRec>,
    next_move: u64,
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
    RemoveNode {
        id: NodeId,
    },
    /// A leaving node holds no replica of any group any more (the metadata leader saw every
    /// group's committed voters leave it out): it stops being a member.
    Drained {
        id: NodeId,
    },
    /// An operator moves vShard `vshard`'s replica on `from` (`None`: the one on the node
    /// holding the most replicas) to `to`: the placement changes at once and a move record
    /// opens; the vShard's leader walks its group there as after a join.
    Move {
        vshard: u16,
        to: NodeId,
        from: Option<NodeId>,
    },
    /// Puts an open move's replica back where it was (the leader walks the group back; a
    /// learner made for it is removed) and closes the record.
    CancelMove {
        id: u64,
    },
    /// Proposed by the metadata leader once the vShard's committed voters are its placement.
    MoveDone {
        id: u64,
    },
    /// Moves every replica off a node that stays a member (maintenance); `Undrain` undoes it.
    Drain {
        id: NodeId,
    },
    Undrain {
        id: NodeId,
    },
    /// The rebalancer's decision (`rebalance.rs`), applied as `Move` (a replica moves off
    /// `from`, record kind `Rebalance`) or, with `lead`, as a change of preferred leader
    /// between two replicas of the vShard (record kind `Lead`).
    Rebalance {
        vshard: u16,
        from: NodeId,
        to: NodeId,
        lead: bool,
    },
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
    /// `Move`: the record opened.
    MoveStarted {
        id: u64,
    },
    /// `CancelMove`, `MoveDone`.
    MoveEnded,
    /// `Drain`, `Undrain`: `new` is false when the node already was so.
    Drain {
        new: bool,
    },
}

/// Why a command changed nothing (every replica refuses it the same way).
#[derive(Clone, Debug, PartialEq, Eq)]
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
    NoSuchVShard(u16),
    /// A move to a node that is leaving or drained.
    NotPlaceable(NodeId),
    /// A move to a node that already holds a replica of the vShard.
    AlreadyHolds {
        vshard: u16,
        node: NodeId,
    },
    /// A leadership move from a node that is not the vShard's preferred leader.
    NotPreferred {
        vshard: u16,
        node: NodeId,
    },
    /// A move from a node that holds no replica of the vShard.
    NotHolding {
        vshard: u16,
        node: NodeId,
    },
    /// A vShard moves one replica at a time.
    MoveOpen {
        vshard: u16,
        id: u64,
    },
    /// `CancelMove`/`MoveDone` of a move that is not open (finished, or never made).
    NoOpenMove(u64),
    /// `OPEN_MAX` moves are open already.
    TooManyMoves,
    /// `CancelMove` of a move whose source cannot take the replica back.
    CannotUndo(u64),
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
            MetaError::NoSuchVShard(v) => write!(f, "no vShard {v} in this cluster"),
            MetaError::NotPlaceable(id) => write!(
                f,
                "node {} is leaving or drained: it takes no replicas (CLUSTER UNDRAIN gives it a share again)",
                id.0
            ),
            MetaError::AlreadyHolds { vshard, node } => write!(
                f,
                "node {} already holds a replica of vShard {vshard}",
                node.0
            ),
            MetaError::NotPreferred { vshard, node } => write!(
                f,
                "node {} is not vShard {vshard}'s preferred leader",
                node.0
            ),
            MetaError::NotHolding { vshard, node } => {
                write!(f, "node {} holds no replica of vShard {vshard}", node.0)
            }
            MetaError::MoveOpen { vshard, id } => write!(
                f,
                "vShard {vshard} is already moving (move {id}): wait for it or CLUSTER CANCELMOVE {id}"
            ),
            MetaError::NoOpenMove(id) => write!(f, "no open move {id} (see CLUSTER MOVES)"),
            MetaError::TooManyMoves => write!(
                f,
                "{} moves are open already: wait for some to finish",
                moves::OPEN_MAX
            ),
            MetaError::CannotUndo(id) => write!(
                f,
                "move {id} cannot be undone: its source is not a node that may hold replicas (drained, leaving or gone), or it added a replica"
            ),
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
            drained: false,
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
            moves: Vec::new(),
            next_move: 1,
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
                drained: false,
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
            moves: Vec::new(),
            next_move: 1,
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
                        self.retarget(MoveKind::Join, |m| {
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
                    drained: false,
                });
                // Where the replicas are to be from now on: the vShards' leaders walk their
                // groups there (`raft::conf::next_change`); the next change starts from it.
                self.retarget(MoveKind::Join, |m| {
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
                self.check_enough_without(*id)?;
                let n = self.nodes.iter_mut().find(|n| n.id == *id).expect("found");
                n.leaving = true;
                self.retarget(MoveKind::Leave, |m| {
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
            Cmd::Move { vshard, to, from } => {
                self.start_move(*vshard, *to, *from, MoveKind::Operator)?
            }
            Cmd::Rebalance {
                vshard,
                from,
                to,
                lead: false,
            } => {
                if self.node(*from).is_none() {
                    return Err(MetaError::UnknownNode(*from));
                }
                self.start_move(*vshard, *to, Some(*from), MoveKind::Rebalance)?
            }
            Cmd::Rebalance {
                vshard,
                from,
                to,
                lead: true,
            } => self.prefer(*vshard, *from, *to)?,
            Cmd::CancelMove { id } => self.cancel_move(*id)?,
            Cmd::MoveDone { id } => self.end_move(*id, MoveState::Done)?,
            Cmd::Drain { id } => self.set_drained(*id, true)?,
            Cmd::Undrain { id } => self.set_drained(*id, false)?,
        };
        self.epoch += 1;
        Ok(applied)
    }

    /// Recomputes where the replicas are to be after the nodes changed, recording each
    /// replica it moves (as `kind`); on failure `undo` restores the nodes and nothing changed.
    fn retarget(&mut self, kind: MoveKind, undo: impl FnOnce(&mut Meta)) -> Result<(), MetaError> {
        match self.target() {
            Ok(t) => {
                let old = std::mem::replace(&mut self.replicas, t.replicas);
                self.settle_moves();
                self.record_moves(&old, kind);
                Ok(())
            }
            Err(e) => {
                undo(self);
                Err(e)
            }
        }
    }

    /// Refuses to take node `id` out of the placement when fewer nodes than the replication
    /// factor (at most the nodes there are) would be left.
    fn check_enough_without(&self, id: NodeId) -> Result<(), MetaError> {
        let placeable = self.nodes.iter().filter(|n| n.placeable()).count();
        if !self.node(id).is_some_and(|n| n.placeable()) {
            return Ok(());
        }
        let rf = (self.rf as usize).min(placeable).max(1);
        if placeable - 1 < rf {
            return Err(MetaError::TooFewNodes {
                left: placeable - 1,
                rf,
            });
        }
        Ok(())
    }

    /// Where the replicas should be: on the nodes neither leaving nor drained, `rf` of them
    /// per vShard (fewer while there are fewer nodes), moving as few as it can from where they
    /// are.
    pub fn target(&self) -> Result<Placement, MetaError> {
        let specs: Vec<NodeSpec> = self
            .nodes
            .iter()
            .filter(|n| n.placeable())
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
        out.push(STATE_VERSION);
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
            out.push(n.drained as u8);
        }
        out.extend_from_slice(&(self.replicas.len() as u32).to_le_bytes());
        for set in &self.replicas {
            put_replicas(out, set);
        }
        out.extend_from_slice(&self.next_move.to_le_bytes());
        out.extend_from_slice(&(self.moves.len() as u32).to_le_bytes());
        for rec in &self.moves {
            rec.encode(out);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Meta, DecodeError> {
        let mut r = Reader::new(b);
        let version = r.u8()?;
        if version != VERSION && version != STATE_VERSION {
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
                drained: version >= STATE_VERSION && r.flag()?,
            });
        }
        let v = count(&mut r, 1)?;
        let mut replicas = Vec::with_capacity(v);
        for _ in 0..v {
            replicas.push(replica_set(&mut r)?);
        }
        let (mut next_move, mut moves) = (1, Vec::new());
        if version >= STATE_VERSION {
            next_move = r.u64()?;
            let n = count(&mut r, moves::RECORD_BYTES)?;
            moves.reserve(n);
            for _ in 0..n {
                moves.push(MoveRec::decode(&mut r)?);
            }
        }
        r.finish()?;
        let m = Meta {
            cluster_id,
            epoch,
            rf,
            nodes,
            replicas,
            next_id,
            moves,
            next_move,
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
        self.check_moves()
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
            Cmd::Move { vshard, to, from } => {
                out.push(4);
                out.extend_from_slice(&vshard.to_le_bytes());
                out.extend_from_slice(&to.0.to_le_bytes());
                out.extend_from_slice(&from.unwrap_or(NodeId(0)).0.to_le_bytes());
            }
            Cmd::CancelMove { id } | Cmd::MoveDone { id } => {
                out.push(if matches!(self, Cmd::CancelMove { .. }) {
                    5
                } else {
                    6
                });
                out.extend_from_slice(&id.to_le_bytes());
            }
            Cmd::Drain { id } | Cmd::Undrain { id } => {
                out.push(if matches!(self, Cmd::Drain { .. }) {
                    7
                } else {
                    8
                });
                out.extend_from_slice(&id.0.to_le_bytes());
            }
            Cmd::Rebalance {
                vshard,
                from,
                to,
                lead,
            } => {
                out.push(9);
                out.extend_from_slice(&vshard.to_le_bytes());
                out.extend_from_slice(&from.0.to_le_bytes());
                out.extend_from_slice(&to.0.to_le_bytes());
                out.push(*lead as u8);
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
            4 => Cmd::Move {
                vshard: r.u16()?,
                to: NodeId(r.u64()?),
                from: Some(NodeId(r.u64()?)).filter(|id| id.0 != 0),
            },
            5 => Cmd::CancelMove { id: r.u64()? },
            6 => Cmd::MoveDone { id: r.u64()? },
            7 => Cmd::Drain {
                id: NodeId(r.u64()?),
            },
            8 => Cmd::Undrain {
                id: NodeId(r.u64()?),
            },
            9 => Cmd::Rebalance {
                vshard: r.u16()?,
                from: NodeId(r.u64()?),
                to: NodeId(r.u64()?),
                lead: r.flag()?,
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
mod tests;
