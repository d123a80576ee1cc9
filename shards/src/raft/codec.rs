//! The wire encoding of Raft messages between nodes (the payload of a transport `Message`).
//! Little-endian, sized integers; a tag byte per message kind. Decoding never panics: a short or
//! malformed payload is an error the transport logs before closing the connection.

use super::{Entry, LogId, Msg};

const VOTE: u8 = 1;
const VOTE_REPLY: u8 = 2;
const APPEND: u8 = 3;
const APPEND_REPLY: u8 = 4;
const SNAPSHOT: u8 = 5;
const PRE_VOTE: u8 = 6;
const PRE_VOTE_REPLY: u8 = 7;
const SNAPSHOT_ACK: u8 = 8;
const TIMEOUT_NOW: u8 = 9;

/// Why a payload is not a message.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short,
    UnknownTag(u8),
    /// More entries or bytes declared than the payload holds.
    Length,
    /// A flag byte other than 0 or 1.
    Flag(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short => write!(f, "raft message cut short"),
            DecodeError::UnknownTag(t) => write!(f, "unknown raft message kind {t}"),
            DecodeError::Length => write!(f, "raft message declares more than it holds"),
            DecodeError::Flag(b) => write!(f, "raft message has flag byte {b} (0 or 1 expected)"),
        }
    }
}

fn put_id(out: &mut Vec<u8>, id: LogId) {
    out.extend_from_slice(&id.term.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends `msg`'s encoding to `out`.
pub fn encode(msg: &Msg, out: &mut Vec<u8>) {
    match msg {
        Msg::Vote { term, last } | Msg::PreVote { term, last } => {
            out.push(if matches!(msg, Msg::Vote { .. }) {
                VOTE
            } else {
                PRE_VOTE
            });
            out.extend_from_slice(&term.to_le_bytes());
            put_id(out, *last);
        }
        Msg::VoteReply { term, granted } | Msg::PreVoteReply { term, granted } => {
            out.push(if matches!(msg, Msg::VoteReply { .. }) {
                VOTE_REPLY
            } else {
                PRE_VOTE_REPLY
            });
            out.extend_from_slice(&term.to_le_bytes());
            out.push(*granted as u8);
        }
        Msg::Append {
            term,
            prev,
            entries,
            commit,
            quiet,
            ctx,
        } => {
            out.push(APPEND);
            out.extend_from_slice(&term.to_le_bytes());
            put_id(out, *prev);
            out.extend_from_slice(&commit.to_le_bytes());
            out.push(*quiet as u8);
            out.extend_from_slice(&ctx.to_le_bytes());
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for e in entries {
                out.extend_from_slice(&e.term.to_le_bytes());
                out.extend_from_slice(&e.index.to_le_bytes());
                put_bytes(out, &e.data);
            }
        }
        Msg::AppendReply {
            term,
            success,
            last,
            ctx,
        } => {
            out.push(APPEND_REPLY);
            out.extend_from_slice(&term.to_le_bytes());
            out.push(*success as u8);
            out.extend_from_slice(&last.to_le_bytes());
            out.extend_from_slice(&ctx.to_le_bytes());
        }
        Msg::Snapshot {
            term,
            last,
            offset,
            total,
            data,
        } => {
            out.push(SNAPSHOT);
            out.extend_from_slice(&term.to_le_bytes());
            put_id(out, *last);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&total.to_le_bytes());
            put_bytes(out, data);
        }
        Msg::TimeoutNow { term } => {
            out.push(TIMEOUT_NOW);
            out.extend_from_slice(&term.to_le_bytes());
        }
        Msg::SnapshotAck { term, last, offset } => {
            out.push(SNAPSHOT_ACK);
            out.extend_from_slice(&term.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::Flag(b)),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn id(&mut self) -> Result<LogId, DecodeError> {
        Ok(LogId {
            term: self.u64()?,
            index: self.u64()?,
        })
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.buf.len() {
            return Err(DecodeError::Length);
        }
        Ok(self.take(n)?.to_vec())
    }
}

/// Decodes one message that fills `buf` exactly.
pub fn decode(buf: &[u8]) -> Result<Msg, DecodeError> {
    let mut r = Reader { buf };
    let tag = r.u8()?;
    let msg = match tag {
        VOTE | PRE_VOTE => {
            let term = r.u64()?;
            let last = r.id()?;
            if tag == VOTE {
                Msg::Vote { term, last }
            } else {
                Msg::PreVote { term, last }
            }
        }
        VOTE_REPLY | PRE_VOTE_REPLY => {
            let term = r.u64()?;
            let granted = r.flag()?;
            if tag == VOTE_REPLY {
                Msg::VoteReply { term, granted }
            } else {
                Msg::PreVoteReply { term, granted }
            }
        }
        APPEND => {
            let term = r.u64()?;
            let prev = r.id()?;
            let commit = r.u64()?;
            let quiet = r.flag()?;
            let ctx = r.u64()?;
            let n = r.u32()? as usize;
            // Each entry takes at least 20 bytes: refuse a count the payload cannot hold
            // before reserving anything for it.
            if n > r.buf.len() / 20 {
                return Err(DecodeError::Length);
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let term = r.u64()?;
                let index = r.u64()?;
                let data = r.bytes()?;
                entries.push(Entry {
                    term,
                    index,
                    data: data.into(),
                });
            }
            Msg::Append {
                term,
                prev,
                entries,
                commit,
                quiet,
                ctx,
            }
        }
        APPEND_REPLY => Msg::AppendReply {
            term: r.u64()?,
            success: r.flag()?,
            last: r.u64()?,
            ctx: r.u64()?,
        },
        SNAPSHOT => Msg::Snapshot {
            term: r.u64()?,
            last: r.id()?,
            offset: r.u64()?,
            total: r.u64()?,
            data: r.bytes()?.into(),
        },
        TIMEOUT_NOW => Msg::TimeoutNow { term: r.u64()? },
        SNAPSHOT_ACK => Msg::SnapshotAck {
            term: r.u64()?,
            last: r.u64()?,
            offset: r.u64()?,
        },
        t => return Err(DecodeError::UnknownTag(t)),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Length);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Msg> {
        let id = LogId { term: 7, index: 42 };
        vec![
            Msg::Vote { term: 3, last: id },
            Msg::PreVote { term: 4, last: id },
            Msg::TimeoutNow { term: 6 },
            Msg::VoteReply {
                term: 3,
                granted: true,
            },
            Msg::PreVoteReply {
                term: 9,
                granted: false,
            },
            Msg::Append {
                term: 5,
                prev: id,
                entries: vec![
                    Entry {
                        term: 5,
                        index: 43,
                        data: b"set k v".to_vec().into(),
                    },
                    Entry {
                        term: 5,
                        index: 44,
                        data: Default::default(),
                    },
                ],
                commit: 41,
                quiet: true,
                ctx: 99,
            },
            Msg::AppendReply {
                term: 5,
                success: false,
                last: 12,
                ctx: 3,
            },
            Msg::Snapshot {
                term: 6,
                last: id,
                offset: 4096,
                total: 8192,
                data: vec![1, 2, 3].into(),
            },
            Msg::SnapshotAck {
                term: 6,
                last: 42,
                offset: 4099,
            },
        ]
    }

    #[test]
    fn every_message_kind_round_trips() {
        for m in samples() {
            let mut buf = Vec::new();
            encode(&m, &mut buf);
            assert_eq!(decode(&buf), Ok(m));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused_without_panicking() {
        for m in samples() {
            let mut buf = Vec::new();
            encode(&m, &mut buf);
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            buf.push(0);
            assert_eq!(decode(&buf), Err(DecodeError::Length));
        }
        assert_eq!(decode(&[200]), Err(DecodeError::UnknownTag(200)));
        let mut reply = Vec::new();
        encode(
            &Msg::VoteReply {
                term: 1,
                granted: true,
            },
            &mut reply,
        );
        *reply.last_mut().unwrap() = 2;
        assert_eq!(
            decode(&reply),
            Err(DecodeError::Flag(2)),
            "flags are 0 or 1"
        );
    }

    #[test]
    fn a_huge_entry_count_is_refused_before_allocating() {
        let mut buf = vec![APPEND];
        buf.extend_from_slice(&[0; 8 + 16 + 8 + 1 + 8]);
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&buf), Err(DecodeError::Length));
    }
}
