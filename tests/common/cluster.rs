//! Test support: a replicated cluster of real `shardline` processes on loopback, optionally with a
//! fault-injecting proxy on every directed link of the cluster bus (so a test can cut one node off).
#![allow(dead_code)]

use shardline_testkit::faultproxy::FaultProxy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestCluster {
    pub ports: Vec<u16>,
    bus: Vec<u16>,
    /// Each node's metrics endpoint (`--metrics-port`).
    pub metrics: Vec<u16>,
    children: Vec<Option<Child>>,
    pub dir: std::path::PathBuf,
    /// `links[i][j]`: the proxy node `i` dials to reach node `j` (None on the diagonal).
    pub links: Vec<Vec<Option<FaultProxy>>>,
    extra: Vec<String>,
    /// Per node, the node it asked to join (`--cluster-join`), for nodes added by `join`; the
    /// first ones start from the static list.
    joined_via: Vec<Option<usize>>,
    /// Where `shardline ctl certs` keeps the cluster's CA, secret and node certificates, when
    /// the links are mutual TLS (`start_tls`).
    pub certs: Option<PathBuf>,
}

/// A free port below the kernel's ephemeral range (32768 and up by default): a node restarted
/// on its old port must not find it taken by some outgoing connection's local port meanwhile.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let x = (std::process::id() as u64)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(n.wrapping_mul(40_503));
        let port = 20_000 + (x % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl TestCluster {
    /// Starts `n` nodes (one shard thread each) and waits until every slot has a leader.
    pub fn start(n: usize, proxied: bool, extra: &[&str]) -> TestCluster {
        Self::start_with(n, proxied, extra, false)
    }

    /// The same with the links mutual TLS: a CA, a secret and each node's certificate made by
    /// `shardline ctl certs` in the cluster's directory.
    pub fn start_tls(n: usize, proxied: bool, extra: &[&str]) -> TestCluster {
        Self::start_with(n, proxied, extra, true)
    }

    fn start_with(n: usize, proxied: bool, extra: &[&str], tls: bool) -> TestCluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let bus: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let metrics: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let links = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        (proxied && i != j).then(|| {
                            FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], bus[j]))).unwrap()
                        })
                    })
                    .collect()
            })
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "shardline-cluster-test-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let mut c = TestCluster {
            ports,
            bus,
            metrics,
            children: (0..n).map(|_| None).collect(),
            dir,
            links,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            joined_via: vec![None; n],
            certs: None,
        };
        if tls {
            c.certs = Some(c.dir.join("certs"));
            for i in 0..n {
                c.make_cert(i);
            }
        }
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_served(Duration::from_secs(30));
        c
    }

    pub fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[], Stdio::inherit());
    }

    fn spawn_with(&mut self, i: usize, extra: &[&str], stderr: Stdio) {
        let child = self
            .command(i)
            .args(extra)
            // The nodes' logs (stdout), for debugging: TEST_NODE_LOGS=<dir> (with RUST_LOG)
            // appends node i's to <dir>/<first client port>-node-<i>.log (failure messages
            // name that port, as tests run in parallel).
            .stdout(match std::env::var_os("TEST_NODE_LOGS") {
                Some(d) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(PathBuf::from(d).join(format!("{}-node-{i}.log", self.ports[0])))
                        .expect("node log file"),
                ),
                None => Stdio::null(),
            })
            .stderr(stderr)
            .spawn()
            .expect("start shardline");
        self.children[i] = Some(child);
    }

    /// Starts node `i` expecting it to refuse to start: its exit status and what it printed.
    pub fn start_expecting_failure(&mut self, i: usize) -> (std::process::ExitStatus, String) {
        let mut child = self
            .command(i)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardline");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                return (st, err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {i} started although it should have refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new node that joins the running cluster by asking node `via` (`--cluster-join`), with
    /// `extra` flags of its own; not waited for. Its index.
    pub fn join(&mut self, via: usize, extra: &[&str]) -> usize {
        let i = self.ports.len();
        self.ports.push(free_port());
        self.bus.push(free_port());
        self.metrics.push(free_port());
        for row in &mut self.links {
            row.push(None);
        }
        self.links.push((0..=i).map(|_| None).collect());
        self.children.push(None);
        self.joined_via.push(Some(via));
        if self.certs.is_some() {
            self.make_cert(i);
        }
        self.spawn_logged(i, extra);
        i
    }

    /// Node `i`'s certificate, made with `shardline ctl certs` (the CA and the secret too, the
    /// first time).
    fn make_cert(&self, i: usize) {
        let dir = self.certs.as_ref().expect("a TLS cluster");
        super::ctl_certs(dir, &[format!("127.0.0.1:{}", self.ports[i])]);
    }

    /// The TLS flags of node `i` (none unless the links are TLS).
    pub fn tls_flags(&self, i: usize) -> Vec<String> {
        let Some(dir) = &self.certs else {
            return Vec::new();
        };
        let stem = format!("127.0.0.1_{}", self.ports[i]);
        let path = |name: String| dir.join(name).display().to_string();
        vec![
            "--cluster-tls-ca-file".into(),
            path("ca.pem".into()),
            "--cluster-tls-cert-file".into(),
            path(format!("{stem}.pem")),
            "--cluster-tls-key-file".into(),
            path(format!("{stem}.key")),
            "--cluster-secret-file".into(),
            path("cluster.secret".into()),
        ]
    }

    /// Starts node `i` with `extra` flags, its stderr kept for `wait_exit`: in a file, not a
    /// pipe, as a pipe nobody reads would stall a node that logs more than the pipe holds.
    pub fn spawn_logged(&mut self, i: usize, extra: &[&str]) {
        let log = std::fs::File::create(self.stderr_path(i)).expect("node log");
        self.spawn_with(i, extra, Stdio::from(log));
    }

    fn stderr_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i}.stderr"))
    }

    /// Waits for node `i` (started by `join` or `spawn_logged`) to exit on its own: its status and what it printed
    /// (a node refused at start-up).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.children[i].as_mut().unwrap();
            if let Some(st) = child.try_wait().unwrap() {
                let err = std::fs::read_to_string(self.stderr_path(i)).unwrap_or_default();
                self.children[i] = None;
                return (st, err);
            }
            assert!(Instant::now() < deadline, "node {i} is still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn bus_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.bus[i])
    }

    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.join(format!("node-{i}"))
    }

    fn command(&self, i: usize) -> Command {
        if let Some(via) = self.joined_via[i] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardline"));
            cmd.args([
                "--port",
                &self.ports[i].to_string(),
                "--cores",
                &(i % 2).to_string(),
                "--data-dir",
                &self.data_dir(i).display().to_string(),
                "--cluster-join",
                &format!("127.0.0.1:{}", self.ports[via]),
                "--cluster-bus-addr",
                &format!("127.0.0.1:{}", self.bus[i]),
                "--vshards",
                "64",
                "--metrics-port",
                &self.metrics[i].to_string(),
            ])
            .args(self.tls_flags(i))
            .args(&self.extra)
            .env("SHARDLINE_LOG_LEVEL", "warn");
            return cmd;
        }
        // The static list: the nodes that started the cluster.
        let first = self.joined_via.iter().take_while(|j| j.is_none()).count();
        let nodes: Vec<String> = self.ports[..first]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let bus: Vec<String> = (0..first)
            .map(|j| match &self.links[i][j] {
                Some(p) => p.addr().to_string(),
                None => format!("127.0.0.1:{}", self.bus[j]),
            })
            .collect();
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.ports[i].to_string(),
            "--cores".into(),
            (i % 2).to_string(),
            "--data-dir".into(),
            self.data_dir(i).display().to_string(),
            "--cluster-nodes".into(),
            nodes.join(","),
            "--cluster-bus-nodes".into(),
            bus.join(","),
            "--vshards".into(),
            "64".into(),
            "--metrics-port".into(),
            self.metrics[i].to_string(),
        ];
        args.extend(self.tls_flags(i));
        args.extend(self.extra.iter().cloned());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardline"));
        cmd.args(&args).env("SHARDLINE_LOG_LEVEL", "warn");
        cmd
    }

    /// SIGKILL: the process dies at once, mid-write if it was writing.
    /// kill -9 of every node, then all started again, waiting until every slot is served.
    pub fn restart_all(&mut self) {
        for i in 0..self.ports.len() {
            self.kill(i);
        }
        for i in 0..self.ports.len() {
            self.spawn(i);
        }
        self.wait_served(Duration::from_secs(30));
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) to node `i`: a paused node lags, then catches up.
    pub fn pause(&self, i: usize, paused: bool) {
        let pid = self.children[i].as_ref().expect("node running").id();
        let sig = if paused { "-STOP" } else { "-CONT" };
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// Panics, naming the node and how it ended, if a node the test started has exited.
    pub fn assert_running(&mut self) {
        for (i, c) in self.children.iter_mut().enumerate() {
            if let Some(c) = c
                && let Some(st) = c.try_wait().unwrap()
            {
                panic!("node {i} exited: {st}");
            }
        }
    }

    /// SIGTERM to node `i` (a graceful shutdown), waiting until it exited.
    pub fn terminate(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("node running");
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "node {i} did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.ports[i])
    }

    pub fn urls(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.url(i)).collect()
    }

    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::builder(self.urls())
            .retries(20)
            .min_retry_wait(20)
            .max_retry_wait(500)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(8))
            .build()
            .unwrap()
    }

    /// CLUSTER INFO of node `i`, if it answers.
    pub fn info(&self, i: usize) -> Option<String> {
        let c = redis::Client::open(self.url(i)).ok()?;
        let mut conn = c.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
        redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()
    }

    /// Waits until every running node sees a leader for every slot, and no node has moves or
    /// leadership handovers pending (so tests that look up a key's leader see a stable one).
    pub fn wait_served(&self, timeout: Duration) {
        self.wait_slots(timeout);
        let deadline = Instant::now() + timeout;
        for i in 0..self.ports.len() {
            if self.children[i].is_none() {
                continue;
            }
            loop {
                let info = self.info_section(i, "cluster");
                if info
                    .as_deref()
                    .is_some_and(|s| s.contains("cluster_moves_pending:0\r\n"))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i}: moves still pending after {timeout:?}: {info:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A number of INFO cluster on node `i` (`name`, without its colon); None if the node
    /// does not answer or has no such field.
    pub fn cluster_field(&self, i: usize, name: &str) -> Option<u64> {
        let info = self.info_section(i, "cluster")?;
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    }

    /// INFO `section` of node `i`, if it answers.
    pub fn info_section(&self, i: usize, section: &str) -> Option<String> {
        let c = redis::Client::open(self.url(i)).ok()?;
        let mut conn = c.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
        redis::cmd("INFO").arg(section).query(&mut conn).ok()
    }

    fn wait_slots(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..self.ports.len() {
            if self.children[i].is_none() {
                continue;
            }
            loop {
                if self
                    .info(i)
                    .is_some_and(|s| s.contains("cluster_slots_ok:16384"))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} (cluster of port {}): not every slot has a leader after {timeout:?}: {:?}",
                    self.ports[0],
                    self.info(i)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A plain connection to the node that leads `key`'s slot (the one that does not redirect).
    /// During an election no node leads the key for a moment: asks again for up to 10 s.
    pub fn leader_of(&self, key: &str) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for i in 0..self.ports.len() {
                if self.children[i].is_none() {
                    continue;
                }
                let Ok(mut n) = redis::Client::open(self.url(i)).and_then(|c| c.get_connection())
                else {
                    continue;
                };
                if redis::cmd("EXISTS").arg(key).query::<i64>(&mut n).is_ok() {
                    return n;
                }
            }
            assert!(Instant::now() < deadline, "no node leads {key}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A key whose slot node `i` leads.
    pub fn key_led_by(&self, i: usize) -> String {
        let mut n = redis::Client::open(self.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        let slots: Vec<(i64, i64, (String, i64))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut n)
            .unwrap()
            .into_iter()
            .map(|r| {
                let redis::Value::Array(p) = r else { panic!() };
                let (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(m)) =
                    (&p[0], &p[1], &p[2])
                else {
                    panic!()
                };
                let (redis::Value::BulkString(h), redis::Value::Int(port)) = (&m[0], &m[1]) else {
                    panic!()
                };
                (*a, *b, (String::from_utf8_lossy(h).into_owned(), *port))
            })
            .collect();
        for n_try in 0..100_000 {
            let k = format!("cut:{n_try}");
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&k)
                .query(&mut n)
                .unwrap();
            if slots
                .iter()
                .any(|(a, b, (_, port))| (*a..=*b).contains(&slot) && *port == self.ports[i] as i64)
            {
                return k;
            }
        }
        panic!("node {i} leads nothing");
    }

    /// Waits up to `timeout` until node `i`'s own state (read with READONLY) holds, at every
    /// key `key(k)` of `keys`, a value `ok(k, value)` accepts.
    pub fn wait_replica_holds(
        &self,
        i: usize,
        keys: impl IntoIterator<Item = usize>,
        key: impl Fn(usize) -> String,
        ok: impl Fn(usize, &str) -> bool,
        timeout: Duration,
    ) {
        use redis::Commands;
        let mut r = redis::Client::open(self.url(i))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("READONLY").query(&mut r).unwrap();
        let deadline = Instant::now() + timeout;
        for k in keys {
            loop {
                let v: Option<String> = r.get(key(k)).unwrap_or(None);
                if v.as_deref().is_some_and(|v| ok(k, v)) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} {} = {:?}",
                    key(k),
                    v.map(|v| v.chars().take(24).collect::<String>())
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Cuts node `i` off from the others (both directions of each link).
    pub fn isolate(&self, i: usize) {
        for j in 0..self.ports.len() {
            if i != j {
                self.links[i][j].as_ref().unwrap().partition();
                self.links[j][i].as_ref().unwrap().partition();
            }
        }
    }

    /// Node `i`'s links to and from the others stay open but carry nothing (TCP bytes and
    /// UDP datagrams dropped), as a network that drops every packet: no connection breaks.
    pub fn silence(&self, i: usize) {
        for j in 0..self.ports.len() {
            if i != j {
                self.links[i][j].as_ref().unwrap().blackhole();
                self.links[j][i].as_ref().unwrap().blackhole();
            }
        }
    }

    /// INFO cluster's `swim_members_<state>` on node `i` (`alive`, `suspect`, `dead`, `left`).
    pub fn swim(&self, i: usize, state: &str) -> Option<u64> {
        self.cluster_field(i, &format!("swim_members_{state}"))
    }

    /// Waits until node `i`'s SWIM holds one member `state` (`dead`, `left`), failing once
    /// `within` has passed since `since`; how long after `since` it did.
    pub fn wait_swim(&self, i: usize, state: &str, since: Instant, within: Duration) -> Duration {
        while self.swim(i, state) != Some(1) {
            assert!(
                since.elapsed() < within,
                "node {i}: SWIM does not hold a member {state}: {:?}",
                self.info_section(i, "cluster")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        since.elapsed()
    }

    /// Waits until every running node's SWIM holds every other member alive.
    pub fn wait_swim_alive(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let others = self.ports.len() as u64 - 1;
        for i in 0..self.ports.len() {
            if self.children[i].is_none() {
                continue;
            }
            while self.swim(i, "alive") != Some(others) {
                assert!(
                    Instant::now() < deadline,
                    "node {i}: SWIM does not hold every member alive: {:?}",
                    self.info_section(i, "cluster")
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn heal(&self) {
        for row in &self.links {
            for p in row.iter().flatten() {
                p.heal();
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` again while it answers -TRYAGAIN (nothing applied: no sequencer or leader known
/// for a moment, during an election), up to 10 s.
pub fn retry_tryagain<T>(mut f: impl FnMut() -> redis::RedisResult<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(e) if e.code() == Some("TRYAGAIN") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            r => return r.unwrap(),
        }
    }
}

/// SETs `key(i)` to `value(i)` for every `i` of `range` through `conn`, pipelined 2,000 at a
/// time; a pipeline refused (an election, a handover) is sent again for up to 30 s.
pub fn set_all(
    conn: &mut redis::Connection,
    range: std::ops::Range<usize>,
    key: impl Fn(usize) -> String,
    value: impl Fn(usize) -> String,
) {
    let mut at = range.start;
    while at < range.end {
        let end = (at + 2000).min(range.end);
        let mut pipe = redis::pipe();
        for i in at..end {
            pipe.set(key(i), value(i)).ignore();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = pipe.query::<()>(conn) {
            assert!(Instant::now() < deadline, "writes still refused: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
        at = end;
    }
}
