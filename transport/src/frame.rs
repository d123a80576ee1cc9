//! Node-to-node framing, sans-IO (issue 3's transport between shard threads of different nodes).
//!
//! A connection starts with one `Hello` each way, then carries `Batch` frames: the messages of
//! every Raft group between the two shard threads that were ready in one flush, coalesced. An
//! acceptor that refuses a dialer answers with a `Refused` frame (why, and whether the dialer
//! was removed from the cluster) instead of its `Hello`, then closes. Every
//! frame is `len: u32 | crc32c(body): u32 | body`, body = `version: u8 | kind: u8 | ...`,
//! little-endian. [`decode`] says "need more bytes" with `Ok(None)` and reports a bad frame as a
//! [`FrameError`] whose text the connection logs before closing: a peer never panics us.

/// Wire versions this build speaks; a peer must share one.
/// 2: Raft snapshots travel in chunks and carry the group's membership.
/// 3: control messages in batches (leader hints, removal notices: group ids `u32::MAX` and
///    `u32::MAX - 1`) and the metadata group (a version-2 node would close the connection on
///    them, so the handshake refuses it with the reason instead).
/// 4: the metadata's `Drained` command (removing a node; a version-3 node could not apply it
///    and the metadata replicas would diverge). The `Refused` frame came later without a new
///    version: it is only ever the last frame of a refused handshake, and a build without it
///    reads it as a bad reply, which it treats like the bare close it got before.
/// 5: the `Retry` log entry (a blocked client retried after a key it waits on changed); a
///    version-4 replica could not apply it and would stop, so the handshake refuses it.
/// 6: streams laid out in Redis's listpack nodes (snapshot format 2 carries the layout, and
///    XADD, XDEL and XTRIM decide by it): a version-5 replica would apply the same log entries
///    to a different result, so the handshake refuses it.
/// 7: Calvin transactions across vShards: the sequencer's entries in the metadata group's
///    log, execution entries in the vShards' logs (vShard snapshot format 3), and Calvin's
///    messages between nodes (group id `u32::MAX - 2`); a version-6 node could apply none.
/// 8: WATCH with a transaction across nodes: a submission lists the vShards whose keys it
///    watches (a version-7 sequencer replica would refuse the entry and stop), and the WATCH
///    registrations travel as Calvin messages (`Watch`, `Watched`, `Unwatch`).
/// 9: snapshots offered (`SnapshotOffer`) and their bytes sent on bulk lanes beside the bus
///    (a hello whose `node_id` names the lane); a version-8 node would close the connection
///    on the offer.
/// 10: leaders' hints carry their groups' learners and base-copy progress (a flag byte, then
///    the learners and the copy when there are some); a version-9 node refuses the hints.
/// 11: leaders' hints carry their groups' load (a flag byte, then operations and bytes a
///    second), and the metadata log the rebalancer's command; a version-10 node refuses both.
///    Bulk lanes begin with a lane-open record each way (`LaneOpen`: the transports an
///    end offers, its RDMA queue pair), which a version-10 node would take for a frame.
/// 12: the lane-open record (`lane::LaneOpen`) grew QUIC's port and certificate fingerprint
///    (60 bytes, was 26): a version-11 node would read a record short and the frames after
///    it wrong.
/// 13: a load in the leaders' hints carries its CPU time (microseconds a second) after its
///    operations and bytes: a version-12 node would read the hints after it wrong.
pub const WIRE_MIN: u8 = 13;
pub const WIRE_MAX: u8 = 13;

use crate::wire::{Reader, WireError};

const FRAME: usize = 8;
const KIND_HELLO: u8 = 1;
const KIND_BATCH: u8 = 2;
const KIND_REFUSED: u8 = 3;
/// The longest reason a `Refused` frame carries (longer ones are cut).
pub const REFUSED_TEXT_MAX: usize = 512;

/// The first frame on a connection: who is calling, from which cluster, speaking what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub wire_min: u8,
    pub wire_max: u8,
    pub cluster_id: [u8; 16],
    pub node_id: [u8; 20],
    /// The sending shard thread.
    pub shard: u16,
}

/// An acceptor's answer to a `Hello` it refuses; the connection closes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The refusing node's cluster: a dialer believes `removed` only from its own cluster.
    pub cluster_id: [u8; 16],
    /// The refusing node's member id.
    pub from: u64,
    /// The dialer's member id was removed from the cluster: it holds nothing the cluster needs.
    pub removed: bool,
    /// Why, for the dialer's log (at most `REFUSED_TEXT_MAX` bytes).
    pub why: String,
}

/// One group's message in a batch; `payload` is the Raft message, encoded by its layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub group: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Hello),
    Batch(Vec<Message<'a>>),
    Refused(Refused),
}

/// Why a frame was refused; the connection is closed after logging it.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    TooLarge { len: usize, max: usize },
    Checksum,
    UnsupportedVersion(u8),
    UnknownKind(u8),
    Malformed(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            FrameError::Checksum => write!(f, "frame checksum mismatch"),
            FrameError::UnsupportedVersion(v) => write!(
                f,
                "wire version {v} is not spoken here ({WIRE_MIN}..={WIRE_MAX})"
            ),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME]);
    out.push(WIRE_MAX);
    out.push(kind);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at - FRAME) as u32;
    let crc = crc32c::crc32c(&out[at + FRAME..]);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn encode_hello(h: &Hello, out: &mut Vec<u8>) {
    let at = begin(out, KIND_HELLO);
    out.push(h.wire_min);
    out.push(h.wire_max);
    out.extend_from_slice(&h.cluster_id);
    out.extend_from_slice(&h.node_id);
    out.extend_from_slice(&h.shard.to_le_bytes());
    finish(out, at);
}

pub fn encode_refused(r: &Refused, out: &mut Vec<u8>) {
    let at = begin(out, KIND_REFUSED);
    out.extend_from_slice(&r.cluster_id);
    out.extend_from_slice(&r.from.to_le_bytes());
    out.push(r.removed as u8);
    let mut cut = r.why.len().min(REFUSED_TEXT_MAX);
    while !r.why.is_char_boundary(cut) {
        cut -= 1;
    }
    out.extend_from_slice(&(cut as u16).to_le_bytes());
    out.extend_from_slice(&r.why.as_bytes()[..cut]);
    finish(out, at);
}

/// Appends one batch frame holding `messages`.
pub fn encode_batch(messages: &[Message], out: &mut Vec<u8>) {
    let at = begin(out, KIND_BATCH);
    out.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for m in messages {
        out.extend_from_slice(&m.group.to_le_bytes());
        crate::wire::put_bytes_u32(out, m.payload);
    }
    finish(out, at);
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when more bytes are needed, otherwise
/// the frame and the bytes it used. `max` bounds a frame's body.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < FRAME {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4")) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < FRAME + len {
        return Ok(None);
    }
    let body = &buf[FRAME..FRAME + len];
    if crc32c::crc32c(body) != u32::from_le_bytes(buf[4..8].try_into().expect("4")) {
        return Err(FrameError::Checksum);
    }
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if !(WIRE_MIN..=WIRE_MAX).contains(&version) {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let frame = match r.u8()? {
        KIND_HELLO => Frame::Hello(Hello {
            wire_min: r.u8()?,
            wire_max: r.u8()?,
            cluster_id: r.array()?,
            node_id: r.array()?,
            shard: r.u16()?,
        }),
        KIND_BATCH => {
            // Each message takes at least 8 bytes: a count beyond that is a lie, not a reason to
            // allocate.
            let n = r.u32()?;
            let n = r.count(n as u64, 8)?;
            let mut msgs = Vec::with_capacity(n);
            for _ in 0..n {
                msgs.push(Message {
                    group: r.u32()?,
                    payload: r.bytes_u32()?,
                });
            }
            Frame::Batch(msgs)
        }
        KIND_REFUSED => {
            let cluster_id = r.array()?;
            let from = r.u64()?;
            let removed = r.flag()?;
            let len = r.u16()? as usize;
            if len > REFUSED_TEXT_MAX {
                return Err(FrameError::Malformed("refusal reason too long"));
            }
            let why = std::str::from_utf8(r.take(len)?)
                .map_err(|_| FrameError::Malformed("refusal reason is not UTF-8"))?
                .to_owned();
            Frame::Refused(Refused {
                cluster_id,
                from,
                removed,
                why,
            })
        }
        k => return Err(FrameError::UnknownKind(k)),
    };
    r.finish()?;
    Ok(Some((frame, FRAME + len)))
}

impl From<WireError> for FrameError {
    fn from(e: WireError) -> Self {
        FrameError::Malformed(e.what())
    }
}

/// The wire version two peers share, if any: the highest both speak.
pub fn negotiate(ours: (u8, u8), theirs: (u8, u8)) -> Option<u8> {
    let hi = ours.1.min(theirs.1);
    (hi >= ours.0.max(theirs.0)).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            wire_min: 1,
            wire_max: 1,
            cluster_id: [7; 16],
            node_id: [9; 20],
            shard: 3,
        }
    }

    #[test]
    fn frames_round_trip_back_to_back_and_need_more_bytes_when_cut() {
        let mut buf = Vec::new();
        encode_hello(&hello(), &mut buf);
        let msgs = [
            Message {
                group: 1,
                payload: b"append",
            },
            Message {
                group: 77,
                payload: b"",
            },
        ];
        encode_batch(&msgs, &mut buf);
        let (f, used) = decode(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(f, Frame::Hello(hello()));
        let (f2, used2) = decode(&buf[used..], 1 << 20).unwrap().unwrap();
        assert_eq!(f2, Frame::Batch(msgs.to_vec()));
        assert_eq!(used + used2, buf.len());
        for cut in 0..used {
            assert_eq!(decode(&buf[..cut], 1 << 20), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn bad_frames_are_errors_never_panics() {
        let mut buf = Vec::new();
        encode_batch(
            &[Message {
                group: 1,
                payload: b"x",
            }],
            &mut buf,
        );
        let mut flipped = buf.clone();
        flipped[12] ^= 1;
        assert_eq!(decode(&flipped, 1 << 20), Err(FrameError::Checksum));
        assert!(matches!(decode(&buf, 4), Err(FrameError::TooLarge { .. })));
        // Every byte flip and every garbage prefix decodes to a value, never a panic.
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b, 1 << 20);
            }
        }
        let mut x = 7u64;
        for _ in 0..20_000 {
            let garbage: Vec<u8> = (0..(x % 64) as usize)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&garbage, 1 << 20);
        }
        // A well-checksummed frame that lies about its message count.
        let mut lie = Vec::new();
        let at = begin(&mut lie, KIND_BATCH);
        lie.extend_from_slice(&u32::MAX.to_le_bytes());
        finish(&mut lie, at);
        assert!(matches!(
            decode(&lie, 1 << 20),
            Err(FrameError::Malformed(_))
        ));
        let mut future = Vec::new();
        let at = begin(&mut future, KIND_BATCH);
        future[at + 8] = WIRE_MAX + 1;
        finish(&mut future, at);
        assert_eq!(
            decode(&future, 1 << 20),
            Err(FrameError::UnsupportedVersion(WIRE_MAX + 1))
        );
    }

    #[test]
    fn a_refusal_round_trips_with_its_reason_cut_to_the_limit() {
        let mut r = Refused {
            cluster_id: [5; 16],
            from: 3,
            removed: true,
            why: "member 4 was removed".into(),
        };
        let mut buf = Vec::new();
        encode_refused(&r, &mut buf);
        let (f, used) = decode(&buf, 4096).unwrap().unwrap();
        assert_eq!((f, used), (Frame::Refused(r.clone()), buf.len()));
        // A reason past the limit is cut on a character boundary, not refused.
        r.why = "é".repeat(REFUSED_TEXT_MAX);
        buf.clear();
        encode_refused(&r, &mut buf);
        let Frame::Refused(got) = decode(&buf, 4096).unwrap().unwrap().0 else {
            panic!("not a refusal");
        };
        assert_eq!(got.why, "é".repeat(REFUSED_TEXT_MAX / 2));
        // Flag values other than 0 and 1 are malformed, not "removed".
        let at = buf.len();
        encode_refused(&r, &mut buf);
        buf[at + FRAME + 2 + 16 + 8] = 2;
        finish(&mut buf, at);
        assert_eq!(
            decode(&buf[at..], 4096),
            Err(FrameError::Malformed("a flag byte other than 0 or 1"))
        );
    }

    #[test]
    fn peers_agree_on_the_highest_shared_version_or_refuse() {
        assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
        assert_eq!(negotiate((1, 1), (1, 1)), Some(1));
        assert_eq!(negotiate((1, 2), (3, 4)), None);
    }
}
