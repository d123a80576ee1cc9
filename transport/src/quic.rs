//! QUIC as a carrier of a bulk lane's bytes (issue 19, step 5; `docs/design/migration.md`).
//!
//! A bulk lane is a byte stream of hub frames each way. With QUIC, the source-to-target half
//! goes over one unidirectional QUIC stream (TLS 1.3 by rustls, `ring` as its crypto); the
//! answers stay on the lane's TCP connection, as with RDMA. So resume, checksums, the window
//! and throttling stay the hub's, and a QUIC failure is a lane that ended.
//!
//! What is here is sans-IO: a [`Pipe`] is one end of one lane's QUIC connection (a
//! quinn-proto endpoint holding that connection), fed the datagrams its socket received and
//! asked for those to send, its timers driven by the caller. The shard thread's lane driver
//! owns the UDP socket and the timer (`src/cluster/lanes/quic.rs`); the tests here drive a
//! pair through a lossy network in virtual time.
//!
//! Who is at the other end: each node makes an [`Identity`] at start-up (a self-signed
//! certificate, kept in memory only) and sends its SHA-256 fingerprint in the lane-open
//! record over the lane's TCP connection, which the cluster's hello admitted. Each end then
//! accepts exactly the certificate its peer announced (and the handshake's signature proves
//! the peer holds its key): a QUIC connection is as trusted as the lane that opened it. The
//! cluster CA of issue 20 (mutual TLS on every channel) will authenticate that exchange too.

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    ClientConfig, Connection, ConnectionError, ConnectionHandle, DatagramEvent, Dir, Endpoint,
    EndpointConfig, Event, IdleTimeout, MtuDiscoveryConfig, ReadError, ReadableError, ServerConfig,
    StreamEvent, StreamId, TransportConfig, VarInt, WriteError,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A certificate's SHA-256.
pub type Fingerprint = [u8; 32];

/// The largest UDP payload a lane's QUIC climbs to by path MTU discovery (loopback takes
/// it; a path that does not loses the probes and stays where it was). Under IPv4's 65,507.
pub const UDP_PAYLOAD_MAX: u16 = 65_000;
/// Bytes of the stream in flight unacknowledged (the source's send window, the target's
/// receive window): as the TCP lane's socket buffers, several 4 MiB chunks.
const WINDOW_BYTES: u32 = 16 << 20;
/// A connection that heard nothing for this long is lost (keep-alives every second).
const IDLE: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Answers the endpoint makes by itself (refusals of strangers' connections) waiting to be
/// sent, at most.
const RESPONSES_MAX: usize = 64;
/// The name the certificates carry and the client asks for (nothing checks it: the
/// fingerprint is the identity).
const NAME: &str = "shardline-lane";
const ALPN: &[u8] = b"shardline-lane/1";

/// The SHA-256 of a certificate's DER bytes.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut f = [0u8; 32];
    f.copy_from_slice(d.as_ref());
    f
}

/// A node's certificate for its lanes' QUIC, made at start-up.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
    /// What the node announces in its lane-open records: its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl Identity {
    /// A fresh ECDSA P-256 key and a self-signed certificate for it.
    pub fn generate() -> Result<Identity, String> {
        let ck = rcgen::generate_simple_self_signed(vec![NAME.to_string()])
            .map_err(|e| format!("QUIC: cannot make a certificate: {e}"))?;
        let cert = ck.cert.der().clone();
        Ok(Identity {
            fingerprint: fingerprint(&cert),
            key: ck.signing_key.serialize_der(),
            cert,
            provider: crate::tls::provider(),
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }

    fn pinned(&self, peer: Fingerprint) -> Arc<Pinned> {
        Arc::new(Pinned {
            peer,
            algs: self.provider.signature_verification_algorithms,
        })
    }

    /// A lane source's configuration: TLS 1.3 presenting this certificate, accepting only
    /// `peer`'s, and the lanes' transport settings (also what `bench/quinn-peer` runs quinn
    /// with).
    pub fn client_config(&self, peer: Fingerprint) -> Result<ClientConfig, String> {
        let bad = |e: rustls::Error| format!("QUIC: client configuration: {e}");
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(bad)?
            .dangerous()
            .with_custom_certificate_verifier(self.pinned(peer))
            .with_client_auth_cert(vec![self.cert.clone()], self.key())
            .map_err(bad)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| format!("QUIC: {e}"))?;
        let mut c = ClientConfig::new(Arc::new(crypto));
        c.transport_config(Arc::new(transport(0)));
        Ok(c)
    }

    /// A lane target's configuration (the mirror of `client_config`).
    pub fn server_config(&self, peer: Fingerprint) -> Result<ServerConfig, String> {
        let bad = |e: rustls::Error| format!("QUIC: server configuration: {e}");
        let mut tls = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(bad)?
            .with_client_cert_verifier(self.pinned(peer))
            .with_single_cert(vec![self.cert.clone()], self.key())
            .map_err(bad)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| format!("QUIC: {e}"))?;
        let mut s = ServerConfig::with_crypto(Arc::new(crypto));
        s.transport_config(Arc::new(transport(1)));
        s.migration(false);
        Ok(s)
    }
}

/// A lane's transport parameters; `uni`: the unidirectional streams the peer may open (the
/// source opens one; the target none).
fn transport(uni: u32) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(uni))
        .stream_receive_window(VarInt::from_u32(WINDOW_BYTES))
        .receive_window(VarInt::from_u32(WINDOW_BYTES))
        .send_window(WINDOW_BYTES as u64)
        .max_idle_timeout(IdleTimeout::try_from(IDLE).ok())
        .keep_alive_interval(Some(KEEP_ALIVE));
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(UDP_PAYLOAD_MAX);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Accepts exactly the certificate whose fingerprint the peer announced, and the handshake
/// signatures made with its key.
#[derive(Debug)]
struct Pinned {
    peer: Fingerprint,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>, chain: &[CertificateDer<'_>]) -> bool {
        chain.is_empty() && fingerprint(cert) == self.peer
    }

    fn refused() -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates) {
            true => Ok(ServerCertVerified::assertion()),
            false => Err(Self::refused()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not spoken on lanes".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates) {
            true => Ok(ClientCertVerified::assertion()),
            false => Err(Self::refused()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not spoken on lanes".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// One end of a lane's QUIC connection: the source (the client, writing one stream) or the
/// target (the server, reading it). Errors that are QUIC's failures begin with "QUIC" (the
/// lane driver keeps a peer whose QUIC failed on TCP for a while); a close does not.
pub struct Pipe {
    endpoint: Endpoint,
    /// The target's configuration until its one connection arrives.
    server: Option<Arc<ServerConfig>>,
    conn: Option<(ConnectionHandle, Connection)>,
    stream: Option<StreamId>,
    /// Datagrams the endpoint answered by itself (refusals of other connections).
    responses: VecDeque<(SocketAddr, Vec<u8>)>,
    connected: bool,
    failed: Option<String>,
    buf: Vec<u8>,
}

impl Pipe {
    fn new(server: Option<ServerConfig>) -> Result<Pipe, String> {
        let mut ec = EndpointConfig::default();
        ec.max_udp_payload_size(UDP_PAYLOAD_MAX)
            .map_err(|e| format!("QUIC: {e}"))?;
        let server = server.map(Arc::new);
        Ok(Pipe {
            endpoint: Endpoint::new(Arc::new(ec), server.clone(), true, None),
            server,
            conn: None,
            stream: None,
            responses: VecDeque::new(),
            connected: false,
            failed: None,
            buf: Vec::new(),
        })
    }

    /// The source's end: connects to the target at `to`, accepting only the certificate
    /// `peer` names.
    pub fn client(
        id: &Identity,
        peer: Fingerprint,
        to: SocketAddr,
        now: Instant,
    ) -> Result<Pipe, String> {
        let mut p = Pipe::new(None)?;
        let config = id.client_config(peer)?;
        let conn = p
            .endpoint
            .connect(now, config, to, NAME)
            .map_err(|e| format!("QUIC: cannot connect to {to}: {e}"))?;
        p.conn = Some(conn);
        Ok(p)
    }

    /// The target's end: takes the first connection that comes (whose certificate must be
    /// the one `peer` names), refusing any other.
    pub fn server(id: &Identity, peer: Fingerprint) -> Result<Pipe, String> {
        Pipe::new(Some(id.server_config(peer)?))
    }

    fn is_client(&self) -> bool {
        self.server.is_none()
    }

    /// The handshake finished (the peer is the one announced).
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Why the connection failed, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn fail(&mut self, why: String) -> String {
        self.failed.get_or_insert(why).clone()
    }

    /// A datagram the socket received from `from`.
    pub fn datagram(&mut self, now: Instant, from: SocketAddr, data: BytesMut) {
        let event = self
            .endpoint
            .handle(now, from, None, None, data, &mut self.buf);
        match event {
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some((_, c)) = self.conn.as_mut().filter(|(h, _)| *h == ch) {
                    c.handle_event(ev);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                if self.conn.is_none() && !self.is_client() {
                    self.buf.clear();
                    match self.endpoint.accept(incoming, now, &mut self.buf, None) {
                        Ok(conn) => self.conn = Some(conn),
                        Err(e) => {
                            if let Some(t) = e.response {
                                self.respond(t.destination, t.size);
                            }
                        }
                    }
                } else {
                    self.buf.clear();
                    let t = self.endpoint.refuse(incoming, &mut self.buf);
                    self.respond(t.destination, t.size);
                }
            }
            Some(DatagramEvent::Response(t)) => self.respond(t.destination, t.size),
            None => {}
        }
        self.drive();
    }

    /// Queues the endpoint's own answer (the first `len` bytes of `buf`) to `to`: at most
    /// `RESPONSES_MAX` wait, the rest are dropped (strangers flooding the port get no more
    /// answers than the socket can send).
    fn respond(&mut self, to: SocketAddr, len: usize) {
        if self.responses.len() < RESPONSES_MAX {
            self.responses.push_back((to, self.buf[..len].to_vec()));
        }
    }

    /// Hands events between the connection and the endpoint, and takes the connection's.
    fn drive(&mut self) {
        let client = self.is_client();
        let Some((ch, conn)) = self.conn.as_mut() else {
            return;
        };
        while let Some(ev) = conn.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(*ch, ev) {
                conn.handle_event(back);
            }
        }
        while let Some(ev) = conn.poll() {
            match ev {
                Event::Connected => {
                    self.connected = true;
                    if client {
                        self.stream = conn.streams().open(Dir::Uni);
                    }
                }
                Event::ConnectionLost { reason } => {
                    // A close by either end's lane is not a failure of QUIC (those, and
                    // only those, begin with "QUIC").
                    let why = match reason {
                        ConnectionError::ApplicationClosed(_) | ConnectionError::LocallyClosed => {
                            "the lane's QUIC connection was closed".to_string()
                        }
                        reason => format!("QUIC connection lost: {reason}"),
                    };
                    self.failed.get_or_insert(why);
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni })
                    if !client && self.stream.is_none() =>
                {
                    self.stream = conn.streams().accept(Dir::Uni);
                }
                _ => {}
            }
        }
    }

    /// The next datagram to send, into `out`: where to.
    pub fn transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        if let Some((to, bytes)) = self.responses.pop_front() {
            out.extend_from_slice(&bytes);
            return Some(to);
        }
        let (_, conn) = self.conn.as_mut()?;
        let t = conn.poll_transmit(now, 1, out)?;
        out.truncate(t.size);
        Some(t.destination)
    }

    /// When the connection's next timer fires.
    pub fn timeout(&mut self) -> Option<Instant> {
        self.conn.as_mut()?.1.poll_timeout()
    }

    /// The connection's timers at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Some((_, c)) = self.conn.as_mut() {
            c.handle_timeout(now);
        }
        self.drive();
    }

    /// The source: puts what of `data` the stream takes now (0 while connecting or while
    /// the window is full: the driver waits for datagrams).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        let (Some((_, conn)), Some(id)) = (self.conn.as_mut(), self.stream) else {
            return Ok(0);
        };
        match conn.send_stream(id).write(data) {
            Ok(n) => Ok(n),
            Err(WriteError::Blocked) => Ok(0),
            Err(e) => Err(self.fail(format!("QUIC stream: {e}"))),
        }
    }

    /// The target: appends what arrived in order on the stream (at most `max` bytes) to
    /// `out`.
    pub fn read(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, String> {
        let (Some((_, conn)), Some(id)) = (self.conn.as_mut(), self.stream) else {
            return match &self.failed {
                Some(why) => Err(why.clone()),
                None => Ok(0),
            };
        };
        let (n, ended) = read_stream(conn, id, out, max);
        if let Some(why) = ended {
            self.fail(why);
        }
        match (n, &self.failed) {
            (0, Some(why)) => Err(why.clone()),
            _ => Ok(n),
        }
    }

    /// Closes the connection (the peer hears it with the next datagrams sent).
    pub fn close(&mut self, now: Instant) {
        if let Some((_, c)) = self.conn.as_mut() {
            c.close(now, VarInt::from_u32(0), Bytes::from_static(b"lane closed"));
        }
        self.drive();
        self.failed
            .get_or_insert_with(|| "the lane's QUIC connection was closed".into());
    }
}

/// Appends what arrived in order on stream `id` (at most `max` bytes) to `out`: how much,
/// and why the stream can bring no more, if it cannot.
fn read_stream(
    conn: &mut Connection,
    id: StreamId,
    out: &mut Vec<u8>,
    max: usize,
) -> (usize, Option<String>) {
    let mut stream = conn.recv_stream(id);
    let mut chunks = match stream.read(true) {
        Ok(c) => c,
        Err(ReadableError::ClosedStream) => {
            return (0, Some("QUIC: the source's stream is gone".into()));
        }
        Err(e) => return (0, Some(format!("QUIC stream: {e}"))),
    };
    let mut n = 0;
    let mut ended = None;
    while n < max {
        match chunks.next(max - n) {
            Ok(Some(c)) => {
                out.extend_from_slice(&c.bytes);
                n += c.bytes.len();
            }
            Ok(None) => {
                ended = Some("QUIC: the source finished its stream".to_string());
                break;
            }
            Err(ReadError::Blocked) => break,
            Err(e) => {
                ended = Some(format!("QUIC stream: {e}"));
                break;
            }
        }
    }
    // (What must be sent for the credit given back, the driver's next transmits send.)
    let _ = chunks.finalize();
    (n, ended)
}
