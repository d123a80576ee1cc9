//! The server side of a TLS handshake on the client port (`tls::TlsStream::accept`, issue 20's
//! node traffic and issue 21's `tls-port`), as anyone who connects may drive it: the fuzzer's
//! bytes are what the peer sends (its first byte says how much of it was read already, as the
//! client port's first-byte test reads it), then the peer closes. The accept and the reads
//! after it end (an error or the end of the stream) without a panic or a hang, whatever came.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardline_transport::tls::{self, ClientAuth, TlsStream};
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The configurations a peer meets: the client port's (a client certificate optional) and
/// the cluster's (mutual TLS 1.3).
fn configs() -> &'static (Arc<tls::ServerConfig>, tls::ClusterTls) {
    static C: OnceLock<(Arc<tls::ServerConfig>, tls::ClusterTls)> = OnceLock::new();
    C.get_or_init(|| {
        let ca = tls::dev::ca().unwrap();
        let addr = "127.0.0.1:7001".parse().unwrap();
        let (cert, key) = tls::dev::node(&ca.1, addr).unwrap();
        let port = tls::client_port_config(
            cert.as_bytes(),
            key.as_bytes(),
            Some(ca.0.as_bytes()),
            ClientAuth::Optional,
            "",
            "",
            "",
        )
        .unwrap();
        let cluster =
            tls::ClusterTls::from_pem(ca.0.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap();
        (port, cluster)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, sent)) = data.split_first() else {
        return;
    };
    let (port, cluster) = configs();
    let conn = if head & 0x80 == 0 {
        tls::client_port_connection(port).unwrap()
    } else {
        cluster.server().unwrap()
    };
    let already = (head as usize & 0x7f).min(sent.len());
    let (mine, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    theirs.write_all(&sent[already..]).unwrap();
    theirs.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let read = sent[..already].to_vec();
    rt.block_on(async move {
        mine.set_nonblocking(true).unwrap();
        let s = monoio::net::UnixStream::from_std(mine).unwrap();
        let done = monoio::time::timeout(Duration::from_secs(5), async move {
            if let Ok(mut t) = TlsStream::accept(s, conn, read).await {
                let mut out = Vec::new();
                while let Ok(n) = t.read_plain(&mut out, 4096).await {
                    if n == 0 {
                        break;
                    }
                    out.clear();
                }
            }
        })
        .await;
        assert!(done.is_ok(), "the accept or a read hung on a closed stream");
    });
    drop(theirs);
});
