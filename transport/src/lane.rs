//! The lane-open record (issue 19, steps 5 and 6): what each end of a bulk lane sends right
//! after the hello (the dialer first, the acceptor in answer), saying what it can carry the
//! source's bytes on besides the lane's TCP connection: RDMA (its queue pair) and QUIC (its
//! certificate's fingerprint and, from the acceptor, the UDP port it listens on for this
//! lane). A lane uses the best carrier both offered: RDMA, then QUIC, then TCP.

use crate::quic::Fingerprint;
use crate::rdma::Endpoint;
use crate::wire::{Reader, WireError};

/// Transports a lane may carry bytes on (a bit set).
pub const TCP: u8 = 1;
pub const RDMA: u8 = 2;
pub const QUIC: u8 = 4;

/// An end's QUIC: the certificate it will present, and (the acceptor's) the UDP port it
/// takes the lane's connection on (0 from the dialer, which connects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuicAt {
    pub port: u16,
    pub fingerprint: Fingerprint,
}

/// The record each end of a lane sends right after the hello.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneOpen {
    pub transports: u8,
    pub rdma: Option<Endpoint>,
    pub quic: Option<QuicAt>,
}

/// What carries a lane's source-to-target bytes (the answers always go on its TCP
/// connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    Tcp,
    /// The peer's queue pair, to connect to.
    Rdma(Endpoint),
    /// The peer's QUIC.
    Quic(QuicAt),
}

/// The record's bytes: `magic "LO" | transports | flags | qpn: u32 | lid: u16 | gid: [16] |
/// quic port: u16 | fingerprint: [32]`; flags: 1 a queue pair, 2 its GID, 4 QUIC.
pub const LANE_OPEN_BYTES: usize = 2 + 1 + 1 + 4 + 2 + 16 + 2 + 32;
const MAGIC: [u8; 2] = *b"LO";

impl LaneOpen {
    pub fn encode(&self) -> [u8; LANE_OPEN_BYTES] {
        let mut b = [0u8; LANE_OPEN_BYTES];
        b[..2].copy_from_slice(&MAGIC);
        b[2] = self.transports;
        if let Some(e) = self.rdma {
            b[3] = 1 | (e.gid.is_some() as u8) << 1;
            b[4..8].copy_from_slice(&e.qpn.to_le_bytes());
            b[8..10].copy_from_slice(&e.lid.to_le_bytes());
            b[10..26].copy_from_slice(&e.gid.unwrap_or_default());
        }
        if let Some(q) = self.quic {
            b[3] |= 4;
            b[26..28].copy_from_slice(&q.port.to_le_bytes());
            b[28..60].copy_from_slice(&q.fingerprint);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<LaneOpen, String> {
        let bad = |e: WireError| format!("a lane-open record: {e}");
        let mut r = Reader::new(b);
        if r.array::<2>().map_err(bad)? != MAGIC {
            return Err("a lane-open record without its magic".into());
        }
        let transports = r.u8().map_err(bad)?;
        let flags = r.u8().map_err(bad)?;
        let (qpn, lid, gid) = (
            r.u32().map_err(bad)?,
            r.u16().map_err(bad)?,
            r.array::<16>().map_err(bad)?,
        );
        let (port, fingerprint) = (r.u16().map_err(bad)?, r.array::<32>().map_err(bad)?);
        r.finish().map_err(bad)?;
        if flags & !7 != 0 || flags & 3 == 2 {
            return Err(format!("a lane-open record with flags {flags:#x}"));
        }
        if transports & !(TCP | RDMA | QUIC) != 0 {
            return Err(format!(
                "a lane-open record offering transports {transports:#x}"
            ));
        }
        if transports & TCP == 0 {
            return Err("a lane-open record without TCP (every node carries lanes on TCP)".into());
        }
        // One encoding: what a record does not use is zero.
        let unused_zero = match flags & 3 {
            0 => qpn == 0 && lid == 0 && gid == [0; 16],
            1 => gid == [0; 16],
            _ => true,
        } && (flags & 4 != 0 || (port == 0 && fingerprint == [0; 32]));
        if !unused_zero {
            return Err("a lane-open record with bytes in fields it does not use".into());
        }
        let rdma = (flags & 1 != 0).then_some(Endpoint {
            qpn,
            lid,
            gid: (flags & 2 != 0).then_some(gid),
        });
        if rdma.is_some() != (transports & RDMA != 0) {
            return Err(
                "a lane-open record offering RDMA without a queue pair, or one without RDMA".into(),
            );
        }
        let quic = (flags & 4 != 0).then_some(QuicAt { port, fingerprint });
        if quic.is_some() != (transports & QUIC != 0) {
            return Err(
                "a lane-open record offering QUIC without a certificate, or one without QUIC"
                    .into(),
            );
        }
        Ok(LaneOpen {
            transports,
            rdma,
            quic,
        })
    }

    /// What carries the lane's source-to-target bytes, this end having sent `self` and
    /// heard `peer`: the best both offered.
    pub fn carrier(&self, peer: &LaneOpen) -> Carrier {
        if let (Some(_), Some(at)) = (self.rdma, peer.rdma) {
            return Carrier::Rdma(at);
        }
        if let (Some(_), Some(at)) = (self.quic, peer.quic) {
            return Carrier::Quic(at);
        }
        Carrier::Tcp
    }
}

#[cfg(test)]
mod tests;
