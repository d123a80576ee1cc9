//! Redis Cluster clients against a node: until multi-node clusters exist a node is a one-node
//! cluster serving all 16384 slots, and cluster-aware clients work against it unchanged.

mod common;

use common::Server;
use redis::Commands;

#[test]
fn the_redis_crate_cluster_client_reads_back_keys_over_all_slots() {
    let s = Server::start("0-1", &[]);
    let client = redis::cluster::ClusterClient::new(vec![s.url()]).unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..3000 {
        let _: () = c.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..3000 {
        let v: i64 = c.get(format!("key:{i}")).unwrap();
        assert_eq!(v, i);
    }
    // Multi-key commands within one slot work through the cluster client too.
    let _: () = redis::cmd("MSET")
        .arg("{u1}a")
        .arg(1)
        .arg("{u1}b")
        .arg(2)
        .query(&mut c)
        .unwrap();
    let both: Vec<i64> = redis::cmd("MGET")
        .arg("{u1}a")
        .arg("{u1}b")
        .query(&mut c)
        .unwrap();
    assert_eq!(both, vec![1, 2]);
}

#[test]
fn cluster_commands_describe_a_one_node_cluster_in_redis_formats() {
    let s = Server::start("0-1", &[]);
    let mut c = s.client();
    // Golden slots, as redis-server computes them.
    for (key, slot) in [
        ("foo", 12182),
        ("bar", 5061),
        ("{user1000}.following", 3443),
        ("", 0),
    ] {
        let got: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .unwrap();
        assert_eq!(got, slot, "{key}");
    }
    let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap();
    assert_eq!(id.len(), 40);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).unwrap();
    assert!(
        nodes.starts_with(&format!("{id} 127.0.0.1:{}@", s.port)),
        "{nodes}"
    );
    assert!(
        nodes.contains("myself,master") && nodes.trim_end().ends_with("0-16383"),
        "{nodes}"
    );
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
    assert!(info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384"));
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
    let text = format!("{slots:?}");
    assert!(text.contains("int(16383)") && text.contains(&id), "{text}");
    // Keys by slot: foo and a hashtagged sibling share slot 12182.
    let _: () = c.set("foo", 1).unwrap();
    let _: () = c.set("{foo}bar", 2).unwrap();
    let _: () = c.set("bar", 3).unwrap();
    let n: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(12182)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let mut keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(12182)
        .arg(10)
        .query(&mut c)
        .unwrap();
    keys.sort();
    assert_eq!(keys, vec!["foo", "{foo}bar"]);
    let e: redis::RedisResult<i64> = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(16384)
        .query(&mut c);
    assert!(common::msg(e.unwrap_err()).contains("Invalid slot"));
    let _: () = redis::cmd("READONLY").query(&mut c).unwrap();
    let _: () = redis::cmd("READWRITE").query(&mut c).unwrap();
}

#[test]
fn redis_cli_in_cluster_mode_works() {
    if std::process::Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("redis-cli is not installed; skipped (CI installs redis-tools)");
        return;
    }
    let s = Server::start("0-1", &[]);
    let port = s.port.to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-c", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run(&["SET", "foo", "bar"]), "OK");
    assert_eq!(run(&["GET", "foo"]), "bar");
    assert_eq!(run(&["CLUSTER", "COUNTKEYSINSLOT", "12182"]), "1");
}
