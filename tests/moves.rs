//! Moves an operator controls, between real processes (issue 19, step 4): CLUSTER MOVE copies
//! a vShard's replica to another node and cuts over, CLUSTER CANCELMOVE puts it back, and a
//! move under way survives kill -9 of its target, its source or the metadata leader; under a
//! linearizability workload, with every value written before still there.

mod common;

use common::cluster::{TestCluster, set_all};
use common::workload::Workload;
use redis::Commands;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const KEYS: usize = 32_000;
const VSHARDS: u16 = 16;

fn value(i: usize) -> String {
    format!("{i}-{}", "v".repeat(1000))
}

/// Four nodes, RF 3, 16 vShards of about 2 MB each (small logs: learners get snapshots), base
/// copies throttled to 1 MB/s per node so a move's copy lasts a couple of seconds.
fn loaded_cluster() -> TestCluster {
    let c = TestCluster::start(
        4,
        false,
        &[
            "--cluster-routing",
            "proxy",
            "--cluster-replicas",
            "3",
            "--vshards",
            "16",
            "--raft-log-memory-bytes",
            "1048576",
            "--bulk-chunk-bytes",
            "65536",
            "--bulk-max-bytes-per-sec",
            "1000000",
        ],
    );
    set_all(&mut conn(&c, 0), 0..KEYS, |i| format!("mv:{i}"), value);
    c
}

/// A connection to node `i`, waiting up to 20 s for it to listen (a node just restarted).
fn conn(c: &TestCluster, i: usize) -> redis::Connection {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match redis::Client::open(c.url(i))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
        {
            Ok(n) => return n,
            Err(e) => assert!(Instant::now() < deadline, "node {i}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CLUSTER MOVES on node `i`, each move's fields as text.
fn moves(c: &TestCluster, i: usize) -> Vec<HashMap<String, String>> {
    cluster_maps(c, i, "MOVES")
}

/// CLUSTER `sub` on node `i` (MOVES, LOAD: an array of maps), each map's fields as text.
fn cluster_maps(c: &TestCluster, i: usize, sub: &str) -> Vec<HashMap<String, String>> {
    let Ok(mut n) = redis::Client::open(c.url(i)).and_then(|c| c.get_connection()) else {
        return Vec::new();
    };
    let Ok(all) = redis::cmd("CLUSTER")
        .arg(sub)
        .query::<Vec<Vec<redis::Value>>>(&mut n)
    else {
        return Vec::new();
    };
    all.into_iter()
        .map(|kv| {
            kv.chunks(2)
                .map(|p| {
                    let text = |v: &redis::Value| match v {
                        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        redis::Value::Int(n) => n.to_string(),
                        other => format!("{other:?}"),
                    };
                    (text(&p[0]), text(&p[1]))
                })
                .collect()
        })
        .collect()
}

/// Starts a move of some vShard to member `to` (asked of node `via`): `(id, vshard, from)`.
fn start_move(c: &TestCluster, via: usize, to: u64, skip: &[u16]) -> (u64, u16, u64) {
    let mut n = conn(c, via);
    for v in (0..VSHARDS).filter(|v| !skip.contains(v)) {
        let r: redis::RedisResult<u64> = redis::cmd("CLUSTER")
            .arg("MOVE")
            .arg(v)
            .arg(to)
            .query(&mut n);
        if let Ok(id) = r {
            let rec = wait_move(c, via, id, Duration::from_secs(5), |_| true);
            return (id, v, rec["from"].parse().unwrap());
        }
    }
    panic!("no vShard could move to member {to}");
}

/// Waits until node `i` lists move `id` with `pred` true; the move's fields.
fn wait_move(
    c: &TestCluster,
    i: usize,
    id: u64,
    timeout: Duration,
    pred: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(m) = moves(c, i).into_iter().find(|m| m["id"] == id.to_string()) {
            if pred(&m) {
                return m;
            }
            last = Some(m);
        }
        assert!(
            Instant::now() < deadline,
            "move {id} on node {i} after {timeout:?}: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The client ports of the nodes routing lists as vShard `v`'s replicas (node 0's view).
fn replica_ports(c: &TestCluster, v: u16) -> Vec<u16> {
    let slot = v as i64 * (16384 / VSHARDS as i64);
    let mut n = conn(c, 0);
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut n).unwrap();
    for r in ranges {
        let (redis::Value::Int(a), redis::Value::Int(b)) = (&r[0], &r[1]) else {
            panic!()
        };
        if (*a..=*b).contains(&slot) {
            return r[2..]
                .iter()
                .map(|m| {
                    let redis::Value::Array(m) = m else { panic!() };
                    let redis::Value::Int(port) = m[1] else {
                        panic!()
                    };
                    port as u16
                })
                .collect();
        }
    }
    Vec::new()
}

fn wait_replicas(c: &TestCluster, v: u16, holds: &[usize], lacks: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ports = replica_ports(c, v);
        if holds.iter().all(|&i| ports.contains(&c.ports[i]))
            && lacks.iter().all(|&i| !ports.contains(&c.ports[i]))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vShard {v}: replicas on ports {ports:?}, wanted nodes {holds:?} and not {lacks:?} (ports {:?})",
            c.ports
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn copying(m: &HashMap<String, String>) -> bool {
    m["phase"] == "copying" && m["bytes-total"] != "0"
}

fn check_values(c: &TestCluster) {
    let mut conn = conn(c, 0);
    for i in (0..KEYS).step_by(13) {
        let v: Option<String> = common::cluster::retry_tryagain(|| conn.get(format!("mv:{i}")));
        assert_eq!(v.as_deref(), Some(value(i).as_str()), "mv:{i}");
    }
}

/// A move copies, reports its progress, cuts over (the target holds the vShard, the source
/// no longer); a second move cancelled mid-copy goes back (the target drops its learner, the
/// source keeps its replica); no write is lost or reordered meanwhile.
#[test]
fn a_move_copies_and_cuts_over_and_a_cancelled_one_goes_back() {
    let c = loaded_cluster();
    // Not inside a transaction: refused at MULTI's queueing, and nothing moves.
    let queued: redis::RedisResult<()> = redis::pipe()
        .atomic()
        .cmd("CLUSTER")
        .arg("MOVE")
        .arg(0)
        .arg(4)
        .query(&mut conn(&c, 0));
    assert!(queued.is_err());
    assert!(moves(&c, 0).iter().all(|m| m["kind"] != "operator"));
    let work = Workload::start(&c, 3);
    let (id, v, from) = start_move(&c, 1, 4, &[]);
    let seen = wait_move(&c, 2, id, Duration::from_secs(30), copying);
    assert!(
        seen["bytes-total"].parse::<u64>().unwrap() > 1_000_000,
        "{seen:?}"
    );
    let done = wait_move(&c, 0, id, Duration::from_secs(60), |m| m["state"] != "open");
    assert_eq!(done["state"], "done", "{done:?}");
    assert_eq!(done["kind"], "operator");
    wait_replicas(&c, v, &[3], &[from as usize - 1]);

    let hosted = |c: &TestCluster| c.cluster_field(3, "cluster_vshard_replicas").unwrap();
    let before = hosted(&c);
    let (id2, v2, from2) = start_move(&c, 0, 4, &[v]);
    wait_move(&c, 0, id2, Duration::from_secs(30), copying);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hosted(&c) != before + 1 {
        assert!(Instant::now() < deadline, "no learner on the target");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok: String = redis::cmd("CLUSTER")
        .arg("CANCELMOVE")
        .arg(id2)
        .query(&mut conn(&c, 2))
        .unwrap();
    assert_eq!(ok, "OK");
    let m = wait_move(&c, 0, id2, Duration::from_secs(5), |m| m["state"] != "open");
    assert_eq!(m["phase"], "cancelled");
    // Cancelling twice is refused and changes nothing.
    let again: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("CANCELMOVE")
        .arg(id2)
        .query(&mut conn(&c, 0));
    assert!(again.unwrap_err().to_string().contains("no open move"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while hosted(&c) != before {
        assert!(Instant::now() < deadline, "the learner was not dropped");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_replicas(&c, v2, &[from2 as usize - 1], &[3]);
    work.finish_and_check(&c);
    check_values(&c);
}

/// Moves under way when their target, their source (the vShard's leader) or the metadata
/// leader is killed with SIGKILL and restarted, mid-copy, and the vShard's leader killed as
/// its copy ends (the cutover begins): each finishes, with nothing lost.
#[test]
fn moves_finish_after_kill_9_of_the_target_the_source_or_the_metadata_leader() {
    let mut c = loaded_cluster();
    let work = Workload::start(&c, 3);
    let mut moved = Vec::new();
    for victim in ["target", "source", "metadata leader", "leader at cutover"] {
        // A target that is not the victim when the source or the metadata leader is killed
        // (so the copy's two ends are different processes).
        let meta = c.cluster_field(0, "cluster_metadata_leader").unwrap() as usize - 1;
        let to = (0..4)
            .rev()
            .find(|&i| victim == "target" || i != meta)
            .unwrap();
        let (id, v, _) = start_move(&c, (to + 1) % 4, to as u64 + 1, &moved);
        moved.push(v);
        let installed = c.cluster_field(to, "bulk_copies_in").unwrap();
        wait_move(&c, to, id, Duration::from_secs(30), copying);
        if victim == "leader at cutover" {
            // The copy installed on the target: its learner catches up, is promoted, and the
            // leader hands over and leaves; the leader dies right then.
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.cluster_field(to, "bulk_copies_in").unwrap_or(0) == installed {
                assert!(Instant::now() < deadline, "the copy never installed");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let kill = match victim {
            "target" => to,
            "source" | "leader at cutover" => {
                let ports = replica_ports(&c, v);
                c.ports.iter().position(|&p| p == ports[0]).unwrap()
            }
            _ => meta,
        };
        c.kill(kill);
        std::thread::sleep(Duration::from_millis(300));
        c.spawn(kill);
        let seen = (kill + 1) % 4;
        let m = wait_move(&c, seen, id, Duration::from_secs(120), |m| {
            m["state"] != "open"
        });
        assert_eq!(m["state"], "done", "after killing the {victim}: {m:?}");
        wait_replicas(&c, v, &[to], &[]);
    }
    c.wait_served(Duration::from_secs(60));
    work.finish_and_check(&c);
    check_values(&c);
}

/// `shardline ctl drain --wait` empties a node that stays a member, `undrain --wait` gives it
/// its share back; both exit 0 once their moves are done; a cancel of a drain's move is
/// refused (its source takes nothing), and writes go on throughout.
#[test]
fn ctl_drains_a_node_and_gives_it_its_share_back() {
    let c = loaded_cluster();
    let work = Workload::start(&c, 2);
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
            .arg("ctl")
            .arg("-h")
            .arg(format!("127.0.0.1:{}", c.ports[1]))
            .args(args)
            .output()
            .expect("shardline ctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let held = |c: &TestCluster| c.cluster_field(3, "cluster_vshard_replicas").unwrap();
    let before = held(&c);
    assert!(before > 0);
    let (code, out, err) = ctl(&["drain", "4", "--wait"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("{before}/{before} moves finished")),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while held(&c) != 0 {
        assert!(Instant::now() < deadline, "node 4 still holds {}", held(&c));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every member lists the drain's moves as done (node 0 may apply the last a moment
    // after the node ctl asked).
    let deadline = Instant::now() + Duration::from_secs(10);
    let drained = loop {
        let listed = moves(&c, 0);
        let drained: Vec<_> = listed
            .into_iter()
            .filter(|m| m["kind"] == "drain")
            .collect();
        if drained.len() as u64 == before
            && drained
                .iter()
                .all(|m| m["from"] == "4" && m["state"] == "done")
        {
            break drained;
        }
        assert!(Instant::now() < deadline, "{drained:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (code, out, err) = ctl(&["cancel", &drained[0]["id"]]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("no open move"), "{err}");
    let (code, out, err) = ctl(&["moves"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("drain") && out.contains("done"), "{out}");
    let (code, out, err) = ctl(&["undrain", "4", "--wait"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while held(&c) != before {
        assert!(Instant::now() < deadline, "node 4 holds {}", held(&c));
        std::thread::sleep(Duration::from_millis(100));
    }
    work.finish_and_check(&c);
    check_values(&c);
}

/// A hash tag whose slot is in vShard `v` (of `VSHARDS`).
fn tag_in(c: &TestCluster, v: u16) -> String {
    let per = 16384 / VSHARDS as i64;
    let mut n = conn(c, 0);
    (0..100_000)
        .map(|k| format!("{{r{k}}}"))
        .find(|t| {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(t)
                .query(&mut n)
                .unwrap();
            slot / per == v as i64
        })
        .unwrap()
}

/// Writes 1 KB values to keys of the vShards of `tags`, one at a time, round robin, through a
/// cluster client (it follows -MOVED as leaders move) until `stop`; what was acknowledged.
fn hot_writes(
    c: &TestCluster,
    tags: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(String, String)>> {
    let client = c.client();
    std::thread::spawn(move || {
        let mut conn = client.get_connection().unwrap();
        let mut acked = Vec::new();
        let mut i = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let key = format!("{}:{}", tags[i % tags.len()], i / tags.len() % 500);
            let val = format!("{i}-{}", "w".repeat(1000));
            match redis::cmd("SET").arg(&key).arg(&val).query::<()>(&mut conn) {
                Ok(()) => acked.push((key, val)),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            i += 1;
        }
        acked
    })
}

/// Three nodes with replication factor `rf`, 16 vShards, the rebalancer on and sampling
/// every 200 ms, serving.
fn rebalancing_cluster(rf: &str) -> TestCluster {
    let c = TestCluster::start(
        3,
        false,
        &[
            "--cluster-replicas",
            rf,
            "--vshards",
            "16",
            "--cluster-rebalance",
            "yes",
            "--cluster-rebalance-period-ms",
            "200",
        ],
    );
    c.wait_served(Duration::from_secs(60));
    c
}

/// The rebalancer (step 7), on: node 1 leads every vShard the load hits. Three nodes with
/// RF 3: leaderships move (records of kind `leader`) until each node leads one hot vShard,
/// no data moves, and it then stays so. Three nodes with RF 1: the replicas themselves move
/// (kind `rebalance`), two of them, off node 1. Every write acknowledged is there. (With RF
/// 3 the count of moves is not fixed: under a loaded machine an election may have moved a
/// leadership away from its preferred node before the test picked the hot vShards, and the
/// rebalancer counts by the preferred leaders; failed so in CI once when it asked for two.)
#[test]
fn the_rebalancer_moves_leaders_then_replicas_off_a_hot_node() {
    for rf in ["3", "1"] {
        let c = rebalancing_cluster(rf);
        let led: Vec<u16> = (0..VSHARDS)
            .filter(|&v| replica_ports(&c, v).first() == Some(&c.ports[0]))
            .take(3)
            .collect();
        assert_eq!(led.len(), 3, "node 1 leads at least 3 of 16 vShards");
        let tags: Vec<String> = led.iter().map(|&v| tag_in(&c, v)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = hot_writes(&c, tags, stop.clone());
        let kind = if rf == "3" { "leader" } else { "rebalance" };
        let deadline = Instant::now() + Duration::from_secs(120);
        let leaders = |c: &TestCluster| -> Vec<u16> {
            let mut l: Vec<u16> = led
                .iter()
                .filter_map(|&v| replica_ports(c, v).first().copied())
                .collect();
            l.sort();
            l.dedup();
            l
        };
        loop {
            let done = moves(&c, 1)
                .iter()
                .filter(|m| m["kind"] == kind && m["state"] == "done")
                .count();
            if done >= if rf == "1" { 2 } else { 1 } && leaders(&c).len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rf {rf}: leaders on ports {:?}, moves {:?}",
                leaders(&c),
                moves(&c, 1)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // Balanced now: it stays so (a few more samples under the same load).
        let before = moves(&c, 2).len();
        std::thread::sleep(Duration::from_secs(3));
        let all = moves(&c, 2);
        assert_eq!(all.len(), before, "rf {rf}: nothing more moved: {all:?}");
        assert!(all.iter().all(|m| m["kind"] == kind), "{all:?}");
        if rf == "1" {
            assert_eq!(all.len(), 2, "{all:?}");
            assert!(all.iter().all(|m| m["from"] == "1"), "{all:?}");
        }
        // (An election may move a leader off its preferred node for a moment; leaders hand
        // back to the preferred ones.)
        let deadline = Instant::now() + Duration::from_secs(20);
        while leaders(&c).len() != 3 {
            assert!(Instant::now() < deadline, "rf {rf}: {:?}", leaders(&c));
            std::thread::sleep(Duration::from_millis(200));
        }
        let info = c.info_section(0, "cluster").unwrap();
        assert!(info.contains("cluster_rebalance:yes"), "{info}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acked = writer.join().unwrap();
        assert!(acked.len() > 100, "rf {rf}: {} writes", acked.len());
        let mut last = HashMap::new();
        for (k, v) in acked {
            last.insert(k, v);
        }
        let mut reader = c.client().get_connection().unwrap();
        for (k, v) in last {
            let got: Option<String> = common::cluster::retry_tryagain(|| reader.get(&k));
            assert_eq!(got.as_deref(), Some(v.as_str()), "rf {rf}: {k}");
        }
    }
}

/// The rebalancer weighs CPU time (step 7): three nodes, RF 3, one client running the same
/// number of commands a second on two vShards led by each node, ZRANGEs of a thousand
/// members on node 1's and GETs on the others'. By commands (and bytes: none are written)
/// the nodes are even; by CPU, node 1 is hot: CLUSTER LOAD shows its vShards' CPU far above
/// the others' at the same rate, and the rebalancer moves one of their leaderships away (with
/// the weight of commands alone nothing would move), then leaves them apart.
#[test]
fn the_rebalancer_moves_a_leadership_off_a_node_hot_by_cpu_at_an_even_rate_of_commands() {
    let c = rebalancing_cluster("3");
    let led_by = |i: usize| -> Vec<u16> {
        (0..VSHARDS)
            .filter(|&v| replica_ports(&c, v).first() == Some(&c.ports[i]))
            .take(2)
            .collect()
    };
    let (costly, cheap): (Vec<u16>, Vec<u16>) = (led_by(0), [led_by(1), led_by(2)].concat());
    assert_eq!(
        (costly.len(), cheap.len()),
        (2, 4),
        "each node leads 2 of 16 vShards"
    );
    let mut conn = c.client().get_connection().unwrap();
    let keys: Vec<(u16, String)> = costly
        .iter()
        .chain(&cheap)
        .map(|&v| (v, format!("{}:k", tag_in(&c, v))))
        .collect();
    for (v, k) in &keys {
        if costly.contains(v) {
            let members: Vec<(i64, String)> = (0..1000).map(|m| (m, format!("m{m}"))).collect();
            let _: () = conn.zadd_multiple(k, &members).unwrap();
        } else {
            let _: () = conn.set(k, "v").unwrap();
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (client, stop, keys, costly) = (c.client(), stop.clone(), keys.clone(), costly.clone());
        std::thread::spawn(move || {
            let mut conn = client.get_connection().unwrap();
            let mut runs = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (v, k) in &keys {
                    let ok = if costly.contains(v) {
                        conn.zrange::<_, Vec<String>>(k, 0, -1)
                            .is_ok_and(|m| m.len() == 1000)
                    } else {
                        conn.get::<_, String>(k).is_ok_and(|g| g == "v")
                    };
                    runs += ok as u64;
                }
            }
            runs
        })
    };
    let load = |v: u16| -> (u64, u64) {
        let all = cluster_maps(&c, 0, "LOAD");
        let Some(m) = all.iter().find(|m| m["vshard"] == v.to_string()) else {
            return (0, 0);
        };
        (
            m["ops-per-sec"].parse().unwrap(),
            m["cpu-us-per-sec"].parse().unwrap(),
        )
    };
    // CLUSTER LOAD: the same commands a second (once every vShard has a figure from its
    // leader, and the moving averages, each rolled by its own leader and a second old on
    // other nodes, have caught up with the round robin), CPU far apart.
    let deadline = Instant::now() + Duration::from_secs(60);
    let figures = loop {
        let f: Vec<(u64, u64)> = keys.iter().map(|(v, _)| load(*v)).collect();
        let max_ops = f.iter().map(|f| f.0).max().unwrap();
        let min_ops = f.iter().map(|f| f.0).min().unwrap();
        if f.iter().all(|&(ops, cpu)| ops > 0 && cpu > 0) && max_ops <= min_ops * 2 {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no even rate of commands in the load figures: {f:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (hi, lo) = figures.split_at(2);
    // (Against the cheap ones' median: a figure is an estimate from one run in 64, and a
    // slow GET, a page fault, weighs 64 times.)
    let mut cheap: Vec<u64> = lo.iter().map(|f| f.1).collect();
    cheap.sort_unstable();
    let cheap_cpu = cheap[cheap.len() / 2];
    assert!(
        hi.iter().all(|f| f.1 > cheap_cpu * 5),
        "ZRANGEs cost more CPU than GETs: {figures:?}"
    );
    // A leadership moves; the costly vShards end on two nodes.
    let leaders = |c: &TestCluster| -> Vec<u16> {
        let mut l: Vec<u16> = costly
            .iter()
            .filter_map(|&v| replica_ports(c, v).first().copied())
            .collect();
        l.sort();
        l.dedup();
        l
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = moves(&c, 0)
            .iter()
            .filter(|m| m["kind"] == "leader" && m["state"] == "done")
            .count();
        if done >= 1 && leaders(&c).len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaders on ports {:?}, moves {:?}, load {:?}",
            leaders(&c),
            moves(&c, 0),
            cluster_maps(&c, 0, "LOAD")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Apart now: nothing more moves under the same load.
    let before = moves(&c, 0).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(moves(&c, 0).len(), before, "{:?}", moves(&c, 0));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 100);
}
