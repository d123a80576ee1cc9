//! The Raft core of one vShard replica (issue 3), sans-IO and tick-driven, in the shape of
//! raft-rs: `tick`, `step`, `propose`, then `take_ready` hands back what to persist, what to send
//! once persisted, and what to apply. Chosen over openraft (docs/design/replication.md records why).
//! Membership changes one server at a time, with learners (`conf.rs`, `propose_conf`).
//!
//! Call order: `Group::new` (or `restore` from persisted state) → any of `tick` / `step` /
//! `propose` → `take_ready` → persist its `truncate_from`, `entries` and `hard_state`, then send
//! its `messages`, then apply its `committed` entries → repeat. The group must not be stepped
//! again before the previous Ready is persisted.

mod append;
pub mod codec;
pub mod conf;
mod install;
mod membership;
#[cfg(test)]
mod sim;
pub mod storage;
mod types;

use crate::rng::Rng;
use bytes::Bytes;
pub use conf::{ConfChange, ConfError, Membership};
use std::collections::{HashMap, HashSet};
pub use types::*;

pub struct Group {
    cfg: Config,
    role: Role,
    term: u64,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    /// `log[i]` has index `snap.index + 1 + i`.
    log: Vec<Entry>,
    /// The last entry folded into the latest snapshot (0-0: none), and that snapshot's blob
    /// (empty: none) with the membership in effect at `snap`.
    snap: LogId,
    snap_data: Bytes,
    /// The latest snapshot blob's length, kept when the blob is released (offers name it).
    snap_total: u64,
    snap_conf: Membership,
    /// The membership in effect: the latest config entry in the log (appended, committed or
    /// not), else `snap_conf`; `conf_index` is that entry's index (`snap.index` for
    /// `snap_conf`).
    conf: Membership,
    conf_index: u64,
    /// A compaction or an installed snapshot not yet handed out in a Ready.
    purge: Option<LogId>,
    snapshot_in: Option<SnapshotIn>,
    commit: u64,
    applied: u64,
    /// Entries from this index on were not yet handed out to persist.
    unpersisted_from: u64,
    truncate_from: Option<u64>,
    hs_dirty: bool,
    votes: HashSet<NodeId>,
    /// Leader: replication progress of every other member, voter or learner (kept equal to
    /// `conf`'s members by `track_members`).
    next: HashMap<NodeId, u64>,
    /// Leader: followers being sent a snapshot: `(snapshot's last index, bytes acknowledged)`.
    /// A newer snapshot starts over from 0.
    snap_sending: HashMap<NodeId, (u64, u64)>,
    /// Leader: per peer, the entries sent to it and not acknowledged yet (`append.rs`: what
    /// follows them goes next, up to `INFLIGHT_BYTES` unacknowledged; they are sent again
    /// only once `RESEND_HEARTBEATS` heartbeats passed).
    flight: HashMap<NodeId, append::Flight>,
    /// Ticks since the group was made (the leader's clock for `flight`).
    ticks: u64,
    /// Follower: the snapshot being assembled from chunks.
    snap_recv: Option<SnapRecv>,
    /// Follower: the leader's latest `SnapshotOffer` it needs (its bytes come through the
    /// driver's bulk session: `snapshot_wanted`, `install_snapshot`).
    snap_wanted: Option<SnapshotWanted>,
    matched: HashMap<NodeId, u64>,
    elapsed: u32,
    timeout: u32,
    rng: Rng,
    out: Vec<Envelope>,
    /// Leader: followers were told it is quiet. Follower: the leader said so; no election timer.
    quiet: bool,
    /// Leader: ticks left of a leadership handover (0: none). While it runs the leader takes no
    /// proposals (they would be lost when the target takes over, or make the target's log too
    /// short to win) and stays awake, so the window ends even if the `TimeoutNow` was lost.
    transfer_ticks: u32,
    /// Leader: peers heard from since the last quorum check, and ticks since it.
    active: HashSet<NodeId>,
    since_check: u32,
    /// Check-quorum periods so far as leader: a silent peer's probe alternates on its parity
    /// (see `tick`).
    checks: u64,
    /// Leader: stays awake until a quorum check passes (`verify_quorum`).
    verifying: bool,
    /// Leader: read rounds started, and reads waiting for a quorum to confirm their round.
    read_seq: u64,
    pending_reads: Vec<PendingRead>,
    failed_reads: Vec<u64>,
}

struct SnapRecv {
    last: LogId,
    total: u64,
    buf: Vec<u8>,
}

struct PendingRead {
    id: u64,
    ctx: u64,
    acks: HashSet<NodeId>,
}

impl Group {
    pub fn new(cfg: Config) -> Group {
        Group::restore(cfg, HardState::default(), Vec::new())
    }

    /// A replica restarted from its persisted hard state and log: a follower that knows nothing
    /// is committed yet.
    pub fn restore(cfg: Config, hs: HardState, log: Vec<Entry>) -> Group {
        Group::restore_from(cfg, hs, LogId::default(), Bytes::new(), log)
            .expect("no snapshot blob to decode")
    }

    /// A replica restarted from its persisted hard state, its latest snapshot (`snap`, with the
    /// blob a Ready or `snapshot_blob` handed out; empty for none) and the log after it. The
    /// state machine starts from the snapshot's state (`conf::split_snapshot`).
    pub fn restore_from(
        cfg: Config,
        hs: HardState,
        snap: LogId,
        snap_data: impl Into<Bytes>,
        log: Vec<Entry>,
    ) -> Result<Group, BadSnapshot> {
        assert!(
            (1..=MAX_MEMBERS).contains(&cfg.members.len()),
            "a group has 1 to {MAX_MEMBERS} members (the cluster config is validated before)"
        );
        let snap_data = snap_data.into();
        let snap_conf = if snap_data.is_empty() {
            Membership::of_voters(&cfg.members)
        } else {
            conf::split_snapshot(&snap_data).ok_or(BadSnapshot)?.0
        };
        let mut rng = Rng::new(cfg.seed ^ cfg.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let timeout = cfg.election_ticks + rng.below(cfg.election_ticks.max(1) as u64) as u32;
        debug_assert!(log.first().is_none_or(|e| e.index == snap.index + 1));
        let unpersisted_from = snap.index + log.len() as u64 + 1;
        let mut g = Group {
            cfg,
            role: Role::Follower,
            term: hs.term,
            vote: hs.vote,
            leader: None,
            log,
            snap,
            snap_total: snap_data.len() as u64,
            snap_data,
            conf: snap_conf.clone(),
            conf_index: snap.index,
            snap_conf,
            purge: None,
            snapshot_in: None,
            commit: snap.index,
            applied: snap.index,
            unpersisted_from,
            truncate_from: None,
            hs_dirty: false,
            votes: HashSet::new(),
            next: HashMap::new(),
            snap_sending: HashMap::new(),
            flight: HashMap::new(),
            ticks: 0,
            snap_recv: None,
            snap_wanted: None,
            matched: HashMap::new(),
            elapsed: 0,
            timeout,
            rng,
            out: Vec::new(),
            quiet: false,
            transfer_ticks: 0,
            verifying: false,
            active: HashSet::new(),
            since_check: 0,
            checks: 0,
            read_seq: 0,
            pending_reads: Vec::new(),
            failed_reads: Vec::new(),
        };
        g.recompute_conf();
        Ok(g)
    }

    /// Starts a linearizable read (read-index): the leader confirms with a quorum that it still
    /// leads, then `take_ready` reports `(id, index)`: the read may be served once `index` is
    /// applied. Not the leader: refused at once.
    pub fn read_index(&mut self, id: u64) -> Result<(), NotLeader> {
        if self.role != Role::Leader {
            return Err(NotLeader {
                leader: self.leader,
            });
        }
        self.read_seq += 1;
        self.pending_reads.push(PendingRead {
            id,
            ctx: self.read_seq,
            acks: HashSet::from([self.cfg.id]),
        });
        // One round of heartbeats carries the read's context (the group need not wake).
        let quiet = self.quiet;
        self.broadcast(true);
        self.quiet = quiet;
        Ok(())
    }

    /// Whether the group is quiet: no timer runs and it sends nothing until a proposal, a
    /// message or `leader_lost` wakes it. A driver need not tick a quiet group (thousands of
    /// idle vShards then cost nothing); node-level heartbeats stand in for the leader's.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The node-level failure detector says this group's leader's node is gone. Every surviving
    /// replica hears it at about the same moment; if all stood for election at once they would
    /// split the vote and wait out a timeout. So the first member (in configuration order) other
    /// than the lost leader stands at once, and the others only start their election timers, as
    /// a fallback should it be gone too.
    pub fn leader_lost(&mut self) {
        if self.role == Role::Leader {
            return;
        }
        self.quiet = false;
        let lost = self.leader;
        let successor = self.conf.voters.iter().copied().find(|&m| Some(m) != lost);
        if successor == Some(self.cfg.id) {
            // The failure detector vouches for the loss: no pre-vote round.
            self.campaign();
        } else {
            // A fallback should the successor be gone too: the leaderless wait.
            self.start_timer(self.cfg.election_ticks);
        }
    }

    /// Leader: the node-level failure detector lost a voter's node. A quiet leader would go on
    /// believing it leads (nothing is sent, so nothing fails); this one runs its timers again
    /// and stays awake until a quorum check, a full election timeout from now, passes. Cut off
    /// from its quorum, it steps down then, so routing and the waiters parked on it learn that
    /// it no longer leads although nothing was written.
    pub fn verify_quorum(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        self.quiet = false;
        self.verifying = true;
        self.since_check = 0;
        self.active.clear();
    }

    /// Leader: hands leadership to voter `to` (a `TimeoutNow`, on which it stands at once in
    /// the next term), if everything in the log is committed and persisted here and `to` holds
    /// all of it, so `to` can win and nothing is in flight. Other followers may lag (a dead
    /// voter must not pin leadership where it is). This replica leads until it hears the next
    /// term. Whether the handover was sent; nothing changes otherwise.
    pub fn transfer_leader(&mut self, to: NodeId) -> bool {
        let last = self.last().index;
        let ready = self.role == Role::Leader
            && self.commit == last
            && self.unpersisted_from > last
            && self.matched.get(&to) == Some(&last);
        if !ready || to == self.cfg.id || !self.conf.is_voter(to) {
            return false;
        }
        let term = self.term;
        self.send(to, Msg::TimeoutNow { term });
        self.transfer_ticks = self.cfg.election_ticks.max(1);
        self.quiet = false;
        true
    }

    /// Leader: a handover is under way (`transfer_leader`): proposals are refused until it ends.
    pub fn transferring(&self) -> bool {
        self.role == Role::Leader && self.transfer_ticks > 0
    }

    /// Leader: every follower holds every entry and knows it committed.
    fn settled(&self) -> bool {
        let last = self.last().index;
        self.role == Role::Leader
            && self.commit == last
            && self.unpersisted_from > last
            && self.matched.values().all(|&m| m == last)
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The index of the last entry in the log (persisted or not).
    pub fn last_index(&self) -> u64 {
        self.last().index
    }

    pub fn commit_index(&self) -> u64 {
        self.commit
    }

    /// Whether a read may be computed now on a state machine that has applied up to
    /// `applied`, and answered once a read-index round (`read_index`) started with it confirms
    /// the leadership. Only on a leader that has committed an entry of its own term: until
    /// then its commit index can lag what an earlier leader acknowledged, and a read computed
    /// at it would miss that write. And only once `applied` reaches that commit index.
    pub fn can_read_at(&self, applied: u64) -> bool {
        self.role == Role::Leader
            && self.term_at(self.commit) == Some(self.term)
            && applied >= self.commit
    }

    /// The entries after the latest snapshot.
    /// How many entries the in-memory log has room for (its memory, with `log`).
    pub fn log_capacity(&self) -> usize {
        self.log.capacity()
    }

    pub fn log(&self) -> &[Entry] {
        &self.log
    }

    /// The last entry folded into the latest snapshot.
    pub fn snapshot_id(&self) -> LogId {
        self.snap
    }

    /// The latest snapshot's blob (membership and state), as `restore_from` takes it back.
    pub fn snapshot_blob(&self) -> &Bytes {
        &self.snap_data
    }

    /// Drops the in-memory copy of the snapshot blob when the core cannot need it: with
    /// `bulk_snapshots` always (an offer names only the blob's length; the driver's bulk
    /// session reads the bytes, from the snapshot's file), else when this replica is the
    /// group's only voter and there is no learner. Its file holds it; without bulk snapshots
    /// `restore_snapshot_blob` gives it back before a member is added (`propose_conf` refuses
    /// until then).
    pub fn release_snapshot_blob(&mut self) {
        let alone = self.conf.voters.len() == 1 && self.is_voter() && self.conf.learners.is_empty();
        if self.cfg.bulk_snapshots || alone {
            self.snap_data = Bytes::new();
        }
    }

    /// The snapshot this group was restored from is in its file, `total` bytes long (the
    /// driver read it in pieces and gave `restore_from` only its membership): no blob in
    /// memory, as after `release_snapshot_blob`.
    pub fn snapshot_in_file(&mut self, total: u64) {
        if self.snap.index > 0 {
            self.snap_data = Bytes::new();
            self.snap_total = total;
        }
    }

    /// The latest snapshot blob's length (also while it is released).
    pub fn snapshot_total(&self) -> u64 {
        self.snap_total
    }

    /// Whether the snapshot's blob was released (`release_snapshot_blob`).
    pub fn snapshot_blob_released(&self) -> bool {
        self.snap.index > 0 && self.snap_data.is_empty()
    }

    /// Gives back a released snapshot blob (read from its file): refused unless it holds the
    /// snapshot's membership.
    pub fn restore_snapshot_blob(&mut self, blob: Bytes) -> Result<(), BadSnapshot> {
        match conf::split_snapshot(&blob) {
            Some((conf, _)) if conf == self.snap_conf => {
                self.snap_data = blob;
                Ok(())
            }
            _ => Err(BadSnapshot),
        }
    }

    /// The entry at `index`, if the log still holds it.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let i = index.checked_sub(self.snap.index + 1)?;
        self.log.get(i as usize)
    }

    /// The id of the last entry (the snapshot's when the log is empty).
    pub fn last_id(&self) -> LogId {
        self.last()
    }

    fn last(&self) -> LogId {
        self.log.last().map_or(self.snap, |e| LogId {
            term: e.term,
            index: e.index,
        })
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snap.index {
            return Some(self.snap.term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// Positions in `log` of the entries from index `from` (clamped) to `to` (exclusive).
    fn slice(&self, from: u64, to: u64) -> &[Entry] {
        let base = self.snap.index + 1;
        let a = from.saturating_sub(base).min(self.log.len() as u64) as usize;
        let b = to.saturating_sub(base).min(self.log.len() as u64) as usize;
        &self.log[a..b.max(a)]
    }

    /// Folds everything up to `index` (applied already) into a snapshot whose state-machine
    /// bytes are `data`: those entries leave the log, and followers too far behind get the
    /// snapshot instead. The blob to store before the purge is `snapshot_blob()`.
    pub fn compact(&mut self, index: u64, data: impl Into<Bytes>) {
        let data = data.into();
        if let Some(conf) = self.compactable(index) {
            let blob = conf::snapshot_blob(&conf, &data);
            self.fold(index, conf, blob.len() as u64, blob);
        }
    }

    /// The membership as of entry `index` (past the snapshot, in the log): what the driver
    /// writes at the front of a snapshot up to `index` it writes to its file itself
    /// (`compact_written`). `None` outside the log.
    pub fn membership_at(&self, index: u64) -> Option<Membership> {
        (index >= self.snap.index && index <= self.last_index()).then(|| self.conf_at(index))
    }

    fn compactable(&self, index: u64) -> Option<Membership> {
        (index > self.snap.index && index <= self.applied).then(|| self.conf_at(index))
    }

    /// `compact` of a snapshot the driver wrote to its file itself: `total` bytes with
    /// `written` (`membership_at(index)`) at its front (issue 19, step 3: a large vShard's
    /// snapshot is never whole in memory). No blob is kept (`snapshot_blob_released`).
    /// Whether it was taken (not if `index` is not applied or not past the snapshot, or the
    /// membership there is not `written`): if not, the file is not this group's snapshot.
    pub fn compact_written(&mut self, index: u64, total: u64, written: &Membership) -> bool {
        match self.compactable(index) {
            Some(conf) if conf == *written => {
                self.fold(index, conf, total, Bytes::new());
                true
            }
            _ => false,
        }
    }

    fn fold(&mut self, index: u64, conf: Membership, total: u64, blob: Bytes) {
        let term = self.term_at(index).expect("applied entries are in the log");
        let drop = (index - self.snap.index) as usize;
        self.log.drain(..drop);
        // A burst's room is given back once compacted away.
        if self.log.capacity() > 4 * self.log.len().max(256) {
            self.log.shrink_to(2 * self.log.len().max(256));
        }
        self.snap = LogId { term, index };
        self.snap_data = blob;
        self.snap_total = total;
        self.snap_conf = conf;
        self.purge = Some(self.snap);
    }

    fn quorum(&self) -> usize {
        self.conf.voters.len() / 2 + 1
    }

    /// The members other than this one, voters then learners, on the stack.
    fn peer_ids(&self) -> ([NodeId; MAX_MEMBERS], usize) {
        let mut ids = [NodeId(0); MAX_MEMBERS];
        let mut n = 0;
        for m in self.conf.all().filter(|&m| m != self.cfg.id) {
            ids[n] = m;
            n += 1;
        }
        (ids, n)
    }

    /// The voters other than this one, on the stack.
    fn voter_peers(&self) -> ([NodeId; MAX_MEMBERS], usize) {
        let mut ids = [NodeId(0); MAX_MEMBERS];
        let mut n = 0;
        for &m in self.conf.voters.iter().filter(|&&m| m != self.cfg.id) {
            ids[n] = m;
            n += 1;
        }
        (ids, n)
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        self.out.push(Envelope {
            from: self.cfg.id,
            to,
            msg,
        });
    }

    /// The election timer again: `leader_wait_ticks` for a follower with a leader,
    /// `election_ticks` otherwise (randomized up to twice).
    fn reset_timer(&mut self) {
        let with_leader = self.role == Role::Follower && self.leader.is_some();
        let wait = if with_leader && self.cfg.leader_wait_ticks > 0 {
            self.cfg.leader_wait_ticks
        } else {
            self.cfg.election_ticks
        };
        self.start_timer(wait);
    }

    fn start_timer(&mut self, base: u32) {
        self.elapsed = 0;
        let base = base.max(1);
        self.timeout = base + self.rng.below(base as u64) as u32;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        // Reads waiting on this leadership can no longer be confirmed.
        self.failed_reads
            .extend(self.pending_reads.drain(..).map(|r| r.id));
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.hs_dirty = true;
            // An offer of an earlier term's leader: the new one offers its own.
            self.snap_wanted = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.transfer_ticks = 0;
        self.verifying = false;
        if leader.is_none() {
            // No leader to be quiet for: the election timer must run (a quiet leader deposed
            // by a higher term in a reply would otherwise wait for nobody, forever).
            self.quiet = false;
        }
        self.reset_timer();
    }

    /// An election timeout: a pre-vote round first when configured.
    fn timeout_elapsed(&mut self) {
        if !self.cfg.pre_vote {
            return self.campaign();
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = self.own_vote();
        self.reset_timer();
        let (term, last) = (self.term + 1, self.last());
        let (peers, n) = self.voter_peers();
        for &p in &peers[..n] {
            self.send(p, Msg::PreVote { term, last });
        }
        if self.votes.len() >= self.quorum() {
            self.campaign();
        }
    }

    fn campaign(&mut self) {
        self.term += 1;
        self.role = Role::Candidate;
        self.transfer_ticks = 0;
        self.vote = Some(self.cfg.id);
        self.leader = None;
        self.hs_dirty = true;
        self.votes = self.own_vote();
        self.reset_timer();
        let last = self.last();
        let term = self.term;
        let (peers, n) = self.voter_peers();
        for &p in &peers[..n] {
            self.send(p, Msg::Vote { term, last });
        }
        self.maybe_win();
    }

    fn maybe_win(&mut self) {
        if self.role != Role::Candidate || self.votes.len() < self.quorum() {
            return;
        }
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        let next = self.last().index + 1;
        let (peers, n) = self.peer_ids();
        self.active.clear();
        self.since_check = 0;
        self.next = peers[..n].iter().map(|&p| (p, next)).collect();
        self.snap_sending.clear();
        self.flight.clear();
        self.matched = peers[..n].iter().map(|&p| (p, 0)).collect();
        // A no-op of the new term lets earlier entries commit through it.
        self.append_local(Bytes::new());
        self.broadcast(true);
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        if self.quiet {
            return;
        }
        self.elapsed = self.elapsed.saturating_add(1);
        self.ticks += 1;
        match self.role {
            Role::Leader => {
                self.transfer_ticks = self.transfer_ticks.saturating_sub(1);
                // Check quorum: a leader that has not heard from a majority for an election
                // timeout steps down, so a cut-off leader stops serving (no split brain).
                self.since_check += 1;
                if self.since_check >= self.cfg.election_ticks {
                    self.since_check = 0;
                    let heard = self
                        .active
                        .iter()
                        .filter(|&&p| self.conf.is_voter(p))
                        .count()
                        + self.is_voter() as usize;
                    // A peer silent for the whole period may have refused what it was sent
                    // without the refusal getting here (it may not know this node's address
                    // yet, its metadata being behind): it is probed again from what it
                    // acknowledged, so what it lacks reaches it even if it cannot answer
                    // (found by the whole-cluster simulator: a node cut off while a newcomer
                    // became the metadata leader never caught up).
                    // When what it acknowledged is compacted away, the probe is the snapshot
                    // (for a peer behind it) and, every other period, the log after the
                    // snapshot (for a peer that holds the snapshot's entry: it ignores a
                    // snapshot it is past, and could not say so; found by the simulator: a
                    // newcomer that acknowledged nothing to a new metadata leader was sent
                    // the same useless snapshot forever).
                    self.checks += 1;
                    let from_log = self.checks.is_multiple_of(2);
                    let (peers, n) = self.peer_ids();
                    for &p in &peers[..n] {
                        if !self.active.contains(&p)
                            && let Some(&m) = self.matched.get(&p)
                        {
                            let next = if from_log && m < self.snap.index {
                                self.snap.index + 1
                            } else {
                                m + 1
                            };
                            self.next.insert(p, next);
                            self.snap_sending.remove(&p);
                            self.flight.remove(&p);
                        }
                    }
                    self.active.clear();
                    if heard < self.quorum() {
                        let term = self.term;
                        self.become_follower(term, None);
                        return;
                    }
                    self.verifying = false;
                }
                if self.elapsed >= self.cfg.heartbeat_ticks {
                    // Once everyone holds and knows everything, one last heartbeat says so.
                    if self.settled() && self.transfer_ticks == 0 && !self.verifying {
                        self.quiet = true;
                    }
                    self.broadcast(true);
                }
            }
            // A learner, or a replica whose removal is committed, never stands for election.
            // (Its timer still runs: it tells whether a leader was heard from lately.)
            _ if !self.may_campaign() => {}
            _ => {
                // The only voter has nobody to wait for: it stands at once (a one-node
                // cluster served `-TRYAGAIN` for an election timeout after every start).
                let alone = self.conf.voters.len() == 1 && self.is_voter();
                if self.elapsed >= self.timeout || alone {
                    self.timeout_elapsed();
                }
            }
        }
    }

    /// Appends `data` on the leader; returns its index (committed once applied from a Ready).
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<u64, NotLeader> {
        if self.role != Role::Leader {
            return Err(NotLeader {
                leader: self.leader,
            });
        }
        if self.transferring() {
            // Not applied; the next leader is not known yet.
            return Err(NotLeader { leader: None });
        }
        self.quiet = false;
        Ok(self.append_local(data.into()))
    }

    /// Takes a message from peer `from`.
    pub fn step(&mut self, from: NodeId, msg: Msg) {
        // Only the votes of voters count, and only tracked members' acknowledgements. Requests
        // are answered whoever asks: this replica's membership may be the stale one (an
        // uncommitted change it holds may be undone), so ignoring a candidate it does not
        // count as a voter could stall the group. A removed replica cannot win (its log lacks
        // its committed removal), and pre-vote keeps it from disrupting a working leader.
        // Appends and snapshots are taken from anyone (the term proves the leader), so a
        // replica created to join a group needs only to exist.
        let known = match msg {
            Msg::VoteReply { .. } | Msg::PreVoteReply { .. } => self.conf.is_voter(from),
            Msg::AppendReply { .. } | Msg::SnapshotAck { .. } => self.conf.contains(from),
            Msg::Vote { .. }
            | Msg::PreVote { .. }
            | Msg::Append { .. }
            | Msg::Snapshot { .. }
            | Msg::SnapshotOffer { .. } => true,
            // Only from the leader this replica follows, in its term (checked below).
            Msg::TimeoutNow { .. } => self.leader == Some(from),
        };
        if !known || !msg.well_formed() {
            return;
        }
        if self.role == Role::Leader {
            self.active.insert(from);
        }
        if matches!(
            msg,
            Msg::Vote { .. } | Msg::VoteReply { .. } | Msg::PreVoteReply { .. }
        ) {
            self.quiet = false;
        }
        let term = msg.term();
        // Pre-vote terms are hypothetical: they move nobody's term.
        let hypothetical = matches!(msg, Msg::PreVote { .. } | Msg::PreVoteReply { .. });
        if term > self.term && !hypothetical {
            let leader = matches!(msg, Msg::Append { .. }).then_some(from);
            self.become_follower(term, leader);
        }
        match msg {
            Msg::Vote { term, last } => {
                // A replica that holds nothing and is not in its own membership (created on
                // demand, maybe where an earlier replica of the group voted and was removed)
                // gives no vote until the log or a snapshot says what it is: its empty log
                // would let a stale candidate win.
                let blank = self.last().index == 0 && !self.conf.contains(self.cfg.id);
                let granted = term == self.term
                    && !blank
                    && self.vote.is_none_or(|v| v == from)
                    && last >= self.last();
                if granted {
                    self.vote = Some(from);
                    self.hs_dirty = true;
                    self.reset_timer();
                }
                let reply = Msg::VoteReply {
                    term: self.term,
                    granted,
                };
                self.send(from, reply);
            }
            Msg::PreVote { term, last } => {
                // Granted only if we would vote: a newer term, an up-to-date log, and no leader
                // heard from within an election timeout (a quiet group's leader counts as alive).
                // (A pre-vote from our own leader means it restarted and leads no more.)
                let leader_alive = self.role == Role::Leader
                    || (self.leader.is_some_and(|l| l != from)
                        && (self.quiet || self.elapsed < self.cfg.election_ticks));
                let granted = term > self.term && last >= self.last() && !leader_alive;
                // A grant names the term asked for; a refusal names this replica's own term
                // (real, never hypothetical), so a pre-candidate behind it catches up: a
                // replica at a lower term with the longer log and one at a higher term with a
                // shorter one refused each other forever (found by the whole-cluster
                // simulator: the metadata group after a restart of every node; etcd's raft
                // answers the same way).
                let term = if granted { term } else { self.term };
                self.send(from, Msg::PreVoteReply { term, granted });
                if self.role == Role::Leader {
                    // A member in sync says nothing to a quiet leader: one that asks for votes
                    // lost track of us (it restarted). Wake and tell it who leads, so it follows
                    // and catches up instead of asking forever.
                    self.quiet = false;
                    self.send_append(from);
                }
            }
            Msg::TimeoutNow { term } => {
                if term == self.term && self.role == Role::Follower && self.is_voter() {
                    self.campaign();
                }
            }
            Msg::PreVoteReply { term, granted } => {
                if !granted && term > self.term {
                    // Refused by a replica of a later term (its own): follow that term.
                    self.become_follower(term, None);
                    return;
                }
                if self.role == Role::PreCandidate && term == self.term + 1 && granted {
                    self.votes.insert(from);
                    if self.votes.len() >= self.quorum() {
                        self.campaign();
                    }
                }
            }
            Msg::VoteReply { term, granted } => {
                if term == self.term && granted && self.role == Role::Candidate {
                    self.votes.insert(from);
                    self.maybe_win();
                }
            }
            Msg::Append {
                term,
                prev,
                entries,
                commit,
                quiet,
                ctx,
            } => {
                self.on_append(from, term, prev, entries, commit, ctx);
                // Quiet only if this follower is now as far as the leader (its reply went out).
                self.quiet = quiet
                    && self.role == Role::Follower
                    && self.leader == Some(from)
                    && self.commit == self.last().index;
            }
            Msg::Snapshot {
                term,
                last,
                offset,
                total,
                data,
            } => self.on_snapshot_chunk(from, term, last, offset, total, data),
            Msg::SnapshotOffer { term, last, total } => {
                self.on_snapshot_offer(from, term, last, total)
            }
            Msg::SnapshotAck { term, last, offset } => {
                if self.role != Role::Leader || term != self.term || last != self.snap.index {
                    return; // stale: a heartbeat sends the current snapshot
                }
                if let Some(sending) = self.snap_sending.get_mut(&from)
                    && sending.0 == last
                    && offset <= self.snap_data.len() as u64
                {
                    sending.1 = offset;
                    self.send_append(from);
                }
            }
            Msg::AppendReply {
                term,
                success,
                last,
                ctx,
            } => {
                if self.role == Role::Leader && term == self.term {
                    for r in self.pending_reads.iter_mut().filter(|r| r.ctx <= ctx) {
                        r.acks.insert(from);
                    }
                }
                self.on_append_reply(from, term, success, last)
            }
        }
    }

    /// What to persist, send and apply now. The caller persists before it sends.
    pub fn take_ready(&mut self) -> Ready {
        let mut r = Ready::default();
        self.take_ready_into(&mut r);
        r
    }

    /// `take_ready` into `r`, which must be empty (`Ready::clear`): a driver that keeps its
    /// Readies reuses their buffers, so a step allocates nothing for them.
    pub fn take_ready_into(&mut self, r: &mut Ready) {
        debug_assert!(r.is_empty(), "a Ready is cleared before reuse");
        if self.role == Role::Leader {
            // Entries proposed since the last Ready go out to peers that are caught up.
            let (peers, n) = self.peer_ids();
            for &p in &peers[..n] {
                if self.next[&p] <= self.last().index
                    && self.next[&p] >= self.unpersisted_from
                    && !self
                        .out
                        .iter()
                        .any(|e| e.to == p && matches!(e.msg, Msg::Append { .. }))
                {
                    self.send_more(p);
                }
            }
        }
        r.entries
            .extend_from_slice(self.slice(self.unpersisted_from, u64::MAX));
        self.unpersisted_from = self.last().index + 1;
        if self.role == Role::Leader {
            self.advance_commit();
            if !self.is_voter() && self.commit >= self.conf_index {
                // Its own removal is committed: the remaining voters elect a leader.
                let term = self.term;
                self.become_follower(term, None);
            }
        }
        if self.commit > self.applied {
            r.committed
                .extend_from_slice(self.slice(self.applied + 1, self.commit + 1));
            self.applied = self.commit;
        }
        // Reads confirmed by a quorum, once this leader has committed in its own term.
        let reads = &mut r.reads;
        if self.role == Role::Leader && self.term_at(self.commit) == Some(self.term) {
            let quorum = self.quorum();
            let commit = self.commit;
            let conf = &self.conf;
            self.pending_reads.retain(|r| {
                let ready = r.acks.iter().filter(|&&a| conf.is_voter(a)).count() >= quorum;
                if ready {
                    reads.push((r.id, commit));
                }
                !ready
            });
        }
        r.hard_state = std::mem::take(&mut self.hs_dirty).then_some(HardState {
            term: self.term,
            vote: self.vote,
        });
        r.truncate_from = self.truncate_from.take();
        // The messages go out in `r`; the group keeps `r`'s empty buffer for the next ones.
        std::mem::swap(&mut r.messages, &mut self.out);
        std::mem::swap(&mut r.failed_reads, &mut self.failed_reads);
        r.purge = self.purge.take();
        r.snapshot = self.snapshot_in.take();
    }
}
