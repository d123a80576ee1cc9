//! Bitmaps, on string values: SETBIT GETBIT BITCOUNT BITPOS BITOP. Bit 0 is the most significant
//! bit of the first byte, as in Redis.

use super::{Args, Ctx, err};
use crate::bytes::SmallBytes;
use crate::db::{Db, Value};
use crate::num::parse_i64;
use crate::reply::Out;

/// Largest bit offset (the string may grow to 512 MiB).
const BIT_OFFSET_MAX: i64 = (512 * 1024 * 1024 * 8) - 1;

/// The string at `key` as bytes: `Ok(None)` if missing, `Err` (WRONGTYPE written) otherwise.
fn bytes_of<'d>(
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

fn bit_offset(a: &Args, i: usize, out: &mut Out) -> Option<u64> {
    match parse_i64(a.get(i)) {
        Some(n) if (0..=BIT_OFFSET_MAX).contains(&n) => Some(n as u64),
        _ => {
            out.error("ERR bit offset is not an integer or out of range");
            None
        }
    }
}

pub fn setbit(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(offset) = bit_offset(&a, 2, out) else {
        return;
    };
    let on = match a.get(3) {
        b"1" => true,
        b"0" => false,
        _ => return out.error("ERR bit is not an integer or out of range"),
    };
    let key = a.get(1);
    let Ok(cur) = bytes_of(db, key, c.now_ms, out) else {
        return;
    };
    let mut v = cur.map(<[u8]>::to_vec).unwrap_or_default();
    let byte = (offset / 8) as usize;
    let mask = 0x80u8 >> (offset % 8);
    if v.len() <= byte {
        v.resize(byte + 1, 0);
    }
    let old = v[byte] & mask != 0;
    if on {
        v[byte] |= mask;
    } else {
        v[byte] &= !mask;
    }
    db.set(key, Value::Str(SmallBytes::from_vec(v)), None, true);
    out.int(old as i64)
}

pub fn getbit(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(offset) = bit_offset(&a, 2, out) else {
        return;
    };
    let Ok(v) = bytes_of(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let byte = (offset / 8) as usize;
    let bit = v
        .and_then(|v| v.get(byte))
        .is_some_and(|b| b & (0x80 >> (offset % 8)) != 0);
    out.int(bit as i64)
}

/// Parses `[start end [BYTE|BIT]]` from `a[i..]`: the range and whether it counts bits.
fn range_args(a: &Args, i: usize, out: &mut Out) -> Option<Option<(i64, Option<i64>, bool)>> {
    if a.len() <= i {
        return Some(None);
    }
    let Some(start) = parse_i64(a.get(i)) else {
        out.error(err::NOT_INT);
        return None;
    };
    if a.len() == i + 1 {
        return Some(Some((start, None, false)));
    }
    let Some(end) = parse_i64(a.get(i + 1)) else {
        out.error(err::NOT_INT);
        return None;
    };
    let bits = match a.len() - (i + 2) {
        0 => false,
        1 if a.get(i + 2).eq_ignore_ascii_case(b"bit") => true,
        1 if a.get(i + 2).eq_ignore_ascii_case(b"byte") => false,
        _ => {
            out.error(err::SYNTAX);
            return None;
        }
    };
    Some(Some((start, Some(end), bits)))
}

/// Resolves `start..=end` (negative from the end) over `len` units; `None` if empty.
fn resolve(start: i64, end: i64, len: i64) -> Option<(i64, i64)> {
    let s = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let e = if end < 0 { len + end } else { end.min(len - 1) };
    (s <= e && s < len && e >= 0).then_some((s, e))
}

fn bit_at(v: &[u8], i: i64) -> bool {
    v[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
}

pub fn bitcount(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let Some(range) = range_args(&a, 2, out) else {
        return;
    };
    if matches!(range, Some((_, None, _))) {
        return out.error(err::SYNTAX);
    }
    let Ok(v) = bytes_of(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let v = v.unwrap_or(b"");
    let n = match range {
        None => v.iter().map(|b| b.count_ones() as i64).sum(),
        Some((s, Some(e), false)) => match resolve(s, e, v.len() as i64) {
            Some((s, e)) => v[s as usize..=e as usize]
                .iter()
                .map(|b| b.count_ones() as i64)
                .sum(),
            None => 0,
        },
        Some((s, Some(e), true)) => match resolve(s, e, v.len() as i64 * 8) {
            Some((s, e)) => (s..=e).filter(|&i| bit_at(v, i)).count() as i64,
            None => 0,
        },
        Some((_, None, _)) => unreachable!("refused above"),
    };
    out.int(n)
}

pub fn bitpos(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let want = match a.get(2) {
        b"1" => true,
        b"0" => false,
        _ => return out.error("ERR The bit argument must be 1 or 0."),
    };
    let Some(range) = range_args(&a, 3, out) else {
        return;
    };
    let Ok(v) = bytes_of(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let Some(v) = v else {
        return out.int(if want { -1 } else { 0 });
    };
    let len_bytes = v.len() as i64;
    let (s, e, bits, end_given) = match range {
        None => (0, len_bytes * 8 - 1, true, false),
        Some((s, None, _)) => match resolve(s, len_bytes - 1, len_bytes) {
            Some((s, e)) => (s * 8, e * 8 + 7, true, false),
            None => return out.int(-1),
        },
        Some((s, Some(e), false)) => match resolve(s, e, len_bytes) {
            Some((s, e)) => (s * 8, e * 8 + 7, true, true),
            None => return out.int(-1),
        },
        Some((s, Some(e), true)) => match resolve(s, e, len_bytes * 8) {
            Some((s, e)) => (s, e, true, true),
            None => return out.int(-1),
        },
    };
    debug_assert!(bits);
    if let Some(p) = (s..=e).find(|&i| bit_at(v, i) == want) {
        return out.int(p);
    }
    // Looking for a clear bit past an all-ones string without an explicit end: Redis answers the
    // first bit after the string.
    out.int(if !want && !end_given { e + 1 } else { -1 })
}

pub fn bitop(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    let op = a.get(1).to_ascii_lowercase();
    if !matches!(op.as_slice(), b"and" | b"or" | b"xor" | b"not") {
        return out.error(err::SYNTAX);
    }
    if op == b"not" && a.len() != 4 {
        return out.error("ERR BITOP NOT must be called with a single source key.");
    }
    let mut srcs: Vec<Vec<u8>> = Vec::with_capacity(a.len() - 3);
    for k in a.iter().skip(3) {
        let Ok(v) = bytes_of(db, k, c.now_ms, out) else {
            return;
        };
        srcs.push(v.map(<[u8]>::to_vec).unwrap_or_default());
    }
    let len = srcs.iter().map(Vec::len).max().unwrap_or(0);
    let byte = |s: &Vec<u8>, i: usize| s.get(i).copied().unwrap_or(0);
    let result: Vec<u8> = (0..len)
        .map(|i| match op.as_slice() {
            b"not" => !byte(&srcs[0], i),
            b"and" => srcs.iter().fold(0xff, |acc, s| acc & byte(s, i)),
            b"or" => srcs.iter().fold(0, |acc, s| acc | byte(s, i)),
            _ => srcs.iter().fold(0, |acc, s| acc ^ byte(s, i)),
        })
        .collect();
    let dest = a.get(2);
    if result.is_empty() {
        db.remove(dest, c.now_ms);
    } else {
        db.set(dest, Value::Str(SmallBytes::from_vec(result)), None, false);
    }
    out.int(len as i64)
}

#[cfg(test)]
mod tests {
    use crate::command::testing::*;

    #[test]
    fn setbit_getbit_grow_and_report_the_old_bit() {
        let mut h = Harness::new();
        assert_eq!(h.run("SETBIT b 7 1"), int(0));
        assert_eq!(h.run("SETBIT b 7 1"), int(1));
        assert_eq!(h.run("GET b"), "$1\r\n\x01\r\n");
        assert_eq!(h.run("SETBIT b 100 1"), int(0));
        assert_eq!(h.run("STRLEN b"), int(13));
        assert_eq!(h.run("GETBIT b 100"), int(1));
        assert_eq!(h.run("GETBIT b 99"), int(0));
        assert_eq!(h.run("GETBIT b 100000"), int(0));
        assert_eq!(
            h.run("SETBIT b -1 1"),
            error("ERR bit offset is not an integer or out of range")
        );
        assert_eq!(
            h.run("SETBIT b 4294967296 1"),
            error("ERR bit offset is not an integer or out of range")
        );
        assert_eq!(
            h.run("SETBIT b 1 2"),
            error("ERR bit is not an integer or out of range")
        );
        h.run("HSET hh f v");
        assert_eq!(
            h.run("SETBIT hh 1 1"),
            error("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }

    #[test]
    fn bitcount_and_bitpos_with_byte_and_bit_ranges() {
        let mut h = Harness::new();
        h.run("SET s foobar");
        assert_eq!(h.run("BITCOUNT s"), int(26));
        assert_eq!(h.run("BITCOUNT s 0 0"), int(4));
        assert_eq!(h.run("BITCOUNT s 1 1"), int(6));
        assert_eq!(h.run("BITCOUNT s 1 1 BYTE"), int(6));
        assert_eq!(h.run("BITCOUNT s 5 30 BIT"), int(17));
        assert_eq!(h.run("BITCOUNT s -2 -1"), int(7));
        assert_eq!(h.run("BITCOUNT s 0"), error("ERR syntax error"));
        assert_eq!(h.run("BITCOUNT nokey"), int(0));
        h.run("SET p \u{ff}\u{f0}");
        // "\xff\xf0" as UTF-8 is 4 bytes here: c3 bf c3 b0.
        assert_eq!(h.run("BITPOS p 0"), int(2));
        h.run("SETBIT q 0 1");
        h.run("SETBIT q 1 1");
        assert_eq!(h.run("BITPOS q 1"), int(0));
        assert_eq!(h.run("BITPOS q 0"), int(2));
        h.run("SETBIT ones 0 1");
        for i in 1..8 {
            h.run(&format!("SETBIT ones {i} 1"));
        }
        assert_eq!(h.run("BITPOS ones 0"), int(8));
        assert_eq!(h.run("BITPOS ones 0 0 -1"), int(-1));
        assert_eq!(h.run("BITPOS nokey 1"), int(-1));
        assert_eq!(h.run("BITPOS nokey 0"), int(0));
        assert_eq!(
            h.run("BITPOS q 2"),
            error("ERR The bit argument must be 1 or 0.")
        );
    }

    #[test]
    fn bitop_combines_and_pads_with_zeros() {
        let mut h = Harness::new();
        h.run("SET a abc");
        h.run("SET b a");
        assert_eq!(h.run("BITOP AND d a b"), int(3));
        assert_eq!(h.run("GET d"), "$3\r\na\0\0\r\n");
        assert_eq!(h.run("BITOP OR d a b"), int(3));
        assert_eq!(h.run("GET d"), bulk("abc"));
        assert_eq!(h.run("BITOP XOR d a a"), int(3));
        assert_eq!(h.run("BITCOUNT d"), int(0));
        assert_eq!(h.run("BITOP NOT d b"), int(1));
        assert_eq!(
            h.run("GET d"),
            "$1\r\n\u{9e}\r\n".replace('\u{9e}', "\u{fffd}")
        );
        assert_eq!(
            h.run("BITOP NOT d a b"),
            error("ERR BITOP NOT must be called with a single source key.")
        );
        assert_eq!(h.run("BITOP NAND d a"), error("ERR syntax error"));
        assert_eq!(h.run("BITOP AND d none1 none2"), int(0));
        assert_eq!(h.run("EXISTS d"), int(0));
    }
}
