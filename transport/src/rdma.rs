//! RDMA as a carrier of a bulk lane's bytes (issue 19, step 6; `docs/design/migration.md`).
//!
//! A bulk lane is a byte stream of hub frames each way. With RDMA, the source-to-target half
//! goes over a reliable-connected queue pair as two-sided SENDs into receive buffers the
//! target posts (the `ibverbs` crate posts only SENDs: no one-sided READ or WRITE without
//! FFI of our own); the answers stay on the lane's TCP connection. What is here:
//! - [`Verbs`]: one lane's queue pair and registered buffers, as the lane needs them; the
//!   `ibverbs` implementation behind the `rdma` feature ([`ib`]), and an in-memory fabric
//!   ([`fake`]) the tests run everything above it on;
//! - [`Stream`]: the rings of send and receive buffers over a `Verbs` (sans-IO: the driver
//!   calls it and waits between polls);
//! - [`LaneOpen`]: the record both ends of a lane exchange after its hello, saying what they
//!   carry bytes on, and with RDMA, where their queue pair is.
//!
//! Nothing of the `ibverbs` implementation has run on RDMA hardware: these machines have no
//! device and their kernel no RDMA support (not even soft-RoCE).

pub mod fake;
#[cfg(feature = "rdma")]
pub mod ib;
mod stream;

pub use stream::Stream;

use crate::wire::{Reader, WireError};
use std::io;

/// Where a queue pair is, for its peer to connect to: the queue pair number, the port's
/// LID and (for routed fabrics and RoCE) its GID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub qpn: u32,
    pub lid: u16,
    pub gid: Option<[u8; 16]>,
}

/// A finished work request: a send's buffer may be used again; a receive's buffer holds
/// `len` bytes. `ok` false: the queue pair failed (every request posted on it ends so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub buffer: usize,
    pub recv: bool,
    pub ok: bool,
    pub len: usize,
}

impl Completion {
    /// A request flushed by a queue pair in error.
    pub fn flushed(buffer: usize, recv: bool) -> Completion {
        Completion {
            buffer,
            recv,
            ok: false,
            len: 0,
        }
    }
}

/// One lane's queue pair and its registered buffers: `buffers()` of `buffer_bytes()` each;
/// the first `sends()` of them for sending, the rest for receiving.
pub trait Verbs {
    fn endpoint(&self) -> Endpoint;
    /// Connects the queue pair to the peer's (ready to send and receive).
    fn connect(&mut self, peer: &Endpoint) -> io::Result<()>;
    fn buffers(&self) -> usize;
    fn sends(&self) -> usize;
    fn buffer_bytes(&self) -> usize;
    /// Copies `data` (at most `buffer_bytes`) into buffer `i`, which no posted request uses.
    fn fill(&mut self, i: usize, data: &[u8]);
    /// Appends the first `len` bytes of buffer `i` to `out`.
    fn drain(&self, i: usize, len: usize, out: &mut Vec<u8>);
    /// Sends the first `len` bytes of buffer `i` (a send buffer).
    fn post_send(&mut self, i: usize, len: usize) -> io::Result<()>;
    /// Offers buffer `i` (a receive buffer) for the next message the peer sends.
    fn post_recv(&mut self, i: usize) -> io::Result<()>;
    /// Appends what finished since the last poll to `out`.
    fn poll(&mut self, out: &mut Vec<Completion>) -> io::Result<()>;
}

/// What makes a lane's `Verbs` on this node: the `ibverbs` device, or a fake fabric.
pub trait Provider {
    /// A queue pair with `sends` send buffers and `recvs` receive buffers of `bytes` each.
    fn open(&self, sends: usize, recvs: usize, bytes: usize) -> io::Result<Box<dyn Verbs>>;
    fn name(&self) -> String;
}

/// This node's RDMA, found at run time: a provider over the first device, or why there is
/// none (the build lacks the `rdma` feature; no device; `ibv_get_device_list` failing, as it
/// does on a kernel without RDMA support).
pub fn detect() -> Result<Box<dyn Provider + Send + Sync>, String> {
    #[cfg(feature = "rdma")]
    {
        ib::IbProvider::detect().map(|p| Box::new(p) as Box<dyn Provider + Send + Sync>)
    }
    #[cfg(not(feature = "rdma"))]
    {
        Err("this build has no RDMA support (the rdma cargo feature)".into())
    }
}

/// Transports a lane may carry bytes on (a bit set).
pub const TCP: u8 = 1;
pub const RDMA: u8 = 2;

/// The record each end of a lane sends right after the hello (the dialer first, the
/// acceptor in answer): the transports it offers and, with RDMA, its queue pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneOpen {
    pub transports: u8,
    pub rdma: Option<Endpoint>,
}

/// The record's bytes: `magic "LO" | transports | flags | qpn: u32 | lid: u16 | gid: [16]`.
pub const LANE_OPEN_BYTES: usize = 2 + 1 + 1 + 4 + 2 + 16;
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
        r.finish().map_err(bad)?;
        if flags & !3 != 0 || (flags & 1 == 0 && flags != 0) {
            return Err(format!("a lane-open record with flags {flags:#x}"));
        }
        if transports & TCP == 0 {
            return Err("a lane-open record without TCP (every node carries lanes on TCP)".into());
        }
        // One encoding: what a record does not use is zero.
        let unused_zero = match flags {
            0 => qpn == 0 && lid == 0 && gid == [0; 16],
            1 => gid == [0; 16],
            _ => true,
        };
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
        Ok(LaneOpen { transports, rdma })
    }

    /// Whether the lane's source-to-target bytes go over RDMA (both ends offered it): the
    /// peer's queue pair, to connect to.
    pub fn rdma_with(&self, peer: &LaneOpen) -> Option<Endpoint> {
        self.rdma.and(peer.rdma)
    }
}

#[cfg(test)]
mod tests;
