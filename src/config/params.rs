//! The parameter table (`PARAMS`): one entry per key, with its parser, its formatter and its help.

use super::*;

macro_rules! num_param {
    ($name:literal, $field:ident, $min:expr, $max:expr, $runtime:expr, $help:literal) => {
        Param {
            name: $name,
            help: $help,
            runtime: $runtime,
            set: |c, v| {
                c.$field = parse_u64(v, $min, $max)?;
                Ok(())
            },
            get: |c| c.$field.to_string(),
        }
    };
}

macro_rules! tunable_param {
    ($name:literal, $field:ident, $min:expr, $max:expr, $help:literal) => {
        Param {
            name: $name,
            help: $help,
            runtime: true,
            set: |c, v| {
                c.tunables.$field = parse_u64(v, $min, $max)? as _;
                Ok(())
            },
            get: |c| c.tunables.$field.to_string(),
        }
    };
}

/// An optional file's path (empty: none); `live` when CONFIG SET may change it.
macro_rules! path_param {
    ($name:literal, $field:ident, $help:literal) => {
        path_param!($name, $field, false, $help)
    };
    ($name:literal, $field:ident, live, $help:literal) => {
        path_param!($name, $field, true, $help)
    };
    ($name:literal, $field:ident, $runtime:expr, $help:literal) => {
        Param {
            name: $name,
            help: $help,
            runtime: $runtime,
            set: |c, v| {
                c.$field = (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
                Ok(())
            },
            get: |c| {
                c.$field
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            },
        }
    };
}

/// Text CONFIG SET may change (checked where it is used).
macro_rules! text_param {
    ($name:literal, $field:ident, $help:literal) => {
        Param {
            name: $name,
            help: $help,
            runtime: true,
            set: |c, v| {
                c.$field = v.trim().to_string();
                Ok(())
            },
            get: |c| c.$field.clone(),
        }
    };
}

fn set_list_max_listpack_size(c: &mut Config, v: &str) -> Result<(), String> {
    let n: i64 = v.trim().parse().map_err(|_| "not an integer".to_string())?;
    if n == 0 || !(-5..=1_000_000_000).contains(&n) {
        return Err("must be -5..-1 (a size) or a positive count".into());
    }
    c.tunables.list_max_listpack_size = n;
    Ok(())
}

/// The parameter table. Names are Redis-style (`proto-max-bulk-len`); the TOML file uses the same
/// keys, flags are `--name`, environment variables `SHARDLINE_NAME` with `_` for `-`.
pub static PARAMS: &[Param] = &[
    Param {
        name: "cluster-nodes",
        help: "Client addresses of every node of a replicated cluster, this one included, comma-separated, in the same order on every node (empty: standalone).",
        runtime: false,
        set: |c, v| {
            c.cluster_nodes = parse_addrs(v)?;
            Ok(())
        },
        get: |c| {
            c.cluster_nodes
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        },
    },
    Param {
        name: "cluster-join",
        help: "Client address of any member of a running cluster: this node asks it to join (once; the answer is kept in the data directory's cluster.conf, which later starts use). Excludes cluster-nodes.",
        runtime: false,
        set: |c, v| {
            c.cluster_join = parse_one_addr(v)?;
            Ok(())
        },
        get: |c| c.cluster_join.map(|a| a.to_string()).unwrap_or_default(),
    },
    Param {
        name: "cluster-bus-addr",
        help: "With cluster-join, or on a node started alone: where this node's cluster bus listens and peers reach it (empty: the client address with port + 10000).",
        runtime: false,
        set: |c, v| {
            c.cluster_bus_addr = parse_one_addr(v)?;
            Ok(())
        },
        get: |c| {
            c.cluster_bus_addr
                .map(|a| a.to_string())
                .unwrap_or_default()
        },
    },
    Param {
        name: "cluster-bus-nodes",
        help: "Cluster bus address of every member, in cluster-nodes order (this node's entry is where it listens); empty: each client port + 10000. Lets a proxy sit between nodes.",
        runtime: false,
        set: |c, v| {
            c.cluster_bus_nodes = parse_addrs(v)?;
            Ok(())
        },
        get: |c| {
            c.cluster_bus_nodes
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        },
    },
    Param {
        name: "cluster-routing",
        help: "moved (default: answer -MOVED as Redis Cluster does) or proxy (forward to the slot's leader, for clients that know one endpoint).",
        runtime: false,
        set: |c, v| {
            c.cluster_proxy = match v.trim().to_ascii_lowercase().as_str() {
                "moved" => false,
                "proxy" => true,
                _ => return Err("must be moved or proxy".into()),
            };
            Ok(())
        },
        get: |c| if c.cluster_proxy { "proxy" } else { "moved" }.into(),
    },
    Param {
        name: "cluster-rebalance",
        help: "yes: the metadata leader moves leaderships, then replicas, off nodes that lead more than their share of the load (default no; set it on every node: whichever leads the metadata decides); CONFIG SET takes effect at once.",
        runtime: true,
        set: |c, v| {
            c.cluster_rebalance = match v.trim().to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err("argument must be 'yes' or 'no'".into()),
            };
            Ok(())
        },
        get: |c| if c.cluster_rebalance { "yes" } else { "no" }.into(),
    },
    num_param!(
        "cluster-rebalance-moves",
        cluster_rebalance_moves,
        1,
        256,
        true,
        "The rebalancer's moves (leaderships and replicas) open at once (default 2)."
    ),
    num_param!(
        "cluster-rebalance-period-ms",
        cluster_rebalance_period_ms,
        100,
        3_600_000,
        true,
        "How often the rebalancer samples the load (default 10000); a node must stay 20% above the mean for 6 samples in a row before anything moves, and a vShard moved rests for 30."
    ),
    num_param!(
        "cluster-replicas",
        cluster_replicas,
        0,
        5,
        false,
        "Replicas of each vShard on distinct nodes: 1, 3 or 5 (0: min(3, nodes))."
    ),
    num_param!(
        "cluster-node-timeout-ms",
        cluster_node_timeout_ms,
        50,
        600_000,
        false,
        "A shard thread's bus connection silent this long takes its peer for down and its vShards fail over (default 5000): the backstop for a stuck thread on a node SWIM holds alive. SWIM judges nodes: a killed one is dead everywhere within about 3 s, one paused for 2 s is not."
    ),
    num_param!(
        "cluster-node-down-after-ms",
        cluster_node_down_after_ms,
        0,
        u64::MAX / 2,
        false,
        "A member SWIM has held dead this long is removed as CLUSTER FORGET removes it, and its replicas are made again on the others (0, the default: never). Never when a vShard it holds would be left without a live majority of its replicas: that is reported (INFO cluster_repair_blocked, the log)."
    ),
    Param {
        name: "control-core",
        help: "The core of the control thread (SWIM membership), which runs beside the shard threads (empty, the default: not pinned).",
        runtime: false,
        set: |c, v| {
            c.control_core = if v.trim().is_empty() {
                None
            } else {
                Some(parse_u64(v, 0, 4095)? as usize)
            };
            Ok(())
        },
        get: |c| c.control_core.map(|x| x.to_string()).unwrap_or_default(),
    },
    num_param!(
        "metrics-port",
        metrics_port,
        0,
        65535,
        false,
        "The port of the Prometheus endpoint (GET /metrics) on the bind address, served by the control thread (0, the default: none)."
    ),
    path_param!(
        "cluster-tls-ca-file",
        cluster_tls_ca_file,
        "The cluster CA's certificate (PEM). With cluster-tls-cert-file and cluster-tls-key-file, every node-to-node connection (the bus, bulk lanes) is mutual TLS 1.3: both ends present a certificate this CA signed that names their member (`shardline ctl certs` makes a development CA). Empty, the default: the links are in clear."
    ),
    path_param!(
        "cluster-tls-cert-file",
        cluster_tls_cert_file,
        "This node's certificate (PEM, the CA's signature; it names the member: n<port>.<ip with dashes>.shardline)."
    ),
    path_param!(
        "cluster-tls-key-file",
        cluster_tls_key_file,
        "This node's private key (PEM)."
    ),
    path_param!(
        "cluster-secret-file",
        cluster_secret_file,
        "The cluster's shared secret (a file of at least 64 hex digits, the same on every member; `shardline ctl certs` makes one): SWIM's datagrams carry an HMAC under it with a replay window, and CLUSTER JOIN a proof of it. Required with cluster TLS. Empty, the default: SWIM in clear and joins unproven."
    ),
    num_param!(
        "tls-port",
        tls_port,
        0,
        65535,
        false,
        "The clients' TLS port on the bind address (0, the default: none), served by the shard threads as the client port is; needs tls-cert-file and tls-key-file."
    ),
    path_param!(
        "tls-cert-file",
        tls_cert_file,
        live,
        "The TLS port's certificate (chain), PEM. CONFIG SET of any tls-* parameter reloads the files for new connections (the old configuration stays if they are refused)."
    ),
    path_param!(
        "tls-key-file",
        tls_key_file,
        live,
        "The TLS port's private key, PEM."
    ),
    path_param!(
        "tls-ca-cert-file",
        tls_ca_cert_file,
        live,
        "The CA clients' certificates are checked against (PEM), with tls-auth-clients yes or optional."
    ),
    Param {
        name: "tls-auth-clients",
        help: "Whether a TLS client must present a certificate the CA signed: yes (the default), optional (checked when presented), no.",
        runtime: true,
        set: |c, v| {
            use shardline_transport::tls::ClientAuth;
            c.tls_auth_clients = match v.trim().to_ascii_lowercase().as_str() {
                "yes" => ClientAuth::Required,
                "optional" => ClientAuth::Optional,
                "no" => ClientAuth::Off,
                _ => return Err("must be yes, optional or no".into()),
            };
            Ok(())
        },
        get: |c| {
            use shardline_transport::tls::ClientAuth;
            match c.tls_auth_clients {
                ClientAuth::Required => "yes",
                ClientAuth::Optional => "optional",
                ClientAuth::Off => "no",
            }
            .to_string()
        },
    },
    text_param!(
        "tls-protocols",
        tls_protocols,
        "The TLS versions offered, space-separated: TLSv1.2, TLSv1.3 (empty, the default: both)."
    ),
    text_param!(
        "tls-ciphersuites",
        tls_ciphersuites,
        "TLS 1.3 suites, colon-separated names (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256; empty, the default: all)."
    ),
    text_param!(
        "tls-ciphers",
        tls_ciphers,
        "TLS 1.2 suites, colon-separated OpenSSL or IANA names (ECDHE-RSA-AES128-GCM-SHA256, ...; empty or DEFAULT: all). OpenSSL's cipher expressions (HIGH, !aNULL) are not taken."
    ),
    Param {
        name: "fsync",
        help: "When the write-ahead log is fsynced: always (a write is on disk, on a quorum, before it is acknowledged; the default of a cluster of several nodes), batch (every fsync-batch-ms; a node alone defaults to batch every second), never (left to the OS).",
        runtime: true,
        set: |c, v| {
            c.fsync = parse_fsync(v, c.fsync_batch_ms)?;
            c.fsync_default = false;
            Ok(())
        },
        get: |c| format_fsync(c.fsync),
    },
    Param {
        name: "appendfsync",
        help: "Redis's name for fsync: always, everysec (batch every second), no (never).",
        runtime: true,
        set: |c, v| {
            c.fsync = parse_appendfsync(v)?;
            if let shardline_shards::wal::FsyncPolicy::Batch { interval_ms } = c.fsync {
                c.fsync_batch_ms = interval_ms;
            }
            c.fsync_default = false;
            Ok(())
        },
        get: |c| format_appendfsync(c.fsync).to_string(),
    },
    Param {
        name: "appendonly",
        help: "Always yes: every write is logged (the write-ahead log is the append-only file); appendfsync says when it is fsynced.",
        runtime: true,
        set: |_, v| {
            match v.trim().to_ascii_lowercase().as_str() {
            "yes" => Ok(()),
            "no" => Err("writes are always logged here (the write-ahead log is the node's append-only file); use appendfsync no to leave the flushing to the OS".into()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        }
        },
        get: |_| "yes".to_string(),
    },
    Param {
        name: "fsync-batch-ms",
        help: "With fsync batch: the longest time between fsyncs (default 10; 1000 for a node alone by default).",
        runtime: true,
        set: |c, v| {
            let ms = parse_u64(v, 1, 60_000)?;
            if let shardline_shards::wal::FsyncPolicy::Batch { interval_ms } = &mut c.fsync {
                *interval_ms = ms;
            }
            c.fsync_batch_ms = ms;
            Ok(())
        },
        get: |c| c.fsync_batch_ms.to_string(),
    },
    num_param!(
        "wal-segment-bytes",
        wal_segment_bytes,
        4096,
        1 << 40,
        false,
        "Size at which a write-ahead log segment is closed and a new one started (default 64mb)."
    ),
    num_param!(
        "snapshot-chunk-bytes",
        snapshot_chunk_bytes,
        1024,
        64 << 20,
        false,
        "Bytes of a snapshot per cluster-bus message when a replica catches up (default 1mb)."
    ),
    num_param!(
        "bulk-chunk-bytes",
        bulk_chunk_bytes,
        4 << 10,
        64 << 20,
        false,
        "Bytes per chunk of a snapshot's copy on a bulk lane (default 4mb)."
    ),
    num_param!(
        "bulk-window-bytes",
        bulk_window_bytes,
        64 << 10,
        1 << 30,
        false,
        "Bytes of a snapshot's copy sent and not yet acknowledged, per copy (default 8mb; at least one chunk)."
    ),
    Param {
        name: "cluster-bulk-transports",
        help: "What snapshot copies may travel on besides TCP, a list of rdma, quic and tcp (default rdma,tcp): a copy goes on the best its two nodes both offer, RDMA (where this build has the rdma feature and the machine a device), then QUIC, then TCP.",
        runtime: false,
        set: |c, v| {
            let (mut rdma, mut quic, mut tcp) = (false, false, false);
            for t in v.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                match t.as_str() {
                    "rdma" => rdma = true,
                    "quic" => quic = true,
                    "tcp" => tcp = true,
                    _ => return Err(format!("unknown transport '{t}' (rdma, quic, tcp)")),
                }
            }
            if !tcp {
                return Err("tcp must be listed: every node carries copies on TCP".into());
            }
            (c.bulk_rdma, c.bulk_quic) = (rdma, quic);
            Ok(())
        },
        get: |c| {
            let mut v = Vec::new();
            if c.bulk_rdma {
                v.push("rdma");
            }
            if c.bulk_quic {
                v.push("quic");
            }
            v.push("tcp");
            v.join(",")
        },
    },
    num_param!(
        "bulk-max-bytes-per-sec",
        bulk_max_bytes_per_sec,
        0,
        1 << 40,
        true,
        "Bytes a second this node's snapshot copies may send, shared by its shard threads (default 0: no cap); CONFIG SET takes effect at once."
    ),
    num_param!(
        "bulk-thread-share",
        bulk_thread_share,
        1,
        100,
        true,
        "The share of each shard thread's time, in percent, its snapshot copies may take, sending and receiving (default 25; 100: no limit); a thread that copies then serves other work for the rest. CONFIG SET takes effect at once."
    ),
    num_param!(
        "raft-log-memory-bytes",
        raft_log_memory_bytes,
        1 << 20,
        1 << 40,
        false,
        "Bytes of replicated log entries a shard thread keeps in memory; past it the largest log is compacted into a snapshot (default 64mb)."
    ),
    Param {
        name: "bind",
        help: "Address to listen on (default 127.0.0.1).",
        runtime: false,
        set: |c, v| {
            c.bind = v
                .trim()
                .parse()
                .map_err(|_| "not an IP address".to_string())?;
            Ok(())
        },
        get: |c| c.bind.to_string(),
    },
    Param {
        name: "port",
        help: "TCP port for clients (default 6379).",
        runtime: false,
        set: |c, v| {
            c.port = parse_u64(v, 1, 65535)? as u16;
            Ok(())
        },
        get: |c| c.port.to_string(),
    },
    Param {
        name: "cores",
        help: "Cores of the shard threads: 0, 0-3, 2,4,6 (default: every core this process may use).",
        runtime: false,
        set: |c, v| {
            c.cores = parse_cores(v)?;
            Ok(())
        },
        get: |c| format_cores(&c.cores),
    },
    Param {
        name: "data-dir",
        help: "Directory for the node's data (default ./shardline-data).",
        runtime: false,
        set: |c, v| {
            if v.is_empty() {
                return Err("must not be empty".into());
            }
            c.data_dir = PathBuf::from(v);
            Ok(())
        },
        get: |c| c.data_dir.display().to_string(),
    },
    Param {
        name: "requirepass",
        help: "Password clients must AUTH with; empty for none.",
        runtime: true,
        set: |c, v| {
            c.requirepass = if v.is_empty() {
                None
            } else {
                Some(v.to_string())
            };
            Ok(())
        },
        get: |c| c.requirepass.clone().unwrap_or_default(),
    },
    path_param!(
        "aclfile",
        aclfile,
        "ACL users' file: read at start and by ACL LOAD, written by ACL SAVE (not with 'user')."
    ),
    Param {
        name: "user",
        help: "An ACL user, as Redis's directive: 'alice on >password ~keys:* +@read' (repeat the flag; a list in TOML). Not printed back: ACL LIST shows users.",
        runtime: false,
        set: |c, v| {
            if !v.trim().is_empty() {
                c.users.push(v.trim().to_string());
            }
            Ok(())
        },
        get: |_| String::new(),
    },
    Param {
        name: "acl-pubsub-default",
        help: "The channels a new ACL user starts with: resetchannels (none, the default) or allchannels.",
        runtime: true,
        set: |c, v| {
            c.acl_pubsub_all = match v.trim().to_ascii_lowercase().as_str() {
                "resetchannels" => false,
                "allchannels" => true,
                _ => return Err("must be resetchannels or allchannels".into()),
            };
            Ok(())
        },
        get: |c| {
            if c.acl_pubsub_all {
                "allchannels"
            } else {
                "resetchannels"
            }
            .into()
        },
    },
    num_param!(
        "acllog-max-len",
        acllog_max_len,
        0,
        1 << 20,
        true,
        "ACL LOG's length (default 128)."
    ),
    Param {
        name: "log-level",
        help: "error, warn, info, debug or trace (default info).",
        runtime: false,
        set: |c, v| match v.to_ascii_lowercase().as_str() {
            l @ ("error" | "warn" | "info" | "debug" | "trace") => {
                c.log_level = l.to_string();
                Ok(())
            }
            _ => Err("must be error, warn, info, debug or trace".into()),
        },
        get: |c| c.log_level.clone(),
    },
    Param {
        name: "protected-mode",
        help: "Refuse to listen on a non-loopback address without requirepass (default yes).",
        runtime: false,
        set: |c, v| {
            c.protected_mode = parse_bool(v)?;
            Ok(())
        },
        get: |c| {
            if c.protected_mode {
                "yes".into()
            } else {
                "no".into()
            }
        },
    },
    Param {
        name: "vshards",
        help: "vShards per node, a power of two (default 256).",
        runtime: false,
        set: |c, v| {
            let n = parse_u64(v, 1, 16384)?;
            if !n.is_power_of_two() {
                return Err("must be a power of two".into());
            }
            c.vshards = n as u32;
            Ok(())
        },
        get: |c| c.vshards.to_string(),
    },
    num_param!(
        "maxclients",
        maxclients,
        1,
        1_000_000,
        true,
        "Most client connections at once (default 10000)."
    ),
    num_param!(
        "proto-max-bulk-len",
        proto_max_bulk_len,
        1024,
        1 << 32,
        true,
        "Largest bulk string a client may send (default 512mb)."
    ),
    num_param!(
        "max-multibulk-len",
        max_multibulk_len,
        1,
        1 << 24,
        true,
        "Most arguments in one command (default 1048576)."
    ),
    num_param!(
        "client-query-buffer-limit",
        client_query_buffer_limit,
        1 << 20,
        1 << 34,
        true,
        "Most unparsed bytes buffered for a client (default 1gb)."
    ),
    num_param!(
        "client-output-buffer-limit",
        client_output_buffer_limit,
        1 << 16,
        1 << 34,
        true,
        "Most reply bytes pending for a client before it is disconnected (default 256mb)."
    ),
    num_param!(
        "hop-queue-depth",
        hop_queue_depth,
        16,
        1 << 20,
        false,
        "Capacity of each shard thread's cross-thread job queue (default 4096)."
    ),
    num_param!(
        "shutdown-timeout-ms",
        shutdown_timeout_ms,
        0,
        600_000,
        true,
        "How long SIGTERM waits for in-flight replies (default 5000)."
    ),
    num_param!(
        "hz",
        hz,
        1,
        500,
        true,
        "Active-expiry passes per second on each shard thread (default 10)."
    ),
    num_param!(
        "active-expire-keys-per-pass",
        active_expire_keys_per_pass,
        1,
        1 << 20,
        true,
        "Keys with a TTL examined per active-expiry pass (default 200)."
    ),
    Param {
        name: "notify-keyspace-events",
        help: "Keyspace notifications to publish, as Redis's flags (K, E, g$lshzxetd, A, n; default none).",
        runtime: true,
        set: |c, v| {
            c.tunables.notify_keyspace_events = notify::parse_flags(v).ok_or_else(|| {
                "unknown flag (use K, E, g, $, l, s, h, z, x, e, t, m, d, n, A)".to_string()
            })?;
            Ok(())
        },
        get: |c| notify::format_flags(c.tunables.notify_keyspace_events),
    },
    Param {
        name: "maxmemory",
        help: "Memory limit for the node (bytes, or 100mb, 2gb; 0: none). Over it, write commands evict keys by maxmemory-policy or are refused with OOM.",
        runtime: true,
        set: |c, v| {
            c.tunables.maxmemory = parse_size(v)?;
            Ok(())
        },
        get: |c| c.tunables.maxmemory.to_string(),
    },
    Param {
        name: "maxmemory-policy",
        help: "noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random or volatile-ttl (default noeviction).",
        runtime: true,
        set: |c, v| {
            c.tunables.maxmemory_policy = Policy::parse(v.trim()).ok_or_else(|| {
                "must be noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random or volatile-ttl".to_string()
            })?;
            Ok(())
        },
        get: |c| c.tunables.maxmemory_policy.name().to_string(),
    },
    Param {
        name: "slowlog-log-slower-than",
        help: "Microseconds a command must run to enter SLOWLOG (default 10000; 0: every command; negative: none, and commands are not timed). Each shard thread keeps its own log; SLOWLOG GET merges them. CONFIG SET takes effect at once.",
        runtime: true,
        set: |c, v| {
            let n: i64 = v.trim().parse().map_err(|_| "not an integer".to_string())?;
            c.tunables.slowlog_log_slower_than = n;
            Ok(())
        },
        get: |c| c.tunables.slowlog_log_slower_than.to_string(),
    },
    tunable_param!(
        "slowlog-max-len",
        slowlog_max_len,
        0,
        1 << 20,
        "Entries each shard thread's SLOWLOG keeps, the newest (default 128)."
    ),
    tunable_param!(
        "latency-monitor-threshold",
        latency_monitor_threshold,
        0,
        1 << 40,
        "Milliseconds a command must run to be a LATENCY event (`command`, or `fast-command` for O(1) ones; default 0: off). CONFIG SET takes effect at once."
    ),
    tunable_param!(
        "busy-reply-threshold",
        busy_reply_ms,
        0,
        1 << 40,
        "Milliseconds a script runs before its shard thread is busy: jobs for that thread from the others get -BUSY, and SCRIPT KILL or FUNCTION KILL (sent to another thread) stops a script that has not written (default 5000)."
    ),
    tunable_param!(
        "lua-time-limit",
        busy_reply_ms,
        0,
        1 << 40,
        "Alias of busy-reply-threshold."
    ),
    tunable_param!(
        "script-stop-ms",
        script_stop_ms,
        0,
        1 << 40,
        "Milliseconds after which a script that has not written is stopped by the node itself (the clients of its own shard thread cannot reach SCRIPT KILL while it runs); 0: never (default 60000)."
    ),
    tunable_param!(
        "maxmemory-samples",
        maxmemory_samples,
        1,
        64,
        "Keys sampled per eviction (default 5)."
    ),
    tunable_param!(
        "lfu-log-factor",
        lfu_log_factor,
        0,
        1_000_000,
        "How slowly the LFU counter grows (default 10)."
    ),
    tunable_param!(
        "lfu-decay-time",
        lfu_decay_time,
        0,
        1_000_000,
        "Minutes per step of LFU counter decay; 0 never decays (default 1)."
    ),
    tunable_param!(
        "hash-max-listpack-entries",
        hash_max_listpack_entries,
        0,
        1_000_000_000,
        "Most fields of a hash kept packed (listpack) (default 128)."
    ),
    tunable_param!(
        "hash-max-ziplist-entries",
        hash_max_listpack_entries,
        0,
        1_000_000_000,
        "Alias of hash-max-listpack-entries."
    ),
    tunable_param!(
        "hash-max-listpack-value",
        hash_max_listpack_value,
        0,
        1_000_000_000,
        "Longest field or value, in bytes, of a packed hash (default 64)."
    ),
    tunable_param!(
        "hash-max-ziplist-value",
        hash_max_listpack_value,
        0,
        1_000_000_000,
        "Alias of hash-max-listpack-value."
    ),
    tunable_param!(
        "set-max-intset-entries",
        set_max_intset_entries,
        0,
        1_000_000_000,
        "Most members of an all-integer set kept as an intset (default 512)."
    ),
    tunable_param!(
        "set-max-listpack-entries",
        set_max_listpack_entries,
        0,
        1_000_000_000,
        "Most members of a set kept packed (default 128)."
    ),
    tunable_param!(
        "set-max-listpack-value",
        set_max_listpack_value,
        0,
        1_000_000_000,
        "Longest member, in bytes, of a packed set (default 64)."
    ),
    tunable_param!(
        "zset-max-listpack-entries",
        zset_max_listpack_entries,
        0,
        1_000_000_000,
        "Most members of a sorted set kept packed (default 128)."
    ),
    tunable_param!(
        "zset-max-ziplist-entries",
        zset_max_listpack_entries,
        0,
        1_000_000_000,
        "Alias of zset-max-listpack-entries."
    ),
    tunable_param!(
        "zset-max-listpack-value",
        zset_max_listpack_value,
        0,
        1_000_000_000,
        "Longest member, in bytes, of a packed sorted set (default 64)."
    ),
    tunable_param!(
        "zset-max-ziplist-value",
        zset_max_listpack_value,
        0,
        1_000_000_000,
        "Alias of zset-max-listpack-value."
    ),
    Param {
        name: "list-max-listpack-size",
        help: "Most entries (positive) or bytes (-1..-5: 4kb..64kb) of a packed list (default -2).",
        runtime: true,
        set: set_list_max_listpack_size,
        get: |c| c.tunables.list_max_listpack_size.to_string(),
    },
    Param {
        name: "list-max-ziplist-size",
        help: "Alias of list-max-listpack-size.",
        runtime: true,
        set: set_list_max_listpack_size,
        get: |c| c.tunables.list_max_listpack_size.to_string(),
    },
    tunable_param!(
        "stream-node-max-entries",
        stream_node_max_entries,
        0,
        i64::MAX as u64,
        "Most entries of a stream node, deleted ones included (0: no limit; default 100). Nodes are what approximate (~) trimming removes whole."
    ),
    tunable_param!(
        "stream-node-max-bytes",
        stream_node_max_bytes,
        0,
        i64::MAX as u64,
        "Most bytes of a stream node's listpack (0: 1 GiB; default 4096), as Redis lays it out."
    ),
];
