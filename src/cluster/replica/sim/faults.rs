//! The simulated faults: crashes and power cuts (what a node's logs lose), partitions, pauses,
//! connection resets, and the hostile member's rewritten frames.

use super::*;

impl Sim {
    /// Runs `ms` of simulated time with a fault every few hundred milliseconds (a crash, a
    /// partition, a paused node) and its end (a restart, a heal, a resume); never more than
    /// one fault at a time, a partition cutting off a minority, so a quorum of the cluster
    /// always exists and progress is owed. Connections also reset now and then (a TCP
    /// connection that breaks: what it carried is lost, the dialer connects again).
    pub(super) fn run_with_faults(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        // After the first elections.
        let mut next_fault = self.now_ms + 1_500;
        let mut out: Option<(NodeId, Fault)> = None;
        while self.now_ms < end {
            if self.now_ms >= next_fault {
                next_fault = self.now_ms + 200 + self.rng.below(1500);
                match out.take() {
                    Some((id, f)) => self.end_fault(id, f),
                    None => {
                        let mut id = self.pick_member();
                        let f = match self.rng.below(4) {
                            0 => Fault::Crash,
                            1 => Fault::Cut,
                            2 => Fault::PowerCut,
                            _ => Fault::Pause,
                        };
                        if f == Fault::Pause {
                            // The worst node to stall: the one leading the most groups.
                            id = self
                                .members()
                                .into_iter()
                                .max_by_key(|&n| self.led_by(n))
                                .expect("nodes");
                        }
                        self.note(format!("{f:?} node {id}"));
                        match f {
                            Fault::Crash => self.crash(id),
                            Fault::PowerCut => {
                                self.power_cut = Some(id);
                                self.power_cut_on_create = self.rng.below(2) == 0;
                            }
                            Fault::Cut => {
                                // `id` and up to a minority with it, against the rest.
                                let mut others: Vec<NodeId> =
                                    self.members().into_iter().filter(|&p| p != id).collect();
                                // (A node alone is cut from nobody: its clients still reach it.)
                                let with = match others.len().div_ceil(2) {
                                    0 => 0,
                                    m => self.rng.below(m as u64) as usize,
                                };
                                let mut side = vec![id];
                                for _ in 0..with {
                                    let i = self.rng.below(others.len() as u64) as usize;
                                    side.push(others.swap_remove(i));
                                }
                                if side.len() > 1 {
                                    self.note(format!("  with {:?}", &side[1..]));
                                }
                                for &a in &side {
                                    for p in self.ids() {
                                        if !side.contains(&p) {
                                            self.cut.push((a, p));
                                            self.cut.push((p, a));
                                        }
                                    }
                                }
                            }
                            Fault::Pause => {
                                self.paused = Some(id);
                                // 1.5 to 3 s: about SWIM's verdict time (a pause of 2 s is
                                // not a death), so some pauses end in a failover and some
                                // in the node carrying on as it was.
                                next_fault = self.now_ms + 1_500 + self.rng.below(1_500);
                            }
                        }
                        out = Some((id, f));
                    }
                }
            }
            if self.kill_at.is_some_and(|at| self.now_ms >= at) {
                // A member other than the one under a fault dies for good (its machine
                // is lost): automatic repair is to remove it and make its replicas again.
                self.kill_at = None;
                let others: Vec<NodeId> = self
                    .members()
                    .into_iter()
                    .filter(|&p| out.is_none_or(|(id, _)| id != p) && self.up(p))
                    .collect();
                let id = others[self.rng.below(others.len() as u64) as usize];
                self.note(format!("node {id} dies for good"));
                self.crash(id);
                self.node(id).gone = true;
                self.killed = Some(id);
            }
            if self.rng.below(RESET_EVERY_MS) == 0 && !self.links.is_empty() {
                let i = self.rng.below(self.links.len() as u64) as usize;
                let (from, to) = *self.links.iter().nth(i).expect("in range");
                self.reset(from, to);
            }
            self.tick();
        }
        if let Some((id, f)) = out {
            self.end_fault(id, f);
        }
    }

    /// The connection from `from`'s dialer to `to` breaks: what it carried is lost, `to`'s
    /// reader sees it end, the dialer connects again (`connect_known`).
    pub(super) fn reset(&mut self, from: NodeId, to: NodeId) {
        self.resets += 1;
        self.net.retain(|&(f, t, _)| !(f == from && t == to));
        self.links.remove(&(from, to));
        if self.up(to) {
            for t in 0..self.threads() {
                self.replicas(to, t).peer_disconnected(from);
            }
        }
    }

    /// Rewrites a frame from the hostile member: its messages' payloads with bytes flipped,
    /// fields overwritten with extremes, cut short or replaced, their groups changed, some
    /// messages repeated. The frame itself is well formed (the checksum is the peer's to
    /// compute), so what is refused or survived is the replica layer's doing.
    pub(super) fn mutate(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        if self.rng.below(3) != 0 {
            return bytes;
        }
        self.mutated += 1;
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while let Ok(Some((frame::Frame::Batch(msgs), used))) = frame::decode(rest, 1 << 30) {
            let mut owned: Vec<(u32, Vec<u8>)> =
                msgs.iter().map(|m| (m.group, m.payload.to_vec())).collect();
            for (group, payload) in owned.iter_mut() {
                match self.rng.below(8) {
                    0 => *group = self.rng.below(8) as u32,
                    1 if !payload.is_empty() => {
                        let at = self.rng.below(payload.len() as u64) as usize;
                        payload[at] ^= 1 << self.rng.below(8);
                    }
                    2 if payload.len() >= 8 => {
                        let at = self.rng.below(payload.len() as u64 - 7) as usize;
                        let v = match self.rng.below(4) {
                            0 => u64::MAX,
                            1 => 0,
                            2 => (1 << 62) - 1,
                            _ => self.rng.next_u64(),
                        };
                        payload[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    3 => {
                        let keep = self.rng.below(payload.len() as u64 + 1) as usize;
                        payload.truncate(keep);
                    }
                    4 => {
                        let n = self.rng.below(64) as usize;
                        *payload = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                    }
                    _ => {}
                }
            }
            if self.rng.below(4) == 0 && !owned.is_empty() {
                let i = self.rng.below(owned.len() as u64) as usize;
                owned.push(owned[i].clone());
            }
            let msgs: Vec<Message> = owned
                .iter()
                .map(|(group, payload)| Message {
                    group: *group,
                    payload,
                })
                .collect();
            frame::encode_batch(&msgs, &mut out);
            rest = &rest[used..];
        }
        out
    }

    /// How many groups node `id` leads.
    pub(super) fn led_by(&self, id: NodeId) -> usize {
        self.nodes[id.slot()]
            .threads
            .iter()
            .filter_map(|th| th.r.as_ref())
            .map(|r| {
                r.groups
                    .iter()
                    .flatten()
                    .filter(|g| g.role() == raft::Role::Leader)
                    .count()
            })
            .sum()
    }

    pub(super) fn end_fault(&mut self, id: NodeId, f: Fault) {
        self.note(format!("end {f:?} node {id}"));
        match f {
            Fault::Crash => self.start(id),
            Fault::PowerCut if self.nodes[id.slot()].gone => {
                // It left the cluster meanwhile (its process ended): nothing to restart.
                self.power_cut = None;
            }
            Fault::PowerCut => {
                if self.power_cut == Some(id) {
                    // It wrote no batch meanwhile: the power goes now.
                    self.power_fail(id);
                }
                self.start(id);
            }
            Fault::Cut => self.cut.clear(),
            Fault::Pause => {
                // The process runs again: its clients' requests and the bus's messages are
                // all waiting; the clients happen to come first (`tick` moves clients
                // before it delivers what was held for the node).
                self.paused = None;
                self.resumed = Some(id);
            }
        }
    }

    /// The power goes on node `id` (a machine crash): what its logs wrote since their last
    /// fsync is lost, a prefix of each such write possibly on disk (a torn write); then as a
    /// crash. (A segment deleted since the last fsync of its directory is not brought back.)
    pub(super) fn power_fail(&mut self, id: NodeId) {
        self.power_cut = None;
        self.power_cuts += 1;
        self.note(format!("power cut on node {id}"));
        let dir = self.nodes[id.slot()].cfg.data_dir.clone();
        for t in 0..self.threads() {
            for (seq, offset, len) in self.volatile.remove(&(id, t)).unwrap_or_default() {
                let path = dir
                    .join("wal")
                    .join(format!("shard-{t}"))
                    .join(format!("{seq:020}.seg"));
                let keep = self.rng.below(len + 1);
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                    use std::os::unix::fs::FileExt;
                    let zeros = vec![0u8; (len - keep) as usize];
                    f.write_all_at(&zeros, offset + keep)
                        .expect("the simulation's own file");
                }
            }
        }
        self.crash(id);
    }
}

/// Runs `batch`'s operations as the flush thread does, but a fsync is only noted: what was
/// written to a segment and not fsynced since is listed in `volatile` (a power cut loses it).
/// With `cut`, only the first `cut` operations run (the power went during the batch).
pub(super) fn run_ops(
    log: &mut crate::wal::FsLog,
    batch: shardline_shards::wal::Batch,
    volatile: &mut Vec<Unsynced>,
    cut: Option<usize>,
) -> std::io::Result<()> {
    use shardline_shards::wal::{Batch, Io};
    for (i, op) in batch.ops.into_iter().enumerate() {
        if cut.is_some_and(|c| i >= c) {
            break;
        }
        match &op {
            Io::Sync { seq } => {
                volatile.retain(|w| w.0 != *seq);
                continue;
            }
            Io::Write { seq, offset, bytes } => volatile.push((*seq, *offset, bytes.len() as u64)),
            // Its directory entry is fsynced; its header is not, until the segment is.
            Io::Create { seq, header } => volatile.push((*seq, 0, header.len() as u64)),
            Io::Delete { seq } => volatile.retain(|w| w.0 != *seq),
        }
        log.run(Batch {
            ops: vec![op],
            ..Batch::default()
        })?;
    }
    Ok(())
}
