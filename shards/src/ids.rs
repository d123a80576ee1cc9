//! The node id every layer shares: Raft groups, the metadata machine, placement and the
//! cluster bus name members by it, so a member id is never confused with an index, a term or
//! a shard thread.
//!
//! Terms and log indexes stay `u64` inside the Raft core, paired where they mean a position
//! ([`crate::raft::LogId`]), as raft-rs and etcd's raft keep them; groups are vShards
//! ([`crate::slot::VShardId`]) to the keyspace and `u32` to the log, the wire and the control
//! messages that take the two top values. (Issue 16's decision; docs/design/redesign.md.)

/// A cluster member's id: 1 for the first founder, handed out by the metadata group after
/// that and never reused. A `u64` on the wire and on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl NodeId {
    /// Where this member sits in a table of every possible member (`id - 1`).
    #[inline]
    pub fn slot(self) -> usize {
        self.0 as usize - 1
    }

    /// The member at `slot` of such a table.
    #[inline]
    pub fn of_slot(slot: usize) -> NodeId {
        NodeId(slot as u64 + 1)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Node ids from numbers (tests).
#[cfg(test)]
pub(crate) fn nodes(ids: &[u64]) -> Vec<NodeId> {
    ids.iter().map(|&n| NodeId(n)).collect()
}
