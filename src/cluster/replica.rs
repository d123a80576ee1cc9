//! The Raft replicas a shard thread drives (issue 3): one `Group` per vShard this thread owns and
//! this node replicates, one write-ahead log shared by all of them (group commit), and the
//! driver step that moves messages, ticks, proposals, fsyncs and applies. The Raft rules live in
//! `shardline_shards::raft`, the entry format and the apply in `shardline_shards::replicate`;
//! this file only carries things between them, the files and the sockets. `open.rs` restores the
//! replicas at start-up, `step.rs` is the driver step, `propose.rs` turns connections' jobs into
//! proposals and read-index reads, `snapfile.rs` keeps snapshot files.
//!
//! One driver step (`run`: `start_step`, the log flush, `finish_step`): step the messages peers
//! sent, tick the groups that are not quiet (every `TICK`), take every touched group's `Ready`
//! and append it to the log, run the log's batch (one write, one fsync for all groups), then
//! send the messages, apply the committed entries and answer the connections waiting on them.

use super::{Cluster, NodeId};
use crate::hop::{Job, NO_REPLY, Op};
use crate::shard::{OOM, Shard, unix_now_us};
use crate::wal::FsLog;
use shardline_shards::command::{self, Args, flags};
use shardline_shards::db::Db;
use shardline_shards::raft::{self, Group, LogId, Msg, Ready, codec, storage};
use shardline_shards::replicate::{self, Encoder, Kind};
use shardline_shards::reply::{Out, Proto};
use shardline_shards::route;
use shardline_shards::slot::{Slot, VShardId};
use shardline_shards::wal::{Engine, WalConfig};
use shardline_transport::frame::{self, Message};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

mod blocked;
mod bulk;
pub(crate) mod calvin;
mod capture;
mod direct;
mod hints;
mod load;
mod meta;
mod moves;
mod open;
pub(crate) mod propose;
pub(crate) mod scripts;
#[cfg(test)]
mod sim;
mod snapfile;
mod staging;
mod step;
pub(crate) use direct::{SCRIPTS_ALONE, over_maxmemory, vshards_of};
use meta::{meta_members, publish_meta, static_meta};
use shardline_shards::replica::job::PendingJob;
use shardline_shards::replica::pending::{OpList, Pending, ReadOp, Waiter};
use shardline_shards::replica::{Fatal, Now, SnapshotFile, SnapshotKind};
use snapfile::{
    OnDisk, SNAP_HEADER_BYTES, install, install_decoded, is_tombstone, read_snapshot,
    read_vshard_snapshot, snap_path, write_snapshot,
};
pub use step::run;

/// How often groups that are not quiet are ticked.
pub const TICK: Duration = Duration::from_millis(10);
/// Election timeout (randomized up to twice this) and check-quorum period, in ticks: 0.5 s. A
/// dead node's groups fail over at once through the node-level failure detector, so this timer
/// only covers what that cannot see; it is long enough that a starved shard thread on a busy
/// machine (seen at 150 ms: leaders stepped down under the test suite's load) does not depose
/// healthy leaders.
const ELECTION_TICKS: u32 = 50;
/// A follower that heard from its leader waits this long before standing (3 s, randomized up
/// to 6): longer than a pause SWIM tolerates (2 s: a node paused that long is not declared
/// dead, and its groups must not fail over either). A leader's node that dies is reported
/// sooner (its connections break at once; SWIM holds it dead within about 3 s), so this
/// timer only covers a leader whose node is up but whose group went silent.
const LEADER_WAIT_TICKS: u32 = 300;
const HEARTBEAT_TICKS: u32 = 5;
/// Most entries in one Append message.
const MAX_BATCH: usize = 512;
/// A Ready whose buffers grew past this many items is dropped after its step, not kept.
const READY_KEEP_ENTRIES: usize = 1024;

/// A proposal not committed within this long is answered `-UNKNOWN`.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A group compacts its log into a snapshot once it holds this many entries.
const COMPACT_ENTRIES: usize = 10_000;
/// What an entry of an in-memory log costs besides its bytes (the entry, its buffer's
/// allocation, the log's slot), counted in `log_bytes`.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 128;

/// What every shard thread's replicas hold in memory for replication (logs since their
/// snapshots, and the snapshots kept to send), summed: left out of the memory `maxmemory`
/// evicts for, as Redis leaves its AOF and replication buffers out
/// (`mem_not_counted_for_evict`). Published by each thread's step while `maxmemory` is set.
pub static REPLICATION_MEMORY_BYTES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
/// The keys of `db` its policy may evict (all, or those with a TTL; none under noeviction).
pub(crate) fn evictable_keys(db: &Db) -> u64 {
    match db.tunables.maxmemory_policy {
        shardline_shards::evict::Policy::NoEviction => 0,
        p if p.volatile() => db.volatile_len() as u64,
        _ => db.len() as u64,
    }
}

/// The keys every shard thread could evict by the policy (all, or those with a TTL), summed
/// as last published with `REPLICATION_MEMORY_BYTES`: a thread with none left lets a write
/// through while others have some (they evict at their next step).
pub(crate) static EVICTABLE_KEYS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
/// Log segments beyond which the groups keeping the oldest one alive are compacted.
const MAX_SEGMENTS: usize = 4;
/// The answer to a proposal whose committed entry did not decode (`finish_step`).
const SKIPPED: &str = "ERR the log entry of this command did not decode and was skipped by every replica; it was not applied";
/// Bytes queued for one peer beyond which new messages are dropped (Raft resends).
const OUTBOX_MAX: usize = 64 << 20;

#[derive(Default)]
struct Peer {
    /// Frames queued for the peer's dialer (`Shard::outbox_ready`).
    out: Vec<u8>,
    heard: Option<Instant>,
    /// Connections from the peer now open.
    live: usize,
    /// The applied metadata dropped it from the cluster (`Cluster::was_removed`), as of
    /// `Replicas::members_seen`: what it sends is refused, its connections end, and its
    /// dialer's next handshake tells it it was removed (so a node dropped while it held a
    /// connection, one asked to leave just after it joined that never got the metadata,
    /// learns it: found by the simulator, such a node ran on forever).
    removed: bool,
    /// SWIM holds it dead or gone (`Cluster::liveness`), and this thread acted on it
    /// (`follow_liveness`); cleared when SWIM holds it up again.
    swim_down: bool,
    /// Since when SWIM holds it `Dead` (not `Left`: a node shut down on purpose is the
    /// operator's to forget), for automatic repair (`repair`).
    dead_since: Option<Instant>,
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
    incoming: Vec<(u32, NodeId, Msg)>,
    /// Groups keeping the oldest log segment alive when there are too many: compacted one per
    /// step (`MAX_SEGMENTS`).
    to_compact: Vec<u32>,
    /// Groups whose snapshot file failed a base copy (`Hub::take_damaged_files`): written
    /// anew, one per step (`rewrite_snapshot`).
    damaged_files: Vec<u32>,
    /// Snapshot files replaced after failing a copy, since start (INFO
    /// `bulk_snapshots_rewritten`).
    snapshots_rewritten: u64,
    /// Per group, about the entry bytes its log holds (added when persisted, zeroed when
    /// compacted; truncations not subtracted), and their sum (`log_bytes_max`).
    log_bytes: Vec<usize>,
    log_bytes_total: usize,
    /// Snapshot files to write before the next log batch (received, tombstones).
    before_flush: Vec<SnapshotFile>,
    /// Compactions' snapshot files, written behind the log's batches instead of before them
    /// (a batch does not wait for them): the next step hands them to the driver
    /// (`Step::behind`) and keeps them in `in_flight_snapshots` until it hears they are on
    /// disk (`snapshot_written`); only then does the log purge what they cover (the purge
    /// record of a compaction is held back meanwhile, `purge_waits_for_file`).
    behind: Vec<SnapshotFile>,
    in_flight_snapshots: Vec<(u64, SnapshotFile)>,
    next_snapshot_token: u64,
    /// What this thread's replicas owe connections: jobs, proposals waiting for their
    /// entries, reads waiting for their read-index round; finished jobs for the driver.
    pending: Pending,
    /// Readies (and the step's list of them) kept for reuse, so a step allocates nothing for
    /// them: at most one per group, each dropped instead when a burst left it large.
    free_readies: Vec<Ready>,
    readies_buf: Vec<(u32, Ready)>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    peers: Vec<Peer>,
    /// Peers whose empty outbox got bytes since the driver last woke their dialers.
    out_ready: Vec<NodeId>,
    last_tick: Instant,
    /// The `Cluster::liveness_epoch` this thread last followed.
    liveness_seen: u64,
    waker: Option<Waker>,
    woken: bool,
    /// Message payloads of one step, and per peer the `(group, range)` of each.
    payloads: Vec<u8>,
    per_peer: Vec<Vec<(u32, usize, usize)>>,
    scratch: replicate::Scratch,
    /// When leader hints are next sent (`send_hints`).
    hint_due: Instant,
    /// When every led vShard is hinted next (`FULL_HINT_PERIOD`), what each led vShard's
    /// last hint said (its routing: term, voters, membership entry, learners), and peers
    /// (re)connected since the last hints, which get every led vShard's.
    full_hint_due: Instant,
    hinted: Vec<Option<(u64, u64, u64, u64)>>,
    hint_full_to: Vec<NodeId>,
    /// Thread 0: the cluster's metadata as the metadata group has applied it (`None` on a node
    /// that joined, until the group's snapshot arrives).
    meta: Option<shardline_shards::meta::Meta>,
    /// Thread 0: the function libraries as the metadata group has applied them (published
    /// to `Cluster::functions` at every change).
    functions: shardline_shards::script::functions::Libraries,
    /// The cluster's ACL users as the metadata group applied them (`None`: no ACL change
    /// yet: each node uses its configuration's), thread 0 only.
    acl_users: Option<shardline_shards::acl::Users>,
    /// Scripts waiting for their vShards to settle (`scripts.rs`), in arrival order, and the
    /// jobs waiting behind them.
    script_waits: std::collections::VecDeque<scripts::ScriptWait>,
    /// The kept answer of `thread_direct_clock` (`None`: to compute).
    thread_direct: std::cell::Cell<Option<Result<u64, &'static str>>>,
    script_deferred: std::collections::VecDeque<Job>,
    /// The metadata group's id (`Cluster::meta_group`).
    meta_g: u32,
    /// Groups to drop at the next step (`moves::removed_notice`).
    to_drop: Vec<u32>,
    /// What new replicas are configured with (`raft_config`).
    chunk_bytes: usize,
    /// The bulk sessions of this thread's snapshot copies, as source and as target
    /// (`shardline_shards::migrate::hub`), and the state of the tasks that run their lanes
    /// (`cluster/lanes.rs`, which keeps the hub's time zero).
    pub(crate) hub: shardline_shards::migrate::hub::Hub,
    pub(crate) lane_io: super::lanes::LaneIo,
    /// Bytes of entries the groups of this thread keep in memory (logs since their snapshots)
    /// beyond which the largest log is compacted, one per step (`raft-log-memory-bytes`): with
    /// thousands of groups, `COMPACT_ENTRIES` alone would let logs hold gigabytes.
    log_bytes_max: usize,
    /// The buffer direct entries are cut from (`direct::arena_entry`).
    arena: bytes::BytesMut,
    /// This thread's shares of `REPLICATION_MEMORY_BYTES` and `EVICTABLE_KEYS` as last
    /// published.
    memory_published: u64,
    keys_published: u64,
    seed: u64,
    /// When leaders next look for groups to move (`moves::drive_moves`).
    moves_due: Instant,
    /// Per group, when its leadership may be handed over again.
    handover_at: Vec<Option<Instant>>,
    /// Per vShard: since when this leader's next change removes its own replica (it hands
    /// leadership over first: `moves::drive_moves`).
    leaving_lead: Vec<Option<Instant>>,
    /// Metadata leader: when `Drained` may be proposed again (`meta::propose_drained`), and
    /// since when a leaving node has looked drained.
    drained_at: Option<Instant>,
    /// When the metadata leader may next propose `MoveDone` for moves whose groups arrived.
    moves_closed_at: Option<Instant>,
    drained_seen: Option<(NodeId, Instant)>,
    /// When the metadata leader next looks for dead members to remove (`repair`), and when it
    /// last logged why it could not.
    repair_at: Option<Instant>,
    repair_logged: Option<Instant>,
    /// Snapshot files copies stream from now (`bulk.rs`), open while the hub reads them.
    copy_files: HashMap<(u32, shardline_shards::raft::LogId), snapfile::CopyFile>,
    /// Base copies being received, written and decoded as they come (`staging.rs`), and
    /// those received whole, waiting for their group's step to install them.
    staging: HashMap<u32, staging::Staging>,
    staged: HashMap<u32, staging::Staged>,
    /// Copies received that installed through `staging` (INFO `bulk_copies_streamed_in`).
    streamed_in: u64,
    /// The encoding thresholds copies are decoded under (the shard's, as of the last step).
    tunables: shardline_shards::db::Tunables,
    /// Per vShard, what this thread's leaders ran (`load.rs`), carried by the hints.
    pub(crate) meter: load::Meter,
    /// Thread 0: the rebalancer's settings (from the config, each step), its memory on the
    /// metadata leader, when it next samples, and when this leader first saw each open
    /// leadership record (`load::LEAD_WAIT`).
    pub(crate) rebalance_cfg: load::RebalanceConfig,
    rebalancer: Option<shardline_shards::meta::rebalance::Rebalancer>,
    rebalance_at: Option<Instant>,
    lead_seen: Vec<(u64, Instant)>,
    /// A metadata leader said a committed membership of the metadata group leaves this node
    /// out (the conf index it named): with nothing hosted, a leaving node is then done.
    meta_removed: Option<u64>,
    /// Blocking commands waiting on this thread's leaders, by id (`Db::waiting` holds the
    /// ids), and their ids by the connection's `(origin, token)` (for `Unblock`). Ordered:
    /// walks over it (`redirect_blocked`) answer the oldest first, and the same way on every
    /// run (a `HashMap` walk made the simulator's seeds replay differently).
    blocked: std::collections::BTreeMap<u64, blocked::Blocked>,
    blocked_ids: HashMap<(usize, crate::hop::Token), u64>,
    /// `Cluster::members_version` when `Peer::removed` was last worked out.
    members_seen: u64,
    next_blocked: u64,
    /// Groups of one that apply at append (`direct.rs`).
    direct: direct::Direct,
    /// Transactions across vShards (`calvin/`).
    calvin: calvin::Calvin,
    /// Compactions of vShard groups being written from captures (`capture.rs`).
    captures: capture::Captures,
}

impl Replicas {
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
    pub fn receive(&mut self, peer: NodeId, msgs: &[Message], now: Instant) -> Result<(), String> {
        let version = self
            .c
            .members_version
            .load(std::sync::atomic::Ordering::Acquire);
        if version != self.members_seen {
            // One atomic load per batch while the membership is unchanged.
            self.members_seen = version;
            for (i, p) in self.peers.iter_mut().enumerate() {
                p.removed = self.c.was_removed(NodeId::of_slot(i));
            }
        }
        let p = &mut self.peers[peer.slot()];
        if p.removed {
            return Err(format!("member {peer} was removed from this cluster"));
        }
        p.heard = Some(now);
        let up = &self.c.up[peer.slot()];
        if !up.load(std::sync::atomic::Ordering::Relaxed) {
            // Heard again after it was taken for down (silent past the node timeout on a
            // connection that survived: a pause, a partition that healed; or dropped from
            // the member table and added back): it is up.
            up.store(true, std::sync::atomic::Ordering::Relaxed);
        }
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
            if g == super::CALVIN_GROUP {
                let msgs = shardline_shards::calvin::msg::decode_all(
                    m.payload,
                    self.c.threads,
                    self.meta_g as usize,
                )
                .map_err(|e| format!("a Calvin message: {e}"))?;
                for (t, msg) in msgs {
                    if t == self.shard {
                        self.calvin.inbox.push(msg);
                    } else {
                        // For another thread of this node (the peer's thread `t` has no
                        // connection of its own to this thread).
                        self.calvin.outbox.push((t, msg));
                    }
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

    pub fn peer_connected(&mut self, peer: NodeId, now: Instant) {
        let p = &mut self.peers[peer.slot()];
        p.live += 1;
        p.heard = Some(now);
        self.c.up[peer.slot()].store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn peer_disconnected(&mut self, peer: NodeId) {
        let p = &mut self.peers[peer.slot()];
        p.live = p.live.saturating_sub(1);
        if p.live == 0 {
            self.peer_down(peer);
        }
    }

    /// Follows SWIM's verdicts (the control thread's, through `Cluster`) if any changed since
    /// the last call: a member newly held dead or gone is down for this thread (`peer_down`:
    /// its groups elect at once), whatever its connections say (they may stay open to a
    /// machine that is gone, or through a partition that drops everything).
    pub(super) fn follow_liveness(&mut self) {
        let epoch = self
            .c
            .liveness_epoch
            .load(std::sync::atomic::Ordering::Acquire);
        if epoch == self.liveness_seen {
            return;
        }
        self.liveness_seen = epoch;
        for slot in 0..self.peers.len() {
            let p = NodeId::of_slot(slot);
            if p == self.c.me {
                continue;
            }
            let state = self.c.liveness(p).0;
            let down = matches!(
                state,
                crate::cluster::SwimState::Dead | crate::cluster::SwimState::Left
            );
            if down && !self.peers[slot].swim_down {
                self.peers[slot].swim_down = true;
                tracing::info!(peer = %p, shard = self.shard, "SWIM holds the peer dead or gone");
                self.peer_down(p);
            } else if !down {
                self.peers[slot].swim_down = false;
            }
            let since = &mut self.peers[slot].dead_since;
            if state != crate::cluster::SwimState::Dead {
                *since = None;
            } else if since.is_none() {
                *since = Some(self.last_tick);
            }
        }
    }

    /// The node-level failure detector says `peer` is gone: every group it leads here elects
    /// at once instead of waiting for a timer (quiet groups run none).
    fn peer_down(&mut self, peer: NodeId) {
        // What it sent and was not stepped yet is dropped (Raft tolerates lost messages): its
        // last quiet append, stepped after this, would make a follower wait quietly for a
        // leader that is gone, with no timer to end the wait.
        self.incoming.retain(|(_, from, _)| *from != peer);
        self.c.up[peer.slot()].store(false, std::sync::atomic::Ordering::Relaxed);
        self.peers[peer.slot()].heard = None;
        for g in 0..self.groups.len() as u32 {
            if self.c.thread_of(g) == self.shard {
                self.c.forget_leader(VShardId(g as u16), peer);
            }
        }
        let mut lost = Vec::new();
        let mut verify = Vec::new();
        for (v, g) in self.groups.iter_mut().enumerate() {
            let Some(g) = g else { continue };
            if g.leader() == Some(peer) {
                g.leader_lost();
                lost.push(v as u32);
            } else if g.role() == raft::Role::Leader && g.membership().voters.contains(&peer) {
                // Led here: a quiet leader checks it still has a quorum (`verify_quorum`).
                g.verify_quorum();
                verify.push(v as u32);
            }
        }
        for v in verify {
            self.touch(v);
        }
        if !lost.is_empty() {
            tracing::info!(
                %peer,
                groups = lost.len(),
                shard = self.shard,
                "peer is down; electing new leaders for its vShards"
            );
        }
        for v in lost {
            self.touch(v);
        }
    }

    /// This node's dialer to `peer` (re)connected: what was queued for the old connection is
    /// dropped, and the groups led here that count the peer probe it again from what it last
    /// acknowledged (`raft::Group::peer_reconnected`). A quiet leader would otherwise never
    /// tell a peer that restarted what it missed, and the peer may not be able to ask: found
    /// by the simulator, a node restarted with its metadata behind did not know the address of
    /// the member that joined while it was away and led its groups (the metadata's among
    /// them), so its refusals never reached that leader and it never caught up.
    pub fn dialed(&mut self, peer: NodeId) {
        self.peers[peer.slot()].out.clear();
        // It may have missed the hints sent while it was away: every led vShard's, next step.
        if !self.hint_full_to.contains(&peer) {
            self.hint_full_to.push(peer);
        }
        self.hint_due = self.last_tick;
        for v in 0..self.groups.len() {
            let Some(g) = self.groups[v].as_mut() else {
                continue;
            };
            if g.role() == raft::Role::Leader && g.membership().contains(peer) {
                g.peer_reconnected(peer);
                self.touch(v as u32);
            }
        }
    }

    /// The bytes queued for `peer`, if any (its dialer writes them).
    fn take_outbox(&mut self, peer: NodeId) -> Option<Vec<u8>> {
        let p = &mut self.peers[peer.slot()];
        (!p.out.is_empty()).then(|| std::mem::take(&mut p.out))
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
    pub(super) fn compact(&mut self, g: u32) {
        let applied = self.applied[g as usize];
        let Some(grp) = self.groups[g as usize].as_mut() else {
            return;
        };
        if applied.index <= grp.snapshot_id().index {
            return;
        }
        if self.capturing(g) {
            return; // its file is being written
        }
        if self.want_direct_cut(g) {
            // Its keyspace is ahead of what is applied: cut at the next step's start.
            return;
        }
        if g != self.meta_g {
            // Written from a capture a piece per step (`capture.rs`), folded once whole.
            return self.want_capture(g, capture::Purpose::Compact);
        }
        let Some(m) = &self.meta else { return };
        let mut b = Vec::new();
        m.encode(&mut b);
        let cut = Cut::Mem(self.meta_state(&b));
        self.compact_at(g, applied, cut);
    }

    /// Folds group `g`'s log up to `last` (applied) into the snapshot `cut`.
    fn compact_at(&mut self, g: u32, last: LogId, cut: Cut) {
        let Some(grp) = self.groups[g as usize].as_mut() else {
            return cut.discard();
        };
        if last.index <= grp.snapshot_id().index {
            return cut.discard();
        }
        let (blob, staged) = match cut {
            Cut::Mem(state) => {
                grp.compact(last.index, state);
                (grp.snapshot_blob().clone(), None)
            }
            Cut::Written { path, total, conf } => {
                if !grp.compact_written(last.index, total, &conf) {
                    let _ = std::fs::remove_file(&path);
                    return;
                }
                (bytes::Bytes::new(), Some(path))
            }
        };
        // The file is written (or, written already, synced and put in place) behind the
        // log's batches; the log purges what it covers once it is on disk
        // (`snapshot_written`): the log drops nothing the snapshot file lacks.
        self.behind.push(SnapshotFile {
            group: g,
            last,
            blob,
            kind: SnapshotKind::Compacted,
            staged,
        });
        if g != self.meta_g {
            // Its file holds it; a base copy reads it back (`snapshot_for_copy`).
            grp.release_snapshot_blob();
        }
        self.log_bytes_total -= std::mem::take(&mut self.log_bytes[g as usize]);
        self.touch(g);
    }

    /// The compactions' snapshot files to write behind the log's batches, each with the
    /// token the driver hands back to `snapshot_written` once it is on disk.
    pub(super) fn take_behind(&mut self) -> Vec<(u64, SnapshotFile)> {
        let mut out = Vec::with_capacity(self.behind.len());
        for f in self.behind.drain(..) {
            self.next_snapshot_token += 1;
            let token = self.next_snapshot_token;
            self.in_flight_snapshots.push((token, f.clone()));
            out.push((token, f));
        }
        out
    }

    /// Whether a compaction's purge of group `g`'s log up to `upto` must wait: its snapshot
    /// file is not on disk yet (the purge follows once it is, `snapshot_written`).
    pub(super) fn purge_waits_for_file(&self, g: u32, upto: LogId) -> bool {
        self.behind
            .iter()
            .chain(self.in_flight_snapshots.iter().map(|(_, f)| f))
            .any(|f| f.group == g && f.last == upto)
    }

    /// Snapshot file `token` (a compaction's) is on disk: the log may purge what it covers,
    /// if the group's log still holds that entry as it was (not reset, not replaced by an
    /// installed snapshot, not purged past it since).
    pub fn snapshot_written(&mut self, token: u64) {
        let Some(at) = self
            .in_flight_snapshots
            .iter()
            .position(|(t, _)| *t == token)
        else {
            return;
        };
        let (_, f) = self.in_flight_snapshots.remove(at);
        let same = self.groups[f.group as usize].is_some()
            && self.wal.group(f.group).is_some_and(|l| {
                l.purged().index < f.last.index && l.term_at(f.last.index) == Some(f.last.term)
            });
        if same {
            self.wal.purge(
                f.group,
                shardline_shards::wal::LogId {
                    index: f.last.index,
                    term: f.last.term,
                },
            );
            self.touch(f.group);
        }
    }

    /// The blob of group `g`'s snapshot `id` for a base copy, if memory holds it: the
    /// group's own, or the file about to be written (`Ok(None)`: its file holds it, and the
    /// copy streams from there: `bulk.rs`).
    pub(super) fn snapshot_for_copy(
        &self,
        g: u32,
        id: shardline_shards::raft::LogId,
    ) -> Result<Option<bytes::Bytes>, String> {
        let grp = self.groups[g as usize].as_ref().ok_or("no replica")?;
        if grp.snapshot_id() == id && !grp.snapshot_blob_released() {
            return Ok(Some(grp.snapshot_blob().clone()));
        }
        let pending = self
            .pending_files()
            .filter(|f| f.group == g && f.last == id && f.kind != SnapshotKind::Tombstone)
            // (A staged copy's file holds it: read from there once in place.)
            .filter(|f| f.staged.is_none())
            .last()
            .map(|f| f.blob.clone());
        Ok(pending)
    }

    /// The snapshot files on their way to disk: to be written before the next batch, behind
    /// the log's batches, or handed to the flush thread and not yet in place.
    fn pending_files(&self) -> impl Iterator<Item = &SnapshotFile> {
        self.before_flush
            .iter()
            .chain(&self.behind)
            .chain(self.in_flight_snapshots.iter().map(|(_, f)| f))
    }

    /// The bytes of entries this thread's logs may hold before the largest is compacted:
    /// `raft-log-memory-bytes`, and with `maxmemory` set at most an eighth of it per thread
    /// (at least 1 MiB): the logs are left out of what `maxmemory` evicts for, so they must
    /// stay small beside it.
    fn log_budget(&self, maxmemory: u64) -> usize {
        if maxmemory == 0 {
            return self.log_bytes_max;
        }
        let share = (maxmemory / 8) as usize / self.c.threads.max(1);
        self.log_bytes_max.min(share.max(1 << 20))
    }

    /// Publishes what this thread's replicas hold for replication, entries, snapshots and
    /// buffers (`REPLICATION_MEMORY_BYTES`), or withdraws it (`on` false: `maxmemory` unset).
    fn publish_memory(&mut self, db: &Db, on: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let keys = if on { evictable_keys(db) } else { 0 };
        let old = std::mem::replace(&mut self.keys_published, keys);
        EVICTABLE_KEYS.fetch_add(keys.wrapping_sub(old), Relaxed);
        let now = if on {
            let snaps: usize = self
                .groups
                .iter()
                .flatten()
                .map(|g| g.snapshot_blob().len())
                .sum();
            // The logs' and the kept Readies' spare room is the replicas' too.
            let entry = std::mem::size_of::<raft::Entry>();
            let spare: usize = self
                .groups
                .iter()
                .flatten()
                .map(|g| (g.log_capacity() - g.log().len()) * entry)
                .sum();
            let readies: usize = self
                .free_readies
                .iter()
                .map(|r| {
                    (r.entries.capacity() + r.committed.capacity()) * entry
                        + r.messages.capacity() * std::mem::size_of::<raft::Envelope>()
                })
                .sum();
            // Snapshots on their way to their files (a group of one's no longer in the group).
            let files: usize = self.pending_files().map(|f| f.blob.len()).sum();
            let wal = self.wal.buffer_bytes();
            // Snapshots' copies being received on bulk lanes, in memory or staged.
            let bulk = self.hub.held_bytes() + self.staging_bytes();
            (self.log_bytes_total + snaps + spare + readies + files + wal + bulk) as u64
        } else {
            0
        };
        let old = std::mem::replace(&mut self.memory_published, now);
        if now > old {
            REPLICATION_MEMORY_BYTES.fetch_add(now - old, Relaxed);
        } else {
            REPLICATION_MEMORY_BYTES.fetch_sub(old - now, Relaxed);
        }
    }

    /// Queues a one-message frame of a control group (hints, removal notices) for `peer`.
    pub(super) fn queue_control(&mut self, peer: NodeId, group: u32, payload: &[u8]) {
        if peer == self.c.me {
            return;
        }
        let Some(p) = self.peers.get_mut(peer.slot()) else {
            return;
        };
        if p.out.len() >= OUTBOX_MAX {
            return;
        }
        if p.out.is_empty() {
            self.out_ready.push(peer);
        }
        frame::encode_batch(&[Message { group, payload }], &mut p.out);
    }

    /// Whether a read of vShard `v` may run on the current state (`raft::Group::can_read_at`:
    /// this replica leads, has committed in its own term and applied all it knows committed).
    fn can_read_now(&self, v: u32) -> bool {
        self.groups[v as usize]
            .as_ref()
            .is_some_and(|g| g.can_read_at(self.applied[v as usize].index))
    }

    /// The vShards whose groups on this thread this node leads.
    /// By vShard id: whether this thread leads it (`Db::view` of keyspace-wide reads).
    pub(crate) fn led_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.meta_g as usize];
        for v in self.led_vshards() {
            mask[v as usize] = true;
        }
        mask
    }

    fn led_vshards(&self) -> Vec<u32> {
        (0..self.meta_g)
            .filter(|&v| {
                self.groups[v as usize]
                    .as_ref()
                    .is_some_and(|g| g.role() == raft::Role::Leader)
            })
            .collect()
    }

    /// Drops the records of blocking commands whose tried op `pending` answered.
    fn settle_blocks(&mut self) {
        for id in self.pending.take_lost_blocks() {
            self.forget_blocked(id);
        }
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

    /// Resolves with the bytes queued for `peer` (its dialer's wait).
    pub async fn outbox_ready(&self, peer: NodeId) -> Vec<u8> {
        std::future::poll_fn(|cx| match self.with_replicas(|r| r.take_outbox(peer)) {
            Some(bytes) => Poll::Ready(bytes),
            None => {
                let mut dialers = self.dialers.borrow_mut();
                let i = peer.slot();
                if dialers.len() <= i {
                    dialers.resize(i + 1, None);
                }
                dialers[i] = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Wakes the dialers of the peers the replicas queued bytes for (`Replicas::out_ready`).
    pub fn wake_dialers(&self, r: &mut Replicas) {
        super::lanes::wake(&mut r.hub, &mut r.lane_io);
        if r.out_ready.is_empty() {
            return;
        }
        let mut dialers = self.dialers.borrow_mut();
        for peer in r.out_ready.drain(..) {
            if let Some(w) = dialers.get_mut(peer.slot()).and_then(Option::take) {
                w.wake();
            }
        }
    }
}

/// The Raft configuration of group `g` on this node, starting from `members` (its snapshot or
/// log overrides them once it has one).
fn raft_config(
    c: &Cluster,
    g: u32,
    members: Vec<NodeId>,
    snapshot_chunk_bytes: usize,
    seed: u64,
) -> raft::Config {
    raft::Config {
        id: c.me,
        members,
        election_ticks: ELECTION_TICKS,
        leader_wait_ticks: LEADER_WAIT_TICKS,
        heartbeat_ticks: HEARTBEAT_TICKS,
        max_batch: MAX_BATCH,
        // A replica far behind gets its state one chunk per round trip: a large snapshot
        // needs no huge frame and holds up other groups' messages only briefly.
        snapshot_chunk_bytes,
        // Snapshots' bytes go through the bulk lanes (`lanes.rs`), not the bus.
        bulk_snapshots: true,
        pre_vote: true,
        seed: seed ^ (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        // A snapshot from a peer is installed only if it decodes and is this group's (this
        // cluster's metadata, this vShard's keys): a bad one must not stop the node (it is
        // decoded once more to install it; installs are rare).
        check_snapshot: if g == c.meta_group() {
            let cluster = c.cluster_id;
            raft::SnapshotCheck::new(move |s| snapfile::meta_snapshot_fits(s, cluster))
        } else {
            let v = VShardId(g as u16);
            raft::SnapshotCheck::new(move |s| snapfile::vshard_snapshot_fits(s, v))
        },
    }
}

impl Shard {
    /// Hands the jobs the replicas finished to their connections.
    fn deliver_finished(&self, r: &mut Replicas) {
        for job in r.pending.take_finished() {
            if job.token != NO_REPLY {
                self.deliver(job.origin, job.into_done());
            }
        }
        for (t, msg) in r.calvin.outbox.drain(..) {
            self.node.mailboxes[t].push_calvin(msg);
        }
    }
}

/// A compaction's snapshot: bytes in memory (the metadata group's, small), or a vShard's
/// written to a file of its own already (`snapfile::CompactionFile`, from a capture: never
/// whole in memory), with the membership at its front.
pub(super) enum Cut {
    Mem(Vec<u8>),
    Written {
        path: PathBuf,
        total: u64,
        conf: raft::Membership,
    },
}

impl Cut {
    /// Not taken: its file goes.
    pub(super) fn discard(self) {
        if let Cut::Written { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The files of snapshots to write before a log batch, as the flush thread's work.
fn snapshot_writes(dir: &std::path::Path, files: Vec<SnapshotFile>) -> Vec<crate::wal::Before> {
    files
        .into_iter()
        .map(|f| {
            let dir = dir.to_path_buf();
            Box::new(move || write_file(&dir, &f)) as crate::wal::Before
        })
        .collect()
}

/// Writes a snapshot file (or puts a staged one in place), its error naming what it was and
/// its vShard.
fn write_file(dir: &std::path::Path, f: &SnapshotFile) -> std::io::Result<()> {
    match &f.staged {
        Some(part) => snapfile::place_snapshot(dir, f.group, part),
        None => write_snapshot(dir, f.group, f.last, &f.blob),
    }
    .map_err(|e| std::io::Error::new(e.kind(), format!("{} of vShard {}: {e}", f.kind, f.group)))
}

/// The log or a snapshot cannot be written or trusted: acknowledging anything more would be a
/// lie, so the node stops (its replicas elsewhere carry on; restart it after fixing the disk).
fn fatal(msg: &str) -> ! {
    tracing::error!("{msg}; stopping the node");
    eprintln!("shardline: {msg}; stopping the node");
    std::process::exit(1);
}
