//! A shard thread's composition: its runtime, its listener, the keyspace's `Shard`, the replica
//! tasks of a replicated node, and the accept loop that hands connections to `conn`. The one
//! place that knows all of them, so `shard` does not depend on `conn` (nor `conn` on this).

use crate::node::Node;
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// A shard thread's stack: scripts nest (a JSON document or a Lua table 8,000 levels deep is
/// what Redis's Lua takes, `script::libs`), and a stack only takes the memory it touches.
pub const STACK_BYTES: usize = 64 << 20;

/// The ring setups a shard thread tries, best first: completions handed to the shard thread
/// only when it asks for them (`DEFER_TASKRUN`, with `SINGLE_ISSUER`: the thread is the ring's
/// only submitter), else without the interrupt that tells it (`COOP_TASKRUN`), else none
/// (kernels before 5.19 and 6.1 refuse the flags they do not know).
///
/// Why (issue 22, docs/BENCHMARKS.md session 17): a connection's receive completes on the core
/// where the client's send ran, which without these flags queues the completion to the shard
/// thread with an interrupt across cores and a lock on the ring. Against redis-benchmark at
/// pipeline 1 (one client thread, 50 connections), GET went from 0.67x to 1.04x of Redis's
/// throughput and its CPU per request from 9.9 to 5.8 µs; SET from 0.77x to 1.00x.
const RING_SETUPS: [(&str, RingSetup); 3] = [
    ("SINGLE_ISSUER | DEFER_TASKRUN", |b| {
        b.setup_single_issuer().setup_defer_taskrun();
    }),
    ("COOP_TASKRUN | TASKRUN_FLAG", |b| {
        b.setup_coop_taskrun().setup_taskrun_flag();
    }),
    ("no setup flags", |_| {}),
];

/// A shard thread's runtime (io_uring, or epoll where io_uring is missing), with timers.
pub(crate) type ShardRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// Sets a ring's setup flags.
type RingSetup = fn(&mut io_uring::Builder);

/// The shard thread's runtime: io_uring with the best setup the kernel takes
/// (`RING_SETUPS`), or monoio's epoll driver where io_uring is missing; and whether a
/// connection's pending read runs only when the thread asks (`DEFER_TASKRUN`, or epoll),
/// which `conn::busy` needs.
pub(crate) fn build_runtime() -> std::io::Result<(ShardRuntime, bool)> {
    let mut last = None;
    for (name, setup) in RING_SETUPS {
        let mut urb = io_uring::IoUring::builder();
        setup(&mut urb);
        match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .with_entries(1024)
            .uring_builder(urb)
            .build()
        {
            Ok(rt) => {
                let deferred = name == RING_SETUPS[0].0 || matches!(rt, ShardRuntime::Legacy(_));
                tracing::debug!("shard runtime: io_uring with {name}");
                return Ok((rt, deferred));
            }
            Err(e) => {
                tracing::debug!("shard runtime: io_uring with {name} refused: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one setup"))
}

/// The body of shard thread `id`: pins, builds the runtime, binds, reports readiness on `ready`,
/// then serves until the process exits.
pub fn run(id: usize, core: usize, node: Arc<Node>, ready: mpsc::Sender<Result<(), String>>) {
    if let Err(e) = shardline_transport::cpu::pin_current_thread(core) {
        let _ = ready.send(Err(format!("shard {id}: cannot pin to core {core}: {e}")));
        return;
    }
    let rt = build_runtime();
    let (mut rt, deferred) = match rt {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot build the runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let addr = node
            .config
            .lock()
            .map(|c| c.listen_addr())
            .expect("config lock");
        let opts = monoio::net::ListenerOpts::default()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(shardline_transport::net::LISTEN_BACKLOG);
        let listener = match monoio::net::TcpListener::bind_with_config(addr, &opts) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen on {addr}: {e}")));
                return;
            }
        };
        let tls_port = node.config.lock().expect("config lock").tls_port;
        let tls_listener = if tls_port == 0 {
            None
        } else {
            let at = std::net::SocketAddr::new(addr.ip(), tls_port as u16);
            match monoio::net::TcpListener::bind_with_config(at, &opts) {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = ready.send(Err(format!("cannot listen on {at} (tls-port): {e}")));
                    return;
                }
            }
        };
        let shard = Rc::new(Shard::new(id, node));
        {
            // What this thread's scripts' callers are refused goes to ACL LOG (context `lua`).
            let cluster = shard.node.cluster.clone();
            shardline_shards::acl::set_denial_sink(std::sync::Arc::new(
                move |reason, object, user: &str| {
                    let now_ms = crate::shard::unix_now_us() / 1000;
                    cluster.acl.log(
                        reason,
                        "lua",
                        object,
                        user.to_string(),
                        String::new(),
                        now_ms,
                    );
                },
            ));
        }
        if deferred {
            // A busy script's thread answers its own clients (`-BUSY`, SCRIPT KILL).
            crate::conn::busy::install(&shard);
        }
        let c = shard.node.cluster.clone();
        let cfg = shard.node.config.lock().expect("config lock").clone();
        let seed = shard.rng.borrow_mut().next_u64();
        let opened = {
            let mut db = shard.db.borrow_mut();
            crate::cluster::replica::Replicas::open(
                c.clone(),
                id,
                &cfg,
                &mut db,
                seed,
                std::time::Instant::now(),
            )
        };
        match opened {
            Ok(r) => *shard.repl.borrow_mut() = Some(r),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
        monoio::spawn(crate::cluster::replica::run(shard.clone()));
        monoio::spawn(crate::cluster::bus::inbound(shard.clone(), c.clone()));
        monoio::spawn(crate::cluster::bus::dial_members(shard.clone(), c.clone()));
        lead_alone_groups(&c, id).await;
        monoio::spawn(crate::shard::inbox(shard.clone()));
        monoio::spawn(crate::shard::ticker(shard.clone()));
        if let Some(l) = tls_listener {
            monoio::spawn(accept_loop(shard.clone(), l, true));
        }
        let _ = ready.send(Ok(()));
        accept_loop(shard.clone(), listener, false).await;
        // Keep serving in-flight connections and hops until the process exits.
        loop {
            monoio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

/// Waits (up to `ALONE_LEAD_WAIT`) until every vShard that this node alone replicates is led
/// here (every thread's: a connection accepted on this thread may ask any): such a group
/// elects itself within a driver step or two, and a client that connects at once (a node
/// alone just started) should be served, not told `-TRYAGAIN`. Groups with other voters
/// elect with their peers, after the node listens.
async fn lead_alone_groups(c: &crate::cluster::Cluster, id: usize) {
    const ALONE_LEAD_WAIT: Duration = Duration::from_secs(10);
    let start = std::time::Instant::now();
    let mine: Vec<_> = (0..c.layout.count())
        .map(|v| shardline_shards::slot::VShardId(v as u16))
        .filter(|&v| c.alone(v))
        .collect();
    while mine.iter().any(|&v| c.leader(v) != c.me) {
        if start.elapsed() > ALONE_LEAD_WAIT {
            tracing::warn!(
                shard = id,
                "some vShards this node alone replicates have no leader yet; serving anyway"
            );
            return;
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How long a TLS handshake on the client port may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection counted as a client until `conn::serve` counts it (`maxclients` holds for
/// connections that say nothing or stall their handshake too).
struct Counted {
    node: Arc<Node>,
    shard: usize,
}

impl Counted {
    fn new(shard: &Shard) -> Counted {
        shard.node.stats[shard.id]
            .connected
            .fetch_add(1, Ordering::Relaxed);
        Counted {
            node: shard.node.clone(),
            shard: shard.id,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.node.stats[self.shard]
            .connected
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection to the client port of a node whose cluster links are TLS: its first bytes
/// tell a TLS handshake (a record of type 22, which no RESP command starts with) from a
/// client's commands. A handshake is taken under the cluster's CA (a joining node's
/// certificate: `conn::cluster_join` checks it names the address it joins as); anything
/// else is served in clear as ever.
async fn serve_or_tls(
    shard: Rc<Shard>,
    mut stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    laddr: std::net::SocketAddr,
    tls: std::sync::Arc<shardline_transport::tls::ClusterTls>,
) {
    use monoio::io::AsyncReadRent;
    let counted = Counted::new(&shard);
    let (res, first) = stream.read(Vec::with_capacity(16 * 1024)).await;
    if !matches!(res, Ok(n) if n > 0) {
        return;
    }
    if first[0] != 0x16 {
        drop(counted);
        return crate::conn::serve(shard, stream, peer, laddr, first, false).await;
    }
    let conn = match tls.server() {
        Ok(c) => c,
        Err(e) => return tracing::warn!(%peer, "TLS on the client port: {e}"),
    };
    let c = shard.node.cluster.clone();
    // (A certificate of the cluster's CA: one of the cluster's nodes.)
    if serve_tls(shard, stream, peer, laddr, conn, first, counted, true).await {
        c.tls_in.fetch_add(1, Ordering::Relaxed);
    } else {
        c.tls_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection to the clients' TLS port (`tls-port`): a handshake under the port's
/// configuration as it is now, then served as any client.
async fn serve_tls_client(
    shard: Rc<Shard>,
    stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    laddr: std::net::SocketAddr,
) {
    let counted = Counted::new(&shard);
    let config = shard
        .node
        .client_tls
        .lock()
        .expect("client tls lock")
        .clone();
    let Some(config) = config else {
        return;
    };
    let conn = match shardline_transport::tls::client_port_connection(&config) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(%peer, "TLS port: {e}"),
    };
    serve_tls(shard, stream, peer, laddr, conn, Vec::new(), counted, false).await;
}

/// Completes the server side of a TLS handshake (within `TLS_HANDSHAKE_TIMEOUT`), `read`
/// being what was read of it already, then serves the connection (`counted` is released
/// when `conn::serve` counts it). Whether the handshake succeeded (its failure is logged).
/// `node_peer`: the handshake was under the cluster's CA (a node of the cluster).
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    shard: Rc<Shard>,
    stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    laddr: std::net::SocketAddr,
    conn: shardline_transport::tls::ServerConnection,
    read: Vec<u8>,
    counted: Counted,
    node_peer: bool,
) -> bool {
    let accepted = monoio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        shardline_transport::tls::TlsStream::accept(stream, conn, read),
    )
    .await;
    match accepted {
        Ok(Ok(s)) => {
            drop(counted);
            monoio::spawn(crate::conn::serve(
                shard,
                s,
                peer,
                laddr,
                Vec::new(),
                node_peer,
            ));
            true
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, "a TLS handshake failed: {e}");
            false
        }
        Err(_) => {
            tracing::info!(%peer, "a TLS handshake took too long");
            false
        }
    }
}

/// Accepts clients on `listener` (the clients' TLS port's with `tls`) until the node stops.
async fn accept_loop(shard: Rc<Shard>, listener: monoio::net::TcpListener, tls: bool) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = crate::shard::stopped(&shard) => None,
        };
        let Some(accepted) = accepted else {
            tracing::debug!(shard = shard.id, "stopped accepting");
            return;
        };
        match accepted {
            Ok((stream, peer)) => {
                let stats = &shard.node.stats[shard.id];
                stats.connections.fetch_add(1, Ordering::Relaxed);
                if shard.node.connected_clients() >= shard.node.live.get(|l| &l.maxclients) {
                    stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    monoio::spawn(crate::conn::refuse(
                        stream,
                        "ERR max number of clients reached",
                    ));
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let laddr = stream.local_addr().unwrap_or(peer);
                if tls {
                    monoio::spawn(serve_tls_client(shard.clone(), stream, peer, laddr));
                    continue;
                }
                match shard.node.cluster.security.tls.clone() {
                    Some(tls) => {
                        monoio::spawn(serve_or_tls(shard.clone(), stream, peer, laddr, tls));
                    }
                    None => {
                        monoio::spawn(crate::conn::serve(
                            shard.clone(),
                            stream,
                            peer,
                            laddr,
                            Vec::new(),
                            false,
                        ));
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
