//! Commands across vShards led by different nodes of a cluster (issue 17, Calvin across
//! nodes): every kind sent to any node runs as one atomic transaction, blocking pops wait on
//! lists of several nodes, and kill -9 of each node in turn amid transactions keeps each
//! whole.

mod common;

use common::cluster::{TestCluster, retry_tryagain};
use redis::Commands;
use std::time::Duration;

/// A plain connection to node `i` with read and write timeouts (a node killed mid-reply
/// must not hang the test).
fn plain(c: &TestCluster, i: usize) -> redis::RedisResult<redis::Connection> {
    let conn =
        redis::Client::open(c.url(i))?.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(conn)
}

/// Keys `{t}<name>` for `n` hash tags `t`, each led by node `i mod 3` when the test starts.
fn spread_tags(c: &TestCluster, n: usize) -> Vec<String> {
    (0..n).map(|i| c.key_led_by(i % 3)).collect()
}

/// Issue 17 across nodes: a command whose keys are in vShards led by different nodes, sent
/// to any node, is one atomic, serializable transaction (Calvin): MSET and MGET, RENAME,
/// SMOVE, LMOVE, MSETNX, MULTI/EXEC, with a concurrent MGET never seeing part of an MSET.
#[test]
fn commands_across_vshards_led_by_different_nodes_are_atomic_from_any_node() {
    let c = TestCluster::start(3, false, &[]);
    let tags = spread_tags(&c, 6);
    let keys: Vec<String> = tags.iter().map(|t| format!("{{{t}}}k")).collect();
    let mut conns: Vec<redis::Connection> = (0..3).map(|i| plain(&c, i).unwrap()).collect();
    for i in 0..3 {
        let mut mset = redis::cmd("MSET");
        for k in &keys {
            mset.arg(k).arg(format!("from{i}"));
        }
        let () = retry_tryagain(|| mset.query(&mut conns[i]));
        let got: Vec<String> =
            retry_tryagain(|| redis::cmd("MGET").arg(&keys).query(&mut conns[(i + 1) % 3]));
        assert_eq!(
            got,
            vec![format!("from{i}"); keys.len()],
            "MSET through node {i}"
        );
    }
    // RENAME between vShards of two nodes; MSETNX all or nothing.
    let () = retry_tryagain(|| {
        redis::cmd("RENAME")
            .arg(&keys[0])
            .arg(&keys[1])
            .query(&mut conns[2])
    });
    let n: i64 = retry_tryagain(|| redis::cmd("EXISTS").arg(&keys[..2]).query(&mut conns[0]));
    assert_eq!(n, 1);
    let set: i64 = retry_tryagain(|| {
        redis::cmd("MSETNX")
            .arg(&keys[0])
            .arg("x")
            .arg(&keys[2])
            .arg("y")
            .query(&mut conns[1])
    });
    assert_eq!(set, 0, "keys[2] exists: nothing is set");
    let n: i64 = retry_tryagain(|| {
        redis::cmd("EXISTS")
            .arg(&keys[0])
            .query(&mut c.leader_of(&keys[0]))
    });
    assert_eq!(n, 0);
    // SMOVE and LMOVE between sets and lists led by different nodes.
    let mut cluster = c.client().get_connection().unwrap();
    let (s0, s1) = (format!("{{{}}}s", tags[0]), format!("{{{}}}s", tags[1]));
    let (l0, l1) = (format!("{{{}}}l", tags[1]), format!("{{{}}}l", tags[2]));
    let _: i64 = cluster.sadd(&s0, &["a", "b"]).unwrap();
    let _: i64 = cluster.rpush(&l0, &["x", "y"]).unwrap();
    let moved: i64 = retry_tryagain(|| {
        redis::cmd("SMOVE")
            .arg(&s0)
            .arg(&s1)
            .arg("a")
            .query(&mut conns[2])
    });
    assert_eq!(moved, 1);
    let popped: String = retry_tryagain(|| {
        redis::cmd("LMOVE")
            .arg(&l0)
            .arg(&l1)
            .arg("LEFT")
            .arg("RIGHT")
            .query(&mut conns[0])
    });
    assert_eq!(popped, "x");
    let (a, b): (Vec<String>, Vec<String>) = (
        cluster.smembers(&s1).unwrap(),
        cluster.lrange(&l1, 0, -1).unwrap(),
    );
    assert_eq!((a, b), (vec!["a".to_string()], vec!["x".to_string()]));
    // MULTI/EXEC over vShards led by three nodes. (Its first key goes to the node that
    // leads it, as Redis Cluster asks: a transaction on one vShard led elsewhere is -MOVED.)
    let counters: Vec<String> = tags[..3].iter().map(|t| format!("{{{t}}}n")).collect();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for k in &counters {
        pipe.incr(k, 5);
    }
    let got: Vec<i64> = retry_tryagain(|| pipe.query(&mut c.leader_of(&counters[0])));
    assert_eq!(got, vec![5, 5, 5]);
    // WATCH with a transaction across vShards is for a node alone yet: refused when queued,
    // nothing applied.
    let mut leader = c.leader_of(&counters[0]);
    let _: () = redis::cmd("WATCH")
        .arg(&counters[0])
        .query(&mut leader)
        .unwrap();
    let refused: redis::RedisResult<Vec<i64>> = pipe.query(&mut leader);
    let text = format!("{refused:?}").to_uppercase();
    assert!(text.contains("CROSSSLOT"), "{refused:?}");
    let n: Vec<i64> = retry_tryagain(|| redis::cmd("MGET").arg(&counters).query(&mut conns[0]));
    assert_eq!(n, vec![5, 5, 5], "nothing applied");
    // A blocking pop on lists led by different nodes, sent to a third: woken by a push to
    // either, through the cluster client; a timeout answers nil.
    let queues: Vec<String> = tags[..3].iter().map(|t| format!("{{{t}}}q")).collect();
    for (i, q) in queues[..2].iter().enumerate() {
        let rx = {
            let (tx, rx) = std::sync::mpsc::channel();
            let (queues, mut conn) = (queues.clone(), plain(&c, 2).unwrap());
            std::thread::spawn(move || {
                let v: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
                    .arg(&queues[..2])
                    .arg(8)
                    .query(&mut conn);
                let _ = tx.send(v);
            });
            rx
        };
        std::thread::sleep(Duration::from_millis(300));
        let _: i64 = cluster.rpush(q, format!("job{i}")).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(9)).expect("woken");
        assert_eq!(got.unwrap(), Some((q.clone(), format!("job{i}"))));
    }
    let none: Option<(String, String)> = retry_tryagain(|| {
        redis::cmd("BLPOP")
            .arg(&queues)
            .arg(0.2)
            .query(&mut conns[0])
    });
    assert_eq!(none, None);
    // No fractured reads: one writer MSETs every key to one value, readers on the other two
    // nodes MGET them all (from a state where all hold one value: the RENAME and MSETNX
    // above left one key out).
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg(0);
    }
    let () = retry_tryagain(|| mset.query(&mut conns[0]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, keys, mut conn) = (stop.clone(), keys.clone(), plain(&c, 0).unwrap());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let mut mset = redis::cmd("MSET");
                for k in &keys {
                    mset.arg(k).arg(n);
                }
                let _ = mset.query::<()>(&mut conn);
            }
            n
        })
    };
    let readers: Vec<_> = (1..3)
        .map(|i| {
            let (stop, keys, mut conn) = (stop.clone(), keys.clone(), plain(&c, i).unwrap());
            std::thread::spawn(move || {
                let (mut reads, mut mixed) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(v) = redis::cmd("MGET")
                        .arg(&keys)
                        .query::<Vec<Option<String>>>(&mut conn)
                    else {
                        continue;
                    };
                    reads += 1;
                    if v.iter().any(|x| *x != v[0]) {
                        eprintln!("a fractured read: {v:?}");
                        mixed += 1;
                    }
                }
                (reads, mixed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    let (mut reads, mut mixed) = (0, 0);
    for r in readers {
        let (a, b) = r.join().unwrap();
        reads += a;
        mixed += b;
    }
    assert!(writes > 10 && reads > 10, "{writes} MSETs, {reads} MGETs");
    assert_eq!(mixed, 0, "{mixed} of {reads} MGETs saw part of an MSET");
    for i in 0..3 {
        let info = c.info_section(i, "cluster").unwrap();
        assert!(
            !info.contains("calvin_executions:0\r\n"),
            "node {i}: {info}"
        );
    }
}

/// kill -9 of each node in turn amid transactions across nodes (MSETs of keys led by every
/// node, LMOVEs between lists led by different nodes), each restarted: every MSET applied
/// whole or not at all, and no element is lost or made twice.
#[test]
fn kill_9_amid_transactions_across_nodes_keeps_each_one_whole() {
    let mut c = TestCluster::start(3, false, &[]);
    let tags = spread_tags(&c, 6);
    let keys: Vec<String> = tags.iter().map(|t| format!("{{{t}}}k")).collect();
    let lists: Vec<String> = tags[..3].iter().map(|t| format!("{{{t}}}l")).collect();
    {
        let mut cluster = c.client().get_connection().unwrap();
        for (i, l) in lists.iter().enumerate() {
            let items: Vec<String> = (0..10).map(|j| format!("e{i}-{j}")).collect();
            let _: i64 = cluster.rpush(l, &items).unwrap();
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ports = c.ports.clone();
    let clients: Vec<_> = (0..2)
        .map(|w| {
            let (stop, keys, lists, ports) =
                (stop.clone(), keys.clone(), lists.clone(), ports.clone());
            std::thread::spawn(move || {
                let (mut ok, mut n) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let port = ports[(n as usize + w) % ports.len()];
                    let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                        .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(1)))
                    else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    for _ in 0..20 {
                        n += 1;
                        let r = if w == 0 {
                            let mut mset = redis::cmd("MSET");
                            for k in &keys {
                                mset.arg(k).arg(n);
                            }
                            mset.query::<()>(&mut conn)
                        } else {
                            let (a, b) = (n as usize % 3, (n as usize + 1) % 3);
                            redis::cmd("LMOVE")
                                .arg(&lists[a])
                                .arg(&lists[b])
                                .arg("LEFT")
                                .arg("RIGHT")
                                .query::<Option<String>>(&mut conn)
                                .map(|_| ())
                        };
                        match r {
                            Ok(()) => ok += 1,
                            Err(e) if e.is_io_error() || e.is_timeout() => break,
                            Err(_) => {} // -TRYAGAIN, -UNKNOWN: nothing or all applied
                        }
                    }
                }
                ok
            })
        })
        .collect();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        c.kill(round);
        std::thread::sleep(Duration::from_millis(700));
        c.spawn(round);
        c.wait_served(Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done: Vec<u64> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        done.iter().all(|&n| n > 0),
        "transactions acknowledged: {done:?}"
    );
    let mut conn = plain(&c, 0).unwrap();
    let values: Vec<Option<String>> =
        retry_tryagain(|| redis::cmd("MGET").arg(&keys).query(&mut conn));
    assert!(
        values[0].is_some() && values.iter().all(|v| *v == values[0]),
        "{values:?}"
    );
    let mut cluster = c.client().get_connection().unwrap();
    let mut items: Vec<String> = Vec::new();
    for l in &lists {
        items.extend(cluster.lrange::<_, Vec<String>>(l, 0, -1).unwrap());
    }
    items.sort();
    let mut want: Vec<String> = (0..3)
        .flat_map(|i| (0..10).map(move |j| format!("e{i}-{j}")))
        .collect();
    want.sort();
    assert_eq!(items, want, "every element once");
}
