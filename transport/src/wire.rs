//! One reader for the project's binary formats (node-to-node frames, Raft messages, cluster
//! metadata, vShard snapshots): a bounds-checked cursor over little-endian integers, LEB128
//! varints and length-prefixed bytes, whose errors say what was wrong and at which offset.
//! Sans-IO; every format keeps its own error type and converts from [`WireError`].
//!
//! A declared count or length is checked against the bytes left before anything is reserved for
//! it ([`Reader::count`]), so a hostile length costs nothing.

/// What was wrong with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireErrorKind {
    /// A field runs past the end.
    Short,
    /// A declared count or length exceeds what is left.
    Length,
    /// A flag byte other than 0 or 1.
    Flag(u8),
    /// A varint longer than 10 bytes.
    Varint,
    /// Bytes after the value.
    Trailing,
    /// Values that must ascend do not.
    Order,
}

/// Why bytes did not decode, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError {
    pub offset: usize,
    pub kind: WireErrorKind,
}

impl WireError {
    /// A short description, for formats whose errors are static text.
    pub fn what(&self) -> &'static str {
        self.kind.what()
    }
}

impl WireErrorKind {
    /// A short description (`WireError::what`).
    pub fn what(self) -> &'static str {
        match self {
            WireErrorKind::Short => "a field runs past the end",
            WireErrorKind::Length => "declares more than it holds",
            WireErrorKind::Flag(_) => "a flag byte other than 0 or 1",
            WireErrorKind::Varint => "a varint longer than 10 bytes",
            WireErrorKind::Trailing => "bytes after the value",
            WireErrorKind::Order => "values out of order",
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.what(), self.offset)
    }
}

/// A cursor over `buf`.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.buf.len() - self.at
    }

    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, kind: WireErrorKind) -> WireError {
        WireError {
            offset: self.at,
            kind,
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.left() < n {
            return Err(self.error(WireErrorKind::Short));
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A byte that must be 0 or 1.
    pub fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(WireError {
                offset: self.at - 1,
                kind: WireErrorKind::Flag(b),
            }),
        }
    }

    /// A LEB128 varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.error(WireErrorKind::Varint))
    }

    /// Checks a declared count of items taking at least `min_bytes` each against the bytes
    /// left: refused before anything is reserved for it.
    pub fn count(&self, n: u64, min_bytes: usize) -> Result<usize, WireError> {
        if n > (self.left() / min_bytes.max(1)) as u64 {
            return Err(self.error(WireErrorKind::Length));
        }
        Ok(n as usize)
    }

    /// Bytes after a `u32` length.
    pub fn bytes_u32(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()?;
        let n = self.count(n as u64, 1)?;
        self.take(n)
    }

    /// Bytes after a varint length.
    pub fn bytes_varint(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        let n = self.count(n, 1)?;
        self.take(n)
    }

    /// Ok if every byte was read.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(WireErrorKind::Trailing))
        }
    }
}

/// Appends a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends bytes after a varint length.
pub fn put_bytes_varint(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends bytes after a `u32` length.
pub fn put_bytes_u32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_errors_name_the_offset() {
        let mut out = vec![7u8, 1];
        out.extend_from_slice(&513u16.to_le_bytes());
        out.extend_from_slice(&70_000u32.to_le_bytes());
        out.extend_from_slice(&u64::MAX.to_le_bytes());
        put_varint(&mut out, 300);
        put_bytes_varint(&mut out, b"abc");
        put_bytes_u32(&mut out, b"");
        let mut r = Reader::new(&out);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.flag(), Ok(true));
        assert_eq!(r.u16(), Ok(513));
        assert_eq!(r.u32(), Ok(70_000));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.varint(), Ok(300));
        assert_eq!(r.bytes_varint(), Ok(&b"abc"[..]));
        assert_eq!(r.bytes_u32(), Ok(&b""[..]));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(
            r.u8(),
            Err(WireError {
                offset: out.len(),
                kind: WireErrorKind::Short
            })
        );
        let mut r = Reader::new(&[2]);
        assert_eq!(r.flag().unwrap_err().kind, WireErrorKind::Flag(2));
        let cut = [0x80u8; 3];
        assert_eq!(
            Reader::new(&cut).varint().unwrap_err().kind,
            WireErrorKind::Short
        );
        let mut ten = [0xffu8; 10].to_vec();
        ten.push(0);
        assert_eq!(
            Reader::new(&ten).varint().unwrap_err().kind,
            WireErrorKind::Varint
        );
        // A declared length past the end is refused before anything is taken.
        let mut lie = Vec::new();
        put_varint(&mut lie, u64::MAX);
        let mut r = Reader::new(&lie);
        assert_eq!(r.bytes_varint().unwrap_err().kind, WireErrorKind::Length);
        assert_eq!(
            Reader::new(&[1, 2]).finish().unwrap_err(),
            WireError {
                offset: 0,
                kind: WireErrorKind::Trailing
            }
        );
    }
}
