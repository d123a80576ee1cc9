//! ACL users across a cluster (issue 21): users set on one node hold on every node and
//! survive restarts; forwarded commands (`cluster-routing proxy`) are checked where the client
//! is, and under the cluster's TLS on the leader as the client's user.

mod common;

use common::acl::*;
use redis::{Connection, Value};
use std::time::Duration;

#[test]
fn users_set_on_one_node_hold_on_every_node_and_survive_restarts() {
    let mut c = common::cluster::TestCluster::start(3, false, &[]);
    let node = |c: &common::cluster::TestCluster, i: usize| {
        redis::Client::open(c.url(i))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    };
    let auth = |c: &common::cluster::TestCluster, i: usize, user: &str, pass: &str| {
        redis::Client::open(
            c.url(i)
                .replace("redis://", &format!("redis://{user}:{pass}@")),
        )
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
    };
    // Set on each node in turn (one of them leads the metadata, the others forward).
    for i in 0..3 {
        let mut n = node(&c, i);
        let name = format!("u{i}");
        ok_retrying(
            &mut n,
            &[
                "ACL",
                "SETUSER",
                &name,
                "on",
                &format!(">pw{i}"),
                "~*",
                "+@read",
            ],
        );
    }
    // Every node knows every user, with the same rules.
    let wait_for = |c: &common::cluster::TestCluster, want: &[&str]| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let lists: Vec<Vec<Vec<u8>>> = (0..3)
                .map(|i| {
                    redis::cmd("ACL")
                        .arg("LIST")
                        .query(&mut node(c, i))
                        .unwrap()
                })
                .collect();
            let names = |l: &Vec<Vec<u8>>| -> Vec<String> {
                l.iter()
                    .map(|line| {
                        String::from_utf8_lossy(line)
                            .split(' ')
                            .nth(1)
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            };
            if lists.iter().all(|l| names(l) == want) && lists.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ACL LIST on each node: {lists:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&c, &["default", "u0", "u1", "u2"]);
    for i in 0..3 {
        let mut u = auth(&c, (i + 1) % 3, &format!("u{i}"), &format!("pw{i}")).unwrap();
        ok(&mut u, &["DBSIZE"]);
        assert!(err(&mut u, &["SET", "k", "v"]).starts_with("NOPERM"));
    }
    // Deleted on one node: gone everywhere.
    let mut n = node(&c, 2);
    assert_eq!(q(&mut n, &["ACL", "DELUSER", "u1"]).unwrap(), Value::Int(1));
    wait_for(&c, &["default", "u0", "u2"]);
    // A refused change answers at once and changes nothing anywhere.
    assert!(err(&mut n, &["ACL", "SETUSER", "u0", "+nocmd"]).contains("Unknown command"));
    // Every node restarted: the users are still the cluster's.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_served(Duration::from_secs(30));
    wait_for(&c, &["default", "u0", "u2"]);
    for i in 0..3 {
        assert!(auth(&c, i, "u2", "pw2").is_ok(), "node {i}");
        assert!(auth(&c, i, "u1", "pw1").is_err(), "node {i}");
    }
}

/// `cluster-routing proxy`: a node forwards a command to its key's leader after checking it
/// against the client's user; a restricted user's script is not forwarded (the leader would
/// not know whose it is).
#[test]
fn forwarded_commands_are_checked_where_the_client_is() {
    let (c, mut p) = proxied_cluster_with_user(false);
    // A key of the user's pattern that node 1 leads (a hash tag of one it leads).
    let key = format!("p:{{{}}}", c.key_led_by(1));
    ok(&mut p, &["SET", &key, "v"]);
    assert_eq!(text(q(&mut p, &["GET", &key]).unwrap()), "v");
    let other = c.key_led_by(1);
    assert!(err(&mut p, &["SET", &other, "v"]).starts_with("NOPERM"));
    let e = err(
        &mut p,
        &["EVAL", "return redis.call('get', KEYS[1])", "1", &key],
    );
    assert!(e.contains("NOPERM") && e.contains("forwarded"), "{e}");
}

/// Under the cluster's TLS a forwarding node tells the leader whose commands it forwards
/// (CLUSTER ACLUSER, which only the cluster's nodes may send): a restricted user's script
/// runs on the leader with the user's permissions.
#[test]
fn under_the_clusters_tls_forwarded_scripts_run_as_their_user_on_the_leader() {
    let (c, mut p) = proxied_cluster_with_user(true);
    let mut n0 = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    assert!(err(&mut n0, &["CLUSTER", "ACLUSER", "default"]).contains("cluster's own nodes"));
    let key = format!("p:{{{}}}", c.key_led_by(1));
    let other = format!("o:{{{}}}", c.key_led_by(1));
    ok(&mut p, &["SET", &key, "v"]);
    let v = q(
        &mut p,
        &["EVAL", "return redis.call('get', KEYS[1])", "1", &key],
    )
    .unwrap();
    assert_eq!(text(v), "v");
    // The leader refuses what the user may not, inside a script this node forwarded (its
    // declared key is allowed): a key of the same slot outside the user's pattern, FLUSHALL.
    let e = err(
        &mut p,
        &[
            "EVAL",
            "return redis.call('set', ARGV[1], 'x')",
            "1",
            &key,
            &other,
        ],
    );
    assert!(e.contains("NOPERM No permissions to access a key"), "{e}");
    let e = err(
        &mut p,
        &["EVAL", "return redis.call('flushall')", "1", &key],
    );
    assert!(e.contains("NOPERM") && e.contains("flushall"), "{e}");
    let mut n1 = redis::Client::open(c.url(1))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(q(&mut n1, &["EXISTS", &other]).unwrap(), Value::Int(0));
    let entries = log(&mut n1);
    assert!(
        entries
            .iter()
            .any(|e| e["context"] == "lua" && e["username"] == "p"),
        "{entries:?}"
    );
}

/// A 3-node cluster (its links under TLS if `tls`) forwarding commands (`cluster-routing
/// proxy`), with user `p` (`~p:* +@all -flushall`) known on nodes 0 and 1, and a connection to
/// node 0 as `p`.
fn proxied_cluster_with_user(tls: bool) -> (common::cluster::TestCluster, Connection) {
    let flags = ["--cluster-routing", "proxy"];
    let c = if tls {
        common::cluster::TestCluster::start_tls(3, false, &flags)
    } else {
        common::cluster::TestCluster::start(3, false, &flags)
    };
    let mut n0 = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    ok_retrying(
        &mut n0,
        &[
            "ACL",
            "SETUSER",
            "p",
            "on",
            ">ppw",
            "~p:*",
            "+@all",
            "-flushall",
        ],
    );
    // Users are set through the metadata group: each node has it once it applied it.
    let as_p = |i: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match redis::Client::open(c.url(i).replace("redis://", "redis://p:ppw@"))
                .unwrap()
                .get_connection()
            {
                Ok(p) => return p,
                Err(e) => assert!(std::time::Instant::now() < deadline, "node {i}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    as_p(1);
    let p = as_p(0);
    (c, p)
}
