//! The bulk lanes (issue 19, step 2): the TCP connections that carry snapshot copies beside
//! the cluster bus, so megabytes of a base copy never queue in front of heartbeats and
//! appends. What they carry and when is the shard thread's bulk hub
//! (`shardline_shards::migrate::hub`, in `Replicas::hub`); these tasks only move its bytes.
//!
//! Shard thread `i` dials a lane to thread `i` of a peer when the hub has a session for it
//! (`dial_lane`, one task per peer, idle otherwise), with a hello that names the lane
//! (`bus::lane_hello`) on the bus port; the acceptor judges it as any hello and hands the
//! socket to the same thread (`serve_accepted`). A lane runs both ways: chunks from its
//! dialer, answers from its acceptor. Each end runs a reader task and a writer loop; when
//! either ends, the socket is shut down, the other ends, and the hub hears the lane is down
//! (its sessions resume on the next connection from what the target holds).
//!
//! Right after the hello, both ends exchange a lane-open record (`lane::LaneOpen`, issue
//! 19, steps 5 and 6) and the source's bytes (chunks, `Finish`, `Cancel`) go on the best
//! carrier both offered instead of the socket: RDMA (a queue pair, `rdma::Stream`, polled
//! from 50 µs to 1 ms apart while the lane lives), then QUIC (a connection of the lane's own
//! on UDP, `quic.rs`), then the socket itself. The socket carries the target's answers and
//! says the lane is alive. A lane whose carrier failed ends like any other; its peer is
//! offered TCP only for `CARRIER_PENALTY`, and the copies resume from what the target holds.

mod quic;

use super::{Cluster, NodeId, bus};
use crate::shard::Shard;
use quic::QuicLane;
use shardline_shards::migrate::hub::{Dir, Fetch, Hub, no_files};
use shardline_shards::migrate::share::TimeShare;
use shardline_transport::lane::{self, Carrier, LANE_OPEN_BYTES, LaneOpen, QuicAt};
use shardline_transport::link::tcp;
use shardline_transport::quic::{Identity, Pipe};
use shardline_transport::rdma::{self, Provider, Stream};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Bytes a lane's writer hands the kernel in one write (several chunks in flight).
const WRITE_BYTES: usize = 4 << 20;
/// Bytes a lane's reader asks the kernel for in one read.
const READ_BYTES: usize = 256 << 10;
/// A source lane no session needed for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// RDMA rings: buffers on the sending side (the source) and the receiving side (the
/// target), of `RDMA_BUFFER_BYTES` each (a lane's frames run across buffers).
const RDMA_RING: usize = 16;
const RDMA_BUFFER_BYTES: usize = 1 << 20;
/// After a lane's carrier (RDMA or QUIC) failed, its peer is offered TCP only for this long.
const CARRIER_PENALTY: Duration = Duration::from_secs(60);
/// How long the lane-open exchange may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The lane tasks' state, kept with the replicas (one borrow for the hub and them).
pub struct LaneIo {
    /// Per peer slot and direction: the task waiting for the hub (a writer, or an idle
    /// dialer), and the generation of the connection that holds the lane now.
    wakers: Vec<[Option<Waker>; 2]>,
    gens: Vec<[u64; 2]>,
    /// Per peer slot: when its lane's carrier last failed.
    carrier_failed: Vec<Option<Instant>>,
    /// Lane connections that carried the source's bytes over RDMA, and over QUIC, since
    /// start.
    pub rdma_lanes: u64,
    pub quic_lanes: u64,
    /// The share of the thread's time copies may take (`bulk-thread-share`), over every
    /// lane of the thread both ways.
    pub share: TimeShare,
    /// Time the lanes waited for it, since start (µs).
    pub share_waited_us: u64,
    /// The hub's time zero.
    epoch: Instant,
}

impl LaneIo {
    pub fn new(epoch: Instant) -> LaneIo {
        LaneIo {
            wakers: Vec::new(),
            gens: Vec::new(),
            carrier_failed: Vec::new(),
            rdma_lanes: 0,
            quic_lanes: 0,
            share: TimeShare::new(100),
            share_waited_us: 0,
            epoch,
        }
    }

    /// The hub's time (ms since `epoch`).
    pub fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// µs since `epoch` (the time share's clock).
    fn now_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Copy work ran from `start` until now.
    fn spent(&mut self, start: Instant) {
        let took = start.elapsed().as_micros() as u64;
        let at = self.now_us(start);
        self.share.spent(at, took);
    }

    fn at(&mut self, peer: NodeId) -> usize {
        let i = peer.slot();
        if self.wakers.len() <= i {
            self.wakers.resize_with(i + 1, Default::default);
            self.gens.resize(i + 1, [0; 2]);
            self.carrier_failed.resize(i + 1, None);
        }
        i
    }

    fn register(&mut self, peer: NodeId, dir: Dir, w: &Waker) {
        let i = self.at(peer);
        self.wakers[i][dir as usize] = Some(w.clone());
    }

    /// A new connection holds the lane: its generation.
    fn take_over(&mut self, peer: NodeId, dir: Dir) -> u64 {
        let i = self.at(peer);
        self.gens[i][dir as usize] += 1;
        self.gens[i][dir as usize]
    }

    fn is_current(&mut self, peer: NodeId, dir: Dir, generation: u64) -> bool {
        let i = self.at(peer);
        self.gens[i][dir as usize] == generation
    }

    /// Whether carriers other than TCP may be offered to `peer` (none failed lately).
    fn carriers_allowed(&mut self, peer: NodeId, now: Instant) -> bool {
        let i = self.at(peer);
        self.carrier_failed[i].is_none_or(|t| now >= t + CARRIER_PENALTY)
    }

    fn carrier_failed(&mut self, peer: NodeId, now: Instant) {
        let i = self.at(peer);
        self.carrier_failed[i] = Some(now);
    }

    fn wake_one(&mut self, peer: NodeId, dir: Dir) {
        let i = self.at(peer);
        if let Some(w) = self.wakers[i][dir as usize].take() {
            w.wake();
        }
    }
}

/// What runs lanes: a shard thread (its replicas hold the hub), or a benchmark's host.
pub trait LaneHost: 'static {
    /// `f` on the hub and the lane tasks' state.
    fn with_lanes<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo) -> R) -> R;
    /// What a lane read, handed to the hub: the bytes it took (the host wakes what copies
    /// completed and answers concern).
    fn lane_bytes(
        &self,
        peer: NodeId,
        dir: Dir,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, String>;
    /// `with_lanes`, with the reader of the snapshot files copies stream from (none by
    /// default: every copy from memory).
    fn with_lanes_fetch<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo, Fetch<'_>) -> R) -> R {
        self.with_lanes(|hub, io| f(hub, io, &mut no_files))
    }
    /// What makes queue pairs for this node's lanes, if it has RDMA (and offers it).
    fn rdma(&self) -> Option<Arc<dyn Provider + Send + Sync>> {
        None
    }
    /// This node's certificate for its lanes' QUIC, if it offers QUIC.
    fn quic(&self) -> Option<Arc<Identity>> {
        None
    }
}

impl LaneHost for Shard {
    fn with_lanes<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo) -> R) -> R {
        self.with_replicas(|r| f(&mut r.hub, &mut r.lane_io))
    }

    fn lane_bytes(
        &self,
        peer: NodeId,
        dir: Dir,
        bytes: &[u8],
        now: Instant,
    ) -> Result<usize, String> {
        self.with_replicas(|r| r.lane_bytes(peer, dir, bytes, now))
    }

    fn with_lanes_fetch<R>(&self, f: impl FnOnce(&mut Hub, &mut LaneIo, Fetch<'_>) -> R) -> R {
        self.with_replicas(|r| r.with_hub_fetch(f))
    }

    fn rdma(&self) -> Option<Arc<dyn Provider + Send + Sync>> {
        self.node.cluster.rdma.clone()
    }

    fn quic(&self) -> Option<Arc<Identity>> {
        self.node.cluster.quic.clone()
    }
}

/// This node's RDMA for its lanes (`offered`: `cluster-bulk-transports` names it; `tls`:
/// the cluster's links are mutual TLS): the provider, and what INFO says (`bulk_rdma`).
///
/// RDMA moves memory between the nodes' adapters unencrypted, so a node whose links are TLS
/// does not offer it: its copies go on QUIC (TLS 1.3, its certificate's fingerprint sent on
/// the authenticated lane) or on the TLS lane itself.
pub fn rdma_for(offered: bool, tls: bool) -> (Option<Arc<dyn Provider + Send + Sync>>, String) {
    if !offered {
        return (None, "off (cluster-bulk-transports)".into());
    }
    if tls {
        tracing::info!(
            "bulk lanes: RDMA not offered: the cluster's links are TLS and RDMA would carry copies in clear"
        );
        return (None, "off (cluster TLS: RDMA is unencrypted)".into());
    }
    match rdma::detect() {
        Ok(p) => {
            let status = format!("on: {}", p.name());
            tracing::info!("bulk lanes: RDMA {status}");
            (Some(Arc::from(p)), status)
        }
        Err(why) => {
            tracing::info!("bulk lanes on TCP only: {why}");
            (None, format!("none: {why}"))
        }
    }
}

/// This node's QUIC for its lanes (`offered`: `cluster-bulk-transports` names it): its
/// certificate, made now, and what INFO says (`bulk_quic`).
pub fn quic_for(offered: bool) -> (Option<Arc<Identity>>, String) {
    if !offered {
        return (None, "off (cluster-bulk-transports)".into());
    }
    match Identity::generate() {
        Ok(id) => {
            tracing::info!("bulk lanes: QUIC offered");
            (Some(Arc::new(id)), "on".into())
        }
        Err(why) => {
            tracing::warn!("bulk lanes without QUIC: {why}");
            (None, format!("none: {why}"))
        }
    }
}

/// Whether a lane ended because its carrier (RDMA or QUIC) failed: its reasons, and only
/// those, begin with the carrier's name.
fn carrier_failure(why: &str) -> bool {
    why.starts_with("RDMA") || why.starts_with("QUIC")
}

/// Wakes the tasks of the lanes the hub has something for.
pub fn wake(hub: &mut Hub, io: &mut LaneIo) {
    for (peer, dir) in hub.take_ready() {
        io.wake_one(peer, dir);
    }
}

/// Dials the lane to `peer`'s thread whenever this thread's hub has a session for it,
/// until `peer` is no longer a member.
pub async fn dial_lane(shard: Rc<Shard>, c: Arc<Cluster>, peer: NodeId) {
    let addr = c.bus_addr(peer);
    let mut logged = false;
    while c.member(peer).is_some() {
        let needed = monoio::select! {
            _ = needed(&shard, peer) => true,
            _ = monoio::time::sleep(Duration::from_secs(1)) => false,
        };
        if !needed {
            continue;
        }
        let w = match bus::open(&c, peer, &bus::lane_hello(&c, shard.id))
            .await
            .map_err(|e| e.why)
        {
            Ok(w) => w,
            Err(why) => {
                if !logged {
                    tracing::info!(%peer, %addr, "bulk lane: cannot reach peer yet: {why}");
                    logged = true;
                }
                monoio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        logged = false;
        let (rd, wr, rest) = w.into_duplex();
        let why = run(shard.clone(), peer, Dir::Source, rd, wr, rest).await;
        tracing::info!(%peer, shard = shard.id, "bulk lane to peer ended: {why}");
        monoio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves once the hub has a session for `peer`.
async fn needed(shard: &Shard, peer: NodeId) {
    std::future::poll_fn(|cx| {
        shard.with_lanes(|hub, io| {
            if hub.wants_lane(peer) {
                Poll::Ready(())
            } else {
                io.register(peer, Dir::Source, cx.waker());
                Poll::Pending
            }
        })
    })
    .await
}

/// Serves a lane `peer` dialed (its chunks in, this thread's answers out), `rest` being what
/// came after its hello.
pub async fn serve_accepted(shard: Rc<Shard>, peer: NodeId, accepted: tcp::Accepted) {
    match tcp::adopt_duplex(accepted) {
        Ok((rd, wr, rest)) => {
            let why = run(shard.clone(), peer, Dir::Target, rd, wr, rest).await;
            tracing::info!(%peer, shard = shard.id, "bulk lane from peer ended: {why}");
        }
        Err(e) => tracing::warn!(%peer, "bulk lane: cannot adopt a socket: {e}"),
    }
}

/// Runs one connection of lane `(peer, dir)` until either half ends; why it ended.
pub async fn run<H: LaneHost>(
    shard: Rc<H>,
    peer: NodeId,
    dir: Dir,
    mut rd: tcp::DuplexReader,
    mut wr: tcp::DuplexWriter,
    rest: Vec<u8>,
) -> String {
    let (carried, rest) = match open_lane(&*shard, peer, dir, &mut rd, &mut wr, rest).await {
        Ok(opened) => opened,
        Err(why) => {
            wr.close();
            return why;
        }
    };
    let on = |rdma: bool| match &carried {
        Some(Carried::Rdma(_)) => rdma,
        Some(Carried::Quic(_)) => !rdma,
        None => false,
    };
    let (on_rdma, on_quic) = (on(true), on(false));
    let generation = shard.with_lanes(|hub, io| {
        let generation = io.take_over(peer, dir);
        io.rdma_lanes += on_rdma as u64;
        io.quic_lanes += on_quic as u64;
        hub.lane_up(peer, dir);
        wake(hub, io);
        generation
    });
    let ended: Rc<RefCell<Option<String>>> = Rc::default();
    let quic_lane = match &carried {
        Some(Carried::Quic(l)) => Some(l.clone()),
        _ => None,
    };
    let (reader, mut sink) = match (dir, carried) {
        (Dir::Target, Some(carried)) => {
            // The source's bytes come on the carrier; the socket only says it is alive.
            let watch = monoio::spawn(watch(shard.clone(), peer, dir, rd, rest, ended.clone()));
            let r = monoio::spawn(read_carried(shard.clone(), peer, carried, ended.clone()));
            (LaneReader::Carried(r, watch), Sink::Tcp(&mut wr))
        }
        (_, carried) => {
            let r = monoio::spawn(read(shard.clone(), peer, dir, rd, rest, ended.clone()));
            let sink = match carried {
                Some(Carried::Rdma(stream)) => Sink::Rdma(stream),
                Some(Carried::Quic(l)) => Sink::Quic(l),
                None => Sink::Tcp(&mut wr),
            };
            (LaneReader::Tcp(r), sink)
        }
    };
    let why = write(&*shard, peer, dir, &mut sink, generation, &ended).await;
    drop(sink);
    if let Some(l) = &quic_lane {
        l.shutdown();
    }
    wr.close();
    match reader {
        LaneReader::Tcp(r) => r.await,
        LaneReader::Carried(r, watch) => {
            watch.await;
            r.await;
        }
    }
    // A carrier's failure on either half is the reason given (and keeps carriers other
    // than TCP off for a while).
    let why = match ended.borrow_mut().take() {
        Some(r) if carrier_failure(&r) && !carrier_failure(&why) => r,
        _ => why,
    };
    shard.with_lanes(|hub, io| {
        if carrier_failure(&why) {
            io.carrier_failed(peer, Instant::now());
        }
        if io.is_current(peer, dir, generation) {
            hub.lane_down(peer, dir);
        }
    });
    why
}

/// The tasks reading a lane's connection.
enum LaneReader {
    Tcp(monoio::task::JoinHandle<()>),
    /// The carrier's reader and the socket's watcher.
    Carried(monoio::task::JoinHandle<()>, monoio::task::JoinHandle<()>),
}

/// What carries a lane's source-to-target bytes besides its socket.
enum Carried {
    Rdma(Stream),
    Quic(Rc<QuicLane>),
}

/// Where a lane's writer puts the hub's bytes.
enum Sink<'a> {
    Tcp(&'a mut tcp::DuplexWriter),
    Rdma(Stream),
    Quic(Rc<QuicLane>),
}

/// The lane-open exchange right after the hello: the dialer (the source) sends its record
/// and reads the acceptor's; the acceptor answers with its own, offering a carrier only if
/// the dialer did (QUIC only where RDMA is not to be used: it binds a socket for it). The
/// carrier both offered is set up: the queue pair connected, or the QUIC connection started.
/// What was read past the record goes back to the lane's reader.
async fn open_lane<H: LaneHost>(
    shard: &H,
    peer: NodeId,
    dir: Dir,
    rd: &mut tcp::DuplexReader,
    wr: &mut tcp::DuplexWriter,
    rest: Vec<u8>,
) -> Result<(Option<Carried>, Vec<u8>), String> {
    let allowed = shard.with_lanes(|_, io| io.carriers_allowed(peer, Instant::now()));
    let mut stream = match shard.rdma().filter(|_| allowed) {
        Some(p) => {
            let (sends, recvs) = match dir {
                Dir::Source => (RDMA_RING, 1),
                Dir::Target => (1, RDMA_RING),
            };
            match p.open(sends, recvs, RDMA_BUFFER_BYTES) {
                Ok(v) => Some(Stream::new(v)),
                Err(e) => {
                    tracing::warn!(%peer, "bulk lane: no RDMA queue pair ({}): {e}", p.name());
                    None
                }
            }
        }
        None => None,
    };
    let identity = shard.quic().filter(|_| allowed);
    // The target's end of the QUIC connection, made once the source offered QUIC.
    let mut server: Option<(Pipe, std::net::UdpSocket)> = None;
    let record = |s: &Option<Stream>, quic: Option<QuicAt>| LaneOpen {
        transports: lane::TCP
            | if s.is_some() { lane::RDMA } else { 0 }
            | if quic.is_some() { lane::QUIC } else { 0 },
        rdma: s.as_ref().map(|s| s.endpoint()),
        quic,
    };
    let exchange = async {
        match dir {
            Dir::Source => {
                let quic = identity.as_ref().map(|id| QuicAt {
                    port: 0,
                    fingerprint: id.fingerprint,
                });
                let ours = record(&stream, quic);
                send_all(wr, ours.encode().to_vec()).await?;
                let (theirs, rest) = read_record(rd, rest).await?;
                Ok::<_, String>((ours, theirs, rest))
            }
            Dir::Target => {
                let (theirs, rest) = read_record(rd, rest).await?;
                if theirs.rdma.is_none() {
                    stream = None;
                }
                let quic = match (&identity, theirs.quic) {
                    (Some(id), Some(at)) if stream.is_none() => match quic_server(id, at, wr) {
                        Ok((pipe, sock, port)) => {
                            server = Some((pipe, sock));
                            Some(QuicAt {
                                port,
                                fingerprint: id.fingerprint,
                            })
                        }
                        Err(e) => {
                            tracing::warn!(%peer, "bulk lane: no QUIC: {e}");
                            None
                        }
                    },
                    _ => None,
                };
                let ours = record(&stream, quic);
                send_all(wr, ours.encode().to_vec()).await?;
                Ok((ours, theirs, rest))
            }
        }
    };
    let (ours, theirs, rest) = monoio::time::timeout(OPEN_TIMEOUT, exchange)
        .await
        .map_err(|_| "the lane-open exchange timed out".to_string())??;
    let carried = match (ours.carrier(&theirs), stream, identity) {
        (Carrier::Rdma(at), Some(mut s), _) => {
            s.connect(&at)?;
            tracing::info!(%peer, ?dir, "bulk lane: the source's bytes go over RDMA");
            Some(Carried::Rdma(s))
        }
        (Carrier::Quic(at), _, Some(id)) => {
            let (pipe, sock) = match (dir, server) {
                (Dir::Target, Some(end)) => end,
                (Dir::Source, _) => quic_client(&id, at, wr)?,
                (Dir::Target, None) => return Err("QUIC: the target's end is missing".into()),
            };
            tracing::info!(%peer, ?dir, "bulk lane: the source's bytes go over QUIC");
            Some(Carried::Quic(QuicLane::start(pipe, sock)?))
        }
        _ => None,
    };
    Ok((carried, rest))
}

/// The target's QUIC end of a lane: a UDP socket on the address the source reached this
/// node at (an ephemeral port), accepting only the certificate `source` announced.
fn quic_server(
    id: &Identity,
    source: QuicAt,
    wr: &tcp::DuplexWriter,
) -> Result<(Pipe, std::net::UdpSocket, u16), String> {
    let (local, _) = wr.addrs().map_err(|e| format!("QUIC: {e}"))?;
    let sock = shardline_transport::net::lane_udp(local.ip())
        .map_err(|e| format!("QUIC: cannot bind a UDP socket on {}: {e}", local.ip()))?;
    let port = sock.local_addr().map_err(|e| format!("QUIC: {e}"))?.port();
    Ok((Pipe::server(id, source.fingerprint)?, sock, port))
}

/// The source's QUIC end of a lane: connects to the port the target named, on the
/// target's address, accepting only the certificate it announced.
fn quic_client(
    id: &Identity,
    target: QuicAt,
    wr: &tcp::DuplexWriter,
) -> Result<(Pipe, std::net::UdpSocket), String> {
    if target.port == 0 {
        return Err("QUIC: the target offered QUIC without a port".into());
    }
    let (local, remote) = wr.addrs().map_err(|e| format!("QUIC: {e}"))?;
    let sock = shardline_transport::net::lane_udp(local.ip())
        .map_err(|e| format!("QUIC: cannot bind a UDP socket on {}: {e}", local.ip()))?;
    let to = std::net::SocketAddr::new(remote.ip(), target.port);
    let pipe = Pipe::client(id, target.fingerprint, to, Instant::now())?;
    Ok((pipe, sock))
}

async fn send_all(wr: &mut tcp::DuplexWriter, bytes: Vec<u8>) -> Result<(), String> {
    wr.send(bytes)
        .await
        .0
        .map_err(|e| format!("write failed: {e}"))
}

/// Reads the peer's lane-open record (after what `buf` holds already); the bytes past it.
async fn read_record(
    rd: &mut tcp::DuplexReader,
    mut buf: Vec<u8>,
) -> Result<(LaneOpen, Vec<u8>), String> {
    while buf.len() < LANE_OPEN_BYTES {
        let (r, b) = rd.read(buf, LANE_OPEN_BYTES).await;
        buf = b;
        match r {
            Ok(0) => return Err("closed by the peer".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let theirs = LaneOpen::decode(&buf[..LANE_OPEN_BYTES])?;
    Ok((theirs, buf[LANE_OPEN_BYTES..].to_vec()))
}

/// What a lane's reader holds: bytes read and not yet taken by the hub (a partial frame).
struct Feed {
    buf: Vec<u8>,
    start: usize,
}

impl Feed {
    fn new(rest: Vec<u8>) -> Feed {
        let mut buf = rest;
        buf.reserve(2 * READ_BYTES);
        Feed { buf, start: 0 }
    }

    /// Hands the hub what it has not taken; keeps a partial frame for the next bytes.
    fn hand<H: LaneHost>(&mut self, shard: &H, peer: NodeId, dir: Dir) -> Result<(), String> {
        if self.start < self.buf.len() {
            let t = Instant::now();
            let took = shard.lane_bytes(peer, dir, &self.buf[self.start..], t);
            shard.with_lanes(|_, io| io.spent(t));
            self.start += took?;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.capacity() - self.buf.len() < READ_BYTES {
            // A partial frame goes to the front (at most one frame's bytes, once per frame).
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }
}

/// The reading half: what arrives goes to the hub; on its end, `ended` says why and the
/// writer is woken.
async fn read<H: LaneHost>(
    shard: Rc<H>,
    peer: NodeId,
    dir: Dir,
    mut rd: tcp::DuplexReader,
    rest: Vec<u8>,
    ended: Rc<RefCell<Option<String>>>,
) {
    let mut feed = Feed::new(rest);
    let why = loop {
        if let Err(e) = feed.hand(&*shard, peer, dir) {
            break e;
        }
        share_wait(&*shard).await;
        let (r, b) = rd.read(std::mem::take(&mut feed.buf), READ_BYTES).await;
        feed.buf = b;
        match r {
            Ok(0) => break "closed by the peer".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    end(&*shard, peer, dir, &ended, why);
}

/// Says why the lane ended (the first reason kept) and wakes its writer.
fn end<H: LaneHost>(
    shard: &H,
    peer: NodeId,
    dir: Dir,
    ended: &RefCell<Option<String>>,
    why: String,
) {
    ended.borrow_mut().get_or_insert(why);
    shard.with_lanes(|_, io| io.wake_one(peer, dir));
}

const CARRIED_BUT_WROTE: &str =
    "the source wrote on the socket of a lane whose bytes go on another carrier";

/// A target lane on a carrier: the socket must bring nothing more (its end, or a byte, ends
/// the lane).
async fn watch<H: LaneHost>(
    shard: Rc<H>,
    peer: NodeId,
    dir: Dir,
    mut rd: tcp::DuplexReader,
    rest: Vec<u8>,
    ended: Rc<RefCell<Option<String>>>,
) {
    let why = if rest.is_empty() {
        let (r, _) = rd.read(Vec::new(), 64).await;
        match r {
            Ok(0) => "closed by the peer".to_string(),
            Ok(_) => CARRIED_BUT_WROTE.to_string(),
            Err(e) => e.to_string(),
        }
    } else {
        CARRIED_BUT_WROTE.to_string()
    };
    end(&*shard, peer, dir, &ended, why);
}

/// Waits while the thread's copies owe it idle time (`bulk-thread-share`).
async fn share_wait<H: LaneHost>(shard: &H) {
    loop {
        let owed = shard.with_lanes(|_, io| {
            let owed = io.share.wait_us(io.now_us(Instant::now()));
            io.share_waited_us += owed;
            owed
        });
        if owed == 0 {
            return;
        }
        monoio::time::sleep(Duration::from_micros(owed)).await;
    }
}

/// Time between polls of a queue pair with nothing to do: from `MIN` doubling up to `MAX`,
/// back to `MIN` once something happened.
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_micros(50);
    const MAX: Duration = Duration::from_millis(1);

    fn new() -> Backoff {
        Backoff(Self::MIN)
    }

    fn reset(&mut self) {
        self.0 = Self::MIN;
    }

    async fn wait(&mut self) {
        monoio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}

/// A target lane on a carrier: what the queue pair or the QUIC stream brings goes to the
/// hub, in order, until the carrier fails or the lane ends.
async fn read_carried<H: LaneHost>(
    shard: Rc<H>,
    peer: NodeId,
    mut carried: Carried,
    ended: Rc<RefCell<Option<String>>>,
) {
    let mut feed = Feed::new(Vec::new());
    let mut backoff = Backoff::new();
    let why = loop {
        if ended.borrow().is_some() {
            return;
        }
        let got = match &mut carried {
            // A queue pair is polled, less often while it brings nothing.
            Carried::Rdma(stream) => match stream.poll().and_then(|_| stream.recv(&mut feed.buf)) {
                Ok(0) => {
                    backoff.wait().await;
                    Ok(0)
                }
                got => {
                    backoff.reset();
                    got
                }
            },
            // The QUIC lane wakes its reader when datagrams arrive.
            Carried::Quic(lane) => lane.read(&mut feed.buf, READ_BYTES).await,
        };
        match got {
            Err(e) => break e,
            Ok(0) => {}
            Ok(_) => {
                if let Err(e) = feed.hand(&*shard, peer, Dir::Target) {
                    break e;
                }
                share_wait(&*shard).await;
            }
        }
    };
    end(&*shard, peer, Dir::Target, &ended, why);
}

/// The writing half: writes what the hub hands out for the lane until the reader ends, a
/// write fails, a newer connection takes the lane over, or (a source lane) no session
/// needed it for a while.
async fn write<H: LaneHost>(
    shard: &H,
    peer: NodeId,
    dir: Dir,
    sink: &mut Sink<'_>,
    generation: u64,
    ended: &RefCell<Option<String>>,
) -> String {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        share_wait(shard).await;
        let next = std::future::poll_fn(|cx| {
            if let Some(why) = ended.borrow().clone() {
                return Poll::Ready(Err(why));
            }
            shard.with_lanes_fetch(|hub, io, fetch| {
                if !io.is_current(peer, dir, generation) {
                    return Poll::Ready(Err("a newer connection took the lane over".into()));
                }
                buf.clear();
                let t = Instant::now();
                hub.poll(peer, dir, &mut buf, WRITE_BYTES, io.now_ms(t), fetch);
                io.spent(t);
                if buf.is_empty() {
                    io.register(peer, dir, cx.waker());
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(std::mem::take(&mut buf)))
                }
            })
        });
        let bytes = monoio::select! {
            n = next => n,
            _ = monoio::time::sleep(IDLE_CLOSE) => {
                if dir == Dir::Source && !shard.with_lanes(|hub, _| hub.wants_lane(peer)) {
                    return "no session needed it".into();
                }
                continue;
            }
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(why) => return why,
        };
        match sink {
            Sink::Tcp(wr) => {
                let (res, b) = wr.send(bytes).await;
                buf = b;
                if let Err(e) = res {
                    return format!("write failed: {e}");
                }
            }
            Sink::Rdma(stream) => {
                if let Err(why) = send_rdma(stream, &bytes, ended).await {
                    return why;
                }
                buf = bytes;
            }
            Sink::Quic(l) => {
                if let Err(why) = l.write_all(&bytes, ended).await {
                    return why;
                }
                buf = bytes;
            }
        }
    }
}

/// Puts `bytes` on the queue pair whole, waiting for send buffers as the target frees them.
async fn send_rdma(
    stream: &mut Stream,
    bytes: &[u8],
    ended: &RefCell<Option<String>>,
) -> Result<(), String> {
    let mut at = 0;
    let mut backoff = Backoff::new();
    loop {
        stream.poll()?;
        let n = stream.send(&bytes[at..])?;
        at += n;
        if at == bytes.len() {
            return Ok(());
        }
        if let Some(why) = ended.borrow().clone() {
            return Err(why);
        }
        if n > 0 {
            backoff.reset();
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests;
