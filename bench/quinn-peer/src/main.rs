//! quinn on tokio, as a lane's QUIC would run on a control thread (issue 19, step 5): the
//! peer of `bulk_lane_throughput` with `BULK_BENCH_CARRIER=quic` (quinn-proto on the shard
//! thread), in the same run of `scripts/bench-bulk.sh`.
//!
//! Per side, two threads pinned to the side's core: a "shard thread" and a "control thread"
//! running quinn on a current-thread tokio runtime. The source's shard thread copies each
//! 4 MiB chunk out of the data (as a copy reads a snapshot file into a chunk's frame) and
//! hands it over a channel; its control thread writes it on one unidirectional stream. The
//! target's control thread reads the stream and hands what it read over a channel to its
//! shard thread, which appends it to the copy (as the hub does). The lanes' own configuration
//! and sockets (`shardline_transport::quic::Identity`'s client and server configurations:
//! windows of 16 MiB, path MTU discovery up to 65,000 bytes, TLS 1.3 with ring, each end
//! pinning the other's certificate; `net::lane_udp`'s socket options).
//!
//! Usage: quinn-peer BYTES SOURCE_CPU TARGET_CPU; prints `QUINN_TOKIO bytes=.. seconds=..
//! mb_per_s=..`.

use bytes::Bytes;
use shardline_transport::quic::{Identity, UDP_PAYLOAD_MAX};
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::Instant;

const CHUNK: usize = 4 << 20;

fn pin(cpu: usize) {
    shardline_transport::cpu::pin_current_thread(cpu).expect("pin");
}

/// An endpoint on loopback with a lane's UDP socket and datagram size.
fn endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    let sock = shardline_transport::net::lane_udp("127.0.0.1".parse().unwrap()).unwrap();
    let mut ec = quinn::EndpointConfig::default();
    ec.max_udp_payload_size(UDP_PAYLOAD_MAX).unwrap();
    quinn::Endpoint::new(ec, server, sock, Arc::new(quinn::TokioRuntime)).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1 << 30);
    let source_cpu: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let target_cpu: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1);
    let (source_id, target_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let server = target_id.server_config(source_id.fingerprint).unwrap();
    let client = source_id.client_config(target_id.fingerprint).unwrap();

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
