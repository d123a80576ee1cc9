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
