//! A node alone: a one-node cluster (`--cluster-nodes` of itself), every vShard a Raft group of
//! one that applies at append (docs/design/redesign.md). Real processes on loopback, killed
//! with SIGKILL: acknowledged writes, random commands' replay and commands across vShards all
//! survive the restart.

mod common;

use common::cluster::TestCluster;
use common::{http, samples};
use redis::Commands;
use std::time::{Duration, Instant};

/// A client that MSETs `keys` to 1, 2, 3 ... until `stop` is set or a reply is an error
/// (the node killed); returns the last number acknowledged.
fn mset_writer(
    url: String,
    keys: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut last = 0;
        for n in 1.. {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let args: Vec<String> = keys
                .iter()
                .flat_map(|k| [k.clone(), n.to_string()])
                .collect();
            let res: redis::RedisResult<()> = redis::cmd("MSET").arg(args).query(&mut conn);
            if res.is_err() {
                break;
            }
            last = n;
        }
        last
    })
}

/// A connection to the node.
fn connect(c: &TestCluster) -> redis::Connection {
    redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// A node alone (a one-node cluster: every vShard a group of one, applied at append, answered
/// once in the log) killed with SIGKILL under pipelined writes of 1 KB values loses no
/// acknowledged write, and a restart replays random commands (SPOP) to what they popped.
#[test]
fn a_one_node_cluster_killed_under_load_keeps_every_acknowledged_write() {
    let mut c = TestCluster::start(1, false, &["--fsync", "always"]);
    let info = c.info_section(0, "cluster").unwrap_or_default();
    assert!(info.contains("cluster_vshards_alone:64\r\n"), "{info}");
    let mut conn = connect(&c);
    // Random choices are the entry's: replayed, they pop the same members. 300 members: a
    // hash table, whose layout a replay does not rebuild (100 once hid that SPOP picked by
    // bucket: a packed set picks by index).
    let members: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let _: () = conn.sadd("{s}set", &members).unwrap();
    let popped: Vec<String> = redis::cmd("SPOP")
        .arg("{s}set")
        .arg(10)
        .query(&mut conn)
        .unwrap();
    let mut left: Vec<String> = conn.smembers("{s}set").unwrap();
    left.sort();
    assert_eq!(left.len() + popped.len(), 300);
    // Killed at once (the log, not a snapshot, holds the pop): the replay pops the same.
    c.kill(0);
    c.spawn(0);
    c.wait_served(Duration::from_secs(30));
    let mut conn = connect(&c);
    let mut replayed: Vec<String> = conn.smembers("{s}set").unwrap();
    replayed.sort();
    assert_eq!(replayed, left, "the replayed SPOP popped the same members");
    // Writers: pipelines of 16 SETs of 1 KB values and an INCR of their own counter.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = c.url(0);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
                let (mut acked, mut counted) = (Vec::new(), 0i64);
                for round in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let mut pipe = redis::pipe();
                    for k in 0..16 {
                        let key = format!("w{w}:{round}:{k}");
                        pipe.set(&key, format!("{key}:{}", "v".repeat(1000)))
                            .ignore();
                    }
                    pipe.incr(format!("count{w}"), 1).ignore();
                    match pipe.query::<()>(&mut conn) {
                        Ok(()) => {
                            acked.push(round);
                            counted += 1;
                        }
                        Err(_) => break, // the node is gone: not acknowledged
                    }
                }
                (acked, counted)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    c.kill(0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<(Vec<u64>, i64)> = writers
        .into_iter()
        .map(|h| {
            let (a, n) = h.join().unwrap();
            (a.into_iter().map(|r| r as u64).collect(), n)
        })
        .collect();
    assert!(
        acked.iter().all(|(a, _)| !a.is_empty()),
        "every writer got acknowledgements"
    );
    c.spawn(0);
    c.wait_served(Duration::from_secs(30));
    let mut conn = connect(&c);
    let mut again: Vec<String> = conn.smembers("{s}set").unwrap();
    again.sort();
    assert_eq!(again, left, "the replayed SPOP popped the same members");
    for (w, (rounds, counted)) in acked.iter().enumerate() {
        let n: i64 = conn.get(format!("count{w}")).unwrap();
        assert!(
            n >= *counted,
            "writer {w}: counter {n} < {counted} acknowledged"
        );
        for &round in rounds {
            for k in 0..16 {
                let key = format!("w{w}:{round}:{k}");
                let v: Option<String> = conn.get(&key).unwrap();
                assert_eq!(
                    v.as_deref().map(|v| v.len()),
                    Some(key.len() + 1001),
                    "{key} was acknowledged"
                );
            }
        }
    }
}

/// On a node alone, commands and transactions over keys of several vShards (of one shard
/// thread) run atomically as on a standalone Redis, and what they wrote survives SIGKILL:
/// each vShard's log holds their effects on its keys, written as one record.
#[test]
fn a_one_node_cluster_runs_commands_across_vshards_atomically_and_keeps_them() {
    let mut c = TestCluster::start(1, false, &["--fsync", "always", "--cores", "0"]);
    let mut conn = connect(&c);
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let _: () = redis::cmd("MSET")
        .arg(
            keys.iter()
                .flat_map(|k| [k.clone(), "0".into()])
                .collect::<Vec<_>>(),
        )
        .query(&mut conn)
        .unwrap();
    // One writer sets all ten to the same number, readers never see a mix.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = mset_writer(c.url(0), keys.clone(), stop.clone());
    let mut reads = 0;
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        let got: Vec<i64> = conn.mget(&keys).unwrap();
        assert!(
            got.iter().all(|&v| v == got[0]),
            "a fractured read: {got:?}"
        );
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.join().unwrap();
    assert!(reads > 10 && last > 10, "{reads} reads, {last} writes");
    // Commands that read some vShards and write others, and a transaction across them.
    let _: () = conn.sadd("s1", &["x", "y", "z"]).unwrap();
    let _: () = conn.sadd("s2", &["y", "w"]).unwrap();
    let n: i64 = redis::cmd("SUNIONSTORE")
        .arg("dst")
        .arg("s1")
        .arg("s2")
        .query(&mut conn)
        .unwrap();
    assert_eq!(n, 4);
    let _: () = conn.set_ex("old", "v", 1000).unwrap();
    let ttl_set = Instant::now();
    let _: () = redis::cmd("RENAME")
        .arg("old")
        .arg("new")
        .query(&mut conn)
        .unwrap();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("ta", 1)
        .incr("tb", 2)
        .query(&mut conn)
        .unwrap();
    assert_eq!((a, b), (1, 2));
    c.kill(0);
    c.spawn(0);
    c.wait_served(Duration::from_secs(30));
    let mut conn = connect(&c);
    let got: Vec<i64> = conn.mget(&keys).unwrap();
    assert_eq!(got, vec![last; 10], "the last MSET, whole");
    let mut dst: Vec<String> = conn.smembers("dst").unwrap();
    dst.sort();
    assert_eq!(dst, ["w", "x", "y", "z"]);
    let old: Option<String> = conn.get("old").unwrap();
    let new: Option<String> = conn.get("new").unwrap();
    let ttl: i64 = conn.ttl("new").unwrap();
    assert_eq!((old, new.as_deref()), (None, Some("v")));
    assert!(
        ttl <= 1000 && ttl >= 999 - ttl_set.elapsed().as_secs() as i64,
        "the TTL moved with the key: {ttl}"
    );
    let t: (i64, i64) = (conn.get("ta").unwrap(), conn.get("tb").unwrap());
    assert_eq!(t, (1, 2));
}

/// The quick-start server (no cluster flags: a cluster of itself, fsync every second) keeps
/// what it acknowledged across SIGKILL: values of every type from 1 byte to 1 MB, TTLs,
/// pipelined writes from several clients, and again after a second kill; a restart on
/// another port serves the same data.
#[test]
fn the_quick_start_server_keeps_its_data_across_kill_9() {
    let mut s = common::Server::start("0-1", &[]);
    let mut c = s.client();
    let fsync: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query(&mut c)
        .unwrap();
    assert_eq!(fsync, vec!["appendfsync", "everysec"], "the default policy");
    let big = "x".repeat(1 << 20);
    let _: () = c.set("big", &big).unwrap();
    let _: () = c.set_ex("ttl", "soon", 1000).unwrap();
    let _: () = c.hset_multiple("h", &[("a", "1"), ("b", "2")]).unwrap();
    let _: () = c.rpush("l", &["x", "y", "z"]).unwrap();
    let _: () = c.sadd("s", &["p", "q"]).unwrap();
    let _: () = c.zadd_multiple("z", &[(1.5, "one"), (2.5, "two")]).unwrap();
    let _: String = redis::cmd("XADD")
        .arg("st")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("MSET")
        .arg(&["m1", "1", "m2", "2", "m3", "3", "m4", "4"])
        .query(&mut c)
        .unwrap();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let url = s.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for round in 0..50 {
                    let mut pipe = redis::pipe();
                    for k in 0..16 {
                        pipe.set(format!("w{w}:{round}:{k}"), "v".repeat(1024))
                            .ignore();
                    }
                    pipe.incr(format!("n{w}"), 1).ignore();
                    let _: () = pipe.query(&mut c).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let check = |c: &mut redis::Connection, extra: i64| {
        assert_eq!(c.get::<_, String>("big").unwrap().len(), 1 << 20);
        let ttl: i64 = c.ttl("ttl").unwrap();
        assert!((900..=1000).contains(&ttl), "ttl {ttl}");
        let h: Vec<(String, String)> = c.hgetall("h").unwrap();
        assert_eq!(h.len(), 2);
        let l: Vec<String> = c.lrange("l", 0, -1).unwrap();
        assert_eq!(l, vec!["x", "y", "z"]);
        assert_eq!(c.scard::<_, i64>("s").unwrap(), 2);
        assert_eq!(c.zscore::<_, _, f64>("z", "two").unwrap(), 2.5);
        let xlen: i64 = redis::cmd("XLEN").arg("st").query(c).unwrap();
        assert_eq!(xlen, 1);
        let m: Vec<String> = c.mget(&["m1", "m2", "m3", "m4"]).unwrap();
        assert_eq!(m, vec!["1", "2", "3", "4"]);
        for w in 0..3 {
            assert_eq!(c.get::<_, i64>(format!("n{w}")).unwrap(), 50);
            assert!(c.exists::<_, bool>(format!("w{w}:49:15")).unwrap());
        }
        let keys: i64 = redis::cmd("DBSIZE").query(c).unwrap();
        assert_eq!(keys, 7 + 4 + 3 * (50 * 16 + 1) + extra);
    };
    check(&mut c, 0);
    drop(c);
    s.kill_and_restart();
    let mut c = s.client();
    check(&mut c, 0);
    // Written after a restart, and killed again: both lives' writes are there.
    let _: () = c.set("after", "restart").unwrap();
    drop(c);
    s.kill_and_restart();
    let mut c = s.client();
    check(&mut c, 1);
    assert_eq!(c.get::<_, String>("after").unwrap(), "restart");
    // On another port, the same data directory serves the same data.
    drop(c);
    let moved = s.restart_on_another_port();
    let mut c = moved.client();
    check(&mut c, 1);
}

/// SAVE, BGSAVE and BGREWRITEAOF answer as Redis does, once every shard thread's log is
/// fsynced (even under `appendfsync no`); LASTSAVE and INFO persistence say so.
#[test]
fn save_and_its_kin_fsync_the_log_and_answer_as_redis_does() {
    let mut s = common::Server::start("0-1", &["--appendfsync", "no"]);
    let mut c = s.client();
    let before: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    for i in 0..200 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    let ok: String = redis::cmd("SAVE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let after: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(after > before, "LASTSAVE {before} -> {after}");
    let bg: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(bg, "Background saving started");
    let e: redis::RedisResult<String> = redis::cmd("BGSAVE").arg("NOW").query(&mut c);
    assert!(e.is_err());
    let rw: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    assert_eq!(rw, "Background append only file rewriting started");
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    assert!(info.contains("aof_enabled:1\r\n"), "{info}");
    assert!(info.contains("rdb_last_save_time:"), "{info}");
    // The rewrite compacts in the background; the data stays what it was, across a crash.
    std::thread::sleep(Duration::from_millis(500));
    drop(c);
    s.kill_and_restart();
    let mut c = s.client();
    for i in 0..200 {
        assert_eq!(c.get::<_, i64>(format!("k{i}")).unwrap(), i);
    }
    let e: redis::RedisResult<String> = redis::cmd("MULTI").query(&mut c);
    assert!(e.is_ok());
    let refused: redis::RedisResult<String> = redis::cmd("SAVE").query(&mut c);
    assert!(common::msg(refused.unwrap_err()).contains("not allowed"));
}

/// The keys a test spreads over a node's shard threads (ten keys of ten vShards: with two
/// threads, both hold some).
fn spread_keys(prefix: &str) -> Vec<String> {
    (0..10).map(|i| format!("{prefix}{i}")).collect()
}

/// Across the shard threads of a node alone, commands on keys of several vShards are Calvin
/// transactions (issue 17): atomic (no reader sees part of an MSET; before, 6,660 of 33,541
/// MGETs did), the commands Redis has for them work (RENAME with its TTL, SMOVE, the STORE
/// forms, MSETNX all or nothing, LMOVE, COPY), a pipeline keeps its order around one, and a
/// kill -9 amid MSETs leaves every key at the same MSET, at least the last acknowledged;
/// after the restart new transactions are sequenced (a run's ids are its own).
#[test]
fn a_node_alone_runs_commands_across_its_threads_atomically_and_keeps_them() {
    let mut c = TestCluster::start(1, false, &["--fsync", "always", "--cores", "0,1"]);
    let mut conn = connect(&c);
    let keys = spread_keys("k");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = mset_writer(c.url(0), keys.clone(), stop.clone());
    let (mut reads, mut seen) = (0, 0);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let got: Vec<Option<i64>> = conn.mget(&keys).unwrap();
        assert!(
            got.iter().all(|&v| v == got[0]),
            "a fractured read: {got:?}"
        );
        seen = seen.max(got[0].unwrap_or(0));
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.join().unwrap();
    assert!(
        reads > 10 && last > 10 && seen > 1,
        "{reads} reads, {last} writes"
    );
    let deleted: i64 = conn.del(&keys[..5]).unwrap();
    assert_eq!(deleted, 5);
    let exists: i64 = conn.exists(&keys).unwrap();
    assert_eq!(exists, 5);

    // Commands that read some vShards and write others.
    let s = spread_keys("s");
    let _: () = conn.sadd(&s[0], &["x", "y", "z"]).unwrap();
    let _: () = conn.sadd(&s[1], &["y", "w"]).unwrap();
    let n: i64 = redis::cmd("SUNIONSTORE")
        .arg(&s[2])
        .arg(&s[0])
        .arg(&s[1])
        .query(&mut conn)
        .unwrap();
    assert_eq!(n, 4);
    let moved: i64 = redis::cmd("SMOVE")
        .arg(&s[0])
        .arg(&s[3])
        .arg("x")
        .query(&mut conn)
        .unwrap();
    assert_eq!(moved, 1);
    let r = spread_keys("r");
    let _: () = conn.set_ex(&r[0], "v", 1000).unwrap();
    for i in 0..9 {
        let _: () = redis::cmd("RENAME")
            .arg(&r[i])
            .arg(&r[i + 1])
            .query(&mut conn)
            .unwrap();
    }
    let ttl: i64 = conn.ttl(&r[9]).unwrap();
    assert!(
        (990..=1000).contains(&ttl),
        "the TTL moved with the key: {ttl}"
    );
    let m = spread_keys("m");
    let _: () = conn.set(&m[3], "taken").unwrap();
    let set: i64 = redis::cmd("MSETNX")
        .arg(&m[0])
        .arg(1)
        .arg(&m[3])
        .arg(2)
        .arg(&m[7])
        .arg(3)
        .query(&mut conn)
        .unwrap();
    assert_eq!(set, 0);
    let none: i64 = conn.exists(&[&m[0], &m[7]]).unwrap();
    assert_eq!(none, 0, "MSETNX set nothing");
    let l = spread_keys("l");
    let _: () = conn.rpush(&l[0], &["a", "b", "c"]).unwrap();
    for i in 0..9 {
        let _: Option<String> = redis::cmd("LMOVE")
            .arg(&l[i])
            .arg(&l[i + 1])
            .arg("LEFT")
            .arg("RIGHT")
            .query(&mut conn)
            .unwrap();
    }
    let copied: i64 = redis::cmd("COPY")
        .arg(&l[9])
        .arg(&l[5])
        .query(&mut conn)
        .unwrap();
    assert_eq!(copied, 1);
    // A pipeline keeps its order around a transaction: what comes before it is applied
    // first, what comes after sees it.
    let p = spread_keys("p");
    let (before, after): (i64, Vec<String>) = redis::pipe()
        .incr(&p[0], 5)
        .ignore()
        .cmd("MSET")
        .arg(&p[1])
        .arg("one")
        .arg(&p[2])
        .arg("two")
        .ignore()
        .get(&p[0])
        .mget(&[&p[1], &p[2], &p[0]])
        .query(&mut conn)
        .unwrap();
    assert_eq!(before, 5);
    assert_eq!(after, ["one", "two", "5"]);

    // MULTI/EXEC across threads: one transaction, one array; with WATCH, aborted (a nil
    // reply, nothing applied) if a watched key changed before it ran, else applied.
    let t = spread_keys("t");
    let (a, b, both): (i64, i64, Vec<i64>) = redis::pipe()
        .atomic()
        .incr(&t[0], 1)
        .incr(&t[9], 2)
        .mget(&[&t[0], &t[9]])
        .query(&mut conn)
        .unwrap();
    assert_eq!((a, b, both), (1, 2, vec![1, 2]));
    let mut other = connect(&c);
    let _: () = redis::cmd("WATCH").arg(&t[0]).query(&mut conn).unwrap();
    let _: i64 = other.incr(&t[0], 10).unwrap();
    let aborted: Option<(i64, i64)> = redis::pipe()
        .atomic()
        .incr(&t[0], 1)
        .incr(&t[9], 1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(aborted, None, "a WATCHed key changed");
    let both: Vec<i64> = conn.mget(&[&t[0], &t[9]]).unwrap();
    assert_eq!(both, [11, 2], "nothing applied");
    let _: () = redis::cmd("WATCH")
        .arg(&t[0])
        .arg(&t[5])
        .query(&mut conn)
        .unwrap();
    let applied: Option<(i64, i64)> = redis::pipe()
        .atomic()
        .incr(&t[0], 1)
        .incr(&t[9], 1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(applied, Some((12, 3)));
    // Optimistic increments of two keys on two threads by three clients in WATCH loops (the
    // way redis-py's `transaction` helper runs them): none lost, the two always equal.
    let _: () = conn.mset(&[(&t[1], 0), (&t[8], 0)]).unwrap();
    let loops: Vec<_> = (0..3)
        .map(|_| {
            let (url, k1, k8) = (c.url(0), t[1].clone(), t[8].clone());
            std::thread::spawn(move || {
                let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..40 {
                    loop {
                        let _: () = redis::cmd("WATCH")
                            .arg(&k1)
                            .arg(&k8)
                            .query(&mut conn)
                            .unwrap();
                        let (x, y): (i64, i64) =
                            redis::pipe().get(&k1).get(&k8).query(&mut conn).unwrap();
                        let done: Option<((), ())> = redis::pipe()
                            .atomic()
                            .set(&k1, x + 1)
                            .set(&k8, y + 1)
                            .query(&mut conn)
                            .unwrap();
                        if done.is_some() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for l in loops {
        l.join().unwrap();
    }
    let both: Vec<i64> = conn.mget(&[&t[1], &t[8]]).unwrap();
    assert_eq!(both, [120, 120], "every increment once");

    // Killed amid MSETs: every key at one MSET, the last acknowledged or the one after.
    let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = mset_writer(c.url(0), spread_keys("c"), never);
    std::thread::sleep(Duration::from_millis(700));
    c.kill(0);
    let acked = writer.join().unwrap();
    assert!(acked > 10, "{acked} MSETs before the kill");
    c.spawn(0);
    c.wait_served(Duration::from_secs(30));
    let mut conn = connect(&c);
    let got: Vec<i64> = conn.mget(spread_keys("c")).unwrap();
    assert!(
        got.iter().all(|&v| v == got[0]) && (acked..=acked + 1).contains(&got[0]),
        "after the restart: {got:?}, {acked} acknowledged"
    );
    let _: () = redis::cmd("MSET")
        .arg(&keys[0])
        .arg("after")
        .arg(&keys[9])
        .arg("restart")
        .query(&mut conn)
        .unwrap();
    let got: Vec<String> = conn.mget(&[&keys[0], &keys[9]]).unwrap();
    assert_eq!(got, ["after", "restart"]);
    let mut dst: Vec<String> = conn.smembers(&s[2]).unwrap();
    dst.sort();
    assert_eq!(dst, ["w", "x", "y", "z"]);
    let moved: Vec<String> = conn.smembers(&s[3]).unwrap();
    assert_eq!(moved, ["x"]);
    let l5: Vec<String> = conn.lrange(&l[5], 0, -1).unwrap();
    let l0: Vec<String> = conn.lrange(&l[0], 0, -1).unwrap();
    assert_eq!(
        (l5, l0),
        (vec!["a".to_string()], vec!["b".into(), "c".into()])
    );
}

/// Issue 19, step 3: a vShard of 16 MB compacts from a capture walked a piece per step while
/// counters in it are incremented and appended to (writes a snapshot must hold as they were
/// at its index, or the log replayed over it after a restart applies them twice); the node
/// is killed with -9 mid-load, after several such compactions, and every counter holds what
/// was acknowledged (or one more: the pipeline in flight), never more.
#[test]
fn compactions_captured_while_counters_change_keep_every_value_across_kill_9() {
    let mut s = common::Server::start("0-1", &["--raft-log-memory-bytes", "1mb"]);
    let mut c = s.client();
    // One vShard (one hash tag) of 16 MB: a capture of it spans many driver steps.
    let pad = "p".repeat(1024);
    for round in 0..64 {
        let mut pipe = redis::pipe();
        for k in 0..256 {
            pipe.set(format!("{{t}}:pad:{round}:{k}"), &pad).ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    let captures = |c: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("cluster").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("snapshot_captures:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("INFO cluster has snapshot_captures")
    };
    let before = captures(&mut c);
    let acked = std::sync::Arc::new([
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    ]);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let url = s.url();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for round in 1.. {
                    let mut pipe = redis::pipe();
                    for k in 0..32 {
                        pipe.incr(format!("{{t}}:n:{w}:{k}"), 1).ignore();
                        pipe.append(format!("{{t}}:a:{w}:{k}"), "x").ignore();
                    }
                    // Overwrites, so the log grows past its budget and compacts.
                    pipe.set(format!("{{t}}:pad:{}:{w}", round % 64), "q".repeat(2048))
                        .ignore();
                    if pipe.query::<()>(&mut c).is_err() {
                        return; // killed
                    }
                    acked[w].store(round, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while captures(&mut c) < before + 4 {
        assert!(Instant::now() < deadline, "no compactions from captures");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    s.kill_and_restart();
    for w in writers {
        w.join().unwrap();
    }
    let mut c = s.client();
    for w in 0..2 {
        let sure = acked[w].load(std::sync::atomic::Ordering::SeqCst) as i64;
        assert!(sure > 0);
        for k in 0..32 {
            let n: i64 = c.get(format!("{{t}}:n:{w}:{k}")).unwrap();
            assert!(
                (sure..=sure + 1).contains(&n),
                "counter {w}:{k} is {n} after {sure} acknowledged"
            );
            let a: String = c.get(format!("{{t}}:a:{w}:{k}")).unwrap();
            let a = a.len() as i64;
            assert!(
                (sure..=sure + 1).contains(&a),
                "appended {w}:{k} {a} times after {sure} acknowledged"
            );
        }
    }
}

/// The Prometheus endpoint (issue 20, step 6): the series a scrape returns move with the
/// commands run; other paths, methods and garbage get HTTP errors; a client that sends
/// nothing holds up no scrape; the sample Grafana dashboard asks only for series that exist.
#[test]
fn the_metrics_endpoint_is_scraped_and_its_series_move() {
    let c = TestCluster::start(1, false, &[]);
    let port = c.metrics[0];
    // One that connects and says nothing, all along.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (status, body) = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    // Every family declared, samples or not (a node alone has no peers' states).
    let families: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let before = samples(&body);
    for family in [
        "shardline_build_info",
        "shardline_memory_used_bytes",
        "shardline_commands_total",
        "shardline_connected_clients",
        "shardline_batch_duration_seconds_count",
        "shardline_cpu_seconds_total",
        "shardline_cluster_members",
        "shardline_vshards_led",
        "shardline_swim_packets_in_total",
        "shardline_log_fsync_duration_seconds_count",
        "shardline_log_batch_bytes_count",
    ] {
        assert!(
            before.keys().any(|k| k.split('{').next() == Some(family)),
            "no {family} in\n{body}"
        );
    }
    let mut conn = connect(&c);
    for i in 0..200 {
        let _: () = conn.set(format!("k{i}"), vec![b'x'; 1024]).unwrap();
    }
    let _: () = conn.set("word", "abc").unwrap();
    assert!(
        redis::cmd("INCR")
            .arg("word")
            .query::<i64>(&mut conn)
            .is_err()
    );
    assert!(redis::cmd("GET").query::<String>(&mut conn).is_err());
    let value =
        |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    // Published once a tick (10 ms): within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = samples(&http(port, "GET /metrics HTTP/1.0\r\n\r\n").1);
        if (value(&after, "shardline_command_calls_total{cmd=\"set\"}") >= 201.0
            && value(&after, "shardline_log_batch_bytes_sum{thread=\"0\"}") >= 200.0 * 1024.0)
            || Instant::now() > deadline
        {
            break after;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(value(&after, "shardline_command_calls_total{cmd=\"set\"}") >= 201.0);
    assert!(value(&after, "shardline_command_failed_total{cmd=\"incr\"}") >= 1.0);
    assert!(value(&after, "shardline_command_rejected_total{cmd=\"get\"}") >= 1.0);
    let moved = |k: &str, by: f64| {
        let (b, a) = (value(&before, k), value(&after, k));
        assert!(a - b >= by, "{k}: {b} then {a}");
    };
    moved("shardline_commands_total{thread=\"0\"}", 203.0);
    moved(
        "shardline_batch_duration_seconds_count{thread=\"0\"}",
        200.0,
    );
    moved(
        "shardline_net_input_bytes_total{thread=\"0\"}",
        200.0 * 1024.0,
    );
    // Every write is in the log: 200 KB at least went through its batches (a node alone
    // fsyncs every second, behind them).
    let logged = value(&after, "shardline_log_batch_bytes_sum{thread=\"0\"}");
    assert!(logged >= 200.0 * 1024.0, "{logged} bytes logged");
    assert!(value(&after, "shardline_connected_clients{thread=\"0\"}") >= 1.0);
    assert_eq!(
        value(
            &after,
            "shardline_batch_duration_seconds_bucket{thread=\"0\",le=\"+Inf\"}"
        ),
        value(
            &after,
            "shardline_batch_duration_seconds_count{thread=\"0\"}"
        )
    );
    // Not metrics.
    assert_eq!(
        http(port, "GET / HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http(port, "POST /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        http(port, "\x00\x01garbage\r\n\r\n").0,
        "HTTP/1.1 400 Bad Request"
    );
    // The dashboard: valid JSON whose expressions name only series the endpoint has.
    let dash = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/shardline-grafana.json"
    );
    let ok = std::process::Command::new("python3")
        .args(["-c", "import json,sys; json.load(open(sys.argv[1]))", dash])
        .status()
        .unwrap();
    assert!(ok.success(), "the dashboard is not JSON");
    let text = std::fs::read_to_string(dash).unwrap();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(rest) = word.strip_prefix("shardline_") {
            let name = format!("shardline_{rest}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.iter().any(|f| f == family),
                "the dashboard asks for {name}, which the endpoint does not declare"
            );
        }
    }
}

/// SLOWLOG and LATENCY (issue 20, step 6) with a real client: every command logged at a
/// threshold of 0, newest first with its arguments, cut to the count, kept to
/// `slowlog-max-len`, reset; nothing logged at the default threshold for quick commands; a
/// script that runs for tens of milliseconds logged, and a LATENCY `command` event once the
/// monitor is on.
#[test]
fn slowlog_and_latency_record_slow_commands() {
    let c = TestCluster::start(1, false, &[]);
    let mut conn = connect(&c);
    let cfg = |conn: &mut redis::Connection, k: &str, v: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(conn)
            .unwrap();
    };
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut conn).unwrap();
    for i in 0..20 {
        let _: () = conn.set(format!("quick{i}"), i).unwrap();
    }
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut conn).unwrap();
    assert_eq!(len, 0, "quick commands under the 10 ms default");
    cfg(&mut conn, "slowlog-log-slower-than", "0");
    let _: () = conn.set("k1", "v1").unwrap();
    let _: Option<String> = conn.get("k1").unwrap();
    let _: () = conn.set("k2", "x".repeat(300)).unwrap();
    type Entry = (i64, i64, i64, Vec<Vec<u8>>, String, String);
    let got: Vec<Entry> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(2)
        .query(&mut conn)
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].0 > got[1].0, "newest first: {got:?}");
    assert!(got[0].3[0].eq_ignore_ascii_case(b"set"), "{got:?}");
    assert_eq!(got[0].3[2].len(), 128 + "... (172 more bytes)".len());
    assert!(
        got[1].3[0].eq_ignore_ascii_case(b"get") && got[1].3[1] == b"k1",
        "{got:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((got[0].1 - now).abs() < 60, "a Unix time: {}", got[0].1);
    cfg(&mut conn, "slowlog-max-len", "3");
    for i in 0..10 {
        let _: () = conn.set(format!("m{i}"), i).unwrap();
    }
    let all: Vec<Entry> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert!(
        all.len() <= 3 * 2,
        "at most 3 per shard thread: {}",
        all.len()
    );
    assert_eq!(all[0].3[1], b"m9");
    assert!(
        redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-2)
            .query::<()>(&mut conn)
            .is_err()
    );
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut conn).unwrap();
    // A slow script at the default threshold, with the latency monitor on.
    cfg(&mut conn, "slowlog-max-len", "128");
    cfg(&mut conn, "slowlog-log-slower-than", "10000");
    cfg(&mut conn, "latency-monitor-threshold", "5");
    let script = "local n = 0 for i = 1, 5000000 do n = n + i end return n";
    let _: i64 = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .query(&mut conn)
        .unwrap();
    let got: Vec<Entry> = redis::cmd("SLOWLOG").arg("GET").query(&mut conn).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].3[0].eq_ignore_ascii_case(b"eval"), "{got:?}");
    assert!(got[0].2 >= 10_000, "{} µs", got[0].2);
    let latest: Vec<(String, i64, i64, i64)> = redis::cmd("LATENCY")
        .arg("LATEST")
        .query(&mut conn)
        .unwrap();
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0].0, "command");
    assert!(latest[0].2 >= 5 && latest[0].3 >= latest[0].2, "{latest:?}");
    let history: Vec<(i64, i64)> = redis::cmd("LATENCY")
        .arg("HISTORY")
        .arg("command")
        .query(&mut conn)
        .unwrap();
    assert_eq!(history.len(), 1);
    let reset: i64 = redis::cmd("LATENCY").arg("RESET").query(&mut conn).unwrap();
    assert_eq!(reset, 1);
    let latest: Vec<(String, i64, i64, i64)> = redis::cmd("LATENCY")
        .arg("LATEST")
        .query(&mut conn)
        .unwrap();
    assert!(latest.is_empty());
}
