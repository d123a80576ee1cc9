//! Redis's listpack nodes of a stream, tracked by their counts and exact byte sizes (not their
//! bytes), so approximate trimming (`~`) removes exactly the whole nodes Redis 7.0 removes.
//!
//! Redis appends an entry to the last node unless that node's listpack would reach
//! `stream-node-max-bytes` or it holds `stream-node-max-entries` entries (deleted ones count);
//! a new node's master entry holds the first entry's field names, and an entry with the same
//! names stores only its values. XDEL marks an entry deleted and removes the node with its last
//! live entry; trimming removes whole nodes from the head, and an exact trim marks entries of
//! the first node it cannot remove whole. Each node here keeps its live and deleted counts, its
//! master field names, the id of its last entry (deleted or not) and its listpack's size, which
//! is all those decisions read. The layout is replicated state: it travels in snapshots.

use super::{Fields, Stream, StreamId};
use crate::bytes::SmallBytes;
use crate::rdb::listpack::{OVERHEAD, int_size, str_size};

/// Redis's `STREAM_LISTPACK_MAX_SIZE`: the bound on a node's bytes whatever the configuration.
const MAX_NODE_BYTES: u64 = 1 << 30;

const FLAG_SAME_FIELDS: i64 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Entries present (Redis's master `count`).
    pub live: u64,
    /// Entries marked deleted, still in the listpack.
    pub deleted: u64,
    /// The master entry's field names.
    pub fields: Box<[SmallBytes]>,
    /// The last entry's id, deleted or not.
    pub last: StreamId,
    /// The listpack's size in bytes.
    pub bytes: u64,
}

/// The node limits a stream append obeys (`stream-node-max-bytes`, `stream-node-max-entries`;
/// 0 is no limit).
#[derive(Clone, Copy, Debug)]
pub struct NodeLimits {
    pub bytes: u64,
    pub entries: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            bytes: 4096,
            entries: 100,
        }
    }
}

fn master_size(names: &[&[u8]]) -> u64 {
    let n: usize = names.iter().map(|f| str_size(f)).sum();
    (OVERHEAD + int_size(1) + int_size(0) + int_size(names.len() as i64) + n + int_size(0)) as u64
}

/// The bytes one entry takes in a node whose master is `master` with field names `names`.
fn entry_size(master: StreamId, names: &[SmallBytes], id: StreamId, fields: &[SmallBytes]) -> u64 {
    let pairs = fields.len() / 2;
    let same =
        fields.len() == names.len() * 2 && fields.chunks(2).zip(names).all(|(p, n)| p[0] == *n);
    let mut n = int_size(if same { FLAG_SAME_FIELDS } else { 0 })
        + int_size(id.ms.wrapping_sub(master.ms) as i64)
        + int_size(id.seq.wrapping_sub(master.seq) as i64);
    if same {
        n += fields
            .chunks(2)
            .map(|p| p.get(1).map_or(1, |v| str_size(v)))
            .sum::<usize>();
        n += int_size(pairs as i64 + 3);
    } else {
        n += int_size(pairs as i64);
        n += fields.iter().map(|f| str_size(f)).sum::<usize>();
        n += int_size(pairs as i64 * 2 + 4);
    }
    n as u64
}

impl Node {
    /// Sets the live and deleted counts, adjusting the size of the master entry's integers.
    fn recount(&mut self, live: u64, deleted: u64) {
        let size = |v: u64| int_size(v as i64) as u64;
        self.bytes = self.bytes + size(live) + size(deleted) - size(self.live) - size(self.deleted);
        self.live = live;
        self.deleted = deleted;
    }
}

impl Stream {
    /// Adds an entry (its id above every present one) where Redis's `streamAppendItem` puts it.
    pub fn append(&mut self, id: StreamId, fields: Fields, lim: NodeLimits) {
        let raw: u64 = fields.iter().map(|f| f.len() as u64).sum();
        let max_bytes = if lim.bytes == 0 || lim.bytes > MAX_NODE_BYTES {
            MAX_NODE_BYTES
        } else {
            lim.bytes
        };
        let tail = self.nodes.last_key_value().map(|(m, n)| (*m, n));
        let fits = tail.is_some_and(|(_, n)| {
            n.bytes + raw < max_bytes && (lim.entries == 0 || n.live + n.deleted < lim.entries)
        });
        match tail {
            Some((master, _)) if fits => {
                let n = self.nodes.get_mut(&master).expect("the tail node");
                n.bytes += entry_size(master, &n.fields, id, &fields);
                n.recount(n.live + 1, n.deleted);
                n.last = id;
            }
            _ => {
                let names: Vec<&[u8]> = fields.chunks(2).map(|p| &*p[0]).collect();
                let mut n = Node {
                    live: 1,
                    deleted: 0,
                    fields: names.iter().map(|f| SmallBytes::new(f)).collect(),
                    last: id,
                    bytes: master_size(&names),
                };
                n.bytes += entry_size(id, &n.fields, id, &fields);
                self.nodes.insert(id, n);
            }
        }
        self.entries.insert(id, fields);
    }

    /// Removes entry `id` as XDEL does; true if it was there.
    pub(crate) fn remove_entry(&mut self, id: StreamId) -> bool {
        if self.entries.remove(&id).is_none() {
            return false;
        }
        let (&master, n) = self
            .nodes
            .range_mut(..=id)
            .next_back()
            .expect("every entry lies in a node");
        if n.live == 1 {
            self.nodes.remove(&master);
        } else {
            n.recount(n.live - 1, n.deleted + 1);
        }
        true
    }

    /// Applies a trimming rule as Redis 7.0's `streamTrim`: whole nodes from the head while the
    /// rule allows and `limit` (entries, 0: none) is not passed; then, for an exact trim, the
    /// entries of the first node it cannot remove whole. Returns the entries removed.
    pub(crate) fn trim_nodes(
        &mut self,
        max_len: Option<u64>,
        min_id: StreamId,
        approx: bool,
        limit: u64,
    ) -> u64 {
        let mut removed = 0;
        while let Some((&master, node)) = self.nodes.first_key_value() {
            let len = self.len() as u64;
            if max_len.is_some_and(|m| len <= m) {
                break;
            }
            if limit > 0 && removed + node.live > limit {
                break;
            }
            let whole = match max_len {
                Some(m) => len - node.live >= m,
                None => node.last < min_id,
            };
            if whole {
                let last = node.last;
                removed += node.live;
                self.nodes.remove(&master);
                while self
                    .entries
                    .first_key_value()
                    .is_some_and(|(id, _)| *id <= last)
                {
                    self.entries.pop_first();
                }
                continue;
            }
            if approx {
                break;
            }
            let last = node.last;
            let mut marked = 0;
            while let Some((&id, _)) = self.entries.first_key_value() {
                let stop = match max_len {
                    Some(m) => self.len() as u64 <= m,
                    None => id >= min_id,
                };
                if stop || id > last {
                    break;
                }
                self.entries.pop_first();
                marked += 1;
            }
            let n = self.nodes.get_mut(&master).expect("the head node");
            n.recount(n.live - marked, n.deleted + marked);
            removed += marked;
            break;
        }
        removed
    }

    /// Lays out nodes for entries that have none (a snapshot of the first version), as if
    /// they had been appended in order.
    pub fn rebuild_nodes(&mut self, lim: NodeLimits) {
        let entries = std::mem::take(&mut self.entries);
        self.nodes.clear();
        for (id, fields) in entries {
            self.append(id, fields, lim);
        }
    }

    /// Whether the nodes describe the entries: in order, not overlapping, every entry in a
    /// node, each node's live count its entries'.
    pub fn check_nodes(&self) -> Result<(), &'static str> {
        let mut prev_last: Option<StreamId> = None;
        let mut counted = 0;
        for (&master, n) in &self.nodes {
            if n.last < master || prev_last.is_some_and(|p| p >= master) {
                return Err("stream nodes overlap or are out of order");
            }
            prev_last = Some(n.last);
            let live = self.entries.range(master..=n.last).count() as u64;
            if live != n.live {
                return Err("a stream node's count differs from its entries");
            }
            if n.live + n.deleted == 0 || n.bytes < OVERHEAD as u64 {
                return Err("an empty stream node");
            }
            counted += live;
        }
        if counted != self.len() as u64 {
            return Err("a stream entry lies in no node");
        }
        Ok(())
    }
}
