//! End-to-end: real binary, real clients (the `redis` crate, RESP2 and RESP3).

mod common;

use common::Server;
use redis::{Commands, Value};
use std::time::Duration;

#[test]
fn strings_keys_and_hashes_work_through_a_real_client() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let _: () = c.set("foo", "bar").unwrap();
    assert_eq!(c.get::<_, String>("foo").unwrap(), "bar");
    assert_eq!(c.incr::<_, _, i64>("n", 5).unwrap(), 5);
    let _: () = c.hset_multiple("h", &[("a", "1"), ("b", "2")]).unwrap();
    let mut all: Vec<(String, String)> = c.hgetall("h").unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    let e: redis::RedisResult<String> = c.get("h");
    assert!(common::msg(e.unwrap_err()).contains("WRONGTYPE"));
    let e: redis::RedisResult<Value> = redis::cmd("NOSUCHCMD").arg("x").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("unknown command"));
    let e: redis::RedisResult<Value> = redis::cmd("GET").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("wrong number of arguments for 'get' command"));
    assert_eq!(c.exists::<_, i64>(&["foo", "n", "nope"]).unwrap(), 2);
}

#[test]
fn resp3_clients_get_maps_and_nulls() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client_resp3();
    let _: () = c.hset("h", "f", "v").unwrap();
    let v: Value = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert!(matches!(v, Value::Map(ref m) if m.len() == 1), "{v:?}");
    let v: Value = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut c).unwrap();
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");
}

#[test]
fn pipelines_across_shard_threads_keep_request_order() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let mut p = redis::pipe();
    for i in 0..2000 {
        p.set(format!("key:{i}"), i).ignore();
    }
    for i in 0..2000 {
        p.get(format!("key:{i}"));
    }
    let got: Vec<i64> = p.query(&mut c).unwrap();
    assert_eq!(got, (0..2000).collect::<Vec<i64>>());
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let hops: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("cross_thread_hops:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Counters are published once per tick; a second INFO after a tick shows them.
    std::thread::sleep(Duration::from_millis(250));
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let hops2: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("cross_thread_hops:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        hops2 > 0 || hops > 0,
        "keys on the other thread must have hopped"
    );
}

#[test]
fn multi_key_commands_fan_out_and_gather() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    let _: () = c.mset(&pairs).unwrap();
    let mut asked = keys.clone();
    asked.insert(50, "missing".into());
    let got: Vec<Option<String>> = c.mget(&asked).unwrap();
    for (k, v) in asked.iter().zip(&got) {
        if k == "missing" {
            assert_eq!(v, &None);
        } else {
            assert_eq!(v.as_deref(), Some(format!("v-{k}").as_str()));
        }
    }
    assert_eq!(c.exists::<_, i64>(&keys).unwrap(), 200);
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 200);
    let mut listed: Vec<String> = c.keys("k1*").unwrap();
    listed.sort();
    assert_eq!(listed.len(), 111);
    let mut seen: Vec<String> = c
        .scan_match::<_, String>("k*")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200);
    let rk: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert!(rk.starts_with('k'));
    assert_eq!(c.del::<_, i64>(&keys[..100]).unwrap(), 100);
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    // MSETNX across shard threads: one Calvin transaction, all or nothing.
    let set: i64 = redis::cmd("MSETNX")
        .arg("foo")
        .arg(1)
        .arg("bar")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(set, 1);
    let again: i64 = redis::cmd("MSETNX")
        .arg("baz")
        .arg(1)
        .arg("bar")
        .arg(3)
        .query(&mut c)
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(c.exists::<_, i64>(&["foo", "bar", "baz"]).unwrap(), 2);
}

#[test]
fn expiry_is_lazy_and_active() {
    let s = Server::start("0-1", &["--hz", "50"]);
    let mut c = s.client();
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    assert!(c.pttl::<_, i64>("short").unwrap() > 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.get::<_, Option<String>>("short").unwrap(), None);
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("t{i}"))
            .arg("v")
            .arg("PX")
            .arg(50)
            .query(&mut c)
            .unwrap();
    }
    let _: () = c.set("keeper", "v").unwrap();
    // No client touches the keys: only active expiry can remove them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        if n == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "active expiry left {n} keys"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(info.contains("expired_keys:301"), "{info}");
}

#[test]
fn multi_exec_watch_follow_redis_semantics() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let mut other = s.client();
    // foo and bar live on different shard threads.
    let r: (String, i64) = redis::pipe()
        .atomic()
        .set("foo", "1")
        .incr("foo", 2)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, ("OK".to_string(), 3));
    // A queued error aborts the transaction.
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let e: redis::RedisResult<Value> = redis::cmd("GET").query(&mut c);
    assert!(e.is_err());
    let e: redis::RedisResult<Value> = redis::cmd("EXEC").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("EXECABORT"));
    // WATCH on a key of the other thread, modified by another client: EXEC returns null.
    let _: () = redis::cmd("WATCH").arg("bar").query(&mut c).unwrap();
    let _: () = other.set("bar", "changed").unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("bar")
        .arg("mine")
        .query(&mut c)
        .unwrap();
    let r: Value = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(r, Value::Nil);
    assert_eq!(other.get::<_, String>("bar").unwrap(), "changed");
    // Untouched WATCH: EXEC runs.
    let _: () = redis::cmd("WATCH").arg("bar").query(&mut c).unwrap();
    let r: (String,) = redis::pipe()
        .atomic()
        .set("bar", "mine")
        .query(&mut c)
        .unwrap();
    assert_eq!(r.0, "OK");
    assert_eq!(other.get::<_, String>("bar").unwrap(), "mine");
    // A transaction spanning shard threads is one Calvin transaction.
    let r: (String, String, i64) = redis::pipe()
        .atomic()
        .set("foo", "x")
        .set("bar", "y")
        .append("foo", "z")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, ("OK".into(), "OK".into(), 2));
    assert_eq!(other.get::<_, String>("bar").unwrap(), "y");
    // With WATCH: applied when the watched key is untouched (a WATCH right after a
    // transaction that replied sees all of it), aborted (nil) when it changed.
    let _: () = redis::cmd("WATCH").arg("bar").query(&mut c).unwrap();
    let r: Option<(String, String)> = redis::pipe()
        .atomic()
        .set("foo", "3")
        .set("bar", "x")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, Some(("OK".into(), "OK".into())));
    let _: () = redis::cmd("WATCH").arg("bar").query(&mut c).unwrap();
    let _: () = other.set("bar", "theirs").unwrap();
    let r: Option<(String, String)> = redis::pipe()
        .atomic()
        .set("foo", "4")
        .set("bar", "mine")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None);
    assert_eq!(other.get::<_, String>("foo").unwrap(), "3");
    assert_eq!(other.get::<_, String>("bar").unwrap(), "theirs");
    let e: redis::RedisResult<Value> = redis::cmd("EXEC").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("EXEC without MULTI"));
    let e: redis::RedisResult<Value> = redis::cmd("DISCARD").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("DISCARD without MULTI"));
}

/// Regression (issue 15): a transaction answers exactly one reply per queued command, as
/// Redis does. Connection commands (CONFIG, INFO, CLIENT, CLUSTER) are queued and answered in
/// their places; SHUTDOWN is refused at queue time; an EXEC with arguments ends the
/// transaction; a WATCHed key changed drops the connection commands' replies too.
#[test]
fn transactions_queue_connection_commands_and_answer_one_reply_each() {
    let s = Server::start("0-1", &[]);
    let mut raw = s.raw();
    let ask = |raw: &mut std::net::TcpStream, cmds: &str| {
        let (got, _) = common::exchange(raw, cmds.as_bytes(), Duration::from_millis(300));
        String::from_utf8(got).unwrap()
    };
    let got = ask(
        &mut raw,
        "MULTI\r\nCONFIG GET maxmemory\r\nSET tk v\r\nCLIENT GETNAME\r\nGET tk\r\nEXEC\r\n",
    );
    assert_eq!(
        got,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n\
         *4\r\n*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n+OK\r\n$-1\r\n$1\r\nv\r\n"
    );
    // GEORADIUS is queued like any command (its key flag once shared MULTI's own commands'
    // bit, and it ran at once).
    let got = ask(
        &mut raw,
        "MULTI\r\nGEOADD tg 13.36 38.11 a\r\nGEORADIUS tg 15 37 200 km\r\nEXEC\r\n",
    );
    assert_eq!(
        got,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n*1\r\n$1\r\na\r\n"
    );
    // INFO (a reply gathered from every shard thread) inside a transaction.
    let got = ask(&mut raw, "MULTI\r\nINFO keyspace\r\nINCR tn\r\nEXEC\r\n");
    assert!(
        got.starts_with("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$"),
        "{got}"
    );
    assert!(got.ends_with(":1\r\n"), "{got}");
    // SHUTDOWN is refused at queue time and the transaction fails.
    let got = ask(
        &mut raw,
        "MULTI\r\nSET tk w\r\nSHUTDOWN\r\nEXEC\r\nGET tk\r\n",
    );
    assert_eq!(
        got,
        "+OK\r\n+QUEUED\r\n-ERR Command not allowed inside a transaction\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n$1\r\nv\r\n"
    );
    // EXEC with an argument ends the transaction: the next EXEC has no MULTI.
    let got = ask(
        &mut raw,
        "MULTI\r\nSET tk w\r\nEXEC x\r\nEXEC\r\nGET tk\r\n",
    );
    assert_eq!(
        got,
        "+OK\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of: wrong number of \
         arguments for 'exec' command\r\n-ERR EXEC without MULTI\r\n$1\r\nv\r\n"
    );
    // An unknown subcommand, or a subcommand with the wrong count, is refused at queue time.
    let got = ask(
        &mut raw,
        "MULTI\r\nOBJECT BAD\r\nOBJECT ENCODING\r\nXINFO BAD k\r\nEXEC\r\n",
    );
    assert_eq!(
        got,
        "+OK\r\n-ERR unknown subcommand 'BAD'. Try OBJECT HELP.\r\n\
         -ERR wrong number of arguments for 'object|encoding' command\r\n\
         -ERR unknown subcommand 'BAD'. Try XINFO HELP.\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    // A WATCHed key changed: null, for the connection commands too.
    let mut other = s.client();
    let got = ask(&mut raw, "WATCH tk\r\n");
    assert_eq!(got, "+OK\r\n");
    let _: () = other.set("tk", "z").unwrap();
    let got = ask(
        &mut raw,
        "MULTI\r\nCONFIG GET maxmemory\r\nSET tk w\r\nEXEC\r\n",
    );
    assert_eq!(got, "+OK\r\n+QUEUED\r\n+QUEUED\r\n*-1\r\n");
    assert_eq!(other.get::<_, String>("tk").unwrap(), "z");
}

/// Regression (issue 15): Redis parameters that tune Redis's own files or memory layout are
/// accepted and read back (scripts and harnesses set them), with Redis's checks; unknown ones
/// get Redis's error. INFO's memory fields are where their names say, and error replies are
/// counted.
#[test]
fn config_accepts_redis_parameters_without_effect_and_info_fields_are_right() {
    let s = Server::start("0-1", &["--maxmemory", "1gb"]);
    let mut c = s.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&[
            "SET",
            "appendonly",
            "yes",
            "save",
            "",
            "list-compress-depth",
            "2",
        ])
        .query(&mut c)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "appendonly"])
        .query(&mut c)
        .unwrap();
    assert_eq!(got, vec!["appendonly", "yes"]);
    let e: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg(&["SET", "appendfsync", "sometimes"])
        .query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("must be one of the following"));
    // appendfsync is the log's fsync policy under Redis's names; appendonly is always yes.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "appendfsync", "always"])
        .query(&mut c)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "fsync"])
        .query(&mut c)
        .unwrap();
    assert_eq!(got, vec!["fsync", "always"]);
    let e: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg(&["SET", "appendonly", "no"])
        .query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("always logged"));
    let e: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg(&["SET", "no-such-parameter", "1"])
        .query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("Unknown option"));
    let _: () = c.set("cfgk", "v").unwrap();
    let e: redis::RedisResult<()> = c.lpush("cfgk", "x");
    assert!(e.is_err());
    std::thread::sleep(Duration::from_millis(300));
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    assert!(info.contains("\r\nmaxmemory:1073741824\r\n"), "{info}");
    assert!(info.contains("\r\nmaxmemory_human:1.00G"), "{info}");
    assert!(
        info.contains("\r\nmaxmemory_policy:noeviction\r\n"),
        "{info}"
    );
    let peak = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_peak_rss:"))
        .unwrap();
    assert!(peak.parse::<u64>().unwrap() > 0, "{info}");
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(!info.contains("total_error_replies:0\r\n"), "{info}");
}

#[test]
fn auth_is_required_when_requirepass_is_set() {
    let s = Server::start("0", &["--requirepass", "s3cret"]);
    let mut c = s.client();
    let e: redis::RedisResult<Value> = redis::cmd("GET").arg("k").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("NOAUTH"));
    let e: redis::RedisResult<Value> = redis::cmd("AUTH").arg("wrong").query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("WRONGPASS"));
    let _: () = redis::cmd("AUTH").arg("s3cret").query(&mut c).unwrap();
    let _: () = c.set("k", "v").unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}/?protocol=resp3", s.port);
    let mut c3 = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(c3.get::<_, String>("k").unwrap(), "v");
}

#[test]
fn config_get_and_set_take_effect() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec!["port".to_string(), s.port.to_string()]);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg("2048")
        .query(&mut c)
        .unwrap();
    let mut raw = s.raw();
    let (got, closed) = common::exchange(
        &mut raw,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4096\r\n",
        Duration::from_secs(2),
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(closed);
    let e: redis::RedisResult<Value> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("port")
        .arg("1")
        .query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("immutable"));
    let e: redis::RedisResult<Value> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hz")
        .arg("abc")
        .query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("hz"));
    let all: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut c)
        .unwrap();
    assert!(all.contains(&"client-output-buffer-limit".to_string()));
}

#[test]
fn info_and_client_commands_answer_in_redis_formats() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let mut d = s.client();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut d)
        .unwrap();
    let _: () = c.set("foo", "bar").unwrap();
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for field in [
        "redis_version:",
        "used_memory:",
        "mem_allocator:",
        "connected_clients:2",
        "db0:keys=1",
        "shard0:core=0",
        "shard1:core=1",
        "multiplexing_api:",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains("name=tester"));
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut d).unwrap();
    assert_eq!(name, "tester");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut d).unwrap();
    assert!(id > 0);
    let n: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(n > 70);
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("foo")
        .query(&mut c)
        .unwrap();
    assert!(usage > 0);
    let e: redis::RedisResult<Value> = redis::cmd("SELECT").arg(1).query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("out of range"));
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
}

#[test]
fn concurrent_clients_on_both_threads_lose_no_increment() {
    let s = Server::start("0-1", &[]);
    let keys: Vec<String> = (0..64).map(|i| format!("ctr:{i}")).collect();
    let handles: Vec<_> = (0..4)
        .map(|c| {
            let (url, keys) = (s.url(), keys.clone());
            std::thread::spawn(move || {
                let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
                for round in 0..20 {
                    let mut p = redis::pipe();
                    for i in 0..100 {
                        p.incr(&keys[(c * 7 + round * 13 + i) % keys.len()], 1)
                            .ignore();
                    }
                    // A spanning MGET in the same pipeline must not disturb order or counts.
                    p.mget(&keys[..8]);
                    let (vals,): (Vec<Option<i64>>,) = p.query(&mut conn).unwrap();
                    assert_eq!(vals.len(), 8);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut c = s.client();
    let vals: Vec<Option<i64>> = c.mget(&keys).unwrap();
    let total: i64 = vals.iter().map(|v| v.unwrap_or(0)).sum();
    assert_eq!(
        total,
        4 * 20 * 100,
        "increments were lost or duplicated: {vals:?}"
    );
}

#[test]
fn lists_work_through_a_real_client_on_both_threads() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    // foo lives on thread 0, bar on thread 1 (see shards/src/route.rs tests).
    for key in ["foo", "bar"] {
        let n: i64 = c.rpush(key, &["a", "b", "c"]).unwrap();
        assert_eq!(n, 3);
        let all: Vec<String> = c.lrange(key, 0, -1).unwrap();
        assert_eq!(all, vec!["a", "b", "c"]);
        let first: Option<String> = c.lpop(key, None).unwrap();
        assert_eq!(first.as_deref(), Some("a"));
    }
    let moved: Option<String> = redis::cmd("LMOVE")
        .arg("foo")
        .arg("{foo}dst")
        .arg("LEFT")
        .arg("RIGHT")
        .query(&mut c)
        .unwrap();
    assert_eq!(moved.as_deref(), Some("b"));
    // Across shard threads: a Calvin transaction.
    let across: Option<String> = redis::cmd("LMOVE")
        .arg("foo")
        .arg("bar")
        .arg("LEFT")
        .arg("RIGHT")
        .query(&mut c)
        .unwrap();
    assert_eq!(across.as_deref(), Some("c"));
    let bar: Vec<String> = c.lrange("bar", -1, -1).unwrap();
    assert_eq!(bar, ["c"]);
    let popped: Value = redis::cmd("LMPOP")
        .arg(2)
        .arg("{bar}nope")
        .arg("bar")
        .arg("RIGHT")
        .arg("COUNT")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(
        popped,
        Value::Array(vec![
            Value::BulkString(b"bar".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"c".to_vec()),
                Value::BulkString(b"c".to_vec()),
                Value::BulkString(b"b".to_vec())
            ])
        ])
    );
    assert_eq!(c.exists::<_, i64>("bar").unwrap(), 0);
}

#[test]
fn sorted_sets_and_sets_work_through_a_real_client() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let added: i64 = c
        .zadd_multiple("board", &[(10, "ann"), (30, "bob"), (20, "cid")])
        .unwrap();
    assert_eq!(added, 3);
    let top: Vec<(String, f64)> = c.zrevrange_withscores("board", 0, 1).unwrap();
    assert_eq!(
        top,
        vec![("bob".to_string(), 30.0), ("cid".to_string(), 20.0)]
    );
    let rank: Option<i64> = c.zrank("board", "cid").unwrap();
    assert_eq!(rank, Some(1));
    let n: i64 = c.sadd("tags", &["x", "y", "x"]).unwrap();
    assert_eq!(n, 2);
    let mut members: Vec<String> = c.smembers("tags").unwrap();
    members.sort();
    assert_eq!(members, vec!["x", "y"]);
    let mut c3 = s.client_resp3();
    let score: Value = redis::cmd("ZSCORE")
        .arg("board")
        .arg("ann")
        .query(&mut c3)
        .unwrap();
    assert_eq!(score, Value::Double(10.0));
}

#[test]
fn commandstats_count_calls_failures_and_rejections_and_reset() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    // foo and bar are owned by different shard threads.
    let _: () = c.set("foo", "1").unwrap();
    let _: () = c.set("bar", "x").unwrap();
    let _: Option<String> = c.get("foo").unwrap();
    let e: redis::RedisResult<i64> = c.incr("bar", 1);
    assert!(e.is_err());
    let e: redis::RedisResult<Value> = redis::cmd("GET").query(&mut c);
    assert!(e.is_err());
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .unwrap();
    let line = |name: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
            .to_string()
    };
    assert!(line("set").contains("calls=2,"), "{stats}");
    assert!(line("get").contains("calls=1,"), "{stats}");
    assert!(line("get").contains("rejected_calls=1,"), "{stats}");
    assert!(line("incrby").contains("failed_calls=1"), "{stats}");
    let default: String = redis::cmd("INFO").query(&mut c).unwrap();
    assert!(
        !default.contains("cmdstat_"),
        "commandstats is not a default section"
    );
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .unwrap();
    assert!(!stats.contains("cmdstat_set"), "{stats}");
    assert!(stats.contains("cmdstat_info:calls=1,"), "{stats}");
}

/// The GEO family through a real client on two shard threads: positions come back as Redis
/// prints them, searches find what they should, and a STORE destination on another thread is
/// refused as any cross-thread write is (it is routed as a key, never written on the wrong
/// thread).
#[test]
fn geo_commands_store_search_and_route_their_destination() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    let added: i64 = redis::cmd("GEOADD")
        .arg("{sicily}")
        .arg(&[
            "13.361389",
            "38.115556",
            "Palermo",
            "15.087269",
            "37.502669",
            "Catania",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(added, 2);
    let d: String = redis::cmd("GEODIST")
        .arg(&["{sicily}", "Palermo", "Catania", "km"])
        .query(&mut c)
        .unwrap();
    assert_eq!(d, "166.2742");
    let found: Vec<(String, String)> = redis::cmd("GEOSEARCH")
        .arg(&[
            "{sicily}",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "200",
            "km",
        ])
        .arg(&["ASC", "WITHDIST"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        found,
        vec![
            ("Catania".to_string(), "56.4413".to_string()),
            ("Palermo".to_string(), "190.4424".to_string())
        ]
    );
    let stored: i64 = redis::cmd("GEORADIUS")
        .arg(&[
            "{sicily}",
            "15",
            "37",
            "200",
            "km",
            "STORE",
            "{sicily}:near",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, 2);
    // A destination owned by the other shard thread.
    let (_, vshards): (String, u32) = redis::cmd("CONFIG")
        .arg(&["GET", "vshards"])
        .query(&mut c)
        .unwrap();
    let other = (0..100)
        .map(|i| format!("near{i}"))
        .find(|k| {
            let layout = shardline_shards::slot::VShardLayout::new(vshards).unwrap();
            shardline_shards::route::thread_of(k.as_bytes(), layout, 2)
                != shardline_shards::route::thread_of(b"{sicily}", layout, 2)
        })
        .unwrap();
    let stored: i64 = redis::cmd("GEORADIUS")
        .arg(&["{sicily}", "15", "37", "200", "km", "STOREDIST", &other])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        stored, 2,
        "stored across shard threads (a Calvin transaction)"
    );
    assert_eq!(c.zcard::<_, i64>(&other).unwrap(), 2);
}

/// CLIENT KILL, as Redis 7.0 answers it: by ID or address on any shard thread (the killed
/// connection is closed, even while blocked), the old form answering OK or "No such client",
/// the caller spared unless SKIPME no (then it gets its reply before it is closed).
#[test]
fn client_kill_closes_the_matching_connections() {
    let s = Server::start("0-1", &[]);
    let mut admin = s.client();
    let mut victims: Vec<redis::Connection> = (0..4).map(|_| s.client()).collect();
    let ids: Vec<i64> = victims
        .iter_mut()
        .map(|v| redis::cmd("CLIENT").arg("ID").query(v).unwrap())
        .collect();
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", &ids[0].to_string()])
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    assert!(redis::cmd("PING").query::<String>(&mut victims[0]).is_err());
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut victims[1]).unwrap(),
        "PONG"
    );
    // The old form by address.
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let addr = list
        .lines()
        .find(|l| l.starts_with(&format!("id={} ", ids[1])))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .unwrap()
        .to_string();
    let ok: String = redis::cmd("CLIENT")
        .arg(&["KILL", &addr])
        .query(&mut admin)
        .unwrap();
    assert_eq!(ok, "OK");
    assert!(redis::cmd("PING").query::<String>(&mut victims[1]).is_err());
    let e: redis::RedisResult<String> = redis::cmd("CLIENT")
        .arg(&["KILL", "127.0.0.1:1"])
        .query(&mut admin);
    assert!(common::msg(e.unwrap_err()).contains("No such client"));
    // A client blocked in BLPOP is closed too.
    let url = s.url();
    let blocked = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        (
            id,
            redis::cmd("BLPOP")
                .arg(&["never", "0"])
                .query::<Value>(&mut c),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    // Every normal client but this one: the two victims left and the blocked one.
    let n: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal"])
        .query(&mut admin)
        .unwrap();
    assert_eq!(n, 3);
    let (_, r) = blocked.join().unwrap();
    assert!(r.is_err(), "the blocked client's connection was closed");
    // SKIPME no: the caller gets its reply, then its connection closes.
    let n: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "SKIPME", "no"])
        .query(&mut admin)
        .unwrap();
    assert_eq!(n, 1);
    assert!(redis::cmd("PING").query::<String>(&mut admin).is_err());
    let e: redis::RedisResult<i64> = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", "0"])
        .query(&mut s.client());
    assert!(common::msg(e.unwrap_err()).contains("client-id should be greater than 0"));
}

/// MEMORY STATS, DOCTOR, PURGE and MALLOC-STATS answer from the process's figures (node-wide
/// key count from every shard thread), in and out of MULTI; USAGE still runs on the key's thread.
#[test]
fn memory_subcommands_report_the_process() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    for k in ["foo", "bar", "baz"] {
        let _: () = c.set(k, "v").unwrap();
    }
    let stats: std::collections::HashMap<String, Value> =
        redis::cmd("MEMORY").arg("STATS").query(&mut c).unwrap();
    assert_eq!(stats["keys.count"], Value::Int(3), "{stats:?}");
    assert!(matches!(stats["total.allocated"], Value::Int(n) if n > 0));
    let doctor: String = redis::cmd("MEMORY").arg("DOCTOR").query(&mut c).unwrap();
    assert!(doctor.starts_with("Hi Sam"), "{doctor}");
    let ok: String = redis::cmd("MEMORY").arg("PURGE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let usage: i64 = redis::cmd("MEMORY")
        .arg(&["USAGE", "foo"])
        .query(&mut c)
        .unwrap();
    assert!(usage > 0);
    let (stats, usage): (Vec<Value>, i64) = redis::pipe()
        .atomic()
        .cmd("MEMORY")
        .arg("STATS")
        .cmd("MEMORY")
        .arg(&["USAGE", "bar"])
        .query(&mut c)
        .unwrap();
    assert!(!stats.is_empty() && usage > 0);
    let e: redis::RedisResult<Value> = redis::cmd("MEMORY").arg(&["DOCTOR", "x"]).query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("wrong number of arguments for 'memory|doctor'"));
}

/// Many clients' MSETs of two random keys on two shard threads: some span both threads
/// (Calvin transactions), some two vShards of one thread, which then have a transaction's
/// entries in flight. Every one answers OK (one whose vShards were catching up once answered
/// -TRYAGAIN under this load: it now waits for them).
#[test]
fn two_key_msets_from_many_clients_on_two_threads_all_apply() {
    let s = Server::start("0-1", &[]);
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..16u64)
        .map(|w| {
            let (mut c, errors) = (s.client(), errors.clone());
            std::thread::spawn(move || {
                let mut rng = shardline_shards::rng::Rng::new(w + 1);
                for i in 0..400u64 {
                    // Keys of 8 hash tags (8 vShards, on either thread), 50 keys each: a
                    // transaction in flight on a vShard holds other keys than the next one's.
                    let mut key = || format!("{{t{}}}k{}", rng.next_u64() % 8, rng.next_u64() % 50);
                    let (a, b) = (key(), key());
                    if a == b {
                        continue;
                    }
                    let v = format!("{w}-{i}");
                    let pairs = [(a, v.clone()), (b, v)];
                    if let Err(e) = c.mset::<_, _, ()>(&pairs) {
                        errors.lock().unwrap().push(format!("{e:?}"));
                    }
                }
            })
        })
        .collect();
    for t in clients {
        t.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
}
