//! Argument parsing shared by the command families: SCAN-style cursors and options, key
//! counts (`numkeys`), LIMIT and COUNT, keywords, and building an argument vector.

use super::{Args, Span, err};
use crate::reply::Out;

/// The argument buffer and spans of `words`, to build an [`Args`] from.
pub(crate) fn buf_and_spans(words: &[&[u8]]) -> (Vec<u8>, Vec<Span>) {
    let (mut buf, mut spans) = (Vec::new(), Vec::with_capacity(words.len()));
    super::words_into(words, &mut buf, &mut spans);
    (buf, spans)
}

/// The arguments of SCAN, HSCAN and SSCAN: the cursor, then MATCH, COUNT and, where the command
/// has them, TYPE (SCAN) and NOVALUES (HSCAN).
pub(crate) struct ScanArgs<'a> {
    pub cursor: u64,
    pub pattern: Option<&'a [u8]>,
    pub count: usize,
    pub type_name: Option<&'a [u8]>,
    pub novalues: bool,
}

impl ScanArgs<'_> {
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern
            .is_none_or(|p| crate::glob::glob_match(p, item))
    }
}

/// Parses the cursor at `a[at]` and the options after it; `allow_type` and `allow_novalues` say
/// which of the command-specific options exist. Writes Redis's error and returns `None` on bad input.
pub(crate) fn scan_args<'a>(
    a: &Args<'a>,
    at: usize,
    allow_type: bool,
    allow_novalues: bool,
    out: &mut Out,
) -> Option<ScanArgs<'a>> {
    let Some(cursor) = crate::num::parse_cursor(a.get(at)) else {
        out.error(err::INVALID_CURSOR);
        return None;
    };
    let mut s = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
        type_name: None,
        novalues: false,
    };
    let mut i = at + 1;
    while i < a.len() {
        let opt = a.get(i);
        if allow_novalues && opt.eq_ignore_ascii_case(b"novalues") {
            s.novalues = true;
            i += 1;
            continue;
        }
        if i + 1 >= a.len() {
            out.error(err::SYNTAX);
            return None;
        }
        let val = a.get(i + 1);
        if opt.eq_ignore_ascii_case(b"match") {
            s.pattern = Some(val).filter(|p| *p != b"*");
        } else if opt.eq_ignore_ascii_case(b"count") {
            match crate::num::parse_i64(val) {
                Some(n) if n >= 1 => s.count = n.min(1 << 20) as usize,
                Some(_) => {
                    out.error(err::SYNTAX);
                    return None;
                }
                None => {
                    out.error(err::NOT_INT);
                    return None;
                }
            }
        } else if allow_type && opt.eq_ignore_ascii_case(b"type") {
            s.type_name = Some(val);
        } else {
            out.error(err::SYNTAX);
            return None;
        }
        i += 2;
    }
    Some(s)
}

/// Writes a SCAN-family reply: the next cursor and the items.
pub(crate) fn scan_reply(out: &mut Out, next: u64, items: &[&[u8]]) {
    out.array(2);
    out.bulk_int(next as i64);
    out.array(items.len());
    for it in items {
        out.bulk(it);
    }
}

/// The keys of SINTERCARD / ZINTERCARD (`numkeys key [key ...]`), with each one's errors:
/// Redis words them differently for the two (`zset`: ZINTERCARD).
pub(crate) fn card_keys(a: &Args, zset: bool, out: &mut Out) -> Option<std::ops::Range<usize>> {
    let n = crate::num::parse_i64(a.get(1));
    let keys = a.len() - 2;
    let numkeys = if zset {
        match n {
            None => {
                out.error(err::NOT_INT);
                return None;
            }
            Some(n) if n < 1 => {
                out.error("ERR at least 1 input key is needed for 'zintercard' command");
                return None;
            }
            Some(n) if n as u64 > keys as u64 => {
                out.error(err::SYNTAX);
                return None;
            }
            Some(n) => n as usize,
        }
    } else {
        match n {
            Some(n) if n > 0 && n as u64 <= keys as u64 => n as usize,
            Some(n) if n > 0 => {
                out.error("ERR Number of keys can't be greater than number of args");
                return None;
            }
            _ => {
                out.error("ERR numkeys should be greater than 0");
                return None;
            }
        }
    };
    Some(2..2 + numkeys)
}

/// `[LIMIT limit]` from `a[from..]` (SINTERCARD, ZINTERCARD): it may repeat, the last counts;
/// Redis's getPositiveLongFromObjectOrReply answers one message for both failures.
pub(crate) fn card_limit(a: &Args, from: usize, out: &mut Out) -> Option<usize> {
    let mut limit = 0usize;
    let mut i = from;
    while i < a.len() {
        if !(a.get(i).eq_ignore_ascii_case(b"limit") && i + 1 < a.len()) {
            out.error(err::SYNTAX);
            return None;
        }
        match crate::num::parse_i64(a.get(i + 1)) {
            Some(n) if n >= 0 => limit = n as usize,
            _ => {
                out.error("ERR LIMIT can't be negative");
                return None;
            }
        }
        i += 2;
    }
    Some(limit)
}

/// Parses `numkeys key [key ...] WHERE [COUNT count]` (LMPOP, ZMPOP), where WHERE is one of
/// `words` (LEFT/RIGHT, MIN/MAX): the key range, whether WHERE was the second word, and the count.
pub(crate) fn mpop_args(
    a: &Args,
    words: [&[u8]; 2],
    out: &mut Out,
) -> Option<(std::ops::Range<usize>, bool, usize)> {
    let numkeys = match crate::num::parse_i64(a.get(1)) {
        Some(n) if n > 0 => n as usize,
        _ => {
            out.error("ERR numkeys should be greater than 0");
            return None;
        }
    };
    if a.len() < 3 + numkeys {
        out.error(err::SYNTAX);
        return None;
    }
    let w = a.get(2 + numkeys);
    let second = if w.eq_ignore_ascii_case(words[1]) {
        true
    } else if w.eq_ignore_ascii_case(words[0]) {
        false
    } else {
        out.error(err::SYNTAX);
        return None;
    };
    let rest = 3 + numkeys;
    let mut count = 1usize;
    if a.len() == rest + 2 && a.get(rest).eq_ignore_ascii_case(b"count") {
        match crate::num::parse_i64(a.get(rest + 1)) {
            Some(n) if n > 0 => count = n as usize,
            _ => {
                out.error("ERR count should be greater than 0");
                return None;
            }
        }
    } else if a.len() != rest {
        out.error(err::SYNTAX);
        return None;
    }
    Some((2..2 + numkeys, second, count))
}

/// A keyword argument lowercased into `buf` (empty when longer than 16 bytes, so it matches no
/// keyword): option parsing without an allocation per argument.
#[inline]
pub(crate) fn keyword<'b>(s: &[u8], buf: &'b mut [u8; 16]) -> &'b [u8] {
    if s.len() > buf.len() {
        return &[];
    }
    for (d, c) in buf.iter_mut().zip(s) {
        *d = c.to_ascii_lowercase();
    }
    &buf[..s.len()]
}

/// `n` capped by a LIMIT (0 = no limit).
pub(crate) fn capped(n: usize, limit: usize) -> usize {
    if limit == 0 { n } else { n.min(limit) }
}

/// Parses argument `i` as an integer, writing Redis's error if it is not one.
pub(crate) fn int_arg(args: &Args, i: usize, out: &mut Out) -> Option<i64> {
    let v = crate::num::parse_i64(args.get(i));
    if v.is_none() {
        out.error(err::NOT_INT);
    }
    v
}
