//! Membership changes of a group (one server at a time, with learners): the membership in
//! effect, proposing a change, and who may vote and stand. The rules are in docs/design/replication.md,
//! "Membership changes in the Raft core".

use super::{ConfChange, ConfError, Entry, Group, Membership, NodeId, Role};
use std::collections::HashSet;

impl Group {
    /// The membership in effect (set by the latest config entry appended, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.conf
    }

    /// The index of the entry that set the membership in effect (the snapshot's when none
    /// since): committed once `commit_index` reaches it.
    pub fn conf_index(&self) -> u64 {
        self.conf_index
    }

    /// Leader: how far member `id`'s log is known to match (to promote a learner once it has
    /// caught up). `None` on a follower or for a non-member.
    pub fn progress(&self, id: NodeId) -> Option<u64> {
        if id == self.cfg.id {
            return Some(self.unpersisted_from - 1);
        }
        self.matched.get(&id).copied()
    }

    /// Proposes one membership change (leader only). It takes effect here at once and on each
    /// follower when appended; the next change may be proposed once it commits.
    pub fn propose_conf(&mut self, change: ConfChange) -> Result<u64, ConfError> {
        if self.role != Role::Leader {
            return Err(ConfError::NotLeader {
                leader: self.leader,
            });
        }
        // One change at a time, and not before this leader committed in its own term: then
        // any two consecutive memberships share a majority.
        // Nor while leadership is being handed over.
        if self.conf_index > self.commit
            || self.term_at(self.commit) != Some(self.term)
            || self.transferring()
        {
            return Err(ConfError::Pending);
        }
        // A new member may need the snapshot: not before its blob is back in memory (bulk
        // snapshots are read from the snapshot's file by the driver).
        if self.snapshot_blob_released() && !self.cfg.bulk_snapshots {
            return Err(ConfError::Pending);
        }
        // A learner votes only once it holds everything committed: a voter with an empty log
        // could not be told apart from one created on demand, which gives no vote.
        if let ConfChange::Promote(l) = change
            && self.conf.learners.contains(&l)
            && self.matched.get(&l).is_none_or(|&m| m < self.commit)
        {
            return Err(ConfError::Pending);
        }
        let next = self.conf.apply(change)?;
        self.quiet = false;
        let index = self.append_local(next.to_entry_data());
        self.conf = next;
        self.conf_index = index;
        self.track_members();
        Ok(index)
    }

    /// Sets `conf` from the log's latest config entry, else the snapshot's (after a restore, a
    /// truncation or an installed snapshot).
    pub(super) fn recompute_conf(&mut self) {
        let found = self
            .log
            .iter()
            .rev()
            .find_map(|e| e.membership().map(|m| (m, e.index)));
        (self.conf, self.conf_index) = found.unwrap_or((self.snap_conf.clone(), self.snap.index));
    }

    /// The membership in effect at `index` (for a snapshot taken there).
    pub(super) fn conf_at(&self, index: u64) -> Membership {
        self.slice(self.snap.index + 1, index + 1)
            .iter()
            .rev()
            .find_map(Entry::membership)
            .unwrap_or_else(|| self.snap_conf.clone())
    }

    /// Leader: progress entries for exactly the members other than itself; a new member
    /// starts from the leader's last entry (and backs off from there).
    pub(super) fn track_members(&mut self) {
        let (ids, n) = self.peer_ids();
        let ids = &ids[..n];
        self.next.retain(|p, _| ids.contains(p));
        self.snap_sending.retain(|p, _| ids.contains(p));
        self.matched.retain(|p, _| ids.contains(p));
        self.active.retain(|p| ids.contains(p));
        let last = self.last().index;
        for &p in ids {
            self.next.entry(p).or_insert(last);
            self.matched.entry(p).or_insert(0);
        }
    }

    pub(super) fn is_voter(&self) -> bool {
        self.conf.is_voter(self.cfg.id)
    }

    /// Voters stand for election; so does a replica whose latest membership removed it while
    /// that change is not known committed: it may still be needed to commit it (the entry may
    /// be on it and too few of the remaining voters; Raft thesis 4.2.2). Its own vote does not
    /// count then.
    pub(super) fn may_campaign(&self) -> bool {
        self.is_voter() || (self.conf_index > self.commit && !self.conf.contains(self.cfg.id))
    }

    pub(super) fn own_vote(&self) -> HashSet<NodeId> {
        if self.is_voter() {
            HashSet::from([self.cfg.id])
        } else {
            HashSet::new()
        }
    }
}
