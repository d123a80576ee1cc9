//! Redis's compact blobs, as they appear inside RDB strings: listpacks (read and written),
//! ziplists, intsets and zipmaps (read), and LZF-compressed strings (read). Every reader walks
//! the blob to its end marker and checks each length against what is left.

use std::borrow::Cow;

type Res<T> = Result<T, &'static str>;

/// One element of a listpack or ziplist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl<'a> Elem<'a> {
    /// The element as bytes (integers in decimal, as Redis reads them back).
    pub fn bytes(self) -> Cow<'a, [u8]> {
        match self {
            Elem::Str(s) => Cow::Borrowed(s),
            Elem::Int(n) => Cow::Owned(n.to_string().into_bytes()),
        }
    }

    /// The element as an integer (stream metadata is always stored as integers).
    pub fn int(self) -> Res<i64> {
        match self {
            Elem::Int(n) => Ok(n),
            Elem::Str(s) => crate::num::parse_i64(s).ok_or("a listpack integer is not a number"),
        }
    }
}

fn take(b: &[u8], at: usize, n: usize) -> Res<&[u8]> {
    at.checked_add(n)
        .and_then(|end| b.get(at..end))
        .ok_or("an element runs past its blob")
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |n, &x| n << 8 | x as u64)
}

/// Sign-extends the low `bits` of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The bytes a listpack back-length of `len` takes.
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// The back-length of an element of `len` bytes, in its first `backlen_size(len)` bytes.
fn backlen(len: usize) -> [u8; 5] {
    let n = backlen_size(len);
    let mut b = [0u8; 5];
    for (k, i) in (0..n).rev().enumerate() {
        let group = ((len >> (7 * i)) & 127) as u8;
        b[k] = if i + 1 == n { group } else { group | 128 };
    }
    b
}

/// The integer a string is stored as in a listpack: its canonical decimal form only (as Redis's
/// `lpStringToInt64`: no sign but `-`, no leading zeros, no `-0`).
pub fn as_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    crate::num::parse_i64(s).filter(|n| {
        let mut buf = [0u8; 20];
        crate::num::format_i64(*n, &mut buf) == s
    })
}

/// The encoding bytes of integer `v` (its tag included).
fn int_encoding_len(v: i64) -> usize {
    if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if i16::try_from(v).is_ok() {
        3
    } else if (-(1 << 23)..1 << 23).contains(&v) {
        4
    } else if i32::try_from(v).is_ok() {
        5
    } else {
        9
    }
}

/// The bytes integer element `v` takes in a listpack (its back-length included).
pub fn int_size(v: i64) -> usize {
    int_encoding_len(v) + 1
}

/// The bytes string element `s` takes in a listpack, as an integer when it is one.
pub fn str_size(s: &[u8]) -> usize {
    if let Some(v) = as_int(s) {
        return int_size(v);
    }
    let header = match s.len() {
        0..=63 => 1,
        64..=4095 => 2,
        _ => 5,
    };
    header + s.len() + backlen_size(header + s.len())
}

/// The bytes of a listpack's header and end marker.
pub const OVERHEAD: usize = 7;

/// The elements of a listpack.
pub fn listpack(b: &[u8]) -> Res<Vec<Elem<'_>>> {
    if b.len() < 7 || le(&b[..4]) != b.len() as u64 {
        return Err("a listpack's size is wrong");
    }
    let declared = le(&b[4..6]) as usize;
    let mut out = Vec::new();
    let mut at = 6;
    loop {
        let first = *b.get(at).ok_or("a listpack has no end")?;
        if first == 0xff {
            break;
        }
        let (elem, len) = match first {
            0x00..=0x7f => (Elem::Int(first as i64), 1),
            0x80..=0xbf => {
                let n = (first & 0x3f) as usize;
                (Elem::Str(take(b, at + 1, n)?), 1 + n)
            }
            0xc0..=0xdf => {
                let v = ((first & 0x1f) as u64) << 8 | *b.get(at + 1).ok_or("cut")? as u64;
                (Elem::Int(signed(v, 13)), 2)
            }
            0xe0..=0xef => {
                let n = ((first & 0x0f) as usize) << 8 | *b.get(at + 1).ok_or("cut")? as usize;
                (Elem::Str(take(b, at + 2, n)?), 2 + n)
            }
            0xf0 => {
                let n = le(take(b, at + 1, 4)?) as usize;
                (Elem::Str(take(b, at + 5, n)?), 5 + n)
            }
            0xf1..=0xf4 => {
                let bytes = [2, 3, 4, 8][(first - 0xf1) as usize];
                let v = le(take(b, at + 1, bytes)?);
                (Elem::Int(signed(v, bytes as u32 * 8)), 1 + bytes)
            }
            _ => return Err("an unknown listpack encoding"),
        };
        let n = backlen_size(len);
        if take(b, at + len, n)? != &backlen(len)[..n] {
            return Err("a listpack back-length is wrong");
        }
        at += len + n;
        out.push(elem);
    }
    if at + 1 != b.len() {
        return Err("bytes after a listpack's end");
    }
    if declared != 0xffff && declared != out.len() {
        return Err("a listpack's element count is wrong");
    }
    Ok(out)
}

/// Builds a listpack.
#[derive(Default)]
pub struct Writer {
    body: Vec<u8>,
    count: usize,
}

impl Writer {
    fn entry(&mut self, start: usize) {
        let len = self.body.len() - start;
        self.body
            .extend_from_slice(&backlen(len)[..backlen_size(len)]);
        self.count += 1;
    }

    pub fn int(&mut self, v: i64) {
        let start = self.body.len();
        let w = &mut self.body;
        match int_encoding_len(v) {
            1 => w.push(v as u8),
            2 => {
                let u = (v as u64) & 0x1fff;
                w.push(0xc0 | (u >> 8) as u8);
                w.push(u as u8);
            }
            n => {
                // Tags 0xf1..0xf4 carry 2, 3, 4 and 8 bytes, little-endian.
                let (tag, bytes) = match n {
                    3 => (0xf1, 2),
                    4 => (0xf2, 3),
                    5 => (0xf3, 4),
                    _ => (0xf4, 8),
                };
                w.push(tag);
                w.extend_from_slice(&v.to_le_bytes()[..bytes]);
            }
        }
        self.entry(start);
    }

    /// Appends a string element, as an integer when it is one (as Redis's `lpAppend`).
    pub fn str(&mut self, s: &[u8]) {
        if let Some(v) = as_int(s) {
            return self.int(v);
        }
        let start = self.body.len();
        let w = &mut self.body;
        let n = s.len();
        if n < 64 {
            w.push(0x80 | n as u8);
        } else if n < 4096 {
            w.push(0xe0 | (n >> 8) as u8);
            w.push(n as u8);
        } else {
            w.push(0xf0);
            w.extend_from_slice(&(n as u32).to_le_bytes());
        }
        w.extend_from_slice(s);
        self.entry(start);
    }

    /// The size the finished listpack will have.
    pub fn size(&self) -> usize {
        self.body.len() + 7
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&(self.size() as u32).to_le_bytes());
        out.extend_from_slice(&(self.count.min(0xffff) as u16).to_le_bytes());
        out.extend_from_slice(&self.body);
        out.push(0xff);
        out
    }
}

/// The elements of a ziplist (Redis before 7.0).
pub fn ziplist(b: &[u8]) -> Res<Vec<Elem<'_>>> {
    if b.len() < 11 || le(&b[..4]) != b.len() as u64 || le(&b[4..8]) >= b.len() as u64 {
        return Err("a ziplist's header is wrong");
    }
    let declared = le(&b[8..10]) as usize;
    let mut out = Vec::new();
    let mut at = 10;
    let mut prev_len = 0usize;
    loop {
        let first = *b.get(at).ok_or("a ziplist has no end")?;
        if first == 0xff {
            break;
        }
        let start = at;
        let prev = if first < 254 {
            at += 1;
            first as usize
        } else if first == 254 {
            let p = le(take(b, at + 1, 4)?) as usize;
            at += 5;
            p
        } else {
            return Err("a ziplist's previous length is wrong");
        };
        if prev != prev_len {
            return Err("a ziplist's previous length is wrong");
        }
        let enc = *b.get(at).ok_or("cut")?;
        let (elem, len) = match enc >> 6 {
            0 => {
                let n = (enc & 0x3f) as usize;
                (Elem::Str(take(b, at + 1, n)?), 1 + n)
            }
            1 => {
                let n = ((enc & 0x3f) as usize) << 8 | *b.get(at + 1).ok_or("cut")? as usize;
                (Elem::Str(take(b, at + 2, n)?), 2 + n)
            }
            2 => {
                if enc != 0x80 {
                    return Err("an unknown ziplist encoding");
                }
                let n = u32::from_be_bytes(take(b, at + 1, 4)?.try_into().expect("4")) as usize;
                (Elem::Str(take(b, at + 5, n)?), 5 + n)
            }
            _ => {
                let bytes = match enc {
                    0xc0 => 2,
                    0xd0 => 4,
                    0xe0 => 8,
                    0xf0 => 3,
                    0xfe => 1,
                    0xf1..=0xfd => 0,
                    _ => return Err("an unknown ziplist encoding"),
                };
                let v = if bytes == 0 {
                    (enc & 0x0f) as i64 - 1
                } else {
                    signed(le(take(b, at + 1, bytes)?), bytes as u32 * 8)
                };
                (Elem::Int(v), 1 + bytes)
            }
        };
        at += len;
        prev_len = at - start;
        out.push(elem);
    }
    if at + 1 != b.len() {
        return Err("bytes after a ziplist's end");
    }
    if declared != 0xffff && declared != out.len() {
        return Err("a ziplist's element count is wrong");
    }
    Ok(out)
}

/// The members of an intset, checked to be strictly increasing.
pub fn intset(b: &[u8]) -> Res<Vec<i64>> {
    if b.len() < 8 {
        return Err("an intset's header is cut");
    }
    let width = le(&b[..4]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err("an intset's encoding is wrong");
    }
    let n = le(&b[4..8]) as usize;
    if Some(b.len() - 8) != n.checked_mul(width) {
        return Err("an intset's length is wrong");
    }
    let v: Vec<i64> = b[8..]
        .chunks_exact(width)
        .map(|c| signed(le(c), width as u32 * 8))
        .collect();
    if v.windows(2).any(|w| w[0] >= w[1]) {
        return Err("an intset is not sorted");
    }
    Ok(v)
}

/// The field-value pairs of a zipmap (hashes of Redis before 2.6).
pub fn zipmap(b: &[u8]) -> Res<Vec<(&[u8], &[u8])>> {
    let mut at = 1;
    let mut out = Vec::new();
    let len = |at: &mut usize| -> Res<Option<usize>> {
        let first = *b.get(*at).ok_or("a zipmap has no end")?;
        match first {
            0xff => Ok(None),
            254 => {
                let n = le(take(b, *at + 1, 4)?) as usize;
                *at += 5;
                Ok(Some(n))
            }
            253 => Err("a zipmap length is wrong"),
            n => {
                *at += 1;
                Ok(Some(n as usize))
            }
        }
    };
    while let Some(klen) = len(&mut at)? {
        let key = take(b, at, klen)?;
        at += klen;
        let vlen = len(&mut at)?.ok_or("a zipmap key has no value")?;
        let free = *b.get(at).ok_or("cut")? as usize;
        let value = take(b, at + 1, vlen)?;
        at += 1 + vlen + free;
        out.push((key, value));
    }
    if at + 1 != b.len() {
        return Err("bytes after a zipmap's end");
    }
    Ok(out)
}

/// Decompresses LZF data that must expand to exactly `len` bytes.
pub fn lzf(input: &[u8], len: usize) -> Res<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = take(input, i, ctrl + 1)?;
            if out.len() + run.len() > len {
                return Err("LZF data expands past its length");
            }
            out.extend_from_slice(run);
            i += ctrl + 1;
        } else {
            let mut n = ctrl >> 5;
            if n == 7 {
                n += *input.get(i).ok_or("cut")? as usize;
                i += 1;
            }
            n += 2;
            let back = ((ctrl & 0x1f) << 8) + *input.get(i).ok_or("cut")? as usize + 1;
            i += 1;
            if back > out.len() {
                return Err("an LZF back-reference points before the start");
            }
            if out.len() + n > len {
                return Err("LZF data expands past its length");
            }
            let from = out.len() - back;
            for k in 0..n {
                out.push(out[from + k]);
            }
        }
    }
    if out.len() != len {
        return Err("LZF data is shorter than its length");
    }
    Ok(out)
}
