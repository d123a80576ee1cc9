//! Blocking commands on a replicated leader (docs/design/commands.md "Blocking commands", step 5): the
//! leader waits, the log decides. Each try of a blocking command is an entry of its own, which
//! every replica applies as the single try; the leader reads the try's answer: served (or an
//! error) goes to the client, the nil answer parks the command on its keys' queues
//! (`Db::waiting`, shared with one-node waiters; last in line after a first try, first again
//! after a turn that found nothing). A write that makes a key
//! ready proposes the first waiter of that key once more.
//!
//! A record lives from the command's arrival until its op is answered; it is either queued
//! (waiting for a write, no entry in the log) or tried (its entry in the log, `Waiter::block`
//! names it). Every path that answers a tried op (`block_tried`, `fail_waiter`) drops it.

use super::*;
use crate::shard::Parked;
use shardline_shards::command::blocking;

/// A blocking command parked on, or being tried by, this thread's leader.
pub(super) struct Blocked {
    job: u32,
    op: u32,
    /// The connection's `(origin, token)`: its key in `blocked_ids`.
    conn: (usize, crate::hop::Token),
    v: u32,
    slot: Slot,
    proto: Proto,
    cmd: Parked,
    /// Queued on its keys in `Db::waiting` (else its try is in the log).
    queued: bool,
    /// Its timeout passed or its client left while its try was in the log: the try's answer
    /// is final (the popped element if served, else the timeout answer).
    cancelled: bool,
    /// It was queued before: a try that fails puts it back first in line (its turn came and
    /// went); a first try that fails queues it last, behind the waiters that came before it.
    had_turn: bool,
    /// Its keys are in several vShards, all direct groups of this thread (a node alone): it
    /// is tried at once, not through a log, and a try that serves logs its effects on each
    /// (`try_across`).
    across: Option<Vec<u32>>,
    /// Its client's ACL user when restricted (`acl::caller` when it parked): each retry
    /// checks the command against that user's permissions as they are then (Redis 7.2).
    user: Option<std::sync::Arc<shardline_shards::acl::User>>,
}

impl Replicas {
    /// Takes blocking command `cmd` (op `op` of job `j`, on vShard `v`) and proposes its first
    /// try (answered at once if that fails).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block(
        &mut self,
        db: &mut shardline_shards::db::Db,
        j: u32,
        op: u32,
        ((v, slot), across): ((u32, Slot), Option<Vec<u32>>),
        cmd: Parked,
        now: Now,
        seed: u64,
    ) {
        let id = self.next_blocked;
        self.next_blocked += 1;
        let job = self.pending.job(j).expect("a live job");
        let conn = (job.origin, job.token);
        self.blocked_ids.insert(conn, id);
        let proto = job.proto;
        self.blocked.insert(
            id,
            Blocked {
                job: j,
                op,
                conn,
                v,
                slot,
                proto,
                cmd,
                queued: false,
                cancelled: false,
                had_turn: false,
                across,
                user: shardline_shards::acl::caller(),
            },
        );
        self.try_blocked(db, id, now, seed, None)
    }

    /// Proposes a try of blocking command `id` (not queued): its first (`ready` `None`), or a
    /// retry after key `ready` changed (`Kind::Retry`). Fails its op if this replica cannot
    /// propose (no longer the leader: nothing was applied, so the client may retry there).
    fn try_blocked(
        &mut self,
        db: &mut shardline_shards::db::Db,
        id: u64,
        now: Now,
        seed: u64,
        ready: Option<&[u8]>,
    ) {
        if ready.is_some()
            && let Some(why) = self.refused_now(id)
        {
            // (Nothing was popped; the key's turn passes to its next waiter.)
            let b = &self.blocked[&id];
            let (job, op) = (b.job, b.op);
            for k in &b.cmd.keys {
                db.mark_ready(k);
            }
            self.forget_blocked(id);
            return self.pending.fail(job, op, &why);
        }
        if self.blocked[&id].across.is_some() {
            return self.try_across(db, id, now, seed, ready);
        }
        let b = &self.blocked[&id];
        debug_assert!(
            !b.queued,
            "a queued waiter is taken off its keys before a try"
        );
        let words = b
            .cmd
            .spans
            .iter()
            .map(|&(s, e)| &b.cmd.buf[s as usize..e as usize]);
        let enc = match ready {
            None => {
                let mut enc = Encoder::new(Kind::Commands, now.unix_us, seed);
                enc.push(words);
                enc
            }
            Some(key) => {
                let mut enc = Encoder::new(Kind::Retry, now.unix_us, seed);
                let all: Vec<&[u8]> = std::iter::once(key).chain(words).collect();
                enc.push(all.into_iter());
                enc
            }
        };
        let (v, job, op, slot) = (b.v, b.job, b.op, b.slot);
        self.undirect();
        let tried = match self.groups[v as usize].as_mut() {
            Some(g) => g.propose(enc.finish()).map(|index| (index, g.term())),
            None => Err(raft::NotLeader { leader: None }),
        };
        match tried {
            Ok((index, term)) => {
                self.pending.wait(
                    v,
                    index,
                    Waiter {
                        job,
                        ops: OpList::One(op),
                        term,
                        since: now.mono,
                        block: Some(id),
                        held: false,
                    },
                );
                self.touch(v);
            }
            Err(e) => {
                let msg = self.c.redirect(slot, e.leader);
                self.forget_blocked(id);
                self.pending.fail(job, op, &msg);
            }
        }
    }

    /// A try of blocking command `id` whose keys are in several direct groups of this thread:
    /// run at once with the groups' clock and `seed`; one that serves (or fails) logs its
    /// effects on each vShard of its keys (`RESTORE`/`DEL`, all in one record, as any op
    /// across vShards) and is answered once they are written; one that finds nothing queues
    /// the command on its keys again. Its groups no longer all direct (being moved, or a
    /// node joined): answered with why (nothing popped).
    fn try_across(
        &mut self,
        db: &mut shardline_shards::db::Db,
        id: u64,
        now: Now,
        seed: u64,
        ready: Option<&[u8]>,
    ) {
        let b = &self.blocked[&id];
        let (job, op) = (b.job, b.op);
        let vs = b.across.clone().unwrap_or_default();
        if !self.all_direct(&vs) {
            let why = self.across_refusal(&vs);
            self.forget_blocked(id);
            return self.pending.fail(job, op, why);
        }
        let now_us = vs.iter().fold(now.unix_us, |t, &v| self.direct_clock(v, t));
        let b = &self.blocked[&id];
        let args = Args::new(&b.cmd.buf, &b.cmd.spans);
        let mut out = Out::new(b.proto);
        let mut rng = shardline_shards::rng::Rng::new(seed);
        let mut ctx = command::Ctx {
            now_ms: now_us / 1000,
            now_us,
            rng: &mut rng,
        };
        let served = match ready {
            None => blocking::try_serve(b.cmd.name, db, args, &mut ctx, &mut out),
            Some(key) => blocking::retry(b.cmd.name, db, args, key, &mut ctx, &mut out),
        };
        if !served {
            let b = self.blocked.get_mut(&id).expect("a waiter being tried");
            b.queued = true;
            db.wait_on(id, &b.cmd.keys, b.had_turn);
            return;
        }
        // Every key of the command (BLMOVE's destination too, not only the keys waited on).
        let owned: Vec<Vec<u8>> = match command::lookup(args.get(0)) {
            Some(spec) => spec.keys_of(args).map(|k| args.get(k).to_vec()).collect(),
            None => b.cmd.keys.clone(),
        };
        let keys: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        for k in &keys {
            db.mark_ready(k);
        }
        // (An error wrote nothing.)
        let written = if out.errors != 0 { &[][..] } else { &keys[..] };
        let seq = self.log_effects(db, written, now_us, seed);
        self.forget_blocked(id);
        self.pending.fill_held(job, op, &out.buf);
        self.hold_direct(job, op, seq);
    }

    /// The answer of blocking command `id`'s try, just applied on this leader: the op is
    /// answered, or the command is queued (`had_turn`).
    pub(super) fn block_tried(&mut self, id: u64, reply: &[u8], db: &mut shardline_shards::db::Db) {
        let b = self
            .blocked
            .get_mut(&id)
            .expect("a tried waiter has a record");
        if !blocking::would_block(reply) {
            // Served (or an error): the next waiter of its keys gets its turn.
            let (job, op) = (b.job, b.op);
            for k in &b.cmd.keys {
                db.mark_ready(k);
            }
            self.forget_blocked(id);
            return self.pending.fill(job, op, reply);
        }
        if b.cancelled {
            let (job, op) = (b.job, b.op);
            let mut out = Out::new(b.proto);
            blocking::timeout_reply(b.cmd.name, &mut out);
            self.forget_blocked(id);
            return self.pending.fill(job, op, &out.buf);
        }
        b.queued = true;
        db.wait_on(id, &b.cmd.keys, b.had_turn);
    }

    /// `Unblock` for the blocking command of `(origin, token)`: a queued one is answered with
    /// its timeout reply; one being tried is marked so its try's answer is final.
    pub(super) fn unblock(
        &mut self,
        origin: usize,
        token: crate::hop::Token,
        db: &mut shardline_shards::db::Db,
    ) {
        let Some(&id) = self.blocked_ids.get(&(origin, token)) else {
            // Or a blocking command across vShards (`calvin/`).
            self.calvin_unblock(origin, token);
            return;
        };
        let b = self.blocked.get_mut(&id).expect("ids and records agree");
        if !b.queued {
            b.cancelled = true;
            return;
        }
        let (job, op) = (b.job, b.op);
        let mut out = Out::new(b.proto);
        blocking::timeout_reply(b.cmd.name, &mut out);
        db.unwait(id, &b.cmd.keys);
        self.forget_blocked(id);
        self.pending.fill(job, op, &out.buf);
    }

    /// Proposes a try of the first waiter of every key made ready (one per key, so a key's
    /// waiters are tried in arrival order).
    pub(super) fn serve_ready(
        &mut self,
        db: &mut shardline_shards::db::Db,
        now: Now,
        mut seed: impl FnMut() -> u64,
    ) {
        while let Some(key) = db.ready.pop() {
            let Some(id) = db.waiting.get(&key).and_then(|q| q.front().copied()) else {
                continue;
            };
            if self.fire_stand_in(db, id, &key) {
                continue;
            }
            let b = self
                .blocked
                .get_mut(&id)
                .expect("queued waiters have records");
            b.queued = false;
            b.had_turn = true;
            db.unwait(id, &b.cmd.keys);
            self.try_blocked(db, id, now, seed(), Some(&key));
        }
    }

    /// Answers the queued waiters of groups this replica no longer leads with a redirect to
    /// the new leader (nothing was applied for them). A walk over the records, run only while
    /// some exist.
    pub(super) fn redirect_blocked(&mut self, db: &mut shardline_shards::db::Db) {
        let lost: Vec<(u64, Option<NodeId>)> = self
            .blocked
            .iter()
            .filter(|(_, b)| b.queued)
            .filter_map(|(&id, b)| match self.groups[b.v as usize].as_ref() {
                Some(g) if g.role() == raft::Role::Leader => None,
                g => Some((id, g.and_then(|g| g.leader()))),
            })
            .collect();
        for (id, leader) in lost {
            let b = &self.blocked[&id];
            let (job, op) = (b.job, b.op);
            let msg = self.c.redirect(b.slot, leader);
            db.unwait(id, &b.cmd.keys);
            self.forget_blocked(id);
            self.pending.fail(job, op, &msg);
        }
    }

    /// Drops blocking command `id`'s record (its op is being answered).
    /// Why blocking command `id` may no longer run for its client's user (its permissions
    /// changed, or it was deleted, while it waited), if so.
    fn refused_now(&self, id: u64) -> Option<String> {
        let b = &self.blocked[&id];
        let user = b.user.as_ref()?;
        let spec = shardline_shards::command::lookup(b.cmd.name.as_bytes())?;
        let args = shardline_shards::command::Args::new(&b.cmd.buf, &b.cmd.spans);
        match self.c.acl.user(user.name.as_bytes()).0 {
            None => Some(format!(
                "NOPERM User {} was deleted while its command waited",
                user.name
            )),
            Some(now) => shardline_shards::acl::check_command(&now, spec, args)
                .err()
                .map(|d| shardline_shards::acl::denial_message(&d, &now.name)),
        }
    }

    pub(super) fn forget_blocked(&mut self, id: u64) {
        if let Some(b) = self.blocked.remove(&id) {
            self.blocked_ids.remove(&b.conn);
        }
    }

    /// How many blocking commands wait on this thread (INFO `blocked_clients`): parked
    /// here, or across vShards from a connection of this thread (`calvin/`).
    pub fn blocked_count(&self) -> usize {
        self.blocked.len() + self.calvin_blocked()
    }
}

impl Shard {
    /// `Shard::serve_ready` on a replicated node: tries the first waiter of each ready key.
    /// Keys stay ready for the next step if the replicas are busy.
    pub(crate) fn serve_ready_replicated(&self) {
        let (Ok(mut guard), Ok(mut db)) = (self.repl.try_borrow_mut(), self.db.try_borrow_mut())
        else {
            return;
        };
        let Some(r) = guard.as_mut() else { return };
        if db.ready.is_empty() {
            return;
        }
        let mut rng = self.rng.borrow_mut();
        let now = Now {
            mono: Instant::now(),
            unix_us: unix_now_us(),
        };
        r.serve_ready(&mut db, now, || rng.next_u64());
        drop((rng, db));
        // (A stand-in that fired may have queued a wake-up for a peer.)
        self.wake_dialers(r);
        self.deliver_finished(r);
    }

    /// Blocking commands waiting on this thread's leaders.
    pub(crate) fn blocked_replicated(&self) -> usize {
        self.repl
            .try_borrow()
            .ok()
            .and_then(|r| r.as_ref().map(Replicas::blocked_count))
            .unwrap_or(0)
    }
}
