//! The proposing side of a shard thread's replicas: a connection's job becomes log entries (one
//! per vShard per job, in request order) and read-index reads; the leader's expiry cycle becomes
//! expiry-check entries.

use super::direct::{DirectEntry, over_maxmemory, touch_watches};
use super::*;
use shardline_shards::calvin::seq::TxnId;
use shardline_shards::rng::Rng;

/// Whether `spec` runs a script (EVAL and its family, FCALL and FCALL_RO): its effects are
/// logged, not itself.
pub(crate) fn is_script(spec: &command::CommandSpec) -> bool {
    matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// A transaction across vShards of a job: its commands' words, whether a MULTI/EXEC and
/// whether a blocking command, its WATCHes, and its op.
type PlannedTxn = (
    shardline_shards::calvin::exec::Cmds,
    (bool, bool),
    Option<crate::hop::Watched>,
    u32,
);

/// A connection's job planned against this thread's replicas (`Replicas::plan_job`): what to
/// propose, read and wait for. Ops answered at once are in `pj` already.
pub(crate) struct Plan {
    pj: PendingJob,
    /// (vShard, first op's slot, entry, ops, run already when the group is direct)
    entries: Vec<(u32, Slot, Encoder, OpList, Option<DirectEntry>)>,
    /// Ops run at once on direct groups: their replies are held until the log holds what
    /// they wrote or may have read (`direct.rs`).
    held: Vec<u32>,
    /// vShards this job put an entry of the usual kind in (a flush): not direct for the
    /// rest of the job, whose later ops must apply after it.
    undirect: Vec<u32>,
    /// Ops across vShards planned (`plan_across`): their entries carry the op's number.
    units: u32,
    /// (vShard, slot, op): reads held in `pj` until their round confirms the leadership.
    reads: Vec<(u32, Slot, u32)>,
    /// (metadata command, op): CLUSTER JOIN, on thread 0.
    metas: Vec<(Vec<u8>, u32)>,
    /// A blocking command (the job's last op), tried once proposed.
    block: Option<PlannedBlock>,
    /// The blocking commands this job ends: `(origin, token)` of each.
    unblocks: Vec<(usize, crate::hop::Token)>,
    /// SAVE/BGSAVE/BGREWRITEAOF's op (`Op::Persist`), answered once the next batch is fsynced.
    persist: Option<(u32, bool)>,
    /// Transactions across vShards (`Op::Txn`): their commands' words, whether a MULTI/EXEC,
    /// its WATCHes, and the op.
    txns: Vec<PlannedTxn>,
    /// WATCHes registered on other nodes (`Op::WatchAt`): the key, the transaction id and
    /// node, the connection's flag, and the op.
    watch_at: Vec<PlannedWatch>,
    /// WATCHes elsewhere dropped (`Op::Unwatch`).
    unwatch: Vec<(TxnId, Vec<crate::hop::WatchedKey>)>,
    /// Scripts for vShards with replicas elsewhere: (op, vShard and slot, command), run or
    /// queued once the job's entries are proposed (`scripts.rs`).
    scripts: Vec<PlannedScript>,
    /// Commands run at once that answered an error (INFO commandstats `failed_calls`), by
    /// their index in the command table.
    pub(crate) failed: Vec<usize>,
}

/// A script for a replicated vShard: its op, the vShard and a slot of it, its command's words.
type PlannedScript = (u32, (u32, Slot), Vec<Vec<u8>>);

/// A WATCH to register on another node: (key, transaction id, node), the flag, the op.
type PlannedWatch = (
    (Vec<u8>, TxnId, NodeId),
    Arc<std::sync::atomic::AtomicBool>,
    u32,
);

/// A job's blocking command: its op, its (first) vShard and slot, its copy, and the vShards
/// of its keys when they are several direct groups (tried at once, `blocked.rs`).
type PlannedBlock = (u32, (u32, Slot), crate::shard::Parked, Option<Vec<u32>>);

/// One op of a job being planned: the job, the op, its number and its commands' spans.
#[derive(Clone, Copy)]
struct OpAt<'a> {
    job: &'a Job,
    op: &'a Op,
    i: u32,
    cmds: &'a [(u32, u32)],
    /// The op may grow memory: under `maxmemory`, or room was made (`evict_for`).
    room: bool,
}

impl<'a> OpAt<'a> {
    /// The words of command `c` (a `(first span, count)` of the job).
    fn args(&self, &(f, l): &(u32, u32)) -> Args<'a> {
        Args::new(&self.job.buf, &self.job.spans[f as usize..(f + l) as usize])
    }

    fn is_exec(&self) -> bool {
        matches!(self.op, Op::Exec { .. })
    }
}

impl Shard {
    /// A job of a replicated node: commands on keys become log entries of their vShard (one
    /// entry per vShard per job, in request order); other ops run here at once. The replies go
    /// back when the entries are applied.
    pub fn run_job_replicated(&self, job: Job) {
        let _caller = shardline_shards::acl::set_caller(job.user.clone());
        let job = {
            let mut guard = self.repl.borrow_mut();
            let r = guard.as_mut().expect("replicated");
            if r.script_gates(&job) {
                // A script waits for a vShard of it to settle (`scripts.rs`): behind it.
                r.script_deferred.push_back(job);
                return;
            }
            if r.calvin_blocks(&job) {
                // Keys a transaction holds: run once it executed (`calvin/`), before those
                // delivered after it (its place in the keys' queues).
                let mut job = job;
                r.calvin_place(&mut job);
                r.calvin.deferred.push_back(job);
                self.node
                    .cluster
                    .calvin
                    .deferred
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            job
        };
        self.sync_tunables();
        self.check_reset();
        let now = Now {
            mono: Instant::now(),
            unix_us: unix_now_us(),
        };
        let seed = self.rng.borrow_mut().next_u64();
        let plan = {
            // Shared: a local op (INFO's figures) reads the replicas too.
            let repl = self.repl.borrow();
            let r = repl.as_ref().expect("replicated");
            r.plan_job(
                &mut self.db.borrow_mut(),
                &job,
                now,
                seed,
                &mut |db, op, out| self.run_op_in(db, op, &job.buf, &job.spans, now.unix_us, out),
            )
        };
        if !plan.failed.is_empty() {
            let mut stats = self.cmd_stats.borrow_mut();
            for &i in &plan.failed {
                stats[i].failed += 1;
            }
        }
        self.with_replicas(|r| {
            r.submit(&mut self.db.borrow_mut(), plan, now, seed);
            r.calvin_ran(&job);
            self.deliver_finished(r);
        });
        self.after_writes();
    }
}

impl Replicas {
    /// Plans `job` (see `Plan`): each op in order is checked (keys in one vShard led here,
    /// memory), a write becomes part of its vShard's entry, a read on a leader that may serve
    /// it runs now and waits for a read-index round, anything else runs now through `local`.
    pub(crate) fn plan_job(
        &self,
        db: &mut Db,
        job: &Job,
        now: Now,
        seed: u64,
        local: &mut dyn FnMut(&mut Db, &Op, &mut Out),
    ) -> Plan {
        let mut p = Plan {
            pj: PendingJob::new(job.origin, job.token, job.proto, job.ops.len()),
            entries: Vec::new(),
            held: Vec::new(),
            undirect: Vec::new(),
            units: 0,
            reads: Vec::new(),
            metas: Vec::new(),
            block: None,
            unblocks: Vec::new(),
            persist: None,
            txns: Vec::new(),
            watch_at: Vec::new(),
            unwatch: Vec::new(),
            scripts: Vec::new(),
            failed: Vec::new(),
        };
        let now_us = now.unix_us;
        let c = &*self.c;
        for (i, op) in job.ops.iter().enumerate() {
            let i = i as u32;
            let pj = &mut p.pj;
            match op {
                Op::Meta(cmd) => {
                    p.metas.push((cmd.clone(), i));
                    continue;
                }
                Op::Cmd {
                    first,
                    len,
                    spec: Some(spec),
                } if is_script(spec) => {
                    let cmds = [(*first, *len)];
                    let at = OpAt {
                        job,
                        op,
                        i,
                        cmds: &cmds,
                        room: true,
                    };
                    self.plan_script(&mut p, db, at, (now_us, seed));
                    continue;
                }
                Op::Block { first, len } => {
                    let cmds = [(*first, *len)];
                    let args = Args::new(
                        &job.buf,
                        &job.spans[*first as usize..(*first + *len) as usize],
                    );
                    match plan_entry(c, db, &job.buf, &job.spans, &cmds, false) {
                        Err(msg) if msg == route::CROSSSLOT => {
                            // Keys of several vShards: waited on at once if they are all
                            // direct groups of this thread (`blocked.rs`, `try_across`).
                            let mut vs = Vec::new();
                            if let Some(spec) = command::lookup(args.get(0)) {
                                super::direct::vshards_of(spec, args, c.layout, &mut vs);
                            }
                            vs.sort_unstable();
                            vs.dedup();
                            if !self.all_direct(&vs) || vs.iter().any(|v| p.undirect.contains(v)) {
                                let why = self.across_refusal(&vs);
                                p.pj.write(i, false, |o| o.error(why));
                            } else {
                                let slot = c.layout.slot_range(VShardId(vs[0] as u16)).start;
                                let cmd = crate::shard::Parked::new(db, args, now_us / 1000);
                                p.block = Some((i, (vs[0], slot), cmd, Some(vs)));
                            }
                        }
                        Err(msg) => pj.write(i, false, |o| o.error(&msg)),
                        Ok(None) => {
                            pj.write(i, false, |o| o.error("ERR a blocking command without keys"))
                        }
                        Ok(Some(at)) => {
                            let cmd = crate::shard::Parked::new(db, args, now_us / 1000);
                            p.block = Some((i, at, cmd, None));
                        }
                    }
                    continue;
                }
                Op::Unblock { origin, token } => {
                    p.unblocks.push((*origin, *token));
                    pj.write(i, false, |o| o.ok());
                    continue;
                }
                Op::Persist { rewrite } => {
                    pj.write(i, true, |o| o.ok());
                    p.persist = Some((i, *rewrite));
                    continue;
                }
                Op::Txn {
                    cmds,
                    exec,
                    watch,
                    block,
                } => {
                    let words = cmds
                        .iter()
                        .map(|&(f, l)| {
                            job.spans[f as usize..(f + l) as usize]
                                .iter()
                                .map(|&(s, e)| job.buf[s as usize..e as usize].to_vec())
                                .collect()
                        })
                        .collect();
                    let watch = watch.as_ref().map(|w| crate::hop::Watched {
                        keys: w.keys.clone(),
                        flag: w.flag.clone(),
                        id: w.id,
                    });
                    p.txns.push((words, (*exec, *block), watch, i));
                    continue;
                }
                Op::WatchAt {
                    first,
                    id,
                    node,
                    flag,
                } => {
                    let (s, e) = job.spans[*first as usize];
                    let key = job.buf[s as usize..e as usize].to_vec();
                    p.watch_at.push(((key, *id, *node), flag.clone(), i));
                    continue;
                }
                Op::Unwatch { id, keys } => {
                    p.unwatch.push((*id, keys.clone()));
                    pj.write(i, false, |o| o.ok());
                    continue;
                }
                _ => {}
            }
            if let Op::Cmd {
                first,
                len,
                spec: Some(spec),
            } = op
                && is_flush(spec)
            {
                // FLUSHALL / FLUSHDB, as on a Redis Cluster node: the keys of what this node
                // leads. One entry per vShard led on this thread; OK once all are applied.
                let args = Args::new(
                    &job.buf,
                    &job.spans[*first as usize..(*first + *len) as usize],
                );
                if let Some(err) = flush_args_error(args) {
                    pj.write(i, false, |o| o.error(err));
                    continue;
                }
                let led = self.led_vshards();
                if led.is_empty() {
                    pj.write(i, false, |o| o.ok());
                    continue;
                }
                // Always counted, so any failure answers FLUSH_PARTIAL (never an error that
                // would claim nothing was flushed).
                pj.expect_parts(i, led.len() as u32, FLUSH_PARTIAL);
                for v in led {
                    p.undirect.push(v);
                    let slot = c.layout.slot_range(VShardId(v as u16)).start;
                    p.entries.push((
                        v,
                        slot,
                        Encoder::flush(v as u16, now_us),
                        OpList::One(i),
                        None,
                    ));
                }
                continue;
            }
            let one;
            let cmds: &[(u32, u32)] = match op {
                Op::Cmd { first, len, .. } => {
                    one = [(*first, *len)];
                    &one
                }
                Op::Exec { cmds, watch } => {
                    if watch
                        .as_ref()
                        .is_some_and(|w| w.load(std::sync::atomic::Ordering::Acquire))
                    {
                        pj.write(i, false, |o| o.null_array());
                        continue;
                    }
                    cmds
                }
                _ => {
                    pj.write(i, false, |o| local(db, op, o));
                    continue;
                }
            };
            let room = db.tunables.maxmemory == 0
                || self.evict_for(&mut p, db, job, cmds, i, (now_us, seed));
            let planned = plan_entry(c, db, &job.buf, &job.spans, cmds, room);
            if let Ok(Some((v, _))) = planned {
                // The rebalancer's load (`load.rs`): a read counts, a write its bytes too.
                let read =
                    matches!(op, Op::Cmd { spec: Some(s), .. } if s.flags & flags::WRITE == 0);
                let bytes = match read {
                    true => 0,
                    false => cmds
                        .iter()
                        .map(|&(f, l)| {
                            super::load::words_bytes(&job.spans[f as usize..(f + l) as usize])
                        })
                        .sum(),
                };
                self.meter.count(v, bytes);
            }
            match planned {
                Err(msg) if msg == route::CROSSSLOT => {
                    let at = OpAt {
                        job,
                        op,
                        i,
                        cmds,
                        room,
                    };
                    self.plan_across(&mut p, db, at, (now_us, seed));
                }
                Err(msg) => p.pj.write(i, false, |o| o.error(&msg)),
                Ok(None) => {
                    // No keys at all (MULTI PING EXEC): nothing replicated to decide.
                    p.pj.write(i, false, |o| local(db, op, o));
                }
                Ok(Some((v, slot))) if self.is_direct(v) && !p.undirect.contains(&v) => {
                    let at = OpAt {
                        job,
                        op,
                        i,
                        cmds,
                        room,
                    };
                    self.plan_direct(&mut p, db, at, (v, slot), (now_us, seed));
                }
                Ok(Some((v, slot)))
                    if matches!(op, Op::Cmd { spec: Some(s), .. }
                        if s.flags & flags::WRITE == 0 && s.flags & flags::READONLY != 0)
                        && !p.entries.iter().any(|e| e.0 == v)
                        && self.can_read_now(v) =>
                {
                    // A read with no write of this job before it on its vShard, on a leader
                    // that has applied all it committed: run now (so it sees neither this job's
                    // later writes nor anything uncommitted), answered once a read-index round
                    // confirms the leadership. (A read after such a write rides in the write's
                    // entry, to see it.)
                    let (first, len) = cmds[0];
                    let t = self.meter.start();
                    p.pj.write(i, true, |o| local(db, &Op::Local { first, len }, o));
                    self.meter.ran(v, t);
                    p.reads.push((v, slot, i));
                }
                Ok(Some((v, slot))) => {
                    let kind = if matches!(op, Op::Exec { .. }) {
                        Kind::Transaction
                    } else {
                        Kind::Commands
                    };
                    // Commands of one vShard share an entry; a transaction is an entry of its
                    // own.
                    let entries = &mut p.entries;
                    let at = entry_for(entries, v, slot, kind, i, (now_us, seed), None);
                    for &(f, l) in cmds {
                        let spans = &job.spans[f as usize..(f + l) as usize];
                        entries[at]
                            .2
                            .push(spans.iter().map(|&(s, e)| &job.buf[s as usize..e as usize]));
                    }
                }
            }
        }
        p
    }

    /// Before op `at` on a node over `maxmemory`: evicts from this thread's direct groups
    /// (`evict_direct`), each eviction a `DEL` in its group's entry of this job, so the log
    /// keeps it in order with the job's writes before and after it.
    fn evict_for(
        &self,
        p: &mut Plan,
        db: &mut Db,
        job: &Job,
        cmds: &[(u32, u32)],
        i: u32,
        (now_us, seed): (u64, u64),
    ) -> bool {
        let mut room = true;
        for &(f, l) in cmds {
            let args = Args::new(&job.buf, &job.spans[f as usize..(f + l) as usize]);
            let Some(spec) = command::lookup(args.get(0)) else {
                continue;
            };
            let (entries, undirect) = (&mut p.entries, &p.undirect);
            room &= self.evict_direct(db, spec, now_us / 1000, undirect, &mut |v, key| {
                let slot = self.c.layout.slot_range(VShardId(v as u16)).start;
                let now = self.direct_clock(v, now_us);
                let direct = DirectEntry {
                    rng: Rng::new(seed),
                    now_us: now,
                    unit: None,
                };
                let kind = Kind::Commands;
                let e = entry_for(entries, v, slot, kind, i, (now, seed), Some(direct));
                entries[e].2.push([&b"DEL"[..], &key[..]].into_iter());
            });
        }
        room
    }

    /// Op `i` (commands `cmds`) whose keys span vShards: if they are all direct groups of
    /// this thread, run now and each vShard's effects begin an entry of its own, the entries
    /// marked as one unit (one log record); its reply held as any direct op's. Else it is
    /// answered with why not (nothing applied).
    fn plan_across(&self, p: &mut Plan, db: &mut Db, at: OpAt, (now_us, seed): (u64, u64)) {
        let (i, cmds) = (at.i, at.cmds);
        let args = |c: &(u32, u32)| at.args(c);
        let specs: Vec<_> = cmds
            .iter()
            .filter_map(|c| Some((command::lookup(args(c).get(0))?, args(c))))
            .collect();
        let mut vshards = Vec::new();
        for &(spec, a) in &specs {
            super::direct::vshards_of(spec, a, self.c.layout, &mut vshards);
        }
        vshards.sort_unstable();
        vshards.dedup();
        let why = if vshards.iter().any(|v| p.undirect.contains(v)) {
            Some(route::CROSSSLOT)
        } else if !self.all_direct(&vshards) {
            Some(self.across_refusal(&vshards))
        } else if !at.room {
            Some(OOM)
        } else {
            None
        };
        if let Some(why) = why {
            return p.pj.write(i, false, |o| o.error(why));
        }
        let now = vshards.iter().fold(now_us, |t, &v| self.direct_clock(v, t));
        // The unit's vShards' entries of this job so far are before it in the log, as they
        // ran before it; what follows it on them joins the entries its effects begin.
        let unit = p.units;
        p.units += 1;
        let exec = at.is_exec();
        let mut written = Vec::new();
        for &(spec, a) in &specs {
            touch_watches(db, spec, a);
        }
        p.pj.write(i, true, |o| {
            super::direct::run_cmds_across(
                db,
                cmds.iter().map(args),
                exec,
                now,
                seed,
                o,
                &mut written,
            )
        });
        self.plan_effects(p, db, &written, (i, unit), (now, seed));
    }

    /// EVAL and its family, FCALL (issue 18). While every group of this thread is a group of
    /// one (a node alone): run at once, the keys the script wrote logged as its effects in one
    /// unit (never the script), its reply held until the log holds them. Else by its declared
    /// keys: none, run at once touching no key; one vShard, led here, run once that vShard
    /// has settled, after this job's earlier entries (`scripts.rs`); several, a Calvin
    /// transaction (step 6: each participant's leader runs it and logs its effects).
    fn plan_script(&self, p: &mut Plan, db: &mut Db, at: OpAt, (now_us, seed): (u64, u64)) {
        let i = at.i;
        let now = match self.thread_direct_clock(now_us) {
            Ok(now) => now,
            Err(why) if why == super::direct::SCRIPTS_ALONE => {
                return self.plan_replicated_script(p, db, at, (now_us, seed));
            }
            Err(why) => return p.pj.write(i, false, |o| o.error(why)),
        };
        let unit = p.units;
        p.units += 1;
        let args = at.args(&at.cmds[0]);
        p.pj.write(i, true, |o| {
            let mut rng = Rng::new(seed);
            let mut ctx = command::Ctx {
                now_ms: now / 1000,
                now_us: now,
                rng: &mut rng,
            };
            command::execute(db, args, &mut ctx, o);
        });
        let written = std::mem::take(&mut db.scripts.written);
        let keys: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
        self.plan_effects(p, db, &keys, (i, unit), (now, seed));
        db.scripts.written = written;
    }

    /// Op `i` ran at once on direct groups and wrote `written`: their values afterwards go in
    /// an entry per vShard, all of unit `unit` (one log record), and its reply waits for them.
    fn plan_effects(
        &self,
        p: &mut Plan,
        db: &mut Db,
        written: &[&[u8]],
        (i, unit): (u32, u32),
        (now, seed): (u64, u64),
    ) {
        for (v, enc) in super::direct::effects(db, written, now, seed) {
            let slot = self.c.layout.slot_range(VShardId(v as u16)).start;
            p.entries.push((
                v,
                slot,
                enc,
                OpList::One(i),
                Some(DirectEntry {
                    rng: Rng::new(seed),
                    now_us: now,
                    unit: Some(unit),
                }),
            ));
        }
        p.held.push(i);
    }

    /// A script on a thread whose groups have replicas elsewhere (`plan_script`).
    fn plan_replicated_script(
        &self,
        p: &mut Plan,
        db: &mut Db,
        at: OpAt,
        (now_us, seed): (u64, u64),
    ) {
        let i = at.i;
        let args = at.args(&at.cmds[0]);
        let Some(spec) = command::lookup(args.get(0)) else {
            return;
        };
        let layout = self.c.layout;
        let mut vs = Vec::new();
        super::direct::vshards_of(spec, args, layout, &mut vs);
        vs.sort_unstable();
        vs.dedup();
        match vs.as_slice() {
            [] => p.pj.write(i, false, |o| {
                db.scripts.isolation = Some(shardline_shards::script::Isolation::new(None));
                super::scripts::run_isolated(db, args, now_us, seed, o);
                if let Some(iso) = db.scripts.isolation.take() {
                    iso.undo(db);
                }
            }),
            &[v] => {
                let key = spec.keys_of(args).next().map(|k| args.get(k));
                let slot = key.map_or(0, shardline_shards::slot::key_slot);
                match self.groups[v as usize].as_ref() {
                    Some(g) if g.role() == raft::Role::Leader => {
                        p.scripts
                            .push((i, (v, slot), args.iter().map(<[u8]>::to_vec).collect()));
                    }
                    g => {
                        let msg = self.c.redirect(slot, g.and_then(|g| g.leader()));
                        p.pj.write(i, false, |o| o.error(&msg));
                    }
                }
            }
            // Keys in several vShards: a Calvin transaction (its effects logged by each
            // participant, `calvin::exec::run_script`).
            _ => p.txns.push((
                vec![args.iter().map(<[u8]>::to_vec).collect()],
                (false, false),
                None,
                i,
            )),
        }
    }

    /// Op `i` (commands `cmds`) on direct group `v`: run now with its entry's clock and seed
    /// (as a replay of the log runs it), its reply held until the log holds its job's
    /// entries. Writes join the group's entry of this job; reads are not logged and draw
    /// from a stream of their own (so the entry's draws replay alike).
    fn plan_direct(
        &self,
        p: &mut Plan,
        db: &mut Db,
        at: OpAt,
        (v, slot): (u32, Slot),
        (now_us, seed): (u64, u64),
    ) {
        let (i, cmds) = (at.i, at.cmds);
        let args = |c: &(u32, u32)| at.args(c);
        let writes = cmds
            .iter()
            .any(|c| command::lookup(args(c).get(0)).is_some_and(|s| s.flags & flags::WRITE != 0));
        let exec = at.is_exec();
        let mut failed = Vec::new();
        let mut run = |db: &mut Db, rng: &mut Rng, now_us: u64, o: &mut Out| {
            if exec {
                o.array(cmds.len());
            }
            for c in cmds {
                let errors = o.errors;
                super::direct::run_one(db, args(c), now_us, rng, o);
                if o.errors != errors
                    && let Some(spec) = command::lookup(args(c).get(0))
                {
                    failed.push(command::index_of(spec));
                }
            }
        };
        let now = self.direct_clock(v, now_us);
        let t = self.meter.start();
        if !writes {
            let mut rng = Rng::new(seed ^ READ_STREAM);
            p.pj.write(i, true, |o| run(db, &mut rng, now, o));
            self.meter.ran(v, t);
        } else {
            let kind = if exec {
                Kind::Transaction
            } else {
                Kind::Commands
            };
            let direct = DirectEntry {
                rng: Rng::new(seed),
                now_us: now,
                unit: None,
            };
            let at = entry_for(&mut p.entries, v, slot, kind, i, (now, seed), Some(direct));
            let e = &mut p.entries[at];
            let d = e.4.as_mut().expect("a direct entry");
            p.pj.write(i, true, |o| run(db, &mut d.rng, d.now_us, o));
            self.meter.ran(v, t);
            for c in cmds {
                let a = args(c);
                e.2.push((0..a.len()).map(|k| a.get(k)));
            }
        }
        p.failed.extend(failed);
        p.held.push(i);
    }

    /// Proposes what `plan` holds and waits for it: the job's replies go out (`Pending`) as
    /// its entries apply and its read rounds end.
    pub(crate) fn submit(&mut self, db: &mut Db, plan: Plan, now: Now, seed: u64) {
        for (origin, token) in plan.unblocks {
            self.unblock(origin, token, db);
        }
        for (id, keys) in plan.unwatch {
            self.unwatch(id, keys);
        }
        // Nothing to wait for: everything answered in planning.
        let Some(j) = self.pending.admit(plan.pj) else {
            return;
        };
        let c = Arc::clone(&self.c);
        let mut direct = false;
        let mut units: Vec<Vec<(u32, u64)>> = (0..plan.units).map(|_| Vec::new()).collect();
        for (v, slot, enc, ops, d) in plan.entries {
            if let Some(d) = d {
                // Applied already (`plan_direct`, `plan_across`); its ops' replies are held
                // below.
                self.propose_direct(v, enc.finish(), d.now_us);
                if let Some(u) = d.unit {
                    let index = self.last_direct(v);
                    units[u as usize].push((v, index));
                }
                direct = true;
                continue;
            }
            // The routing that sent the job here may be older than this thread's state: the
            // replica may have been moved off meanwhile (not applied: the known leader's).
            self.undirect();
            let proposed = match self.groups[v as usize].as_mut() {
                Some(g) => g.propose(enc.finish()).map(|index| (index, g.term())),
                None => Err(raft::NotLeader {
                    leader: Some(c.leader(VShardId(v as u16))),
                }),
            };
            match proposed {
                Ok((index, term)) => {
                    self.pending.wait(
                        v,
                        index,
                        Waiter {
                            job: j,
                            ops,
                            term,
                            since: now.mono,
                            block: None,
                            held: false,
                        },
                    );
                    self.touch(v);
                }
                Err(e) => {
                    let msg = c.redirect(slot, e.leader);
                    for &op in ops.as_slice() {
                        self.pending.fail(j, op, &msg);
                    }
                }
            }
        }
        for (op, at, words) in plan.scripts {
            let w = super::scripts::ScriptWait::new((j, op), at, words, now.mono);
            self.start_script(db, w, now, seed ^ SCRIPT_STREAM);
        }
        for (at, flag, op) in plan.watch_at {
            self.watch_at(at, flag, (j, op), now.mono);
        }
        for (mut cmds, (exec, block), watch, op) in plan.txns {
            // A script goes as every participant can run it alike (its body, its library).
            if let Err(e) = shardline_shards::calvin::exec::resolve_script(db, &mut cmds) {
                self.pending.fail(j, op, &e);
                continue;
            }
            self.calvin_submit(cmds, (exec, block), watch, (j, op), now.mono);
        }
        for (cmd, op) in plan.metas {
            match self.propose_meta(cmd) {
                Ok((index, term)) => self.pending.wait(
                    self.meta_g,
                    index,
                    Waiter {
                        job: j,
                        ops: OpList::One(op),
                        term,
                        since: now.mono,
                        block: None,
                        held: false,
                    },
                ),
                Err(leader) => {
                    let msg = match leader.and_then(|l| c.member(l)) {
                        Some(m) if leader != Some(c.me) => format!(
                            "NOTLEADER {} leads the cluster's metadata: send this there (nothing was changed)",
                            m.client
                        ),
                        _ => "TRYAGAIN the cluster's metadata group has no leader yet (nothing was changed); retry shortly".to_string(),
                    };
                    self.pending.fail(j, op, &msg);
                }
            }
        }
        for unit in units {
            self.unit_proposed(unit);
        }
        if !plan.held.is_empty() {
            // Writes wait for their job's entries, reads for every direct write before them.
            let seq = if direct {
                self.direct_job()
            } else {
                self.direct_read_seq()
            };
            for op in plan.held {
                self.hold_direct(j, op, seq);
            }
        }
        if let Some((op, rewrite)) = plan.persist {
            // Everything appended so far goes out with the next batch, which fsyncs; the
            // reply waits for it (a fresh job number: that batch's).
            self.wal.sync_next();
            if rewrite {
                self.to_compact = (0..self.groups.len() as u32)
                    .filter(|&g| g != self.meta_g && self.groups[g as usize].is_some())
                    .collect();
            }
            let seq = self.direct_job();
            self.hold_direct(j, op, seq);
            self.wake();
        }
        // The reads, answered once their round confirms the leadership.
        for (v, slot, op) in plan.reads {
            self.pending.queue_read(v, ReadOp { job: j, op, slot });
            self.touch(v);
        }
        // Last, as the blocking command is the job's last op: after the job's other entries.
        if let Some((op, at, cmd, across)) = plan.block {
            self.block(db, j, op, (at, across), cmd, now, seed);
        }
    }
}

impl Shard {
    /// Active expiry of a replicated node (`Replicas::propose_expiry`).
    pub fn propose_expiry(&self, now_us: u64, budget: usize) {
        self.with_replicas(|r| r.propose_expiry(&mut self.db.borrow_mut(), now_us, budget));
    }
}

impl Replicas {
    /// Active expiry: keys found due in vShards led here are proposed as expiry checks, which
    /// every replica applies at the entry's clock (a key refreshed in the meantime stays).
    /// Followers expire nothing on their own.
    pub(crate) fn propose_expiry(&mut self, db: &mut Db, now_us: u64, budget: usize) {
        let due = {
            let groups = &self.groups;
            db.due_keys(now_us / 1000, budget, |v| {
                groups[v.0 as usize]
                    .as_ref()
                    .is_some_and(|g| g.role() == raft::Role::Leader)
            })
        };
        for (v, mut keys) in due {
            if self.calvin_waits_for(v) {
                // Transactions wait for this vShard that this thread has not taken up yet (it
                // became the leader after another read for them): their keys must read again
                // here what the last leader read, at the transactions' clocks.
                continue;
            }
            if self.calvin_busy() {
                // A key a transaction holds stays until it executed (its reads were sent).
                keys.retain(|k| !self.calvin_holds(v, k));
                if keys.is_empty() {
                    continue;
                }
            }
            let mut e = Encoder::new(Kind::ExpireCheck, now_us, 0);
            e.push(keys.iter().map(|k| &k[..]));
            if self.is_direct(v.0 as u32) {
                // Applied at append as well (else the group would take the usual path until
                // this entry commits); it answers nobody.
                let data = e.finish();
                let mut out = Out::new(Proto::Resp2);
                let mut ends = Vec::new();
                let clock = &mut self.clocks[v.0 as usize];
                replicate::apply(db, &data, clock, &mut out, &mut ends, &mut self.scratch)
                    .expect("our own entry decodes");
                self.propose_direct(v.0 as u32, data, now_us);
                continue;
            }
            self.undirect();
            let g = self.groups[v.0 as usize].as_mut().expect("led here");
            if g.propose(e.finish()).is_ok() {
                self.touch(v.0 as u32);
            }
        }
    }
}

/// Scripts on replicated groups draw from `seed ^ SCRIPT_STREAM` (`scripts.rs`).
const SCRIPT_STREAM: u64 = 0x5c41_97e1_0000_0001;
/// Reads on direct groups draw from `seed ^ READ_STREAM`, not from their entry's stream.
pub(super) const READ_STREAM: u64 = 0x5eed_0f4e_ad5e_ed00;

/// The entry of `entries` op `i` of vShard `v` joins (`kind` `Commands` joins the vShard's
/// last entry if that is of commands too; a transaction is an entry of its own, and so is
/// whatever follows one), made if there is none; its position.
fn entry_for(
    entries: &mut Vec<(u32, Slot, Encoder, OpList, Option<DirectEntry>)>,
    v: u32,
    slot: Slot,
    kind: Kind,
    i: u32,
    (now_us, seed): (u64, u64),
    direct: Option<DirectEntry>,
) -> usize {
    match entries.iter().rposition(|e| e.0 == v) {
        Some(at) if kind == Kind::Commands && entries[at].2.kind() == Kind::Commands => {
            entries[at].3.push(i);
            at
        }
        _ => {
            entries.push((
                v,
                slot,
                Encoder::new(kind, now_us, seed),
                OpList::One(i),
                direct,
            ));
            entries.len() - 1
        }
    }
}

/// The vShard and first slot of the commands `cmds` (one op), checked: every key in one
/// vShard, this node its leader, memory available; their watches touched. `None` when
/// they have no keys.
fn plan_entry(
    c: &Cluster,
    db: &mut Db,
    buf: &[u8],
    spans: &[command::Span],
    cmds: &[(u32, u32)],
    room: bool,
) -> Result<Option<(u32, Slot)>, String> {
    let mut found: Option<(u32, Slot)> = None;
    for &(f, l) in cmds {
        let args = Args::new(buf, &spans[f as usize..(f + l) as usize]);
        let Some(spec) = command::lookup(args.get(0)) else {
            continue;
        };
        if !room && over_maxmemory(db, spec) {
            return Err(OOM.to_string());
        }
        match route::vshard_of_keys(spec, args, c.layout)? {
            Some((v, _)) if found.is_some_and(|(fv, _)| fv != v.0 as u32) => {
                return Err(route::CROSSSLOT.to_string());
            }
            Some((v, slot)) if found.is_none() => found = Some((v.0 as u32, slot)),
            _ => {}
        }
        touch_watches(db, spec, args);
    }
    Ok(found)
}

/// FLUSHALL and FLUSHDB: on a replicated node they empty the vShards it leads, through their
/// logs (one flush entry each).
pub fn is_flush(spec: &command::CommandSpec) -> bool {
    // Keyed commands (nearly every request) are answered by the first test.
    !matches!(spec.scope, command::Scope::Keys(_))
        && (spec.name == "flushall" || spec.name == "flushdb")
}

/// FLUSHALL's answer when one of its vShards' entries failed (leadership moved mid-way): the
/// others may have been emptied. Running it again is safe.
const FLUSH_PARTIAL: &str = "TRYAGAIN the flush may have emptied only some of the vShards this node leads (leadership moved while it ran); run it again";

/// The ASYNC / SYNC flag is accepted (the flush is synchronous); anything else is an error.
fn flush_args_error(a: Args) -> Option<&'static str> {
    let ok = match a.len() {
        1 => true,
        2 => a.get(1).eq_ignore_ascii_case(b"async") || a.get(1).eq_ignore_ascii_case(b"sync"),
        _ => false,
    };
    (!ok).then_some(shardline_shards::command::err::SYNTAX)
}
