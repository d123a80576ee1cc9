//! The participant side of Calvin on one shard thread (`docs/design/calvin.md`, step 2):
//! which sequenced transactions each vShard this thread leads may read, send, and propose,
//! and which keys single-vShard commands must wait for. Sans-IO: the driver feeds it what
//! happened and takes [`Output`]s; it reads the keyspace only when told to step.
//!
//! Call order: [`Scheduler::lead`] for each vShard this thread leads (with its `last_seq`
//! and the log's indexes); [`Scheduler::deliver`] each sequenced transaction, in sequence
//! order; [`Scheduler::applied`] as the vShard's log applies; [`Scheduler::reads`] as other
//! participants' reads arrive; [`Scheduler::step`] to advance; [`Scheduler::take_outputs`];
//! [`Scheduler::executed`] once an execution entry applied.
//!
//! Rules (one vShard `v`):
//! - Each key has a queue of the transactions that name it, in sequence order; a transaction
//!   holds its keys of `v` when it heads every one of their queues.
//! - It reads once it holds them and `v` has applied every entry proposed before it was
//!   delivered (the values it sends are then those every replica has at its execution
//!   entry: nothing can change them until it executes); it sends them to every other
//!   participant (the ready mark).
//! - It is proposed once it has every other participant's reads and every earlier
//!   transaction of `v` is proposed: `v`'s log holds execution entries in sequence order, so
//!   `last_seq` only grows.
//! - Its keys are released when its execution entry applies (`executed`).

use super::exec::Read;
use super::seq::Ordered;
use crate::slot::VShardId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// A transaction's place in the global order.
pub type Seq = u64;

/// What the driver is to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send participant `from`'s reads for `seq` to the others (`to`; some may be on this
    /// thread: hand them back through `reads`).
    Reads {
        seq: Seq,
        from: VShardId,
        to: Vec<VShardId>,
        reads: Vec<Read>,
    },
    /// Propose `t`'s execution entry in `v`'s log, carrying every participant's reads
    /// (`v`'s first, then the others' by vShard: `Ordered::execution`).
    Propose {
        t: Arc<Ordered>,
        v: VShardId,
        reads: Vec<Read>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    Read,
    Proposed,
}

struct Pending {
    t: Arc<Ordered>,
    /// The other participants: whom it sends its reads to, and hears from.
    others: Vec<VShardId>,
    /// `v`'s last proposed index when it was delivered: it reads once `v` applied it.
    after: u64,
    phase: Phase,
    /// The participants heard from, and their reads.
    heard: Vec<(VShardId, Vec<Read>)>,
    /// Its own reads once made (sent again to a participant that asks, `want`).
    mine: Option<Vec<Read>>,
}

/// One vShard this thread leads.
struct Part {
    /// Every transaction of `v` below it is executed (`last_seq + 1`).
    next: Seq,
    applied: u64,
    txns: BTreeMap<Seq, Pending>,
    /// Per key of a pending transaction: the transactions naming it, in sequence order.
    queues: HashMap<Vec<u8>, VecDeque<Seq>>,
}

/// Reads that came before their transaction was delivered here: at most one set per
/// participant of a transaction the sequencer let in (its bound on transactions in flight
/// bounds them); past this many transactions, something is wrong and the oldest go.
const EARLY_MAX: usize = 1 << 20;

#[derive(Default)]
pub struct Scheduler {
    parts: HashMap<VShardId, Part>,
    /// Transactions waiting in all parts (one per part they wait in): `is_busy` in O(1),
    /// for the paths of single-vShard commands.
    waiting: usize,
    /// Per waiting transaction, the parts it waits in (`reads` goes to those only).
    holders: HashMap<Seq, Vec<VShardId>>,
    /// The parts where transactions wait: what `step` walks (a thread leads every vShard it
    /// has taken part for; walking them all each step cost a tenth of a busy thread).
    busy: std::collections::BTreeSet<VShardId>,
    early: BTreeMap<Seq, Vec<(VShardId, Vec<Read>)>>,
    out: Vec<Output>,
    /// Single-vShard commands waiting in key queues (`wait_local`): each place's keys. A
    /// place is a `Seq` with `LOCAL` set, queued like a transaction: the transactions
    /// delivered after it wait behind it, so a stream of transactions on a key cannot starve
    /// a command on it.
    locals: HashMap<Seq, Vec<(VShardId, Vec<u8>)>>,
    next_local: Seq,
}

/// The bit that marks a command's place in a key queue (`Scheduler::wait_local`); sequence
/// numbers never reach it.
const LOCAL: Seq = 1 << 63;

impl Scheduler {
    /// Takes part for `v`, which this thread now leads: every transaction of `v` below `next`
    /// is executed (its replicated `last_seq + 1`), and its log applied up to `applied`.
    pub fn lead(&mut self, v: VShardId, next: Seq, applied: u64) {
        let old = self.parts.insert(
            v,
            Part {
                next,
                applied,
                txns: BTreeMap::new(),
                queues: HashMap::new(),
            },
        );
        self.dropped(v, old);
    }

    /// Stops taking part for `v` (no longer led here): what it held is the next leader's to
    /// take again from the stream.
    pub fn step_down(&mut self, v: VShardId) {
        let old = self.parts.remove(&v);
        self.dropped(v, old);
    }

    /// `v`'s part `old` (if it had one) is gone: its transactions wait here no more.
    fn dropped(&mut self, v: VShardId, old: Option<Part>) {
        // (Commands' places in its queues go with them: those commands run, and are
        // redirected, when they are looked at again.)
        for at in self.locals.values_mut() {
            at.retain(|(w, _)| *w != v);
        }
        for seq in old.iter().flat_map(|p| p.txns.keys()) {
            self.waiting -= 1;
            unhold(&mut self.holders, *seq, v);
        }
        self.busy.remove(&v);
    }

    /// A sequenced transaction; `proposed(v)` is `v`'s last proposed log index now. Those
    /// already executed or delivered are ignored.
    pub fn deliver(&mut self, t: Arc<Ordered>, proposed: impl Fn(VShardId) -> u64) {
        let participants = t.participants();
        for &v in &participants {
            let Some(part) = self.parts.get_mut(&v) else {
                continue;
            };
            if t.seq < part.next || part.txns.contains_key(&t.seq) {
                continue;
            }
            debug_assert!(
                part.txns.last_key_value().is_none_or(|(s, _)| *s < t.seq),
                "delivered in sequence order"
            );
            for k in t.keys_of(v) {
                let q = part.queues.entry(k.to_vec()).or_default();
                if q.back() != Some(&t.seq) {
                    q.push_back(t.seq);
                }
            }
            let heard = self
                .early
                .get(&t.seq)
                .map(|e| e.iter().filter(|(from, _)| *from != v).cloned().collect())
                .unwrap_or_default();
            self.waiting += 1;
            self.holders.entry(t.seq).or_default().push(v);
            self.busy.insert(v);
            part.txns.insert(
                t.seq,
                Pending {
                    t: t.clone(),
                    others: participants.iter().copied().filter(|w| *w != v).collect(),
                    after: proposed(v),
                    phase: Phase::Waiting,
                    heard,
                    mine: None,
                },
            );
        }
    }

    /// `v`'s log has applied up to `index`.
    pub fn applied(&mut self, v: VShardId, index: u64) {
        if let Some(part) = self.parts.get_mut(&v) {
            part.applied = part.applied.max(index);
        }
    }

    /// Participant `from`'s reads for `seq`. Kept (bounded) when the transaction has not
    /// been delivered here yet.
    pub fn reads(&mut self, seq: Seq, from: VShardId, reads: Vec<Read>) {
        let mut taken = false;
        for v in self.holders.get(&seq).into_iter().flatten() {
            if *v == from {
                continue;
            }
            if let Some(p) = self
                .parts
                .get_mut(v)
                .and_then(|part| part.txns.get_mut(&seq))
            {
                taken = true;
                if !p.heard.iter().any(|(f, _)| *f == from) {
                    p.heard.push((from, reads.clone()));
                }
            }
        }
        // Kept even when no vShard led here waits for it yet: the participant it is for may
        // not be led here yet (electing, catching up; found when the first transaction
        // across two threads waited forever for reads dropped so). The driver forgets them
        // below its low watermark (`forget_early_below`).
        if !taken {
            if self.early.len() >= EARLY_MAX {
                self.early.pop_first();
            }
            let e = self.early.entry(seq).or_default();
            if !e.iter().any(|(f, _)| *f == from) {
                e.push((from, reads));
            }
        }
    }

    /// Forgets reads kept for transactions below `seq` (every one of them that concerns a
    /// vShard of this thread has executed here).
    pub fn forget_early_below(&mut self, seq: Seq) {
        if self.early.first_key_value().is_some_and(|(s, _)| *s < seq) {
            self.early = self.early.split_off(&seq);
        }
    }

    /// `seq`'s execution entry applied in `v`'s log: its keys are released. Returns the
    /// transaction if `v` was waiting for it here.
    pub fn executed(&mut self, v: VShardId, seq: Seq) -> Option<Arc<Ordered>> {
        let part = self.parts.get_mut(&v)?;
        part.next = part.next.max(seq + 1);
        let p = part.txns.remove(&seq)?;
        self.waiting -= 1;
        unhold(&mut self.holders, seq, v);
        for k in p.t.keys_of(v) {
            if let Some(q) = part.queues.get_mut(k) {
                q.retain(|s| *s != seq);
                if q.is_empty() {
                    part.queues.remove(k);
                }
            }
        }
        debug_assert!(seq & LOCAL == 0, "sequence numbers stay below LOCAL");
        if part.txns.is_empty() {
            self.busy.remove(&v);
        }
        Some(p.t)
    }

    /// The vShards led here (`lead`) where transactions wait.
    pub fn busy_parts(&self) -> impl Iterator<Item = VShardId> + '_ {
        self.busy.iter().copied()
    }

    /// The transaction `seq` waiting on `v` here.
    pub fn get(&self, v: VShardId, seq: Seq) -> Option<&Arc<Ordered>> {
        Some(&self.parts.get(&v)?.txns.get(&seq)?.t)
    }

    /// Whether `v` is led here (`lead`).
    pub fn leads(&self, v: VShardId) -> bool {
        self.parts.contains_key(&v)
    }

    /// Whether any transaction waits here (holds or waits for keys): the one check the
    /// paths of single-vShard commands make before looking at keys.
    pub fn is_busy(&self) -> bool {
        self.waiting > 0
    }

    /// The lowest sequence number delivered here and not executed, if any.
    pub fn lowest_pending(&self) -> Option<Seq> {
        self.holders.keys().min().copied()
    }

    /// Participant `by` asks for `of`'s reads for `seq` (it lost them: restarted, or a new
    /// leader): sent again if `of` made them here and has not executed. Whether `of` is led
    /// here and has executed `seq` (then its log's record answers, `VShard::calvin_sent`).
    pub fn want(&mut self, seq: Seq, of: VShardId, by: VShardId) -> bool {
        let Some(part) = self.parts.get(&of) else {
            return false;
        };
        if seq < part.next {
            return true;
        }
        if let Some(reads) = part.txns.get(&seq).and_then(|p| p.mine.clone()) {
            self.out.push(Output::Reads {
                seq,
                from: of,
                to: vec![by],
                reads,
            });
        }
        false
    }

    /// The transactions that have read here and still wait for other participants' reads:
    /// `(seq, the participant waiting, those it has not heard from)`.
    pub fn missing(&self) -> Vec<(Seq, VShardId, Vec<VShardId>)> {
        let mut out = Vec::new();
        for v in &self.busy {
            let Some(part) = self.parts.get(v) else {
                continue;
            };
            let v = *v;
            for (&seq, p) in &part.txns {
                if p.phase != Phase::Read || p.heard.len() == p.others.len() {
                    continue;
                }
                let lacking = p
                    .others
                    .iter()
                    .copied()
                    .filter(|o| !p.heard.iter().any(|(f, _)| f == o))
                    .collect();
                out.push((seq, v, lacking));
            }
        }
        out
    }

    /// Whether a single-vShard command on `key` of `v` must wait: a transaction delivered
    /// here names it and has not executed (or a command waits for it there). A command that
    /// has a place (`place`) waits only while something is ahead of it there.
    pub fn is_locked(&self, v: VShardId, key: &[u8]) -> bool {
        self.is_locked_for(v, key, None)
    }

    /// `is_locked` for a command with place `place`.
    pub fn is_locked_for(&self, v: VShardId, key: &[u8], place: Option<Seq>) -> bool {
        let Some(q) = self.parts.get(&v).and_then(|p| p.queues.get(key)) else {
            return false;
        };
        match place {
            Some(id) if q.contains(&id) => q.front() != Some(&id),
            _ => true,
        }
    }

    /// A single-vShard command must wait for keys transactions hold (`is_locked_for`): it
    /// takes a place at the back of the queue of each key it names (`keys`) it is not in yet
    /// (`place`, or a new one), so transactions delivered after it wait for it
    /// (`local_done`). Returns the place.
    pub fn wait_local<'a>(
        &mut self,
        place: Option<Seq>,
        keys: impl IntoIterator<Item = (VShardId, &'a [u8])>,
    ) -> Seq {
        let id = place.unwrap_or_else(|| {
            self.next_local += 1;
            LOCAL | self.next_local
        });
        let at = self.locals.entry(id).or_default();
        for (v, key) in keys {
            // (Every key it names, held or not: a transaction delivered later must not get
            // ahead of it on any, or the two could wait for each other.)
            let Some(part) = self.parts.get_mut(&v) else {
                continue;
            };
            let q = part.queues.entry(key.to_vec()).or_default();
            if !q.contains(&id) {
                q.push_back(id);
                at.push((v, key.to_vec()));
            }
        }
        id
    }

    /// The command with place `place` ran (its entries proposed, `proposed(v)` now `v`'s
    /// last proposed index): it leaves its queues, and the transactions waiting in its
    /// vShards read only once their logs applied what it proposed.
    pub fn local_done(&mut self, place: Seq, proposed: impl Fn(VShardId) -> u64) {
        let Some(at) = self.locals.remove(&place) else {
            return;
        };
        for (v, key) in at {
            let Some(part) = self.parts.get_mut(&v) else {
                continue;
            };
            if let Some(q) = part.queues.get_mut(&key) {
                q.retain(|s| *s != place);
                if q.is_empty() {
                    part.queues.remove(&key);
                }
            }
            let index = proposed(v);
            for p in part.txns.values_mut() {
                if p.phase == Phase::Waiting {
                    p.after = p.after.max(index);
                }
            }
        }
    }

    /// Advances every vShard: reads what may be read (from `db`, at each transaction's own
    /// clock: what its execution entry reads again on every replica; for one that watches
    /// keys of the vShard, with `watch_broken`'s verdict on them), proposes what may be.
    pub fn step(
        &mut self,
        db: &mut crate::db::Db,
        watch_broken: impl Fn(&Ordered, VShardId) -> bool,
    ) {
        for &v in &self.busy {
            let Some(part) = self.parts.get_mut(&v) else {
                continue;
            };
            let mut all_earlier_proposed = true;
            for (seq, p) in part.txns.iter_mut() {
                if p.phase == Phase::Waiting
                    && part.applied >= p.after
                    && p.t
                        .keys_of(v)
                        .all(|k| part.queues.get(k).and_then(|q| q.front()) == Some(seq))
                {
                    // A command split by key reads nothing: its parts need nothing from each
                    // other, and the message is only the ready mark.
                    let mut reads = if p.t.sub.split {
                        Vec::new()
                    } else {
                        super::exec::read(db, p.t.keys_of(v), p.t.now_us / 1000)
                    };
                    if p.t
                        .sub
                        .watch
                        .as_ref()
                        .is_some_and(|w| w.vshards.contains(&v))
                        && watch_broken(&p.t, v)
                    {
                        reads.push(Read::watch_broken(v));
                    }
                    p.mine = Some(reads.clone());
                    self.out.push(Output::Reads {
                        seq: *seq,
                        from: v,
                        to: p.others.clone(),
                        reads,
                    });
                    p.phase = Phase::Read;
                }
                if p.phase == Phase::Read && all_earlier_proposed && p.heard.len() == p.others.len()
                {
                    let mut heard = std::mem::take(&mut p.heard);
                    heard.sort_by_key(|(from, _)| *from);
                    let mut reads = p.mine.clone().unwrap_or_default();
                    reads.extend(heard.into_iter().flat_map(|(_, r)| r));
                    self.out.push(Output::Propose {
                        t: p.t.clone(),
                        v,
                        reads,
                    });
                    p.phase = Phase::Proposed;
                }
                all_earlier_proposed &= p.phase == Phase::Proposed;
            }
        }
    }

    pub fn take_outputs(&mut self) -> Vec<Output> {
        debug_assert_eq!(
            self.waiting,
            self.parts.values().map(|p| p.txns.len()).sum::<usize>(),
            "the count of waiting transactions"
        );
        debug_assert_eq!(
            self.waiting,
            self.holders.values().map(Vec::len).sum::<usize>(),
            "the index of waiting transactions"
        );
        debug_assert!(
            self.parts
                .iter()
                .all(|(v, p)| p.txns.is_empty() != self.busy.contains(v)),
            "the busy parts"
        );
        std::mem::take(&mut self.out)
    }
}

/// `v` no longer waits for `seq`.
fn unhold(holders: &mut HashMap<Seq, Vec<VShardId>>, seq: Seq, v: VShardId) {
    if let Some(h) = holders.get_mut(&seq) {
        h.retain(|w| *w != v);
        if h.is_empty() {
            holders.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::slot::VShardLayout;

    const V1: VShardId = VShardId(1);
    const V2: VShardId = VShardId(2);
    /// A participant led by another thread or node.
    const FAR: VShardId = VShardId(9);

    fn db() -> Db {
        Db::new_all(VShardLayout::new(16).unwrap())
    }

    fn txn(seq: Seq, keys: &[(VShardId, &str)]) -> Arc<Ordered> {
        Arc::new(Ordered {
            split: Default::default(),
            seq,
            now_us: 0,
            seed: 0,
            sub: crate::calvin::seq::Submission {
                id: crate::calvin::seq::TxnId { origin: 0, n: seq },
                keys: keys
                    .iter()
                    .map(|(v, k)| (*v, k.as_bytes().to_vec()))
                    .collect(),
                cmds: Vec::new(),
                exec: false,
                resp3: false,
                split: false,
                watch: None,
                block: false,
            },
        })
    }

    fn absent(key: &str) -> Vec<Read> {
        vec![Read {
            key: key.as_bytes().to_vec(),
            value: None,
        }]
    }

    /// The outputs as `(kind, seq, vShard)`, `r` for reads and `p` for a proposal, sorted
    /// (vShards are stepped in any order; within one, proposals keep sequence order).
    fn shape(out: &[Output]) -> Vec<(char, Seq, u16)> {
        let mut s: Vec<_> = out
            .iter()
            .map(|o| match o {
                Output::Reads { seq, from, .. } => ('r', *seq, from.0),
                Output::Propose { t, v, .. } => ('p', t.seq, v.0),
            })
            .collect();
        s.sort_unstable();
        s
    }

    /// Steps and takes the outputs.
    fn step(s: &mut Scheduler, db: &mut Db) -> Vec<Output> {
        s.step(db, |_, _| false);
        s.take_outputs()
    }

    #[test]
    fn a_transaction_reads_once_it_holds_its_keys_then_proposes_with_the_others_reads() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 0);
        s.lead(V2, 0, 0);
        s.deliver(txn(5, &[(V1, "a"), (V2, "b")]), |_| 0);
        assert!(s.is_locked(V1, b"a") && s.is_locked(V2, b"b"));
        assert!(!s.is_locked(V1, b"b"), "a key of the other vShard");
        let out = step(&mut s, &mut db);
        assert_eq!(shape(&out), [('r', 5, 1), ('r', 5, 2)]);
        for o in &out {
            let Output::Reads { to, from, .. } = o else {
                unreachable!()
            };
            assert_eq!(to, &[if *from == V1 { V2 } else { V1 }]);
        }
        assert!(step(&mut s, &mut db).is_empty(), "each reads once");
        s.reads(5, V1, absent("a"));
        s.reads(5, V2, absent("b"));
        let out = step(&mut s, &mut db);
        assert_eq!(shape(&out), [('p', 5, 1), ('p', 5, 2)]);
        for o in &out {
            let Output::Propose { v, reads, .. } = o else {
                unreachable!()
            };
            let (mine, other) = if *v == V1 { ("a", "b") } else { ("b", "a") };
            let mut want = absent(mine);
            want.extend(absent(other));
            assert_eq!(reads, &want, "its own reads, then the other participant's");
        }
        s.executed(V1, 5);
        s.executed(V2, 5);
        assert!(!s.is_locked(V1, b"a") && !s.is_locked(V2, b"b"));
    }

    #[test]
    fn a_transaction_that_watches_carries_the_verdict_given_at_its_read() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 0);
        let watching = |seq, watched: &[VShardId], key| {
            let mut t = Arc::into_inner(txn(seq, &[(V1, key), (FAR, "x")])).unwrap();
            t.sub.exec = true;
            t.sub.watch = (!watched.is_empty()).then(|| super::super::seq::Watching {
                id: t.sub.id,
                vshards: watched.to_vec(),
            });
            Arc::new(t)
        };
        s.deliver(watching(1, &[V1, FAR], "a"), |_| 0);
        s.step(&mut db, |t, v| t.seq == 1 && v == V1);
        let out = s.take_outputs();
        let [Output::Reads { reads, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        let mut want = absent("a");
        want.push(Read::watch_broken(V1));
        assert_eq!(reads, &want, "the verdict after its reads");
        s.reads(1, FAR, absent("x"));
        s.step(&mut db, |_, _| unreachable!("asked once, at the read"));
        s.take_outputs();
        s.executed(V1, 1);
        // Not asked for one that does not watch, nor for one that watches keys of other
        // vShards only, nor added when unchanged.
        s.deliver(watching(2, &[], "b"), |_| 0);
        s.deliver(watching(3, &[V1], "c"), |_| 0);
        s.deliver(watching(4, &[FAR], "d"), |_| 0);
        let asked = std::cell::Cell::new(Vec::new());
        s.step(&mut db, |t, v| {
            let mut a = asked.take();
            a.push((t.seq, v));
            asked.set(a);
            false
        });
        assert_eq!(
            asked.take(),
            [(3, V1)],
            "only one that watches keys of this vShard is asked"
        );
        let out = s.take_outputs();
        assert_eq!(shape(&out), [('r', 2, 1), ('r', 3, 1), ('r', 4, 1)]);
        for o in out {
            let Output::Reads { reads, .. } = o else {
                unreachable!()
            };
            assert!(reads.iter().all(|r| r.broken_by().is_none()));
        }
    }

    #[test]
    fn a_command_waiting_on_a_key_goes_before_the_transactions_delivered_after_it() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 0);
        s.deliver(txn(1, &[(V1, "a"), (FAR, "x")]), |_| 0);
        assert!(s.is_locked(V1, b"a"));
        // A command on `a` waits: it takes a place (on every key it names here).
        let place = s.wait_local(None, [(V1, &b"a"[..]), (V1, &b"c"[..])]);
        assert!(s.is_locked_for(V1, b"a", Some(place)), "1 is ahead of it");
        assert!(
            !s.is_locked_for(V1, b"c", Some(place)),
            "nothing ahead on c"
        );
        assert!(
            s.is_locked(V1, b"c"),
            "another command waits behind it on c"
        );
        s.deliver(txn(2, &[(V1, "a"), (FAR, "y")]), |_| 0);
        s.deliver(txn(3, &[(V1, "c"), (FAR, "z")]), |_| 0);
        s.reads(2, FAR, absent("y"));
        s.reads(3, FAR, absent("z"));
        assert_eq!(
            shape(&step(&mut s, &mut db)),
            [('r', 1, 1)],
            "2 and 3 wait behind it"
        );
        s.reads(1, FAR, absent("x"));
        step(&mut s, &mut db);
        s.executed(V1, 1);
        assert!(!s.is_locked_for(V1, b"a", Some(place)), "its turn");
        assert!(
            step(&mut s, &mut db).is_empty(),
            "2 and 3 still wait for it"
        );
        // It ran and proposed up to index 7: those behind read once that applied.
        s.local_done(place, |_| 7);
        assert!(
            step(&mut s, &mut db).is_empty(),
            "its entries are not applied yet"
        );
        s.applied(V1, 7);
        let out = shape(&step(&mut s, &mut db));
        assert!(
            out.contains(&('r', 2, 1)) && out.contains(&('r', 3, 1)),
            "{out:?}"
        );
        // A place whose vShard is no longer led here holds nothing.
        let p2 = s.wait_local(None, [(V1, &b"a"[..])]);
        s.step_down(V1);
        assert!(!s.is_locked_for(V1, b"a", Some(p2)));
        s.local_done(p2, |_| 0);
    }

    #[test]
    fn a_later_transaction_on_the_same_key_reads_only_once_the_earlier_executed() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 0);
        s.deliver(txn(1, &[(V1, "a"), (FAR, "x")]), |_| 0);
        s.deliver(txn(2, &[(V1, "a"), (FAR, "y")]), |_| 0);
        assert_eq!(shape(&step(&mut s, &mut db)), [('r', 1, 1)]);
        s.reads(2, FAR, absent("y"));
        assert!(step(&mut s, &mut db).is_empty(), "2 waits for key a");
        s.reads(1, FAR, absent("x"));
        assert_eq!(shape(&step(&mut s, &mut db)), [('p', 1, 1)]);
        assert!(step(&mut s, &mut db).is_empty(), "proposed is not executed");
        s.executed(V1, 1);
        assert!(s.is_locked(V1, b"a"), "2 still holds it");
        assert_eq!(shape(&step(&mut s, &mut db)), [('p', 2, 1), ('r', 2, 1)]);
    }

    #[test]
    fn transactions_on_other_keys_read_at_once_but_are_proposed_in_sequence_order() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 0);
        s.deliver(txn(1, &[(V1, "a"), (FAR, "x")]), |_| 0);
        s.deliver(txn(2, &[(V1, "b"), (FAR, "y")]), |_| 0);
        assert_eq!(shape(&step(&mut s, &mut db)), [('r', 1, 1), ('r', 2, 1)]);
        s.reads(2, FAR, absent("y"));
        assert!(
            step(&mut s, &mut db).is_empty(),
            "2 is not proposed before 1"
        );
        s.reads(1, FAR, absent("x"));
        let out = step(&mut s, &mut db);
        let order: Vec<Seq> = out
            .iter()
            .map(|o| match o {
                Output::Propose { t, .. } => t.seq,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, [1, 2], "in sequence order");
    }

    #[test]
    fn it_reads_only_once_the_log_applied_what_was_proposed_before_it_came() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 5);
        s.deliver(txn(1, &[(V1, "a"), (FAR, "x")]), |_| 10);
        assert!(step(&mut s, &mut db).is_empty());
        s.applied(V1, 9);
        assert!(step(&mut s, &mut db).is_empty());
        s.applied(V1, 10);
        assert_eq!(shape(&step(&mut s, &mut db)), [('r', 1, 1)]);
    }

    #[test]
    fn reads_that_come_early_are_kept_and_repeated_or_executed_deliveries_ignored() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 3, 0);
        s.reads(7, FAR, absent("x"));
        s.deliver(txn(7, &[(V1, "a"), (FAR, "x")]), |_| 0);
        s.deliver(txn(7, &[(V1, "a"), (FAR, "x")]), |_| 0);
        assert_eq!(shape(&step(&mut s, &mut db)), [('p', 7, 1), ('r', 7, 1)]);
        s.executed(V1, 7);
        s.deliver(txn(7, &[(V1, "a"), (FAR, "x")]), |_| 0);
        s.deliver(txn(2, &[(V1, "b"), (FAR, "x")]), |_| 0);
        assert!(
            step(&mut s, &mut db).is_empty(),
            "executed, or below last_seq"
        );
        assert!(!s.is_locked(V1, b"a") && !s.is_locked(V1, b"b"));
    }

    #[test]
    fn reads_for_a_vshard_not_led_yet_wait_for_it() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.reads(4, FAR, absent("x"));
        s.lead(V1, 0, 0);
        s.deliver(txn(4, &[(V1, "a"), (FAR, "x")]), |_| 0);
        assert_eq!(shape(&step(&mut s, &mut db)), [('p', 4, 1), ('r', 4, 1)]);
        s.forget_early_below(5);
        s.reads(6, FAR, absent("x"));
        s.forget_early_below(7);
        s.lead(V2, 6, 0);
        s.deliver(txn(6, &[(V2, "b"), (FAR, "x")]), |_| 0);
        assert_eq!(
            shape(&step(&mut s, &mut db)),
            [('r', 6, 2)],
            "forgotten below the watermark"
        );
    }

    #[test]
    fn a_vshard_no_longer_led_here_holds_nothing() {
        let (mut s, mut db) = (Scheduler::default(), db());
        s.lead(V1, 0, 0);
        s.deliver(txn(1, &[(V1, "a"), (FAR, "x")]), |_| 0);
        s.step_down(V1);
        assert!(!s.is_locked(V1, b"a"));
        assert!(step(&mut s, &mut db).is_empty());
        s.deliver(txn(2, &[(V1, "a"), (FAR, "x")]), |_| 0);
        assert!(step(&mut s, &mut db).is_empty(), "not a participant here");
    }
}
