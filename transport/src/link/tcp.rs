//! The TCP link: dialing and handshakes on monoio for the shard threads, accepting on a plain
//! thread (a handshake is rare and may be slow: one short thread each keeps a slow peer from
//! holding up the others), reading and writing on monoio once connected.
//!
//! Given a [`ClusterTls`], every connection is mutual TLS 1.3 (`crate::tls`) before its first
//! frame: the dialer checks the acceptor's certificate names the member it dialed, the
//! acceptor hands the dialer's certificate to its judge with the hello, and the frames travel
//! encrypted. Without one, the bytes are the same frames in clear.

use super::{Answer, FRAME_BYTES_MAX, Frames, HandshakeReader, encode_answer};
use crate::frame::{self, Hello};
use crate::tls::{self, ClusterTls, Half};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use rustls::pki_types::CertificateDer;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection's TLS session, shared by its two halves on a two-way connection.
type Session = Rc<RefCell<rustls::Connection>>;

/// Writes `bytes` whole, encrypted when there is a session.
async fn write_on<W: monoio::io::AsyncWriteRent>(
    w: &mut W,
    tls: Option<(&RefCell<rustls::Connection>, &mut Half)>,
    bytes: Vec<u8>,
) -> (std::io::Result<()>, Vec<u8>) {
    match tls {
        None => {
            let (r, bytes) = w.write_all(bytes).await;
            (r.map(|_| ()), bytes)
        }
        Some((c, half)) => (tls::send(c, half, w, &bytes).await, bytes),
    }
}

/// Reads what comes next into `buf`'s spare capacity (at least `want` bytes of room), decrypted
/// when there is a session; `Ok(0)` when the peer closed.
async fn read_on<R: AsyncReadRent>(
    r: &mut R,
    tls: Option<(&RefCell<rustls::Connection>, &mut Half)>,
    buf: Vec<u8>,
    want: usize,
) -> (std::io::Result<usize>, Vec<u8>) {
    let mut buf = buf;
    match tls {
        None => {
            buf.reserve(want);
            let (len, cap) = (buf.len(), buf.capacity());
            let (res, slice) = r.read(buf.slice_mut(len..cap)).await;
            (res, slice.into_inner())
        }
        Some((c, half)) => (tls::read(c, half, r, &mut buf, want).await, buf),
    }
}

/// A socket the acceptor finished the handshake on, for the shard thread that adopts it: the
/// TLS session (when the links are authenticated) and the bytes read after the dialer's hello.
pub struct Accepted {
    s: std::net::TcpStream,
    tls: Option<rustls::ServerConnection>,
    rest: Vec<u8>,
}

impl Accepted {
    /// Takes the socket onto this thread's runtime.
    fn adopt(self) -> std::io::Result<(monoio::net::TcpStream, Option<Session>, Vec<u8>)> {
        let s = monoio::net::TcpStream::from_std(self.s)?;
        let tls = self.tls.map(|c| Rc::new(RefCell::new(c.into())));
        Ok((s, tls, self.rest))
    }
}

/// A handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The writing end of a connection this node dialed (and what the acceptor sent after its
/// answer, read with it: nothing on the bus, a two-way lane's first bytes).
pub struct Writer {
    s: monoio::net::TcpStream,
    tls: Option<Session>,
    /// The session's buffers: records to write, and records read after the answer (a two-way
    /// lane's first bytes).
    wr: Half,
    rd: Half,
    rest: Vec<u8>,
}

impl Writer {
    /// Writes `bytes` whole (frames, encoded by the caller) and gives the buffer back.
    pub async fn send(&mut self, bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let tls = self.tls.as_deref().map(|c| (c, &mut self.wr));
        let (res, bytes) = write_on(&mut self.s, tls, bytes).await;
        res.map(|_| bytes)
    }

    /// The connection both ways (a bulk lane, issue 19: its acceptor answers on it), and
    /// the bytes the acceptor sent that were read with its answer.
    pub fn into_duplex(self) -> (DuplexReader, DuplexWriter, Vec<u8>) {
        let (r, w) = duplex(self.s, self.tls, self.rd, self.wr);
        (r, w, self.rest)
    }
}

/// The reading half of a two-way connection (a bulk lane).
pub struct DuplexReader {
    r: OwnedReadHalf<monoio::net::TcpStream>,
    tls: Option<Session>,
    half: Half,
}

/// The writing half of a two-way connection (a bulk lane).
pub struct DuplexWriter {
    w: OwnedWriteHalf<monoio::net::TcpStream>,
    tls: Option<Session>,
    half: Half,
    fd: std::os::fd::RawFd,
}

fn duplex(
    s: monoio::net::TcpStream,
    tls: Option<Session>,
    rd: Half,
    wr: Half,
) -> (DuplexReader, DuplexWriter) {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let (r, w) = s.into_split();
    (
        DuplexReader {
            r,
            tls: tls.clone(),
            half: rd,
        },
        DuplexWriter {
            w,
            tls,
            half: wr,
            fd,
        },
    )
}

/// An accepted socket, both ways, on this thread's runtime, and the bytes read after the
/// dialer's hello.
pub fn adopt_duplex(a: Accepted) -> std::io::Result<(DuplexReader, DuplexWriter, Vec<u8>)> {
    let (s, tls, rest) = a.adopt()?;
    let (r, w) = duplex(s, tls, Half::default(), Half::default());
    Ok((r, w, rest))
}

impl DuplexReader {
    /// Reads into `buf`'s spare capacity (grown to at least `want` bytes free); `Ok(0)` when
    /// the peer closed the connection.
    pub async fn read(&mut self, buf: Vec<u8>, want: usize) -> (std::io::Result<usize>, Vec<u8>) {
        let tls = self.tls.as_deref().map(|c| (c, &mut self.half));
        read_on(&mut self.r, tls, buf, want).await
    }
}

impl DuplexWriter {
    /// Writes `bytes` whole and gives the buffer back.
    pub async fn send(&mut self, bytes: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
        let tls = self.tls.as_deref().map(|c| (c, &mut self.half));
        write_on(&mut self.w, tls, bytes).await
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
/// useless then); judging an acceptance is the caller's. With `tls`, the connection is mutual
/// TLS first, and the acceptor's certificate must carry the name given with it.
pub async fn dial(
    addr: SocketAddr,
    ours: &Hello,
    tls: Option<(&ClusterTls, &str)>,
) -> std::io::Result<(Writer, Answer)> {
    let dialed = monoio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut s = monoio::net::TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        let (mut rd, mut wr) = (Half::default(), Half::default());
        let tls = match tls {
            None => None,
            Some((config, name)) => {
                let c = RefCell::new(config.client(name).map_err(std::io::Error::other)?);
                tls::handshake(&c, &mut s, &mut rd).await?;
                Some(Rc::new(c))
            }
        };
        let mut h = Vec::new();
        frame::encode_hello(ours, &mut h);
        let (r, _) = write_on(&mut s, tls.as_deref().map(|c| (c, &mut wr)), h).await;
        r?;
        let mut reader = HandshakeReader::default();
        let mut chunk = Vec::with_capacity(256);
        loop {
            chunk.clear();
            let (r, c) = read_on(&mut s, tls.as_deref().map(|c| (c, &mut rd)), chunk, 256).await;
            chunk = c;
            if r? == 0 {
                return Err(std::io::Error::other(
                    "the peer closed the connection during the handshake",
                ));
            }
            if let Some(answer) = reader.answer(&chunk).map_err(std::io::Error::other)? {
                let rest = reader.rest().to_vec();
                return Ok((
                    Writer {
                        s,
                        tls,
                        wr,
                        rd,
                        rest,
                    },
                    answer,
                ));
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
    /// Answers a dialer's hello (a refusal is sent, then the connection closes); `cert` is the
    /// dialer's certificate when the links are TLS (checked against the CA already).
    fn judge(&self, theirs: &Hello, cert: Option<&CertificateDer<'_>>) -> Answer;
    /// Takes an accepted connection (non-blocking, no delay) and its dialer's hello.
    fn adopt(&self, theirs: Hello, accepted: Accepted);
    /// A connection dropped before its handshake ended, and why (for the log).
    fn dropped(&self, peer: Option<SocketAddr>, why: String);
}

/// Accepts connections on `listener` on a thread of its own, each handshake on a short
/// thread of its own; with `tls`, every dialer must complete a mutual TLS handshake first.
pub fn serve<A: Acceptor>(
    listener: std::net::TcpListener,
    acceptor: Arc<A>,
    tls: Option<Arc<ClusterTls>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("bus-accept".into())
        .spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let (a, tls) = (acceptor.clone(), tls.clone());
                let _ = std::thread::Builder::new()
                    .name("bus-hello".into())
                    .spawn(move || accept(&*a, s, tls.as_deref()));
            }
        })?;
    Ok(())
}

fn accept<A: Acceptor>(a: &A, mut s: std::net::TcpStream, tls: Option<&ClusterTls>) {
    let peer = s.peer_addr().ok();
    let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = s.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut session = match tls.map(ClusterTls::server).transpose() {
        Ok(c) => c,
        Err(e) => return a.dropped(peer, e),
    };
    if let Some(c) = &mut session
        && let Err(e) = tls::accept_blocking(c, &mut s, Instant::now() + HANDSHAKE_TIMEOUT)
    {
        return a.dropped(peer, format!("TLS handshake failed: {e}"));
    }
    let mut reader = HandshakeReader::default();
    let mut chunk = [0u8; 256];
    let (theirs, rest) = loop {
        let got = match &mut session {
            None => s.read(&mut chunk),
            Some(c) => tls::read_blocking(c, &mut s, &mut chunk),
        };
        let n = match got {
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
    let answer = a.judge(&theirs, session.as_ref().and_then(|c| tls::peer_cert(c)));
    let mut out = Vec::new();
    encode_answer(&answer, &mut out);
    let wrote = match &mut session {
        None => s.write_all(&out),
        Some(c) => tls::write_blocking(c, &mut s, &out),
    };
    if wrote.is_err() || matches!(answer, Answer::Refused(_)) {
        return;
    }
    if s.set_read_timeout(None).is_err()
        || s.set_write_timeout(None).is_err()
        || s.set_nonblocking(true).is_err()
    {
        return;
    }
    let _ = s.set_nodelay(true);
    a.adopt(
        theirs,
        Accepted {
            s,
            tls: session,
            rest,
        },
    );
}

/// The reading end of an accepted connection, on the shard thread that adopted it.
pub struct Reader {
    s: monoio::net::TcpStream,
    tls: Option<Session>,
    half: Half,
    frames: Frames,
}

impl Reader {
    /// Adopts an accepted socket on this thread's runtime, with the bytes that came after
    /// the hello.
    pub fn adopt(a: Accepted) -> std::io::Result<Reader> {
        let (s, tls, rest) = a.adopt()?;
        Ok(Reader {
            s,
            tls,
            half: Half::default(),
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
        let want = buf.capacity() - buf.len();
        let tls = self.tls.as_deref().map(|c| (c, &mut self.half));
        let (r, buf) = read_on(&mut self.s, tls, buf, want).await;
        *self.frames.buf_mut() = buf;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_hello as hello;
    use super::*;
    use crate::frame::{Message, Refused};
    use crate::tls::{dev, member_name};
    use std::sync::Mutex;
    use std::sync::mpsc;

    /// Accepts thread 1's dialers, refuses the others; with TLS, only a dialer whose
    /// certificate names member `127.0.0.1:7001`.
    struct OnlyThreadOne(Mutex<mpsc::Sender<(Hello, Accepted)>>);

    impl Acceptor for OnlyThreadOne {
        fn judge(&self, theirs: &Hello, cert: Option<&CertificateDer<'_>>) -> Answer {
            let named = cert.is_none_or(|c| tls::names(c, &member_name(addr(7001))));
            if theirs.shard == 1 && named {
                return Answer::Accepted(hello(1));
            }
            Answer::Refused(Refused {
                cluster_id: [7; 16],
                from: 2,
                removed: false,
                why: format!("no thread {}", theirs.shard),
            })
        }

        fn adopt(&self, theirs: Hello, accepted: Accepted) {
            self.0.lock().unwrap().send((theirs, accepted)).unwrap();
        }

        fn dropped(&self, _: Option<SocketAddr>, _: String) {}
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Member `port`'s TLS under the CA `ca` (its certificate and key).
    fn tls_under(ca: &(String, String), port: u16) -> ClusterTls {
        let (c, k) = dev::node(&ca.1, addr(port)).unwrap();
        ClusterTls::from_pem(ca.0.as_bytes(), c.as_bytes(), k.as_bytes()).unwrap()
    }

    /// The dialer's and the acceptor's TLS, both under one CA, as members 7001 and 7002.
    fn cluster_tls() -> (ClusterTls, Arc<ClusterTls>) {
        let ca = dev::ca().unwrap();
        (tls_under(&ca, 7001), Arc::new(tls_under(&ca, 7002)))
    }

    /// Runs `f` on a monoio runtime of its own.
    fn run<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A dialer refused, one accepted, a big batch across, and the dialer's close seen: in
    /// clear, or mutual TLS when `tls` (the dialer's and the acceptor's) is given.
    fn refused_or_accepted_and_batches_arrive(tls: Option<(ClusterTls, Arc<ClusterTls>)>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let (ours, theirs) = match tls {
            Some((d, a)) => (Some(d), Some(a)),
            None => (None, None),
        };
        serve(listener, Arc::new(OnlyThreadOne(Mutex::new(tx))), theirs).unwrap();
        run(async move {
            let name = member_name(addr(7002));
            let dial_tls = ours.as_ref().map(|t| (t, name.as_str()));
            let (_, answer) = dial(at, &hello(0), dial_tls).await.unwrap();
            let Answer::Refused(r) = answer else {
                panic!("thread 0 accepted: {answer:?}")
            };
            assert_eq!(r.why, "no thread 0");
            let (mut w, answer) = dial(at, &hello(1), dial_tls).await.unwrap();
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
            let (theirs, accepted) = rx.recv().unwrap();
            assert_eq!(theirs.shard, 1);
            let mut reader = Reader::adopt(accepted).unwrap();
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

    #[test]
    fn a_dialer_is_refused_or_accepted_and_its_batches_reach_the_adopting_reader() {
        refused_or_accepted_and_batches_arrive(None);
    }

    #[test]
    fn the_same_over_mutual_tls() {
        refused_or_accepted_and_batches_arrive(Some(cluster_tls()));
    }

    /// A dialer whose certificate names another member is refused by the judge; a dialer
    /// that expects another member, or speaks in clear to a TLS acceptor, never gets an answer.
    #[test]
    fn tls_dialers_under_the_wrong_name_or_in_clear_are_refused() {
        let ca = dev::ca().unwrap();
        let tls = |port| tls_under(&ca, port);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel();
        let acceptor = Some(Arc::new(tls(7002)));
        serve(listener, Arc::new(OnlyThreadOne(Mutex::new(tx))), acceptor).unwrap();
        run(async move {
            let name = member_name(addr(7002));
            let other = tls(7003);
            let (_, answer) = dial(at, &hello(1), Some((&other, &name))).await.unwrap();
            assert!(matches!(answer, Answer::Refused(_)), "{answer:?}");
            let me = tls(7001);
            let wrong = member_name(addr(7009));
            let e = dial(at, &hello(1), Some((&me, &wrong)))
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains("certificate"), "{e}");
            let e = dial(at, &hello(1), None).await.err().unwrap();
            assert!(!e.to_string().is_empty());
        });
    }
}
