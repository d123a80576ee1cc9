//! Authenticated cluster channels (issue 20, step 5), end to end with real processes: a cluster
//! whose links are mutual TLS under a CA `shardline ctl certs` made replicates, restarts and
//! takes a joining node; a peer with another CA's certificate, with a certificate that names
//! another member, or in clear is refused; SWIM datagrams that are forged, of another secret
//! or replayed are refused and counted; a join without the secret's proof is refused.

mod common;

use common::cluster::TestCluster;
use shardline_transport::frame::{Hello, WIRE_MAX, WIRE_MIN};
use shardline_transport::link::{Answer, tcp};
use shardline_transport::seal::{Sealer, from_hex};
use shardline_transport::tls::{ClusterTls, dev, member_name};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn hello(cluster_id: [u8; 16], member: u64) -> Hello {
    let mut node_id = [0u8; 20];
    node_id[..8].copy_from_slice(&member.to_le_bytes());
    node_id[8..10].copy_from_slice(&1u16.to_le_bytes());
    Hello {
        wire_min: WIRE_MIN,
        wire_max: WIRE_MAX,
        cluster_id,
        node_id,
        shard: 0,
    }
}

fn read(c: &TestCluster, name: &str) -> String {
    std::fs::read_to_string(c.certs.as_ref().unwrap().join(name)).unwrap()
}

/// TLS for a peer at `port` whose certificate the CA with key `ca_key` signed, trusting the
/// cluster's CA (`ca`).
fn peer_tls(ca: &str, ca_key: &str, port: u16) -> ClusterTls {
    let (cert, key) = dev::node(ca_key, addr(port)).unwrap();
    ClusterTls::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
}

fn info_text(c: &TestCluster, i: usize, field: &str) -> String {
    let info = c.info_section(i, "cluster").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn set_get(c: &TestCluster, keys: std::ops::Range<usize>, value: &[u8]) {
    let mut conn = c.client().get_connection().unwrap();
    for k in keys.clone() {
        let _: () = common::cluster::retry_tryagain(|| {
            redis::cmd("SET")
                .arg(format!("k{k}"))
                .arg(value)
                .query(&mut conn)
        });
    }
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(format!("k{k}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(v, value, "k{k}");
    }
}

#[test]
fn a_tls_cluster_replicates_restarts_and_takes_a_join() {
    let mut c = TestCluster::start_tls(3, false, &[]);
    for i in 0..3 {
        assert_eq!(info_text(&c, i, "cluster_links"), "mutual-tls", "node {i}");
    }
    let value = vec![b'v'; 1024];
    set_get(&c, 0..300, &value);
    // A write is replicated over the TLS bus: each key is on a majority of the three.
    c.restart_all();
    set_get(&c, 300..400, &value);
    let mut conn = c.client().get_connection().unwrap();
    for k in 0..300 {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(format!("k{k}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(v, value, "k{k} after every node restarted");
    }
    // A fourth node joins with the secret's proof and its own certificate, and SWIM (sealed)
    // holds it alive everywhere.
    let j = c.join(0, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..4).any(|i| c.swim(i, "alive") != Some(3)) {
        assert!(
            Instant::now() < deadline,
            "the joined node is not alive on every member: {:?}",
            (0..4).map(|i| c.swim(i, "alive")).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(info_text(&c, j, "cluster_links"), "mutual-tls");
    for i in 0..4 {
        assert_eq!(
            c.cluster_field(i, "swim_unauthenticated"),
            Some(0),
            "node {i}"
        );
    }
}

#[test]
fn forged_peers_on_the_bus_are_refused_with_the_reason() {
    let c = TestCluster::start_tls(3, false, &[]);
    let (ca, ca_key) = (read(&c, "ca.pem"), read(&c, "ca.key"));
    let bus: SocketAddr = c.bus_addr(0).parse().unwrap();
    let node0 = member_name(addr(c.ports[0]));
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async {
        // A certificate of the cluster's CA for an address that is no member: it learns the
        // cluster id from a refusal, then claims to be member 2 and is refused for its name.
        let stranger = peer_tls(&ca, &ca_key, 1);
        let (_, answer) = tcp::dial(bus, &hello([0; 16], 2), Some((&stranger, &node0)))
            .await
            .unwrap();
        let Answer::Refused(r) = answer else {
            panic!("accepted: {answer:?}")
        };
        assert!(r.why.contains("another cluster"), "{}", r.why);
        let (_, answer) = tcp::dial(bus, &hello(r.cluster_id, 2), Some((&stranger, &node0)))
            .await
            .unwrap();
        let Answer::Refused(r) = answer else {
            panic!("an impostor of member 2 was accepted: {answer:?}")
        };
        assert!(r.why.contains("does not name member 2"), "{}", r.why);
        let cluster_id = r.cluster_id;
        // The same claim with member 2's real name is accepted: the name is what refused it.
        let member2 = peer_tls(&ca, &ca_key, c.ports[1]);
        let (_, answer) = tcp::dial(bus, &hello(cluster_id, 2), Some((&member2, &node0)))
            .await
            .unwrap();
        assert!(matches!(answer, Answer::Accepted(_)), "{answer:?}");
        // Another CA: the handshake fails, no hello is read.
        let other = dev::ca().unwrap();
        let forged = peer_tls(&ca, &other.1, c.ports[1]);
        let e = tcp::dial(bus, &hello(cluster_id, 2), Some((&forged, &node0)))
            .await
            .err()
            .expect("a certificate of another CA was accepted");
        assert!(
            e.to_string().contains("certificate") || e.to_string().contains("alert"),
            "{e}"
        );
        // In clear: no answer comes back.
        assert!(tcp::dial(bus, &hello(cluster_id, 2), None).await.is_err());
        // The node dialed is not who we expected: the dialer refuses it.
        let e = tcp::dial(
            bus,
            &hello(cluster_id, 2),
            Some((&member2, &member_name(addr(1)))),
        )
        .await
        .err()
        .expect("a node under another name was trusted");
        assert!(e.to_string().contains("certificate"), "{e}");
    });
    set_get(&c, 0..50, b"still serving");
}

#[test]
fn forged_other_cluster_and_replayed_swim_datagrams_are_refused() {
    let c = TestCluster::start_tls(3, false, &[]);
    let secret = from_hex(read(&c, "cluster.secret").trim()).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = c.bus_addr(0).parse().unwrap();
    let count = |name: &str| c.cluster_field(0, name).unwrap_or(0);
    let wait_for = |name: &str, want: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(name) < want {
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {}",
                count(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Unsealed, and sealed under another secret.
    let before = count("swim_unauthenticated");
    sock.send_to(b"not a sealed packet at all", to).unwrap();
    let mut other = Vec::new();
    Sealer::new(&[9; 32], 2, 1).seal(b"x", &mut other);
    sock.send_to(&other, to).unwrap();
    wait_for("swim_unauthenticated", before + 2);
    // The same sealed datagram twice (as member 2 in a run of its own): the second is a replay.
    let before = count("swim_replayed");
    let mut p = Vec::new();
    Sealer::new(&secret, 2, u64::MAX).seal(b"junk", &mut p);
    sock.send_to(&p, to).unwrap();
    sock.send_to(&p, to).unwrap();
    wait_for("swim_replayed", before + 1);
    // Members stay alive: real members' datagrams still open.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.swim(0, "alive"), Some(2));
    assert_eq!(c.swim(0, "dead"), Some(0));
}

#[test]
fn a_join_without_the_secret_or_with_another_is_refused() {
    let mut c = TestCluster::start_tls(3, false, &[]);
    let other = c.dir.join("other.secret");
    std::fs::write(&other, "ab".repeat(32)).unwrap();
    let other = other.display().to_string();
    for (flags, why) in [
        (vec![], "needs a join proof"),
        (
            vec!["--cluster-secret-file", other.as_str()],
            "another cluster's secret",
        ),
    ] {
        let port = 20_000 + (std::process::id() % 9_000) as u16 + flags.len() as u16 * 7;
        let dir = c.dir.join(format!("joiner-{port}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
            .args(["--port", &port.to_string(), "--data-dir"])
            .arg(&dir)
            .args(["--cluster-join", &format!("127.0.0.1:{}", c.ports[0])])
            .args(["--cluster-bus-addr", &format!("127.0.0.1:{}", port + 1)])
            .args(["--vshards", "64", "--cores", "0"])
            .args(&flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "joined with {flags:?}");
        assert!(err.contains(why), "{flags:?}: {err}");
    }
    // Nothing was added.
    c.assert_running();
    assert_eq!(c.swim(0, "alive"), Some(2));
    let mut conn = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
}
