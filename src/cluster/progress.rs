//! What a node knows of the moves under way (issue 19, step 4), for `CLUSTER MOVES` and INFO,
//! and of every vShard's load (step 7, for the rebalancer):
//! the records come from the metadata (`meta::MoveRec`, published by thread 0 as it applies
//! them); where each move stands comes from the vShard's leader, whose hints carry its
//! group's learners and how far a learner's base copy has come (`Hint::learners`,
//! `Hint::copy`). Off the request path: written once a second per led group, read by an
//! operator's command.

use super::{Cluster, VShardId, bit};
use shardline_shards::meta::rebalance::Load;
use shardline_shards::meta::{MoveRec, MoveState};
use shardline_transport::wire::{Reader, WireError};
use std::sync::atomic::{AtomicU64, Ordering};

/// How far a base copy has come: bytes the target acknowledged of `total`, in `elapsed_ms`
/// since its session began (all 0 while no copy runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyProgress {
    pub acked: u64,
    pub total: u64,
    pub elapsed_ms: u64,
}

impl CopyProgress {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.acked.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(&self.elapsed_ms.to_le_bytes());
    }

    pub fn decode(r: &mut Reader) -> Result<CopyProgress, WireError> {
        Ok(CopyProgress {
            acked: r.u64()?,
            total: r.u64()?,
            elapsed_ms: r.u64()?,
        })
    }

    /// Bytes a second so far (0 before the first second's tenth).
    pub fn rate(&self) -> u64 {
        if self.elapsed_ms < 100 {
            return 0;
        }
        self.acked.saturating_mul(1000) / self.elapsed_ms
    }

    /// Seconds left at the rate so far (`None`: no rate yet).
    pub fn eta_secs(&self) -> Option<u64> {
        let rate = self.rate();
        (rate > 0).then(|| self.total.saturating_sub(self.acked).div_ceil(rate))
    }
}

/// Per vShard, the leader's last word on its learners, a learner's base copy and the group's
/// load.
#[derive(Default)]
pub struct Seen {
    /// A load's operations (high half) and bytes (low half) a second; its CPU time beside
    /// (a reader may pair one report's with the next's: figures, not state).
    load: AtomicU64,
    cpu_us: std::sync::atomic::AtomicU32,
    learners: AtomicU64,
    acked: AtomicU64,
    total: AtomicU64,
    elapsed_ms: AtomicU64,
}

/// A replica held on this node as its shard thread last published it (every second,
/// `Replicas::publish_held`), for the metrics endpoint: written by that thread only.
#[derive(Default)]
pub struct Held {
    /// 0: no replica here; else `Held::ROLES[role - 1]`.
    pub role: std::sync::atomic::AtomicU8,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    pub applied: AtomicU64,
    /// About the entry bytes its log holds in memory (`Replicas::log_bytes`).
    pub log_bytes: AtomicU64,
    /// The index its last snapshot covers.
    pub snapshot: AtomicU64,
}

impl Held {
    pub const ROLES: [&'static str; 5] = [
        "follower",
        "pre-candidate",
        "candidate",
        "leader",
        "learner",
    ];
}

/// Where a move stands, as the group's state shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The placement names the target; its leader has not added it yet (other moves first:
    /// at most `MOVES_MAX` learners per leader thread; or no leader right now).
    Waiting,
    /// A learner on the target receives its base copy.
    Copying,
    /// The learner replays the log written since its copy's point.
    CatchingUp,
    /// The target votes; the replica it replaces leaves, leadership follows the placement.
    CuttingOver,
    Done,
    Cancelled,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching-up",
            Phase::CuttingOver => "cutting-over",
            Phase::Done => "done",
            Phase::Cancelled => "cancelled",
        }
    }
}

/// The phase of move `rec` given the group's committed `voters` and its `learners` (bit
/// sets) and the copy's progress.
pub fn phase(rec: &MoveRec, voters: u64, learners: u64, copy: CopyProgress) -> Phase {
    match rec.state {
        MoveState::Done => return Phase::Done,
        MoveState::Cancelled => return Phase::Cancelled,
        MoveState::Open => {}
    }
    if voters & bit(rec.to) != 0 {
        Phase::CuttingOver
    } else if learners & bit(rec.to) != 0 {
        if copy.total > 0 && copy.acked < copy.total {
            Phase::Copying
        } else {
            Phase::CatchingUp
        }
    } else {
        Phase::Waiting
    }
}

impl Cluster {
    /// The leader's word (this node's, or a hint's) on group `v`'s learners and copy.
    pub fn note_progress(&self, v: VShardId, learners: u64, copy: CopyProgress) {
        let s = &self.seen[v.0 as usize];
        s.learners.store(learners, Ordering::Relaxed);
        s.acked.store(copy.acked, Ordering::Relaxed);
        s.total.store(copy.total, Ordering::Relaxed);
        s.elapsed_ms.store(copy.elapsed_ms, Ordering::Relaxed);
    }

    /// The leader's word on group `v`'s load (`replica/load.rs`).
    pub fn note_load(&self, v: VShardId, l: Load) {
        let packed = (l.ops as u64) << 32 | l.bytes as u64;
        let s = &self.seen[v.0 as usize];
        s.load.store(packed, Ordering::Relaxed);
        s.cpu_us.store(l.cpu_us, Ordering::Relaxed);
    }

    /// The first `n` vShards' loads, as their leaders last reported them.
    pub fn loads(&self, n: usize) -> Vec<Load> {
        self.seen[..n.min(self.seen.len())]
            .iter()
            .map(|s| {
                let packed = s.load.load(Ordering::Relaxed);
                Load {
                    ops: (packed >> 32) as u32,
                    bytes: packed as u32,
                    cpu_us: s.cpu_us.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    pub fn progress(&self, v: VShardId) -> (u64, CopyProgress) {
        let s = &self.seen[v.0 as usize];
        (
            s.learners.load(Ordering::Relaxed),
            CopyProgress {
                acked: s.acked.load(Ordering::Relaxed),
                total: s.total.load(Ordering::Relaxed),
                elapsed_ms: s.elapsed_ms.load(Ordering::Relaxed),
            },
        )
    }

    /// The metadata's move records as applied here (thread 0).
    pub fn set_moves(&self, moves: &[MoveRec]) {
        let mut m = self.moves.lock().expect("moves lock");
        if m.as_slice() != moves {
            m.clear();
            m.extend_from_slice(moves);
        }
    }

    pub fn moves(&self) -> Vec<MoveRec> {
        self.moves.lock().expect("moves lock").clone()
    }

    /// Each record with its phase and copy progress, as this node knows them.
    pub fn move_views(&self) -> Vec<(MoveRec, Phase, CopyProgress)> {
        self.moves()
            .into_iter()
            .map(|rec| {
                let v = VShardId(rec.vshard);
                let (learners, copy) = self.progress(v);
                let p = phase(&rec, self.replica_mask(v), learners, copy);
                let copy = if p == Phase::Copying {
                    copy
                } else {
                    CopyProgress::default()
                };
                (rec, p, copy)
            })
            .collect()
    }

    /// Open moves, for INFO.
    pub fn moves_open(&self) -> usize {
        self.moves
            .lock()
            .expect("moves lock")
            .iter()
            .filter(|m| m.state == MoveState::Open)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeId;

    fn rec(state: MoveState) -> MoveRec {
        MoveRec {
            id: 1,
            vshard: 0,
            from: NodeId(1),
            to: NodeId(4),
            state,
            epoch: 1,
            kind: shardline_shards::meta::MoveKind::Operator,
        }
    }

    #[test]
    fn a_move_s_phase_follows_its_group() {
        let open = rec(MoveState::Open);
        let none = CopyProgress::default();
        let half = CopyProgress {
            acked: 50,
            total: 100,
            elapsed_ms: 1000,
        };
        let whole = CopyProgress { acked: 100, ..half };
        let (v123, v234, l4) = (0b0111, 0b1110, 0b1000);
        assert_eq!(phase(&open, v123, 0, none), Phase::Waiting);
        assert_eq!(phase(&open, v123, l4, half), Phase::Copying);
        assert_eq!(phase(&open, v123, l4, whole), Phase::CatchingUp);
        assert_eq!(phase(&open, v123, l4, none), Phase::CatchingUp);
        assert_eq!(phase(&open, 0b1111, 0, none), Phase::CuttingOver);
        assert_eq!(phase(&open, v234, 0, none), Phase::CuttingOver);
        assert_eq!(phase(&rec(MoveState::Done), v234, 0, none), Phase::Done);
        assert_eq!(
            phase(&rec(MoveState::Cancelled), v123, l4, half),
            Phase::Cancelled
        );
        assert_eq!(half.rate(), 50);
        assert_eq!(half.eta_secs(), Some(1));
        assert_eq!(none.eta_secs(), None);
    }
}
