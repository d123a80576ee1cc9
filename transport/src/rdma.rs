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
//!
//! Both ends of a lane say what they carry bytes on, and with RDMA where their queue pair
//! is, in the lane-open record (`crate::lane::LaneOpen`).
//!
//! Nothing of the `ibverbs` implementation has run on RDMA hardware: these machines have no
//! device and their kernel no RDMA support (not even soft-RoCE).

pub mod fake;
#[cfg(feature = "rdma")]
pub mod ib;
mod stream;

pub use stream::Stream;

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

#[cfg(test)]
mod tests;
