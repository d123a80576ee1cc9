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

/// `cluster-routing proxy` forwards a command to its leader's client port under the
/// cluster's TLS (the leader counts a TLS connection in); a client in clear is served as ever
/// on the same port; a TLS handshake with a certificate of another CA is refused and counted.
#[test]
fn proxied_commands_travel_under_the_cluster_s_tls() {
    let c = TestCluster::start_tls(3, false, &["--cluster-routing", "proxy"]);
    let count = |i: usize, f: &str| c.cluster_field(i, f).unwrap();
    let before: Vec<u64> = (0..3)
        .map(|i| count(i, "cluster_tls_client_port_in"))
        .collect();
    let key = c.key_led_by(1);
    let mut on0 = redis::Client::open(c.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let value = vec![b'p'; 1024];
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .query(&mut on0)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut on0).unwrap();
    assert_eq!(got, value);
    assert!(
        count(1, "cluster_tls_client_port_in") > before[1],
        "node 1 took no TLS connection: {before:?}"
    );
    // A TLS client whose certificate another CA signed is refused at the handshake.
    let other = dev::ca().unwrap();
    let ca = read(&c, "ca.pem");
    let (cert, key_pem) = dev::node(&other.1, addr(c.ports[0])).unwrap();
    let forged = ClusterTls::from_pem(ca.as_bytes(), cert.as_bytes(), key_pem.as_bytes()).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", c.ports[1])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let refused_before = count(1, "cluster_tls_client_port_refused");
    let r = shardline_transport::tls::exchange_blocking(
        &forged,
        &member_name(addr(c.ports[1])),
        &mut s,
        b"PING\r\n",
        |r| {
            let mut b = [0u8; 7];
            r.read_exact(&mut b).map_err(|e| e.to_string())
        },
    );
    assert!(
        matches!(r, Err(shardline_transport::tls::ExchangeError::Refused(_))),
        "{r:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(1, "cluster_tls_client_port_refused") == refused_before {
        assert!(Instant::now() < deadline, "the refusal was not counted");
        std::thread::sleep(Duration::from_millis(20));
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
fn a_join_without_the_secret_or_tls_or_with_anothers_is_refused() {
    let mut c = TestCluster::start_tls(3, false, &[]);
    let other = c.dir.join("other.secret");
    std::fs::write(&other, "ab".repeat(32)).unwrap();
    let other = other.display().to_string();
    let certs = c.certs.clone().unwrap();
    let file = |dir: &std::path::Path, name: &str| dir.join(name).display().to_string();
    let ctl_certs =
        |dir: &std::path::Path, port: u16| common::ctl_certs(dir, &[format!("127.0.0.1:{port}")]);
    // The joiners' client and bus ports (`base + k`, `+ 1`), checked free now: the other
    // tests' nodes, run beside this one, take ports of the same range.
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let base = (0..9_000u32)
        .map(|i| 20_000 + ((std::process::id() + i * 101) % 9_000) as u16)
        .find(|&b| {
            [0, 10, 20, 30, 40]
                .iter()
                .all(|&k| free(b + k) && free(b + k + 1))
        })
        .expect("free ports for the joiners");
    // Another CA, and its certificate for the joiner's address.
    let stranger = c.dir.join("stranger-ca");
    ctl_certs(&stranger, base + 30);
    // A certificate of the cluster's CA for another address than the joiner's.
    ctl_certs(&certs, base + 99);
    let secret = file(&certs, "cluster.secret");
    let ca = file(&certs, "ca.pem");
    // The secret, the cluster's CA, and the certificate `dir` holds for `port`.
    let with_cert = |dir: &std::path::Path, port: u16| -> Vec<String> {
        vec![
            "--cluster-secret-file".into(),
            secret.clone(),
            "--cluster-tls-ca-file".into(),
            ca.clone(),
            "--cluster-tls-cert-file".into(),
            file(dir, &format!("127.0.0.1_{port}.pem")),
            "--cluster-tls-key-file".into(),
            file(dir, &format!("127.0.0.1_{port}.key")),
        ]
    };
    let cases: Vec<(u16, Vec<String>, &str)> = vec![
        (base, vec![], "needs a join proof"),
        (
            base + 10,
            vec!["--cluster-secret-file".into(), other.clone()],
            "another cluster's secret",
        ),
        // The secret, but no certificate: a join must come over TLS.
        (
            base + 20,
            vec!["--cluster-secret-file".into(), secret.clone()],
            "a join must come over TLS",
        ),
        // A certificate of another CA: the member refuses the handshake, at once.
        (
            base + 30,
            with_cert(&stranger, base + 30),
            "refused this node",
        ),
        // The cluster's CA, but a certificate naming another address.
        (
            base + 40,
            with_cert(&certs, base + 99),
            "does not name the address it joins as",
        ),
    ];
    for (port, flags, why) in cases {
        let dir = c.dir.join(format!("joiner-{port}"));
        let started = std::time::Instant::now();
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
        // Refused for good, not retried for the minute a join waits for a leader.
        assert!(started.elapsed() < Duration::from_secs(20), "{flags:?}");
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
