//! `Capture`: a vShard's snapshot as it was at one point, serialized a piece at a time while
//! the vShard keeps serving (issue 19, step 3; Dragonfly's snapshotting, by bucket). A
//! compaction of a vShard of gigabytes no longer stops its shard thread for the whole walk.
//!
//! The capture walks the key table's buckets in order from a cursor. Every change to a key
//! (its value, its expiry, its insertion or removal) calls [`Capture::before_change`] first
//! (`VShard::cow`, from each of `Db`'s changing paths): a key in a bucket the walk has not
//! passed is serialized there and then, as it still is, and its bucket is marked so the walk
//! passes over it; the bucket a new key is about to take is marked too (its content is not
//! of the snapshot's point). So every key live at the start is written exactly once, as it
//! was at the start: by the walk if nothing touched it first, else by its first change. The
//! entries come in another order than a plain walk's; the format does not care (each entry
//! is self-delimiting, the key count and the checksums are written once the count is known).
//!
//! The marks hold only while the buckets keep their layout. A change that would lay them out
//! anew (the table growing, shrinking, rehashed or cleared) first finishes the walk in one go:
//! the one pause left, taken at most once per capture, and no longer than the resize it comes
//! with. As a safety net, a capture that finds the layout changed under it anyway is
//! [`Capture::broken`], and its bytes must not be used.
//!
//! Memory: the marks (one bit per bucket) and what the owner has not drained from `out`
//! (the walk's pieces and the keys changes serialized since).

use super::{HEADER_BYTES, MAGIC, VERSION, W, tail_into, value_into};
use crate::db::{VShard, Value};
use crate::dict::{Dict, Site};
use crate::slot::VShardId;

/// A snapshot of one vShard being serialized (see the module documentation).
pub struct Capture {
    id: u64,
    vshard: VShardId,
    /// Keys whose expiry is at or before this (Unix ms) are not live: not written.
    now_ms: u64,
    /// Buckets below it are done.
    cursor: usize,
    buckets: usize,
    /// The key table's `Dict::layouts` at the start.
    layouts: u64,
    /// One bit per bucket at or past the cursor that the walk must pass over; empty until
    /// the first one.
    marks: Vec<u64>,
    walked: bool,
    broken: bool,
    count: u64,
    /// Keys written by their first change rather than by the walk.
    changed_first: u64,
    out: W,
    /// The Calvin state at the start, written after the entries.
    tail: Vec<u8>,
}

/// What a whole capture holds besides the entries drained from `out`: the snapshot's header
/// (written first in the format, known last) and its tail (written after the entries).
pub struct Captured {
    pub header: [u8; HEADER_BYTES],
    pub tail: Vec<u8>,
    /// Keys written.
    pub count: u64,
    /// Of them, keys written by their first change rather than by the walk.
    pub changed_first: u64,
}

impl Capture {
    /// A capture of `vs` as it is now, keys live at `now_ms`. `id` is the owner's, to know
    /// its capture from a later one.
    pub fn new(vs: &VShard, now_ms: u64, id: u64) -> Capture {
        let mut tail = W(Vec::new());
        tail_into(&mut tail, vs);
        Capture {
            id,
            vshard: vs.id,
            now_ms,
            cursor: 0,
            buckets: vs.keys.num_buckets(),
            layouts: vs.keys.layouts(),
            marks: Vec::new(),
            walked: false,
            broken: false,
            count: 0,
            changed_first: 0,
            out: W(Vec::new()),
            tail: tail.0,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Every key is written (to `out`, for the owner to drain).
    pub fn walked(&self) -> bool {
        self.walked
    }

    /// The key table was laid out anew under an unfinished walk: entries may be missing or
    /// twice, and the capture must be dropped.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Serialized entries not yet taken: the owner writes them out and clears it.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out.0
    }

    /// The walk's position, in buckets, and the table's size at the start.
    pub fn progress(&self) -> (usize, usize) {
        (self.cursor, self.buckets)
    }

    fn marked(&self, i: usize) -> bool {
        self.marks
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn mark(&mut self, i: usize) {
        if self.marks.is_empty() {
            self.marks = vec![0; self.buckets.div_ceil(64)];
        }
        if let Some(w) = self.marks.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Writes an entry as the format has it, if the key was live at the start.
    fn emit(&mut self, key: &[u8], value: &Value, expire: u64) {
        if expire != 0 && expire <= self.now_ms {
            return;
        }
        self.out.bytes(key);
        self.out.u64(expire);
        value_into(&mut self.out, value);
        self.count += 1;
    }

    fn emit_bucket(&mut self, keys: &Dict<Value>, expires: &Dict<u64>, i: usize) {
        if let Some((k, v)) = keys.entry_at(i) {
            let expire = expires.get(k).copied().unwrap_or(0);
            self.emit(k, v, expire);
        }
    }

    /// Walks on until about `budget` more bytes are in `out` (or `budget / 8` buckets were
    /// looked at, for a table mostly empty or already passed); true once every key is written.
    /// `keys` and `expires` must be the captured vShard's.
    pub fn walk(&mut self, keys: &Dict<Value>, expires: &Dict<u64>, budget: usize) -> bool {
        if self.walked || self.broken {
            return self.walked;
        }
        if keys.layouts() != self.layouts {
            self.broken = true;
            return false;
        }
        let stop_at = self.out.0.len().saturating_add(budget);
        let end = self
            .buckets
            .min(self.cursor.saturating_add((budget / 8).max(64)));
        while self.cursor < end && self.out.0.len() < stop_at {
            let i = self.cursor;
            self.cursor += 1;
            if !self.marked(i) {
                self.emit_bucket(keys, expires, i);
            }
        }
        if self.cursor >= self.buckets {
            self.walked = true;
            self.marks = Vec::new();
        }
        self.walked
    }

    /// `key` of the captured vShard is about to change (any change: value, expiry, insertion,
    /// removal). `keys` and `expires` must be the vShard's, as they are before the change.
    pub fn before_change(&mut self, keys: &Dict<Value>, expires: &Dict<u64>, key: &[u8]) {
        if self.walked || self.broken {
            return;
        }
        if keys.layouts() != self.layouts {
            self.broken = true;
            return;
        }
        match keys.change_site(key) {
            // The buckets may be laid out anew: the rest of the walk now, while they hold.
            Site::Relayout => {
                self.walk(keys, expires, usize::MAX);
            }
            Site::Present(i) => {
                if i >= self.cursor && !self.marked(i) {
                    self.emit_bucket(keys, expires, i);
                    self.mark(i);
                    self.changed_first += 1;
                }
            }
            Site::Absent(i) => {
                if i >= self.cursor {
                    self.mark(i);
                }
            }
        }
    }

    /// Every key of the vShard is about to go (a flush): the rest of the walk now.
    pub fn before_clear(&mut self, keys: &Dict<Value>, expires: &Dict<u64>) {
        self.walk(keys, expires, usize::MAX);
    }

    /// The header and tail of a walked capture; what `out` still holds is the owner's to
    /// write before the tail.
    pub fn finish(self) -> Captured {
        debug_assert!(self.walked && !self.broken);
        Captured {
            header: header(self.vshard, self.count),
            tail: self.tail,
            count: self.count,
            changed_first: self.changed_first,
        }
    }
}

/// A snapshot's header: magic, version, vShard, key count.
pub fn header(vshard: VShardId, count: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..14].copy_from_slice(&vshard.0.to_le_bytes());
    h[14..22].copy_from_slice(&count.to_le_bytes());
    h
}

#[cfg(test)]
mod tests;
