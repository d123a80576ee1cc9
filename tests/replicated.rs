//! Replicated clusters of real processes on loopback (issue 3): a cluster client over all slots,
//! kill -9 under writes with the histories checked for linearizability, a full restart, a leader
//! cut off by a fault-injecting proxy, READONLY reads from replicas, and a damaged log.

mod common;

use common::cluster::{TestCluster, retry_tryagain};
use common::workload::{KEYS, Workload, key};
use redis::{Commands, Value};
use std::time::{Duration, Instant};

#[test]
fn a_three_node_cluster_serves_10000_keys_through_the_cluster_client() {
    let c = TestCluster::start(3, false, &[]);
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..10_000 {
        let _: () = conn.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..10_000 {
        let v: i64 = conn.get(format!("key:{i}")).unwrap();
        assert_eq!(v, i);
    }
    // Every node holds a replica of every key (RF 3 on 3 nodes): the counts add up to 3x; DBSIZE
    // counts what each node leads, as on a Redis Cluster's primaries: the keys once.
    let (mut held, mut led) = (0, 0);
    for i in 0..3 {
        let mut n = redis::Client::open(c.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        held += common::held_keys(&mut n).unwrap();
        led += redis::cmd("DBSIZE").query::<i64>(&mut n).unwrap();
    }
    assert_eq!((held, led), (30_000, 10_000));
    // SCAN and KEYS on every node, summed, see each key once too (redis-cli --cluster and
    // cluster clients' scan_iter ask every primary).
    let mut scanned = std::collections::HashSet::new();
    let mut listed = 0;
    for i in 0..3 {
        let mut n = redis::Client::open(c.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut n)
                .unwrap();
            for k in keys {
                assert!(scanned.insert(k.clone()), "{k} scanned on two nodes");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        listed += redis::cmd("KEYS")
            .arg("*")
            .query::<Vec<String>>(&mut n)
            .unwrap()
            .len();
    }
    assert_eq!((scanned.len(), listed), (10_000, 10_000));
    // CLUSTER SLOTS: every slot covered once, each range with a master and two replicas.
    let mut n = redis::Client::open(c.url(1))
        .unwrap()
        .get_connection()
        .unwrap();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut n).unwrap();
    let mut covered = 0;
    for r in &slots {
        let redis::Value::Array(parts) = r else {
            panic!("{r:?}")
        };
        let (redis::Value::Int(a), redis::Value::Int(b)) = (&parts[0], &parts[1]) else {
            panic!("{parts:?}")
        };
        covered += b - a + 1;
        assert_eq!(
            parts.len(),
            5,
            "slot range, master, two replicas: {parts:?}"
        );
    }
    assert_eq!(covered, 16384);
    // Multi-key commands in one slot, transactions, and keys of different vShards.
    let _: () = redis::cmd("MSET")
        .arg("{u}a")
        .arg(1)
        .arg("{u}b")
        .arg(2)
        .query(&mut conn)
        .unwrap();
    let both: Vec<i64> = conn.mget(&["{u}a", "{u}b"]).unwrap();
    assert_eq!(both, vec![1, 2]);
    // A transaction on the leader's connection; an election in between answers -MOVED or
    // -TRYAGAIN (nothing applied): ask the new leader, as a cluster client would.
    let mut tries = 0;
    let (x, y): (i64, i64) = loop {
        let r = redis::pipe()
            .atomic()
            .incr("{u}n", 1)
            .incr("{u}n", 1)
            .query(&mut c.leader_of("{u}n"));
        match r {
            Err(e) if matches!(e.code(), Some("MOVED") | Some("TRYAGAIN")) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!((x, y), (1, 2));
    // Keys of different vShards on a plain connection to any node: one transaction across
    // them (Calvin, issue 17), not -CROSSSLOT.
    let mut direct = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let got: Vec<Option<String>> = retry_tryagain(|| {
        redis::cmd("MGET")
            .arg("a")
            .arg("b")
            .arg("c")
            .arg("d")
            .query(&mut direct)
    });
    assert_eq!(got.len(), 4);
}

#[test]
fn nodes_without_a_replica_of_a_vshard_route_it_by_the_leaders_hints() {
    // RF 3 on 4 nodes: each node replicates 3/4 of the vShards and learns the leaders of the
    // rest from their hints; without them it would answer TRYAGAIN for those slots forever.
    let mut c = TestCluster::start(4, false, &[]);
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..2_000 {
        let _: () = conn.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..4 {
        let mut n = redis::Client::open(c.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        // Every key is served through this node: here, or by a MOVED to its leader.
        for k in (0..2_000).step_by(97) {
            let key = format!("key:{k}");
            match redis::cmd("GET").arg(&key).query::<i64>(&mut n) {
                Ok(v) => assert_eq!(v, k),
                Err(e) => assert_eq!(e.code(), Some("MOVED"), "node {i}, {key}: {e:?}"),
            }
        }
    }
    // Each key on exactly 3 nodes, none on all 4 (followers apply once they hear the commit).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sizes: Vec<i64> = (0..4)
            .map(|i| {
                let mut n = redis::Client::open(c.url(i))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                common::held_keys(&mut n).unwrap()
            })
            .collect();
        if sizes.iter().sum::<i64>() == 6_000 {
            assert!(sizes.iter().all(|&s| s < 2_000), "{sizes:?}");
            break;
        }
        assert!(Instant::now() < deadline, "replica key counts: {sizes:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A node dies: the others learn its vShards' new leaders (elected among replicas that may
    // not include the asking node) and every slot is served again.
    c.kill(0);
    c.wait_served(Duration::from_secs(20));
    let mut conn = c.client().get_connection().unwrap();
    for i in (0..2_000).step_by(7) {
        let v: i64 = conn.get(format!("key:{i}")).unwrap();
        assert_eq!(v, i);
    }
}

#[test]
fn redis_cli_in_cluster_mode_writes_and_reads_through_any_node() {
    let c = TestCluster::start(3, false, &[]);
    let cli = |port: u16, args: &[&str]| -> String {
        let out = std::process::Command::new("redis-cli")
            .arg("-c")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools) runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for k in ["alpha", "beta", "gamma", "delta"] {
        assert_eq!(cli(c.ports[0], &["SET", k, &format!("v-{k}")]), "OK");
    }
    for k in ["alpha", "beta", "gamma", "delta"] {
        assert_eq!(cli(c.ports[2], &["GET", k]), format!("v-{k}"));
    }
}

/// FLUSHALL / FLUSHDB on a node empty the vShards it leads, through their logs: every replica
/// drops the same keys (no replica emptied alone), and sent to every node they empty the
/// cluster.
#[test]
fn flushall_empties_what_a_node_leads_on_every_replica() {
    let c = TestCluster::start(3, false, &[]);
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..1000 {
        let _: () = conn.set(format!("fl:{i}"), i).unwrap();
    }
    let node = |i: usize| {
        redis::Client::open(c.url(i))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let dbsizes = || -> Vec<i64> {
        (0..3)
            .map(|i| common::held_keys(&mut node(i)).unwrap())
            .collect()
    };
    let settle = |want: &dyn Fn(&[i64]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = dbsizes();
            if want(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "replicas disagree: {d:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settle(&|d| d.iter().all(|&n| n == 1000));
    // Not inside a transaction (it would run on one replica alone): refused when queued.
    let mut n0 = node(0);
    let r: redis::RedisResult<()> = redis::pipe().atomic().cmd("FLUSHALL").query(&mut n0);
    assert!(r.is_err(), "FLUSHALL in MULTI is refused");
    assert_eq!(dbsizes(), vec![1000, 1000, 1000], "nothing was flushed");
    let err: redis::RedisResult<()> = redis::cmd("FLUSHALL").arg("NOW").query(&mut node(0));
    assert!(err.is_err(), "a bad flag is a syntax error");
    let _: () = redis::cmd("FLUSHALL").query(&mut node(0)).unwrap();
    let d = settle(&|d| d[0] == d[1] && d[1] == d[2] && d[0] < 1000);
    assert!(d[0] > 0, "only node 0's vShards were emptied: {d:?}");
    for i in 1..3 {
        let _: () = redis::cmd("FLUSHDB")
            .arg("ASYNC")
            .query(&mut node(i))
            .unwrap();
    }
    settle(&|d| d.iter().all(|&n| n == 0));
    let v: Option<i64> = conn.get("fl:7").unwrap();
    assert_eq!(v, None);
}

/// The Python client most Redis users have (redis-py's `RedisCluster`, Debian's python3-redis,
/// run by Debian's own interpreter): it discovers the slots, writes and reads keys over all of
/// them, pipelines across nodes, and reads from replicas.
#[test]
fn the_redis_py_cluster_client_works() {
    let c = TestCluster::start(3, false, &[]);
    let script = r#"
import sys
from redis.cluster import RedisCluster, ClusterNode
port = int(sys.argv[1])
rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port)], decode_responses=True)
nodes = {(n.host, n.port) for n in rc.get_nodes()}
assert len(nodes) == 3, nodes
for i in range(2000):
    assert rc.set(f"py:{i}", i)
for i in range(0, 2000, 7):
    assert rc.get(f"py:{i}") == str(i), i
assert rc.incrby("py:counter", 5) == 5
rc.hset("py:h", mapping={"a": "1", "b": "2"})
assert rc.hgetall("py:h") == {"a": "1", "b": "2"}
assert rc.expire("py:h", 100) and 0 < rc.ttl("py:h") <= 100
pipe = rc.pipeline()
for i in range(100):
    pipe.set(f"pp:{i}", i * 2)
assert all(pipe.execute())
pipe = rc.pipeline()
for i in range(100):
    pipe.get(f"pp:{i}")
assert pipe.execute() == [str(i * 2) for i in range(100)]
ro = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port)], decode_responses=True,
                  read_from_replicas=True)
import time
deadline = time.time() + 5
while ro.get("py:1999") != "1999":
    assert time.time() < deadline, "a replica never caught up"
    time.sleep(0.05)
print("redis-py ok")
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(c.ports[1].to_string())
        .output()
        .expect("/usr/bin/python3 (Debian package python3-redis) runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("redis-py ok"),
        "redis-py failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn killing_a_node_under_writes_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, false, &[]);
    let w = Workload::start(&c, 4);
    std::thread::sleep(Duration::from_millis(800));
    let killed_at = Instant::now();
    c.kill(0);
    // The survivors elect leaders for everything node 0 led.
    let mut probe = c.client().get_connection().unwrap();
    let mut i = 0;
    loop {
        i += 1;
        if (0..64).all(|s| probe.set::<_, _, ()>(format!("probe:{i}:{s}"), s).is_ok()) {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "writes on every slot again"
        );
    }
    eprintln!(
        "writes to 64 keys over all slots succeeded {:?} after the kill",
        killed_at.elapsed()
    );
    // SWIM holds it dead on both survivors (the target is 3 s; the bound is loose for a
    // loaded machine, the time is printed).
    for i in [1, 2] {
        let took = c.wait_swim(i, "dead", killed_at, Duration::from_secs(15));
        eprintln!("node {i}: SWIM held the killed node dead {took:?} after the kill");
    }
    std::thread::sleep(Duration::from_millis(500));
    c.spawn(0);
    c.wait_served(Duration::from_secs(20));
    // Restarted, it is alive again for everyone (its new incarnation outranks its death).
    c.wait_swim_alive(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    w.finish_and_check(&c);
    // The restarted node caught up: it holds every key (it replicates everything).
    let mut n = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("READONLY").query(&mut n).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut direct = c.client().get_connection().unwrap();
    for k in 0..KEYS {
        let want: Option<u64> = direct.get(key(k)).unwrap();
        loop {
            let got: Option<u64> = n.get(key(k)).unwrap();
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "node 0 caught up on {}", key(k));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_full_cluster_restart_keeps_every_acknowledged_write() {
    let mut c = TestCluster::start(3, false, &[]);
    {
        let mut conn = c.client().get_connection().unwrap();
        for i in 0..2000 {
            let _: () = conn.set(format!("durable:{i}"), i).unwrap();
        }
        let _: () = conn.rpush("durable:list", &[1, 2, 3]).unwrap();
    }
    c.restart_all();
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..2000 {
        let v: Option<i64> = conn.get(format!("durable:{i}")).unwrap();
        assert_eq!(v, Some(i), "durable:{i}");
    }
    let l: Vec<i64> = conn.lrange("durable:list", 0, -1).unwrap();
    assert_eq!(l, vec![1, 2, 3]);
}

/// A key whose slot node `i` leads now, by asking node `i` for its slot ranges.
#[test]
fn a_leader_cut_off_from_its_quorum_stops_acknowledging_and_the_cluster_converges_after_healing() {
    let c = TestCluster::start(3, true, &[]);
    let k = c.key_led_by(0);
    let mut old = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = old.set(&k, "before").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    old.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.isolate(0);
    // A linearizable read on the cut-off node (its group quiet, nothing written) is refused,
    // not served from a state that may be stale, and not left hanging.
    let r: redis::RedisResult<Option<String>> = old.get(&k);
    let e = r.expect_err("the cut-off node served a read");
    assert!(
        matches!(e.code(), Some("TRYAGAIN") | Some("MOVED")),
        "{e:?}"
    );
    // The cut-off node must not acknowledge a write: it answers an error that says the outcome is
    // unknown, or redirects, but never OK.
    let r: redis::RedisResult<()> = old.set(&k, "during-cut");
    let e = r.expect_err("a cut-off leader acknowledged a write");
    assert!(
        matches!(e.code(), Some("UNKNOWN") | Some("TRYAGAIN") | Some("MOVED")),
        "{e:?}"
    );
    // The majority elects a leader for that slot and takes writes.
    let majority = redis::cluster::ClusterClient::builder(vec![c.url(1), c.url(2)])
        .retries(30)
        .max_retry_wait(300)
        .build()
        .unwrap();
    let mut m = majority.get_connection().unwrap();
    let _: () = m.set(&k, "after-cut").unwrap();
    // Linearizable reads are not served by the cut-off side either.
    let r: redis::RedisResult<Option<String>> = old.get(&k);
    assert!(r.is_err(), "the cut-off node served a read: {r:?}");
    c.heal();
    c.wait_served(Duration::from_secs(20));
    let mut all = c.client().get_connection().unwrap();
    let v: String = all.get(&k).unwrap();
    assert_eq!(v, "after-cut");
    let deadline = Instant::now() + Duration::from_secs(10);
    let _: () = redis::cmd("READONLY").query(&mut old).unwrap();
    loop {
        let v: Option<String> = old.get(&k).unwrap_or(None);
        if v.as_deref() == Some("after-cut") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healed node converged: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn readonly_connections_read_from_replicas() {
    let c = TestCluster::start(3, false, &[]);
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..100 {
        let _: () = conn.set(format!("ro:{i}"), i).unwrap();
    }
    // A RESTORE with a relative TTL is one log entry with the leader's clock: every replica
    // stores the same value and the same expiry.
    let _: () = conn
        .hset_multiple("ro:h", &[("a", "1"), ("b", "2")])
        .unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("ro:h").query(&mut conn).unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg("ro:copy")
        .arg(100_000)
        .arg(payload)
        .query(&mut conn)
        .unwrap();
    let expiry: i64 = redis::cmd("PEXPIRETIME")
        .arg("ro:copy")
        .query(&mut conn)
        .unwrap();
    assert!(expiry > 0);
    // On every node, READONLY reads of every key are answered (none is MOVED), and converge.
    for n in 0..3 {
        let mut r = redis::Client::open(c.url(n))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("READONLY").query(&mut r).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        for i in 0..100 {
            loop {
                let v: Option<i64> = r.get(format!("ro:{i}")).unwrap();
                if v == Some(i) {
                    break;
                }
                assert!(Instant::now() < deadline, "node {n} ro:{i} = {v:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        loop {
            let at: i64 = redis::cmd("PEXPIRETIME")
                .arg("ro:copy")
                .query(&mut r)
                .unwrap();
            let h: Vec<String> = redis::cmd("HGETALL").arg("ro:copy").query(&mut r).unwrap();
            if at == expiry && h.len() == 4 {
                break;
            }
            assert!(Instant::now() < deadline, "node {n}: ro:copy {at} {h:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // READWRITE: back to redirects for keys led elsewhere.
        let _: () = redis::cmd("READWRITE").query(&mut r).unwrap();
    }
}

#[test]
fn keys_with_a_ttl_expire_on_every_replica_without_being_touched() {
    let c = TestCluster::start(3, false, &[]);
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("ttl:{i}"))
            .arg(i)
            .arg("PX")
            .arg(300)
            .query(&mut conn)
            .unwrap();
    }
    let _: () = conn.set("kept", 1).unwrap();
    // The leaders' expiry cycles propose the checks; every replica applies them. INFO keyspace
    // on each node counts its replicas' keys without touching (or lazily expiring) any of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0..3 {
        let mut node = redis::Client::open(c.url(n))
            .unwrap()
            .get_connection()
            .unwrap();
        loop {
            let size = common::held_keys(&mut node).unwrap();
            if size == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {n} still holds {size} keys"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The segments of node `i`'s write-ahead log (shard thread 0), oldest first.
fn segments(c: &TestCluster, i: usize) -> Vec<std::path::PathBuf> {
    let dir = c.data_dir(i).join("wal").join("shard-0");
    let mut segs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

#[test]
fn a_torn_log_tail_is_cut_off_but_damage_inside_the_log_stops_start_up_naming_file_and_offset() {
    let mut c = TestCluster::start(3, false, &[]);
    {
        let mut conn = c.client().get_connection().unwrap();
        for i in 0..300 {
            let _: () = conn.set(format!("wal:{i}"), i).unwrap();
        }
    }
    // A crash mid-write leaves half a record at the end: cut off with a warning, the node
    // starts, catches up and serves.
    c.kill(2);
    let last = segments(&c, 2).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &[60, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    drop(f);
    c.spawn(2);
    c.wait_served(Duration::from_secs(20));
    {
        let mut conn = c.client().get_connection().unwrap();
        let v: i64 = conn.get("wal:7").unwrap();
        assert_eq!(v, 7);
    }
    // A damaged record with valid ones after it is not a torn tail: the node refuses to start,
    // naming the file, the offset and what to do, and changes nothing on disk.
    c.kill(2);
    let first = segments(&c, 2).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    assert!(bytes.len() > 2000, "the log holds the writes");
    bytes[40] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let (status, err) = c.start_expecting_failure(2);
    assert!(!status.success());
    assert!(
        err.contains(&first.display().to_string())
            && err.contains("offset")
            && err.contains("move the data directory away"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        bytes,
        "the damaged log was left as it was"
    );
    // The other two keep serving.
    let majority = redis::cluster::ClusterClient::builder(vec![c.url(0), c.url(1)])
        .retries(30)
        .build()
        .unwrap();
    let mut m = majority.get_connection().unwrap();
    let v: i64 = m.get("wal:9").unwrap();
    assert_eq!(v, 9);
}

#[test]
fn proxy_routing_serves_clients_that_know_one_endpoint() {
    let c = TestCluster::start(3, false, &["--cluster-routing", "proxy"]);
    // A plain (not cluster-aware) client on one node reaches every slot's leader through it.
    let mut plain = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    // (An election on the loaded machine answers -TRYAGAIN, nothing applied: asked again, as a
    // client would.)
    for i in 0..500 {
        let _: () = again_on_tryagain(|| plain.set(format!("px:{i}"), i));
    }
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.get(format!("px:{i}"));
    }
    let got: Vec<i64> = again_on_tryagain(|| pipe.query(&mut plain));
    assert_eq!(got, (0..500).collect::<Vec<i64>>());
    // Another node sees the same data, and plain redis-cli works.
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &c.ports[2].to_string(), "GET", "px:321"])
        .output()
        .expect("redis-cli runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "321");
    // A blocking pop of a slot another node leads is relayed and waits there.
    let k = c.key_led_by(1);
    let waiter = {
        let mut w = redis::Client::open(c.url(0))
            .unwrap()
            .get_connection()
            .unwrap();
        let k = k.clone();
        std::thread::spawn(move || -> Option<(String, String)> { w.blpop(&k, 10.0).unwrap() })
    };
    std::thread::sleep(Duration::from_millis(200));
    let _: () = plain.rpush(&k, "relayed").unwrap();
    assert_eq!(waiter.join().unwrap(), Some((k, "relayed".to_string())));
}

/// `f`'s answer, asked again for up to 10 s while it is `-TRYAGAIN` (an election: nothing was
/// applied); any other error fails the test.
fn again_on_tryagain<T>(mut f: impl FnMut() -> redis::RedisResult<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(e)
                if (e.code() == Some("TRYAGAIN") || format!("{e:?}").contains("TryAgain"))
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r.unwrap(),
        }
    }
}

/// Four rounds of 5,000 SETs of `<prefix>:<i>` = `<round>-<i>-<64 x v>`, pipelined through a
/// proxy-routing node. A round refused in part (TRYAGAIN: not applied, e.g. until a killed
/// node's vShards have new leaders) is sent again: the same values, so harmless.
fn write_rounds(conn: &mut redis::Connection, prefix: &str) {
    for round in 0..4 {
        let mut pipe = redis::pipe();
        for i in 0..5000 {
            pipe.set(
                format!("{prefix}:{i}"),
                format!("{round}-{i}-{}", "v".repeat(64)),
            )
            .ignore();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = pipe.query::<()>(conn) {
            assert!(Instant::now() < deadline, "writes still refused: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn disk_use_stays_bounded_under_sustained_writes() {
    let c = TestCluster::start(
        3,
        false,
        &["--wal-segment-bytes", "65536", "--cluster-routing", "proxy"],
    );
    // Proxy routing lets one plain connection pipeline writes to every slot.
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    // About 3 MB of log records per node: some 50 segments of 64 KiB if nothing were dropped.
    write_rounds(&mut conn, "disk");
    std::thread::sleep(Duration::from_millis(500));
    for n in 0..3 {
        let segs = segments(&c, n).len();
        assert!(segs <= 8, "node {n} keeps {segs} log segments");
    }
    // And nothing was lost on the way: compaction kept every value.
    let v: String = conn.get("disk:4321").unwrap();
    assert!(v.starts_with("3-4321-"), "{v}");
}

/// Node 2 misses writes whose log entries the others then fold into snapshots: it catches up by
/// snapshot install, and the whole cluster restarted from snapshot files plus logs keeps every
/// value.
#[test]
fn a_node_behind_compacted_logs_catches_up_by_snapshot_and_a_full_restart_keeps_everything() {
    let mut c = TestCluster::start(
        3,
        false,
        &[
            "--wal-segment-bytes",
            "65536",
            "--cluster-routing",
            "proxy",
            // Snapshots of several KiB travel on bulk lanes in several chunks.
            "--bulk-chunk-bytes",
            "4096",
        ],
    );
    c.kill(2);
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    write_rounds(&mut conn, "snap");
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        segments(&c, 0).len() <= 8,
        "the live nodes compacted their logs"
    );
    c.spawn(2);
    c.wait_served(Duration::from_secs(30));
    // Every value reaches node 2's own state (READONLY reads its applied state).
    c.wait_replica_holds(
        2,
        (0..5000).step_by(7),
        |i| format!("snap:{i}"),
        |i, v| v.starts_with(&format!("3-{i}-")),
        Duration::from_secs(20),
    );
    let snaps = std::fs::read_dir(c.data_dir(2).join("snap").join("shard-0"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(snaps > 0, "node 2 stored snapshots");
    // They came on bulk lanes, whole and checked.
    let field = |name: &str| c.cluster_field(2, name).unwrap_or(0);
    assert!(
        field("bulk_copies_in") > 0 && field("bulk_bytes_in") > 4096,
        "node 2's copies: {:?}",
        c.info_section(2, "cluster")
    );
    c.restart_all();
    let mut conn = c.client().get_connection().unwrap();
    for i in (0..5000).step_by(3) {
        let v: String = conn.get(format!("snap:{i}")).unwrap();
        assert!(v.starts_with(&format!("3-{i}-")), "snap:{i} = {v}");
    }
}

#[test]
fn a_pipeline_reads_its_own_writes_although_reads_skip_the_log() {
    let c = TestCluster::start(3, false, &[]);
    // An election on a loaded machine answers the whole pipeline -TRYAGAIN (nothing applied):
    // try again on fresh keys, as a cluster client would.
    for attempt in 0..5 {
        let (x, n) = (format!("{{rw}}x{attempt}"), format!("{{rw}}n{attempt}"));
        let mut leader = c.leader_of(&x);
        let mut pipe = redis::pipe();
        for i in 0..200 {
            pipe.set(&x, i).ignore().get(&x).incr(&n, 1).get(&n);
        }
        let got: Vec<i64> = match pipe.query(&mut leader) {
            Err(e) if format!("{e}").contains("TryAgain") && attempt < 4 => {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            r => r.unwrap(),
        };
        let want: Vec<i64> = (0..200).flat_map(|i| [i, i + 1, i + 1]).collect();
        assert_eq!(got, want);
        return;
    }
}

/// Commands of one vShard share a log entry, but never across a transaction: a command after
/// an EXEC stays after it.
#[test]
fn a_pipeline_keeps_its_order_around_a_transaction_on_the_same_vshard() {
    let c = TestCluster::start(3, false, &[]);
    // An election on a loaded machine (debug builds, tests in parallel on two cores) moves the
    // leader under the scenario, which then sees -MOVED or -TRYAGAIN where it assumed a stable
    // leader: run it again on a fresh vShard, as a cluster client would retry.
    for attempt in 0..5 {
        match pipeline_order_around_a_transaction(&c, &format!("tx{attempt}")) {
            Ok(()) => return,
            Err(e) => eprintln!("attempt {attempt}: the leader moved ({e}); again"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the leader moved in every attempt");
}

/// One run of the scenario on keys tagged `{tag}`. Err: leadership moved under it (what it saw);
/// a wrong answer from a stable leader panics.
fn pipeline_order_around_a_transaction(c: &TestCluster, tag: &str) -> Result<(), String> {
    let moved = |e: &redis::RedisError| {
        let t = format!("{e:?}");
        t.contains("Moved") || t.contains("TryAgain") || t.contains("NOTLEADER")
    };
    let key = format!("{{{tag}}}k");
    let mut leader = c.leader_of(&key);
    let mut pipe = redis::pipe();
    pipe.set(&key, 1)
        .ignore()
        .cmd("MULTI")
        .ignore()
        .set(&key, 2)
        .ignore()
        .cmd("EXEC")
        .ignore()
        .set(&key, 3)
        .ignore()
        .get(&key);
    let got: (i64,) = match pipe.query(&mut leader) {
        Err(e) if moved(&e) => return Err(format!("{e:?}")),
        r => r.unwrap(),
    };
    assert_eq!(got.0, 3);
    let v: i64 = match redis::cmd("GET").arg(&key).query(&mut leader) {
        Err(e) if moved(&e) => return Err(format!("{e:?}")),
        r => r.unwrap(),
    };
    assert_eq!(v, 3);
    // As Redis Cluster when queuing: on a node that does not lead the slot, a transaction's
    // first command is MOVED; EXEC then answers EXECABORT (nothing applied).
    let follower = (0..3)
        .find(|&i| {
            let mut n = redis::Client::open(c.url(i))
                .unwrap()
                .get_connection()
                .unwrap();
            redis::cmd("GET").arg(&key).query::<Value>(&mut n).is_err()
        })
        .ok_or("no node refused the key")?;
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", c.ports[follower])).unwrap();
    let (got, _) = common::exchange(
        &mut raw,
        format!("MULTI\r\nSET {key} 9\r\nEXEC\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&got);
    if text.starts_with("+OK\r\n+QUEUED") {
        // The follower was elected in between and the transaction ran there.
        return Err(format!("node {follower} now leads: {text}"));
    }
    assert!(
        text.starts_with("+OK\r\n-MOVED ")
            && text.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"),
        "{text}"
    );
    // Read where the key is led now: a leader change in between must not fail the check of
    // what was applied.
    let v: i64 = redis::cmd("GET")
        .arg(&key)
        .query(&mut c.leader_of(&key))
        .unwrap();
    assert_eq!(v, 3, "the refused transaction applied nothing");
    // Another vShard's key joins the transaction: one across both (Calvin, issue 17), in
    // the pipeline's order.
    let other = format!("{{{tag}o}}k");
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI")
        .ignore()
        .set(&key, 10)
        .ignore()
        .set(&other, 10)
        .ignore()
        .cmd("EXEC")
        .ignore()
        .cmd("MGET")
        .arg(&key)
        .arg(&other);
    let got: (Vec<i64>,) = match pipe.query(&mut leader) {
        Err(e) if moved(&e) => return Err(format!("{e:?}")),
        r => r.unwrap(),
    };
    assert_eq!(got.0, vec![10, 10]);
    Ok(())
}
