//! What a shard thread's replicas owe connections: the jobs whose replies come from the log, the
//! proposals waiting for their entries, and the reads waiting for a read-index round. Every way
//! such a wait ends is decided here, and each says truthfully what happened to the op:
//!
//! - its entry applied in the term it was proposed in: the entry's reply (`applied`);
//! - another leader's entry took its index: `REPLACED` (not applied: retry);
//! - the log moved past its index without its entry (a snapshot from another leader), it waited
//!   longer than the proposal timeout, or its replica was dropped: `UNKNOWN` (it may have been
//!   applied: never retried as if not);
//! - a read whose round a quorum confirmed: its held reply; a round that failed, timed out or
//!   whose replica was dropped: `READ_LOST` (not served).
//!
//! Jobs with every reply in wait in `finished` for the driver to hand to their connections.
//! Pure: time comes in as `now`, nothing here does I/O.

use super::job::{self, PendingJob};
use crate::slot::Slot;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The answer to a write whose fate is unknown (it may or may not have been applied).
pub const UNKNOWN: &str = "UNKNOWN the write may or may not have been applied: it was not confirmed by a quorum in time (leader lost or cut off); read the key before retrying";
/// The answer to a proposal that another leader's entry replaced: it was not applied.
pub const REPLACED: &str =
    "TRYAGAIN leadership changed before the write was committed; it was not applied, retry";
/// The answer to a read whose leadership could not be confirmed: it was not served.
pub const READ_LOST: &str =
    "TRYAGAIN this node could not confirm with a quorum that it still leads the slot; retry";

/// A proposal waiting for its entry to be applied: the job, its ops (in the entry's order) and
/// the term it was proposed in (a different term at its index means another leader replaced it).
pub struct Waiter {
    pub job: u32,
    pub ops: OpList,
    pub term: u64,
    pub since: Instant,
    /// The blocking command this entry tries, if it is one.
    pub block: Option<u64>,
    /// Its ops' replies are held in the job already (a script's, whose entry carries its
    /// effects): applied, they are released; failed, replaced by the error.
    pub held: bool,
}

/// The ops of a job that one entry answers, in the entry's order: nearly always one.
pub enum OpList {
    One(u32),
    Many(Vec<u32>),
}

impl OpList {
    pub fn push(&mut self, op: u32) {
        match self {
            OpList::One(first) => *self = OpList::Many(vec![*first, op]),
            OpList::Many(v) => v.push(op),
        }
    }

    pub fn as_slice(&self) -> &[u32] {
        match self {
            OpList::One(op) => std::slice::from_ref(op),
            OpList::Many(v) => v,
        }
    }
}

/// A read served by read-index: op `op` of job `job`, already run against the applied state
/// (which held everything committed when it arrived), its reply held in the job until a quorum
/// confirms this replica still leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOp {
    pub job: u32,
    pub op: u32,
    pub slot: Slot,
}

pub struct Pending {
    jobs: Vec<Option<PendingJob>>,
    free_jobs: Vec<u32>,
    /// Per group, the proposals waiting for their entries, by index (ascending; several at
    /// one index when a replica proposed there again in a later term: see `wait`).
    waiting: Vec<VecDeque<(u64, Waiter)>>,
    /// Per group, reads arrived since its last step; and the rounds started, by id.
    reads_queued: Vec<Vec<ReadOp>>,
    read_rounds: HashMap<u64, (Instant, Vec<ReadOp>)>,
    next_read: u64,
    /// Jobs with every reply, for the driver to hand to their connections (`take_finished`).
    finished: Vec<PendingJob>,
    /// Blocking commands whose tried op was answered here (skipped, timed out, dropped): their
    /// owner drops their records (`take_lost_blocks`).
    lost_blocks: Vec<u64>,
    /// Ops run at once on groups of one (`(sequence, job, op)`, sequences ascending): their
    /// held replies go out once the log batch holding every entry up to that sequence is
    /// written (`durable`).
    durable_holds: VecDeque<(u64, u32, u32)>,
}

impl Pending {
    pub fn new(groups: usize) -> Pending {
        Pending {
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            waiting: (0..groups).map(|_| VecDeque::new()).collect(),
            reads_queued: (0..groups).map(|_| Vec::new()).collect(),
            read_rounds: HashMap::new(),
            next_read: 1,
            finished: Vec::new(),
            lost_blocks: Vec::new(),
            durable_holds: VecDeque::new(),
        }
    }

    /// Takes a job in; its id names it in waiters and reads. A job with nothing left to
    /// answer goes straight to `finished`.
    pub fn admit(&mut self, job: PendingJob) -> Option<u32> {
        if job.left() == 0 {
            self.finished.push(job);
            return None;
        }
        let j = match self.free_jobs.pop() {
            Some(i) => {
                self.jobs[i as usize] = Some(job);
                i
            }
            None => {
                self.jobs.push(Some(job));
                (self.jobs.len() - 1) as u32
            }
        };
        Some(j)
    }

    pub fn job(&self, j: u32) -> Option<&PendingJob> {
        self.jobs.get(j as usize)?.as_ref()
    }

    /// Jobs waiting for a reply (INFO, tests).
    pub fn jobs_open(&self) -> usize {
        self.jobs.len() - self.free_jobs.len()
    }

    /// Proposal `w` waits for entry `index` of group `g`. Nearly always past every index
    /// waited for; not when this replica lost its leadership with proposals uncommitted, its
    /// log was cut back, and it leads again: the new proposal reuses an index an older one
    /// still waits for. The older one is not answered then: its entry may still be committed
    /// by a later leader that has it (Raft's figure 8), so only the entry applied at that
    /// index decides (`applied`).
    pub fn wait(&mut self, g: u32, index: u64, w: Waiter) {
        let q = &mut self.waiting[g as usize];
        if q.back().is_none_or(|&(i, _)| i < index) {
            q.push_back((index, w));
        } else {
            let at = q.partition_point(|&(i, _)| i <= index);
            q.insert(at, (index, w));
        }
    }

    /// Entry `index` of group `g` was applied, written in term `term`: the proposal it
    /// answers, if one waits here. Proposals at that index from other terms were replaced
    /// (`REPLACED`: not applied); proposals before it that no entry answered (the log moved
    /// past them by a snapshot from another leader) are `UNKNOWN`.
    pub fn applied(&mut self, g: u32, index: u64, term: u64) -> Option<Waiter> {
        let mut found = None;
        while let Some(&(i, _)) = self.waiting[g as usize].front() {
            if i > index {
                break;
            }
            let (_, w) = self.waiting[g as usize].pop_front().expect("checked");
            if i < index {
                self.fail_waiter(w, UNKNOWN);
            } else if w.term == term {
                debug_assert!(found.is_none(), "one proposal per index and term");
                found = Some(w);
            } else {
                self.fail_waiter(w, REPLACED);
            }
        }
        found
    }

    /// Answers every op of proposal `w` with the error `msg`.
    pub fn fail_waiter(&mut self, w: Waiter, msg: &str) {
        if let Some(id) = w.block {
            self.lost_blocks.push(id);
        }
        for &op in w.ops.as_slice() {
            self.fail(w.job, op, msg);
        }
    }

    /// Answers op `op` of job `j` with the error `msg` (replacing a reply held for it).
    pub fn fail(&mut self, j: u32, op: u32, msg: &str) {
        self.answer(j, op, true, |job| job.write(op, false, |o| o.error(msg)));
    }

    /// Puts `reply` as op `op`'s of job `j`, held until released (`hold_until_durable`).
    pub fn fill_held(&mut self, j: u32, op: u32, reply: &[u8]) {
        if let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) {
            job.write(op, true, |o| o.raw(reply));
        }
    }

    /// Releases op `op`'s held reply (its entry applied).
    pub fn release(&mut self, j: u32, op: u32) {
        self.answer(j, op, false, |job| job.release(op));
    }

    /// Answers op `op` of job `j` with `reply`.
    pub fn fill(&mut self, j: u32, op: u32, reply: &[u8]) {
        self.answer(j, op, false, |job| job.put(op, reply));
    }

    /// One entry's answer to op `op` of job `j` (`error`: it failed), written by `write`; for
    /// an op answered by several entries, only once the last is in (an error then if any
    /// failed).
    fn answer(&mut self, j: u32, op: u32, error: bool, write: impl FnOnce(&mut PendingJob)) {
        let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) else {
            return;
        };
        match job.part(op, error) {
            job::Part::More => return,
            job::Part::Last(Some(partial)) => job.write(op, false, |o| o.error(partial)),
            job::Part::Single | job::Part::Last(None) => write(job),
        }
        self.finish_if_done(j);
    }

    /// Moves job `j` to `finished` when it has every reply.
    fn finish_if_done(&mut self, j: u32) {
        if self.jobs[j as usize]
            .as_ref()
            .is_some_and(|job| job.left() == 0)
        {
            self.free_jobs.push(j);
            self.finished.extend(self.jobs[j as usize].take());
        }
    }

    /// Read `r` (its reply held in its job) waits for the next read-index round of group `g`.
    pub fn queue_read(&mut self, g: u32, r: ReadOp) {
        self.reads_queued[g as usize].push(r);
    }

    /// Starts one read-index round for every read of group `g` queued since its last step:
    /// `start` asks the group with the round's id. Refused (not the leader), each read is
    /// answered `refused(its slot)` (it was not served).
    pub fn start_round<E>(
        &mut self,
        g: u32,
        now: Instant,
        start: impl FnOnce(u64) -> Result<(), E>,
        refused: impl Fn(Slot, &E) -> String,
    ) {
        if self.reads_queued[g as usize].is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.reads_queued[g as usize]);
        let id = self.next_read;
        self.next_read += 1;
        match start(id) {
            Ok(()) => {
                self.read_rounds.insert(id, (now, ops));
            }
            Err(e) => {
                for o in ops {
                    self.fail(o.job, o.op, &refused(o.slot, &e));
                }
            }
        }
    }

    /// A quorum confirmed round `id`: its reads' held replies go out.
    pub fn round_confirmed(&mut self, id: u64) {
        for o in self
            .read_rounds
            .remove(&id)
            .map(|x| x.1)
            .unwrap_or_default()
        {
            if let Some(job) = self.jobs[o.job as usize].as_mut() {
                job.release(o.op);
                self.finish_if_done(o.job);
            }
        }
    }

    /// Round `id` failed (leadership lost): its reads were not served.
    pub fn round_failed(&mut self, id: u64) {
        if let Some((_, ops)) = self.read_rounds.remove(&id) {
            for o in ops {
                self.fail(o.job, o.op, READ_LOST);
            }
        }
    }

    /// Ends the waits older than `timeout` at `now`: proposals `UNKNOWN`, read rounds
    /// `READ_LOST` (a cut-off leader: no quorum answered).
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let mut late = Vec::new();
        for q in &mut self.waiting {
            // The oldest proposals of each group are at the front.
            while q
                .front()
                .is_some_and(|(_, w)| now.duration_since(w.since) > timeout)
            {
                late.push(q.pop_front().expect("checked").1);
            }
        }
        for w in late {
            self.fail_waiter(w, UNKNOWN);
        }
        if self.read_rounds.is_empty() {
            return;
        }
        let mut ids: Vec<u64> = self
            .read_rounds
            .iter()
            .filter(|(_, (since, _))| now.duration_since(*since) > timeout)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.round_failed(id);
        }
    }

    /// Group `g`'s replica is dropped from this thread: what waits on it will never be
    /// answered by it. Proposals `UNKNOWN` (a quorum may have committed them), reads not yet in
    /// a round `READ_LOST` (rounds already started end by the group's Ready or their timeout).
    pub fn drop_group(&mut self, g: u32) {
        for (_, w) in std::mem::take(&mut self.waiting[g as usize]) {
            self.fail_waiter(w, UNKNOWN);
        }
        for o in std::mem::take(&mut self.reads_queued[g as usize]) {
            self.fail(o.job, o.op, READ_LOST);
        }
    }

    /// Op `op` of job `j` (its reply held in the job) goes out once the log is written up to
    /// sequence `seq` (`durable`). Sequences come in ascending order.
    pub fn hold_until_durable(&mut self, j: u32, op: u32, seq: u64) {
        debug_assert!(
            self.durable_holds.back().is_none_or(|&(s, _, _)| s <= seq),
            "holds in sequence order"
        );
        self.durable_holds.push_back((seq, j, op));
    }

    /// The log is written up to sequence `seq`: the replies held until then go out.
    pub fn durable(&mut self, seq: u64) {
        while let Some(&(s, j, op)) = self.durable_holds.front() {
            if s > seq {
                break;
            }
            self.durable_holds.pop_front();
            if let Some(job) = self.jobs[j as usize].as_mut() {
                job.release(op);
                self.finish_if_done(j);
            }
        }
    }

    /// Jobs with every reply since the last call, for their connections.
    pub fn take_finished(&mut self) -> std::vec::Drain<'_, PendingJob> {
        self.finished.drain(..)
    }

    /// Blocking commands whose tried op was answered here since the last call.
    pub fn take_lost_blocks(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.lost_blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Proto;

    const T: Duration = Duration::from_secs(5);

    fn waiter(job: u32, op: u32, term: u64, since: Instant) -> Waiter {
        Waiter {
            job,
            ops: OpList::One(op),
            term,
            since,
            block: None,
            held: false,
        }
    }

    fn admit(p: &mut Pending, ops: usize) -> u32 {
        p.admit(PendingJob::new(3, 9, Proto::Resp2, ops))
            .expect("ops to answer")
    }

    /// The replies of every finished job, as strings per op.
    fn finished(p: &mut Pending) -> Vec<Vec<String>> {
        p.take_finished()
            .map(|j| {
                let d = j.into_done();
                (0..d.ends.len())
                    .map(|i| String::from_utf8_lossy(d.segment(i)).into_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_job_with_nothing_to_wait_for_is_finished_at_once() {
        let mut p = Pending::new(1);
        let mut j = PendingJob::new(0, 1, Proto::Resp2, 1);
        j.put(0, b"+PONG\r\n");
        assert_eq!(p.admit(j), None);
        assert_eq!(finished(&mut p), [["+PONG\r\n"]]);
        assert_eq!(p.jobs_open(), 0);
    }

    #[test]
    fn an_applied_entry_finds_its_waiter_and_the_job_finishes_with_every_reply() {
        let now = Instant::now();
        let mut p = Pending::new(2);
        let j = admit(&mut p, 2);
        p.wait(0, 5, waiter(j, 1, 2, now));
        p.wait(1, 7, waiter(j, 0, 2, now));
        assert!(p.applied(0, 4, 2).is_none(), "an entry nobody waits for");
        let w = p.applied(0, 5, 2).expect("its waiter");
        assert_eq!((w.job, w.ops.as_slice(), w.term), (j, &[1][..], 2));
        p.fill(j, 1, b":1\r\n");
        assert!(finished(&mut p).is_empty(), "op 0 still waits");
        let w = p.applied(1, 7, 2).expect("its waiter");
        p.fill(w.job, 0, b"+OK\r\n");
        assert_eq!(finished(&mut p), [["+OK\r\n", ":1\r\n"]]);
        assert_eq!(p.jobs_open(), 0);
    }

    #[test]
    fn a_proposal_the_log_moved_past_is_answered_unknown_never_as_not_applied() {
        let now = Instant::now();
        let mut p = Pending::new(1);
        let a = admit(&mut p, 1);
        let b = admit(&mut p, 1);
        p.wait(0, 3, waiter(a, 0, 1, now));
        p.wait(0, 9, waiter(b, 0, 1, now));
        // A snapshot took the log to 8, then entry 9 applied.
        let w = p.applied(0, 9, 1).expect("b's waiter");
        assert_eq!(w.job, b);
        assert_eq!(finished(&mut p), [[format!("-{UNKNOWN}\r\n")]]);
    }

    #[test]
    fn a_replaced_proposal_and_a_timed_out_one_say_what_happened() {
        let t0 = Instant::now();
        let mut p = Pending::new(1);
        let a = admit(&mut p, 1);
        let b = admit(&mut p, 1);
        p.wait(0, 1, waiter(a, 0, 1, t0));
        p.wait(0, 2, waiter(b, 0, 1, t0 + Duration::from_secs(1)));
        // Another leader's entry (term 2) took a's index: not applied.
        assert!(p.applied(0, 1, 2).is_none());
        assert_eq!(finished(&mut p), [[format!("-{REPLACED}\r\n")]]);
        p.expire(t0 + T, T);
        assert!(finished(&mut p).is_empty(), "b is 4 s old");
        p.expire(t0 + T + Duration::from_secs(2), T);
        assert_eq!(finished(&mut p), [[format!("-{UNKNOWN}\r\n")]]);
    }

    /// Proposed at 10 and 11 in term 1, leadership lost, log cut back to 9, led again in term
    /// 3: a new proposal at 10. The jobs: (old at 10, old at 11, new at 10).
    fn reproposed() -> (Pending, u32, u32, u32) {
        let now = Instant::now();
        let mut p = Pending::new(1);
        let (old, old2, new) = (admit(&mut p, 1), admit(&mut p, 1), admit(&mut p, 1));
        p.wait(0, 10, waiter(old, 0, 1, now));
        p.wait(0, 11, waiter(old2, 0, 1, now));
        p.wait(0, 10, waiter(new, 0, 3, now));
        (p, old, old2, new)
    }

    #[test]
    fn a_proposal_at_an_index_reused_in_a_later_term_waits_for_that_index_to_decide() {
        // The old term-1 entry at 10 may still win (a later leader that has it commits it):
        // then the new proposal is the one replaced.
        let (mut p, old, _, _) = reproposed();
        let w = p.applied(0, 10, 1).expect("the term-1 proposal");
        assert_eq!(w.job, old);
        p.fill(old, 0, b"+OK\r\n");
        assert_eq!(
            finished(&mut p),
            [[format!("-{REPLACED}\r\n")], ["+OK\r\n".to_string()]],
            "the new proposal replaced, the old one applied"
        );
        assert!(p.applied(0, 11, 1).is_some(), "old2's entry");
        // Or the new one wins at 10: the old one is replaced, and the new one answered.
        let (mut p, _, _, new) = reproposed();
        let w = p.applied(0, 10, 3).expect("the term-3 proposal");
        assert_eq!(w.job, new);
        assert!(p.applied(0, 11, 3).is_none(), "11 went to term 3 too");
        assert_eq!(p.jobs_open(), 1, "only the new job is left");
    }

    #[test]
    fn an_entry_answering_several_ops_fills_each_and_a_blocking_try_lost_is_reported() {
        let now = Instant::now();
        let mut p = Pending::new(1);
        let j = admit(&mut p, 3);
        let mut ops = OpList::One(0);
        ops.push(2);
        p.wait(
            0,
            1,
            Waiter {
                job: j,
                ops,
                term: 1,
                since: now,
                block: None,
                held: false,
            },
        );
        p.wait(
            0,
            2,
            Waiter {
                job: j,
                ops: OpList::One(1),
                term: 1,
                since: now,
                block: Some(44),
                held: false,
            },
        );
        let w = p.applied(0, 1, 1).expect("first entry");
        assert_eq!(w.ops.as_slice(), [0, 2]);
        p.fill(j, 0, b"+a\r\n");
        p.fill(j, 2, b"+c\r\n");
        p.drop_group(0);
        assert_eq!(p.take_lost_blocks(), [44]);
        assert_eq!(
            finished(&mut p),
            [[
                "+a\r\n".to_string(),
                format!("-{UNKNOWN}\r\n"),
                "+c\r\n".into()
            ]]
        );
    }

    #[test]
    fn replies_held_until_durable_go_out_when_the_log_reaches_their_sequence_and_not_before() {
        let mut p = Pending::new(1);
        let (a, b) = (admit(&mut p, 2), admit(&mut p, 1));
        for (j, ops) in [(a, 2), (b, 1)] {
            let mut job = p.jobs[j as usize].take().expect("live");
            for op in 0..ops {
                job.write(op, true, |o| o.simple(&format!("r{j}{op}")));
            }
            p.jobs[j as usize] = Some(job);
        }
        p.hold_until_durable(a, 0, 4);
        p.hold_until_durable(a, 1, 5);
        p.hold_until_durable(b, 0, 5);
        p.durable(3);
        assert!(
            finished(&mut p).is_empty(),
            "nothing written up to their entries yet"
        );
        p.durable(4);
        assert!(
            finished(&mut p).is_empty(),
            "job a still waits for its second op"
        );
        p.durable(6);
        assert_eq!(
            finished(&mut p),
            vec![
                vec![format!("+r{a}0\r\n"), format!("+r{a}1\r\n")],
                vec![format!("+r{b}0\r\n")]
            ]
        );
        p.durable(9);
        assert!(finished(&mut p).is_empty(), "each released once");
    }

    #[test]
    fn reads_are_released_by_their_round_and_refused_or_lost_ones_are_not_served() {
        let now = Instant::now();
        let mut p = Pending::new(2);
        let j = admit(&mut p, 3);
        let mut job = p.jobs[j as usize].take().expect("live");
        for op in 0..3 {
            job.write(op, true, |o| o.buf.extend_from_slice(b"$1\r\nv\r\n"));
        }
        p.jobs[j as usize] = Some(job);
        p.queue_read(
            0,
            ReadOp {
                job: j,
                op: 0,
                slot: 10,
            },
        );
        p.queue_read(
            0,
            ReadOp {
                job: j,
                op: 1,
                slot: 11,
            },
        );
        p.queue_read(
            1,
            ReadOp {
                job: j,
                op: 2,
                slot: 12,
            },
        );
        let mut round = 0;
        p.start_round(
            0,
            now,
            |id| {
                round = id;
                Ok::<(), ()>(())
            },
            |_, _| unreachable!(),
        );
        p.start_round(
            1,
            now,
            |_| Err(7u64),
            |slot, leader| format!("MOVED {slot} node{leader}"),
        );
        p.start_round(
            1,
            now,
            |_| -> Result<(), ()> { panic!("nothing queued") },
            |_, _| String::new(),
        );
        assert!(
            finished(&mut p).is_empty(),
            "ops 0 and 1 wait for their round"
        );
        p.round_confirmed(round);
        assert_eq!(
            finished(&mut p),
            [["$1\r\nv\r\n", "$1\r\nv\r\n", "-MOVED 12 node7\r\n"]]
        );

        // A round nobody confirms: lost at its timeout, with the read's reply replaced.
        let k = admit(&mut p, 1);
        let mut job = p.jobs[k as usize].take().expect("live");
        job.write(0, true, |o| o.buf.extend_from_slice(b"$1\r\nv\r\n"));
        p.jobs[k as usize] = Some(job);
        p.queue_read(
            0,
            ReadOp {
                job: k,
                op: 0,
                slot: 1,
            },
        );
        p.start_round(0, now, |_| Ok::<(), ()>(()), |_, _| String::new());
        p.expire(now + T, T);
        assert!(finished(&mut p).is_empty());
        p.expire(now + T + Duration::from_millis(1), T);
        assert_eq!(finished(&mut p), [[format!("-{READ_LOST}\r\n")]]);
    }

    #[test]
    fn a_dropped_replica_answers_its_queued_reads_instead_of_leaving_them_hanging() {
        let now = Instant::now();
        let mut p = Pending::new(1);
        let j = admit(&mut p, 1);
        let mut job = p.jobs[j as usize].take().expect("live");
        job.write(0, true, |o| o.buf.extend_from_slice(b"$1\r\nv\r\n"));
        p.jobs[j as usize] = Some(job);
        p.queue_read(
            0,
            ReadOp {
                job: j,
                op: 0,
                slot: 1,
            },
        );
        p.drop_group(0);
        assert_eq!(finished(&mut p), [[format!("-{READ_LOST}\r\n")]]);
        p.start_round(
            0,
            now,
            |_| -> Result<(), ()> { panic!("nothing queued") },
            |_, _| String::new(),
        );
    }

    #[test]
    fn a_flush_over_several_entries_answers_once_and_partial_failure_says_so() {
        let now = Instant::now();
        let mut p = Pending::new(2);
        let mut job = PendingJob::new(0, 1, Proto::Resp2, 1);
        job.expect_parts(0, 2, "TRYAGAIN partly flushed");
        let j = p.admit(job).expect("waits");
        p.wait(0, 1, waiter(j, 0, 1, now));
        p.wait(1, 1, waiter(j, 0, 1, now));
        let w = p.applied(0, 1, 1).expect("first");
        p.fill(w.job, 0, b"+OK\r\n");
        assert!(finished(&mut p).is_empty());
        assert!(p.applied(1, 1, 2).is_none(), "replaced");
        assert_eq!(finished(&mut p), [["-TRYAGAIN partly flushed\r\n"]]);
    }
}
