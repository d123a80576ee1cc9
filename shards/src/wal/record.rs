//! Record and segment-header framing. A record is `len: u32 | crc32c(body): u32 | body` and a body
//! is `kind: u8 | group: u32 | index: u64 | term: u64 | payload`, little-endian. Decoding never
//! panics: every outcome of arbitrary bytes is a value.

/// The size of a record's frame (length and checksum) before its body.
pub const FRAME: usize = 8;
/// The fixed part of a body.
pub const BODY_FIXED: usize = 1 + 4 + 8 + 8;
/// Largest body accepted on decode; a length beyond it is corruption, not a record to wait for.
pub const BODY_MAX: usize = 64 << 20;

pub const MAGIC: [u8; 8] = *b"SLWAL\0\0\x01";
pub const HEADER: usize = 32;
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A Raft entry: `index`, `term`, the payload is the entry.
    Entry = 1,
    /// Drops the group's entries from `index` on.
    Truncate = 2,
    /// Drops the group's entries up to `index` (term `term`), kept by a snapshot.
    Purge = 3,
    /// The group's vote and purge point, restated when a segment starts so old segments can go:
    /// `index`/`term` = purged log id, payload = vote term (u64) and voted-for node (u64, 0 none)
    /// and committed flag (u8).
    State = 4,
    /// The group's replica left this node: every earlier record of the group is void (a
    /// replica created later starts from nothing). `index`/`term` 0, no payload.
    Reset = 5,
    /// Entries of several groups that hold together or not at all (the parts of one command
    /// across vShards, `docs/design/redesign.md`): one record, so a torn write drops them
    /// all. `group`/`index`/`term` 0; the payload is `count: u32`, then per entry `group:
    /// u32 | index: u64 | term: u64 | len: u32 | payload` (`unit_parts`).
    Unit = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Entry,
            2 => Kind::Truncate,
            3 => Kind::Purge,
            4 => Kind::State,
            5 => Kind::Reset,
            6 => Kind::Unit,
            _ => return None,
        })
    }
}

/// A decoded record, borrowing its payload from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub group: u32,
    pub index: u64,
    pub term: u64,
    pub payload: &'a [u8],
}

/// Appends the encoding of `r` to `out`.
pub fn encode(r: &Record, out: &mut Vec<u8>) {
    let body_len = BODY_FIXED + r.payload.len();
    out.reserve(FRAME + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.push(r.kind as u8);
    out.extend_from_slice(&r.group.to_le_bytes());
    out.extend_from_slice(&r.index.to_le_bytes());
    out.extend_from_slice(&r.term.to_le_bytes());
    out.extend_from_slice(r.payload);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One entry of a `Unit` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub group: u32,
    pub index: u64,
    pub term: u64,
    pub payload: &'a [u8],
}

/// The payload of a `Unit` record holding `parts`.
pub fn unit_payload<'a>(parts: impl ExactSizeIterator<Item = Part<'a>>, out: &mut Vec<u8>) {
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(&p.group.to_le_bytes());
        out.extend_from_slice(&p.index.to_le_bytes());
        out.extend_from_slice(&p.term.to_le_bytes());
        out.extend_from_slice(&(p.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(p.payload);
    }
}

/// The entries of a `Unit` record's payload, or why it is not one (never a panic: the
/// checksum passed, so this is our bug or a damaged disk the checksum missed).
pub fn unit_parts(payload: &[u8]) -> Result<Vec<Part<'_>>, &'static str> {
    const FIXED: usize = 4 + 8 + 8 + 4;
    let short = "unit record cut short inside";
    let count = payload.get(..4).ok_or(short)?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    let mut parts = Vec::with_capacity(count.min(payload.len() / FIXED));
    let mut at = 4;
    for _ in 0..count {
        let fixed = payload.get(at..at + FIXED).ok_or(short)?;
        let len = u32_at(fixed, 20) as usize;
        let body = payload.get(at + FIXED..at + FIXED + len).ok_or(short)?;
        parts.push(Part {
            group: u32_at(fixed, 0),
            index: u64_at(fixed, 4),
            term: u64_at(fixed, 12),
            payload: body,
        });
        at += FIXED + len;
    }
    if at != payload.len() {
        return Err("unit record has bytes after its entries");
    }
    Ok(parts)
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A record and the offset after it.
    Record(Record<'a>, usize),
    /// The buffer ends inside a record (or exactly at the offset: `at == buf.len()`).
    Short,
    /// The bytes there are not a record.
    Bad(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the record at `at` in `buf`.
pub fn decode(buf: &[u8], at: usize) -> Decoded<'_> {
    if buf.len() < at + FRAME {
        return Decoded::Short;
    }
    let len = u32_at(buf, at) as usize;
    if !(BODY_FIXED..=BODY_MAX).contains(&len) {
        return Decoded::Bad("impossible record length");
    }
    let body_at = at + FRAME;
    if buf.len() < body_at + len {
        return Decoded::Short;
    }
    let body = &buf[body_at..body_at + len];
    if crc32c::crc32c(body) != u32_at(buf, at + 4) {
        return Decoded::Bad("checksum mismatch");
    }
    let Some(kind) = Kind::from_u8(body[0]) else {
        return Decoded::Bad("unknown record kind");
    };
    Decoded::Record(
        Record {
            kind,
            group: u32_at(body, 1),
            index: u64_at(body, 5),
            term: u64_at(body, 13),
            payload: &body[BODY_FIXED..],
        },
        body_at + len,
    )
}

/// A segment file's header: which shard thread's log it belongs to and its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub shard: u32,
    pub seq: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c(&h[..24]);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(b: &[u8]) -> Result<Header, &'static str> {
        if b.len() < HEADER {
            return Err("shorter than a segment header");
        }
        if b[..8] != MAGIC {
            return Err("not a Shardline log segment (bad magic)");
        }
        if crc32c::crc32c(&b[..24]) != u32_at(b, 24) {
            return Err("segment header checksum mismatch");
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err("unsupported log format version");
        }
        Ok(Header {
            shard: u32_at(b, 12),
            seq: u64_at(b, 16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: &[u8]) -> Record<'_> {
        Record {
            kind: Kind::Entry,
            group: 7,
            index: 42,
            term: 3,
            payload,
        }
    }

    #[test]
    fn records_round_trip_and_report_where_the_next_starts() {
        let mut buf = Vec::new();
        encode(&rec(b"hello"), &mut buf);
        encode(&rec(b""), &mut buf);
        let Decoded::Record(r, next) = decode(&buf, 0) else {
            panic!()
        };
        assert_eq!(r, rec(b"hello"));
        let Decoded::Record(r2, end) = decode(&buf, next) else {
            panic!()
        };
        assert_eq!(r2.payload, b"");
        assert_eq!(end, buf.len());
        assert_eq!(decode(&buf, end), Decoded::Short);
    }

    #[test]
    fn every_truncation_is_short_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode(&rec(b"payload bytes"), &mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], 0), Decoded::Short, "cut at {cut}");
        }
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                match decode(&b, 0) {
                    Decoded::Record(r, _) => panic!("flip {byte}.{bit} decoded as {r:?}"),
                    Decoded::Short | Decoded::Bad(_) => {}
                }
            }
        }
    }

    #[test]
    fn headers_round_trip_and_refuse_foreign_files() {
        let h = Header { shard: 1, seq: 99 };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(Header::decode(&bad).unwrap_err().contains("magic"));
        let mut bad = h.encode();
        bad[17] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("checksum"));
        assert!(Header::decode(&[0; 5]).is_err());
    }
}
