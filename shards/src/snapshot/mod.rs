//! Snapshots of a vShard: every live key with its expiry and value, in a versioned, checksummed
//! byte format (issue 3: the state a Raft snapshot carries, installed in chunks on a replica that
//! fell behind, and what lets the log be truncated). Values are written by content, not by
//! encoding: a loaded collection is rebuilt through the normal inserts, so it takes the encoding
//! the current thresholds give. Access metadata (LRU/LFU) is node-local and not included.
//!
//! Layout: `magic: 8 | version: u32 | vshard: u16 | keys: u64 | entries... | crc32c: u32` where an
//! entry is `key | expire_at_ms: u64 (0: none) | type: u8 | value`, byte strings are a LEB128
//! length then the bytes, and integers are little-endian. Version 2 adds a stream's listpack
//! node layout (`types::stream::nodes`), which approximate trimming reads; a version 1
//! snapshot gets one laid out as if its entries had been appended in order. Version 3 ends the
//! entries with `calvin_next: u64` (the vShard's Calvin position; older snapshots: 0) and the
//! reads it keeps for other participants (`calvin_sent`: count, then per transaction its
//! number, a count and per read `key | 0`, or `key | 1 | expire_at_ms | payload`).

use crate::bytes::SmallBytes;
use crate::db::{Tunables, VShard, Value};
use crate::slot::VShardId;
use crate::types::stream::{Consumer, Group, Nack, Node, Stream, StreamId};
use crate::types::{Hash, List, Set, ZSet};
use shardline_transport::wire::{Reader, WireError, put_bytes_varint, put_varint};

pub mod capture;
pub use capture::{Capture, Captured};

const MAGIC: [u8; 8] = *b"SLSNAP\0\x01";
const VERSION: u32 = 3;

const T_STR: u8 = 1;
const T_HASH: u8 = 2;
const T_LIST: u8 = 3;
const T_SET: u8 = 4;
const T_ZSET: u8 = 5;
const T_STREAM: u8 = 6;

/// Why snapshot bytes were refused (nothing was installed).
#[derive(Debug, PartialEq, Eq)]
pub struct SnapshotError {
    pub offset: usize,
    pub reason: &'static str,
}

struct W(Vec<u8>);

impl W {
    fn varint(&mut self, n: u64) {
        put_varint(&mut self.0, n);
    }

    fn bytes(&mut self, b: &[u8]) {
        put_bytes_varint(&mut self.0, b);
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn id(&mut self, id: StreamId) {
        self.u64(id.ms);
        self.u64(id.seq);
    }
}

/// Encodes the live keys of `vs` at `now_ms`.
pub fn encode(vs: &VShard, now_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + vs.len() * 48);
    encode_to(vs, now_ms, usize::MAX, &mut |b: &[u8]| {
        out.extend_from_slice(b);
        Ok(())
    })
    .expect("a Vec takes every piece");
    out
}

/// Encodes the live keys of `vs` at `now_ms` into `sink` a piece of about `piece` bytes at a
/// time; the bytes written. The same walk as a [`Capture`] of a vShard that does not change
/// meanwhile (and so the same bytes as one), with the key count known first.
pub fn encode_to(
    vs: &VShard,
    now_ms: u64,
    piece: usize,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let live = |expire: u64| expire == 0 || expire > now_ms;
    let expired = vs.expires.iter().filter(|(_, e)| !live(**e)).count();
    let count = (vs.len() - expired) as u64;
    let mut crc = 0u32;
    let mut written = 0u64;
    let mut flush = |b: &[u8]| -> std::io::Result<()> {
        crc = crc32c::crc32c_append(crc, b);
        written += b.len() as u64;
        sink(b)
    };
    flush(&capture::header(vs.id, count))?;
    let mut c = Capture::new(vs, now_ms, 0);
    c.write_unchanging(vs, piece, &mut flush)?;
    let whole = c.finish();
    debug_assert_eq!(whole.count, count);
    flush(&whole.tail)?;
    let sum = crc.to_le_bytes();
    sink(&sum)?;
    Ok(written + 4)
}

/// The Calvin state after the entries (version 3).
fn tail_into(w: &mut W, vs: &VShard) {
    w.u64(vs.calvin_next);
    w.varint(vs.calvin_sent.len() as u64);
    for (seq, reads) in &vs.calvin_sent {
        w.u64(*seq);
        w.varint(reads.len() as u64);
        for r in reads {
            w.bytes(&r.key);
            match &r.value {
                None => w.0.push(0),
                Some((at, payload)) => {
                    w.0.push(1);
                    w.u64(at.unwrap_or(0));
                    w.bytes(payload);
                }
            }
        }
    }
}

fn value_into(w: &mut W, value: &Value) {
    match value {
        Value::Str(s) => {
            w.0.push(T_STR);
            w.bytes(s);
        }
        Value::Hash(h) => {
            w.0.push(T_HASH);
            w.varint(h.len() as u64);
            for (f, v) in h.iter() {
                w.bytes(f);
                w.bytes(v);
            }
        }
        Value::List(l) => {
            w.0.push(T_LIST);
            w.varint(l.len() as u64);
            for e in l.iter() {
                w.bytes(e);
            }
        }
        Value::Set(s) => {
            w.0.push(T_SET);
            w.varint(s.len() as u64);
            s.for_each(|m| w.bytes(m));
        }
        Value::ZSet(z) => {
            w.0.push(T_ZSET);
            let all = z.members_and_scores();
            w.varint(all.len() as u64);
            for (m, s) in all {
                w.bytes(&m);
                w.u64(s.to_bits());
            }
        }
        Value::Stream(s) => {
            w.0.push(T_STREAM);
            stream_into(w, s);
        }
    }
}

fn stream_into(w: &mut W, s: &Stream) {
    w.varint(s.entries.len() as u64);
    for (id, fields) in &s.entries {
        w.id(*id);
        w.varint(fields.len() as u64);
        for f in fields.iter() {
            w.bytes(f);
        }
    }
    w.id(s.last_id);
    w.id(s.max_deleted);
    w.u64(s.entries_added);
    w.varint(s.nodes.len() as u64);
    for (master, n) in &s.nodes {
        w.id(*master);
        w.varint(n.live);
        w.varint(n.deleted);
        w.id(n.last);
        w.u64(n.bytes);
        w.varint(n.fields.len() as u64);
        for f in n.fields.iter() {
            w.bytes(f);
        }
    }
    w.varint(s.groups.len() as u64);
    for (name, g) in &s.groups {
        w.bytes(name);
        w.id(g.last_id);
        w.u64(g.entries_read.map_or(u64::MAX, |n| n));
        w.varint(g.pel.len() as u64);
        for (id, n) in &g.pel {
            w.id(*id);
            w.bytes(&n.consumer);
            w.u64(n.delivery_ms);
            w.u64(n.deliveries);
        }
        w.varint(g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            w.bytes(cname);
            w.u64(c.seen_ms);
            w.u64(c.active_ms.map_or(u64::MAX, |t| t));
        }
    }
}

impl From<WireError> for SnapshotError {
    fn from(e: WireError) -> Self {
        SnapshotError {
            offset: e.offset,
            reason: e.what(),
        }
    }
}

/// The wire reader with this format's pieces: varint counts and strings, stream ids.
struct R<'a> {
    r: Reader<'a>,
    /// The snapshot's format version.
    version: u32,
}

impl<'a> R<'a> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, SnapshotError> {
        Err(SnapshotError {
            offset: self.r.offset(),
            reason,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        Ok(self.r.take(n)?)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.r.u8()?)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(self.r.u64()?)
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        Ok(self.r.varint()?)
    }

    /// A count of items each taking at least `min` bytes: bounded by what is left, so a corrupt
    /// count cannot make us allocate.
    fn count(&mut self, min: usize) -> Result<usize, SnapshotError> {
        let n = self.r.varint()?;
        Ok(self.r.count(n, min)?)
    }

    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        Ok(self.r.bytes_varint()?)
    }

    fn id(&mut self) -> Result<StreamId, SnapshotError> {
        Ok(StreamId::new(self.u64()?, self.u64()?))
    }
}

/// Bytes of a snapshot's header: magic, version, vShard, key count.
pub const HEADER_BYTES: usize = 8 + 4 + 2 + 8;

/// Decodes a snapshot into a vShard, rebuilding collections under `t`'s encoding thresholds:
/// the whole blob at once (its checksum first), through the `Decoder` bytes in pieces use.
pub fn decode(b: &[u8], t: &Tunables) -> Result<VShard, SnapshotError> {
    if b.len() < HEADER_BYTES + 4 {
        return Err(SnapshotError {
            offset: 0,
            reason: "shorter than a snapshot header",
        });
    }
    let body = &b[..b.len() - 4];
    if crc32c::crc32c(body) != u32::from_le_bytes(b[b.len() - 4..].try_into().expect("4")) {
        return Err(SnapshotError {
            offset: b.len() - 4,
            reason: "checksum mismatch",
        });
    }
    let mut d = Decoder::new(b.len() as u64, t)?;
    d.crc_known = true;
    d.feed(b)?;
    d.finish()
}

/// Where a `Decoder` is in the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Header,
    /// Entries still to come.
    Entries(u64),
    /// The Calvin state after the entries (version 3), read once every byte is here.
    Tail,
    Done,
}

/// Decodes a snapshot whose bytes arrive in pieces of any size (a base copy as it comes off
/// its lane, a file read a piece at a time; issue 19, step 3): each whole entry goes into the
/// vShard as soon as its bytes are here, so the bytes are never held whole. A piece that ends
/// inside an entry keeps that entry's bytes until the rest comes, and the entry is parsed
/// again only once they have doubled (a value of hundreds of MiB arriving in 4 MiB pieces is
/// parsed a handful of times: linear work overall). A failure that only says "more bytes are
/// needed" waits while bytes are still to come; any other refuses at once.
pub struct Decoder {
    t: Tunables,
    total: u64,
    fed: u64,
    /// The offset of `pending[0]` in the snapshot.
    at: u64,
    pending: Vec<u8>,
    /// `pending` is parsed again once it holds this many bytes (or every byte is here).
    wait_for: usize,
    crc: u32,
    /// The whole input's checksum was checked before (`decode`).
    crc_known: bool,
    /// The checksum's bytes, the snapshot's last four.
    sum: [u8; 4],
    /// Bytes handed to `parse`, counting each attempt (the tests bound the work).
    parsed: u64,
    version: u32,
    phase: Phase,
    vs: VShard,
}

/// Whether a parse failed only for want of bytes (a piece ended inside the field).
fn needs_more(e: &SnapshotError) -> bool {
    use shardline_transport::wire::WireErrorKind::{Length, Short};
    e.reason == Short.what() || e.reason == Length.what()
}

impl Decoder {
    /// A decoder of a snapshot of `total` bytes.
    pub fn new(total: u64, t: &Tunables) -> Result<Decoder, SnapshotError> {
        if total < (HEADER_BYTES + 4) as u64 {
            return Err(SnapshotError {
                offset: 0,
                reason: "shorter than a snapshot header",
            });
        }
        Ok(Decoder {
            t: *t,
            total,
            fed: 0,
            at: 0,
            pending: Vec::new(),
            wait_for: 0,
            crc: 0,
            crc_known: false,
            sum: [0; 4],
            parsed: 0,
            version: 0,
            phase: Phase::Header,
            vs: VShard::new(VShardId(0)),
        })
    }

    /// Bytes taken so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Bytes held for an entry not yet whole.
    pub fn pending_bytes(&self) -> usize {
        self.pending.capacity()
    }

    /// The snapshot's next bytes: every entry they complete is decoded.
    pub fn feed(&mut self, b: &[u8]) -> Result<(), SnapshotError> {
        let end = self.fed + b.len() as u64;
        if end > self.total {
            return Err(SnapshotError {
                offset: self.total as usize,
                reason: "longer than the snapshot's length",
            });
        }
        let body_end = self.total - 4;
        let n = body_end.saturating_sub(self.fed).min(b.len() as u64) as usize;
        let (body, sum) = b.split_at(n);
        let sum_at = (self.fed + n as u64).saturating_sub(body_end) as usize;
        self.sum[sum_at..sum_at + sum.len()].copy_from_slice(sum);
        if !self.crc_known {
            self.crc = crc32c::crc32c_append(self.crc, body);
        }
        self.fed = end;
        let whole = end == self.total;
        if self.pending.is_empty() {
            // Straight from the piece; what is left of it is an entry's beginning.
            let used = self.parse(body, whole)?;
            self.at += used as u64;
            self.pending.extend_from_slice(&body[used..]);
        } else {
            self.pending.extend_from_slice(body);
            if whole || self.pending.len() >= self.wait_for {
                let held = std::mem::take(&mut self.pending);
                let used = self.parse(&held, whole);
                self.pending = held;
                let used = used?;
                self.at += used as u64;
                self.pending.drain(..used);
                if self.pending.is_empty() {
                    self.pending = Vec::new(); // a large entry's room, given back
                }
            }
        }
        Ok(())
    }

    /// Every byte fed: the vShard, if they were a whole snapshot whose checksum holds.
    pub fn finish(self) -> Result<VShard, SnapshotError> {
        if self.fed != self.total || self.phase != Phase::Done {
            return Err(SnapshotError {
                offset: self.fed as usize,
                reason: "a field runs past the end",
            });
        }
        if !self.crc_known && self.crc != u32::from_le_bytes(self.sum) {
            return Err(SnapshotError {
                offset: (self.total - 4) as usize,
                reason: "checksum mismatch",
            });
        }
        Ok(self.vs)
    }

    /// Decodes what `buf` (the bytes from `at` on) completes; returns the bytes used.
    fn parse(&mut self, buf: &[u8], whole: bool) -> Result<usize, SnapshotError> {
        self.parsed += buf.len() as u64;
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let mut r = R {
                r: Reader::new(rest),
                version: self.version,
            };
            let res = match self.phase {
                Phase::Header => self.header(&mut r),
                Phase::Entries(0) => {
                    self.phase = if self.version >= 3 {
                        Phase::Tail
                    } else {
                        Phase::Done
                    };
                    continue;
                }
                Phase::Entries(n) => self.entry(&mut r).map(|()| {
                    self.phase = Phase::Entries(n - 1);
                }),
                Phase::Tail if !whole => {
                    self.wait_for = usize::MAX;
                    return Ok(pos);
                }
                Phase::Tail => self.tail(&mut r),
                Phase::Done if rest.is_empty() => return Ok(pos),
                Phase::Done => r.fail("trailing bytes"),
            };
            match res {
                Ok(()) => pos += r.r.offset(),
                Err(e) if !whole && needs_more(&e) => {
                    self.wait_for = rest.len().saturating_mul(2).max(rest.len() + 1);
                    return Ok(pos);
                }
                Err(mut e) => {
                    e.offset += self.at as usize + pos;
                    return Err(e);
                }
            }
        }
    }

    fn header(&mut self, r: &mut R) -> Result<(), SnapshotError> {
        if r.take(8)? != MAGIC {
            return r.fail("not a Shardline snapshot");
        }
        let version = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
        if !(1..=VERSION).contains(&version) {
            return r.fail("unsupported snapshot version");
        }
        let id = VShardId(u16::from_le_bytes(r.take(2)?.try_into().expect("2")));
        let keys = r.u64()?;
        self.version = version;
        self.vs = VShard::new(id);
        self.phase = Phase::Entries(keys);
        Ok(())
    }

    fn entry(&mut self, r: &mut R) -> Result<(), SnapshotError> {
        let key = r.bytes()?;
        let expire = r.u64()?;
        let value = value_from(r, &self.t)?;
        if self.vs.keys.insert(key, value).is_some() {
            return r.fail("a key appears twice");
        }
        if expire != 0 {
            self.vs.expires.insert(key, expire);
        }
        Ok(())
    }

    /// Version 3's Calvin state: the vShard's position and the reads kept for others.
    fn tail(&mut self, r: &mut R) -> Result<(), SnapshotError> {
        self.vs.calvin_next = r.u64()?;
        for _ in 0..r.count(8 + 1)? {
            let seq = r.u64()?;
            let mut reads = Vec::new();
            for _ in 0..r.count(2)? {
                let key = r.bytes()?.to_vec();
                let value = match r.u8()? {
                    0 => None,
                    1 => {
                        let at = r.u64()?;
                        Some(((at != 0).then_some(at), r.bytes()?.to_vec()))
                    }
                    _ => return r.fail("a Calvin read's flag is neither 0 nor 1"),
                };
                reads.push(crate::calvin::exec::Read { key, value });
            }
            if self.vs.calvin_sent.insert(seq, reads).is_some() {
                return r.fail("a Calvin transaction's reads appear twice");
            }
        }
        self.phase = Phase::Done;
        Ok(())
    }
}

fn value_from(r: &mut R, t: &Tunables) -> Result<Value, SnapshotError> {
    Ok(match r.u8()? {
        T_STR => Value::Str(SmallBytes::new(r.bytes()?)),
        T_HASH => {
            let n = r.count(2)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.bytes()?, r.bytes()?));
            }
            match Hash::from_pairs(pairs, t.hash_limits()) {
                Ok(h) => Value::Hash(Box::new(h)),
                Err(reason) => return r.fail(reason),
            }
        }
        T_LIST => {
            let mut l = List::default();
            for _ in 0..r.count(1)? {
                l.push_back(r.bytes()?, t);
            }
            Value::List(Box::new(l))
        }
        T_SET => {
            let n = r.count(1)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                members.push(r.bytes()?);
            }
            match Set::from_members(&members, t) {
                Ok(s) => Value::Set(Box::new(s)),
                Err(reason) => return r.fail(reason),
            }
        }
        T_ZSET => {
            let n = r.count(9)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.bytes()?, f64::from_bits(r.u64()?)));
            }
            match ZSet::from_pairs(pairs, t.zset_limits()) {
                Ok(z) => Value::ZSet(Box::new(z)),
                Err(reason) => return r.fail(reason),
            }
        }
        T_STREAM => Value::Stream(Box::new(stream_from(r, t)?)),
        _ => return r.fail("unknown value type"),
    })
}

fn stream_from(r: &mut R, t: &Tunables) -> Result<Stream, SnapshotError> {
    let mut s = Stream::default();
    for _ in 0..r.count(17)? {
        let id = r.id()?;
        let n = r.count(1)?;
        if n % 2 != 0 {
            return r.fail("a stream entry with an odd number of fields and values");
        }
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(SmallBytes::new(r.bytes()?));
        }
        s.entries.insert(id, fields.into_boxed_slice());
    }
    s.last_id = r.id()?;
    s.max_deleted = r.id()?;
    s.entries_added = r.u64()?;
    if r.version == 1 {
        s.rebuild_nodes(t.stream_limits());
    } else {
        for _ in 0..r.count(43)? {
            let master = r.id()?;
            let (live, deleted, last, bytes) = (r.varint()?, r.varint()?, r.id()?, r.u64()?);
            let n = r.count(1)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                fields.push(SmallBytes::new(r.bytes()?));
            }
            let node = Node {
                live,
                deleted,
                fields: fields.into_boxed_slice(),
                last,
                bytes,
            };
            if s.nodes.insert(master, node).is_some() {
                return r.fail("a stream node appears twice");
            }
        }
        if let Err(reason) = s.check_nodes() {
            return r.fail(reason);
        }
    }
    for _ in 0..r.count(1)? {
        let name: Box<[u8]> = r.bytes()?.into();
        let mut g = Group {
            last_id: r.id()?,
            entries_read: Some(r.u64()?).filter(|&n| n != u64::MAX),
            ..Group::default()
        };
        for _ in 0..r.count(33)? {
            let id = r.id()?;
            let consumer: Box<[u8]> = r.bytes()?.into();
            let nack = Nack {
                consumer,
                delivery_ms: r.u64()?,
                deliveries: r.u64()?,
            };
            g.pel.insert(id, nack);
        }
        for _ in 0..r.count(17)? {
            let cname: Box<[u8]> = r.bytes()?.into();
            let c = Consumer {
                seen_ms: r.u64()?,
                active_ms: Some(r.u64()?).filter(|&t| t != u64::MAX),
                pel: Default::default(),
            };
            g.consumers.insert(cname, c);
        }
        // A consumer's own PEL is the group PEL's entries that name it.
        for (id, n) in &g.pel {
            match g.consumers.get_mut(&n.consumer) {
                Some(c) => {
                    c.pel.insert(*id);
                }
                None => return r.fail("a pending entry names a missing consumer"),
            }
        }
        s.groups.insert(name, g);
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
