//! XREAD, and the option parsing and reply shape it shares with XREADGROUP.

use super::{Stream, StreamId, id_arg, reply_range};
use crate::command::{Args, Ctx, err, read};
use crate::db::Db;
use crate::reply::{Out, Proto};

/// The parsed options of XREAD and XREADGROUP.
pub(crate) struct ReadArgs<'a> {
    /// Most entries per stream (0: all).
    pub count: usize,
    /// `Some(ms)` with BLOCK (0: forever).
    pub block_ms: Option<u64>,
    pub group: Option<(&'a [u8], &'a [u8])>,
    pub noack: bool,
    /// Index of the first key; the ids follow the `streams` keys.
    pub keys_at: usize,
    pub streams: usize,
}

/// Parses XREAD (`group` false) or XREADGROUP options. Errors are Redis's.
pub(crate) fn read_args<'a>(a: &Args<'a>, group: bool) -> Result<ReadArgs<'a>, String> {
    let name = if group { "xreadgroup" } else { "xread" };
    let mut r = ReadArgs {
        count: 0,
        block_ms: None,
        group: None,
        noack: false,
        keys_at: 0,
        streams: 0,
    };
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = a.get(i);
        let is = |w: &[u8]| opt.eq_ignore_ascii_case(w);
        if is(b"block") && more > 0 {
            let t = crate::num::parse_i64(a.get(i + 1))
                .ok_or("ERR timeout is not an integer or out of range")?;
            if t < 0 {
                return Err("ERR timeout is negative".into());
            }
            r.block_ms = Some(t as u64);
            i += 2;
        } else if is(b"count") && more > 0 {
            let n = crate::num::parse_i64(a.get(i + 1)).ok_or(err::NOT_INT)?;
            r.count = n.max(0) as usize;
            i += 2;
        } else if is(b"streams") && more > 0 {
            let n = a.len() - i - 1;
            if !n.is_multiple_of(2) {
                let symbol = if group { '>' } else { '$' };
                return Err(format!(
                    "ERR Unbalanced {} list of streams: for each stream key an ID or '{symbol}' must be specified.",
                    name.to_ascii_uppercase()
                ));
            }
            r.keys_at = i + 1;
            r.streams = n / 2;
            break;
        } else if is(b"group") && more >= 2 {
            if !group {
                return Err("ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.".into());
            }
            r.group = Some((a.get(i + 1), a.get(i + 2)));
            i += 3;
        } else if is(b"noack") {
            if !group {
                return Err("ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.".into());
            }
            r.noack = true;
            i += 1;
        } else {
            return Err(err::SYNTAX.into());
        }
    }
    if r.keys_at == 0 {
        return Err(err::SYNTAX.into());
    }
    if group && r.group.is_none() {
        return Err("ERR Missing GROUP option for XREADGROUP".into());
    }
    Ok(r)
}

/// Key indexes of XREAD/XREADGROUP for routing: the first half of what follows STREAMS, found
/// by skipping the options as the parser does (nothing when the options do not parse).
pub fn read_key_range(a: &Args) -> std::ops::Range<usize> {
    let group = a.get(0).eq_ignore_ascii_case(b"xreadgroup");
    match read_args(a, group) {
        Ok(r) => r.keys_at..r.keys_at + r.streams,
        Err(_) => 0..0,
    }
}

/// Replies `[key, entries]` pairs (a map in RESP3) for the streams in `body`, or a null array.
pub(crate) fn reply_streams(out: &mut Out, served: usize, body: &[u8]) {
    if served == 0 {
        return out.null_array();
    }
    match out.proto {
        Proto::Resp2 => out.array(served),
        Proto::Resp3 => out.map(served),
    }
    out.raw(body)
}

pub fn xread(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let r = match read_args(&a, false) {
        Ok(r) => r,
        Err(e) => return out.error(&e),
    };
    let mut after = Vec::with_capacity(r.streams);
    for i in 0..r.streams {
        let (key, id) = (a.get(r.keys_at + i), a.get(r.keys_at + r.streams + i));
        let Ok(s) = read::<Stream>(db, key, c.now_ms, out) else {
            return;
        };
        let from = match id {
            b"$" => s.map_or(StreamId::MIN, |s| s.last_id),
            b">" => {
                return out.error("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.");
            }
            _ => match id_arg(id, out) {
                Some(id) => id,
                None => return,
            },
        };
        after.push(from);
    }
    let mut body = Out::new(out.proto);
    let mut served = 0;
    for (i, from) in after.into_iter().enumerate() {
        let key = a.get(r.keys_at + i);
        let Ok(Some(s)) = read::<Stream>(db, key, c.now_ms, &mut body) else {
            continue;
        };
        if s.is_empty() || s.last_valid_id() <= from {
            continue;
        }
        served += 1;
        if body.proto == Proto::Resp2 {
            body.array(2);
        }
        body.bulk(key);
        let start = from.next().expect("an entry exists after it");
        reply_range(&mut body, s, start, StreamId::MAX, r.count, false);
    }
    reply_streams(out, served, &body.buf)
}

/// Rewrites a parked XREAD's `$` ids into the streams' current last ids, so that a retry after a
/// write returns only what was added after the client blocked. `None` when nothing changes.
pub fn resolve_dollar(db: &mut Db, a: &Args, now_ms: u64) -> Option<Vec<Vec<u8>>> {
    if !a.get(0).eq_ignore_ascii_case(b"xread") {
        return None;
    }
    let r = read_args(a, false).ok()?;
    let ids = r.keys_at + r.streams..a.len();
    if !ids.clone().any(|i| a.get(i) == b"$") {
        return None;
    }
    let mut words: Vec<Vec<u8>> = a.iter().map(<[u8]>::to_vec).collect();
    for i in ids {
        if a.get(i) == b"$" {
            let mut sink = Out::default();
            let last = match read::<Stream>(db, a.get(i - r.streams), now_ms, &mut sink) {
                Ok(Some(s)) => s.last_id,
                _ => StreamId::MIN,
            };
            words[i] = last.to_vec();
        }
    }
    Some(words)
}
