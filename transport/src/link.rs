//! The node-to-node link: what runs on a connection between shard thread `i` of one node and
//! shard thread `i` of another, sans-IO, with its two implementations.
//!
//! A connection is one-way after its handshake: the dialer sends its [`Hello`], the acceptor
//! answers with its own (or a [`Refused`] frame, then closes), and from then on only the dialer
//! writes, batches of Raft messages ([`frame`]). Each node dials every peer, so two nodes talk
//! over two connections. What is here:
//!
//! - [`HandshakeReader`]: the bytes of one handshake frame as they arrive, on either end;
//! - [`Frames`]: the reading end's buffer, handing out whole frames and sizing the next read;
//! - [`tcp`]: the TCP implementation on monoio (dial, accept, read, write);
//! - [`mem`]: the simulator's in-memory implementation (a network of byte pipes on simulated
//!   time, and the handshake run through the same readers).
//!
//! Who may connect (cluster id, membership, thread count) is the node's policy and stays with
//! the node (`src/cluster/bus.rs`): the link carries the hellos, the node judges them. QUIC
//! and RDMA (issue 19) are further implementations of the same bytes.

pub mod mem;
pub mod tcp;

use crate::frame::{self, Frame, FrameError, Hello, Message, Refused};

/// The most bytes one handshake frame may take (a hello, or a refusal and its reason).
pub const HANDSHAKE_BYTES_MAX: usize = 4096;

/// The largest frame a peer may send (a batch of entries, or a chunk of a vShard snapshot).
pub const FRAME_BYTES_MAX: usize = 1 << 30;

/// How much a read asks for when no frame's length says more.
const READ_CHUNK: usize = 64 << 10;

/// Why a handshake failed; the connection is dropped and the dialer tries again later.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    Frame(FrameError),
    /// A frame the handshake does not allow at this point (named).
    Unexpected(&'static str),
    /// More than [`HANDSHAKE_BYTES_MAX`] bytes without a whole frame.
    TooLong,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Frame(e) => write!(f, "bad handshake frame: {e}"),
            HandshakeError::Unexpected(what) => write!(f, "{what} during the handshake"),
            HandshakeError::TooLong => {
                write!(f, "handshake longer than {HANDSHAKE_BYTES_MAX} bytes")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What the dialer reads back: the acceptor's hello, or why it refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted(Hello),
    Refused(Refused),
}

/// The bytes of one handshake frame, gathered as they arrive.
#[derive(Debug, Default)]
pub struct HandshakeReader {
    got: Vec<u8>,
    /// The bytes of the whole frame read (0 until then).
    used: usize,
}

impl HandshakeReader {
    /// The acceptor's side: takes bytes, and once the dialer's hello is whole returns it with
    /// whatever followed it (nothing, from a peer that waits for the answer as it must).
    pub fn hello(&mut self, bytes: &[u8]) -> Result<Option<(Hello, Vec<u8>)>, HandshakeError> {
        match self.feed(bytes)? {
            None => Ok(None),
            Some((Frame::Hello(h), used)) => Ok(Some((h, self.got[used..].to_vec()))),
            Some((Frame::Batch(_), _)) => {
                Err(HandshakeError::Unexpected("a batch before the hello"))
            }
            Some((Frame::Refused(_), _)) => {
                Err(HandshakeError::Unexpected("a refusal from the dialer"))
            }
        }
    }

    /// The dialer's side: takes bytes, and once the acceptor's answer is whole returns it.
    pub fn answer(&mut self, bytes: &[u8]) -> Result<Option<Answer>, HandshakeError> {
        match self.feed(bytes)? {
            None => Ok(None),
            Some((Frame::Hello(h), _)) => Ok(Some(Answer::Accepted(h))),
            Some((Frame::Refused(r), _)) => Ok(Some(Answer::Refused(r))),
            Some((Frame::Batch(_), _)) => {
                Err(HandshakeError::Unexpected("a batch from the acceptor"))
            }
        }
    }

    /// What came after the answer `answer` returned (a two-way connection's first bytes,
    /// read with it).
    pub fn rest(&self) -> &[u8] {
        &self.got[self.used..]
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, HandshakeError> {
        self.got.extend_from_slice(bytes);
        let whole = frame::decode(&self.got, HANDSHAKE_BYTES_MAX).map_err(HandshakeError::Frame)?;
        match &whole {
            Some((_, used)) => self.used = *used,
            None if self.got.len() >= HANDSHAKE_BYTES_MAX => return Err(HandshakeError::TooLong),
            None => {}
        }
        Ok(whole)
    }
}

/// Encodes the acceptor's answer: its hello, or the refusal (after which it closes).
pub fn encode_answer(answer: &Answer, out: &mut Vec<u8>) {
    match answer {
        Answer::Accepted(h) => frame::encode_hello(h, out),
        Answer::Refused(r) => frame::encode_refused(r, out),
    }
}

/// The reading end of a connection after its handshake: bytes in, whole batches out.
///
/// Read with [`Frames::next_batch`] until it says `None`, then make room with
/// [`Frames::room`] and read into the spare capacity ([`Frames::buf_mut`]); a frame whose
/// length is known gets room for all of it at once.
#[derive(Debug)]
pub struct Frames {
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
    /// The length of the frame last handed out, consumed at the next call.
    lent: usize,
    max: usize,
}

impl Frames {
    /// A reader refusing frames over `max` bytes, starting with `rest` (bytes that came with
    /// the handshake).
    pub fn new(max: usize, rest: Vec<u8>) -> Frames {
        let mut buf = rest;
        buf.reserve(READ_CHUNK);
        Frames {
            buf,
            start: 0,
            lent: 0,
            max,
        }
    }

    /// The next whole batch, `Ok(None)` when more bytes are needed, or why the connection
    /// must end (a bad frame, or a hello or refusal after the handshake).
    pub fn next_batch(&mut self) -> Result<Option<Vec<Message<'_>>>, String> {
        self.start += std::mem::take(&mut self.lent);
        match frame::decode(&self.buf[self.start..], self.max) {
            Ok(None) => Ok(None),
            Ok(Some((Frame::Batch(msgs), used))) => {
                self.lent = used;
                Ok(Some(msgs))
            }
            Ok(Some((Frame::Hello(_) | Frame::Refused(_), _))) => {
                Err("a hello or a refusal after the handshake".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Drops what was consumed and makes room for the next read: a chunk, or the rest of a
    /// frame whose header is in.
    pub fn room(&mut self) {
        self.start += std::mem::take(&mut self.lent);
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let want = match self.buf.get(..4) {
            Some(len) => u32::from_le_bytes(len.try_into().expect("4")) as usize + 8,
            None => 0,
        };
        let len = self.buf.len();
        let cap = (len + READ_CHUNK).max(want.min(self.max + 8));
        if self.buf.capacity() < cap {
            self.buf.reserve(cap - len);
        }
    }

    /// The buffer, for a read into its spare capacity (owned-buffer IO takes it whole).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Appends bytes (the in-memory link).
    pub fn push(&mut self, bytes: &[u8]) {
        self.room();
        self.buf.extend_from_slice(bytes);
    }
}

/// A hello from thread `shard` of a test node.
#[cfg(test)]
pub(crate) fn test_hello(shard: u16) -> Hello {
    Hello {
        wire_min: frame::WIRE_MIN,
        wire_max: frame::WIRE_MAX,
        cluster_id: [7; 16],
        node_id: [1; 20],
        shard,
    }
}

#[cfg(test)]
mod tests {
    use super::test_hello as hello;
    use super::*;

    fn batch(payloads: &[&[u8]]) -> Vec<u8> {
        let msgs: Vec<Message> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Message {
                group: i as u32,
                payload: p,
            })
            .collect();
        let mut out = Vec::new();
        frame::encode_batch(&msgs, &mut out);
        out
    }

    #[test]
    fn a_hello_arriving_a_byte_at_a_time_is_read_once_whole() {
        let mut bytes = Vec::new();
        frame::encode_hello(&hello(3), &mut bytes);
        let mut r = HandshakeReader::default();
        for b in &bytes[..bytes.len() - 1] {
            assert_eq!(r.hello(std::slice::from_ref(b)), Ok(None));
        }
        let (h, rest) = r.hello(&bytes[bytes.len() - 1..]).unwrap().unwrap();
        assert_eq!((h, rest), (hello(3), vec![]));
    }

    /// A two-way connection's acceptor may write right after its answer: what the dialer
    /// read with the answer is kept for it, not dropped (found by the bulk lanes' benchmark:
    /// the target's first answer came in the same read and the copy never started).
    #[test]
    fn bytes_read_with_the_answer_are_kept() {
        let mut bytes = Vec::new();
        encode_answer(&Answer::Accepted(hello(1)), &mut bytes);
        bytes.extend_from_slice(b"first bytes");
        let mut r = HandshakeReader::default();
        assert_eq!(r.answer(&bytes), Ok(Some(Answer::Accepted(hello(1)))));
        assert_eq!(r.rest(), b"first bytes");
    }

    #[test]
    fn the_dialer_reads_an_acceptance_or_a_refusal_and_nothing_else() {
        for answer in [
            Answer::Accepted(hello(1)),
            Answer::Refused(Refused {
                cluster_id: [7; 16],
                from: 2,
                removed: true,
                why: "removed".into(),
            }),
        ] {
            let mut bytes = Vec::new();
            encode_answer(&answer, &mut bytes);
            assert_eq!(HandshakeReader::default().answer(&bytes), Ok(Some(answer)));
        }
        let e = HandshakeReader::default()
            .answer(&batch(&[b"x"]))
            .unwrap_err();
        assert_eq!(e, HandshakeError::Unexpected("a batch from the acceptor"));
        let e = HandshakeReader::default().hello(&batch(&[])).unwrap_err();
        assert_eq!(e, HandshakeError::Unexpected("a batch before the hello"));
    }

    #[test]
    fn a_handshake_that_never_ends_or_lies_about_its_length_is_refused() {
        let mut r = HandshakeReader::default();
        let mut junk = 100u32.to_le_bytes().to_vec();
        junk.resize(HANDSHAKE_BYTES_MAX, 0);
        assert!(r.answer(&junk).is_err());
        let mut huge = (HANDSHAKE_BYTES_MAX as u32 * 2).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 4]);
        let e = HandshakeReader::default().hello(&huge).unwrap_err();
        assert!(
            matches!(e, HandshakeError::Frame(FrameError::TooLarge { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn frames_hand_out_whole_batches_across_reads_and_keep_the_rest() {
        let (a, b) = (batch(&[b"one", b"two"]), batch(&[b"three"]));
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let split = a.len() + 3;
        let mut f = Frames::new(FRAME_BYTES_MAX, all[..split].to_vec());
        let first = f.next_batch().unwrap().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].payload, b"two");
        assert_eq!(f.next_batch().unwrap(), None);
        f.push(&all[split..]);
        assert_eq!(f.next_batch().unwrap().unwrap()[0].payload, b"three");
        assert_eq!(f.next_batch().unwrap(), None);
        f.room();
        assert!(f.buf_mut().is_empty(), "consumed bytes are dropped");
    }

    #[test]
    fn room_covers_a_whole_frame_once_its_length_is_known() {
        let big = vec![9u8; 300 << 10];
        let bytes = batch(&[&big]);
        let mut f = Frames::new(FRAME_BYTES_MAX, bytes[..10].to_vec());
        assert_eq!(f.next_batch().unwrap(), None);
        f.room();
        assert!(f.buf_mut().capacity() >= bytes.len());
        // A lying length is capped at the limit, and refused when decoded.
        let mut lying = u32::MAX.to_le_bytes().to_vec();
        lying.extend_from_slice(&[0; 4]);
        let mut f = Frames::new(1024, lying);
        f.room();
        assert!(f.buf_mut().capacity() < 1 << 20);
        assert!(f.next_batch().unwrap_err().contains("exceeds"));
    }

    #[test]
    fn a_hello_after_the_handshake_or_a_damaged_frame_ends_the_connection() {
        let mut bytes = Vec::new();
        frame::encode_hello(&hello(0), &mut bytes);
        assert!(Frames::new(FRAME_BYTES_MAX, bytes).next_batch().is_err());
        let mut bytes = batch(&[b"payload"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let e = Frames::new(FRAME_BYTES_MAX, bytes)
            .next_batch()
            .unwrap_err();
        assert!(e.contains("checksum"), "{e}");
    }
}
