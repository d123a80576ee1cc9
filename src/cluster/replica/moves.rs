//! Moving vShard replicas between nodes (issue 3, rebalancing): each vShard's leader walks its
//! group toward the metadata's placement (`Cluster::target`) one membership change at a time
//! (`raft::conf::next_change`: a learner, promoted once caught up, then the old voter removed);
//! a node creates a replica when a leader first sends it a message for a group placed there;
//! a node that a committed membership leaves out is told so (a `REMOVED_GROUP` notice) and
//! drops its replica: the vShard's keys, and on disk a tombstone snapshot (the membership
//! without it, no state) with the log purged, so a restart does not bring it back.

use super::*;
use shardline_shards::raft::conf::{ConfChange, Membership};

/// Groups of one shard thread that may have a learner catching up at once: each learner gets
/// the vShard by snapshot, so this bounds what a join costs the leaders' threads at a time.
const MOVES_MAX: usize = 4;
/// Leadership handovers one shard thread starts per look, and how soon a group may be handed
/// over again (a preferred leader that cannot win must not make its group flap).
const HANDOVERS_MAX: usize = 8;
const HANDOVER_AGAIN: Duration = Duration::from_secs(10);
/// How long a leader whose own replica is to leave waits for the handover it started before it
/// removes itself anyway (an election follows then).
const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// How often leaders look for groups to move.
pub(super) const MOVES_PERIOD: Duration = Duration::from_millis(100);

impl Replicas {
    /// A message for group `g`, which has no replica here: one is created, empty (it gets the
    /// vShard by snapshot or the whole log), if the metadata places `g` here and it was not
    /// removed from here before. Its membership comes with what the leader sends; until then it
    /// names only the sender, so it can never stand for election on its own.
    pub(super) fn create_on_demand(&mut self, g: u32, from: NodeId) -> bool {
        if g >= self.meta_g || !self.c.is_target(VShardId(g as u16)) {
            return false;
        }
        let cfg = raft_config(&self.c, g, vec![from], self.chunk_bytes, self.seed);
        self.groups[g as usize] = Some(Group::new(cfg));
        tracing::info!(
            vshard = g,
            leader = %from,
            "creating a replica placed on this node"
        );
        true
    }

    /// On a leader: a message from `peer`, which a committed membership of `g` leaves out (a
    /// replica that missed its removal): it is told again.
    pub(super) fn non_member_check(&mut self, g: u32, peer: NodeId) {
        let Some(grp) = self.groups[g as usize].as_ref() else {
            return;
        };
        if grp.role() == raft::Role::Leader
            && !grp.membership().contains(peer)
            && grp.conf_index() <= grp.commit_index()
        {
            let mut b = Vec::with_capacity(12);
            super::super::encode_removed(g, grp.conf_index(), &mut b);
            self.queue_control(peer, super::super::REMOVED_GROUP, &b);
        }
    }

    /// On a leader, once the membership set by entry `index` of `g` is committed and applied:
    /// every member it leaves out is told (those that never held a replica ignore it).
    pub(super) fn conf_applied(&mut self, g: u32, index: u64, data: &[u8]) {
        let Some(grp) = self.groups[g as usize].as_ref() else {
            return;
        };
        if grp.role() != raft::Role::Leader {
            return;
        }
        let Some(conf) = Membership::from_entry_data(data) else {
            return;
        };
        let mut b = Vec::with_capacity(12);
        super::super::encode_removed(g, index, &mut b);
        for peer in self.c.member_ids() {
            if !conf.contains(peer) {
                self.queue_control(peer, super::super::REMOVED_GROUP, &b);
            }
        }
    }

    /// A leader's hint from `peer`: routing learns the leader and voters of a group with no
    /// replica here (a replica's own Raft state routes its group: a peer's word, a wrong term
    /// included, must not override it); a replica here that the committed membership leaves
    /// out (neither a voter nor a learner of it) is dropped if this node is not placed there
    /// any more. Before hints named learners (wire 10), a learner here was kept unless older
    /// than the hint's term and membership, and a learner removed in the same term it was
    /// added in, that missed its removal, was kept for good (found by the simulator's
    /// operators scenario; before it, a learner whose addition never committed, by the join
    /// scenario).
    pub(super) fn hint(&mut self, peer: NodeId, h: super::super::Hint) {
        let v = VShardId(h.group);
        let held = self.groups[h.group as usize].is_some();
        if !held {
            self.c.note_hint(v, h.term, peer);
        }
        if h.group as u32 >= self.meta_g || h.voters == 0 {
            return;
        }
        if !held && self.c.leader(v) == peer {
            self.c.set_replicas(v, h.voters);
        }
        if self.c.leader(v) == peer {
            self.c.note_progress(v, h.learners, h.copy);
            if let Some(l) = h.load {
                self.c.note_load(v, l);
            }
        }
        // The hint names the committed membership's voters and learners (both of the same
        // membership: voters are 0 while a change is not committed).
        let me = super::super::mask(std::iter::once(self.c.me));
        if h.voters & me == 0 && h.learners & me == 0 && held && !self.c.is_target(v) {
            self.removed_notice(h.group as u32, h.conf_index);
        }
    }

    /// A leader says a committed membership of `g` (set by entry `index`) leaves this node
    /// out. Dropped unless this replica already holds a later membership that includes it
    /// (a notice delayed past a re-add).
    pub(super) fn removed_notice(&mut self, g: u32, index: u64) {
        let Some(grp) = self.groups[g as usize].as_ref() else {
            return;
        };
        if grp.membership().contains(self.c.me) && grp.conf_index() > index {
            return;
        }
        if g == self.meta_g {
            // Kept (the node still follows the metadata until it is done leaving): noted for
            // `left`. Members that are not in the group yet get these too.
            self.meta_removed = Some(index);
            return;
        }
        if self.to_drop.contains(&g) {
            return;
        }
        self.to_drop.push(g);
        self.wake();
    }

    /// Drops the replicas of `to_drop` (`start_step`, which holds the keyspace).
    pub(super) fn drop_removed(&mut self, db: &mut shardline_shards::db::Db) {
        for g in std::mem::take(&mut self.to_drop) {
            let Some(grp) = self.groups[g as usize].take() else {
                continue;
            };
            let last = grp.last_id();
            // The membership without this node (the notice says a committed one is so; this
            // replica may never have received it, as the leader stops sending once appended).
            let mut without = grp.membership().clone();
            without.voters.retain(|&id| id != self.c.me);
            without.learners.retain(|&id| id != self.c.me);
            // The tombstone is written before the purge record's batch (as compaction does).
            self.before_flush.push(SnapshotFile {
                group: g,
                last,
                blob: raft::conf::snapshot_blob(&without, &[]),
                kind: SnapshotKind::Tombstone,
                staged: None,
            });
            // The log forgets the group: a replica placed here again starts from nothing.
            self.wal.reset(g);
            db.flush_vshard(VShardId(g as u16));
            self.applied[g as usize] = LogId::default();
            self.clocks[g as usize] = 0;
            self.log_bytes_total -= std::mem::take(&mut self.log_bytes[g as usize]);
            // What waits on the replica is answered (never left hanging).
            self.pending.drop_group(g);
            self.drop_direct(g);
            self.settle_blocks();
            tracing::info!(vshard = g, "dropped a replica moved off this node");
        }
    }

    /// On the leaders of this thread's vShards: the next membership change of groups that are
    /// not where the metadata places them, at most `MOVES_MAX` learners catching up at once;
    /// groups in place whose preferred leader is another live voter are handed over to it
    /// (once settled: `Group::transfer_leader`), so leaders spread as the placement does.
    /// `Err(Fatal::Left)` once this node, asked to leave, holds nothing more (thread 0).
    pub(super) fn drive_moves(&mut self, now: Instant) -> Result<(), Fatal> {
        if self.shard == 0 && self.left() {
            return Err(Fatal::Left);
        }
        let hosted = self.groups[..self.meta_g as usize]
            .iter()
            .filter(|g| g.is_some())
            .count();
        self.c.hosted[self.shard].store(hosted, std::sync::atomic::Ordering::Relaxed);
        if !self
            .c
            .meta_current
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // The metadata here is behind its log (a restart replaying it): its placement may
            // be an old one. Nothing moves until it caught up.
            return Ok(());
        }
        let mut catching_up = 0;
        let mut off_target = Vec::new();
        let mut handovers = Vec::new();
        for g in 0..self.meta_g {
            let Some(grp) = self.groups[g as usize].as_ref() else {
                continue;
            };
            if grp.role() != raft::Role::Leader {
                self.leaving_lead[g as usize] = None;
                continue;
            }
            let m = grp.membership();
            catching_up += !m.learners.is_empty() as usize;
            // Bit sets: no allocation for the groups already in place (nearly all of them).
            let target = self.c.target_mask(VShardId(g as u16));
            let voters = super::super::mask(m.voters.iter().copied());
            if target != 0 && (target != voters || !m.learners.is_empty()) {
                off_target.push((g, self.c.target(VShardId(g as u16))));
                continue;
            }
            let p = self.c.preferred(VShardId(g as u16));
            if p != NodeId(0) && p != self.c.me && m.is_voter(p) && self.c.is_up(p) {
                handovers.push((g, p));
            }
        }
        let mut started = 0;
        for &(g, p) in &handovers {
            if started == HANDOVERS_MAX || self.handover_at[g as usize].is_some_and(|t| now < t) {
                continue;
            }
            if self.groups[g as usize]
                .as_mut()
                .is_some_and(|grp| grp.transfer_leader(p))
            {
                self.handover_at[g as usize] = Some(now + HANDOVER_AGAIN);
                started += 1;
                self.touch(g);
            }
        }
        self.c.moving[self.shard].store(
            off_target.len() + handovers.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for (g, target) in off_target {
            let grp = self.groups[g as usize].as_mut().expect("listed");
            let change = raft::conf::next_change(
                &target,
                grp.membership(),
                |id| grp.progress(id),
                grp.commit_index(),
            );
            match change {
                None => continue,
                Some(ConfChange::AddLearner(_)) if catching_up >= MOVES_MAX => continue,
                Some(ConfChange::AddLearner(_)) if grp.snapshot_id().index == 0 => {
                    // A new replica must start from a snapshot: the membership the group
                    // started with is not in its log, so one that took the whole log would
                    // take its creator's placeholder for it, and its own compactions would
                    // write that into their blobs (found by the simulator: a replica made
                    // from such a blob elsewhere stood alone and led a stale log). So a
                    // leader that never compacted compacts first, as the metadata's does.
                    self.compact(g);
                    continue;
                }
                Some(ConfChange::AddLearner(_)) => catching_up += 1,
                Some(ConfChange::Remove(id)) if id == self.c.me => {
                    if self.hand_over_first(g, &target, now) {
                        continue;
                    }
                }
                Some(_) => {}
            }
            let change = change.expect("matched");
            self.thread_direct.set(None);
            let grp = self.groups[g as usize].as_mut().expect("listed");
            if grp.propose_conf(change).is_ok() {
                tracing::info!(vshard = g, ?change, "moving a replica");
                self.touch(g);
            }
        }
        Ok(())
    }

    /// On the leader of `g`, whose next change removes its own replica: it hands leadership
    /// to a voter that stays in `target` first (the preferred one if it votes), which then
    /// removes it; removing itself, it would leave the group leaderless for an election
    /// timeout (the cutover gap `scripts/bench-move.sh` measured: 1-2 s). A handover goes
    /// once nothing is in flight (`Group::transfer_leader`). True while that is tried (the
    /// removal waits); false once `HANDOVER_WAIT` passed without one (it removes itself).
    fn hand_over_first(&mut self, g: u32, target: &[NodeId], now: Instant) -> bool {
        let since = *self.leaving_lead[g as usize].get_or_insert(now);
        if now >= since + HANDOVER_WAIT {
            self.leaving_lead[g as usize] = None;
            return false;
        }
        let (c, grp) = (&self.c, self.groups[g as usize].as_mut().expect("led"));
        let m = grp.membership();
        let heirs: Vec<NodeId> = std::iter::once(c.preferred(VShardId(g as u16)))
            .chain(m.voters.iter().copied())
            .filter(|&id| id != c.me && m.is_voter(id) && target.contains(&id) && c.is_up(id))
            .collect();
        if heirs.into_iter().any(|heir| grp.transfer_leader(heir)) {
            self.touch(g);
        }
        true
    }

    /// Thread 0: whether this node is out of the metadata group (its replica's membership
    /// leaves it out, or a leader said a committed one does; a notice older than the
    /// membership this replica holds, sent before it was added, says nothing).
    pub(super) fn out_of_meta(&self) -> bool {
        let Some(g) = self.groups[self.meta_g as usize].as_ref() else {
            return true;
        };
        !g.membership().contains(self.c.me)
            || self.meta_removed.is_some_and(|i| i >= g.conf_index())
    }

    /// Thread 0 of a node asked to leave (`RemoveNode`): once it holds no vShard replica and
    /// the metadata group no longer counts it, it is done (the driver writes `REMOVED` into
    /// its data directory, where start-up refuses while it is there: its member id is retired
    /// and it holds nothing the cluster needs, and the process exits). Every vShard replica it
    /// dropped was dropped only after a committed membership without it, so nothing it
    /// acknowledged is lost.
    fn left(&mut self) -> bool {
        let Some(m) = &self.meta else { return false };
        // Only on evidence that it was asked to leave: a node that just joined may hold an
        // older metadata snapshot that does not name it yet, and holds nothing either. The
        // evidence is its `RemoveNode` applied here, or a committed membership of the
        // metadata group that leaves it out after one that held it: the leader removes only
        // leaving (or dropped) nodes from the group, and a leaving node that holds no vShard
        // replica is removed at once, possibly before it applied its own `RemoveNode` (found
        // by the simulator: a node asked to leave just after it joined ran on forever).
        let meta = self.groups[self.meta_g as usize].as_ref();
        let removed_from_meta = meta.is_some_and(|g| {
            g.membership().contains(self.c.me)
                && self.meta_removed.is_some_and(|i| i >= g.conf_index())
        });
        if removed_from_meta || m.node(self.c.me).is_some_and(|n| n.leaving) {
            self.c
                .leaving
                .store(true, std::sync::atomic::Ordering::Release);
        }
        if !self.c.leaving.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let hosted: usize = self
            .c
            .hosted
            .iter()
            .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        hosted == 0 && self.out_of_meta()
    }
}
