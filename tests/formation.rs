//! Cluster formation end to end (issue 3): real processes on loopback; a node joins a running
//! cluster by naming any member (`--cluster-join`), is known to every member through the
//! metadata group, routes every slot, keeps its id across restarts, and mismatched nodes are
//! refused with the reason.

mod common;

use common::cluster::TestCluster;
use common::workload::{KEYS, Workload};
use redis::Commands;
use std::time::{Duration, Instant};

/// Sends a metadata command (`CLUSTER JOIN`, `CLUSTER FORGET`) to node `i`, following
/// `-NOTLEADER` to the metadata leader and retrying `-TRYAGAIN`.
fn to_metadata_leader<T: redis::FromRedisValue>(
    c: &TestCluster,
    i: usize,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let mut url = c.url(i);
    for _ in 0..16 {
        let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
        let r = cmd.query::<T>(&mut conn);
        match &r {
            Err(e) if e.code() == Some("NOTLEADER") => {
                let addr = e.detail().unwrap().split_whitespace().next().unwrap();
                url = format!("redis://{addr}/");
            }
            Err(e) if e.code() == Some("TRYAGAIN") => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => return r,
        }
    }
    panic!("{cmd:?} kept being redirected")
}

/// Sends CLUSTER JOIN for `(client, bus)` to node `i`, following `-NOTLEADER`.
fn join_by_hand(
    c: &TestCluster,
    i: usize,
    client: &str,
    bus: &str,
) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("JOIN")
        .arg(client)
        .arg(bus)
        .arg(1)
        .arg(64)
        .arg(1)
        .arg(200);
    to_metadata_leader(c, i, &cmd)
}

#[test]
fn a_node_joins_by_naming_any_member_routes_every_slot_and_keeps_its_id() {
    let mut c = TestCluster::start(3, false, &[]);
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..300 {
        let _: () = conn.set(format!("k{i}"), i).unwrap();
    }
    // Asked of node 0, which may or may not lead the metadata group (redirects are followed).
    let j = c.join(0, &[]);
    c.wait_served(Duration::from_secs(30));
    for i in 0..4 {
        let info = c.info(i).unwrap();
        assert!(info.contains("cluster_known_nodes:4"), "node {i}: {info}");
    }
    // A cluster client that knows only the new node finds every key.
    let only_new = redis::cluster::ClusterClient::new(vec![c.url(j)]).unwrap();
    let mut via_new = only_new.get_connection().unwrap();
    for i in (0..300).step_by(7) {
        let v: i64 = via_new.get(format!("k{i}")).unwrap();
        assert_eq!(v, i);
    }
    let myid = |c: &TestCluster| -> String {
        let mut n = redis::Client::open(c.url(j))
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("CLUSTER").arg("MYID").query(&mut n).unwrap()
    };
    let id = myid(&c);
    assert!(c.data_dir(j).join("cluster.conf").exists());
    // Restarted, it uses what it kept and is the same member.
    c.kill(j);
    c.spawn(j);
    c.wait_served(Duration::from_secs(30));
    assert_eq!(myid(&c), id);
    let mut nodes = redis::Client::open(c.url(1))
        .unwrap()
        .get_connection()
        .unwrap();
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut nodes)
        .unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains(&id), "{text}");

    // Joining again from the same addresses is answered with the same member id; the same
    // client address with another bus address is refused.
    let client = format!("127.0.0.1:{}", c.ports[j]);
    let again = join_by_hand(&c, 2, &client, &c.bus_addr(j)).unwrap();
    let redis::Value::Array(parts) = again else {
        panic!("{again:?}")
    };
    assert_eq!(parts[1], redis::Value::Int(4));
    let e = join_by_hand(&c, 2, &client, "127.0.0.1:1").unwrap_err();
    assert!(
        e.to_string().contains("already uses this client address"),
        "{e}"
    );
    let info = c.info(0).unwrap();
    assert!(info.contains("cluster_known_nodes:4"), "{info}");

    // A node speaking no wire version of the cluster's is refused by any member, with the reason.
    let mut n0 = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let e = redis::cmd("CLUSTER")
        .arg("JOIN")
        .arg("127.0.0.1:1")
        .arg("127.0.0.1:2")
        .arg(1)
        .arg(64)
        .arg(200)
        .arg(201)
        .query::<redis::Value>(&mut n0)
        .unwrap_err();
    assert!(e.to_string().contains("wire versions 200..=201"), "{e}");
    // A node that runs another number of shard threads is refused, and says why.
    let k = c.join(1, &["--cores", "0,1"]);
    let (status, err) = c.wait_exit(k, Duration::from_secs(30));
    assert!(!status.success());
    assert!(err.contains("shard threads"), "{err}");
}

/// The keys every node holds, replicas included (-1: it does not answer yet).
fn sizes(c: &TestCluster) -> Vec<i64> {
    (0..c.ports.len())
        .map(|i| {
            redis::Client::open(c.url(i))
                .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut n| common::held_keys(&mut n))
                .unwrap_or(-1)
        })
        .collect()
}

/// Writes `bulk:0..1000` (value i) through the cluster client.
fn write_bulk(c: &TestCluster) {
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..1_000 {
        let _: () = conn.set(format!("bulk:{i}"), i).unwrap();
    }
}

/// Reads `bulk:0..1000` back through the cluster client.
fn check_bulk(c: &TestCluster) {
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..1_000 {
        let v: i64 = conn.get(format!("bulk:{i}")).unwrap();
        assert_eq!(v, i);
    }
}

/// Three listed nodes with the bulk keys, and a fourth that joined and got its share.
fn four_nodes_with_bulk_keys() -> TestCluster {
    let mut c = TestCluster::start(3, false, &[]);
    write_bulk(&c);
    c.join(0, &[]);
    c.wait_served(Duration::from_secs(60));
    c
}

#[test]
fn a_cluster_grows_from_three_to_four_nodes_under_writes_and_loses_nothing() {
    let mut c = TestCluster::start(3, false, &[]);
    write_bulk(&c);
    let w = Workload::start(&c, 4);
    std::thread::sleep(Duration::from_millis(300));
    let j = c.join(2, &[]);
    // The new node takes its share (a quarter of the replicas) while the clients write: every
    // key stays on exactly three nodes once the moves are done.
    let keys = 1_000 + KEYS as i64;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = sizes(&c);
        if s[j] > keys / 5 && s.iter().all(|&n| n >= 0) && s.iter().sum::<i64>() == 3 * keys {
            assert!(s.iter().all(|&n| n < keys), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "moves did not finish: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    w.finish_and_check(&c);
    // Every vShard (64) has exactly three replicas, a quarter of them on the new node.
    let hosted = |c: &TestCluster| -> Vec<u64> {
        (0..c.ports.len())
            .map(|i| {
                c.cluster_field(i, "cluster_vshard_replicas")
                    .expect("answers")
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while hosted(&c).iter().sum::<u64>() != 3 * 64 {
        assert!(
            Instant::now() < deadline,
            "replicas per node: {:?}",
            hosted(&c)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let placed = hosted(&c);
    assert_eq!(placed[j], 48, "{placed:?}");
    // Leaders follow the placement: once no move or handover is pending, every node leads
    // its share (16 of 64; without handovers the new node led nothing).
    c.wait_served(Duration::from_secs(30));
    let led: Vec<_> = (0..c.ports.len())
        .map(|i| c.cluster_field(i, "cluster_vshards_led").expect("answers"))
        .collect();
    assert!(led.iter().all(|&n| (15..=17).contains(&n)), "led: {led:?}");
    check_bulk(&c);
    // A full restart comes back with every key where it was moved (and nothing where it was
    // moved from: the tombstones keep dropped replicas dropped).
    let before = sizes(&c);
    c.restart_all();
    check_bulk(&c);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sizes(&c) != before || hosted(&c) != placed {
        assert!(
            Instant::now() < deadline,
            "keys {:?} vs {before:?}, replicas {:?} vs {placed:?}",
            sizes(&c),
            hosted(&c)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn killing_the_metadata_leader_during_the_moves_loses_nothing_and_the_moves_finish() {
    let mut c = TestCluster::start(3, false, &[]);
    let w = Workload::start(&c, 3);
    let j = c.join(1, &[]);
    // As soon as the new node is a member, the node leading the metadata dies mid-move.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(l) = c
            .cluster_field(j, "cluster_metadata_leader")
            .filter(|&l| l != 0)
        {
            break l as usize - 1;
        }
        assert!(
            Instant::now() < deadline,
            "the new node never learned the metadata leader"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    c.kill(leader);
    std::thread::sleep(Duration::from_secs(2));
    c.spawn(leader);
    c.wait_served(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hosted: Vec<Option<u64>> = (0..4)
            .map(|i| c.cluster_field(i, "cluster_vshard_replicas"))
            .collect();
        if hosted.iter().all(|h| *h == Some(48)) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas per node: {hosted:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    w.finish_and_check(&c);
}

/// Waits until `f` holds, or fails with what it last saw.
fn wait_for<T: std::fmt::Debug>(what: &str, secs: u64, mut f: impl FnMut() -> (bool, T)) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (ok, seen) = f();
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_one_node_cluster_grows_to_three_replicas_and_its_metadata_survives_the_first_node() {
    // A small log budget: its groups compact (and drop the in-memory copy of their snapshots,
    // having no one to send them to) before anyone joins; the joins must get them back.
    let mut c = TestCluster::start(1, false, &["--raft-log-memory-bytes", "1mb"]);
    let mut conn = c.client().get_connection().unwrap();
    let pad = "p".repeat(4096);
    for i in 0..500 {
        let _: () = conn.set(format!("pad{i}"), &pad).unwrap();
        let _: () = conn.del(format!("pad{i}")).unwrap();
        let _: () = conn.set(format!("k{i}"), i).unwrap();
    }
    // Two nodes join: every vShard gets three replicas (RF 3 once there are three nodes), so
    // every node holds every key.
    c.join(0, &[]);
    c.join(0, &[]);
    wait_for("three replicas of every vShard", 60, || {
        let h: Vec<_> = (0..3)
            .map(|i| c.cluster_field(i, "cluster_vshard_replicas"))
            .collect();
        // Moves pending anywhere: a group may still have two voters and a learner.
        let pending: Vec<_> = (0..3)
            .map(|i| c.cluster_field(i, "cluster_moves_pending"))
            .collect();
        let done = h.iter().all(|x| *x == Some(64))
            && pending.iter().all(|x| *x == Some(0))
            && sizes(&c) == [500, 500, 500];
        (done, (h, pending, sizes(&c)))
    });
    // The metadata group got voters on the new nodes too: with the first node dead, a fourth
    // node still joins (through the second) and gets its share.
    c.kill(0);
    let j = c.join(1, &[]);
    wait_for("the fourth node's share", 60, || {
        let h = c.cluster_field(j, "cluster_vshard_replicas");
        (h == Some(48), h)
    });
    c.wait_served(Duration::from_secs(30));
    let mut conn = c.client().get_connection().unwrap();
    for i in 0..500 {
        let v: i64 = conn.get(format!("k{i}")).unwrap();
        assert_eq!(v, i);
    }
}

/// `CLUSTER FORGET` sent to node `i`, following `-NOTLEADER` to the metadata leader.
fn forget(c: &TestCluster, i: usize, node: &str) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("FORGET").arg(node);
    to_metadata_leader(c, i, &cmd)
}

fn known_nodes(c: &TestCluster, i: usize) -> usize {
    let mut conn = redis::Client::open(c.url(i))
        .unwrap()
        .get_connection()
        .unwrap();
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
    nodes.lines().count()
}

#[test]
fn a_node_removed_under_writes_hands_over_its_replicas_leaves_and_loses_nothing() {
    let mut c = four_nodes_with_bulk_keys();
    let w = Workload::start(&c, 4);
    std::thread::sleep(Duration::from_millis(300));
    // Node 1 (listed at start: it leads vShards and holds a metadata voter) is removed through
    // node 0, by its CLUSTER NODES id.
    let name: String = {
        let mut n = redis::Client::open(c.url(1))
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("CLUSTER").arg("MYID").query(&mut n).unwrap()
    };
    forget(&c, 0, &name).unwrap();
    // It hands everything over, then exits by itself.
    let (status, _) = c.wait_exit(1, Duration::from_secs(90));
    assert!(status.success(), "{status:?}");
    w.finish_and_check(&c);
    // The three left hold every key three times; the metadata drops the node on every one.
    let keys = 1_000 + KEYS as i64;
    wait_for(
        "the node dropped everywhere, every key on three nodes",
        30,
        || {
            let s = sizes(&c);
            let known: Vec<_> = [0, 2, 3].iter().map(|&i| known_nodes(&c, i)).collect();
            let done = s[0] + s[2] + s[3] == 3 * keys && known == [3, 3, 3];
            (done, (s, known))
        },
    );
    c.wait_served(Duration::from_secs(30));
    // It refuses to start again, saying why.
    let (status, err) = c.start_expecting_failure(1);
    assert!(!status.success());
    assert!(err.contains("was removed from cluster"), "{err}");
    // Three nodes for three replicas: none of them may leave.
    let e = forget(&c, 2, "1").unwrap_err();
    assert!(e.to_string().contains("would leave 2 node(s)"), "{e}");
    let e = forget(&c, 2, "2").unwrap_err();
    assert!(e.to_string().contains("unknown node"), "{e}");
    // A restart of the three keeps everything.
    for i in [0, 2, 3] {
        c.kill(i);
    }
    for i in [0, 2, 3] {
        c.spawn(i);
    }
    c.wait_served(Duration::from_secs(30));
    check_bulk(&c);
    assert_eq!(known_nodes(&c, 0), 3);
}

#[test]
fn a_dead_node_can_be_removed_and_its_replicas_are_made_again_elsewhere() {
    let mut c = four_nodes_with_bulk_keys();
    // Node 2 dies for good; the others are told to forget it (by member number).
    c.kill(2);
    forget(&c, 0, "3").unwrap();
    wait_for(
        "every key on the three left, the dead node dropped",
        60,
        || {
            let s = sizes(&c);
            let known: Vec<_> = [0, 1, 3].iter().map(|&i| known_nodes(&c, i)).collect();
            let done = [s[0], s[1], s[3]] == [1_000, 1_000, 1_000] && known == [3, 3, 3];
            (done, (s, known))
        },
    );
    c.wait_served(Duration::from_secs(30));
    check_bulk(&c);
    // It comes back with its old data directory: the members refuse it as removed, so it
    // stops by itself, says why, and refuses to start again; the others lose nothing.
    c.spawn_logged(2, &[]);
    let (status, err) = c.wait_exit(2, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("removed from cluster") && err.contains("while it was away"),
        "{err}"
    );
    let (status, err) = c.start_expecting_failure(2);
    assert!(
        !status.success() && err.contains("while it was away"),
        "{err}"
    );
    c.wait_served(Duration::from_secs(30));
    check_bulk(&c);
}

#[test]
fn two_nodes_removed_at_once_both_leave_and_nothing_is_lost() {
    let mut c = four_nodes_with_bulk_keys();
    c.join(2, &[]);
    c.wait_served(Duration::from_secs(60));
    // A listed node (a metadata voter) and a joined one, back to back, through two members.
    forget(&c, 0, "2").unwrap();
    forget(&c, 4, "4").unwrap();
    for i in [1, 3] {
        let (status, _) = c.wait_exit(i, Duration::from_secs(120));
        assert!(status.success(), "node {i}: {status:?}");
    }
    wait_for(
        "both dropped everywhere, every key on the three left",
        30,
        || {
            let s = sizes(&c);
            let known: Vec<_> = [0, 2, 4].iter().map(|&i| known_nodes(&c, i)).collect();
            let done = [s[0], s[2], s[4]] == [1_000, 1_000, 1_000] && known == [3, 3, 3];
            (done, (s, known))
        },
    );
    c.wait_served(Duration::from_secs(30));
    check_bulk(&c);
}
