//! The sequencer's state machine (`docs/design/calvin.md`, step 1): what its Raft group's
//! entries mean. Sans-IO: the leader batches submissions into *epoch* entries (one in flight
//! at a time: group commit), and every replica applies each committed epoch the same way,
//! giving its transactions the next sequence numbers, once per submission id.
//!
//! Call order, on the group's leader: [`Sequencer::submit`] as origins send transactions;
//! [`Sequencer::take_epoch`] at a driver step, to propose (none while one is in flight);
//! on every replica: [`Sequencer::apply`] for each committed epoch entry, which returns the
//! transactions it sequenced (to deliver); [`Sequencer::retained_from`] to serve a
//! participant that asks from a sequence number; [`Sequencer::forget_below`] when every
//! participant has executed below a point (itself an entry, so replicas forget alike).

use super::sched::Seq;
use crate::slot::VShardId;
use shardline_transport::wire::{self, Reader, WireError};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

/// A submission's id: the origin node and its counter. A retried submission keeps its id,
/// and is sequenced once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId {
    pub origin: u64,
    pub n: u64,
}

/// What an origin submits: the keys (with their vShards) and the commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub id: TxnId,
    pub keys: Vec<(VShardId, Vec<u8>)>,
    /// Each command's argv; with `exec`, a MULTI/EXEC's commands (one array reply).
    pub cmds: Vec<Vec<Vec<u8>>>,
    pub exec: bool,
}

/// A transaction in the global order, as participants receive it.
#[derive(Debug, PartialEq, Eq)]
pub struct Ordered {
    pub seq: Seq,
    /// The clock and seed every participant runs it with (the epoch leader's).
    pub now_us: u64,
    pub seed: u64,
    pub sub: Submission,
}

impl Ordered {
    /// Its participants, sorted, each once.
    pub fn participants(&self) -> Vec<VShardId> {
        let mut p: Vec<VShardId> = self.sub.keys.iter().map(|(v, _)| *v).collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Its keys in participant `v`.
    pub fn keys_of(&self, v: VShardId) -> impl Iterator<Item = &[u8]> {
        self.sub
            .keys
            .iter()
            .filter(move |(w, _)| *w == v)
            .map(|(_, k)| k.as_slice())
    }

    /// Participant `v`'s execution entry, with the others' reads.
    pub fn execution(&self, v: VShardId, remote: Vec<super::exec::Read>) -> super::exec::Execution {
        super::exec::Execution {
            seq: self.seq,
            v,
            exec: self.sub.exec,
            now_us: self.now_us,
            seed: self.seed,
            cmds: self.sub.cmds.clone(),
            remote,
        }
    }
}

/// Why a submission is not taken now. Nothing changed; the origin waits and submits again
/// (backpressure: nothing sequenced is ever dropped).
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

/// Limits (every queue has one).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Submissions waiting for the next epoch, plus transactions sequenced and not yet
    /// executed everywhere, past which `submit` answers `Busy`.
    pub outstanding_max: usize,
    /// Submission ids remembered to sequence a retry once.
    pub window: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            outstanding_max: 65_536,
            window: 1 << 20,
        }
    }
}

const EPOCH: u8 = 1;
const FORGET: u8 = 2;

#[derive(Default)]
pub struct Sequencer {
    limits: Limits,
    /// Replicated: the next sequence number, the ids seen (oldest first), and the
    /// transactions sequenced but not known executed everywhere (sequence order).
    next: Seq,
    seen: VecDeque<TxnId>,
    seen_set: HashSet<TxnId>,
    retained: VecDeque<Rc<Ordered>>,
    /// The leader's: submissions for the next epoch, and whether one is in flight.
    pending: Vec<Submission>,
    in_flight: bool,
}

impl Sequencer {
    pub fn new(limits: Limits) -> Sequencer {
        Sequencer {
            limits,
            ..Sequencer::default()
        }
    }

    /// On the leader: queues `s` for the next epoch.
    pub fn submit(&mut self, s: Submission) -> Result<(), Busy> {
        if self.pending.len() + self.retained.len() >= self.limits.outstanding_max {
            return Err(Busy);
        }
        self.pending.push(s);
        Ok(())
    }

    /// On the leader: the next epoch entry to propose, if submissions wait and none is in
    /// flight; `now_us` and `seed` are what its transactions run with (each its own seed).
    pub fn take_epoch(&mut self, now_us: u64, seed: u64) -> Option<Vec<u8>> {
        if self.in_flight || self.pending.is_empty() {
            return None;
        }
        self.in_flight = true;
        let mut out = vec![EPOCH];
        out.extend_from_slice(&now_us.to_le_bytes());
        out.extend_from_slice(&seed.to_le_bytes());
        wire::put_varint(&mut out, self.pending.len() as u64);
        for s in self.pending.drain(..) {
            encode_submission(&s, &mut out);
        }
        Some(out)
    }

    /// On the leader: its epoch will not apply (leadership lost before it committed): the
    /// origins submit again to the next leader (the ids keep a retry from counting twice).
    pub fn epoch_lost(&mut self) {
        self.in_flight = false;
        self.pending.clear();
    }

    /// An entry to tell every replica to forget the transactions below `seq` (executed by
    /// every participant).
    pub fn forget_entry(seq: Seq) -> Vec<u8> {
        let mut out = vec![FORGET];
        out.extend_from_slice(&seq.to_le_bytes());
        out
    }

    /// Applies a committed entry of the group (every replica, in log order): an epoch's
    /// transactions get the next sequence numbers, each submission id once; returns them.
    /// An entry that does not decode changes nothing (every replica refuses it alike).
    pub fn apply(&mut self, entry: &[u8]) -> Result<Vec<Rc<Ordered>>, WireError> {
        let mut r = Reader::new(entry);
        match r.u8()? {
            FORGET => {
                let below = r.u64()?;
                r.finish()?;
                self.forget_below(below);
                Ok(Vec::new())
            }
            kind => {
                if kind != EPOCH {
                    return Err(r.error(wire::WireErrorKind::Flag(kind)));
                }
                let (now_us, seed) = (r.u64()?, r.u64()?);
                let n = r.varint()?;
                let n = r.count(n, 4)?;
                let mut subs = Vec::with_capacity(n);
                for _ in 0..n {
                    subs.push(decode_submission(&mut r)?);
                }
                r.finish()?;
                // Ours, if we led it: the next may be taken.
                self.in_flight = false;
                let mut out = Vec::with_capacity(subs.len());
                for (i, sub) in subs.into_iter().enumerate() {
                    if !self.seen_set.insert(sub.id) {
                        continue; // a retry of one already sequenced
                    }
                    self.seen.push_back(sub.id);
                    if self.seen.len() > self.limits.window {
                        let old = self.seen.pop_front().expect("over the window");
                        self.seen_set.remove(&old);
                    }
                    let t = Rc::new(Ordered {
                        seq: self.next,
                        now_us,
                        seed: seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        sub,
                    });
                    self.next += 1;
                    self.retained.push_back(t.clone());
                    out.push(t);
                }
                Ok(out)
            }
        }
    }

    /// The transactions sequenced from `seq` on that are still retained, for a participant
    /// that asks (after a gap, or as a new leader of its vShard).
    pub fn retained_from(&self, seq: Seq) -> impl Iterator<Item = &Rc<Ordered>> {
        let start = self.retained.partition_point(|t| t.seq < seq);
        self.retained.range(start..)
    }

    /// Forgets the transactions below `seq`.
    pub fn forget_below(&mut self, seq: Seq) {
        while self.retained.front().is_some_and(|t| t.seq < seq) {
            self.retained.pop_front();
        }
    }

    /// The next sequence number.
    pub fn next_seq(&self) -> Seq {
        self.next
    }
}

fn encode_submission(s: &Submission, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.id.origin.to_le_bytes());
    out.extend_from_slice(&s.id.n.to_le_bytes());
    out.push(s.exec as u8);
    wire::put_varint(out, s.keys.len() as u64);
    for (v, k) in &s.keys {
        out.extend_from_slice(&v.0.to_le_bytes());
        wire::put_bytes_varint(out, k);
    }
    wire::put_varint(out, s.cmds.len() as u64);
    for argv in &s.cmds {
        wire::put_varint(out, argv.len() as u64);
        for a in argv {
            wire::put_bytes_varint(out, a);
        }
    }
}

fn decode_submission(r: &mut Reader) -> Result<Submission, WireError> {
    let id = TxnId {
        origin: r.u64()?,
        n: r.u64()?,
    };
    let exec = r.flag()?;
    let n = r.varint()?;
    let n = r.count(n, 3)?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push((VShardId(r.u16()?), r.bytes_varint()?.to_vec()));
    }
    let n = r.varint()?;
    let n = r.count(n, 1)?;
    let mut cmds = Vec::with_capacity(n);
    for _ in 0..n {
        let words = r.varint()?;
        let words = r.count(words, 1)?;
        let mut argv = Vec::with_capacity(words);
        for _ in 0..words {
            argv.push(r.bytes_varint()?.to_vec());
        }
        cmds.push(argv);
    }
    Ok(Submission {
        id,
        keys,
        cmds,
        exec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(origin: u64, n: u64) -> Submission {
        Submission {
            id: TxnId { origin, n },
            keys: vec![(VShardId(1), b"a".to_vec()), (VShardId(2), b"b".to_vec())],
            cmds: vec![vec![
                b"MSET".to_vec(),
                b"a".to_vec(),
                b"1".to_vec(),
                b"b".to_vec(),
                b"2".to_vec(),
            ]],
            exec: false,
        }
    }

    fn seqs(t: &[Rc<Ordered>]) -> Vec<Seq> {
        t.iter().map(|t| t.seq).collect()
    }

    #[test]
    fn an_epoch_holds_what_waited_and_one_is_in_flight_at_a_time() {
        let mut leader = Sequencer::default();
        assert_eq!(leader.take_epoch(1, 1), None, "nothing waits");
        leader.submit(sub(1, 1)).unwrap();
        leader.submit(sub(2, 1)).unwrap();
        let e1 = leader.take_epoch(10, 7).expect("an epoch");
        leader.submit(sub(1, 2)).unwrap();
        assert_eq!(leader.take_epoch(11, 8), None, "one in flight");
        let got = leader.apply(&e1).unwrap();
        assert_eq!(seqs(&got), [0, 1]);
        assert_eq!(got[1].sub, sub(2, 1));
        assert_eq!((got[0].now_us, got[1].now_us), (10, 10));
        assert_ne!(got[0].seed, got[1].seed, "each its own seed");
        let e2 = leader
            .take_epoch(12, 9)
            .expect("the next, once the first applied");
        assert_eq!(seqs(&leader.apply(&e2).unwrap()), [2]);
    }

    #[test]
    fn every_replica_gives_the_same_numbers_and_a_retry_is_sequenced_once() {
        let mut leader = Sequencer::default();
        let mut follower = Sequencer::default();
        leader.submit(sub(1, 1)).unwrap();
        let e1 = leader.take_epoch(5, 5).unwrap();
        // The leader lost it? No: it committed, but the origin retried with the next leader.
        let mut next_leader = Sequencer::default();
        next_leader.submit(sub(1, 1)).unwrap();
        next_leader.submit(sub(3, 1)).unwrap();
        let e2 = next_leader.take_epoch(6, 6).unwrap();
        for s in [&mut leader, &mut follower] {
            let a = s.apply(&e1).unwrap();
            let b = s.apply(&e2).unwrap();
            assert_eq!(seqs(&a), [0]);
            assert_eq!(seqs(&b), [1], "the retry of (1, 1) is not sequenced again");
            assert_eq!(b[0].sub.id, TxnId { origin: 3, n: 1 });
        }
        assert_eq!(leader.next_seq(), follower.next_seq());
    }

    #[test]
    fn retained_transactions_serve_a_participant_until_forgotten_through_the_log() {
        let mut s = Sequencer::default();
        for n in 0..5 {
            s.submit(sub(1, n)).unwrap();
        }
        let e = s.take_epoch(1, 1).unwrap();
        s.apply(&e).unwrap();
        let from: Vec<Seq> = s.retained_from(3).map(|t| t.seq).collect();
        assert_eq!(from, [3, 4]);
        assert!(s.apply(&Sequencer::forget_entry(4)).unwrap().is_empty());
        let left: Vec<Seq> = s.retained_from(0).map(|t| t.seq).collect();
        assert_eq!(left, [4]);
    }

    #[test]
    fn past_the_bound_a_submission_waits_and_nothing_sequenced_is_dropped() {
        let mut s = Sequencer::new(Limits {
            outstanding_max: 2,
            window: 16,
        });
        s.submit(sub(1, 1)).unwrap();
        s.submit(sub(1, 2)).unwrap();
        assert_eq!(s.submit(sub(1, 3)), Err(Busy));
        let e = s.take_epoch(1, 1).unwrap();
        s.apply(&e).unwrap();
        assert_eq!(
            s.submit(sub(1, 3)),
            Err(Busy),
            "sequenced, not executed everywhere"
        );
        s.forget_below(1);
        s.submit(sub(1, 3)).unwrap();
        assert_eq!(s.retained_from(0).count(), 1);
    }

    #[test]
    fn a_lost_epoch_frees_the_leader_and_damaged_entries_change_nothing() {
        let mut s = Sequencer::default();
        s.submit(sub(1, 1)).unwrap();
        let e = s.take_epoch(1, 1).unwrap();
        s.epoch_lost();
        s.submit(sub(1, 1)).unwrap();
        assert!(s.take_epoch(2, 2).is_some(), "free to propose again");
        for cut in 0..e.len() {
            let mut t = Sequencer::default();
            assert!(t.apply(&e[..cut]).is_err(), "cut at {cut}");
            assert_eq!(t.next_seq(), 0);
        }
        let mut t = Sequencer::default();
        assert!(t.apply(&[9, 0, 0]).is_err(), "an unknown kind");
        let mut long = e.clone();
        long.push(0);
        assert!(t.apply(&long).is_err(), "trailing bytes");
        assert_eq!(t.next_seq(), 0);
    }
}
