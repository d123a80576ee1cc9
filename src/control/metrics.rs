//! The Prometheus endpoint (issue 20, step 6): `metrics-port`, served by the control thread,
//! never by a shard thread. A scrape reads counters each shard thread publishes to its own
//! atomics once a tick (`ShardStats`: written by that thread only, read here with relaxed
//! loads; the request path takes no lock and writes no shared cache line per command) and
//! the cluster's atomics (leaders, SWIM's verdicts and counters), and renders the text
//! exposition format (version 0.0.4).
//!
//! Written by hand rather than with prometheus-client: every value already lives in an atomic
//! its own thread writes, so the crate's metric types (which own their atomics) would either
//! double the counting on the request path or need a custom collector per family; the text
//! format is a few stable lines. The HTTP side is the least that serves a scraper: `GET` (or
//! `HEAD`) of `/metrics`, one request per connection, a request line and headers of at most
//! 8 KiB read within 5 s, at most 8 connections at once.

use crate::node::Node;
use shardline_shards::swim;
use std::cell::Cell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The most bytes of a request read (its line and headers).
const REQUEST_BYTES_MAX: usize = 8 << 10;
/// How long a request may take to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const CONNECTIONS_MAX: usize = 8;

/// What a request asks for, once its head is whole.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (`head`: `HEAD`, no body).
    Metrics { head: bool },
    /// Another path (404).
    NotFound,
    /// Another method (405).
    BadMethod,
}

/// Reads a request's head from `buf`: `Ok(None)` until the blank line arrives; an error for
/// a head too long or not HTTP/1.x.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= REQUEST_BYTES_MAX {
            return Err("request head too long");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "request head not UTF-8")?;
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("not HTTP/1.x");
    }
    let path = target.split('?').next().unwrap_or_default();
    Ok(Some(match (method, path) {
        ("GET" | "HEAD", "/metrics") => Request::Metrics {
            head: method == "HEAD",
        },
        ("GET" | "HEAD", _) => Request::NotFound,
        _ => Request::BadMethod,
    }))
}

/// An HTTP/1.1 response that closes the connection.
pub fn response(status: &str, content_type: &str, body: &str, head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The text exposition, a family at a time.
#[derive(Default)]
pub struct Exposition {
    pub out: String,
}

impl Exposition {
    /// A family's `HELP` and `TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample, its label values escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for ch in v.chars() {
                    match ch {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Every family of this node.
pub fn render(node: &Node) -> String {
    let mut e = Exposition::default();
    let r = Ordering::Relaxed;
    e.family(
        "shardline_build_info",
        "gauge",
        "The build: its version and the Redis version it follows.",
    );
    e.sample(
        "shardline_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("redis_version", crate::info::REDIS_COMPAT_VERSION),
        ],
        1,
    );
    e.family(
        "shardline_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    e.sample(
        "shardline_uptime_seconds",
        &[],
        node.started.elapsed().as_secs(),
    );
    e.family(
        "shardline_memory_used_bytes",
        "gauge",
        "Bytes the node's allocator holds (the counting allocator; INFO used_memory).",
    );
    e.sample(
        "shardline_memory_used_bytes",
        &[],
        shardline_transport::alloc::used_bytes(),
    );
    let threads: Vec<String> = (0..node.threads).map(|i| i.to_string()).collect();
    let per_thread = |e: &mut Exposition,
                      name: &str,
                      kind: &str,
                      help: &str,
                      f: &dyn Fn(&crate::node::ShardStats) -> u64| {
        e.family(name, kind, help);
        for (t, s) in threads.iter().zip(&node.stats) {
            e.sample(name, &[("thread", t)], f(s));
        }
    };
    per_thread(
        &mut e,
        "shardline_commands_total",
        "counter",
        "Commands dispatched by the shard thread's connections.",
        &|s| s.commands.load(r),
    );
    per_thread(
        &mut e,
        "shardline_connections_received_total",
        "counter",
        "Client connections the shard thread accepted.",
        &|s| s.connections.load(r),
    );
    per_thread(
        &mut e,
        "shardline_connected_clients",
        "gauge",
        "Client connections open on the shard thread.",
        &|s| s.connected.load(r),
    );
    per_thread(
        &mut e,
        "shardline_rejected_connections_total",
        "counter",
        "Connections refused (maxclients).",
        &|s| s.rejected_connections.load(r),
    );
    per_thread(
        &mut e,
        "shardline_protocol_errors_total",
        "counter",
        "Connections closed for malformed RESP or oversized requests.",
        &|s| s.protocol_errors.load(r),
    );
    per_thread(
        &mut e,
        "shardline_net_input_bytes_total",
        "counter",
        "Bytes read from clients.",
        &|s| s.net_input_bytes.load(r),
    );
    per_thread(
        &mut e,
        "shardline_net_output_bytes_total",
        "counter",
        "Bytes written to clients.",
        &|s| s.net_output_bytes.load(r),
    );
    for (k, (name, help)) in [
        (
            "shardline_expired_keys_total",
            "Keys expired on the shard thread (INFO expired_keys).",
        ),
        (
            "shardline_evicted_keys_total",
            "Keys evicted for maxmemory (INFO evicted_keys).",
        ),
        (
            "shardline_keyspace_hits_total",
            "Key lookups that found the key (INFO keyspace_hits).",
        ),
        (
            "shardline_keyspace_misses_total",
            "Key lookups that did not (INFO keyspace_misses).",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        per_thread(&mut e, name, "counter", help, &|s| s.keyspace[k].load(r));
    }
    e.family(
        "shardline_cpu_seconds_total",
        "counter",
        "CPU time of the shard thread, by mode.",
    );
    for (t, s) in threads.iter().zip(&node.stats) {
        for (mode, us) in [
            ("user", s.cpu_user_us.load(r)),
            ("system", s.cpu_sys_us.load(r)),
        ] {
            e.sample(
                "shardline_cpu_seconds_total",
                &[("thread", t), ("mode", mode)],
                us as f64 / 1e6,
            );
        }
    }
    e.family(
        "shardline_batch_duration_seconds",
        "histogram",
        "Time from reading a batch of (pipelined) commands to writing its replies, per batch.",
    );
    for (t, s) in threads.iter().zip(&node.stats) {
        histogram(
            &mut e,
            "shardline_batch_duration_seconds",
            &[("thread", t)],
            &s.latency_us,
            1e-6,
        );
    }
    let name = "shardline_log_fsync_duration_seconds";
    e.family(name, "histogram", "Time of each fsync of the write-ahead log (a batch's with fsync always, the periodic ones with batch), on the shard thread's flush thread.");
    for (t, s) in threads.iter().zip(&node.stats) {
        histogram(&mut e, name, &[("thread", t)], &s.log.fsync_us, 1e-6);
    }
    let name = "shardline_log_batch_bytes";
    e.family(name, "histogram", "Bytes each batch of the write-ahead log wrote (a group commit of the shard thread's vShards).");
    for (t, s) in threads.iter().zip(&node.stats) {
        histogram(&mut e, name, &[("thread", t)], &s.log.batch_bytes, 1.0);
    }
    commands(&mut e, node);
    cluster(&mut e, &node.cluster);
    e.out
}

/// A histogram's samples (`labels` on each): its buckets cumulated, each bound `2^(b+SHIFT+1)`
/// times `unit` (1e-6 for µs as seconds), the last one open-ended, its sum and count.
fn histogram<const SHIFT: u32>(
    e: &mut Exposition,
    name: &str,
    labels: &[(&str, &str)],
    h: &crate::node::Histogram<SHIFT>,
    unit: f64,
) {
    let mut count = 0u64;
    let bucket = format!("{name}_bucket");
    let counts = h.counts();
    for (b, n) in counts.iter().enumerate() {
        count += n;
        let le = if b + 1 < counts.len() {
            ((1u64 << (b as u32 + SHIFT + 1)) as f64 * unit).to_string()
        } else {
            "+Inf".to_string()
        };
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        e.sample(&bucket, &with_le, count);
    }
    let sum = h.sum.load(Ordering::Relaxed) as f64 * unit;
    e.sample(&format!("{name}_sum"), labels, sum);
    e.sample(&format!("{name}_count"), labels, count);
}

/// Calls, refusals and errors by command, summed over the shard threads (commands never
/// called are left out).
fn commands(e: &mut Exposition, node: &Node) {
    let r = Ordering::Relaxed;
    let table = shardline_shards::command::COMMANDS;
    let mut sums = vec![[0u64; 3]; table.len()];
    for s in &node.stats {
        for (sum, c) in sums.iter_mut().zip(s.cmds.iter()) {
            sum[0] += c.calls.load(r);
            sum[1] += c.rejected.load(r);
            sum[2] += c.failed.load(r);
        }
    }
    for (k, (name, help)) in [
        (
            "shardline_command_calls_total",
            "Calls by command (INFO commandstats calls).",
        ),
        (
            "shardline_command_rejected_total",
            "Calls refused before running, by command (arity, NOAUTH, CROSSSLOT, OOM).",
        ),
        (
            "shardline_command_failed_total",
            "Calls that ran and answered an error, by command.",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        e.family(name, "counter", help);
        for (spec, sum) in table.iter().zip(&sums) {
            if sum.iter().any(|&x| x > 0) {
                e.sample(name, &[("cmd", spec.name)], sum[k]);
            }
        }
    }
}

/// Membership and routing: each member's state as SWIM holds it, SWIM's counters, repairs,
/// vShards led, moves open, whether the links are TLS.
pub fn cluster(e: &mut Exposition, c: &crate::cluster::Cluster) {
    let r = Ordering::Relaxed;
    let members = c.member_ids();
    e.family(
        "shardline_cluster_members",
        "gauge",
        "Members in this node's member table, itself included.",
    );
    e.sample("shardline_cluster_members", &[], members.len());
    e.family(
        "shardline_member_state",
        "gauge",
        "1 for each other member's state as SWIM holds it (alive, suspect, dead, left).",
    );
    for id in members.into_iter().filter(|&id| id != c.me) {
        let state = match c.liveness(id).0 {
            swim::State::Alive => "alive",
            swim::State::Suspect => "suspect",
            swim::State::Dead => "dead",
            swim::State::Left => "left",
        };
        let addr = c
            .member(id)
            .map(|m| m.client.to_string())
            .unwrap_or_default();
        let member = id.0.to_string();
        e.sample(
            "shardline_member_state",
            &[("member", &member), ("address", &addr), ("state", state)],
            1,
        );
    }
    for (name, v) in super::SWIM_NAMES.iter().zip(&c.swim_stats) {
        let gauge = matches!(*name, "swim_incarnation" | "swim_local_health");
        let metric = if gauge {
            format!("shardline_{name}")
        } else {
            format!("shardline_{name}_total")
        };
        e.family(
            &metric,
            if gauge { "gauge" } else { "counter" },
            &format!("INFO cluster {name}."),
        );
        e.sample(&metric, &[], v.load(r));
    }
    e.family(
        "shardline_cluster_repairs_total",
        "counter",
        "Members this node (as metadata leader) removed automatically.",
    );
    e.sample("shardline_cluster_repairs_total", &[], c.repairs.load(r));
    e.family(
        "shardline_cluster_repair_blocked",
        "gauge",
        "1 while a repair is refused for want of a live majority or of nodes.",
    );
    e.sample(
        "shardline_cluster_repair_blocked",
        &[],
        c.repair_blocked.load(r),
    );
    let vshards = c.layout.count();
    let led = (0..vshards)
        .filter(|&v| c.leader(shardline_shards::slot::VShardId(v as u16)) == c.me)
        .count();
    e.family("shardline_vshards", "gauge", "vShards in the keyspace.");
    e.sample("shardline_vshards", &[], vshards);
    e.family(
        "shardline_vshards_led",
        "gauge",
        "vShards this node's replicas lead, as its routing table says.",
    );
    e.sample("shardline_vshards_led", &[], led);
    e.family(
        "shardline_moves_open",
        "gauge",
        "Replica moves open in the metadata (CLUSTER MOVES).",
    );
    e.sample("shardline_moves_open", &[], c.moves_open());
    moves(e, c);
    replicas(e, c);
    calvin(e, &c.calvin);
    e.family(
        "shardline_cluster_links_tls",
        "gauge",
        "1 when the node's links are mutual TLS.",
    );
    e.sample(
        "shardline_cluster_links_tls",
        &[],
        c.security.tls.is_some() as u8,
    );
}

/// Each open move's phase and its base copy's progress, as this node knows them (the
/// leader's hints; `CLUSTER MOVES` shows the same).
fn moves(e: &mut Exposition, c: &crate::cluster::Cluster) {
    use crate::cluster::progress::Phase;
    let open: Vec<_> = c
        .move_views()
        .into_iter()
        .filter(|(_, p, _)| !matches!(p, Phase::Done | Phase::Cancelled))
        .collect();
    let label = |rec: &shardline_shards::meta::MoveRec| {
        [
            rec.id.to_string(),
            rec.vshard.to_string(),
            rec.from.0.to_string(),
            rec.to.0.to_string(),
        ]
    };
    e.family(
        "shardline_move_phase",
        "gauge",
        "1 for each open move's phase (waiting, copying, catching-up, cutting-over).",
    );
    for (rec, phase, _) in &open {
        let [id, v, from, to] = label(rec);
        e.sample(
            "shardline_move_phase",
            &[
                ("move", &id),
                ("vshard", &v),
                ("from", &from),
                ("to", &to),
                ("phase", phase.name()),
            ],
            1,
        );
    }
    for (name, help, pick) in [
        (
            "shardline_move_copied_bytes",
            "Bytes of an open move's base copy its target acknowledged (0 outside the copy).",
            (|p: &crate::cluster::progress::CopyProgress| p.acked) as fn(&_) -> u64,
        ),
        (
            "shardline_move_copy_bytes",
            "Bytes of an open move's base copy in all.",
            |p| p.total,
        ),
        (
            "shardline_move_copy_rate_bytes",
            "Bytes a second of an open move's base copy so far.",
            |p| p.rate(),
        ),
    ] {
        e.family(name, "gauge", help);
        for (rec, _, copy) in &open {
            let [id, v, ..] = label(rec);
            e.sample(name, &[("move", &id), ("vshard", &v)], pick(copy));
        }
    }
}

/// The replicas this node holds, per group, as their shard threads published them a
/// second ago at most (`progress::Held`).
fn replicas(e: &mut Exposition, c: &crate::cluster::Cluster) {
    use crate::cluster::progress::Held;
    let r = Ordering::Relaxed;
    let meta = c.meta_group() as usize;
    let held: Vec<(String, &Held, u8)> = c
        .held
        .iter()
        .enumerate()
        .filter_map(|(g, h)| {
            let role = h.role.load(r);
            let name = if g == meta {
                "meta".to_string()
            } else {
                g.to_string()
            };
            (role != 0).then_some((name, h, role))
        })
        .collect();
    e.family(
        "shardline_replica_role",
        "gauge",
        "1 for the role of each replica held here (follower, pre-candidate, candidate, leader, learner); vshard \"meta\" is the metadata group.",
    );
    for (v, _, role) in &held {
        let role = Held::ROLES[*role as usize - 1];
        e.sample(
            "shardline_replica_role",
            &[("vshard", v), ("role", role)],
            1,
        );
    }
    for (name, help, pick) in [
        (
            "shardline_replica_term",
            "The Raft term of each replica held here.",
            (|h: &Held| &h.term) as fn(&Held) -> &std::sync::atomic::AtomicU64,
        ),
        (
            "shardline_replica_commit_index",
            "The commit index each replica held here knows.",
            |h| &h.commit,
        ),
        (
            "shardline_replica_applied_index",
            "The last index each replica held here applied.",
            |h| &h.applied,
        ),
        (
            "shardline_replica_log_bytes",
            "About the entry bytes each replica's log holds in memory (compaction empties it).",
            |h| &h.log_bytes,
        ),
        (
            "shardline_replica_snapshot_index",
            "The index each replica's last snapshot covers (commit index minus it: entries since).",
            |h| &h.snapshot,
        ),
    ] {
        e.family(name, "gauge", help);
        for (v, h, _) in &held {
            e.sample(name, &[("vshard", v)], pick(h).load(r));
        }
    }
}

/// Calvin: the transactions across vShards submitted here and how they ended, their time,
/// and this node's share of the executions.
fn calvin(e: &mut Exposition, s: &crate::cluster::replica::calvin::Stream) {
    let r = Ordering::Relaxed;
    let (sequenced, retained) = s.marks();
    e.family(
        "shardline_calvin_sequenced_total",
        "counter",
        "Transactions across vShards the sequencer has ordered, as this node's copy of the metadata shows.",
    );
    e.sample("shardline_calvin_sequenced_total", &[], sequenced);
    e.family(
        "shardline_calvin_retained",
        "gauge",
        "Sequenced transactions not yet executed by every participant.",
    );
    e.sample("shardline_calvin_retained", &[], retained);
    e.family(
        "shardline_calvin_submitted_total",
        "counter",
        "Transactions across vShards submitted from this node's connections.",
    );
    e.sample("shardline_calvin_submitted_total", &[], s.submitted.load(r));
    e.family(
        "shardline_calvin_answered_total",
        "counter",
        "Transactions submitted here, by how they were answered: executed, refused (not applied), unknown (not confirmed in time), timed-out (a blocking command's timeout).",
    );
    for (how, n) in ["executed", "refused", "unknown", "timed-out"]
        .iter()
        .zip(&s.answers)
    {
        e.sample(
            "shardline_calvin_answered_total",
            &[("how", how)],
            n.load(r),
        );
    }
    let name = "shardline_calvin_duration_seconds";
    e.family(
        name,
        "histogram",
        "Time from submitting a transaction here to its execution's reply (blocking commands left out).",
    );
    histogram(e, name, &[], &s.latency_us, 1e-6);
    for (name, help, v) in [
        (
            "shardline_calvin_executions_total",
            "Execution entries applied by this node's leaders.",
            &s.executions,
        ),
        (
            "shardline_calvin_reads_asked_again_total",
            "Remote reads a participant here asked for again.",
            &s.asked_again,
        ),
        (
            "shardline_calvin_jobs_deferred_total",
            "Jobs that waited for keys a transaction held.",
            &s.deferred,
        ),
        (
            "shardline_calvin_submissions_resent_total",
            "Submissions sent again to a new sequencer leader.",
            &s.resent,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[], v.load(r));
    }
}

/// Serves `listener` on the control thread's runtime until the process ends.
pub async fn serve(node: Arc<Node>, listener: std::net::TcpListener) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics: cannot adopt the listener: {e}");
            return;
        }
    };
    let open = Rc::new(Cell::new(0usize));
    loop {
        let Ok((s, _)) = listener.accept().await else {
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if open.get() >= CONNECTIONS_MAX {
            drop(s);
            continue;
        }
        open.set(open.get() + 1);
        let (node, open) = (node.clone(), open.clone());
        monoio::spawn(async move {
            let _ = monoio::time::timeout(REQUEST_TIMEOUT, answer(&node, s)).await;
            open.set(open.get() - 1);
        });
    }
}

async fn answer(node: &Node, mut s: monoio::net::TcpStream) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let mut got = Vec::new();
    let request = loop {
        let buf = Vec::with_capacity(1024);
        let (res, buf) = s.read(buf).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => got.extend_from_slice(&buf),
        }
        match parse_request(&got) {
            Ok(Some(r)) => break Ok(r),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    let text = "text/plain; charset=utf-8";
    let out = match request {
        Ok(Request::Metrics { head }) => response(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &render(node),
            head,
        ),
        Ok(Request::NotFound) => {
            response("404 Not Found", text, "only /metrics is served\n", false)
        }
        Ok(Request::BadMethod) => response("405 Method Not Allowed", text, "GET /metrics\n", false),
        Err(e) => response("400 Bad Request", text, &format!("{e}\n"), false),
    };
    let _ = s.write_all(out).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeId;

    #[test]
    fn requests_are_read_whole_and_bounded() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Request::Metrics { head: false }))
        );
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ok(Some(Request::Metrics { head: true }))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n"),
            Ok(Some(Request::NotFound))
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Ok(Some(Request::BadMethod))
        );
        assert!(parse_request(b"GET /metrics\r\n\r\n").is_err());
        assert!(parse_request(b"GET /metrics SPDY/3\r\n\r\n").is_err());
        assert!(parse_request(b"\xff\xfe\r\n\r\n").is_err());
        assert!(parse_request(&vec![b'a'; REQUEST_BYTES_MAX]).is_err());
        assert_eq!(parse_request(&vec![b'a'; REQUEST_BYTES_MAX - 1]), Ok(None));
    }

    #[test]
    fn samples_escape_their_label_values() {
        let mut e = Exposition::default();
        e.family("m", "gauge", "help");
        e.sample("m", &[("a", "x\"y\\z\nw"), ("b", "1")], 2);
        e.sample("m", &[], 1.5);
        assert_eq!(
            e.out,
            "# HELP m help\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\",b=\"1\"} 2\nm 1.5\n"
        );
        let r = response("200 OK", "text/plain", "abc", false);
        assert!(r.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"));
        assert!(response("200 OK", "text/plain", "abc", true).ends_with(b"\r\n\r\n"));
    }

    /// Member 1 of a cluster of `n` nodes on 127.0.0.1:7001 and up, 16 vShards.
    fn cluster_of(n: u16) -> crate::cluster::Cluster {
        let cfg = crate::config::Config {
            cluster_nodes: (1..=n)
                .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
                .collect(),
            port: 7001,
            cores: vec![0],
            ..Default::default()
        };
        let layout = shardline_shards::slot::VShardLayout::new(16).unwrap();
        crate::cluster::Cluster::new(&cfg, layout).unwrap()
    }

    /// The cluster's families: every other member's state, once, by SWIM's verdict.
    #[test]
    fn members_are_rendered_with_their_state() {
        let c = cluster_of(3);
        c.set_liveness(NodeId(3), swim::State::Dead, 7);
        let mut e = Exposition::default();
        cluster(&mut e, &c);
        assert!(e.out.contains("shardline_cluster_members 3\n"), "{}", e.out);
        assert!(e.out.contains("shardline_member_state{member=\"2\",address=\"127.0.0.1:7002\",state=\"alive\"} 1\n"), "{}", e.out);
        assert!(
            e.out.contains(
                "shardline_member_state{member=\"3\",address=\"127.0.0.1:7003\",state=\"dead\"} 1\n"
            ),
            "{}",
            e.out
        );
        assert!(!e.out.contains("member=\"1\""), "itself is not a peer");
        assert!(e.out.contains("shardline_swim_packets_in_total 0\n"));
        assert!(e.out.contains("shardline_cluster_links_tls 0\n"));
    }

    /// An open move's phase and copy, the replicas held here, and Calvin's families.
    #[test]
    fn moves_replicas_and_transactions_are_rendered() {
        use crate::cluster::progress::CopyProgress;
        use shardline_shards::meta::{MoveKind, MoveRec, MoveState};
        use shardline_shards::slot::VShardId;
        let c = cluster_of(2);
        let rec = |id, vshard, state| MoveRec {
            id,
            vshard,
            from: NodeId(1),
            to: NodeId(2),
            state,
            epoch: 1,
            kind: MoveKind::Operator,
        };
        c.set_moves(&[rec(7, 3, MoveState::Open), rec(6, 4, MoveState::Done)]);
        let copy = CopyProgress {
            acked: 500,
            total: 2000,
            elapsed_ms: 1000,
        };
        c.set_replicas(VShardId(3), crate::cluster::bit(NodeId(1)));
        c.note_progress(VShardId(3), crate::cluster::bit(NodeId(2)), copy);
        let r = Ordering::Relaxed;
        c.held[5].role.store(4, r);
        c.held[5].commit.store(42, r);
        c.held[16].role.store(5, r);
        c.calvin.submitted.store(3, r);
        c.calvin.answers[2].store(1, r);
        c.calvin.latency_us.record(1500);
        let mut e = Exposition::default();
        cluster(&mut e, &c);
        let o = &e.out;
        for line in [
            "shardline_move_phase{move=\"7\",vshard=\"3\",from=\"1\",to=\"2\",phase=\"copying\"} 1\n",
            "shardline_move_copied_bytes{move=\"7\",vshard=\"3\"} 500\n",
            "shardline_move_copy_bytes{move=\"7\",vshard=\"3\"} 2000\n",
            "shardline_move_copy_rate_bytes{move=\"7\",vshard=\"3\"} 500\n",
            "shardline_replica_role{vshard=\"5\",role=\"leader\"} 1\n",
            "shardline_replica_commit_index{vshard=\"5\"} 42\n",
            "shardline_replica_role{vshard=\"meta\",role=\"learner\"} 1\n",
            "shardline_calvin_submitted_total 3\n",
            "shardline_calvin_answered_total{how=\"unknown\"} 1\n",
            "shardline_calvin_duration_seconds_bucket{le=\"0.001024\"} 0\n",
            "shardline_calvin_duration_seconds_bucket{le=\"0.002048\"} 1\n",
            "shardline_calvin_duration_seconds_sum 0.0015\n",
            "shardline_calvin_duration_seconds_count 1\n",
        ] {
            assert!(o.contains(line), "{line} in {o}");
        }
        assert!(!o.contains("move=\"6\""), "a done move is not shown");
        assert!(!o.contains("vshard=\"0\""), "no replica of vShard 0 here");
    }
}
