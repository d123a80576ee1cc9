//! Stream commands: id parsing, XADD XLEN XRANGE XREVRANGE XDEL XTRIM XSETID and XREAD here;
//! consumer groups (XGROUP XREADGROUP XACK XPENDING XCLAIM XAUTOCLAIM) in `groups`, XINFO in
//! `info`. The type is `types::stream`; docs/design/commands.md ("Streams") has the
//! representation and the trimming rule.

mod groups;
mod info;
mod read;
#[cfg(test)]
mod tests;

pub use groups::{xack, xautoclaim, xclaim, xgroup, xpending, xreadgroup};
pub use info::xinfo;
pub(crate) use read::{read_args, reply_streams};
pub use read::{read_key_range, resolve_dollar, xread};

use super::{Args, Ctx, create, err, modify, read};
use crate::bytes::SmallBytes;
use crate::db::Db;
use crate::reply::Out;
pub use crate::types::stream::{Consumer, Fields, Group, Nack, Node, NodeLimits, Stream, StreamId};
use std::ops::Bound::Included;

pub const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// One part of an id, as Redis's `string2ull` reads it (`+1`, `01` and ` 1` are 1).
fn parse_u64(s: &[u8]) -> Option<u64> {
    crate::num::parse_ull(s)
}

/// Parses `ms-seq`, or `ms` alone (then the sequence is `missing_seq`). With `strict` false, `-`
/// and `+` stand for the smallest and largest ids. As Redis: at most 127 bytes, read up to a
/// NUL byte (a C string), split at the first `-`.
pub fn parse_id(s: &[u8], missing_seq: u64, strict: bool) -> Option<StreamId> {
    if s.len() > 127 {
        return None;
    }
    let s = s.split(|&b| b == 0).next().unwrap_or(s);
    if !strict {
        match s {
            b"-" => return Some(StreamId::MIN),
            b"+" => return Some(StreamId::MAX),
            _ => {}
        }
    }
    match s.iter().position(|&b| b == b'-') {
        Some(p) => Some(StreamId::new(parse_u64(&s[..p])?, parse_u64(&s[p + 1..])?)),
        None => Some(StreamId::new(parse_u64(s)?, missing_seq)),
    }
}

/// A strict id argument, or Redis's error written.
pub fn id_arg(s: &[u8], out: &mut Out) -> Option<StreamId> {
    let id = parse_id(s, 0, true);
    if id.is_none() {
        out.error(INVALID_ID);
    }
    id
}

/// One end of an XRANGE-style interval: `-`, `+`, an id, or `(id` (exclusive), made inclusive.
/// `Ok(None)`: the exclusive bound is past the end of the id space (the range is empty).
fn interval_arg(s: &[u8], missing_seq: u64, start: bool, out: &mut Out) -> Result<StreamId, ()> {
    if s.len() > 1 && s[0] == b'(' {
        let Some(id) = parse_id(&s[1..], missing_seq, true) else {
            out.error(INVALID_ID);
            return Err(());
        };
        let moved = if start { id.next() } else { id.prev() };
        return moved.ok_or_else(|| {
            out.error(if start {
                "ERR invalid start ID for the interval"
            } else {
                "ERR invalid end ID for the interval"
            })
        });
    }
    parse_id(s, missing_seq, false).ok_or_else(|| out.error(INVALID_ID))
}

impl Stream {
    /// Applies a trimming rule; returns the number of entries removed.
    fn trim(&mut self, t: &Trim) -> usize {
        let (max_len, min_id) = match t.strategy {
            Strategy::MaxLen(n) => (Some(n), StreamId::MIN),
            Strategy::MinId(min) => (None, min),
        };
        self.trim_nodes(max_len, min_id, t.approx, t.limit as u64) as usize
    }
}

/// Writes an id as a bulk string.
pub fn reply_id(out: &mut Out, id: StreamId) {
    out.bulk(id.format(&mut [0; 41]))
}

/// Writes one entry: `[id, [field, value, ...]]`.
pub fn reply_entry(out: &mut Out, id: StreamId, fields: &[SmallBytes]) {
    out.array(2);
    reply_id(out, id);
    out.array(fields.len());
    for f in fields {
        out.bulk(f);
    }
}

/// Writes the entries between `start` and `end` (inclusive), at most `count` (0: all), in
/// ascending order or, with `rev`, descending.
fn reply_range(out: &mut Out, s: &Stream, start: StreamId, end: StreamId, count: usize, rev: bool) {
    if start > end {
        return out.array(0);
    }
    let limit = if count == 0 { usize::MAX } else { count };
    let range = s.entries.range((Included(start), Included(end)));
    let picked: Vec<(&StreamId, &Fields)> = if rev {
        range.rev().take(limit).collect()
    } else {
        range.take(limit).collect()
    };
    out.array(picked.len());
    for (id, f) in picked {
        reply_entry(out, *id, f);
    }
}

fn nogroup(out: &mut Out, key: &[u8], group: &[u8]) {
    out.error(&format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        err::sanitize(key),
        err::sanitize(group)
    ))
}

#[derive(Clone, Copy, Debug)]
enum Strategy {
    MaxLen(u64),
    MinId(StreamId),
}

/// A trimming rule of XADD or XTRIM.
#[derive(Clone, Copy, Debug)]
struct Trim {
    strategy: Strategy,
    approx: bool,
    /// Most entries to remove (0: no limit).
    limit: usize,
}

/// What XADD and XTRIM share: the trimming options, and for XADD NOMKSTREAM and where the id is.
struct AddOrTrim {
    trim: Option<Trim>,
    nomkstream: bool,
    /// Index of the id argument (XADD).
    id_at: usize,
}

/// Parses the options of XADD (`xadd`) or XTRIM from `a[2..]`, as Redis does.
fn add_or_trim_args(a: &Args, xadd: bool, node_entries: usize, out: &mut Out) -> Option<AddOrTrim> {
    let mut strategy = None;
    let (mut approx, mut limit, mut limit_given, mut nomkstream) = (false, 0i64, false, false);
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = a.get(i);
        let is = |w: &[u8]| opt.eq_ignore_ascii_case(w);
        if xadd && opt == b"*" {
            break;
        } else if (is(b"maxlen") || is(b"minid")) && more > 0 {
            if strategy.is_some() {
                out.error(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                );
                return None;
            }
            approx = false;
            // `~` or `=` only with a value after it (else it is the value, and not a number).
            match a.get(i + 1) {
                b"~" if more >= 2 => {
                    approx = true;
                    i += 1;
                }
                b"=" if more >= 2 => i += 1,
                _ => {}
            }
            let v = a.get(i + 1);
            strategy = Some(if is(b"maxlen") {
                match crate::num::parse_i64(v) {
                    None => {
                        out.error(err::NOT_INT);
                        return None;
                    }
                    Some(n) if n < 0 => {
                        out.error("ERR The MAXLEN argument must be >= 0.");
                        return None;
                    }
                    Some(n) => Strategy::MaxLen(n as u64),
                }
            } else {
                Strategy::MinId(id_arg(v, out)?)
            });
            i += 2;
        } else if is(b"limit") && more > 0 {
            match crate::num::parse_i64(a.get(i + 1)) {
                Some(n) if n >= 0 => limit = n,
                Some(_) => {
                    out.error("ERR The LIMIT argument must be >= 0.");
                    return None;
                }
                None => {
                    out.error(err::NOT_INT);
                    return None;
                }
            }
            limit_given = true;
            i += 2;
        } else if xadd && is(b"nomkstream") {
            nomkstream = true;
            i += 1;
        } else if xadd {
            break;
        } else {
            out.error(err::SYNTAX);
            return None;
        }
    }
    // As Redis: a LIMIT of 0 counts as none here (its check reads the value).
    if limit_given && limit != 0 && strategy.is_none() {
        out.error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy");
        return None;
    }
    if !xadd && strategy.is_none() {
        out.error("ERR syntax error, XTRIM must be called with a trimming strategy");
        return None;
    }
    if limit_given && !approx {
        out.error("ERR syntax error, LIMIT cannot be used without the special ~ option");
        return None;
    }
    if approx && !limit_given {
        limit = 100 * node_entries as i64;
    }
    Some(AddOrTrim {
        trim: strategy.map(|strategy| Trim {
            strategy,
            approx,
            limit: limit as usize,
        }),
        nomkstream,
        id_at: i,
    })
}

/// The id XADD asked for.
enum NewId {
    Auto,
    /// `ms-*`: the sequence is chosen.
    AutoSeq(u64),
    Exact(StreamId),
}

fn new_id_arg(s: &[u8], out: &mut Out) -> Option<NewId> {
    if s == b"*" {
        return Some(NewId::Auto);
    }
    if let Some(ms) = s.strip_suffix(b"-*") {
        return match parse_u64(ms) {
            Some(ms) => Some(NewId::AutoSeq(ms)),
            None => {
                out.error(INVALID_ID);
                None
            }
        };
    }
    let id = id_arg(s, out)?;
    if id.is_zero() {
        out.error("ERR The ID specified in XADD must be greater than 0-0");
        return None;
    }
    Some(NewId::Exact(id))
}

const ID_TOO_SMALL: &str =
    "ERR The ID specified in XADD is equal or smaller than the target stream top item";
const EXHAUSTED: &str =
    "ERR The stream has exhausted the last possible ID, unable to add more items";

/// The id an XADD gets, or the error it answers.
fn next_id(s: &Stream, want: &NewId, now_ms: u64) -> Result<StreamId, &'static str> {
    let last = s.last_id;
    let id = match *want {
        NewId::Auto if now_ms > last.ms => StreamId::new(now_ms, 0),
        NewId::Auto => last.next().ok_or(EXHAUSTED)?,
        NewId::AutoSeq(ms) if ms == last.ms => {
            if last.seq == u64::MAX {
                return Err(ID_TOO_SMALL);
            }
            StreamId::new(ms, last.seq + 1)
        }
        NewId::AutoSeq(ms) => StreamId::new(ms, 0),
        NewId::Exact(id) => id,
    };
    if id <= last {
        return Err(ID_TOO_SMALL);
    }
    Ok(id)
}

pub fn xadd(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let node_entries = db.tunables.stream_node_max_entries;
    let lim = db.tunables.stream_limits();
    let Some(opts) = add_or_trim_args(&a, true, node_entries, out) else {
        return;
    };
    if opts.id_at >= a.len() {
        return err::arity(out, "xadd");
    }
    let fields = a.len() - opts.id_at - 1;
    if fields < 2 || !fields.is_multiple_of(2) {
        return err::arity(out, "xadd");
    }
    let Some(want) = new_id_arg(a.get(opts.id_at), out) else {
        return;
    };
    let key = a.get(1);
    // The id is checked before the stream is created, so a refused XADD creates nothing.
    let id = match modify::<Stream>(db, key, c.now_ms, out) {
        Err(()) => return,
        Ok(None) if opts.nomkstream => return out.null(),
        Ok(s) => {
            let empty = Stream::default();
            let current = s.map_or(&empty, |s| &*s);
            if current.last_id == StreamId::MAX {
                return out.error(EXHAUSTED);
            }
            match next_id(current, &want, c.now_ms) {
                Ok(id) => id,
                Err(e) => return out.error(e),
            }
        }
    };
    let s = create::<Stream>(db, key, c.now_ms, out).expect("type checked above");
    let values: Fields = (opts.id_at + 1..a.len())
        .map(|i| SmallBytes::new(a.get(i)))
        .collect();
    s.append(id, values, lim);
    s.last_id = id;
    s.entries_added += 1;
    if let Some(t) = &opts.trim {
        s.trim(t);
    }
    reply_id(out, id);
}

pub fn xlen(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(s) = read::<Stream>(db, a.get(1), c.now_ms, out) {
        out.int(s.map_or(0, |s| s.len() as i64))
    }
}

fn range_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, rev: bool) {
    let (start_arg, end_arg) = if rev {
        (a.get(3), a.get(2))
    } else {
        (a.get(2), a.get(3))
    };
    let Ok(start) = interval_arg(start_arg, 0, true, out) else {
        return;
    };
    let Ok(end) = interval_arg(end_arg, u64::MAX, false, out) else {
        return;
    };
    let mut count: Option<usize> = None;
    let mut i = 4;
    while i < a.len() {
        if a.get(i).eq_ignore_ascii_case(b"count") && i + 1 < a.len() {
            let Some(n) = super::int_arg(&a, i + 1, out) else {
                return;
            };
            count = Some(n.max(0) as usize);
            i += 2;
        } else {
            return out.error(err::SYNTAX);
        }
    }
    match read::<Stream>(db, a.get(1), c.now_ms, out) {
        Err(()) => {}
        Ok(None) => out.array(0),
        Ok(Some(_)) if count == Some(0) => out.null_array(),
        Ok(Some(s)) => reply_range(out, s, start, end, count.unwrap_or(0), rev),
    }
}

pub fn xrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    range_generic(db, a, c, out, false)
}

pub fn xrevrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    range_generic(db, a, c, out, true)
}

pub fn xdel(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: a missing key answers 0 and a wrong type WRONGTYPE before the ids are read; then
    // every id is checked before any is deleted.
    let key = a.get(1);
    let Ok(Some(s)) = modify::<Stream>(db, key, c.now_ms, out) else {
        if db.peek(key).is_none() {
            out.int(0);
        }
        return;
    };
    let mut ids = Vec::with_capacity(a.len() - 2);
    for i in 2..a.len() {
        let Some(id) = id_arg(a.get(i), out) else {
            return;
        };
        ids.push(id);
    }
    let deleted = ids.iter().filter(|&&id| s.delete(id)).count();
    if deleted > 0 {
        db.signal(key);
    }
    out.int(deleted as i64)
}

pub fn xtrim(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let node_entries = db.tunables.stream_node_max_entries;
    let Some(opts) = add_or_trim_args(&a, false, node_entries, out) else {
        return;
    };
    let trim = opts.trim.expect("XTRIM parsing requires a strategy");
    let key = a.get(1);
    let Ok(s) = modify::<Stream>(db, key, c.now_ms, out) else {
        return;
    };
    let removed = s.map_or(0, |s| s.trim(&trim));
    if removed > 0 {
        db.signal(key);
    }
    out.int(removed as i64)
}

pub fn xsetid(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(id) = id_arg(a.get(2), out) else {
        return;
    };
    let (mut added, mut max_deleted) = (None, StreamId::MIN);
    let mut i = 3;
    while i < a.len() {
        let opt = a.get(i);
        if opt.eq_ignore_ascii_case(b"entriesadded") && i + 1 < a.len() {
            let Some(n) = super::int_arg(&a, i + 1, out) else {
                return;
            };
            if n < 0 {
                return out.error("ERR entries_added must be positive");
            }
            added = Some(n as u64);
        } else if opt.eq_ignore_ascii_case(b"maxdeletedid") && i + 1 < a.len() {
            let Some(m) = id_arg(a.get(i + 1), out) else {
                return;
            };
            if id < m {
                return out.error(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                );
            }
            max_deleted = m;
        } else {
            return out.error(err::SYNTAX);
        }
        i += 2;
    }
    let key = a.get(1);
    let s = match modify::<Stream>(db, key, c.now_ms, out) {
        Err(()) => return,
        Ok(None) => return out.error(err::NO_SUCH_KEY),
        Ok(Some(s)) => s,
    };
    if id < s.max_deleted {
        return out
            .error("ERR The ID specified in XSETID is smaller than current max_deleted_entry_id");
    }
    if !s.is_empty() {
        if id < s.last_valid_id() {
            return out.error(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            );
        }
        if added.is_some_and(|n| (s.len() as u64) > n) {
            return out.error(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            );
        }
    }
    s.last_id = id;
    if let Some(n) = added {
        s.entries_added = n;
    }
    if !max_deleted.is_zero() {
        s.max_deleted = max_deleted;
    }
    db.signal(key);
    out.ok()
}
