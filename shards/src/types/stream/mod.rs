//! The stream type: entries by id with Redis's bookkeeping (last id, deleted maximum, entries
//! added), consumer groups with their pending entries, and the listpack node layout
//! (`nodes.rs`). The commands on it are in `command::streams`.

mod nodes;

pub use nodes::{Node, NodeLimits};

use crate::bytes::SmallBytes;
use std::collections::{BTreeMap, BTreeSet};

/// A stream entry id: milliseconds and a sequence number, ordered as a pair.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Debug, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The id right after this one, `None` at the maximum.
    pub fn next(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(StreamId::new(ms + 1, 0)),
            (ms, seq) => Some(StreamId::new(ms, seq + 1)),
        }
    }

    /// The id right before this one, `None` at 0-0.
    pub fn prev(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(StreamId::new(ms - 1, u64::MAX)),
            (ms, seq) => Some(StreamId::new(ms, seq - 1)),
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// `ms-seq` in `buf`.
    pub fn format(self, buf: &mut [u8; 41]) -> &[u8] {
        let mut n = push_u64(buf, 0, self.ms);
        buf[n] = b'-';
        n = push_u64(buf, n + 1, self.seq);
        &buf[..n]
    }

    pub fn to_vec(self) -> Vec<u8> {
        self.format(&mut [0; 41]).to_vec()
    }
}

/// Writes `v` in decimal at `buf[at..]`; returns the end.
fn push_u64(buf: &mut [u8; 41], at: usize, v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let digits = crate::num::format_u64(v, &mut tmp);
    buf[at..at + digits.len()].copy_from_slice(digits);
    at + digits.len()
}

/// The fields and values of one entry, interleaved.
pub type Fields = Box<[SmallBytes]>;

/// A pending (delivered, not yet acknowledged) entry of a consumer group.
#[derive(Clone, Debug)]
pub struct Nack {
    pub consumer: Box<[u8]>,
    pub delivery_ms: u64,
    pub deliveries: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Consumer {
    /// Last time the consumer tried to read or claim.
    pub seen_ms: u64,
    /// Last time it was delivered or claimed something (`None`: never).
    pub active_ms: Option<u64>,
    pub pel: BTreeSet<StreamId>,
}

#[derive(Clone, Debug, Default)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries the group has read, counted from the stream's first ever entry; `None` when that is
    /// unknown (Redis's -1).
    pub entries_read: Option<u64>,
    /// Every pending entry of the group. Invariant: `id` is in `pel` with consumer `c` exactly when
    /// `id` is in `consumers[c].pel`.
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: BTreeMap<Box<[u8]>, Consumer>,
}

#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub entries: BTreeMap<StreamId, Fields>,
    /// Redis's listpack nodes, by master id (`nodes.rs`): every entry lies in the last node
    /// whose master id is at most its id.
    pub nodes: BTreeMap<StreamId, Node>,
    /// The largest id ever added (or set by XSETID); never decreases.
    pub last_id: StreamId,
    /// The largest id removed by XDEL.
    pub max_deleted: StreamId,
    /// Entries ever added.
    pub entries_added: u64,
    pub groups: BTreeMap<Box<[u8]>, Group>,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated heap bytes (B-tree nodes are counted at two thirds full).
    pub fn heap_bytes(&self) -> usize {
        let per_entry = (std::mem::size_of::<StreamId>() + std::mem::size_of::<Fields>()) * 3 / 2;
        let entries: usize = self
            .entries
            .values()
            .map(|f| {
                per_entry
                    + crate::mem::alloc_size(std::mem::size_of_val(&**f))
                    + f.iter().map(SmallBytes::heap_bytes).sum::<usize>()
            })
            .sum();
        let groups: usize = self
            .groups
            .values()
            .map(|g| 128 + (g.pel.len() * 2 + g.consumers.len()) * 64)
            .sum();
        let per_node = (std::mem::size_of::<StreamId>() + std::mem::size_of::<Node>()) * 3 / 2;
        let nodes: usize = self
            .nodes
            .values()
            .map(|n| per_node + n.fields.iter().map(SmallBytes::heap_bytes).sum::<usize>())
            .sum();
        crate::mem::alloc_size(std::mem::size_of::<Stream>()) + entries + groups + nodes
    }

    pub fn first_id(&self) -> StreamId {
        self.entries.keys().next().copied().unwrap_or_default()
    }

    /// The id of the last entry present (not `last_id`, which may have been deleted).
    pub fn last_valid_id(&self) -> StreamId {
        self.entries.keys().next_back().copied().unwrap_or_default()
    }

    /// Whether an XDEL may have left a gap at or after `from` (Redis's tombstone check).
    pub(crate) fn has_tombstones_from(&self, from: StreamId) -> bool {
        !self.is_empty() && !self.max_deleted.is_zero() && from <= self.max_deleted
    }

    /// How many entries were added up to and including `id`, when that can be known.
    pub(crate) fn entries_up_to(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.is_empty() && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        let first = self.first_id();
        if self.max_deleted.is_zero() || self.max_deleted < first {
            if id < first {
                return Some(self.entries_added - self.len() as u64);
            }
            if id == first {
                return Some(self.entries_added - self.len() as u64 + 1);
            }
        }
        None
    }

    /// Entries of the stream not yet read by `g`, when that can be known. As Redis computes it:
    /// added minus read, negative when ENTRIESREAD claimed more than were added.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        let lag = |read: u64| (self.entries_added as i64).wrapping_sub(read as i64);
        if let Some(read) = g.entries_read
            && !self.has_tombstones_from(g.last_id)
        {
            return Some(lag(read));
        }
        self.entries_up_to(g.last_id).map(lag)
    }

    /// Records that `g` (by name) was delivered `id`: moves its last id and read counter.
    pub(crate) fn advance_group(&mut self, group: &[u8], id: StreamId) {
        let tomb = self.has_tombstones_from(id);
        let estimate = self.entries_up_to(id);
        let added = self.entries_added;
        let g = self.groups.get_mut(group).expect("group exists");
        if id > g.last_id {
            g.entries_read = match g.entries_read {
                Some(r) if !tomb => Some(r + 1),
                _ if added > 0 => estimate,
                other => other,
            };
            g.last_id = id;
        }
    }

    /// Removes `id` (XDEL); true if it was there.
    pub(crate) fn delete(&mut self, id: StreamId) -> bool {
        if !self.remove_entry(id) {
            return false;
        }
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        true
    }
}
