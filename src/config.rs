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

pub mod inert;
mod params;

/// The node's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// The cores of the shard threads, one thread each, in order.
    pub cores: Vec<usize>,
    pub data_dir: PathBuf,
    pub requirepass: Option<String>,
    /// ACL users' file (`aclfile`): read at start and by ACL LOAD, written by ACL SAVE.
    pub aclfile: Option<PathBuf>,
    /// `user` lines of the configuration (Redis's `user <name> <rules...>` directive).
    pub users: Vec<String>,
    /// ACL LOG's length (`acllog-max-len`).
    pub acllog_max_len: u64,
    /// `acl-pubsub-default allchannels`: new users start with every channel.
    pub acl_pubsub_all: bool,
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
    /// Values CONFIG SET gave parameters that have no effect here (`inert.rs`).
    pub inert: std::collections::BTreeMap<&'static str, String>,
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
    /// A shard thread's bus connection silent this long takes its peer for down (its leaders
    /// fail over): the backstop for a peer whose node SWIM holds alive but whose thread is
    /// stuck. SWIM (the control thread) judges nodes.
    pub cluster_node_timeout_ms: u64,
    /// A member SWIM holds dead this long is removed and its replicas made again (0: never).
    pub cluster_node_down_after_ms: u64,
    /// The control thread's core (`None`: not pinned, the OS places it).
    pub control_core: Option<usize>,
    /// The Prometheus endpoint's port on `bind` (0: none), served by the control thread.
    pub metrics_port: u64,
    /// The cluster's TLS (all three or none): the CA, this node's certificate and its key.
    pub cluster_tls_ca_file: Option<PathBuf>,
    pub cluster_tls_cert_file: Option<PathBuf>,
    pub cluster_tls_key_file: Option<PathBuf>,
    /// The cluster's shared secret (SWIM's HMAC, joins' proofs).
    pub cluster_secret_file: Option<PathBuf>,
    /// The clients' TLS port (0: none) and what it is made of, as Redis's `tls-*`
    /// parameters (`client_tls`).
    pub tls_port: u64,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_cert_file: Option<PathBuf>,
    pub tls_auth_clients: shardline_transport::tls::ClientAuth,
    pub tls_protocols: String,
    pub tls_ciphersuites: String,
    pub tls_ciphers: String,
    /// When the write-ahead log is fsynced: always (before a write is acknowledged), batch
    /// (every `fsync-batch-ms`), never.
    pub fsync: shardline_shards::wal::FsyncPolicy,
    /// `fsync` was not given: a node alone uses `batch` every second (Redis's `appendfsync
    /// everysec`), a cluster of several `always` (`resolve_fsync`).
    pub fsync_default: bool,
    pub wal_segment_bytes: u64,
    pub fsync_batch_ms: u64,
    /// Bytes of a vShard snapshot per cluster-bus message when a replica catches up by
    /// snapshot (one chunk in flight per replica).
    pub snapshot_chunk_bytes: u64,
    /// Bytes per chunk of a snapshot's copy on a bulk lane, and bytes sent and not yet
    /// acknowledged per copy (`migrate::session::Limits`).
    pub bulk_chunk_bytes: u64,
    pub bulk_window_bytes: u64,
    /// Bytes a second this node's snapshot copies may send, over all its shard threads (0: no
    /// cap).
    pub bulk_max_bytes_per_sec: u64,
    /// The share of a shard thread's time its copies may take, in percent
    /// (`bulk-thread-share`, default 25; 100: no limit).
    pub bulk_thread_share: u64,
    /// The load-based rebalancer (`cluster-rebalance`), the moves it may have open at once and
    /// how often it samples the load.
    pub cluster_rebalance: bool,
    /// `cluster-bulk-transports` names RDMA: lanes use it with peers that do too (where the
    /// build has the `rdma` feature and the machine a device).
    pub bulk_rdma: bool,
    /// `cluster-bulk-transports` names QUIC: lanes use it with peers that do too (where
    /// neither end offered RDMA both have).
    pub bulk_quic: bool,
    pub cluster_rebalance_moves: u64,
    pub cluster_rebalance_period_ms: u64,
    /// Bytes of Raft log entries a shard thread keeps in memory, beyond which its largest log
    /// is compacted into a snapshot.
    pub raft_log_memory_bytes: u64,
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

/// Redis's `appendfsync` names for the policies: `everysec` is `batch` every second.
fn parse_appendfsync(v: &str) -> Result<shardline_shards::wal::FsyncPolicy, String> {
    use shardline_shards::wal::FsyncPolicy;
    match v.trim().to_ascii_lowercase().as_str() {
        "always" => Ok(FsyncPolicy::Always),
        "everysec" => Ok(FsyncPolicy::Batch {
            interval_ms: EVERYSEC_MS,
        }),
        "no" => Ok(FsyncPolicy::Never),
        _ => Err("argument(s) must be one of the following: always, everysec, no".into()),
    }
}

/// `appendfsync everysec`: the log is fsynced at most this long after a write.
pub const EVERYSEC_MS: u64 = 1000;

fn format_appendfsync(p: shardline_shards::wal::FsyncPolicy) -> &'static str {
    use shardline_shards::wal::FsyncPolicy;
    match p {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Batch { .. } => "everysec",
        FsyncPolicy::Never => "no",
    }
}

/// A node given no cluster (neither `cluster-nodes` nor `cluster-join`) is a cluster of
/// itself: `cluster-nodes` is its own address and its bus listens at `cluster-bus-addr`, or
/// on the client port + 10000 (port 0, none, past 65535: it then serves, but cannot be
/// joined until it restarts with `cluster-bus-addr`).
pub fn make_alone(cfg: &mut Config) {
    let me = cfg.listen_addr();
    let bus = cfg
        .cluster_bus_addr
        .unwrap_or_else(|| SocketAddr::new(me.ip(), me.port().checked_add(10_000).unwrap_or(0)));
    cfg.cluster_nodes = vec![me];
    cfg.cluster_bus_nodes = vec![bus];
}

/// The fsync policy when none was given (`fsync_default`): a node alone fsyncs its log every
/// second, as Redis's default `appendfsync everysec` (a machine crash may lose the last second
/// of writes; a crash of the process alone loses nothing), a node of a cluster of several
/// before it acknowledges (a quorum's disks hold every acknowledged write).
pub fn resolve_fsync(cfg: &mut Config, alone: bool) {
    if cfg.fsync_default && alone {
        cfg.fsync = shardline_shards::wal::FsyncPolicy::Batch {
            interval_ms: EVERYSEC_MS,
        };
    }
}

/// The fsync policy as one number, for `Live`: 0 always, 1 never, else the batch interval
/// in ms plus 2.
pub fn fsync_code(p: shardline_shards::wal::FsyncPolicy) -> u64 {
    use shardline_shards::wal::FsyncPolicy;
    match p {
        FsyncPolicy::Always => 0,
        FsyncPolicy::Never => 1,
        FsyncPolicy::Batch { interval_ms } => interval_ms + 2,
    }
}

pub fn fsync_of_code(code: u64) -> shardline_shards::wal::FsyncPolicy {
    use shardline_shards::wal::FsyncPolicy;
    match code {
        0 => FsyncPolicy::Always,
        1 => FsyncPolicy::Never,
        n => FsyncPolicy::Batch { interval_ms: n - 2 },
    }
}

pub fn format_fsync(p: shardline_shards::wal::FsyncPolicy) -> String {
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

pub use params::PARAMS;

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6379,
            cores: vec![0],
            data_dir: PathBuf::from("./shardline-data"),
            requirepass: None,
            aclfile: None,
            users: Vec::new(),
            acllog_max_len: 128,
            acl_pubsub_all: false,
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
            inert: Default::default(),
            cluster_nodes: Vec::new(),
            cluster_join: None,
            cluster_bus_addr: None,
            cluster_bus_nodes: Vec::new(),
            cluster_replicas: 0,
            cluster_proxy: false,
            cluster_node_timeout_ms: 5000,
            control_core: None,
            metrics_port: 0,
            cluster_tls_ca_file: None,
            cluster_tls_cert_file: None,
            cluster_tls_key_file: None,
            cluster_secret_file: None,
            tls_port: 0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_cert_file: None,
            tls_auth_clients: shardline_transport::tls::ClientAuth::Required,
            tls_protocols: String::new(),
            tls_ciphersuites: String::new(),
            tls_ciphers: String::new(),
            cluster_node_down_after_ms: 0,
            fsync: shardline_shards::wal::FsyncPolicy::Always,
            fsync_default: true,
            wal_segment_bytes: 64 << 20,
            fsync_batch_ms: 10,
            snapshot_chunk_bytes: 1 << 20,
            bulk_chunk_bytes: 4 << 20,
            bulk_window_bytes: 8 << 20,
            bulk_max_bytes_per_sec: 0,
            bulk_thread_share: 25,
            cluster_rebalance: false,
            bulk_rdma: true,
            bulk_quic: false,
            cluster_rebalance_moves: 2,
            cluster_rebalance_period_ms: 10_000,
            raft_log_memory_bytes: 64 << 20,
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
    pub version: bool,
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
            "version" => cli.version = true,
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
        if let toml::Value::Array(lines) = &v
            && k == "user"
        {
            // One element per user: `user = ["alice on >pw ~* +@all", ...]`.
            for l in lines {
                let l = l
                    .as_str()
                    .ok_or_else(|| format!("key 'user': {l} is not a string"))?;
                p.set(cfg, l)?;
            }
            continue;
        }
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

/// The clients' TLS port's server configuration (`None` without `tls-port`), read from the
/// files the `tls-*` parameters name; an error names the parameter, the file and what is
/// wrong with it.
pub fn client_tls(
    cfg: &Config,
) -> Result<Option<std::sync::Arc<shardline_transport::tls::ServerConfig>>, String> {
    if cfg.tls_port == 0 {
        return Ok(None);
    }
    let read = |what: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
        path.as_ref()
            .map(|p| {
                std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()))
            })
            .transpose()
    };
    let (Some(cert), Some(key)) = (
        read("tls-cert-file", &cfg.tls_cert_file)?,
        read("tls-key-file", &cfg.tls_key_file)?,
    ) else {
        return Err("tls-port needs tls-cert-file and tls-key-file".into());
    };
    let ca = read("tls-ca-cert-file", &cfg.tls_ca_cert_file)?;
    shardline_transport::tls::client_port_config(
        &cert,
        &key,
        ca.as_deref(),
        cfg.tls_auth_clients,
        &cfg.tls_protocols,
        &cfg.tls_ciphersuites,
        &cfg.tls_ciphers,
    )
    .map(Some)
    .map_err(|e| {
        let file = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        format!(
            "{e} (tls-cert-file {}, tls-key-file {}, tls-ca-cert-file {})",
            file(&cfg.tls_cert_file),
            file(&cfg.tls_key_file),
            file(&cfg.tls_ca_cert_file)
        )
    })
}

/// Checks that concern several parameters or the machine.
pub fn validate(cfg: &Config) -> Result<(), String> {
    if cfg.aclfile.is_some() && !cfg.users.is_empty() {
        return Err("users are defined both by 'user' lines and in an aclfile: define them in one place (the aclfile, or 'user' lines without aclfile)".into());
    }
    for u in &cfg.users {
        let words: Vec<&str> = u.split_ascii_whitespace().collect();
        let mut users = shardline_shards::acl::Users::new();
        if let Some((name, rules)) = words.split_first() {
            users
                .set(name.as_bytes(), rules)
                .map_err(|e| format!("user {name}: {}", e.0))?;
        }
    }
    if cfg.protected_mode && !cfg.bind.is_loopback() && cfg.requirepass.is_none() {
        return Err(format!(
            "refusing to listen on non-loopback address {} without requirepass (protected mode): set requirepass, or protected-mode no if the network is trusted",
            cfg.bind
        ));
    }
    let tls = [
        &cfg.cluster_tls_ca_file,
        &cfg.cluster_tls_cert_file,
        &cfg.cluster_tls_key_file,
    ];
    if tls.iter().any(|f| f.is_some()) {
        if tls.iter().any(|f| f.is_none()) {
            return Err("cluster TLS needs all three of 'cluster-tls-ca-file', 'cluster-tls-cert-file' and 'cluster-tls-key-file'".into());
        }
        if cfg.cluster_secret_file.is_none() {
            return Err("cluster TLS needs 'cluster-secret-file' too: without it SWIM's datagrams and joins would go unauthenticated beside authenticated links".into());
        }
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
    } else if cfg.cluster_bus_addr.is_some() && !cfg.cluster_nodes.is_empty() {
        return Err("'cluster-bus-addr' is for a node that joins with 'cluster-join' or runs alone; a listed cluster takes cluster-bus-nodes".into());
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
        "shardline [CONFIG.toml] [--config FILE] [--NAME VALUE ...] [--print-config] [--version]\nshardline ctl [-h HOST:PORT] <command>   (moves, move, move-slots, cancel, drain, undrain: `shardline ctl help`)\n\nParameters (also SHARDLINE_NAME in the environment, NAME = value in the TOML file):\n",
    );
    for p in PARAMS {
        s.push_str(&format!("  --{:<28} {}\n", p.name, p.help));
    }
    s
}

#[cfg(test)]
mod tests;
