//! Test support: start the real `shardline` binary on a free loopback port and talk to it.
#![allow(dead_code)]

pub mod acl;
pub mod cluster;
pub mod workload;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    pub child: Child,
    pub dir: std::path::PathBuf,
    /// The flags it was started with (`kill_and_restart` starts it the same way).
    args: Vec<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server on cores `cores` with extra flags, and waits until it answers PING.
    pub fn start(cores: &str, extra: &[&str]) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("shardline-test-{}-{port}", std::process::id()));
            let mut args: Vec<String> = vec![
                "--port".into(),
                port.to_string(),
                "--cores".into(),
                cores.into(),
                "--data-dir".into(),
                dir.display().to_string(),
            ];
            // `{port}` in a flag stands for the port chosen here (`--cluster-nodes` of itself).
            args.extend(extra.iter().map(|s| s.replace("{port}", &port.to_string())));
            let child = spawn(&args);
            let mut s = Server {
                port,
                child,
                dir,
                args,
            };
            if s.wait_ready() {
                return s;
            }
            let _ = s.child.kill();
        }
        panic!("shardline did not start");
    }

    /// Stops this server (SIGKILL) and starts one on another free port with the same data
    /// directory and flags; this one no longer owns the directory.
    pub fn restart_on_another_port(&mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = free_port();
        let mut args = self.args.clone();
        let at = args
            .iter()
            .position(|a| a == "--port")
            .expect("started with --port")
            + 1;
        args[at] = port.to_string();
        let mut s = Server {
            port,
            child: spawn(&args),
            dir: self.dir.clone(),
            args,
        };
        assert!(s.wait_ready(), "shardline did not start on port {port}");
        // The directory is the new server's to remove.
        self.dir = std::path::PathBuf::new();
        s
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and starts it again on the
    /// same port and data directory, with the same flags; waits until it answers.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.args);
        assert!(self.wait_ready(), "shardline did not start again");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = s.read(&mut buf) {
                        if n > 0 && buf[..n].starts_with(b"+PONG")
                            || buf[..n].starts_with(b"-NOAUTH")
                        {
                            return true;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn client_resp3(&self) -> redis::Connection {
        redis::Client::open(format!("{}?protocol=resp3", self.url()))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(args)
        .env("SHARDLINE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shardline")
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends raw bytes and reads what comes back until the server closes or `timeout` passes.
pub fn exchange(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> (Vec<u8>, bool) {
    stream.write_all(bytes).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// An error's code and text, as one string to search (the `redis` crate moves known codes such as
/// CROSSSLOT out of the message).
pub fn msg(e: redis::RedisError) -> String {
    format!("{} {} {:?}", e.code().unwrap_or(""), e, e)
}

/// Every key the node at `conn` holds, its replicas' too (INFO keyspace; DBSIZE on a replicated
/// node counts only the vShards it leads, as a Redis Cluster primary counts its slots).
#[allow(dead_code)]
pub fn held_keys(conn: &mut redis::Connection) -> redis::RedisResult<i64> {
    let info: String = redis::cmd("INFO").arg("keyspace").query(conn)?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("db0:keys="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// A redis-server of the test's own, on loopback.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Redis { child, port });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `request` (HTTP) to `port`: the status line and the body.
pub fn http(port: u16, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The samples of a scrape: `name{labels}` → value; every line is a comment or a sample.
pub fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        out.insert(series.to_string(), v);
    }
    out
}

/// A scrape of the metrics endpoint on `port`: its samples.
pub fn scrape(port: u16) -> std::collections::BTreeMap<String, f64> {
    samples(&http(port, "GET /metrics HTTP/1.0\r\n\r\n").1)
}

/// `shardline ctl certs <dir> <addr>...`: a development CA in `dir` (made once, reused after)
/// and a certificate and key for each address (`<ip>_<port>.pem`/`.key`).
pub fn ctl_certs(dir: &std::path::Path, addrs: &[String]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["ctl", "certs"])
        .arg(dir)
        .args(addrs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ctl certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
