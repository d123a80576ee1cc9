//! Mutual TLS for the node-to-node links (issue 20, step 5): TLS 1.3 only, both ends present a
//! certificate the cluster's CA signed, and each names a member.
//!
//! The cryptography is rustls's sans-IO `Connection`; what is here is its configuration (from
//! PEM files), the name a member's certificate must carry, and the driving of a connection
//! over monoio sockets (`drive_*`: ciphertext in and out of a buffer, the socket's read and
//! write awaited outside any borrow) or, on the acceptor's handshake thread, over a blocking
//! socket (rustls's own `complete_io`). The TCP link (`link::tcp`) uses them when the node
//! was given a [`ClusterTls`].
//!
//! A member is named by its client address (the one in `cluster-nodes`, CLUSTER NODES and
//! CLUSTER JOIN): the certificate carries the DNS name [`member_name`] makes of it, so two
//! members on one host (ports apart) hold different names. `shardline ctl certs` makes a CA
//! and such certificates.

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// How many ciphertext bytes one socket read asks for.
const READ_CHUNK: usize = 64 << 10;

/// The DNS name a member's certificate carries: its client address as
/// `n<port>.<address with '-' for '.' or ':'>.shardline` (`n7001.127-0-0-1.shardline`; an
/// IPv6 address is written out in full, `n7001.0-0-0-0-0-0-0-1.shardline`).
pub fn member_name(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4
            .octets()
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join("-"),
    };
    format!("n{}.{ip}.shardline", addr.port())
}

/// The crypto provider of every TLS channel between nodes (these links and QUIC's): ring, what
/// quinn-proto's `rustls-ring` builds, at half aws-lc-rs's build time. rustls deprecates it for
/// lacking a post-quantum key exchange (X25519MLKEM768); ARCHITECTURE.md's decisions weigh it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// This node's side of the cluster's TLS: its certificate and key, and the CA it checks peers
/// against, as a client (dialing) and as a server (accepting).
pub struct ClusterTls {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl ClusterTls {
    /// Reads the CA's certificate, this node's certificate (chain) and its private key from
    /// PEM files; an error names the file and what is wrong with it.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<ClusterTls, String> {
        let (ca_pem, cert_pem, key_pem) = (
            read_file("cluster CA certificate", ca)?,
            read_file("node certificate", cert)?,
            read_file("node key", key)?,
        );
        ClusterTls::from_pem(&ca_pem, &cert_pem, &key_pem).map_err(|e| {
            format!(
                "{e} (files: CA {}, certificate {}, key {})",
                ca.display(),
                cert.display(),
                key.display()
            )
        })
    }

    /// The same from PEM bytes.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<ClusterTls, String> {
        let provider = provider();
        let roots = Arc::new(roots(ca, "the cluster CA file")?);
        let (chain, key) = identity(cert, "the node certificate file", key, "the node key")?;
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("the cluster CA cannot check peers: {e}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the node certificate and key do not go together: {e}"))?;
        // The dialer only writes: tickets would sit unread in its socket.
        server.send_tls13_tickets = 0;
        let servers =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("the cluster CA cannot check peers: {e}"))?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_webpki_verifier(servers)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the node certificate and key do not go together: {e}"))?;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(ClusterTls {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    /// A client connection to the member named `name` ([`member_name`]).
    pub fn client(&self, name: &str) -> Result<rustls::Connection, String> {
        self.client_connection(name).map(Into::into)
    }

    fn client_connection(&self, name: &str) -> Result<rustls::ClientConnection, String> {
        let server = ServerName::try_from(name.to_string())
            .map_err(|e| format!("'{name}' is not a certificate name: {e}"))?;
        let mut c = rustls::ClientConnection::new(self.client.clone(), server)
            .map_err(|e| e.to_string())?;
        c.set_buffer_limit(None);
        Ok(c)
    }

    /// A server connection for a dialer.
    pub fn server(&self) -> Result<rustls::ServerConnection, String> {
        let mut c =
            rustls::ServerConnection::new(self.server.clone()).map_err(|e| e.to_string())?;
        c.set_buffer_limit(None);
        Ok(c)
    }
}

pub use rustls::{ServerConfig, ServerConnection};

/// The CA certificates of `pem` (`what` names it in an error) as trust roots.
fn roots(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))?;
    if cas.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| format!("{what}: a certificate is unusable: {e}"))?;
    }
    Ok(roots)
}

/// A certificate chain and its private key from PEM (`cert_what`, `key_what` name them in an
/// error).
fn identity(
    cert: &[u8],
    cert_what: &str,
    key: &[u8],
    key_what: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_what} is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert_what} holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("{key_what} is not a PEM private key: {e}"))?;
    Ok((chain, key))
}

/// How a client TLS port checks its clients' certificates (`tls-auth-clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate the CA signed is required (`yes`, Redis's default).
    Required,
    /// Checked against the CA when a client presents one (`optional`).
    Optional,
    /// Not asked for (`no`).
    Off,
}

/// The TLS 1.2 suites rustls has, by their OpenSSL names (what Redis's `tls-ciphers` takes)
/// and their IANA names (rustls's).
const TLS12_NAMES: [(&str, &str); 6] = [
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// The IANA name of suite `s` as rustls spells it (`TLS13_AES_128_GCM_SHA256`).
fn suite_name(s: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

/// Whether `name` (OpenSSL's or IANA's spelling, TLS 1.3's with `TLS_` as OpenSSL writes it)
/// is suite `s`.
fn suite_is(s: &rustls::SupportedCipherSuite, name: &str) -> bool {
    let ours = suite_name(s);
    let name = name.trim();
    ours.eq_ignore_ascii_case(name)
        || ours.strip_prefix("TLS13_").is_some_and(|rest| {
            name.strip_prefix("TLS_")
                .is_some_and(|n| n.eq_ignore_ascii_case(rest))
        })
        || TLS12_NAMES
            .iter()
            .any(|(openssl, iana)| openssl.eq_ignore_ascii_case(name) && *iana == ours)
}

/// The suites of `version` a colon-separated list names (empty or `DEFAULT`: all of them);
/// a name rustls lacks is refused with it.
fn pick_suites(
    all: &[rustls::SupportedCipherSuite],
    version: rustls::ProtocolVersion,
    list: &str,
    what: &str,
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let of_version: Vec<_> = all
        .iter()
        .filter(|s| s.version().version == version)
        .copied()
        .collect();
    let list = list.trim();
    if list.is_empty() || list.eq_ignore_ascii_case("DEFAULT") {
        return Ok(of_version);
    }
    let mut out = Vec::new();
    for name in list.split(':').filter(|n| !n.trim().is_empty()) {
        let Some(s) = of_version.iter().find(|s| suite_is(s, name)) else {
            let known: Vec<String> = of_version.iter().map(suite_name).collect();
            return Err(format!(
                "{what}: '{}' is not a suite this server has (it has {}; OpenSSL's cipher expressions are not taken, only names)",
                name.trim(),
                known.join(", ")
            ));
        };
        out.push(*s);
    }
    Ok(out)
}

/// The server configuration of a client TLS port (Redis's `tls-*` parameters): this server's
/// certificate chain and key (PEM), the CA clients' certificates are checked against,
/// `protocols` (`TLSv1.2`, `TLSv1.3`, space-separated; empty: both), TLS 1.3 suites
/// (`ciphersuites`) and TLS 1.2 suites (`ciphers`), colon-separated names (empty: all).
pub fn client_port_config(
    cert: &[u8],
    key: &[u8],
    ca: Option<&[u8]>,
    auth: ClientAuth,
    protocols: &str,
    ciphersuites: &str,
    ciphers: &str,
) -> Result<Arc<ServerConfig>, String> {
    let base = provider();
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    for p in protocols.split_whitespace() {
        match p.to_ascii_lowercase().as_str() {
            "tlsv1.2" => versions.push(&rustls::version::TLS12),
            "tlsv1.3" => versions.push(&rustls::version::TLS13),
            "tlsv1" | "tlsv1.1" => {
                return Err(format!(
                    "tls-protocols: {p} is not offered (TLSv1.2 and TLSv1.3 are: older versions are broken)"
                ));
            }
            _ => return Err(format!("tls-protocols: '{p}' is not a protocol version")),
        }
    }
    if versions.is_empty() {
        versions = vec![&rustls::version::TLS12, &rustls::version::TLS13];
    }
    let mut suites = pick_suites(
        &base.cipher_suites,
        rustls::ProtocolVersion::TLSv1_3,
        ciphersuites,
        "tls-ciphersuites",
    )?;
    suites.extend(pick_suites(
        &base.cipher_suites,
        rustls::ProtocolVersion::TLSv1_2,
        ciphers,
        "tls-ciphers",
    )?);
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..(*base).clone()
    });
    let (chain, key) = identity(cert, "tls-cert-file", key, "tls-key-file")?;
    let verifier = match (auth, ca) {
        (ClientAuth::Off, _) => rustls::server::WebPkiClientVerifier::no_client_auth(),
        (_, None) => {
            return Err(
                "tls-auth-clients yes or optional needs tls-ca-cert-file (the CA clients' certificates are checked against)".into(),
            );
        }
        (auth, Some(ca)) => {
            let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "tls-ca-cert-file")?),
                provider.clone(),
            );
            let b = if auth == ClientAuth::Optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| format!("tls-ca-cert-file cannot check clients: {e}"))?
        }
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            format!("tls-protocols, tls-ciphersuites and tls-ciphers leave nothing to speak: {e}")
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls-cert-file and tls-key-file do not go together: {e}"))?;
    Ok(Arc::new(config))
}

/// A server connection of a client TLS port.
pub fn client_port_connection(
    config: &Arc<ServerConfig>,
) -> Result<rustls::ServerConnection, String> {
    let mut c = rustls::ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
    // Replies are bounded by the connection's own output limit, not rustls's buffer.
    c.set_buffer_limit(None);
    Ok(c)
}

/// Whether `cert` (a peer's end-entity certificate, which the handshake checked against the
/// CA) names `name`.
pub fn names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The peer's end-entity certificate on a connection whose handshake is done.
pub fn peer_cert(c: &rustls::CommonState) -> Option<&CertificateDer<'static>> {
    c.peer_certificates().and_then(|chain| chain.first())
}

/// Completes a server handshake on a blocking socket (the acceptor's handshake thread), by
/// `deadline` (the socket's read timeout bounds each read; a peer that trickles bytes is cut
/// off at the deadline).
pub fn accept_blocking<S: Read + Write>(
    c: &mut rustls::ServerConnection,
    s: &mut S,
    deadline: std::time::Instant,
) -> std::io::Result<()> {
    while c.is_handshaking() {
        let (read, wrote) = c.complete_io(s)?;
        if (read, wrote) == (0, 0) || std::time::Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the TLS handshake did not finish in time",
            ));
        }
    }
    Ok(())
}

/// Reads plaintext on a blocking socket (the acceptor's handshake thread) into `buf`;
/// `Ok(0)` when the peer closed.
pub fn read_blocking<S: Read + Write>(
    c: &mut rustls::ServerConnection,
    s: &mut S,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    rustls::Stream::new(c, s).read(buf)
}

/// Writes plaintext on a blocking socket, whole, and flushes it.
pub fn write_blocking<S: Read + Write>(
    c: &mut rustls::ServerConnection,
    s: &mut S,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut st = rustls::Stream::new(c, s);
    st.write_all(bytes)?;
    st.flush()
}

fn tls_error(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// Writes whatever TLS records `c` holds to `w`, through the buffer `out`.
async fn flush<W: AsyncWriteRent>(
    c: &std::cell::RefCell<rustls::Connection>,
    w: &mut W,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    out.clear();
    {
        let mut c = c.borrow_mut();
        while c.wants_write() {
            c.write_tls(out)?;
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    let (r, b) = w.write_all(std::mem::take(out)).await;
    *out = b;
    r.map(|_| ())
}

/// Completes a handshake over a monoio socket (a dialer's, or an accepted socket's when the
/// acceptor is a monoio task), flushing the last flight.
///
/// What the peer sent after its last handshake message stays in `rd` for [`read`].
pub async fn handshake<S: AsyncReadRent + AsyncWriteRent>(
    c: &std::cell::RefCell<rustls::Connection>,
    s: &mut S,
    rd: &mut Half,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    loop {
        flush(c, s, &mut out).await?;
        if !c.borrow().is_handshaking() {
            return Ok(());
        }
        if rd.at == rd.buf.len() && rd.refill(s).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the TLS handshake",
            ));
        }
        // Only until the handshake ends: the records after it are the application's.
        let processed = {
            let mut c = c.borrow_mut();
            let mut res = Ok(());
            while rd.at < rd.buf.len() && res.is_ok() && c.is_handshaking() {
                let mut from = &rd.buf[rd.at..];
                let left = from.len();
                res = c
                    .read_tls(&mut from)
                    .and_then(|_| c.process_new_packets().map(|_| ()).map_err(tls_error));
                rd.at += left - from.len();
            }
            res
        };
        if let Err(e) = processed {
            // Tell the peer why (the alert rustls queued), then give up.
            let _ = flush(c, s, &mut out).await;
            return Err(e);
        }
    }
}

/// One direction's buffers of a TLS connection driven over monoio: ciphertext read and not
/// yet handed to rustls (reading), or records to write (writing).
#[derive(Default)]
pub struct Half {
    buf: Vec<u8>,
    at: usize,
}

impl Half {
    /// Reads the next ciphertext from `r` in place of what was handed on; `Ok(0)` when the
    /// peer closed.
    async fn refill<R: AsyncReadRent>(&mut self, r: &mut R) -> std::io::Result<usize> {
        self.at = 0;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(READ_CHUNK);
        let (res, b) = r.read(buf.slice_mut(0..READ_CHUNK)).await;
        self.buf = b.into_inner();
        res
    }
}

/// Encrypts `bytes` and writes the records to `w`, whole.
pub async fn send<W: AsyncWriteRent>(
    c: &std::cell::RefCell<rustls::Connection>,
    half: &mut Half,
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    c.borrow_mut().writer().write_all(bytes)?;
    flush(c, w, &mut half.buf).await
}

/// Reads and decrypts what the peer sent next, appended to `out` (at least `want` bytes of
/// room made); `Ok(0)` when the peer closed (with or without a `close_notify`).
pub async fn read<R: AsyncReadRent>(
    c: &std::cell::RefCell<rustls::Connection>,
    half: &mut Half,
    r: &mut R,
    out: &mut Vec<u8>,
    want: usize,
) -> std::io::Result<usize> {
    loop {
        {
            let mut c = c.borrow_mut();
            let before = out.len();
            loop {
                let mut rd = c.reader();
                match rd.fill_buf() {
                    Ok([]) => {
                        if out.len() == before {
                            return Ok(0);
                        }
                        break;
                    }
                    Ok(got) => {
                        let n = got.len();
                        if out.len() == before {
                            out.reserve(want.max(n));
                        }
                        out.extend_from_slice(got);
                        rd.consume(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if out.len() > before {
                return Ok(out.len() - before);
            }
            // Hand rustls the ciphertext already read, a record's worth at a time.
            if half.at < half.buf.len() {
                let mut rd = &half.buf[half.at..];
                let left = rd.len();
                c.read_tls(&mut rd)?;
                half.at += left - rd.len();
                c.process_new_packets().map_err(tls_error)?;
                continue;
            }
        }
        if half.refill(r).await? == 0 {
            return Ok(0);
        }
    }
}

/// A TLS connection over a monoio socket seen as a stream of plaintext: the server side of
/// a connection to the client port (a joining node's, under the cluster's CA). Reads and
/// writes drive the one rustls connection through [`read`] and [`send`]; what the peer sent
/// past what was read stays in the read half ([`TlsStream::buffered`]).
pub struct TlsStream<S> {
    io: S,
    conn: std::cell::RefCell<rustls::Connection>,
    rd: Half,
    wr: Half,
}

impl<S: AsyncReadRent + AsyncWriteRent> TlsStream<S> {
    /// Completes the server side of a handshake on `io`, `read` being what was read from it
    /// already (the first bytes, looked at to tell TLS from RESP).
    pub async fn accept(
        io: S,
        conn: rustls::ServerConnection,
        read: Vec<u8>,
    ) -> std::io::Result<TlsStream<S>> {
        TlsStream::handshaken(io, conn.into(), Half { buf: read, at: 0 }).await
    }

    /// Completes the client side of a handshake on `io` (`conn` from [`ClusterTls::client`]).
    pub async fn connect(io: S, conn: rustls::Connection) -> std::io::Result<TlsStream<S>> {
        TlsStream::handshaken(io, conn, Half::default()).await
    }

    /// Completes `conn`'s handshake on `io`, `rd` holding what was read of it already.
    async fn handshaken(
        mut io: S,
        conn: rustls::Connection,
        mut rd: Half,
    ) -> std::io::Result<TlsStream<S>> {
        let conn = std::cell::RefCell::new(conn);
        handshake(&conn, &mut io, &mut rd).await?;
        Ok(TlsStream {
            io,
            conn,
            rd,
            wr: Half::default(),
        })
    }

    /// Appends what the peer sent next, decrypted, to `out` (at least `want` bytes of room
    /// made); `Ok(0)` when it closed.
    pub async fn read_plain(&mut self, out: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
        read(&self.conn, &mut self.rd, &mut self.io, out, want).await
    }

    /// Encrypts `bytes` and writes them whole.
    pub async fn write_plain(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        send(&self.conn, &mut self.wr, &mut self.io, bytes).await
    }

    /// Whether ciphertext already read waits to be decrypted (a read will not wait for the
    /// socket).
    pub fn buffered(&self) -> bool {
        self.rd.at < self.rd.buf.len()
    }

    /// The peer's end-entity certificate, which the handshake checked against the CA.
    pub fn peer_cert(&self) -> Option<CertificateDer<'static>> {
        peer_cert(&self.conn.borrow()).cloned()
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

/// Why [`exchange_blocking`] failed, and whether trying again may help.
#[derive(Debug)]
pub enum ExchangeError {
    /// The TLS handshake or a record was refused (a certificate of another CA or under
    /// another name, a peer that does not speak TLS): trying again will not help.
    Refused(String),
    /// The socket failed, or the answer could not be read: perhaps transient.
    Failed(String),
}

/// Sends `request` to the member named `name` over a blocking socket under this node's
/// certificate and reads its answer with `read_reply` (the plaintext side of the
/// connection); a joining node's CLUSTER JOIN, before its runtime starts.
pub fn exchange_blocking<R>(
    tls: &ClusterTls,
    name: &str,
    sock: &mut std::net::TcpStream,
    request: &[u8],
    read_reply: impl FnOnce(&mut dyn Read) -> Result<R, String>,
) -> Result<R, ExchangeError> {
    let mut conn = tls
        .client_connection(name)
        .map_err(ExchangeError::Refused)?;
    let mut stream = rustls::Stream::new(&mut conn, sock);
    let sent = stream.write_all(request).and_then(|_| stream.flush());
    let refused = |e: &std::io::Error| e.kind() == std::io::ErrorKind::InvalidData;
    match sent {
        Err(e) if refused(&e) => Err(ExchangeError::Refused(format!("TLS with {name}: {e}"))),
        Err(e) => Err(ExchangeError::Failed(format!("TLS with {name}: {e}"))),
        Ok(()) => {
            // (Under TLS 1.3 a server's refusal of this node's certificate comes after the
            // handshake, as an alert in place of the answer.)
            let mut watched = Watched {
                inner: stream,
                refused: false,
            };
            read_reply(&mut watched).map_err(|e| {
                if watched.refused {
                    ExchangeError::Refused(format!("TLS with {name}: {e}"))
                } else {
                    ExchangeError::Failed(e)
                }
            })
        }
    }
}

/// A reader that notes whether TLS refused what it read (an alert, a record that is not TLS).
struct Watched<R> {
    inner: R,
    refused: bool,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r {
            self.refused |= e.kind() == std::io::ErrorKind::InvalidData;
        }
        r
    }
}

/// A development CA and node certificates (`shardline ctl certs`): ECDSA P-256 keys, the
/// CA's subject fixed, so the CA's key alone (`ca.key`) signs more node certificates later.
pub mod dev {
    use super::member_name;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use std::net::SocketAddr;

    /// The CA's subject (common name).
    pub const CA_NAME: &str = "Shardline cluster CA";

    fn ca_params() -> CertificateParams {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_NAME);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    }

    fn bad(e: rcgen::Error) -> String {
        format!("cannot make a certificate: {e}")
    }

    /// A new CA: its certificate and its private key, PEM.
    pub fn ca() -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(bad)?;
        let cert = ca_params().self_signed(&key).map_err(bad)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A certificate for the member at client address `addr`, signed by the CA whose key is
    /// `ca_key` (PEM): it names [`member_name`]`(addr)` and the address's IP, for both ends of
    /// a connection. The certificate and its private key, PEM.
    pub fn node(ca_key: &str, addr: SocketAddr) -> Result<(String, String), String> {
        let ca_key =
            KeyPair::from_pem(ca_key).map_err(|e| format!("the CA key is not usable: {e}"))?;
        let issuer = Issuer::new(ca_params(), ca_key);
        let name = member_name(addr);
        let mut p =
            CertificateParams::new(vec![name.clone(), addr.ip().to_string()]).map_err(bad)?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(bad)?;
        let cert = p.signed_by(&key, &issuer).map_err(bad)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests;
