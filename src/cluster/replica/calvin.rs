//! Calvin's driver on a shard thread (issue 17, `docs/design/calvin.md`): moves submissions,
//! sequenced transactions, reads and replies between the pure pieces
//! (`shardline_shards::calvin`) and the replicas. What it runs today: commands whose keys
//! span vShards of several shard threads of a node that alone replicates them.
//!
//! - The origin (the connection's thread) gives its transaction an id and sends it to
//!   thread 0, and answers the client when a participant sends the reply back.
//! - Thread 0 hosts the sequencer: its epochs are entries of the metadata group's log
//!   (`seq::SEQ_TAG`), its state part of that group's snapshot; what it sequences is
//!   published in the node's `Stream`.
//! - Every thread takes from the stream what concerns the vShards it leads, into its
//!   scheduler (`sched`), sends the reads it makes to the threads of the other participants,
//!   proposes execution entries, and releases keys as they apply.
//! - Commands on keys a transaction holds wait (`blocks`): their job is run again once a
//!   transaction executed here.

use super::*;
use crate::hop::CalvinMsg;
use shardline_shards::calvin::exec::{Execution, Split};
use shardline_shards::calvin::sched::{Output, Scheduler};
use shardline_shards::calvin::seq::{self, Ordered, Sequencer, Submission, TxnId};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How often thread 0 looks whether transactions executed everywhere can be forgotten.
const FORGET_EVERY: Duration = Duration::from_millis(100);
/// How often a participant that has read and still lacks others' reads asks for them again
/// (a participant that restarted, or whose leader changed, lost what was sent to it).
const WANT_EVERY: Duration = Duration::from_millis(200);

/// The answer to a transaction the sequencer did not take: nothing was applied.
pub(crate) const NOT_SEQUENCED: &str =
    "TRYAGAIN the transaction could not be sequenced now (nothing was applied); retry";
/// The answer to a transaction whose reply did not come in time: it may have been applied.
pub(crate) const TXN_UNKNOWN: &str = "UNKNOWN the transaction across vShards was not confirmed in time; it may or may not have been applied: read its keys before retrying";

/// The transactions thread 0's sequencer has sequenced and not yet forgotten, in sequence
/// order, for the node's threads to take (each keeps its own position). Written by thread 0
/// only; read under the lock only when its end moved or a thread starts leading a vShard.
pub struct Stream {
    txns: Mutex<VecDeque<Arc<Ordered>>>,
    /// The sequence number after the last published (0: none yet).
    end: AtomicU64,
    /// Per shard thread: every transaction below it that involves a vShard of that thread
    /// has executed there (its low watermark; thread 0 forgets below the lowest).
    low: Vec<AtomicU64>,
    /// INFO's figures: execution entries applied by this node's leaders, reads asked for
    /// again (`Want`), jobs that waited for keys a transaction held.
    pub executions: AtomicU64,
    pub asked_again: AtomicU64,
    pub deferred: AtomicU64,
}

impl Stream {
    pub fn new(threads: usize) -> Stream {
        Stream {
            txns: Mutex::new(VecDeque::new()),
            end: AtomicU64::new(0),
            low: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            executions: AtomicU64::new(0),
            asked_again: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
        }
    }

    /// INFO's lines: `calvin_*`.
    pub fn info(&self) -> String {
        let (first, end) = (self.first(), self.end.load(Ordering::Acquire));
        format!(
            "calvin_sequenced:{end}\r\ncalvin_retained:{}\r\ncalvin_executions:{}\r\ncalvin_reads_asked_again:{}\r\ncalvin_jobs_deferred:{}\r\n",
            end.saturating_sub(first),
            self.executions.load(Ordering::Relaxed),
            self.asked_again.load(Ordering::Relaxed),
            self.deferred.load(Ordering::Relaxed),
        )
    }

    /// Thread 0: publishes the sequencer's retained transactions from `from` on (all of
    /// them, replacing what was there, with `replace`: a snapshot installed).
    fn publish(&self, s: &Sequencer, from: u64, replace: bool) {
        let mut q = self.txns.lock().expect("calvin stream");
        if replace {
            q.clear();
        }
        let have = q.back().map_or(0, |t| t.seq + 1);
        for t in s.retained_from(from.max(have)) {
            q.push_back(t.clone());
        }
        while q.front().is_some_and(|t| t.seq < s.first_retained()) {
            q.pop_front();
        }
        self.end.store(s.next_seq(), Ordering::Release);
    }

    /// The lowest sequence number still published: every transaction below it has
    /// executed on every participant.
    fn first(&self) -> u64 {
        let q = self.txns.lock().expect("calvin stream");
        q.front()
            .map_or_else(|| self.end.load(Ordering::Acquire), |t| t.seq)
    }

    /// The transactions from `from` (inclusive) to `to` (exclusive).
    fn range(&self, from: u64, to: u64) -> Vec<Arc<Ordered>> {
        let q = self.txns.lock().expect("calvin stream");
        let start = q.partition_point(|t| t.seq < from);
        q.range(start..)
            .take_while(|t| t.seq < to)
            .cloned()
            .collect()
    }
}

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
    /// Messages from other threads, handled at the next step.
    inbox: Vec<CalvinMsg>,
    /// Messages for other threads' mailboxes: `(thread, message)`.
    pub(super) outbox: Vec<(usize, CalvinMsg)>,
    /// Origin: the transactions submitted from this thread, by id.
    waits: HashMap<TxnId, Wait>,
    /// This run's id (high 32 bits, drawn at the first submission) and counter.
    next_id: u64,
    /// Jobs that touch keys a transaction holds here, in arrival order: run again once one
    /// executed (`released`).
    pub(super) deferred: VecDeque<Job>,
    pub(super) released: bool,
    forget_due: Option<Instant>,
    want_due: Option<Instant>,
}

/// A transaction submitted from this thread: the job and op that wait for its reply, since
/// when, and for a command split by key, the parts and what came of them.
struct Wait {
    job: u32,
    op: u32,
    since: Instant,
    split: Option<(Split, Vec<Option<Vec<u8>>>)>,
}

/// The origin of a transaction id: this node and thread.
fn origin_of(me: NodeId, thread: usize) -> u64 {
    me.0 << 16 | thread as u64
}

impl Replicas {
    /// A message from another thread: handled at the next step.
    pub fn calvin_receive(&mut self, msg: CalvinMsg) {
        self.calvin.inbox.push(msg);
        self.wake();
    }

    /// Origin: op `op` of job `j` is the transaction of `cmds` (one command; with `exec` a
    /// MULTI/EXEC's), answered in the job's protocol: sends it to the sequencer; the op is answered with the
    /// transaction's reply (`reply`).
    pub(super) fn calvin_submit(
        &mut self,
        cmds: Vec<Vec<Vec<u8>>>,
        exec: bool,
        (j, op): (u32, u32),
        now: Instant,
    ) {
        let layout = self.c.layout;
        let proto = self.pending.job(j).map_or(Proto::Resp2, |pj| pj.proto);
        let keys = shardline_shards::calvin::exec::keys_of(&cmds)
            .into_iter()
            .map(|k| (layout.vshard_of(shardline_shards::slot::key_slot(&k)), k))
            .collect();
        if self.calvin.next_id == 0 {
            // Ids stay unique across restarts: the sequencer remembers those it has seen, and
            // a new run's counter starting at 1 again had its transactions taken for retries
            // of the last run's and never sequenced (found by a restart in a loop of MSETs).
            let run = (self.seed ^ unix_now_us()).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            self.calvin.next_id = run.max(1) << 32;
        }
        self.calvin.next_id += 1;
        let id = TxnId {
            origin: origin_of(self.c.me, self.shard),
            n: self.calvin.next_id,
        };
        let split = match &cmds[..] {
            [argv] if !exec => Split::of(argv, layout),
            _ => None,
        };
        let sub = Submission {
            id,
            keys,
            cmds,
            exec,
            resp3: proto == Proto::Resp3,
            split: split.is_some(),
        };
        let split = split.map(|s| {
            let n = s.parts.len();
            (s, vec![None; n])
        });
        let wait = Wait {
            job: j,
            op,
            since: now,
            split,
        };
        self.calvin.waits.insert(id, wait);
        self.send(0, CalvinMsg::Submit(sub));
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
        if id.origin >> 16 != self.c.me.0 {
            return; // another node's (not submitted across nodes yet)
        }
        let t = (id.origin & 0xffff) as usize;
        if t < self.c.threads {
            self.send(t, CalvinMsg::Reply { id, from, reply });
        }
    }

    /// Thread 0: a submission for the sequencer.
    fn sequence(&mut self, sub: Submission) {
        let leads = self.groups[self.meta_g as usize]
            .as_ref()
            .is_some_and(|g| g.role() == raft::Role::Leader);
        let id = sub.id;
        if !leads || self.calvin.seq.submit(sub).is_err() {
            self.reply_to(id, VShardId(0), Err(NOT_SEQUENCED));
        }
        self.wake();
    }

    /// Applies a committed entry of the sequencer (in the metadata group's log, after its
    /// tag): the transactions it sequences are published.
    pub(super) fn apply_seq(&mut self, data: &[u8]) {
        let from = self.calvin.seq.next_seq();
        match self.calvin.seq.apply(data) {
            Ok(_) => self.publish(from, false),
            // Skipped alike by every replica, as a metadata entry that does not decode is.
            Err(e) => tracing::error!("a committed sequencer entry does not decode ({e}); skipped"),
        }
    }

    /// Thread 0: the sequencer's state from the metadata group's snapshot.
    pub(super) fn install_seq(&mut self, state: Option<&[u8]>) -> Result<(), &'static str> {
        self.calvin.seq = match state {
            None => Sequencer::default(),
            Some(b) => Sequencer::decode(b, seq::Limits::default()).map_err(|e| e.what())?,
        };
        self.publish(0, true);
        Ok(())
    }

    /// The metadata group's snapshot state: the metadata's and the sequencer's.
    pub(super) fn meta_state(&self, meta: &[u8]) -> Vec<u8> {
        seq::join_state(meta, &self.calvin.seq)
    }

    fn publish(&mut self, from: u64, replace: bool) {
        self.c.calvin.publish(&self.calvin.seq, from, replace);
        for t in 0..self.c.threads {
            self.send(t, CalvinMsg::Poke);
        }
    }

    /// Whether `job` touches a key a transaction holds (or waits for) on this thread, or
    /// writes without keys (a flush) while one does: it must wait (`deferred`).
    pub(crate) fn calvin_blocks(&self, job: &Job) -> bool {
        if !self.calvin.sched.is_busy() {
            return false;
        }
        let layout = self.c.layout;
        let locked = |f: u32, l: u32| {
            let args = Args::new(&job.buf, &job.spans[f as usize..(f + l) as usize]);
            let Some(spec) = command::lookup(args.get(0)) else {
                return false;
            };
            if !spec.arity_ok(args.len()) {
                return false;
            }
            let mut keys = spec.keys_of(args).peekable();
            if keys.peek().is_none() {
                return spec.flags & flags::WRITE != 0;
            }
            keys.any(|k| {
                let key = args.get(k);
                let v = layout.vshard_of(shardline_shards::slot::key_slot(key));
                self.calvin.sched.is_locked(v, key)
            })
        };
        job.ops.iter().any(|op| match op {
            Op::Cmd { first, len, .. } | Op::Local { first, len } | Op::Block { first, len } => {
                locked(*first, *len)
            }
            Op::Exec { cmds, .. } => cmds.iter().any(|&(f, l)| locked(f, l)),
            _ => false,
        })
    }

    /// Whether any transaction waits on this thread (one count: the direct paths then leave
    /// their command to the job path, which waits only for the keys held).
    pub(crate) fn calvin_busy(&self) -> bool {
        self.calvin.sched.is_busy()
    }

    /// Whether `key` of `v` is held by a transaction here (active expiry leaves it).
    pub(super) fn calvin_holds(&self, v: VShardId, key: &[u8]) -> bool {
        self.calvin.sched.is_locked(v, key)
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

    /// An execution entry of group `g` applied with `reply`: its keys are released, and the
    /// participant that answers (the lowest) sends the reply to the origin.
    pub(super) fn calvin_applied(&mut self, g: u32, data: &[u8], reply: &[u8]) {
        let Some((seq, v)) = Execution::head(data) else {
            return;
        };
        if v.0 as u32 != g {
            return;
        }
        let Some(t) = self.calvin.sched.executed(v, seq) else {
            return;
        };
        self.calvin.released = true;
        self.c.calvin.executions.fetch_add(1, Ordering::Relaxed);
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
                CalvinMsg::Reply { id, from, reply } => self.txn_replied(id, from, reply),
                CalvinMsg::Want { seq, of, by } => {
                    let kept = db.vshard(of).and_then(|vs| vs.calvin_sent.get(&seq));
                    if let Some(reads) = kept {
                        // Executed here: the reads its entry recorded.
                        let reads = reads.clone();
                        let t = self.c.thread_of(by.0 as u32);
                        self.send(
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
                CalvinMsg::Poke => {}
            }
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
                    self.send(t, CalvinMsg::Want { seq, of, by });
                }
            }
        }
        if self.shard == 0 {
            self.sequencer_duty(now);
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
            }
        }
        // Reads between participants on this thread go round here; a few rounds at most.
        for _ in 0..8 {
            self.calvin.sched.step(db);
            let outs = self.calvin.sched.take_outputs();
            if outs.is_empty() {
                break;
            }
            for o in outs {
                self.calvin_output(o);
            }
        }
        let late: Vec<TxnId> = self
            .calvin
            .waits
            .iter()
            .filter(|(_, w)| now.duration_since(w.since) > PROPOSAL_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let w = self.calvin.waits.remove(&id).expect("listed");
            self.pending.fail(w.job, w.op, TXN_UNKNOWN);
        }
        let mut low = self
            .calvin
            .sched
            .lowest_pending()
            .unwrap_or(self.calvin.cursor);
        for &g in &self.calvin.stalled {
            low = low.min(db.vshard(VShardId(g as u16)).map_or(0, |vs| vs.calvin_next));
        }
        let low = low.min(self.calvin.cursor);
        self.calvin.sched.forget_early_below(low);
        // Written only when it moved: the threads' marks share cache lines, and this runs
        // every step.
        let mark = &self.c.calvin.low[self.shard];
        if mark.load(Ordering::Relaxed) != low {
            mark.store(low, Ordering::Release);
        }
    }

    /// Origin: participant `from`'s answer to transaction `id`. The op is answered with it,
    /// or for a command split by key once every part is in, with their merge.
    fn txn_replied(&mut self, id: TxnId, from: VShardId, reply: Result<Vec<u8>, &'static str>) {
        let Some(w) = self.calvin.waits.get_mut(&id) else {
            return; // answered already (timed out), or another run's
        };
        let bytes = match (reply, &mut w.split) {
            (Err(msg), _) => {
                let w = self.calvin.waits.remove(&id).expect("present");
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
        let w = self.calvin.waits.remove(&id).expect("present");
        self.pending.fill(w.job, w.op, &bytes);
    }

    fn calvin_output(&mut self, o: Output) {
        match o {
            Output::Reads {
                seq,
                from,
                to,
                reads,
            } => {
                let mut threads: Vec<usize> =
                    to.iter().map(|w| self.c.thread_of(w.0 as u32)).collect();
                threads.sort_unstable();
                threads.dedup();
                for t in threads {
                    if t == self.shard {
                        self.calvin.sched.reads(seq, from, reads.clone());
                    } else {
                        let reads = reads.clone();
                        self.send(t, CalvinMsg::Reads { seq, from, reads });
                    }
                }
            }
            Output::Propose { t, v, reads } => {
                let g = v.0 as u32;
                let entry = t
                    .execution(v, reads, self.c.calvin.first(), self.c.layout)
                    .encode();
                let proposed = self.groups[g as usize]
                    .as_mut()
                    .map(|grp| grp.propose(entry));
                match proposed {
                    Some(Ok(_)) => self.touch(g),
                    _ => {
                        // Not the leader any more: the next one takes it from the stream.
                        self.calvin.sched.step_down(v);
                        self.calvin.stalled.insert(g);
                    }
                }
            }
        }
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
                if self.c.thread_of(g) == self.shard && !self.calvin.sched.leads(v) {
                    self.calvin.stalled.insert(g);
                }
            }
        }
        let stalled: Vec<u32> = self.calvin.stalled.iter().copied().collect();
        for g in stalled {
            self.try_lead(db, g);
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

    /// Thread 0: proposes the next epoch when submissions wait and none is in flight (or
    /// forgets them when it does not lead), and forgets what executed everywhere.
    fn sequencer_duty(&mut self, now: Instant) {
        let g = self.meta_g as usize;
        let Some(grp) = self.groups[g].as_ref() else {
            return;
        };
        if grp.role() != raft::Role::Leader {
            self.calvin.seq.epoch_lost();
            return;
        }
        let seed = self.seed.wrapping_add(self.calvin.seq.next_seq());
        // (The clock is read only when an epoch is to be taken: this runs every step.)
        let epoch = self
            .calvin
            .seq
            .epoch_ready()
            .then(|| self.calvin.seq.take_epoch(unix_now_us(), seed));
        if let Some(epoch) = epoch.flatten() {
            let mut entry = Vec::with_capacity(1 + epoch.len());
            entry.push(seq::SEQ_TAG);
            entry.extend_from_slice(&epoch);
            if self.propose_meta(entry).is_err() {
                self.calvin.seq.epoch_lost();
            }
        }
        if self.calvin.forget_due.is_some_and(|t| now < t) {
            return;
        }
        self.calvin.forget_due = Some(now + FORGET_EVERY);
        let low = self
            .c
            .calvin
            .low
            .iter()
            .map(|l| l.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        if low > self.calvin.seq.first_retained() {
            let mut entry = vec![seq::SEQ_TAG];
            entry.extend_from_slice(&Sequencer::forget_entry(low));
            let _ = self.propose_meta(entry);
        }
    }
}
