//! Bitmaps, on string values: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO. Bit 0 is
//! the most significant bit of the first byte, as in Redis.

use super::{Args, Ctx, err};
use crate::bytes::SmallBytes;
use crate::db::{Db, Value};
use crate::num::parse_i64;
use crate::reply::Out;

/// Largest bit offset (the string may grow to 512 MiB).
const BIT_OFFSET_MAX: i64 = (512 * 1024 * 1024 * 8) - 1;

use super::strings::string_of as bytes_of;

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

/// Resolves `start..=end` (negative from the end) over `len` units as Redis 7 does: both ends
/// clamped to `0..len` (so `-10 -10` over 4 units is the first unit); `None` if empty.
fn resolve(start: i64, end: i64, len: i64) -> Option<(i64, i64)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    super::strings::byte_range_of(start, end, len.max(0) as usize)
        .map(|(s, e)| (s as i64, e as i64))
}

fn bit_at(v: &[u8], i: i64) -> bool {
    v[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
}

pub fn bitcount(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    // As Redis 7.0: the key first (missing: 0 whatever the arguments; WRONGTYPE), then the range.
    let Ok(v) = bytes_of(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let Some(v) = v else {
        return out.int(0);
    };
    if a.len() == 3 || a.len() > 5 {
        return out.error(err::SYNTAX);
    }
    let Some(range) = range_args(&a, 2, out) else {
        return;
    };
    if matches!(range, Some((_, None, _))) {
        return out.error(err::SYNTAX);
    }
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
    // As Redis 7.0: the bit (an integer, then 0 or 1), the key (missing: the answer for an
    // endless run of zeros whatever the range; WRONGTYPE), then the range.
    let want = match crate::num::parse_i64(a.get(2)) {
        Some(1) => true,
        Some(0) => false,
        Some(_) => return out.error("ERR The bit argument must be 1 or 0."),
        None => return out.error(err::NOT_INT),
    };
    let Ok(v) = bytes_of(db, a.get(1), c.now_ms, out) else {
        return;
    };
    let Some(v) = v else {
        return out.int(if want { -1 } else { 0 });
    };
    // With a unit word, it is checked before the end is read.
    if a.len() > 6 {
        return out.error(err::SYNTAX);
    }
    if a.len() == 6
        && !a.get(5).eq_ignore_ascii_case(b"bit")
        && !a.get(5).eq_ignore_ascii_case(b"byte")
        && crate::num::parse_i64(a.get(3)).is_some()
    {
        return out.error(err::SYNTAX);
    }
    let Some(range) = range_args(&a, 3, out) else {
        return;
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

/// A BITFIELD integer type: `i1`..`i64` or `u1`..`u63`.
#[derive(Clone, Copy)]
struct FieldType {
    signed: bool,
    bits: u32,
}

impl FieldType {
    fn parse(s: &[u8]) -> Option<FieldType> {
        let signed = match s.first()? {
            b'i' | b'I' => true,
            b'u' | b'U' => false,
            _ => return None,
        };
        let bits: u32 = std::str::from_utf8(&s[1..]).ok()?.parse().ok()?;
        let max = if signed { 64 } else { 63 };
        (1..=max)
            .contains(&bits)
            .then_some(FieldType { signed, bits })
    }

    fn min(self) -> i128 {
        if self.signed {
            -(1i128 << (self.bits - 1))
        } else {
            0
        }
    }

    fn max(self) -> i128 {
        if self.signed {
            (1i128 << (self.bits - 1)) - 1
        } else {
            (1i128 << self.bits) - 1
        }
    }

    /// Two's-complement wrap of `v` into the type.
    fn wrap(self, v: i128) -> i128 {
        let m = 1i128 << self.bits;
        let u = v.rem_euclid(m);
        if self.signed && u > self.max() {
            u - m
        } else {
            u
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

fn read_field(v: &[u8], offset: u64, t: FieldType) -> i128 {
    let mut u: u128 = 0;
    for i in 0..t.bits as u64 {
        let bit = offset + i;
        let byte = v.get((bit / 8) as usize).copied().unwrap_or(0);
        u = (u << 1) | ((byte >> (7 - bit % 8)) & 1) as u128;
    }
    if t.signed && t.bits < 128 && (u >> (t.bits - 1)) & 1 == 1 {
        u as i128 - (1i128 << t.bits)
    } else {
        u as i128
    }
}

fn write_field(v: &mut Vec<u8>, offset: u64, t: FieldType, value: i128) {
    let end = ((offset + t.bits as u64).div_ceil(8)) as usize;
    if v.len() < end {
        v.resize(end, 0);
    }
    let u = (value as u128) & ((1u128 << t.bits) - 1);
    for i in 0..t.bits as u64 {
        let bit = offset + i;
        let on = (u >> (t.bits as u64 - 1 - i)) & 1 == 1;
        let mask = 0x80u8 >> (bit % 8);
        if on {
            v[(bit / 8) as usize] |= mask;
        } else {
            v[(bit / 8) as usize] &= !mask;
        }
    }
}

/// Applies the overflow policy to a would-be value; `None` when FAIL refuses it.
fn fit(t: FieldType, v: i128, policy: Overflow) -> Option<i128> {
    if v >= t.min() && v <= t.max() {
        return Some(v);
    }
    match policy {
        Overflow::Wrap => Some(t.wrap(v)),
        Overflow::Sat => Some(v.clamp(t.min(), t.max())),
        Overflow::Fail => None,
    }
}

fn bitfield_generic(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out, read_only: bool) {
    let bad_type = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
    let mut ops: Vec<(FieldOp, FieldType, u64, Overflow)> = Vec::new();
    let mut policy = Overflow::Wrap;
    let mut i = 2;
    while i < a.len() {
        let sub = a.get(i).to_ascii_lowercase();
        if sub == b"overflow" && i + 1 < a.len() {
            let p = a.get(i + 1).to_ascii_lowercase();
            policy = match p.as_slice() {
                b"wrap" => Overflow::Wrap,
                b"sat" => Overflow::Sat,
                b"fail" => Overflow::Fail,
                _ => return out.error("ERR Invalid OVERFLOW type specified"),
            };
            i += 2;
            continue;
        }
        let arity = match sub.as_slice() {
            b"get" => 3,
            b"set" | b"incrby" => 4,
            _ => return out.error(err::SYNTAX),
        };
        if i + arity > a.len() {
            return out.error(err::SYNTAX);
        }
        let Some(t) = FieldType::parse(a.get(i + 1)) else {
            return out.error(bad_type);
        };
        let off_arg = a.get(i + 2);
        let offset = match off_arg.strip_prefix(b"#") {
            Some(n) => parse_i64(n).and_then(|n| n.checked_mul(t.bits as i64)),
            None => parse_i64(off_arg),
        };
        let Some(offset) = offset.filter(|o| (0..=BIT_OFFSET_MAX).contains(o)) else {
            return out.error("ERR bit offset is not an integer or out of range");
        };
        let op = match sub.as_slice() {
            b"get" => FieldOp::Get,
            _ => {
                let Some(n) = parse_i64(a.get(i + 3)) else {
                    return out.error(err::NOT_INT);
                };
                if sub == b"set" {
                    FieldOp::Set(n)
                } else {
                    FieldOp::IncrBy(n)
                }
            }
        };
        ops.push((op, t, offset as u64, policy));
        i += arity;
    }
    // As Redis: refused once every op parsed (a bad type or number is reported first).
    if read_only && ops.iter().any(|(op, ..)| !matches!(op, FieldOp::Get)) {
        return out.error("ERR BITFIELD_RO only supports the GET subcommand");
    }
    let key = a.get(1);
    let Ok(cur) = bytes_of(db, key, c.now_ms, out) else {
        return;
    };
    let existed = cur.is_some();
    let mut v = cur.map(<[u8]>::to_vec).unwrap_or_default();
    // As Redis's lookupStringForBitCommand: with any SET or INCRBY, the string is created and
    // grown to hold the highest field written to before the ops run, even if OVERFLOW FAIL
    // then refuses every one of them.
    let highest = ops
        .iter()
        .filter(|(op, ..)| !matches!(op, FieldOp::Get))
        .map(|&(_, t, offset, _)| offset + t.bits as u64 - 1)
        .max();
    let mut wrote = false;
    if let Some(bit) = highest {
        let need = (bit >> 3) as usize + 1;
        if v.len() < need || !existed {
            v.resize(v.len().max(need), 0);
            wrote = true;
        }
    }
    out.array(ops.len());
    for (op, t, offset, policy) in ops {
        let old = read_field(&v, offset, t);
        match op {
            FieldOp::Get => out.int(old as i64),
            FieldOp::Set(n) => match fit(t, n as i128, policy) {
                Some(new) => {
                    write_field(&mut v, offset, t, new);
                    wrote = true;
                    out.int(old as i64)
                }
                None => out.null(),
            },
            FieldOp::IncrBy(n) => match fit(t, old + n as i128, policy) {
                Some(new) => {
                    write_field(&mut v, offset, t, new);
                    wrote = true;
                    out.int(new as i64)
                }
                None => out.null(),
            },
        }
    }
    if wrote {
        db.set(key, Value::Str(SmallBytes::from_vec(v)), None, true);
    }
}

pub fn bitfield(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    bitfield_generic(db, a, c, out, false)
}

pub fn bitfield_ro(db: &mut Db, a: Args, c: &mut Ctx, out: &mut Out) {
    bitfield_generic(db, a, c, out, true)
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
    fn bitfield_writes_create_and_grow_the_string_even_when_overflow_fail_refuses_them() {
        // Regression (issue 15): Redis sizes the string for every SET/INCRBY before running
        // them; here a refused write left no key.
        let mut h = Harness::new();
        assert_eq!(
            h.run("BITFIELD n OVERFLOW FAIL INCRBY u8 0 300"),
            "*1\r\n$-1\r\n"
        );
        assert_eq!(h.run("GET n"), bulk("\0"));
        h.run("SET b a");
        h.run("BITFIELD b OVERFLOW FAIL INCRBY u8 100 300");
        assert_eq!(h.run("STRLEN b"), int(14));
        h.run("BITFIELD b GET u8 1000");
        assert_eq!(h.run("STRLEN b"), int(14), "GET grows nothing");
        assert_eq!(h.run("BITFIELD_RO none GET u8 0"), "*1\r\n:0\r\n");
        assert_eq!(h.run("EXISTS none"), int(0));
    }

    #[test]
    fn bitfield_types_offsets_and_overflow() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("BITFIELD b SET i8 0 -5 GET i8 0 GET u8 0"),
            "*3\r\n:0\r\n:-5\r\n:251\r\n"
        );
        // Bits 2-3 of 0xFB are 0b11: +3 wraps to 2, then +1 gives 3.
        assert_eq!(
            h.run("BITFIELD b INCRBY u2 #1 3 INCRBY u2 #1 1"),
            "*2\r\n:2\r\n:3\r\n"
        );
        assert_eq!(
            h.run("BITFIELD b OVERFLOW SAT INCRBY i8 0 -200"),
            "*1\r\n:-128\r\n"
        );
        assert_eq!(
            h.run("BITFIELD b OVERFLOW FAIL INCRBY i8 0 -1"),
            "*1\r\n$-1\r\n"
        );
        assert_eq!(
            h.run("BITFIELD b GET i8 0"),
            "*1\r\n:-128\r\n",
            "FAIL left the field alone"
        );
        assert_eq!(
            h.run("BITFIELD b SET i64 64 -1 GET u63 65"),
            "*2\r\n:0\r\n:9223372036854775807\r\n"
        );
        assert_eq!(
            h.run("BITFIELD b GET u64 0"),
            error(
                "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."
            )
        );
        assert_eq!(
            h.run("BITFIELD b GET i8 -1"),
            error("ERR bit offset is not an integer or out of range")
        );
        assert_eq!(
            h.run("BITFIELD b OVERFLOW NOPE GET i8 0"),
            error("ERR Invalid OVERFLOW type specified")
        );
        assert_eq!(
            h.run("BITFIELD_RO b SET i8 0 1"),
            error("ERR BITFIELD_RO only supports the GET subcommand")
        );
        assert_eq!(h.run("BITFIELD_RO nokey GET u4 0"), "*1\r\n:0\r\n");
        assert_eq!(h.run("EXISTS nokey"), int(0));
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
