//! The Raft replicas a shard thread drives (issue 3): one `Group` per vShard this thread owns and
//! this node replicates, one write-ahead log shared by all of them (group commit), and the
//! driver step that moves messages, ticks, proposals, fsyncs and applies. The Raft rules live in
//! `shardline_shards::raft`, the entry format and the apply in `shardline_shards::replicate`;
//! this file only carries things between them, the files and the sockets. `propose.rs` turns
//! connections' jobs into proposals and read-index reads, `snapfile.rs` keeps snapshot files.
//!
//! One driver step (`run`: `start_step`, the log flush, `finish_step`): step the messages peers
//! sent, tick the groups that are not quiet (every `TICK`), take every touched group's `Ready`
//! and append it to the log, run the log's batch (one write, one fsync for all groups), then
//! send the messages, apply the committed entries and answer the connections waiting on them.

use super::{Cluster, RaftId};
use crate::hop::{Job, NO_REPLY, Op};
use crate::shard::{OOM, Shard, unix_now_us};
use crate::wal::FsLog;
use shardline_shards::command::{self, Args, flags};
use shardline_shards::raft::{self, Group, LogId, Msg, Ready, codec, storage};
use shardline_shards::replicate::{self, Encoder, Kind};
use shardline_shards::reply::{Out, Proto};
use shardline_shards::route;
use shardline_shards::slot::{Slot, VShardId};
use shardline_shards::wal::{Engine, WalConfig};
use shardline_transport::frame::{self, Message};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

mod job;
mod meta;
mod moves;
pub(crate) mod propose;
mod snapfile;
use job::PendingJob;
use meta::{meta_members, publish_meta, static_meta};
use snapfile::{
    SNAP_HEADER_BYTES, install, is_tombstone, read_snapshot, snap_path, snapshot_bytes,
    write_snapshot,
};

/// How often groups that are not quiet are ticked.
pub const TICK: Duration = Duration::from_millis(10);
/// Election timeout (randomized up to twice this) and check-quorum period, in ticks: 0.5 s. A
/// dead node's groups fail over at once through the node-level failure detector, so this timer
/// only covers what that cannot see; it is long enough that a starved shard thread on a busy
/// machine (seen at 150 ms: leaders stepped down under the test suite's load) does not depose
/// healthy leaders.
const ELECTION_TICKS: u32 = 50;
const HEARTBEAT_TICKS: u32 = 5;
/// Most entries in one Append message.
const MAX_BATCH: usize = 512;
/// A Ready whose buffers grew past this many items is dropped after its step, not kept.
const READY_KEEP_ENTRIES: usize = 1024;

/// A proposal not committed within this long is answered `-UNKNOWN`.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A group compacts its log into a snapshot once it holds this many entries.
const COMPACT_ENTRIES: usize = 10_000;
/// Bytes of entries the groups of one thread keep in memory (logs since their snapshots) beyond
/// which the largest log is compacted, one per step: with thousands of groups, `COMPACT_ENTRIES`
/// alone would let logs hold gigabytes.
const LOG_BYTES_MAX: usize = 64 << 20;
/// Log segments beyond which the groups keeping the oldest one alive are compacted.
const MAX_SEGMENTS: usize = 4;
/// How often a shard thread tells its peers which vShards it leads (`send_hints`), besides at
/// once after winning an election.
const HINT_PERIOD: Duration = Duration::from_secs(1);
/// Bytes queued for one peer beyond which new messages are dropped (Raft resends).
const OUTBOX_MAX: usize = 64 << 20;

/// The answer to a write whose fate is unknown (it may or may not have been applied).
pub const UNKNOWN: &str = "UNKNOWN the write may or may not have been applied: it was not confirmed by a quorum in time (leader lost or cut off); read the key before retrying";
/// The answer to a proposal that another leader's entry replaced: it was not applied.
const REPLACED: &str =
    "TRYAGAIN leadership changed before the write was committed; it was not applied, retry";

/// A read served by read-index: op `op` of job `job`, already run against the applied state
/// (which held everything committed when it arrived), its reply held in the job until a quorum
/// confirms this replica still leads.
struct ReadOp {
    job: u32,
    op: u32,
    slot: Slot,
}

const READ_LOST: &str =
    "TRYAGAIN this node could not confirm with a quorum that it still leads the slot; retry";

/// A proposal waiting for its entry to be applied: the job, its ops (in the entry's order) and
/// the term it was proposed in (a different term at its index means another leader replaced it).
struct Waiter {
    job: u32,
    ops: OpList,
    term: u64,
    since: Instant,
}

/// The ops of a job that one entry answers, in the entry's order: nearly always one.
enum OpList {
    One(u32),
    Many(Vec<u32>),
}

impl OpList {
    fn push(&mut self, op: u32) {
        match self {
            OpList::One(first) => *self = OpList::Many(vec![*first, op]),
            OpList::Many(v) => v.push(op),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            OpList::One(op) => std::slice::from_ref(op),
            OpList::Many(v) => v,
        }
    }
}

#[derive(Default)]
struct Peer {
    out: Vec<u8>,
    waker: Option<Waker>,
    heard: Option<Instant>,
    /// Connections from the peer now open.
    live: usize,
}

pub struct Replicas {
    c: Arc<Cluster>,
    shard: usize,
    groups: Vec<Option<Group>>,
    /// Per vShard: the apply clock (µs) and the last applied index.
    clocks: Vec<u64>,
    applied: Vec<LogId>,
    /// The log's files; taken out while a flush is in flight.
    log: Option<FsLog>,
    wal: Engine,
    snap_dir: PathBuf,
    incoming: Vec<(u32, RaftId, Msg)>,
    /// Groups keeping the oldest log segment alive when there are too many: compacted one per
    /// step (`MAX_SEGMENTS`).
    to_compact: Vec<u32>,
    /// Per group, about the entry bytes its log holds (added when persisted, zeroed when
    /// compacted; truncations not subtracted), and their sum (`LOG_BYTES_MAX`).
    log_bytes: Vec<usize>,
    log_bytes_total: usize,
    /// Snapshot files to write before the next log batch (`compact`).
    before_flush: Vec<crate::wal::Before>,
    /// Per group, the proposals waiting for their entries, by index (ascending).
    waiting: Vec<VecDeque<(u64, Waiter)>>,
    jobs: Vec<Option<PendingJob>>,
    free_jobs: Vec<u32>,
    /// Readies (and the step's list of them) kept for reuse, so a step allocates nothing for
    /// them: at most one per group, each dropped instead when a burst left it large.
    free_readies: Vec<Ready>,
    readies_buf: Vec<(u32, Ready)>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    peers: Vec<Peer>,
    last_tick: Instant,
    waker: Option<Waker>,
    woken: bool,
    /// Message payloads of one step, and per peer the `(group, range)` of each.
    payloads: Vec<u8>,
    per_peer: Vec<Vec<(u32, usize, usize)>>,
    scratch: replicate::Scratch,
    /// Read-index: reads arrived since the last step, per vShard, and rounds started (by id).
    reads_queued: Vec<Vec<ReadOp>>,
    read_rounds: HashMap<u64, (Instant, Vec<ReadOp>)>,
    next_read: u64,
    /// When leader hints are next sent (`send_hints`).
    hint_due: Instant,
    /// Thread 0: the cluster's metadata as the metadata group has applied it (`None` on a node
    /// that joined, until the group's snapshot arrives).
    meta: Option<shardline_shards::meta::Meta>,
    /// The metadata group's id (`Cluster::meta_group`).
    meta_g: u32,
    /// Groups to drop at the next step (`moves::removed_notice`).
    to_drop: Vec<u32>,
    /// What new replicas are configured with (`raft_config`).
    chunk_bytes: usize,
    seed: u64,
    /// When leaders next look for groups to move (`moves::drive_moves`).
    moves_due: Instant,
    /// Per group, when its leadership may be handed over again.
    handover_at: Vec<Option<Instant>>,
    /// Metadata leader: when `Drained` may be proposed again (`meta::propose_drained`), and
    /// since when a leaving node has looked drained.
    drained_at: Option<Instant>,
    drained_seen: Option<(RaftId, Instant)>,
    /// A metadata leader said a committed membership of the metadata group leaves this node
    /// out (the conf index it named): with nothing hosted, a leaving node is then done.
    meta_removed: Option<u64>,
    /// Thread 0: this node's metadata said it is leaving (`moves::leave_if_removed`).
    seen_leaving: bool,
}

impl Replicas {
    /// Opens this thread's log and snapshots and restores every replica from them into `db`.
    pub fn open(
        c: Arc<Cluster>,
        shard: usize,
        cfg: &crate::config::Config,
        db: &mut shardline_shards::db::Db,
        seed: u64,
    ) -> Result<Replicas, String> {
        let wal_dir = cfg.data_dir.join("wal").join(format!("shard-{shard}"));
        let snap_dir = cfg.data_dir.join("snap").join(format!("shard-{shard}"));
        std::fs::create_dir_all(&snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
        let (log, wal) = FsLog::open(
            &wal_dir,
            WalConfig {
                shard: shard as u32,
                segment_bytes: cfg.wal_segment_bytes,
                fsync: cfg.fsync,
            },
        )?;
        // The vShards, then the metadata group.
        let count = c.layout.count() as usize + 1;
        let meta_g = c.meta_group();
        let mut meta = None;
        let mut groups: Vec<Option<Group>> = (0..count).map(|_| None).collect();
        let mut clocks = vec![0u64; count];
        let mut applied = vec![LogId::default(); count];
        // The first start of a listed cluster creates the replicas its placement gives this
        // node; later starts restore the replicas the log or a snapshot holds (replicas move).
        let fresh = wal.groups().next().is_none()
            && (0..count as u32).all(|g| !snap_path(&snap_dir, g).exists());
        for (v, slot) in groups.iter_mut().enumerate() {
            let g = v as u32;
            if c.thread_of(g) != shard {
                continue;
            }
            let has_state = wal.group(g).is_some() || snap_path(&snap_dir, g).exists();
            let members = if g == meta_g {
                meta_members(&c)
            } else {
                // The membership the group started with (its log or snapshot says if it
                // changed since); a replica created on demand always has one of those.
                let initial = c.initial(VShardId(v as u16));
                if !(has_state || (fresh && initial.contains(&c.me))) {
                    continue;
                }
                if initial.is_empty() {
                    meta_members(&c)
                } else {
                    initial
                }
            };
            let rcfg = raft_config(&c, g, members, cfg.snapshot_chunk_bytes as usize, seed);
            let corrupt = |offset: usize, reason: &str| {
                format!(
                    "{}: corrupt snapshot at offset {offset}: {reason}; move the data directory away and restart the node to rejoin",
                    snap_path(&snap_dir, g).display(),
                )
            };
            let snapshot = read_snapshot(&snap_dir, g)?;
            // A tombstone (a snapshot without this node: the replica was moved off it) counts
            // only if no replica was created here since (its log starts after the reset).
            let snapshot = match snapshot {
                Some((_, blob)) if g != meta_g && is_tombstone(&blob, c.me) => {
                    if wal.group(g).is_none() {
                        continue;
                    }
                    None
                }
                other => other,
            };
            let grp = match snapshot {
                None => {
                    if let Some(p) = wal.group(g).map(|l| l.purged()).filter(|p| p.index > 0) {
                        // The log was compacted into a snapshot that is not there: starting
                        // from the log alone would lose what the snapshot held.
                        return Err(format!(
                            "{}: missing, but the log of group {g} was compacted up to entry {}; move the data directory away and restart the node to rejoin",
                            snap_path(&snap_dir, g).display(),
                            p.index
                        ));
                    }
                    if g == meta_g {
                        meta = static_meta(&c)?;
                    }
                    storage::restore(&wal, g, rcfg, bytes::Bytes::new())
                }
                Some((id, blob)) => {
                    let blob = bytes::Bytes::from(blob);
                    let (_, state) = raft::conf::split_snapshot(&blob)
                        .ok_or_else(|| corrupt(SNAP_HEADER_BYTES, "bad membership"))?;
                    let at = SNAP_HEADER_BYTES + (blob.len() - state.len());
                    if g == meta_g {
                        meta = Some(
                            shardline_shards::meta::Meta::decode(&state)
                                .map_err(|e| corrupt(at, e.0))?,
                        );
                    } else {
                        clocks[v] = install(db, &state)
                            .map_err(|e| corrupt(at + 8 + e.offset, e.reason))?;
                    }
                    applied[v] = id;
                    storage::restore_at(&wal, g, rcfg, Some(id), blob)
                }
            };
            *slot = Some(grp.map_err(|_| corrupt(SNAP_HEADER_BYTES, "bad membership"))?);
        }
        if let Some(m) = &meta {
            publish_meta(&c, m);
        }
        let n = super::NODES_MAX;
        // What the restored logs hold in memory (`LOG_BYTES_MAX`).
        let log_bytes: Vec<usize> = groups
            .iter()
            .map(|g| {
                g.as_ref()
                    .map_or(0, |g| g.log().iter().map(|e| e.data.len()).sum())
            })
            .collect();
        let log_bytes_total = log_bytes.iter().sum();
        Ok(Replicas {
            shard,
            groups,
            clocks,
            applied,
            log: Some(log),
            wal,
            snap_dir,
            incoming: Vec::new(),
            to_compact: Vec::new(),
            before_flush: Vec::new(),
            log_bytes,
            log_bytes_total,
            waiting: (0..count).map(|_| VecDeque::new()).collect(),
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            free_readies: Vec::new(),
            readies_buf: Vec::new(),
            dirty: Vec::new(),
            is_dirty: vec![false; count],
            peers: (0..n).map(|_| Peer::default()).collect(),
            last_tick: Instant::now(),
            waker: None,
            woken: false,
            payloads: Vec::new(),
            per_peer: (0..n).map(|_| Vec::new()).collect(),
            scratch: replicate::Scratch::default(),
            reads_queued: (0..count).map(|_| Vec::new()).collect(),
            read_rounds: HashMap::new(),
            next_read: 1,
            hint_due: Instant::now(),
            meta,
            meta_g,
            to_drop: Vec::new(),
            chunk_bytes: cfg.snapshot_chunk_bytes as usize,
            seed,
            moves_due: Instant::now(),
            handover_at: vec![None; count],
            drained_at: None,
            drained_seen: None,
            meta_removed: None,
            seen_leaving: false,
            c,
        })
    }

    fn touch(&mut self, g: u32) {
        if !self.is_dirty[g as usize] {
            self.is_dirty[g as usize] = true;
            self.dirty.push(g);
        }
        self.wake();
    }

    fn wake(&mut self) {
        self.woken = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Takes the messages of one batch frame from `peer`; an undecodable one ends the connection.
    pub fn receive(&mut self, peer: RaftId, msgs: &[Message]) -> Result<(), String> {
        self.peers[peer as usize - 1].heard = Some(Instant::now());
        for m in msgs {
            let g = m.group;
            if g == super::HINTS_GROUP {
                for h in super::decode_hints(m.payload, self.groups.len())? {
                    self.hint(peer, h);
                }
                continue;
            }
            if g == super::REMOVED_GROUP {
                for (g, index) in super::decode_removed(m.payload, self.groups.len())? {
                    self.removed_notice(g, index);
                }
                continue;
            }
            if g as usize >= self.groups.len() || self.c.thread_of(g) != self.shard {
                return Err(format!(
                    "a message for group {g}, which this shard thread does not drive"
                ));
            }
            let msg = codec::decode(m.payload).map_err(|e| e.to_string())?;
            if self.groups[g as usize].is_none() && !self.create_on_demand(g, peer) {
                continue; // a replica removed from here, or not (yet) placed here
            }
            self.non_member_check(g, peer);
            self.incoming.push((g, peer, msg));
        }
        if !msgs.is_empty() {
            self.wake();
        }
        Ok(())
    }

    pub fn peer_connected(&mut self, peer: RaftId) {
        let p = &mut self.peers[peer as usize - 1];
        p.live += 1;
        p.heard = Some(Instant::now());
        self.c.up[peer as usize - 1].store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn peer_disconnected(&mut self, peer: RaftId) {
        let p = &mut self.peers[peer as usize - 1];
        p.live = p.live.saturating_sub(1);
        if p.live == 0 {
            self.peer_down(peer);
        }
    }

    /// The node-level failure detector says `peer` is gone: every group it leads here elects
    /// at once instead of waiting for a timer (quiet groups run none).
    fn peer_down(&mut self, peer: RaftId) {
        self.c.up[peer as usize - 1].store(false, std::sync::atomic::Ordering::Relaxed);
        self.peers[peer as usize - 1].heard = None;
        for g in 0..self.groups.len() as u32 {
            if self.c.thread_of(g) == self.shard {
                self.c.forget_leader(VShardId(g as u16), peer);
            }
        }
        let mut lost = Vec::new();
        for (v, g) in self.groups.iter_mut().enumerate() {
            if let Some(g) = g
                && g.leader() == Some(peer)
            {
                g.leader_lost();
                lost.push(v as u32);
            }
        }
        if !lost.is_empty() {
            tracing::info!(
                peer,
                groups = lost.len(),
                shard = self.shard,
                "peer is down; electing new leaders for its vShards"
            );
        }
        for v in lost {
            self.touch(v);
        }
    }

    pub fn outbox_reset(&mut self, peer: RaftId) {
        self.peers[peer as usize - 1].out.clear();
    }

    fn poll_outbox(&mut self, peer: RaftId, w: &Waker) -> Poll<Vec<u8>> {
        let p = &mut self.peers[peer as usize - 1];
        if p.out.is_empty() {
            p.waker = Some(w.clone());
            Poll::Pending
        } else {
            Poll::Ready(std::mem::take(&mut p.out))
        }
    }

    fn poll_work(&mut self, w: &Waker) -> Poll<()> {
        if std::mem::take(&mut self.woken) {
            return Poll::Ready(());
        }
        self.waker = Some(w.clone());
        Poll::Pending
    }

    /// Folds group `g`'s applied entries into a snapshot of its vShard (stored first), so the
    /// log can drop them.
    fn compact(&mut self, db: &shardline_shards::db::Db, g: u32) {
        let applied = self.applied[g as usize];
        let Some(grp) = self.groups[g as usize].as_mut() else {
            return;
        };
        if applied.index <= grp.snapshot_id().index {
            return;
        }
        let state = if g == self.meta_g {
            let Some(m) = &self.meta else { return };
            let mut b = Vec::new();
            m.encode(&mut b);
            b
        } else {
            let Some(vs) = db.vshard(VShardId(g as u16)) else {
                return;
            };
            snapshot_bytes(self.clocks[g as usize], vs)
        };
        grp.compact(applied.index, state);
        // The file is written by the flush thread before the next batch, which holds the purge
        // record this compaction causes: the log drops nothing the snapshot file lacks.
        let (dir, data) = (self.snap_dir.clone(), grp.snapshot_blob().clone());
        self.before_flush.push(Box::new(move || {
            write_snapshot(&dir, g, applied, &data)
                .map_err(|e| std::io::Error::new(e.kind(), format!("snapshot of vShard {g}: {e}")))
        }));
        self.log_bytes_total -= std::mem::take(&mut self.log_bytes[g as usize]);
        self.touch(g);
    }

    /// Tells every peer which vShards this thread leads (a frame of one `HINTS_GROUP` message),
    /// so nodes that do not replicate them can route them: at once when this thread wins an
    /// election, else every `HINT_PERIOD`.
    fn send_hints(&mut self, now: Instant) {
        self.hint_due = now + HINT_PERIOD;
        let mut payload = std::mem::take(&mut self.payloads);
        payload.clear();
        let led = self.groups.iter().enumerate().filter_map(|(v, g)| {
            let g = g.as_ref()?;
            let committed = g.conf_index() <= g.commit_index();
            let voters = super::mask(g.membership().voters.iter().copied());
            (g.role() == raft::Role::Leader).then(|| super::Hint {
                group: v as u16,
                term: g.term(),
                voters: if committed { voters } else { 0 },
                conf_index: g.conf_index(),
            })
        });
        super::encode_hints(led, &mut payload);
        if !payload.is_empty() {
            for peer in self.c.member_ids() {
                self.queue_control(peer, super::HINTS_GROUP, &payload);
            }
        }
        self.payloads = payload;
    }

    /// Queues a one-message frame of a control group (hints, removal notices) for `peer`.
    fn queue_control(&mut self, peer: RaftId, group: u32, payload: &[u8]) {
        if peer == self.c.me {
            return;
        }
        let Some(p) = self.peers.get_mut(peer as usize - 1) else {
            return;
        };
        if p.out.len() >= OUTBOX_MAX {
            return;
        }
        frame::encode_batch(&[Message { group, payload }], &mut p.out);
        if let Some(w) = p.waker.take() {
            w.wake();
        }
    }

    /// Whether a read of vShard `v` may run on the current state: this replica leads and has
    /// applied everything it knows committed.
    fn can_read_now(&self, v: u32) -> bool {
        self.groups[v as usize].as_ref().is_some_and(|g| {
            g.role() == raft::Role::Leader && self.applied[v as usize].index >= g.commit_index()
        })
    }

    /// The vShards whose groups on this thread this node leads.
    fn led_vshards(&self) -> Vec<u32> {
        (0..self.meta_g)
            .filter(|&v| {
                self.groups[v as usize]
                    .as_ref()
                    .is_some_and(|g| g.role() == raft::Role::Leader)
            })
            .collect()
    }

    fn alloc_job(&mut self, job: PendingJob) -> u32 {
        match self.free_jobs.pop() {
            Some(i) => {
                self.jobs[i as usize] = Some(job);
                i
            }
            None => {
                self.jobs.push(Some(job));
                (self.jobs.len() - 1) as u32
            }
        }
    }

    /// The proposal waiting for entry `index` of group `g`, if any. Proposals before it that
    /// no entry answered (the log moved past them by a snapshot from another leader) are
    /// answered `UNKNOWN` into `finished`.
    fn waiter(&mut self, g: u32, index: u64, finished: &mut Vec<PendingJob>) -> Option<Waiter> {
        while let Some(&(i, _)) = self.waiting[g as usize].front() {
            if i > index {
                return None;
            }
            let (_, w) = self.waiting[g as usize].pop_front().expect("checked");
            if i == index {
                return Some(w);
            }
            for &op in w.ops.as_slice() {
                finished.extend(self.fail(w.job, op, UNKNOWN));
            }
        }
        None
    }

    /// Answers op `op` of job `j` with the error `msg` (replacing a reply held for it).
    fn fail(&mut self, j: u32, op: u32, msg: &str) -> Option<PendingJob> {
        self.answer(j, op, true, |job| job.write(op, false, |o| o.error(msg)))
    }

    /// Answers op `op` of job `j` with `reply`.
    fn fill(&mut self, j: u32, op: u32, reply: &[u8]) -> Option<PendingJob> {
        self.answer(j, op, false, |job| job.put(op, reply))
    }

    /// One entry's answer to op `op` of job `j` (`error`: it failed), written by `write`; for
    /// an op answered by several entries, only once the last is in (an error then if any
    /// failed).
    fn answer(
        &mut self,
        j: u32,
        op: u32,
        error: bool,
        write: impl FnOnce(&mut PendingJob),
    ) -> Option<PendingJob> {
        let job = self.jobs[j as usize].as_mut()?;
        match job.part(op, error) {
            job::Part::More => return None,
            job::Part::Last(Some(partial)) => job.write(op, false, |o| o.error(partial)),
            job::Part::Single | job::Part::Last(None) => write(job),
        }
        self.finished(j)
    }

    /// Lets the reply held for op `op` of job `j` go.
    fn release(&mut self, j: u32, op: u32) -> Option<PendingJob> {
        self.jobs[j as usize].as_mut()?.release(op);
        self.finished(j)
    }

    /// Job `j`, taken out, when it has every reply.
    fn finished(&mut self, j: u32) -> Option<PendingJob> {
        if self.jobs[j as usize].as_ref()?.left() > 0 {
            return None;
        }
        self.free_jobs.push(j);
        self.jobs[j as usize].take()
    }
}

impl Shard {
    pub fn with_replicas<R>(&self, f: impl FnOnce(&mut Replicas) -> R) -> R {
        f(self
            .repl
            .borrow_mut()
            .as_mut()
            .expect("a replicated node's shard thread"))
    }

    /// Resolves with the bytes queued for `peer`.
    pub async fn outbox_ready(&self, peer: RaftId) -> Vec<u8> {
        std::future::poll_fn(|cx| self.with_replicas(|r| r.poll_outbox(peer, cx.waker()))).await
    }

    /// The first half of a driver step (see the module documentation): everything up to the
    /// log batch that must be on disk before the step's messages go out.
    fn start_step(&self) -> Step {
        let now = Instant::now();
        let c = self.node.cluster.as_deref().expect("replicated");
        let mut guard = self.repl.borrow_mut();
        let r = guard.as_mut().expect("replicated");
        if !r.to_drop.is_empty() {
            r.drop_removed(&mut self.db.borrow_mut());
        }
        for (g, from, msg) in std::mem::take(&mut r.incoming) {
            if let Some(grp) = r.groups[g as usize].as_mut() {
                grp.step(from, msg);
                r.touch(g);
            }
        }
        let mut timed_out = Vec::new();
        if now.duration_since(r.last_tick) >= TICK {
            r.last_tick = now;
            for v in 0..r.groups.len() {
                if let Some(g) = r.groups[v].as_mut()
                    && !g.is_quiet()
                {
                    g.tick();
                    r.touch(v as u32);
                }
            }
            let timeout = Duration::from_millis(c.node_timeout_ms);
            for p in 1..=r.peers.len() as RaftId {
                if p != c.me
                    && r.peers[p as usize - 1]
                        .heard
                        .is_some_and(|h| now.duration_since(h) > timeout)
                {
                    tracing::info!(peer = p, "peer silent for cluster-node-timeout-ms");
                    r.peer_down(p);
                }
            }
            // Groups that write too rarely to compact on their own must not keep old log
            // segments alive: once the log has more than a few, compact them (one per step).
            if r.to_compact.is_empty() {
                r.to_compact = r.wal.pinning_oldest(MAX_SEGMENTS);
            }
            // The oldest proposals of each group are at the front.
            for q in &mut r.waiting {
                while q
                    .front()
                    .is_some_and(|(_, w)| now.duration_since(w.since) > PROPOSAL_TIMEOUT)
                {
                    timed_out.push(q.pop_front().expect("checked").1);
                }
            }
        }
        // A read round no quorum answered in time (a cut-off leader): the read was not served.
        if !r.read_rounds.is_empty() && r.last_tick == now {
            let late: Vec<u64> = r
                .read_rounds
                .iter()
                .filter(|(_, (since, _))| now.duration_since(*since) > PROPOSAL_TIMEOUT)
                .map(|(id, _)| *id)
                .collect();
            for id in late {
                let (_, ops) = r.read_rounds.remove(&id).expect("listed");
                for o in ops {
                    if let Some(done) = r.fail(o.job, o.op, READ_LOST) {
                        drop_finished(self, done);
                    }
                }
            }
        }
        for w in timed_out {
            for &op in w.ops.as_slice() {
                if let Some(done) = r.fail(w.job, op, UNKNOWN) {
                    drop_finished(self, done);
                }
            }
        }
        // Persist every touched group's Ready, then one flush for all of them.
        let mut readies = std::mem::take(&mut r.readies_buf);
        debug_assert!(readies.is_empty());
        for g in std::mem::take(&mut r.dirty) {
            r.is_dirty[g as usize] = false;
            let Some(grp) = r.groups[g as usize].as_mut() else {
                continue;
            };
            if !r.reads_queued[g as usize].is_empty() {
                // One read-index round for every read of this group in this step.
                let ops = std::mem::take(&mut r.reads_queued[g as usize]);
                let id = r.next_read;
                r.next_read += 1;
                match grp.read_index(id) {
                    Ok(()) => {
                        r.read_rounds.insert(id, (Instant::now(), ops));
                    }
                    Err(e) => {
                        for o in ops {
                            let msg = c.redirect(o.slot, e.leader);
                            if let Some(done) = r.fail(o.job, o.op, &msg) {
                                drop_finished(self, done);
                            }
                        }
                    }
                }
            }
            let grp = r.groups[g as usize].as_mut().expect("checked");
            let mut ready = r.free_readies.pop().unwrap_or_default();
            grp.take_ready_into(&mut ready);
            for &(id, _) in &ready.reads {
                for o in r.read_rounds.remove(&id).map(|x| x.1).unwrap_or_default() {
                    if let Some(done) = r.release(o.job, o.op) {
                        drop_finished(self, done);
                    }
                }
            }
            for id in &ready.failed_reads {
                if let Some((_, ops)) = r.read_rounds.remove(id) {
                    for o in ops {
                        if let Some(done) = r.fail(o.job, o.op, READ_LOST) {
                            drop_finished(self, done);
                        }
                    }
                }
            }
            if let Some(snap) = &ready.snapshot {
                if let Err(e) = write_snapshot(&r.snap_dir, g, snap.last, &snap.blob) {
                    fatal(&format!("cannot store a received snapshot: {e}"));
                }
                let mut db = self.db.borrow_mut();
                let installed = if g == r.meta_g {
                    r.install_meta(&snap.state)
                } else {
                    install(&mut db, &snap.state)
                };
                match installed {
                    Ok(clock) => {
                        tracing::info!(
                            vshard = g,
                            index = snap.last.index,
                            bytes = snap.blob.len(),
                            "installed a snapshot from the leader"
                        );
                        r.clocks[g as usize] = clock;
                        r.applied[g as usize] = snap.last;
                        r.log_bytes_total -= std::mem::take(&mut r.log_bytes[g as usize]);
                    }
                    Err(e) => fatal(&format!(
                        "a snapshot received for vShard {g} does not decode at offset {}: {}",
                        e.offset, e.reason
                    )),
                }
            }
            if let Err(e) = storage::persist(&mut r.wal, g, &ready) {
                fatal(&format!("write-ahead log refused an append: {e:?}"));
            }
            let added: usize = ready.entries.iter().map(|e| e.data.len()).sum();
            r.log_bytes[g as usize] += added;
            r.log_bytes_total += added;
            readies.push((g, ready));
        }
        r.wal.flush(0);
        let batch = r.wal.take_batch(unix_now_us() / 1000);
        let before = std::mem::take(&mut r.before_flush);
        Step {
            readies,
            batch,
            before,
        }
    }

    /// The second half of a driver step, once its log batch is on disk: send, apply, answer.
    fn finish_step(&self, readies: Vec<(u32, Ready)>) {
        let now = Instant::now();
        let c = self.node.cluster.as_deref().expect("replicated");
        let mut guard = self.repl.borrow_mut();
        let r = guard.as_mut().expect("replicated");
        // Send, now that what the messages promise is on disk.
        r.payloads.clear();
        for (g, ready) in &readies {
            for env in &ready.messages {
                let start = r.payloads.len();
                codec::encode(&env.msg, &mut r.payloads);
                let end = r.payloads.len();
                if let Some(q) = r.per_peer.get_mut(env.to as usize - 1) {
                    q.push((*g, start, end));
                }
            }
        }
        for p in 0..r.per_peer.len() {
            if r.per_peer[p].is_empty() {
                continue;
            }
            let q = std::mem::take(&mut r.per_peer[p]);
            let msgs: Vec<Message> = q
                .iter()
                .map(|&(group, s, e)| Message {
                    group,
                    payload: &r.payloads[s..e],
                })
                .collect();
            let peer = &mut r.peers[p];
            if peer.out.len() < OUTBOX_MAX {
                frame::encode_batch(&msgs, &mut peer.out);
                if let Some(w) = peer.waker.take() {
                    w.wake();
                }
            }
            drop(msgs);
            let mut q = q;
            q.clear();
            r.per_peer[p] = q;
        }
        // Apply what is committed, answering the proposals that wait on it.
        let mut finished = Vec::new();
        {
            let mut db = self.db.borrow_mut();
            let mut out = Out::new(Proto::Resp2);
            let mut ends = Vec::new();
            for (g, ready) in &readies {
                for e in &ready.committed {
                    let w = r.waiter(*g, e.index, &mut finished);
                    let proto = w
                        .as_ref()
                        .and_then(|w| r.jobs[w.job as usize].as_ref())
                        .map_or(Proto::Resp2, |j| j.proto);
                    out.buf.clear();
                    out.proto = proto;
                    ends.clear();
                    let res = if *g == r.meta_g {
                        r.apply_meta(&e.data, &mut out, &mut ends)
                    } else {
                        replicate::apply(
                            &mut db,
                            &e.data,
                            &mut r.clocks[*g as usize],
                            &mut out,
                            &mut ends,
                            &mut r.scratch,
                        )
                        .map_err(|e| e.to_string())
                    };
                    if let Err(err) = res {
                        fatal(&format!(
                            "committed entry {} of vShard {g} does not decode: {err}",
                            e.index
                        ));
                    }
                    r.applied[*g as usize] = LogId {
                        term: e.term,
                        index: e.index,
                    };
                    if e.is_config() {
                        r.conf_applied(*g, e.index, &e.data);
                    }
                    let Some(w) = w else { continue };
                    for (k, &op) in w.ops.as_slice().iter().enumerate() {
                        let done = if w.term != e.term {
                            r.fail(w.job, op, REPLACED)
                        } else {
                            let start = if k == 0 { 0 } else { ends[k - 1] as usize };
                            r.fill(w.job, op, &out.buf[start..ends[k] as usize])
                        };
                        finished.extend(done);
                    }
                }
            }
        }
        // Routing: publish the leader each touched group knows. Compact one group per step:
        // one keeping an old segment alive, else the longest log past the limit. Groups written
        // evenly reach the limits together and must not all stop the thread in one step (seen:
        // 2 s stalls with 256 of them) but take turns.
        let mut longest: Option<(usize, u32)> = None;
        for (g, _) in &readies {
            let grp = r.groups[*g as usize].as_mut().expect("ready of a group");
            let leader = match grp.role() {
                raft::Role::Leader => c.me,
                _ => grp.leader().unwrap_or(0),
            };
            if c.note_leader(VShardId(*g as u16), grp.term(), leader) && leader == c.me {
                r.hint_due = now;
            }
            if *g != r.meta_g {
                let voters = super::mask(grp.membership().voters.iter().copied());
                c.set_replicas(VShardId(*g as u16), voters);
            }
            let len = grp.log().len();
            if len > COMPACT_ENTRIES && longest.is_none_or(|(l, _)| len > l) {
                longest = Some((len, *g));
            }
        }
        if longest.is_none() && r.log_bytes_total > LOG_BYTES_MAX {
            // Over the thread's memory budget for logs: the largest one.
            longest = (0..r.log_bytes.len())
                .max_by_key(|&g| r.log_bytes[g])
                .map(|g| (0, g as u32));
        }
        if let Some(g) = r.to_compact.pop().or(longest.map(|(_, g)| g)) {
            r.compact(&self.db.borrow(), g);
        }
        if now >= r.hint_due {
            r.send_hints(now);
        }
        if self.id == 0 {
            let g = r.meta_g as usize;
            // (A node removed from the metadata group hears no leader again: what it applied
            // is final for it, and it still has to move its groups off.)
            let out = r.out_of_meta();
            let current = r.groups[g].as_ref().is_some_and(|grp| {
                (grp.leader().is_some() || out) && r.applied[g].index >= grp.commit_index()
            });
            c.meta_current
                .store(current, std::sync::atomic::Ordering::Release);
            r.meta_duty(&self.db.borrow(), now);
        }
        if now >= r.moves_due {
            r.moves_due = now + moves::MOVES_PERIOD;
            r.drive_moves(now);
        }
        let mut readies = readies;
        for (_, mut ready) in readies.drain(..) {
            if ready.entries.capacity() <= READY_KEEP_ENTRIES
                && ready.committed.capacity() <= READY_KEEP_ENTRIES
                && ready.messages.capacity() <= READY_KEEP_ENTRIES
            {
                ready.clear();
                r.free_readies.push(ready);
            }
        }
        r.readies_buf = readies;
        drop(guard);
        for done in finished {
            drop_finished(self, done);
        }
        self.flush_events();
        self.serve_ready();
    }
}

/// The Raft configuration of group `g` on this node, starting from `members` (its snapshot or
/// log overrides them once it has one).
fn raft_config(
    c: &Cluster,
    g: u32,
    members: Vec<RaftId>,
    snapshot_chunk_bytes: usize,
    seed: u64,
) -> raft::Config {
    raft::Config {
        id: c.me,
        members,
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: HEARTBEAT_TICKS,
        max_batch: MAX_BATCH,
        // A replica far behind gets its state one chunk per round trip: a large snapshot
        // needs no huge frame and holds up other groups' messages only briefly.
        snapshot_chunk_bytes,
        pre_vote: true,
        seed: seed ^ (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

/// Sends a finished job's replies to its connection.
fn drop_finished(shard: &Shard, job: PendingJob) {
    if job.token == NO_REPLY {
        return;
    }
    let origin = job.origin;
    shard.deliver(origin, job.into_done());
}

/// The log or a snapshot cannot be written or trusted: acknowledging anything more would be a
/// lie, so the node stops (its replicas elsewhere carry on; restart it after fixing the disk).
fn fatal(msg: &str) -> ! {
    tracing::error!("{msg}; stopping the node");
    eprintln!("shardline: {msg}; stopping the node");
    std::process::exit(1);
}

/// A driver step between its halves: the Readies taken and the log batch to write.
struct Step {
    readies: Vec<(u32, Ready)>,
    batch: Option<shardline_shards::wal::Batch>,
    /// Snapshot files to write before the batch.
    before: Vec<crate::wal::Before>,
}

/// The driver task of a shard thread: one step per wake-up (proposals, messages) or tick. While
/// a step's batch is written and fsynced (io_uring), the thread serves connections and reads
/// peers; proposals made meanwhile and messages received meanwhile go into the next step (peer
/// messages are stepped only between flushes, so a Ready is never taken before the previous one
/// is on disk), which makes the next group commit larger.
pub async fn run(shard: std::rc::Rc<Shard>) {
    let flusher = match crate::wal::Flusher::spawn(shard.id) {
        Ok(f) => f,
        Err(e) => fatal(&format!("cannot start the log's flush thread: {e}")),
    };
    loop {
        let work = std::future::poll_fn(|cx| shard.with_replicas(|r| r.poll_work(cx.waker())));
        monoio::select! {
            _ = work => {},
            _ = monoio::time::sleep(TICK) => {},
        }
        let step = shard.start_step();
        if step.batch.is_some() || !step.before.is_empty() {
            let log = shard
                .with_replicas(|r| r.log.take())
                .expect("one flush at a time");
            let batch = step.batch.unwrap_or_default();
            let (log, res) = flusher.run(log, batch, step.before).await;
            shard.with_replicas(|r| r.log = Some(log));
            if let Err(e) = res {
                fatal(&format!(
                    "cannot write the write-ahead log or a snapshot: {e}"
                ));
            }
        }
        shard.finish_step(step.readies);
    }
}
