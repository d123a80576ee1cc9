//! State shared by all shard threads of this node: configuration, the mailboxes, counters. Written
//! rarely (CONFIG SET, connection counts, a publish of counters per tick), read by INFO.

use crate::config::Config;
use crate::hop::Mailbox;
use shardline_shards::db::Tunables;
use shardline_shards::slot::VShardLayout;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

/// Limits read on the fast path, mirrored from the config so that CONFIG SET takes effect at once.
#[derive(Default)]
pub struct Live {
    pub proto_max_bulk_len: AtomicU64,
    pub max_multibulk_len: AtomicU64,
    pub client_query_buffer_limit: AtomicU64,
    pub client_output_buffer_limit: AtomicU64,
    pub maxclients: AtomicU64,
    pub hz: AtomicU64,
    pub active_expire_keys_per_pass: AtomicU64,
    pub shutdown_timeout_ms: AtomicU64,
    /// The log's fsync policy (`config::fsync_code`), which each shard thread's log takes at
    /// its next step.
    pub fsync: AtomicU64,
    /// Bytes a second the node's snapshot copies may send (0: no cap), shared by its shard
    /// threads' hubs at their next step.
    pub bulk_max_bytes_per_sec: AtomicU64,
    /// The share of each shard thread's time its copies may take, in percent, taken by the
    /// threads at their next step.
    pub bulk_thread_share: AtomicU64,
    /// The rebalancer's settings (`cluster-rebalance*`), read by thread 0 each step.
    pub cluster_rebalance: AtomicU64,
    pub cluster_rebalance_moves: AtomicU64,
    pub cluster_rebalance_period_ms: AtomicU64,
    /// The command layer's settings; shard threads copy them into their `Db` when
    /// `tunables_version` moves (one relaxed load per batch).
    pub tunables: Mutex<Tunables>,
    pub tunables_version: AtomicU64,
}

impl Live {
    pub fn load(&self, c: &Config) {
        let r = Ordering::Relaxed;
        self.proto_max_bulk_len.store(c.proto_max_bulk_len, r);
        self.max_multibulk_len.store(c.max_multibulk_len, r);
        self.client_query_buffer_limit
            .store(c.client_query_buffer_limit, r);
        self.client_output_buffer_limit
            .store(c.client_output_buffer_limit, r);
        self.maxclients.store(c.maxclients, r);
        self.hz.store(c.hz, r);
        self.active_expire_keys_per_pass
            .store(c.active_expire_keys_per_pass, r);
        self.shutdown_timeout_ms.store(c.shutdown_timeout_ms, r);
        self.fsync.store(crate::config::fsync_code(c.fsync), r);
        self.bulk_max_bytes_per_sec
            .store(c.bulk_max_bytes_per_sec, r);
        self.bulk_thread_share.store(c.bulk_thread_share, r);
        self.cluster_rebalance.store(c.cluster_rebalance as u64, r);
        self.cluster_rebalance_moves
            .store(c.cluster_rebalance_moves, r);
        self.cluster_rebalance_period_ms
            .store(c.cluster_rebalance_period_ms, r);
        *self.tunables.lock().expect("tunables lock") = c.tunables;
        self.tunables_version.fetch_add(1, Ordering::Release);
    }

    pub fn get(&self, f: impl Fn(&Live) -> &AtomicU64) -> u64 {
        f(self).load(Ordering::Relaxed)
    }
}

/// Buckets of the node's histograms (`Histogram`).
pub const LATENCY_BUCKETS: usize = 24;

/// The bucket of `v` in a histogram whose bucket `b` holds `[2^(b+shift), 2^(b+shift+1))`,
/// the first everything below, the last everything above.
pub fn bucket(v: u64, shift: u32) -> usize {
    let top = 63 - (v >> shift).max(1).leading_zeros() as usize;
    top.min(LATENCY_BUCKETS - 1)
}

/// A histogram of power-of-two buckets (`bucket(v, SHIFT)`) and its values' sum, written
/// by one thread with relaxed atomics and read by the metrics endpoint and INFO.
#[derive(Default)]
pub struct Histogram<const SHIFT: u32 = 0> {
    pub buckets: [AtomicU64; LATENCY_BUCKETS],
    pub sum: AtomicU64,
}

impl<const SHIFT: u32> Histogram<SHIFT> {
    pub fn record(&self, v: u64) {
        self.buckets[bucket(v, SHIFT)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// Adds a thread's local counts (taken: left zero) and their sum.
    pub fn add(&self, counts: &mut [u64; LATENCY_BUCKETS], sum: &mut u64) {
        for (a, n) in self.buckets.iter().zip(counts.iter_mut()) {
            a.fetch_add(std::mem::take(n), Ordering::Relaxed);
        }
        self.sum.fetch_add(std::mem::take(sum), Ordering::Relaxed);
    }

    pub fn counts(&self) -> [u64; LATENCY_BUCKETS] {
        std::array::from_fn(|b| self.buckets[b].load(Ordering::Relaxed))
    }

    pub fn reset(&self) {
        for a in self.buckets.iter().chain([&self.sum]) {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// Counters of one shard thread, written by that thread only (published once per tick).
#[repr(align(64))]
#[derive(Default)]
pub struct ShardStats {
    pub commands: AtomicU64,
    pub connections: AtomicU64,
    pub connected: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub hops_sent: AtomicU64,
    pub jobs_run: AtomicU64,
    pub cpu_user_us: AtomicU64,
    pub cpu_sys_us: AtomicU64,
    /// The batches' times (µs): read to replies written.
    pub latency_us: Histogram,
    /// Per command of the table (`command::COMMANDS`), the thread's `CmdStat` counts as of
    /// its last tick (the metrics endpoint reads them).
    pub cmds: Box<[CmdCounters]>,
    /// The keyspace's counts (`DbStats`) as of the thread's last tick: expired, evicted,
    /// hits, misses.
    pub keyspace: [AtomicU64; 4],
    /// The thread's log as its flush thread measures it (fsync times, batch sizes).
    pub log: std::sync::Arc<crate::wal::LogStats>,
    pub rejected_connections: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Batches read but not yet answered (shutdown waits for them to drain).
    pub batches_in_flight: AtomicU64,
}

/// A command's counts on one shard thread, published each tick (`Shard::publish_stats`).
#[derive(Default)]
pub struct CmdCounters {
    pub calls: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Node {
    pub config: Mutex<Config>,
    pub live: Live,
    pub layout: VShardLayout,
    pub threads: usize,
    pub mailboxes: Vec<Mailbox>,
    pub stats: Vec<ShardStats>,
    pub started: Instant,
    pub run_id: String,
    /// SLOWLOG's ids, one counter for every shard thread's log.
    pub slow_ids: std::sync::Arc<AtomicU64>,
    pub next_client_id: AtomicU64,
    pub shutting_down: AtomicBool,
    /// Bumped by CONFIG RESETSTAT; each shard thread zeroes its own counters when it sees a new one.
    pub stats_epoch: AtomicU64,
    /// Asks the main thread to shut the node down (SHUTDOWN command).
    pub shutdown_tx: Mutex<mpsc::Sender<()>>,
    pub io_uring: bool,
    /// When the last SAVE/BGSAVE/BGREWRITEAOF completed (Unix seconds; the start before any):
    /// LASTSAVE, INFO `rdb_last_save_time`.
    pub last_save: AtomicU64,
    /// The cluster this node belongs to (of itself alone when given none).
    pub cluster: std::sync::Arc<crate::cluster::Cluster>,
    /// The node's script bodies (SCRIPT LOAD, EVAL), shared by its shard threads' keyspaces.
    pub scripts: std::sync::Arc<shardline_shards::script::Cache>,
    /// Per shard thread, its running script as the others see it (`-BUSY`, SCRIPT KILL).
    pub script_busy: Vec<std::sync::Arc<shardline_shards::script::Busy>>,
    /// The clients' TLS port's configuration (`tls-port`), read per accepted connection and
    /// replaced by CONFIG SET of a `tls-*` parameter.
    pub client_tls: Mutex<Option<std::sync::Arc<shardline_transport::tls::ServerConfig>>>,
}

impl Node {
    pub fn new(
        config: Config,
        shutdown_tx: mpsc::Sender<()>,
        io_uring: bool,
        cluster: std::sync::Arc<crate::cluster::Cluster>,
    ) -> Self {
        let threads = config.cores.len();
        let layout = VShardLayout::new(config.vshards).expect("validated at start");
        let live = Live::default();
        live.load(&config);
        let depth = config.hop_queue_depth as usize;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let run_id = format!("{:040x}", seed ^ ((std::process::id() as u128) << 64));
        let requirepass = config.requirepass.clone();
        cluster
            .acl
            .change(|u| u.set_requirepass(requirepass.as_deref().map(str::as_bytes)));
        Node {
            config: Mutex::new(config),
            live,
            layout,
            threads,
            mailboxes: (0..threads).map(|_| Mailbox::new(depth)).collect(),
            stats: (0..threads)
                .map(|_| ShardStats {
                    cmds: (0..shardline_shards::command::COMMANDS.len())
                        .map(|_| CmdCounters::default())
                        .collect(),
                    ..ShardStats::default()
                })
                .collect(),
            started: Instant::now(),
            run_id: run_id[run_id.len() - 40..].to_string(),
            next_client_id: AtomicU64::new(1),
            slow_ids: Default::default(),
            shutting_down: AtomicBool::new(false),
            stats_epoch: AtomicU64::new(0),
            shutdown_tx: Mutex::new(shutdown_tx),
            io_uring,
            last_save: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            ),
            cluster,
            scripts: std::sync::Arc::default(),
            script_busy: (0..threads).map(|_| std::sync::Arc::default()).collect(),
            client_tls: Mutex::new(None),
        }
    }

    pub fn connected_clients(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.connected.load(Ordering::Relaxed))
            .sum()
    }

    pub fn sum(&self, f: impl Fn(&ShardStats) -> &AtomicU64) -> u64 {
        self.stats
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum()
    }

    /// Stops every running script whatever it did (the node is going down: nothing of a
    /// script stopped so is logged).
    pub fn stop_scripts(&self) {
        for b in &self.script_busy {
            b.kill
                .store(shardline_shards::script::KILL_SHUTDOWN, Ordering::Release);
        }
    }

    pub fn request_shutdown(&self) {
        if let Ok(tx) = self.shutdown_tx.lock() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two_with_open_ends() {
        assert_eq!(bucket(0, 0), 0);
        assert_eq!(bucket(1, 0), 0);
        assert_eq!(bucket(2, 0), 1);
        assert_eq!(bucket(1023, 0), 9);
        assert_eq!(bucket(1024, 0), 10);
        assert_eq!(bucket(u64::MAX, 0), LATENCY_BUCKETS - 1);
        // Shifted by 9: the first bucket holds everything below 1 KiB.
        assert_eq!(bucket(0, 9), 0);
        assert_eq!(bucket(1023, 9), 0);
        assert_eq!(bucket(1024, 9), 1);
        assert_eq!(bucket(1 << 20, 9), 11);
        let h = Histogram::<9>::default();
        h.record(5000);
        h.record(100);
        let mut local = [0u64; LATENCY_BUCKETS];
        local[3] = 2;
        let mut sum = 7;
        h.add(&mut local, &mut sum);
        assert_eq!(local, [0; LATENCY_BUCKETS], "taken");
        assert_eq!(sum, 0);
        let c = h.counts();
        assert_eq!((c[0], c[3]), (1, 3));
        assert_eq!(h.sum.load(Ordering::Relaxed), 5107);
        h.reset();
        assert_eq!(h.counts(), [0; LATENCY_BUCKETS]);
        assert_eq!(h.sum.load(Ordering::Relaxed), 0);
    }
}
