//! INFO: Redis's sections and field names, so tools that read them work, plus a `shardline`
//! section with one line per shard thread.

use crate::node::{LATENCY_BUCKETS, Node};
use crate::shard::Shard;
use shardline_shards::reply::Out;
use shardline_transport::resp;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The version we report to clients as `redis_version`: the Redis release whose commands and
/// replies Shardline follows. Clients gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
    "shardline",
];

/// Per-thread figures from `Op::Stats`: keys, expires, hits, misses, expired, blocked clients,
/// channels and patterns with subscribers, evicted keys.
const STATS: usize = 9;

fn thread_stats(part: &[u8]) -> [i64; STATS] {
    let mut v = [0i64; STATS];
    if let Ok(Some((resp::Value::Array(items), _))) = resp::decode(part) {
        for (i, it) in items.iter().take(STATS).enumerate() {
            if let resp::Value::Int(n) = it {
                v[i] = *n;
            }
        }
    }
    v
}

/// Per-command rows of one thread's `Op::Stats` reply: `(index, [calls, ns, rejected, failed])`.
fn thread_cmd_stats(part: &[u8]) -> Vec<(usize, [i64; 4])> {
    let mut rows = Vec::new();
    if let Ok(Some((resp::Value::Array(items), _))) = resp::decode(part)
        && let Some(resp::Value::Array(list)) = items.get(STATS)
    {
        for row in list {
            if let resp::Value::Array(v) = row
                && let [resp::Value::Int(i), rest @ ..] = v.as_slice()
            {
                let mut r = [0i64; 4];
                for (d, x) in r.iter_mut().zip(rest) {
                    if let resp::Value::Int(n) = x {
                        *d = *n;
                    }
                }
                rows.push((*i as usize, r));
            }
        }
    }
    rows
}

/// The `# Commandstats` section: counters summed over the shard threads, in table order.
fn commandstats(parts: &[&[u8]], t: &mut String) {
    let table = shardline_shards::command::COMMANDS;
    let mut sums = vec![[0i64; 4]; table.len()];
    for p in parts {
        for (i, r) in thread_cmd_stats(p) {
            if let Some(s) = sums.get_mut(i) {
                for k in 0..4 {
                    s[k] += r[k];
                }
            }
        }
    }
    t.push_str("# Commandstats\r\n");
    for (spec, [calls, ns, rejected, failed]) in table.iter().zip(sums) {
        if calls + rejected + failed == 0 {
            continue;
        }
        let usec = ns / 1000;
        let per_call = if calls > 0 {
            ns as f64 / 1000.0 / calls as f64
        } else {
            0.0
        };
        let _ = write!(
            t,
            "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}\r\n",
            spec.name
        );
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// The latency (µs, bucket upper bound) below which `q` of the recorded batches fall.
pub fn percentile_us(buckets: &[u64; LATENCY_BUCKETS], q: f64) -> u64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, &n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return 1 << (i + 1);
        }
    }
    1 << LATENCY_BUCKETS
}

pub fn write(shard: &Shard, sections: &[String], parts: &[&[u8]], out: &mut Out) {
    let node = &shard.node;
    let per: Vec<[i64; STATS]> = parts.iter().map(|p| thread_stats(p)).collect();
    let has = |name: &str| sections.iter().any(|s| s == name);
    let everything = has("all") || has("everything");
    let default = sections.is_empty() || has("default") || everything;
    let wanted: Vec<&str> = DEFAULT_SECTIONS
        .iter()
        .copied()
        .filter(|s| default || has(s))
        .collect();
    // Redis's total_error_replies: commands rejected before they ran plus those that failed.
    let errors: i64 = parts
        .iter()
        .flat_map(|p| thread_cmd_stats(p))
        .map(|(_, [_, _, rejected, failed])| rejected + failed)
        .sum();
    let mut text = String::new();
    for s in wanted {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        section(node, s, &per, errors, &mut text);
    }
    // As in Redis, commandstats is in `all` and `everything` but not in the default set.
    if everything || has("commandstats") {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        commandstats(parts, &mut text);
    }
    out.verbatim(text.as_bytes())
}

fn section(node: &Node, name: &str, per: &[[i64; STATS]], errors: i64, t: &mut String) {
    let cfg = node.config.lock().map(|c| c.clone()).expect("config lock");
    let sum = |i: usize| per.iter().map(|p| p[i]).sum::<i64>();
    let uptime = node.started.elapsed().as_secs();
    match name {
        "server" => {
            let _ = write!(
                t,
                "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nshardline_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:{}\r\nshard_threads:{}\r\nexecutable:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                if node.io_uring { "io_uring" } else { "epoll" },
                std::process::id(),
                node.run_id,
                cfg.port,
                uptime / 86400,
                cfg.hz,
                node.threads,
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
        "clients" => {
            let _ = write!(
                t,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n",
                node.connected_clients(),
                cfg.maxclients,
                sum(5)
            );
        }
        "memory" => {
            let used = shardline_transport::alloc::used_bytes();
            let rss = shardline_transport::cpu::rss_bytes();
            let _ = write!(
                t,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak_rss:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_not_counted_for_evict:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_allocator:libc\r\nnumber_of_cached_scripts:{}\r\n",
                human(used),
                human(rss),
                shardline_transport::cpu::max_rss_bytes(),
                cfg.tunables.maxmemory,
                human(cfg.tunables.maxmemory),
                cfg.tunables.maxmemory_policy.name(),
                crate::cluster::replica::REPLICATION_MEMORY_BYTES
                    .load(std::sync::atomic::Ordering::Relaxed),
                rss as f64 / used.max(1) as f64,
                node.scripts.len(),
            );
        }
        "persistence" => {
            // Every write is in the log (the append-only file); SAVE fsyncs it.
            let _ = write!(
                t,
                "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_bgrewrite_status:ok\r\naof_last_write_status:ok\r\n",
                node.last_save.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        "stats" => {
            let _ = write!(
                t,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\ntotal_error_replies:{errors}\r\nprotocol_errors:{}\r\ncross_thread_hops:{}\r\n",
                node.sum(|s| &s.connections),
                node.sum(|s| &s.commands),
                node.sum(|s| &s.net_input_bytes),
                node.sum(|s| &s.net_output_bytes),
                node.sum(|s| &s.rejected_connections),
                sum(4),
                sum(8),
                sum(6),
                sum(7),
                sum(2),
                sum(3),
                node.sum(|s| &s.protocol_errors),
                node.sum(|s| &s.hops_sent),
            );
            let d =
                |i: usize| node.cluster.acl.denied[i].load(std::sync::atomic::Ordering::Relaxed);
            let _ = write!(
                t,
                "acl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:{}\r\n",
                d(0),
                d(1),
                d(2),
                d(3)
            );
        }
        "replication" => t.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"),
        "cpu" => {
            let user: u64 = node.sum(|s| &s.cpu_user_us);
            let sys: u64 = node.sum(|s| &s.cpu_sys_us);
            let total = shardline_transport::cpu::process_cpu_time_us();
            let _ = write!(
                t,
                "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\nused_cpu_total_process:{:.6}\r\n",
                sys as f64 / 1e6,
                user as f64 / 1e6,
                total as f64 / 1e6
            );
        }
        // Every node answers the CLUSTER commands (a single node as a one-node cluster), and
        // cluster clients (redis-py's RedisCluster) check this field before using them.
        "cluster" => {
            t.push_str("# Cluster\r\ncluster_enabled:1\r\n");
            let c = &node.cluster;
            let hosted: usize = c
                .hosted
                .iter()
                .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            let moving: usize = c
                .moving
                .iter()
                .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            let meta = shardline_shards::slot::VShardId(c.meta_group() as u16);
            let led = (0..c.meta_group())
                .filter(|&v| c.leader(shardline_shards::slot::VShardId(v as u16)) == c.me)
                .count();
            // vShards this node alone replicates: their groups apply at append.
            let alone = (0..c.meta_group())
                .filter(|&v| c.alone(shardline_shards::slot::VShardId(v as u16)))
                .count();
            let _ = write!(
                t,
                "cluster_member_id:{}\r\ncluster_vshard_replicas:{hosted}\r\ncluster_vshards_led:{led}\r\ncluster_vshards_alone:{alone}\r\ncluster_moves_pending:{moving}\r\ncluster_moves_open:{}\r\ncluster_metadata_leader:{}\r\n",
                c.me,
                c.moves_open(),
                c.leader(meta)
            );
            let rebalancing = c
                .moves()
                .iter()
                .filter(|m| m.state == shardline_shards::meta::MoveState::Open)
                .filter(|m| {
                    use shardline_shards::meta::MoveKind;
                    matches!(m.kind, MoveKind::Rebalance | MoveKind::Lead)
                })
                .count();
            let on = node.live.get(|l| &l.cluster_rebalance) != 0;
            let _ = write!(
                t,
                "cluster_rebalance:{}\r\ncluster_rebalance_moves_open:{rebalancing}\r\n",
                if on { "yes" } else { "no" }
            );
            t.push_str(&c.calvin.info());
            t.push_str(&c.bulk_info());
            t.push_str(&crate::control::info(c));
            let _ = write!(t, "bulk_rdma:{}\r\n", c.rdma_status);
            let _ = write!(t, "bulk_quic:{}\r\n", c.quic_status);
        }
        "keyspace" => {
            t.push_str("# Keyspace\r\n");
            if sum(0) > 0 {
                let _ = write!(t, "db0:keys={},expires={},avg_ttl=0\r\n", sum(0), sum(1));
            }
        }
        "shardline" => {
            let _ = write!(
                t,
                "# Shardline\r\nshard_threads:{}\r\nvshards:{}\r\n",
                node.threads,
                node.layout.count()
            );
            for (i, s) in node.stats.iter().enumerate() {
                let r = Ordering::Relaxed;
                let lat = s.latency_us.counts();
                let p = per.get(i).copied().unwrap_or([0; STATS]);
                let _ = write!(
                    t,
                    "shard{i}:core={},vshards={},keys={},expires={},commands={},connections={},hops_sent={},jobs_run={},cpu_user_us={},cpu_sys_us={},batch_p50_us={},batch_p99_us={},batch_p999_us={}\r\n",
                    cfg.cores.get(i).copied().unwrap_or(0),
                    node.layout.count() as usize / node.threads
                        + usize::from(i < node.layout.count() as usize % node.threads),
                    p[0],
                    p[1],
                    s.commands.load(r),
                    s.connected.load(r),
                    s.hops_sent.load(r),
                    s.jobs_run.load(r),
                    s.cpu_user_us.load(r),
                    s.cpu_sys_us.load(r),
                    percentile_us(&lat, 0.5),
                    percentile_us(&lat, 0.99),
                    percentile_us(&lat, 0.999),
                );
            }
        }
        _ => {}
    }
}

/// MEMORY DOCTOR's report, from the figures INFO memory shows (Redis's wording where it has
/// one).
pub fn memory_doctor() -> String {
    let used = shardline_transport::alloc::used_bytes();
    let rss = shardline_transport::cpu::rss_bytes();
    if used < 5 << 20 {
        return "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.".into();
    }
    let ratio = rss as f64 / used as f64;
    if ratio > 1.4 && rss - used > 10 << 20 {
        return format!(
            "Sam, I detected a few issues in this instance's memory implants:\n\n * High total RSS: the process's resident set ({}) is {ratio:.2} times what it has allocated ({}). This is usually memory freed after a peak that the allocator keeps, or fragmentation from the workload; MEMORY PURGE gives free memory back to the system. The allocator is \"libc\".\n\nI'm here to keep you safe, Sam. I want to help you.\n",
            human(rss),
            human(used)
        );
    }
    "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.".into()
}

/// MEMORY STATS from every thread's `Op::Stats`: what this node can account for (the
/// allocator's figures, the process's resident set, the keys), under Redis's field names.
pub fn memory_stats(parts: &[&[u8]], out: &mut Out) {
    let per: Vec<[i64; STATS]> = parts.iter().map(|p| thread_stats(p)).collect();
    let keys: i64 = per.iter().map(|p| p[0]).sum();
    let used = shardline_transport::alloc::used_bytes() as i64;
    let rss = shardline_transport::cpu::rss_bytes() as i64;
    let peak_rss = shardline_transport::cpu::max_rss_bytes() as i64;
    let ints: [(&str, i64); 6] = [
        ("total.allocated", used),
        ("keys.count", keys),
        ("keys.bytes-per-key", if keys > 0 { used / keys } else { 0 }),
        ("allocator.allocated", used),
        ("allocator.resident", rss),
        ("peak.resident", peak_rss),
    ];
    let ratio = if used > 0 {
        rss as f64 / used as f64
    } else {
        0.0
    };
    out.map(ints.len() + 2);
    for (k, v) in ints {
        out.bulk(k.as_bytes());
        out.int(v);
    }
    out.bulk(b"fragmentation");
    out.score(ratio);
    out.bulk(b"fragmentation.bytes");
    out.int(rss - used);
}
