//! `shardline`: a thread-per-core key-value server speaking the Redis protocol.
//!
//! Start-up: load and validate the configuration; open (or create) the data directory, which fixes
//! the vShard count; start one pinned shard thread per configured core, each with its own
//! listener; wait until all listen; then wait for SIGINT/SIGTERM or SHUTDOWN.

mod acl;
mod client;
mod cluster;
mod config;
mod conn;
mod control;
mod ctl;
mod datadir;
mod hop;
mod info;
mod merge;
mod node;
mod pubsub;
mod shard;
mod slowlog;
mod thread;
mod wal;

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: shardline_transport::alloc::Counting = shardline_transport::alloc::Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "ctl") {
        std::process::exit(ctl::main(&args[1..]));
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (cfg, cli) = match config::load(&args, &env) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("shardline: {e}");
            std::process::exit(2);
        }
    };
    if cli.help {
        print!("{}", config::usage());
        return;
    }
    if cli.version {
        println!("shardline {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if cli.print_config {
        print!("{}", config::to_toml(&cfg));
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("shardline={0},monoio=warn", cfg.log_level))
    });
    // Colour only on a terminal: a log written to a file or a pipe stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    if let Err(e) = run(cfg) {
        tracing::error!("{e}");
        eprintln!("shardline: {e}");
        std::process::exit(1);
    }
}

fn run(mut cfg: config::Config) -> Result<(), String> {
    let (_lock, meta) = datadir::open(&cfg)?;
    // A node given no cluster is a cluster of itself (replication factor 1): the same log,
    // snapshots and request path as any member, and it grows by joins.
    let given_none = cfg.cluster_nodes.is_empty() && cfg.cluster_join.is_none();
    if given_none {
        config::make_alone(&mut cfg);
    }
    let alone = cfg.cluster_nodes.len() == 1;
    config::resolve_fsync(&mut cfg, alone);
    shardline_transport::net::check_port_free(cfg.listen_addr()).map_err(|e| {
        format!(
            "cannot listen on {}: {e} (is another server running there?)",
            cfg.listen_addr()
        )
    })?;
    let io_uring = monoio::utils::detect_uring();
    if !io_uring {
        tracing::warn!(
            "io_uring is not available on this kernel (or is disabled); shard threads use the epoll driver"
        );
    }
    let (shutdown_tx, shutdown_rx) = mpsc::channel::<()>();
    let signals_tx = shutdown_tx.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "signal received, shutting down");
                let _ = signals_tx.send(());
            }
        })
        .map_err(|e| e.to_string())?;

    let cores = cfg.cores.clone();
    let addr = cfg.listen_addr();
    let bind = cfg.bind;
    let control_core = cfg.control_core;
    let layout = shardline_shards::slot::VShardLayout::new(cfg.vshards).expect("validated");
    cluster::check_not_removed(&cfg.data_dir)?;
    let security = cluster::secure::Security::load(&cfg)?;
    let client_tls = config::client_tls(&cfg)?;
    let users = acl::initial_users(&cfg)?;
    let mut cluster = if cfg.cluster_join.is_some() {
        let joined = cluster::join::load_or_join(&cfg, &security)?;
        cluster::Cluster::joined(&cfg, layout, &joined)?
    } else {
        cluster::Cluster::new(&cfg, layout)?
    };
    cluster.security = security;
    let node = Arc::new(node::Node::new(
        cfg,
        shutdown_tx,
        io_uring,
        Arc::new(cluster),
    ));
    *node.client_tls.lock().expect("client tls lock") = client_tls;
    node.cluster.acl.change(|u| *u = users);
    node.cluster
        .acl
        .set_log_max(node.config.lock().map_or(128, |c| c.acllog_max_len));
    let c = &node.cluster;
    // A node alone serves without its bus; it needs one only to be joined.
    if given_none && c.bus_addr(c.me).port() == 0 {
        tracing::warn!(
            "no cluster bus: the client port + 10000 is past 65535, so no node can join this one (set cluster-bus-addr)"
        );
    } else if let Err(e) = cluster::bus::start_acceptor(c.clone(), bind)
        .and_then(|()| control::start(node.clone(), bind, control_core))
    {
        if !given_none {
            return Err(e);
        }
        tracing::warn!(
            "{e}: no node can join this one until it restarts with a free cluster-bus-addr"
        );
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    for (id, &core) in cores.iter().enumerate() {
        let node = node.clone();
        let ready = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .stack_size(thread::STACK_BYTES)
            .spawn(move || thread::run(id, core, node, ready))
            .map_err(|e| format!("cannot start shard thread {id}: {e}"))?;
    }
    for _ in 0..cores.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard thread died during start-up".into()),
        }
    }
    let (data_dir, fsync, maxmemory) = {
        let c = node.config.lock().expect("config lock");
        (
            c.data_dir.display().to_string(),
            config::format_fsync(c.fsync),
            c.tunables.maxmemory,
        )
    };
    let mode = format!(
        "cluster member {} of {}",
        node.cluster.me,
        node.cluster.member_ids().len()
    );
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        shard_threads = cores.len(),
        cores = ?cores,
        vshards = node.layout.count(),
        driver = if io_uring { "io_uring" } else { "epoll" },
        %mode,
        node_id = meta.node_id,
        data_dir,
        fsync,
        maxmemory,
        "ready to accept connections"
    );
    let _ = shutdown_rx.recv();
    shutdown(&node);
    Ok(())
}

/// Stops accepting, gives in-flight replies up to `shutdown-timeout-ms`, then exits 0.
fn shutdown(node: &node::Node) {
    node.shutting_down.store(true, Ordering::Release);
    // The members hear at once that this node leaves (SWIM's `Left`): its groups fail over
    // without waiting out a suspicion.
    control::leave(&node.cluster, Duration::from_millis(200));
    node.stop_scripts();
    let budget = Duration::from_millis(node.live.get(|l| &l.shutdown_timeout_ms));
    let start = Instant::now();
    // Shard tickers notice the flag within 1/hz s and close their listeners; connections that are
    // mid-batch finish writing their replies. We wait until no batch is in flight and no hop is
    // queued, or until the budget runs out.
    let tick = Duration::from_millis(1000 / node.live.get(|l| &l.hz).max(1) + 10);
    std::thread::sleep(tick.min(budget));
    while start.elapsed() < budget {
        let queued: u64 = node.mailboxes.iter().map(|m| m.backlog() as u64).sum();
        let batches = node.sum(|s| &s.batches_in_flight);
        if queued == 0 && batches == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::info!(
        elapsed_ms = start.elapsed().as_millis() as u64,
        "shutdown complete"
    );
    std::process::exit(0);
}
