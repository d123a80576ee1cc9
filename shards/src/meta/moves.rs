//! Moves (issue 19, step 4): a record in the metadata for every replica the placement moves,
//! whether an operator asked (`Move`) or a drain, a join or a removal recomputed the
//! placement, so every node sees it and a restart or a failover of any party finds it where
//! it was. Starting a move changes the
//! placement at once (the replica on `from` is replaced by one on `to`, in the same position,
//! so a preferred leader's replacement is preferred in turn); the vShard's leader then walks
//! its group there as after a join (a learner, its base copy, promotion, the old voter
//! removed, leadership handed over), and whichever node leads the metadata closes the record
//! (`MoveDone`) once the group's committed voters are the placement. Cancelling puts `from`
//! back in the placement, so the leader walks the group back (a learner made for the move is
//! removed; a replica already moved is copied back). Draining a node takes it out of the
//! placement without removing it from the cluster. Nothing here does I/O: the decisions are
//! the same on every replica of the metadata.

use super::*;

/// Finished records kept for `CLUSTER MOVES` (oldest dropped first).
pub const FINISHED_KEPT: usize = 32;
/// Open moves at once (each holds a learner's base copy somewhere).
pub const OPEN_MAX: usize = 256;
/// A record's encoded size: id, vshard, from, to, state, epoch, kind.
pub(super) const RECORD_BYTES: usize = 8 + 2 + 8 + 8 + 1 + 8 + 1;

/// Why a replica moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveKind {
    /// `CLUSTER MOVE`.
    Operator,
    /// `CLUSTER DRAIN` or `UNDRAIN` recomputed the placement.
    Drain,
    /// A node joined (or one leaving joined again).
    Join,
    /// A node is leaving (`CLUSTER FORGET`).
    Leave,
    /// The rebalancer moved a replica off a node leading more than its share of the load.
    Rebalance,
    /// The rebalancer made another replica the preferred leader (`from` and `to` both keep
    /// their replicas; the leader hands over to `to`).
    Lead,
}

impl MoveKind {
    pub fn name(self) -> &'static str {
        match self {
            MoveKind::Operator => "operator",
            MoveKind::Drain => "drain",
            MoveKind::Join => "join",
            MoveKind::Leave => "leave",
            MoveKind::Rebalance => "rebalance",
            MoveKind::Lead => "leader",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveState {
    /// The placement names `to`; the group is not there yet.
    Open,
    /// The group's committed voters were the placement (`MoveDone`).
    Done,
    /// Cancelled by an operator, or overtaken: a later placement change (a drain, a node
    /// leaving or joining) took `to` out of the vShard's placement.
    Cancelled,
}

impl MoveState {
    pub fn name(self) -> &'static str {
        match self {
            MoveState::Open => "open",
            MoveState::Done => "done",
            MoveState::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveRec {
    pub id: u64,
    pub vshard: u16,
    /// `NodeId(0)`: a replica added (the replication factor grew with the cluster).
    pub from: NodeId,
    pub to: NodeId,
    pub state: MoveState,
    /// The metadata epoch the move started at.
    pub epoch: u64,
    pub kind: MoveKind,
}

impl MoveRec {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.vshard.to_le_bytes());
        out.extend_from_slice(&self.from.0.to_le_bytes());
        out.extend_from_slice(&self.to.0.to_le_bytes());
        out.push(self.state as u8);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.push(self.kind as u8);
    }

    pub(super) fn decode(r: &mut Reader) -> Result<MoveRec, DecodeError> {
        Ok(MoveRec {
            id: r.u64()?,
            vshard: r.u16()?,
            from: NodeId(r.u64()?),
            to: NodeId(r.u64()?),
            state: match r.u8()? {
                0 => MoveState::Open,
                1 => MoveState::Done,
                2 => MoveState::Cancelled,
                _ => return Err(DecodeError("an unknown move state")),
            },
            epoch: r.u64()?,
            kind: match r.u8()? {
                0 => MoveKind::Operator,
                1 => MoveKind::Drain,
                2 => MoveKind::Join,
                3 => MoveKind::Leave,
                4 => MoveKind::Rebalance,
                5 => MoveKind::Lead,
                _ => return Err(DecodeError("an unknown move kind")),
            },
        })
    }
}

impl Meta {
    /// The open move of vShard `v`, if any.
    pub fn open_move(&self, v: u16) -> Option<&MoveRec> {
        self.moves
            .iter()
            .find(|m| m.vshard == v && m.state == MoveState::Open)
    }

    pub(super) fn start_move(
        &mut self,
        v: u16,
        to: NodeId,
        from: Option<NodeId>,
        kind: MoveKind,
    ) -> Result<Applied, MetaError> {
        let set = self.movable(v, to)?;
        let to_info = self.node(to).expect("checked");
        if set.iter().any(|r| r.node == to) {
            return Err(MetaError::AlreadyHolds {
                vshard: v,
                node: to,
            });
        }
        let held = |id: NodeId| {
            self.replicas
                .iter()
                .flatten()
                .filter(|r| r.node == id)
                .count()
        };
        let k = match from {
            Some(f) => {
                if self.node(f).is_none() {
                    return Err(MetaError::UnknownNode(f));
                }
                set.iter()
                    .position(|r| r.node == f)
                    .ok_or(MetaError::NotHolding { vshard: v, node: f })?
            }
            // The replica on the node holding the most (ties: the later in the set, so not
            // the preferred leader when another will do).
            None => (0..set.len())
                .max_by_key(|&k| (held(set[k].node), k))
                .expect("a vShard has replicas"),
        };
        let from = set[k].node;
        // The thread the replaced replica was on (the server runs a vShard on the thread
        // its `Layout` owns it by, the same on every node: the placement's thread is a label).
        let thread = set[k].thread.min(to_info.threads - 1);
        self.replicas[v as usize][k] = Replica { node: to, thread };
        let id = self.open(v, from, to, kind);
        Ok(Applied::MoveStarted { id })
    }

    /// The rebalancer's leadership move: `to`, which holds a replica of `v`, becomes its
    /// preferred leader in place of `from` (the two swap places in the set; the leader then
    /// hands over, as it does to any preferred replica). A record of kind `Lead` opens; it
    /// closes once `to` leads.
    pub(super) fn prefer(
        &mut self,
        v: u16,
        from: NodeId,
        to: NodeId,
    ) -> Result<Applied, MetaError> {
        let set = self.movable(v, to)?;
        if set[0].node != from {
            return Err(MetaError::NotPreferred {
                vshard: v,
                node: from,
            });
        }
        let k = set
            .iter()
            .position(|r| r.node == to)
            .ok_or(MetaError::NotHolding {
                vshard: v,
                node: to,
            })?;
        if k == 0 {
            return Err(MetaError::AlreadyHolds {
                vshard: v,
                node: to,
            });
        }
        self.replicas[v as usize].swap(0, k);
        let id = self.open(v, from, to, MoveKind::Lead);
        Ok(Applied::MoveStarted { id })
    }

    /// What every move of vShard `v` toward `to` needs: the vShard, `to` a member that may
    /// hold replicas, no move of `v` open and room for one more; `v`'s replica set.
    fn movable(&self, v: u16, to: NodeId) -> Result<&[Replica], MetaError> {
        let set = self
            .replicas
            .get(v as usize)
            .ok_or(MetaError::NoSuchVShard(v))?;
        if !self.node(to).ok_or(MetaError::UnknownNode(to))?.placeable() {
            return Err(MetaError::NotPlaceable(to));
        }
        if let Some(open) = self.open_move(v) {
            return Err(MetaError::MoveOpen {
                vshard: v,
                id: open.id,
            });
        }
        if self.open_moves() >= OPEN_MAX {
            return Err(MetaError::TooManyMoves);
        }
        Ok(set)
    }

    pub(crate) fn open_moves(&self) -> usize {
        self.moves
            .iter()
            .filter(|m| m.state == MoveState::Open)
            .count()
    }

    /// Opens a record (the placement already changed); its id.
    fn open(&mut self, vshard: u16, from: NodeId, to: NodeId, kind: MoveKind) -> u64 {
        let id = self.next_move;
        self.next_move += 1;
        self.moves.push(MoveRec {
            id,
            vshard,
            from,
            to,
            state: MoveState::Open,
            epoch: self.epoch + 1,
            kind,
        });
        id
    }

    /// After the placement was recomputed from `old`: a record for each replica it moved
    /// (one placed on a node that did not hold the vShard, paired with one taken off, if
    /// any), while fewer than `OPEN_MAX` are open (past that the placement still changes; the
    /// leaders walk there all the same, unrecorded).
    pub(super) fn record_moves(&mut self, old: &[Vec<Replica>], kind: MoveKind) {
        let holds = |set: &[Replica], id: NodeId| set.iter().any(|r| r.node == id);
        let mut pairs = Vec::new();
        for (v, (was, now)) in old.iter().zip(&self.replicas).enumerate() {
            let mut off = was.iter().map(|r| r.node).filter(|&id| !holds(now, id));
            for to in now.iter().map(|r| r.node).filter(|&id| !holds(was, id)) {
                pairs.push((v as u16, off.next().unwrap_or(NodeId(0)), to));
            }
        }
        let room = OPEN_MAX.saturating_sub(self.open_moves());
        for (v, from, to) in pairs.into_iter().take(room) {
            self.open(v, from, to, kind);
        }
    }

    pub(super) fn cancel_move(&mut self, id: u64) -> Result<Applied, MetaError> {
        let rec = *self
            .moves
            .iter()
            .find(|m| m.id == id && m.state == MoveState::Open)
            .ok_or(MetaError::NoOpenMove(id))?;
        if rec.kind == MoveKind::Lead {
            // Both keep their replicas: `from` is preferred again if `to` still is.
            let set = &mut self.replicas[rec.vshard as usize];
            if let (true, Some(k)) = (
                set[0].node == rec.to,
                set.iter().position(|r| r.node == rec.from),
            ) {
                set.swap(0, k);
            }
            return self.end_move(id, MoveState::Cancelled);
        }
        let set = &self.replicas[rec.vshard as usize];
        if !self.node(rec.from).is_some_and(|n| n.placeable()) {
            // Nowhere to put it back (a replica added, or one moved off a node that is
            // drained, leaving or gone): refused, the move goes on.
            return Err(MetaError::CannotUndo(id));
        }
        let back = !set.iter().any(|r| r.node == rec.from);
        if let (true, Some(k)) = (back, set.iter().position(|r| r.node == rec.to)) {
            let thread = self.replicas[rec.vshard as usize][k].thread;
            let threads = self.node(rec.from).expect("checked").threads;
            self.replicas[rec.vshard as usize][k] = Replica {
                node: rec.from,
                thread: thread.min(threads - 1),
            };
        }
        self.end_move(id, MoveState::Cancelled)
    }

    /// Closes open move `id` as `state`, keeping the last `FINISHED_KEPT` finished records.
    pub(super) fn end_move(&mut self, id: u64, state: MoveState) -> Result<Applied, MetaError> {
        let rec = self
            .moves
            .iter_mut()
            .find(|m| m.id == id && m.state == MoveState::Open)
            .ok_or(MetaError::NoOpenMove(id))?;
        rec.state = state;
        self.trim_finished();
        Ok(Applied::MoveEnded)
    }

    fn trim_finished(&mut self) {
        let finished = self
            .moves
            .iter()
            .filter(|m| m.state != MoveState::Open)
            .count();
        let mut drop = finished.saturating_sub(FINISHED_KEPT);
        self.moves.retain(|m| {
            let gone = drop > 0 && m.state != MoveState::Open;
            drop -= gone as usize;
            !gone
        });
    }

    /// After the placement was recomputed (a join, a removal, a drain): open moves whose
    /// target the placement no longer names are overtaken.
    pub(super) fn settle_moves(&mut self) {
        let mut overtaken = false;
        for m in self.moves.iter_mut().filter(|m| m.state == MoveState::Open) {
            if !self.replicas[m.vshard as usize]
                .iter()
                .any(|r| r.node == m.to)
            {
                m.state = MoveState::Cancelled;
                overtaken = true;
            }
        }
        if overtaken {
            self.trim_finished();
        }
    }

    pub(super) fn set_drained(&mut self, id: NodeId, drained: bool) -> Result<Applied, MetaError> {
        let n = self.node(id).ok_or(MetaError::UnknownNode(id))?;
        if n.leaving {
            return Err(MetaError::NotPlaceable(id));
        }
        if n.drained == drained {
            return Ok(Applied::Drain { new: false });
        }
        if drained {
            self.check_enough_without(id)?;
        }
        let set = |m: &mut Meta, to: bool| {
            m.nodes
                .iter_mut()
                .find(|n| n.id == id)
                .expect("found")
                .drained = to;
        };
        set(self, drained);
        self.retarget(MoveKind::Drain, |m| set(m, !drained))?;
        Ok(Applied::Drain { new: true })
    }

    /// The rules a decoded state's records keep: ids below `next_move`, each once, vShards
    /// that exist, at most `OPEN_MAX` open.
    pub(super) fn check_moves(&self) -> Result<(), DecodeError> {
        if self.open_moves() > OPEN_MAX || self.moves.len() > OPEN_MAX + FINISHED_KEPT {
            return Err(DecodeError("too many move records"));
        }
        for (i, m) in self.moves.iter().enumerate() {
            if m.id == 0 || m.id >= self.next_move || m.vshard as usize >= self.replicas.len() {
                return Err(DecodeError("a move record out of range"));
            }
            if self.moves[..i].iter().any(|o| o.id >= m.id) {
                return Err(DecodeError("a move recorded twice"));
            }
        }
        Ok(())
    }
}
