//! The replicas' side of the bulk hub (issue 19, step 2): what the driver step and the lane
//! tasks (`cluster/lanes.rs`) hand it and take from it. The hub's rules are in
//! `shardline_shards::migrate::hub`; this only carries things between it and the groups.

use super::super::lanes::LaneIo;
use super::*;
use shardline_shards::migrate::hub::{Dir, Fetch, Hub};

impl Replicas {
    pub(crate) fn hub_now_ms(&self, now: Instant) -> u64 {
        self.lane_io.now_ms(now)
    }

    /// What a lane read: handed to the hub (the bytes it took are returned); copies it
    /// completed wake the driver step, its answers the lanes' writers.
    pub(crate) fn lane_bytes(
        &mut self,
        peer: NodeId,
        dir: Dir,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, String> {
        let now_ms = self.hub_now_ms(now);
        let (staging, snap_dir, t) = (&mut self.staging, &self.snap_dir, &self.tunables);
        let took = self
            .hub
            .on_bytes(peer, dir, bytes, now_ms, &mut |g, w, at, data| {
                super::staging::store_copy(staging, snap_dir, t, (g, w), at, data)
            });
        if self.hub.has_installs() {
            self.wake();
        }
        super::super::lanes::wake(&mut self.hub, &mut self.lane_io);
        took.map_err(|e| e.0)
    }

    /// The driver step's share of the hub: copies completed are installed by their groups.
    pub(super) fn hub_installs(&mut self) {
        if !self.hub.has_installs() {
            return;
        }
        let installs: Vec<_> = self.hub.take_installs().collect();
        for i in installs {
            let Some(blob) = i.blob else {
                self.install_staged(i.group, i.wanted, i.crc);
                continue;
            };
            if let Some(g) = self.groups[i.group as usize].as_mut() {
                tracing::info!(
                    vshard = i.group,
                    bytes = blob.len(),
                    from = %i.wanted.from,
                    "a snapshot's bulk copy arrived whole"
                );
                g.install_snapshot(i.wanted, blob);
                self.touch(i.group);
            }
        }
    }

    /// The driver step's share of the hub: what group `g` wants now (after it stepped).
    pub(super) fn hub_want(&mut self, g: u32, now: Instant) {
        let Some(grp) = self.groups[g as usize].as_ref() else {
            return;
        };
        let wanted = grp.snapshot_wanted();
        let now_ms = self.hub_now_ms(now);
        self.hub.want(g, wanted, now_ms);
    }

    /// The driver step's share of the hub: the leader of `g` offered `to` its snapshot.
    pub(super) fn hub_offer(
        &mut self,
        to: NodeId,
        g: u32,
        term: u64,
        last: shardline_shards::raft::LogId,
        total: u64,
        now: Instant,
    ) {
        let now_ms = self.hub_now_ms(now);
        if self.hub.refresh_offer(to, g, term, last, now_ms) {
            return; // under way: the offer only keeps it alive
        }
        let held = self.hub.blob_of(g, last).map(|b| Ok(Some(b)));
        match held.unwrap_or_else(|| self.snapshot_for_copy(g, last)) {
            Ok(Some(blob)) if blob.len() as u64 == total => {
                self.hub.offer(to, g, term, last, &blob, now_ms);
            }
            Ok(Some(_)) => {}
            // Its file holds it: the copy streams from the file, a chunk at a time (the open
            // file keeps reading this snapshot even if a newer one takes its name).
            Ok(None) => {
                if !self.copy_files.contains_key(&(g, last)) {
                    let why = match snapfile::open_for_copy(&self.snap_dir, g) {
                        Ok(Some((id, f))) if id == last && f.total == total => {
                            self.copy_files.insert((g, last), f);
                            None
                        }
                        // A newer snapshot: the group offers that one next.
                        Ok(Some((id, _))) if id.index > last.index => return,
                        Ok(Some((id, f))) => Some(format!(
                            "it holds {id:?} of {} bytes, not {last:?} of {total}",
                            f.total
                        )),
                        Ok(None) => Some("it is missing".to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(why) = why {
                        // (A file on its way to disk replaces it: nothing to say then.)
                        if !self.file_pending(g) {
                            tracing::warn!(
                                vshard = g,
                                "its snapshot file cannot serve a copy ({why}): written anew"
                            );
                            self.note_damaged(g);
                        }
                        return;
                    }
                }
                let f = &self.copy_files[&(g, last)];
                self.hub
                    .offer_file(to, (g, term, last), f.total, f.crc, now_ms);
            }
            Err(e) => tracing::warn!(vshard = g, "cannot find its snapshot for a copy: {e}"),
        }
    }

    /// `f` on the hub, the lane tasks' state and the reader of the files copies stream from.
    pub(crate) fn with_hub_fetch<R>(
        &mut self,
        f: impl FnOnce(&mut Hub, &mut LaneIo, Fetch<'_>) -> R,
    ) -> R {
        let files = &self.copy_files;
        let mut fetch = |g: u32, last, offset, buf: &mut [u8]| {
            let f = files.get(&(g, last)).ok_or("its file is not open")?;
            snapfile::read_for_copy(f, offset, buf)
        };
        f(&mut self.hub, &mut self.lane_io, &mut fetch)
    }

    /// Time passed for the hub; its counters published for INFO (`Cluster::bulk`).
    pub(super) fn hub_tick(&mut self, now: Instant) {
        let now_ms = self.hub_now_ms(now);
        self.hub.tick(now_ms);
        for (g, why) in self.hub.take_errors() {
            tracing::error!(
                vshard = g,
                "a base copy from its snapshot file failed: {why}"
            );
        }
        let damaged: Vec<u32> = self.hub.take_damaged_files().collect();
        for g in damaged {
            self.note_damaged(g);
        }
        let hub = &self.hub;
        self.copy_files
            .retain(|&(g, last), _| hub.reads_file(g, last));
        self.drop_stale_staging();
        let s = self.hub.stats();
        let (out, inc) = self.hub.sessions();
        let values = [
            s.bytes_in,
            s.bytes_out,
            s.done_in,
            s.done_out,
            inc as u64,
            out as u64,
            s.resends,
            s.restarts,
            s.bad_chunks,
            self.lane_io.rdma_lanes,
            s.from_files,
            self.streamed_in,
            self.lane_io.quic_lanes,
            self.lane_io.share_waited_us / 1000,
            self.snapshots_rewritten,
            self.captures.done,
            self.captures.running() as u64,
            self.captures.step_max_us,
        ];
        let slot = &self.c.bulk[self.shard];
        for (a, v) in slot.0.iter().zip(values) {
            a.store(v, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a snapshot file of group `g` is on its way to disk.
    fn file_pending(&self, g: u32) -> bool {
        self.pending_files().any(|f| f.group == g)
    }

    /// Group `g`'s snapshot file cannot serve copies: written anew at a step
    /// (`rewrite_snapshot`), once however often it is noted.
    fn note_damaged(&mut self, g: u32) {
        if !self.damaged_files.contains(&g) {
            self.damaged_files.push(g);
        }
    }

    /// Group `g`'s snapshot file failed a base copy (damaged on disk since it was written, or
    /// unreadable): offered again it would fail again, and a follower that needs it would
    /// never catch up while the vShard stays idle. A new file is written from the vShard: by
    /// a compaction if entries were applied since the snapshot, else at the snapshot's own
    /// index (the vShard is the snapshot's state then), put in place by the flush thread as a
    /// compaction's is. Nothing is done while a file of the group is on its way to disk (it
    /// replaces this one).
    pub(super) fn rewrite_snapshot(&mut self, g: u32) {
        let Some(grp) = self.groups[g as usize].as_ref() else {
            return;
        };
        if g == self.meta_g {
            return; // (its copies come from memory)
        }
        let id = grp.snapshot_id();
        let total = grp.snapshot_total();
        if self.file_pending(g) {
            return;
        }
        let applied = self.applied[g as usize];
        if applied.index > id.index || self.want_direct_cut(g) {
            if !self.to_compact.contains(&g) {
                self.to_compact.push(g);
                self.snapshots_rewritten += 1;
            }
            return;
        }
        if applied == id && !self.capturing(g) {
            self.want_capture(g, super::capture::Purpose::Rewrite { total });
        }
    }

    /// The capture `rewrite_snapshot` wanted is written (`cut`, at `last`): in place of the
    /// group's file if the group still offers that snapshot, of length `want`.
    pub(super) fn rewritten(&mut self, g: u32, last: LogId, want: u64, cut: Cut) {
        let Cut::Written { path, total, .. } = cut else {
            return cut.discard();
        };
        let offered = self.groups[g as usize]
            .as_ref()
            .is_some_and(|grp| grp.snapshot_id() == last);
        if !offered || self.file_pending(g) {
            // A newer snapshot took its place meanwhile.
            let _ = std::fs::remove_file(&path);
            return;
        }
        if total != want {
            // (The same state at the same index encodes to the same length: if not, the
            // file would not be the snapshot the group offers.)
            tracing::error!(
                vshard = g,
                "its snapshot written anew is {total} bytes, not the {want} offered: not used"
            );
            let _ = std::fs::remove_file(&path);
            return;
        }
        tracing::warn!(
            vshard = g,
            index = last.index,
            "its snapshot file failed a base copy: written anew from the vShard"
        );
        self.snapshots_rewritten += 1;
        self.behind.push(SnapshotFile {
            group: g,
            last,
            blob: bytes::Bytes::new(),
            kind: SnapshotKind::Compacted,
            staged: Some(path),
        });
    }
}
