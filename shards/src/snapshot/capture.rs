//! `Capture`: a vShard's snapshot as it was at one point, serialized a piece at a time while
//! the vShard keeps serving (issue 19, step 3; Dragonfly's snapshotting, by entry). A
//! compaction of a vShard of gigabytes no longer stops its shard thread for the whole walk.
//!
//! The capture walks the key table's buckets in order and marks each entry it writes (a bit
//! per bucket in the table, `Dict::marks`, cleared when the capture starts). Every change to
//! a key (its value, its expiry, its removal) calls [`Capture::before_change`] first
//! (`VShard::cow`, from each of `Db`'s changing paths): an unmarked key is written there and
//! then, as it still is, and marked. A key inserted meanwhile is marked as it is inserted (it
//! is not of the snapshot's point). So every key live at the start is written exactly once,
//! as it was at the start: by the walk if nothing touched it first, else by its first
//! change. The entries come in another order than a plain walk's; the format does not care
//! (each entry is self-delimiting; the key count and the checksums are written once known).
//!
//! The marks move with their entries when the table is laid out anew (it grows, shrinks or
//! is rehashed): the walk then starts over from the first bucket of the new layout, passing
//! over marked entries (a check of a bit each). A flush of the vShard hands the capture the
//! tables it had (`before_clear`), which it walks to their end while the vShard starts anew:
//! no pause and no copy in either case.
//!
//! Memory: one bit per bucket, and what the owner has not drained from `out` (the walk's
//! pieces and the keys changes wrote since).

use super::{HEADER_BYTES, MAGIC, VERSION, W, tail_into, value_into};
use crate::db::{VShard, Value};
use crate::dict::Dict;
use crate::slot::VShardId;

/// A snapshot of one vShard being serialized (see the module documentation).
pub struct Capture {
    id: u64,
    vshard: VShardId,
    /// Keys whose expiry is at or before this (Unix ms) are not live: not written.
    now_ms: u64,
    /// The next bucket to look at, in the layout `layouts` names.
    cursor: usize,
    layouts: u64,
    /// Walks started over because the table was laid out anew.
    rewalks: u32,
    /// The vShard's tables as a flush found them: walked to their end in its place.
    frozen: Option<Box<(Dict<Value>, Dict<u64>)>>,
    walked: bool,
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
    /// Walks started over because the table was laid out anew.
    pub rewalks: u32,
}

impl Capture {
    /// A capture of `vs` as it is now, keys live at `now_ms`, whose walk reads and sets the
    /// table's marks (`VShard::begin_capture` clears them first). `id` is the owner's, to
    /// know its capture from a later one.
    pub fn new(vs: &VShard, now_ms: u64, id: u64) -> Capture {
        let mut tail = W(Vec::new());
        tail_into(&mut tail, vs);
        Capture {
            id,
            vshard: vs.id,
            now_ms,
            cursor: 0,
            layouts: vs.keys.layouts(),
            rewalks: 0,
            frozen: None,
            walked: false,
            count: 0,
            changed_first: 0,
            out: W(Vec::new()),
            tail: tail.0,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Serialized entries not yet taken: the owner writes them out and clears it.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out.0
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
    /// looked at, for a table mostly empty or already written); true once every key is
    /// written. `keys` and `expires` must be the captured vShard's.
    pub fn walk(&mut self, keys: &mut Dict<Value>, expires: &Dict<u64>, budget: usize) -> bool {
        if self.walked {
            return true;
        }
        if let Some(mut f) = self.frozen.take() {
            let done = self.walk_table(&mut f.0, &f.1, budget);
            if !done {
                self.frozen = Some(f);
            }
            return done;
        }
        self.follow_layout(keys);
        self.walk_table(keys, expires, budget)
    }

    /// The whole walk of a vShard that does not change meanwhile, marks neither read nor
    /// set, handed to `sink` about `piece` bytes at a time (`encode_to`).
    pub fn write_unchanging(
        &mut self,
        vs: &VShard,
        piece: usize,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut keys = &vs.keys;
        loop {
            let done = self.walk_table(&mut keys, &vs.expires, piece);
            if done || self.out.0.len() >= piece {
                sink(&self.out.0)?;
                self.out.0.clear();
            }
            if done {
                return Ok(());
            }
        }
    }

    /// A table laid out anew since the walk last looked: the marks moved with their entries,
    /// so the walk starts over on the new layout.
    fn follow_layout(&mut self, keys: &Dict<Value>) {
        if keys.layouts() != self.layouts {
            self.layouts = keys.layouts();
            self.cursor = 0;
            self.rewalks += 1;
        }
    }

    fn walk_table<K: Keys>(&mut self, keys: &mut K, expires: &Dict<u64>, budget: usize) -> bool {
        if self.walked {
            return true;
        }
        let stop_at = self.out.0.len().saturating_add(budget);
        let buckets = keys.table().num_buckets();
        let end = buckets.min(self.cursor.saturating_add((budget / 8).max(64)));
        while self.cursor < end && self.out.0.len() < stop_at {
            let i = self.cursor;
            self.cursor += 1;
            if keys.marked(i) {
                continue;
            }
            self.emit_bucket(keys.table(), expires, i);
            keys.mark(i);
        }
        if self.cursor >= buckets {
            self.walked = true;
            self.frozen = None;
        }
        self.walked
    }

    /// `key` of the captured vShard is about to change (its value, its expiry, its removal;
    /// an insertion needs nothing). `keys` and `expires` must be the vShard's, as they are
    /// before the change.
    pub fn before_change(&mut self, keys: &mut Dict<Value>, expires: &Dict<u64>, key: &[u8]) {
        if self.walked || self.frozen.is_some() {
            return;
        }
        if let Some(i) = keys.index_of(key)
            && !keys.marked(i)
        {
            self.emit_bucket(keys, expires, i);
            keys.set_mark(i);
            self.changed_first += 1;
        }
    }

    /// Every key of the vShard is about to go (a flush): the capture keeps the tables as they
    /// are and walks them on in their place; the vShard gets empty ones.
    pub fn before_clear(&mut self, keys: &mut Dict<Value>, expires: &mut Dict<u64>) {
        if self.walked || self.frozen.is_some() {
            return;
        }
        self.follow_layout(keys);
        let k = std::mem::replace(keys, Dict::with_meta());
        let e = std::mem::take(expires);
        self.frozen = Some(Box::new((k, e)));
    }

    /// The header and tail of a walked capture; what `out` still holds is the owner's to
    /// write before the tail.
    pub fn finish(self) -> Captured {
        debug_assert!(self.walked);
        Captured {
            header: header(self.vshard, self.count),
            tail: self.tail,
            count: self.count,
            changed_first: self.changed_first,
            rewalks: self.rewalks,
        }
    }
}

/// The key table a walk reads, with its marks (`Capture::write_unchanging` walks a shared
/// one, as if nothing were marked, and marks nothing).
trait Keys {
    fn table(&self) -> &Dict<Value>;
    fn marked(&self, i: usize) -> bool;
    fn mark(&mut self, i: usize);
}

impl Keys for Dict<Value> {
    fn table(&self) -> &Dict<Value> {
        self
    }
    fn marked(&self, i: usize) -> bool {
        Dict::marked(self, i)
    }
    fn mark(&mut self, i: usize) {
        self.set_mark(i)
    }
}

impl Keys for &Dict<Value> {
    fn table(&self) -> &Dict<Value> {
        self
    }
    fn marked(&self, _: usize) -> bool {
        false
    }
    fn mark(&mut self, _: usize) {}
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

pub mod check;
#[cfg(test)]
mod tests;
