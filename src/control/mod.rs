//! The control thread (issue 20, step 2; docs/design/control.md): one per node, off the shard
//! threads, running SWIM (`shardline_shards::swim`) over UDP on the bus port. Its verdicts go
//! to `Cluster` (`set_liveness`), where the shard threads read them each tick and fail over
//! the groups a dead member led (`Replicas::follow_liveness`).
//!
//! `Membership` is the sans-IO part shared by the driver below and the whole-cluster
//! simulator: the member table from the metadata in, datagrams and timers in, datagrams for
//! addresses and published verdicts out. The driver is a monoio runtime on epoll (a dropped
//! receive consumes nothing, unlike an io_uring one whose buffer may already hold a
//! datagram) waiting for a datagram or SWIM's next timer, whichever comes first.

pub mod metrics;

use crate::cluster::{Cluster, NodeId};
use crate::node::Node;
use shardline_shards::swim::{self, Swim};
use shardline_transport::seal::{self, Opener, Sealer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// INFO's names of `Cluster::swim_stats`, in order.
pub const SWIM_FIELDS: usize = 11;
pub const SWIM_NAMES: [&str; SWIM_FIELDS] = [
    "swim_incarnation",
    "swim_local_health",
    "swim_packets_in",
    "swim_packets_out",
    "swim_bytes_in",
    "swim_bytes_out",
    "swim_refused",
    "swim_probes_failed",
    "swim_refutations",
    "swim_unauthenticated",
    "swim_replayed",
];

/// INFO's lines on membership: the members SWIM holds alive, suspect, dead and gone, then
/// `SWIM_NAMES`.
pub fn info(c: &Cluster) -> String {
    use std::fmt::Write;
    let mut counts = [0usize; 4];
    for id in c.member_ids().into_iter().filter(|&id| id != c.me) {
        counts[match c.liveness(id).0 {
            swim::State::Alive => 0,
            swim::State::Suspect => 1,
            swim::State::Dead => 2,
            swim::State::Left => 3,
        }] += 1;
    }
    let mut t = format!(
        "cluster_links:{}\r\nswim_members_alive:{}\r\nswim_members_suspect:{}\r\nswim_members_dead:{}\r\nswim_members_left:{}\r\ncluster_node_down_after_ms:{}\r\ncluster_repairs:{}\r\ncluster_repair_blocked:{}\r\ncluster_tls_client_port_in:{}\r\ncluster_tls_client_port_refused:{}\r\n",
        c.security.describe(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        c.node_down_after_ms,
        c.repairs.load(Ordering::Relaxed),
        c.repair_blocked.load(Ordering::Relaxed),
        c.tls_in.load(Ordering::Relaxed),
        c.tls_refused.load(Ordering::Relaxed)
    );
    for (name, v) in SWIM_NAMES.iter().zip(&c.swim_stats) {
        let _ = write!(t, "{name}:{}\r\n", v.load(Ordering::Relaxed));
    }
    t
}

/// The largest datagram read (SWIM's are at most `swim::Config::packet_bytes_max`; a longer
/// one is cut short and refused by the codec).
const DATAGRAM_MAX: usize = 2048;
/// The longest the driver waits without looking at the member table and the leave request.
const WAIT_MAX: Duration = Duration::from_millis(50);

/// SWIM bound to this node's `Cluster`.
pub struct Membership {
    swim: Swim,
    c: Arc<Cluster>,
    /// The `Cluster::members_version` last given to SWIM.
    members_version: u64,
    /// When a refused datagram was last logged (one line a second at most).
    refusal_logged_ms: Option<u64>,
    /// With the cluster's secret: datagrams sealed going out and opened coming in
    /// (`transport::seal`), and the counts refused as unauthenticated and as replayed.
    seal: Option<(Sealer, Opener)>,
    unauthenticated: u64,
    replayed: u64,
    /// `Dead` verdicts published (the simulator takes them).
    pub deaths: u64,
}

impl Membership {
    /// SWIM for node `c.me`, starting at incarnation `inc` (the driver passes the wall
    /// clock's seconds, so a restart starts above what others may still hold about the
    /// previous run), with the cluster's members. `run` names this run in sealed datagrams
    /// (the driver passes the wall clock's nanoseconds: later runs are larger).
    pub fn new(
        c: Arc<Cluster>,
        cfg: swim::Config,
        inc: u32,
        seed: u64,
        now_ms: u64,
        run: u64,
    ) -> Self {
        let swim = Swim::new(c.me, c.cluster_id, inc, cfg, seed, now_ms);
        let seal = c
            .security
            .secret
            .as_deref()
            .map(|k| (Sealer::new(k, c.me.0, run), Opener::new(k)));
        let mut m = Membership {
            swim,
            c,
            members_version: 0,
            refusal_logged_ms: None,
            seal,
            unauthenticated: 0,
            replayed: 0,
            deaths: 0,
        };
        m.sync_members(now_ms);
        m.publish();
        m
    }

    /// Takes the member table again if the metadata changed it (members added start
    /// `Alive`; members removed are forgotten).
    fn sync_members(&mut self, now_ms: u64) {
        let v = self.c.members_version.load(Ordering::Acquire);
        if v == self.members_version {
            return;
        }
        self.members_version = v;
        let ids = self.c.member_ids();
        self.swim.set_members(&ids, now_ms);
    }

    /// One datagram from anyone.
    ///
    /// With the cluster's secret, only a sealed datagram that opens reaches SWIM.
    pub fn handle_packet(&mut self, now_ms: u64, bytes: &[u8], from: SocketAddr) {
        self.sync_members(now_ms);
        let opened = match &mut self.seal {
            None => Ok(bytes),
            Some((_, opener)) => opener.open(bytes, now_ms).map_err(|e| {
                match e {
                    seal::Refused::Replayed => self.replayed += 1,
                    _ => self.unauthenticated += 1,
                }
                format!("{e}")
            }),
        };
        let handled = opened.and_then(|b| {
            self.swim
                .handle_packet(now_ms, b)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = handled
            && self
                .refusal_logged_ms
                .is_none_or(|t| now_ms >= t.saturating_add(1000))
        {
            self.refusal_logged_ms = Some(now_ms);
            tracing::warn!(%from, "SWIM: a datagram refused: {e}");
        }
        self.publish();
    }

    /// SWIM's timers due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.sync_members(now_ms);
        self.swim.handle_timeout(now_ms);
        self.publish();
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> u64 {
        self.swim.poll_timeout()
    }

    /// The next datagram, the member it is for and where that member is (its bus address as
    /// this node knows it); datagrams for members without an address are dropped.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, SocketAddr, Vec<u8>)> {
        loop {
            let t = self.swim.poll_transmit()?;
            if let Some(a) = self.c.member(t.to) {
                let bytes = match &mut self.seal {
                    None => t.bytes,
                    Some((sealer, _)) => {
                        let mut out = Vec::with_capacity(t.bytes.len() + seal::OVERHEAD);
                        sealer.seal(&t.bytes, &mut out);
                        out
                    }
                };
                return Some((t.to, a.bus, bytes));
            }
        }
    }

    /// This node is shutting down: every member is told (`Left`), so none waits out a
    /// suspicion before its groups fail over.
    pub fn leave(&mut self) {
        self.swim.leave();
        self.publish();
    }

    /// SWIM's verdict on `id` (the simulator's checks).
    #[cfg(test)]
    pub fn state(&self, id: NodeId) -> Option<(swim::State, u32)> {
        self.swim.state(id)
    }

    /// SWIM's new verdicts into `Cluster` (logged), and its counters.
    fn publish(&mut self) {
        while let Some(e) = self.swim.poll_event() {
            match e.state {
                swim::State::Alive => {
                    tracing::info!(member = %e.member, inc = e.inc, "SWIM: member alive again")
                }
                swim::State::Suspect => {
                    tracing::info!(member = %e.member, inc = e.inc, "SWIM: member suspected")
                }
                swim::State::Dead => {
                    self.deaths += 1;
                    tracing::warn!(member = %e.member, inc = e.inc, "SWIM: member is dead")
                }
                swim::State::Left => {
                    tracing::info!(member = %e.member, inc = e.inc, "SWIM: member left")
                }
            }
            self.c.set_liveness(e.member, e.state, e.inc);
        }
        let s = self.swim.stats;
        let values = [
            self.swim.incarnation() as u64,
            self.swim.health() as u64,
            s.packets_in,
            s.packets_out,
            s.bytes_in,
            s.bytes_out,
            s.refused,
            s.probes_failed,
            s.refutations,
            self.unauthenticated,
            self.replayed,
        ];
        for (slot, v) in self.c.swim_stats.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
    }
}

/// Asks the control thread to tell the members this node leaves, and waits (at most
/// `within`) until it did. Nothing to do on a node with no control thread (no bus).
pub fn leave(c: &Cluster, within: Duration) {
    if c.swim_leave
        .compare_exchange(RUNNING, LEAVING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let start = Instant::now();
    while c.swim_leave.load(Ordering::Acquire) != LEFT && start.elapsed() < within {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `Cluster::swim_leave`: no control thread; it runs; shutting down, it is to tell the
/// members (`leave`); it did.
const RUNNING: u8 = 1;
const LEAVING: u8 = 2;
const LEFT: u8 = 3;

/// Binds SWIM's UDP socket on the bus port (`bind`'s address) and starts the control thread,
/// pinned to `core` if one is given. An error (the port taken) stops start-up.
pub fn start(node: Arc<Node>, bind: std::net::IpAddr, core: Option<usize>) -> Result<(), String> {
    let c = node.cluster.clone();
    let addr = SocketAddr::new(bind, c.bus_addr(c.me).port());
    let sock = std::net::UdpSocket::bind(addr)
        .map_err(|e| format!("cannot bind SWIM's UDP socket on {addr}: {e}"))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let port = node.config.lock().expect("config lock").metrics_port as u16;
    let metrics = if port == 0 {
        None
    } else {
        let at = SocketAddr::new(bind, port);
        let l = std::net::TcpListener::bind(at)
            .map_err(|e| format!("cannot listen for metrics on {at}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        tracing::info!(%at, "metrics: Prometheus endpoint on /metrics");
        Some(l)
    };
    c.swim_leave.store(RUNNING, Ordering::Release);
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            if let Some(core) = core
                && let Err(e) = shardline_transport::cpu::pin_current_thread(core)
            {
                tracing::warn!("control thread: cannot pin to core {core}: {e}");
            }
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => rt.block_on(async move {
                    if let Some(l) = metrics {
                        monoio::spawn(metrics::serve(node, l));
                    }
                    run(c, sock).await
                }),
                Err(e) => tracing::error!("control thread: cannot build its runtime: {e}"),
            }
        })
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    Ok(())
}

async fn run(c: Arc<Cluster>, sock: std::net::UdpSocket) {
    let sock = match monoio::net::udp::UdpSocket::from_std(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("control thread: cannot adopt SWIM's socket: {e}");
            return;
        }
    };
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let wall_s = wall.as_secs();
    let seed = wall_s ^ c.me.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
    let mut m = Membership::new(
        c.clone(),
        swim::Config::default(),
        wall_s as u32,
        seed,
        now_ms(),
        wall.as_nanos() as u64,
    );
    tracing::info!(member = %c.me, inc = wall_s as u32, "SWIM: started on the bus port (UDP)");
    let mut buf = Some(vec![0u8; DATAGRAM_MAX]);
    loop {
        if c.swim_leave.load(Ordering::Acquire) == LEAVING {
            m.leave();
            send_all(&sock, &mut m).await;
            c.swim_leave.store(LEFT, Ordering::Release);
        }
        let now = now_ms();
        let due = m.poll_timeout();
        if now >= due {
            m.handle_timeout(now);
            send_all(&sock, &mut m).await;
            continue;
        }
        let wait = Duration::from_millis(due - now).min(WAIT_MAX);
        let b = buf.take().unwrap_or_else(|| vec![0u8; DATAGRAM_MAX]);
        monoio::select! {
            (res, b) = sock.recv_from(b) => {
                // (An error is an ICMP one from an earlier send, a member not listening:
                // nothing to do, SWIM's probes judge the member.)
                if let Ok((n, from)) = res {
                    m.handle_packet(now_ms(), &b[..n], from);
                }
                buf = Some(b);
                send_all(&sock, &mut m).await;
            }
            _ = monoio::time::sleep(wait) => {}
        }
    }
}

async fn send_all(sock: &monoio::net::udp::UdpSocket, m: &mut Membership) {
    while let Some((_, to, bytes)) = m.poll_transmit() {
        // A send that fails (no route, a full buffer) is a lost datagram, as on the wire.
        let (res, _) = sock.send_to(bytes, to).await;
        if let Err(e) = res {
            tracing::debug!(%to, "SWIM: a datagram not sent: {e}");
        }
    }
}
