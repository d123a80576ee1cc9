//! The log engine of one shard thread: every Raft group (vShard) the thread drives appends to one
//! sequence of segment files, so one write and one fsync cover all groups' entries of a batch.
//! Sans-IO: calls change the in-memory state and queue encoded records; [`Engine::take_batch`]
//! hands the file operations to a driver, which runs them in order and then fires the batch's
//! acknowledgements. See docs/design/replication.md for the rules.

use super::record::{self, HEADER, Header, Kind, Record};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Maps keyed by group id, looked up several times per appended entry: a multiply (the ids
/// are small dense integers, not adversarial input) instead of SipHash.
type GroupMap<V> = HashMap<u32, V, BuildHasherDefault<GroupHasher>>;

#[derive(Default)]
struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // Fibonacci hashing: the table takes the high bits.
        self.0 = (n as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every batch is fsynced before its appends are acknowledged.
    Always,
    /// Appends are acknowledged once written; fsync at most every `interval_ms`.
    Batch { interval_ms: u64 },
    /// Appends are acknowledged once written; never fsynced by us.
    Never,
}

#[derive(Clone, Copy, Debug)]
pub struct WalConfig {
    pub shard: u32,
    /// A segment is closed when the next batch would take it past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

/// A group's vote as Raft persists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Vote {
    pub term: u64,
    /// The node voted for; 0 for none.
    pub node: u64,
    pub committed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct LogId {
    pub index: u64,
    pub term: u64,
}

/// One group's log: its purge point, its vote, the term of every entry after the purge point
/// (as runs: terms change rarely), and the entries themselves while the engine keeps them
/// (`Engine::release_entries`).
#[derive(Default, Debug)]
pub struct GroupLog {
    /// `entries[i]` has index `purged.index + 1 + i`; empty once released.
    entries: VecDeque<(u64, bytes::Bytes)>,
    /// `(first index, term)` of each run of entries of one term, in order; the first run may
    /// start at or before the purge point. Empty when the log holds no entries.
    terms: VecDeque<(u64, u64)>,
    /// The last entry (the purge point when there is none).
    last: LogId,
    purged: LogId,
    vote: Option<Vote>,
}

impl GroupLog {
    pub fn purged(&self) -> LogId {
        self.purged
    }

    pub fn vote(&self) -> Option<Vote> {
        self.vote
    }

    /// The id of the last entry (the purge point when there is none).
    pub fn last(&self) -> LogId {
        self.last
    }

    /// The term of the entry at `index`, if the log holds it (the purge point's, at it).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.purged.index {
            return Some(self.purged.term);
        }
        if index < self.purged.index || index > self.last.index {
            return None;
        }
        let run = self.terms.partition_point(|&(first, _)| first <= index);
        debug_assert!(run > 0, "a run covers every held entry");
        Some(self.terms[run - 1].1)
    }

    /// Appends the next entry, its payload kept when given (`Engine::release_entries`).
    fn push(&mut self, term: u64, kept: Option<bytes::Bytes>) {
        self.last = LogId {
            index: self.last.index + 1,
            term,
        };
        if self.terms.back().is_none_or(|&(_, t)| t != term) {
            self.terms.push_back((self.last.index, term));
        }
        if let Some(payload) = kept {
            debug_assert_eq!(
                self.purged.index + self.entries.len() as u64 + 1,
                self.last.index,
                "kept entries are contiguous"
            );
            self.entries.push_back((term, payload));
        }
    }

    /// The entry at `index`, while the engine keeps entries: its term and payload.
    pub fn entry(&self, index: u64) -> Option<(u64, &[u8])> {
        let i = index.checked_sub(self.purged.index + 1)?;
        self.entries.get(i as usize).map(|(t, p)| (*t, &**p))
    }

    /// `entry`, its payload shared (not copied): a restored replica's log holds the same bytes.
    pub fn entry_shared(&self, index: u64) -> Option<(u64, bytes::Bytes)> {
        let i = index.checked_sub(self.purged.index + 1)?;
        self.entries.get(i as usize).map(|(t, p)| (*t, p.clone()))
    }

    fn truncate(&mut self, from: u64) {
        if from > self.last.index {
            return;
        }
        let index = from.saturating_sub(1).max(self.purged.index);
        let term = self
            .term_at(index)
            .expect("held: between the purge point and the end");
        let keep = index - self.purged.index;
        self.entries.truncate(keep as usize);
        while self.terms.back().is_some_and(|&(first, _)| first > index) {
            self.terms.pop_back();
        }
        self.last = LogId { index, term };
    }

    fn purge(&mut self, upto: LogId) {
        if upto.index <= self.purged.index {
            return;
        }
        let drop = (upto.index - self.purged.index) as usize;
        if drop >= self.entries.len() {
            self.entries.clear();
        } else {
            self.entries.drain(..drop);
        }
        if upto.index >= self.last.index {
            self.last = upto;
            self.terms.clear();
        } else {
            // Runs wholly at or before the purge point go; the one holding it stays.
            while self
                .terms
                .get(1)
                .is_some_and(|&(first, _)| first <= upto.index)
            {
                self.terms.pop_front();
            }
        }
        self.purged = upto;
    }
}

/// A file operation for the driver, run in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Io {
    /// Create segment `seq` holding `header`.
    Create {
        seq: u64,
        header: [u8; HEADER],
    },
    Write {
        seq: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    Sync {
        seq: u64,
    },
    Delete {
        seq: u64,
    },
}

/// What the driver does next: `ops` in order, then acknowledge `acks`. The driver may hand
/// the batch back once done (`Engine::recycle`), its writes' buffers in `spent`, so the next
/// batches reuse them instead of allocating.
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<Io>,
    pub acks: Vec<u64>,
    pub spent: Vec<Vec<u8>>,
    /// The batch's `Sync`s are `fsync batch`'s periodic ones (not `always`'s, not a forced
    /// one): the acks need only the writes before them, so the driver may acknowledge once
    /// the other operations are done and leave the `Sync`s and the `Delete`s after them to run
    /// behind, in order, as Redis's `appendfsync everysec` leaves its fsync to a background
    /// thread. A later batch's operations never depend on them.
    pub syncs_behind: bool,
}

impl Batch {
    /// Runs `op` on each operation in order (a write's buffer goes to `spent` after it), up
    /// to the first error.
    pub fn run<E>(&mut self, mut op: impl FnMut(&Io) -> Result<(), E>) -> Result<(), E> {
        for o in self.ops.drain(..) {
            op(&o)?;
            if let Io::Write { bytes, .. } = o {
                self.spent.push(bytes);
            }
        }
        Ok(())
    }
}

/// Write buffers kept for reuse, at most this many, each at most `SPARE_BYTES_MAX`.
const SPARES_MAX: usize = 4;
const SPARE_BYTES_MAX: usize = 4 << 20;

/// An operating error of the caller's making; nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub enum LogError {
    /// An append that does not follow the group's last entry.
    NotContiguous {
        group: u32,
        index: u64,
        expected: u64,
    },
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Bytes written or queued, header included.
    len: u64,
    created: bool,
    /// The highest entry index each group has in this segment.
    max_index: GroupMap<u64>,
}

pub struct Engine {
    cfg: WalConfig,
    groups: GroupMap<GroupLog>,
    /// Whether appended entries are kept in memory (`GroupLog::entry`): true until the caller
    /// has restored its replicas from them (`release_entries`); the Raft logs hold the same
    /// entries from then on, and keeping a second reference to each costs a reference count
    /// up and down per write.
    keep_entries: bool,
    /// Oldest first; the last is the one being written.
    segments: VecDeque<Segment>,
    /// Records queued per segment (in segment order), not yet handed to the driver.
    queued: Vec<(u64, Vec<u8>)>,
    /// A batch handed back and buffers for the next writes (`recycle`).
    spare_batch: Option<Batch>,
    spare_bufs: Vec<Vec<u8>>,
    /// Tokens to acknowledge after the next batch.
    waiting: Vec<u64>,
    /// Segments written since their last fsync.
    unsynced: Vec<u64>,
    last_sync_ms: u64,
    /// The next batch fsyncs what it and earlier ones wrote, whatever the policy
    /// (`sync_next`: SAVE).
    force_sync: bool,
}

impl Engine {
    /// An empty log.
    /// The next batch (`take_batch`) fsyncs the segments written since the last fsync, whatever
    /// the policy (with `never`, those its own writes reach): SAVE.
    pub fn sync_next(&mut self) {
        self.force_sync = true;
    }

    /// Changes when the log is fsynced from the next batch on (CONFIG SET appendfsync).
    pub fn set_fsync(&mut self, fsync: FsyncPolicy) {
        self.cfg.fsync = fsync;
    }

    pub fn fsync(&self) -> FsyncPolicy {
        self.cfg.fsync
    }

    pub fn new(cfg: WalConfig) -> Engine {
        Engine {
            cfg,
            groups: GroupMap::default(),
            keep_entries: true,
            segments: VecDeque::new(),
            queued: Vec::new(),
            spare_batch: None,
            spare_bufs: Vec::new(),
            waiting: Vec::new(),
            unsynced: Vec::new(),
            last_sync_ms: 0,
            force_sync: false,
        }
    }

    pub fn config(&self) -> WalConfig {
        self.cfg
    }

    /// Drops the entries kept in memory and keeps no more (`GroupLog::entry` finds none from
    /// then on): for a caller whose replicas were restored from them and hold them now.
    pub fn release_entries(&mut self) {
        self.keep_entries = false;
        for log in self.groups.values_mut() {
            log.entries = VecDeque::new();
        }
    }

    pub fn group(&self, g: u32) -> Option<&GroupLog> {
        self.groups.get(&g)
    }

    pub fn groups(&self) -> impl Iterator<Item = (u32, &GroupLog)> {
        self.groups.iter().map(|(g, l)| (*g, l))
    }

    /// Sequence numbers of the segments the log holds, oldest first.
    pub fn segment_seqs(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.seq).collect()
    }

    pub fn append(
        &mut self,
        group: u32,
        index: u64,
        term: u64,
        payload: &[u8],
    ) -> Result<(), LogError> {
        self.append_with(group, index, term, payload, || {
            bytes::Bytes::copy_from_slice(payload)
        })
    }

    /// `append` of a payload the caller shares (the Raft log holds the same bytes): no copy,
    /// and a reference only while the engine keeps entries (`release_entries`).
    pub fn append_shared(
        &mut self,
        group: u32,
        index: u64,
        term: u64,
        payload: &bytes::Bytes,
    ) -> Result<(), LogError> {
        self.append_with(group, index, term, payload, || payload.clone())
    }

    fn append_with(
        &mut self,
        group: u32,
        index: u64,
        term: u64,
        payload: &[u8],
        kept: impl FnOnce() -> bytes::Bytes,
    ) -> Result<(), LogError> {
        let log = self.groups.entry(group).or_default();
        let expected = log.last().index + 1;
        if index != expected {
            return Err(LogError::NotContiguous {
                group,
                index,
                expected,
            });
        }
        log.push(term, self.keep_entries.then(kept));
        self.queue(Record {
            kind: Kind::Entry,
            group,
            index,
            term,
            payload,
        });
        Ok(())
    }

    /// Appends entries of several groups as one record (`Kind::Unit`): after a crash they are
    /// all in the log or none is. Each must follow its group's last entry (in order within a
    /// group); nothing changes if one does not.
    pub fn append_unit(&mut self, parts: &[(u32, u64, u64, bytes::Bytes)]) -> Result<(), LogError> {
        let mut next: GroupMap<u64> = GroupMap::default();
        for &(group, index, _, _) in parts {
            let expected = next
                .get(&group)
                .copied()
                .unwrap_or_else(|| self.groups.get(&group).map_or(0, |l| l.last().index) + 1);
            if index != expected {
                return Err(LogError::NotContiguous {
                    group,
                    index,
                    expected,
                });
            }
            next.insert(group, index + 1);
        }
        let mut payload = Vec::new();
        record::unit_payload(
            parts.iter().map(|(group, index, term, p)| record::Part {
                group: *group,
                index: *index,
                term: *term,
                payload: p,
            }),
            &mut payload,
        );
        self.queue(Record {
            kind: Kind::Unit,
            group: 0,
            index: 0,
            term: 0,
            payload: &payload,
        });
        let seg = self.segments.back_mut().expect("queued into a segment");
        for (group, index, term, p) in parts {
            let m = seg.max_index.entry(*group).or_insert(0);
            *m = (*m).max(*index);
            let kept = self.keep_entries.then(|| p.clone());
            self.groups.entry(*group).or_default().push(*term, kept);
        }
        Ok(())
    }

    /// Drops the group's entries from `from` on (a new leader overwrote them).
    pub fn truncate(&mut self, group: u32, from: u64) {
        self.groups.entry(group).or_default().truncate(from);
        self.queue(Record {
            kind: Kind::Truncate,
            group,
            index: from,
            term: 0,
            payload: &[],
        });
    }

    /// Drops the group's entries up to `upto` (a snapshot holds them now).
    pub fn purge(&mut self, group: u32, upto: LogId) {
        self.groups.entry(group).or_default().purge(upto);
        self.queue(Record {
            kind: Kind::Purge,
            group,
            index: upto.index,
            term: upto.term,
            payload: &[],
        });
    }

    /// Forgets the group (its replica left this node): its entries, purge point and vote. The
    /// record voids every earlier record of the group on recovery, so a replica created here
    /// later starts from nothing, and the segments holding the old entries can go.
    pub fn reset(&mut self, group: u32) {
        self.groups.remove(&group);
        for s in &mut self.segments {
            s.max_index.remove(&group);
        }
        self.queue(Record {
            kind: Kind::Reset,
            group,
            index: 0,
            term: 0,
            payload: &[],
        });
    }

    pub fn save_vote(&mut self, group: u32, vote: Vote) {
        let log = self.groups.entry(group).or_default();
        log.vote = Some(vote);
        let purged = log.purged;
        self.queue_state(group, purged, Some(vote));
    }

    /// Asks for `token` to be acknowledged once everything queued so far is written (and, with
    /// `fsync = always`, synced).
    pub fn flush(&mut self, token: u64) {
        self.waiting.push(token);
    }

    fn queue_state(&mut self, group: u32, purged: LogId, vote: Option<Vote>) {
        let has_vote = vote.is_some();
        let vote = vote.unwrap_or_default();
        let mut payload = [0u8; 17];
        payload[..8].copy_from_slice(&vote.term.to_le_bytes());
        payload[8..16].copy_from_slice(&vote.node.to_le_bytes());
        payload[16] = vote.committed as u8 | (has_vote as u8) << 1;
        self.queue(Record {
            kind: Kind::State,
            group,
            index: purged.index,
            term: purged.term,
            payload: &payload,
        });
    }

    /// Encodes `r` into the segment being written, starting a new one when it is full.
    fn queue(&mut self, r: Record) {
        let size = (record::FRAME + record::BODY_FIXED + r.payload.len()) as u64;
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.len > HEADER as u64 && s.len + size > self.cfg.segment_bytes);
        if full {
            self.rotate();
        }
        let seg = self.segments.back_mut().expect("a segment after rotate");
        seg.len += size;
        if r.kind == Kind::Entry {
            let m = seg.max_index.entry(r.group).or_insert(0);
            *m = (*m).max(r.index);
        }
        let seq = seg.seq;
        if self.queued.last().is_none_or(|(s, _)| *s != seq) {
            let buf = self.spare_bufs.pop().unwrap_or_default();
            self.queued.push((seq, buf));
        }
        let buf = &mut self.queued.last_mut().expect("pushed").1;
        record::encode(&r, buf);
    }

    /// The bytes of the write buffers this log holds: records not yet in a batch and buffers
    /// kept for the next ones (the node's AOF buffers, in Redis's terms).
    pub fn buffer_bytes(&self) -> usize {
        self.queued.iter().map(|(_, b)| b.capacity()).sum::<usize>()
            + self.spare_bufs.iter().map(Vec::capacity).sum::<usize>()
    }

    /// A batch the driver ran: its vectors and write buffers are kept for the next batches.
    pub fn recycle(&mut self, mut b: Batch) {
        for mut buf in b.spent.drain(..) {
            if self.spare_bufs.len() < SPARES_MAX && buf.capacity() <= SPARE_BYTES_MAX {
                buf.clear();
                self.spare_bufs.push(buf);
            }
        }
        b.ops.clear();
        b.acks.clear();
        self.spare_batch = Some(b);
    }

    /// Starts a new segment, restating every group's vote and purge point at its head so that
    /// older segments hold nothing the log still needs once their entries are purged.
    fn rotate(&mut self) {
        let seq = self.segments.back().map_or(1, |s| s.seq + 1);
        self.segments.push_back(Segment {
            seq,
            len: HEADER as u64,
            created: false,
            max_index: GroupMap::default(),
        });
        let mut states: Vec<(u32, LogId, Option<Vote>)> = self
            .groups
            .iter()
            .filter(|(_, l)| l.vote.is_some() || l.purged.index > 0)
            .map(|(g, l)| (*g, l.purged, l.vote))
            .collect();
        states.sort_unstable_by_key(|s| s.0);
        for (g, purged, vote) in states {
            self.queue_state(g, purged, vote);
        }
    }

    /// The next file operations and the tokens to acknowledge after them; `None` when idle.
    /// With `fsync = batch`, call it on a timer too so synced data does not wait for traffic.
    pub fn take_batch(&mut self, now_ms: u64) -> Option<Batch> {
        let mut b = self.spare_batch.take().unwrap_or_default();
        for (seq, bytes) in std::mem::take(&mut self.queued) {
            let seg = self
                .segments
                .iter_mut()
                .find(|s| s.seq == seq)
                .expect("queued for a live segment");
            if !seg.created {
                seg.created = true;
                if self.cfg.fsync == FsyncPolicy::Always {
                    // What the older segments got is fsynced before a new one starts: at any
                    // moment only the newest segment holds writes not on disk, so a crash can
                    // tear only its tail (or its header), which recovery cuts off; damage in
                    // an older segment stays damage (found by the simulator's power cuts: a
                    // torn tail of the previous segment stopped the node from starting).
                    for s in self.unsynced.drain(..) {
                        b.ops.push(Io::Sync { seq: s });
                    }
                }
                b.ops.push(Io::Create {
                    seq,
                    header: Header {
                        shard: self.cfg.shard,
                        seq,
                    }
                    .encode(),
                });
            }
            let offset = seg.len - bytes.len() as u64;
            b.ops.push(Io::Write { seq, offset, bytes });
            if !self.unsynced.contains(&seq) {
                self.unsynced.push(seq);
            }
        }
        let forced = std::mem::take(&mut self.force_sync);
        let sync = forced
            || match self.cfg.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Batch { interval_ms } => {
                    now_ms.saturating_sub(self.last_sync_ms) >= interval_ms
                }
                FsyncPolicy::Never => false,
            };
        let never = self.cfg.fsync == FsyncPolicy::Never;
        if never && !sync {
            self.unsynced.clear();
        }
        b.syncs_behind = false;
        if (sync && !self.unsynced.is_empty()) || never {
            b.syncs_behind = !forced && matches!(self.cfg.fsync, FsyncPolicy::Batch { .. });
            for seq in self.unsynced.drain(..) {
                b.ops.push(Io::Sync { seq });
            }
            self.last_sync_ms = now_ms;
            // Old segments go only once what replaced them is on disk (or, with `never`, written).
            while self.segments.len() > 1 && self.dead(&self.segments[0]) {
                let s = self.segments.pop_front().expect("checked");
                b.ops.push(Io::Delete { seq: s.seq });
            }
        }
        std::mem::swap(&mut b.acks, &mut self.waiting);
        if b.ops.is_empty() && b.acks.is_empty() {
            self.spare_batch = Some(b);
            return None;
        }
        Some(b)
    }

    /// Once the log has more than `max_segments` segments: the groups whose unpurged entries keep
    /// the oldest segment alive. Compacting them (a snapshot, then `purge`) lets it go, so disk
    /// use stays bounded even when some groups write too rarely to compact on their own.
    pub fn pinning_oldest(&self, max_segments: usize) -> Vec<u32> {
        if self.segments.len() <= max_segments {
            return Vec::new();
        }
        let mut g: Vec<u32> = self.segments[0]
            .max_index
            .iter()
            .filter(|&(g, &max)| self.groups.get(g).is_some_and(|l| l.purged.index < max))
            .map(|(g, _)| *g)
            .collect();
        g.sort_unstable();
        g
    }

    /// Whether nothing in `s` is still needed: every entry in it was purged by its group.
    fn dead(&self, s: &Segment) -> bool {
        s.max_index
            .iter()
            .all(|(g, &max)| self.groups.get(g).is_none_or(|l| l.purged.index >= max))
    }
}

/// Why a log cannot be opened: the file, the offset and what is wrong. Nothing was changed.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt {
    pub seq: u64,
    pub offset: u64,
    pub reason: String,
}

/// An opened log and what recovery repaired.
pub struct Recovered {
    pub engine: Engine,
    /// A torn tail to cut off: the last segment is to be truncated to this length.
    pub truncate_tail: Option<(u64, u64)>,
    /// The newest segment, made but never fsynced (its header is a torn write of the header
    /// it was made with: a prefix of it, then zeros): it holds nothing acknowledged (a fsync
    /// of the segment would have made its header whole), so it is to be deleted.
    pub drop_newest: Option<u64>,
}

/// Whether `bytes` begin with a torn write of `expected`: a prefix of it (maybe empty), then
/// zeros or the end of the file.
fn torn_header(bytes: &[u8], expected: &[u8; HEADER]) -> bool {
    let head = &bytes[..bytes.len().min(HEADER)];
    let same = head
        .iter()
        .zip(expected)
        .take_while(|(a, b)| a == b)
        .count();
    head[same..].iter().all(|&b| b == 0) && head != &expected[..]
}

impl Engine {
    /// Rebuilds the log from its segments (`(seq, contents)`, any order). A torn tail of the last
    /// segment is reported for truncation; any other damage is `Corrupt`.
    ///
    /// Two passes: the first checks every record and finds each group's final purge point (it
    /// only grows, and the segments that held the purged entries may be gone); the second replays
    /// the records after it in order.
    pub fn recover(cfg: WalConfig, mut files: Vec<(u64, Vec<u8>)>) -> Result<Recovered, Corrupt> {
        files.sort_by_key(|f| f.0);
        let mut e = Engine::new(cfg);
        let mut truncate_tail = None;
        let mut drop_newest = None;
        let mut records: Vec<(u64, usize, Record)> = Vec::new();
        let last = files.len().saturating_sub(1);
        for (n, (seq, bytes)) in files.iter().enumerate() {
            let bad = |offset: usize, reason: &str| Corrupt {
                seq: *seq,
                offset: offset as u64,
                reason: reason.to_string(),
            };
            let expected = Header {
                shard: cfg.shard,
                seq: *seq,
            }
            .encode();
            if n == last && torn_header(bytes, &expected) {
                // Made, never fsynced (a power cut right after a new segment was started,
                // found by the whole-cluster simulator): nothing in it was acknowledged.
                drop_newest = Some(*seq);
                break;
            }
            let h = Header::decode(bytes).map_err(|r| bad(0, r))?;
            if h.seq != *seq || h.shard != cfg.shard {
                return Err(bad(
                    0,
                    "segment header names another segment or shard thread",
                ));
            }
            if let Some(prev) = e.segments.back()
                && prev.seq + 1 != *seq
            {
                return Err(bad(0, "a segment is missing before this one"));
            }
            let mut seg = Segment {
                seq: *seq,
                len: HEADER as u64,
                created: true,
                max_index: GroupMap::default(),
            };
            let mut at = HEADER;
            loop {
                match record::decode(bytes, at) {
                    record::Decoded::Record(r, next) => {
                        if r.kind == Kind::Entry {
                            let m = seg.max_index.entry(r.group).or_insert(0);
                            *m = (*m).max(r.index);
                        }
                        if r.kind == Kind::Unit {
                            for p in record::unit_parts(r.payload).map_err(|w| bad(at, w))? {
                                let m = seg.max_index.entry(p.group).or_insert(0);
                                *m = (*m).max(p.index);
                            }
                        }
                        records.push((*seq, at, r));
                        seg.len = next as u64;
                        at = next;
                    }
                    record::Decoded::Short if at == bytes.len() => break,
                    // The rest of the segment is the zeros its file was extended with ahead
                    // of the records (a zero length is never a record): the clean end.
                    _ if bytes[at..].iter().all(|&b| b == 0) => break,
                    other => {
                        let why = match other {
                            record::Decoded::Bad(w) => w,
                            _ => "record cut short",
                        };
                        if n == last && !valid_record_after(bytes, at + 1) {
                            truncate_tail = Some((*seq, at as u64));
                            break;
                        }
                        return Err(bad(at, why));
                    }
                }
            }
            e.segments.push_back(seg);
        }
        // Records of a group before its last `Reset` are void: they name a replica that left.
        let mut reset_at: GroupMap<usize> = GroupMap::default();
        for (i, (_, _, r)) in records.iter().enumerate() {
            if r.kind == Kind::Reset {
                reset_at.insert(r.group, i);
            }
        }
        // (A unit's entries are void or not each by its own group: `replay`.)
        let void_in = |i: usize, g: u32| reset_at.get(&g).is_some_and(|&at| i <= at);
        let void = |i: usize, r: &Record| r.kind != Kind::Unit && void_in(i, r.group);
        if !reset_at.is_empty() {
            for s in &mut e.segments {
                s.max_index.clear();
            }
            for (i, (seq, _, r)) in records.iter().enumerate() {
                let s = e
                    .segments
                    .iter_mut()
                    .find(|s| s.seq == *seq)
                    .expect("read from it");
                if r.kind == Kind::Entry && !void(i, r) {
                    let m = s.max_index.entry(r.group).or_insert(0);
                    *m = (*m).max(r.index);
                }
                if r.kind == Kind::Unit {
                    for p in record::unit_parts(r.payload).expect("checked when read") {
                        if !void_in(i, p.group) {
                            let m = s.max_index.entry(p.group).or_insert(0);
                            *m = (*m).max(p.index);
                        }
                    }
                }
            }
        }
        let records: Vec<_> = records
            .into_iter()
            .enumerate()
            .filter(|(i, (_, _, r))| !void(*i, r))
            .collect();
        for (_, (_, _, r)) in &records {
            if matches!(r.kind, Kind::Purge | Kind::State) {
                e.groups.entry(r.group).or_default().purge(LogId {
                    index: r.index,
                    term: r.term,
                });
            }
        }
        for (i, (seq, at, r)) in &records {
            let corrupt = |reason| Corrupt {
                seq: *seq,
                offset: *at as u64,
                reason,
            };
            if r.kind == Kind::Unit {
                for p in record::unit_parts(r.payload).expect("checked when read") {
                    if void_in(*i, p.group) {
                        continue;
                    }
                    e.replay(&Record {
                        kind: Kind::Entry,
                        group: p.group,
                        index: p.index,
                        term: p.term,
                        payload: p.payload,
                    })
                    .map_err(corrupt)?;
                }
                continue;
            }
            e.replay(r).map_err(corrupt)?;
        }
        Ok(Recovered {
            engine: e,
            truncate_tail,
            drop_newest,
        })
    }

    fn replay(&mut self, r: &Record) -> Result<(), String> {
        let log = self.groups.entry(r.group).or_default();
        debug_assert!(r.kind != Kind::Reset, "void: filtered out before replay");
        match r.kind {
            Kind::Entry => {
                let next = log.last().index + 1;
                if r.index > next {
                    return Err(format!(
                        "group {} jumps from entry {} to {}",
                        r.group,
                        next - 1,
                        r.index
                    ));
                }
                if r.index <= log.purged.index {
                    return Ok(()); // already in a snapshot
                }
                log.truncate(r.index);
                log.push(r.term, Some(bytes::Bytes::copy_from_slice(r.payload)));
            }
            Kind::Truncate => log.truncate(r.index),
            Kind::Reset => {}
            Kind::Unit => unreachable!("a unit is replayed entry by entry"),
            Kind::Purge => log.purge(LogId {
                index: r.index,
                term: r.term,
            }),
            Kind::State => {
                if r.payload.len() != 17 {
                    return Err("state record of the wrong size".into());
                }
                log.purge(LogId {
                    index: r.index,
                    term: r.term,
                });
                if r.payload[16] & 2 != 0 {
                    log.vote = Some(Vote {
                        term: u64::from_le_bytes(r.payload[..8].try_into().expect("8")),
                        node: u64::from_le_bytes(r.payload[8..16].try_into().expect("8")),
                        committed: r.payload[16] & 1 != 0,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether any valid record starts at or after `from` (a resync scan: damage followed by good
/// records is corruption, damage at the very end is a torn write).
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len()).any(|at| matches!(record::decode(bytes, at), record::Decoded::Record(..)))
}
