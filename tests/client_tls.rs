//! TLS for clients (issue 21, step 1): `tls-port` with Redis's parameters, served on the shard
//! threads beside the client port: redis-cli `--tls`, redis-py (`ssl=True`) and the `redis`
//! crate (`rediss://`, rustls) with client certificates; a client without one, or with one of
//! another CA, refused as `tls-auth-clients` says; the certificate reloaded by CONFIG SET.

mod common;

use common::cluster::TestCluster;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A development CA and certificates (their IP in them: good as a server's for 127.0.0.1,
/// and as a client's).
use common::ctl_certs as certs;

struct Tls {
    dir: PathBuf,
    port: u16,
    /// The client's certificate and key (another address's, signed by the same CA).
    client: (PathBuf, PathBuf),
}

impl Tls {
    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls-port".into(),
            self.port.to_string(),
            "--tls-cert-file".into(),
            self.file(&format!("127.0.0.1_{}.pem", self.port)),
            "--tls-key-file".into(),
            self.file(&format!("127.0.0.1_{}.key", self.port)),
            "--tls-ca-cert-file".into(),
            self.file("ca.pem"),
        ]
    }
}

fn setup(name: &str) -> Tls {
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!(
        "shardline-client-tls-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    certs(&dir, &[format!("127.0.0.1:{port}"), "127.0.0.1:1".into()]);
    let client = (dir.join("127.0.0.1_1.pem"), dir.join("127.0.0.1_1.key"));
    Tls { dir, port, client }
}

/// Runs a redis-py script (Debian's python3-redis), which prints `ok` when its asserts held.
fn redis_py(script: &str) {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .output()
        .expect("/usr/bin/python3 runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok"),
        "redis-py over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start(t: &Tls, more: &[&str]) -> TestCluster {
    let mut flags: Vec<String> = t.server_flags();
    flags.extend(more.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestCluster::start(1, false, &flags)
}

/// A `redis` crate client over TLS (rustls) to the TLS port, trusting the CA in `ca`, with
/// the client certificate `client` if given.
fn rust_client(port: u16, ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> redis::Client {
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        redis::TlsCertificates {
            client_tls: client.map(|(c, k)| redis::ClientTlsConfig {
                client_cert: std::fs::read(c).unwrap(),
                client_key: std::fs::read(k).unwrap(),
            }),
            root_cert: Some(std::fs::read(ca).unwrap()),
        },
    )
    .unwrap()
}

#[test]
fn redis_cli_redis_py_and_the_redis_crate_talk_tls_with_client_certificates() {
    let t = setup("clients");
    let c = start(&t, &[]);
    let (cert, key) = (
        t.client.0.display().to_string(),
        t.client.1.display().to_string(),
    );
    // redis-cli --tls with the client's certificate.
    let cli = |args: &[&str], with_cert: bool| {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "--cacert", &t.file("ca.pem")]);
        if with_cert {
            cmd.args(["--cert", &cert, "--key", &key]);
        }
        cmd.args(["-h", "127.0.0.1", "-p", &t.port.to_string()]);
        cmd.args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools) runs")
    };
    let out = cli(&["SET", "cli", "over-tls"], true);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK", "{out:?}");
    let out = cli(&["GET", "cli"], true);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-tls");
    // Without a certificate: refused (tls-auth-clients yes, the default).
    let out = cli(&["PING"], false);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "PONG",
        "{out:?}"
    );
    // redis-py, ssl=True, 1 KB values, a pipeline of 50.
    let script = format!(
        r#"
import redis
r = redis.Redis(host="127.0.0.1", port={port}, ssl=True, ssl_ca_certs="{ca}",
                ssl_certfile="{cert}", ssl_keyfile="{key}")
v = b"x" * 1024
p = r.pipeline(transaction=False)
for i in range(50):
    p.set("py%d" % i, v)
assert all(p.execute())
assert r.get("py49") == v
assert r.get("cli") == b"over-tls"
print("ok")
"#,
        port = t.port,
        ca = t.file("ca.pem"),
    );
    redis_py(&script);
    // The redis crate with rustls.
    let client = rust_client(t.port, &t.dir.join("ca.pem"), Some(&t.client));
    let mut conn = client.get_connection().unwrap();
    let v: Vec<u8> = redis::cmd("GET").arg("py7").query(&mut conn).unwrap();
    assert_eq!(v, vec![b'x'; 1024]);
    // A value larger than a TLS record, both ways.
    let big = vec![b'b'; 300_000];
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut conn)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut conn).unwrap();
    assert!(got == big, "the 300 KB value came back whole");
    // The client port in clear serves as before, the same data.
    let mut plain = c.client().get_connection().unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut plain).unwrap();
    assert_eq!(got.len(), big.len());
}

/// The connection states that wait on the socket work over TLS as in clear: a subscriber
/// receives what is published elsewhere, a blocked BLPOP is served by a push elsewhere and a
/// pipelined command after it waits its turn, a client in MULTI/EXEC.
#[test]
fn pub_sub_blocking_pops_and_transactions_work_over_tls() {
    let t = setup("states");
    let c = start(&t, &[]);
    let script = format!(
        r#"
import redis, threading, time
def tls():
    return redis.Redis(host="127.0.0.1", port={port}, ssl=True, ssl_ca_certs="{ca}",
                       ssl_certfile="{cert}", ssl_keyfile="{key}")
plain = redis.Redis(host="127.0.0.1", port={plain})
p = tls().pubsub()
p.subscribe("news")
assert p.get_message(timeout=5)["type"] == "subscribe"
time.sleep(0.2)
assert plain.publish("news", b"y" * 2000) == 1
m = p.get_message(timeout=5)
assert m and m["data"] == b"y" * 2000, m
b = tls()
threading.Timer(0.5, lambda: plain.rpush("q", "v")).start()
assert b.blpop("q", timeout=5) == (b"q", b"v")
pipe = tls().pipeline(transaction=True)
pipe.set("a", 1).incr("a").get("a")
assert pipe.execute() == [True, 2, b"2"]
print("ok")
"#,
        port = t.port,
        plain = c.ports[0],
        ca = t.file("ca.pem"),
        cert = t.client.0.display(),
        key = t.client.1.display(),
    );
    redis_py(&script);
}

#[test]
fn client_certificates_are_checked_as_tls_auth_clients_says_and_files_reload() {
    let t = setup("auth");
    let c = start(&t, &[]);
    let ca = t.dir.join("ca.pem");
    // No certificate: refused.
    let refused = rust_client(t.port, &ca, None).get_connection();
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
    // A certificate of another CA: refused.
    let other = t.dir.join("other");
    certs(&other, &["127.0.0.1:2".into()]);
    let stranger = (other.join("127.0.0.1_2.pem"), other.join("127.0.0.1_2.key"));
    assert!(
        rust_client(t.port, &ca, Some(&stranger))
            .get_connection()
            .is_err(),
        "a client of another CA was served"
    );
    let mut plain = c.client().get_connection().unwrap();
    // optional: a client without a certificate is served; one of another CA still not.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-auth-clients")
        .arg("optional")
        .query(&mut plain)
        .unwrap();
    let mut anon = rust_client(t.port, &ca, None).get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut anon).unwrap();
    assert_eq!(pong, "PONG");
    assert!(
        rust_client(t.port, &ca, Some(&stranger))
            .get_connection()
            .is_err()
    );
    // A file that is not a certificate: refused, nothing changes.
    let bad = t.dir.join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(bad.display().to_string())
        .query::<()>(&mut plain)
        .unwrap_err();
    assert!(e.to_string().contains("tls-cert-file"), "{e}");
    let mut still = rust_client(t.port, &ca, Some(&t.client))
        .get_connection()
        .unwrap();
    let _: String = redis::cmd("PING").query(&mut still).unwrap();
    // Reload: the port's certificate from the other CA; new clients must trust that one.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(other.join("127.0.0.1_2.pem").display().to_string())
        .arg("tls-key-file")
        .arg(other.join("127.0.0.1_2.key").display().to_string())
        .query(&mut plain)
        .unwrap();
    assert!(
        rust_client(t.port, &ca, Some(&t.client))
            .get_connection()
            .is_err(),
        "the old certificate is still served"
    );
    let mut renewed = rust_client(t.port, &other.join("ca.pem"), Some(&t.client))
        .get_connection()
        .unwrap();
    let _: String = redis::cmd("PING").query(&mut renewed).unwrap();
    // The connection opened before the reload carries on.
    let _: String = redis::cmd("PING").query(&mut still).unwrap();
    let got: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-auth-clients")
        .query(&mut plain)
        .unwrap();
    assert_eq!(got, vec![("tls-auth-clients".into(), "optional".into())]);
}

#[test]
fn bad_tls_settings_stop_start_up_with_the_reason() {
    let t = setup("bad");
    for (flags, why) in [
        (vec!["--tls-protocols", "TLSv1.1"], "TLSv1.1 is not offered"),
        (vec!["--tls-ciphersuites", "TLS_NOPE"], "TLS_NOPE"),
        (vec!["--tls-ca-cert-file", ""], "needs tls-ca-cert-file"),
    ] {
        let mut args = t.server_flags();
        args.extend(flags.iter().map(|s| s.to_string()));
        let dir = t
            .dir
            .join(format!("data-{}", flags[0].trim_start_matches('-')));
        let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
            .args(["--port", &common::free_port().to_string(), "--data-dir"])
            .arg(&dir)
            .args(["--cores", "0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(err.contains(why), "{flags:?}: {err}");
    }
}
