//! quinn on tokio, as a lane's QUIC would run on a control thread (issue 19, step 5): the
//! peer of `bulk_lane_throughput` with `BULK_BENCH_CARRIER=quic` (quinn-proto on the shard
//! thread), in the same run of `scripts/bench-bulk.sh`.
//!
//! Per side, two threads pinned to the side's core: a "shard thread" and a "control thread"
//! running quinn on a current-thread tokio runtime. The source's shard thread copies each
//! 4 MiB chunk out of the data (as a copy reads a snapshot file into a chunk's frame) and
//! hands it over a channel; its control thread writes it on one unidirectional stream. The
//! target's control thread reads the stream and hands what it read over a channel to its
//! shard thread, which appends it to the copy (as the hub does). The same transport settings
//! as the lanes' (`transport/src/quic.rs`): windows of 16 MiB, path MTU discovery up to
//! 65,000 bytes, TLS 1.3 with ring.
//!
//! Usage: quinn-peer BYTES SOURCE_CPU TARGET_CPU; prints `QUINN_TOKIO bytes=.. seconds=..
//! mb_per_s=..`.

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const CHUNK: usize = 4 << 20;
const WINDOW: u32 = 16 << 20;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn transport() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(WINDOW))
        .receive_window(VarInt::from_u32(WINDOW))
        .send_window(WINDOW as u64)
        .max_idle_timeout(IdleTimeout::try_from(Duration::from_secs(10)).ok());
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(65_000);
    t.mtu_discovery_config(Some(mtu));
    t
}

#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the one certificate the benchmark made (as the lanes pin their peer's).
#[derive(Debug)]
struct Pinned(CertificateDer<'static>, Arc<CryptoProvider>);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// An endpoint on loopback with the lanes' UDP settings: datagrams up to 65,000 bytes,
/// 8 MiB socket buffers (forced past rmem_max where the process may), never fragmented.
fn endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    use std::os::fd::AsRawFd;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fd = sock.as_raw_fd();
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20),
        (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20),
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        ),
    ] {
        let v: libc::c_int = value;
        // SAFETY: `fd` is the open socket; the value is a c_int on the stack, its size given.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let mut ec = quinn::EndpointConfig::default();
    ec.max_udp_payload_size(65_000).unwrap();
    quinn::Endpoint::new(ec, server, sock, Arc::new(quinn::TokioRuntime)).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1 << 30);
    let source_cpu: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let target_cpu: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1);
    let ck = rcgen::generate_simple_self_signed(vec!["shardline-lane".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let p = provider();

    let mut server_tls = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server_tls.alpn_protocols = vec![b"shardline-lane/1".to_vec()];
    let mut server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls).unwrap()));
    server.transport_config(Arc::new(transport()));
    let mut client_tls = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(cert, p)))
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"shardline-lane/1".to_vec()];
    let mut client =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls).unwrap()));
    client.transport_config(Arc::new(transport()));

    let data: Arc<Vec<u8>> = Arc::new(
        (0..total)
            .map(|i| (i as u64).wrapping_mul(0x9E37_79B9) as u8 ^ (i >> 13) as u8)
            .collect(),
    );
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (start_tx, start_rx) = mpsc::channel::<Instant>();

    // The target: its control thread (quinn) and its shard thread (the copy).
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let target_shard = std::thread::spawn(move || {
        pin(target_cpu);
        let mut copy: Vec<u8> = Vec::with_capacity(total);
        while let Some(b) = in_rx.blocking_recv() {
            copy.extend_from_slice(&b);
        }
        (copy, Instant::now())
    });
    let target_control = std::thread::spawn(move || {
        pin(target_cpu);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let ep = endpoint(Some(server));
            addr_tx.send(ep.local_addr().unwrap()).unwrap();
            let conn = ep.accept().await.unwrap().await.unwrap();
            let mut s = conn.accept_uni().await.unwrap();
            while let Some(c) = s.read_chunk(1 << 20, true).await.unwrap() {
                in_tx.send(c.bytes).await.unwrap();
            }
            drop(in_tx);
            conn.close(0u32.into(), b"done");
            ep.wait_idle().await;
        });
    });

    // The source: its shard thread (chunks read out of the data) and its control thread.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let src = data.clone();
    let source_shard = std::thread::spawn(move || {
        pin(source_cpu);
        start_tx.send(Instant::now()).unwrap();
        for c in src.chunks(CHUNK) {
            out_tx.blocking_send(Bytes::copy_from_slice(c)).unwrap();
        }
    });
    let to = addr_rx.recv().unwrap();
    let source_control = std::thread::spawn(move || {
        pin(source_cpu);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut ep = endpoint(None);
            ep.set_default_client_config(client);
            let conn = ep.connect(to, "shardline-lane").unwrap().await.unwrap();
            let mut s = conn.open_uni().await.unwrap();
            while let Some(c) = out_rx.recv().await {
                s.write_chunk(c).await.unwrap();
            }
            s.finish().unwrap();
            let _ = conn.closed().await;
        });
    });
    let t0 = start_rx.recv().unwrap();
    source_shard.join().unwrap();
    let (copy, done) = target_shard.join().unwrap();
    target_control.join().unwrap();
    source_control.join().unwrap();
    assert!(copy == *data, "the copy differs");
    let secs = done.duration_since(t0).as_secs_f64();
    println!(
        "QUINN_TOKIO bytes={total} seconds={secs:.4} mb_per_s={:.1}",
        total as f64 / secs / 1e6
    );
}
