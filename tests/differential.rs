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

use common::{Redis, Server};
use shardline_shards::cmdfuzz;
use shardline_shards::command::{self, flags};
use shardline_shards::rng::Rng;
use shardline_transport::resp::{self, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

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
                // Its bytes are the encoding's (tested by copying both ways below).
                | "dump"
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
        // RESTORE key <ttl ms>: a TTL of a few ms expires between commands or not, by timing
        // (seen with two shard threads, whose hops take longer).
        || (argv[0] == b"restore" && argv.get(2).is_some_and(|t| t.as_slice() != b"0"))
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

/// Whether redis-server can be run here (`.ci/run` installs it; a machine without it cannot
/// run these comparisons, and says so).
fn redis_installed(what: &str) -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        eprintln!("redis-server is not installed: {what} skipped");
    }
    ok
}

/// How the Shardline node of a differential run is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// One shard thread, the quick-start defaults.
    OneThread,
    /// A one-node cluster (every vShard a group of one, applied at append).
    OneNode,
    /// Two shard threads: commands across them are Calvin transactions (issue 17).
    TwoThreads,
}

/// A Shardline node and a redis-server, with a connection to each.
fn both(setup: Setup) -> (Server, Redis, Link, Link) {
    let redis = Redis::start().expect("redis-server (Debian's redis-server package)");
    let (cores, extra): (&str, &[&str]) = match setup {
        Setup::OneThread => ("0", &[]),
        Setup::OneNode => (
            "0",
            &["--cluster-nodes", "127.0.0.1:{port}", "--fsync", "never"],
        ),
        Setup::TwoThreads => ("0-1", &["--fsync", "never"]),
    };
    let ours = Server::start(cores, extra);
    let (a, b) = (Link::new(ours.port), Link::new(redis.port));
    (ours, redis, a, b)
}

/// Runs `seeds` sequences of `count` commands on both servers; returns the differences found
/// (at most `keep`) and the number of commands compared.
fn run(
    seeds: std::ops::Range<u64>,
    count: usize,
    all: bool,
    keep: usize,
    setup: Setup,
) -> (Vec<String>, usize) {
    let (_ours, _redis, mut a, mut b) = both(setup);
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
            if std::env::var_os("DIFF_TRACE").is_some() {
                eprintln!(
                    "#{i} {} -> {:?} / {:?}",
                    show(&argv),
                    String::from_utf8_lossy(&x[..x.len().min(80)]),
                    String::from_utf8_lossy(&y[..y.len().min(80)])
                );
            }
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
    differential(Setup::OneThread, 20);
}

/// The same on a one-node cluster: every command runs through its vShard's group of one
/// (applied at append, logged), commands across vShards through their effects.
#[test]
fn random_commands_answer_as_redis_server_does_on_a_one_node_cluster() {
    differential(Setup::OneNode, 20);
}

/// The same on two shard threads: commands whose keys span them are Calvin transactions
/// (sequenced, read on each thread, run on every participant), compared with Redis's
/// answers and with what Redis holds afterwards.
#[test]
fn random_commands_across_shard_threads_answer_as_redis_server_does() {
    differential(Setup::TwoThreads, 8);
}

/// `DIFF_SEEDS` (default 20) seeds from `DIFF_SEED_FROM` (default 0) against a fresh
/// redis-server; `DIFF_ALL=1` compares the known-different commands too.
fn differential(setup: Setup, default_seeds: u64) {
    if !redis_installed("differential run") {
        return;
    }
    let all = std::env::var_os("DIFF_ALL").is_some();
    let seeds: u64 = std::env::var("DIFF_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_seeds);
    let from: u64 = std::env::var("DIFF_SEED_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (diffs, compared) = run(from..from + seeds, 500, all, 200, setup);
    eprintln!("{compared} commands compared, {} differences", diffs.len());
    assert!(compared > 1000, "{compared} commands compared");
    assert!(
        diffs.is_empty(),
        "{} replies differ from redis-server's:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The number of listpack nodes XINFO STREAM reports (`radix-tree-keys`).
fn radix_tree_keys(reply: &[u8]) -> Option<i64> {
    let Ok(Some((Value::Array(items), _))) = resp::decode(reply) else {
        return None;
    };
    items.chunks(2).find_map(|p| match (&p[0], &p[1]) {
        (Value::Bulk(k), Value::Int(n)) if k == b"radix-tree-keys" => Some(*n),
        _ => None,
    })
}

/// What a key holds, read the same way on either server: its type, then its whole contents
/// (sets and hashes sorted; a stream's entries, groups and pending summaries).
fn contents(l: &mut Link, key: &[u8]) -> Vec<u8> {
    let call = |l: &mut Link, words: &[&[u8]]| {
        l.call(&words.iter().map(|w| w.to_vec()).collect::<Vec<_>>())
    };
    let ty = call(l, &[b"type", key]);
    let mut out = ty.clone();
    match &ty[..] {
        b"+string\r\n" => out.extend(call(l, &[b"get", key])),
        b"+list\r\n" => out.extend(call(l, &[b"lrange", key, b"0", b"-1"])),
        b"+set\r\n" => out.extend(normalized("smembers", &call(l, &[b"smembers", key]))),
        b"+hash\r\n" => out.extend(normalized("hgetall", &call(l, &[b"hgetall", key]))),
        b"+zset\r\n" => out.extend(call(l, &[b"zrange", key, b"0", b"-1", b"withscores"])),
        b"+stream\r\n" => {
            out.extend(call(l, &[b"xrange", key, b"-", b"+"]));
            let nodes = radix_tree_keys(&call(l, &[b"xinfo", b"stream", key]));
            out.extend(format!("nodes {nodes:?}").into_bytes());
            let groups = call(l, &[b"xinfo", b"groups", key]);
            out.extend(&groups);
            if let Ok(Some((Value::Array(gs), _))) = resp::decode(&groups) {
                for g in gs {
                    let Value::Array(fields) = g else { continue };
                    if let Some(Value::Bulk(name)) = fields.get(1) {
                        out.extend(call(l, &[b"xpending", key, name]));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// DUMP payloads copy both ways: every key a random command sequence leaves in redis-server is
/// restored here from Redis's DUMP and holds what Redis holds, and every key here restored into
/// redis-server from our DUMP holds what it held here (Redis's compact encodings, LZF and
/// streams one way; ours the other).
#[test]
fn dump_payloads_copy_both_ways_with_redis_server() {
    if !redis_installed("DUMP/RESTORE comparison") {
        return;
    }
    let (_ours, _redis, mut a, mut b) = both(Setup::OneThread);
    let mut copied = 0;
    for seed in 0..6u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xd0d0);
        let flush = vec![b"flushall".to_vec()];
        a.call(&flush);
        b.call(&flush);
        // Redis's own encodings: long lists (quicklists of several nodes), big and small hashes,
        // sorted sets and sets of both kinds, and compressible strings (LZF).
        for argv in cmdfuzz::prefill(&mut rng) {
            b.call(&argv);
        }
        for i in 0..300 {
            b.call(&[
                b"rpush".to_vec(),
                b"biglist".to_vec(),
                format!("e{i}").into_bytes(),
            ]);
            b.call(&[
                b"hset".to_vec(),
                b"bighash".to_vec(),
                format!("f{i}").into_bytes(),
                b"v".to_vec(),
            ]);
            b.call(&[
                b"sadd".to_vec(),
                b"bigset".to_vec(),
                i.to_string().into_bytes(),
            ]);
            b.call(&[
                b"zadd".to_vec(),
                b"bigz".to_vec(),
                i.to_string().into_bytes(),
                format!("m{i}").into_bytes(),
            ]);
            let fields: &[&[u8]] = if i % 4 == 0 {
                &[b"a", b"1", b"b", b"x"]
            } else {
                &[b"a", b"2"]
            };
            let mut xadd = vec![b"xadd".to_vec(), b"s".to_vec(), b"*".to_vec()];
            xadd.extend(fields.iter().map(|f| f.to_vec()));
            b.call(&xadd);
        }
        b.call(&[b"set".to_vec(), b"lzf".to_vec(), b"abc".repeat(100)]);
        b.call(&[
            b"xgroup".to_vec(),
            b"create".to_vec(),
            b"s".to_vec(),
            b"g".to_vec(),
            b"0".to_vec(),
        ]);
        b.call(&[
            b"xreadgroup".to_vec(),
            b"group".to_vec(),
            b"g".to_vec(),
            b"c1".to_vec(),
            b"count".to_vec(),
            b"7".to_vec(),
            b"streams".to_vec(),
            b"s".to_vec(),
            b">".to_vec(),
        ]);
        for _ in 0..300 {
            let argv = cmdfuzz::command(&mut rng);
            let spec = command::lookup(&argv[0]).expect("generated from the table");
            if spec.flags & flags::WRITE != 0 && !skipped(spec) && spec.name != "restore" {
                b.call(&argv);
            }
        }
        let Ok(Some((Value::Array(keys), _))) =
            resp::decode(&b.call(&[b"keys".to_vec(), b"*".to_vec()]))
        else {
            panic!("KEYS answered no array");
        };
        for k in keys {
            let Value::Bulk(key) = k else { continue };
            let Ok(Some((Value::Bulk(p), _))) =
                resp::decode(&b.call(&[b"dump".to_vec(), key.clone()]))
            else {
                continue; // expired meanwhile
            };
            let want = contents(&mut b, &key);
            // Redis → Shardline.
            let restored = a.call(&[
                b"restore".to_vec(),
                key.clone(),
                b"0".to_vec(),
                p,
                b"replace".to_vec(),
            ]);
            assert_eq!(
                restored,
                b"+OK\r\n",
                "RESTORE of Redis's DUMP of {:?}",
                String::from_utf8_lossy(&key)
            );
            assert_eq!(
                String::from_utf8_lossy(&contents(&mut a, &key)),
                String::from_utf8_lossy(&want),
                "Redis's {:?} restored here",
                String::from_utf8_lossy(&key)
            );
            // Shardline → Redis, under another name.
            let Ok(Some((Value::Bulk(q), _))) =
                resp::decode(&a.call(&[b"dump".to_vec(), key.clone()]))
            else {
                panic!("no DUMP of a restored key");
            };
            let mut copy = b"copy:".to_vec();
            copy.extend(&key);
            let restored = b.call(&[
                b"restore".to_vec(),
                copy.clone(),
                b"0".to_vec(),
                q,
                b"replace".to_vec(),
            ]);
            assert_eq!(
                restored,
                b"+OK\r\n",
                "Redis's RESTORE of our DUMP of {:?}",
                String::from_utf8_lossy(&key)
            );
            let theirs = contents(&mut b, &copy);
            assert_eq!(
                String::from_utf8_lossy(&theirs),
                String::from_utf8_lossy(&want),
                "our DUMP of {:?} restored in Redis",
                String::from_utf8_lossy(&key)
            );
            copied += 1;
        }
    }
    eprintln!("{copied} keys copied both ways");
    assert!(copied > 50, "{copied}");
}

/// Streams laid out in Redis's listpack nodes: random XADD (field sets that repeat and change,
/// integer and string values of 1 to 600 bytes), XDEL and trims (MAXLEN and MINID, `~` and
/// `=`, LIMIT) under several node limits answer as redis-server does, and after every command
/// both agree on the length and the number of nodes (XINFO STREAM's `radix-tree-keys`), and now
/// and then on every entry.
#[test]
fn stream_nodes_and_approximate_trimming_follow_redis_server() {
    if !redis_installed("stream trimming comparison") {
        return;
    }
    let (_ours, _redis, mut a, mut b) = both(Setup::OneThread);
    let w = |s: &str| s.as_bytes().to_vec();
    let mut compared = 0;
    let mut trims_removing = 0;
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5713);
        let (entries, bytes) = [
            (100, 4096),
            (3, 4096),
            (10, 300),
            (0, 500),
            (7, 0),
            (100, 1000),
        ][(seed % 6) as usize];
        for (name, v) in [
            ("stream-node-max-entries", entries),
            ("stream-node-max-bytes", bytes),
        ] {
            let set = vec![w("config"), w("set"), w(name), v.to_string().into_bytes()];
            assert_eq!(a.call(&set), b"+OK\r\n");
            assert_eq!(b.call(&set), b"+OK\r\n");
        }
        let flush = vec![w("flushall")];
        a.call(&flush);
        b.call(&flush);
        let (mut ms, mut added) = (1u64, Vec::new());
        let field_sets: [&[&str]; 5] = [&["a"], &["a", "b"], &["b", "a"], &["1", "2"], &["a"]];
        let below = |rng: &mut Rng, n: u64| rng.below(n);
        for i in 0..400 {
            let min_arg = |rng: &mut Rng, added: &Vec<(u64, u64)>| -> Vec<u8> {
                match added.get(rng.below(added.len().max(1) as u64) as usize) {
                    Some((m, s)) => format!("{m}-{s}").into_bytes(),
                    None => w("0"),
                }
            };
            let trim_opts = |rng: &mut Rng, added: &Vec<(u64, u64)>| -> Vec<Vec<u8>> {
                let mut o = Vec::new();
                let maxlen = rng.below(2) == 0;
                o.push(w(if maxlen { "MAXLEN" } else { "MINID" }));
                let approx = rng.below(3) != 0;
                match rng.below(3) {
                    0 if approx => o.push(w("~")),
                    0 | 1 => o.push(w(if approx { "~" } else { "=" })),
                    _ if approx => o.push(w("~")),
                    _ => {}
                }
                if maxlen {
                    o.push(rng.below(60).to_string().into_bytes());
                } else {
                    o.push(min_arg(rng, added));
                }
                if approx && rng.below(3) == 0 {
                    o.push(w("LIMIT"));
                    o.push(rng.below(30).to_string().into_bytes());
                }
                o
            };
            let argv = match below(&mut rng, 10) {
                0..=5 => {
                    ms += below(&mut rng, 3);
                    let seq = added
                        .last()
                        .map_or(0, |&(m, s)| if m == ms { s + 1 } else { 0 });
                    let mut v = vec![w("xadd"), w("s")];
                    if below(&mut rng, 6) == 0 {
                        v.extend(trim_opts(&mut rng, &added));
                    }
                    v.push(format!("{ms}-{seq}").into_bytes());
                    let fields = field_sets[below(&mut rng, 5) as usize];
                    for f in fields {
                        v.push(w(f));
                        let value = match below(&mut rng, 4) {
                            0 => below(&mut rng, 200_000).to_string().into_bytes(),
                            1 => vec![b'x'; 1 + below(&mut rng, 600) as usize],
                            2 => format!("-{}", below(&mut rng, 5000)).into_bytes(),
                            _ => vec![b'v'; 1 + below(&mut rng, 40) as usize],
                        };
                        v.push(value);
                    }
                    added.push((ms, seq));
                    v
                }
                6 | 7 => {
                    let mut v = vec![w("xdel"), w("s")];
                    for _ in 0..1 + below(&mut rng, 3) {
                        v.push(min_arg(&mut rng, &added));
                    }
                    v
                }
                _ => {
                    let mut v = vec![w("xtrim"), w("s")];
                    v.extend(trim_opts(&mut rng, &added));
                    v
                }
            };
            let (x, y) = (a.call(&argv), b.call(&argv));
            assert_eq!(
                String::from_utf8_lossy(&x),
                String::from_utf8_lossy(&y),
                "seed {seed} #{i}: {}",
                show(&argv)
            );
            if argv[0] == b"xtrim" && x != b":0\r\n" {
                trims_removing += 1;
            }
            let info = vec![w("xinfo"), w("stream"), w("s")];
            let (p, q) = (a.call(&info), b.call(&info));
            assert_eq!(
                radix_tree_keys(&p),
                radix_tree_keys(&q),
                "seed {seed} #{i}: nodes after {}",
                show(&argv)
            );
            let len = vec![w("xlen"), w("s")];
            assert_eq!(a.call(&len), b.call(&len), "seed {seed} #{i}");
            if i % 50 == 49 {
                let all = vec![w("xrange"), w("s"), w("-"), w("+")];
                assert_eq!(a.call(&all), b.call(&all), "seed {seed} #{i}");
            }
            compared += 1;
        }
    }
    eprintln!("{compared} stream commands compared, {trims_removing} XTRIMs removed entries");
    assert!(trims_removing > 100, "{trims_removing}");
}

/// SORT with BY and GET patterns naming keys of other slots, and STORE into another slot,
/// answers as redis-server does on every setup (issue 17: on a cluster node such a SORT runs
/// as a transaction across vShards that learns the keys its patterns name when it first
/// runs, `calvin::exec::needs_keys`): weights and hash fields by pattern, missing ones,
/// LIMIT, DESC, ALPHA, BY nosort, STORE (then read back), SORT_RO, a sorted set's members.
#[test]
fn sort_by_get_and_store_across_slots_answer_as_redis_server_does() {
    if !redis_installed("SORT patterns differential") {
        return;
    }
    let words = |s: &str| -> Vec<Vec<u8>> { s.split(' ').map(|w| w.as_bytes().to_vec()).collect() };
    for setup in [Setup::OneThread, Setup::OneNode, Setup::TwoThreads] {
        let (_ours, _redis, mut a, mut b) = both(setup);
        let mut rng = Rng::new(0x50_47);
        let mut load = Vec::new();
        let mut rpush = words("RPUSH ids");
        let mut zadd = words("ZADD zs");
        for i in 0..40 {
            rpush.push(format!("{i}").into_bytes());
            zadd.push(format!("{}", 40 - i).into_bytes());
            zadd.push(format!("{i}").into_bytes());
            if i % 7 != 3 {
                // (Some elements have no weight: 0.)
                let w = rng.next_u64() % 1000;
                let w = if i % 5 == 0 {
                    format!("{w}.5")
                } else {
                    format!("{w}")
                };
                load.push(words(&format!("SET w_{i} {w}")));
            }
            if i % 4 != 1 {
                let score = rng.next_u64() % 100;
                load.push(words(&format!("HSET h_{i} name n{i} score {score}")));
            }
            // (Unique: Redis leaves the order of ALPHA's ties to its qsort.)
            load.push(words(&format!("SET name_{i} x{}", (i * 7) % 40)));
        }
        load.push(rpush);
        load.push(zadd);
        for argv in &load {
            let (x, y) = (a.call(argv), b.call(argv));
            assert_eq!(x, y, "{}", show(argv));
        }
        let cases = [
            "SORT ids BY w_*",
            "SORT ids BY w_* DESC",
            "SORT ids BY w_* LIMIT 5 10",
            "SORT ids BY h_*->score GET # GET h_*->name",
            "SORT ids BY nosort GET w_* GET name_*",
            "SORT ids BY name_* ALPHA GET # GET name_*",
            "SORT ids BY w_* STORE dst",
            "LRANGE dst 0 -1",
            "SORT ids GET w_* GET h_*->name STORE {x}dst2",
            "LRANGE {x}dst2 0 -1",
            "SORT ids STORE {y}dst3",
            "LRANGE {y}dst3 0 -1",
            "SORT_RO ids BY w_* GET name_* LIMIT 0 7",
            "SORT zs BY w_* GET #",
            "SORT zs BY nosort GET h_*->name",
            "SORT ids BY w_* GET nokey_*",
            "SORT nolist BY w_* GET #",
        ];
        for case in cases {
            let argv = words(case);
            let (x, y) = (a.call(&argv), b.call(&argv));
            assert_eq!(
                String::from_utf8_lossy(&x),
                String::from_utf8_lossy(&y),
                "{case} (left: shardline)"
            );
        }
    }
}
