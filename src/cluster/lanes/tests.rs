//! The lane tasks over real TCP on loopback, with two hubs in two threads (each its shard
//! runtime), as two nodes' shard threads run them: a copy installs byte for byte, on TCP,
//! with the source's bytes over RDMA (the fake fabric: its queue pair failing mid-copy, a
//! message damaged) and over QUIC on real UDP sockets (a certificate not the one announced
//! falls back to TCP); and, ignored (a benchmark, `scripts/bench-bulk.sh`), how fast a large
//! copy goes.

use super::*;
use crate::config::Config;
use shardline_shards::migrate::hub::{Install, no_store};
use shardline_shards::migrate::session::Limits;
use shardline_shards::raft::{LogId, SnapshotWanted};
use shardline_transport::frame::{Hello, WIRE_MAX, WIRE_MIN};
use shardline_transport::link::Answer;
use shardline_transport::rdma::fake::Fabric;
use shardline_transport::tls::{CertificateDer, ClusterTls, dev, member_name};
use std::sync::mpsc;

const SOURCE: NodeId = NodeId(1);
const TARGET: NodeId = NodeId(2);
const GROUP: u32 = 3;

struct Host {
    hub: RefCell<Hub>,
    io: RefCell<LaneIo>,
    installs: RefCell<Vec<Install>>,
    /// Why the lane's connection ended, if it did.
    ended: RefCell<Option<String>>,
    /// Why each lane connection ended, in order.
    endings: RefCell<Vec<String>>,
    fabric: Option<Fabric>,
    quic: RefCell<Option<Arc<Identity>>>,
    /// Lanes may end (they are dialed again).
    redial: bool,
    t0: Instant,
}

impl Host {
    fn new(limits: Limits, o: &Opts) -> Rc<Host> {
        let mut io = LaneIo::new(Instant::now());
        if o.share > 0 {
            io.share.set_pct(o.share);
        }
        Rc::new(Host {
            hub: RefCell::new(Hub::new(limits)),
            io: RefCell::new(io),
            installs: RefCell::default(),
            ended: RefCell::default(),
            endings: RefCell::default(),
            fabric: o.fabric.clone(),
            quic: RefCell::new(o.quic.then(|| Arc::new(Identity::generate().unwrap()))),
            redial: o.redial,
            t0: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Runs a lane connection, keeping why it ended.
    fn spawn_lane(
        self: &Rc<Host>,
        peer: NodeId,
        dir: Dir,
        rd: tcp::DuplexReader,
        wr: tcp::DuplexWriter,
        rest: Vec<u8>,
    ) {
        let host = self.clone();
        monoio::spawn(async move {
            let why = run(host.clone(), peer, dir, rd, wr, rest).await;
            host.endings.borrow_mut().push(why.clone());
            *host.ended.borrow_mut() = Some(why);
        });
    }

    /// Panics if the lane ended (unless lanes are dialed again), or nothing finished within a
    /// minute.
    fn check(&self) {
        if let Some(why) = self.ended.borrow().as_ref().filter(|_| !self.redial) {
            panic!("the lane ended: {why}; {:?}", self.hub.borrow().stats());
        }
        assert!(
            self.t0.elapsed() < Duration::from_secs(60),
            "not done in 60 s: {:?} {:?}",
            self.hub.borrow().stats(),
            self.hub.borrow().sessions()
        );
    }
}

impl LaneHost for Host {
    fn with_lanes<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo) -> R) -> R {
        f(&mut self.hub.borrow_mut(), &mut self.io.borrow_mut())
    }

    fn lane_bytes(
        &self,
        peer: NodeId,
        dir: Dir,
        bytes: &[u8],
        _: Instant,
    ) -> Result<usize, String> {
        let mut hub = self.hub.borrow_mut();
        let took = hub.on_bytes(peer, dir, bytes, self.now_ms(), &mut no_store);
        self.installs.borrow_mut().extend(hub.take_installs());
        wake(&mut hub, &mut self.io.borrow_mut());
        took.map_err(|e| e.0)
    }

    fn rdma(&self) -> Option<Arc<dyn shardline_transport::rdma::Provider + Send + Sync>> {
        self.fabric.clone().map(|f| Arc::new(f) as _)
    }

    fn quic(&self) -> Option<Arc<Identity>> {
        self.quic.borrow().clone()
    }
}

fn hello() -> Hello {
    Hello {
        wire_min: WIRE_MIN,
        wire_max: WIRE_MAX,
        cluster_id: [9; 16],
        node_id: [0; 20],
        shard: 0,
    }
}

struct Accept(std::sync::Mutex<mpsc::Sender<tcp::Accepted>>);

impl tcp::Acceptor for Accept {
    fn judge(&self, _: &Hello, _: Option<&CertificateDer<'_>>) -> Answer {
        Answer::Accepted(hello())
    }
    fn adopt(&self, _: Hello, accepted: tcp::Accepted) {
        let _ = self.0.lock().unwrap().send(accepted);
    }
    fn dropped(&self, _: Option<std::net::SocketAddr>, _: String) {}
}

#[derive(Clone, Default)]
struct Opts {
    /// Both ends offer RDMA on this fabric.
    fabric: Option<Fabric>,
    /// Both ends offer QUIC.
    quic: bool,
    /// The source announces a certificate other than the one it presents.
    quic_lies: bool,
    /// Both ends' `bulk-thread-share` (100 when 0).
    share: u64,
    /// Lanes that end are dialed again (a fault is injected).
    redial: bool,
    /// The lane is mutual TLS (the cluster's links are).
    tls: bool,
}

/// What a copy did.
struct Copied {
    blob: Vec<u8>,
    installed: Vec<u8>,
    took: Duration,
    /// Why the source's lane connections ended, in order; its lanes on RDMA, on QUIC; the
    /// time its lanes waited for their share of the thread (µs).
    source_endings: Vec<String>,
    source_rdma_lanes: u64,
    source_quic_lanes: u64,
    source_share_waited_us: u64,
    target: shardline_shards::migrate::hub::Stats,
    /// Why the target's lane connections ended, in order.
    target_endings: Vec<String>,
}

/// Copies `total` bytes from a source thread to a target thread over a lane on loopback
/// (threads pinned to `cores` when given).
fn copy_with(total: usize, cores: Option<(usize, usize)>, o: Opts) -> Copied {
    let blob: Vec<u8> = (0..total)
        .map(|i| (i as u64).wrapping_mul(0x9E37_79B9) as u8 ^ (i >> 13) as u8)
        .collect();
    let blob = bytes::Bytes::from(blob);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let (source_tls, target_tls) = if o.tls {
        let ca = dev::ca().unwrap();
        let tls = |port: u16| {
            let (c, k) = dev::node(&ca.1, ([127, 0, 0, 1], port).into()).unwrap();
            ClusterTls::from_pem(ca.0.as_bytes(), c.as_bytes(), k.as_bytes()).unwrap()
        };
        (Some(tls(1)), Some(Arc::new(tls(2))))
    } else {
        (None, None)
    };
    let target_name = member_name(([127, 0, 0, 1], 2).into());
    tcp::serve(
        listener,
        Arc::new(Accept(std::sync::Mutex::new(tx))),
        target_tls,
    )
    .unwrap();
    let last = LogId { term: 2, index: 77 };
    let wanted = SnapshotWanted {
        from: SOURCE,
        term: 3,
        last,
        total: total as u64,
    };
    let (done_tx, done_rx) = mpsc::channel::<Instant>();
    let (to, so) = (o.clone(), o);
    let target = std::thread::spawn(move || {
        if let Some((_, c)) = cores {
            shardline_transport::cpu::pin_current_thread(c).unwrap();
        }
        let (mut rt, _) = crate::thread::build_runtime().unwrap();
        rt.block_on(async move {
            let host = Host::new(limits(), &to);
            host.hub.borrow_mut().want(GROUP, Some(wanted), 0);
            loop {
                // Every connection the source dials (again, after a fault).
                while let Ok(accepted) = rx.try_recv() {
                    let (rd, wr, rest) = tcp::adopt_duplex(accepted).unwrap();
                    host.spawn_lane(SOURCE, Dir::Target, rd, wr, rest);
                }
                let installed = host.installs.borrow_mut().pop();
                if let Some(i) = installed {
                    let _ = done_tx.send(Instant::now());
                    // Time for the `Installed` answer to go out.
                    monoio::time::sleep(Duration::from_millis(50)).await;
                    return (
                        i.blob.expect("in memory").to_vec(),
                        host.hub.borrow().stats(),
                        host.endings.borrow().clone(),
                    );
                }
                host.check();
                monoio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    });
    let source_blob = blob.clone();
    let source = std::thread::spawn(move || {
        if let Some((c, _)) = cores {
            shardline_transport::cpu::pin_current_thread(c).unwrap();
        }
        let (mut rt, _) = crate::thread::build_runtime().unwrap();
        rt.block_on(async move {
            let host = Host::new(limits(), &so);
            if so.quic_lies {
                let mut id = Identity::generate().unwrap();
                id.fingerprint = Identity::generate().unwrap().fingerprint;
                *host.quic.borrow_mut() = Some(Arc::new(id));
            }
            let t0 = Instant::now();
            host.hub
                .borrow_mut()
                .offer(TARGET, GROUP, 3, last, &source_blob, 0);
            let mut dial = true;
            // Done once the target said it installed the copy.
            while host.hub.borrow().sessions().0 > 0 {
                if std::mem::take(&mut dial) {
                    let tls = source_tls.as_ref().map(|t| (t, target_name.as_str()));
                    let (w, answer) = tcp::dial(addr, &hello(), tls).await.unwrap();
                    assert!(matches!(answer, Answer::Accepted(_)));
                    let (rd, wr, rest) = w.into_duplex();
                    host.spawn_lane(TARGET, Dir::Source, rd, wr, rest);
                }
                host.check();
                if host.ended.borrow_mut().take().is_some() {
                    dial = true;
                }
                // (The offer is made again, as the leader's heartbeats do.)
                let now = host.now_ms();
                host.hub
                    .borrow_mut()
                    .offer(TARGET, GROUP, 3, last, &source_blob, now);
                monoio::time::sleep(Duration::from_micros(200)).await;
            }
            let endings = host.endings.borrow().clone();
            let io = host.io.borrow();
            (
                t0,
                endings,
                [io.rdma_lanes, io.quic_lanes, io.share_waited_us],
            )
        })
    });
    let (t0, source_endings, [source_rdma_lanes, source_quic_lanes, source_share_waited_us]) =
        source.join().unwrap();
    let (installed, target, target_endings) = target.join().unwrap();
    let took = done_rx.recv().unwrap().duration_since(t0);
    Copied {
        blob: blob.to_vec(),
        installed,
        took,
        source_endings,
        source_rdma_lanes,
        source_quic_lanes,
        source_share_waited_us,
        target,
        target_endings,
    }
}

#[test]
fn a_copy_over_a_tcp_lane_installs_byte_for_byte() {
    let c = copy_with(5 << 20 | 12345, None, Opts::default());
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!((c.source_rdma_lanes, c.source_quic_lanes), (0, 0));
    assert_eq!(c.source_share_waited_us, 0, "no share set, no wait");
}

/// Over mutual TLS: the copy arrives whole on the encrypted lane, and QUIC (its certificate's
/// fingerprint announced on the TLS lane) still carries the source's bytes when offered.
#[test]
fn a_copy_over_a_tls_lane_installs_byte_for_byte_and_quic_still_carries() {
    let c = copy_with(
        5 << 20 | 12345,
        None,
        Opts {
            tls: true,
            ..Opts::default()
        },
    );
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!((c.source_rdma_lanes, c.source_quic_lanes), (0, 0));
    let c = copy_with(
        3 << 20 | 7,
        None,
        Opts {
            tls: true,
            quic: true,
            ..Opts::default()
        },
    );
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!(c.source_quic_lanes, 1);
}

#[test]
fn a_copy_whose_source_bytes_go_over_rdma_installs_byte_for_byte() {
    let fabric = Fabric::new();
    let o = Opts {
        fabric: Some(fabric.clone()),
        ..Opts::default()
    };
    let c = copy_with(9 << 20 | 777, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!(c.source_rdma_lanes, 1);
    // Every byte of the copy went over the fabric (1 MiB messages), none on the socket.
    assert!(fabric.delivered() >= 9, "{} messages", fabric.delivered());
}

#[test]
fn a_queue_pair_failing_mid_copy_ends_the_lane_and_the_copy_resumes_on_tcp() {
    let fabric = Fabric::new();
    fabric.fail_in(4);
    let o = Opts {
        fabric: Some(fabric.clone()),
        redial: true,
        ..Opts::default()
    };
    let c = copy_with(12 << 20, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert!(
        c.source_endings
            .first()
            .is_some_and(|w| w.starts_with("RDMA")),
        "{:?}",
        c.source_endings
    );
    // The next connection was on TCP (RDMA kept off for that peer), and the copy resumed
    // from what the target held: not restarted.
    assert_eq!(c.source_rdma_lanes, 1);
    assert_eq!(c.target.restarts, 0);
    assert!(
        c.target.bytes_in < 2 * c.blob.len() as u64,
        "{:?}",
        c.target
    );
}

#[test]
fn a_message_damaged_on_the_fabric_is_caught_and_sent_again() {
    let fabric = Fabric::new();
    fabric.damage_in(3);
    let o = Opts {
        fabric: Some(fabric.clone()),
        ..Opts::default()
    };
    let c = copy_with(8 << 20, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert!(c.target.bad_chunks >= 1, "{:?}", c.target);
}

#[test]
fn a_copy_whose_source_bytes_go_over_quic_installs_byte_for_byte() {
    let o = Opts {
        quic: true,
        ..Opts::default()
    };
    let c = copy_with(9 << 20 | 777, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!(c.source_quic_lanes, 1);
    assert_eq!(c.source_rdma_lanes, 0);
    assert_eq!(c.target.restarts, 0);
}

#[test]
fn rdma_is_preferred_to_quic_where_both_ends_have_both() {
    let fabric = Fabric::new();
    let o = Opts {
        fabric: Some(fabric.clone()),
        quic: true,
        ..Opts::default()
    };
    let c = copy_with(3 << 20, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!((c.source_rdma_lanes, c.source_quic_lanes), (1, 0));
}

#[test]
fn a_source_whose_quic_certificate_is_not_the_announced_one_is_refused_and_tcp_carries_the_copy() {
    let o = Opts {
        quic: true,
        quic_lies: true,
        redial: true,
        ..Opts::default()
    };
    let c = copy_with(6 << 20, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    // The first lane ended on QUIC's refusal (seen by the target, or by both ends).
    assert!(
        c.target_endings
            .first()
            .is_some_and(|w| w.starts_with("QUIC") && w.contains("certificate")),
        "{:?} / {:?}",
        c.target_endings,
        c.source_endings
    );
    // The refused connection carried nothing; the next one went on TCP (QUIC kept off for
    // that peer), and the copy came whole from it.
    assert_eq!(c.source_quic_lanes, 1);
    assert_eq!(c.target.restarts, 0);
}

#[test]
fn a_copy_limited_to_a_share_of_its_threads_waits_between_chunks_and_installs_whole() {
    let o = Opts {
        share: 10,
        ..Opts::default()
    };
    let c = copy_with(12 << 20, None, o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert!(c.source_share_waited_us > 0, "the source never waited");
}

/// The lane's throughput on loopback (`scripts/bench-bulk.sh` runs it next to iperf3):
/// `BULK_BENCH_BYTES` (default 2 GiB) copied from the process's first CPU to its second,
/// the source's bytes on `BULK_BENCH_CARRIER` (`tcp`, the default, `tls`: the lane itself
/// under mutual TLS, or `quic`).
#[test]
#[ignore]
fn bulk_lane_throughput() {
    let total: usize = std::env::var("BULK_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30);
    let carrier = std::env::var("BULK_BENCH_CARRIER").unwrap_or_else(|_| "tcp".into());
    let o = Opts {
        quic: carrier == "quic",
        tls: carrier == "tls",
        ..Opts::default()
    };
    // The first two CPUs the process may use (the same one twice on a machine of one).
    let cpus = shardline_transport::cpu::process_cpus().unwrap();
    let c = copy_with(total, Some((cpus[0], cpus[1 % cpus.len()])), o);
    assert!(c.installed == c.blob, "the installed copy differs");
    assert_eq!(c.source_quic_lanes, (carrier == "quic") as u64);
    println!(
        "BULK_LANE carrier={carrier} bytes={total} seconds={:.4} mb_per_s={:.1}",
        c.took.as_secs_f64(),
        total as f64 / c.took.as_secs_f64() / 1e6
    );
}

/// The node's defaults (`bulk-chunk-bytes`, `bulk-window-bytes`), or `BULK_BENCH_CHUNK` and
/// `BULK_BENCH_WINDOW`.
fn limits() -> Limits {
    let chunk = std::env::var("BULK_BENCH_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(Config::default().bulk_chunk_bytes);
    let window = std::env::var("BULK_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(Config::default().bulk_window_bytes);
    Limits {
        chunk_bytes: chunk,
        window_bytes: window,
        ..Limits::default()
    }
}
