//! The whole-cluster simulator, first cut (issue 16, step 4; docs/design/redesign.md §2).
//!
//! N nodes of T shard threads each run in one thread on simulated time, through the same entry
//! points the driver and the bus use (`receive`, `peer_connected`/`peer_disconnected`,
//! `dialed`, `start_step`, the log batch, `finish_step`, `plan_job`/`submit`), with their
//! real logs and snapshot files in a temporary directory. The logs run with `fsync always`, but
//! a fsync is only noted (`run_ops`): a process crash keeps what was written, a power cut
//! (during a batch) loses what was not fsynced, a prefix of it possibly on disk. The network is
//! in memory (`shardline_transport::link::mem`): directed connections opened by a handshake
//! the bus's own `judge` and `take_answer` decide, read by its `deliver`, per write a seeded delay,
//! partitions drop what crosses them, connections reset now and then, a crashed node's
//! connections end. Faults: crashes, power cuts, partitions (a minority), paused nodes, a
//! hostile member; nodes join and leave through the metadata group as an operator asks; at
//! the end every node restarts at once. Clients (`clients.rs`) send to the node they think leads the
//! key, follow `-MOVED`, and record a history. Checked (`checks.rs`): one leader per term per
//! group at every step; every request answered; the history of every key linearizable,
//! errors taken at their word (`-MOVED`/`-TRYAGAIN`: not applied; `-UNKNOWN`: may have been);
//! after the faults stop, the cluster settles (routing, placement, no replica left behind),
//! every replica holds the same, queues lost nothing. A failure names its seed:
//! `SIM_SEED=<seed> cargo test sim_` replays it.

use super::*;
use crate::cluster::{bus, join};
use crate::config::Config;
use shardline_shards::rng::Rng;
use shardline_shards::slot::VShardLayout;
use shardline_testkit::lincheck::{self, OpKind};
use shardline_transport::link::{self, Frames, mem};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

mod checks;
mod clients;
mod control;
mod faults;
mod lanes;
mod membership;
#[cfg(test)]
mod scenarios;
use clients::job_of;
use faults::run_ops;

/// Tells the simulations' directories apart.
static SIM_DIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Where simulated wall clocks start (entries' stamps).
const UNIX_START_US: u64 = 1_800_000_000_000_000;
/// Keys the clients share: few, so their histories interleave.
const KEYS: usize = 3;
/// How often an idle dialer sends an empty batch (`bus::dial`: a quarter of the node timeout).
const HEARTBEAT_MS: u64 = 250;
/// On average, one connection resets every this many ms (`run_with_faults`).
const RESET_EVERY_MS: u64 = 300;
/// How often a dialer that is not connected tries again (`bus::dial`).
const DIAL_AGAIN_MS: u64 = 100;
/// How often the shard threads look for expired keys (`hz`).
const EXPIRY_MS: u64 = 100;
/// How long the cluster may take to settle once the faults stop (`Sim::unsettled`).
const SETTLE_MS: u64 = 10_000;
/// The timeout of the clients' BLPOPs.
const BLPOP_TIMEOUT_MS: u64 = 300;
/// A request with no answer for this long has found a hang (proposals time out at 5 s).
const ANSWER_WITHIN_MS: u64 = 12_000;
/// How long a client waits for a reply before it tries another node (redis-py's
/// `socket_timeout`): the outcome of what it gave up on is unknown to it.
const CLIENT_TIMEOUT_MS: u64 = 1_000;

struct Node {
    cfg: Config,
    c: Arc<Cluster>,
    /// Its shard threads: thread `t` talks to thread `t` of every peer, as on the bus.
    threads: Vec<Thread>,
    /// It has started (a joining node exists before the cluster answers its join).
    member: bool,
    /// It left the cluster (`Fatal::Left`): its process ended for good.
    gone: bool,
    /// Its control thread's SWIM (`None` while it is not running).
    swim: Option<crate::control::Membership>,
}

impl Node {
    /// A node of `threads` shard threads, not started.
    fn new(cfg: Config, c: Arc<Cluster>, threads: usize, member: bool) -> Node {
        let layout = c.layout;
        Node {
            threads: (0..threads)
                .map(|t| Thread {
                    db: thread_db(layout, threads, t),
                    r: None,
                    last_step_ms: 0,
                })
                .collect(),
            cfg,
            c,
            member,
            gone: false,
            swim: None,
        }
    }
}

/// Every simulated node holds the cluster's secret: SWIM's datagrams are sealed and opened
/// (`transport::seal`) under the simulator's drops, delays, duplicates and partitions.
fn sealed(mut c: Cluster) -> Cluster {
    c.security.secret = Some(vec![0x5a; 32]);
    c
}

/// A membership change asked of the cluster as an operator asks it: `CLUSTER JOIN` from a new
/// node, `CLUSTER FORGET` of a member. Sent to thread 0 of a member, following `-NOTLEADER`,
/// and sent again (elsewhere, later) on an error or no answer, until answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admin {
    /// A new node joins (it gets the next member id).
    Join,
    /// The member leaves: it hands its replicas over, then its process ends.
    Remove(NodeId),
    /// `CLUSTER MOVE <vshard> <to>` (refused when `to` holds it already, or it moves); `to`
    /// `NodeId(0)`: a member the placement does not put it on when the move starts.
    Move {
        vshard: u16,
        to: NodeId,
    },
    /// `CLUSTER CANCELMOVE` of the last move started (refused once it finished).
    CancelLast,
    Drain(NodeId),
    Undrain(NodeId),
}

/// The membership change under way.
struct AdminState {
    /// `Join`'s node is made when the change starts.
    op: Admin,
    node: NodeId,
    /// (token, node asked, when): the request waiting for its answer.
    inflight: Option<(u64, NodeId, u64)>,
    /// Where to send it next (a `-NOTLEADER`'s answer), and when.
    target: Option<NodeId>,
    next_at: u64,
}

/// Admin requests' tokens: above the clients'.
const ADMIN_TOKEN: u64 = 1 << 62;
/// An admin request with no answer for this long is sent again.
const ADMIN_RETRY_MS: u64 = 3_000;

struct Thread {
    db: Db,
    /// `None` while the node is crashed.
    r: Option<Replicas>,
    last_step_ms: u64,
}

/// A log write not fsynced yet: (segment, offset, length).
type Unsynced = (u64, u64, u64);

/// A frame on the simulated network: (from, to, shard thread, bytes).
/// A connection's writes in flight: (from, to, shard thread).
type Link = (NodeId, NodeId, usize);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// The process is killed (and later restarted from its files).
    Crash,
    /// The machine loses power during a log batch: what was not fsynced is lost (and later
    /// it restarts from its files).
    PowerCut,
    /// The links between it (with others, up to a minority) and the rest drop everything
    /// (connections stay up): a network partition.
    Cut,
    /// The process stops (SIGSTOP, a long GC-like stall): nothing runs, nothing is lost.
    Pause,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Req {
    /// `SET k<key> <value>` and `GET k<key>`: a register, checked for linearizability.
    Set(u64),
    Get,
    /// `RPUSH q<key> <value>` and `BLPOP q<key> 0.3`: a queue, checked for no loss or
    /// duplication (`QueueLog`).
    Push(u64),
    Pop,
    /// `MULTI SET {t<key>}a <v> SET {t<key>}b <v> EXEC` and the same with GETs: a pair written
    /// and read together, checked for atomicity (both halves equal) and, as one register,
    /// for linearizability.
    TxSet(u64),
    TxGet,
    /// `SET x<key> <value> PX <ms>`: keys that expire through the leaders' expiry checks;
    /// checked by comparing the replicas.
    SetPx(u64),
    /// `SADD s<key>` of 16 new members and `SPOP s<key> 2`: sets that grow past the packed
    /// encoding into hash tables, whose layouts differ between replicas; checked by comparing
    /// the replicas' members and what the cluster holds across a restart of every node (SPOP
    /// once chose by layout: replicas and restarts popped other members).
    SetAdd(u64),
    SetPop,
    /// With `calvin_pairs`, a bank: `MULTI DECRBY <from> n INCRBY <to> n EXEC` between two of
    /// `ACCOUNTS` accounts in vShards led anywhere (the amount and the accounts drawn from
    /// the value and the key), and an audit reading every account in one transaction (an
    /// MGET split by key, or a MULTI of GETs): the accounts always sum to 0, or a transfer
    /// was seen in part.
    Transfer(u64),
    Audit,
}

/// The bank's accounts (`Req::Transfer`).
const ACCOUNTS: usize = 8;

impl Req {
    /// The history a register request goes to: plain keys first, then the transaction pairs.
    fn history(self, key: usize) -> usize {
        match self {
            Req::TxSet(_) | Req::TxGet => KEYS + key,
            _ => key,
        }
    }
}

/// What the clients saw of one queue.
#[derive(Default)]
struct QueueLog {
    /// Values pushed and acknowledged, pushed with an unknown outcome, and refused (not
    /// applied: they must never be seen).
    acked: BTreeSet<u64>,
    unknown: BTreeSet<u64>,
    refused: BTreeSet<u64>,
    /// Values acknowledged popped.
    popped: Vec<u64>,
    /// Pops whose outcome is unknown (a client gave up, a node crashed, `-UNKNOWN`): each may
    /// have taken a value nobody saw.
    lost_pops: u64,
}

struct Client {
    /// The node it sends to next (1-based).
    target: NodeId,
    /// The id of its request in flight (`Sim::requests`).
    inflight: Option<u64>,
    next_at: u64,
}

/// A request a node has not answered yet.
#[derive(Clone, Copy, Debug)]
struct Request {
    client: usize,
    key: usize,
    req: Req,
    node: NodeId,
    call: u64,
    /// The client stopped waiting (its timeout): the outcome is unknown to it.
    abandoned: bool,
    /// A BLPOP's timeout passed: its connection told the node to end the wait
    /// (`conn::blocking`), and waits for the answer.
    unblocked: bool,
}

struct Sim {
    seed: u64,
    rng: Rng,
    t0: Instant,
    now_ms: u64,
    dir: std::path::PathBuf,
    nodes: Vec<Node>,
    /// The in-memory link: writes in flight between shard threads, each due at its time.
    net: mem::Net<Link>,
    /// SWIM's datagrams in flight between nodes' control threads (`control.rs`).
    swim_net: mem::Net<(NodeId, NodeId)>,
    /// `Dead` verdicts SWIM published, over all nodes.
    swim_deaths: u64,
    /// Directed links that drop what they carry.
    cut: Vec<(NodeId, NodeId)>,
    /// A node that runs nothing (its messages wait for it), and one that just resumed.
    paused: Option<NodeId>,
    resumed: Option<NodeId>,
    /// A member whose frames are rewritten on the way (`mutate`): what a buggy or hostile
    /// peer that passed the handshake sends. Its receivers drop the connection on a frame
    /// they refuse, and it dials again.
    hostile: Option<NodeId>,
    /// Transaction pairs put their two keys in different vShards of one shard thread (run
    /// across vShards on groups of one: their effects in one log record).
    cross_pairs: bool,
    /// The rebalancer is on (sampling every 500 ms) on every node.
    rebalance: bool,
    /// Transaction pairs put their two keys in different vShards (of different shard
    /// threads, with two) and go as Calvin transactions (`Op::Txn`: a MULTI/EXEC of two
    /// SETs or GETs, or an MSET or MGET split by key), whatever node they are sent to; pops
    /// wait on their queue and a list of another vShard, each try a Calvin transaction.
    calvin_pairs: bool,
    mutated: u64,
    /// Entries the nodes applied at append (groups of one).
    direct_entries: u64,
    refused_frames: u64,
    /// Connections reset (`reset`).
    resets: u64,
    /// Per (node, shard thread): log writes not fsynced since, as (segment, offset, length).
    volatile: BTreeMap<(NodeId, usize), Vec<Unsynced>>,
    /// Per (node, shard thread): compactions' snapshot files the flush thread has yet to
    /// write behind the batches, in order (written at a seeded later step, or before the
    /// next files that must precede a batch; a crash loses them).
    behind: BTreeMap<(NodeId, usize), VecDeque<(u64, SnapshotFile)>>,
    /// Compactions' snapshot files written behind, and those lost to a crash.
    behind_written: u64,
    behind_lost: u64,
    /// The node whose power goes during its next log batch (`Fault::PowerCut`), and how many
    /// times that happened.
    power_cut: Option<NodeId>,
    power_cuts: u64,
    /// The power cut waits for a batch that makes a new segment (one in two).
    power_cut_on_create: bool,
    clients: Vec<Client>,
    /// Requests sent and not yet answered, by id (the job's token).
    requests: BTreeMap<u64, Request>,
    next_request: u64,
    /// The clients send nothing new (`finish`).
    clients_stopped: bool,
    next_value: u64,
    /// Per key, the history the clients saw.
    history: Vec<Vec<lincheck::Op<u64>>>,
    /// Per queue key, what the clients saw of it.
    queues: Vec<QueueLog>,
    /// Clients that gave up on a pop and disconnect: the node ends its wait (`Op::Unblock`).
    unblocks: Vec<(NodeId, usize, u64)>,
    /// Values acknowledged pushed and popped, over all queues (the report).
    queue_stats: (u64, u64),
    /// Per group, term → the node that led it in that term.
    leaders: Vec<BTreeMap<u64, NodeId>>,
    /// Connections (from, to): `from`'s dialer to `to`, whose reader takes what it sends.
    /// Made when both are up, `from` knows `to`'s address (a member in its view) and `to`
    /// accepts `from` (`bus::check_hello`'s rule: a member, or an id above every member it
    /// knows, which may have joined since).
    links: BTreeSet<(NodeId, NodeId)>,
    /// The writes in flight on the bulk lanes (`lanes.rs`), and their bytes sent.
    lane_net: mem::Net<lanes::LaneLink>,
    lane_bytes_sent: u64,
    /// Base copies installed as they were decoded on arrival (`staging.rs`).
    streamed_in: u64,
    /// Compactions written from captures, and the steps that ended with one under way.
    pub(super) captures: u64,
    pub(super) capture_steps: u64,
    /// Membership changes to make, each at its time (ms), one at a time.
    admin_queue: VecDeque<(u64, Admin)>,
    admin: Option<AdminState>,
    next_admin: u64,
    /// The member asked to leave that has not left yet.
    leaving: Option<NodeId>,
    /// The id the last `Admin::Move` was answered with.
    last_move: Option<u64>,
    /// What happened, for a failure's report.
    log: Vec<String>,
    /// Replies by kind: acknowledged, refused (not applied), unknown outcome.
    acked: u64,
    refused: u64,
    unknown: u64,
    /// Bank audits answered (each checked to sum to 0).
    audits: u64,
    /// With automatic repair on (`cluster-node-down-after-ms`): when (ms) a member is killed
    /// for good, and which one it was (`run_with_faults`).
    kill_at: Option<u64>,
    killed: Option<NodeId>,
}

impl Sim {
    fn new(seed: u64, nodes: usize, threads: usize) -> Sim {
        Sim::with(seed, nodes, threads, None, false, 0)
    }

    /// `new` with a replication factor (`None`: as many replicas as nodes, up to three),
    /// the rebalancer on or off, and automatic repair after `down_after_ms` (0: off).
    fn with(
        seed: u64,
        nodes: usize,
        threads: usize,
        rf: Option<u64>,
        rebalance: bool,
        down_after_ms: u64,
    ) -> Sim {
        // Per process and simulation: the scenarios run in parallel on the same seeds.
        let dir = std::env::temp_dir().join(format!(
            "shardline-sim-{}-{}-{seed:x}",
            std::process::id(),
            SIM_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let addrs: Vec<SocketAddr> = (0..nodes)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_001 + i as u16))
            .collect();
        let mut sim = Sim {
            seed,
            // Spread (splitmix64's finalizer): neighbouring seeds must not share a stream.
            rng: Rng::new({
                let z = (seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }),
            t0: Instant::now(),
            now_ms: 0,
            dir: dir.clone(),
            nodes: Vec::new(),
            net: mem::Net::default(),
            swim_net: mem::Net::default(),
            swim_deaths: 0,
            cut: Vec::new(),
            paused: None,
            resumed: None,
            hostile: None,
            cross_pairs: false,
            rebalance,
            calvin_pairs: false,
            mutated: 0,
            direct_entries: 0,
            refused_frames: 0,
            resets: 0,
            volatile: BTreeMap::new(),
            behind: BTreeMap::new(),
            behind_written: 0,
            behind_lost: 0,
            power_cut: None,
            power_cuts: 0,
            power_cut_on_create: false,
            clients: (0..6)
                .map(|i| Client {
                    target: NodeId(1 + i % nodes as u64),
                    inflight: None,
                    next_at: 0,
                })
                .collect(),
            requests: BTreeMap::new(),
            next_request: 1,
            clients_stopped: false,
            next_value: 1,
            history: vec![Vec::new(); 2 * KEYS],
            queues: (0..KEYS).map(|_| QueueLog::default()).collect(),
            unblocks: Vec::new(),
            queue_stats: (0, 0),
            leaders: Vec::new(),
            links: BTreeSet::new(),
            lane_net: mem::Net::default(),
            lane_bytes_sent: 0,
            streamed_in: 0,
            captures: 0,
            capture_steps: 0,
            admin_queue: VecDeque::new(),
            admin: None,
            next_admin: ADMIN_TOKEN,
            leaving: None,
            last_move: None,
            log: Vec::new(),
            acked: 0,
            audits: 0,
            refused: 0,
            unknown: 0,
            kill_at: None,
            killed: None,
        };
        for (i, addr) in addrs.iter().enumerate() {
            let cfg = Config {
                bind: addr.ip(),
                port: addr.port(),
                cores: (0..threads).collect(),
                data_dir: dir.join(format!("node-{}", i + 1)),
                vshards: 4,
                cluster_nodes: addrs.clone(),
                // (Fewer nodes: as many replicas as nodes, three once enough have joined.)
                cluster_replicas: rf.unwrap_or(if nodes < 3 { 0 } else { 3 }),
                // The production default: SWIM finds a node cut off first (`control.rs`).
                cluster_node_timeout_ms: Config::default().cluster_node_timeout_ms,
                // Every batch fsyncs, as in production; the fsyncs are only noted (`run_ops`).
                fsync: shardline_shards::wal::FsyncPolicy::Always,
                // Small segments: new ones are made and old ones deleted all along.
                wal_segment_bytes: 32 << 10,
                // Small logs: compactions (their files written behind the batches) and
                // snapshots sent to lagging followers all along.
                raft_log_memory_bytes: 64 << 10,
                cluster_node_down_after_ms: down_after_ms,
                ..Config::default()
            };
            let layout = VShardLayout::new(cfg.vshards).expect("a valid count");
            let c = Arc::new(sealed(Cluster::new(&cfg, layout).expect("a cluster")));
            sim.nodes.push(Node::new(cfg, c, threads, true));
        }
        sim.leaders = vec![BTreeMap::new(); sim.nodes[0].c.meta_group() as usize + 1];
        for id in (1..=nodes as u64).map(NodeId) {
            sim.start(id);
        }
        sim
    }

    fn now(&self) -> Now {
        Now {
            mono: self.t0 + Duration::from_millis(self.now_ms),
            unix_us: UNIX_START_US + self.now_ms * 1000,
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.slot()]
    }

    fn up(&self, id: NodeId) -> bool {
        self.nodes[id.slot()].threads[0].r.is_some()
    }

    /// Shard thread `t` of node `id`'s replicas (the node is up).
    fn replicas(&mut self, id: NodeId, t: usize) -> &mut Replicas {
        self.nodes[id.slot()].threads[t]
            .r
            .as_mut()
            .expect("a node that is up")
    }

    fn threads(&self) -> usize {
        self.nodes[0].threads.len()
    }

    fn ids(&self) -> impl Iterator<Item = NodeId> + use<> {
        (1..=self.nodes.len() as u64).map(NodeId)
    }

    fn note(&mut self, what: String) {
        self.log.push(format!("{:>7} ms  {what}", self.now_ms));
    }

    /// Starts (or restarts) node `id` from its data directory, as a process start does, and
    /// connects it with every live node both ways.
    fn start(&mut self, id: NodeId) {
        let now = self.now();
        let now_ms = self.now_ms;
        let seed = self.seed ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_ms;
        let rebalance = self.rebalance;
        let n = self.node(id);
        let layout = n.c.layout;
        n.c = Arc::new(sealed(if n.cfg.cluster_join.is_some() {
            // Its cluster.conf, kept when the cluster answered its join.
            let j = join::load_or_join(&n.cfg, &Default::default()).expect("cluster.conf");
            Cluster::joined(&n.cfg, layout, &j).expect("a cluster")
        } else {
            Cluster::new(&n.cfg, layout).expect("a cluster")
        }));
        n.member = true;
        let threads = n.threads.len();
        for (t, th) in n.threads.iter_mut().enumerate() {
            th.db = thread_db(layout, threads, t);
            let mut r = Replicas::open(n.c.clone(), t, &n.cfg, &mut th.db, seed, now.mono)
                .unwrap_or_else(|e| panic!("node {id} does not restart: {e}"));
            r.rebalance_cfg = super::load::RebalanceConfig {
                on: rebalance,
                period: Duration::from_millis(500),
                max_open: 2,
            };
            // Commands take no time here (the wall clock would make runs differ): the
            // rebalancer weighs commands and bytes. (Its CPU term: `load.rs`'s tests.)
            r.meter.set_clock(|| 0);
            // Captures of a few dozen bytes a step, each ending at its fourth step: every
            // compaction's walk spans steps, with writes, crashes and installs in between.
            r.captures.step_bytes = 64;
            r.captures.fixed_steps = Some(4);
            th.r = Some(r);
            th.last_step_ms = now_ms;
        }
        self.start_swim(id);
        self.connect_known();
    }

    /// Kills node `id`: what it has not written is gone, its connections end, its clients'
    /// requests have unknown outcomes.
    fn crash(&mut self, id: NodeId) {
        self.note(format!("crash node {id}"));
        // What it wrote stays (the page cache survives a process); what its flush thread had
        // yet to write is lost.
        self.volatile.retain(|&(n, _), _| n != id);
        for t in 0..self.threads() {
            self.behind_lost += self.behind.remove(&(id, t)).map_or(0, |q| q.len() as u64);
        }
        for th in &mut self.node(id).threads {
            th.r = None;
        }
        self.node(id).swim = None;
        self.net.retain(|&(from, to, _)| from != id && to != id);
        for p in self.ids() {
            // Its connections end: its peers' readers of it see so; their dialers to it
            // fail and retry (`connect_known`).
            self.links.remove(&(p, id));
            if self.links.remove(&(id, p)) && self.up(p) {
                for t in 0..self.threads() {
                    self.replicas(p, t).peer_disconnected(id);
                }
            }
        }
        if let Some(a) = self.admin.as_mut()
            && a.inflight.is_some_and(|(_, node, _)| node == id)
        {
            // The answer went with it: ask again.
            a.inflight = None;
        }
        // Its requests are gone with it: their outcome is unknown.
        let lost: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, q)| q.node == id)
            .map(|(&rid, _)| rid)
            .collect();
        for rid in lost {
            self.give_up(rid);
            self.requests.remove(&rid);
        }
    }

    /// One millisecond: deliver what is due, step the nodes that have work or a tick due,
    /// send what they queued, move the clients.
    fn tick(&mut self) {
        self.now_ms += 1;
        let now = self.now();
        if let Some(id) = self.resumed.take() {
            // Its clients first, then its step, then the messages held for it.
            self.clients_move();
            self.step(id);
        }
        let mut held = Vec::new();
        while let Some(((from, to, t), bytes)) = self.net.next_due(self.now_ms) {
            if !self.up(to) || self.cut.contains(&(from, to)) || !self.linked(from, to) {
                continue;
            }
            if self.paused == Some(to) {
                held.push((from, to, t, bytes));
                continue;
            }
            let bytes = if self.hostile == Some(from) {
                self.mutate(bytes)
            } else {
                bytes
            };
            let view = self.nodes[to.slot()].c.clone();
            let r = self.nodes[to.slot()].threads[t].r.as_mut().expect("up");
            // Each write carries whole frames: a reader of its own reads them as the TCP
            // reader would.
            let mut frames = Frames::new(link::FRAME_BYTES_MAX, bytes);
            if let Err(e) = bus::deliver(r, from, &mut frames, now.mono) {
                assert!(
                    self.hostile == Some(from) || view.was_removed(from),
                    "seed {:#x}: node {to} refused node {from}'s batch: {e}",
                    self.seed
                );
                // The reader ends the connection; the peer's dialer connects again
                // (`connect_known`, where a removed node is refused and retires).
                self.refused_frames += 1;
                r.peer_disconnected(from);
                self.links.remove(&(from, to));
                if self.hostile.is_none() {
                    self.note(format!("node {to} refused node {from}'s batch: {e}"));
                }
            }
        }
        for (from, to, t, bytes) in held {
            // Read once the node runs again.
            self.net.send(self.now_ms + 1, (from, to, t), bytes);
        }
        self.sync_lanes();
        self.deliver_lanes();
        self.swim_tick();
        for id in self.ids() {
            if self.paused != Some(id) {
                self.step(id);
            }
        }
        if std::env::var("SIM_TRACE").is_ok() && self.now_ms.is_multiple_of(500) {
            let led: Vec<Vec<NodeId>> = (1..=self.nodes.len() as u64)
                .map(NodeId)
                .map(|id| {
                    (0..self.nodes[0].c.layout.count())
                        .map(|v| self.nodes[id.slot()].c.leader(VShardId(v as u16)))
                        .collect()
                })
                .collect();
            eprintln!(
                "TRACE {} ms: acked {} refused {} unknown {} inflight {:?} routing {led:?}",
                self.now_ms,
                self.acked,
                self.refused,
                self.unknown,
                self.clients
                    .iter()
                    .map(|c| c
                        .inflight
                        .map(|r| (self.requests[&r].req, self.requests[&r].node)))
                    .collect::<Vec<_>>()
            );
        }
        if self.now_ms.is_multiple_of(DIAL_AGAIN_MS) {
            self.connect_known();
        }
        if self.now_ms.is_multiple_of(HEARTBEAT_MS) {
            self.heartbeats();
        }
        if self.now_ms.is_multiple_of(EXPIRY_MS) {
            // The shard threads' active expiry (`shard::ticker`): leaders propose checks.
            let unix_us = self.now().unix_us;
            for id in self.ids() {
                if self.paused == Some(id) {
                    continue;
                }
                for th in &mut self.nodes[id.slot()].threads {
                    if let Some(r) = th.r.as_mut() {
                        r.propose_expiry(&mut th.db, unix_us, 20);
                    }
                }
            }
        }
        self.clients_move();
        self.admin_move();
    }

    /// What each dialer sends when it has had nothing to send for a while (`bus::dial`): an
    /// empty batch, so a peer that shares no group with this node still hears from it.
    fn heartbeats(&mut self) {
        let mut hb = Vec::new();
        frame::encode_batch(&[], &mut hb);
        for from in self.ids() {
            if !self.up(from) || self.paused == Some(from) {
                continue;
            }
            for to in self.ids() {
                if to != from && !self.cut.contains(&(from, to)) && self.linked(from, to) {
                    for t in 0..self.threads() {
                        self.net.send(self.now_ms + 1, (from, to, t), hb.clone());
                    }
                }
            }
        }
    }

    fn step(&mut self, id: NodeId) {
        for t in 0..self.threads() {
            self.step_thread(id, t);
        }
    }

    /// One driver step of shard thread `t` of node `id`, if it has work or a tick is due.
    fn step_thread(&mut self, id: NodeId, t: usize) {
        let now = self.now();
        let now_ms = self.now_ms;
        let n = &mut self.nodes[id.slot()].threads[t];
        let Some(r) = n.r.as_mut() else { return };
        if !std::mem::take(&mut r.woken) && now_ms < n.last_step_ms + TICK.as_millis() as u64 {
            return;
        }
        n.last_step_ms = now_ms;
        let streamed = r.streamed_in;
        let step = r
            .start_step(&mut n.db, now.mono, now.unix_us / 1000)
            .unwrap_or_else(|e| panic!("node {id}: {e}"));
        self.streamed_in += r.streamed_in - streamed;
        r.undirect();
        let mut log = r.log.take().expect("one flush at a time");
        // The driver serves its connections while the flush thread writes the batch: their
        // jobs propose into the next step (and a group of one applies them at once, ahead of
        // its commit: what its compaction cut and held replies are for).
        if self.rng.below(2) == 0 {
            self.clients_move();
        }
        // The flush thread writes compactions' files in order with the rest: now, or at a
        // later step, but before any file that must precede a batch.
        let queue = self.behind.entry((id, t)).or_default();
        queue.extend(step.behind);
        let now_too = self.rng.below(4) == 0;
        let n = &mut self.nodes[id.slot()].threads[t];
        let r = n.r.as_mut().expect("a node stepping is up");
        let queue = self.behind.get_mut(&(id, t)).expect("made above");
        if now_too || !step.before.is_empty() {
            for (token, f) in queue.drain(..) {
                write_file(&r.snap_dir, &f).unwrap_or_else(|e| panic!("node {id}: {e}"));
                r.snapshot_written(token);
                self.behind_written += 1;
            }
        }
        for f in step.before {
            f().unwrap_or_else(|e| panic!("node {id}: {e}"));
        }
        if let Some(batch) = step.batch {
            // The power may go during the batch: only its first operations ran.
            let has_create = batch
                .ops
                .iter()
                .any(|op| matches!(op, shardline_shards::wal::Io::Create { .. }));
            let cut = (self.power_cut == Some(id) && (has_create || !self.power_cut_on_create))
                .then(|| {
                    // Anywhere; often just after a new segment was made (its header not fsynced).
                    let created = batch
                        .ops
                        .iter()
                        .position(|op| matches!(op, shardline_shards::wal::Io::Create { .. }));
                    match created {
                        Some(i) if self.rng.below(2) == 0 => i + 1,
                        _ => self.rng.below(batch.ops.len() as u64 + 1) as usize,
                    }
                });
            let volatile = self.volatile.entry((id, t)).or_default();
            run_ops(&mut log, batch, volatile, cut).unwrap_or_else(|e| panic!("node {id}: {e}"));
            if cut.is_some() {
                r.log = Some(log);
                return self.power_fail(id);
            }
        }
        r.log = Some(log);
        let captured = r.captures.done;
        let res = r.finish_step(&mut n.db, now.mono, step.readies);
        self.captures += r.captures.done - captured;
        self.capture_steps += (r.captures.running() > 0) as u64;
        r.undirect();
        self.direct_entries += std::mem::take(&mut r.direct.appended);
        match res {
            Ok(()) => {}
            Err(Fatal::Left) => return self.left(id),
            Err(e) => panic!("node {id}: {e}"),
        }
        // One leader per term per group (a member that forges its votes can break that: Raft
        // trusts its members; with one, only "no node goes down" is checked).
        for (g, grp) in r.groups.iter().enumerate() {
            let Some(grp) = grp else { continue };
            if grp.role() == raft::Role::Leader {
                let prev = *self.leaders[g].entry(grp.term()).or_insert(id);
                assert!(
                    prev == id || self.hostile.is_some(),
                    "seed {:#x}: group {g} has two leaders ({prev} and {id}) in term {}",
                    self.seed,
                    grp.term()
                );
            }
        }
        let r = self.replicas(id, t);
        let mut sent = Vec::new();
        for (p, peer) in r.peers.iter_mut().enumerate() {
            if !peer.out.is_empty() {
                sent.push((NodeId::of_slot(p), std::mem::take(&mut peer.out)));
            }
        }
        // Scripts whose vShards settled run, as `Shard::run_script_waits` runs them.
        let seed = self.rng.next_u64();
        let n = &mut self.nodes[id.slot()].threads[t];
        let r = n.r.as_mut().expect("up");
        let scripts_ended = (!r.script_waits.is_empty() || !r.script_deferred.is_empty())
            && (r.run_waiting_scripts(&mut n.db, now, seed) || r.script_waits.is_empty());
        let done: Vec<PendingJob> = r.pending.take_finished().collect();
        // Calvin's messages for the node's other threads (its mailboxes), as `Shard` hands
        // them on; the jobs that waited for keys a transaction held, once one executed, as
        // `Shard::run_deferred` runs them again; those that waited behind scripts.
        let mail: Vec<_> = r.calvin.outbox.drain(..).collect();
        let mut again = if std::mem::take(&mut r.calvin.released) {
            std::mem::take(&mut r.calvin.deferred)
        } else {
            VecDeque::new()
        };
        if scripts_ended {
            again.extend(std::mem::take(&mut r.script_deferred));
        }
        for (t2, msg) in mail {
            self.replicas(id, t2).calvin_receive(msg);
        }
        self.sync_lanes();
        self.flush_lanes(id, t);
        for (to, bytes) in sent {
            if to.0 as usize > self.nodes.len()
                || self.cut.contains(&(id, to))
                || !self.linked(id, to)
            {
                continue;
            }
            let delay = 1 + self.rng.below(4);
            self.net.send(self.now_ms + delay, (id, to, t), bytes);
        }
        for job in done {
            if job.token != NO_REPLY {
                self.answered(id, job);
            }
        }
        for job in again {
            self.submit_on(id, t, job);
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A shard thread's keyspace: the vShards thread `t` of `threads` owns.
fn thread_db(layout: VShardLayout, threads: usize, t: usize) -> Db {
    Db::new(
        layout,
        (0..layout.count())
            .map(|v| VShardId(v as u16))
            .filter(|&v| layout.owner_thread(v, threads) == t),
    )
}
