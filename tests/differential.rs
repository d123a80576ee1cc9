//! Differential runs against redis-server (issue 15): seeded random command sequences
//! (`shardline_shards::cmdfuzz`: every data command, with arity, key positions, options and edge
//! values) are sent to a Shardline node and to redis-server 7 (Debian's package, started here),
//! and the replies compared: byte for byte, or as sets where Redis leaves the order open.
//!
//! The test in the suite compares every data command but those in `KNOWN_DIFFERENT` and fails
//! on any difference; `DIFF_ALL=1` compares those too and reports each differing command with
//! an example (`DIFF_SEEDS=n` for longer runs: `scripts/differential.sh`). After any difference
//! both servers start again from the same keyspace, so one difference does not hide others.

mod common;

use common::Server;
use shardline_shards::cmdfuzz;
use shardline_shards::command::{self, flags};
use shardline_shards::rng::Rng;
use shardline_transport::resp::{self, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of the test's own, on loopback.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Redis { child, port });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection: sends a command, reads one whole reply.
struct Link {
    s: TcpStream,
    buf: Vec<u8>,
    /// The last commands sent, for a failure's message.
    last: std::collections::VecDeque<String>,
}

impl Link {
    fn new(port: u16) -> Link {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Link {
            s,
            buf: Vec::new(),
            last: Default::default(),
        }
    }

    fn call(&mut self, argv: &[Vec<u8>]) -> Vec<u8> {
        let mut req = Vec::new();
        resp::encode_command(argv, &mut req);
        self.s.write_all(&req).unwrap();
        if self.last.len() == 5 {
            self.last.pop_front();
        }
        self.last.push_back(show(argv));
        loop {
            match resp::value_len(&self.buf) {
                Ok(Some(n)) => return self.buf.drain(..n).collect(),
                Ok(None) => {}
                Err(e) => panic!(
                    "a malformed reply ({e:?}) after {:?}: {:?}",
                    self.last,
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap_or_else(|e| {
                panic!(
                    "no reply ({e}) after: {:?} (buffered {:?})",
                    self.last,
                    String::from_utf8_lossy(&self.buf)
                )
            });
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Commands whose replies depend on time, randomness or server internals, or that block.
fn skipped(spec: &command::CommandSpec) -> bool {
    spec.flags & (flags::RANDOM | flags::BLOCKING) != 0
        || matches!(
            spec.name,
            "time"
                | "object"
                | "memory"
                | "command"
                | "scan"
                | "sscan"
                | "hscan"
                | "zscan"
                | "keys"
                | "ttl"
                | "pttl"
                | "expiretime"
                | "pexpiretime"
                | "xread"
                | "xreadgroup"
                | "xadd"
                | "xclaim"
                | "xautoclaim"
                | "xpending"
                | "xinfo"
                | "dbsize"
                | "randomkey"
                | "flushall"
                | "flushdb"
                | "swapdb"
                | "select"
                | "wait"
                | "lastsave"
                | "debug"
        )
}

/// Commands whose replies still differ from Redis 7.0's in some cases (found by `DIFF_ALL=1`
/// runs; issue 15 lists them, the README says what differs): mostly the order of checks
/// (argument parsing before or after the key's type) and option parsing. The suite's run
/// compares every other data command and fails on any difference.
const KNOWN_DIFFERENT: &[&str] = &[
    // Redis quotes an unknown option whole in its error; here at most 128 bytes of it.
    "expire",
    "expireat",
    "pexpire",
    "pexpireat",
    // Redis 7.0's bug: SORT of a set reads `errno` after `strtod` without clearing it, so an
    // ERANGE left by an earlier command of the same input batch (`XRANGE s
    // 18446744073709551616 +`) makes it refuse "1".."50" as not numbers. Not copied.
    "sort",
    "sort_ro",
    // Deliberate: Redis 7.2's WITHSCORE is taken (7.0 answers an arity error).
    "zrank",
    "zrevrank",
    // Deliberate: a HyperLogLog is always dense here, so a string command on one (APPEND,
    // GETRANGE, ...) sees other bytes than Redis's sparse encoding.
    "pfadd",
    "pfmerge",
];

/// Whether `argv` gives a key a TTL: the two servers' clocks decide when it expires, so a
/// short one could expire on one server and not yet on the other. Left out of the suite's run
/// (kept in `DIFF_ALL=1` runs).
fn sets_a_ttl(argv: &[Vec<u8>]) -> bool {
    matches!(&argv[0][..], b"setex" | b"psetex")
        || (argv[0] == b"set"
            && argv[1..].iter().any(|a| {
                matches!(
                    a.to_ascii_lowercase().as_slice(),
                    b"ex" | b"px" | b"exat" | b"pxat"
                )
            }))
}

/// Differences the README states as deliberate: commands on keys of two hash slots are refused
/// with CROSSSLOT (Redis Cluster's rule, on one node too), a HyperLogLog is always in the
/// dense encoding (its bytes differ from Redis's sparse ones; the estimates are the same), there
/// is one database, LCS's table is bounded, and LPOS refuses RANK -2^63 as Redis 7.2 does.
fn deliberate(argv: &[Vec<u8>], ours: &[u8], redis: &[u8]) -> bool {
    let has = |b: &[u8], what: &[u8]| b.windows(what.len()).any(|w| w == what);
    // LPOS ... RANK -2^63: Redis 7.2's error; 7.0 negates it (an overflow) and searches.
    let lpos_rank_min = argv[0] == b"lpos" && ours.starts_with(b"-ERR value is out of range");
    lpos_rank_min
        || ours.starts_with(b"-CROSSSLOT")
        || has(ours, b"HYLL")
        || has(redis, b"HYLL")
        // One database (db 0), and a bound on LCS's table (README).
        || ours.starts_with(b"-ERR DB index is out of range")
        || ours.starts_with(b"-ERR strings too long for LCS here")
}

/// Replies of commands whose order Redis leaves open are compared as sorted lists (pairs kept
/// together for HGETALL).
fn normalized(name: &str, reply: &[u8]) -> Vec<u8> {
    let unordered = matches!(
        name,
        "smembers" | "sinter" | "sunion" | "sdiff" | "hkeys" | "hvals" | "hgetall" | "keys"
    );
    if !unordered {
        return reply.to_vec();
    }
    let Ok(Some((Value::Array(items), _))) = resp::decode(reply) else {
        return reply.to_vec();
    };
    let mut rows: Vec<String> = if name == "hgetall" {
        items.chunks(2).map(|p| format!("{p:?}")).collect()
    } else {
        items.iter().map(|v| format!("{v:?}")).collect()
    };
    rows.sort();
    rows.join("|").into_bytes()
}

/// Gives both servers the same fresh values (`cmdfuzz::prefill`, without HyperLogLogs).
fn prefill_both(a: &mut Link, b: &mut Link, rng: &mut Rng) {
    for argv in same_encoding(cmdfuzz::prefill(rng)) {
        a.call(&argv);
        b.call(&argv);
    }
}

/// Prefill without HyperLogLogs (their dense bytes differ from Redis's by design, and so would
/// every GET, STRLEN or APPEND of one).
fn same_encoding(cmds: Vec<Vec<Vec<u8>>>) -> Vec<Vec<Vec<u8>>> {
    cmds.into_iter().filter(|c| c[0] != b"pfadd").collect()
}

fn show(argv: &[Vec<u8>]) -> String {
    argv.iter()
        .map(|a| {
            String::from_utf8_lossy(&a[..a.len().min(40)])
                .escape_debug()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `seeds` sequences of `count` commands on both servers; returns the differences found
/// (at most `keep`) and the number of commands compared.
fn run(seeds: std::ops::Range<u64>, count: usize, all: bool, keep: usize) -> (Vec<String>, usize) {
    let redis = Redis::start().expect("redis-server (Debian's redis-server package)");
    // One shard thread: cross-thread commands are refused here where Redis runs them.
    let ours = Server::start("0", &[]);
    let mut a = Link::new(ours.port);
    let mut b = Link::new(redis.port);
    let mut diffs = Vec::new();
    let mut compared = 0;
    let mut differing = std::collections::BTreeMap::new();
    for seed in seeds {
        // (Rng::new sets the low bit: seeds are spread first, or 2k and 2k+1 would agree.)
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xd1ff);
        let flush = vec![b"flushall".to_vec()];
        a.call(&flush);
        b.call(&flush);
        for i in 0..count {
            if i % 100 == 0 {
                prefill_both(&mut a, &mut b, &mut rng);
            }
            let argv = cmdfuzz::command(&mut rng);
            let spec = command::lookup(&argv[0]).expect("generated from the table");
            if skipped(spec)
                || !(all || !KNOWN_DIFFERENT.contains(&spec.name) && !sets_a_ttl(&argv))
            {
                continue;
            }
            let (x, y) = (a.call(&argv), b.call(&argv));
            let differ = normalized(spec.name, &x) != normalized(spec.name, &y);
            if differ {
                // The keyspaces may differ from here on: both start again from the same one.
                a.call(&flush);
                b.call(&flush);
                prefill_both(&mut a, &mut b, &mut rng);
            }
            if deliberate(&argv, &x, &y) {
                continue;
            }
            compared += 1;
            if differ {
                differing.entry(spec.name).or_insert_with(|| {
                    format!(
                        "seed {seed} #{i}: {}\n  shardline: {:?}\n  redis:     {:?}",
                        show(&argv),
                        String::from_utf8_lossy(&x[..x.len().min(120)]),
                        String::from_utf8_lossy(&y[..y.len().min(120)])
                    )
                });
            }
            if differ && diffs.len() < keep {
                diffs.push(format!(
                    "seed {seed} #{i}: {}\n  shardline: {:?}\n  redis:     {:?}",
                    show(&argv),
                    String::from_utf8_lossy(&x[..x.len().min(200)]),
                    String::from_utf8_lossy(&y[..y.len().min(200)])
                ));
            }
        }
    }
    if !differing.is_empty() {
        eprintln!(
            "commands with differences ({}): {:?}",
            differing.len(),
            differing.keys().collect::<Vec<_>>()
        );
        for example in differing.values() {
            eprintln!("{example}");
        }
    }
    (diffs, compared)
}

#[test]
fn random_commands_answer_as_redis_server_does() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        // .ci/run installs it; a machine without it cannot run this comparison.
        eprintln!("redis-server is not installed: differential run skipped");
        return;
    }
    let all = std::env::var_os("DIFF_ALL").is_some();
    let seeds: u64 = std::env::var("DIFF_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (diffs, compared) = run(0..seeds, 500, all, 200);
    eprintln!("{compared} commands compared, {} differences", diffs.len());
    assert!(compared > 1000, "{compared} commands compared");
    assert!(
        diffs.is_empty(),
        "{} replies differ from redis-server's:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
