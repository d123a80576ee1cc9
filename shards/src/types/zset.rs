//! The sorted-set type: packed while small, a `Dict` plus an order-statistics treap beyond.

use crate::db::PackLimits;
use crate::dict::Dict;
use crate::ostree::OrderIndex;
use crate::packed::Packed;

/// A sorted set: packed (`listpack`: member and 8-byte score alternating, in `(score, member)`
/// order, one allocation) while it has at most `zset-max-listpack-entries` members none longer
/// than `zset-max-listpack-value`; then a `Dict` from member to score plus an [`OrderIndex`]
/// (`skiplist` in OBJECT ENCODING, Redis's name for its indexed encoding). Never converts back.
pub struct ZSet {
    repr: Repr,
}

enum Repr {
    Packed(Packed),
    Indexed {
        scores: Dict<f64>,
        index: OrderIndex,
    },
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet {
            repr: Repr::Packed(Packed::default()),
        }
    }
}

fn score_of(bytes: &[u8]) -> f64 {
    f64::from_le_bytes(bytes.try_into().expect("8-byte score"))
}

impl ZSet {
    /// A sorted set of `(member, score)` pairs (a decoded snapshot or DUMP payload); a NaN
    /// score or a member given twice means the bytes are damaged.
    pub fn from_pairs<M: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (M, f64)>,
        lim: PackLimits,
    ) -> Result<ZSet, &'static str> {
        let mut z = ZSet::default();
        for (m, s) in pairs {
            if s.is_nan() {
                return Err("a NaN score");
            }
            if z.set(m.as_ref(), s, lim).is_some() {
                return Err("a sorted set member appears twice");
            }
        }
        Ok(z)
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Packed(p) => p.len() / 2,
            Repr::Indexed { scores, .. } => scores.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match &self.repr {
            Repr::Packed(_) => "listpack",
            Repr::Indexed { .. } => "skiplist",
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.repr {
            Repr::Packed(p) => p.find(member, 2).map(|pos| score_of(p.at(p.at(pos).1).0)),
            Repr::Indexed { scores, .. } => scores.get(member).copied(),
        }
    }

    /// Sets `member`'s score; returns the previous one. Converts to the indexed encoding when a
    /// new member would pass `lim`.
    pub fn set(&mut self, member: &[u8], score: f64, lim: PackLimits) -> Option<f64> {
        let old = self.score(member);
        if old == Some(score) {
            return old;
        }
        if old.is_none()
            && matches!(self.repr, Repr::Packed(_))
            && (self.len() + 1 > lim.entries || member.len() > lim.value)
        {
            self.convert();
        }
        match &mut self.repr {
            Repr::Packed(p) => {
                if let Some(pos) = p.find(member, 2) {
                    p.remove(pos, 2);
                }
                // Insert before the first entry ordered after (score, member).
                let mut pos = 0;
                while !p.is_end(pos) {
                    let (m, next) = p.at(pos);
                    let (sc, after) = p.at(next);
                    if crate::ostree::cmp_entry(score_of(sc), m, score, member).is_gt() {
                        break;
                    }
                    pos = after;
                }
                p.insert(pos, &score.to_le_bytes());
                p.insert(pos, member);
            }
            Repr::Indexed { scores, index } => {
                if let Some(o) = old {
                    index.remove(o, member);
                }
                index.insert(score, member);
                scores.insert(member, score);
            }
        }
        old
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Packed(p) => match p.find(member, 2) {
                Some(pos) => {
                    p.remove(pos, 2);
                    true
                }
                None => false,
            },
            Repr::Indexed { scores, index } => match scores.remove(member) {
                Some(s) => index.remove(s, member),
                None => false,
            },
        }
    }

    fn convert(&mut self) {
        let Repr::Packed(p) = &self.repr else { return };
        let mut scores = Dict::default();
        let mut index = OrderIndex::default();
        {
            let mut it = p.iter();
            while let (Some(m), Some(sc)) = (it.next(), it.next()) {
                scores.insert(m, score_of(sc));
                index.insert(score_of(sc), m);
            }
        }
        self.repr = Repr::Indexed { scores, index };
    }

    /// The packed entries in order: `(member, score)`.
    fn packed_iter(p: &Packed) -> impl Iterator<Item = (&[u8], f64)> + '_ {
        let mut it = p.iter();
        std::iter::from_fn(move || Some((it.next()?, score_of(it.next()?))))
    }

    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match &self.repr {
            Repr::Packed(p) => Self::packed_iter(p).position(|(m, _)| m == member),
            Repr::Indexed { index, .. } => self.score(member).map(|s| index.rank(s, member)),
        }
    }

    /// Number of entries, in order, before the first for which `before` is false (a seek
    /// position for ranges; `before` must hold for a prefix of the order).
    pub fn position(&self, mut before: impl FnMut(f64, &[u8]) -> bool) -> usize {
        match &self.repr {
            Repr::Packed(p) => Self::packed_iter(p)
                .take_while(|(m, s)| before(*s, m))
                .count(),
            Repr::Indexed { index, .. } => index.position(before),
        }
    }

    /// Visits the entries with ascending ranks `from..to`.
    pub(crate) fn for_range(&self, from: usize, to: usize, mut visit: impl FnMut(f64, &[u8])) {
        match &self.repr {
            Repr::Packed(p) => {
                for (m, s) in Self::packed_iter(p)
                    .skip(from)
                    .take(to.saturating_sub(from))
                {
                    visit(s, m);
                }
            }
            Repr::Indexed { index, .. } => index.for_range(from, to, |s, m| visit(s, m)),
        }
    }

    /// The entries with ascending ranks `from..to`.
    pub(crate) fn entries(&self, from: usize, to: usize) -> Vec<(f64, Vec<u8>)> {
        let mut v = Vec::with_capacity(to.saturating_sub(from).min(1 << 16));
        self.for_range(from, to, |s, m| v.push((s, m.to_vec())));
        v
    }

    /// Visits the members in score order.
    pub fn for_each_in_order(&self, mut visit: impl FnMut(&[u8])) {
        self.for_range(0, self.len(), |_, m| visit(m));
    }

    /// Every `(member, score)`, in no particular order.
    pub fn members_and_scores(&self) -> Vec<(Vec<u8>, f64)> {
        let mut v = Vec::with_capacity(self.len());
        match &self.repr {
            Repr::Packed(p) => v.extend(Self::packed_iter(p).map(|(m, s)| (m.to_vec(), s))),
            Repr::Indexed { scores, .. } => v.extend(scores.iter().map(|(m, &s)| (m.to_vec(), s))),
        }
        v
    }

    /// A uniformly random `(member, score)`; the set must not be empty.
    pub(crate) fn random(&self, rng: &mut crate::rng::Rng) -> (&[u8], f64) {
        match &self.repr {
            Repr::Packed(p) => {
                let i = rng.below(self.len() as u64) as usize;
                Self::packed_iter(p).nth(i).expect("in range")
            }
            Repr::Indexed { scores, .. } => {
                let (_, m, &s) = scores.random(rng).expect("sorted sets are never empty");
                (m, s)
            }
        }
    }

    /// `min(n, len)` distinct random entries, each visited once.
    pub(crate) fn sample_distinct(
        &self,
        n: usize,
        rng: &mut crate::rng::Rng,
        mut visit: impl FnMut(&[u8], f64),
    ) {
        match &self.repr {
            Repr::Packed(p) => {
                let picked = super::pick_distinct(self.len(), n, rng);
                for (i, (m, s)) in Self::packed_iter(p).enumerate() {
                    if picked[i] {
                        visit(m, s);
                    }
                }
            }
            Repr::Indexed { scores, .. } => scores.sample_distinct(n, rng, |m, &s| visit(m, s)),
        }
    }

    /// ZSCAN: a packed set is returned whole with cursor 0, as Redis does.
    pub(crate) fn scan(
        &self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&[u8], f64),
    ) -> usize {
        match &self.repr {
            Repr::Packed(p) => {
                Self::packed_iter(p).for_each(|(m, s)| visit(m, s));
                0
            }
            Repr::Indexed { scores, .. } => scores.scan(cursor, count, |m, &s| visit(m, s)),
        }
    }

    pub fn table_bytes(&self) -> usize {
        match &self.repr {
            Repr::Packed(p) => p.heap_bytes(),
            Repr::Indexed { scores, .. } => scores.table_bytes() + self.len() * 48,
        }
    }

    pub fn deep_clone(&self) -> ZSet {
        match &self.repr {
            Repr::Packed(p) => ZSet {
                repr: Repr::Packed(p.clone()),
            },
            Repr::Indexed { scores, .. } => {
                let mut z = ZSet::default();
                z.convert();
                for (m, &s) in scores.iter() {
                    z.set(
                        m,
                        s,
                        PackLimits {
                            entries: 0,
                            value: 0,
                        },
                    );
                }
                z
            }
        }
    }
}
