//! Receiving a snapshot: chunks assembled in order (the ack says where to resume), then the
//! whole blob installed; or, offered (`SnapshotOffer`), its bytes brought by the driver's bulk
//! session and handed to `install_snapshot`. (Sending is `send_append`; compaction is
//! `compact`.)

use super::{
    Group, LogId, Msg, NodeId, SNAPSHOT_BYTES_MAX, SnapRecv, SnapshotIn, SnapshotWanted, conf,
};
use bytes::Bytes;

impl Group {
    /// One chunk of a snapshot: kept if it follows what is held (else the ack says where to
    /// resume); the last one installs the whole.
    pub(super) fn on_snapshot_chunk(
        &mut self,
        from: NodeId,
        term: u64,
        last: LogId,
        offset: u64,
        total: u64,
        data: Bytes,
    ) {
        if term < self.term || last.index <= self.commit {
            // Stale, or nothing new: the whole-snapshot path answers both.
            return self.on_snapshot(from, term, last, Bytes::new());
        }
        if total == 0 || total > SNAPSHOT_BYTES_MAX || offset + data.len() as u64 > total {
            return; // no leader of ours sends this
        }
        if offset == 0 && data.len() as u64 == total {
            return self.on_snapshot(from, term, last, data);
        }
        self.become_follower(term, Some(from));
        let recv = match &mut self.snap_recv {
            Some(r) if r.last == last && r.total == total => r,
            _ => self.snap_recv.insert(SnapRecv {
                last,
                total,
                buf: Vec::new(),
            }),
        };
        if offset == recv.buf.len() as u64 {
            recv.buf.extend_from_slice(&data);
        }
        if recv.buf.len() as u64 == total {
            let blob = std::mem::take(&mut recv.buf);
            self.snap_recv = None;
            return self.on_snapshot(from, term, last, blob.into());
        }
        let offset = recv.buf.len() as u64;
        let term = self.term;
        self.send(
            from,
            Msg::SnapshotAck {
                term,
                last: last.index,
                offset,
            },
        );
    }

    /// The leader offers its snapshot: wanted (`snapshot_wanted`) if it holds entries this
    /// replica has not committed; otherwise answered at once, as a snapshot would be.
    pub(super) fn on_snapshot_offer(&mut self, from: NodeId, term: u64, last: LogId, total: u64) {
        if term < self.term || last.index <= self.commit {
            return self.on_snapshot(from, term, last, Bytes::new());
        }
        self.become_follower(term, Some(from));
        self.snap_recv = None;
        self.snap_wanted = Some(SnapshotWanted {
            from,
            term,
            last,
            total,
        });
    }

    /// The snapshot this follower was offered and needs: the driver's bulk session is to
    /// bring its bytes (then `install_snapshot`). `None` once installed, or once the leader's
    /// appends made it moot.
    pub fn snapshot_wanted(&self) -> Option<SnapshotWanted> {
        self.snap_wanted
    }

    /// The bytes of an offered snapshot, whole, as a bulk session brought them: installed
    /// and answered as a snapshot sent in Raft messages is (nothing changes if the blob does
    /// not decode or is not this group's, or if its term is past).
    pub fn install_snapshot(&mut self, wanted: SnapshotWanted, blob: Bytes) {
        if blob.len() as u64 != wanted.total {
            return;
        }
        if self.snap_wanted == Some(wanted) {
            self.snap_wanted = None;
        }
        self.on_snapshot(wanted.from, wanted.term, wanted.last, blob);
    }

    /// An offered snapshot whose bytes the driver decoded as they came and keeps in a file of
    /// its own (issue 19, step 3): installed as `install_snapshot` installs a blob, with no
    /// blob in memory (`snapshot_blob_released`; the driver's file holds it). The driver has
    /// checked the state (it decoded it whole, and it is this group's). Whether it was taken:
    /// a `Ready::snapshot` (marked `staged`) follows, else nothing changed.
    pub fn install_snapshot_staged(
        &mut self,
        wanted: SnapshotWanted,
        conf: conf::Membership,
    ) -> bool {
        if self.snap_wanted == Some(wanted) {
            self.snap_wanted = None;
        }
        let before = self.snapshot_in.is_some();
        self.take_snapshot(
            wanted.from,
            wanted.term,
            wanted.last,
            Taken::Staged {
                conf,
                total: wanted.total,
            },
        );
        !before && self.snapshot_in.is_some()
    }

    /// The bytes of the offered snapshot `wanted` did not install (the driver could not
    /// decode them whole): forgotten, so the leader's next offer wants it afresh.
    pub fn snapshot_refused(&mut self, wanted: SnapshotWanted) {
        if self.snap_wanted == Some(wanted) {
            self.snap_wanted = None;
        }
    }

    pub(super) fn on_snapshot(&mut self, from: NodeId, term: u64, last: LogId, data: Bytes) {
        self.take_snapshot(from, term, last, Taken::Blob(data));
    }

    fn take_snapshot(&mut self, from: NodeId, term: u64, last: LogId, data: Taken) {
        let reply_last = if term < self.term {
            None
        } else {
            self.become_follower(term, Some(from));
            if last.index > self.commit {
                let (conf, blob, state, total, staged) = match data {
                    Taken::Blob(data) => {
                        let Some((conf, state)) = conf::split_snapshot(&data) else {
                            return; // a blob no leader of ours wrote: nothing to answer
                        };
                        if !self.cfg.check_snapshot.accepts(&state) {
                            return; // nor is a state that does not decode
                        }
                        let total = data.len() as u64;
                        (conf, data, state, total, false)
                    }
                    Taken::Staged { conf, total } => {
                        if !conf.valid() {
                            return;
                        }
                        (conf, Bytes::new(), Bytes::new(), total, true)
                    }
                };
                if self.term_at(last.index) == Some(last.term) {
                    // Keep what follows it.
                    let drop = (last.index - self.snap.index) as usize;
                    self.log.drain(..drop);
                } else {
                    // Anything persisted beyond it conflicts with the snapshot: drop it too.
                    self.truncate_from = Some(last.index + 1);
                    self.log.clear();
                    self.unpersisted_from = last.index + 1;
                }
                self.snap = last;
                self.snap_data = blob.clone();
                self.snap_total = total;
                self.snap_conf = conf;
                self.recompute_conf();
                self.commit = last.index;
                self.applied = last.index;
                self.purge = Some(last);
                self.snapshot_in = Some(SnapshotIn {
                    last,
                    blob,
                    state,
                    staged,
                });
                self.unpersisted_from = self.unpersisted_from.max(last.index + 1);
            }
            Some(self.commit)
        };
        let reply = Msg::AppendReply {
            term: self.term,
            success: reply_last.is_some(),
            last: reply_last.unwrap_or(self.last().index),
            ctx: 0,
        };
        self.send(from, reply);
    }
}

/// How a snapshot's bytes came: whole in memory, or decoded by the driver into a file of its
/// own (`install_snapshot_staged`).
enum Taken {
    Blob(Bytes),
    Staged { conf: conf::Membership, total: u64 },
}
