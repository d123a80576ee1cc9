//! `Dict`: the hash table behind every keyspace and hash value. Open addressing with linear
//! probing over an array of buckets, and a parallel array of one control byte per bucket (empty,
//! deleted, or full with 7 bits of the key's hash), so a probe reads control bytes and touches a
//! bucket only when its tag matches.
//!
//! Capacities grow by 1.5x, not 2x, and a key's home bucket is `hash * buckets >> 64` (any bucket
//! count works), so the load factor stays between 0.58 and 0.875 instead of 0.44 and 0.875: many
//! equal-sized vShard tables growing in lockstep would otherwise all sit half empty at once.
//!
//! Why our own table: a pipelined batch can compute each key's hash early and [`Dict::prefetch`]
//! its control byte and bucket, so the cache misses of a batch's lookups overlap instead of
//! queueing one after another. (hashbrown does not expose bucket addresses.) No `unsafe`: buckets
//! are `Option<(SmallBytes, V)>`, which the niches of `SmallBytes` keep as small as the pair.
//!
//! Keys hash with a per-process random seed (foldhash), so clients cannot aim collisions.
//!
//! SCAN guarantee: every key present for the whole scan is returned at least once, provided the
//! table is not resized between calls (a resize may repeat or skip keys). Deletions leave
//! tombstones rather than moving entries, so they never disturb a scan.

use crate::bytes::SmallBytes;
use std::hash::BuildHasher;

pub type Hasher = hashbrown::DefaultHashBuilder;

const EMPTY: u8 = 0;
const DELETED: u8 = 1;
/// Smallest non-zero capacity.
const MIN_BUCKETS: usize = 8;

/// The control byte of a full bucket. Low hash bits: the home bucket uses the high ones.
#[inline]
fn tag(hash: u64) -> u8 {
    0x80 | (hash & 0x7f) as u8
}

/// The home bucket of `hash` in a table of `buckets` (> 0) buckets.
#[inline]
fn home(hash: u64, buckets: usize) -> usize {
    ((hash as u128 * buckets as u128) >> 64) as usize
}

/// The bucket after `i`, wrapping.
#[inline]
fn next(i: usize, buckets: usize) -> usize {
    if i + 1 == buckets { 0 } else { i + 1 }
}

/// Bit `i` of a bitset (false past its end).
#[inline]
fn bit(words: &[u64], i: usize) -> bool {
    words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// Buckets in use (full or deleted) may not pass 7/8 of the capacity.
#[inline]
fn max_used(buckets: usize) -> usize {
    buckets - buckets / 8
}

#[derive(Clone)]
pub struct Dict<V> {
    ctrl: Vec<u8>,
    slots: Vec<Option<(SmallBytes, V)>>,
    /// With [`Dict::with_meta`]: one `u32` per bucket that the owner uses as it likes (the
    /// keyspace keeps access times or frequencies there); empty otherwise. Moves with its entry.
    meta: Vec<u32>,
    track_meta: bool,
    len: usize,
    deleted: usize,
    /// Times the buckets were laid out anew (a resize, a rehash, a clear): a snapshot capture
    /// (`snapshot::capture`) that walks the buckets starts its walk over after one.
    layouts: u64,
    /// One bit per bucket once `reset_marks` was called (empty before): the snapshot capture
    /// under way has written the entry there (`snapshot::capture`). A new entry is marked (it
    /// is not of the capture's point); the bit moves with its entry when the table is laid
    /// out anew, so a capture survives resizes.
    marks: Vec<u64>,
    hasher: Hasher,
}

impl<V> Default for Dict<V> {
    fn default() -> Self {
        Dict {
            ctrl: Vec::new(),
            slots: Vec::new(),
            meta: Vec::new(),
            track_meta: false,
            len: 0,
            deleted: 0,
            layouts: 0,
            marks: Vec::new(),
            hasher: Hasher::default(),
        }
    }
}

impl<V> Dict<V> {
    /// A table that keeps a `u32` of metadata per entry (see `meta`).
    pub fn with_meta() -> Self {
        Dict {
            track_meta: true,
            ..Dict::default()
        }
    }

    /// The bucket of `key`, if present (for [`Dict::meta`] and [`Dict::at_mut`]).
    #[inline]
    pub fn index_of(&self, key: &[u8]) -> Option<usize> {
        self.find(key, self.hash(key))
    }

    /// `index_of` with the hash already computed.
    #[inline]
    pub fn index_hashed(&self, key: &[u8], hash: u64) -> Option<usize> {
        self.find(key, hash)
    }

    /// The metadata of the entry in bucket `i` (0 without `with_meta`).
    #[inline]
    pub fn meta(&self, i: usize) -> u32 {
        self.meta.get(i).copied().unwrap_or(0)
    }

    #[inline]
    pub fn set_meta(&mut self, i: usize, m: u32) {
        if let Some(x) = self.meta.get_mut(i) {
            *x = m;
        }
    }

    /// Starts loading the metadata of bucket `i`.
    #[inline]
    pub fn prefetch_meta(&self, i: usize) {
        if self.track_meta {
            shardline_transport::hint::prefetch(self.meta.as_ptr().wrapping_add(i));
        }
    }

    /// The value in bucket `i`, which must be full.
    #[inline]
    pub fn at(&self, i: usize) -> &V {
        &self.slots[i].as_ref().expect("bucket is full").1
    }

    /// The value in bucket `i`, which must be full.
    #[inline]
    pub fn at_mut(&mut self, i: usize) -> &mut V {
        &mut self.slots[i].as_mut().expect("bucket is full").1
    }

    /// The hash of `key` in this table (for [`Dict::prefetch`]).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts loading the cache lines a lookup of a key with `hash` will read first.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if self.ctrl.is_empty() {
            return;
        }
        let i = home(hash, self.ctrl.len());
        // Only the bucket: control arrays are 1/48 of a table's size and mostly stay in cache.
        shardline_transport::hint::prefetch(self.slots.as_ptr().wrapping_add(i));
    }

    /// The bucket holding `key`, if any.
    #[inline]
    fn find(&self, key: &[u8], hash: u64) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let n = self.ctrl.len();
        let t = tag(hash);
        let mut i = home(hash, n);
        loop {
            let c = self.ctrl[i];
            if c == EMPTY {
                return None;
            }
            if c == t
                && let Some((k, _)) = &self.slots[i]
                && k.as_slice() == key
            {
                return Some(i);
            }
            i = next(i, n);
        }
    }

    /// `get` with the hash already computed by [`Dict::hash`].
    #[inline]
    pub fn get_hashed(&self, key: &[u8], hash: u64) -> Option<&V> {
        let i = self.find(key, hash)?;
        self.slots[i].as_ref().map(|(_, v)| v)
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let i = self.find(key, self.hash(key))?;
        self.slots[i].as_ref().map(|(_, v)| v)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let i = self.find(key, self.hash(key))?;
        self.slots[i].as_mut().map(|(_, v)| v)
    }

    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key, self.hash(key)).is_some()
    }

    /// The first empty or deleted bucket on `hash`'s probe path. The table must have room.
    #[inline]
    fn free_bucket(&self, hash: u64) -> usize {
        let n = self.ctrl.len();
        let mut i = home(hash, n);
        while self.ctrl[i] & 0x80 != 0 {
            i = next(i, n);
        }
        i
    }

    /// Makes room for one more entry: grows when live entries need it, otherwise rehashes in place
    /// to drop tombstones.
    fn reserve_one(&mut self) {
        let buckets = self.ctrl.len();
        if self.len + self.deleted < max_used(buckets) {
            return;
        }
        let target = if self.len + 1 >= max_used(buckets) / 2 {
            (buckets + buckets / 2).max(MIN_BUCKETS)
        } else {
            buckets
        };
        self.rebuild(target);
    }

    fn rebuild(&mut self, buckets: usize) {
        debug_assert!(max_used(buckets) > self.len);
        self.layouts += 1;
        let old = std::mem::take(&mut self.slots);
        let old_meta = std::mem::take(&mut self.meta);
        let old_marks = std::mem::take(&mut self.marks);
        if !old_marks.is_empty() {
            self.marks = vec![0; buckets.div_ceil(64)];
        }
        self.ctrl = vec![EMPTY; buckets];
        self.slots = (0..buckets).map(|_| None).collect();
        if self.track_meta {
            self.meta = vec![0; buckets];
        }
        self.deleted = 0;
        for (j, entry) in old.into_iter().enumerate() {
            let Some((k, v)) = entry else { continue };
            let h = self.hash(&k);
            let i = self.free_bucket(h);
            self.ctrl[i] = tag(h);
            self.slots[i] = Some((k, v));
            if let Some(&m) = old_meta.get(j) {
                self.meta[i] = m;
            }
            if bit(&old_marks, j) {
                self.set_mark(i);
            }
        }
    }

    fn put_new(&mut self, key: &[u8], hash: u64, value: V) -> usize {
        self.reserve_one();
        let i = self.free_bucket(hash);
        if self.ctrl[i] == DELETED {
            self.deleted -= 1;
        }
        self.ctrl[i] = tag(hash);
        self.slots[i] = Some((SmallBytes::new(key), value));
        self.set_meta(i, 0);
        self.set_mark(i);
        self.len += 1;
        i
    }

    /// Inserts or replaces; returns the bucket and whether the key is new.
    #[inline]
    pub fn insert_at(&mut self, key: &[u8], value: V) -> (usize, bool) {
        let h = self.hash(key);
        match self.find(key, h) {
            Some(i) => {
                *self.at_mut(i) = value;
                (i, false)
            }
            None => (self.put_new(key, h, value), true),
        }
    }

    /// `get_or_insert_with` that returns the bucket: `(bucket, inserted)`.
    #[inline]
    pub fn index_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> (usize, bool) {
        let h = self.hash(key);
        match self.find(key, h) {
            Some(i) => (i, false),
            None => (self.put_new(key, h, make()), true),
        }
    }

    /// Inserts or replaces; returns the previous value.
    #[inline]
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        let h = self.hash(key);
        match self.find(key, h) {
            Some(i) => self.slots[i]
                .as_mut()
                .map(|(_, v)| std::mem::replace(v, value)),
            None => {
                self.put_new(key, h, value);
                None
            }
        }
    }

    /// The value for `key`, inserting `make()` first if absent. The bool is true if inserted.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> (&mut V, bool) {
        let h = self.hash(key);
        let (i, inserted) = match self.find(key, h) {
            Some(i) => (i, false),
            None => (self.put_new(key, h, make()), true),
        };
        let v = self.slots[i]
            .as_mut()
            .map(|(_, v)| v)
            .expect("bucket is full");
        (v, inserted)
    }

    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let i = self.find(key, self.hash(key))?;
        // With an empty next bucket no probe path runs through `i`: it can become empty again.
        if self.ctrl[next(i, self.ctrl.len())] == EMPTY {
            self.ctrl[i] = EMPTY;
        } else {
            self.ctrl[i] = DELETED;
            self.deleted += 1;
        }
        self.len -= 1;
        let (_, v) = self.slots[i].take().expect("bucket is full");
        if self.len == 0 {
            self.clear();
        } else if self.len < self.ctrl.len() / 16 && self.ctrl.len() > 64 {
            // Give memory back once the table is mostly empty (hysteresis: grow at 7/8, shrink
            // below 1/16).
            self.rebuild((self.len * 4).max(MIN_BUCKETS));
        }
        Some(v)
    }

    pub fn clear(&mut self) {
        self.layouts += 1;
        // Kept on if it was: what a capture under way sees inserted next must be marked.
        self.marks = if self.marks.is_empty() {
            Vec::new()
        } else {
            vec![0]
        };
        self.ctrl = Vec::new();
        self.slots = Vec::new();
        self.meta = Vec::new();
        self.len = 0;
        self.deleted = 0;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SmallBytes, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }

    pub fn num_buckets(&self) -> usize {
        self.ctrl.len()
    }

    /// How many times the buckets were laid out anew (see `layouts`).
    #[inline]
    pub fn layouts(&self) -> u64 {
        self.layouts
    }

    /// The entry in bucket `i`, if it is full.
    #[inline]
    pub fn entry_at(&self, i: usize) -> Option<(&SmallBytes, &V)> {
        self.slots.get(i)?.as_ref().map(|(k, v)| (k, v))
    }

    /// Clears every entry's capture mark (and keeps them from now on: see `marks`).
    pub fn reset_marks(&mut self) {
        self.marks.clear();
        self.marks.resize(self.ctrl.len().div_ceil(64).max(1), 0);
    }

    /// Whether the entry in bucket `i` is marked.
    #[inline]
    pub fn marked(&self, i: usize) -> bool {
        bit(&self.marks, i)
    }

    /// Marks the entry in bucket `i` (kept through resizes, moving with the entry).
    #[inline]
    pub fn set_mark(&mut self, i: usize) {
        if let Some(w) = self.marks.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Visits entries from bucket `cursor` on until `visit` has been called `count` times or the
    /// table ends. Returns the next cursor, 0 when the table is done.
    pub fn scan<'a>(
        &'a self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&'a SmallBytes, &'a V),
    ) -> usize {
        let buckets = self.slots.len();
        let mut i = cursor;
        let mut seen = 0;
        while i < buckets {
            if let Some((k, v)) = &self.slots[i] {
                visit(k, v);
                seen += 1;
            }
            i += 1;
            if seen >= count {
                break;
            }
        }
        if i >= buckets { 0 } else { i }
    }

    /// A uniformly random entry and its bucket; `None` if the table is empty.
    pub fn random(&self, rng: &mut crate::rng::Rng) -> Option<(usize, &SmallBytes, &V)> {
        if self.len == 0 {
            return None;
        }
        loop {
            let b = rng.below(self.slots.len() as u64) as usize;
            if let Some((k, v)) = &self.slots[b] {
                return Some((b, k, v));
            }
        }
    }

    /// `min(n, len)` distinct random entries, each visited once. Picks buckets at random while
    /// that is cheap, and walks the whole table when most of it is wanted.
    pub fn sample_distinct(
        &self,
        n: usize,
        rng: &mut crate::rng::Rng,
        mut visit: impl FnMut(&SmallBytes, &V),
    ) {
        let n = n.min(self.len);
        if n * 2 >= self.len {
            // Most of the table: choose which to skip instead.
            let mut skip = std::collections::HashSet::with_capacity(self.len - n);
            while skip.len() < self.len - n {
                skip.insert(self.random(rng).expect("not empty").0);
            }
            for (i, s) in self.slots.iter().enumerate() {
                if let Some((k, v)) = s
                    && !skip.contains(&i)
                {
                    visit(k, v);
                }
            }
            return;
        }
        let mut picked = std::collections::HashSet::with_capacity(n);
        while picked.len() < n {
            let (b, k, v) = self.random(rng).expect("not empty");
            if picked.insert(b) {
                visit(k, v);
            }
        }
    }

    /// The entry in bucket `index`, if that bucket is full (for random sampling).
    pub fn bucket(&self, index: usize) -> Option<(&SmallBytes, &V)> {
        self.slots.get(index)?.as_ref().map(|(k, v)| (k, v))
    }

    /// Bytes held by the table itself (not by the values' heap parts).
    pub fn table_bytes(&self) -> usize {
        let n = self.ctrl.len();
        crate::mem::alloc_size(n)
            + crate::mem::alloc_size(n * std::mem::size_of::<Option<(SmallBytes, V)>>())
            + if self.track_meta {
                crate::mem::alloc_size(n * 4)
            } else {
                0
            }
    }

    /// Checks the table's invariants (tests and debug builds).
    pub fn check(&self) {
        assert_eq!(self.ctrl.len(), self.slots.len());
        let full = self.ctrl.iter().filter(|&&c| c & 0x80 != 0).count();
        let deleted = self.ctrl.iter().filter(|&&c| c == DELETED).count();
        assert_eq!((full, deleted), (self.len, self.deleted));
        assert!(self.ctrl.is_empty() || self.len + self.deleted < max_used(self.ctrl.len()) + 1);
        for (i, s) in self.slots.iter().enumerate() {
            assert_eq!(s.is_some(), self.ctrl[i] & 0x80 != 0);
            if let Some((k, _)) = s {
                assert_eq!(self.ctrl[i], tag(self.hash(k)));
                assert_eq!(
                    self.find(k, self.hash(k)),
                    Some(i),
                    "entry unreachable from its home bucket"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_returns_every_key_once_when_the_table_is_stable() {
        let mut d = Dict::default();
        for i in 0..1000u32 {
            d.insert(format!("k{i}").as_bytes(), i);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = d.scan(cursor, 7, |k, _| assert!(seen.insert(k.to_vec())));
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn insert_replace_remove() {
        let mut d = Dict::default();
        assert_eq!(d.insert(b"a", 1), None);
        assert_eq!(d.insert(b"a", 2), Some(1));
        assert_eq!(d.get(b"a"), Some(&2));
        assert_eq!(d.remove(b"a"), Some(2));
        assert!(d.is_empty());
        let (v, inserted) = d.get_or_insert_with(b"b", || 5);
        assert!(inserted);
        *v += 1;
        assert_eq!(d.get(b"b"), Some(&6));
        assert_eq!(d.remove(b"zz"), None);
    }

    /// xorshift, so the model test is deterministic.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn random_operations_agree_with_a_std_hashmap() {
        let mut d: Dict<u64> = Dict::default();
        let mut model = std::collections::HashMap::new();
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..200_000u64 {
            let r = next(&mut s);
            // A key space that grows and shrinks, so tables grow, fill with tombstones and shrink.
            let span = if (step / 20_000) % 2 == 0 { 5_000 } else { 300 };
            let key = format!("key{}", r % span);
            match (r >> 32) % 3 {
                0 | 1 if (step / 20_000) % 2 == 0 => {
                    assert_eq!(d.insert(key.as_bytes(), step), model.insert(key, step))
                }
                _ => assert_eq!(d.remove(key.as_bytes()), model.remove(&key)),
            }
            if step % 10_000 == 0 {
                d.check();
                assert_eq!(d.len(), model.len());
            }
        }
        d.check();
        for (k, v) in &model {
            assert_eq!(d.get(k.as_bytes()), Some(v));
        }
        assert_eq!(d.iter().count(), model.len());
    }

    #[test]
    fn an_emptied_table_gives_its_memory_back() {
        let mut d = Dict::default();
        for i in 0..10_000u32 {
            d.insert(format!("k{i}").as_bytes(), i);
        }
        let big = d.num_buckets();
        for i in 0..9_990u32 {
            d.remove(format!("k{i}").as_bytes());
        }
        assert!(
            d.num_buckets() < big / 16,
            "{} buckets left of {big}",
            d.num_buckets()
        );
        d.check();
        for i in 9_990..10_000u32 {
            assert_eq!(d.get(format!("k{i}").as_bytes()), Some(&i));
        }
    }
}
