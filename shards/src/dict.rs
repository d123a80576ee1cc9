//! `Dict`: a hash table keyed by byte strings, with a bucket-index cursor for SCAN-style
//! iteration. Keys hash with a per-process random seed (foldhash), so clients cannot aim
//! collisions at one bucket.
//!
//! SCAN guarantee: every key present for the whole scan is returned at least once, provided the
//! table is not resized between calls (a resize may repeat or skip keys). Tables only grow when
//! they fill up and never shrink while they hold keys, so a scan over a stable keyspace is exact.

use crate::bytes::SmallBytes;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::hash::BuildHasher;

pub type Hasher = hashbrown::DefaultHashBuilder;

pub struct Dict<V> {
    table: HashTable<(SmallBytes, V)>,
    hasher: Hasher,
}

impl<V> Default for Dict<V> {
    fn default() -> Self {
        Dict {
            table: HashTable::new(),
            hasher: Hasher::default(),
        }
    }
}

impl<V> Dict<V> {
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        if self.table.is_empty() {
            return None;
        }
        let h = self.hash(key);
        self.table
            .find(h, |(k, _)| k.as_slice() == key)
            .map(|(_, v)| v)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        if self.table.is_empty() {
            return None;
        }
        let h = self.hash(key);
        self.table
            .find_mut(h, |(k, _)| k.as_slice() == key)
            .map(|(_, v)| v)
    }

    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    #[inline]
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        let h = self.hash(key);
        let hasher = &self.hasher;
        match self.table.entry(
            h,
            |(k, _)| k.as_slice() == key,
            |(k, _)| hasher.hash_one(k.as_slice()),
        ) {
            Entry::Occupied(mut e) => Some(std::mem::replace(&mut e.get_mut().1, value)),
            Entry::Vacant(e) => {
                e.insert((SmallBytes::new(key), value));
                None
            }
        }
    }

    /// The value for `key`, inserting `make()` first if absent. The bool is true if inserted.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> (&mut V, bool) {
        let h = self.hash(key);
        let hasher = &self.hasher;
        match self.table.entry(
            h,
            |(k, _)| k.as_slice() == key,
            |(k, _)| hasher.hash_one(k.as_slice()),
        ) {
            Entry::Occupied(e) => (&mut e.into_mut().1, false),
            Entry::Vacant(e) => (
                &mut e.insert((SmallBytes::new(key), make())).into_mut().1,
                true,
            ),
        }
    }

    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        if self.table.is_empty() {
            return None;
        }
        let h = self.hash(key);
        match self.table.find_entry(h, |(k, _)| k.as_slice() == key) {
            Ok(e) => Some(e.remove().0.1),
            Err(_) => None,
        }
    }

    pub fn clear(&mut self) {
        self.table = HashTable::new();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SmallBytes, &V)> {
        self.table.iter().map(|(k, v)| (k, v))
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&SmallBytes, &mut V) -> bool) {
        self.table.retain(|(k, v)| keep(k, v));
    }

    pub fn num_buckets(&self) -> usize {
        self.table.num_buckets()
    }

    /// Visits entries from bucket `cursor` on until `visit` has been called `count` times or the
    /// table ends. Returns the next cursor, 0 when the table is done.
    pub fn scan<'a>(
        &'a self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&'a SmallBytes, &'a V),
    ) -> usize {
        let buckets = self.table.num_buckets();
        let mut i = cursor;
        let mut seen = 0;
        while i < buckets {
            if let Some((k, v)) = self.table.get_bucket(i) {
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

    /// The entry in bucket `index`, if that bucket is full (for random sampling).
    pub fn bucket(&self, index: usize) -> Option<(&SmallBytes, &V)> {
        self.table.get_bucket(index).map(|(k, v)| (k, v))
    }

    /// Bytes held by the table itself (not by the values' heap parts).
    pub fn table_bytes(&self) -> usize {
        crate::mem::table_size(
            self.table.num_buckets(),
            std::mem::size_of::<(SmallBytes, V)>(),
        )
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
    }
}
