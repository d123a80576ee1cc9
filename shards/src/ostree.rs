//! `OrderIndex`: the ordered side of a sorted set. A treap over `(score, member)` in an arena, with
//! subtree sizes, so that insert, remove, rank, select-by-rank and seeks by score or member are all
//! O(log n) expected. Priorities come from a fixed hash of the member (not a random source), so
//! every replica that applies the same commands builds the same tree.

use crate::bytes::SmallBytes;
use std::cmp::Ordering;

const NIL: u32 = u32::MAX;

struct Node {
    score: f64,
    member: SmallBytes,
    priority: u32,
    left: u32,
    right: u32,
    size: u32,
}

/// Orders `(score, member)` as Redis does: by score, then by member bytes.
pub fn cmp_entry(a_score: f64, a_member: &[u8], b_score: f64, b_member: &[u8]) -> Ordering {
    a_score
        .partial_cmp(&b_score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a_member.cmp(b_member))
}

/// FNV-1a of the member, mixed: a deterministic treap priority.
fn priority(member: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in member {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    (h >> 32) as u32
}

pub struct OrderIndex {
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// `NIL` when empty (so a derived `Default`, with root 0, would be wrong).
    root: u32,
}

impl Default for OrderIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderIndex {
    pub fn new() -> Self {
        OrderIndex {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
        }
    }

    pub fn len(&self) -> usize {
        self.size(self.root)
    }

    pub fn is_empty(&self) -> bool {
        self.root == NIL
    }

    fn size(&self, n: u32) -> usize {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size as usize
        }
    }

    fn fix(&mut self, n: u32) {
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        self.nodes[n as usize].size = (1 + self.size(l) + self.size(r)) as u32;
    }

    /// Splits `t` into (entries < key, entries >= key) when `inclusive` is false, or
    /// (entries <= key, entries > key) when it is true.
    fn split(&mut self, t: u32, score: f64, member: &[u8], inclusive: bool) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let node = &self.nodes[t as usize];
        let ord = cmp_entry(node.score, &node.member, score, member);
        let goes_left = if inclusive {
            ord != Ordering::Greater
        } else {
            ord == Ordering::Less
        };
        if goes_left {
            let right = self.nodes[t as usize].right;
            let (a, b) = self.split(right, score, member, inclusive);
            self.nodes[t as usize].right = a;
            self.fix(t);
            (t, b)
        } else {
            let left = self.nodes[t as usize].left;
            let (a, b) = self.split(left, score, member, inclusive);
            self.nodes[t as usize].left = b;
            self.fix(t);
            (a, t)
        }
    }

    /// Joins two treaps where every entry of `a` is below every entry of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority >= self.nodes[b as usize].priority {
            let ar = self.nodes[a as usize].right;
            let m = self.merge(ar, b);
            self.nodes[a as usize].right = m;
            self.fix(a);
            a
        } else {
            let bl = self.nodes[b as usize].left;
            let m = self.merge(a, bl);
            self.nodes[b as usize].left = m;
            self.fix(b);
            b
        }
    }

    /// Adds `(score, member)`. The caller guarantees the member is not already present.
    pub fn insert(&mut self, score: f64, member: &[u8]) {
        let node = Node {
            score,
            member: SmallBytes::new(member),
            priority: priority(member),
            left: NIL,
            right: NIL,
            size: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        // Descend while the path's priorities stay at least the new node's (counting it in each
        // subtree passed), then let it take over the subtree there, split around it: one pass
        // down plus a split of a subtree that is small on average.
        let prio = self.nodes[id as usize].priority;
        let mut link: Option<(u32, bool)> = None;
        let mut t = self.root;
        while t != NIL && self.nodes[t as usize].priority >= prio {
            let n = &mut self.nodes[t as usize];
            n.size += 1;
            let left = cmp_entry(score, member, n.score, &n.member) == Ordering::Less;
            link = Some((t, left));
            t = if left { n.left } else { n.right };
        }
        let (a, b) = self.split(t, score, member, false);
        self.nodes[id as usize].left = a;
        self.nodes[id as usize].right = b;
        self.fix(id);
        self.set_link(link, id);
    }

    /// Points the parent link `link` (`None`: the root) at `child`.
    fn set_link(&mut self, link: Option<(u32, bool)>, child: u32) {
        match link {
            None => self.root = child,
            Some((p, true)) => self.nodes[p as usize].left = child,
            Some((p, false)) => self.nodes[p as usize].right = child,
        }
    }

    /// Removes `(score, member)`; returns whether it was there.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        // Find it (read only), then walk the same path again shrinking the subtree sizes, and
        // replace it by the merge of its two children.
        let (mut link, mut t) = (None, self.root);
        loop {
            if t == NIL {
                return false;
            }
            let n = &self.nodes[t as usize];
            match cmp_entry(score, member, n.score, &n.member) {
                Ordering::Equal => break,
                Ordering::Less => {
                    link = Some((t, true));
                    t = n.left;
                }
                Ordering::Greater => {
                    link = Some((t, false));
                    t = n.right;
                }
            }
        }
        let mut u = self.root;
        while u != t {
            let n = &mut self.nodes[u as usize];
            n.size -= 1;
            u = if cmp_entry(score, member, n.score, &n.member) == Ordering::Less {
                n.left
            } else {
                n.right
            };
        }
        let (l, r) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
        let merged = self.merge(l, r);
        self.set_link(link, merged);
        self.nodes[t as usize].member = SmallBytes::new(b"");
        self.free.push(t);
        if self.root == NIL {
            self.nodes.clear();
            self.free.clear();
        }
        true
    }

    /// The 0-based rank of `(score, member)`, which must be present.
    pub fn rank(&self, score: f64, member: &[u8]) -> usize {
        let mut n = self.root;
        let mut rank = 0;
        while n != NIL {
            let node = &self.nodes[n as usize];
            match cmp_entry(score, member, node.score, &node.member) {
                Ordering::Less => n = node.left,
                Ordering::Equal => return rank + self.size(node.left),
                Ordering::Greater => {
                    rank += self.size(node.left) + 1;
                    n = node.right;
                }
            }
        }
        rank
    }

    /// Number of entries ordered before the first entry `>= (score, member)` (or `> ` with
    /// `after`): a seek position for ranges.
    pub fn position(&self, mut before: impl FnMut(f64, &[u8]) -> bool) -> usize {
        let mut n = self.root;
        let mut pos = 0;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if before(node.score, &node.member) {
                pos += self.size(node.left) + 1;
                n = node.right;
            } else {
                n = node.left;
            }
        }
        pos
    }

    /// The entry at 0-based `rank`.
    pub fn select(&self, mut rank: usize) -> Option<(f64, &SmallBytes)> {
        let mut n = self.root;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let ls = self.size(node.left);
            match rank.cmp(&ls) {
                Ordering::Less => n = node.left,
                Ordering::Equal => return Some((node.score, &node.member)),
                Ordering::Greater => {
                    rank -= ls + 1;
                    n = node.right;
                }
            }
        }
        None
    }

    /// Visits the entries with ranks `from..to` in order (`to` clamped to the length).
    pub fn for_range(&self, from: usize, to: usize, mut visit: impl FnMut(f64, &SmallBytes)) {
        let to = to.min(self.len());
        if from >= to {
            return;
        }
        // An explicit-stack in-order walk that skips subtrees wholly before `from`.
        let mut stack: Vec<(u32, usize)> = Vec::new(); // (node, rank of its leftmost entry)
        let mut n = self.root;
        let mut base = 0;
        loop {
            while n != NIL {
                let node = &self.nodes[n as usize];
                let here = base + self.size(node.left);
                if here < from {
                    // Everything left of and at `n` is before `from`.
                    base = here + 1;
                    n = node.right;
                } else {
                    stack.push((n, base));
                    n = node.left;
                }
            }
            let Some((top, b)) = stack.pop() else { return };
            let node = &self.nodes[top as usize];
            let rank = b + self.size(node.left);
            if rank >= to {
                return;
            }
            visit(node.score, &node.member);
            base = rank + 1;
            n = node.right;
        }
    }

    /// Checks the treap's invariants (tests).
    pub fn check(&self) {
        fn walk(t: &OrderIndex, n: u32, out: &mut Vec<(f64, Vec<u8>)>) -> usize {
            if n == NIL {
                return 0;
            }
            let node = &t.nodes[n as usize];
            for c in [node.left, node.right] {
                if c != NIL {
                    assert!(t.nodes[c as usize].priority <= node.priority, "heap order");
                }
            }
            let l = walk(t, node.left, out);
            out.push((node.score, node.member.to_vec()));
            let r = walk(t, node.right, out);
            assert_eq!(node.size as usize, l + r + 1, "subtree size");
            l + r + 1
        }
        let mut entries = Vec::new();
        walk(self, self.root, &mut entries);
        for w in entries.windows(2) {
            assert_eq!(
                cmp_entry(w[0].0, &w[0].1, w[1].0, &w[1].1),
                Ordering::Less,
                "in-order"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[derive(PartialEq, Clone, Debug)]
    struct Key(f64, Vec<u8>);
    impl Eq for Key {}
    impl Ord for Key {
        fn cmp(&self, o: &Self) -> Ordering {
            cmp_entry(self.0, &self.1, o.0, &o.1)
        }
    }
    impl PartialOrd for Key {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }

    #[test]
    fn random_operations_agree_with_a_btreeset() {
        let mut t = OrderIndex::default();
        let mut model: BTreeSet<Key> = BTreeSet::new();
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for step in 0..20_000 {
            let r = next();
            let member = format!("m{}", r % 500).into_bytes();
            let score = ((r >> 20) % 50) as f64 - 10.0;
            let present = model.iter().find(|k| k.1 == member).cloned();
            if r % 3 != 0 {
                if let Some(k) = present {
                    assert!(t.remove(k.0, &k.1));
                    model.remove(&k);
                }
                t.insert(score, &member);
                model.insert(Key(score, member));
            } else if let Some(k) = present {
                assert!(t.remove(k.0, &k.1));
                model.remove(&k);
                assert!(!t.remove(k.0, &k.1));
            }
            if step % 1000 == 0 {
                t.check();
            }
            assert_eq!(t.len(), model.len());
        }
        t.check();
        let ordered: Vec<Key> = model.iter().cloned().collect();
        for (i, k) in ordered.iter().enumerate() {
            assert_eq!(t.rank(k.0, &k.1), i);
            let (s, m) = t.select(i).unwrap();
            assert_eq!((s, m.as_slice()), (k.0, k.1.as_slice()));
        }
        assert!(t.select(ordered.len()).is_none());
        let mut got = Vec::new();
        t.for_range(10, 30, |s, m| got.push(Key(s, m.to_vec())));
        assert_eq!(got, ordered[10..30.min(ordered.len())].to_vec());
        let first_ge_zero = t.position(|s, _| s < 0.0);
        assert_eq!(first_ge_zero, ordered.iter().filter(|k| k.0 < 0.0).count());
    }
}
