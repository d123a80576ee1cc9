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
    let mut w = W(Vec::with_capacity(64 + vs.len() * 48));
    w.0.extend_from_slice(&MAGIC);
    w.0.extend_from_slice(&VERSION.to_le_bytes());
    w.0.extend_from_slice(&vs.id.0.to_le_bytes());
    let count_at = w.0.len();
    w.u64(0);
    let mut count = 0u64;
    for (key, value) in vs.keys.iter() {
        let expire = vs.expires.get(key).copied().unwrap_or(0);
        if expire != 0 && expire <= now_ms {
            continue;
        }
        count += 1;
        w.bytes(key);
        w.u64(expire);
        value_into(&mut w, value);
    }
    w.0[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
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
    let crc = crc32c::crc32c(&w.0);
    w.0.extend_from_slice(&crc.to_le_bytes());
    w.0
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

/// Decodes a snapshot into a vShard, rebuilding collections under `t`'s encoding thresholds.
pub fn decode(b: &[u8], t: &Tunables) -> Result<VShard, SnapshotError> {
    if b.len() < MAGIC.len() + 4 + 2 + 8 + 4 {
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
    let mut r = R {
        r: Reader::new(body),
        version: 0,
    };
    if r.take(8)? != MAGIC {
        return r.fail("not a Shardline snapshot");
    }
    r.version = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
    if !(1..=VERSION).contains(&r.version) {
        return r.fail("unsupported snapshot version");
    }
    let id = VShardId(u16::from_le_bytes(r.take(2)?.try_into().expect("2")));
    let keys = r.u64()?;
    let mut vs = VShard::new(id);
    for _ in 0..keys {
        let key = r.bytes()?;
        let expire = r.u64()?;
        let value = value_from(&mut r, t)?;
        if vs.keys.insert(key, value).is_some() {
            return r.fail("a key appears twice");
        }
        if expire != 0 {
            vs.expires.insert(key, expire);
        }
    }
    if r.version >= 3 {
        vs.calvin_next = r.u64()?;
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
            if vs.calvin_sent.insert(seq, reads).is_some() {
                return r.fail("a Calvin transaction's reads appear twice");
            }
        }
    }
    if !r.r.is_empty() {
        return r.fail("trailing bytes");
    }
    Ok(vs)
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
mod tests {
    use super::*;
    use crate::command::testing::*;

    fn install(h: &mut Harness, bytes: &[u8]) {
        let t = h.db.tunables;
        let vs = decode(bytes, &t).unwrap();
        h.db.install(vs);
    }

    #[test]
    fn every_type_round_trips_with_expiry_and_stream_groups() {
        let mut h = Harness::new();
        // All keys share a hashtag: one slot, one vShard.
        h.run("SET {k}s hello PX 100000");
        h.run("SET {k}n 12345");
        h.run("HSET {k}h a 1 b 2");
        h.run("RPUSH {k}l x y z");
        h.run("SADD {k}i 3 1 2");
        h.run("SADD {k}t a b c");
        h.run("ZADD {k}z 1.5 a -inf b 3 c");
        h.run("XADD {k}x 1-1 f v");
        h.run("XADD {k}x 2-1 f w");
        h.run("XGROUP CREATE {k}x g 0");
        h.run("XREADGROUP GROUP g alice COUNT 1 STREAMS {k}x >");
        h.run("XGROUP CREATECONSUMER {k}x g bob");
        h.run("SET {k}gone v PX 5");
        // A stream of several nodes, with deleted entries and an exact trim inside a node.
        for i in 1..=260 {
            h.run(&format!(
                "XADD {{k}}y {i}-0 f {} g {}",
                "x".repeat(i % 90),
                i * 1000
            ));
        }
        h.run("XDEL {k}y 5-0 150-0");
        h.run("XTRIM {k}y MINID = 40-0");
        let keys = [
            "{k}s", "{k}n", "{k}h", "{k}l", "{k}i", "{k}t", "{k}z", "{k}x", "{k}gone", "{k}y",
        ];
        h.now_ms += 10;
        let before = contents(&mut h, &keys);
        let nodes = |h: &mut Harness| match h.db.peek(b"{k}y") {
            Some(Value::Stream(s)) => s.nodes.clone(),
            _ => panic!("no stream"),
        };
        let layout = nodes(&mut h);
        assert!(layout.len() > 3);
        let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{k}s"));
        let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
        h.run("FLUSHALL");
        install(&mut h, &bytes);
        assert_eq!(contents(&mut h, &keys), before);
        assert_eq!(nodes(&mut h), layout);
        assert_eq!(h.run("OBJECT ENCODING {k}i"), bulk("intset"));
    }

    /// Random keyspaces of every type (and sizes on both sides of the encoding thresholds)
    /// survive a snapshot round trip.
    #[test]
    fn random_keyspaces_round_trip() {
        let mut x = 0xC0FF_EE11u64;
        for round in 0..30 {
            let mut h = Harness::new();
            h.db.tunables.hash_max_listpack_entries = 4;
            h.db.tunables.zset_max_listpack_entries = 4;
            h.db.tunables.set_max_listpack_entries = 4;
            h.db.tunables.list_max_listpack_size = 4;
            let mut keys = Vec::new();
            for step in 0..200u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = format!("{{r}}k{}", x % 12);
                let m = format!("m{}", (x >> 8) % 9);
                let cmd = match (x >> 16) % 6 {
                    0 => format!("SET {k} v{step}"),
                    1 => format!("HSET {k}h {m} {step}"),
                    2 => format!("RPUSH {k}l {m}"),
                    3 => format!("SADD {k}s {m} {}", step % 7),
                    4 => format!("ZADD {k}z {} {m}", step % 5),
                    _ => format!("XADD {k}x * {m} {step}"),
                };
                h.run(&cmd);
                let key = cmd.split_whitespace().nth(1).unwrap().to_string();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let before = contents(&mut h, &key_refs);
            let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{r}"));
            let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
            h.run("FLUSHALL");
            install(&mut h, &bytes);
            assert_eq!(contents(&mut h, &key_refs), before, "round {round}");
        }
    }

    /// A snapshot of the first format (written by the build before stream nodes were tracked,
    /// kept in `shards/tests/golden/`) still installs: its streams get a node layout.
    #[test]
    fn a_version_1_snapshot_installs_with_stream_nodes_laid_out() {
        let v1 = include_bytes!("../tests/golden/snapshot-v1.bin");
        assert_eq!(&v1[8..12], &1u32.to_le_bytes());
        let mut h = Harness::new();
        install(&mut h, v1);
        let mut fresh = Harness::new();
        for i in 1..=250 {
            let f = if i % 3 == 0 {
                "f v other w"
            } else {
                "f v g 12"
            };
            fresh.run(&format!("XADD {{k}}x {i}-1 {f}"));
        }
        fresh.run("XDEL {k}x 2-1 100-1");
        fresh.run("XGROUP CREATE {k}x g 0");
        fresh.run("XREADGROUP GROUP g alice COUNT 3 STREAMS {k}x >");
        fresh.run("SET {k}s hello");
        let keys = ["{k}x", "{k}s"];
        assert_eq!(contents(&mut h, &keys), contents(&mut fresh, &keys));
        let Some(Value::Stream(s)) = h.db.peek(b"{k}x") else {
            panic!("no stream");
        };
        assert_eq!(s.check_nodes(), Ok(()));
        assert_eq!(s.nodes.len(), 3);
        // Approximate trimming works on the laid-out nodes.
        assert_eq!(h.run("XTRIM {k}x MAXLEN ~ 100"), int(100));
    }

    /// Found by the `snapshot_decode` fuzz target: a well-checksummed format-1 snapshot whose
    /// stream entry has an odd number of fields and values panicked laying out its nodes.
    #[test]
    fn a_stream_entry_with_an_odd_field_count_is_refused() {
        let mut w = W(Vec::new());
        w.0.extend_from_slice(&MAGIC);
        w.0.extend_from_slice(&1u32.to_le_bytes());
        w.0.extend_from_slice(&0u16.to_le_bytes());
        w.u64(1);
        w.bytes(b"s");
        w.u64(0);
        w.0.push(T_STREAM);
        w.varint(1);
        w.id(StreamId::new(1, 1));
        w.varint(1);
        w.bytes(b"lonely-field");
        w.id(StreamId::new(1, 1));
        w.id(StreamId::MIN);
        w.u64(1);
        w.varint(0);
        let crc = crc32c::crc32c(&w.0);
        w.0.extend_from_slice(&crc.to_le_bytes());
        let err = decode(&w.0, &Tunables::default()).err().expect("refused");
        assert_eq!(
            err.reason,
            "a stream entry with an odd number of fields and values"
        );
    }

    #[test]
    fn damaged_snapshots_are_refused_never_installed() {
        let mut h = Harness::new();
        for i in 0..50 {
            h.run(&format!("HSET {{k}}h{i} f{i} {i}"));
        }
        let vid = h.db.layout().vshard_of(crate::slot::key_slot(b"{k}"));
        let bytes = encode(h.db.vshard(vid).unwrap(), h.now_ms);
        let t = h.db.tunables;
        assert!(decode(&bytes, &t).is_ok());
        for i in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(decode(&b, &t).is_err(), "flip at {i}");
        }
        for cut in [0, 10, bytes.len() - 5] {
            assert!(decode(&bytes[..cut], &t).is_err(), "cut at {cut}");
        }
        // A well-checksummed snapshot that lies about its counts is refused, not allocated for.
        let mut lie = bytes[..bytes.len() - 4].to_vec();
        lie[14..22].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&lie);
        lie.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&lie, &t).is_err());
    }
}
