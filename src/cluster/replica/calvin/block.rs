//! Blocking commands across vShards (`docs/design/calvin.md`, step 5): at the origin, each
//! try is a transaction (`Submission::block`), tried again when a stand-in wakes it; on each
//! participant's leader, a try that found nothing leaves a stand-in on its keys
//! (`Db::waiting`) that wakes the origin when one is written.

use super::*;

/// A blocking command across vShards whose try found nothing is tried again when a stand-in
/// wakes it, and at the latest after this long (a stand-in lost with a leader change, or a
/// wake-up lost with a connection, must not leave it waiting for good).
const BLOCK_RETRY: Duration = Duration::from_secs(1);
/// A try that was not sequenced (no sequencer for a moment) is made again after this long.
const BLOCK_RETRY_SOON: Duration = Duration::from_millis(100);
/// How long a participant's stand-in waits for a write before it goes.
pub(super) const STAND_IN_FOR: Duration = Duration::from_secs(3);

/// A blocking command across vShards at its origin: tried as a transaction each time a
/// stand-in wakes it, until one try serves it or its connection gives up.
pub(super) struct BlockWait {
    /// A try is sequenced or on its way (its answer is awaited).
    pub(super) in_flight: bool,
    /// A stand-in woke it while a try was in flight: try again as soon as that one answers.
    pub(super) woken: bool,
    /// Its connection gave up while a try was in flight: that try's answer is final.
    pub(super) cancelled: bool,
    /// When it is tried again if nothing wakes it first.
    pub(super) retry_at: Instant,
}

/// A participant's stand-in for a blocking command's origin, waiting on the keys of a
/// vShard led here (`Db::waiting`, by an id from the blocked commands' counter).
pub(super) struct StandIn {
    /// The try that found nothing: its origin is woken with it.
    pub(super) wakes: TxnId,
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) until: Instant,
}

impl Replicas {
    /// Origin: a stand-in of blocking command try `id` fired: try again now, or as soon as
    /// the try in flight answers (nothing if `id` is an earlier try's, or answered).
    pub(super) fn woken(&mut self, id: TxnId, now: Instant) {
        let Some(b) = self
            .calvin
            .waits
            .get_mut(&id)
            .and_then(|w| w.block.as_mut())
        else {
            return;
        };
        if b.in_flight {
            b.woken = true;
        } else {
            self.try_again(id, now);
        }
    }

    /// Origin: the answer to a try of blocking command `id`. One that found nothing (or was
    /// not sequenced: nothing happened) waits for a stand-in, or its retry, and is handled
    /// here (true); one that served (or failed) is answered as any transaction's (false).
    pub(super) fn block_replied(
        &mut self,
        id: TxnId,
        reply: &Result<Vec<u8>, &'static str>,
        now: Instant,
    ) -> bool {
        let empty = match reply {
            Ok(bytes) => shardline_shards::command::blocking::would_block(bytes),
            Err(_) => true,
        };
        let Some(b) = self
            .calvin
            .waits
            .get_mut(&id)
            .and_then(|w| w.block.as_mut())
        else {
            return false;
        };
        if !empty {
            return false;
        }
        if b.cancelled {
            let w = self.waited(id, Answered::TimedOut).expect("present");
            self.fail_blocked_wait(w);
            return true;
        }
        b.in_flight = false;
        if b.woken {
            self.try_again(id, now);
            return true;
        }
        b.retry_at = now
            + if reply.is_err() {
                BLOCK_RETRY_SOON
            } else {
                BLOCK_RETRY
            };
        true
    }

    /// Origin: blocking command try `id` found nothing and one of its keys was written since
    /// (or its retry is due): the next try, under a new id (each try is a transaction of its
    /// own; stand-ins of the last one that fire later name an id no longer waited for).
    pub(super) fn try_again(&mut self, id: TxnId, now: Instant) {
        let Some(mut w) = self.calvin.waits.remove(&id) else {
            return;
        };
        let sequencer = self.c.leader(VShardId(self.meta_g as u16));
        let next = self.next_txn_id();
        let b = w.block.as_mut().expect("a blocking command's wait");
        b.in_flight = sequencer != NodeId(0);
        b.woken = false;
        b.retry_at = now + BLOCK_RETRY_SOON;
        w.sub.id = next;
        w.since = now;
        w.sent_to = sequencer;
        w.resent = false;
        let sub = w.sub.clone();
        self.calvin.waits.insert(next, w);
        if sequencer != NodeId(0) {
            self.send_to(sequencer, 0, CalvinMsg::Submit(sub));
        }
    }

    /// Origin: `Unblock` of the connection `(origin, token)` (its timeout, or it left) if it
    /// waits for a blocking command here: answered with the timeout reply, or, with a try in
    /// flight, that try's answer is made final. Whether one was found.
    pub(in crate::cluster::replica) fn calvin_unblock(
        &mut self,
        origin: usize,
        token: crate::hop::Token,
    ) -> bool {
        let found = self.calvin.waits.iter_mut().find(|(_, w)| {
            w.block.is_some()
                && self
                    .pending
                    .job(w.job)
                    .is_some_and(|j| j.origin == origin && j.token == token)
        });
        let Some((&id, w)) = found else {
            return false;
        };
        let b = w.block.as_mut().expect("found so");
        if b.in_flight {
            b.cancelled = true;
            return true;
        }
        let w = self.waited(id, Answered::TimedOut).expect("found");
        self.fail_blocked_wait(w);
        true
    }

    /// Blocking commands across vShards waiting at this thread (their origin).
    pub(in crate::cluster::replica) fn calvin_blocked(&self) -> usize {
        self.calvin
            .waits
            .values()
            .filter(|w| w.block.is_some())
            .count()
    }

    /// Answers a blocking command's wait with its timeout reply.
    pub(super) fn fail_blocked_wait(&mut self, w: Wait) {
        let proto = self.pending.job(w.job).map_or(Proto::Resp2, |j| j.proto);
        let mut out = Out::new(proto);
        shardline_shards::command::blocking::timeout_reply("", &mut out);
        self.pending.fill(w.job, w.op, &out.buf);
    }

    /// Participant `v`'s leader: blocking command try `t` found nothing: a stand-in waits on
    /// `v`'s keys it waits on, in line behind the waiters there, and wakes its origin when one
    /// is written (`serve_ready`); gone after `STAND_IN_FOR` (the origin tries again by then).
    pub(super) fn stand_in(&mut self, db: &mut Db, v: VShardId, t: &Ordered, now: Instant) {
        let Some(argv) = t.sub.cmds.first() else {
            return;
        };
        let (mut buf, mut spans) = (Vec::new(), Vec::new());
        command::words_into(argv, &mut buf, &mut spans);
        let args = Args::new(&buf, &spans);
        let Some(spec) = command::lookup(args.get(0)) else {
            return;
        };
        let Ok(wait) = shardline_shards::command::blocking::parse(spec.name, &args) else {
            return;
        };
        let layout = self.c.layout;
        let keys: Vec<Vec<u8>> = wait
            .keys
            .iter()
            .map(|&i| args.get(i).to_vec())
            .filter(|k| layout.vshard_of(shardline_shards::slot::key_slot(k)) == v)
            .collect();
        if keys.is_empty() {
            return;
        }
        let sid = self.next_blocked;
        self.next_blocked += 1;
        db.wait_on(sid, &keys, false);
        self.calvin.stand_ins.insert(
            sid,
            StandIn {
                wakes: t.sub.id,
                keys,
                until: now + STAND_IN_FOR,
            },
        );
    }

    /// A key with waiters was written: if its first waiter is a stand-in, it wakes its
    /// origin and goes (true; the key stays ready for the waiter after it).
    pub(in crate::cluster::replica) fn fire_stand_in(
        &mut self,
        db: &mut Db,
        id: u64,
        key: &[u8],
    ) -> bool {
        let Some(s) = self.calvin.stand_ins.remove(&id) else {
            return false;
        };
        db.unwait(id, &s.keys);
        db.mark_ready(key);
        let (node, t) = origin_in(s.wakes);
        if t < self.c.threads {
            self.send_to(node, t, CalvinMsg::Wake { id: s.wakes });
        }
        true
    }

    /// Drops the stand-ins past their time (their origins have tried again since, or gone).
    pub(super) fn expire_stand_ins(&mut self, db: &mut Db, now: Instant) {
        let old: Vec<u64> = self
            .calvin
            .stand_ins
            .iter()
            .filter(|(_, s)| s.until <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in old {
            let s = self.calvin.stand_ins.remove(&id).expect("listed");
            db.unwait(id, &s.keys);
        }
    }
}
