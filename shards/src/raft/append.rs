//! Log replication: the leader's appends (and the snapshot chunk when what a peer needs is
//! compacted away), a follower taking them, the replies, and the commit index they move; a
//! peer re-probed after a reconnection.

use super::*;

/// Bytes of entries in one `Append` (at least one entry, at most `Config::max_batch`): a
/// follower far behind is not sent its whole log in one message.
pub const BATCH_BYTES: usize = 8 << 20;
/// Bytes of entries sent to a peer and not acknowledged yet past which nothing more is sent
/// to it until it answers (at least one batch).
pub const INFLIGHT_BYTES: usize = 32 << 20;
/// Heartbeats after which entries sent and not acknowledged are sent again (lost).
const RESEND_HEARTBEATS: u64 = 4;

/// Leader: the entries sent to a peer and not acknowledged (`Group::flight`): the last one,
/// the tick it was sent at, and the bytes of those after what the peer acknowledged (kept as
/// batches go and acknowledgements come, so each entry is counted once each way).
#[derive(Clone, Copy, Debug)]
pub(super) struct Flight {
    end: u64,
    at: u64,
    bytes: usize,
}

impl Group {
    /// Leader: a connection to `to` was made again (the driver's dialer reconnected). What was
    /// sent to it meanwhile may be lost, and its refusals with it: a leader elected while it
    /// was away starts every peer at the end of its own log and backs off only on a refusal,
    /// so a peer whose refusals cannot reach it (it cannot dial back yet, not knowing this
    /// node's address) would be sent a `prev` it lacks forever. So the peer is probed again
    /// from what it last acknowledged (`matched + 1`, a snapshot from its start if that is
    /// compacted away), and a quiet leader sends again. Found by the whole-cluster simulator:
    /// a node restarted after another joined never caught up with the newcomer's groups.
    pub fn peer_reconnected(&mut self, to: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        let Some(&m) = self.matched.get(&to) else {
            return;
        };
        self.next.insert(to, m + 1);
        self.snap_sending.remove(&to);
        self.flight.remove(&to);
        self.quiet = false;
        self.send_append(to);
    }

    pub(super) fn append_local(&mut self, data: Bytes) -> u64 {
        let index = self.last().index + 1;
        self.log.push(Entry {
            term: self.term,
            index,
            data,
        });
        index
    }

    /// Appends to peers that are behind (or to all, for a heartbeat).
    pub(super) fn broadcast(&mut self, heartbeat: bool) {
        let (peers, n) = self.peer_ids();
        for &p in &peers[..n] {
            if heartbeat {
                self.send_append(p);
            } else if self.next[&p] <= self.last().index {
                self.send_more(p);
            }
        }
        self.elapsed = 0;
    }

    /// The entries to send `to` next, after what it acknowledged and what is in flight to it
    /// (`flight`): none while `INFLIGHT_BYTES` are unacknowledged, or when it has everything.
    /// What was sent and not acknowledged within `RESEND_HEARTBEATS` heartbeats is sent
    /// again (it was lost). Before this, every heartbeat and every reply sent the batch after
    /// what the peer acknowledged: a follower catching up was sent the same batch again each
    /// heartbeat, and each copy's reply sent the next batch again, so a lagging follower of
    /// large entries had its leader encode hundreds of megabytes of the same entries (found
    /// measuring a vShard's move, issue 19).
    fn next_batch(&mut self, to: NodeId) -> Option<(LogId, Vec<Entry>)> {
        let next = self.next.get(&to)?.max(&1).to_owned();
        let resend = RESEND_HEARTBEATS * u64::from(self.cfg.heartbeat_ticks.max(1));
        let start = match self.flight.get(&to) {
            Some(f) if f.end >= next && f.end >= self.snap.index && self.ticks < f.at + resend => {
                if f.bytes >= INFLIGHT_BYTES {
                    return None;
                }
                f.end + 1
            }
            _ => {
                self.flight.remove(&to);
                next
            }
        };
        if start > self.last().index || start <= self.snap.index {
            return None;
        }
        let prev = LogId {
            index: start - 1,
            term: self.term_at(start - 1)?,
        };
        let mut bytes = 0;
        let candidates = self.slice(start, start + self.cfg.max_batch as u64);
        let n = candidates
            .iter()
            .position(|e| {
                bytes += e.data.len();
                bytes > BATCH_BYTES
            })
            .unwrap_or(candidates.len())
            .max(1);
        let entries = candidates[..n.min(candidates.len())].to_vec();
        let end = entries.last()?.index;
        let sent: usize = entries.iter().map(|e| e.data.len()).sum();
        let ticks = self.ticks;
        let f = self.flight.entry(to).or_insert(Flight {
            end,
            at: ticks,
            bytes: 0,
        });
        (f.end, f.at, f.bytes) = (end, ticks, f.bytes + sent);
        Some((prev, entries))
    }

    /// Sends `to` the entries it lacks that may go now (`next_batch`), if any; what it needs
    /// from a snapshot, if that is where it stands.
    pub(super) fn send_more(&mut self, to: NodeId) {
        let Some(&next) = self.next.get(&to) else {
            return;
        };
        if next.max(1) <= self.snap.index {
            return self.send_append(to);
        }
        if let Some((prev, entries)) = self.next_batch(to) {
            self.send_entries(to, prev, entries);
        }
    }

    fn send_entries(&mut self, to: NodeId, prev: LogId, entries: Vec<Entry>) {
        let (term, commit, quiet, ctx) = (self.term, self.commit, self.quiet, self.read_seq);
        self.send(
            to,
            Msg::Append {
                term,
                prev,
                entries,
                commit,
                quiet,
                ctx,
            },
        );
    }

    /// Sends `to` what it needs next, always a message (a heartbeat when nothing may go:
    /// entries in flight, or none to send), nothing to a non-member (e.g. a removed replica
    /// asking for votes).
    pub(super) fn send_append(&mut self, to: NodeId) {
        let Some(&next) = self.next.get(&to) else {
            return;
        };
        let next = next.max(1);
        if next <= self.snap.index {
            if self.cfg.bulk_snapshots {
                // The entries it needs are in the snapshot now: offered, its bytes sent by the
                // driver's bulk session (a heartbeat offers it again, should the offer be lost,
                // and keeps the follower from campaigning meanwhile).
                self.snap_sending.insert(to, (self.snap.index, 0));
                let msg = Msg::SnapshotOffer {
                    term: self.term,
                    last: self.snap,
                    total: self.snap_total,
                };
                return self.send(to, msg);
            }
            if self.snapshot_blob_released() {
                // Without bulk snapshots only a group without peers releases its blob (and
                // takes none before it is back): nothing to send to a peer that cannot be.
                debug_assert!(false, "a released snapshot blob wanted by a peer");
                return;
            }
            // The entries it needs are in the snapshot now: the chunk after what it holds (a
            // heartbeat resends it, should it be lost).
            let offset = match self.snap_sending.get(&to) {
                Some(&(index, offset)) if index == self.snap.index => offset,
                _ => 0,
            };
            self.snap_sending.insert(to, (self.snap.index, offset));
            let total = self.snap_data.len() as u64;
            let end = (offset + self.cfg.snapshot_chunk_bytes.max(1) as u64).min(total);
            let msg = Msg::Snapshot {
                term: self.term,
                last: self.snap,
                offset,
                total,
                data: self.snap_data.slice(offset as usize..end as usize),
            };
            return self.send(to, msg);
        }
        let (prev, entries) = match self.next_batch(to) {
            Some(batch) => batch,
            None => {
                let prev_index = next - 1;
                let prev = LogId {
                    index: prev_index,
                    term: self.term_at(prev_index).expect("next is within the log"),
                };
                (prev, Vec::new())
            }
        };
        self.send_entries(to, prev, entries);
    }

    pub(super) fn on_append(
        &mut self,
        from: NodeId,
        term: u64,
        prev: LogId,
        entries: Vec<Entry>,
        commit: u64,
        ctx: u64,
    ) {
        if term < self.term {
            let reply = Msg::AppendReply {
                term: self.term,
                success: false,
                last: self.last().index,
                ctx,
            };
            return self.send(from, reply);
        }
        // A current-term Append makes us this leader's follower (a candidate steps down).
        self.become_follower(term, Some(from));
        let (mut prev, mut entries) = (prev, entries);
        if prev.index < self.commit {
            // Everything up to our commit index is committed, so it matches the leader's log
            // (and may already be folded into our snapshot). The entries past it are taken
            // (from our commit on, whose term the message says), not only the reply that
            // says where to continue: this follower may be unable to reach the leader (it does
            // not know its address until its metadata catches up, from these very entries;
            // found by the simulator, a newcomer probed from before its commit never caught
            // up). With none past it, the reply says where to continue from.
            match entries.iter().position(|e| e.index > self.commit) {
                Some(i) if i > 0 => {
                    prev = LogId {
                        index: entries[i - 1].index,
                        term: entries[i - 1].term,
                    };
                    entries.drain(..i);
                }
                _ => {
                    let reply = Msg::AppendReply {
                        term: self.term,
                        success: true,
                        last: self.commit,
                        ctx,
                    };
                    return self.send(from, reply);
                }
            }
        }
        if self.term_at(prev.index) != Some(prev.term) {
            let hint = prev.index.saturating_sub(1).min(self.last().index);
            let reply = Msg::AppendReply {
                term: self.term,
                success: false,
                last: hint,
                ctx,
            };
            return self.send(from, reply);
        }
        let mut last_new = prev.index;
        let mut conf_touched = false;
        for e in entries {
            last_new = e.index;
            match self.term_at(e.index) {
                Some(t) if t == e.term => {}
                Some(_) => {
                    conf_touched = true;
                    // A conflicting suffix: drop it (never below what is committed).
                    debug_assert!(e.index > self.commit, "committed entries never conflict");
                    let keep = (e.index - self.snap.index - 1) as usize;
                    self.log.truncate(keep);
                    self.truncate_from =
                        Some(self.truncate_from.map_or(e.index, |t| t.min(e.index)));
                    self.unpersisted_from = self.unpersisted_from.min(e.index);
                    self.log.push(e);
                }
                None => {
                    conf_touched |= e.is_config();
                    self.log.push(e);
                }
            }
        }
        if conf_touched {
            // A membership takes effect when appended; a truncated one is undone.
            self.recompute_conf();
        }
        // The log continues from the leader's entries: a half-received snapshot is moot.
        self.snap_recv = None;
        self.snap_wanted = None;
        if commit > self.commit {
            self.commit = commit.min(last_new);
        }
        let reply = Msg::AppendReply {
            term: self.term,
            success: true,
            last: last_new,
            ctx,
        };
        self.send(from, reply);
    }

    pub(super) fn on_append_reply(&mut self, from: NodeId, term: u64, success: bool, last: u64) {
        if self.role != Role::Leader || term != self.term {
            return;
        }
        // A follower cannot have matched past what this leader holds (a peer that says so is
        // wrong, and would push the leader's next index past its log).
        let last = last.min(self.last().index);
        let Some(m) = self.matched.get_mut(&from) else {
            return; // removed since it was sent to
        };
        if success {
            self.snap_sending.remove(&from);
            let before = *m;
            *m = (*m).max(last);
            let m = *m;
            self.next.insert(from, m + 1);
            if let Some(f) = self.flight.get(&from).copied() {
                if m >= f.end {
                    self.flight.remove(&from);
                } else if m > before {
                    // What it acknowledged now is no longer in flight.
                    let acked: usize = self
                        .slice(before + 1, m + 1)
                        .iter()
                        .map(|e| e.data.len())
                        .sum();
                    if let Some(f) = self.flight.get_mut(&from) {
                        f.bytes = f.bytes.saturating_sub(acked);
                    }
                }
            }
            self.advance_commit();
            if m < self.last().index {
                self.quiet = false;
                self.send_more(from);
            }
        } else {
            self.quiet = false;
            self.flight.remove(&from);
            let next = self.next[&from];
            let back = (last + 1).min(next.saturating_sub(1)).max(1);
            self.next.insert(from, back);
            self.send_append(from);
        }
    }

    /// Commits the highest index of this term that a quorum has persisted.
    pub(super) fn advance_commit(&mut self) {
        let own = self.unpersisted_from - 1;
        // Voters only, on the stack: groups have a handful of members (`MAX_MEMBERS`). A
        // leader removing itself does not count its own log.
        let mut matches = [0u64; MAX_MEMBERS];
        let n = self.conf.voters.len();
        for (m, v) in matches.iter_mut().zip(&self.conf.voters) {
            *m = if *v == self.cfg.id {
                own
            } else {
                self.matched.get(v).copied().unwrap_or(0)
            };
        }
        let matches = &mut matches[..n];
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.quorum() - 1];
        if candidate > self.commit && self.term_at(candidate) == Some(self.term) {
            self.commit = candidate;
        }
    }
}
