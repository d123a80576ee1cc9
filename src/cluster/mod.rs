//! A replicated cluster as this node sees it (issue 3): the members (their addresses), where
//! every vShard's replicas are and are to be, the leader of every vShard this node knows (the
//! routing table the connections read: from its own replicas and the leaders' hints), and the
//! sockets the bus acceptor hands to shard threads.
//!
//! A cluster starts from `cluster-nodes`, in the same order on every node: member `i`
//! (0-based) has id `i + 1` and its cluster bus on its client port + 10000. The cluster id is a
//! hash of the list, the vShard count and the replication factor, so differently configured
//! nodes refuse each other's handshakes. Nodes that join later (`join.rs`) get the next ids from
//! the metadata group (`replica/meta.rs`), which publishes every member here.

pub mod bus;
pub mod hints;
pub mod join;
pub mod lanes;
pub mod progress;
pub mod replica;
pub mod secure;

pub use hints::{Hint, decode_hints, encode_hints};

use atomic_waker::AtomicWaker;
use shardline_shards::placement::{self, NodeSpec};
use shardline_shards::slot::{Slot, VShardId, VShardLayout};
use shardline_transport::wire::{Reader, WireError};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The group id of the bus messages that carry leader hints (`encode_hints`): no vShard has it.
pub const HINTS_GROUP: u32 = u32::MAX;
/// Member ids fit in the low 16 bits of a routing entry, terms in the rest.
const LEADER_MASK: u64 = 0xFFFF;
const TERM_MAX: u64 = u64::MAX >> 16;

const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The bit set of member ids.
pub fn mask(ids: impl Iterator<Item = NodeId>) -> u64 {
    ids.fold(0, |m, id| m | bit(id))
}

fn ids(mask: u64) -> Vec<NodeId> {
    (1..=NODES_MAX as u64)
        .map(NodeId)
        .filter(|&id| mask & bit(id) != 0)
        .collect()
}

/// Member `id`'s bit in a replica set.
pub(crate) fn bit(id: NodeId) -> u64 {
    debug_assert!((1..=NODES_MAX as u64).contains(&id.0));
    1u64 << (id.slot() & 63)
}

fn pack_leader(term: u64, leader: NodeId) -> u64 {
    debug_assert!(leader.0 <= LEADER_MASK);
    term.min(TERM_MAX) << 16 | (leader.0 & LEADER_MASK)
}

/// The group id of the bus messages that tell a node a committed membership left it out of a
/// group (`encode_removed`).
pub const REMOVED_GROUP: u32 = u32::MAX - 1;
/// The group id of the bus messages that carry Calvin's messages between nodes
/// (`shardline_shards::calvin::msg`: submissions, reads, replies, asks, executed marks),
/// each naming the shard thread it is for.
pub const CALVIN_GROUP: u32 = u32::MAX - 2;
/// "A committed membership of group `g`, set by entry `index`, leaves you out": 12 bytes each.
pub fn encode_removed(g: u32, index: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
}

pub fn decode_removed(b: &[u8], groups: usize) -> Result<Vec<(u32, u64)>, String> {
    let mut r = Reader::new(b);
    let mut notices = Vec::with_capacity(b.len() / 12);
    while !r.is_empty() {
        let read = |r: &mut Reader| -> Result<(u32, u64), WireError> { Ok((r.u32()?, r.u64()?)) };
        let (g, index) = read(&mut r).map_err(|e| format!("a removal notice: {e}"))?;
        if g as usize >= groups {
            return Err(format!(
                "a removal notice for group {g}, which does not exist"
            ));
        }
        notices.push((g, index));
    }
    Ok(notices)
}

/// The cluster bus port is the client port plus this, as in Redis Cluster.
pub const BUS_PORT_OFFSET: u16 = 10000;

pub use shardline_shards::ids::NodeId;
pub use shardline_shards::swim::State as SwimState;

/// Member ids are 1..=`NODES_MAX`: per-member tables are allocated at this size up front, so a
/// node joining changes no table's shape, and a vShard's replicas fit in a `u64` bit set.
pub const NODES_MAX: usize = shardline_shards::meta::NODES_MAX as usize;

/// Where a member listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberAddrs {
    pub client: SocketAddr,
    pub bus: SocketAddr,
}

pub struct Cluster {
    /// This node's member id.
    pub me: NodeId,
    /// The members' addresses, by id - 1 (`None`: no such member). Read off the request path
    /// (redirects, CLUSTER replies, dialing); written when the membership changes.
    members: Mutex<Vec<Option<MemberAddrs>>>,
    /// Bumped whenever `members` changes, so shard threads notice new peers to dial.
    pub members_version: AtomicU64,
    /// The highest member id this node has known (ids are never reused): a peer with a higher
    /// id joined after what this node's metadata has applied, and is accepted so the metadata
    /// can catch up; a lower id that is not a member is refused (removed, or not yet in the
    /// applied metadata: `was_removed` tells which).
    highest_member: AtomicU64,
    /// The applied metadata's next member id (0 until a metadata state is applied): an id below
    /// it that is not in `members` was removed (`was_removed`). Unlike `highest_member`, it
    /// comes from the same applied state as `members`, so a joined node that applies a metadata
    /// snapshot older than what it learned at its join never takes a newer member for removed.
    meta_next_id: AtomicU64,
    pub cluster_id: [u8; 16],
    /// Per vShard, the bit set (bit `id - 1`) of the voters of its group as this node last
    /// heard (its own replica's membership, or the leader's hints): routing's replica lists.
    replicas: Vec<AtomicU64>,
    /// Per vShard, the bit set of the members that are to hold its replicas (the metadata's
    /// placement): the vShards' leaders move their groups there.
    targets: Vec<AtomicU64>,
    /// Per vShard, the member that should lead it (the first of its placement; 0: unknown):
    /// placement spreads these evenly, and leaders hand over to them (`moves::drive_moves`).
    preferred: Vec<AtomicU64>,
    /// Per vShard, the members its group started with: the static list's placement (empty on
    /// a node that joined). Never changes.
    initial: Vec<Vec<NodeId>>,
    pub layout: VShardLayout,
    pub threads: usize,
    /// The replication factor the metadata aims for as the cluster grows: `cluster-replicas`,
    /// or 3 when it is not set (a 1-node cluster becomes RF 3 once it has 3 nodes).
    pub rf_wanted: u8,
    /// The static member list this cluster started from (`cluster-nodes`), `(client, bus)` by
    /// id - 1; empty on a node that joined (its metadata comes from the metadata group).
    pub bootstrap: Vec<(SocketAddr, SocketAddr)>,
    /// Per vShard, then the metadata group (`meta_group`), `term << 16 | leader`: the leader this node knows of (0: none) and the term
    /// it leads in, from this node's replica or, for vShards it does not replicate, from the
    /// leaders' hints (`HINTS_GROUP`). Only a later term, or a first leader for the same term,
    /// replaces it.
    leaders: Vec<AtomicU64>,
    /// Bumped whenever a leader hint changes (CLUSTER INFO's epoch).
    pub epoch: AtomicU64,
    /// Per member (by id - 1, `NODES_MAX` of them), whether this node currently hears from it.
    pub up: Vec<AtomicBool>,
    /// Per member (by id - 1), SWIM's verdict as the control thread last published it
    /// (`control::Membership`): `state << 32 | incarnation`, the state as `liveness_code`.
    /// All `Alive` at 0 until the control thread says otherwise.
    liveness: Vec<AtomicU64>,
    /// Bumped after each verdict is published: the shard threads compare it each tick and
    /// follow what changed (`Replicas::follow_liveness`).
    pub liveness_epoch: AtomicU64,
    /// SWIM's counters, this node's incarnation and local health, as the control thread last
    /// published them (INFO's `swim_*`, `control::SWIM_NAMES`).
    pub swim_stats: [AtomicU64; crate::control::SWIM_FIELDS],
    /// The credentials on the cluster's channels (set once at start, before any channel).
    pub security: secure::Security,
    /// Where the control thread is with telling the members this node leaves (its
    /// constants; `control::leave`).
    pub swim_leave: std::sync::atomic::AtomicU8,
    /// Sockets accepted by the bus, handed to the shard thread they name.
    pub inbound: Vec<Mutex<Vec<Accepted>>>,
    pub inbound_waker: Vec<AtomicWaker>,
    pub node_timeout_ms: u64,
    /// `cluster-node-down-after-ms`: a member SWIM holds dead this long is removed by the
    /// metadata leader (0: never; `Replicas::repair`).
    pub node_down_after_ms: u64,
    /// On the metadata leader: vShards whose lack of a live majority blocks a repair (INFO
    /// `cluster_repair_blocked`), and the removals it proposed (`cluster_repairs`).
    pub repair_blocked: AtomicU64,
    pub repairs: AtomicU64,
    /// Connections to the client port that came under the cluster's TLS (joining nodes,
    /// other nodes' proxied commands), and TLS handshakes there that failed.
    pub tls_in: AtomicU64,
    pub tls_refused: AtomicU64,
    /// Per shard thread, the vShard replicas it drives (INFO's `cluster_vshard_replicas`).
    pub hosted: Vec<std::sync::atomic::AtomicUsize>,
    /// Per shard thread, the groups it leads that are not yet where the metadata places them
    /// (INFO's `cluster_moves_pending`; 0 on every node: the cluster is balanced).
    pub moving: Vec<std::sync::atomic::AtomicUsize>,
    /// `cluster-routing proxy`: forward commands to their leader instead of answering MOVED.
    pub proxy: bool,
    /// Whether this node's metadata replica knows a leader and has applied all it knows
    /// committed (thread 0 sets it each step): until then its placement may be an old one
    /// (a restart replaying the log), and no group is moved toward it.
    pub meta_current: AtomicBool,
    /// Where this node writes that it was removed from the cluster (`REMOVED_FILE`).
    removed_marker: std::path::PathBuf,
    /// This node's metadata said it is leaving (`RemoveNode`); set by thread 0, never cleared.
    pub leaving: AtomicBool,
    /// The transactions across vShards sequenced and not yet forgotten (`replica/calvin/`).
    pub calvin: replica::calvin::Stream,
    /// Per shard thread: its bulk hub's counters (`migrate::hub::Stats`), published by the
    /// thread's driver step, summed by INFO.
    pub bulk: Vec<BulkSlot>,
    /// The function libraries (FUNCTION LOAD) as this node's metadata group applied them:
    /// every shard thread's FCALL reads them (`shardline_shards::script::functions`).
    pub functions: std::sync::Arc<shardline_shards::script::functions::Registry>,
    /// ACL users (and ACL LOG): the configuration's until the metadata group holds the
    /// cluster's (`replica/meta.rs`), then those, the same on every node.
    pub acl: crate::acl::Acl,
    /// Per vShard, its leader's last word on its learners and base copy (`progress.rs`).
    seen: Vec<progress::Seen>,
    /// Per group (the metadata group last), its replica here, if any (`progress::Held`).
    pub held: Vec<progress::Held>,
    /// What makes RDMA queue pairs for the bulk lanes (`lanes.rs`), if this node has RDMA
    /// and offers it (`cluster-bulk-transports`), and what INFO says of it.
    pub rdma: Option<std::sync::Arc<dyn shardline_transport::rdma::Provider + Send + Sync>>,
    pub rdma_status: String,
    /// This node's certificate for the bulk lanes' QUIC, if it offers QUIC
    /// (`cluster-bulk-transports`), and what INFO says of it.
    pub quic: Option<std::sync::Arc<shardline_transport::quic::Identity>>,
    pub quic_status: String,
    /// The metadata's move records as thread 0 applied them (`CLUSTER MOVES`).
    moves: Mutex<Vec<shardline_shards::meta::MoveRec>>,
}

/// One shard thread's bulk counters as last published (`Cluster::bulk`): bytes of copies
/// received and sent, copies installed here and by targets, sessions under way each way,
/// windows resent, copies restarted, chunks refused, lane connections on RDMA, copies that
/// streamed from snapshot files, copies received that were decoded as they came, lane
/// connections on QUIC, time lanes waited for `bulk-thread-share`, snapshot files replaced
/// after failing a copy; and the compactions' captures (`replica/capture.rs`): written whole,
/// under way, and the longest step of their walks and writes.
#[derive(Default)]
pub struct BulkSlot(pub [AtomicU64; BULK_FIELDS]);

pub const BULK_FIELDS: usize = 18;
/// INFO's names of `BulkSlot`'s fields, in order.
pub const BULK_NAMES: [&str; BULK_FIELDS] = [
    "bulk_bytes_in",
    "bulk_bytes_out",
    "bulk_copies_in",
    "bulk_copies_out",
    "bulk_sessions_in",
    "bulk_sessions_out",
    "bulk_resends",
    "bulk_restarts",
    "bulk_bad_chunks",
    "bulk_rdma_lanes",
    "bulk_copies_from_files",
    "bulk_copies_streamed_in",
    "bulk_quic_lanes",
    "bulk_share_waited_ms",
    "bulk_snapshots_rewritten",
    "snapshot_captures",
    "snapshot_captures_running",
    "snapshot_capture_step_max_us",
];

impl Cluster {
    /// `BULK_NAMES` as INFO lines, summed over the shard threads (the largest of a `_max`).
    pub fn bulk_info(&self) -> String {
        let mut t = String::new();
        for (i, name) in BULK_NAMES.iter().enumerate() {
            let each = self.bulk.iter().map(|s| s.0[i].load(Ordering::Relaxed));
            let v: u64 = if name.contains("_max") {
                each.max().unwrap_or(0)
            } else {
                each.sum()
            };
            t.push_str(&format!("{name}:{v}\r\n"));
        }
        t
    }
}

/// An accepted connection: the peer, its socket (with its TLS session and what came after
/// its hello), and whether it is a bulk lane (`lanes.rs`) rather than the bus.
pub type Accepted = (NodeId, shardline_transport::link::tcp::Accepted, bool);

/// How a node learned that it is no longer a member (`Cluster::retire`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retired {
    /// It was asked to leave and has handed every replica over.
    Left,
    /// Member `by` refused its handshake as removed: it was removed while it was away (dead or
    /// cut off), its replicas were made again elsewhere and what it holds is stale.
    RemovedWhileAway { by: NodeId },
}

/// The file in `data-dir` a node removed from its cluster leaves behind: start-up refuses while
/// it is there (the node's copy of the cluster's data is gone and its member id retired).
pub const REMOVED_FILE: &str = "REMOVED";

/// A cluster id as written in `cluster.conf`, `CLUSTER JOIN` answers and messages: 32 lowercase
/// hex digits.
pub fn cluster_id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses to start a node whose data directory says it was removed from its cluster.
pub fn check_not_removed(data_dir: &std::path::Path) -> Result<(), String> {
    let path = data_dir.join(REMOVED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(why) => Err(format!(
            "{}: {} To start a new node here, empty the data directory (it holds no data the cluster needs) and join again.",
            path.display(),
            why.trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl Cluster {
    /// This node is out of the cluster: writes `REMOVED` into its data directory (start-up
    /// refuses while it is there) and ends the process, with status 0 after a leave it was
    /// asked for and 1 when it came back after being removed (it did not get to serve). Safe
    /// from any thread: the first caller exits, later ones wait for it.
    pub fn retire(&self, how: Retired) -> ! {
        static EXITING: AtomicBool = AtomicBool::new(false);
        if EXITING.swap(true, Ordering::AcqRel) {
            loop {
                std::thread::park();
            }
        }
        let hex = cluster_id_hex(&self.cluster_id);
        let (why, status) = match how {
            Retired::Left => (
                format!(
                    "this node (member {}) was removed from cluster {hex} and handed all its replicas to the other members.",
                    self.me
                ),
                0,
            ),
            Retired::RemovedWhileAway { by } => (
                format!(
                    "this node (member {}) was removed from cluster {hex} while it was away (member {by} refused it as removed); its replicas were made again on the other members and the data here is stale.",
                    self.me
                ),
                1,
            ),
        };
        if let Err(e) = std::fs::write(&self.removed_marker, format!("{why}\n")) {
            tracing::error!(
                "cannot write {}: {e}; a restart would find stale replicas",
                self.removed_marker.display()
            );
        }
        tracing::warn!(member = %self.me, "{why} Exiting.");
        eprintln!("shardline: {why} Exiting.");
        std::process::exit(status);
    }

    pub fn new(cfg: &crate::config::Config, layout: VShardLayout) -> Result<Cluster, String> {
        let nodes = cfg.cluster_nodes.clone();
        if nodes.len() > NODES_MAX {
            return Err(format!("at most {NODES_MAX} members, not {}", nodes.len()));
        }
        let me = NodeId::of_slot(
            nodes
                .iter()
                .position(|a| *a == cfg.listen_addr())
                .ok_or("this node is not in cluster-nodes")?,
        );
        let threads = cfg.cores.len();
        let specs: Vec<NodeSpec> = (1..=nodes.len() as u64)
            .map(|id| NodeSpec {
                id: NodeId(id),
                threads: threads as u16,
            })
            .collect();
        let rf = cfg.replicas() as u8;
        let placement = placement::place(&specs, layout.count() as usize, rf)
            .map_err(|e| format!("cannot place replicas: {e:?}"))?;
        let mut h = Vec::new();
        for a in &nodes {
            h.extend_from_slice(a.to_string().as_bytes());
            h.push(b',');
        }
        h.extend_from_slice(&layout.count().to_le_bytes());
        h.push(rf);
        let a = crc32c::crc32c(&h);
        let b = crc32c::crc32c_append(a, b"shardline-cluster");
        let c = crc32c::crc32c_append(b, &h);
        let d = crc32c::crc32c_append(c, b"id");
        let mut cluster_id = [0u8; 16];
        for (i, x) in [a, b, c, d].iter().enumerate() {
            cluster_id[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
        }
        let bus = if cfg.cluster_bus_nodes.is_empty() {
            nodes
                .iter()
                .map(|a| SocketAddr::new(a.ip(), a.port() + BUS_PORT_OFFSET))
                .collect()
        } else {
            cfg.cluster_bus_nodes.clone()
        };
        let bootstrap: Vec<_> = nodes.iter().copied().zip(bus).collect();
        let members: Vec<_> = (1..).map(NodeId).zip(bootstrap.iter().copied()).collect();
        let rf_wanted = match cfg.cluster_replicas {
            0 => 3,
            n => n as u8,
        };
        let mut cl = Cluster::assemble(cfg, layout, me, rf_wanted, cluster_id, bootstrap, &members);
        cl.initial = placement
            .replicas
            .iter()
            .map(|set| set.iter().map(|r| r.node).collect())
            .collect();
        cl.set_targets(&placement.replicas);
        for (v, set) in placement.replicas.iter().enumerate() {
            cl.set_replicas(VShardId(v as u16), mask(set.iter().map(|r| r.node)));
        }
        Ok(cl)
    }

    /// The parts every node has: tables sized for `NODES_MAX` members, no leader known.
    fn assemble(
        cfg: &crate::config::Config,
        layout: VShardLayout,
        me: NodeId,
        rf_wanted: u8,
        cluster_id: [u8; 16],
        bootstrap: Vec<(SocketAddr, SocketAddr)>,
        known: &[(NodeId, (SocketAddr, SocketAddr))],
    ) -> Cluster {
        let (rdma, rdma_status) = lanes::rdma_for(cfg.bulk_rdma, cfg.cluster_tls_ca_file.is_some());
        let (quic, quic_status) = lanes::quic_for(cfg.bulk_quic);
        let mut members = vec![None; NODES_MAX];
        for &(id, (client, bus)) in known {
            members[id.slot()] = Some(MemberAddrs { client, bus });
        }
        let threads = cfg.cores.len();
        Cluster {
            me,
            removed_marker: cfg.data_dir.join(REMOVED_FILE),
            leaving: AtomicBool::new(false),
            meta_current: AtomicBool::new(false),
            rf_wanted,
            bootstrap,
            members: Mutex::new(members),
            members_version: AtomicU64::new(1),
            highest_member: AtomicU64::new(known.iter().map(|k| k.0).max().unwrap_or(me).max(me).0),
            meta_next_id: AtomicU64::new(0),
            cluster_id,
            replicas: (0..layout.count()).map(|_| AtomicU64::new(0)).collect(),
            targets: (0..layout.count()).map(|_| AtomicU64::new(0)).collect(),
            preferred: (0..layout.count()).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..layout.count()).map(|_| Default::default()).collect(),
            held: (0..=layout.count()).map(|_| Default::default()).collect(),
            moves: Mutex::new(Vec::new()),
            initial: vec![Vec::new(); layout.count() as usize],
            layout,
            threads,
            leaders: (0..=layout.count()).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(1),
            up: (0..NODES_MAX)
                .map(|i| AtomicBool::new(NodeId::of_slot(i) == me))
                .collect(),
            liveness: (0..NODES_MAX).map(|_| AtomicU64::new(0)).collect(),
            liveness_epoch: AtomicU64::new(0),
            swim_stats: Default::default(),
            security: Default::default(),
            swim_leave: Default::default(),
            inbound: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
            inbound_waker: (0..threads).map(|_| AtomicWaker::new()).collect(),
            node_timeout_ms: cfg.cluster_node_timeout_ms,
            node_down_after_ms: cfg.cluster_node_down_after_ms,
            repair_blocked: AtomicU64::new(0),
            repairs: AtomicU64::new(0),
            tls_in: AtomicU64::new(0),
            tls_refused: AtomicU64::new(0),
            hosted: (0..threads)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            moving: (0..threads)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            proxy: cfg.cluster_proxy,
            rdma,
            rdma_status,
            quic,
            quic_status,
            calvin: replica::calvin::Stream::new(layout.count() as usize),
            bulk: (0..threads).map(|_| BulkSlot::default()).collect(),
            functions: std::sync::Arc::default(),
            acl: crate::acl::Acl::default(),
        }
    }

    /// A node that joined a running cluster (`cluster-join`): the members it was told of; the
    /// replica sets arrive with the metadata group's snapshot.
    pub fn joined(
        cfg: &crate::config::Config,
        layout: VShardLayout,
        j: &join::Joined,
    ) -> Result<Cluster, String> {
        let known: Vec<_> = j.members.iter().map(|&(id, c, b)| (id, (c, b))).collect();
        Ok(Cluster::assemble(
            cfg,
            layout,
            j.me,
            j.rf,
            j.cluster_id,
            Vec::new(),
            &known,
        ))
    }

    /// The group id of the metadata group: the one after the vShards'.
    pub fn meta_group(&self) -> u32 {
        self.layout.count()
    }

    /// The shard thread that drives group `g` on every node (the metadata group: thread 0).
    pub fn thread_of(&self, g: u32) -> usize {
        if g == self.meta_group() {
            0
        } else {
            self.layout.owner_thread(VShardId(g as u16), self.threads)
        }
    }

    /// The metadata group's voters when the cluster starts from a static list: its first five
    /// members (or all, when fewer); every other member follows as a learner.
    pub fn meta_voters(&self) -> Vec<NodeId> {
        (1..=self.bootstrap.len().min(5) as u64)
            .map(NodeId)
            .collect()
    }

    /// Records where every vShard's replicas are to be.
    pub fn set_targets(&self, replicas: &[Vec<placement::Replica>]) {
        for (v, set) in replicas.iter().enumerate() {
            let m = mask(set.iter().map(|r| r.node));
            self.targets[v].store(m, Ordering::Release);
            let first = set.first().map_or(0, |r| r.node.0);
            self.preferred[v].store(first, Ordering::Release);
        }
    }

    /// Records the voters of `v`'s group (a bit set, `mask`).
    /// The bit set of `v`'s voters as this node last heard (0: unknown).
    pub fn replica_mask(&self, v: VShardId) -> u64 {
        self.replicas[v.0 as usize].load(Ordering::Acquire)
    }

    pub fn set_replicas(&self, v: VShardId, voters: u64) {
        self.replicas[v.0 as usize].store(voters, Ordering::Release);
    }

    /// The member ids of `v`'s replicas (its group's voters), ascending.
    pub fn members(&self, v: VShardId) -> Vec<NodeId> {
        ids(self.replicas[v.0 as usize].load(Ordering::Acquire))
    }

    /// The member ids that are to hold `v`'s replicas, ascending (empty: not known yet).
    pub fn target(&self, v: VShardId) -> Vec<NodeId> {
        ids(self.targets[v.0 as usize].load(Ordering::Acquire))
    }

    /// The members `v`'s group started with (empty on a node that joined).
    pub fn initial(&self, v: VShardId) -> Vec<NodeId> {
        self.initial[v.0 as usize].clone()
    }

    /// The member that should lead `v` (0: unknown).
    pub fn preferred(&self, v: VShardId) -> NodeId {
        NodeId(self.preferred[v.0 as usize].load(Ordering::Acquire))
    }

    pub fn target_mask(&self, v: VShardId) -> u64 {
        self.targets[v.0 as usize].load(Ordering::Acquire)
    }

    pub fn is_target(&self, v: VShardId) -> bool {
        self.targets[v.0 as usize].load(Ordering::Acquire) & bit(self.me) != 0
    }

    #[inline]
    /// Whether this node is `v`'s only replica (a group of one: commands across such vShards
    /// of one thread run, `replica/direct.rs`).
    pub fn alone(&self, v: VShardId) -> bool {
        self.replicas[v.0 as usize].load(Ordering::Acquire) == bit(self.me)
    }

    pub fn is_replica(&self, v: VShardId) -> bool {
        self.replicas[v.0 as usize].load(Ordering::Acquire) & bit(self.me) != 0
    }

    /// The ids of the members, ascending.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.members.lock().expect("members");
        (1..=NODES_MAX as u64)
            .map(NodeId)
            .filter(|&id| m[id.slot()].is_some())
            .collect()
    }

    pub fn member(&self, id: NodeId) -> Option<MemberAddrs> {
        let m = self.members.lock().expect("members");
        *m.get((id.0 as usize).wrapping_sub(1))?
    }

    /// Adds or updates member `id`.
    pub fn set_member(&self, id: NodeId, addrs: MemberAddrs) {
        assert!((1..=NODES_MAX as u64).contains(&id.0), "member id {id}");
        let mut m = self.members.lock().expect("members");
        if m[id.slot()] != Some(addrs) {
            m[id.slot()] = Some(addrs);
            self.highest_member.fetch_max(id.0, Ordering::AcqRel);
            self.members_version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether `id` may be a peer: a member, or one that joined after what this node knows.
    pub fn may_be_member(&self, id: NodeId) -> bool {
        (1..=NODES_MAX as u64).contains(&id.0)
            && (self.member(id).is_some()
                || id > NodeId(self.highest_member.load(Ordering::Acquire)))
    }

    /// Whether member `id` was removed from the cluster, as this node's applied metadata says
    /// (a claim a removed node acts on: it retires). `note_meta_next_id` is stored after the
    /// members it goes with and loaded here before them, and applied states only move forward,
    /// so the pair read is never newer in its id than in its members.
    pub fn was_removed(&self, id: NodeId) -> bool {
        let next = self.meta_next_id.load(Ordering::Acquire);
        id != self.me && id < NodeId(next) && self.member(id).is_none()
    }

    /// Notes the applied metadata's next member id, after its members were published.
    pub fn note_meta_next_id(&self, next: u64) {
        self.meta_next_id.store(next, Ordering::Release);
    }

    /// Drops the members not in `keep` (ascending ids): a node removed from the cluster. Its
    /// dialers stop, its handshakes are refused, and routing forgets what it led. The node itself
    /// always stays: a joined node applying a metadata snapshot older than its join does not
    /// name itself yet, and a removed node stops by itself (`moves`, `Replicas::left`).
    pub fn retain_members(&self, keep: &[NodeId]) {
        let gone: Vec<NodeId> = {
            let mut m = self.members.lock().expect("members");
            let gone: Vec<NodeId> = (1..=NODES_MAX as u64)
                .map(NodeId)
                .filter(|&id| id != self.me)
                .filter(|id| m[id.slot()].is_some() && keep.binary_search(id).is_err())
                .collect();
            for &id in &gone {
                m[id.slot()] = None;
            }
            gone
        };
        if gone.is_empty() {
            return;
        }
        for &id in &gone {
            self.up[id.slot()].store(false, Ordering::Relaxed);
            for v in 0..self.leaders.len() {
                self.forget_leader(VShardId(v as u16), id);
            }
        }
        self.members_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this node hears from member `id` and SWIM does not hold it dead or gone.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.up
            .get((id.0 as usize).wrapping_sub(1))
            .is_some_and(|u| u.load(Ordering::Relaxed))
            && !matches!(self.liveness(id).0, SwimState::Dead | SwimState::Left)
    }

    /// SWIM's verdict on member `id` and its incarnation (`Alive` at 0 for this node, for an
    /// id out of range, and before the control thread's first word).
    pub fn liveness(&self, id: NodeId) -> (SwimState, u32) {
        let Some(l) = self.liveness.get((id.0 as usize).wrapping_sub(1)) else {
            return (SwimState::Alive, 0);
        };
        let x = l.load(Ordering::Acquire);
        let state = match x >> 32 {
            1 => SwimState::Suspect,
            2 => SwimState::Dead,
            3 => SwimState::Left,
            _ => SwimState::Alive,
        };
        (state, x as u32)
    }

    /// Publishes SWIM's verdict on member `id` (the control thread); the shard threads see
    /// it at their next tick.
    pub fn set_liveness(&self, id: NodeId, state: SwimState, inc: u32) {
        let Some(l) = self.liveness.get((id.0 as usize).wrapping_sub(1)) else {
            return;
        };
        let code: u64 = match state {
            SwimState::Alive => 0,
            SwimState::Suspect => 1,
            SwimState::Dead => 2,
            SwimState::Left => 3,
        };
        l.store(code << 32 | inc as u64, Ordering::Release);
        self.liveness_epoch.fetch_add(1, Ordering::AcqRel);
    }

    #[inline]
    pub fn leader(&self, v: VShardId) -> NodeId {
        NodeId(self.leaders[v.0 as usize].load(Ordering::Acquire) & LEADER_MASK)
    }

    /// Records that `leader` (0: none known) leads `v` in `term`, unless this node already
    /// knows a later term or a leader of this one. Whether the routing table changed.
    pub fn note_leader(&self, v: VShardId, term: u64, leader: NodeId) -> bool {
        let slot = &self.leaders[v.0 as usize];
        let new = pack_leader(term, leader);
        let mut old = slot.load(Ordering::Acquire);
        loop {
            let (old_term, old_leader) = (old >> 16, old & LEADER_MASK);
            let newer = new >> 16 > old_term
                || (new >> 16 == old_term && old_leader == 0 && leader != NodeId(0));
            if !newer {
                return false;
            }
            match slot.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.epoch.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(x) => old = x,
            }
        }
    }

    /// What this node's own replica of `v` knows (its term and leader, 0: none), which routes
    /// `v` whatever was noted before: Raft's term only grows, and a replica's view is never a
    /// peer's claim. Whether the routing table changed.
    pub fn set_leader(&self, v: VShardId, term: u64, leader: NodeId) -> bool {
        let new = pack_leader(term, leader);
        let slot = &self.leaders[v.0 as usize];
        // Read first: this runs for every group touched in a step, and a store of an unchanged
        // value would still take the cache line from every thread that routes by it. The
        // group's own shard thread is the only writer of a held group's entry.
        if slot.load(Ordering::Acquire) == new {
            return false;
        }
        slot.store(new, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A leader's hint about a group with no replica here: as `note_leader`, and also taken
    /// whatever its term while no leader is known (after `forget_leader`), so a term that was
    /// wrong (a peer's bug or malice) cannot keep the slot unrouted.
    pub fn note_hint(&self, v: VShardId, term: u64, leader: NodeId) -> bool {
        let slot = &self.leaders[v.0 as usize];
        let old = slot.load(Ordering::Acquire);
        if old & LEADER_MASK == 0
            && leader != NodeId(0)
            && slot
                .compare_exchange(
                    old,
                    pack_leader(term, leader),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.epoch.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.note_leader(v, term, leader)
    }

    /// `peer` is down: vShards this node knew it to lead have no known leader (routing answers
    /// `-TRYAGAIN` instead of sending clients to a dead node) until a newer term's leader is
    /// heard of.
    pub fn forget_leader(&self, v: VShardId, peer: NodeId) {
        let slot = &self.leaders[v.0 as usize];
        let old = slot.load(Ordering::Acquire);
        if old & LEADER_MASK == peer.0
            && slot
                .compare_exchange(old, old & !LEADER_MASK, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.epoch.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Member `id`'s client address (unspecified for an id that is not a member: our bug).
    pub fn client_addr(&self, id: NodeId) -> SocketAddr {
        self.member(id).map_or(UNSPECIFIED, |m| m.client)
    }

    pub fn bus_addr(&self, id: NodeId) -> SocketAddr {
        self.member(id).map_or(UNSPECIFIED, |m| m.bus)
    }

    /// The error that sends a client to `slot`'s leader (`-MOVED`), or asks it to retry while
    /// none is known (`-TRYAGAIN`). Either way the command was not applied.
    pub fn redirect(&self, slot: Slot, leader: Option<NodeId>) -> String {
        match leader {
            Some(l)
                if l != NodeId(0)
                    && l != self.me
                    && let Some(m) = self.member(l) =>
            {
                format!("MOVED {slot} {}", m.client)
            }
            _ => format!(
                "TRYAGAIN no leader for slot {slot} yet (an election is in progress); retry shortly"
            ),
        }
    }

    /// A Redis Cluster node id (40 hex digits) for member `id`, the same on every node.
    pub fn node_name(&self, id: NodeId) -> String {
        let mut s = String::with_capacity(40);
        let mut x = crc32c::crc32c_append(crc32c::crc32c(&self.cluster_id), &id.0.to_le_bytes());
        while s.len() < 40 {
            s.push_str(&format!("{x:08x}"));
            x = crc32c::crc32c_append(x, &id.0.to_le_bytes());
        }
        s.truncate(40);
        s
    }

    /// The slot ranges of the routing table: consecutive vShards with the same leader and
    /// replicas merge into one range. A vShard with no known leader is left out (as Redis
    /// leaves out unserved slots), and so are replicas on nodes that are down.
    pub fn ranges(&self) -> Vec<SlotRange> {
        let leaders: Vec<NodeId> = (0..self.layout.count())
            .map(|v| self.leader(VShardId(v as u16)))
            .collect();
        // A replica on a node this one does not hear from is left out, as Redis leaves out
        // failed replicas: a client reading from replicas should not be sent there.
        slot_ranges(self.layout, &leaders, |v| {
            self.members(v)
                .into_iter()
                .filter(|&m| self.is_up(m))
                .collect()
        })
    }
}

/// One range of CLUSTER SLOTS: `first..=last` led by `leader`, with `replicas` (the leader
/// first).
#[derive(Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub first: Slot,
    pub last: Slot,
    pub replicas: Vec<NodeId>,
}

fn slot_ranges(
    layout: VShardLayout,
    leaders: &[NodeId],
    members: impl Fn(VShardId) -> Vec<NodeId>,
) -> Vec<SlotRange> {
    let mut out: Vec<SlotRange> = Vec::new();
    for (v, &leader) in leaders.iter().enumerate() {
        let v = VShardId(v as u16);
        if leader == NodeId(0) {
            continue;
        }
        let mut replicas = vec![leader];
        replicas.extend(members(v).into_iter().filter(|&m| m != leader));
        let r = layout.slot_range(v);
        match out.last_mut() {
            Some(last) if last.last + 1 == r.start && last.replicas == replicas => {
                last.last = r.end - 1;
            }
            _ => out.push(SlotRange {
                first: r.start,
                last: r.end - 1,
                replicas,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Cluster {
        let mut cfg = crate::config::Config {
            cluster_nodes: vec![
                "127.0.0.1:7001".parse().unwrap(),
                "127.0.0.1:7002".parse().unwrap(),
                "127.0.0.1:7003".parse().unwrap(),
            ],
            cores: vec![0],
            ..Default::default()
        };
        cfg.port = 7001;
        Cluster::new(&cfg, VShardLayout::new(4).unwrap()).unwrap()
    }

    #[test]
    fn a_leader_hint_replaces_only_an_older_term_or_an_unknown_leader() {
        let c = three();
        let v = VShardId(1);
        assert!(c.note_leader(v, 3, NodeId(2)));
        assert_eq!(c.leader(v), NodeId(2));
        // A stale hint (an earlier term) and a second leader for the same term change nothing.
        assert!(!c.note_leader(v, 2, NodeId(3)));
        assert!(!c.note_leader(v, 3, NodeId(3)));
        assert_eq!(c.leader(v), NodeId(2));
        // This node's replica learns of an election in term 4 (no leader yet), then its winner.
        assert!(c.note_leader(v, 4, NodeId(0)));
        assert_eq!(c.leader(v), NodeId(0));
        assert!(c.note_leader(v, 4, NodeId(3)));
        assert_eq!(c.leader(v), NodeId(3));
        // The leader's node goes down: unknown, until a newer term's leader is heard of.
        c.forget_leader(v, NodeId(3));
        assert_eq!(c.leader(v), NodeId(0));
        c.forget_leader(v, NodeId(1));
        assert!(c.note_leader(v, 5, NodeId(1)));
        assert_eq!(c.leader(v), NodeId(1));
    }

    #[test]
    fn ranges_merge_consecutive_vshards_with_the_same_leader_and_skip_unknown_ones() {
        let layout = VShardLayout::new(4).unwrap();
        let r = slot_ranges(
            layout,
            &[NodeId(1), NodeId(1), NodeId(0), NodeId(2)],
            |_| vec![NodeId(1), NodeId(2), NodeId(3)],
        );
        assert_eq!(
            r,
            vec![
                SlotRange {
                    first: 0,
                    last: 8191,
                    replicas: vec![NodeId(1), NodeId(2), NodeId(3)]
                },
                SlotRange {
                    first: 12288,
                    last: 16383,
                    replicas: vec![NodeId(2), NodeId(1), NodeId(3)]
                },
            ]
        );
    }
}
