//! Calvin's driver on a shard thread (issue 17, `docs/design/calvin.md`): moves submissions,
//! sequenced transactions, reads and replies between the pure pieces
//! (`shardline_shards::calvin`) and the replicas, on this node's mailboxes and, to other
//! nodes, on the cluster bus (`CALVIN_GROUP` messages, `calvin::msg`; a message for another
//! thread of a peer goes on this thread's connection and the peer hands it on).
//!
//! - The origin (the connection's thread, on any node) gives its transaction an id and
//!   sends it to thread 0 of the node that leads the metadata group, and answers the client
//!   when a participant sends the reply back.
//! - Thread 0 hosts the sequencer: its epochs are entries of the metadata group's log
//!   (`seq::SEQ_TAG`), its state part of that group's snapshot; every node applies that log,
//!   and what it sequences is published in each node's `Stream`.
//! - Every thread takes from the stream what concerns the vShards it leads, into its
//!   scheduler (`sched`), sends the reads it makes to the leaders of the other participants,
//!   proposes execution entries, and releases keys as they apply.
//! - Every replica that applies an execution entry raises its vShard's executed mark
//!   (`Stream::done`); thread 0 tells the sequencer's leader the marks that moved, which
//!   forgets what every participant executed.
//! - Commands on keys a transaction holds wait (`blocks`): their job is run again once a
//!   transaction executed here.

use super::*;
use crate::hop::CalvinMsg;
use shardline_shards::calvin::exec::{Execution, Split};
pub(crate) use shardline_shards::calvin::msg::NOT_SEQUENCED;
use shardline_shards::calvin::sched::{Output, Scheduler};
use shardline_shards::calvin::seq::{self, Ordered, Sequencer, Submission, TxnId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

mod block;
mod gate;
mod sequencer;
mod stream;
mod watch;

use block::{BlockWait, StandIn};
pub use stream::Stream;
use stream::WatchReg;

/// How often thread 0 looks whether transactions executed everywhere can be forgotten (on
/// the sequencer's leader) or tells it the executed marks that moved (elsewhere), and each
/// thread drops the vShards it follows that wait for nothing any more.
const FORGET_EVERY: Duration = Duration::from_millis(100);
/// How often a participant that has read and still lacks others' reads asks for them again
/// (a participant that restarted, or whose leader changed, lost what was sent to it).
const WANT_EVERY: Duration = Duration::from_millis(200);
/// Every how many `FORGET_EVERY` rounds a node tells the sequencer's leader every executed
/// mark, moved or not.
const TELL_ALL_EVERY: u64 = 20;
/// How long a WATCH registration asked of another node may take to be acknowledged; past it
/// the WATCH answers `+OK` with its transaction bound to abort (EXEC's nil).
const WATCH_ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a WATCH registration nobody dropped is kept (its origin crashed, or the message
/// that dropped it was lost): an EXEC after it answers nil.
const WATCH_KEPT: Duration = Duration::from_secs(600);
/// How many times a transaction is submitted again holding the keys its SORT's patterns
/// name (`hold_more`) before the client is told to retry, and the most keys it may hold.
const WIDEN_MAX: u8 = 8;
const WIDEN_KEYS_MAX: usize = 100_000;
const SORT_KEYS_MOVING: &str =
    "TRYAGAIN the keys SORT's BY/GET patterns name changed at every try (nothing applied); retry";
const SORT_KEYS_TOO_MANY: &str = "ERR SORT's BY/GET patterns name more than 100000 keys across vShards (nothing applied): keep them in the sorted key's hash tag";
/// The answer to a transaction whose reply did not come in time: it may have been applied.
pub(crate) const TXN_UNKNOWN: &str = "UNKNOWN the transaction across vShards was not confirmed in time; it may or may not have been applied: read its keys before retrying";

/// A thread's Calvin state.
#[derive(Default)]
pub(super) struct Calvin {
    /// Thread 0: the sequencer (its replicated part is the metadata group's).
    seq: Sequencer,
    sched: Scheduler,
    /// The next sequence number this thread has not taken from the stream.
    cursor: u64,
    /// vShards of this thread a transaction involves that it could not lead yet (catching
    /// up, electing): tried again every step.
    stalled: BTreeSet<u32>,
    /// Those of them this node leads (elected, not caught up yet): every job on their keys
    /// waits (`calvin_blocks`) until the transactions pending there are taken up, else a
    /// write could change what the last leader read for them, and a read could miss what
    /// another participant already answered for.
    catching_up: BTreeSet<u32>,
    /// Messages from other threads and nodes, handled at the next step.
    pub(super) inbox: Vec<CalvinMsg>,
    /// Messages for other threads' mailboxes: `(thread, message)`.
    pub(super) outbox: Vec<(usize, CalvinMsg)>,
    /// Origin: the transactions submitted from this thread, by id.
    /// (Ordered maps where walked: a seed of the simulator replays exactly.)
    waits: BTreeMap<TxnId, Wait>,
    /// This run's id (high 32 bits, drawn at the first submission) and counter.
    next_id: u64,
    /// Jobs that touch keys a transaction holds here, in arrival order: run again once one
    /// executed (`released`).
    pub(super) deferred: VecDeque<Job>,
    pub(super) released: bool,
    forget_due: Option<Instant>,
    want_due: Option<Instant>,
    /// Thread 0 on the sequencer's leader: every vShard's executed mark as its replicas
    /// reported it (this node's and the others', `Msg::Done`); the sequencer forgets below
    /// the first transaction a participant has not executed.
    known: Vec<u64>,
    /// Thread 0 elsewhere: the marks last told to the sequencer's leader, and which node that
    /// was (a new leader is told every mark).
    told: Vec<u64>,
    told_to: NodeId,
    rounds: u64,
    /// Participants' stand-ins for blocking commands across vShards, by their waiter id.
    stand_ins: BTreeMap<u64, StandIn>,
    /// Origin: WATCH registrations asked of other nodes (`watch_at`), by their number, until
    /// acknowledged.
    watch_acks: BTreeMap<u64, WatchAck>,
    next_ack: u64,
}

/// A WATCH registration asked of another node: the job and op that answer the WATCH, since
/// when, and the connection's flag (set if no acknowledgement comes in time).
struct WatchAck {
    job: u32,
    op: u32,
    since: Instant,
    flag: Arc<std::sync::atomic::AtomicBool>,
}

/// How a transaction submitted from this thread was answered (counted in `Stream::answers`).
#[derive(Clone, Copy)]
pub enum Answered {
    /// With its execution's reply.
    Executed = 0,
    /// With an error: not applied.
    Refused = 1,
    /// With `TXN_UNKNOWN`: not confirmed in time.
    Unknown = 2,
    /// A blocking command whose timeout came first (or whose client went).
    TimedOut = 3,
}

/// A transaction submitted from this thread: the job and op that wait for its reply, since
/// when, and for a command split by key, the parts and what came of them.
struct Wait {
    job: u32,
    op: u32,
    since: Instant,
    /// What was submitted (a blocking command's tries reuse it under new ids), to which
    /// node's sequencer, and whether it was sent again to a new one (`resend`).
    sub: Submission,
    sent_to: NodeId,
    resent: bool,
    split: Option<(Split, Vec<Option<Vec<u8>>>)>,
    /// A blocking command: tried until served.
    block: Option<BlockWait>,
    /// A MULTI/EXEC that watches: its keys registered on other nodes (dropped there once
    /// answered).
    unwatch: Vec<crate::hop::WatchedKey>,
    /// How many times it was submitted again holding more keys (`hold_more`).
    widened: u8,
}

/// The origin of a transaction id: this node and thread.
fn origin_of(me: NodeId, thread: usize) -> u64 {
    me.0 << 16 | thread as u64
}

/// The node and thread a transaction id's origin names (`origin_of`).
fn origin_in(id: TxnId) -> (NodeId, usize) {
    (NodeId(id.origin >> 16), (id.origin & 0xffff) as usize)
}

impl Replicas {
    /// A message from another thread: handled at the next step.
    pub fn calvin_receive(&mut self, msg: CalvinMsg) {
        self.calvin.inbox.push(msg);
        self.wake();
    }

    /// Origin: op `op` of job `j` is the transaction of `cmds` (one command; with `exec` a
    /// MULTI/EXEC's, with `watch` its WATCHes), answered in the job's protocol: sends it to
    /// the sequencer; the op is answered with the transaction's reply (`reply`).
    pub(super) fn calvin_submit(
        &mut self,
        cmds: Vec<Vec<Vec<u8>>>,
        (exec, block): (bool, bool),
        watch: Option<crate::hop::Watched>,
        (j, op): (u32, u32),
        now: Instant,
    ) {
        let layout = self.c.layout;
        let vshard_of = |k: &[u8]| layout.vshard_of(shardline_shards::slot::key_slot(k));
        let proto = self.pending.job(j).map_or(Proto::Resp2, |pj| pj.proto);
        let mut keys = shardline_shards::calvin::exec::keys_of(&cmds);
        let mut watching = None;
        if let Some(w) = &watch {
            // Held and read like the commands' own: nothing changes them between a
            // participant's verdict and the execution.
            let mut vshards = Vec::new();
            for wk in &w.keys {
                if !keys.contains(&wk.key) {
                    keys.push(wk.key.clone());
                }
                vshards.push(vshard_of(&wk.key));
            }
            vshards.sort_unstable();
            vshards.dedup();
            // (Registered under the connection's id if a WATCH went to another node.)
            let id = match w.id {
                Some(id) => id,
                None => self.next_txn_id(),
            };
            watching = Some(seq::Watching { id, vshards });
        }
        let keys = keys.into_iter().map(|k| (vshard_of(&k), k)).collect();
        let id = self.next_txn_id();
        let split = match &cmds[..] {
            [argv] if !exec && !block => Split::of(argv, layout),
            _ => None,
        };
        let sub = Submission {
            id,
            keys,
            cmds,
            exec,
            resp3: proto == Proto::Resp3,
            split: split.is_some(),
            watch: watching,
            block,
        };
        let split = split.map(|s| {
            let n = s.parts.len();
            (s, vec![None; n])
        });
        let sequencer = self.c.leader(VShardId(self.meta_g as u16));
        if sequencer == NodeId(0) {
            // No sequencer known (an election): nothing was sent, nothing applied.
            if let (Some(w), Some(wg)) = (watch, &sub.watch) {
                self.unwatch(wg.id, w.keys);
            }
            return self.pending.fail(j, op, NOT_SEQUENCED);
        }
        let mut wait = Wait {
            job: j,
            op,
            since: now,
            sub: sub.clone(),
            sent_to: sequencer,
            resent: false,
            split,
            block: block.then_some(BlockWait {
                in_flight: true,
                woken: false,
                cancelled: false,
                retry_at: now,
            }),
            unwatch: Vec::new(),
            widened: 0,
        };
        if let (Some(w), Some(wg)) = (watch, &wait.sub.watch) {
            // The registrations here answer for the vShards whose watched keys are all
            // registered here; the others' are on the nodes that led them (`watch_at`).
            let mut here: Vec<VShardId> = w
                .keys
                .iter()
                .filter(|k| k.at.is_none())
                .map(|k| vshard_of(&k.key))
                .collect();
            here.sort_unstable();
            here.dedup();
            here.retain(|&v| {
                w.keys
                    .iter()
                    .all(|k| k.at.is_none() || vshard_of(&k.key) != v)
            });
            if !here.is_empty() {
                let mut watches = self.c.calvin.watches.lock().expect("calvin watches");
                let reg = WatchReg {
                    flag: w.flag,
                    vshards: here,
                    since: now,
                };
                watches.insert(wg.id, reg);
            }
            wait.unwatch = w.keys.into_iter().filter(|k| k.at.is_some()).collect();
        }
        self.calvin.waits.insert(id, wait);
        self.c.calvin.submitted.fetch_add(1, Ordering::Relaxed);
        self.send_to(sequencer, 0, CalvinMsg::Submit(sub));
    }

    /// A transaction id of this thread, unique across restarts: the sequencer remembers
    /// those it has seen, and a new run's counter starting at 1 again had its transactions
    /// taken for retries of the last run's and never sequenced (found by a restart in a loop
    /// of MSETs).
    pub(crate) fn next_txn_id(&mut self) -> TxnId {
        if self.calvin.next_id == 0 {
            // (The thread's seed differs at every start: drawn from the clock, or in the
            // simulator from its seed and time, so a seed replays exactly.)
            let run = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            self.calvin.next_id = run.max(1) << 32;
        }
        self.calvin.next_id += 1;
        TxnId {
            origin: origin_of(self.c.me, self.shard),
            n: self.calvin.next_id,
        }
    }

    /// Origin: the sequencer's leadership moved while transaction `id` waited: it is sent
    /// again, with its id, to the new leader (sequenced once whatever happened to the first
    /// send: the sequencer's id window). Its wait still ends `PROPOSAL_TIMEOUT` after it was
    /// first sent: waiting afresh at every move let a client wait as long as leadership kept
    /// moving (found by the simulator: a transfer whose first execution's replies were lost
    /// while its origin was paused, resent five times as the metadata leader moved, was
    /// answered only 13 s after it was sent).
    fn resend(&mut self, id: TxnId, sequencer: NodeId, _now: Instant) {
        let Some(w) = self.calvin.waits.get_mut(&id) else {
            return;
        };
        w.sent_to = sequencer;
        w.resent = true;
        let sub = w.sub.clone();
        self.c.calvin.resent.fetch_add(1, Ordering::Relaxed);
        self.send_to(sequencer, 0, CalvinMsg::Submit(sub));
    }

    /// Origin: transaction `id` is answered (or given up) as `how`: its WATCH registrations,
    /// if any, go, here and on the nodes that hold them.
    fn waited(&mut self, id: TxnId, how: Answered) -> Option<Wait> {
        let mut w = self.calvin.waits.remove(&id)?;
        self.c.calvin.answers[how as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(wid) = w.sub.watch.as_ref().map(|wg| wg.id) {
            self.c
                .calvin
                .watches
                .lock()
                .expect("calvin watches")
                .remove(&wid);
            let keys = std::mem::take(&mut w.unwatch);
            self.unwatch(wid, keys);
        }
        Some(w)
    }

    /// Sends `msg` to thread `t` (handled here at once when `t` is this thread).
    fn send(&mut self, t: usize, msg: CalvinMsg) {
        if t == self.shard {
            self.calvin.inbox.push(msg);
            self.wake();
        } else {
            self.calvin.outbox.push((t, msg));
        }
    }

    /// Answers transaction `id` at its origin (participant `from`'s part).
    fn reply_to(&mut self, id: TxnId, from: VShardId, reply: Result<Vec<u8>, &'static str>) {
        let (node, t) = origin_in(id);
        if t < self.c.threads {
            self.send_to(node, t, CalvinMsg::Reply { id, from, reply });
        }
    }

    /// Sends `msg` to thread `t` of `node`: this node's through the mailboxes; a peer's on
    /// this thread's bus connection to it, whose reader hands it to its thread `t`. Not sent
    /// to a node that is not a member (`NodeId(0)`: no leader known): every message is
    /// asked for again or timed out by its waiter.
    fn send_to(&mut self, node: NodeId, t: usize, msg: CalvinMsg) {
        if node == self.c.me {
            return self.send(t, msg);
        }
        if node == NodeId(0) || self.c.member(node).is_none() {
            return;
        }
        let mut payload = std::mem::take(&mut self.payloads);
        payload.clear();
        shardline_shards::calvin::msg::encode(t as u16, &msg, &mut payload);
        self.queue_control(node, super::super::CALVIN_GROUP, &payload);
        self.payloads = payload;
    }

    /// The protocol the reply of execution entry `data` of group `g` is to be written in:
    /// its origin's, when this thread waits for it.
    pub(super) fn calvin_proto(&self, g: u32, data: &[u8]) -> Proto {
        Execution::head(data)
            .and_then(|(seq, _)| self.calvin.sched.get(VShardId(g as u16), seq))
            .map_or(Proto::Resp2, |t| {
                if t.sub.resp3 {
                    Proto::Resp3
                } else {
                    Proto::Resp2
                }
            })
    }

    /// An execution entry of group `g` applied with `reply` (on every replica): the
    /// vShard's executed mark moves past it; on its leader its keys are released, and the
    /// participant that answers (the lowest) sends the reply to the origin.
    pub(super) fn calvin_applied(
        &mut self,
        db: &mut Db,
        (g, data): (u32, &[u8]),
        reply: &[u8],
        now: Instant,
    ) {
        let Some((seq, v)) = Execution::head(data) else {
            return;
        };
        if v.0 as u32 != g {
            return;
        }
        if let Some(done) = self.c.calvin.done.get(g as usize) {
            done.fetch_max(seq + 1, Ordering::Release);
        }
        let Some(t) = self.calvin.sched.executed(v, seq) else {
            return;
        };
        self.calvin.released = true;
        self.c.calvin.executions.fetch_add(1, Ordering::Relaxed);
        if t.sub.block && shardline_shards::command::blocking::would_block(reply) {
            self.stand_in(db, v, &t, now);
        }
        // A command split by key: every participant answers its part; else every participant
        // holds the whole reply and the lowest answers.
        if t.sub.split || t.participants().first() == Some(&v) {
            self.reply_to(t.sub.id, v, Ok(reply.to_vec()));
        }
    }

    /// The Calvin part of a driver step (after the step applied what committed).
    pub(super) fn calvin_step(&mut self, db: &mut Db, now: Instant) {
        for msg in std::mem::take(&mut self.calvin.inbox) {
            match msg {
                CalvinMsg::Submit(sub) => self.sequence(sub),
                CalvinMsg::Reads { seq, from, reads } => self.calvin.sched.reads(seq, from, reads),
                CalvinMsg::Reply { id, from, reply } => self.txn_replied(id, from, reply, now),
                CalvinMsg::Wake { id } => self.woken(id, now),
                CalvinMsg::Want { seq, of, by } => {
                    let kept = db.vshard(of).and_then(|vs| vs.calvin_sent.get(&seq));
                    if let Some(reads) = kept {
                        // Executed here: the reads its entry recorded.
                        let reads = reads.clone();
                        let t = self.c.thread_of(by.0 as u32);
                        let to = self.c.leader(by);
                        self.send_to(
                            to,
                            t,
                            CalvinMsg::Reads {
                                seq,
                                from: of,
                                reads,
                            },
                        );
                    } else {
                        self.calvin.sched.want(seq, of, by);
                    }
                }
                CalvinMsg::Done(marks) => {
                    for (v, mark) in marks {
                        if let Some(k) = self.calvin.known.get_mut(v.0 as usize) {
                            *k = (*k).max(mark);
                        }
                    }
                }
                CalvinMsg::Watch { id, ack, v, key } => self.watch_here(db, id, v, &key, ack, now),
                CalvinMsg::Watched { ack } => {
                    if let Some(a) = self.calvin.watch_acks.remove(&ack) {
                        self.pending.fill(a.job, a.op, b"+OK\r\n");
                    }
                }
                CalvinMsg::Unwatch { id, keys } => self.unwatch_here(db, id, &keys),
                CalvinMsg::Poke => {}
            }
        }
        if !self.calvin.watch_acks.is_empty() {
            self.watch_acks_due(now);
        }
        let ask = match self.calvin.want_due {
            _ if !self.calvin.sched.is_busy() => {
                self.calvin.want_due = None;
                false
            }
            None => {
                self.calvin.want_due = Some(now + WANT_EVERY);
                false
            }
            Some(t) => now >= t,
        };
        if ask {
            self.calvin.want_due = Some(now + WANT_EVERY);
            for (seq, by, lacking) in self.calvin.sched.missing() {
                for of in lacking {
                    self.c.calvin.asked_again.fetch_add(1, Ordering::Relaxed);
                    let t = self.c.thread_of(of.0 as u32);
                    let to = self.c.leader(of);
                    self.send_to(to, t, CalvinMsg::Want { seq, of, by });
                }
            }
        }
        self.take_stream(db);
        // (Only where transactions wait: a part idle while its leadership moved is corrected
        // by the next proposal that fails, which steps it down.)
        for v in self.calvin.sched.busy_parts().collect::<Vec<_>>() {
            let g = v.0 as usize;
            let leads = self.groups[g]
                .as_ref()
                .is_some_and(|grp| grp.role() == raft::Role::Leader);
            if leads {
                self.calvin.sched.applied(v, self.applied[g].index);
            } else {
                self.calvin.sched.step_down(v);
                self.calvin.stalled.insert(v.0 as u32);
                // Its keys are free here: what waited for them goes (to be redirected).
                self.calvin.released = true;
            }
        }
        // Reads between participants on this thread go round here; a few rounds at most.
        // A transaction that watches keys of a vShard led here: they changed if their
        // registration here says so, or none here can tell (`WatchReg::broken`).
        if self.calvin.sched.is_busy() {
            let c = self.c.clone();
            let broken = |t: &Ordered, v: VShardId| {
                let watches = c.calvin.watches.lock().expect("calvin watches");
                t.sub
                    .watch
                    .as_ref()
                    .is_none_or(|w| WatchReg::broken(&watches, w.id, v))
            };
            for _ in 0..8 {
                self.calvin.sched.step(db, broken);
                let outs = self.calvin.sched.take_outputs();
                if outs.is_empty() {
                    break;
                }
                for o in outs {
                    self.calvin_output(db, o);
                }
            }
        }
        let mut late = Vec::new();
        let mut again = Vec::new();
        let mut resend = Vec::new();
        let sequencer = self.c.leader(VShardId(self.meta_g as u16));
        for (id, w) in &self.calvin.waits {
            let in_flight = w.block.as_ref().is_none_or(|b| b.in_flight);
            let answered_in_part = w
                .split
                .as_ref()
                .is_some_and(|(_, got)| got.iter().any(Option::is_some));
            if in_flight && sequencer != w.sent_to && sequencer != NodeId(0) && !answered_in_part {
                resend.push(*id);
            }
            match &w.block {
                // A blocking command between tries: its retry may be due.
                Some(b) if !b.in_flight => {
                    if now >= b.retry_at {
                        again.push(*id);
                    }
                }
                Some(_) | None => {
                    if now.duration_since(w.since) > PROPOSAL_TIMEOUT {
                        late.push(*id);
                    }
                }
            }
        }
        for id in late {
            let w = self.waited(id, Answered::Unknown).expect("listed");
            self.pending.fail(w.job, w.op, TXN_UNKNOWN);
        }
        for id in again {
            self.try_again(id, now);
        }
        for id in resend {
            self.resend(id, sequencer, now);
        }
        // Reads that came before their transaction are kept until it is delivered or its
        // place passed (those for a vShard this thread does not lead, from a sender with an
        // old leader, go then; a leader that needs them asks again).
        let low = self
            .calvin
            .sched
            .lowest_pending()
            .unwrap_or(self.calvin.cursor)
            .min(self.calvin.cursor);
        self.calvin.sched.forget_early_below(low);
        if self.shard == 0 {
            self.sequencer_duty();
        }
        if self.calvin.forget_due.is_none_or(|t| now >= t) {
            self.calvin.forget_due = Some(now + FORGET_EVERY);
            self.tidy_stalled(db);
            if !self.calvin.deferred.is_empty() {
                // (Jobs that wait are looked at again now and then whatever happened: one
                // that no longer has to wait must not hang on a release nobody announced.)
                self.calvin.released = true;
            }
            if !self.calvin.stand_ins.is_empty() {
                self.expire_stand_ins(db, now);
            }
            if self.shard == 0 {
                self.marks_duty();
                let mut watches = self.c.calvin.watches.lock().expect("calvin watches");
                watches.retain(|_, r| now.duration_since(r.since) < WATCH_KEPT);
            }
        }
    }

    /// Every `FORGET_EVERY`: stops watching the vShards this thread follows (replicas here
    /// led elsewhere) that wait for no retained transaction any more; one that still does is
    /// taken up if this node comes to lead it.
    fn tidy_stalled(&mut self, db: &Db) {
        let follows: Vec<(u32, u64)> = self
            .calvin
            .stalled
            .iter()
            .filter(|&&g| {
                self.groups[g as usize]
                    .as_ref()
                    .is_none_or(|grp| grp.role() != raft::Role::Leader)
            })
            .map(|&g| {
                (
                    g,
                    db.vshard(VShardId(g as u16)).map_or(0, |vs| vs.calvin_next),
                )
            })
            .collect();
        let Some(from) = follows.iter().map(|&(_, next)| next).min() else {
            return;
        };
        let mut waits = BTreeSet::new();
        for t in self.c.calvin.range(from, self.calvin.cursor) {
            for (v, _) in &t.sub.keys {
                waits.insert((v.0 as u32, t.seq));
            }
        }
        for (g, next) in follows {
            if !waits.range((g, next)..(g, u64::MAX)).any(|_| true) {
                self.calvin.stalled.remove(&g);
            }
        }
    }

    /// Origin: participant `from`'s answer to transaction `id`. The op is answered with it,
    /// or for a command split by key once every part is in, with their merge.
    fn txn_replied(
        &mut self,
        id: TxnId,
        from: VShardId,
        reply: Result<Vec<u8>, &'static str>,
        now: Instant,
    ) {
        let Some(w) = self.calvin.waits.get_mut(&id) else {
            return; // answered already (timed out), or another run's
        };
        if reply.is_err() && w.resent {
            // A refusal of the first send (a sequencer that lost its leadership) says
            // nothing of the send to the next one, which may yet be sequenced: wait for it.
            return;
        }
        if w.block.is_some() && self.block_replied(id, &reply, now) {
            return;
        }
        let Some(w) = self.calvin.waits.get_mut(&id) else {
            return;
        };
        if let (Ok(bytes), None) = (&reply, &w.split)
            && let Some(keys) = shardline_shards::calvin::exec::needs_keys(bytes)
        {
            return self.hold_more(id, keys, now);
        }
        let bytes = match (reply, &mut w.split) {
            (Err(msg), _) => {
                let w = self.waited(id, Answered::Refused).expect("present");
                return self.pending.fail(w.job, w.op, msg);
            }
            (Ok(bytes), None) => bytes,
            (Ok(bytes), Some((split, got))) => {
                let Some(i) = split.parts.iter().position(|(v, _)| *v == from) else {
                    return;
                };
                got[i] = Some(bytes);
                if got.iter().any(Option::is_none) {
                    return;
                }
                let parts: Vec<&[u8]> = got.iter().flatten().map(Vec::as_slice).collect();
                let order = if split.merge == command::Merge::Positional {
                    split.order()
                } else {
                    Vec::new()
                };
                let proto = self.pending.job(w.job).map_or(Proto::Resp2, |j| j.proto);
                let mut out = Out::new(proto);
                let mut rng = shardline_shards::rng::Rng::new(id.n);
                crate::merge::merge(split.merge, &order, &parts, &mut rng, &mut out);
                out.buf
            }
        };
        let w = self.waited(id, Answered::Executed).expect("present");
        if w.block.is_none() {
            let us = now.saturating_duration_since(w.since).as_micros() as u64;
            self.c.calvin.latency_us.record(us);
        }
        self.pending.fill(w.job, w.op, &bytes);
    }

    /// Origin: transaction `id` ran nothing because it did not hold every key its SORT's
    /// patterns name (`exec::needs_keys`, alike on every participant): it is submitted again,
    /// under a new id, holding `keys` too (Calvin's reconnaissance: the keys are those the
    /// sorted key's elements named when it ran, and hold unless they changed meanwhile; after
    /// `WIDEN_MAX` tries the client is told to retry).
    fn hold_more(&mut self, id: TxnId, keys: Vec<Vec<u8>>, now: Instant) {
        let Some(mut w) = self.calvin.waits.remove(&id) else {
            return;
        };
        let layout = self.c.layout;
        for k in keys {
            if !w.sub.keys.iter().any(|(_, x)| *x == k) {
                let v = layout.vshard_of(shardline_shards::slot::key_slot(&k));
                w.sub.keys.push((v, k));
            }
        }
        let sequencer = self.c.leader(VShardId(self.meta_g as u16));
        w.widened += 1;
        let refusal = if w.widened > WIDEN_MAX {
            Some(SORT_KEYS_MOVING)
        } else if w.sub.keys.len() > WIDEN_KEYS_MAX {
            Some(SORT_KEYS_TOO_MANY)
        } else if sequencer == NodeId(0) {
            Some(NOT_SEQUENCED)
        } else {
            None
        };
        if let Some(msg) = refusal {
            self.calvin.waits.insert(id, w);
            let w = self.waited(id, Answered::Refused).expect("present");
            return self.pending.fail(w.job, w.op, msg);
        }
        let id = self.next_txn_id();
        w.sub.id = id;
        w.since = now;
        w.sent_to = sequencer;
        w.resent = false;
        let sub = w.sub.clone();
        self.calvin.waits.insert(id, w);
        self.send_to(sequencer, 0, CalvinMsg::Submit(sub));
    }

    fn calvin_output(&mut self, db: &mut Db, o: Output) {
        match o {
            Output::Reads {
                seq,
                from,
                to,
                reads,
            } => {
                // To each other participant's leader, once per (node, thread). One whose
                // leader is not known now asks again (`Want`) once it has one.
                let mut dests: Vec<(NodeId, usize)> = to
                    .iter()
                    .map(|&w| (self.c.leader(w), self.c.thread_of(w.0 as u32)))
                    .filter(|&(node, _)| node != NodeId(0))
                    .collect();
                dests.sort_unstable();
                dests.dedup();
                for (node, t) in dests {
                    if node == self.c.me && t == self.shard {
                        self.calvin.sched.reads(seq, from, reads.clone());
                    } else {
                        let reads = reads.clone();
                        self.send_to(node, t, CalvinMsg::Reads { seq, from, reads });
                    }
                }
            }
            Output::Propose { t, v, reads } => {
                let g = v.0 as u32;
                let effects = match t.is_script() {
                    // A script: run here, its effects proposed (`docs/design/scripting.md`).
                    true => match self.run_txn_script(db, &t, &reads) {
                        Some(fx) => Some(fx),
                        // Stopped by SHUTDOWN: nothing proposed (the next leader runs it).
                        None => return,
                    },
                    false => None,
                };
                let entry = t
                    .execution(v, reads, self.c.calvin.first(), self.c.layout, effects)
                    .encode();
                self.undirect();
                let proposed = self.groups[g as usize]
                    .as_mut()
                    .map(|grp| grp.propose(entry));
                match proposed {
                    Some(Ok(_)) => self.touch(g),
                    _ => {
                        // Not the leader any more: the next one takes it from the stream.
                        self.calvin.sched.step_down(v);
                        self.calvin.stalled.insert(g);
                        self.calvin.released = true;
                    }
                }
            }
        }
    }

    /// Runs transaction `t`, which has scripts, on every participant's `reads` in this
    /// thread's Lua state (`exec::run_script`): its effects, or `None` if SHUTDOWN stopped
    /// one of them.
    fn run_txn_script(
        &mut self,
        db: &mut Db,
        t: &Ordered,
        reads: &[shardline_shards::calvin::exec::Read],
    ) -> Option<shardline_shards::calvin::exec::Effects> {
        let proto = if t.sub.resp3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        };
        let txn = shardline_shards::calvin::exec::Txn {
            cmds: &t.sub.cmds,
            exec: t.sub.exec,
            now_us: t.now_us,
            seed: t.seed,
        };
        let held = t.sub.keys.iter().map(|(_, k)| k.as_slice());
        shardline_shards::calvin::exec::run_script(db, reads, held, txn, proto)
    }

    /// Takes what the stream published since this thread last looked into the scheduler,
    /// for the vShards this thread leads (starting to lead those it can first, so each gets
    /// its transactions in order).
    fn take_stream(&mut self, db: &Db) {
        let end = self.c.calvin.end.load(Ordering::Acquire);
        let fresh = if end > self.calvin.cursor {
            self.c.calvin.range(self.calvin.cursor, end)
        } else {
            Vec::new()
        };
        for t in &fresh {
            for v in t.participants() {
                let g = v.0 as u32;
                if self.c.thread_of(g) == self.shard
                    && !self.calvin.sched.leads(v)
                    && db.vshard(v).is_some()
                {
                    self.calvin.stalled.insert(g);
                }
            }
        }
        // The stalled vShards this node leads (most are followed: nothing to try for them).
        let led: Vec<u32> = self
            .calvin
            .stalled
            .iter()
            .copied()
            .filter(|&g| {
                self.groups[g as usize]
                    .as_ref()
                    .is_some_and(|grp| grp.role() == raft::Role::Leader)
            })
            .collect();
        let was = std::mem::take(&mut self.calvin.catching_up);
        for g in led {
            self.try_lead(db, g);
            if self.calvin.stalled.contains(&g) {
                self.calvin.catching_up.insert(g);
            }
        }
        if was.iter().any(|g| !self.calvin.catching_up.contains(g)) {
            // Caught up, or no longer led: what waited for it goes (served, or redirected).
            self.calvin.released = true;
        }
        for t in fresh {
            self.deliver(t);
        }
        self.calvin.cursor = self.calvin.cursor.max(end);
    }

    /// Starts leading `g` in the scheduler if this node leads it and has applied what it
    /// committed: from its `calvin_next`, with every retained transaction of it before the
    /// cursor delivered again.
    fn try_lead(&mut self, db: &Db, g: u32) {
        let ready = self.groups[g as usize].as_ref().is_some_and(|grp| {
            grp.role() == raft::Role::Leader && grp.can_read_at(self.applied[g as usize].index)
        });
        let v = VShardId(g as u16);
        let Some(next) = db.vshard(v).map(|vs| vs.calvin_next) else {
            self.calvin.stalled.remove(&g); // not replicated here
            return;
        };
        if !ready {
            return;
        }
        self.calvin.stalled.remove(&g);
        // Jobs on its keys that waited while it caught up go now (`calvin_blocks`).
        self.calvin.released = true;
        self.calvin
            .sched
            .lead(v, next, self.applied[g as usize].index);
        for t in self.c.calvin.range(next, self.calvin.cursor) {
            if t.sub.keys.iter().any(|(w, _)| *w == v) {
                self.deliver(t);
            }
        }
    }

    fn deliver(&mut self, t: Arc<Ordered>) {
        let groups = &self.groups;
        self.calvin.sched.deliver(t, |v| {
            groups[v.0 as usize]
                .as_ref()
                .map_or(0, |grp| grp.last_index())
        });
    }
}
