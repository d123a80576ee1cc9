//! A shard thread's hints to its peers about the vShards it leads (`HINTS_GROUP` messages,
//! the codec in `cluster/hints.rs`): sent as they change, with a full round now and then
//! (issue 20, step 4; docs/design/control.md).

use super::*;

/// How often a shard thread looks for changes to tell its peers about the vShards it leads
/// (`send_hints`: a new term, a committed membership, a move's progress), besides at once
/// after winning an election.
const HINT_PERIOD: Duration = Duration::from_secs(1);
/// How often it tells them about every vShard it leads, with their loads, whatever changed
/// (or every `cluster-rebalance-period-ms` while the rebalancer is on, if shorter): what a
/// lost message or a missed change would leave wrong is mended by then.
const FULL_HINT_PERIOD: Duration = Duration::from_secs(10);

impl Replicas {
    /// Tells every peer about the vShards this thread leads that changed since it last did
    /// (a frame of one `HINTS_GROUP` message), so nodes that do not replicate them can route
    /// them: at once when this thread wins an election, else every `HINT_PERIOD`. A vShard's
    /// hint goes when its term, committed voters, membership entry or learners changed, every
    /// period while it has learners (a move's progress), and with every other led vShard's
    /// and their loads every `FULL_HINT_PERIOD` (the rebalancer's period if shorter while it
    /// is on). A peer that (re)connected gets every led vShard's at once. So the cost follows
    /// the changes; the full round mends a lost message within 10 s.
    pub(super) fn send_hints(&mut self, now: Instant) {
        self.hint_due = now + HINT_PERIOD;
        self.publish_held();
        let full = now >= self.full_hint_due;
        if full {
            let period = if self.rebalance_cfg.on {
                self.rebalance_cfg.period.min(FULL_HINT_PERIOD)
            } else {
                FULL_HINT_PERIOD
            };
            self.full_hint_due = now + period;
        }
        let mut payload = std::mem::take(&mut self.payloads);
        payload.clear();
        let mut every = Vec::new();
        let now_ms = self.hub_now_ms(now);
        let groups = &self.groups;
        self.meter.roll(now, |v| {
            groups[v]
                .as_ref()
                .is_some_and(|g| g.role() == raft::Role::Leader)
        });
        let (hub, c, meter) = (&self.hub, &self.c, &self.meter);
        let hinted = &mut self.hinted;
        let want_every = !self.hint_full_to.is_empty();
        let every_out = &mut every;
        let led = self.groups.iter().enumerate().filter_map(|(v, g)| {
            let Some(g) = g.as_ref().filter(|g| g.role() == raft::Role::Leader) else {
                hinted[v] = None;
                return None;
            };
            let committed = g.conf_index() <= g.commit_index();
            let m = g.membership();
            let voters = super::super::mask(m.voters.iter().copied());
            let learners = super::super::mask(m.learners.iter().copied());
            let copy = m
                .learners
                .iter()
                .find_map(|&l| hub.copy_progress(l, v as u32, now_ms))
                .map(
                    |(acked, total, elapsed_ms)| super::super::progress::CopyProgress {
                        acked,
                        total,
                        elapsed_ms,
                    },
                )
                .unwrap_or_default();
            let load = meter.rate(v as u32);
            if (v as u32) < self.meta_g {
                c.note_progress(VShardId(v as u16), learners, copy);
                if let Some(l) = load {
                    c.note_load(VShardId(v as u16), l);
                }
            }
            let h = super::super::Hint {
                group: v as u16,
                term: g.term(),
                voters: if committed { voters } else { 0 },
                conf_index: g.conf_index(),
                learners,
                copy,
                load: if full { load } else { None },
            };
            if want_every {
                every_out.push(super::super::Hint { load, ..h });
            }
            let key = (h.term, h.voters, h.conf_index, h.learners);
            let changed = hinted[v] != Some(key);
            hinted[v] = Some(key);
            (full || changed || learners != 0).then_some(h)
        });
        super::super::encode_hints(led, &mut payload);
        if !payload.is_empty() {
            for peer in self.c.member_ids() {
                self.queue_control(peer, super::super::HINTS_GROUP, &payload);
            }
        }
        if !every.is_empty() {
            payload.clear();
            super::super::encode_hints(every.into_iter(), &mut payload);
            for peer in std::mem::take(&mut self.hint_full_to) {
                self.queue_control(peer, super::super::HINTS_GROUP, &payload);
            }
        }
        self.hint_full_to.clear();
        self.payloads = payload;
    }

    /// Publishes the state of the replicas this thread owns (`Cluster::held`) for the
    /// metrics endpoint: a few relaxed stores per group a second.
    fn publish_held(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        for (g, held) in self.c.held.iter().enumerate() {
            if self.c.thread_of(g as u32) != self.shard {
                continue;
            }
            let Some(grp) = self.groups.get(g).and_then(Option::as_ref) else {
                held.role.store(0, Relaxed);
                continue;
            };
            let role = if grp.membership().learners.contains(&self.c.me) {
                5
            } else {
                match grp.role() {
                    raft::Role::Follower => 1,
                    raft::Role::PreCandidate => 2,
                    raft::Role::Candidate => 3,
                    raft::Role::Leader => 4,
                }
            };
            held.term.store(grp.term(), Relaxed);
            held.commit.store(grp.commit_index(), Relaxed);
            held.applied.store(self.applied[g].index, Relaxed);
            held.log_bytes.store(self.log_bytes[g] as u64, Relaxed);
            held.snapshot.store(grp.snapshot_id().index, Relaxed);
            held.role.store(role, Relaxed);
        }
    }
}
