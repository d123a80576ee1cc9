//! The Set type (moved out of `command::sets` so the keyspace does not depend on the
//! command layer).

use crate::db::Tunables;
use crate::dict::Dict;
use crate::num::parse_i64;
use crate::packed::Packed;
use std::borrow::Cow;

#[derive(Clone)]
pub enum Set {
    /// Sorted, distinct.
    Ints(Vec<i64>),
    Packed(Packed),
    /// Boxed so that a compact set's `Value` allocation stays small.
    Table(Box<Dict<()>>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(Vec::new())
    }
}

/// `m` as an intset member: the canonical decimal form of an i64 only (`"01"` is a string).
fn as_int(m: &[u8]) -> Option<i64> {
    let n = parse_i64(m)?;
    let mut buf = [0u8; 20];
    (crate::num::format_i64(n, &mut buf) == m).then_some(n)
}

impl Set {
    /// A set of `members`, in the encoding the thresholds give (a decoded snapshot or DUMP
    /// payload); a member given twice means the bytes are damaged.
    pub fn from_members<M: AsRef<[u8]>>(members: &[M], t: &Tunables) -> Result<Set, &'static str> {
        let Some(first) = members.first() else {
            return Ok(Set::default());
        };
        let mut s = Set::for_members(first.as_ref(), members.len(), t);
        for m in members {
            if !s.insert(m.as_ref(), t) {
                return Err("a set member appears twice");
            }
        }
        Ok(s)
    }

    /// An empty set in the encoding Redis starts with for `first` and `hint` members.
    pub fn for_members(first: &[u8], hint: usize, t: &Tunables) -> Set {
        if as_int(first).is_some() && hint <= t.set_max_intset_entries {
            Set::Ints(Vec::new())
        } else if hint <= t.set_max_listpack_entries && first.len() <= t.set_max_listpack_value {
            Set::Packed(Packed::default())
        } else {
            Set::Table(Box::default())
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Set::Ints(v) => v.len(),
            Set::Packed(p) => p.len(),
            Set::Table(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Ints(_) => "intset",
            Set::Packed(_) => "listpack",
            Set::Table(_) => "hashtable",
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => as_int(m).is_some_and(|n| v.binary_search(&n).is_ok()),
            Set::Packed(p) => p.find(m, 1).is_some(),
            Set::Table(d) => d.contains(m),
        }
    }

    /// Adds `m`; true if it is new. Converts encodings as Redis does.
    pub fn insert(&mut self, m: &[u8], t: &Tunables) -> bool {
        match self {
            Set::Ints(v) => {
                if let Some(n) = as_int(m) {
                    let Err(at) = v.binary_search(&n) else {
                        return false;
                    };
                    v.reserve_exact(1);
                    v.insert(at, n);
                    if v.len() > t.set_max_intset_entries {
                        self.convert(false);
                    }
                    return true;
                }
                let longest = v
                    .first()
                    .into_iter()
                    .chain(v.last())
                    .map(|n| n.to_string().len())
                    .max()
                    .unwrap_or(0);
                let packed_fits = v.len() < t.set_max_listpack_entries
                    && m.len() <= t.set_max_listpack_value
                    && longest <= t.set_max_listpack_value;
                self.convert(packed_fits);
                self.insert(m, t)
            }
            Set::Packed(p) => {
                if p.find(m, 1).is_some() {
                    return false;
                }
                if p.len() < t.set_max_listpack_entries && m.len() <= t.set_max_listpack_value {
                    p.push(m);
                } else {
                    self.convert(false);
                    self.insert(m, t);
                }
                true
            }
            Set::Table(d) => d.insert(m, ()).is_none(),
        }
    }

    /// Removes `m`; true if it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => match as_int(m).and_then(|n| v.binary_search(&n).ok()) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            Set::Packed(p) => match p.find(m, 1) {
                Some(pos) => {
                    p.remove(pos, 1);
                    true
                }
                None => false,
            },
            Set::Table(d) => d.remove(m).is_some(),
        }
    }

    /// Moves the members to a packed list (`packed`) or a table.
    fn convert(&mut self, packed: bool) {
        let members = self.members();
        *self = if packed {
            let mut p = Packed::default();
            for m in &members {
                p.push(m);
            }
            Set::Packed(p)
        } else {
            let mut d = Box::<Dict<()>>::default();
            for m in &members {
                d.insert(m, ());
            }
            Set::Table(d)
        };
    }

    /// Visits every member.
    pub fn for_each(&self, mut visit: impl FnMut(&[u8])) {
        match self {
            Set::Ints(v) => {
                let mut buf = [0u8; 20];
                for &n in v {
                    visit(crate::num::format_i64(n, &mut buf));
                }
            }
            Set::Packed(p) => p.iter().for_each(visit),
            Set::Table(d) => d.iter().for_each(|(k, _)| visit(k)),
        }
    }

    /// Every member, owned.
    pub fn members(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::with_capacity(self.len());
        self.for_each(|m| all.push(m.to_vec()));
        all
    }

    fn nth(&self, i: usize) -> Cow<'_, [u8]> {
        match self {
            Set::Ints(v) => Cow::Owned(v[i].to_string().into_bytes()),
            Set::Packed(p) => Cow::Borrowed(p.at(p.nth(i).expect("in range")).0),
            Set::Table(_) => unreachable!("tables pick by bucket"),
        }
    }

    /// A uniformly random member; the set must not be empty.
    pub fn random(&self, rng: &mut crate::rng::Rng) -> Cow<'_, [u8]> {
        match self {
            Set::Table(d) => Cow::Borrowed(d.random(rng).expect("sets are never empty").1),
            _ => self.nth(rng.below(self.len() as u64) as usize),
        }
    }

    /// `min(n, len)` distinct random members, each visited once.
    pub fn sample_distinct(
        &self,
        n: usize,
        rng: &mut crate::rng::Rng,
        mut visit: impl FnMut(&[u8]),
    ) {
        match self {
            Set::Table(d) => d.sample_distinct(n, rng, |k, _| visit(k)),
            _ => {
                let picked = super::pick_distinct(self.len(), n, rng);
                let mut i = 0;
                self.for_each(|m| {
                    if picked[i] {
                        visit(m);
                    }
                    i += 1;
                });
            }
        }
    }

    /// `min(n, len)` distinct members chosen by `rng` and the members alone, each visited once
    /// (SPOP: what it removes is replayed from the log on every replica and after every
    /// restart). A value drawn from `rng` is a point on a ring of 64-bit hashes; the members
    /// chosen are the `n` whose [`stable_hash`] follows it most closely. So the choice
    /// depends on the set's content, never on its encoding or its hash table's layout, which
    /// differ between replicas (per-process seeds) and after a snapshot is loaded (`random`
    /// and `sample_distinct` pick by layout: they only answer). O(len), where Redis's SPOP
    /// is O(n) in the members it pops: what replicated, replayed pops cost here.
    pub fn pick_by_content(
        &self,
        n: usize,
        rng: &mut crate::rng::Rng,
        mut visit: impl FnMut(&[u8]),
    ) {
        let at = rng.next_u64();
        if n == 0 {
            return;
        }
        // The `n` closest so far, farthest on top: one copy per member kept, not per member.
        let mut kept: std::collections::BinaryHeap<(u64, Vec<u8>)> =
            std::collections::BinaryHeap::with_capacity(n.min(self.len()) + 1);
        self.for_each(|m| {
            let d = stable_hash(m).wrapping_sub(at);
            if kept.len() < n {
                kept.push((d, m.to_vec()));
            } else if let Some(top) = kept.peek()
                && (d, m) < (top.0, top.1.as_slice())
            {
                kept.pop();
                kept.push((d, m.to_vec()));
            }
        });
        for (_, m) in kept.into_sorted_vec() {
            visit(&m);
        }
    }

    /// SSCAN: compact sets are returned whole with cursor 0, as Redis does.
    pub fn scan(&self, cursor: usize, count: usize, mut visit: impl FnMut(&[u8])) -> usize {
        match self {
            Set::Table(d) => d.scan(cursor, count, |k, _| visit(k)),
            _ => {
                self.for_each(visit);
                0
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Set::Ints(v) => crate::mem::alloc_size(v.capacity() * 8),
            Set::Packed(p) => p.heap_bytes(),
            Set::Table(d) => d.table_bytes() + d.iter().map(|(k, _)| k.heap_bytes()).sum::<usize>(),
        }
    }
}

/// A hash of `bytes` that is the same in every process and every build: it decides which
/// members SPOP removes when a log entry is replayed (`Set::pick_by_content`), so changing it
/// changes what existing logs replay to. Not for tables (no seed: clients could aim
/// collisions).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(last)).wrapping_mul(K);
    // Final avalanche (the 64-bit finalizer of MurmurHash3).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
