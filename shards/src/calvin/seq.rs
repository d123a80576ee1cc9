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
use crate::script::functions::Libraries;
use crate::slot::VShardId;
use shardline_transport::wire::{self, Reader, WireError};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// A submission's id: the origin node and its counter. A retried submission keeps its id,
/// and is sequenced once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// The reply is written in RESP3 (the origin connection's protocol).
    pub resp3: bool,
    /// One command that splits by key (`exec::Split`): each participant runs its keys' part
    /// and answers it; the origin merges the parts.
    pub split: bool,
    /// A MULTI/EXEC whose connection WATCHed keys (among `keys`, read and held like the
    /// others): each participant of `Watching::vshards` says at its read whether one of its
    /// watched keys changed since the WATCH (`exec::Read::watch_broken`), and if any did,
    /// every participant aborts it alike.
    pub watch: Option<Watching>,
    /// A try of a blocking command (BLPOP ... on keys of several vShards): run as it runs in
    /// MULTI (never waiting); when it finds nothing, each participant's leader parks a
    /// stand-in on its keys that wakes the origin (`msg::Msg::Wake`) when one is written.
    pub block: bool,
}

/// What a transaction that watches names: the id its WATCHes were registered under (on
/// every node, `Stream::watches` in the driver: not the transaction's own id, which a try
/// again changes) and the vShards of its watched keys, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watching {
    pub id: TxnId,
    pub vshards: Vec<VShardId>,
}

/// A transaction in the global order, as participants receive it.
#[derive(Debug, PartialEq, Eq)]
pub struct Ordered {
    pub seq: Seq,
    /// The clock and seed every participant runs it with (the epoch leader's).
    pub now_us: u64,
    pub seed: u64,
    pub sub: Submission,
    /// Its split by key, worked out once (`execution`).
    pub split: std::sync::OnceLock<Option<super::exec::Split>>,
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

    /// Whether it is a script (`exec::is_script`): its participants' leaders run it and
    /// propose its effects.
    pub fn is_script(&self) -> bool {
        super::exec::is_script(&self.sub.cmds)
    }

    /// Participant `v`'s execution entry, with every participant's reads; a script's with
    /// its `effects` (for `v`'s keys) and `v`'s own reads instead.
    /// (`layout`: where keys are, for a split transaction's part.)
    pub fn execution(
        &self,
        v: VShardId,
        reads: Vec<super::exec::Read>,
        forget_below: Seq,
        layout: crate::slot::VShardLayout,
        effects: Option<super::exec::Effects>,
    ) -> super::exec::Execution {
        if let Some(mut fx) = effects {
            let mine = |k: &[u8]| layout.vshard_of(crate::slot::key_slot(k)) == v;
            fx.writes.retain(|w| mine(&w.key));
            let reads = reads
                .into_iter()
                .filter(|r| match r.broken_by() {
                    Some(by) => by == v,
                    None => mine(&r.key),
                })
                .collect();
            return super::exec::Execution {
                seq: self.seq,
                v,
                exec: false,
                split: false,
                now_us: self.now_us,
                seed: self.seed,
                cmds: Vec::new(),
                reads,
                forget_below,
                effects: Some(fx),
            };
        }
        let split = self.split.get_or_init(|| {
            self.sub
                .split
                .then(|| super::exec::Split::of(&self.sub.cmds[0], layout))
                .flatten()
        });
        let (cmds, reads) = match split {
            Some(s) => (vec![s.part_of(&self.sub.cmds[0], v)], Vec::new()),
            None => (self.sub.cmds.clone(), reads),
        };
        super::exec::Execution {
            seq: self.seq,
            v,
            exec: self.sub.exec,
            split: split.is_some(),
            now_us: self.now_us,
            seed: self.seed,
            cmds,
            reads,
            forget_below,
            effects: None,
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
            window: 65_536,
        }
    }
}

const EPOCH: u8 = 1;
const FORGET: u8 = 2;

/// The first byte of a metadata-group entry that is the sequencer's (the sequencer's entries
/// share the metadata group's log: `docs/design/calvin.md`, "Where the sequencer runs").
pub const SEQ_TAG: u8 = 0xC5;
/// The first byte of a metadata-group snapshot state that holds the sequencer's state after
/// the metadata's (`join_state`); one without it is the metadata's alone (an older node's).
pub const STATE_TAG: u8 = 0xC6;
/// The first byte of a metadata-group snapshot state that holds the metadata's, the
/// sequencer's and the function libraries' (`join_state`).
pub const STATE_TAG_2: u8 = 0xC7;
/// The metadata group's snapshot state with the ACL users too (`join_state`).
pub const STATE_TAG_3: u8 = 0xCA;
const _: () = assert!(
    STATE_TAG_3 != SEQ_TAG
        && STATE_TAG_3 != STATE_TAG
        && STATE_TAG_3 != STATE_TAG_2
        && crate::acl::wire::ACL_TAG != SEQ_TAG
        && crate::acl::wire::ACL_TAG != crate::script::functions::FN_TAG
        && crate::acl::wire::ACL_TAG != crate::raft::conf::CONF_TAG
);
const _: () = assert!(
    SEQ_TAG != crate::raft::conf::CONF_TAG
        && STATE_TAG != SEQ_TAG
        && STATE_TAG_2 != SEQ_TAG
        && STATE_TAG_2 != STATE_TAG
        && crate::script::functions::FN_TAG != SEQ_TAG
        && crate::script::functions::FN_TAG != crate::raft::conf::CONF_TAG
);

/// The metadata group's snapshot state: `STATE_TAG_3 | meta length: u32 | meta | sequencer
/// length: u32 | sequencer | libraries length: u32 | libraries | users`
/// (`acl::wire::encode_users`).
pub fn join_state(
    meta: &[u8],
    seq: &Sequencer,
    libs: &Libraries,
    users: Option<&crate::acl::Users>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + meta.len() + 64);
    out.push(STATE_TAG_3);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    let part = |out: &mut Vec<u8>, write: &dyn Fn(&mut Vec<u8>)| {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        write(out);
        let n = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    };
    part(&mut out, &|o| seq.encode(o));
    part(&mut out, &|o| libs.encode(o));
    crate::acl::wire::encode_users(users, &mut out);
    out
}

/// The parts of a metadata-group snapshot state (`join_state`).
#[derive(Debug, PartialEq, Eq)]
pub struct StateParts<'a> {
    pub meta: &'a [u8],
    /// `None` in a state written before the sequencer had one.
    pub seq: Option<&'a [u8]>,
    /// `None` in a state written before functions had one.
    pub libs: Option<&'a [u8]>,
    /// `None` in a state written before users had one (`acl::wire::decode_users` reads it).
    pub users: Option<&'a [u8]>,
}

/// The metadata's bytes, the sequencer's, the libraries' and the users'.
pub fn split_state(b: &[u8]) -> Result<StateParts<'_>, WireError> {
    let tag = b.first().copied();
    if !matches!(tag, Some(STATE_TAG | STATE_TAG_2 | STATE_TAG_3)) {
        return Ok(StateParts {
            meta: b,
            seq: None,
            libs: None,
            users: None,
        });
    }
    let mut r = Reader::new(&b[1..]);
    let meta = r.bytes_u32()?;
    if tag == Some(STATE_TAG) {
        let seq = &b[1 + r.offset()..];
        return Ok(StateParts {
            meta,
            seq: Some(seq),
            libs: None,
            users: None,
        });
    }
    let seq = r.bytes_u32()?;
    if tag == Some(STATE_TAG_2) {
        return Ok(StateParts {
            meta,
            seq: Some(seq),
            libs: Some(&b[1 + r.offset()..]),
            users: None,
        });
    }
    let libs = r.bytes_u32()?;
    Ok(StateParts {
        meta,
        seq: Some(seq),
        libs: Some(libs),
        users: Some(&b[1 + r.offset()..]),
    })
}

#[derive(Default)]
pub struct Sequencer {
    limits: Limits,
    /// Replicated: the next sequence number, the ids seen (oldest first), and the
    /// transactions sequenced but not known executed everywhere (sequence order).
    next: Seq,
    seen: VecDeque<TxnId>,
    seen_set: HashSet<TxnId>,
    retained: VecDeque<Arc<Ordered>>,
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

    /// On the leader: whether `take_epoch` would give an epoch now.
    pub fn epoch_ready(&self) -> bool {
        !self.in_flight && !self.pending.is_empty()
    }

    /// On the leader: the next epoch entry to propose, if submissions wait and none is in
    /// flight; `now_us` and `seed` are what its transactions run with (each its own seed).
    pub fn take_epoch(&mut self, now_us: u64, seed: u64) -> Option<Vec<u8>> {
        if !self.epoch_ready() {
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

    /// On the leader: leadership was lost. The epoch in flight may still commit under the
    /// next leader, or not (its origins cannot know); the submissions not proposed yet never
    /// will be: they are returned, for their origins to be told nothing was applied.
    pub fn epoch_lost(&mut self) -> Vec<Submission> {
        self.in_flight = false;
        std::mem::take(&mut self.pending)
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
    pub fn apply(&mut self, entry: &[u8]) -> Result<Vec<Arc<Ordered>>, WireError> {
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
                    let t = Arc::new(Ordered {
                        seq: self.next,
                        now_us,
                        seed: seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        sub,
                        split: Default::default(),
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
    pub fn retained_from(&self, seq: Seq) -> impl Iterator<Item = &Arc<Ordered>> {
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

    /// The lowest sequence number still retained (`next_seq` when none is).
    pub fn first_retained(&self) -> Seq {
        self.retained.front().map_or(self.next, |t| t.seq)
    }

    /// Every transaction retained, in sequence order.
    pub fn retained(&self) -> impl Iterator<Item = &Arc<Ordered>> {
        self.retained.iter()
    }

    /// The replicated state (the group's snapshot): the next number, the ids remembered
    /// (oldest first) and the transactions retained.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.next.to_le_bytes());
        wire::put_varint(out, self.seen.len() as u64);
        for id in &self.seen {
            out.extend_from_slice(&id.origin.to_le_bytes());
            out.extend_from_slice(&id.n.to_le_bytes());
        }
        wire::put_varint(out, self.retained.len() as u64);
        for t in &self.retained {
            out.extend_from_slice(&t.seq.to_le_bytes());
            out.extend_from_slice(&t.now_us.to_le_bytes());
            out.extend_from_slice(&t.seed.to_le_bytes());
            encode_submission(&t.sub, out);
        }
    }

    /// A sequencer holding the state `encode` wrote, with `limits`; `Err` for bytes that
    /// are not one (nothing is taken from them).
    pub fn decode(b: &[u8], limits: Limits) -> Result<Sequencer, WireError> {
        let mut r = Reader::new(b);
        let mut s = Sequencer::new(limits);
        s.next = r.u64()?;
        let n = r.varint()?;
        let n = r.count(n, 16)?;
        for _ in 0..n {
            let id = TxnId {
                origin: r.u64()?,
                n: r.u64()?,
            };
            if s.seen_set.insert(id) {
                s.seen.push_back(id);
            }
        }
        let n = r.varint()?;
        let n = r.count(n, 24)?;
        for _ in 0..n {
            let (seq, now_us, seed) = (r.u64()?, r.u64()?, r.u64()?);
            let sub = decode_submission(&mut r)?;
            if seq >= s.next || s.retained.back().is_some_and(|t| t.seq >= seq) {
                return Err(r.error(wire::WireErrorKind::Order));
            }
            s.retained.push_back(Arc::new(Ordered {
                seq,
                now_us,
                seed,
                sub,
                split: Default::default(),
            }));
        }
        r.finish()?;
        Ok(s)
    }
}

pub(crate) fn encode_submission(s: &Submission, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.id.origin.to_le_bytes());
    out.extend_from_slice(&s.id.n.to_le_bytes());
    out.push(
        s.exec as u8
            | (s.resp3 as u8) << 1
            | (s.split as u8) << 2
            | (s.watch.is_some() as u8) << 3
            | (s.block as u8) << 4
            | (s.watch.is_some() as u8) << 5,
    );
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
    if let Some(w) = &s.watch {
        out.extend_from_slice(&w.id.origin.to_le_bytes());
        out.extend_from_slice(&w.id.n.to_le_bytes());
        wire::put_varint(out, w.vshards.len() as u64);
        for v in &w.vshards {
            out.extend_from_slice(&v.0.to_le_bytes());
        }
    }
}

pub(crate) fn decode_submission(r: &mut Reader) -> Result<Submission, WireError> {
    let id = TxnId {
        origin: r.u64()?,
        n: r.u64()?,
    };
    let flags = r.u8()?;
    if flags > 63
        || flags & 5 == 5
        || flags & 9 == 8
        || (flags & 16 != 0 && flags & 13 != 0)
        || flags & 40 == 32
    {
        // (A split transaction is one command, never a MULTI/EXEC; only a MULTI/EXEC
        // watches; a blocking command's try is one command that neither splits nor watches;
        // the list of watched vShards (32) goes with watching (8).)
        return Err(r.error(wire::WireErrorKind::Flag(flags)));
    }
    let (exec, resp3, split) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let (watch, block, listed) = (flags & 8 != 0, flags & 16 != 0, flags & 32 != 0);
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
    let watch = if listed {
        let wid = TxnId {
            origin: r.u64()?,
            n: r.u64()?,
        };
        let n = r.varint()?;
        let n = r.count(n, 2)?;
        let mut vshards = Vec::with_capacity(n);
        for _ in 0..n {
            vshards.push(VShardId(r.u16()?));
        }
        if vshards.is_empty() {
            return Err(r.error(wire::WireErrorKind::Length));
        }
        Some(Watching { id: wid, vshards })
    } else if watch {
        // Written before the list existed (WATCH on a node alone, registered under the
        // transaction's id): every participant checks, as then.
        let mut vshards: Vec<VShardId> = keys.iter().map(|(v, _)| *v).collect();
        vshards.sort_unstable();
        vshards.dedup();
        // (Without keys nothing is watched: found by the `calvin_msg` fuzz target, whose
        // round trip wrote an empty list the decoder refuses.)
        (!vshards.is_empty()).then_some(Watching { id, vshards })
    } else {
        None
    };
    Ok(Submission {
        id,
        keys,
        cmds,
        exec,
        resp3,
        split,
        watch,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_snapshot_state_keeps_its_three_parts_and_older_states_still_read() {
        use crate::script::functions::{FnCmd, FunctionInfo, Library};
        let mut libs = Libraries::default();
        libs.apply(&FnCmd::Load {
            replace: false,
            lib: Library {
                name: "l".into(),
                code: b"#!lua name=l\n".to_vec(),
                functions: vec![FunctionInfo {
                    name: "f".into(),
                    description: None,
                    flags: 0,
                }],
            },
        })
        .unwrap();
        let seq = Sequencer::default();
        let mut users = crate::acl::Users::new();
        users.set(b"app", &["on", ">pw", "+get", "~a:*"]).unwrap();
        let state = join_state(b"meta", &seq, &libs, Some(&users));
        let parts = split_state(&state).unwrap();
        assert_eq!(parts.meta, b"meta");
        assert!(Sequencer::decode(parts.seq.unwrap(), Limits::default()).is_ok());
        assert_eq!(Libraries::decode(parts.libs.unwrap()), Ok(libs.clone()));
        assert_eq!(
            crate::acl::wire::decode_users(parts.users.unwrap()),
            Ok(Some(users))
        );
        let none = join_state(b"meta", &seq, &libs, None);
        let parts = split_state(&none).unwrap();
        assert_eq!(
            crate::acl::wire::decode_users(parts.users.unwrap()),
            Ok(None)
        );
        // The layout before users: the libraries to the end.
        let mut two = vec![STATE_TAG_2];
        two.extend_from_slice(&4u32.to_le_bytes());
        two.extend_from_slice(b"meta");
        let mut sq = Vec::new();
        seq.encode(&mut sq);
        two.extend_from_slice(&(sq.len() as u32).to_le_bytes());
        two.extend_from_slice(&sq);
        libs.encode(&mut two);
        let parts = split_state(&two).unwrap();
        assert_eq!(Libraries::decode(parts.libs.unwrap()), Ok(libs));
        assert_eq!(parts.users, None);
        // The layout before functions: tag, metadata, then the sequencer to the end.
        let mut old = vec![STATE_TAG];
        old.extend_from_slice(&4u32.to_le_bytes());
        old.extend_from_slice(b"meta");
        seq.encode(&mut old);
        let parts = split_state(&old).unwrap();
        assert_eq!((parts.meta, parts.libs), (&b"meta"[..], None));
        assert!(Sequencer::decode(parts.seq.unwrap(), Limits::default()).is_ok());
        // And before the sequencer: the metadata alone.
        assert_eq!(split_state(b"\x01rest").unwrap().meta, b"\x01rest");
        assert!(split_state(&state[..7]).is_err(), "a cut state");
    }

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
            resp3: false,
            split: false,
            watch: None,
            block: false,
        }
    }

    fn seqs(t: &[Arc<Ordered>]) -> Vec<Seq> {
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
    fn the_snapshot_keeps_numbers_ids_and_retained_transactions() {
        let mut s = Sequencer::default();
        for n in 1..=3 {
            s.submit(sub(1, n)).unwrap();
        }
        let e = s.take_epoch(5, 5).unwrap();
        s.apply(&e).unwrap();
        s.apply(&Sequencer::forget_entry(1)).unwrap();
        let mut b = Vec::new();
        s.encode(&mut b);
        let mut back = Sequencer::decode(&b, Limits::default()).unwrap();
        assert_eq!(back.next_seq(), 3);
        assert_eq!(back.first_retained(), 1);
        let kept: Vec<_> = back.retained().cloned().collect();
        let want: Vec<_> = s.retained().cloned().collect();
        assert_eq!(kept, want);
        // A retry of one it sequenced is still known after the snapshot.
        back.submit(sub(1, 2)).unwrap();
        let again = back.take_epoch(6, 6).unwrap();
        assert!(back.apply(&again).unwrap().is_empty());
        for cut in 0..b.len() {
            assert!(Sequencer::decode(&b[..cut], Limits::default()).is_err());
        }
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(Sequencer::decode(&trailing, Limits::default()).is_err());
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
        s.submit(sub(1, 2)).unwrap();
        let lost = s.epoch_lost();
        assert_eq!(lost, vec![sub(1, 2)], "the one not proposed comes back");
        assert!(s.epoch_lost().is_empty());
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

#[cfg(test)]
mod watched_tests {
    use super::*;

    fn watching(vshards: Vec<VShardId>) -> Submission {
        Submission {
            id: TxnId { origin: 1, n: 2 },
            keys: vec![
                (VShardId(4), b"a".to_vec()),
                (VShardId(2), b"b".to_vec()),
                (VShardId(4), b"c".to_vec()),
            ],
            cmds: vec![vec![b"SET".to_vec(), b"a".to_vec(), b"1".to_vec()]],
            exec: true,
            resp3: false,
            split: false,
            watch: (!vshards.is_empty()).then_some(Watching {
                id: TxnId { origin: 9, n: 8 },
                vshards,
            }),
            block: false,
        }
    }

    fn round_trip(s: &Submission) -> Result<Submission, WireError> {
        let mut b = Vec::new();
        encode_submission(s, &mut b);
        let mut r = Reader::new(&b);
        let got = decode_submission(&mut r)?;
        r.finish()?;
        Ok(got)
    }

    #[test]
    fn the_watched_vshards_travel_with_a_submission_and_old_entries_mean_every_participant() {
        for w in [vec![], vec![VShardId(2)], vec![VShardId(2), VShardId(4)]] {
            let s = watching(w);
            assert_eq!(round_trip(&s).unwrap(), s);
        }
        // An entry written before the list (flag 8 alone): every participant checks.
        let mut b = Vec::new();
        encode_submission(&watching(vec![VShardId(4)]), &mut b);
        let at = 16;
        assert_eq!(b[at], 1 | 8 | 32);
        b[at] = 1 | 8;
        b.truncate(b.len() - 19); // the id, a count of 1 and one vShard
        let mut r = Reader::new(&b);
        let old = decode_submission(&mut r).unwrap();
        let want = Watching {
            id: old.id,
            vshards: vec![VShardId(2), VShardId(4)],
        };
        assert_eq!(old.watch, Some(want));
        // An old entry that watched without keys watches nothing (its round trip once wrote
        // an empty list, which is refused).
        let mut keyless = watching(Vec::new());
        keyless.keys.clear();
        let mut b = Vec::new();
        encode_submission(&keyless, &mut b);
        b[at] |= 8;
        let old = decode_submission(&mut Reader::new(&b)).unwrap();
        assert_eq!(old.watch, None);
        // The list without the watch flag, or an empty list, is refused.
        let mut b = Vec::new();
        encode_submission(&watching(vec![VShardId(4)]), &mut b);
        b[at] = 1 | 32;
        assert!(decode_submission(&mut Reader::new(&b)).is_err());
        let mut b = Vec::new();
        encode_submission(&watching(vec![VShardId(4)]), &mut b);
        b.truncate(b.len() - 3);
        b.push(0);
        assert!(decode_submission(&mut Reader::new(&b)).is_err());
    }
}
