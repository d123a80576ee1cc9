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

/// Serves one connection on a monoio runtime in a thread as the client port does: the first
/// bytes read, then a TLS handshake taking them ([`TlsStream::accept`]), the peer's
/// certificate read, a line answered. The server's result: the peer's certificate named
/// `expect`, and what it read.
/// What `serve_once`'s server ends with.
type Served = std::thread::JoinHandle<Result<(bool, Vec<u8>), String>>;

fn serve_once(server: ClusterTls, expect: String) -> (SocketAddr, Served) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            use monoio::io::AsyncReadRent;
            let ls = monoio::net::TcpListener::from_std(listener).unwrap();
            let (mut s, _) = ls.accept().await.unwrap();
            let (res, first) = s.read(Vec::with_capacity(4096)).await;
            res.map_err(|e| e.to_string())?;
            assert_eq!(first[0], 0x16, "a TLS record first");
            let mut t = TlsStream::accept(s, server.server().unwrap(), first)
                .await
                .map_err(|e| e.to_string())?;
            let named = t.peer_cert().is_some_and(|c| names(&c, &expect));
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n") {
                let n = t
                    .read_plain(&mut got, 1024)
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed".to_string());
                }
            }
            t.write_plain(b"+PONG\r\n")
                .await
                .map_err(|e| e.to_string())?;
            Ok((named, got))
        })
    });
    (at, h)
}

fn ask(client: &ClusterTls, name: &str, at: SocketAddr) -> Result<Vec<u8>, ExchangeError> {
    let mut s = std::net::TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    exchange_blocking(client, name, &mut s, b"PING\r\n", |r| {
        let mut buf = [0u8; 7];
        r.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf.to_vec())
    })
}

#[test]
fn a_blocking_client_and_a_stream_server_exchange_under_one_ca() {
    let ca = dev::ca().unwrap();
    let (joiner, member) = (node(&ca, 7004), node(&ca, 7001));
    let (at, h) = serve_once(member, member_name(addr(7004)));
    let answer = ask(&joiner, &member_name(addr(7001)), at).unwrap();
    assert_eq!(answer, b"+PONG\r\n");
    let (named, got) = h.join().unwrap().unwrap();
    assert!(
        named,
        "the server read the client's certificate and its name"
    );
    assert_eq!(got, b"PING\r\n");
}

#[test]
fn a_blocking_client_of_another_ca_is_refused_for_good() {
    let ca = dev::ca().unwrap();
    let other = dev::ca().unwrap();
    // The member refuses a client certificate of another CA (that trusts the member's).
    let (cert, key) = dev::node(&other.1, addr(7004)).unwrap();
    let forged = ClusterTls::from_pem(ca.0.as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap();
    let (at, h) = serve_once(node(&ca, 7001), member_name(addr(7004)));
    let e = ask(&forged, &member_name(addr(7001)), at).unwrap_err();
    assert!(matches!(e, ExchangeError::Refused(_)), "{e:?}");
    assert!(h.join().unwrap().unwrap_err().contains("certificate"));
    // A member under another name than the one dialed: the client refuses it.
    let (at, h) = serve_once(node(&ca, 7002), member_name(addr(7004)));
    let e = ask(&node(&ca, 7004), &member_name(addr(7001)), at).unwrap_err();
    assert!(matches!(e, ExchangeError::Refused(_)), "{e:?}");
    let _ = h.join();
}
