//! Random command sequences through the real command table and routing (issue 15): a
//! generator that knows each command's arity and key positions and feeds edge values (integer
//! bounds, 2^64, -1, 0, inf, nan, `-0`, hex, empty and long strings, reversed ranges, stream ids,
//! repeated options), and a node of several shard threads' keyspaces in one process that plans
//! each command as the server does (one thread, split by keys, every thread) and runs its
//! parts. After every command the keyspace invariants are checked. A panic is a bug: a client
//! must never be able to end the process.
//!
//! Driven by a seeded RNG in the test suite (`random_command_sequences_never_panic_and_keep_the_keyspace_sound`)
//! and by fuzzer bytes in `fuzz/fuzz_targets/commands.rs`.

use crate::command::{self, Args, Ctx, Scope, Span, lookup};
use crate::db::Db;
use crate::reply::{Out, Proto};
use crate::rng::Rng;
use crate::route::{self, Plan};
use crate::slot::{VShardId, VShardLayout};
use shardline_transport::resp::{self, Value};

/// Where the generator's choices come from.
pub trait Choices {
    /// A number below `n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize;
}

impl Choices for Rng {
    fn below(&mut self, n: usize) -> usize {
        Rng::below(self, n as u64) as usize
    }
}

/// Choices read from fuzzer bytes; zeros once they run out.
pub struct Bytes<'a> {
    pub data: &'a [u8],
    pub at: usize,
}

impl Bytes<'_> {
    pub fn exhausted(&self) -> bool {
        self.at >= self.data.len()
    }
}

impl Choices for Bytes<'_> {
    fn below(&mut self, n: usize) -> usize {
        let mut x = 0usize;
        for _ in 0..2 {
            x = (x << 8) | *self.data.get(self.at).unwrap_or(&0) as usize;
            self.at += 1;
        }
        x % n
    }
}

/// Keys: some share a thread by hash tag, some do not.
const KEYS: &[&str] = &[
    "k", "{k}a", "{k}b", "x", "{x}y", "list", "set", "zset", "hash", "str", "s", "q",
];

/// Values at the edges of what commands parse.
const EDGES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "10",
    "100",
    "-0",
    "+1",
    "0x10",
    "1e309",
    "-1e309",
    "1.5",
    "-2.5",
    "1e-5",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "(",
    "(1",
    "(-inf",
    "(+inf",
    "[a",
    "[",
    "(a",
    "-",
    "+",
    "$",
    ">",
    "*",
    "0-0",
    "0-1",
    "1-0",
    "1-1",
    "18446744073709551615-18446744073709551615",
    "5-*",
    "~",
    "=",
    "",
    " 1",
    "a",
    "b",
    "abc",
    "field",
    "member",
    "g",
    "c",
    "*a*",
    "a?c",
    "[a-z]",
];

/// Option words of the command families.
const WORDS: &[&str] = &[
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "NX",
    "XX",
    "GT",
    "LT",
    "CH",
    "INCR",
    "KEEPTTL",
    "GET",
    "PERSIST",
    "LIMIT",
    "WITHSCORES",
    "WITHSCORE",
    "BYSCORE",
    "BYLEX",
    "REV",
    "COUNT",
    "MATCH",
    "TYPE",
    "MAXLEN",
    "MINID",
    "NOMKSTREAM",
    "STREAMS",
    "GROUP",
    "ID",
    "BLOCK",
    "NOACK",
    "LEFT",
    "RIGHT",
    "BEFORE",
    "AFTER",
    "AGGREGATE",
    "WEIGHTS",
    "SUM",
    "MIN",
    "MAX",
    "ALPHA",
    "DESC",
    "ASC",
    "STORE",
    "BY",
    "RANK",
    "MAXLEN",
    "IDLE",
    "TIME",
    "RETRYCOUNT",
    "FORCE",
    "JUSTID",
    "LASTID",
    "ENTRIESREAD",
    "MKSTREAM",
    "CREATE",
    "SETID",
    "DESTROY",
    "CREATECONSUMER",
    "DELCONSUMER",
    "FULL",
    "GROUPS",
    "CONSUMERS",
    "STREAM",
    "ENCODING",
    "REFCOUNT",
    "IDLETIME",
    "FREQ",
    "HELP",
    "OVERFLOW",
    "WRAP",
    "SAT",
    "FAIL",
    "SET",
    "INCRBY",
    "u8",
    "i64",
    "i63",
    "u63",
    "u1",
    "i8",
    "#1",
    "BIT",
    "BYTE",
    "AND",
    "OR",
    "XOR",
    "NOT",
    "USAGE",
    "SAMPLES",
    "REPLACE",
    "DB",
    "ABSTTL",
    "LEN",
    "IDX",
    "SCORES",
    "WITHVALUES",
    "NOVALUES",
];

/// The option words of commands that take many (the generator favours them for that command).
fn words_for(name: &str) -> &'static [&'static str] {
    match name {
        "set" => &["EX", "PX", "EXAT", "PXAT", "NX", "XX", "KEEPTTL", "GET"],
        "getex" => &["EX", "PX", "EXAT", "PXAT", "PERSIST"],
        "expire" | "pexpire" | "expireat" | "pexpireat" => &["NX", "XX", "GT", "LT"],
        "sort" | "sort_ro" => &["LIMIT", "BY", "GET", "ASC", "DESC", "ALPHA", "STORE", "#"],
        "zadd" => &["NX", "XX", "GT", "LT", "CH", "INCR"],
        "zrange" | "zrangestore" => &["BYSCORE", "BYLEX", "REV", "LIMIT", "WITHSCORES"],
        "zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex" => {
            &["LIMIT", "WITHSCORES"]
        }
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore" => {
            &["WEIGHTS", "AGGREGATE", "SUM", "MIN", "MAX", "WITHSCORES"]
        }
        "zrank" | "zrevrank" => &["WITHSCORE"],
        "zrandmember" | "hrandfield" => &["WITHSCORES", "WITHVALUES"],
        "xadd" => &["NOMKSTREAM", "MAXLEN", "MINID", "~", "=", "LIMIT", "*"],
        "xtrim" => &["MAXLEN", "MINID", "~", "=", "LIMIT"],
        "xread" | "xreadgroup" => &["COUNT", "BLOCK", "STREAMS", "GROUP", "NOACK", ">", "$"],
        "xrange" | "xrevrange" => &["COUNT", "-", "+"],
        "xpending" => &["IDLE", "-", "+"],
        "xclaim" => &["IDLE", "TIME", "RETRYCOUNT", "FORCE", "JUSTID", "LASTID"],
        "xautoclaim" => &["COUNT", "JUSTID"],
        "xgroup" => &[
            "CREATE",
            "SETID",
            "DESTROY",
            "CREATECONSUMER",
            "DELCONSUMER",
            "MKSTREAM",
            "ENTRIESREAD",
            "$",
        ],
        "xinfo" => &["STREAM", "GROUPS", "CONSUMERS", "FULL", "COUNT", "HELP"],
        "xsetid" => &["ENTRIESADDED", "MAXDELETEDID"],
        "bitcount" | "bitpos" => &["BIT", "BYTE"],
        "bitfield" | "bitfield_ro" => &[
            "GET", "SET", "INCRBY", "OVERFLOW", "WRAP", "SAT", "FAIL", "u8", "i64", "u63", "i8",
            "#1", "u1",
        ],
        "bitop" => &["AND", "OR", "XOR", "NOT"],
        "geoadd" => &[
            "NX",
            "XX",
            "CH",
            "13.361389",
            "38.115556",
            "180",
            "-85.05112878",
            "85.0512",
        ],
        "geodist" => &["m", "km", "ft", "mi", "yd"],
        "geosearch"
        | "geosearchstore"
        | "georadius"
        | "georadius_ro"
        | "georadiusbymember"
        | "georadiusbymember_ro" => &[
            "FROMMEMBER",
            "FROMLONLAT",
            "BYRADIUS",
            "BYBOX",
            "ASC",
            "DESC",
            "COUNT",
            "ANY",
            "WITHCOORD",
            "WITHDIST",
            "WITHHASH",
            "STORE",
            "STOREDIST",
            "km",
            "m",
            "13.361389",
            "38.115556",
            "500",
        ],
        "lpos" => &["RANK", "COUNT", "MAXLEN"],
        "linsert" => &["BEFORE", "AFTER"],
        "lmove" | "blmove" | "lmpop" | "blmpop" => &["LEFT", "RIGHT", "COUNT"],
        "zmpop" | "bzmpop" => &["MIN", "MAX", "COUNT"],
        "sintercard" | "zintercard" => &["LIMIT"],
        "scan" | "sscan" | "hscan" | "zscan" => &["MATCH", "COUNT", "TYPE", "NOVALUES"],
        "object" => &["ENCODING", "REFCOUNT", "IDLETIME", "FREQ", "HELP"],
        "memory" => &["USAGE", "SAMPLES", "HELP", "STATS", "DOCTOR"],
        "copy" => &["DB", "REPLACE"],
        "lcs" => &["LEN", "IDX", "MINMATCHLEN", "WITHMATCHLEN"],
        "restore" => &["REPLACE", "ABSTTL", "IDLETIME", "FREQ"],
        _ => WORDS,
    }
}

/// Commands the generator picks from: every data command (connection commands are the
/// driver's, tested end to end).
fn data_commands() -> Vec<&'static command::CommandSpec> {
    // (Scripts have their own generator to come, issue 18: random words as a script body
    // only try the compiler, and a script's effects are the driver's to log.)
    command::COMMANDS
        .iter()
        .filter(|c| c.scope != Scope::Conn && c.handler.is_some() && c.group != "scripting")
        .collect()
}

/// One random command: its arguments, name first.
pub fn command(c: &mut impl Choices) -> Vec<Vec<u8>> {
    let specs = data_commands();
    let spec = specs[c.below(specs.len())];
    let n = if spec.arity > 0 {
        let n = spec.arity as usize;
        // Sometimes a wrong count: refused before anything runs.
        if c.below(20) == 0 { n + 1 } else { n }
    } else {
        // Few extra arguments more often than many: one bad option spoils a command.
        let mut extra = 0;
        while extra < 8 && c.below(2) == 0 {
            extra += 1;
        }
        (-spec.arity) as usize + extra
    };
    let keys: Vec<usize> = spec.key_indexes(n).collect();
    let words = words_for(spec.name);
    let mut argv = vec![spec.name.as_bytes().to_vec()];
    // Pending numbers of an option phrase (`LIMIT 0 10`).
    let mut numbers = 0;
    for i in 1..n {
        let arg = if keys.contains(&i) && c.below(8) != 0 {
            KEYS[c.below(KEYS.len())].as_bytes().to_vec()
        } else if numbers > 0 {
            numbers -= 1;
            INTS[c.below(INTS.len())].as_bytes().to_vec()
        } else if c.below(3) == 0 {
            numbers = c.below(3);
            words[c.below(words.len())].as_bytes().to_vec()
        } else if c.below(3) == 0 {
            // Integers at the bounds, where arithmetic on client input overflows.
            INTS[c.below(INTS.len())].as_bytes().to_vec()
        } else {
            value(c)
        };
        argv.push(arg);
    }
    if spec.name == "restore" && argv.len() > 3 && c.below(2) == 0 {
        argv[3] = payload(c);
    }
    argv
}

/// A DUMP payload of a small random value (sometimes with one byte changed and the checksum
/// made good again, so RESTORE's decoder sees it).
fn payload(c: &mut impl Choices) -> Vec<u8> {
    use crate::bytes::SmallBytes;
    use crate::db::{Tunables, Value};
    use crate::types::{Hash, List, Set, ZSet};
    let t = Tunables::default();
    let most = if c.below(4) == 0 { 300 } else { 5 };
    let n = 1 + c.below(most);
    let members: Vec<Vec<u8>> = (0..n).map(|i| format!("m{i}").into_bytes()).collect();
    let value = match c.below(5) {
        0 => Value::Str(SmallBytes::new(&value(c))),
        1 => {
            let mut l = List::default();
            members.iter().for_each(|m| l.push_back(m, &t));
            Value::List(Box::new(l))
        }
        2 => {
            let mut s = Set::default();
            members.iter().for_each(|m| {
                s.insert(m, &t);
            });
            Value::Set(Box::new(s))
        }
        3 => {
            let mut z = ZSet::default();
            for (i, m) in members.iter().enumerate() {
                z.set(m, i as f64 / 2.0, t.zset_limits());
            }
            Value::ZSet(Box::new(z))
        }
        _ => {
            let mut h = Hash::default();
            members.iter().for_each(|m| {
                h.insert(m, &value(c), t.hash_limits());
            });
            Value::Hash(Box::new(h))
        }
    };
    let mut p = crate::rdb::dump(&value);
    if c.below(4) == 0 {
        let body = p.len() - 10;
        let at = c.below(body);
        p[at] ^= 1 << c.below(8);
        p.truncate(body + 2);
        let crc = crate::rdb::crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
    }
    p
}

const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "-2",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "-9223372036854775807",
    "4611686018427387904",
    "18446744073709551616",
];

fn value(c: &mut impl Choices) -> Vec<u8> {
    match c.below(10) {
        0..=3 => EDGES[c.below(EDGES.len())].as_bytes().to_vec(),
        4..=6 => WORDS[c.below(WORDS.len())].as_bytes().to_vec(),
        7 => KEYS[c.below(KEYS.len())].as_bytes().to_vec(),
        8 => c.below(2000).to_string().into_bytes(),
        _ => {
            // A long value (packed encodings convert past 64 bytes; strings grow).
            let len = [65, 300, 5000][c.below(3)];
            vec![b'a' + c.below(3) as u8; len]
        }
    }
}

/// Several shard threads' keyspaces in one process, planned and run as the server does.
pub struct Node {
    pub dbs: Vec<Db>,
    pub layout: VShardLayout,
    pub now_ms: u64,
    pub rng: Rng,
}

impl Node {
    pub fn new(threads: usize, seed: u64) -> Node {
        let layout = VShardLayout::new(64).expect("a valid layout");
        let dbs = (0..threads)
            .map(|t| {
                let owned = (0..layout.count())
                    .map(|v| VShardId(v as u16))
                    .filter(|&v| layout.owner_thread(v, threads) == t);
                Db::new(layout, owned)
            })
            .collect();
        Node {
            dbs,
            layout,
            now_ms: 1_700_000_000_000,
            rng: Rng::new(seed),
        }
    }

    /// Runs `argv` as a connection on thread 0 would: the replies of its parts (none when it is
    /// refused before running or is a connection command).
    pub fn run(&mut self, argv: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let (buf, spans) = flatten(argv);
        let args = Args::new(&buf, &spans);
        let Some(spec) = lookup(args.get(0)) else {
            return Vec::new();
        };
        if spec.scope == Scope::Conn || !spec.arity_ok(args.len()) {
            return Vec::new();
        }
        let threads = self.dbs.len();
        match route::plan(spec, args, self.layout, threads, 0) {
            Plan::Refuse(_) => Vec::new(),
            Plan::On(t) => vec![self.apply(t, argv)],
            Plan::All(_) => (0..threads).map(|t| self.apply(t, argv)).collect(),
            Plan::Split { parts, .. } => {
                let step = spec.step.max(1) as usize;
                parts
                    .into_iter()
                    .map(|p| {
                        let mut part = vec![argv[0].clone()];
                        for &k in &p.keys {
                            part.extend_from_slice(&argv[k as usize..k as usize + step]);
                        }
                        self.apply(p.thread, &part)
                    })
                    .collect()
            }
        }
    }

    fn apply(&mut self, t: usize, argv: &[Vec<u8>]) -> Vec<u8> {
        let (buf, spans) = flatten(argv);
        let mut out = Out::new(Proto::Resp2);
        let mut ctx = Ctx {
            now_ms: self.now_ms,
            now_us: self.now_ms * 1000,
            rng: &mut self.rng,
        };
        command::execute(
            &mut self.dbs[t],
            Args::new(&buf, &spans),
            &mut ctx,
            &mut out,
        );
        out.buf
    }

    /// The keyspace invariants: every key lives on the thread that owns its slot, no empty
    /// list, set, sorted set or hash is kept (Redis deletes them), and a stream's node layout
    /// describes its entries.
    pub fn check(&mut self) -> Result<(), String> {
        for t in 0..self.dbs.len() {
            let keys = self.apply(t, &[b"keys".to_vec(), b"*".to_vec()]);
            let Ok(Some((Value::Array(items), _))) = resp::decode(&keys) else {
                return Err(format!("KEYS * on thread {t} answered {keys:?}"));
            };
            for item in items {
                let Value::Bulk(k) = item else {
                    return Err(format!("KEYS * on thread {t}: {item:?}"));
                };
                let owner = route::thread_of(&k, self.layout, self.dbs.len());
                if owner != t {
                    return Err(format!(
                        "key {:?} is on thread {t}, its slot's owner is {owner}",
                        String::from_utf8_lossy(&k)
                    ));
                }
                if let Some(crate::db::Value::Stream(st)) = self.dbs[t].peek(&k) {
                    st.check_nodes()
                        .map_err(|e| format!("stream {:?}: {e}", String::from_utf8_lossy(&k)))?;
                }
                let ty = self.apply(t, &[b"type".to_vec(), k.clone()]);
                let len_cmd: &[u8] = match &ty[..] {
                    b"+list\r\n" => b"llen",
                    b"+set\r\n" => b"scard",
                    b"+zset\r\n" => b"zcard",
                    b"+hash\r\n" => b"hlen",
                    _ => continue,
                };
                let len = self.apply(t, &[len_cmd.to_vec(), k.clone()]);
                if len == b":0\r\n" {
                    return Err(format!(
                        "empty {} kept at {:?}",
                        String::from_utf8_lossy(&ty[1..ty.len() - 2]),
                        String::from_utf8_lossy(&k)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn flatten(argv: &[Vec<u8>]) -> (Vec<u8>, Vec<Span>) {
    let (mut buf, mut spans) = (Vec::new(), Vec::with_capacity(argv.len()));
    command::words_into(argv, &mut buf, &mut spans);
    (buf, spans)
}

/// Commands that give every key of `KEYS` a value of a random type, small (packed) or large
/// (indexed). Deterministic ids and values, so two servers given them agree.
pub fn prefill(c: &mut impl Choices) -> Vec<Vec<Vec<u8>>> {
    let mut cmds = Vec::new();
    let words = |w: &[&[u8]]| -> Vec<Vec<u8>> { w.iter().map(|a| a.to_vec()).collect() };
    for k in KEYS {
        let k = k.as_bytes();
        cmds.push(words(&[b"del", k]));
        let n = [1, 3, 200][c.below(3)];
        let mut argv = match c.below(7) {
            0 => words(&[b"rpush", k]),
            1 => words(&[b"sadd", k]),
            2 => words(&[b"zadd", k]),
            3 => words(&[b"hset", k]),
            4 => words(&[b"set", k]),
            5 => words(&[b"xadd", k, b"1-1", b"f", b"v"]),
            _ => words(&[b"pfadd", k]),
        };
        match &argv[0][..] {
            b"set" => argv.push(c.below(1000).to_string().into_bytes()),
            b"xadd" => {}
            b"zadd" | b"hset" => {
                for i in 0..n {
                    argv.push(if argv[0] == b"zadd" {
                        (i % 7).to_string().into_bytes()
                    } else {
                        format!("f{i}").into_bytes()
                    });
                    argv.push(format!("m{i}").into_bytes());
                }
            }
            _ => argv.extend((0..n).map(|i| format!("{}", i % 50 + 1).into_bytes())),
        }
        let stream = argv[0] == b"xadd";
        cmds.push(argv);
        if stream {
            cmds.push(words(&[b"xgroup", b"create", k, b"g", b"0"]));
        }
    }
    cmds
}

/// Runs `count` commands from `c` on a node of two shard threads, checking the invariants
/// after each; time moves forward now and then so TTLs expire. The first broken invariant is
/// returned with the commands that led to it.
pub fn run_sequence(c: &mut impl Choices, count: usize, seed: u64) -> Result<usize, String> {
    let mut node = Node::new(2, seed);
    let mut log: Vec<String> = Vec::new();
    for i in 0..count {
        // Now and then every key is given a value of some type, so commands find data of
        // their own type (and of others) rather than missing keys.
        if i % 100 == 0 {
            for argv in prefill(c) {
                node.run(&argv);
            }
        }
        let argv = command(c);
        log.push(
            argv.iter()
                .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        );
        node.run(&argv);
        if c.below(16) == 0 {
            node.now_ms += [1, 1000, 100_000][c.below(3)] as u64;
        }
        if let Err(e) = node.check() {
            let start = log.len().saturating_sub(20);
            return Err(format!("{e}\nafter:\n{}", log[start..].join("\n")));
        }
    }
    Ok(log.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded random command sequences (`CMD_FUZZ_SEEDS=n` for more; a failure names the seed
    /// and the commands before it). Every crash found is kept as a regression test of its
    /// command family.
    #[test]
    fn random_command_sequences_never_panic_and_keep_the_keyspace_sound() {
        let seeds = std::env::var("CMD_FUZZ_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40u64);
        let mut total = 0;
        for seed in 0..seeds {
            // (Rng::new sets the low bit: seeds are spread first, or 2k and 2k+1 would agree.)
            let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed);
            match run_sequence(&mut rng, 400, seed) {
                Ok(n) => total += n,
                Err(e) => panic!("seed {seed}: {e}"),
            }
        }
        eprintln!("{total} commands run");
    }
}
