//! RESTORE: one RDB value into a `Value`, in any encoding Redis 7.0 or 7.2 writes.

use super::listpack::{self, Elem};
use super::*;
use crate::bytes::SmallBytes;
use crate::db::{Tunables, Value};
use crate::types::stream::{Consumer, Group, Nack, Node, Stream, StreamId};
use crate::types::{Hash, List, Set, ZSet};
use shardline_transport::wire::Reader;
use std::borrow::Cow;
use std::collections::HashSet;

type Res<T> = Result<T, &'static str>;

/// The wire reader with RDB's pieces: its length encodings (big-endian, unlike our formats),
/// strings in their encodings, scores, stream ids.
struct Cur<'a> {
    r: Reader<'a>,
}

impl<'a> Cur<'a> {
    fn left(&self) -> usize {
        self.r.left()
    }

    fn take(&mut self, n: u64) -> Res<&'a [u8]> {
        if n > self.left() as u64 {
            return Err("a value runs past the payload");
        }
        self.r.take(n as usize).map_err(|e| e.what())
    }

    fn u8(&mut self) -> Res<u8> {
        self.r.u8().map_err(|e| e.what())
    }

    /// A length, or the code of a special string encoding (`true`).
    fn len_or_enc(&mut self) -> Res<(u64, bool)> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            LEN_6BIT => ((first & 0x3f) as u64, false),
            LEN_14BIT => (((first & 0x3f) as u64) << 8 | self.u8()? as u64, false),
            LEN_ENCODED => ((first & 0x3f) as u64, true),
            _ if first == LEN_32BIT => {
                let b = self.take(4)?;
                (u32::from_be_bytes(b.try_into().expect("4")) as u64, false)
            }
            _ if first == LEN_64BIT => {
                let b = self.take(8)?;
                (u64::from_be_bytes(b.try_into().expect("8")), false)
            }
            _ => return Err("an unknown length encoding"),
        })
    }

    fn len(&mut self) -> Res<u64> {
        match self.len_or_enc()? {
            (n, false) => Ok(n),
            _ => Err("an encoded string where a length belongs"),
        }
    }

    /// A count of items that take at least `min` bytes each: bounded by what is left, so a
    /// corrupt count allocates nothing.
    fn count(&mut self, min: usize) -> Res<usize> {
        let n = self.len()?;
        if n > (self.left() / min) as u64 {
            return Err("a count exceeds the payload");
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Res<Cow<'a, [u8]>> {
        let (n, encoded) = self.len_or_enc()?;
        if !encoded {
            return Ok(Cow::Borrowed(self.take(n)?));
        }
        let int = |v: i64| Cow::Owned(v.to_string().into_bytes());
        Ok(match n {
            ENC_INT8 => int(self.u8()? as i8 as i64),
            ENC_INT16 => int(i16::from_le_bytes(self.take(2)?.try_into().expect("2")) as i64),
            ENC_INT32 => int(i32::from_le_bytes(self.take(4)?.try_into().expect("4")) as i64),
            ENC_LZF => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if ulen > MAX_STRING || ulen == 0 {
                    return Err("a compressed string's length is out of range");
                }
                let data = self.take(clen)?;
                Cow::Owned(listpack::lzf(data, ulen as usize)?)
            }
            _ => return Err("an unknown string encoding"),
        })
    }

    fn u64_le(&mut self) -> Res<u64> {
        self.r.u64().map_err(|e| e.what())
    }

    /// A score in the old text form: a length byte (253 NaN, 254 +inf, 255 -inf), then text.
    fn text_double(&mut self) -> Res<f64> {
        match self.u8()? {
            253 => Err("a NaN score"),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => score(self.take(n as u64)?),
        }
    }

    fn stream_id(&mut self) -> Res<StreamId> {
        let ms = self.len()?;
        Ok(StreamId::new(ms, self.len()?))
    }

    /// A stream id as 16 raw big-endian bytes.
    fn raw_id(&mut self) -> Res<StreamId> {
        raw_id(self.take(16)?)
    }
}

fn raw_id(b: &[u8]) -> Res<StreamId> {
    if b.len() != 16 {
        return Err("a stream id is not 16 bytes");
    }
    Ok(StreamId::new(
        u64::from_be_bytes(b[..8].try_into().expect("8")),
        u64::from_be_bytes(b[8..].try_into().expect("8")),
    ))
}

fn score(s: &[u8]) -> Res<f64> {
    match crate::num::parse_f64(s) {
        Some(v) => Ok(v),
        None => Err("a score is not a number"),
    }
}

/// Decodes the value bytes of a verified payload (`verify` strips the version and checksum).
pub fn load(body: &[u8], t: &Tunables) -> Result<Value, PayloadError> {
    let mut r = Cur {
        r: Reader::new(body),
    };
    // Bytes after the value are ignored, as Redis ignores them.
    let value = value(&mut r, t).map_err(PayloadError::BadFormat)?;
    let empty = match &value {
        Value::Stream(_) | Value::Str(_) => false,
        v => v.is_empty_collection(),
    };
    if empty {
        return Err(PayloadError::BadFormat("an empty collection"));
    }
    Ok(value)
}

/// FUNCTION RESTORE's payload: the code of each library it holds (Redis 7.0's
/// `RDB_OPCODE_FUNCTION2` records), or the error to answer.
pub fn load_functions(payload: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let body = verify(payload).map_err(|_| "ERR DUMP payload version or checksum are wrong")?;
    let mut r = Cur {
        r: Reader::new(body),
    };
    let mut codes = Vec::new();
    while r.left() > 0 {
        if r.u8().map_err(|_| "ERR given type is not a function")? != OPCODE_FUNCTION2 {
            return Err("ERR given type is not a function");
        }
        let code = r
            .string()
            .map_err(|_| "ERR failed loading the library's code from the payload")?;
        codes.push(code.into_owned());
    }
    Ok(codes)
}

fn value(r: &mut Cur, t: &Tunables) -> Res<Value> {
    let ty = r.u8()?;
    Ok(match ty {
        T_STRING => Value::Str(SmallBytes::new(&r.string()?)),
        T_LIST => {
            let mut l = List::default();
            for _ in 0..r.count(1)? {
                l.push_back(&r.string()?, t);
            }
            Value::List(Box::new(l))
        }
        T_LIST_ZIPLIST => {
            let mut l = List::default();
            for e in listpack::ziplist(&r.string()?)? {
                l.push_back(&e.bytes(), t);
            }
            Value::List(Box::new(l))
        }
        T_LIST_QUICKLIST | T_LIST_QUICKLIST_2 => {
            let mut l = List::default();
            for _ in 0..r.count(1)? {
                let compact = if ty == T_LIST_QUICKLIST {
                    true
                } else {
                    match r.len()? {
                        1 => false,
                        2 => true,
                        _ => return Err("an unknown quicklist container"),
                    }
                };
                let node = r.string()?;
                if !compact {
                    l.push_back(&node, t);
                    continue;
                }
                for e in packed(ty == T_LIST_QUICKLIST, &node)? {
                    l.push_back(&e.bytes(), t);
                }
            }
            Value::List(Box::new(l))
        }
        T_SET => {
            let n = r.count(1)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                members.push(r.string()?);
            }
            set(members, t)?
        }
        T_SET_INTSET => {
            let s = r.string()?;
            let members = listpack::intset(&s)?
                .into_iter()
                .map(|n| Cow::Owned(n.to_string().into_bytes()))
                .collect();
            set(members, t)?
        }
        T_SET_LISTPACK => {
            let s = r.string()?;
            set(
                listpack::listpack(&s)?
                    .into_iter()
                    .map(Elem::bytes)
                    .collect(),
                t,
            )?
        }
        T_ZSET | T_ZSET_2 => {
            let n = r.count(2)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let m = r.string()?;
                let s = if ty == T_ZSET {
                    r.text_double()?
                } else {
                    f64::from_bits(r.u64_le()?)
                };
                pairs.push((m, s));
            }
            zset(pairs, t)?
        }
        T_ZSET_ZIPLIST | T_ZSET_LISTPACK => {
            let s = r.string()?;
            let elems = packed_pairs(
                ty == T_ZSET_ZIPLIST,
                &s,
                "a sorted set's listpack has an odd length",
            )?;
            let mut pairs = Vec::with_capacity(elems.len() / 2);
            for p in elems.chunks_exact(2) {
                let s = match p[1] {
                    Elem::Int(n) => n as f64,
                    Elem::Str(s) => score(s)?,
                };
                pairs.push((p[0].bytes(), s));
            }
            zset(pairs, t)?
        }
        T_HASH => {
            let n = r.count(2)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let f = r.string()?;
                pairs.push((f, r.string()?));
            }
            hash(pairs, t)?
        }
        T_HASH_ZIPMAP => {
            let s = r.string()?;
            let pairs = listpack::zipmap(&s)?
                .into_iter()
                .map(|(f, v)| (Cow::Borrowed(f), Cow::Borrowed(v)))
                .collect();
            hash(pairs, t)?
        }
        T_HASH_ZIPLIST | T_HASH_LISTPACK => {
            let s = r.string()?;
            let elems = packed_pairs(
                ty == T_HASH_ZIPLIST,
                &s,
                "a hash's listpack has an odd length",
            )?;
            let pairs = elems
                .chunks_exact(2)
                .map(|p| (p[0].bytes(), p[1].bytes()))
                .collect();
            hash(pairs, t)?
        }
        T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 | T_STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(stream(r, ty)?))
        }
        _ => return Err("an unknown or unsupported value type"),
    })
}

fn set(members: Vec<Cow<[u8]>>, t: &Tunables) -> Res<Value> {
    if members.is_empty() {
        return Err("an empty set");
    }
    Ok(Value::Set(Box::new(Set::from_members(&members, t)?)))
}

fn zset(pairs: Vec<(Cow<[u8]>, f64)>, t: &Tunables) -> Res<Value> {
    Ok(Value::ZSet(Box::new(ZSet::from_pairs(
        pairs,
        t.zset_limits(),
    )?)))
}

/// A field and its value, borrowed from the payload or decoded from it.
type Pair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

fn hash(pairs: Vec<Pair>, t: &Tunables) -> Res<Value> {
    Ok(Value::Hash(Box::new(Hash::from_pairs(
        pairs,
        t.hash_limits(),
    )?)))
}

/// The elements of a packed blob: a ziplist (Redis before 7.0) or a listpack.
fn packed(ziplist: bool, blob: &[u8]) -> Res<Vec<Elem<'_>>> {
    if ziplist {
        listpack::ziplist(blob)
    } else {
        listpack::listpack(blob)
    }
}

/// The elements of a packed blob as pairs (field and value, member and score).
fn packed_pairs<'a>(ziplist: bool, blob: &'a [u8], what: &'static str) -> Res<Vec<Elem<'a>>> {
    let elems = packed(ziplist, blob)?;
    if elems.len() % 2 != 0 {
        return Err(what);
    }
    Ok(elems)
}

/// A stream: listpack nodes of entries, then its ids and counters, then its consumer groups.
fn stream(r: &mut Cur, ty: u8) -> Res<Stream> {
    let mut s = Stream::default();
    for _ in 0..r.count(2)? {
        let key = r.string()?;
        let master = raw_id(&key)?;
        let lp = r.string()?;
        let elems = listpack::listpack(&lp)?;
        stream_node(&mut s, master, &elems, lp.len() as u64)?;
    }
    s.check_nodes()?;
    let length = r.len()?;
    if length != s.entries.len() as u64 {
        return Err("a stream's length differs from its entries");
    }
    s.last_id = r.stream_id()?;
    if s.last_valid_id() > s.last_id {
        return Err("a stream entry is past the stream's last id");
    }
    if ty >= T_STREAM_LISTPACKS_2 {
        r.stream_id()?; // the first id: known from the entries
        s.max_deleted = r.stream_id()?;
        s.entries_added = r.len()?;
        if s.entries_added < length || s.entries_added > i64::MAX as u64 {
            return Err("a stream's count of added entries is out of range");
        }
    } else {
        // As Redis upgrades a version-1 stream: the length stands for what was added.
        s.entries_added = length;
    }
    for _ in 0..r.count(3)? {
        let name: Box<[u8]> = r.string()?.into();
        let mut g = Group {
            last_id: r.stream_id()?,
            ..Group::default()
        };
        g.entries_read = if ty >= T_STREAM_LISTPACKS_2 {
            Some(r.len()?).filter(|&n| n != u64::MAX)
        } else {
            s.entries_up_to(g.last_id)
        };
        for _ in 0..r.count(18)? {
            let id = r.raw_id()?;
            let nack = Nack {
                consumer: Box::default(),
                delivery_ms: r.u64_le()?,
                deliveries: r.len()?,
            };
            if nack.deliveries > i64::MAX as u64 {
                return Err("a delivery count is out of range");
            }
            if g.pel.insert(id, nack).is_some() {
                return Err("a pending entry appears twice");
            }
        }
        let mut owned = HashSet::new();
        for _ in 0..r.count(10)? {
            let cname: Box<[u8]> = r.string()?.into();
            let seen_ms = r.u64_le()?;
            let active_ms = if ty >= T_STREAM_LISTPACKS_3 {
                Some(r.u64_le()?).filter(|&t| t != u64::MAX)
            } else {
                Some(seen_ms)
            };
            let mut c = Consumer {
                seen_ms,
                active_ms,
                pel: Default::default(),
            };
            for _ in 0..r.count(16)? {
                let id = r.raw_id()?;
                let Some(nack) = g.pel.get_mut(&id) else {
                    return Err("a consumer's pending entry is not in its group's");
                };
                if !owned.insert(id) {
                    return Err("a pending entry has two consumers");
                }
                nack.consumer = cname.clone();
                c.pel.insert(id);
            }
            if g.consumers.insert(cname, c).is_some() {
                return Err("a consumer appears twice");
            }
        }
        if owned.len() != g.pel.len() {
            return Err("a pending entry has no consumer");
        }
        if s.groups.insert(name, g).is_some() {
            return Err("a consumer group appears twice");
        }
    }
    Ok(s)
}

const FLAG_DELETED: i64 = 1;
const FLAG_SAME_FIELDS: i64 = 2;

/// Adds one listpack node and its entries (`bytes`: the listpack's size).
fn stream_node(s: &mut Stream, master: StreamId, e: &[Elem], bytes: u64) -> Res<()> {
    let mut at = 0;
    let next = |at: &mut usize| -> Res<Elem> {
        let x = *e.get(*at).ok_or("a stream node ends mid-entry")?;
        *at += 1;
        Ok(x)
    };
    let count = next(&mut at)?.int()?;
    let deleted = next(&mut at)?.int()?;
    let nfields = next(&mut at)?.int()?;
    if !(0..=e.len() as i64).contains(&nfields) {
        return Err("a stream node's field count is wrong");
    }
    let mut master_fields = Vec::with_capacity(nfields as usize);
    for _ in 0..nfields {
        master_fields.push(next(&mut at)?.bytes());
    }
    if next(&mut at)?.int()? != 0 {
        return Err("a stream node's master entry is not terminated");
    }
    let (mut valid, mut gone) = (0i64, 0i64);
    let mut last: Option<StreamId> = None;
    while at < e.len() {
        let flags = next(&mut at)?.int()?;
        let ms = master.ms.wrapping_add(next(&mut at)?.int()? as u64);
        let seq = master.seq.wrapping_add(next(&mut at)?.int()? as u64);
        let id = StreamId::new(ms, seq);
        let mut fields = Vec::new();
        let n = if flags & FLAG_SAME_FIELDS != 0 {
            for f in &master_fields {
                fields.push(SmallBytes::new(f));
                fields.push(SmallBytes::new(&next(&mut at)?.bytes()));
            }
            master_fields.len() as i64 + 3
        } else {
            let n = next(&mut at)?.int()?;
            if !(0..=e.len() as i64).contains(&n) {
                return Err("a stream entry's field count is wrong");
            }
            for _ in 0..2 * n {
                fields.push(SmallBytes::new(&next(&mut at)?.bytes()));
            }
            2 * n + 4
        };
        if next(&mut at)?.int()? != n {
            return Err("a stream entry's element count is wrong");
        }
        if last.is_some_and(|l| l >= id) || id < master {
            return Err("stream entries are out of order");
        }
        last = Some(id);
        if flags & FLAG_DELETED != 0 {
            gone += 1;
            continue;
        }
        valid += 1;
        if s.last_valid_id() >= id && !s.entries.is_empty() {
            return Err("stream entries are out of order");
        }
        s.entries.insert(id, fields.into_boxed_slice());
    }
    if valid != count || gone != deleted {
        return Err("a stream node's counts differ from its entries");
    }
    let Some(last) = last else {
        return Err("an empty stream node");
    };
    let node = Node {
        live: valid as u64,
        deleted: gone as u64,
        fields: master_fields.iter().map(|f| SmallBytes::new(f)).collect(),
        last,
        bytes,
    };
    s.nodes.insert(master, node);
    Ok(())
}
