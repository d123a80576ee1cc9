//! Settings of the keyspace that CONFIG SET changes at run time.

use crate::evict::Policy;

/// Settings the command layer reads (CONFIG SET changes them on every shard thread).
#[derive(Clone, Copy, Debug)]
pub struct Tunables {
    /// Most entries (deleted ones included) of a stream node (0: no limit).
    pub stream_node_max_entries: usize,
    /// Most bytes of a stream node's listpack (0: Redis's bound, 1 GiB).
    pub stream_node_max_bytes: u64,
    /// `notify-keyspace-events` as `notify::class` bits; 0 turns notifications off.
    pub notify_keyspace_events: u32,
    /// Node-wide memory limit in bytes (0: none); enforced by the driver, which calls `evict`.
    pub maxmemory: u64,
    pub maxmemory_policy: Policy,
    /// Keys sampled per eviction.
    pub maxmemory_samples: u32,
    pub lfu_log_factor: u32,
    /// Minutes per step of LFU counter decay (0: never decays).
    pub lfu_decay_time: u32,
    // Encoding thresholds, as Redis names them: collections stay packed while within them.
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub set_max_listpack_entries: usize,
    pub set_max_listpack_value: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    /// Positive: most entries of a packed list; negative -1..-5: most bytes, 4 KiB << (-n - 1).
    pub list_max_listpack_size: i64,
    /// `busy-reply-threshold` (alias `lua-time-limit`): past it a running script's thread is
    /// busy (`script::Busy`).
    pub busy_reply_ms: u64,
    /// `script-stop-ms`: a script that has not written is stopped past it (0: never).
    pub script_stop_ms: u64,
    /// `slowlog-log-slower-than` (µs): commands that ran at least this long are logged
    /// (negative: none, and no timing; 0: every command).
    pub slowlog_log_slower_than: i64,
    /// `slowlog-max-len`: entries each shard thread keeps.
    pub slowlog_max_len: usize,
    /// `latency-monitor-threshold` (ms): commands at least this slow are LATENCY events
    /// (0: off).
    pub latency_monitor_threshold: u64,
}

/// How far a packed collection may grow before it converts to its indexed encoding.
#[derive(Clone, Copy, Debug)]
pub struct PackLimits {
    pub entries: usize,
    /// Longest element (member, field or value) in bytes.
    pub value: usize,
}

impl Tunables {
    pub fn hash_limits(&self) -> PackLimits {
        PackLimits {
            entries: self.hash_max_listpack_entries,
            value: self.hash_max_listpack_value,
        }
    }

    pub fn set_limits(&self) -> PackLimits {
        PackLimits {
            entries: self.set_max_listpack_entries,
            value: self.set_max_listpack_value,
        }
    }

    pub fn stream_limits(&self) -> crate::types::stream::NodeLimits {
        crate::types::stream::NodeLimits {
            bytes: self.stream_node_max_bytes,
            entries: self.stream_node_max_entries as u64,
        }
    }

    pub fn zset_limits(&self) -> PackLimits {
        PackLimits {
            entries: self.zset_max_listpack_entries,
            value: self.zset_max_listpack_value,
        }
    }
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            stream_node_max_entries: 100,
            stream_node_max_bytes: 4096,
            notify_keyspace_events: 0,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            hash_max_listpack_entries: 128,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_listpack_size: -2,
            busy_reply_ms: crate::script::BUSY_MS,
            script_stop_ms: crate::script::STOP_MS,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
        }
    }
}
