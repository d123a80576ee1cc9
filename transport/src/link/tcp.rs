//! The TCP link: dialing and handshakes on monoio for the shard threads, accepting on a plain
//! thread (a handshake is rare and may be slow: one short thread each keeps a slow peer from
//! holding up the others), reading and writing on monoio once connected.

use super::{Answer, FRAME_BYTES_MAX, Frames, HandshakeReader, encode_answer};
use crate::frame::{self, Hello};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The writing end of a connection this node dialed (and what the acceptor sent after its
/// answer, read with it: nothing on the bus, a two-way lane's first bytes).
pub struct Writer {
    s: monoio::net::TcpStream,
    rest: Vec<u8>,
}

impl Writer {
    /// Writes `bytes` whole (frames, encoded by the caller) and gives the buffer back.
    pub async fn send(&mut self, bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let (r, bytes) = self.s.write_all(bytes).await;
        r.map(|_| bytes)
    }
}

impl Writer {
    /// The connection both ways (a bulk lane, issue 19: its acceptor answers on it), and
    /// the bytes the acceptor sent that were read with its answer.
    pub fn into_duplex(self) -> (DuplexReader, DuplexWriter, Vec<u8>) {
        let (r, w) = duplex(self.s);
        (r, w, self.rest)
    }
}

/// The reading half of a two-way connection (a bulk lane).
pub struct DuplexReader {
    r: OwnedReadHalf<monoio::net::TcpStream>,
}

/// The writing half of a two-way connection (a bulk lane).
pub struct DuplexWriter {
    w: OwnedWriteHalf<monoio::net::TcpStream>,
    fd: std::os::fd::RawFd,
}

fn duplex(s: monoio::net::TcpStream) -> (DuplexReader, DuplexWriter) {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let (r, w) = s.into_split();
    (DuplexReader { r }, DuplexWriter { w, fd })
}

/// An accepted socket, both ways, on this thread's runtime.
pub fn adopt_duplex(s: std::net::TcpStream) -> std::io::Result<(DuplexReader, DuplexWriter)> {
    Ok(duplex(monoio::net::TcpStream::from_std(s)?))
}

impl DuplexReader {
    /// Reads into `buf`'s spare capacity (grown to at least `want` bytes free); `Ok(0)` when
    /// the peer closed the connection.
    pub async fn read(&mut self, buf: Vec<u8>, want: usize) -> (std::io::Result<usize>, Vec<u8>) {
        let mut buf = buf;
        buf.reserve(want);
        let (len, cap) = (buf.len(), buf.capacity());
        let (r, slice) = self.r.read(buf.slice_mut(len..cap)).await;
        (r, slice.into_inner())
    }
}

impl DuplexWriter {
    /// Writes `bytes` whole and gives the buffer back.
    pub async fn send(&mut self, bytes: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
        let (r, bytes) = self.w.write_all(bytes).await;
        (r.map(|_| ()), bytes)
    }

    /// The connection's local and peer addresses.
    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` is the socket both halves share, open while this half lives; the
        // std stream made over it is never dropped (it does not own the descriptor).
        let s = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(self.fd) });
        Ok((s.local_addr()?, s.peer_addr()?))
    }

    /// Shuts the connection down both ways: the reading half's pending read ends (with
    /// nothing read), whatever the peer does.
    pub fn close(&self) {
        // SAFETY: `fd` is the socket both halves share, open while this half lives; shutdown
        // changes no memory and fails harmlessly on a socket already shut down.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }
}

/// Dials `addr`, sends `ours` and reads the acceptor's answer, all within
/// [`HANDSHAKE_TIMEOUT`]. A refusal comes back as [`Answer::Refused`] (the connection is
/// useless then); judging an acceptance is the caller's.
pub async fn dial(addr: SocketAddr, ours: &Hello) -> std::io::Result<(Writer, Answer)> {
    let dialed = monoio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut s = monoio::net::TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        let mut h = Vec::new();
        frame::encode_hello(ours, &mut h);
        let (r, _) = s.write_all(h).await;
        r?;
        let mut reader = HandshakeReader::default();
        let mut chunk = Vec::with_capacity(256);
        loop {
            chunk.clear();
            let (r, c) = s.read(chunk).await;
            chunk = c;
            if r? == 0 {
                return Err(std::io::Error::other(
                    "the peer closed the connection during the handshake",
                ));
            }
            if let Some(answer) = reader.answer(&chunk).map_err(std::io::Error::other)? {
                let rest = reader.rest().to_vec();
                return Ok((Writer { s, rest }, answer));
            }
        }
    })
    .await;
    dialed.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the handshake timed out",
        ))
    })
}

/// The accepting end's decisions, made by the node.
pub trait Acceptor: Send + Sync + 'static {
    /// Answers a dialer's hello (a refusal is sent, then the connection closes).
    fn judge(&self, theirs: &Hello) -> Answer;
    /// Takes an accepted connection (non-blocking, no delay), its dialer's hello and the bytes
    /// that came after it.
    fn adopt(&self, theirs: Hello, s: std::net::TcpStream, rest: Vec<u8>);
    /// A connection dropped before its handshake ended, and why (for the log).
    fn dropped(&self, peer: Option<SocketAddr>, why: String);
}

/// Accepts connections on `listener` on a thread of its own, each handshake on a short
/// thread of its own.
pub fn serve<A: Acceptor>(
    listener: std::net::TcpListener,
    acceptor: Arc<A>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("bus-accept".into())
        .spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let a = acceptor.clone();
                let _ = std::thread::Builder::new()
                    .name("bus-hello".into())
                    .spawn(move || accept(&*a, s));
            }
        })?;
    Ok(())
}

fn accept<A: Acceptor>(a: &A, mut s: std::net::TcpStream) {
    let peer = s.peer_addr().ok();
    let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut reader = HandshakeReader::default();
    let mut chunk = [0u8; 256];
    let (theirs, rest) = loop {
        let n = match s.read(&mut chunk) {
            Ok(0) => return a.dropped(peer, "closed during the handshake".into()),
            Ok(n) => n,
            Err(e) => return a.dropped(peer, e.to_string()),
        };
        match reader.hello(&chunk[..n]) {
            Ok(Some(got)) => break got,
            Ok(None) => {}
            Err(e) => return a.dropped(peer, e.to_string()),
        }
    };
    let answer = a.judge(&theirs);
    let mut out = Vec::new();
    encode_answer(&answer, &mut out);
    if s.write_all(&out).is_err() || matches!(answer, Answer::Refused(_)) {
        return;
    }
    if s.set_read_timeout(None).is_err() || s.set_nonblocking(true).is_err() {
        return;
    }
    let _ = s.set_nodelay(true);
    a.adopt(theirs, s, rest);
}

/// The reading end of an accepted connection, on the shard thread that adopted it.
pub struct Reader {
    s: monoio::net::TcpStream,
    frames: Frames,
}

impl Reader {
    /// Adopts an accepted socket on this thread's runtime, with the bytes that came after
    /// the hello.
    pub fn adopt(s: std::net::TcpStream, rest: Vec<u8>) -> std::io::Result<Reader> {
        Ok(Reader {
            s: monoio::net::TcpStream::from_std(s)?,
            frames: Frames::new(FRAME_BYTES_MAX, rest),
        })
    }

    /// The frames read so far ([`Frames::next_batch`] until `None`, then [`Reader::read`]).
    pub fn frames(&mut self) -> &mut Frames {
        &mut self.frames
    }

    /// Reads what the peer sent next; `Ok(0)` when it closed the connection.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        self.frames.room();
        let buf = std::mem::take(self.frames.buf_mut());
        let (len, cap) = (buf.len(), buf.capacity());
        let (r, slice) = self.s.read(buf.slice_mut(len..cap)).await;
        *self.frames.buf_mut() = slice.into_inner();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_hello as hello;
    use super::*;
    use crate::frame::{Message, Refused};
    use std::sync::Mutex;
    use std::sync::mpsc;

    /// Accepts thread 1's dialers, refuses the others.
    struct OnlyThreadOne(Mutex<mpsc::Sender<(Hello, std::net::TcpStream, Vec<u8>)>>);

    impl Acceptor for OnlyThreadOne {
        fn judge(&self, theirs: &Hello) -> Answer {
            if theirs.shard == 1 {
                return Answer::Accepted(hello(1));
            }
            Answer::Refused(Refused {
                cluster_id: [7; 16],
                from: 2,
                removed: false,
                why: format!("no thread {}", theirs.shard),
            })
        }

        fn adopt(&self, theirs: Hello, s: std::net::TcpStream, rest: Vec<u8>) {
            self.0.lock().unwrap().send((theirs, s, rest)).unwrap();
        }

        fn dropped(&self, _: Option<SocketAddr>, _: String) {}
    }

    #[test]
    fn a_dialer_is_refused_or_accepted_and_its_batches_reach_the_adopting_reader() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        serve(listener, Arc::new(OnlyThreadOne(Mutex::new(tx)))).unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (_, answer) = dial(addr, &hello(0)).await.unwrap();
            let Answer::Refused(r) = answer else {
                panic!("thread 0 accepted: {answer:?}")
            };
            assert_eq!(r.why, "no thread 0");
            let (mut w, answer) = dial(addr, &hello(1)).await.unwrap();
            assert_eq!(answer, Answer::Accepted(hello(1)));
            let big = vec![7u8; 200 << 10];
            let mut bytes = Vec::new();
            frame::encode_batch(
                &[
                    Message {
                        group: 3,
                        payload: b"small",
                    },
                    Message {
                        group: 4,
                        payload: &big,
                    },
                ],
                &mut bytes,
            );
            w.send(bytes).await.unwrap();
            let (theirs, s, rest) = rx.recv().unwrap();
            assert_eq!(theirs.shard, 1);
            let mut reader = Reader::adopt(s, rest).unwrap();
            loop {
                if let Some(msgs) = reader.frames().next_batch().unwrap() {
                    assert_eq!((msgs[0].group, msgs[0].payload), (3, &b"small"[..]));
                    assert_eq!(msgs[1].payload.len(), big.len());
                    break;
                }
                assert!(reader.read().await.unwrap() > 0, "closed before the batch");
            }
            drop(w);
            assert_eq!(reader.frames().next_batch().unwrap(), None);
            assert_eq!(
                reader.read().await.unwrap(),
                0,
                "the dialer's close is seen"
            );
        });
    }
}
