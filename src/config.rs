//! Configuration: one table of parameters serves the TOML file, `SHARDLINE_*` environment
//! variables, command-line flags, `--print-config` and `CONFIG GET/SET`. Precedence, lowest
//! first: built-in defaults, the TOML file (`--config`), the environment, the command line.
//! Every value is validated once, into typed fields; a bad one is rejected with the key, the
//! value and the reason.

use shardline_shards::db::Tunables;
use shardline_shards::evict::Policy;
use shardline_shards::notify;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The node's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// The cores of the shard threads, one thread each, in order.
    pub cores: Vec<usize>,
    pub data_dir: PathBuf,
    pub requirepass: Option<String>,
    pub log_level: String,
    /// Refuse a non-loopback bind without `requirepass`.
    pub protected_mode: bool,
    /// vShards per node, a power of two; fixed when the data directory is created.
    pub vshards: u32,
    pub maxclients: u64,
    pub proto_max_bulk_len: u64,
    pub max_multibulk_len: u64,
    pub client_query_buffer_limit: u64,
    pub client_output_buffer_limit: u64,
    /// Capacity of each shard thread's cross-thread job queue.
    pub hop_queue_depth: u64,
    pub shutdown_timeout_ms: u64,
    /// Active-expiry passes per second per shard thread.
    pub hz: u64,
    /// Keys with a TTL examined per active-expiry pass.
    pub active_expire_keys_per_pass: u64,
    /// What the command layer reads: notifications, encoding thresholds, memory policy.
    pub tunables: Tunables,
    /// The client addresses of every node of a replicated cluster, this one included, in the
    /// same order on every node (a node's Raft id is its 1-based position). Empty: standalone.
    pub cluster_nodes: Vec<SocketAddr>,
    /// Where to reach each member's cluster bus, in `cluster_nodes` order (this node's own entry
    /// is where it listens). Empty: each member's client port + 10000.
    pub cluster_bus_nodes: Vec<SocketAddr>,
    /// `cluster-join`: a member to ask to join a running cluster.
    pub cluster_join: Option<SocketAddr>,
    /// `cluster-bus-addr`: this node's bus address when it joins.
    pub cluster_bus_addr: Option<SocketAddr>,
    /// Replicas per vShard; 0 picks min(3, nodes).
    pub cluster_replicas: u64,
    /// `cluster-routing proxy`: forward a command to its slot's leader instead of `-MOVED`.
    pub cluster_proxy: bool,
    /// A peer that sends nothing for this long is taken as down (its leaders fail over).
    pub cluster_node_timeout_ms: u64,
    /// When the write-ahead log is fsynced: always (before a write is acknowledged), batch
    /// (every `fsync-batch-ms`), never.
    pub fsync: shardline_shards::wal::FsyncPolicy,
    pub wal_segment_bytes: u64,
    pub fsync_batch_ms: u64,
    /// Bytes of a vShard snapshot per cluster-bus message when a replica catches up by
    /// snapshot (one chunk in flight per replica).
    pub snapshot_chunk_bytes: u64,
}

impl Config {
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The replication factor this configuration asks for, once validated.
    pub fn replicas(&self) -> usize {
        match self.cluster_replicas {
            0 => self.cluster_nodes.len().min(3),
            n => n as usize,
        }
    }
}

/// One address, or none for an empty value.
fn parse_one_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    match parse_addrs(v)?[..] {
        [] => Ok(None),
        [a] => Ok(Some(a)),
        _ => Err("one address, not a list".into()),
    }
}

fn parse_addrs(v: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let a: SocketAddr = part
            .parse()
            .map_err(|_| format!("'{part}' is not an address like 127.0.0.1:7001"))?;
        if out.contains(&a) {
            return Err(format!("'{part}' is listed twice"));
        }
        out.push(a);
    }
    Ok(out)
}

fn parse_fsync(v: &str, interval_ms: u64) -> Result<shardline_shards::wal::FsyncPolicy, String> {
    use shardline_shards::wal::FsyncPolicy;
    match v.trim().to_ascii_lowercase().as_str() {
        "always" => Ok(FsyncPolicy::Always),
        "batch" => Ok(FsyncPolicy::Batch { interval_ms }),
        "never" => Ok(FsyncPolicy::Never),
        _ => Err("must be always, batch or never".into()),
    }
}

fn format_fsync(p: shardline_shards::wal::FsyncPolicy) -> String {
    use shardline_shards::wal::FsyncPolicy;
    match p {
        FsyncPolicy::Always => "always".into(),
        FsyncPolicy::Batch { .. } => "batch".into(),
        FsyncPolicy::Never => "never".into(),
    }
}

/// One configuration parameter.
pub struct Param {
    pub name: &'static str,
    pub help: &'static str,
    /// Whether `CONFIG SET` may change it while running.
    pub runtime: bool,
    set: fn(&mut Config, &str) -> Result<(), String>,
    get: fn(&Config) -> String,
}

fn parse_u64(v: &str, min: u64, max: u64) -> Result<u64, String> {
    let n = parse_size(v)?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

/// A number with an optional unit suffix as Redis accepts them: `k`, `kb`, `m`, `mb`, `g`, `gb`
/// (k = 1000, kb = 1024).
pub fn parse_size(v: &str) -> Result<u64, String> {
    let l = v.trim().to_ascii_lowercase();
    let (digits, mul) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
    ]
    .iter()
    .find_map(|(s, m)| l.strip_suffix(s).map(|d| (d.to_string(), *m)))
    .unwrap_or((l.clone(), 1));
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a non-negative integer".to_string())?;
    n.checked_mul(mul).ok_or_else(|| "too large".to_string())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err("must be yes or no".into()),
    }
}

/// Parses a core list: `0`, `0-3`, `2,4,6`, `0-1,4`.
pub fn parse_cores(v: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("'{part}' is not a core number or range like 0-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cores.extend(a..=b);
            }
            None => cores.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cores.is_empty() {
        return Err("names no core".into());
    }
    let mut sorted = cores.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != cores.len() {
        return Err("names a core twice".into());
    }
    Ok(cores)
}

fn format_cores(cores: &[usize]) -> String {
    cores
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

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
        help: "With cluster-join: where this node's cluster bus listens and peers reach it (empty: the client address with port + 10000).",
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
        "A peer silent this long is taken as down and its vShards fail over (default 1000)."
    ),
    Param {
        name: "fsync",
        help: "When the write-ahead log is fsynced: always (default; a write is on disk on a quorum before it is acknowledged), batch (every fsync-batch-ms), never.",
        runtime: false,
        set: |c, v| {
            c.fsync = parse_fsync(v, c.fsync_batch_ms)?;
            Ok(())
        },
        get: |c| format_fsync(c.fsync),
    },
    Param {
        name: "fsync-batch-ms",
        help: "With fsync batch: the longest time between fsyncs (default 10).",
        runtime: false,
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
        1,
        999_999_999,
        "Stream entries per node: the unit approximate (~) trimming removes (default 100)."
    ),
];

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6379,
            cores: vec![0],
            data_dir: PathBuf::from("./shardline-data"),
            requirepass: None,
            log_level: "info".into(),
            protected_mode: true,
            vshards: 256,
            maxclients: 10_000,
            proto_max_bulk_len: 512 << 20,
            max_multibulk_len: 1 << 20,
            client_query_buffer_limit: 1 << 30,
            client_output_buffer_limit: 256 << 20,
            hop_queue_depth: 4096,
            shutdown_timeout_ms: 5000,
            hz: 10,
            active_expire_keys_per_pass: 200,
            tunables: Tunables::default(),
            cluster_nodes: Vec::new(),
            cluster_join: None,
            cluster_bus_addr: None,
            cluster_bus_nodes: Vec::new(),
            cluster_replicas: 0,
            cluster_proxy: false,
            cluster_node_timeout_ms: 1000,
            fsync: shardline_shards::wal::FsyncPolicy::Always,
            wal_segment_bytes: 64 << 20,
            fsync_batch_ms: 10,
            snapshot_chunk_bytes: 1 << 20,
        }
    }
}

pub fn find(name: &str) -> Option<&'static Param> {
    let n = name.to_ascii_lowercase().replace('_', "-");
    PARAMS.iter().find(|p| p.name == n)
}

impl Param {
    pub fn set(&self, c: &mut Config, v: &str) -> Result<(), String> {
        (self.set)(c, v).map_err(|why| format!("invalid value '{v}' for '{}': {why}", self.name))
    }

    pub fn get(&self, c: &Config) -> String {
        (self.get)(c)
    }
}

/// What the command line asked for besides configuration.
#[derive(Debug, Default)]
pub struct Cli {
    pub print_config: bool,
    pub help: bool,
}

/// Builds the configuration from defaults, the TOML file, the environment and `args` (without
/// the program name).
pub fn load(args: &[String], env: &[(String, String)]) -> Result<(Config, Cli), String> {
    let mut cfg = Config {
        cores: default_cores(),
        ..Config::default()
    };
    let mut cli = Cli::default();
    // First pass: flags, to find --config and the actions; values are applied after the file.
    let mut flags: Vec<(&'static Param, String)> = Vec::new();
    let mut config_file: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (name, inline) = match a.strip_prefix("--") {
            Some(rest) => match rest.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (rest.to_string(), None),
            },
            None if i == 0 && !a.starts_with('-') => {
                config_file = Some(a.clone());
                i += 1;
                continue;
            }
            None => {
                return Err(format!(
                    "unexpected argument '{a}' (flags look like --port 6380; see --help)"
                ));
            }
        };
        match name.as_str() {
            "print-config" => cli.print_config = true,
            "help" => cli.help = true,
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag --{name} needs a value"))?
                    }
                };
                if name == "config" {
                    config_file = Some(value);
                } else {
                    let p =
                        find(&name).ok_or_else(|| format!("unknown flag --{name} (see --help)"))?;
                    flags.push((p, value));
                }
            }
        }
        i += 1;
    }
    if let Some(path) = &config_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {path}: {e}"))?;
        apply_toml(&mut cfg, &text).map_err(|e| format!("config file {path}: {e}"))?;
    }
    for (k, v) in env {
        if let Some(name) = k.strip_prefix("SHARDLINE_") {
            let p = find(name).ok_or_else(|| format!("unknown environment variable {k}"))?;
            p.set(&mut cfg, v)
                .map_err(|e| format!("environment {k}: {e}"))?;
        }
    }
    for (p, v) in flags {
        p.set(&mut cfg, &v)
            .map_err(|e| format!("flag --{}: {e}", p.name))?;
    }
    validate(&cfg)?;
    Ok((cfg, cli))
}

/// Applies a TOML document whose top-level keys are parameter names.
pub fn apply_toml(cfg: &mut Config, text: &str) -> Result<(), String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    for (k, v) in table {
        let p = find(&k).ok_or_else(|| format!("unknown key '{k}'"))?;
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => if b { "yes" } else { "no" }.to_string(),
            toml::Value::Array(a) => a
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(format!("key '{k}': unsupported value {other}")),
        };
        p.set(cfg, &s)?;
    }
    Ok(())
}

/// Checks that concern several parameters or the machine.
pub fn validate(cfg: &Config) -> Result<(), String> {
    if cfg.protected_mode && !cfg.bind.is_loopback() && cfg.requirepass.is_none() {
        return Err(format!(
            "refusing to listen on non-loopback address {} without requirepass (protected mode): set requirepass, or protected-mode no if the network is trusted",
            cfg.bind
        ));
    }
    if cfg.cluster_join.is_some() {
        if !cfg.cluster_nodes.is_empty() {
            return Err("'cluster-join' and 'cluster-nodes' exclude each other: a node either starts a cluster from a list or joins a running one".into());
        }
        if cfg.listen_addr().ip().is_unspecified() {
            return Err(format!(
                "invalid value '{}' for 'bind' with 'cluster-join': members reach a node at the address it listens on, so bind a specific address",
                cfg.bind
            ));
        }
        if cfg.cluster_bus_addr.is_none() && cfg.port > 65535 - 10000 {
            return Err("with 'cluster-join' the cluster bus listens on the client port + 10000, so the port must be at most 55535 (or set cluster-bus-addr)".into());
        }
    } else if cfg.cluster_bus_addr.is_some() {
        return Err("'cluster-bus-addr' is for a node that joins with 'cluster-join'; a listed cluster takes cluster-bus-nodes".into());
    }
    if !cfg.cluster_nodes.is_empty() {
        let me = cfg.listen_addr();
        if !cfg.cluster_nodes.contains(&me) {
            return Err(format!(
                "invalid value for 'cluster-nodes': this node's address {me} (bind:port) is not in the list; every node must be listed by the address it listens on"
            ));
        }
        if !cfg.cluster_bus_nodes.is_empty()
            && cfg.cluster_bus_nodes.len() != cfg.cluster_nodes.len()
        {
            return Err(format!(
                "invalid value for 'cluster-bus-nodes': it lists {} addresses and cluster-nodes {}; give one per member, in the same order",
                cfg.cluster_bus_nodes.len(),
                cfg.cluster_nodes.len()
            ));
        }
        let rf = cfg.replicas();
        if !matches!(rf, 1 | 3 | 5) || rf > cfg.cluster_nodes.len() {
            return Err(format!(
                "invalid value '{}' for 'cluster-replicas': a replication factor must be 1, 3 or 5 and at most the {} listed nodes",
                cfg.cluster_replicas,
                cfg.cluster_nodes.len()
            ));
        }
        if let Some(a) = cfg
            .cluster_nodes
            .iter()
            .find(|a| cfg.cluster_bus_nodes.is_empty() && a.port() > 65535 - 10000)
        {
            return Err(format!(
                "invalid value for 'cluster-nodes': {a}: the cluster bus listens on the client port + 10000, so client ports must be at most 55535"
            ));
        }
    }
    if let Ok(allowed) = shardline_transport::cpu::allowed_cpus() {
        if let Some(c) = cfg.cores.iter().find(|c| !allowed.contains(c)) {
            return Err(format!(
                "invalid value '{}' for 'cores': core {c} is not available to this process (available: {})",
                format_cores(&cfg.cores),
                format_cores(&allowed)
            ));
        }
    }
    Ok(())
}

/// Every core in this process's affinity mask: a thread-per-core server uses the machine it is
/// given; `taskset` or `--cores` narrow it.
pub fn default_cores() -> Vec<usize> {
    shardline_transport::cpu::allowed_cpus()
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec![0])
}

/// The effective configuration as a TOML document.
pub fn to_toml(cfg: &Config) -> String {
    let mut s = String::new();
    for p in PARAMS {
        s.push_str(&format!("# {}\n{} = {:?}\n", p.help, p.name, p.get(cfg)));
    }
    s
}

pub fn usage() -> String {
    let mut s = String::from(
        "shardline [CONFIG.toml] [--config FILE] [--NAME VALUE ...] [--print-config]\n\nParameters (also SHARDLINE_NAME in the environment, NAME = value in the TOML file):\n",
    );
    for p in PARAMS {
        s.push_str(&format!("  --{:<28} {}\n", p.name, p.help));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_override_environment_which_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("shardline-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "port = 7000\nhz = 20\nrequirepass = \"file\"\n").unwrap();
        let env = vec![
            ("SHARDLINE_PORT".to_string(), "7001".to_string()),
            ("SHARDLINE_HZ".to_string(), "30".to_string()),
        ];
        let (c, _) = load(
            &args(&format!("--config {} --port 7002", file.display())),
            &env,
        )
        .unwrap();
        assert_eq!(c.port, 7002);
        assert_eq!(c.hz, 30);
        assert_eq!(c.requirepass.as_deref(), Some("file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_values_name_the_key_the_value_and_the_reason() {
        let e = load(&args("--port 70000"), &[]).unwrap_err();
        assert_eq!(
            e,
            "flag --port: invalid value '70000' for 'port': must be between 1 and 65535"
        );
        let e = load(&args("--vshards 300"), &[]).unwrap_err();
        assert!(e.contains("'300'") && e.contains("power of two"), "{e}");
        let e = load(&args("--cores 5-2"), &[]).unwrap_err();
        assert!(e.contains("cores"), "{e}");
        let e = load(&args("--nosuch 1"), &[]).unwrap_err();
        assert!(e.contains("unknown flag --nosuch"), "{e}");
        let e = load(&args("--bind 0.0.0.0"), &[]).unwrap_err();
        assert!(e.contains("protected mode"), "{e}");
        assert!(load(&args("--bind 0.0.0.0 --requirepass x"), &[]).is_ok());
        assert!(
            load(&args("--cores 100000"), &[])
                .unwrap_err()
                .contains("not available")
        );
    }

    #[test]
    fn core_lists_and_sizes_parse() {
        assert_eq!(parse_cores("0").unwrap(), vec![0]);
        assert_eq!(parse_cores("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cores("1,1").is_err());
        assert!(parse_cores("").is_err());
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn print_config_round_trips_through_toml() {
        let (c, _) = load(&args("--port 7005 --hz 50"), &[]).unwrap();
        let mut d = Config::default();
        apply_toml(&mut d, &to_toml(&c)).unwrap();
        assert_eq!(d.port, 7005);
        assert_eq!(d.hz, 50);
        assert_eq!(d.cores, c.cores);
    }
}
