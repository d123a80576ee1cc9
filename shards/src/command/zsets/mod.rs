//! Sorted sets: ZADD (NX XX GT LT CH INCR) ZINCRBY ZREM ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANK
//! ZREVRANK (WITHSCORE) ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES) ZREVRANGE ZRANGEBYSCORE
//! ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZPOPMIN ZPOPMAX ZREMRANGEBYRANK ZREMRANGEBYSCORE
//! ZREMRANGEBYLEX ZRANDMEMBER ZSCAN.
//!
//! The type is in `zset.rs`: packed while small, then a `Dict` from member to score plus an
//! [`crate::ostree::OrderIndex`] (O(1) score lookups, O(log n) rank, select and range seeks).

use super::{Args, Ctx, create, drop_if_empty, err, int_arg, modify, read};
use crate::db::{Db, Value};
use crate::num::{parse_f64, parse_i64};
use crate::reply::{Out, Proto};
pub use crate::types::ZSet;

/// One end of a score range: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

fn score_bound(s: &[u8]) -> Option<ScoreBound> {
    let (exclusive, rest) = match s.first() {
        Some(b'(') => (true, &s[1..]),
        _ => (false, s),
    };
    Some(ScoreBound {
        value: strtod_whole(rest)?,
        exclusive,
    })
}

/// A score bound as Redis's `zslParseRange` reads it with `strtod`: leading white space skipped,
/// nothing at all read as 0 (so `(` alone is "above 0"), hexadecimal integers, out-of-range
/// values as infinities; the whole string must be used, and NaN is refused.
fn strtod_whole(s: &[u8]) -> Option<f64> {
    let s = &s[s
        .iter()
        .take_while(|b| b" \t\n\x0b\x0c\r".contains(b))
        .count()..];
    if s.is_empty() {
        return Some(0.0);
    }
    hex_double(s).or_else(|| parse_f64(s))
}

/// A hexadecimal integer with an optional sign (`0x10`, `-0X1f`), as `strtod` reads one; `None`
/// for anything else.
fn hex_double(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.len() <= 2 || !digits[..2].eq_ignore_ascii_case(b"0x") {
        return None;
    }
    let hex = &digits[2..];
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let v = hex.iter().fold(0f64, |v, &d| {
        v * 16.0 + (d as char).to_digit(16).expect("checked") as f64
    });
    Some(if neg { -v } else { v })
}

/// The score kept for `v`: `-0` is kept as 0 (Redis's small sorted sets hold it so; its large
/// ones keep `-0`, a difference only ZSCORE of a zero score shows).
fn stored(v: f64) -> f64 {
    if v == 0.0 { 0.0 } else { v }
}

/// A score as ZADD and ZINCRBY read it (Redis's `getDoubleFromObject`, `strtod` on the whole
/// string): hexadecimal accepted; a finite number too large (`1e309`) or so small it reads as 0
/// (`1e-400`) refused, as is NaN; `-0` stays `-0` (see [`stored`]).
pub(crate) fn score_arg(s: &[u8]) -> Option<f64> {
    let v = match hex_double(s) {
        Some(v) => v,
        None => {
            let v = parse_f64(s)?;
            let lower = s.to_ascii_lowercase();
            let mantissa = lower.split(|&b| b == b'e').next().unwrap_or(&[]);
            if v.is_infinite() && !lower.ends_with(b"inf") && !lower.ends_with(b"infinity") {
                return None;
            }
            if v == 0.0 && mantissa.iter().any(|b| (b'1'..=b'9').contains(b)) {
                return None;
            }
            v
        }
    };
    Some(v)
}

/// One end of a lexicographic range: `-`, `+`, `[x` (inclusive), `(x` (exclusive).
#[derive(Clone, Copy)]
enum LexBound<'a> {
    Min,
    Max,
    Incl(&'a [u8]),
    Excl(&'a [u8]),
}

fn lex_bound(s: &[u8]) -> Option<LexBound<'_>> {
    match s.first()? {
        b'-' if s.len() == 1 => Some(LexBound::Min),
        b'+' if s.len() == 1 => Some(LexBound::Max),
        b'[' => Some(LexBound::Incl(&s[1..])),
        b'(' => Some(LexBound::Excl(&s[1..])),
        _ => None,
    }
}

/// How a range is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

const NOT_FLOAT_RANGE: &str = "ERR min or max is not a float";
const NOT_LEX_RANGE: &str = "ERR min or max not valid string range item";

/// The ascending rank interval `[from, to)` selected by `min`/`max` (already swapped for REV
/// forms), or an error message.
fn interval(
    z: &ZSet,
    by: By,
    min: &[u8],
    max: &[u8],
    rev: bool,
) -> Result<(usize, usize), &'static str> {
    let len = z.len();
    match by {
        By::Rank => {
            let (Some(start), Some(stop)) = (parse_i64(min), parse_i64(max)) else {
                return Err(err::NOT_INT);
            };
            Ok(match super::strings::range_of(start, stop, len) {
                None => (0, 0),
                Some((a, b)) if rev => (len - 1 - b, len - a),
                Some((a, b)) => (a, b + 1),
            })
        }
        By::Score => {
            let (Some(lo), Some(hi)) = (score_bound(min), score_bound(max)) else {
                return Err(NOT_FLOAT_RANGE);
            };
            let from = z.position(|s, _| {
                if lo.exclusive {
                    s <= lo.value
                } else {
                    s < lo.value
                }
            });
            let to = z.position(|s, _| {
                if hi.exclusive {
                    s < hi.value
                } else {
                    s <= hi.value
                }
            });
            Ok((from, to.max(from)))
        }
        By::Lex => {
            let (Some(lo), Some(hi)) = (lex_bound(min), lex_bound(max)) else {
                return Err(NOT_LEX_RANGE);
            };
            let below = |m: &[u8], b: LexBound, upper: bool| match b {
                LexBound::Min => false,
                LexBound::Max => true,
                LexBound::Incl(x) => {
                    if upper {
                        m <= x
                    } else {
                        m < x
                    }
                }
                LexBound::Excl(x) => {
                    if upper {
                        m < x
                    } else {
                        m <= x
                    }
                }
            };
            let from = z.position(|_, m| below(m, lo, false));
            let to = z.position(|_, m| below(m, hi, true));
            Ok((from, to.max(from)))
        }
    }
}

/// Applies `LIMIT offset count` to `[from, to)` walked ascending, or descending with `rev`.
fn limit(from: usize, to: usize, rev: bool, offset: i64, count: i64) -> (usize, usize) {
    let n = to - from;
    if offset < 0 || offset as usize >= n {
        return (from, from);
    }
    let take = if count < 0 {
        n - offset as usize
    } else {
        (count as usize).min(n - offset as usize)
    };
    if rev {
        (to - offset as usize - take, to - offset as usize)
    } else {
        (from + offset as usize, from + offset as usize + take)
    }
}

/// Writes entries in the order given, with or without scores.
fn write_entries(out: &mut Out, entries: &[(f64, Vec<u8>)], withscores: bool) {
    let nested = withscores && out.proto == Proto::Resp3;
    out.array(if withscores && !nested {
        entries.len() * 2
    } else {
        entries.len()
    });
    for (s, m) in entries {
        if nested {
            out.array(2);
        }
        out.bulk(m);
        if withscores {
            out.score(*s);
        }
    }
}

/// The entries a ZRANGE form selects, in reply order. `start`/`stop` are in the command's own
/// order (the REV forms give the high end first).
fn select(
    z: &ZSet,
    by: By,
    rev: bool,
    start: &[u8],
    stop: &[u8],
    lim: Option<(i64, i64)>,
) -> Result<Vec<(f64, Vec<u8>)>, &'static str> {
    let (min, max) = if rev && by != By::Rank {
        (stop, start)
    } else {
        (start, stop)
    };
    let (from, to) = interval(z, by, min, max, rev)?;
    let (from, to) = match lim {
        Some((o, n)) => limit(from, to, rev, o, n),
        None => (from, to),
    };
    let mut entries = z.entries(from, to);
    if rev {
        entries.reverse();
    }
    Ok(entries)
}

/// The body of every ZRANGE form.
#[allow(clippy::too_many_arguments)]
fn range(
    db: &mut Db,
    key: &[u8],
    by: By,
    rev: bool,
    start: &[u8],
    stop: &[u8],
    lim: Option<(i64, i64)>,
    withscores: bool,
    c: &Ctx,
    out: &mut Out,
) {
    // Redis parses the range before it looks the key up (a bad range on a key of another
    // type is a range error, not WRONGTYPE).
    if let Err(e) = interval(&ZSet::default(), by, start, stop, false) {
        return out.error(e);
    }
    let Ok(z) = read::<ZSet>(db, key, c.now_ms, out) else {
        return;
    };
    let empty = ZSet::default();
    match select(z.unwrap_or(&empty), by, rev, start, stop, lim) {
        Ok(entries) => write_entries(out, &entries, withscores),
        Err(e) => out.error(e),
    }
}

/// The `offset count` after a LIMIT at `a[i]`; writes the error if they are not integers.
fn limit_args(a: &Args, i: usize, out: &mut Out) -> Option<(i64, i64)> {
    match (parse_i64(a.get(i + 1)), parse_i64(a.get(i + 2))) {
        (Some(o), Some(n)) => Some((o, n)),
        _ => {
            out.error(err::NOT_INT);
            None
        }
    }
}

/// The options of a ZRANGE: mode, REV, LIMIT offset count, WITHSCORES.
type RangeOpts = (By, bool, Option<(i64, i64)>, bool);

/// Parses `[BYSCORE|BYLEX] [REV] [LIMIT o c] [WITHSCORES]` from `a[i..]` as ZRANGE accepts them
/// (`store`: ZRANGESTORE, where WITHSCORES is a syntax error where it stands).
fn parse_range_opts(a: &Args, mut i: usize, store: bool, out: &mut Out) -> Option<RangeOpts> {
    let (mut by, mut rev, mut lim, mut withscores) = (By::Rank, false, None, false);
    // As Redis: BYSCORE/BYLEX and REV are taken once (a second one is a syntax error).
    let mut by_set = false;
    while i < a.len() {
        let opt = a.get(i);
        if opt.eq_ignore_ascii_case(b"byscore") && !by_set {
            (by, by_set) = (By::Score, true);
        } else if opt.eq_ignore_ascii_case(b"bylex") && !by_set {
            (by, by_set) = (By::Lex, true);
        } else if opt.eq_ignore_ascii_case(b"rev") && !rev {
            rev = true;
        } else if opt.eq_ignore_ascii_case(b"withscores") && !store {
            withscores = true;
        } else if opt.eq_ignore_ascii_case(b"limit") && i + 2 < a.len() {
            lim = Some(limit_args(a, i, out)?);
            i += 2;
        } else {
            out.error(err::SYNTAX);
            return None;
        }
        i += 1;
    }
    let lim = conflicts(by, lim, withscores, out)?;
    Some((by, rev, lim, withscores))
}

pub fn zrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Some((by, rev, lim, ws)) = parse_range_opts(&a, 4, false, out) {
        range(db, a.get(1), by, rev, a.get(2), a.get(3), lim, ws, c, out)
    }
}

/// ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX: ZRANGE with a fixed
/// mode; their options are a subset of ZRANGE's.
fn legacy_range(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, by: By, rev: bool) {
    let Some((lim, ws)) = parse_legacy_opts(&a, by, out) else {
        return;
    };
    range(db, a.get(1), by, rev, a.get(2), a.get(3), lim, ws, c, out)
}

/// The options of the legacy range commands: WITHSCORES (not for BYLEX) and LIMIT (not for ranks).
fn parse_legacy_opts(a: &Args, by: By, out: &mut Out) -> Option<(Option<(i64, i64)>, bool)> {
    let mut i = 4;
    let (mut lim, mut ws) = (None, false);
    while i < a.len() {
        let opt = a.get(i);
        if opt.eq_ignore_ascii_case(b"withscores") {
            ws = true;
        } else if opt.eq_ignore_ascii_case(b"limit") && i + 2 < a.len() {
            lim = Some(limit_args(a, i, out)?);
            i += 2;
        } else {
            out.error(err::SYNTAX);
            return None;
        }
        i += 1;
    }
    // Conflicts are checked once every option parsed, as Redis does.
    let lim = conflicts(by, lim, ws, out)?;
    Some((lim, ws))
}

/// Redis's checks of conflicting range options, after parsing them all: LIMIT only with scores
/// or lex ranges (a count of -1 is "no limit", accepted and ignored for ranks), WITHSCORES not
/// with a lex range. The LIMIT to apply.
fn conflicts(
    by: By,
    lim: Option<(i64, i64)>,
    withscores: bool,
    out: &mut Out,
) -> Option<Option<(i64, i64)>> {
    if by == By::Rank && lim.is_some_and(|(_, n)| n != -1) {
        out.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        return None;
    }
    if withscores && by == By::Lex {
        out.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return None;
    }
    Some(if by == By::Rank { None } else { lim })
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
pub fn zrangestore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some((by, rev, lim, _)) = parse_range_opts(&a, 5, true, out) else {
        return;
    };
    // The range first, as Redis (see `range`).
    if let Err(e) = interval(&ZSet::default(), by, a.get(3), a.get(4), false) {
        return out.error(e);
    }
    let Ok(z) = read::<ZSet>(db, a.get(2), c.now_ms, out) else {
        return;
    };
    let empty = ZSet::default();
    let entries = match select(z.unwrap_or(&empty), by, rev, a.get(3), a.get(4), lim) {
        Ok(e) => e,
        Err(e) => return out.error(e),
    };
    store(db, a.get(1), entries, c, out)
}

/// Replaces `dst` with a sorted set of `entries` (or deletes it when empty); replies the size.
pub(crate) fn store(db: &mut Db, dst: &[u8], entries: Vec<(f64, Vec<u8>)>, c: &Ctx, out: &mut Out) {
    if entries.is_empty() {
        db.remove(dst, c.now_ms);
        return out.int(0);
    }
    let lim = db.tunables.zset_limits();
    let mut z = ZSet::default();
    for (s, m) in &entries {
        z.set(m, *s, lim);
    }
    let n = z.len();
    db.set(dst, Value::ZSet(Box::new(z)), None, false);
    out.int(n as i64)
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]
pub fn zmpop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some((keys, max, count)) = super::mpop_args(&a, [b"min", b"max"], out) else {
        return;
    };
    for k in keys {
        let key = a.get(k);
        let Ok(z) = modify::<ZSet>(db, key, c.now_ms, out) else {
            return;
        };
        let Some(z) = z.filter(|z| !z.is_empty()) else {
            continue;
        };
        let n = count.min(z.len());
        let (from, to) = if max { (z.len() - n, z.len()) } else { (0, n) };
        let mut entries = z.entries(from, to);
        if max {
            entries.reverse();
        }
        for (_, m) in &entries {
            z.remove(m);
        }
        out.array(2);
        out.bulk(key);
        out.array(entries.len());
        for (s, m) in &entries {
            out.array(2);
            out.bulk(m);
            out.score(*s);
        }
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
        return;
    }
    out.null_array()
}

pub fn zrevrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    legacy_range(db, a, c, out, By::Rank, true)
}

pub fn zrangebyscore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    legacy_range(db, a, c, out, By::Score, false)
}

pub fn zrevrangebyscore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    legacy_range(db, a, c, out, By::Score, true)
}

pub fn zrangebylex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    legacy_range(db, a, c, out, By::Lex, false)
}

pub fn zrevrangebylex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    legacy_range(db, a, c, out, By::Lex, true)
}

pub fn zadd(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        let mut kw = [0u8; 16];
        match super::keyword(a.get(i), &mut kw) {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            b"ch" => ch = true,
            b"incr" => incr = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = a.len() - i;
    if pairs == 0 || !pairs.is_multiple_of(2) {
        return out.error(err::SYNTAX);
    }
    if nx && xx {
        return out.error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return out.error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs != 2 {
        return out.error("ERR INCR option supports a single increment-element pair");
    }
    // Parse every score before changing anything: a bad one leaves the set untouched.
    let mut scores = Vec::with_capacity(pairs / 2);
    for j in (i..a.len()).step_by(2) {
        match score_arg(a.get(j)) {
            Some(s) => scores.push(s),
            None => return out.error(err::NOT_FLOAT),
        }
    }
    let key = a.get(1);
    let lim = db.tunables.zset_limits();
    let Some(z) = create::<ZSet>(db, key, c.now_ms, out) else {
        return;
    };
    let (mut added, mut changed) = (0, 0);
    let mut incr_result = None;
    for (n, j) in (i..a.len()).step_by(2).enumerate() {
        let member = a.get(j + 1);
        let old = z.score(member);
        let mut new = scores[n];
        if incr {
            // A new member's score is the increment itself: `-0` answers `-0`, as in Redis.
            new = old.map_or(new, |o| new + o);
            if new.is_nan() {
                drop_if_empty(db, key, c.now_ms);
                return out.error("ERR resulting score is not a number (NaN)");
            }
        }
        let allowed = match old {
            None => !xx,
            Some(o) => !(nx || (gt && new <= o) || (lt && new >= o)),
        };
        if !allowed {
            continue;
        }
        match old {
            None => added += 1,
            Some(o) if o != new => changed += 1,
            Some(_) => {}
        }
        z.set(member, stored(new), lim);
        incr_result = Some(new);
    }
    drop_if_empty(db, key, c.now_ms);
    if incr {
        return match incr_result {
            Some(s) => out.score(s),
            None => out.null(),
        };
    }
    out.int(if ch { added + changed } else { added })
}

pub fn zincrby(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // Redis runs ZINCRBY through ZADD's parser: a flag word in the increment's place is taken
    // as a flag, and what is left is not a score-member pair.
    let flag = [b"nx" as &[u8], b"xx", b"ch", b"incr", b"gt", b"lt"]
        .iter()
        .any(|f| a.get(2).eq_ignore_ascii_case(f));
    if flag {
        return out.error(err::SYNTAX);
    }
    let Some(by) = score_arg(a.get(2)) else {
        return out.error(err::NOT_FLOAT);
    };
    let lim = db.tunables.zset_limits();
    let Some(z) = create::<ZSet>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let new = z.score(a.get(3)).map_or(by, |o| o + by);
    if new.is_nan() {
        drop_if_empty(db, a.get(1), c.now_ms);
        return out.error("ERR resulting score is not a number (NaN)");
    }
    z.set(a.get(3), stored(new), lim);
    out.score(new)
}

pub fn zrem(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let key = a.get(1);
    let Ok(z) = modify::<ZSet>(db, key, c.now_ms, out) else {
        return;
    };
    let removed = z.map_or(0, |z| a.iter().skip(2).filter(|m| z.remove(m)).count());
    if removed > 0 {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
    out.int(removed as i64)
}

pub fn zscore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) {
        match z.and_then(|z| z.score(a.get(2))) {
            Some(s) => out.score(s),
            None => out.null(),
        }
    }
}

pub fn zmscore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) {
        out.array(a.len() - 2);
        for m in a.iter().skip(2) {
            match z.and_then(|z| z.score(m)) {
                Some(s) => out.score(s),
                None => out.null(),
            }
        }
    }
}

pub fn zcard(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    if let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) {
        out.int(z.map_or(0, |z| z.len() as i64))
    }
}

fn count_by(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, by: By) {
    // The range first, as Redis (see `range`).
    if let Err(e) = interval(&ZSet::default(), by, a.get(2), a.get(3), false) {
        return out.error(e);
    }
    let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let empty = ZSet::default();
    match interval(z.unwrap_or(&empty), by, a.get(2), a.get(3), false) {
        Ok((from, to)) => out.int((to - from) as i64),
        Err(e) => out.error(e),
    }
}

pub fn zcount(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    count_by(db, a, c, out, By::Score)
}

pub fn zlexcount(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    count_by(db, a, c, out, By::Lex)
}

fn rank_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, rev: bool) {
    let withscore = match a.len() {
        3 => false,
        4 if a.get(3).eq_ignore_ascii_case(b"withscore") => true,
        _ => return out.error(err::SYNTAX),
    };
    let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let found = z.and_then(|z| {
        z.rank(a.get(2))
            .map(|r| (z.len(), r, z.score(a.get(2)).unwrap_or(0.0)))
    });
    match found {
        None if withscore => out.null_array(),
        None => out.null(),
        Some((len, r, s)) => {
            let r = if rev { len - 1 - r } else { r };
            if withscore {
                out.array(2);
                out.int(r as i64);
                out.score(s);
            } else {
                out.int(r as i64)
            }
        }
    }
}

pub fn zrank(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    rank_generic(db, a, c, out, false)
}

pub fn zrevrank(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    rank_generic(db, a, c, out, true)
}

fn pop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, max: bool) {
    let count = match a.len() {
        2 => None,
        3 => match parse_i64(a.get(2)) {
            Some(n) if n >= 0 => Some(n as usize),
            // (Redis's getPositiveLongFromObjectOrReply: one message for both.)
            _ => return out.error("ERR value is out of range, must be positive"),
        },
        _ => return out.error(err::SYNTAX),
    };
    let key = a.get(1);
    let Ok(z) = modify::<ZSet>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(z) = z else { return out.array(0) };
    let n = count.unwrap_or(1).min(z.len());
    let (from, to) = if max { (z.len() - n, z.len()) } else { (0, n) };
    let mut entries = z.entries(from, to);
    if max {
        entries.reverse();
    }
    for (_, m) in &entries {
        z.remove(m);
    }
    // Without a count the reply is one flat [member, score]; with one, RESP3 nests the pairs.
    let nested = count.is_some() && out.proto == Proto::Resp3;
    out.array(if nested {
        entries.len()
    } else {
        entries.len() * 2
    });
    for (s, m) in &entries {
        if nested {
            out.array(2);
        }
        out.bulk(m);
        out.score(*s);
    }
    if !entries.is_empty() {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
}

pub fn zpopmin(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    pop(db, a, c, out, false)
}

pub fn zpopmax(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    pop(db, a, c, out, true)
}

fn remrange(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, by: By) {
    let key = a.get(1);
    // The range first, as Redis (see `range`).
    if let Err(e) = interval(&ZSet::default(), by, a.get(2), a.get(3), false) {
        return out.error(e);
    }
    let Ok(z) = modify::<ZSet>(db, key, c.now_ms, out) else {
        return;
    };
    let Some(z) = z else {
        // Redis validates the range even for a missing key.
        let empty = ZSet::default();
        return match interval(&empty, by, a.get(2), a.get(3), false) {
            Ok(_) => out.int(0),
            Err(e) => out.error(e),
        };
    };
    let (from, to) = match interval(z, by, a.get(2), a.get(3), false) {
        Ok(r) => r,
        Err(e) => return out.error(e),
    };
    let entries = z.entries(from, to);
    for (_, m) in &entries {
        z.remove(m);
    }
    if !entries.is_empty() {
        db.signal(key);
        drop_if_empty(db, key, c.now_ms);
    }
    out.int(entries.len() as i64)
}

pub fn zremrangebyrank(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    remrange(db, a, c, out, By::Rank)
}

pub fn zremrangebyscore(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    remrange(db, a, c, out, By::Score)
}

pub fn zremrangebylex(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    remrange(db, a, c, out, By::Lex)
}

pub fn zrandmember(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let count = if a.len() >= 3 {
        let Some(n) = int_arg(&a, 2, out) else { return };
        if !super::sets::random_count_ok(n, out) {
            return;
        }
        Some(n)
    } else {
        None
    };
    let withscores = match a.len() {
        4 if a.get(3).eq_ignore_ascii_case(b"withscores") => true,
        2 | 3 => false,
        _ => return out.error(err::SYNTAX),
    };
    let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let Some(count) = count else {
        return match z {
            Some(z) => out.bulk(z.random(c.rng).0),
            None => out.null(),
        };
    };
    let Some(z) = z.filter(|_| count != 0) else {
        return out.array(0);
    };
    let mut picked: Vec<(f64, Vec<u8>)> = Vec::new();
    if count < 0 {
        for _ in 0..count.unsigned_abs() {
            let (m, s) = z.random(c.rng);
            picked.push((s, m.to_vec()));
        }
    } else {
        z.sample_distinct(count as usize, c.rng, |m, s| picked.push((s, m.to_vec())));
    }
    write_entries(out, &picked, withscores)
}

pub fn zscan(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(sa) = super::scan_args(&a, 2, false, false, out) else {
        return;
    };
    let Ok(z) = read::<ZSet>(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let mut found: Vec<(Vec<u8>, String)> = Vec::new();
    let next = z.map_or(0, |z| {
        z.scan(sa.cursor as usize, sa.count, |m, s| {
            if sa.matches(m) {
                found.push((m.to_vec(), crate::num::format_g17(s)));
            }
        })
    });
    let items: Vec<&[u8]> = found
        .iter()
        .flat_map(|(m, s)| [m.as_slice(), s.as_bytes()])
        .collect();
    super::scan_reply(out, next as u64, &items)
}

mod algebra;
pub use algebra::{zdiff, zdiffstore, zinter, zintercard, zinterstore, zunion, zunionstore};

#[cfg(test)]
mod tests;
