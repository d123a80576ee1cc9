//! The Hash type (moved out of `command::hashes` so the keyspace does not depend on the
//! command layer).

use crate::bytes::SmallBytes;
use crate::db::PackLimits;
use crate::dict::Dict;
use crate::packed::Packed;

/// A hash: packed (fields and values alternating in one allocation, Redis's `listpack`) while it
/// has at most `hash-max-listpack-entries` fields and no field or value longer than
/// `hash-max-listpack-value`; a table (`hashtable`) from then on. It never converts back, as in
/// Redis.
#[derive(Clone)]
pub enum Hash {
    Packed(Packed),
    /// Boxed so that a packed hash's `Value` allocation stays small.
    Table(Box<Dict<SmallBytes>>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Packed(Packed::default())
    }
}

impl Hash {
    /// A hash of `pairs` (a decoded snapshot or DUMP payload); a field given twice means the
    /// bytes are damaged.
    pub fn from_pairs<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (F, V)>,
        lim: PackLimits,
    ) -> Result<Hash, &'static str> {
        let mut h = Hash::default();
        for (f, v) in pairs {
            if !h.insert(f.as_ref(), v.as_ref(), lim) {
                return Err("a hash field appears twice");
            }
        }
        Ok(h)
    }

    pub fn len(&self) -> usize {
        match self {
            Hash::Packed(p) => p.len() / 2,
            Hash::Table(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Packed(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Packed(p) => p.find(field, 2).map(|pos| p.at(p.at(pos).1).0),
            Hash::Table(d) => d.get(field).map(SmallBytes::as_slice),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Sets `field` to `value`; true if the field is new. Converts to a table when `lim` says.
    pub fn insert(&mut self, field: &[u8], value: &[u8], lim: PackLimits) -> bool {
        if matches!(self, Hash::Packed(_)) && (field.len() > lim.value || value.len() > lim.value) {
            self.convert();
        }
        match self {
            Hash::Packed(p) => match p.find(field, 2) {
                Some(pos) => {
                    let vpos = p.at(pos).1;
                    p.replace(vpos, value);
                    false
                }
                None => {
                    p.push(field);
                    p.push(value);
                    if p.len() / 2 > lim.entries {
                        self.convert();
                    }
                    true
                }
            },
            Hash::Table(d) => d.insert(field, SmallBytes::new(value)).is_none(),
        }
    }

    /// Removes `field`; true if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Packed(p) => match p.find(field, 2) {
                Some(pos) => {
                    p.remove(pos, 2);
                    true
                }
                None => false,
            },
            Hash::Table(d) => d.remove(field).is_some(),
        }
    }

    fn convert(&mut self) {
        let Hash::Packed(p) = &*self else { return };
        let mut d = Dict::default();
        {
            let mut it = p.iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                d.insert(f, SmallBytes::new(v));
            }
        }
        *self = Hash::Table(Box::new(d));
    }

    /// Fields and values, in storage order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Packed(p) => {
                let mut it = p.iter();
                Box::new(std::iter::from_fn(move || Some((it.next()?, it.next()?))))
            }
            Hash::Table(d) => Box::new(d.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
        }
    }

    /// A uniformly random field and its value; the hash must not be empty.
    pub fn random(&self, rng: &mut crate::rng::Rng) -> (&[u8], &[u8]) {
        match self {
            Hash::Packed(p) => {
                let i = rng.below((p.len() / 2) as u64) as usize;
                let pos = p.nth(2 * i).expect("in range");
                let (f, next) = p.at(pos);
                (f, p.at(next).0)
            }
            Hash::Table(d) => {
                let (_, k, v) = d.random(rng).expect("hashes are never empty");
                (k, v)
            }
        }
    }

    /// `min(n, len)` distinct random fields, each visited once.
    pub fn sample_distinct(
        &self,
        n: usize,
        rng: &mut crate::rng::Rng,
        mut visit: impl FnMut(&[u8], &[u8]),
    ) {
        match self {
            Hash::Packed(_) => {
                let picked = super::pick_distinct(self.len(), n, rng);
                for (i, (f, v)) in self.iter().enumerate() {
                    if picked[i] {
                        visit(f, v);
                    }
                }
            }
            Hash::Table(d) => d.sample_distinct(n, rng, |k, v| visit(k, v)),
        }
    }

    /// HSCAN: a packed hash is returned whole, with cursor 0 (as Redis does for listpacks).
    pub fn scan<'a>(
        &'a self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&'a [u8], &'a [u8]),
    ) -> usize {
        match self {
            Hash::Packed(_) => {
                for (f, v) in self.iter() {
                    visit(f, v);
                }
                0
            }
            Hash::Table(d) => d.scan(cursor, count, |k, v| visit(k, v)),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Hash::Packed(p) => p.heap_bytes(),
            Hash::Table(d) => {
                d.table_bytes()
                    + d.iter()
                        .map(|(k, v)| k.heap_bytes() + v.heap_bytes())
                        .sum::<usize>()
            }
        }
    }
}
