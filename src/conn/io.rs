//! The byte stream a client connection is served over: a TCP socket, or TLS over one
//! (`tls::TlsStream`: a joining node's connection under the cluster's CA). The connection loop
//! is generic over it, so the plain path compiles to what it was.

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use shardline_transport::tls::{CertificateDer, TlsStream};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

pub(crate) trait ClientIo {
    /// Reads into `buf`'s spare capacity, appending (`Ok(0)`: the peer closed).
    async fn io_read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes `buf` whole.
    async fn io_write(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Resolves once a read would not wait (or the peer closed).
    async fn io_readable(&self) -> io::Result<()>;
    /// The socket's descriptor (CLIENT LIST's `fd`, a hang-up check).
    fn io_fd(&self) -> RawFd;
    /// The peer's certificate, which the TLS handshake checked (`None` in clear).
    fn io_peer_cert(&self) -> Option<CertificateDer<'static>>;
}

impl ClientIo for TcpStream {
    async fn io_read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        use monoio::io::AsyncReadRent;
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = self
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
            .await;
        (res, slice.into_inner())
    }

    async fn io_write(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.write_all(buf).await
    }

    async fn io_readable(&self) -> io::Result<()> {
        self.readable(false).await
    }

    fn io_fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    fn io_peer_cert(&self) -> Option<CertificateDer<'static>> {
        None
    }
}

/// A connection this node opened to another's client port (`cluster-routing proxy`): under
/// the cluster's TLS when the links are.
pub(crate) enum Dialed {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientIo for Dialed {
    async fn io_read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Dialed::Plain(s) => s.io_read(buf).await,
            Dialed::Tls(s) => s.io_read(buf).await,
        }
    }

    async fn io_write(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Dialed::Plain(s) => s.io_write(buf).await,
            Dialed::Tls(s) => s.io_write(buf).await,
        }
    }

    async fn io_readable(&self) -> io::Result<()> {
        match self {
            Dialed::Plain(s) => s.io_readable().await,
            Dialed::Tls(s) => s.io_readable().await,
        }
    }

    fn io_fd(&self) -> RawFd {
        match self {
            Dialed::Plain(s) => s.io_fd(),
            Dialed::Tls(s) => s.io_fd(),
        }
    }

    fn io_peer_cert(&self) -> Option<CertificateDer<'static>> {
        match self {
            Dialed::Plain(s) => s.io_peer_cert(),
            Dialed::Tls(s) => s.io_peer_cert(),
        }
    }
}

impl ClientIo for TlsStream<TcpStream> {
    async fn io_read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let want = (buf.capacity() - buf.len()).max(1);
        let res = self.read_plain(&mut buf, want).await;
        (res, buf)
    }

    async fn io_write(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let res = self.write_plain(&buf).await.map(|()| buf.len());
        (res, buf)
    }

    async fn io_readable(&self) -> io::Result<()> {
        if self.buffered() {
            return Ok(());
        }
        self.get_ref().readable(false).await
    }

    fn io_fd(&self) -> RawFd {
        self.get_ref().as_raw_fd()
    }

    fn io_peer_cert(&self) -> Option<CertificateDer<'static>> {
        self.peer_cert()
    }
}
