//! Lua scripting end to end (issue 18, step 1: a node alone, `docs/design/scripting.md`):
//! EVAL/EVALSHA/SCRIPT from the `redis` crate, a distributed lock and a token-bucket rate
//! limiter as applications write them, what scripts wrote surviving kill -9 (their effects
//! are logged, never the script), and replies compared with redis-server's for the same
//! scripts.

mod common;

use common::Server;
use std::time::Duration;

/// The lock scripts redis-py's `Lock` runs (acquire is SET NX PX; release and extend check
/// the token first).
const RELEASE: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
  return 0
end
redis.call('del', KEYS[1])
return 1";
const EXTEND: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
  return 0
end
local expiration = redis.call('pttl', KEYS[1])
if not expiration then
  expiration = 0
end
if expiration < 0 then
  return 0
end
redis.call('pexpire', KEYS[1], expiration + ARGV[2])
return 1";

/// A token bucket: `capacity` tokens, refilled at `rate` per second, one taken per call; the
/// clock comes from the caller (ARGV[3], ms) as such limiters usually do.
const BUCKET: &str =
    "local capacity, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('hmget', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - at) * rate / 1000)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('hset', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('pexpire', KEYS[1], 60000)
return allowed";

#[test]
fn a_lock_and_a_rate_limiter_work_and_what_scripts_wrote_survives_kill_9() {
    let mut s = Server::start("0", &[]);
    let mut c = s.client();
    // The lock: one holder at a time, release only by the holder's token, extend.
    let acquired: Option<String> = redis::cmd("SET")
        .arg("lock:job")
        .arg("token-a")
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query(&mut c)
        .unwrap();
    assert_eq!(acquired.as_deref(), Some("OK"));
    let release = redis::Script::new(RELEASE);
    let extend = redis::Script::new(EXTEND);
    let wrong: i64 = release
        .key("lock:job")
        .arg("token-b")
        .invoke(&mut c)
        .unwrap();
    assert_eq!(wrong, 0, "another token does not release it");
    let ok: i64 = extend
        .key("lock:job")
        .arg("token-a")
        .arg(5000)
        .invoke(&mut c)
        .unwrap();
    assert_eq!(ok, 1);
    let ttl: i64 = redis::cmd("PTTL").arg("lock:job").query(&mut c).unwrap();
    assert!(ttl > 10_000, "extended: {ttl}");
    // The node's script cache, in INFO (the lock's two scripts).
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    assert!(info.contains("number_of_cached_scripts:2\r\n"), "{info}");
    let released: i64 = release
        .key("lock:job")
        .arg("token-a")
        .invoke(&mut c)
        .unwrap();
    assert_eq!(released, 1);
    let gone: Option<String> = redis::cmd("GET").arg("lock:job").query(&mut c).unwrap();
    assert_eq!(gone, None);
    // The bucket: 5 tokens, 1 per second: the sixth call in the same millisecond is refused,
    // a second later one more is allowed.
    let bucket = redis::Script::new(BUCKET);
    let mut allowed = Vec::new();
    for _ in 0..6 {
        let a: i64 = bucket
            .key("rate:u1")
            .arg(5)
            .arg(1)
            .arg(1_000_000)
            .invoke(&mut c)
            .unwrap();
        allowed.push(a);
    }
    assert_eq!(allowed, [1, 1, 1, 1, 1, 0]);
    let later: i64 = bucket
        .key("rate:u1")
        .arg(5)
        .arg(1)
        .arg(1_001_000)
        .invoke(&mut c)
        .unwrap();
    assert_eq!(later, 1);
    // Many script writes, then kill -9: their effects are in the log.
    let add = redis::Script::new(
        "redis.call('rpush', KEYS[1], ARGV[1]); return redis.call('incrby', KEYS[2], 2)",
    );
    for i in 0..200 {
        let _: i64 = add.key("l").key("n").arg(i).invoke(&mut c).unwrap();
    }
    s.kill_and_restart();
    let mut c = s.client();
    let n: i64 = redis::cmd("GET").arg("n").query(&mut c).unwrap();
    let len: i64 = redis::cmd("LLEN").arg("l").query(&mut c).unwrap();
    assert_eq!((n, len), (400, 200));
    let fields: Vec<String> = redis::cmd("HKEYS").arg("rate:u1").query(&mut c).unwrap();
    assert_eq!(fields.len(), 2);
    // The script cache is the node's memory, as Redis's: empty after a restart (the redis
    // crate's `Script` loads it again on NOSCRIPT).
    let again: i64 = add.key("l").key("n").arg("x").invoke(&mut c).unwrap();
    assert_eq!(again, 402);
}

/// The same scripts' replies from a Shardline node alone and from redis-server 7, byte for
/// byte: conversions both ways, errors with their line, the sandbox, read-only scripts.
#[test]
fn script_replies_are_redis_servers() {
    let Some(redis) = common::Redis::start() else {
        eprintln!("redis-server is not installed: skipped");
        return;
    };
    let redis_port = redis.port;
    let s = Server::start("0", &[]);
    let mut ours = s.raw();
    let mut theirs = std::net::TcpStream::connect(("127.0.0.1", redis_port)).unwrap();
    let scripts: &[(&str, &[&str])] = &[
        ("return {1,2,{3,'a'},nil,5}", &["0"]),
        ("return 3.99", &["0"]),
        ("return {true, false, 'x', 1.5, -2}", &["0"]),
        (
            "return redis.call('set', KEYS[1], ARGV[1])",
            &["1", "k", "v"],
        ),
        ("return redis.call('get', KEYS[1])", &["1", "k"]),
        ("return redis.call('get', 'missing')", &["0"]),
        (
            "return {redis.call('incr', 'n'), redis.call('incr', 'n')}",
            &["0"],
        ),
        ("return redis.call('incr', 'k')", &["0"]),
        ("return redis.pcall('incr', 'k')", &["0"]),
        (
            "local a = 1\nlocal b = 2\nreturn redis.call('incr', 'k')",
            &["0"],
        ),
        ("return redis.call('nosuch')", &["0"]),
        ("return redis.call('get')", &["0"]),
        ("return x", &["0"]),
        ("y = 1", &["0"]),
        ("error('boom')", &["0"]),
        ("error({err='MINE failed'})", &["0"]),
        ("return {err='NOPE no'}", &["0"]),
        ("return redis.status_reply('DONE')", &["0"]),
        ("return redis.error_reply('ERR custom')", &["0"]),
        ("return redis.sha1hex('abc')", &["0"]),
        ("return 1 +", &["0"]),
        (
            "return KEYS[1] .. ARGV[1] .. #KEYS .. #ARGV",
            &["2", "a", "b", "c"],
        ),
        ("return redis.call('hgetall', 'nohash')", &["0"]),
        (
            "redis.call('hset', 'h', 'f', 'v'); return redis.call('hgetall', 'h')",
            &["0"],
        ),
        (
            "return {type(redis.call('get', 'missing')), type(redis.call('ping'))}",
            &["0"],
        ),
        ("return tostring(0.1)", &["0"]),
        ("return string.format('%d-%s', 7, 'x')", &["0"]),
        ("return cjson == nil", &["0"]),
        ("return table.concat({'a','b'}, ',')", &["0"]),
        ("return 1", &["-1"]),
        ("return 1", &["3", "a"]),
    ];
    for (body, rest) in scripts {
        let mut argv: Vec<Vec<u8>> = vec![b"EVAL".to_vec(), body.as_bytes().to_vec()];
        argv.extend(rest.iter().map(|w| w.as_bytes().to_vec()));
        let (x, y) = (call(&mut ours, &argv), call(&mut theirs, &argv));
        assert_eq!(
            String::from_utf8_lossy(&x),
            String::from_utf8_lossy(&y),
            "EVAL {body:?} {rest:?} (left: shardline)"
        );
    }
}

/// The libraries Redis gives its Lua (`cjson`, `cmsgpack`, `bit`, `struct`): every script of
/// `tests/data/lua_libraries.txt` answers byte for byte what redis-server 7 answers, errors
/// (their text, position and the name the function was called by) included.
#[test]
fn library_replies_are_redis_servers() {
    let Some(redis) = common::Redis::start() else {
        eprintln!("redis-server is not installed: skipped");
        return;
    };
    let s = Server::start("0", &[]);
    let mut ours = s.raw();
    let mut theirs = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let scripts = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/lua_libraries.txt"
    ))
    .unwrap();
    let mut n = 0;
    for body in scripts.split(|&b| b == b'\n') {
        if body.is_empty() || body.starts_with(b"#") {
            continue;
        }
        let argv = vec![b"EVAL".to_vec(), body.to_vec(), b"0".to_vec()];
        let (x, y) = (call(&mut ours, &argv), call(&mut theirs, &argv));
        assert_eq!(
            String::from_utf8_lossy(&x),
            String::from_utf8_lossy(&y),
            "EVAL {:?} 0 (left: shardline)",
            String::from_utf8_lossy(body)
        );
        n += 1;
    }
    assert!(n > 200, "the scripts ran: {n}");
}

fn call(s: &mut std::net::TcpStream, argv: &[Vec<u8>]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut req = Vec::new();
    shardline_transport::resp::encode_command(argv, &mut req);
    s.write_all(&req).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    loop {
        match shardline_transport::resp::value_len(&buf) {
            Ok(Some(n)) => {
                buf.truncate(n);
                return buf;
            }
            Ok(None) => {}
            Err(_) => {
                // Nested deeper than the walker follows: what arrives until the line is quiet.
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                return buf;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// On two shard threads a script runs on its keys' thread, whichever the connection's is;
/// one whose keys two threads serve is refused (nothing runs), as are scripts inside MULTI
/// for now.
#[test]
fn scripts_run_on_their_keys_thread_or_across_threads_of_a_node_with_two() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let incr = redis::Script::new("return redis.call('incrby', KEYS[1], ARGV[1])");
    for i in 0..64 {
        let key = format!("counter:{i}");
        for _ in 0..3 {
            let _: i64 = incr.key(&key).arg(2).invoke(&mut c).unwrap();
        }
        let n: i64 = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
        assert_eq!(n, 6, "{key}");
    }
    // Two keys of different threads (there are two: some pair differs).
    let (_, vshards): (String, u32) = redis::cmd("CONFIG")
        .arg(&["GET", "vshards"])
        .query(&mut c)
        .unwrap();
    let layout = shardline_shards::slot::VShardLayout::new(vshards).unwrap();
    let thread = |k: &str| shardline_shards::route::thread_of(k.as_bytes(), layout, 2);
    let a = "x".to_string();
    let b = (0..100)
        .map(|j| format!("other{j}"))
        .find(|b| thread(&a) != thread(b))
        .expect("keys on both threads");
    // Keys of both threads: a Calvin transaction (issue 18, step 6), whole each time (EVALSHA
    // through the `redis` crate, EVAL the first time).
    let both = redis::Script::new(
        "local x = redis.call('incr', KEYS[1]) local y = redis.call('incrby', KEYS[2], 2) return {x, y}",
    );
    for i in 1..=20 {
        let got: (i64, i64) = both.key(&a).key(&b).invoke(&mut c).unwrap();
        assert_eq!(got, (i, 2 * i));
    }
    let n: (i64, i64) = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(n, (20, 40));
    // It may name its keys only (the participants hold those alone).
    let undeclared =
        redis::Script::new("redis.call('incr', KEYS[1]) return redis.call('get', 'elsewhere')");
    let refused: redis::RedisResult<()> = undeclared.key(&a).key(&b).invoke(&mut c);
    assert!(
        format!("{refused:?}").contains("did not declare"),
        "{refused:?}"
    );
    let n: i64 = redis::cmd("GET").arg(&a).query(&mut c).unwrap();
    assert_eq!(
        n, 21,
        "what it wrote before its error is kept, as Redis keeps it"
    );
    // Scripts inside MULTI (redis-py's pipelines send them so): the transaction runs whole,
    // as a Calvin transaction over its keys, here on both threads; EVALSHA too.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('incrby', KEYS[1], ARGV[1])")
        .query(&mut c)
        .unwrap();
    for i in 1..=10 {
        let (x, y, z, got): (i64, i64, String, i64) = redis::pipe()
            .atomic()
            .cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(&a)
            .arg(1)
            .cmd("EVAL")
            .arg("return redis.call('incrby', KEYS[1], ARGV[1])")
            .arg(1)
            .arg(&b)
            .arg(2)
            .cmd("SET")
            .arg("plain")
            .arg(i)
            .cmd("GET")
            .arg(&a)
            .query(&mut c)
            .unwrap();
        assert_eq!((x, y, z.as_str(), got), (21 + i, 40 + 2 * i, "OK", 21 + i));
    }
    // A WATCHed key changed before EXEC: nothing of it runs.
    let () = redis::cmd("WATCH").arg(&a).query(&mut c).unwrap();
    let mut other = s.client();
    let () = redis::cmd("SET").arg(&a).arg(0).query(&mut other).unwrap();
    let aborted: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(&b)
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(aborted, None);
    let n: i64 = redis::cmd("GET").arg(&b).query(&mut c).unwrap();
    assert_eq!(n, 60);
    // A script without keys inside MULTI is refused when queued (where would it run?).
    let () = redis::cmd("MULTI").query(&mut c).unwrap();
    let queued: redis::RedisResult<String> =
        redis::cmd("EVAL").arg("return 1").arg(0).query(&mut c);
    assert!(format!("{queued:?}").contains("without keys"), "{queued:?}");
    let exec: redis::RedisResult<redis::Value> = redis::cmd("EXEC").query(&mut c);
    assert!(
        format!("{exec:?}").to_uppercase().contains("EXECABORT"),
        "{exec:?}"
    );
}

/// A library as users write one: a counter with a ceiling and a read-only getter.
const LIBRARY: &str = "#!lua name=counters
local function bump(keys, args)
  local n = redis.call('incr', keys[1])
  if n > tonumber(args[1]) then
    redis.call('set', keys[1], args[1])
    return tonumber(args[1])
  end
  return n
end
redis.register_function('bump', bump)
redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}
";

/// Runs redis-cli against `port` with `args` (and `stdin` for `-x`); its output, or `None`
/// if redis-cli is not installed (CI installs redis-tools).
fn redis_cli(port: u16, args: &[&str], stdin: Option<&str>) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// FUNCTION LOAD and FCALL from redis-cli on a node alone; the library is data: it survives
/// kill -9 (the metadata group's log holds it), DUMP/FLUSH/RESTORE round-trip it.
#[test]
fn functions_from_redis_cli_are_data_that_survive_kill_9() {
    let mut s = Server::start("0", &[]);
    let Some(name) = redis_cli(s.port, &["-x", "FUNCTION", "LOAD"], Some(LIBRARY)) else {
        eprintln!("redis-cli is not installed; skipped (CI installs redis-tools)");
        return;
    };
    assert_eq!(name, "counters");
    let calls: Vec<String> = (0..4)
        .map(|_| redis_cli(s.port, &["FCALL", "bump", "1", "c", "3"], None).unwrap())
        .collect();
    assert_eq!(calls, ["1", "2", "3", "3"]);
    assert_eq!(
        redis_cli(s.port, &["FCALL_RO", "peek", "1", "c"], None).unwrap(),
        "3"
    );
    assert!(
        redis_cli(s.port, &["FCALL_RO", "bump", "1", "c", "9"], None)
            .unwrap()
            .contains("write flag")
    );
    s.kill_and_restart();
    let mut c = s.client();
    let n: i64 = redis::cmd("FCALL")
        .arg("bump")
        .arg(1)
        .arg("d")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1, "the library came back with the node");
    let dump: Vec<u8> = redis::cmd("FUNCTION").arg("DUMP").query(&mut c).unwrap();
    let () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut c).unwrap();
    let gone: redis::RedisResult<i64> = redis::cmd("FCALL").arg("bump").arg(0).query(&mut c);
    assert!(
        format!("{gone:?}").contains("Function not found"),
        "{gone:?}"
    );
    let () = redis::cmd("FUNCTION")
        .arg("RESTORE")
        .arg(&dump)
        .query(&mut c)
        .unwrap();
    let listed: Vec<redis::Value> = redis::cmd("FUNCTION").arg("LIST").query(&mut c).unwrap();
    assert_eq!(listed.len(), 1);
    s.kill_and_restart();
    let mut c = s.client();
    let peek: String = redis::cmd("FCALL_RO")
        .arg("peek")
        .arg(1)
        .arg("d")
        .query(&mut c)
        .unwrap();
    assert_eq!(peek, "1");
}

/// Functions are the cluster's: a library loaded through any node (forwarded to the metadata
/// group's leader) is on every node, after every node restarts, and on a node that joins
/// later (in the metadata group's snapshot).
#[test]
fn functions_are_the_same_on_every_node_of_a_cluster() {
    let mut cl = common::cluster::TestCluster::start(3, false, &[]);
    let libs = ["alpha", "beta", "gamma"];
    for (i, lib) in libs.iter().enumerate() {
        let mut c = redis::Client::open(cl.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        let code = format!(
            "#!lua name={lib}\nredis.register_function('{lib}_f', function(keys, args) return '{lib}' end)"
        );
        let name: String =
            retry_moving_metadata(|| redis::cmd("FUNCTION").arg("LOAD").arg(&code).query(&mut c))
                .unwrap();
        assert_eq!(name, *lib);
    }
    let names = |cl: &common::cluster::TestCluster, i: usize| -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let listed: Option<Vec<Vec<redis::Value>>> = redis::Client::open(cl.url(i))
                .ok()
                .and_then(|c| c.get_connection().ok())
                .and_then(|mut c| redis::cmd("FUNCTION").arg("LIST").query(&mut c).ok());
            let got: Vec<String> = listed
                .unwrap_or_default()
                .iter()
                .map(|lib| redis::from_redis_value(lib[1].clone()).unwrap())
                .collect();
            if got.len() == 3 || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for i in 0..3 {
        assert_eq!(names(&cl, i), libs, "node {i}");
    }
    cl.restart_all();
    for i in 0..3 {
        assert_eq!(names(&cl, i), libs, "node {i} after the restart");
    }
    let new = cl.join(1, &[]);
    assert_eq!(names(&cl, new), libs, "the node that joined");
    // A second load of a name is refused wherever it is sent, as one library.
    let mut c = redis::Client::open(cl.url(new))
        .unwrap()
        .get_connection()
        .unwrap();
    let again: redis::RedisResult<String> = retry_moving_metadata(|| {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("#!lua name=alpha\nredis.register_function('x', function() return 1 end)")
            .query(&mut c)
    });
    assert!(format!("{again:?}").contains("already exists"), "{again:?}");
}

/// `f` again while the metadata group's leadership moves (`-TRYAGAIN`, or `-NOTLEADER` from a
/// node that led it a moment ago: nothing was changed), for up to 10 s.
fn retry_moving_metadata<T>(mut f: impl FnMut() -> redis::RedisResult<T>) -> redis::RedisResult<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(e)
                if matches!(e.code(), Some("TRYAGAIN" | "NOTLEADER"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            r => return r,
        }
    }
}

/// Scripts on a 3-node cluster (replication factor 3) while their vShard's leader is killed
/// with -9 and comes back: clients retry only what was refused (`-MOVED`, `-TRYAGAIN`: not
/// applied) and count the rest (`-UNKNOWN`, a broken connection) as maybe; at the end every
/// acknowledged script's effects are there, none twice, and both effects of each script
/// together (the list and the counter agree), on every node after a restart of all.
#[test]
fn scripts_on_a_replicated_cluster_survive_kill_9_of_their_leader() {
    scripts_survive_kill_9_of_a_leader("{t}log", "{t}n");
}

/// The same across vShards (issue 18, step 6): each script a Calvin transaction whose
/// participants' leaders run it and log its effects; the list and the counter it writes
/// together still agree after a kill -9 and a restart of every node.
#[test]
fn scripts_across_vshards_of_a_replicated_cluster_survive_kill_9_of_a_leader() {
    scripts_survive_kill_9_of_a_leader("{t}log", "{u}n");
}

/// Four clients run a script that appends an item to `list_key` and increments `counter_key`
/// on a 3-node cluster while the list's leader is killed and started again: no acknowledged
/// item lost, none applied twice, and the two effects never apart.
fn scripts_survive_kill_9_of_a_leader(list_key: &'static str, counter_key: &'static str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const SCRIPT: &str =
        "redis.call('rpush', KEYS[1], ARGV[1]); return redis.call('incr', KEYS[2])";
    let mut cl = common::cluster::TestCluster::start(3, false, &[]);
    let ports = cl.ports.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let maybe: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, acked, maybe, ports) =
                (stop.clone(), acked.clone(), maybe.clone(), ports.clone());
            std::thread::spawn(move || {
                let mut port = ports[c % ports.len()];
                let mut conn: Option<redis::Connection> = None;
                let mut j = 0;
                while !stop.load(Ordering::Relaxed) {
                    j += 1;
                    let item = format!("c{c}:{j}");
                    loop {
                        let Some(n) = conn.as_mut() else {
                            conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                                .ok();
                            if conn.is_none() {
                                port = ports[(ports.iter().position(|&p| p == port).unwrap() + 1)
                                    % ports.len()];
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            continue;
                        };
                        let _ = n.set_read_timeout(Some(Duration::from_secs(10)));
                        let r: redis::RedisResult<i64> = redis::cmd("EVAL")
                            .arg(SCRIPT)
                            .arg(2)
                            .arg(list_key)
                            .arg(counter_key)
                            .arg(&item)
                            .query(n);
                        match r {
                            Ok(_) => {
                                acked.lock().unwrap().push(item);
                                break;
                            }
                            Err(e)
                                if e.kind()
                                    == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) =>
                            {
                                if let Some((_, p)) =
                                    e.redirect_node().and_then(|(a, _)| a.rsplit_once(':'))
                                {
                                    port = p.parse().unwrap();
                                }
                                conn = None;
                            }
                            Err(e)
                                if e.kind()
                                    == redis::ErrorKind::Server(
                                        redis::ServerErrorKind::TryAgain,
                                    ) =>
                            {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            Err(_) => {
                                maybe.lock().unwrap().push(item);
                                conn = None;
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let leader = (0..3)
        .find(|&i| {
            let mut n = redis::Client::open(cl.url(i))
                .unwrap()
                .get_connection()
                .unwrap();
            redis::cmd("EXISTS")
                .arg(list_key)
                .query::<i64>(&mut n)
                .is_ok()
        })
        .expect("a leader");
    cl.kill(leader);
    std::thread::sleep(Duration::from_secs(3));
    cl.spawn(leader);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().unwrap();
    }
    let (acked, maybe) = (acked.lock().unwrap().clone(), maybe.lock().unwrap().clone());
    assert!(
        acked.len() > 100,
        "the scripts made progress: {}",
        acked.len()
    );
    let check = |cl: &common::cluster::TestCluster| {
        let list: Vec<String> = redis::cmd("LRANGE")
            .arg(list_key)
            .arg(0)
            .arg(-1)
            .query(&mut cl.leader_of(list_key))
            .unwrap();
        let count: i64 = redis::cmd("GET")
            .arg(counter_key)
            .query(&mut cl.leader_of(counter_key))
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        for item in &list {
            assert!(seen.insert(item.clone()), "{item} applied twice");
            assert!(
                acked.contains(item) || maybe.contains(item),
                "{item} was never sent"
            );
        }
        for item in &acked {
            assert!(seen.contains(item), "acknowledged {item} lost");
        }
        assert_eq!(list.len() as i64, count, "a script's two effects apart");
    };
    check(&cl);
    cl.restart_all();
    check(&cl);
}

/// redis-py's `Lock` (its Lua scripts for release, extend and reacquire) from four processes
/// contending for one lock: each takes it 40 times, increments a counter by read-then-write
/// under it, extends it once and releases it; the counter ends at 160 (mutual exclusion), and
/// a release by a token that does not hold the lock is refused (`LockNotOwnedError`).
#[test]
fn redis_py_locks_exclude_across_processes() {
    if std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import redis"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("redis-py (python3-redis) is not installed; skipped (CI installs it)");
        return;
    }
    let s = Server::start("0-1", &[]);
    let script = r#"
import multiprocessing, sys, time
import redis

PORT = int(sys.argv[1])

def worker(n):
    r = redis.Redis(port=PORT, decode_responses=True)
    for _ in range(40):
        with r.lock("lock:counter", timeout=5, blocking_timeout=30, sleep=0.001) as lock:
            v = int(r.get("counter") or 0)
            time.sleep(0.0005)
            r.set("counter", v + 1)
            lock.extend(2)
    return n

if __name__ == "__main__":
    with multiprocessing.Pool(4) as p:
        p.map(worker, range(4))
    r = redis.Redis(port=PORT, decode_responses=True)
    assert r.get("counter") == "160", r.get("counter")
    held = r.lock("lock:other", timeout=5)
    assert held.acquire(blocking=False)
    intruder = r.lock("lock:other", timeout=5)
    intruder.local.token = "not-the-holder"
    try:
        intruder.release()
        raise SystemExit("a release by another token succeeded")
    except redis.exceptions.LockNotOwnedError:
        pass
    held.release()
    assert r.get("lock:other") is None
    print("locks ok")
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(s.port.to_string())
        .output()
        .expect("/usr/bin/python3 runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("locks ok"),
        "redis-py's Lock failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
