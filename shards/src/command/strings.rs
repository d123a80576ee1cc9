//! Strings: GET SET (EX PX EXAT PXAT NX XX KEEPTTL GET) SETNX SETEX PSETEX GETSET GETDEL GETEX MGET
//! MSET MSETNX INCR DECR INCRBY DECRBY INCRBYFLOAT APPEND STRLEN GETRANGE SETRANGE.

use super::{Args, Ctx, err, int_arg};
use crate::bytes::SmallBytes;
use crate::db::{Db, Value};
use crate::num::parse_i64;
use crate::reply::Out;

/// Largest string a command may build (Redis's proto-max-bulk-len default).
pub const STRING_MAX_BYTES: usize = 512 * 1024 * 1024;

/// The string at `key`: `Ok(None)` if missing, `Err` (reply written) if another type.
pub(crate) fn string_of<'d>(
    db: &'d mut Db,
    key: &[u8],
    now: u64,
    out: &mut Out,
) -> Result<Option<&'d [u8]>, ()> {
    match db.get(key, now) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.as_slice())),
        Some(_) => {
            out.error(err::WRONGTYPE);
            Err(())
        }
    }
}

pub fn get(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(v) = string_of(db, a.get(1), c.now_ms, out) {
        match v {
            Some(s) => out.bulk(s),
            None => out.null(),
        }
    }
}

/// Expiry options shared by SET and GETEX.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ttl {
    Unchanged,
    At(u64),
    Keep,
    Persist,
}

/// Parses `EX s | PX ms | EXAT s | PXAT ms` at `a[i]`; returns the absolute time and the arguments
/// consumed, or writes an error.
fn parse_expire(
    a: &Args,
    i: usize,
    c: &Ctx,
    cmd: &str,
    out: &mut Out,
) -> Result<Option<(u64, usize)>, ()> {
    let opt = a.get(i);
    let (unit_ms, absolute) = if opt.eq_ignore_ascii_case(b"ex") {
        (1000, false)
    } else if opt.eq_ignore_ascii_case(b"px") {
        (1, false)
    } else if opt.eq_ignore_ascii_case(b"exat") {
        (1000, true)
    } else if opt.eq_ignore_ascii_case(b"pxat") {
        (1, true)
    } else {
        return Ok(None);
    };
    if i + 1 >= a.len() {
        out.error(err::SYNTAX);
        return Err(());
    }
    let Some(n) = parse_i64(a.get(i + 1)) else {
        out.error(err::NOT_INT);
        return Err(());
    };
    let at = if n <= 0 {
        None
    } else {
        let ms = (n as u64).checked_mul(unit_ms);
        if absolute {
            ms
        } else {
            ms.and_then(|ms| ms.checked_add(c.now_ms))
        }
    };
    match at {
        Some(at) if at <= i64::MAX as u64 => Ok(Some((at, 2))),
        _ => {
            err::invalid_expire(out, cmd);
            Err(())
        }
    }
}

pub fn set(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
    // As Redis: every option is checked first (an option may repeat, the last expiry of one
    // kind wins, two kinds conflict), then the expiry's number is read.
    let mut expire: Option<usize> = None;
    let mut i = 3;
    while i < a.len() {
        let opt = a.get(i);
        let is_expire = [b"ex" as &[u8], b"px", b"exat", b"pxat"]
            .iter()
            .any(|k| opt.eq_ignore_ascii_case(k));
        if opt.eq_ignore_ascii_case(b"nx") && !xx {
            nx = true;
        } else if opt.eq_ignore_ascii_case(b"xx") && !nx {
            xx = true;
        } else if opt.eq_ignore_ascii_case(b"get") {
            get = true;
        } else if opt.eq_ignore_ascii_case(b"keepttl") && expire.is_none() {
            keep = true;
        } else if is_expire
            && !keep
            && i + 1 < a.len()
            && expire.is_none_or(|e| a.get(e).eq_ignore_ascii_case(opt))
        {
            expire = Some(i);
            i += 1;
        } else {
            return out.error(err::SYNTAX);
        }
        i += 1;
    }
    let ttl = match expire {
        Some(e) => match parse_expire(&a, e, c, "set", out) {
            Ok(Some((at, _))) => Ttl::At(at),
            Ok(None) => return out.error(err::SYNTAX),
            Err(()) => return,
        },
        None if keep => Ttl::Keep,
        None => Ttl::Unchanged,
    };
    let key = a.get(1);
    let exists = if get {
        match string_of(db, key, c.now_ms, out) {
            Err(()) => return,
            Ok(Some(old)) => {
                out.bulk(old);
                true
            }
            Ok(None) => {
                out.null();
                false
            }
        }
    } else if nx || xx {
        db.exists(key, c.now_ms)
    } else {
        false
    };
    if (nx && exists) || (xx && !exists) {
        if !get {
            out.null();
        }
        return;
    }
    let expire = if let Ttl::At(at) = ttl {
        Some(at)
    } else {
        None
    };
    db.set_str(key, a.get(2), expire, ttl == Ttl::Keep);
    if !get {
        out.ok();
    }
}

pub fn setnx(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    if db.exists(key, c.now_ms) {
        return out.int(0);
    }
    db.set(key, Value::Str(SmallBytes::new(a.get(2))), None, false);
    out.int(1)
}

fn set_with_ttl(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, unit_ms: u64, name: &str) {
    let Some(n) = int_arg(&a, 2, out) else { return };
    let at = if n > 0 {
        (n as u64)
            .checked_mul(unit_ms)
            .and_then(|ms| ms.checked_add(c.now_ms))
    } else {
        None
    };
    match at {
        Some(at) if at <= i64::MAX as u64 => {
            db.set(
                a.get(1),
                Value::Str(SmallBytes::new(a.get(3))),
                Some(at),
                false,
            );
            out.ok()
        }
        _ => err::invalid_expire(out, name),
    }
}

pub fn setex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    set_with_ttl(db, a, c, out, 1000, "setex")
}

pub fn psetex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    set_with_ttl(db, a, c, out, 1, "psetex")
}

pub fn getset(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    match string_of(db, key, c.now_ms, out) {
        Err(()) => return,
        Ok(Some(old)) => out.bulk(old),
        Ok(None) => out.null(),
    }
    db.set(key, Value::Str(SmallBytes::new(a.get(2))), None, false);
}

pub fn getdel(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    match string_of(db, key, c.now_ms, out) {
        Err(()) => {}
        Ok(Some(old)) => {
            out.bulk(old);
            db.remove(key, c.now_ms);
        }
        Ok(None) => out.null(),
    }
}

pub fn getex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: the options' syntax first (an expiry may repeat, two kinds conflict, PERSIST
    // with an expiry is refused), then the key (nil if missing, WRONGTYPE), then the expiry's
    // number.
    let mut expire: Option<usize> = None;
    let mut persist = false;
    let mut i = 2;
    while i < a.len() {
        let opt = a.get(i);
        let is_expire = [b"ex" as &[u8], b"px", b"exat", b"pxat"]
            .iter()
            .any(|k| opt.eq_ignore_ascii_case(k));
        if opt.eq_ignore_ascii_case(b"persist") && expire.is_none() {
            persist = true;
        } else if is_expire
            && !persist
            && i + 1 < a.len()
            && expire.is_none_or(|e| a.get(e).eq_ignore_ascii_case(opt))
        {
            expire = Some(i);
            i += 1;
        } else {
            return out.error(err::SYNTAX);
        }
        i += 1;
    }
    let key = a.get(1);
    match string_of(db, key, c.now_ms, out) {
        Err(()) => return,
        Ok(None) => return out.null(),
        Ok(Some(_)) => {}
    }
    let ttl = match expire {
        Some(e) => match parse_expire(&a, e, c, "getex", out) {
            Ok(Some((at, _))) => Ttl::At(at),
            Ok(None) => return out.error(err::SYNTAX),
            Err(()) => return,
        },
        None if persist => Ttl::Persist,
        None => Ttl::Unchanged,
    };
    if let Some(Value::Str(v)) = db.peek(key) {
        out.bulk(v);
    }
    match ttl {
        Ttl::At(at) => db.set_expire(key, at),
        Ttl::Persist => {
            db.persist(key, c.now_ms);
        }
        Ttl::Unchanged | Ttl::Keep => {}
    }
}

pub fn mget(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    out.array(a.len() - 1);
    for key in a.iter().skip(1) {
        match db.get(key, c.now_ms) {
            Some(Value::Str(s)) => out.bulk(s),
            _ => out.null(),
        }
    }
}

pub fn mset(db: &mut Db, a: Args, _c: &mut Ctx, out: &mut Out) {
    if a.len().is_multiple_of(2) {
        return err::arity(out, "mset");
    }
    for i in (1..a.len()).step_by(2) {
        db.set(
            a.get(i),
            Value::Str(SmallBytes::new(a.get(i + 1))),
            None,
            false,
        );
    }
    out.ok()
}

pub fn msetnx(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if a.len().is_multiple_of(2) {
        return err::arity(out, "msetnx");
    }
    for i in (1..a.len()).step_by(2) {
        if db.exists(a.get(i), c.now_ms) {
            return out.int(0);
        }
    }
    for i in (1..a.len()).step_by(2) {
        db.set(
            a.get(i),
            Value::Str(SmallBytes::new(a.get(i + 1))),
            None,
            false,
        );
    }
    out.int(1)
}

/// Adds `by` to the integer at `key`, keeping its TTL.
fn incr_by(db: &mut Db, key: &[u8], by: i64, c: &Ctx, out: &mut Out) {
    let current = match db.get_mut(key, c.now_ms) {
        None => 0,
        Some(Value::Str(s)) => match parse_i64(s) {
            Some(n) => n,
            None => return out.error(err::NOT_INT),
        },
        Some(_) => return out.error(err::WRONGTYPE),
    };
    let Some(n) = current.checked_add(by) else {
        return out.error(err::OVERFLOW);
    };
    let mut tmp = [0u8; 20];
    let text = SmallBytes::new(crate::num::format_i64(n, &mut tmp));
    match db.get_mut(key, c.now_ms) {
        Some(v) => {
            *v = Value::Str(text);
            db.signal(key);
        }
        None => db.set(key, Value::Str(text), None, false),
    }
    out.int(n)
}

pub fn incr(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    incr_by(db, a.get(1), 1, c, out)
}

pub fn decr(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    incr_by(db, a.get(1), -1, c, out)
}

pub fn incrby(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Some(by) = int_arg(&a, 2, out) {
        incr_by(db, a.get(1), by, c, out)
    }
}

pub fn decrby(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Some(by) = int_arg(&a, 2, out) {
        match by.checked_neg() {
            Some(by) => incr_by(db, a.get(1), by, c, out),
            None => out.error("ERR decrement would overflow"),
        }
    }
}

pub fn incrbyfloat(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis: the key's type, then its value, then the increment, added in `long double`.
    let key = a.get(1);
    let text = match db.get(key, c.now_ms) {
        None => crate::longdouble::add_decimal(b"0", a.get(2)),
        Some(Value::Str(s)) => crate::longdouble::add_decimal(s, a.get(2)),
        Some(_) => return out.error(err::WRONGTYPE),
    };
    let text = match text {
        Ok(t) => t,
        Err((2, _)) => return out.error("ERR increment would produce NaN or Infinity"),
        Err(_) => return out.error(err::NOT_FLOAT),
    };
    db.set(
        key,
        Value::Str(SmallBytes::new(text.as_bytes())),
        None,
        true,
    );
    out.bulk(text.as_bytes())
}

pub fn append(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (key, tail) = (a.get(1), a.get(2));
    match db.get_mut(key, c.now_ms) {
        None => {
            db.set(key, Value::Str(SmallBytes::new(tail)), None, false);
            out.int(tail.len() as i64)
        }
        Some(Value::Str(s)) => {
            if s.len() + tail.len() > STRING_MAX_BYTES {
                return out.error(err::TOO_BIG);
            }
            let mut v = Vec::with_capacity(s.len() + tail.len());
            v.extend_from_slice(s);
            v.extend_from_slice(tail);
            let len = v.len();
            *s = SmallBytes::from_vec(v);
            db.signal(key);
            out.int(len as i64)
        }
        Some(_) => out.error(err::WRONGTYPE),
    }
}

pub fn strlen(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(v) = string_of(db, a.get(1), c.now_ms, out) {
        out.int(v.map_or(0, |s| s.len() as i64))
    }
}

/// Normalises a Redis `start..=end` pair with negative indexes over `len` items; `None` if empty.
pub fn range_of(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.min(len - 1);
    if len == 0 || s > e || s >= len {
        None
    } else {
        Some((s as usize, e as usize))
    }
}

/// Most cells of LCS's table, `(len(a) + 1) * (len(b) + 1)`: the dynamic program runs on the
/// shard thread, so two long strings must not hold it (Redis bounds the table by
/// proto-max-bulk-len, 512 MB, which would be seconds of work here).
const LCS_CELLS_MAX: u64 = 1 << 24;

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN], as Redis 7 computes and answers
/// it (the same table walk, so the same matches in the same order).
pub fn lcs(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let is_str = |v: Option<&Value>| matches!(v, None | Some(Value::Str(_)));
    if !is_str(db.get(a.get(1), c.now_ms)) || !is_str(db.get(a.get(2), c.now_ms)) {
        return out.error("ERR The specified keys must contain string values");
    }
    let (mut getlen, mut getidx, mut withmatchlen, mut minmatchlen) = (false, false, false, 0i64);
    let mut j = 3;
    while j < a.len() {
        let opt = a.get(j);
        if opt.eq_ignore_ascii_case(b"idx") {
            getidx = true;
        } else if opt.eq_ignore_ascii_case(b"len") {
            getlen = true;
        } else if opt.eq_ignore_ascii_case(b"withmatchlen") {
            withmatchlen = true;
        } else if opt.eq_ignore_ascii_case(b"minmatchlen") && j + 1 < a.len() {
            let Some(n) = parse_i64(a.get(j + 1)) else {
                return out.error(err::NOT_INT);
            };
            minmatchlen = n.max(0);
            j += 1;
        } else {
            return out.error(err::SYNTAX);
        }
        j += 1;
    }
    if getidx && getlen {
        return out.error("ERR If you want both the length and indexes, please just use IDX.");
    }
    let text = |db: &mut Db, k: &[u8]| match db.get(k, c.now_ms) {
        Some(Value::Str(s)) => s.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let (x, y) = (text(db, a.get(1)), text(db, a.get(2)));
    let (alen, blen) = (x.len(), y.len());
    if (alen as u64 + 1) * (blen as u64 + 1) > LCS_CELLS_MAX {
        return out.error(&format!(
            "ERR strings too long for LCS here: (len1 + 1) * (len2 + 1) is at most {LCS_CELLS_MAX}"
        ));
    }
    let w = blen + 1;
    let mut t = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for k in 1..=blen {
            t[i * w + k] = if x[i - 1] == y[k - 1] {
                t[(i - 1) * w + k - 1] + 1
            } else {
                t[(i - 1) * w + k].max(t[i * w + k - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    let mut result = vec![0u8; total as usize];
    let mut matches: Vec<[u32; 5]> = Vec::new();
    let (mut i, mut k, mut idx) = (alen, blen, total as usize);
    // The current range: `a_start == alen` means none.
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0usize, 0usize, 0usize);
    let compute = getidx || !getlen;
    while compute && i > 0 && k > 0 {
        let mut emit = false;
        if x[i - 1] == y[k - 1] {
            result[idx - 1] = x[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, k - 1, k - 1);
            } else if a_start == i && b_start == k {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            k -= 1;
        } else {
            if t[(i - 1) * w + k] > t[i * w + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            let len = a_end - a_start + 1;
            if minmatchlen == 0 || len as i64 >= minmatchlen {
                matches.push([a_start, a_end, b_start, b_end, len].map(|v| v as u32));
            }
            a_start = alen;
        }
    }
    if getidx {
        out.map(2);
        out.bulk(b"matches");
        out.array(matches.len());
        for m in &matches {
            out.array(2 + withmatchlen as usize);
            out.array(2);
            out.int(m[0] as i64);
            out.int(m[1] as i64);
            out.array(2);
            out.int(m[2] as i64);
            out.int(m[3] as i64);
            if withmatchlen {
                out.int(m[4] as i64);
            }
        }
        out.bulk(b"len");
        out.int(total as i64);
    } else if getlen {
        out.int(total as i64);
    } else {
        out.bulk(&result);
    }
}

/// A range as GETRANGE, BITCOUNT and BITPOS read it (Redis 7): negative ends count from the end,
/// and both ends are clamped into `0..len` (so `GETRANGE s -10 -10` on 4 bytes is the first
/// byte, where LRANGE's `range_of` gives nothing).
pub fn byte_range_of(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let s = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    };
    let e = if end < 0 {
        len.saturating_add(end)
    } else {
        end
    };
    let (s, e) = (s.max(0), e.max(0).min(len - 1));
    (len > 0 && s <= e).then_some((s as usize, e as usize))
}

pub fn getrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(start) = int_arg(&a, 2, out) else {
        return;
    };
    let Some(end) = int_arg(&a, 3, out) else {
        return;
    };
    if let Ok(v) = string_of(db, a.get(1), c.now_ms, out) {
        let s = v.unwrap_or(b"");
        // Redis: a negative start past a negative end is empty, as is any range on "".
        if start < 0 && end < 0 && start > end {
            return out.bulk(b"");
        }
        match byte_range_of(start, end, s.len()) {
            Some((from, to)) => out.bulk(&s[from..=to]),
            None => out.bulk(b""),
        }
    }
}

pub fn setrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(offset) = int_arg(&a, 2, out) else {
        return;
    };
    if offset < 0 {
        return out.error("ERR offset is out of range");
    }
    let (key, patch) = (a.get(1), a.get(3));
    let offset = offset as usize;
    let current: Option<Vec<u8>> = match db.get(key, c.now_ms) {
        None => None,
        Some(Value::Str(s)) => Some(s.to_vec()),
        Some(_) => return out.error(err::WRONGTYPE),
    };
    if patch.is_empty() {
        return out.int(current.map_or(0, |v| v.len() as i64));
    }
    if offset.saturating_add(patch.len()) > STRING_MAX_BYTES {
        return out.error(err::TOO_BIG);
    }
    let mut v = current.unwrap_or_default();
    if v.len() < offset + patch.len() {
        v.resize(offset + patch.len(), 0);
    }
    v[offset..offset + patch.len()].copy_from_slice(patch);
    let len = v.len();
    db.set(key, Value::Str(SmallBytes::from_vec(v)), None, true);
    out.int(len as i64)
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    /// Regression (issue 15): Redis 7.0's answers for ranges past the start, repeated SET
    /// options, huge random counts, MEMORY USAGE SAMPLES and ZADD's score syntax.
    #[test]
    fn edge_arguments_answer_as_redis_does() {
        let mut h = Harness::new();
        h.run("SET s abcd");
        assert_eq!(h.run("GETRANGE s -10 -10"), bulk("a"));
        assert_eq!(h.run("GETRANGE s -1 -3"), bulk(""));
        assert_eq!(h.run("SUBSTR s 1 2"), bulk("bc"));
        // LCS, as redis-server 7.0 answers these (checked side by side).
        h.run("MSET {k}1 ohmytext {k}2 mynewtext");
        assert_eq!(h.run("LCS {k}1 {k}2"), bulk("mytext"));
        assert_eq!(h.run("LCS {k}1 {k}2 LEN"), int(6));
        assert_eq!(
            h.run("LCS {k}1 {k}2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
            "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
             $3\r\nlen\r\n:6\r\n"
        );
        assert_eq!(
            h.run("LCS {k}1 {k}2 IDX LEN"),
            error("ERR If you want both the length and indexes, please just use IDX.")
        );
        assert!(
            h.run("MEMORY HELP")
                .starts_with("*14\r\n+MEMORY <subcommand>")
        );
        assert!(h.run("XGROUP HELP").contains("+XGROUP <subcommand>"));
        assert!(
            h.run("XINFO BAD")
                .starts_with("-ERR unknown subcommand 'BAD'")
        );
        assert_eq!(h.run("BITCOUNT s -10 -10"), int(3));
        assert_eq!(h.run("BITPOS s 1 -10 -10"), int(1));
        assert_eq!(h.run("SET k v EX 50 EX 1000"), "+OK\r\n");
        assert_eq!(h.run("TTL k"), int(1000));
        assert_eq!(h.run("SET k v KEEPTTL KEEPTTL"), "+OK\r\n");
        assert_eq!(h.run("TTL k"), int(1000));
        assert_eq!(h.run("SET k v EX 5 PX 100"), error("ERR syntax error"));
        assert_eq!(h.run("SET k v KEEPTTL EX 5"), error("ERR syntax error"));
        assert_eq!(
            h.run("SET k v EX abc"),
            error("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("MEMORY USAGE s SAMPLES -1"),
            error("ERR syntax error")
        );
        h.run("SADD st a b c");
        assert_eq!(h.run("SCARD st"), int(3));
        assert!(
            h.run("SRANDMEMBER st 9223372036854775807")
                .starts_with("*3\r\n")
        );
        assert!(
            h.run("SRANDMEMBER st -9223372036854775808")
                .starts_with("-ERR value is out of range, value must between")
        );
        assert!(h.run("SPOP st 9223372036854775807").starts_with("*3\r\n"));
        assert_eq!(
            h.run("ZADD z 1e309 a"),
            error("ERR value is not a valid float")
        );
        assert_eq!(
            h.run("ZADD z 1e-400 a"),
            error("ERR value is not a valid float")
        );
        assert_eq!(h.run("ZADD z 0x10 b -0 c inf d"), int(3));
        assert_eq!(h.run("ZSCORE z b"), bulk("16"));
        assert_eq!(h.run("ZSCORE z c"), bulk("0"));
    }

    #[test]
    fn set_get_and_options() {
        let mut h = Harness::new();
        assert_eq!(h.run("GET k"), NIL);
        assert_eq!(h.run("SET k v"), OK);
        assert_eq!(h.run("GET k"), bulk("v"));
        assert_eq!(h.run("SET k w NX"), NIL);
        assert_eq!(h.run("SET k w XX GET"), bulk("v"));
        assert_eq!(h.run("SET missing w XX"), NIL);
        assert_eq!(h.run("SET k v NX XX"), error("ERR syntax error"));
        assert_eq!(
            h.run("SET k v EX 0"),
            error("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            h.run("SET k v EX abc"),
            error("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("SET k v EX 10 PX 10"), error("ERR syntax error"));
        assert_eq!(
            h.run("SET k v EX 9223372036854775807"),
            error("ERR invalid expire time in 'set' command")
        );
        assert_eq!(h.run("SET k v EX 10"), OK);
        assert_eq!(h.run("TTL k"), int(10));
        assert_eq!(h.run("SET k v2 KEEPTTL"), OK);
        assert_eq!(h.run("TTL k"), int(10));
        assert_eq!(h.run("SET k v3"), OK);
        assert_eq!(h.run("TTL k"), int(-1));
        assert_eq!(h.run("HSET hk f v"), int(1));
        assert_eq!(
            h.run("GET hk"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("SET hk v GET"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(h.run("TYPE hk"), "+hash\r\n");
        assert_eq!(h.run("SET hk v"), OK);
        assert_eq!(h.run("TYPE hk"), "+string\r\n");
    }

    #[test]
    fn expiry_follows_the_injected_clock() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET k v PX 100"), OK);
        h.now_ms += 99;
        assert_eq!(h.run("GET k"), bulk("v"));
        h.now_ms += 1;
        assert_eq!(h.run("GET k"), NIL);
        assert_eq!(h.run("EXISTS k"), int(0));
        let at = h.now_ms + 5000;
        assert_eq!(h.run(&format!("SET k v PXAT {at}")), OK);
        assert_eq!(h.run("PEXPIRETIME k"), int(at as i64));
        assert_eq!(h.run("GETEX k PERSIST"), bulk("v"));
        assert_eq!(h.run("TTL k"), int(-1));
        assert_eq!(h.run("GETEX k EX 5"), bulk("v"));
        assert_eq!(h.run("PTTL k"), int(5000));
        assert_eq!(
            h.run("SETEX k 0 v"),
            error("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(h.run("PSETEX k 50 v"), OK);
        assert_eq!(h.run("PTTL k"), int(50));
    }

    #[test]
    fn counters_keep_ttl_and_reject_overflow() {
        let mut h = Harness::new();
        assert_eq!(h.run("INCR n"), int(1));
        assert_eq!(h.run("INCRBY n 10"), int(11));
        assert_eq!(h.run("DECRBY n 20"), int(-9));
        assert_eq!(h.run("DECR n"), int(-10));
        assert_eq!(h.run("EXPIRE n 100"), int(1));
        assert_eq!(h.run("INCR n"), int(-9));
        assert_eq!(h.run("TTL n"), int(100));
        assert_eq!(h.run("SET n 9223372036854775807"), OK);
        assert_eq!(
            h.run("INCR n"),
            error("ERR increment or decrement would overflow")
        );
        assert_eq!(h.run("GET n"), bulk("9223372036854775807"));
        assert_eq!(h.run("SET s abc"), OK);
        assert_eq!(
            h.run("INCR s"),
            error("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("INCRBY s x"),
            error("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("SET f 10.50"), OK);
        assert_eq!(h.run("INCRBYFLOAT f 0.1"), bulk("10.6"));
        assert_eq!(h.run("INCRBYFLOAT f -5.1"), bulk("5.5"));
        assert_eq!(
            h.run("INCRBYFLOAT f abc"),
            error("ERR value is not a valid float")
        );
        assert_eq!(
            h.run("INCRBYFLOAT f inf"),
            error("ERR increment would produce NaN or Infinity")
        );
    }

    #[test]
    fn multi_key_strings() {
        let mut h = Harness::new();
        assert_eq!(h.run("MSET a 1 b 2"), OK);
        assert_eq!(
            h.run("MGET a b c"),
            format!("*3\r\n{}{}{}", bulk("1"), bulk("2"), NIL)
        );
        assert_eq!(
            h.run("MSET a 1 b"),
            error("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(h.run("MSETNX a 5 z 6"), int(0));
        assert_eq!(h.run("EXISTS z"), int(0));
        assert_eq!(h.run("MSETNX y 5 z 6"), int(1));
        assert_eq!(h.run("GETSET a 9"), bulk("1"));
        assert_eq!(h.run("GETDEL a"), bulk("9"));
        assert_eq!(h.run("GETDEL a"), NIL);
        assert_eq!(h.run("SETNX a 1"), int(1));
        assert_eq!(h.run("SETNX a 2"), int(0));
    }

    #[test]
    fn ranges_and_append() {
        let mut h = Harness::new();
        assert_eq!(h.run("APPEND s Hello"), int(5));
        assert_eq!(h.run("APPEND s World"), int(10));
        assert_eq!(h.run("STRLEN s"), int(10));
        assert_eq!(h.run("GETRANGE s 0 3"), bulk("Hell"));
        assert_eq!(h.run("GETRANGE s -3 -1"), bulk("rld"));
        assert_eq!(h.run("GETRANGE s 0 -1"), bulk("HelloWorld"));
        assert_eq!(h.run("GETRANGE s 10 100"), bulk(""));
        assert_eq!(h.run("GETRANGE s -1 -5"), bulk(""));
        assert_eq!(h.run("SETRANGE s 6 Redis"), int(11));
        assert_eq!(h.run("GET s"), bulk("HelloWRedis"));
        assert_eq!(h.run("SETRANGE z 2 ab"), int(4));
        assert_eq!(h.run("GET z"), "$4\r\n\0\0ab\r\n");
        assert_eq!(
            h.run("SETRANGE z -1 ab"),
            error("ERR offset is out of range")
        );
        assert_eq!(
            h.run("SETRANGE z 536870911 ab"),
            error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
        );
        assert_eq!(h.run("GETRANGE nokey 0 -1"), bulk(""));
    }
}
