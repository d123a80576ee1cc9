//! The List type (moved out of `command::lists` so the keyspace does not depend on the
//! command layer).

use crate::bytes::SmallBytes;
use crate::db::Tunables;
use crate::packed::Packed;
use std::collections::VecDeque;

#[derive(Clone)]
pub enum List {
    Packed(Packed),
    Deque(VecDeque<SmallBytes>),
}

impl Default for List {
    fn default() -> Self {
        List::Packed(Packed::default())
    }
}

impl List {
    pub fn len(&self) -> usize {
        match self {
            List::Packed(p) => p.len(),
            List::Deque(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            List::Packed(_) => "listpack",
            List::Deque(_) => "quicklist",
        }
    }

    /// Converts a packed list that `list-max-listpack-size` no longer allows.
    fn check(&mut self, t: &Tunables) {
        let List::Packed(p) = self else { return };
        let over = match t.list_max_listpack_size {
            n if n > 0 => p.len() > n as usize,
            n => p.bytes() > 4096 << ((-n).clamp(1, 5) - 1),
        };
        if over {
            let d: VecDeque<SmallBytes> = p.iter().map(SmallBytes::new).collect();
            *self = List::Deque(d);
        }
    }

    pub fn push_front(&mut self, e: &[u8], t: &Tunables) {
        match self {
            List::Packed(p) => p.insert(0, e),
            List::Deque(d) => d.push_front(SmallBytes::new(e)),
        }
        self.check(t);
    }

    pub fn push_back(&mut self, e: &[u8], t: &Tunables) {
        match self {
            List::Packed(p) => p.push(e),
            List::Deque(d) => d.push_back(SmallBytes::new(e)),
        }
        self.check(t);
    }

    pub fn pop_front(&mut self) -> Option<SmallBytes> {
        match self {
            List::Packed(p) => {
                let e = SmallBytes::new(p.at(p.nth(0)?).0);
                p.remove(0, 1);
                Some(e)
            }
            List::Deque(d) => d.pop_front(),
        }
    }

    pub fn pop_back(&mut self) -> Option<SmallBytes> {
        match self {
            List::Packed(p) => {
                let pos = p.nth(p.len().checked_sub(1)?)?;
                let e = SmallBytes::new(p.at(pos).0);
                p.remove(pos, 1);
                Some(e)
            }
            List::Deque(d) => d.pop_back(),
        }
    }

    /// The element at `i` (in range).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            List::Packed(p) => p.nth(i).map(|pos| p.at(pos).0),
            List::Deque(d) => d.get(i).map(SmallBytes::as_slice),
        }
    }

    pub fn set(&mut self, i: usize, e: &[u8], t: &Tunables) {
        match self {
            List::Packed(p) => {
                if let Some(pos) = p.nth(i) {
                    p.replace(pos, e);
                }
            }
            List::Deque(d) => d[i] = SmallBytes::new(e),
        }
        self.check(t);
    }

    /// Inserts `e` before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, e: &[u8], t: &Tunables) {
        match self {
            List::Packed(p) => {
                let pos = p.nth(i).unwrap_or(p.bytes());
                p.insert(pos, e);
            }
            List::Deque(d) => d.insert(i, SmallBytes::new(e)),
        }
        self.check(t);
    }

    pub fn remove(&mut self, i: usize) {
        match self {
            List::Packed(p) => {
                if let Some(pos) = p.nth(i) {
                    p.remove(pos, 1);
                }
            }
            List::Deque(d) => {
                d.remove(i);
            }
        }
    }

    /// Keeps only positions `from..=to` (in range).
    pub fn keep(&mut self, from: usize, to: usize) {
        match self {
            List::Packed(p) => {
                if let Some(pos) = p.nth(to + 1) {
                    let n = p.len() - to - 1;
                    p.remove(pos, n);
                }
                if from > 0 {
                    p.remove(0, from);
                }
            }
            List::Deque(d) => {
                d.truncate(to + 1);
                d.drain(..from);
            }
        }
    }

    pub fn clear(&mut self) {
        *self = List::default();
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self {
            List::Packed(p) => Box::new(p.iter()),
            List::Deque(d) => Box::new(d.iter().map(SmallBytes::as_slice)),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            List::Packed(p) => p.heap_bytes(),
            List::Deque(d) => {
                crate::mem::alloc_size(d.capacity() * std::mem::size_of::<SmallBytes>())
                    + d.iter().map(SmallBytes::heap_bytes).sum::<usize>()
            }
        }
    }
}
