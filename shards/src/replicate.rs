//! What a replicated vShard's Raft log entries hold, and how every replica applies them
//! (issue 3). An entry is a batch of commands with the leader's clock and an RNG seed: replicas
//! run them through the unchanged command layer with that clock (made monotonic per group) and
//! that seed, so every replica decides expiry and random choices the same way and holds the
//! same state. Only the leader keeps the replies.
//!
//! Layout (little-endian): `version: u8 | kind: u8 | now_us: u64 | seed: u64 | count: u32`, then
//! per command `nargs: u32` and per argument `len: u32 | bytes`.

use crate::command::{self, Args, Ctx, Span};
use crate::db::Db;
use crate::reply::Out;
use crate::rng::Rng;
use crate::slot::key_slot;

const VERSION: u8 = 1;
// A Raft membership entry starts with its own tag: the two must never be confused.
const _: () = assert!(VERSION != crate::raft::conf::CONF_TAG);
const HEADER: usize = 1 + 1 + 8 + 8 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Independent commands, one reply each, in order.
    Commands = 1,
    /// MULTI/EXEC: the commands run back to back and answer one array.
    Transaction = 2,
    /// Expiry decided by the leader: each argument is a key, deleted if it has expired at the
    /// entry's clock. No reply.
    ExpireCheck = 3,
    /// FLUSHALL / FLUSHDB of one vShard (the argument: its id, u16 little-endian). Replies OK.
    Flush = 4,
    /// A parked blocking command's retry after a key it waits on changed: each command's first
    /// argument is that key, the rest the command (`command::blocking::retry`). One reply each:
    /// the command's, or a null array when it keeps waiting.
    Retry = 5,
    /// A cross-vShard transaction's execution on one participant (Calvin): its words are
    /// `calvin::exec::Execution`'s. One reply: the transaction's.
    Execute = 6,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short,
    Version(u8),
    Kind(u8),
    /// A command without even its name (no leader writes one: a member's forged entry).
    EmptyCommand,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short => write!(f, "log entry cut short"),
            DecodeError::Version(v) => write!(f, "log entry format {v} is not known here"),
            DecodeError::Kind(k) => write!(f, "unknown log entry kind {k}"),
            DecodeError::EmptyCommand => write!(f, "a command of the log entry has no words"),
        }
    }
}

/// Builds one entry.
pub struct Encoder {
    buf: Vec<u8>,
    count: u32,
    kind: Kind,
}

/// The bytes of an entry's header (version, kind, clock, seed, command count).
pub const HEADER_BYTES: usize = 22;

/// The bytes `Encoder::push` adds for a command of these words.
pub fn command_bytes<'a>(args: impl ExactSizeIterator<Item = &'a [u8]>) -> usize {
    4 + args.map(|a| 4 + a.len()).sum::<usize>()
}

impl Encoder {
    pub fn new(kind: Kind, now_us: u64, seed: u64) -> Encoder {
        Encoder::with_capacity(kind, now_us, seed, 128)
    }

    /// An encoder for an entry of `bytes` in all (`HEADER_BYTES` and `command_bytes` of each
    /// command): exactly that much is allocated, and an entry of exactly its capacity becomes
    /// a `Bytes` without a second allocation.
    pub fn with_capacity(kind: Kind, now_us: u64, seed: u64, bytes: usize) -> Encoder {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_BYTES));
        buf.push(VERSION);
        buf.push(kind as u8);
        buf.extend_from_slice(&now_us.to_le_bytes());
        buf.extend_from_slice(&seed.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        Encoder {
            buf,
            count: 0,
            kind,
        }
    }

    /// The entry that flushes vShard `v`.
    pub fn flush(v: u16, now_us: u64) -> Encoder {
        let mut e = Encoder::new(Kind::Flush, now_us, 0);
        e.push([&v.to_le_bytes()[..]].into_iter());
        e
    }

    pub fn push<'a>(&mut self, args: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.buf
            .extend_from_slice(&(args.len() as u32).to_le_bytes());
        for a in args {
            self.buf.extend_from_slice(&(a.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(a);
        }
        self.count += 1;
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    /// The entry's bytes so far.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf[18..22].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// Writes at the end of `out` the entry of one command (`words`) that an `Encoder` would make,
/// without an allocation of its own: a thread cuts the entries of its writes from one buffer
/// (`BytesMut::split`), which they then share.
pub fn encode_command_into<'a>(
    out: &mut bytes::BytesMut,
    kind: Kind,
    now_us: u64,
    seed: u64,
    words: impl ExactSizeIterator<Item = &'a [u8]>,
) {
    out.extend_from_slice(&[VERSION, kind as u8]);
    out.extend_from_slice(&now_us.to_le_bytes());
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(words.len() as u32).to_le_bytes());
    for w in words {
        out.extend_from_slice(&(w.len() as u32).to_le_bytes());
        out.extend_from_slice(w);
    }
}

/// Whether `data` is an execution entry (`Kind::Execute`): one byte compared, so the apply
/// path can single them out.
pub fn is_execute(data: &[u8]) -> bool {
    data.len() > 1 && data[0] == VERSION && data[1] == Kind::Execute as u8
}

/// An entry taken apart: the argument spans of each command index into the entry's bytes.
#[derive(Debug)]
pub struct Decoded {
    pub kind: Kind,
    pub now_us: u64,
    pub seed: u64,
    pub spans: Vec<Span>,
    /// `(first span, argument count)` of each command.
    pub cmds: Vec<(u32, u32)>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or(DecodeError::Short)
}

/// Buffers `apply` reuses from entry to entry (the apply path allocates nothing per entry).
#[derive(Default)]
pub struct Scratch {
    spans: Vec<Span>,
    cmds: Vec<(u32, u32)>,
}

pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    let mut s = Scratch::default();
    let (kind, now_us, seed) = decode_into(data, &mut s)?;
    Ok(Decoded {
        kind,
        now_us,
        seed,
        spans: s.spans,
        cmds: s.cmds,
    })
}

/// Takes `data` apart into `s`; returns the kind, clock and seed.
fn decode_into(data: &[u8], s: &mut Scratch) -> Result<(Kind, u64, u64), DecodeError> {
    s.spans.clear();
    s.cmds.clear();
    if data.len() < HEADER {
        return Err(DecodeError::Short);
    }
    if data[0] != VERSION {
        return Err(DecodeError::Version(data[0]));
    }
    let kind = match data[1] {
        1 => Kind::Commands,
        2 => Kind::Transaction,
        3 => Kind::ExpireCheck,
        4 => Kind::Flush,
        5 => Kind::Retry,
        6 => Kind::Execute,
        k => return Err(DecodeError::Kind(k)),
    };
    let now_us = u64::from_le_bytes(data[2..10].try_into().expect("8 bytes"));
    let seed = u64::from_le_bytes(data[10..18].try_into().expect("8 bytes"));
    let count = u32_at(data, 18)? as usize;
    let mut at = HEADER;
    for _ in 0..count {
        let n = u32_at(data, at)?;
        at += 4;
        // Commands name themselves; an expiry check's key list may be empty.
        if n == 0 && kind != Kind::ExpireCheck {
            return Err(DecodeError::EmptyCommand);
        }
        s.cmds.push((s.spans.len() as u32, n));
        for _ in 0..n {
            let len = u32_at(data, at)? as usize;
            at += 4;
            if data.len() - at < len {
                return Err(DecodeError::Short);
            }
            s.spans.push((at as u32, (at + len) as u32));
            at += len;
        }
    }
    if at != data.len() {
        return Err(DecodeError::Short);
    }
    Ok((kind, now_us, seed))
}

/// Applies entry `data` to `db`. `clock_us` is the group's clock: the entry runs at the later of
/// it and the entry's own clock, and it moves there (a new leader's clock may lag the old one's).
/// Replies go to `out`, one segment per reply, each ending at the offset pushed to `ends`.
/// An empty entry (a new leader's no-op) does nothing.
pub fn apply(
    db: &mut Db,
    data: &[u8],
    clock_us: &mut u64,
    out: &mut Out,
    ends: &mut Vec<u32>,
    scratch: &mut Scratch,
) -> Result<(), DecodeError> {
    // A leader's no-op, or a membership change (the Raft core's, not the state machine's).
    if data.is_empty() || data[0] == crate::raft::conf::CONF_TAG {
        return Ok(());
    }
    let (kind, entry_us, seed) = decode_into(data, scratch)?;
    let e = &*scratch;
    let now_us = entry_us.max(*clock_us);
    *clock_us = now_us;
    let mut rng = Rng::new(seed);
    let mut ctx = Ctx {
        now_ms: now_us / 1000,
        now_us,
        rng: &mut rng,
    };
    let args_of =
        |(first, n): (u32, u32)| Args::new(data, &e.spans[first as usize..(first + n) as usize]);
    match kind {
        Kind::Commands => {
            for &c in &e.cmds {
                run(db, args_of(c), &mut ctx, out);
                ends.push(out.buf.len() as u32);
            }
        }
        Kind::Transaction => {
            out.array(e.cmds.len());
            for &c in &e.cmds {
                run(db, args_of(c), &mut ctx, out);
            }
            ends.push(out.buf.len() as u32);
        }
        Kind::Retry => {
            for &(first, n) in &e.cmds {
                if n < 2 {
                    return Err(DecodeError::Short);
                }
                let (s, end) = e.spans[first as usize];
                let key = &data[s as usize..end as usize];
                let args = args_of((first + 1, n - 1));
                match command::lookup(args.get(0)) {
                    Some(spec) if spec.arity_ok(args.len()) => {
                        if !(owned(db, spec, args) && db.owns_slot(key_slot(key))) {
                            out.error(FOREIGN);
                        } else if !command::blocking::retry(spec.name, db, args, key, &mut ctx, out)
                        {
                            out.null_array();
                        }
                    }
                    _ => out.error("ERR command not known to this replica's build"),
                }
                ends.push(out.buf.len() as u32);
            }
        }
        Kind::Execute => {
            let words = e.cmds.iter().map(|&c| {
                let a = args_of(c);
                (0..a.len()).map(|i| a.get(i).to_vec()).collect()
            });
            let x = crate::calvin::exec::Execution::decode(entry_us, seed, words)
                .ok_or(DecodeError::Short)?;
            if let Err(err) = x.apply(db, out) {
                out.error(match err {
                    crate::calvin::exec::ExecError::Foreign => FOREIGN,
                    // (Only a leader's run of a script stops so; an entry runs none.)
                    crate::calvin::exec::ExecError::ShutDown => {
                        "ERR stopped by SHUTDOWN; not applied"
                    }
                    crate::calvin::exec::ExecError::BadRead { .. } => {
                        "ERR a read of this transaction's log entry does not decode; not applied"
                    }
                });
            }
            ends.push(out.buf.len() as u32);
        }
        Kind::ExpireCheck => {
            for &(s, end) in &e.spans {
                let key = &data[s as usize..end as usize];
                if db.owns_slot(key_slot(key)) {
                    db.exists(key, ctx.now_ms);
                }
            }
        }
        Kind::Flush => {
            let Some(&(s, end)) = e.spans.first() else {
                return Err(DecodeError::Short);
            };
            let id: [u8; 2] = data[s as usize..end as usize]
                .try_into()
                .map_err(|_| DecodeError::Short)?;
            db.flush_vshard(crate::slot::VShardId(u16::from_le_bytes(id)));
            out.ok();
            ends.push(out.buf.len() as u32);
        }
    }
    Ok(())
}

/// The answer to a command of an entry whose keys are not all in one vShard this replica holds.
/// Our leaders put only commands on keys of the entry's vShard in it; a member's damaged or
/// forged entry is refused alike by every replica (they hold the same vShards of the group).
const FOREIGN: &str = "ERR a command of this log entry names keys outside its vShard; not applied";

/// The answer to a scripting command in an entry (`run`).
pub const SCRIPT_IN_ENTRY: &str =
    "ERR a log entry holds a scripting command (entries hold a script's effects); not applied";

/// Whether every key of `spec` with `args` is in one vShard `db` holds.
fn owned(db: &Db, spec: &command::CommandSpec, args: Args) -> bool {
    match crate::route::vshard_of_keys(spec, args, db.layout()) {
        Ok(Some((_, slot))) => db.owns_slot(slot),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Runs one command of an entry as every replica does (a leader that applies at append runs
/// its commands through this too, so the log replays to the same state).
pub fn run(db: &mut Db, args: Args, ctx: &mut Ctx, out: &mut Out) {
    match command::lookup(args.get(0)) {
        // Our leaders log a script's effects, never the script (nor FUNCTION or SCRIPT,
        // which are node state): one in a member's entry would run Lua on every replica,
        // unbounded.
        Some(spec) if spec.group == "scripting" => out.error(SCRIPT_IN_ENTRY),
        Some(spec) if spec.arity_ok(args.len()) && !owned(db, spec, args) => out.error(FOREIGN),
        Some(spec) if spec.arity_ok(args.len()) => command::apply(spec, db, args, ctx, out),
        // The leader checked both before proposing; an entry from a newer build could differ.
        _ => out.error("ERR command not known to this replica's build"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Proto;
    use crate::slot::VShardLayout;

    fn entry(kind: Kind, now_us: u64, cmds: &[&[&str]]) -> Vec<u8> {
        let mut e = Encoder::new(kind, now_us, 7);
        for c in cmds {
            e.push(c.iter().map(|a| a.as_bytes()));
        }
        e.finish()
    }

    fn db() -> Db {
        Db::new_all(VShardLayout::new(16).unwrap())
    }

    #[test]
    fn an_entry_round_trips_and_every_truncation_is_refused() {
        let data = entry(Kind::Commands, 5, &[&["SET", "k", "v"], &["GET", "k"]]);
        let d = decode(&data).unwrap();
        assert_eq!((d.kind, d.now_us, d.seed), (Kind::Commands, 5, 7));
        assert_eq!(d.cmds, vec![(0, 3), (3, 2)]);
        for cut in 0..data.len() {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn an_entry_written_into_a_shared_buffer_is_the_encoders() {
        let mut buf = bytes::BytesMut::with_capacity(64);
        buf.extend_from_slice(b"earlier entry");
        let _ = buf.split();
        let words = [&b"SET"[..], b"key", b"value"];
        encode_command_into(&mut buf, Kind::Commands, 5, 7, words.into_iter());
        assert_eq!(buf.len(), HEADER_BYTES + command_bytes(words.into_iter()));
        assert_eq!(
            &buf[..],
            &entry(Kind::Commands, 5, &[&["SET", "key", "value"]])[..]
        );
    }

    #[test]
    fn replicas_applying_the_same_entries_reach_the_same_state_and_replies() {
        let log = [
            entry(
                Kind::Commands,
                1_000_000,
                &[&["SET", "a", "1", "PX", "500"]],
            ),
            entry(Kind::Commands, 1_000_100, &[&["SADD", "s", "x", "y", "z"]]),
            // SPOP is random: the seed in the entry makes every replica pop the same member.
            entry(
                Kind::Commands,
                1_000_200,
                &[&["SPOP", "s"], &["SMEMBERS", "s"]],
            ),
            // A lagging clock (a new leader's) does not move time backwards.
            entry(Kind::Commands, 900_000, &[&["GET", "a"]]),
            entry(Kind::ExpireCheck, 2_000_000, &[&["a"]]),
            entry(
                Kind::Transaction,
                2_000_001,
                &[&["INCR", "n"], &["INCR", "n"]],
            ),
        ];
        let mut results = Vec::new();
        for _ in 0..2 {
            let mut d = db();
            let mut clock = 0;
            let mut out = Out::new(Proto::Resp2);
            let mut ends = Vec::new();
            let mut scratch = Scratch::default();
            for e in &log {
                apply(&mut d, e, &mut clock, &mut out, &mut ends, &mut scratch).unwrap();
            }
            assert_eq!(clock, 2_000_001);
            assert_eq!(
                d.len(),
                2,
                "a expired by the leader's check; s and n remain"
            );
            results.push((out.buf, ends));
        }
        assert_eq!(results[0], results[1]);
        let text = String::from_utf8_lossy(&results[0].0).into_owned();
        assert!(text.starts_with("+OK\r\n:3\r\n"), "{text}");
        assert!(text.ends_with("*2\r\n:1\r\n:2\r\n"), "{text}");
        // GET a at the lagging clock still ran at 1_000_200 µs: a was alive.
        assert!(text.contains("$1\r\n1\r\n"), "{text}");
    }

    #[test]
    fn a_retry_entry_serves_from_its_key_or_answers_nil_to_keep_waiting() {
        let mut d = db();
        let (mut clock, mut out, mut ends) = (0, Out::new(Proto::Resp2), Vec::new());
        let mut scratch = Scratch::default();
        let log = [
            entry(
                Kind::Commands,
                1,
                &[&["SET", "{q}a", "x"], &["RPUSH", "{q}b", "1"]],
            ),
            // {q}a holds a string: BLPOP keeps waiting (nil), it does not answer WRONGTYPE.
            entry(Kind::Retry, 2, &[&["{q}a", "BLPOP", "{q}a", "{q}b", "0"]]),
            entry(Kind::Retry, 3, &[&["{q}b", "BLPOP", "{q}a", "{q}b", "0"]]),
        ];
        for e in &log {
            apply(&mut d, e, &mut clock, &mut out, &mut ends, &mut scratch).unwrap();
        }
        let text = String::from_utf8_lossy(&out.buf).into_owned();
        assert_eq!(text, "+OK\r\n:1\r\n*-1\r\n*2\r\n$4\r\n{q}b\r\n$1\r\n1\r\n");
        assert_eq!(ends.len(), 4, "one reply per command");
        // A retry without its command is malformed.
        let bad = entry(Kind::Retry, 4, &[&["{q}b"]]);
        assert!(apply(&mut d, &bad, &mut clock, &mut out, &mut ends, &mut scratch).is_err());
    }

    #[test]
    fn a_flush_entry_empties_its_vshard_only() {
        let mut d = db();
        let (mut clock, mut out, mut ends) = (0, Out::new(Proto::Resp2), Vec::new());
        let mut scratch = Scratch::default();
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let set: Vec<Vec<&str>> = keys.iter().map(|k| vec!["SET", k, "1"]).collect();
        let set: Vec<&[&str]> = set.iter().map(|c| &c[..]).collect();
        apply(
            &mut d,
            &entry(Kind::Commands, 1, &set),
            &mut clock,
            &mut out,
            &mut ends,
            &mut scratch,
        )
        .unwrap();
        let layout = VShardLayout::new(16).unwrap();
        let v = layout.vshard_of(crate::slot::key_slot(b"a"));
        let in_v = keys
            .iter()
            .filter(|k| layout.vshard_of(crate::slot::key_slot(k.as_bytes())) == v)
            .count();
        assert!(in_v < keys.len(), "the keys span several vShards");
        out.buf.clear();
        ends.clear();
        let flush = Encoder::flush(v.0, 2).finish();
        apply(
            &mut d,
            &flush,
            &mut clock,
            &mut out,
            &mut ends,
            &mut scratch,
        )
        .unwrap();
        assert_eq!((&out.buf[..], ends.len()), (&b"+OK\r\n"[..], 1));
        assert_eq!(d.len(), keys.len() - in_v, "only vShard {v:?} was emptied");
        // A flush entry cut short is refused, not applied.
        let mut short = Encoder::new(Kind::Flush, 3, 0);
        short.push([&b"x"[..]].into_iter());
        let short = short.finish();
        assert!(
            apply(
                &mut d,
                &short,
                &mut clock,
                &mut out,
                &mut ends,
                &mut scratch
            )
            .is_err()
        );
    }

    #[test]
    fn a_noop_entry_applies_nothing() {
        let mut d = db();
        let (mut clock, mut out, mut ends) = (0, Out::new(Proto::Resp2), Vec::new());
        let mut scratch = Scratch::default();
        apply(&mut d, &[], &mut clock, &mut out, &mut ends, &mut scratch).unwrap();
        assert!(out.buf.is_empty() && ends.is_empty());
    }

    #[test]
    fn a_command_on_keys_of_a_vshard_this_replica_lacks_is_refused_not_run() {
        let layout = VShardLayout::new(16).unwrap();
        let v = layout.vshard_of(crate::slot::key_slot(b"a"));
        let other = (b'b'..=b'z')
            .map(|c| [c])
            .find(|k| layout.vshard_of(crate::slot::key_slot(k)) != v)
            .expect("a key elsewhere");
        let other = std::str::from_utf8(&other).unwrap();
        let mut d = Db::new(layout, [v]);
        let (mut clock, mut out, mut ends) = (0, Out::new(Proto::Resp2), Vec::new());
        let mut scratch = Scratch::default();
        for e in [
            entry(
                Kind::Commands,
                1,
                &[&["SET", "a", "1"], &["SET", other, "1"]],
            ),
            entry(Kind::Commands, 2, &[&["MSET", "a", "1", other, "2"]]),
            entry(Kind::ExpireCheck, 3, &[&[other]]),
            entry(Kind::Retry, 4, &[&[other, "BLPOP", other, "0"]]),
        ] {
            apply(&mut d, &e, &mut clock, &mut out, &mut ends, &mut scratch).unwrap();
        }
        let text = String::from_utf8_lossy(&out.buf).into_owned();
        assert_eq!(
            text,
            format!("+OK\r\n-{FOREIGN}\r\n-{FOREIGN}\r\n-{FOREIGN}\r\n"),
            "only the command on this replica's vShard ran"
        );
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn an_entry_with_a_command_of_no_words_is_refused_not_run() {
        // Found by the `committed_entry` fuzz target: it indexed the missing command name.
        let crash = [
            0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x53, 0xff, 0xff, 0xfa,
            0x32, 0xca, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let mut d = db();
        let (mut clock, mut out, mut ends) = (0, Out::new(Proto::Resp2), Vec::new());
        let mut scratch = Scratch::default();
        assert!(matches!(
            apply(
                &mut d,
                &crash,
                &mut clock,
                &mut out,
                &mut ends,
                &mut scratch
            ),
            Err(DecodeError::EmptyCommand)
        ));
        for kind in [Kind::Commands, Kind::Transaction, Kind::Retry, Kind::Flush] {
            let mut e = Encoder::new(kind, 1, 1);
            e.push(std::iter::empty());
            let e = e.finish();
            assert!(apply(&mut d, &e, &mut clock, &mut out, &mut ends, &mut scratch).is_err());
        }
        assert!(out.buf.is_empty() && d.is_empty(), "nothing ran");
    }
}
