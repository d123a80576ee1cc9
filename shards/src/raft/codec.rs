//! The wire encoding of Raft messages between nodes (the payload of a transport `Message`).
//! Little-endian, sized integers; a tag byte per message kind. Decoding never panics: a short or
//! malformed payload is an error the transport logs before closing the connection.

use super::{Entry, LogId, Msg};
use shardline_transport::wire::{Reader, WireError, WireErrorKind, put_bytes_u32};

const VOTE: u8 = 1;
const VOTE_REPLY: u8 = 2;
const APPEND: u8 = 3;
const APPEND_REPLY: u8 = 4;
const SNAPSHOT: u8 = 5;
const PRE_VOTE: u8 = 6;
const PRE_VOTE_REPLY: u8 = 7;
const SNAPSHOT_ACK: u8 = 8;
const TIMEOUT_NOW: u8 = 9;
const SNAPSHOT_OFFER: u8 = 10;

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
                put_bytes_u32(out, &e.data);
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
            put_bytes_u32(out, data);
        }
        Msg::TimeoutNow { term } => {
            out.push(TIMEOUT_NOW);
            out.extend_from_slice(&term.to_le_bytes());
        }
        Msg::SnapshotOffer { term, last, total } => {
            out.push(SNAPSHOT_OFFER);
            out.extend_from_slice(&term.to_le_bytes());
            put_id(out, *last);
            out.extend_from_slice(&total.to_le_bytes());
        }
        Msg::SnapshotAck { term, last, offset } => {
            out.push(SNAPSHOT_ACK);
            out.extend_from_slice(&term.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        match e.kind {
            WireErrorKind::Short => DecodeError::Short,
            WireErrorKind::Flag(b) => DecodeError::Flag(b),
            _ => DecodeError::Length,
        }
    }
}

fn id(r: &mut Reader) -> Result<LogId, DecodeError> {
    Ok(LogId {
        term: r.u64()?,
        index: r.u64()?,
    })
}

/// Decodes one message that fills `buf` exactly.
pub fn decode(buf: &[u8]) -> Result<Msg, DecodeError> {
    let mut r = Reader::new(buf);
    let tag = r.u8()?;
    let msg = match tag {
        VOTE | PRE_VOTE => {
            let term = r.u64()?;
            let last = id(&mut r)?;
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
            let prev = id(&mut r)?;
            let commit = r.u64()?;
            let quiet = r.flag()?;
            let ctx = r.u64()?;
            // Each entry takes at least 20 bytes: refuse a count the payload cannot hold
            // before reserving anything for it.
            let n = r.u32()?;
            let n = r.count(n as u64, 20)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let term = r.u64()?;
                let index = r.u64()?;
                let data = r.bytes_u32()?.to_vec();
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
            last: id(&mut r)?,
            offset: r.u64()?,
            total: r.u64()?,
            data: r.bytes_u32()?.to_vec().into(),
        },
        TIMEOUT_NOW => Msg::TimeoutNow { term: r.u64()? },
        SNAPSHOT_OFFER => Msg::SnapshotOffer {
            term: r.u64()?,
            last: id(&mut r)?,
            total: r.u64()?,
        },
        SNAPSHOT_ACK => Msg::SnapshotAck {
            term: r.u64()?,
            last: r.u64()?,
            offset: r.u64()?,
        },
        t => return Err(DecodeError::UnknownTag(t)),
    };
    if !r.is_empty() {
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
            Msg::SnapshotOffer {
                term: 7,
                last: id,
                total: 1 << 33,
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
