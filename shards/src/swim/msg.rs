//! SWIM's packets (one UDP datagram each), sans-IO: a header naming the cluster, the sender and
//! its incarnation, one message, then the membership updates it carries (piggybacked
//! dissemination). Little-endian, sized integers:
//!
//! ```text
//! magic 'S' | version u8 | cluster [16] | from u64 | from_inc u32 | kind u8 | seq u32
//!   | target u64 (PingReq only) | count u8 | updates
//! update = kind u8 | member u64 | inc u32 | from u64 (Suspect only: who suspects)
//! ```
//!
//! A packet that does not decode is dropped by the caller with the error's text (counted,
//! never a panic): a peer's bytes, or anyone's on the network.

use crate::ids::NodeId;
use shardline_transport::wire::{Reader, WireError, WireErrorKind};

pub const MAGIC: u8 = b'S';
pub const VERSION: u8 = 1;
/// The header and a message with the largest body, before the updates.
pub const HEADER_BYTES: usize = 2 + 16 + 8 + 4 + 1 + 4 + 8 + 1;
/// The largest update (a suspicion, with who suspects).
pub const UPDATE_BYTES_MAX: usize = 1 + 8 + 4 + 8;

/// What a packet asks or answers. `seq` ties an answer to its question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Are you there? Answered by an `Ack` with the same `seq`.
    Ping { seq: u32 },
    /// I am (or, relayed: the member you asked about is).
    Ack { seq: u32 },
    /// Ping `target` for me and relay its `Ack` (Lifeguard: or say `Nack` if it did not answer
    /// in time, so the asker learns its own link works).
    PingReq { seq: u32, target: NodeId },
    /// The relay asked for by `PingReq` `seq` got no answer in time.
    Nack { seq: u32 },
    /// Only the updates, answered by nothing: a verdict that ends a member's service (`Dead`,
    /// `Left`) told to every member at once.
    Notify,
}

/// What a member's state is, as one node says it: the newest incarnation wins, and at the same
/// incarnation `Left` > `Dead` > `Suspect` > `Alive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    Alive {
        member: NodeId,
        inc: u32,
    },
    Suspect {
        member: NodeId,
        inc: u32,
        from: NodeId,
    },
    Dead {
        member: NodeId,
        inc: u32,
    },
    Left {
        member: NodeId,
        inc: u32,
    },
}

impl Update {
    pub fn member(&self) -> NodeId {
        match *self {
            Update::Alive { member, .. }
            | Update::Suspect { member, .. }
            | Update::Dead { member, .. }
            | Update::Left { member, .. } => member,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Update::Suspect { .. } => UPDATE_BYTES_MAX,
            _ => 1 + 8 + 4,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (kind, member, inc) = match *self {
            Update::Alive { member, inc } => (1u8, member, inc),
            Update::Suspect { member, inc, .. } => (2, member, inc),
            Update::Dead { member, inc } => (3, member, inc),
            Update::Left { member, inc } => (4, member, inc),
        };
        out.push(kind);
        out.extend_from_slice(&member.0.to_le_bytes());
        out.extend_from_slice(&inc.to_le_bytes());
        if let Update::Suspect { from, .. } = self {
            out.extend_from_slice(&from.0.to_le_bytes());
        }
    }

    fn decode(r: &mut Reader) -> Result<Update, PacketError> {
        let kind = r.u8()?;
        let (member, inc) = (NodeId(r.u64()?), r.u32()?);
        Ok(match kind {
            1 => Update::Alive { member, inc },
            2 => Update::Suspect {
                member,
                inc,
                from: NodeId(r.u64()?),
            },
            3 => Update::Dead { member, inc },
            4 => Update::Left { member, inc },
            k => return Err(PacketError::Kind("update", k)),
        })
    }
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub cluster: [u8; 16],
    pub from: NodeId,
    pub from_inc: u32,
    pub msg: Msg,
    pub updates: Vec<Update>,
}

/// Why a datagram is not a packet of ours. Nothing was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Not a SWIM packet, or a version this build does not speak.
    Magic(u8, u8),
    /// An unknown message or update kind.
    Kind(&'static str, u8),
    Wire(WireError),
}

impl From<WireError> for PacketError {
    fn from(e: WireError) -> Self {
        PacketError::Wire(e)
    }
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacketError::Magic(m, v) => write!(
                f,
                "not a SWIM packet of version {VERSION} (magic {m:#04x}, version {v})"
            ),
            PacketError::Kind(what, k) => write!(f, "unknown {what} kind {k}"),
            PacketError::Wire(e) => write!(f, "{e}"),
        }
    }
}

/// Writes the header and message of a packet; updates follow through `push_update`.
pub fn encode_head(cluster: &[u8; 16], from: NodeId, from_inc: u32, msg: Msg, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(cluster);
    out.extend_from_slice(&from.0.to_le_bytes());
    out.extend_from_slice(&from_inc.to_le_bytes());
    let (kind, seq) = match msg {
        Msg::Ping { seq } => (1u8, seq),
        Msg::Ack { seq } => (2, seq),
        Msg::PingReq { seq, .. } => (3, seq),
        Msg::Nack { seq } => (4, seq),
        Msg::Notify => (5, 0),
    };
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    if let Msg::PingReq { target, .. } = msg {
        out.extend_from_slice(&target.0.to_le_bytes());
    }
    out.push(0); // the update count, raised by `push_update`
}

/// Appends `u` to a packet `encode_head` began, if it fits in `max` bytes and the count
/// allows; whether it did.
pub fn push_update(out: &mut Vec<u8>, count_at: usize, u: &Update, max: usize) -> bool {
    if out.len() + u.encoded_len() > max || out[count_at] == u8::MAX {
        return false;
    }
    u.encode(out);
    out[count_at] += 1;
    true
}

/// Where `encode_head` put the update count (the byte before the updates).
pub fn count_at(msg: &Msg) -> usize {
    HEADER_BYTES
        - 1
        - if matches!(msg, Msg::PingReq { .. }) {
            0
        } else {
            8
        }
}

pub fn decode(b: &[u8]) -> Result<Packet, PacketError> {
    let mut r = Reader::new(b);
    let (magic, version) = (r.u8()?, r.u8()?);
    if magic != MAGIC || version != VERSION {
        return Err(PacketError::Magic(magic, version));
    }
    let cluster = r.array::<16>()?;
    let (from, from_inc) = (NodeId(r.u64()?), r.u32()?);
    let (kind, seq) = (r.u8()?, r.u32()?);
    let msg = match kind {
        1 => Msg::Ping { seq },
        2 => Msg::Ack { seq },
        3 => Msg::PingReq {
            seq,
            target: NodeId(r.u64()?),
        },
        4 => Msg::Nack { seq },
        5 => Msg::Notify,
        k => return Err(PacketError::Kind("message", k)),
    };
    let n = r.u8()?;
    let mut updates = Vec::with_capacity(r.count(n as u64, 13).map_err(PacketError::Wire)?);
    for _ in 0..n {
        updates.push(Update::decode(&mut r)?);
    }
    if !r.is_empty() {
        return Err(r.error(WireErrorKind::Trailing).into());
    }
    Ok(Packet {
        cluster,
        from,
        from_inc,
        msg,
        updates,
    })
}
