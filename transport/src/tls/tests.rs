use super::*;
use std::cell::RefCell;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A CA, and node `port`'s TLS under it.
fn node(ca: &(String, String), port: u16) -> ClusterTls {
    let (cert, key) = dev::node(&ca.1, addr(port)).unwrap();
    ClusterTls::from_pem(ca.0.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
}

#[test]
fn member_names_are_dns_names_apart_by_port_and_address() {
    assert_eq!(member_name(addr(7001)), "n7001.127-0-0-1.shardline");
    assert_eq!(
        member_name("[::1]:7001".parse().unwrap()),
        "n7001.0-0-0-0-0-0-0-1.shardline"
    );
    assert!(ServerName::try_from(member_name("[fe80::1]:1".parse().unwrap())).is_ok());
}

#[test]
fn a_node_certificate_names_its_member_only() {
    let ca = dev::ca().unwrap();
    let (cert, _) = dev::node(&ca.1, addr(7001)).unwrap();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert!(names(&der, &member_name(addr(7001))));
    assert!(!names(&der, &member_name(addr(7002))));
    assert!(!names(&der, "not a name"));
}

#[test]
fn bad_files_are_refused_with_what_is_wrong() {
    let ca = dev::ca().unwrap();
    let (cert, key) = dev::node(&ca.1, addr(1)).unwrap();
    let (_, other_key) = dev::node(&ca.1, addr(2)).unwrap();
    let err = |ca: &str, cert: &str, key: &str| {
        ClusterTls::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap_err()
    };
    assert!(err("", &cert, &key).contains("CA file holds no certificate"));
    assert!(err(&ca.0, "", &key).contains("holds no certificate"));
    assert!(err(&ca.0, &cert, "junk").contains("not a PEM private key"));
    assert!(err(&ca.0, &cert, &other_key).contains("do not go together"));
    let dir = std::env::temp_dir().join(format!("shardline-tls-{}", std::process::id()));
    let e =
        ClusterTls::load(&dir.join("ca.pem"), &dir.join("n.pem"), &dir.join("n.key")).unwrap_err();
    assert!(e.contains("ca.pem"), "{e}");
}

/// Runs a client and a server over a loopback socket pair on one monoio runtime; what each
/// handshake ended with, and (when both succeed) the bytes the server read.
fn pair(
    client: &ClusterTls,
    name: &str,
    server: &ClusterTls,
    payload: Vec<u8>,
) -> (std::io::Result<()>, std::io::Result<()>, Vec<u8>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let cc = RefCell::new(client.client(name).unwrap());
    let sc = RefCell::new(rustls::Connection::from(server.server().unwrap()));
    rt.block_on(async move {
        let ls = monoio::net::TcpListener::from_std(listener).unwrap();
        let dial = async {
            let mut s = monoio::net::TcpStream::connect(at).await.unwrap();
            let r = handshake(&cc, &mut s, &mut Half::default()).await;
            if r.is_ok() {
                let mut half = Half::default();
                send(&cc, &mut half, &mut s, &payload).await.unwrap();
            }
            (r, s)
        };
        let accept = async {
            let (mut s, _) = ls.accept().await.unwrap();
            let mut half = Half::default();
            let r = handshake(&sc, &mut s, &mut half).await;
            let mut got = Vec::new();
            if r.is_ok() {
                while got.len() < payload.len() {
                    let n = read(&sc, &mut half, &mut s, &mut got, 1 << 16)
                        .await
                        .unwrap();
                    assert!(n > 0, "closed after {} bytes", got.len());
                }
            }
            (r, got)
        };
        let ((rc, _s), (rs, got)) = monoio::join!(dial, accept);
        (rc, rs, got)
    })
}

#[test]
fn members_of_one_ca_talk_and_the_bytes_arrive_whole() {
    let ca = dev::ca().unwrap();
    let (a, b) = (node(&ca, 7001), node(&ca, 7002));
    // Bigger than a record and than the read chunk.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let (rc, rs, got) = pair(&a, &member_name(addr(7002)), &b, payload.clone());
    rc.unwrap();
    rs.unwrap();
    assert!(got == payload, "the bytes differ");
}

#[test]
fn a_peer_of_another_ca_or_under_another_name_is_refused() {
    let ca = dev::ca().unwrap();
    let other = dev::ca().unwrap();
    let (a, b, stranger) = (node(&ca, 7001), node(&ca, 7002), node(&other, 7003));
    // The server is not who the dialer dialed.
    let (rc, _, _) = pair(&a, &member_name(addr(7003)), &b, vec![1]);
    assert!(rc.unwrap_err().to_string().contains("certificate"));
    // A server of another CA.
    let (rc, _, _) = pair(&a, &member_name(addr(7003)), &stranger, vec![1]);
    assert!(rc.unwrap_err().to_string().contains("certificate"));
    // A client with a certificate of another CA (that trusts the server's): the server
    // refuses it.
    let (cert, key) = dev::node(&other.1, addr(7001)).unwrap();
    let forged = ClusterTls::from_pem(ca.0.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap();
    let (_, rs, _) = pair(&forged, &member_name(addr(7002)), &b, vec![1]);
    let e = rs.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
}
