//! DUMP: a `Value` as Redis 7.0 serializes one (RDB version 10), in the plainest encodings it
//! loads.

use super::listpack::{self, Writer};
use super::*;
use crate::db::Value;
use crate::types::stream::{Stream, StreamId};

/// The DUMP payload of `value`: type, value, RDB version, CRC64.
pub fn dump(value: &Value) -> Vec<u8> {
    let mut w = Vec::new();
    match value {
        Value::Str(s) => {
            w.push(T_STRING);
            put_string(&mut w, s);
        }
        Value::List(l) => {
            w.push(T_LIST);
            put_len(&mut w, l.len() as u64);
            for e in l.iter() {
                put_string(&mut w, e);
            }
        }
        Value::Set(s) => {
            w.push(T_SET);
            put_len(&mut w, s.len() as u64);
            s.for_each(|m| put_string(&mut w, m));
        }
        Value::ZSet(z) => {
            w.push(T_ZSET_2);
            let all = z.members_and_scores();
            put_len(&mut w, all.len() as u64);
            for (m, s) in all {
                put_string(&mut w, &m);
                w.extend_from_slice(&s.to_le_bytes());
            }
        }
        Value::Hash(h) => {
            w.push(T_HASH);
            put_len(&mut w, h.len() as u64);
            for (f, v) in h.iter() {
                put_string(&mut w, f);
                put_string(&mut w, v);
            }
        }
        Value::Stream(s) => {
            w.push(T_STREAM_LISTPACKS_2);
            put_stream(&mut w, s);
        }
    }
    w.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&w);
    w.extend_from_slice(&crc.to_le_bytes());
    w
}

/// FUNCTION DUMP's payload: each library's code as an `RDB_OPCODE_FUNCTION2` record, then the
/// RDB version and CRC64, as Redis 7.0 writes it (uncompressed).
pub fn dump_functions<'a>(codes: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut w = Vec::new();
    for code in codes {
        w.push(OPCODE_FUNCTION2);
        put_len(&mut w, code.len() as u64);
        w.extend_from_slice(code);
    }
    w.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&w);
    w.extend_from_slice(&crc.to_le_bytes());
    w
}

/// A string, in an integer encoding when it is the canonical form of a 32-bit integer (as
/// Redis's `rdbTryIntegerEncoding`).
fn put_string(w: &mut Vec<u8>, s: &[u8]) {
    let int = (s.len() <= 11).then(|| listpack::as_int(s)).flatten();
    if let Some(n) = int {
        let code = LEN_ENCODED << 6;
        if let Ok(n) = i8::try_from(n) {
            w.push(code | ENC_INT8 as u8);
            w.push(n as u8);
            return;
        } else if let Ok(n) = i16::try_from(n) {
            w.push(code | ENC_INT16 as u8);
            w.extend_from_slice(&n.to_le_bytes());
            return;
        } else if let Ok(n) = i32::try_from(n) {
            w.push(code | ENC_INT32 as u8);
            w.extend_from_slice(&n.to_le_bytes());
            return;
        }
    }
    put_len(w, s.len() as u64);
    w.extend_from_slice(s);
}

fn put_id(w: &mut Vec<u8>, id: StreamId) {
    put_len(w, id.ms);
    put_len(w, id.seq);
}

fn raw_id(id: StreamId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.ms.to_be_bytes());
    b[8..].copy_from_slice(&id.seq.to_be_bytes());
    b
}

fn put_stream(w: &mut Vec<u8>, s: &Stream) {
    let nodes = stream_nodes(s);
    put_len(w, nodes.len() as u64);
    for (master, lp) in &nodes {
        put_string(w, &raw_id(*master));
        put_string(w, lp);
    }
    put_len(w, s.len() as u64);
    put_id(w, s.last_id);
    put_id(w, s.first_id());
    put_id(w, s.max_deleted);
    put_len(w, s.entries_added);
    put_len(w, s.groups.len() as u64);
    for (name, g) in &s.groups {
        put_string(w, name);
        put_id(w, g.last_id);
        put_len(w, g.entries_read.unwrap_or(u64::MAX));
        put_len(w, g.pel.len() as u64);
        for (id, nack) in &g.pel {
            w.extend_from_slice(&raw_id(*id));
            w.extend_from_slice(&nack.delivery_ms.to_le_bytes());
            put_len(w, nack.deliveries);
        }
        put_len(w, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            put_string(w, cname);
            w.extend_from_slice(&c.seen_ms.to_le_bytes());
            put_len(w, c.pel.len() as u64);
            for id in &c.pel {
                w.extend_from_slice(&raw_id(*id));
            }
        }
    }
}

/// The entries as Redis's listpack nodes, in the stream's own node layout: a master entry
/// (count, deleted, the node's field names), then each entry relative to the master id,
/// `SAME_FIELDS` when its field names are the master's. Deleted entries are not kept here, so
/// a node is written with its live entries only (a node with none is left out).
fn stream_nodes(s: &Stream) -> Vec<(StreamId, Vec<u8>)> {
    let mut nodes = Vec::new();
    for (&master, node) in &s.nodes {
        if node.live == 0 {
            continue;
        }
        let names = &node.fields;
        let mut lp = Writer::default();
        lp.int(node.live as i64);
        lp.int(0);
        lp.int(names.len() as i64);
        for n in names.iter() {
            lp.str(n);
        }
        lp.int(0);
        for (&id, fields) in s.entries.range(master..=node.last) {
            let same = fields.len() == names.len() * 2
                && fields.chunks(2).zip(names.iter()).all(|(p, n)| p[0] == *n);
            lp.int(if same { 2 } else { 0 });
            lp.int(id.ms.wrapping_sub(master.ms) as i64);
            lp.int(id.seq.wrapping_sub(master.seq) as i64);
            if same {
                for p in fields.chunks(2) {
                    lp.str(p.get(1).map_or(&[][..], |v| v));
                }
                lp.int(names.len() as i64 + 3);
            } else {
                let pairs = fields.len() / 2;
                lp.int(pairs as i64);
                for f in fields.iter().take(pairs * 2) {
                    lp.str(f);
                }
                lp.int(pairs as i64 * 2 + 4);
            }
        }
        nodes.push((master, lp.finish()));
    }
    nodes
}
