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

/// `n` hash tags, the `i`th led by node `i mod nodes` when the test starts.
fn spread_tags(c: &TestCluster, n: usize) -> Vec<String> {
    (0..n).map(|i| c.key_led_by(i % c.ports.len())).collect()
}

/// Issue 17 across nodes: a command whose keys are in vShards led by different nodes, sent
/// to any node, is one atomic, serializable transaction (Calvin): MSET and MGET, RENAME,
/// SMOVE, LMOVE, MSETNX, SORT with BY/GET patterns and STORE, MULTI/EXEC, with a concurrent
/// MGET never seeing part of an MSET.
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
    // SORT with BY and GET patterns naming keys anywhere, storing on another node's vShard:
    // a transaction that learns the keys its patterns name when it first runs.
    let ids = format!("{{{}}}ids", tags[0]);
    let out = format!("{{{}}}sorted", tags[2]);
    let _: i64 = cluster.rpush(&ids, &["1", "2", "3", "4"]).unwrap();
    for (i, w) in [(1, 30), (2, 10), (3, 20)] {
        let () = cluster.set(format!("w_{i}"), w).unwrap();
        let _: i64 = cluster
            .hset(format!("h_{i}"), "name", format!("n{i}"))
            .unwrap();
    }
    let n: i64 = retry_tryagain(|| {
        redis::cmd("SORT")
            .arg(&ids)
            .arg(&["BY", "w_*", "GET", "#", "GET", "h_*->name", "STORE"])
            .arg(&out)
            .query(&mut conns[1])
    });
    assert_eq!(n, 8);
    let sorted: Vec<String> = cluster.lrange(&out, 0, -1).unwrap();
    assert_eq!(sorted, ["4", "", "2", "n2", "3", "n3", "1", "n1"]);
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

/// Sends MULTI, `cmds` and EXEC on `conn`: EXEC's reply (nil when a WATCHed key changed).
fn multi_exec(
    conn: &mut redis::Connection,
    cmds: &[redis::Cmd],
) -> redis::RedisResult<redis::Value> {
    let () = redis::cmd("MULTI").query(conn)?;
    for cmd in cmds {
        let queued: redis::RedisResult<String> = cmd.query(conn);
        if let Err(e) = queued {
            let _ = redis::cmd("DISCARD").query::<()>(conn);
            return Err(e);
        }
    }
    redis::cmd("EXEC").query(conn)
}

fn set(k: &str, v: impl redis::ToRedisArgs) -> redis::Cmd {
    let mut c = redis::cmd("SET");
    c.arg(k).arg(v);
    c
}

/// The WATCH registrations node `i` holds for transactions across nodes (INFO cluster).
fn watch_registrations(c: &TestCluster, i: usize) -> u64 {
    let info = c.info_section(i, "cluster").unwrap();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("calvin_watch_registrations:"))
        .unwrap_or_else(|| panic!("node {i}: {info}"));
    line.trim().parse().unwrap()
}

/// WATCH with a MULTI/EXEC across vShards led by different nodes, sent to any node: EXEC
/// applies when no watched key changed, answers nil and applies nothing when one did (written
/// on the node that leads it), a transaction on the connection's own vShard that watches a key
/// led elsewhere is checked there too, UNWATCH and EXEC leave no registration behind, and
/// optimistic increments of counters led by three nodes, from clients on every node, lose no
/// update.
#[test]
fn watch_with_a_transaction_across_nodes_aborts_on_a_change_and_loses_no_update() {
    let c = TestCluster::start(3, false, &[]);
    let tags = spread_tags(&c, 3);
    let ks: Vec<String> = tags.iter().map(|t| format!("{{{t}}}w")).collect();
    let mut conns: Vec<redis::Connection> = (0..3).map(|i| plain(&c, i).unwrap()).collect();
    let mget = |conn: &mut redis::Connection| -> Vec<Option<String>> {
        retry_tryagain(|| redis::cmd("MGET").arg(&ks).query(conn))
    };
    // One MSET of the three keys in the MULTI: a transaction across vShards from its first
    // command, whichever node leads them now.
    let mset_all = |v: &str| -> Vec<redis::Cmd> {
        let mut m = redis::cmd("MSET");
        for k in &ks {
            m.arg(k).arg(v);
        }
        vec![m]
    };
    // WATCH `watched`, then `cmds` in a MULTI, until EXEC applies: a nil with nothing changed
    // is spurious (the leadership of a watched key moved, or a registration was not
    // acknowledged within a second on a loaded machine) and rare; 20 in a row fail the test.
    let applied = |conn: &mut redis::Connection, watched: &[String], cmds: &[redis::Cmd]| {
        for _ in 0..20 {
            let got = retry_tryagain(|| {
                let () = redis::cmd("WATCH").arg(watched).query(conn)?;
                multi_exec(conn, cmds)
            });
            if got != redis::Value::Nil {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("EXEC never applied with nothing changed");
    };
    // Unchanged: applied (on node 0, watching keys led by all three).
    let got = applied(&mut conns[0], &ks, &mset_all("a"));
    assert!(
        matches!(got, redis::Value::Array(ref v) if v.len() == 1),
        "{got:?}"
    );
    assert_eq!(mget(&mut conns[2]), vec![Some("a".to_string()); 3]);
    // A watched key written on the node that leads it: nil, nothing applied.
    let () = redis::cmd("WATCH").arg(&ks).query(&mut conns[0]).unwrap();
    let () = retry_tryagain(|| set(&ks[1], "changed").query(&mut c.leader_of(&ks[1])));
    let got = multi_exec(&mut conns[0], &mset_all("b")).unwrap();
    assert_eq!(got, redis::Value::Nil);
    let want = ["a", "changed", "a"].map(|s| Some(s.to_string())).to_vec();
    assert_eq!(mget(&mut conns[1]), want, "nothing applied");
    // A transaction on one key, sent to the node that leads it, that watches a key another
    // node leads: checked there.
    let mut own = c.leader_of(&ks[0]);
    let got = applied(&mut own, &ks[2..], &[set(&ks[0], "c")]);
    assert!(matches!(got, redis::Value::Array(_)), "{got:?}");
    let () = redis::cmd("WATCH").arg(&ks[2]).query(&mut own).unwrap();
    let () = retry_tryagain(|| set(&ks[2], "changed").query(&mut c.leader_of(&ks[2])));
    let got = multi_exec(&mut own, &[set(&ks[0], "d")]).unwrap();
    assert_eq!(got, redis::Value::Nil);
    assert_eq!(mget(&mut conns[0])[0].as_deref(), Some("c"));
    // UNWATCH drops the registrations elsewhere: a later change does not abort.
    let () = redis::cmd("WATCH").arg(&ks).query(&mut conns[0]).unwrap();
    let held: u64 = (0..3).map(|i| watch_registrations(&c, i)).sum();
    assert!(
        held > 0,
        "WATCHes registered on the nodes that lead the keys"
    );
    let () = redis::cmd("UNWATCH").query(&mut conns[0]).unwrap();
    let () = retry_tryagain(|| set(&ks[1], "again").query(&mut c.leader_of(&ks[1])));
    let got = retry_tryagain(|| multi_exec(&mut conns[0], &mset_all("e")));
    assert!(matches!(got, redis::Value::Array(_)), "{got:?}");
    // Optimistic increments from a client on each node: every EXEC that applied counted.
    let () = retry_tryagain(|| {
        let mut mset = redis::cmd("MSET");
        for k in &ks {
            mset.arg(k).arg(0);
        }
        mset.query(&mut conns[0])
    });
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let (ks, mut conn) = (ks.clone(), plain(&c, i).unwrap());
            std::thread::spawn(move || {
                let (mut applied, mut aborted) = (0u64, 0u64);
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while applied < 12 && std::time::Instant::now() < deadline {
                    let attempt = (|| -> redis::RedisResult<bool> {
                        let () = redis::cmd("WATCH").arg(&ks).query(&mut conn)?;
                        let v: Vec<i64> = redis::cmd("MGET").arg(&ks).query(&mut conn)?;
                        assert!(v.iter().all(|x| *x == v[0]), "counters apart: {v:?}");
                        let mut m = redis::cmd("MSET");
                        for k in &ks {
                            m.arg(k).arg(v[0] + 1);
                        }
                        Ok(multi_exec(&mut conn, &[m])? != redis::Value::Nil)
                    })();
                    match attempt {
                        Ok(true) => applied += 1,
                        Ok(false) => aborted += 1,
                        Err(e) if e.code() == Some("TRYAGAIN") => {
                            let _ = redis::cmd("UNWATCH").query::<()>(&mut conn);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => panic!("client on node {i}: {e:?}"),
                    }
                }
                (applied, aborted)
            })
        })
        .collect();
    let (mut applied, mut aborted) = (0, 0);
    for w in workers {
        let (a, b) = w.join().unwrap();
        applied += a;
        aborted += b;
    }
    let end: Vec<Option<String>> = mget(&mut conns[0]);
    assert_eq!(
        end,
        vec![Some(applied.to_string()); 3],
        "{applied} EXECs applied ({aborted} aborted)"
    );
    assert_eq!(
        applied, 36,
        "every client finished in time ({aborted} aborted)"
    );
    // Every registration went with its transaction or its UNWATCH.
    for i in 0..3 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while watch_registrations(&c, i) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(watch_registrations(&c, i), 0, "node {i}");
    }
}

/// kill -9 of each node in turn amid transactions across nodes (MSETs of keys led by every
/// node, LMOVEs between lists led by different nodes, a bank's transfers as MULTI/EXEC and its
/// audits), each restarted, then two nodes cut off in turn: every MSET applied whole or not
/// at all, no element lost or made twice, no audit sees a transfer in part and the accounts
/// still sum to zero.
#[test]
fn kill_9_amid_transactions_across_nodes_keeps_each_one_whole() {
    kill_9_amid_transactions(3);
}

/// The same on five nodes (replication factor 3: each vShard on three of them).
#[test]
fn kill_9_amid_transactions_across_five_nodes_keeps_each_one_whole() {
    kill_9_amid_transactions(5);
}

fn kill_9_amid_transactions(nodes: usize) {
    // (Its bus through fault-injecting proxies: a node is also cut off, after the kills.)
    let mut c = TestCluster::start(nodes, true, &[]);
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
    // A bank: accounts led by every node, transfers as MULTI/EXEC, audits as one MGET.
    // (Distinct: with fewer nodes than tags, two tags are one.)
    let accounts: Vec<String> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{{{t}}}acct{i}"))
        .collect();
    let audits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|w| {
            let (stop, keys, lists, ports) =
                (stop.clone(), keys.clone(), lists.clone(), ports.clone());
            let (accounts, audits) = (accounts.clone(), audits.clone());
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
                        } else if w == 2 && n % 3 == 0 {
                            let balances: redis::RedisResult<Vec<Option<i64>>> =
                                redis::cmd("MGET").arg(&accounts).query(&mut conn);
                            balances.map(|b| {
                                let sum: i64 = b.iter().map(|x| x.unwrap_or(0)).sum();
                                assert_eq!(sum, 0, "an audit saw a transfer in part: {b:?}");
                                audits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            })
                        } else if w == 2 {
                            let (a, b) = (n as usize % 6, (n as usize / 6 + 1 + n as usize) % 6);
                            let b = if a == b { (b + 1) % 6 } else { b };
                            let amount = (n % 50 + 1) as i64;
                            redis::pipe()
                                .atomic()
                                .cmd("DECRBY")
                                .arg(&accounts[a])
                                .arg(amount)
                                .cmd("INCRBY")
                                .arg(&accounts[b])
                                .arg(amount)
                                .query::<(i64, i64)>(&mut conn)
                                .map(|_| ())
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
    // A partition: each of two nodes cut off for two seconds, then healed.
    for i in 0..2 {
        c.isolate(i);
        std::thread::sleep(Duration::from_millis(2000));
        c.heal();
        c.wait_served(Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done: Vec<u64> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        done.iter().all(|&n| n > 0),
        "transactions acknowledged: {done:?}"
    );
    assert!(
        audits.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the bank was audited"
    );
    let mut conn = plain(&c, 0).unwrap();
    let balances: Vec<Option<i64>> =
        retry_tryagain(|| redis::cmd("MGET").arg(&accounts).query(&mut conn));
    assert_eq!(
        balances.iter().map(|b| b.unwrap_or(0)).sum::<i64>(),
        0,
        "{balances:?}"
    );
    assert!(balances.iter().any(Option::is_some), "transfers applied");
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

/// A command on a key that a stream of transactions keeps naming is not starved: it takes a
/// place in the key's queue, and transactions sequenced after it wait for it (found when four
/// clients ran scripts across vShards on one key while another client's EXISTS on it waited
/// for minutes). Four clients increment `hot` and a key led by another node in MULTI/EXECs
/// without pause while another client GETs and INCRs `hot` on its leader: each of those
/// answers (a read timeout fails the test), and the counts add up.
#[test]
fn a_single_key_command_is_not_starved_by_transactions_on_its_key() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let c = TestCluster::start(3, false, &[]);
    let tags = spread_tags(&c, 2);
    let (hot, other) = (
        format!("{{{}}}hot", tags[0]),
        format!("{{{}}}other", tags[1]),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            // (On `hot`'s leader: a MULTI whose first key is led elsewhere is -MOVED there.)
            let mut n = plain(&c, 0).unwrap();
            let (hot, other, stop, done) = (hot.clone(), other.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r: redis::RedisResult<(i64, i64)> = redis::pipe()
                        .atomic()
                        .incr(&hot, 1)
                        .incr(&other, 1)
                        .query(&mut n);
                    r.expect("a transaction across nodes");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut conn = plain(&c, 0).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..100 {
        let _: Option<i64> = conn.get(&hot).expect("answered while transactions go on");
        let _: i64 = conn
            .incr(&hot, 1)
            .expect("answered while transactions go on");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let txns = done.load(Ordering::Relaxed) as i64;
    assert!(txns > 50, "the transactions went on meanwhile: {txns}");
    let (h, o): (i64, i64) = redis::pipe()
        .atomic()
        .get(&hot)
        .get(&other)
        .query(&mut conn)
        .unwrap();
    assert_eq!(o, txns, "every transaction applied once");
    assert_eq!(h, txns + 100, "and the single-key increments");
}

/// The metrics endpoint of a cluster's nodes (issue 20, step 6): every group has one leader
/// among the nodes' replicas, each node shows the replicas it holds with their indexes, and
/// the transactions across nodes submitted at a node are counted there with their time.
#[test]
fn a_cluster_s_metrics_show_its_replicas_and_its_transactions() {
    let c = TestCluster::start(3, false, &[]);
    let tags = spread_tags(&c, 3);
    let mut conn = plain(&c, 0).unwrap();
    for n in 0..20 {
        let mut mset = redis::cmd("MSET");
        for t in &tags {
            mset.arg(format!("{{{t}}}m")).arg(vec![b'x'; 1024 + n]);
        }
        retry_tryagain(|| mset.query::<()>(&mut conn));
    }
    let groups: Vec<String> = (0..64)
        .map(|v| v.to_string())
        .chain(["meta".to_string()])
        .collect();
    // The replicas' figures are published once a second: wait for one leader per group.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let scrapes = loop {
        let scrapes: Vec<_> = c.metrics.iter().map(|&p| common::scrape(p)).collect();
        let leaders = |v: &String| {
            scrapes
                .iter()
                .filter(|s| {
                    s.contains_key(&format!(
                        "shardline_replica_role{{vshard=\"{v}\",role=\"leader\"}}"
                    ))
                })
                .count()
        };
        if groups.iter().all(|v| leaders(v) == 1) || std::time::Instant::now() > deadline {
            for v in &groups {
                assert_eq!(leaders(v), 1, "group {v}'s leaders");
            }
            break scrapes;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (i, s) in scrapes.iter().enumerate() {
        // Three nodes, three replicas a group: every node holds every group.
        let roles = s
            .keys()
            .filter(|k| k.starts_with("shardline_replica_role{"))
            .count();
        assert_eq!(roles, groups.len(), "node {i}'s replicas");
        for v in &groups {
            let get = |f: &str| s[&format!("shardline_replica_{f}{{vshard=\"{v}\"}}")];
            assert!(get("term") >= 1.0, "node {i} group {v}");
            assert!(
                get("applied_index") <= get("commit_index"),
                "node {i} group {v}"
            );
        }
        let alive = s
            .iter()
            .filter(|(k, _)| {
                k.starts_with("shardline_member_state{") && k.contains("state=\"alive\"")
            })
            .count();
        assert_eq!(alive, 2, "node {i}'s peers");
    }
    // The MSETs went to node 0: its transactions, each executed once.
    let v0 = c.info_section(0, "cluster").unwrap();
    assert!(v0.contains("calvin_answered_executed:20\r\n"), "{v0}");
    let s0 = &scrapes[0];
    // (A refusal, TRYAGAIN while the sequencer moved, was submitted and retried.)
    let how = |h: &str| s0[&format!("shardline_calvin_answered_total{{how=\"{h}\"}}")];
    assert_eq!(how("executed"), 20.0);
    assert_eq!(how("unknown"), 0.0);
    assert_eq!(
        s0["shardline_calvin_submitted_total"],
        how("executed") + how("refused")
    );
    assert_eq!(s0["shardline_calvin_duration_seconds_count"], 20.0);
    assert!(s0["shardline_calvin_duration_seconds_sum"] > 0.0);
    assert!(s0["shardline_calvin_sequenced_total"] >= 20.0);
    for (i, s) in scrapes.iter().enumerate().skip(1) {
        assert_eq!(s["shardline_calvin_submitted_total"], 0.0, "node {i}");
    }
    let executions: f64 = scrapes
        .iter()
        .map(|s| s["shardline_calvin_executions_total"])
        .sum();
    assert!(executions >= 20.0, "{executions} executions");
}
