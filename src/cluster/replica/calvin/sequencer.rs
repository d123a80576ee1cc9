//! Thread 0's sequencer duties: submissions taken into epochs of the metadata group's log
//! (one in flight at a time), what applied published in the node's `Stream`, and forgetting
//! what every participant executed, by the executed marks the nodes report.

use super::*;

impl Replicas {
    /// Thread 0: a submission for the sequencer; refused (nothing applied) when this node
    /// does not lead it.
    pub(super) fn sequence(&mut self, sub: Submission) {
        let leads = self.groups[self.meta_g as usize]
            .as_ref()
            .is_some_and(|g| g.role() == raft::Role::Leader);
        let id = sub.id;
        if !leads || self.calvin.seq.submit(sub).is_err() {
            self.reply_to(id, VShardId(0), Err(NOT_SEQUENCED));
        }
        self.wake();
    }

    /// Applies a committed entry of the sequencer (in the metadata group's log, after its
    /// tag): the transactions it sequences are published.
    pub(in crate::cluster::replica) fn apply_seq(&mut self, data: &[u8]) {
        let from = self.calvin.seq.next_seq();
        match self.calvin.seq.apply(data) {
            Ok(_) => self.publish(from, false),
            // Skipped alike by every replica, as a metadata entry that does not decode is.
            Err(e) => tracing::error!("a committed sequencer entry does not decode ({e}); skipped"),
        }
    }

    /// Thread 0: the sequencer's state from the metadata group's snapshot.
    pub(in crate::cluster::replica) fn install_seq(
        &mut self,
        state: Option<&[u8]>,
    ) -> Result<(), &'static str> {
        self.calvin.seq = match state {
            None => Sequencer::default(),
            Some(b) => Sequencer::decode(b, seq::Limits::default()).map_err(|e| e.what())?,
        };
        self.publish(0, true);
        Ok(())
    }

    /// The metadata group's snapshot state: the metadata's, the sequencer's and the
    /// function libraries'.
    pub(in crate::cluster::replica) fn meta_state(&self, meta: &[u8]) -> Vec<u8> {
        seq::join_state(
            meta,
            &self.calvin.seq,
            &self.functions,
            self.acl_users.as_ref(),
        )
    }

    pub(super) fn publish(&mut self, from: u64, replace: bool) {
        self.c.calvin.publish(&self.calvin.seq, from, replace);
        for t in 0..self.c.threads {
            self.send(t, CalvinMsg::Poke);
        }
    }

    /// Thread 0: proposes the next epoch when submissions wait and none is in flight (or
    /// forgets them when it does not lead).
    pub(super) fn sequencer_duty(&mut self) {
        let g = self.meta_g as usize;
        let Some(grp) = self.groups[g].as_ref() else {
            return;
        };
        if grp.role() == raft::Role::Leader {
            let seed = self.seed.wrapping_add(self.calvin.seq.next_seq());
            // (The clock is read only when an epoch is to be taken: this runs every step.)
            let epoch = self
                .calvin
                .seq
                .epoch_ready()
                .then(|| self.calvin.seq.take_epoch(unix_now_us(), seed));
            if let Some(epoch) = epoch.flatten() {
                let mut entry = Vec::with_capacity(1 + epoch.len());
                entry.push(seq::SEQ_TAG);
                entry.extend_from_slice(&epoch);
                if self.propose_meta(entry).is_err() {
                    self.epoch_lost();
                }
            }
        } else {
            // (Nothing allocated when nothing waits: this runs every step.)
            self.epoch_lost();
        }
    }

    /// Thread 0: the sequencer lost its leadership: the submissions it had not proposed are
    /// refused (nothing applied); those of the epoch in flight wait for it to commit or not
    /// (their origins time out with `-UNKNOWN` if it does not).
    pub(super) fn epoch_lost(&mut self) {
        for sub in self.calvin.seq.epoch_lost() {
            self.reply_to(sub.id, VShardId(0), Err(NOT_SEQUENCED));
        }
    }

    /// Thread 0, every `FORGET_EVERY`: on the sequencer's leader, forgets what executed
    /// everywhere; elsewhere, tells the leader the executed marks that moved (every mark to
    /// a new leader, and every `TELL_ALL_EVERY` rounds: a message lost on a connection
    /// that dropped must not hold back forgetting for good).
    pub(super) fn marks_duty(&mut self) {
        let leads = self.groups[self.meta_g as usize]
            .as_ref()
            .is_some_and(|g| g.role() == raft::Role::Leader);
        let vshards = self.c.calvin.done.len();
        let leader = self.c.leader(VShardId(self.meta_g as u16));
        let calvin = &mut self.calvin;
        calvin.known.resize(vshards, 0);
        calvin.told.resize(vshards, 0);
        let marks: Vec<u64> = self
            .c
            .calvin
            .done
            .iter()
            .map(|d| d.load(Ordering::Acquire))
            .collect();
        if leads {
            for (k, m) in calvin.known.iter_mut().zip(&marks) {
                *k = (*k).max(*m);
            }
            let low = forget_point(calvin.seq.retained(), &calvin.known, calvin.seq.next_seq());
            if low > calvin.seq.first_retained() {
                let mut entry = vec![seq::SEQ_TAG];
                entry.extend_from_slice(&Sequencer::forget_entry(low));
                let _ = self.propose_meta(entry);
            }
        } else {
            calvin.rounds += 1;
            if leader != calvin.told_to || calvin.rounds % TELL_ALL_EVERY == 0 {
                calvin.told_to = leader;
                calvin.told.iter_mut().for_each(|t| *t = 0);
            }
            let moved: Vec<(VShardId, u64)> = marks
                .iter()
                .zip(calvin.told.iter_mut())
                .enumerate()
                .filter(|(_, (m, t))| *m > *t)
                .map(|(v, (m, t))| {
                    *t = *m;
                    (VShardId(v as u16), *m)
                })
                .collect();
            if !moved.is_empty() {
                self.send_to(leader, 0, CalvinMsg::Done(moved));
            }
        }
    }
}

/// The point below which every transaction `retained` (in sequence order) has executed on
/// every participant, by the participants' executed marks `known` (`next`: none retained is
/// waited for). A vShard with no mark known waits.
fn forget_point<'a>(
    retained: impl Iterator<Item = &'a Arc<Ordered>>,
    known: &[u64],
    next: u64,
) -> u64 {
    for t in retained {
        let waits = t
            .sub
            .keys
            .iter()
            .any(|(v, _)| known.get(v.0 as usize).is_none_or(|&k| k <= t.seq));
        if waits {
            return t.seq;
        }
    }
    next
}
