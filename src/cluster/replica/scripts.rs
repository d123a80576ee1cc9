//! Scripts on vShards with replicas on other nodes (issue 18, step 3; design in
//! `docs/design/scripting.md`, "Replication: effects, never the script").
//!
//! A script (EVAL and its family, FCALL) whose keys are in one such vShard runs on its leader
//! once the group is *settled*: nothing proposed there is unapplied, so the script reads every
//! entry ordered before it and nothing can be ordered between what it read and its effects.
//! Until then it waits here (`ScriptWait`), and the jobs that arrive for that vShard wait
//! behind it (`gates`), so a busy vShard cannot starve it. It runs on the keyspace with its
//! written keys copied first and put back after (`script::Isolation`): nothing it did shows
//! before its effects (the values of the keys it wrote, `direct::effects`) are proposed as one
//! entry and applied like any other, on every replica; its reply is held until then. A script
//! that wrote nothing is a read: its reply waits for a read-index round. Leadership lost before
//! the entry commits means nothing happened (the copy is all that changed, and it was undone).

use super::*;
use shardline_shards::rng::Rng;
use shardline_shards::script::Isolation;

/// How long a script may wait for its vShard to settle before it is refused (nothing ran).
const SETTLE_MAX: Duration = Duration::from_secs(5);

const UNSETTLED: &str = "TRYAGAIN the script's vShard did not settle in time (entries kept arriving or a quorum was missing); it did not run, retry";

/// A script waiting for its vShard to settle: its job and op, the vShard and a slot of it, its
/// command's words, and since when.
pub(crate) struct ScriptWait {
    job: u32,
    op: u32,
    v: u32,
    slot: Slot,
    words: Vec<Vec<u8>>,
    since: Instant,
    /// The ACL user it runs for (`acl::set_caller`), taken when it was deferred.
    caller: Option<std::sync::Arc<shardline_shards::acl::User>>,
}

impl ScriptWait {
    pub(super) fn new(
        (job, op): (u32, u32),
        (v, slot): (u32, Slot),
        words: Vec<Vec<u8>>,
        since: Instant,
    ) -> ScriptWait {
        ScriptWait {
            job,
            op,
            v,
            slot,
            words,
            since,
            caller: shardline_shards::acl::caller(),
        }
    }
}

impl Replicas {
    /// Whether a script waits on vShard `v` (new jobs on it wait behind).
    fn gated(&self, v: u32) -> bool {
        self.script_waits.iter().any(|w| w.v == v)
    }

    /// Whether `job` has an op other than a script on a key of a vShard a script waits on:
    /// it waits behind it (`script_deferred`), so the vShard settles.
    pub(crate) fn script_gates(&self, job: &Job) -> bool {
        if self.script_waits.is_empty() {
            return false;
        }
        let layout = self.c.layout;
        let gated = |f: u32, l: u32| {
            let args = Args::new(&job.buf, &job.spans[f as usize..(f + l) as usize]);
            let Some(spec) = command::lookup(args.get(0)) else {
                return false;
            };
            // (A script queues behind those waiting there: they run as one batch.)
            !super::propose::is_script(spec)
                && spec.arity_ok(args.len())
                && spec.keys_of(args).any(|k| {
                    let v = layout.vshard_of(shardline_shards::slot::key_slot(args.get(k)));
                    self.gated(v.0 as u32)
                })
        };
        job.ops.iter().any(|op| match op {
            Op::Cmd { first, len, .. } | Op::Block { first, len } | Op::Local { first, len } => {
                gated(*first, *len)
            }
            Op::Exec { cmds, .. } => cmds.iter().any(|&(f, l)| gated(f, l)),
            _ => false,
        })
    }

    /// Whether group `v` leads here with nothing proposed that is not applied (and has
    /// committed in its own term: its state holds everything acknowledged).
    fn settled(&self, v: u32) -> bool {
        let applied = self.applied[v as usize].index;
        self.groups[v as usize]
            .as_ref()
            .is_some_and(|g| g.can_read_at(applied) && g.last_index() == applied)
    }

    /// A script of job `w.job` for replicated vShard `w.v`: run now if the vShard has settled
    /// and no script waits there before it, else queued.
    pub(super) fn start_script(&mut self, db: &mut Db, w: ScriptWait, now: Now, seed: u64) {
        let _caller = shardline_shards::acl::set_caller(w.caller.clone());
        if !self.gated(w.v) && self.settled(w.v) {
            let v = w.v;
            let left = self.run_batch(db, v, vec![w], now, seed);
            self.script_waits.extend(left);
            return;
        }
        self.script_waits.push_back(w);
    }

    /// Runs the waiting scripts whose vShards settled (each vShard's in arrival order, as one
    /// batch); refuses those whose vShard is no longer led here or that waited too long.
    /// Whether any ended (the jobs waiting behind them may go).
    pub(crate) fn run_waiting_scripts(&mut self, db: &mut Db, now: Now, seed: u64) -> bool {
        let mut ended = false;
        let waits = std::mem::take(&mut self.script_waits);
        let mut batches: Vec<(u32, Vec<ScriptWait>)> = Vec::new();
        for w in waits {
            let v = w.v;
            let leads = self.groups[v as usize]
                .as_ref()
                .is_some_and(|g| g.role() == raft::Role::Leader);
            let refusal = if !leads {
                let leader = self.groups[v as usize].as_ref().and_then(|g| g.leader());
                Some(self.c.redirect(w.slot, leader))
            } else if now.mono.duration_since(w.since) > SETTLE_MAX {
                Some(UNSETTLED.to_string())
            } else {
                None
            };
            if let Some(msg) = refusal {
                self.pending.fail(w.job, w.op, &msg);
                ended = true;
            } else if !self.settled(v) {
                self.script_waits.push_back(w);
            } else {
                match batches.iter_mut().find(|(b, _)| *b == v) {
                    Some((_, batch)) => batch.push(w),
                    None => batches.push((v, vec![w])),
                }
            }
        }
        for (k, (v, batch)) in batches.into_iter().enumerate() {
            let left = self.run_batch(db, v, batch, now, seed.wrapping_add(k as u64));
            // Scripts that must wait for the batch's effects go first next time.
            for w in left.into_iter().rev() {
                self.script_waits.push_front(w);
            }
            ended = true;
        }
        ended
    }

    /// Runs `batch` (scripts of settled group `v`, in order) on its keyspace in isolation,
    /// each seeing those before it, then undoes them all; each script's reply is held and
    /// its effects proposed as an entry of its own, in order, nothing between them. A script
    /// that wrote nothing is a read: it is answered after a read-index round if it ran first,
    /// else (it saw effects not yet committed) it is handed back to run again once they are;
    /// so is every script after it.
    fn run_batch(
        &mut self,
        db: &mut Db,
        v: u32,
        batch: Vec<ScriptWait>,
        now: Now,
        seed: u64,
    ) -> Vec<ScriptWait> {
        let now_us = self.direct_clock(v, now.unix_us);
        let mut iso = Isolation::new(Some(VShardId(v as u16)));
        let mut done: Vec<(ScriptWait, Option<Encoder>)> = Vec::new();
        let mut left = Vec::new();
        for (k, w) in batch.into_iter().enumerate() {
            if !left.is_empty() {
                left.push(w);
                continue;
            }
            let Some(proto) = self.pending.job(w.job).map(|j| j.proto) else {
                continue; // The connection went away.
            };
            let (mut buf, mut spans) = (Vec::new(), Vec::new());
            command::words_into(&w.words, &mut buf, &mut spans);
            let mut out = Out::new(proto);
            let seed = seed.wrapping_add(k as u64);
            db.scripts.isolation = Some(iso);
            let written = run_isolated(db, Args::new(&buf, &spans), now_us, seed, &mut out);
            let keys: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
            let effects = super::direct::effects(db, &keys, now_us, seed);
            iso = db.scripts.isolation.take().expect("set for the run");
            let enc = effects.into_iter().next().map(|(_, enc)| enc);
            if enc.is_none() && !done.is_empty() {
                left.push(w);
                continue;
            }
            self.pending.fill_held(w.job, w.op, &out.buf);
            done.push((w, enc));
        }
        iso.undo(db);
        for (w, enc) in done {
            self.propose_effects(w, enc, now.mono);
        }
        left
    }

    /// Proposes a script's effects (its reply held until they apply), or for one that wrote
    /// nothing, queues its read-index round.
    fn propose_effects(&mut self, w: ScriptWait, enc: Option<Encoder>, now: Instant) {
        let Some(enc) = enc else {
            let r = ReadOp {
                job: w.job,
                op: w.op,
                slot: w.slot,
            };
            self.pending.queue_read(w.v, r);
            return self.touch(w.v);
        };
        self.undirect();
        let proposed = match self.groups[w.v as usize].as_mut() {
            Some(g) => g.propose(enc.finish()).map(|index| (index, g.term())),
            None => Err(raft::NotLeader { leader: None }),
        };
        match proposed {
            Ok((index, term)) => {
                let waiter = Waiter {
                    job: w.job,
                    ops: OpList::One(w.op),
                    term,
                    since: now,
                    block: None,
                    held: true,
                };
                self.pending.wait(w.v, index, waiter);
                self.touch(w.v);
            }
            Err(e) => {
                let msg = self.c.redirect(w.slot, e.leader);
                self.pending.fail(w.job, w.op, &msg);
            }
        }
    }
}

/// Runs script command `args` on `db` under the isolation set in `db.scripts`, with the
/// events it made dropped (its effects make theirs when they apply): the keys it wrote. The
/// isolation stays set; the caller undoes it once it has read their values.
pub(super) fn run_isolated(
    db: &mut Db,
    args: Args,
    now_us: u64,
    seed: u64,
    out: &mut Out,
) -> Vec<Vec<u8>> {
    debug_assert!(db.scripts.isolation.is_some());
    let (events, touched) = (db.events.len(), db.touched.len());
    let mut rng = Rng::new(seed);
    let mut ctx = command::Ctx {
        now_ms: now_us / 1000,
        now_us,
        rng: &mut rng,
    };
    command::execute(db, args, &mut ctx, out);
    db.events.truncate(events);
    db.touched.truncate(touched);
    std::mem::take(&mut db.scripts.written)
}

impl Shard {
    /// After a step: the scripts whose vShards settled run; if any ended, the jobs that waited
    /// behind them run again (those still gated wait again).
    pub(super) fn run_script_waits(&self) {
        let jobs = self.with_replicas(|r| {
            if r.script_waits.is_empty() && r.script_deferred.is_empty() {
                return std::collections::VecDeque::new();
            }
            let seed = self.rng.borrow_mut().next_u64();
            let now = Now {
                mono: Instant::now(),
                unix_us: unix_now_us(),
            };
            let ended = r.run_waiting_scripts(&mut self.db.borrow_mut(), now, seed);
            self.deliver_finished(r);
            if ended || r.script_waits.is_empty() {
                std::mem::take(&mut r.script_deferred)
            } else {
                std::collections::VecDeque::new()
            }
        });
        for job in jobs {
            self.run_job_replicated(job);
        }
    }
}
