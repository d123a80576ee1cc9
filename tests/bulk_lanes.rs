//! Snapshot copies on bulk lanes between real processes (issue 19): copies whose connections
//! a fault-injecting proxy cuts mid-way resume and install whole; snapshots stay on disk, not
//! in memory.

mod common;

use common::cluster::{TestCluster, set_all};
use std::time::{Duration, Instant};

/// A node that comes back behind compacted logs gets its vShards' snapshots on bulk lanes;
/// its links are cut in the middle of the copies (throttled so they take a while): the copies
/// resume on new connections and node 2 ends with every value, no chunk refused.
#[test]
fn snapshot_copies_cut_mid_way_resume_and_install_whole() {
    let mut c = TestCluster::start(
        3,
        true,
        &[
            "--cluster-routing",
            "proxy",
            "--raft-log-memory-bytes",
            "1048576",
            "--bulk-chunk-bytes",
            "16384",
            "--bulk-max-bytes-per-sec",
            "1500000",
        ],
    );
    c.kill(2);
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let value = |i: usize| format!("{i}-{}", "x".repeat(1000));
    set_all(&mut conn, 0..8000, |i| format!("cut:{i}"), value);
    drop(conn);
    c.spawn(2);
    let bulk = |c: &TestCluster, name: &str| c.cluster_field(2, name).unwrap_or(0);
    // Once some copies are under way, cut the links that carry them (the leaders' lanes to
    // node 2, with their bus connections), then heal.
    let deadline = Instant::now() + Duration::from_secs(30);
    while bulk(&c, "bulk_bytes_in") < 200_000 {
        assert!(Instant::now() < deadline, "no copy started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let under_way = bulk(&c, "bulk_sessions_in");
    for i in 0..2 {
        c.links[i][2].as_ref().unwrap().partition();
    }
    std::thread::sleep(Duration::from_millis(300));
    c.heal();
    c.wait_served(Duration::from_secs(60));
    c.wait_replica_holds(
        2,
        (0..8000).step_by(7),
        |i| format!("cut:{i}"),
        |i, v| v == value(i),
        Duration::from_secs(60),
    );
    assert!(
        under_way > 0,
        "copies were under way when the links were cut"
    );
    assert!(bulk(&c, "bulk_copies_in") > 0);
    assert_eq!(bulk(&c, "bulk_bad_chunks"), 0);
    // The leaders' snapshots were on disk only: their copies streamed from the files.
    let from_files: u64 = (0..2)
        .map(|i| c.cluster_field(i, "bulk_copies_from_files").unwrap_or(0))
        .sum();
    assert!(from_files > 0, "no copy streamed from a snapshot file");
    // And on the target the vShards' copies were decoded as they came, none held whole
    // (copies offered in a term that ended before they arrived are not taken).
    let streamed_in = bulk(&c, "bulk_copies_streamed_in");
    assert!(
        streamed_in > 0 && streamed_in <= bulk(&c, "bulk_copies_in"),
        "{streamed_in} copies decoded as they came"
    );
}

/// A replicated node keeps no second copy of its data in memory: its snapshots' blobs are in
/// their files once written (read back only while a copy is sent), so what replication holds
/// (`mem_not_counted_for_evict`, the logs and buffers) stays far below the data. Before
/// session 25 every replica kept its latest snapshot's blob: about the data once more. A node
/// then brought back behind compacted logs still gets every value (its copies read from
/// the leaders' files).
#[test]
fn replicas_keep_their_snapshots_on_disk_not_in_memory() {
    let mut c = TestCluster::start(
        3,
        false,
        &[
            "--cluster-routing",
            "proxy",
            "--maxmemory",
            "4gb",
            "--raft-log-memory-bytes",
            "1048576",
            "--vshards",
            "16",
        ],
    );
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let value = |i: usize| format!("{i}-{}", "m".repeat(1000));
    let keys = 24_000;
    set_all(&mut conn, 0..keys, |i| format!("mem:{i}"), value);
    let held = |c: &TestCluster, i: usize| -> u64 {
        let info = c.info_section(i, "memory").unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("mem_not_counted_for_evict:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    // 24 MB of values on every node; the logs hold at most about 1 MiB each.
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while held(&c, i) > 8_000_000 {
            assert!(
                Instant::now() < deadline,
                "node {i} holds {} bytes for replication",
                held(&c, i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    c.kill(2);
    set_all(&mut conn, 0..keys, |i| format!("mem:{i}"), |i| value(i + 1));
    c.spawn(2);
    c.wait_served(Duration::from_secs(60));
    c.wait_replica_holds(
        2,
        (0..keys).step_by(11),
        |i| format!("mem:{i}"),
        |i, v| v == value(i + 1),
        Duration::from_secs(60),
    );
    assert!(c.cluster_field(2, "bulk_copies_in").unwrap() > 0);
}

/// Nodes that offer QUIC (`--cluster-bulk-transports quic,tcp`) carry their copies' bytes on
/// it (quinn-proto on the shard threads, over UDP sockets of the lanes' own): a node back
/// behind compacted logs gets every value, its lanes having run on QUIC, no chunk refused.
#[test]
fn copies_travel_on_quic_between_nodes_that_offer_it() {
    let mut c = TestCluster::start(
        3,
        true,
        &[
            "--cluster-routing",
            "proxy",
            "--raft-log-memory-bytes",
            "1048576",
            "--cluster-bulk-transports",
            "quic,tcp",
        ],
    );
    c.kill(2);
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let value = |i: usize| format!("{i}-{}", "q".repeat(1000));
    set_all(&mut conn, 0..6000, |i| format!("quic:{i}"), value);
    drop(conn);
    c.spawn(2);
    c.wait_served(Duration::from_secs(60));
    c.wait_replica_holds(
        2,
        (0..6000).step_by(7),
        |i| format!("quic:{i}"),
        |i, v| v == value(i),
        Duration::from_secs(60),
    );
    let bulk = |c: &TestCluster, name: &str| c.cluster_field(2, name).unwrap_or(0);
    assert!(bulk(&c, "bulk_copies_in") > 0);
    assert!(bulk(&c, "bulk_quic_lanes") > 0, "no lane ran on QUIC");
    assert_eq!(bulk(&c, "bulk_bad_chunks"), 0);
}

/// A snapshot file damaged on disk after it was written (a flipped byte in the middle of
/// every vShard's file on both live nodes) never installs anywhere, and does not keep a
/// follower behind for good: the copy read from it fails its checksum, the leader writes
/// the file anew from the vShard (the vShards are idle, so at the snapshot's own index),
/// and the next offer's copy installs. The node that was down ends with every value.
#[test]
fn a_damaged_snapshot_file_is_written_anew_and_the_follower_catches_up() {
    let mut c = TestCluster::start(
        3,
        true,
        &[
            "--cluster-routing",
            "proxy",
            "--raft-log-memory-bytes",
            "1048576",
        ],
    );
    c.kill(2);
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let value = |i: usize| format!("{i}-{}", "d".repeat(1000));
    set_all(&mut conn, 0..6000, |i| format!("rot:{i}"), value);
    drop(conn);
    // Let the last compactions' files reach the disk, then damage every one.
    std::thread::sleep(Duration::from_millis(1500));
    let mut damaged = 0;
    for i in 0..2 {
        for shard in std::fs::read_dir(c.data_dir(i).join("snap")).unwrap() {
            for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                let path = f.unwrap().path();
                if path.extension().is_none_or(|e| e != "snap") {
                    continue;
                }
                let mut bytes = std::fs::read(&path).unwrap();
                if bytes.len() < 64 << 10 {
                    continue; // (the metadata's, and vShards with little in them)
                }
                let at = bytes.len() / 2;
                bytes[at] ^= 0x40;
                std::fs::write(&path, &bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "no snapshot file to damage");
    c.spawn(2);
    c.wait_served(Duration::from_secs(60));
    c.wait_replica_holds(
        2,
        (0..6000).step_by(7),
        |i| format!("rot:{i}"),
        |i, v| v == value(i),
        Duration::from_secs(90),
    );
    let rewritten: u64 = (0..2)
        .map(|i| c.cluster_field(i, "bulk_snapshots_rewritten").unwrap_or(0))
        .sum();
    assert!(rewritten > 0, "no damaged file was written anew");
}
