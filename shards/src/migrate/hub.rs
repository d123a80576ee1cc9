//! A shard thread's bulk sessions (issue 19, step 2; `docs/design/migration.md`): the base
//! copies of the snapshots its Raft groups offer (as source) and want (as target), and the
//! bytes of the bulk lanes that carry them. Sans-IO: the driver registers offers and wants
//! as its groups make them, feeds what a lane read, writes what [`Hub::poll`] hands out,
//! installs what [`Hub::take_installs`] gives, and ticks it.
//!
//! Two lanes per peer, one connection each, both ways: the [`Dir::Source`] lane is the one
//! this thread dialed to the peer (its chunks out, the peer's answers in), the
//! [`Dir::Target`] lane the one the peer dialed to it (the peer's chunks in, its answers
//! out). A frame is `len: u32 | group: u32 | message` (`session::BulkMsg`), `len` counting
//! what follows it; a chunk's data is covered by its own CRC32C and the whole copy by the
//! running one, so the frame has none of its own (a damaged header is a gap or an unknown
//! session, which the protocol answers).
//!
//! A session is one offer: the leader of `group` offering its snapshot up to `last` in
//! `term` to one follower; both ends name it [`session_id`]`(term, last)`. The source sends
//! nothing until the target's first answer (`Resend` with what it holds), which comes when
//! the target wants the offer and its lane is up, and again after any reconnect: so a copy
//! resumes from what the target holds, on a new connection or after the source's session
//! was made again.

use super::session::{
    BulkMsg, ChunkRef, Limits, Received, Receiver, Sender, SenderState, SessionId,
};
use crate::ids::NodeId;
use crate::raft::{LogId, SnapshotWanted};
use bytes::Bytes;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Which connection of a peer's pair (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Dialed by this thread: its chunks out, the target's answers in.
    Source,
    /// Dialed by the peer: its chunks in, this thread's answers out.
    Target,
}

impl Dir {
    fn at(self) -> usize {
        self as usize
    }
}

/// `len: u32 | group: u32` before each message.
pub const FRAME_HEAD_BYTES: usize = 8;
/// A chunk message's bytes besides its data: kind, session, offset, CRC32C, data length.
const CHUNK_HEAD_BYTES: usize = 1 + 8 + 8 + 4 + 4;

/// Starts a frame of `group` in `out`: where it starts, for `end_frame`.
fn begin_frame(out: &mut Vec<u8>, group: u32) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&group.to_le_bytes());
    at
}

/// Source: a copy from a file resumes from `held` bytes the reconnected target holds, whose
/// CRC32C is read back from the file here.
fn resume_from_file(
    o: &mut Outgoing,
    group: u32,
    held: u64,
    fetch: Fetch<'_>,
) -> Result<(), String> {
    let mut crc = 0;
    let mut buf = vec![0u8; (1 << 20).min(held as usize)];
    let mut at = 0;
    while at < held {
        let n = (held - at).min(buf.len() as u64) as usize;
        fetch(group, o.last, at, &mut buf[..n])?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n as u64;
    }
    o.sender.resume(held, crc);
    Ok(())
}

/// Writes the length of the frame begun at `at` (what follows its length field).
fn end_frame(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// A source's session not offered again for this long is dropped (its group stopped
/// offering: the follower caught up otherwise, or leadership moved).
pub const OFFER_STALE_MS: u64 = 5_000;
/// A target that heard nothing of a session for this long says again what it holds (its
/// first answer, or the source's chunks, may have been lost).
pub const HELLO_AGAIN_MS: u64 = 2_000;
/// A target's session that heard nothing for this long is dropped with what it held (its
/// group wants it again at the leader's next offer).
pub const INCOMING_STALE_MS: u64 = 60_000;

/// The largest chunk a lane carries (`bulk-chunk-bytes` is at most this).
pub const CHUNK_BYTES_MAX: usize = 64 << 20;

/// The largest frame a lane takes: a chunk of the largest size any node may be configured
/// with (not this node's own: peers may differ) and its heads.
pub const FRAME_BYTES_MAX: usize = CHUNK_BYTES_MAX + FRAME_HEAD_BYTES + CHUNK_HEAD_BYTES;

/// The most address space a target's copy reserves up front (larger ones grow as they
/// arrive).
const RESERVE_BYTES_MAX: u64 = 8 << 30;

/// The id both ends give the session of an offer (`SnapshotOffer` in `term`, up to `last`),
/// unique per group across leaders (a new leader offers in a new term).
pub fn session_id(term: u64, last: LogId) -> SessionId {
    term.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ last.index.rotate_left(29)
        ^ last.term.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// Where a source session's bytes come from: a blob in memory, or the driver's snapshot
/// file, read a chunk at a time as the copy goes (`Fetch`), whose whole CRC32C is known (the
/// file's header): the copy's running CRC must come to it, or the file changed or rotted and
/// the copy is cancelled before it can install.
enum CopyData {
    Mem(Bytes),
    File { total: u64, crc: u32 },
}

impl CopyData {
    fn total(&self) -> u64 {
        match self {
            CopyData::Mem(b) => b.len() as u64,
            CopyData::File { total, .. } => *total,
        }
    }
}

/// The driver's reader of snapshot files for copies that stream from them: fills the buffer
/// with the bytes of `group`'s snapshot `last` at `offset`.
pub type Fetch<'a> = &'a mut dyn FnMut(u32, LogId, u64, &mut [u8]) -> Result<(), String>;

/// A `Fetch` for a hub whose copies are all in memory.
pub fn no_files(_: u32, _: LogId, _: u64, _: &mut [u8]) -> Result<(), String> {
    Err("this hub reads no snapshot files".into())
}

/// The driver's taker of stored copies' bytes (`Hub::store_copies`; issue 19, step 3): the
/// bytes of `group`'s copy of `wanted` at `offset`, checked and in order (offset 0 begins a
/// copy afresh). An error cancels the copy.
pub type Store<'a> = &'a mut dyn FnMut(u32, &SnapshotWanted, u64, &[u8]) -> Result<(), String>;

/// A `Store` for a hub that keeps every copy in memory.
pub fn no_store(_: u32, _: &SnapshotWanted, _: u64, _: &[u8]) -> Result<(), String> {
    Err("this hub stores no copies".into())
}

struct Outgoing {
    sender: Sender,
    data: CopyData,
    /// The snapshot the blob is (`blob_of`: another target of it takes the same bytes).
    last: LogId,
    /// A reconnected target holds this much, which differs from what the sender knew: the
    /// sender resumes from it once the CRC of those bytes is known (read at the next `poll`
    /// for a copy from a file).
    resume_at: Option<u64>,
    offered_ms: u64,
    /// When this session was made (progress reports: `copy_progress`).
    begun_ms: u64,
    /// The target answered on the current lane (chunks go out only then).
    started: bool,
}

struct Incoming {
    recv: Receiver,
    wanted: SnapshotWanted,
    /// The copy so far; `None`: the driver's store takes it (`store_copies`).
    buf: Option<Vec<u8>>,
    /// When the source last sent anything of it, and when this end last said what it holds.
    heard_ms: u64,
    hello_ms: u64,
}

#[derive(Default)]
struct Lane {
    up: [bool; 2],
    /// Small frames (answers, `Finish`, `Cancel`) queued per direction.
    ctrl: [Vec<u8>; 2],
}

/// A whole copy, checked: the group installs it (`Group::install_snapshot`), or, `blob`
/// `None`, the driver's store holds it (`Group::install_snapshot_staged`).
#[derive(Debug)]
pub struct Install {
    pub group: u32,
    pub wanted: SnapshotWanted,
    pub blob: Option<Bytes>,
    /// The whole copy's CRC32C, checked against the source's (a stored copy's file header).
    pub crc: u32,
}

/// Counters (INFO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Chunk bytes sent and received (resent bytes counted again).
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Copies the target installed, as source and as target.
    pub done_out: u64,
    pub done_in: u64,
    /// Windows sent again, whole copies restarted, chunks refused for their CRC.
    pub resends: u64,
    pub restarts: u64,
    pub bad_chunks: u64,
    /// Source sessions made to stream from a snapshot file (not a blob in memory).
    pub from_files: u64,
}

/// Why a lane's bytes were refused: the driver closes that connection (the sessions on it
/// resume on the next).
#[derive(Debug, PartialEq, Eq)]
pub struct LaneError(pub String);

/// A cap on the bytes of chunks the hub sends (`Hub::set_rate`): a token bucket refilled at
/// `rate` bytes a second up to `burst`, allowed into debt by one chunk (so any chunk size
/// passes), and 0 for no cap.
#[derive(Debug, Default)]
struct Throttle {
    rate: u64,
    tokens: i64,
    at_ms: u64,
    /// A source lane had a chunk to send and no tokens: the next `tick` wakes the lanes.
    held: bool,
}

impl Throttle {
    /// At most 100 ms of the rate, or one chunk if that is more, may go at once.
    fn burst(&self, chunk: u64) -> i64 {
        (self.rate / 10).max(chunk) as i64
    }

    fn refill(&mut self, now_ms: u64, chunk: u64) {
        if self.rate == 0 {
            return;
        }
        let ms = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        let add = (ms.saturating_mul(self.rate) / 1000) as i64;
        self.tokens = self.tokens.saturating_add(add).min(self.burst(chunk));
    }

    fn allows(&self) -> bool {
        self.rate == 0 || self.tokens > 0
    }

    fn spend(&mut self, bytes: u64) {
        if self.rate > 0 {
            self.tokens -= bytes as i64;
        }
    }
}

pub struct Hub {
    limits: Limits,
    throttle: Throttle,
    out: HashMap<(NodeId, u32), Outgoing>,
    inc: HashMap<(NodeId, u32), Incoming>,
    lanes: HashMap<NodeId, Lane>,
    installs: Vec<Install>,
    ready: Vec<(NodeId, Dir)>,
    stats: Stats,
    /// Source sessions that ended installed, and when (`refresh_offer` answers for them for
    /// `OFFER_STALE_MS`: the leader offers until its group hears the install).
    done: Vec<(NodeId, u32, SessionId, u64)>,
    /// Copies from files cancelled: their group and why (`take_errors`, for the log).
    errors: Vec<(u32, String)>,
    /// Groups whose snapshot file failed a copy (`take_damaged_files`).
    damaged: Vec<u32>,
    /// Which groups' incoming copies go to the driver's `Store` (`store_copies`).
    stored: Option<Box<dyn Fn(u32) -> bool>>,
}

impl Hub {
    pub fn new(limits: Limits) -> Hub {
        let limits = Limits {
            chunk_bytes: limits.chunk_bytes.clamp(1, CHUNK_BYTES_MAX as u64),
            window_bytes: limits.window_bytes.max(limits.chunk_bytes),
            ..limits
        };
        Hub {
            limits,
            throttle: Throttle::default(),
            out: HashMap::new(),
            inc: HashMap::new(),
            lanes: HashMap::new(),
            installs: Vec::new(),
            ready: Vec::new(),
            stats: Stats::default(),
            done: Vec::new(),
            errors: Vec::new(),
            damaged: Vec::new(),
            stored: None,
        }
    }

    /// Incoming copies of the groups `stored` picks go to the driver's `Store` as they come
    /// (decoded and written to a file there), not into memory here; their `Install`s carry no
    /// bytes.
    pub fn store_copies(&mut self, stored: impl Fn(u32) -> bool + 'static) {
        self.stored = Some(Box::new(stored));
    }

    /// Whether `group`'s copy of `wanted` is still being received or installed (a stored
    /// copy's staging is kept while it is).
    pub fn receives(&self, group: u32, wanted: &SnapshotWanted) -> bool {
        self.inc
            .get(&(wanted.from, group))
            .is_some_and(|i| i.wanted == *wanted)
    }

    /// Copies that failed, each once, with their group and why: from snapshot files (a read,
    /// or a file whose bytes do not check) and into the driver's store (a write, or bytes
    /// that are not a snapshot). The leader's next offer starts them again.
    pub fn take_errors(&mut self) -> std::vec::Drain<'_, (u32, String)> {
        self.errors.drain(..)
    }

    /// Groups whose snapshot file failed a copy since the last call (a read failed, or the
    /// bytes read do not check): offered again, the same file would fail again, so the
    /// driver writes it anew.
    pub fn take_damaged_files(&mut self) -> std::vec::Drain<'_, u32> {
        self.damaged.drain(..)
    }

    /// Whether a copy of `group`'s snapshot `last` streams from its file now (the driver
    /// keeps the file open while so).
    pub fn reads_file(&self, group: u32, last: LogId) -> bool {
        self.out.iter().any(|(&(_, g), o)| {
            g == group && o.last == last && matches!(o.data, CopyData::File { .. })
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The cap `set_rate` set (bytes a second; 0: none).
    pub fn rate(&self) -> u64 {
        self.throttle.rate
    }

    /// Caps the bytes of chunks sent at `bytes_per_sec` (0: no cap), from `now_ms`.
    pub fn set_rate(&mut self, bytes_per_sec: u64, now_ms: u64) {
        if bytes_per_sec != self.throttle.rate {
            let chunk = self.limits.chunk_bytes;
            self.throttle.refill(now_ms, chunk);
            self.throttle.rate = bytes_per_sec;
            self.throttle.at_ms = now_ms;
            self.throttle.tokens = self.throttle.tokens.min(self.throttle.burst(chunk));
        }
    }

    /// Bytes the copies being received hold, and the snapshots being sent (read back from
    /// their files for the copy): replication memory, as the logs' are.
    pub fn held_bytes(&self) -> usize {
        let mem = |o: &Outgoing| match &o.data {
            CopyData::Mem(b) => b.len(),
            CopyData::File { .. } => 0,
        };
        self.inc
            .values()
            .map(|i| i.buf.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
            + self.out.values().map(mem).sum::<usize>()
    }

    /// Sessions under way, as source and as target.
    pub fn sessions(&self) -> (usize, usize) {
        (self.out.len(), self.inc.len())
    }

    /// Source: how far the copy of `group` to `peer` has come, `(bytes acknowledged, total,
    /// ms since the session began)`; `None` without such a session.
    pub fn copy_progress(&self, peer: NodeId, group: u32, now_ms: u64) -> Option<(u64, u64, u64)> {
        self.out.get(&(peer, group)).map(|o| {
            (
                o.sender.acked(),
                o.data.total(),
                now_ms.saturating_sub(o.begun_ms),
            )
        })
    }

    /// Whether a source lane to `peer` is needed (the driver dials it while so).
    pub fn wants_lane(&self, peer: NodeId) -> bool {
        self.out.keys().any(|&(p, _)| p == peer)
    }

    /// Lanes with something to write since the driver last asked: wake their writers.
    pub fn take_ready(&mut self) -> std::vec::Drain<'_, (NodeId, Dir)> {
        self.ready.drain(..)
    }

    fn mark(&mut self, peer: NodeId, dir: Dir) {
        if !self.ready.contains(&(peer, dir)) {
            self.ready.push((peer, dir));
        }
    }

    /// Queues a small message on a lane (dropped while it is down: the protocol resends).
    fn queue(&mut self, peer: NodeId, dir: Dir, group: u32, msg: &BulkMsg) {
        let lane = self.lanes.entry(peer).or_default();
        if !lane.up[dir.at()] {
            return;
        }
        let out = &mut lane.ctrl[dir.at()];
        let at = begin_frame(out, group);
        msg.encode(out);
        end_frame(out, at);
        self.mark(peer, dir);
    }

    /// Whether the hub takes lane `(peer, dir)` for up (`lane_up`, `lane_down`).
    pub fn lane_is_up(&self, peer: NodeId, dir: Dir) -> bool {
        self.lanes.get(&peer).is_some_and(|l| l.up[dir.at()])
    }

    /// Source: the same offer again (a heartbeat's) for a session under way only keeps it
    /// alive, and one for a copy that just installed changes nothing: true then (the driver
    /// need not find the blob again, which may mean reading a snapshot file back).
    pub fn refresh_offer(
        &mut self,
        to: NodeId,
        group: u32,
        term: u64,
        last: LogId,
        now_ms: u64,
    ) -> bool {
        let id = session_id(term, last);
        match self.out.get_mut(&(to, group)) {
            Some(o) if o.sender.id == id => {
                o.offered_ms = now_ms;
                true
            }
            _ => self.done.iter().any(|&(p, g, s, at)| {
                (p, g, s) == (to, group, id) && now_ms.saturating_sub(at) <= OFFER_STALE_MS
            }),
        }
    }

    /// Source: the blob of `group`'s snapshot `last` if a copy of it is under way (a second
    /// target of the same snapshot needs it read from its file no more).
    pub fn blob_of(&self, group: u32, last: LogId) -> Option<Bytes> {
        self.out.iter().find_map(|(&(_, g), o)| match &o.data {
            CopyData::Mem(b) if g == group && o.last == last => Some(b.clone()),
            _ => None,
        })
    }

    /// Source: the leader of `group` offered `to` its snapshot up to `last` in `term`, whose
    /// blob is `blob`. A new offer replaces an older one's session; the same offer again only
    /// keeps it alive.
    pub fn offer(
        &mut self,
        to: NodeId,
        group: u32,
        term: u64,
        last: LogId,
        blob: &Bytes,
        now_ms: u64,
    ) {
        self.offer_data(to, (group, term, last), CopyData::Mem(blob.clone()), now_ms);
    }

    /// `offer` of a snapshot the driver reads from its file as the copy goes (`poll`'s
    /// `Fetch`): `total` bytes whose CRC32C is `crc` (the file's header says both).
    pub fn offer_file(
        &mut self,
        to: NodeId,
        (group, term, last): (u32, u64, LogId),
        total: u64,
        crc: u32,
        now_ms: u64,
    ) {
        let fresh = self
            .out
            .get(&(to, group))
            .is_none_or(|o| o.sender.id != session_id(term, last));
        self.stats.from_files += fresh as u64;
        self.offer_data(
            to,
            (group, term, last),
            CopyData::File { total, crc },
            now_ms,
        );
    }

    fn offer_data(
        &mut self,
        to: NodeId,
        (group, term, last): (u32, u64, LogId),
        data: CopyData,
        now_ms: u64,
    ) {
        let id = session_id(term, last);
        match self.out.entry((to, group)) {
            Entry::Occupied(mut o) if o.get().sender.id == id => {
                o.get_mut().offered_ms = now_ms;
                return;
            }
            e => {
                let fresh = Outgoing {
                    sender: Sender::new(id, data.total(), self.limits, now_ms),
                    data,
                    last,
                    resume_at: None,
                    offered_ms: now_ms,
                    begun_ms: now_ms,
                    started: false,
                };
                match e {
                    Entry::Occupied(mut o) => {
                        o.insert(fresh);
                    }
                    Entry::Vacant(v) => {
                        v.insert(fresh);
                    }
                }
            }
        }
        // The writer dials the lane if it is not up.
        self.mark(to, Dir::Source);
    }

    /// Target: what `group` wants now (`Group::snapshot_wanted`), after it stepped messages.
    /// A new wish starts a session (answered on the lane once it is up); none drops what the
    /// group's sessions held, telling their sources.
    pub fn want(&mut self, group: u32, wanted: Option<SnapshotWanted>, now_ms: u64) {
        if self.inc.is_empty() && wanted.is_none() {
            return;
        }
        let stale: Vec<(NodeId, u32)> = self
            .inc
            .iter()
            .filter(|(k, i)| k.1 == group && Some(i.wanted) != wanted.filter(|w| w.from == k.0))
            .map(|(&k, _)| k)
            .collect();
        for k in stale {
            let i = self.inc.remove(&k).expect("listed");
            if !i.recv.is_installed() {
                self.queue(
                    k.0,
                    Dir::Target,
                    group,
                    &BulkMsg::Cancel { session: i.recv.id },
                );
            }
        }
        let Some(w) = wanted else { return };
        if let Entry::Vacant(v) = self.inc.entry((w.from, group)) {
            let recv = Receiver::new(session_id(w.term, w.last), w.total);
            let hello = recv.hello();
            v.insert(Incoming {
                recv,
                wanted: w,
                // Reserved whole (up to `RESERVE_BYTES_MAX`): memory is taken as bytes
                // arrive, in huge pages where the kernel gives them, and the copy is never
                // moved to grow.
                buf:
                    (!self.stored.as_ref().is_some_and(|f| f(group))).then(|| {
                        shardline_transport::alloc::large_buffer(
                            w.total.min(RESERVE_BYTES_MAX) as usize
                        )
                    }),
                heard_ms: now_ms,
                hello_ms: now_ms,
            });
            self.queue(w.from, Dir::Target, group, &hello);
        }
    }

    /// A lane connected: a target lane says what each of the peer's sessions holds (the
    /// source resumes from there); a source lane waits for those answers.
    pub fn lane_up(&mut self, peer: NodeId, dir: Dir) {
        let lane = self.lanes.entry(peer).or_default();
        lane.up[dir.at()] = true;
        lane.ctrl[dir.at()].clear();
        match dir {
            Dir::Source => {
                for ((p, _), o) in self.out.iter_mut() {
                    if *p == peer {
                        o.started = false;
                        o.sender.rewind();
                    }
                }
            }
            Dir::Target => {
                let hellos: Vec<(u32, BulkMsg)> = self
                    .inc
                    .iter()
                    .filter(|((p, _), _)| *p == peer)
                    .map(|(&(_, g), i)| (g, i.recv.hello()))
                    .collect();
                for (g, h) in hellos {
                    self.queue(peer, Dir::Target, g, &h);
                }
            }
        }
        self.mark(peer, dir);
    }

    /// A lane's connection ended: what was queued on it is dropped; the sessions resume on
    /// the next.
    pub fn lane_down(&mut self, peer: NodeId, dir: Dir) {
        let lane = self.lanes.entry(peer).or_default();
        lane.up[dir.at()] = false;
        lane.ctrl[dir.at()].clear();
        if dir == Dir::Source {
            for ((p, _), o) in self.out.iter_mut() {
                if *p == peer {
                    o.started = false;
                    o.sender.rewind();
                }
            }
        }
    }

    /// What a lane read: every whole frame at the front of `buf` is handled; the bytes they
    /// took are returned (a partial frame is left for the next read). An error closes the
    /// connection.
    pub fn on_bytes(
        &mut self,
        peer: NodeId,
        dir: Dir,
        buf: &[u8],
        now_ms: u64,
        store: Store<'_>,
    ) -> Result<usize, LaneError> {
        let max = FRAME_BYTES_MAX;
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if rest.len() < 4 {
                return Ok(at);
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
            if len < 4 + 9 || len + 4 > max {
                return Err(LaneError(format!(
                    "a bulk frame of {len} bytes (at most {max})"
                )));
            }
            if rest.len() < 4 + len {
                return Ok(at);
            }
            let group = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
            let body = &rest[8..4 + len];
            match dir {
                Dir::Source => self.on_answer(peer, group, body, now_ms)?,
                Dir::Target => self.on_source_frame(peer, group, body, now_ms, store)?,
            }
            at += 4 + len;
        }
    }

    /// Whether copies wait to be installed (`take_installs`).
    pub fn has_installs(&self) -> bool {
        !self.installs.is_empty()
    }

    /// Source lane: the target's answer for `group`.
    fn on_answer(
        &mut self,
        peer: NodeId,
        group: u32,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), LaneError> {
        let msg = BulkMsg::decode(body).map_err(|e| LaneError(format!("a bulk answer: {e}")))?;
        if matches!(msg, BulkMsg::Chunk { .. } | BulkMsg::Finish { .. }) {
            return Err(LaneError("a chunk on a source lane".into()));
        }
        let Some(o) = self.out.get_mut(&(peer, group)) else {
            return Ok(()); // ended here
        };
        if o.sender.id != msg.session() {
            return Ok(()); // an older offer's
        }
        if let BulkMsg::Resend { held, .. } = msg
            && !o.started
        {
            o.started = true;
            if held != o.sender.acked() && held <= o.data.total() {
                // The target holds more of this copy (from an earlier sender of it) or less
                // (it restarted) than this sender knew: from there on, once the CRC of what
                // it holds is known.
                match &o.data {
                    CopyData::Mem(b) => {
                        let crc = crc32c::crc32c(&b[..held as usize]);
                        o.sender.resume(held, crc);
                    }
                    CopyData::File { .. } => o.resume_at = Some(held),
                }
            }
        }
        let (resends, restarts) = (o.sender.resends, o.sender.restarts);
        let answer = o.sender.on_msg(&msg, now_ms);
        self.stats.resends += o.sender.resends - resends;
        self.stats.restarts += o.sender.restarts - restarts;
        let mismatch = match (&answer, &o.data) {
            (Some(BulkMsg::Finish { crc, .. }), CopyData::File { crc: want, .. })
                if crc != want =>
            {
                Some((*crc, *want))
            }
            _ => None,
        };
        if let Some((crc, want)) = mismatch {
            // The file read back is not the snapshot written (changed or damaged on disk):
            // never installed.
            let cancel = o.sender.cancel();
            self.out.remove(&(peer, group));
            self.errors.push((
                group,
                format!("the snapshot file read back does not check (CRC32C {crc:#x}, written {want:#x}): copy cancelled"),
            ));
            self.damaged.push(group);
            self.queue(peer, Dir::Source, group, &cancel);
            return Ok(());
        }
        match o.sender.state() {
            SenderState::Done => {
                self.stats.done_out += 1;
                let id = o.sender.id;
                self.out.remove(&(peer, group));
                self.done.push((peer, group, id, now_ms));
            }
            SenderState::Cancelled => {
                self.out.remove(&(peer, group));
            }
            _ => {}
        }
        if let Some(a) = answer {
            self.queue(peer, Dir::Source, group, &a);
        }
        // Acknowledged bytes open the window.
        self.mark(peer, Dir::Source);
        Ok(())
    }

    /// Target lane: the source's chunk or control message for `group`.
    fn on_source_frame(
        &mut self,
        peer: NodeId,
        group: u32,
        body: &[u8],
        now_ms: u64,
        store: Store<'_>,
    ) -> Result<(), LaneError> {
        let bad = |what: &str| LaneError(format!("a bulk message: {what}"));
        if let Some(chunk) = ChunkRef::decode(body) {
            // Borrowed: the data goes straight into the copy being built.
            let ChunkRef {
                session,
                offset,
                crc,
                data,
            } = chunk.map_err(|e| bad(&e.to_string()))?;
            let Some(i) = self.inc.get_mut(&(peer, group)) else {
                self.queue(peer, Dir::Target, group, &BulkMsg::Cancel { session });
                return Ok(());
            };
            if i.recv.id != session {
                return Ok(()); // an older offer's
            }
            i.heard_ms = now_ms;
            let bad_before = i.recv.bad_chunks;
            let (taken, answer) = i.recv.on_chunk(session, offset, crc, data);
            self.stats.bad_chunks += i.recv.bad_chunks - bad_before;
            if taken {
                let stored = match &mut i.buf {
                    Some(buf) => {
                        buf.extend_from_slice(data);
                        Ok(())
                    }
                    None => store(group, &i.wanted, offset, data),
                };
                self.stats.bytes_in += data.len() as u64;
                if let Err(why) = stored {
                    // The driver could not take it (a write failed, or the bytes are not a
                    // snapshot): the copy ends here; the group's next want starts afresh.
                    self.inc.remove(&(peer, group));
                    self.queue(peer, Dir::Target, group, &BulkMsg::Cancel { session });
                    self.errors
                        .push((group, format!("a base copy being received: {why}")));
                    return Ok(());
                }
            }
            if let Some(a) = answer {
                self.queue(peer, Dir::Target, group, &a);
            }
            return Ok(());
        }
        let msg = BulkMsg::decode(body).map_err(|e| bad(&e.to_string()))?;
        if !matches!(msg, BulkMsg::Finish { .. } | BulkMsg::Cancel { .. }) {
            return Err(bad("an answer on a target lane"));
        }
        let Some(i) = self.inc.get_mut(&(peer, group)) else {
            if let BulkMsg::Finish { session, .. } = msg {
                self.queue(peer, Dir::Target, group, &BulkMsg::Cancel { session });
            }
            return Ok(());
        };
        if i.recv.id != msg.session() {
            return Ok(());
        }
        i.heard_ms = now_ms;
        let (what, answer) = i.recv.on_control(msg);
        match what {
            Received::Install => {
                let blob = i.buf.take().map(Bytes::from);
                self.stats.done_in += 1;
                self.installs.push(Install {
                    group,
                    wanted: i.wanted,
                    blob,
                    crc: i.recv.crc(),
                });
            }
            Received::Drop => {
                // The source cancelled: the session goes with what it held (the group's next
                // `want` starts one afresh for the source's next offer).
                self.inc.remove(&(peer, group));
            }
            Received::Accepted(_) | Received::Nothing => {}
        }
        if let Some(a) = answer {
            self.queue(peer, Dir::Target, group, &a);
        }
        Ok(())
    }

    /// Appends to `out` what lane `(peer, dir)` is to write: its small messages, then (a
    /// source lane) chunks of its started sessions while their windows have room and the
    /// rate allows (`set_rate`), until `out` holds `max_bytes`. Nothing while the lane is
    /// down.
    pub fn poll(
        &mut self,
        peer: NodeId,
        dir: Dir,
        out: &mut Vec<u8>,
        max_bytes: usize,
        now_ms: u64,
        fetch: Fetch<'_>,
    ) {
        let Some(lane) = self.lanes.get_mut(&peer) else {
            return;
        };
        if !lane.up[dir.at()] {
            return;
        }
        out.append(&mut lane.ctrl[dir.at()]);
        if dir == Dir::Target {
            return;
        }
        let mut failed = Vec::new();
        for (&(p, group), o) in self.out.iter_mut() {
            if p != peer || !o.started {
                continue;
            }
            if let Some(held) = o.resume_at.take()
                && let Err(e) = resume_from_file(o, group, held, fetch)
            {
                failed.push((group, e));
                continue;
            }
            while out.len() < max_bytes {
                let Some((offset, len)) = o.sender.next_chunk() else {
                    break;
                };
                self.throttle.refill(now_ms, self.limits.chunk_bytes);
                if !self.throttle.allows() {
                    // Sent when the bucket refills (`tick` wakes the lanes).
                    self.throttle.held = true;
                    break;
                }
                let at = begin_frame(out, group);
                let crc = match &o.data {
                    CopyData::Mem(b) => {
                        let data = &b[offset as usize..(offset + len) as usize];
                        let (_, crc) = o.sender.chunk_ref(data);
                        ChunkRef::encode(out, o.sender.id, offset, crc, data);
                        Ok(crc)
                    }
                    CopyData::File { .. } => {
                        // Read into its place in the frame: one copy, from the page cache.
                        let head = ChunkRef::encode_head(out, o.sender.id, offset, len as u32);
                        let start = out.len();
                        out.resize(start + len as usize, 0);
                        fetch(group, o.last, offset, &mut out[start..]).map(|()| {
                            let (_, crc) = o.sender.chunk_ref(&out[start..]);
                            out[head..head + 4].copy_from_slice(&crc.to_le_bytes());
                            crc
                        })
                    }
                };
                if let Err(e) = crc {
                    out.truncate(at);
                    failed.push((group, e));
                    break;
                }
                end_frame(out, at);
                self.throttle.spend(len);
                self.stats.bytes_out += len;
            }
            if self.throttle.held {
                break;
            }
        }
        for (group, why) in failed {
            // The session goes; the target is not told: it keeps what it holds, and the
            // leader's next offer (the file opened anew) continues from there.
            self.out.remove(&(peer, group));
            self.errors.push((
                group,
                format!("reading its snapshot file for a copy: {why}"),
            ));
            self.damaged.push(group);
        }
    }

    /// Time passed: windows without progress go again, unanswered `Finish`es again, a
    /// target that heard nothing says again what it holds; sessions whose group stopped
    /// offering, or that heard nothing for long, are dropped.
    pub fn tick(&mut self, now_ms: u64) {
        self.done
            .retain(|&(.., at)| now_ms.saturating_sub(at) <= OFFER_STALE_MS);
        let mut msgs: Vec<(NodeId, Dir, u32, BulkMsg)> = Vec::new();
        let mut wake = Vec::new();
        self.out.retain(|&(p, g), o| {
            if now_ms.saturating_sub(o.offered_ms) > OFFER_STALE_MS {
                msgs.push((p, Dir::Source, g, o.sender.cancel()));
                return false;
            }
            let before = o.sender.resends;
            if let Some(m) = o.sender.tick(now_ms) {
                msgs.push((p, Dir::Source, g, m));
            }
            if o.sender.resends != before {
                wake.push((p, o.sender.resends - before));
            }
            true
        });
        self.inc.retain(|&(p, g), i| {
            let quiet = now_ms.saturating_sub(i.heard_ms);
            if quiet > INCOMING_STALE_MS {
                return false;
            }
            if quiet > HELLO_AGAIN_MS
                && now_ms.saturating_sub(i.hello_ms) > HELLO_AGAIN_MS
                && !i.recv.is_installed()
            {
                i.hello_ms = now_ms;
                msgs.push((p, Dir::Target, g, i.recv.hello()));
            }
            true
        });
        for (p, n) in wake {
            self.stats.resends += n;
            self.mark(p, Dir::Source);
        }
        if std::mem::take(&mut self.throttle.held) {
            let peers: Vec<NodeId> = self.out.keys().map(|&(p, _)| p).collect();
            for p in peers {
                self.mark(p, Dir::Source);
            }
        }
        for (p, d, g, m) in msgs {
            if self.lane_is_up(p, d) {
                self.queue(p, d, g, &m);
            }
        }
    }

    /// Whole copies to install, each once.
    pub fn take_installs(&mut self) -> std::vec::Drain<'_, Install> {
        self.installs.drain(..)
    }
}

#[cfg(test)]
mod tests;
