//! Redis 7 parameters that have no effect here: they tune Redis's own persistence files,
//! replication, memory layout, defragmentation or logging. CONFIG SET accepts them with the
//! checks Redis makes on their values and CONFIG GET reads back what was set, so scripts,
//! tools and test harnesses written for Redis run unchanged. README lists them. (Parameters
//! with a meaning here are in `params.rs`.)

/// What values a parameter takes.
#[derive(Clone, Copy)]
pub enum Kind {
    Bool,
    Int,
    OneOf(&'static [&'static str]),
    Text,
}

pub struct Inert {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
}

const fn p(name: &'static str, default: &'static str, kind: Kind) -> Inert {
    Inert {
        name,
        default,
        kind,
    }
}

use Kind::*;

pub static INERT: &[Inert] = &[
    p("save", "", Text),
    p("appendfilename", "appendonly.aof", Text),
    p("appenddirname", "appendonlydir", Text),
    p("dbfilename", "dump.rdb", Text),
    p("dir", ".", Text),
    p(
        "loglevel",
        "notice",
        OneOf(&["debug", "verbose", "notice", "warning", "nothing"]),
    ),
    p("logfile", "", Text),
    p("rdbcompression", "yes", Bool),
    p("rdbchecksum", "yes", Bool),
    p("rdb-del-sync-files", "no", Bool),
    p("stop-writes-on-bgsave-error", "yes", Bool),
    p("no-appendfsync-on-rewrite", "no", Bool),
    p("auto-aof-rewrite-percentage", "100", Int),
    p("auto-aof-rewrite-min-size", "67108864", Int),
    p("aof-use-rdb-preamble", "yes", Bool),
    p("aof-load-truncated", "yes", Bool),
    p("aof-timestamp-enabled", "no", Bool),
    p("aof-rewrite-incremental-fsync", "yes", Bool),
    p("rdb-save-incremental-fsync", "yes", Bool),
    p("rdb-key-save-delay", "0", Int),
    p("key-load-delay", "0", Int),
    p("loading-process-events-interval-bytes", "2097152", Int),
    p("list-compress-depth", "0", Int),
    p("hll-sparse-max-bytes", "3000", Int),
    p("activerehashing", "yes", Bool),
    p("activedefrag", "no", Bool),
    p("active-defrag-cycle-min", "1", Int),
    p("active-defrag-cycle-max", "25", Int),
    p("active-defrag-threshold-lower", "10", Int),
    p("active-defrag-threshold-upper", "100", Int),
    p("active-defrag-ignore-bytes", "104857600", Int),
    p("active-defrag-max-scan-fields", "1000", Int),
    p("jemalloc-bg-thread", "yes", Bool),
    p("lazyfree-lazy-eviction", "no", Bool),
    p("lazyfree-lazy-expire", "no", Bool),
    p("lazyfree-lazy-server-del", "no", Bool),
    p("lazyfree-lazy-user-del", "no", Bool),
    p("lazyfree-lazy-user-flush", "no", Bool),
    p("replica-lazy-flush", "no", Bool),
    p("latency-tracking", "yes", Bool),
    p("latency-tracking-info-percentiles", "50 99 99.9", Text),
    p("tracking-table-max-keys", "1000000", Int),
    p("maxmemory-clients", "0", Text),
    p("maxmemory-eviction-tenacity", "10", Int),
    p("min-replicas-to-write", "0", Int),
    p("min-replicas-max-lag", "10", Int),
    p("repl-backlog-size", "1048576", Int),
    p("repl-backlog-ttl", "3600", Int),
    p("repl-timeout", "60", Int),
    p("repl-ping-replica-period", "10", Int),
    p("repl-diskless-sync", "yes", Bool),
    p("repl-diskless-sync-delay", "5", Int),
    p("replica-serve-stale-data", "yes", Bool),
    p("replica-read-only", "yes", Bool),
    p("replica-priority", "100", Int),
    p(
        "propagation-error-behavior",
        "ignore",
        OneOf(&["ignore", "panic", "panic-on-replicas"]),
    ),
    p("crash-log-enabled", "yes", Bool),
    p("crash-memcheck-enabled", "yes", Bool),
    p("set-proc-title", "yes", Bool),
    p("dynamic-hz", "yes", Bool),
    p(
        "oom-score-adj",
        "no",
        OneOf(&["no", "yes", "relative", "absolute"]),
    ),
    p("oom-score-adj-values", "0 200 800", Text),
    p("disable-thp", "yes", Bool),
    p("timeout", "0", Int),
    p("tcp-keepalive", "300", Int),
    p("cluster-allow-reads-when-down", "no", Bool),
    p("cluster-allow-pubsubshard-when-down", "yes", Bool),
    p("cluster-require-full-coverage", "yes", Bool),
];

pub fn find(name: &str) -> Option<&'static Inert> {
    INERT.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Checks `value` as Redis checks a value of this kind (the error is Redis's wording).
pub fn check(kind: Kind, value: &str) -> Result<(), String> {
    match kind {
        Bool if !matches!(value.to_ascii_lowercase().as_str(), "yes" | "no") => {
            Err("argument must be 'yes' or 'no'".into())
        }
        Int if super::parse_size(value).is_err() && value.parse::<i64>().is_err() => {
            Err("argument couldn't be parsed into an integer".into())
        }
        OneOf(allowed) if !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) => Err(format!(
            "argument(s) must be one of the following: {}",
            allowed.join(", ")
        )),
        _ => Ok(()),
    }
}
