//! Membership end to end (issue 20): SWIM on each node's control thread decides who is down
//! (a pause is not a death; a silent node is dead within about 3 s; a node shut down says it
//! left), and automatic repair removes a member dead past `cluster-node-down-after-ms` and
//! makes its replicas again, with no acknowledged write lost.

mod common;

use common::cluster::TestCluster;
use common::workload::Workload;
use redis::Commands;
use std::time::{Duration, Instant};

/// `cluster_current_epoch` of node `i`'s CLUSTER INFO: it moves whenever a leader changes.
fn leader_epoch(c: &TestCluster, i: usize) -> u64 {
    let info = c.info(i).expect("CLUSTER INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_current_epoch:"))
        .expect("cluster_current_epoch")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_node_paused_for_two_seconds_is_suspected_but_not_declared_dead_and_nothing_fails_over() {
    let c = TestCluster::start(3, false, &[]);
    c.wait_swim_alive(Duration::from_secs(10));
    // Leaderships settle first (handovers to the preferred replicas after the start, slower
    // on a loaded machine): the epochs stay put for a second.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut epochs: Vec<u64> = (0..2).map(|i| leader_epoch(&c, i)).collect();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now: Vec<u64> = (0..2).map(|i| leader_epoch(&c, i)).collect();
        if now == epochs || Instant::now() > deadline {
            epochs = now;
            break;
        }
        epochs = now;
    }
    let led = c.cluster_field(2, "cluster_vshards_led").unwrap();
    assert!(led > 0, "node 2 leads something");
    let k = c.key_led_by(2);
    let mut on2 = redis::Client::open(c.url(2))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = on2.set(&k, "before").unwrap();
    // Writes keep the key's group busy (its followers' election timers run; a quiet group
    // runs none) before, through and after the pause.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, k, url) = (stop.clone(), k.clone(), c.url(2));
        std::thread::spawn(move || {
            let mut w = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut last = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = w
                    .set(format!("{{{k}}}:w"), last + 1)
                    .expect("a write on node 2");
                last += 1;
            }
            last
        })
    };
    // The two others' view through the pause and a few seconds after it.
    let watch = {
        let urls = [c.url(0), c.url(1)];
        std::thread::spawn(move || {
            let (mut suspect, mut dead) = (0u64, 0u64);
            let mut conns: Vec<redis::Connection> = urls
                .iter()
                .map(|u| {
                    redis::Client::open(u.as_str())
                        .unwrap()
                        .get_connection()
                        .unwrap()
                })
                .collect();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(7) {
                for conn in &mut conns {
                    let info: String = redis::cmd("INFO").arg("cluster").query(conn).unwrap();
                    let field = |name: &str| -> u64 {
                        info.lines()
                            .find_map(|l| l.strip_prefix(name))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0)
                    };
                    suspect = suspect.max(field("swim_members_suspect:"));
                    dead = dead.max(field("swim_members_dead:"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (suspect, dead)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    c.pause(2, true);
    std::thread::sleep(Duration::from_secs(2));
    c.pause(2, false);
    let (suspect, dead) = watch.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.join().unwrap();
    assert!(last > 0);
    let v: u64 = on2.get(format!("{{{k}}}:w")).unwrap();
    assert_eq!(v, last, "the last acknowledged write");
    assert_eq!(dead, 0, "a node paused for 2 s was declared dead");
    assert!(suspect > 0, "SWIM never noticed the pause");
    assert_eq!(
        c.cluster_field(2, "cluster_vshards_led"),
        Some(led),
        "node 2 lost leaderships"
    );
    let now: Vec<u64> = (0..2).map(|i| leader_epoch(&c, i)).collect();
    assert_eq!(now, epochs, "a leader changed");
    // Node 2 still leads the key: it answers it itself.
    let v: String = on2.get(&k).unwrap();
    assert_eq!(v, "before");
    for i in 0..3 {
        assert_eq!(c.swim(i, "dead"), Some(0), "node {i}");
    }
}

#[test]
fn swim_declares_a_node_whose_links_drop_everything_dead_and_its_vshards_fail_over() {
    // The links stay open but carry nothing, and the connections' own silence backstop is set
    // far off: only SWIM can tell.
    let c = TestCluster::start(3, true, &["--cluster-node-timeout-ms", "600000"]);
    c.wait_swim_alive(Duration::from_secs(10));
    let k = c.key_led_by(0);
    let majority = redis::cluster::ClusterClient::builder(vec![c.url(1), c.url(2)])
        // Few retries per connection: a TRYAGAIN is retried on the same node with the same
        // slot map, and a map taken as the cut was noticed may still send the key to the
        // cut-off node, which stepped down and knows no leader (TRYAGAIN for good). A new
        // connection reads the slots again from the majority.
        .retries(3)
        .max_retry_wait(300)
        .build()
        .unwrap();
    let mut m = majority.get_connection().unwrap();
    let _: () = m.set(&k, "before").unwrap();
    let t = Instant::now();
    c.silence(0);
    for i in [1, 2] {
        let took = c.wait_swim(i, "dead", t, Duration::from_secs(15));
        eprintln!("node {i}: SWIM held the silent node dead {took:?} after the cut");
    }
    // The majority elects a leader for its vShards and takes writes. (A client that still
    // routes the key to the cut-off node is answered that the outcome is unknown or to try
    // again, as it knows no leader: a new connection reads the slots from the majority.)
    loop {
        let r = majority
            .get_connection()
            .and_then(|mut m| m.set::<_, _, ()>(&k, "after"));
        match r {
            Ok(()) => break,
            Err(_) if t.elapsed() < Duration::from_secs(30) => {}
            Err(e) => {
                // What each node holds for the key's vShard and where it routes the slot.
                let slot = shardline_shards::slot::key_slot(k.as_bytes());
                let vshard = slot as usize * 64 / 16384;
                for i in 0..3 {
                    let m = common::scrape(c.metrics[i]);
                    let held: Vec<_> = m
                        .iter()
                        .filter(|(s, _)| s.contains(&format!("vshard=\"{vshard}\"")))
                        .collect();
                    let slots: redis::RedisResult<redis::Value> = redis::Client::open(c.url(i))
                        .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(1)))
                        .and_then(|mut conn| redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn));
                    eprintln!("node {i}: {held:?}\n  CLUSTER SLOTS: {slots:?}");
                }
                panic!("no write after the cut: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "a write to a vShard it led succeeded {:?} after the cut",
        t.elapsed()
    );
    c.heal();
    c.wait_swim_alive(Duration::from_secs(15));
    c.wait_served(Duration::from_secs(30));
    let mut all = c.client().get_connection().unwrap();
    let v: String = all.get(&k).unwrap();
    assert_eq!(v, "after");
}

#[test]
fn a_node_shut_down_tells_the_others_it_left_and_is_alive_again_after_a_restart() {
    let mut c = TestCluster::start(3, false, &[]);
    c.wait_swim_alive(Duration::from_secs(10));
    let t = Instant::now();
    c.terminate(2);
    // `Left`, not a death after a suspicion (which takes 2.4 s at least).
    for i in [0, 1] {
        c.wait_swim(i, "left", t, Duration::from_secs(2));
        assert_eq!(c.swim(i, "dead"), Some(0));
    }
    eprintln!("both others held it gone {:?} after SIGTERM", t.elapsed());
    c.spawn(2);
    c.wait_served(Duration::from_secs(30));
    c.wait_swim_alive(Duration::from_secs(10));
}

#[test]
fn a_member_dead_past_the_configured_time_is_removed_and_its_replicas_made_again_under_writes() {
    let mut c = TestCluster::start(4, false, &["--cluster-node-down-after-ms", "2000"]);
    c.wait_swim_alive(Duration::from_secs(10));
    let w = Workload::start(&c, 2);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    c.kill(3);
    // Removed from the member table everywhere, every vShard back to three replicas on the
    // three left (64 each), no move pending.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let members: Vec<Option<usize>> = (0..3)
            .map(|i| {
                let conn = redis::Client::open(c.url(i)).ok()?;
                let mut conn = conn
                    .get_connection_with_timeout(Duration::from_secs(1))
                    .ok()?;
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
                Some(nodes.lines().count())
            })
            .collect();
        let hosted: Vec<Option<u64>> = (0..3)
            .map(|i| c.cluster_field(i, "cluster_vshard_replicas"))
            .collect();
        let pending: Vec<Option<u64>> = (0..3)
            .map(|i| c.cluster_field(i, "cluster_moves_pending"))
            .collect();
        if members.iter().all(|m| *m == Some(3))
            && hosted.iter().all(|h| *h == Some(64))
            && pending.iter().all(|p| *p == Some(0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not repaired: members {members:?}, replicas hosted {hosted:?}, moves pending {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("repaired {:?} after the kill", t.elapsed());
    let repairs: u64 = (0..3)
        .filter_map(|i| c.cluster_field(i, "cluster_repairs"))
        .sum();
    assert_eq!(repairs, 1, "one removal proposed");
    w.finish_and_check(&c);
    // It comes back: refused as removed, it stops and says why.
    c.spawn_logged(3, &[]);
    let (st, err) = c.wait_exit(3, Duration::from_secs(30));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("removed"), "{err}");
}

#[test]
fn a_dead_member_is_not_removed_when_too_few_nodes_would_be_left() {
    // Three nodes, three replicas: removing one would leave two for RF 3.
    let mut c = TestCluster::start(3, false, &["--cluster-node-down-after-ms", "1000"]);
    c.wait_swim_alive(Duration::from_secs(10));
    c.kill(2);
    std::thread::sleep(Duration::from_secs(6));
    for i in 0..2 {
        assert_eq!(c.swim(i, "dead"), Some(1), "node {i}");
        assert_eq!(c.cluster_field(i, "cluster_repairs"), Some(0), "node {i}");
        let mut conn = redis::Client::open(c.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
        assert_eq!(nodes.lines().count(), 3, "still a member: {nodes}");
    }
    // It comes back and is alive again; nothing was lost.
    c.spawn(2);
    c.wait_served(Duration::from_secs(30));
    c.wait_swim_alive(Duration::from_secs(10));
}
