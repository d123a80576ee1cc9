//! What shard threads send each other for Calvin transactions, on a node's mailboxes and
//! between nodes on the cluster bus (`docs/design/calvin.md`, steps 1, 4 and 6), and its
//! encoding for the bus. Sans-IO; a message that does not decode is refused whole (the
//! connection that carried it is closed, as for any bad frame), never half-taken.

use super::exec::Read;
use super::seq::{Submission, TxnId, decode_submission, encode_submission};
use crate::slot::VShardId;
use shardline_transport::wire::{self, Reader, WireError, WireErrorKind};

/// The answer to a transaction the sequencer did not take: nothing was applied.
pub const NOT_SEQUENCED: &str =
    "TRYAGAIN the transaction could not be sequenced now (nothing was applied); retry";

/// Why a transaction was not applied, as its origin is told (the only refusal today:
/// [`NOT_SEQUENCED`]).
pub type Refusal = &'static str;

/// A Calvin message.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// To the sequencer's leader, thread 0: sequence this submission.
    Submit(Submission),
    /// A participant's reads of its keys for transaction `seq`, to a thread that leads
    /// another participant.
    Reads {
        seq: u64,
        from: VShardId,
        reads: Vec<Read>,
    },
    /// To the origin's thread: the transaction's reply (participant `from`'s part, for a
    /// command split by key), or (`Err`) why it was not applied.
    Reply {
        id: TxnId,
        from: VShardId,
        reply: Result<Vec<u8>, Refusal>,
    },
    /// Participant `by` lacks participant `of`'s reads for `seq` (its leader restarted or
    /// changed), to `of`'s leader: sent again.
    Want {
        seq: u64,
        of: VShardId,
        by: VShardId,
    },
    /// To the sequencer's leader, thread 0: a node's replicas of these vShards executed every
    /// transaction below each one's mark (what lets the sequencer forget).
    Done(Vec<(VShardId, u64)>),
    /// To the origin's thread: a key that blocking command try `id` found empty was written
    /// on a participant (its stand-in fired): try again.
    Wake { id: TxnId },
    /// To the thread of `v` on the node that leads it: register a WATCH of `key` (of `v`)
    /// for the MULTI/EXEC that will be submitted as `id`; answered with `Watched { ack }`
    /// once registered. That node's participant for `v` then tells whether the key changed.
    Watch {
        id: TxnId,
        ack: u64,
        v: VShardId,
        key: Vec<u8>,
    },
    /// To the origin's thread: WATCH registration `ack` is in place.
    Watched { ack: u64 },
    /// To a thread that registered WATCHes of `keys` for `id`: they go (the transaction
    /// executed, or the connection unwatched).
    Unwatch { id: TxnId, keys: Vec<Vec<u8>> },
    /// Sequenced transactions were published on this node: look (never on the bus).
    Poke,
}

const SUBMIT: u8 = 1;
const READS: u8 = 2;
const REPLY: u8 = 3;
const WANT: u8 = 4;
const DONE: u8 = 5;
const WAKE: u8 = 6;
const WATCH: u8 = 7;
const WATCHED: u8 = 8;
const UNWATCH: u8 = 9;

/// Reply kinds: the reply's bytes, or a refusal by its code.
const REPLY_OK: u8 = 0;
const REPLY_NOT_SEQUENCED: u8 = 1;

/// Appends `msg` for shard thread `thread` of the receiving node. `Poke` is local only and
/// writes nothing.
pub fn encode(thread: u16, msg: &Msg, out: &mut Vec<u8>) {
    let kind = match msg {
        Msg::Submit(_) => SUBMIT,
        Msg::Reads { .. } => READS,
        Msg::Reply { .. } => REPLY,
        Msg::Want { .. } => WANT,
        Msg::Done(_) => DONE,
        Msg::Wake { .. } => WAKE,
        Msg::Watch { .. } => WATCH,
        Msg::Watched { .. } => WATCHED,
        Msg::Unwatch { .. } => UNWATCH,
        Msg::Poke => return,
    };
    out.extend_from_slice(&thread.to_le_bytes());
    out.push(kind);
    match msg {
        Msg::Submit(s) => encode_submission(s, out),
        Msg::Reads { seq, from, reads } => {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&from.0.to_le_bytes());
            encode_reads(reads, out);
        }
        Msg::Reply { id, from, reply } => {
            put_id(out, id);
            out.extend_from_slice(&from.0.to_le_bytes());
            match reply {
                Ok(bytes) => {
                    out.push(REPLY_OK);
                    wire::put_bytes_varint(out, bytes);
                }
                Err(_) => out.push(REPLY_NOT_SEQUENCED),
            }
        }
        Msg::Want { seq, of, by } => {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&of.0.to_le_bytes());
            out.extend_from_slice(&by.0.to_le_bytes());
        }
        Msg::Done(marks) => {
            wire::put_varint(out, marks.len() as u64);
            for (v, mark) in marks {
                out.extend_from_slice(&v.0.to_le_bytes());
                out.extend_from_slice(&mark.to_le_bytes());
            }
        }
        Msg::Wake { id } => put_id(out, id),
        Msg::Watch { id, ack, v, key } => {
            put_id(out, id);
            out.extend_from_slice(&ack.to_le_bytes());
            out.extend_from_slice(&v.0.to_le_bytes());
            wire::put_bytes_varint(out, key);
        }
        Msg::Watched { ack } => out.extend_from_slice(&ack.to_le_bytes()),
        Msg::Unwatch { id, keys } => {
            put_id(out, id);
            wire::put_varint(out, keys.len() as u64);
            for k in keys {
                wire::put_bytes_varint(out, k);
            }
        }
        Msg::Poke => unreachable!("returned above"),
    }
}

/// The messages of one bus payload (several may follow each other), each with the shard
/// thread it is for; `Err` if any does not decode (none is then taken). vShard ids are
/// checked against `vshards`, threads against `threads`.
pub fn decode_all(
    b: &[u8],
    threads: usize,
    vshards: usize,
) -> Result<Vec<(usize, Msg)>, WireError> {
    let mut r = Reader::new(b);
    let mut msgs = Vec::new();
    while !r.is_empty() {
        let thread = r.u16()? as usize;
        if thread >= threads {
            return Err(r.error(WireErrorKind::Length));
        }
        let vshard = |r: &mut Reader| -> Result<VShardId, WireError> {
            let v = r.u16()?;
            if v as usize >= vshards {
                return Err(r.error(WireErrorKind::Length));
            }
            Ok(VShardId(v))
        };
        let msg = match r.u8()? {
            SUBMIT => {
                let s = decode_submission(&mut r)?;
                if s.keys
                    .iter()
                    .map(|(v, _)| v)
                    .chain(s.watch.iter().flat_map(|w| &w.vshards))
                    .any(|v| v.0 as usize >= vshards)
                {
                    return Err(r.error(WireErrorKind::Length));
                }
                Msg::Submit(s)
            }
            READS => Msg::Reads {
                seq: r.u64()?,
                from: vshard(&mut r)?,
                reads: decode_reads(&mut r)?,
            },
            REPLY => {
                let id = get_id(&mut r)?;
                let from = vshard(&mut r)?;
                let reply = match r.u8()? {
                    REPLY_OK => Ok(r.bytes_varint()?.to_vec()),
                    REPLY_NOT_SEQUENCED => Err(NOT_SEQUENCED),
                    k => return Err(r.error(WireErrorKind::Flag(k))),
                };
                Msg::Reply { id, from, reply }
            }
            WANT => Msg::Want {
                seq: r.u64()?,
                of: vshard(&mut r)?,
                by: vshard(&mut r)?,
            },
            DONE => {
                let n = r.varint()?;
                let n = r.count(n, 10)?;
                let mut marks = Vec::with_capacity(n);
                for _ in 0..n {
                    marks.push((vshard(&mut r)?, r.u64()?));
                }
                Msg::Done(marks)
            }
            WAKE => Msg::Wake {
                id: get_id(&mut r)?,
            },
            WATCH => Msg::Watch {
                id: get_id(&mut r)?,
                ack: r.u64()?,
                v: vshard(&mut r)?,
                key: r.bytes_varint()?.to_vec(),
            },
            WATCHED => Msg::Watched { ack: r.u64()? },
            UNWATCH => {
                let id = get_id(&mut r)?;
                let n = r.varint()?;
                let n = r.count(n, 1)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(r.bytes_varint()?.to_vec());
                }
                Msg::Unwatch { id, keys }
            }
            k => return Err(r.error(WireErrorKind::Flag(k))),
        };
        msgs.push((thread, msg));
    }
    Ok(msgs)
}

fn put_id(out: &mut Vec<u8>, id: &TxnId) {
    out.extend_from_slice(&id.origin.to_le_bytes());
    out.extend_from_slice(&id.n.to_le_bytes());
}

fn get_id(r: &mut Reader) -> Result<TxnId, WireError> {
    Ok(TxnId {
        origin: r.u64()?,
        n: r.u64()?,
    })
}

fn encode_reads(reads: &[Read], out: &mut Vec<u8>) {
    wire::put_varint(out, reads.len() as u64);
    for rd in reads {
        wire::put_bytes_varint(out, &rd.key);
        match &rd.value {
            None => out.push(0),
            Some((at, payload)) => {
                out.push(1);
                out.extend_from_slice(&at.unwrap_or(0).to_le_bytes());
                wire::put_bytes_varint(out, payload);
            }
        }
    }
}

fn decode_reads(r: &mut Reader) -> Result<Vec<Read>, WireError> {
    let n = r.varint()?;
    let n = r.count(n, 2)?;
    let mut reads = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.bytes_varint()?.to_vec();
        let value = if r.flag()? {
            let at = r.u64()?;
            Some(((at != 0).then_some(at), r.bytes_varint()?.to_vec()))
        } else {
            None
        };
        reads.push(Read { key, value });
    }
    Ok(reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Msg> {
        let id = TxnId {
            origin: 3 << 16 | 1,
            n: 7 << 32 | 9,
        };
        vec![
            Msg::Submit(Submission {
                id,
                keys: vec![(VShardId(1), b"a".to_vec()), (VShardId(5), b"b".to_vec())],
                cmds: vec![vec![b"MSET".to_vec(), b"a".to_vec(), b"1".to_vec()]],
                exec: false,
                resp3: true,
                split: true,
                watch: None,
                block: false,
            }),
            Msg::Reads {
                seq: 42,
                from: VShardId(5),
                reads: vec![
                    Read {
                        key: b"k".to_vec(),
                        value: None,
                    },
                    Read {
                        key: b"x".to_vec(),
                        value: Some((Some(1_700_000_000_000), vec![0, 1, 2])),
                    },
                    Read {
                        key: Vec::new(),
                        value: Some((None, Vec::new())),
                    },
                ],
            },
            Msg::Reply {
                id,
                from: VShardId(2),
                reply: Ok(b"+OK\r\n".to_vec()),
            },
            Msg::Reply {
                id,
                from: VShardId(0),
                reply: Err(NOT_SEQUENCED),
            },
            Msg::Want {
                seq: 1,
                of: VShardId(3),
                by: VShardId(4),
            },
            Msg::Done(vec![(VShardId(0), 5), (VShardId(7), u64::MAX)]),
            Msg::Wake { id },
            Msg::Submit(Submission {
                id,
                keys: vec![(VShardId(1), b"a".to_vec()), (VShardId(5), b"b".to_vec())],
                cmds: vec![vec![b"SET".to_vec(), b"a".to_vec(), b"1".to_vec()]],
                exec: true,
                resp3: false,
                split: false,
                watch: Some(super::super::seq::Watching {
                    id: TxnId { origin: 1, n: 2 },
                    vshards: vec![VShardId(1), VShardId(5)],
                }),
                block: false,
            }),
            Msg::Watch {
                id,
                ack: 77,
                v: VShardId(6),
                key: b"w".to_vec(),
            },
            Msg::Watched { ack: 77 },
            Msg::Unwatch {
                id,
                keys: vec![b"w".to_vec(), Vec::new()],
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_in_one_payload() {
        let msgs = every_kind();
        let mut b = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            encode(i as u16 % 2, m, &mut b);
        }
        encode(0, &Msg::Poke, &mut b); // writes nothing
        let got = decode_all(&b, 2, 8).unwrap();
        assert_eq!(got.len(), msgs.len());
        for (i, ((t, m), want)) in got.into_iter().zip(msgs).enumerate() {
            assert_eq!(t, i % 2);
            assert_eq!(m, want);
        }
    }

    #[test]
    fn every_cut_and_every_out_of_range_id_is_refused() {
        for m in every_kind() {
            let mut b = Vec::new();
            encode(1, &m, &mut b);
            for cut in 0..b.len() {
                // A prefix is either refused or (cut 0) nothing.
                let got = decode_all(&b[..cut], 2, 8);
                assert!(cut == 0 || got.is_err(), "{m:?} cut at {cut}");
            }
            // A thread the node does not run, a vShard it does not have.
            assert!(decode_all(&b, 1, 8).is_err());
            // (Every message names a vShard above 0, but the refused reply and a wake-up.)
            let names_vshards = !matches!(&m, Msg::Reply { from, .. } if from.0 == 0)
                && !matches!(
                    &m,
                    Msg::Wake { .. } | Msg::Watched { .. } | Msg::Unwatch { .. }
                );
            assert_eq!(decode_all(&b, 2, 1).is_err(), names_vshards, "{m:?}");
        }
        // An unknown kind.
        assert!(decode_all(&[0, 0, 99], 1, 1).is_err());
    }
}
