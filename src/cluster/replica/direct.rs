//! Groups of one apply at append (docs/design/redesign.md, "Groups of one apply at append"). A
//! group whose only voter is its leader here (replication factor 1) cannot lose an entry to
//! another leader: its connections' ops run at once, with the clock and seed their entry
//! carries (`replicate::run`, the function replay uses), the writes are logged, and the
//! replies wait until the log batch holding them is written. Everything else about the group
//! (its log, snapshots, restart, a replica added by a join) is as for any group.

use super::*;
use shardline_shards::rng::Rng;
use shardline_shards::slot::key_slot;
use std::collections::VecDeque;

/// The state of this thread's direct groups.
#[derive(Default)]
pub(super) struct Direct {
    /// Per group: the indexes of its entries applied when they were appended and not yet
    /// committed, ascending. A group is direct while every entry after its applied index is
    /// one of these (`Replicas::is_direct`).
    pre: Vec<VecDeque<u64>>,
    /// Jobs that ran ops directly, counted: a held reply waits for its job's number to be
    /// written (`Pending::durable`). `batch` is the count when the step in flight took its
    /// batch (everything up to it is in that batch), `durable` what the last batch wrote.
    seq: u64,
    batch: u64,
    durable: u64,
    /// Compactions of groups whose keyspace is ahead of their commit: cut at the start of the
    /// next step (`cut`), handed to the group once that step committed the cut's entry.
    want_cut: Vec<u32>,
    cuts: Vec<(u32, LogId, super::Cut)>,
    /// Ops across vShards waiting for the next step: each one's entries (`(group, index)`)
    /// are written as one log record (`write_units`).
    units: Vec<Vec<(u32, u64)>>,
    /// Entries applied at append since the count was last taken (the simulator's).
    pub(super) appended: u64,
    /// Connections waiting for the log to hold a job number (`Shard::durable`).
    wakers: Vec<Waker>,
}

impl Direct {
    pub(super) fn new(groups: usize) -> Direct {
        Direct {
            pre: (0..groups).map(|_| VecDeque::new()).collect(),
            ..Direct::default()
        }
    }
}

/// The answer to an op across vShards of groups of one that are catching up (not applied).
/// Scripts on vShards with other replicas wait for issue 18's step 3.
/// `run_script_direct`'s answer on a thread with groups that have replicas elsewhere: the
/// script goes through its vShard's job (`scripts.rs`).
pub(crate) const SCRIPTS_ALONE: &str =
    "ERR scripts run at once only where every group is a group of one";
pub(crate) const ACROSS_CATCHING_UP: &str = "TRYAGAIN the vShards of this command are catching up with their logs (nothing was applied); retry shortly";

/// One direct entry being built by a plan: its commands already ran with `rng` (the entry's
/// seed) at `now_us` (the group's clock).
pub(super) struct DirectEntry {
    pub(super) rng: Rng,
    pub(super) now_us: u64,
    /// The op across vShards whose effects begin this entry (its parts go into the log as
    /// one record), numbered within the plan.
    pub(super) unit: Option<u32>,
}

/// Keys a thread evicts at most for one write, or at one driver step.
const EVICT_KEYS_MAX: usize = 64;

/// The buffer the entries of a thread's direct writes are cut from: small enough that an entry
/// kept long (a group that rarely compacts) holds little beside it.
const ENTRY_ARENA_BYTES: usize = 16 << 10;

impl Replicas {
    /// Whether group `v` applies at append now: this node leads it, its membership is this
    /// node alone, and nothing in its log waits to be applied the other way.
    pub(super) fn is_direct(&self, v: u32) -> bool {
        if v == self.meta_g {
            return false;
        }
        let Some(g) = self.groups[v as usize].as_ref() else {
            return false;
        };
        self.alone(g)
            && g.role() == raft::Role::Leader
            && g.last_index() - self.applied[v as usize].index
                == self.direct.pre[v as usize].len() as u64
    }

    /// Whether group `g`'s latest membership is this node alone (no other voter, no learner).
    fn alone(&self, g: &Group) -> bool {
        let m = g.membership();
        m.learners.is_empty() && m.voters == [self.c.me]
    }

    /// The clock a direct entry of group `v` runs at, for a job that arrived at `now_us`: the
    /// later of the two, as `replicate::apply` computes it on replay.
    pub(super) fn direct_clock(&self, v: u32, now_us: u64) -> u64 {
        now_us.max(self.clocks[v as usize])
    }

    /// Appends direct entry `data` of group `v` (its commands already ran at `now_us`).
    pub(super) fn propose_direct(&mut self, v: u32, data: impl Into<bytes::Bytes>, now_us: u64) {
        let g = self.groups[v as usize]
            .as_mut()
            .expect("a direct group is here");
        // A direct group leads and transfers nothing (it has no other voter): our bug if not.
        let index = g
            .propose(data)
            .expect("a direct group's leader takes proposals");
        self.direct.pre[v as usize].push_back(index);
        self.direct.appended += 1;
        let clock = &mut self.clocks[v as usize];
        *clock = (*clock).max(now_us);
        let clock = *clock;
        if let Some(Ok(c)) = self.thread_direct.get() {
            self.thread_direct.set(Some(Ok(c.max(clock))));
        }
        self.touch(v);
    }

    /// The entry of one command, cut from this thread's entry buffer (`ENTRY_ARENA_BYTES`):
    /// the entries of a thread's writes share buffers, one allocation for many, and the log's
    /// copies of an entry (to persist, to apply) share it without allocating (an entry of its
    /// own allocation costs one more when first shared).
    pub(super) fn arena_entry<'a>(
        &mut self,
        kind: Kind,
        now_us: u64,
        seed: u64,
        words: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
    ) -> bytes::Bytes {
        let n = replicate::HEADER_BYTES + replicate::command_bytes(words.clone());
        if self.arena.capacity() - self.arena.len() < n {
            let cap = ENTRY_ARENA_BYTES.max(n);
            self.arena = bytes::BytesMut::with_capacity(cap);
            // Touched in one burst now, so the entries' stores hit the cache: the reference
            // count's locked increment in `split` waits for every store before it.
            self.arena.resize(cap, 0);
            self.arena.clear();
        }
        replicate::encode_command_into(&mut self.arena, kind, now_us, seed, words);
        debug_assert_eq!(self.arena.len(), n, "sized exactly");
        self.arena.split().freeze()
    }

    /// Whether every one of `vshards` is direct and on this thread: an op across them may run
    /// at once (`effects`).
    pub(super) fn all_direct(&self, vshards: &[u32]) -> bool {
        vshards
            .iter()
            .all(|&v| self.c.thread_of(v) == self.shard && self.is_direct(v))
    }

    /// For a script, which may touch any key of this thread: the clock to run it at if every
    /// group of the thread is a group of one applied at append now, in one pass without
    /// allocating (it runs for every script); else why not (`SCRIPTS_ALONE`: some group has
    /// replicas elsewhere; `ACROSS_CATCHING_UP`: some group has entries to apply first).
    /// The pass over every group touches each one's state (cache misses: it was a seventh of
    /// a small script's time), so its result is kept (`thread_direct`) until something may
    /// change it: any step (roles, memberships, applies), any entry of the usual kind
    /// (`undirect`); a direct entry only raises the clock, which is kept up to date. Debug
    /// builds check every kept answer against the pass.
    pub(super) fn thread_direct_clock(&self, now_us: u64) -> Result<u64, &'static str> {
        let kept = self.thread_direct.get();
        let answer = match kept {
            Some(a) => {
                debug_assert_eq!(a, self.thread_direct_pass(), "a kept answer went stale");
                a
            }
            None => {
                let a = self.thread_direct_pass();
                self.thread_direct.set(Some(a));
                a
            }
        };
        answer.map(|clock| clock.max(now_us))
    }

    /// Forgets the kept `thread_direct_clock` answer: a step ran, or an entry of the usual kind
    /// was proposed.
    pub(in crate::cluster) fn undirect(&self) {
        self.thread_direct.set(None);
    }

    /// `thread_direct_clock`'s pass over the thread's groups.
    fn thread_direct_pass(&self) -> Result<u64, &'static str> {
        let mut clock = 0;
        let mut direct = true;
        for v in 0..self.c.layout.count() {
            if self.c.thread_of(v) != self.shard {
                continue;
            }
            let Some(g) = self.groups[v as usize].as_ref() else {
                return Err(SCRIPTS_ALONE);
            };
            if !self.alone(g) {
                return Err(SCRIPTS_ALONE);
            }
            direct = direct
                && g.role() == raft::Role::Leader
                && g.last_index() - self.applied[v as usize].index
                    == self.direct.pre[v as usize].len() as u64;
            clock = clock.max(self.clocks[v as usize]);
        }
        if direct {
            Ok(clock)
        } else {
            Err(ACROSS_CATCHING_UP)
        }
    }

    /// The vShards this thread drives (whatever their role).
    pub(crate) fn thread_vshards(&self) -> Vec<u32> {
        (0..self.c.layout.count())
            .filter(|&v| self.c.thread_of(v) == self.shard)
            .collect()
    }

    /// Why an op across `vshards` cannot run now: `-TRYAGAIN` while they are all groups of one
    /// led here that are only catching up (an entry of the usual kind, or the log replayed
    /// after a start, not yet applied), else `-CROSSSLOT` (replicated elsewhere too, moving, or
    /// on several threads: Redis Cluster's answer).
    pub(super) fn across_refusal(&self, vshards: &[u32]) -> &'static str {
        let alone = vshards.iter().all(|&v| {
            self.c.thread_of(v) == self.shard
                && self.groups[v as usize]
                    .as_ref()
                    .is_some_and(|g| self.alone(g))
        });
        if alone {
            ACROSS_CATCHING_UP
        } else {
            route::CROSSSLOT
        }
    }

    /// Appends an op across vShards that ran already: its effects on each vShard (`effects`),
    /// written together as one log record at the next step.
    pub(super) fn propose_unit(&mut self, parts: Vec<(u32, Vec<u8>)>, now_us: u64) {
        let mut unit = Vec::with_capacity(parts.len());
        for (v, data) in parts {
            self.propose_direct(v, data, now_us);
            unit.push((v, self.last_direct(v)));
        }
        self.unit_proposed(unit);
    }

    /// Logs what an op across vShards that just ran wrote (the `effects` on `written`, one
    /// record for all its vShards) and returns the job number its reply waits for: a read's
    /// when it wrote nothing.
    pub(super) fn log_effects(
        &mut self,
        db: &mut Db,
        written: &[&[u8]],
        now_us: u64,
        seed: u64,
    ) -> u64 {
        if written.is_empty() {
            return self.direct_read_seq();
        }
        let parts = effects(db, written, now_us, seed);
        self.propose_unit(
            parts.into_iter().map(|(v, e)| (v, e.finish())).collect(),
            now_us,
        );
        self.direct_job()
    }

    /// Entries of one op across vShards, proposed already (`(group, index)`): written as one
    /// record at the next step.
    pub(super) fn unit_proposed(&mut self, unit: Vec<(u32, u64)>) {
        if unit.len() > 1 {
            self.direct.units.push(unit);
        }
    }

    /// At a step's start: every unit proposed since the last step goes into the log as one
    /// record, with its groups' earlier entries of the step (their own appends then skip what
    /// the unit wrote).
    pub(super) fn write_units(&mut self) -> Result<(), Fatal> {
        for unit in std::mem::take(&mut self.direct.units) {
            let mut parts = Vec::new();
            for (g, index) in unit {
                let Some(grp) = self.groups[g as usize].as_ref() else {
                    continue; // dropped meanwhile: it cannot have been (direct), but be safe
                };
                // (A unit has one entry per group: the effects of one op on one vShard.)
                let written = self.wal.group(g).map_or(0, |l| l.last().index);
                let from = written.max(grp.snapshot_id().index) + 1;
                for i in from..=index {
                    let e = grp.entry(i).ok_or_else(|| {
                        Fatal::LogAppend(format!("vShard {g} has no entry {i} for a unit"))
                    })?;
                    parts.push((g, i, e.term, e.data.clone()));
                }
            }
            self.wal
                .append_unit(&parts)
                .map_err(|e| Fatal::LogAppend(format!("{e:?}")))?;
        }
        Ok(())
    }

    /// The index of group `v`'s last entry applied at append.
    pub(super) fn last_direct(&self, v: u32) -> u64 {
        *self.direct.pre[v as usize]
            .back()
            .expect("an entry applied at append")
    }

    /// A job ran ops directly: its number, which its held replies wait for.
    pub(super) fn direct_job(&mut self) -> u64 {
        self.direct.seq += 1;
        self.direct.seq
    }

    /// Whether committed entry `index` of group `g` was applied when appended (then it is not
    /// applied again).
    pub(super) fn committed_direct(&mut self, g: u32, index: u64) -> bool {
        let q = &mut self.direct.pre[g as usize];
        if q.front() == Some(&index) {
            q.pop_front();
            true
        } else {
            false
        }
    }

    /// A step takes its batch: every direct entry so far is in it.
    pub(super) fn direct_batch_taken(&mut self) {
        self.direct.batch = self.direct.seq;
    }

    /// The step's batch is written: replies held for it go out. A direct group that stopped
    /// leading with entries it applied uncommitted would hold a state its log may not: our
    /// bug, or a member of another history; the node stops (a restart replays the log).
    /// Only the groups `touched` in the step can have changed role.
    pub(super) fn direct_batch_written(
        &mut self,
        touched: impl Iterator<Item = u32>,
    ) -> Result<(), Fatal> {
        self.direct.durable = self.direct.batch;
        self.pending.durable(self.direct.durable);
        for w in self.direct.wakers.drain(..) {
            w.wake();
        }
        for g in touched {
            let q = &self.direct.pre[g as usize];
            if !q.is_empty()
                && self.groups[g as usize]
                    .as_ref()
                    .is_none_or(|grp| grp.role() != raft::Role::Leader)
            {
                return Err(Fatal::LogAppend(format!(
                    "vShard {g}'s replica of one lost its leadership with {} entries applied and not committed",
                    q.len()
                )));
            }
        }
        Ok(())
    }

    /// Ready once the log holds job number `seq`; else `w` is woken when a batch is written.
    fn poll_durable(&mut self, seq: u64, w: &Waker) -> Poll<()> {
        if seq <= self.direct.durable {
            return Poll::Ready(());
        }
        if !self.direct.wakers.iter().any(|x| x.will_wake(w)) {
            self.direct.wakers.push(w.clone());
        }
        self.wake(); // a step must run to write it
        Poll::Pending
    }

    /// Holds op `op` of job `j` until the log holds job number `seq` (at once if it does).
    pub(super) fn hold_direct(&mut self, j: u32, op: u32, seq: u64) {
        self.pending.hold_until_durable(j, op, seq);
        if seq <= self.direct.durable {
            self.pending.durable(self.direct.durable);
        }
    }

    /// The number a read's reply waits for: every direct job so far (it may have seen their
    /// writes), or nothing when the log holds them all.
    pub(super) fn direct_read_seq(&self) -> u64 {
        self.direct.seq
    }

    /// Compaction of group `g`, whose keyspace holds entries not yet committed: cut at the
    /// next step's start.
    pub(super) fn want_direct_cut(&mut self, g: u32) -> bool {
        if self.direct.pre[g as usize].is_empty() {
            return false;
        }
        if !self.direct.want_cut.contains(&g)
            && !self.direct.cuts.iter().any(|c| c.0 == g)
            && !self.capturing(g)
        {
            self.direct.want_cut.push(g);
        }
        true
    }

    /// At a step's start the keyspace of a direct group holds exactly its log: the snapshot
    /// of what compactions wait for is taken there.
    pub(super) fn direct_cuts(&mut self, db: &mut Db) {
        for g in std::mem::take(&mut self.direct.want_cut) {
            if !self.is_direct(g) || self.capturing(g) {
                continue; // compacted the usual way once applied; being written
            }
            let Some(grp) = self.groups[g as usize].as_ref() else {
                continue;
            };
            let last = LogId {
                term: grp.term(),
                index: grp.last_index(),
            };
            // Its cut is folded once written and committed (`capture::captured`).
            self.begin_capture(db, g, last, super::capture::Purpose::Compact);
        }
    }

    /// A direct group's cut at `last` is written: folded once committed and applied.
    pub(super) fn direct_cut_written(&mut self, g: u32, last: LogId, cut: Cut) {
        self.direct.cuts.push((g, last, cut));
    }

    /// The cuts whose entry is committed and applied now: folded into their groups' snapshots.
    pub(super) fn direct_cuts_committed(&mut self) {
        let mut i = 0;
        while i < self.direct.cuts.len() {
            let (g, last, _) = &self.direct.cuts[i];
            if self.applied[*g as usize].index < last.index {
                i += 1;
                continue;
            }
            let (g, last, state) = self.direct.cuts.swap_remove(i);
            if self.groups[g as usize].is_some() {
                self.compact_at(g, last, state);
            }
        }
    }

    /// Group `g` is dropped from this thread.
    pub(super) fn drop_direct(&mut self, g: u32) {
        self.direct.pre[g as usize].clear();
        self.direct.want_cut.retain(|&x| x != g);
        while let Some(i) = self.direct.cuts.iter().position(|c| c.0 == g) {
            self.direct.cuts.swap_remove(i).2.discard();
        }
    }
}

impl Shard {
    /// A command on keys of vShard `v`, sent by a connection of this thread, run at once if
    /// its group is direct (what `Replicas::plan_direct` does for a job, without the job): the
    /// reply goes to `out`, and the job number it must wait for (`durable`) is returned.
    /// `None`: the group is not direct now; the command takes the job path.
    pub(crate) fn run_direct(
        &self,
        v: u32,
        spec: &'static command::CommandSpec,
        args: Args,
        now_us: u64,
        out: &mut Out,
    ) -> Option<u64> {
        let seq = {
            let mut guard = self.repl.borrow_mut();
            let r = guard.as_mut()?;
            if !r.is_direct(v) || r.calvin_busy() {
                // (A transaction holds keys on this thread: the job path waits for them.)
                return None;
            }
            self.sync_tunables();
            let mut db = self.db.borrow_mut();
            let now = r.direct_clock(v, now_us);
            let seed = self.rng.borrow_mut().next_u64();
            let errors = out.errors;
            let room = r.evict_now(&mut db, spec, now_us);
            let bytes = match spec.flags & flags::WRITE {
                0 => 0,
                _ => (0..args.len()).map(|k| args.get(k).len() as u64).sum(),
            };
            r.meter.count(v, bytes);
            let seq = if spec.flags & flags::WRITE == 0 {
                let mut rng = Rng::new(seed ^ super::propose::READ_STREAM);
                let t = r.meter.start();
                run_one(&mut db, args, now, &mut rng, out);
                r.meter.ran(v, t);
                r.direct_read_seq()
            } else if !room {
                out.error(OOM);
                0 // nothing was applied or seen
            } else {
                touch_watches(&mut db, spec, args);
                let mut rng = Rng::new(seed);
                let t = r.meter.start();
                run_one(&mut db, args, now, &mut rng, out);
                r.meter.ran(v, t);
                let words = (0..args.len()).map(|k| args.get(k));
                let entry = r.arena_entry(Kind::Commands, now, seed, words);
                r.propose_direct(v, entry, now);
                r.direct_job()
            };
            if out.errors != errors {
                self.cmd_stats.borrow_mut()[command::index_of(spec)].failed += 1;
            }
            seq
        };
        self.after_writes();
        Some(seq)
    }

    /// A command whose keys span vShards (`vshards`, of this thread), sent by a connection of
    /// this thread: run at once if every one of them is direct, each vShard logging its
    /// effects (`effects`), all in one log record. `None`: not all direct now (the command is
    /// refused with `-CROSSSLOT`, as on a replicated cluster).
    pub(crate) fn run_direct_across(
        &self,
        vshards: &[u32],
        spec: &'static command::CommandSpec,
        args: Args,
        now_us: u64,
        out: &mut Out,
    ) -> Result<u64, &'static str> {
        let seq = {
            let mut guard = self.repl.borrow_mut();
            let Some(r) = guard.as_mut() else {
                return Err(route::CROSSSLOT);
            };
            if !r.all_direct(vshards) {
                return Err(r.across_refusal(vshards));
            }
            self.sync_tunables();
            let mut db = self.db.borrow_mut();
            let now = vshards.iter().fold(now_us, |t, &v| r.direct_clock(v, t));
            let seed = self.rng.borrow_mut().next_u64();
            if !r.evict_now(&mut db, spec, now_us) {
                out.error(OOM);
                return Ok(0);
            }
            let mut written = Vec::new();
            touch_watches(&mut db, spec, args);
            run_cmds_across(
                &mut db,
                std::iter::once(args),
                false,
                now,
                seed,
                out,
                &mut written,
            );
            r.log_effects(&mut db, &written, now, seed)
        };
        self.after_writes();
        Ok(seq)
    }

    /// EVAL and its family (issue 18, step 1: `docs/design/scripting.md`), on the
    /// connection's thread: the script runs at once on this thread's keyspace while every
    /// group of this thread is a group of one applied at append (a node alone), and what it
    /// wrote is logged as its effects, never the script (replicas and restarts never run
    /// Lua). `Err`: it cannot run here now (nothing ran).
    pub(crate) fn run_script_direct(
        &self,
        spec: &'static command::CommandSpec,
        args: Args,
        now_us: u64,
        out: &mut Out,
    ) -> Result<u64, &'static str> {
        let seq = {
            let mut guard = self.repl.borrow_mut();
            let Some(r) = guard.as_mut() else {
                return Err(SCRIPTS_ALONE);
            };
            let now = r.thread_direct_clock(now_us)?;
            self.sync_tunables();
            let mut db = self.db.borrow_mut();
            let seed = self.rng.borrow_mut().next_u64();
            let mut rng = Rng::new(seed);
            let mut ctx = command::Ctx {
                now_ms: now / 1000,
                now_us: now,
                rng: &mut rng,
            };
            let errors = out.errors;
            command::execute(&mut db, args, &mut ctx, out);
            if out.errors != errors {
                self.cmd_stats.borrow_mut()[command::index_of(spec)].failed += 1;
            }
            let written = std::mem::take(&mut db.scripts.written);
            let keys: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
            let seq = r.log_effects(&mut db, &keys, now, seed);
            db.scripts.written = written;
            seq
        };
        self.after_writes();
        Ok(seq)
    }

    /// Waits until the log holds direct job number `seq` (written, and fsynced per the
    /// policy): what a direct op wrote or may have seen.
    pub(crate) async fn durable(&self, seq: u64) {
        std::future::poll_fn(|cx| self.with_replicas(|r| r.poll_durable(seq, cx.waker()))).await
    }
}

/// Whether `spec` is refused for memory now: it may grow memory (`DENYOOM`) and the node is
/// over `maxmemory` (replicated groups refuse; they do not evict).
pub(crate) fn over_maxmemory(db: &Db, spec: &command::CommandSpec) -> bool {
    db.tunables.maxmemory > 0
        && spec.flags & flags::DENYOOM != 0
        && used_for_eviction() > db.tunables.maxmemory
}

/// The memory `maxmemory` is held to: what is allocated, less what the replicas hold for
/// replication (`REPLICATION_MEMORY_BYTES`, Redis's `mem_not_counted_for_evict`).
pub(crate) fn used_for_eviction() -> u64 {
    shardline_transport::alloc::used_bytes()
        .saturating_sub(super::REPLICATION_MEMORY_BYTES.load(std::sync::atomic::Ordering::Relaxed))
}

impl Replicas {
    /// Before `spec` (if it may grow memory) on a node over `maxmemory`: evicts keys of this
    /// thread's direct groups (but `undirect`) by the policy until under it, with work bounded
    /// as Redis bounds an eviction cycle. Each evicted key goes to `log` with its vShard, to
    /// be logged as a `DEL` in order with the group's other entries (a replay evicts it too).
    /// Groups with other replicas do not evict. Whether `spec` may run: under the limit now
    /// (or it does not grow memory); else it is refused with OOM.
    pub(super) fn evict_direct(
        &self,
        db: &mut Db,
        spec: &command::CommandSpec,
        now_ms: u64,
        undirect: &[u32],
        log: &mut dyn FnMut(u32, Vec<u8>),
    ) -> bool {
        if db.tunables.maxmemory == 0 || spec.flags & flags::DENYOOM == 0 {
            return true;
        }
        self.make_room(db, now_ms, undirect, log)
    }

    /// `evict_direct` for any write: under the limit now, or made so.
    fn make_room(
        &self,
        db: &mut Db,
        now_ms: u64,
        undirect: &[u32],
        log: &mut dyn FnMut(u32, Vec<u8>),
    ) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let policy = db.tunables.maxmemory_policy;
        // Memory is the process's, keys are per thread: a thread that holds fewer evictable
        // keys than its share leaves the evicting to the others (each evicts at its steps,
        // `evict_background`), so the threads keep alike shares and the least recently used
        // keys go wherever they are, not all of one thread's first.
        let total = super::EVICTABLE_KEYS.load(Relaxed);
        let threads = self.c.threads.max(1) as u64;
        if policy != shardline_shards::evict::Policy::NoEviction
            && super::evictable_keys(db) * threads * 10 < total * 9
            && used_for_eviction() <= db.tunables.maxmemory + db.tunables.maxmemory / 8
        {
            return true;
        }
        // What the `DEL` entries will take until a step publishes them as the log's.
        let mut logged = 0;
        for n in 0..=EVICT_KEYS_MAX {
            if used_for_eviction() + logged <= db.tunables.maxmemory {
                return true;
            }
            if n == EVICT_KEYS_MAX {
                // Bounded work per write, as Redis bounds an eviction cycle: having made
                // progress, the write goes on and the thread's steps evict the rest. (A spike
                // of memory that is not keys, a batch's buffers, must not cost a thread every
                // key it has.)
                return true;
            }
            let allowed = |v: u32| self.is_direct(v) && !undirect.contains(&v);
            let Some(key) = db.evict_one_of(now_ms, &allowed) else {
                // Nothing here to evict: the node is over with other threads' keys (memory
                // is the process's), which they evict at their next step
                // (`evict_background`); the write goes on. With none anywhere: OOM.
                return policy != shardline_shards::evict::Policy::NoEviction
                    && super::EVICTABLE_KEYS.load(Relaxed) > self.keys_published;
            };
            let v = self.c.layout.vshard_of(key_slot(&key)).0 as u32;
            logged +=
                (replicate::HEADER_BYTES + key.len() + 16 + super::ENTRY_OVERHEAD_BYTES) as u64;
            log(v, key);
        }
        unreachable!("the loop returns at its last turn")
    }

    /// `evict_direct`, each eviction logged at once (nothing of this thread waits to be
    /// proposed: a connection's own command, or an op across vShards run on the spot).
    pub(super) fn evict_now(
        &mut self,
        db: &mut Db,
        spec: &command::CommandSpec,
        now_us: u64,
    ) -> bool {
        if db.tunables.maxmemory == 0 || spec.flags & flags::DENYOOM == 0 {
            return true;
        }
        self.evict_background(db, now_us)
    }

    /// Evicts from this thread's direct groups while the node is over `maxmemory`, each
    /// eviction logged at once: before a write here, and at every driver step (a thread
    /// whose keys hold the memory evicts even if the writes arrive elsewhere).
    pub(crate) fn evict_background(&mut self, db: &mut Db, now_us: u64) -> bool {
        let mut evicted = Vec::new();
        let room = self.make_room(db, now_us / 1000, &[], &mut |v, k| evicted.push((v, k)));
        for (v, key) in evicted {
            let now = self.direct_clock(v, now_us);
            // An eviction is logged as `DEL key`.
            let entry = self.arena_entry(Kind::Commands, now, 0, [&b"DEL"[..], &key].into_iter());
            self.propose_direct(v, entry, now);
        }
        room
    }
}

/// A write's keys: the WATCH flags on them are set.
pub(super) fn touch_watches(db: &mut Db, spec: &command::CommandSpec, args: Args) {
    if spec.flags & flags::WRITE != 0 {
        for k in spec.keys_of(args) {
            db.watches.touch(args.get(k));
        }
    }
}

/// Runs one command of a direct entry at `now_us` with `rng`.
pub(super) fn run_one(db: &mut Db, args: Args, now_us: u64, rng: &mut Rng, out: &mut Out) {
    let mut ctx = command::Ctx {
        now_ms: now_us / 1000,
        now_us,
        rng,
    };
    replicate::run(db, args, &mut ctx, out);
}

/// The effects of an op across vShards that just ran, per vShard (ascending): for every key
/// in `written`, its value as `RESTORE key <abs-ttl> <payload> REPLACE ABSTTL`, or `DEL key`
/// if it is gone. Each vShard's log replays them alone (its replicas hold no other vShard),
/// which the op itself would not.
pub(super) fn effects(
    db: &mut Db,
    written: &[&[u8]],
    now_us: u64,
    seed: u64,
) -> Vec<(u32, Encoder)> {
    let now_ms = now_us / 1000;
    let layout = db.layout();
    let mut keys: Vec<(u32, &[u8])> = written
        .iter()
        .map(|k| (layout.vshard_of(key_slot(k)).0 as u32, *k))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut parts: Vec<(u32, Encoder)> = Vec::new();
    for (v, key) in keys {
        if parts.last().is_none_or(|p| p.0 != v) {
            parts.push((v, Encoder::new(Kind::Commands, now_us, seed)));
        }
        let enc = &mut parts.last_mut().expect("pushed").1;
        match db.expire_at(key, now_ms) {
            None => enc.push([&b"DEL"[..], key].into_iter()),
            Some(at) => {
                let value = db.peek(key).expect("a live key");
                let payload = shardline_shards::rdb::dump(value);
                let ttl = at.unwrap_or(0).to_string();
                enc.push(
                    [
                        &b"RESTORE"[..],
                        key,
                        ttl.as_bytes(),
                        &payload,
                        b"REPLACE",
                        b"ABSTTL",
                    ]
                    .into_iter(),
                );
            }
        }
    }
    parts
}

/// The vShards of the keys of `spec` with `args`, added to `out` (unsorted, with repeats).
pub(crate) fn vshards_of(
    spec: &'static command::CommandSpec,
    args: Args,
    layout: shardline_shards::slot::VShardLayout,
    out: &mut Vec<u32>,
) {
    for k in spec.keys_of(args) {
        out.push(layout.vshard_of(key_slot(args.get(k))).0 as u32);
    }
}

/// Runs `args` (a whole command) at `now_us` on `db` as a standalone node runs it (no check
/// that its keys share a vShard): an op across vShards of groups of one.
fn run_across(db: &mut Db, args: Args, now_us: u64, rng: &mut Rng, out: &mut Out) {
    let mut ctx = command::Ctx {
        now_ms: now_us / 1000,
        now_us,
        rng,
    };
    match command::lookup(args.get(0)) {
        None => command::err::unknown_command(out, args),
        Some(s) if !s.arity_ok(args.len()) => command::err::arity(out, s.name),
        Some(s) => command::apply(s, db, args, &mut ctx, out),
    }
}

/// Runs the commands `cmds` of a job (one op: a command, or a transaction when `exec`) across
/// vShards at `now_us`, their replies to `out`; the keys the written ones name go to
/// `written`.
pub(super) fn run_cmds_across<'a>(
    db: &mut Db,
    cmds: impl Iterator<Item = Args<'a>> + Clone,
    exec: bool,
    now_us: u64,
    seed: u64,
    out: &mut Out,
    written: &mut Vec<&'a [u8]>,
) {
    let mut rng = Rng::new(seed);
    if exec {
        out.array(cmds.clone().count());
    }
    for args in cmds {
        run_across(db, args, now_us, &mut rng, out);
        if let Some(spec) = command::lookup(args.get(0))
            && spec.flags & flags::WRITE != 0
            && spec.arity_ok(args.len())
        {
            written.extend(spec.keys_of(args).map(|k| args.get(k)));
        }
    }
}
