//! `Packed`: a sequence of byte strings in one allocation, each stored as a LEB128 length and
//! the bytes. It is the compact encoding of small hashes, sets and sorted sets, as Redis's
//! listpack is: a 5-field hash of short strings takes tens of bytes instead of a hash table.
//! Every operation is a linear scan, which is why collections leave it past a size threshold.
//!
//! Entries are addressed by byte offset (`Pos`); callers that store pairs (field, value) use
//! every second entry as a key.

#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Packed {
    buf: Vec<u8>,
    len: u32,
}

/// The byte offset of an entry.
pub type Pos = usize;

fn varint_len(mut n: usize) -> usize {
    let mut l = 1;
    while n >= 0x80 {
        n >>= 7;
        l += 1;
    }
    l
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

impl Packed {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the encoded entries.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of the allocation (for MEMORY USAGE).
    pub fn heap_bytes(&self) -> usize {
        crate::mem::alloc_size(self.buf.capacity())
    }

    /// The entry at `pos` and the position of the next one.
    #[inline]
    pub fn at(&self, pos: Pos) -> (&[u8], Pos) {
        let (mut n, mut shift, mut i) = (0usize, 0, pos);
        loop {
            let b = self.buf[i];
            n |= ((b & 0x7f) as usize) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        (&self.buf[i..i + n], i + n)
    }

    /// Whether `pos` is past the last entry.
    #[inline]
    pub fn is_end(&self, pos: Pos) -> bool {
        pos >= self.buf.len()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if self.is_end(pos) {
                return None;
            }
            let (e, next) = self.at(pos);
            pos = next;
            Some(e)
        })
    }

    /// The position of the first entry among every `stride`-th (0, stride, 2*stride, ...) that
    /// equals `item`.
    pub fn find(&self, item: &[u8], stride: usize) -> Option<Pos> {
        let mut pos = 0;
        while !self.is_end(pos) {
            let (e, mut next) = self.at(pos);
            if e == item {
                return Some(pos);
            }
            for _ in 1..stride {
                next = self.at(next).1;
            }
            pos = next;
        }
        None
    }

    /// The position of entry number `i`.
    pub fn nth(&self, i: usize) -> Option<Pos> {
        let mut pos = 0;
        for _ in 0..i {
            if self.is_end(pos) {
                return None;
            }
            pos = self.at(pos).1;
        }
        (!self.is_end(pos)).then_some(pos)
    }

    /// Appends an entry.
    pub fn push(&mut self, item: &[u8]) {
        // Exact growth, as a listpack reallocates to size: small collections are many.
        self.buf.reserve_exact(varint_len(item.len()) + item.len());
        put_varint(&mut self.buf, item.len());
        self.buf.extend_from_slice(item);
        self.len += 1;
    }

    /// Inserts an entry before the one at `pos` (or at the end).
    pub fn insert(&mut self, pos: Pos, item: &[u8]) {
        let mut enc = Vec::with_capacity(varint_len(item.len()) + item.len());
        put_varint(&mut enc, item.len());
        enc.extend_from_slice(item);
        self.buf.reserve_exact(enc.len());
        self.buf.splice(pos..pos, enc);
        self.len += 1;
    }

    /// Removes `count` entries starting at `pos`.
    pub fn remove(&mut self, pos: Pos, count: usize) {
        let mut end = pos;
        for _ in 0..count {
            end = self.at(end).1;
        }
        self.buf.drain(pos..end);
        self.len -= count as u32;
        if self.buf.capacity() > 64 && self.buf.capacity() > self.buf.len() * 2 {
            self.buf.shrink_to_fit();
        }
    }

    /// Replaces the entry at `pos` with `item`.
    pub fn replace(&mut self, pos: Pos, item: &[u8]) {
        let end = self.at(pos).1;
        let mut enc = Vec::with_capacity(varint_len(item.len()) + item.len());
        put_varint(&mut enc, item.len());
        enc.extend_from_slice(item);
        self.buf.reserve_exact(enc.len().saturating_sub(end - pos));
        self.buf.splice(pos..end, enc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_every_edit() {
        let mut p = Packed::default();
        let long = vec![b'x'; 300]; // a two-byte length
        p.push(b"a");
        p.push(&long);
        p.push(b"");
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            vec![&b"a"[..], &long[..], b""]
        );
        let pos = p.find(&long, 1).unwrap();
        p.replace(pos, b"short");
        p.insert(0, b"first");
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            vec![&b"first"[..], b"a", b"short", b""]
        );
        assert_eq!(p.find(b"short", 2), Some(p.nth(2).unwrap()));
        assert_eq!(
            p.find(b"a", 2),
            None,
            "odd entries are not keys with stride 2"
        );
        let pos = p.nth(1).unwrap();
        p.remove(pos, 2);
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![&b"first"[..], b""]);
        assert_eq!(p.len(), 2);
        assert_eq!(p.nth(2), None);
    }
}
