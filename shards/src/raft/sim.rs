//! A deterministic simulation of Raft groups: one thread, a seeded RNG choosing every event
//! (ticks, deliveries out of order, drops, partitions, crashes that lose unpersisted state,
//! restarts, proposals), and Raft's safety properties checked after every step. A failure prints
//! the seed that replays it.

use super::*;
use crate::wal::{Engine, FsyncPolicy, Io, WalConfig};
use std::collections::BTreeMap;

/// The replica's vShard group in its shard thread's log.
const GROUP: u32 = 7;

fn wal_config() -> WalConfig {
    WalConfig {
        shard: 0,
        segment_bytes: 2048,
        fsync: FsyncPolicy::Always,
    }
}

struct Node {
    group: Option<Group>,
    /// The node's write-ahead log engine and its files: the files survive a crash, the engine
    /// is rebuilt from them.
    wal: Engine,
    files: BTreeMap<u64, Vec<u8>>,
    /// The state machine: every applied entry, in order (volatile).
    sm: Vec<Entry>,
    /// The latest snapshot of the state machine (survives a crash).
    snap_file: Vec<u8>,
}

/// A state machine's bytes: its entries, each `term | index | len | data`.
fn encode_sm(sm: &[Entry]) -> Vec<u8> {
    let mut b = Vec::new();
    for e in sm {
        b.extend_from_slice(&e.term.to_le_bytes());
        b.extend_from_slice(&e.index.to_le_bytes());
        b.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&e.data);
    }
    b
}

fn decode_sm(mut b: &[u8]) -> Vec<Entry> {
    let mut sm = Vec::new();
    while !b.is_empty() {
        let term = u64::from_le_bytes(b[..8].try_into().unwrap());
        let index = u64::from_le_bytes(b[8..16].try_into().unwrap());
        let len = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        sm.push(Entry {
            term,
            index,
            data: b[20..20 + len].to_vec().into(),
        });
        b = &b[20 + len..];
    }
    sm
}

/// The state machine a stored snapshot blob holds (none: empty).
fn state_of(blob: &[u8]) -> Vec<Entry> {
    if blob.is_empty() {
        return Vec::new();
    }
    let blob = Bytes::copy_from_slice(blob);
    decode_sm(
        &conf::split_snapshot(&blob)
            .expect("a blob the core wrote")
            .1,
    )
}

impl Node {
    fn fresh(group: Group) -> Node {
        Node {
            group: Some(group),
            wal: Engine::new(wal_config()),
            files: BTreeMap::new(),
            sm: Vec::new(),
            snap_file: Vec::new(),
        }
    }

    /// Runs the log's pending file operations (a synchronous, always-durable disk).
    fn flush(&mut self) {
        let Some(b) = self.wal.take_batch(0) else {
            return;
        };
        for op in b.ops {
            match op {
                Io::Create { seq, header } => {
                    self.files.insert(seq, header.to_vec());
                }
                Io::Write { seq, offset, bytes } => {
                    let f = self.files.get_mut(&seq).expect("created");
                    assert_eq!(f.len() as u64, offset);
                    f.extend_from_slice(&bytes);
                }
                Io::Sync { .. } => {}
                Io::Delete { seq } => {
                    self.files.remove(&seq);
                }
            }
        }
    }

    /// Restarts from the files alone.
    fn restart(&mut self, cfg: Config) {
        let files = self.files.iter().map(|(s, b)| (*s, b.clone())).collect();
        self.wal = Engine::recover(wal_config(), files)
            .unwrap_or_else(|c| panic!("the log does not recover: {c:?}"))
            .engine;
        let g = storage::restore(&self.wal, GROUP, cfg, self.snap_file.clone())
            .expect("the stored snapshot blob decodes");
        self.sm = state_of(&self.snap_file);
        assert_eq!(
            self.sm.len() as u64,
            g.snapshot_id().index,
            "snapshot and log agree"
        );
        self.group = Some(g);
    }
}

struct Sim {
    rng: Rng,
    cfg: Config,
    nodes: BTreeMap<NodeId, Node>,
    /// In flight: delivered in random order.
    net: Vec<Envelope>,
    /// Links cut by a partition (both directions).
    cut: HashSet<(NodeId, NodeId)>,
    /// The one leader each term has had.
    leaders: HashMap<u64, NodeId>,
    /// What was applied at each index, by anyone: everyone must agree.
    applied: BTreeMap<u64, Entry>,
    /// The earliest term in which each index was known committed (the applier's term).
    commit_term: BTreeMap<u64, u64>,
    /// Reads in flight: id -> the highest index applied anywhere when the read began. A read
    /// confirmed at a lower index could miss an acknowledged write: not linearizable.
    reads: HashMap<u64, u64>,
    confirmed_reads: usize,
    /// Snapshots sent by a leader and installed by a follower.
    installed: usize,
    /// Membership entries applied (each counted once, by the first replica to apply it).
    conf_applied: usize,
    /// Seeds that change membership: ids that may be added, beyond the first members (their
    /// replicas exist from the start, knowing the first voters, and wait to be added).
    conf_changes: bool,
    proposed: u64,
    seed: u64,
}

impl Sim {
    /// The live replica of `id`.
    fn group(&mut self, id: NodeId) -> &mut Group {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.group.as_mut())
            .expect("a live replica")
    }

    fn new(seed: u64, members: &[NodeId]) -> Sim {
        Sim::with_changes(seed, members, false)
    }

    /// `changes`: membership changes are among the random events, with two more replicas
    /// that may be added.
    fn with_changes(seed: u64, members: &[NodeId], changes: bool) -> Sim {
        let cfg = |id| Config {
            id,
            members: members.to_vec(),
            election_ticks: 10,
            heartbeat_ticks: 3,
            max_batch: 8,
            snapshot_chunk_bytes: 48,
            pre_vote: seed.is_multiple_of(2),
            seed,
        };
        let conf_changes = members.len() > 1 && changes;
        let top = members.iter().max().copied().unwrap_or(0);
        let spares = if conf_changes { top + 1..top + 3 } else { 0..0 };
        let nodes = members
            .iter()
            .copied()
            .chain(spares)
            .map(|id| (id, Node::fresh(Group::new(cfg(id)))))
            .collect();
        Sim {
            rng: Rng::new(seed),
            cfg: cfg(0),
            nodes,
            net: Vec::new(),
            cut: HashSet::new(),
            leaders: HashMap::new(),
            applied: BTreeMap::new(),
            commit_term: BTreeMap::new(),
            reads: HashMap::new(),
            confirmed_reads: 0,
            installed: 0,
            conf_applied: 0,
            conf_changes,
            proposed: 0,
            seed,
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!("seed {}: {what}", self.seed)
    }

    /// Persists, sends and applies what node `id` has ready, checking safety as it goes.
    fn drain(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(g) = node.group.as_mut() else { return };
        let r = g.take_ready();
        // An installed snapshot is stored first, then replaces the state machine.
        let mut installed = Vec::new();
        if let Some(snap) = &r.snapshot {
            node.snap_file = snap.blob.to_vec();
            node.sm = decode_sm(&snap.state);
            assert_eq!(
                node.sm.len() as u64,
                snap.last.index,
                "seed {}: snapshot length",
                self.seed
            );
            installed = node.sm.clone();
            self.installed += 1;
        }
        // Persist through the write-ahead log, durably, before sending anything.
        storage::persist(&mut node.wal, GROUP, &r).expect("contiguous appends");
        let term = g.term();
        node.flush();
        self.net.extend(r.messages);
        for (rid, index) in r.reads {
            let floor = self.reads.remove(&rid).unwrap_or(0);
            if index < floor {
                self.fail(format!(
                    "node {id} confirmed read {rid} at {index}, below {floor} applied before it began"
                ));
            }
            self.confirmed_reads += 1;
        }
        for rid in r.failed_reads {
            self.reads.remove(&rid);
        }
        let node = self.nodes.get_mut(&id).expect("member");
        for e in &r.committed {
            assert_eq!(e.index, node.sm.len() as u64 + 1, "applied in order");
            node.sm.push(e.clone());
        }
        for e in installed.into_iter().chain(r.committed) {
            let t = self.commit_term.entry(e.index).or_insert(term);
            *t = (*t).min(term);
            match self.applied.get(&e.index) {
                Some(prev) if *prev != e => self.fail(format!(
                    "node {id} applied {e:?} at {} where {prev:?} was applied",
                    e.index
                )),
                Some(_) => {}
                None => {
                    self.conf_applied += e.is_config() as usize;
                    self.applied.insert(e.index, e);
                }
            }
        }
        self.check_leader(id);
    }

    fn check_leader(&mut self, id: NodeId) {
        let Some(g) = self.nodes[&id].group.as_ref() else {
            return;
        };
        if g.role() != Role::Leader {
            return;
        }
        let term = g.term();
        if let Some(&other) = self.leaders.get(&term)
            && other != id
        {
            self.fail(format!("two leaders in term {term}: {other} and {id}"));
        }
        self.leaders.insert(term, id);
        // Leader completeness: every entry committed in an earlier term is in the leader's log
        // (or in its snapshot, below which entries were checked as they were applied).
        for (i, e) in &self.applied {
            if self.commit_term[i] < term && *i > g.snapshot_id().index && g.entry(*i) != Some(e) {
                self.fail(format!("leader {id} of term {term} lacks committed {e:?}"));
            }
        }
    }

    /// Log matching: two logs that agree on an index's term agree on everything before it
    /// (compared above both replicas' snapshots).
    fn check_logs(&self) {
        let groups: Vec<(NodeId, &Group)> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.group.as_ref().map(|g| (*id, g)))
            .collect();
        for (i, (a, ga)) in groups.iter().enumerate() {
            for (b, gb) in &groups[i + 1..] {
                let from = ga.snapshot_id().index.max(gb.snapshot_id().index) + 1;
                let last_a = ga.snapshot_id().index + ga.log().len() as u64;
                let last_b = gb.snapshot_id().index + gb.log().len() as u64;
                let to = last_a.min(last_b);
                let Some(k) = (from..=to)
                    .rev()
                    .find(|&k| ga.entry(k).map(|e| e.term) == gb.entry(k).map(|e| e.term))
                else {
                    continue;
                };
                if (from..=k).any(|x| ga.entry(x) != gb.entry(x)) {
                    self.fail(format!(
                        "logs of {a} and {b} match at {k} but differ before"
                    ));
                }
            }
        }
    }

    /// The replica that is leader now (tests call this once one has been elected).
    fn leader(&self) -> NodeId {
        *self
            .nodes
            .iter()
            .find(|(_, n)| n.group.as_ref().is_some_and(|g| g.role() == Role::Leader))
            .expect("a leader")
            .0
    }

    /// Cuts `id` off from every other member.
    fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        for o in others {
            self.cut.insert((id, o));
        }
    }

    fn linked(&self, a: NodeId, b: NodeId) -> bool {
        !self.cut.contains(&(a, b)) && !self.cut.contains(&(b, a))
    }

    fn step(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        match self.rng.below(100) {
            0..=29 => {
                let id = ids[pick(&mut self.rng, ids.len())];
                if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut()) {
                    g.tick();
                }
                self.drain(id);
            }
            30..=74 if !self.net.is_empty() => {
                let k = pick(&mut self.rng, self.net.len());
                let env = self.net.swap_remove(k);
                let dropped = self.rng.below(100) < 5 || !self.linked(env.from, env.to);
                if !dropped
                    && let Some(g) = self.nodes.get_mut(&env.to).and_then(|n| n.group.as_mut())
                {
                    g.step(env.from, env.msg);
                    self.drain(env.to);
                }
            }
            72..=74 => {
                // A linearizable read on whoever believes it leads.
                let floor = self.applied.keys().next_back().copied().unwrap_or(0);
                for id in ids {
                    let rid = self.proposed * 1000 + id;
                    if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut())
                        && g.read_index(rid).is_ok()
                    {
                        self.reads.insert(rid, floor);
                        self.drain(id);
                    }
                }
            }
            75..=84 => {
                for id in ids {
                    let data = format!("v{}", self.proposed).into_bytes();
                    if let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut())
                        && g.propose(data).is_ok()
                    {
                        self.proposed += 1;
                        self.drain(id);
                    }
                }
            }
            85..=88 => {
                // Partition one node from the others, or heal everything.
                if self.cut.is_empty() {
                    let id = ids[pick(&mut self.rng, ids.len())];
                    self.isolate(id);
                } else {
                    self.cut.clear();
                }
            }
            89..=91 => {
                // Crash: everything not persisted is lost.
                let id = ids[pick(&mut self.rng, ids.len())];
                let down = self.nodes.values().filter(|n| n.group.is_none()).count();
                if down < (self.nodes.len() - 1) / 2 {
                    self.nodes.get_mut(&id).expect("member").group = None;
                }
            }
            92..=95 => {
                let id = ids[pick(&mut self.rng, ids.len())];
                let cfg = Config {
                    id,
                    ..self.cfg.clone()
                };
                let n = self.nodes.get_mut(&id).expect("member");
                if n.group.is_none() {
                    n.restart(cfg);
                }
            }
            96..=97 => {
                // Snapshot a replica's state machine and compact its log.
                let id = ids[pick(&mut self.rng, ids.len())];
                let n = self.nodes.get_mut(&id).expect("member");
                if let Some(g) = n.group.as_mut() {
                    let applied = n.sm.len() as u64;
                    if applied > g.snapshot_id().index + 5 {
                        g.compact(applied, encode_sm(&n.sm));
                        // Stored before the log is purged (that is in the next Ready).
                        n.snap_file = g.snapshot_blob().to_vec();
                        self.drain(id);
                    }
                }
            }
            98..=99 if self.conf_changes => self.change_membership(),
            _ => {}
        }
        self.check_logs();
    }

    /// Whoever believes it leads proposes a random change: add a learner, promote one, or
    /// remove any member (itself included). Refusals are part of the test.
    fn change_membership(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let pick = self.rng.below(3);
            let r = self.rng.below(ids.len() as u64) as usize;
            let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut()) else {
                continue;
            };
            if g.role() != Role::Leader {
                continue;
            }
            let m = g.membership().clone();
            let change = match pick {
                0 => match ids
                    .iter()
                    .cycle()
                    .skip(r)
                    .take(ids.len())
                    .find(|&&i| !m.contains(i))
                {
                    Some(&i) => ConfChange::AddLearner(i),
                    None => continue,
                },
                1 => match m.learners.first() {
                    Some(&l) => ConfChange::Promote(l),
                    None => continue,
                },
                _ => ConfChange::Remove(
                    m.all()
                        .nth(r % (m.voters.len() + m.learners.len()))
                        .unwrap(),
                ),
            };
            if g.propose_conf(change).is_ok() {
                self.drain(id);
            }
        }
    }

    /// One round: every live replica ticks, then every message is delivered (unless a
    /// partition cuts its link) until none is left. Returns how many messages were sent.
    fn round(&mut self, tick: bool) -> usize {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if tick && let Some(g) = self.nodes.get_mut(&id).and_then(|n| n.group.as_mut()) {
                g.tick();
            }
            self.drain(id);
        }
        let mut sent = 0;
        while let Some(env) = self.net.pop() {
            sent += 1;
            if sent > 100_000 {
                self.fail(format!("messages never settle: still sending {env:?}"));
            }
            if !self.linked(env.from, env.to) {
                continue; // lost to a partition
            }
            if let Some(g) = self.nodes.get_mut(&env.to).and_then(|n| n.group.as_mut()) {
                g.step(env.from, env.msg);
                self.drain(env.to);
            }
        }
        sent
    }

    /// Heals everything and runs without faults until an entry proposed now is applied by a
    /// majority: the cluster is still live.
    fn converge(&mut self) {
        self.cut.clear();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let cfg = Config {
                id,
                ..self.cfg.clone()
            };
            let n = self.nodes.get_mut(&id).expect("member");
            if n.group.is_none() {
                n.restart(cfg);
            }
        }
        let marker = b"final".to_vec();
        for round in 0..20_000 {
            // A proposal can be lost with a deposed leader: propose again now and then.
            if round % 50 == 0 {
                for n in self.nodes.values_mut() {
                    if let Some(g) = n.group.as_mut() {
                        let _ = g.propose(marker.clone());
                    }
                }
            }
            self.round(true);
            if self.applied.values().any(|e| e.data == marker) {
                return;
            }
        }
        let state: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| match &n.group {
                Some(g) => format!(
                    "{id}: {:?} {:?} term {} leader {:?} commit {} last {:?} files {}",
                    g.membership(),
                    g.role(),
                    g.term(),
                    g.leader(),
                    g.commit_index(),
                    g.log().last().map(|e| (e.term, e.index)),
                    n.files.len()
                ),
                None => format!("{id}: down"),
            })
            .collect();
        self.fail(format!("no progress after healing: {state:?}"));
    }
}

/// Runs `g` to candidacy and hands it the votes of `voters`.
fn elect(g: &mut Group, voters: &[NodeId]) -> u64 {
    while g.role() != Role::Candidate {
        g.tick();
    }
    let term = g.term();
    for &v in voters {
        g.step(
            v,
            Msg::VoteReply {
                term,
                granted: true,
            },
        );
    }
    term
}

#[test]
fn a_single_member_group_commits_alone() {
    let mut sim = Sim::new(1, &[1]);
    sim.converge();
    assert!(sim.applied.values().any(|e| e.data[..] == b"final"[..]));
}

/// Runs each seed with 3 and 5 members; with `changes`, two seeds in three also change
/// membership.
fn run_seeds(seeds: std::ops::Range<u64>, changes: bool) {
    let (mut reads, mut installed, mut confs) = (0, 0, 0);
    let trace = std::env::var_os("RAFT_SIM_TRACE").is_some();
    for seed in seeds {
        if trace {
            eprintln!("seed {seed}");
        }
        for members in [&[1u64, 2, 3][..], &[1, 2, 3, 4, 5][..]] {
            let mut sim = Sim::with_changes(seed, members, changes && !seed.is_multiple_of(3));
            for _ in 0..3000 {
                sim.step();
            }
            sim.converge();
            // Something was committed along the way, not only the final marker, and reads were
            // confirmed (and checked).
            assert!(sim.applied.len() > 1, "seed {seed}: nothing committed");
            reads += sim.confirmed_reads;
            installed += sim.installed;
            confs += sim.conf_applied;
        }
    }
    assert!(reads > 0, "no read was confirmed in any run");
    assert!(
        !changes || confs > 0,
        "no membership change was ever applied"
    );
    assert!(installed > 0, "no snapshot was ever installed");
    eprintln!(
        "{reads} reads confirmed, {installed} snapshots installed, {confs} membership changes applied"
    );
}

#[test]
fn random_faults_never_break_safety_and_the_cluster_recovers() {
    run_seeds(0..60, true);
}

/// The long run: `cargo test --release -p shardline-shards raft_soak -- --ignored`
/// (`RAFT_SIM_SEEDS=n` sets how many seeds; a failure prints the one to replay).
#[test]
#[ignore]
fn raft_soak() {
    let n = std::env::var("RAFT_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    run_seeds(1000..1000 + n, true);
}

#[test]
fn a_stale_leader_cannot_commit_and_yields_to_a_higher_term() {
    let members = [1u64, 2, 3];
    let cfg = |id| Config {
        id,
        members: members.to_vec(),
        election_ticks: 5,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 48,
        pre_vote: false,
        seed: 3,
    };
    let mut a = Group::new(cfg(1));
    // Node 1 elects itself with node 2's vote.
    let term = elect(&mut a, &[2]);
    assert_eq!(a.role(), Role::Leader);
    let r = a.take_ready();
    assert!(
        r.messages
            .iter()
            .any(|m| matches!(m.msg, Msg::Append { .. }))
    );
    // Cut off, it accepts a proposal but cannot commit it without an acknowledgement.
    let i = a.propose(b"x".to_vec()).unwrap();
    let r = a.take_ready();
    assert!(r.committed.iter().all(|e| e.index < i));
    // A message of a higher term turns it into a follower; proposals are refused.
    a.step(
        3,
        Msg::Vote {
            term: term + 1,
            last: LogId {
                term: term + 1,
                index: 10,
            },
        },
    );
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(a.propose(b"y".to_vec()), Err(NotLeader { leader: None }));
    let r = a.take_ready();
    assert_eq!(
        r.hard_state,
        Some(HardState {
            term: term + 1,
            vote: Some(3)
        })
    );
}

/// Raft's figure 8: a leader must not commit an entry of an earlier term by counting replicas,
/// only through an entry of its own term.
#[test]
fn entries_of_earlier_terms_commit_only_through_the_current_term() {
    let members = [1u64, 2, 3, 4, 5];
    let cfg = Config {
        id: 1,
        members: members.to_vec(),
        election_ticks: 5,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 48,
        pre_vote: false,
        seed: 8,
    };
    let old = |term, index| Entry {
        term,
        index,
        data: b"old".to_vec().into(),
    };
    // Restarted with an entry of term 2 that never committed, last voted in term 3.
    let mut g = Group::restore(
        cfg,
        HardState {
            term: 3,
            vote: None,
        },
        vec![old(1, 1), old(2, 2)],
    );
    let term = elect(&mut g, &[2, 3]);
    assert_eq!(g.role(), Role::Leader);
    let r = g.take_ready();
    assert_eq!(
        r.entries.last().map(|e| (e.term, e.index)),
        Some((term, 3)),
        "no-op at 3"
    );
    // Two followers now hold index 2 (term 2): with the leader that is a majority of five, but
    // index 2 is from an earlier term and must not commit yet.
    g.step(
        2,
        Msg::AppendReply {
            term,
            success: true,
            last: 2,
            ctx: 0,
        },
    );
    g.step(
        3,
        Msg::AppendReply {
            term,
            success: true,
            last: 2,
            ctx: 0,
        },
    );
    assert_eq!(g.commit_index(), 0);
    assert!(g.take_ready().committed.is_empty());
    // Once the no-op of this term is on a majority, everything up to it commits.
    g.step(
        2,
        Msg::AppendReply {
            term,
            success: true,
            last: 3,
            ctx: 0,
        },
    );
    g.step(
        3,
        Msg::AppendReply {
            term,
            success: true,
            last: 3,
            ctx: 0,
        },
    );
    assert_eq!(g.commit_index(), 3);
    assert_eq!(g.take_ready().committed.len(), 3);
}

/// After every step, each live replica equals what its write-ahead log alone would restore.
#[test]
fn every_replica_is_what_its_log_restores() {
    let mut sim = Sim::new(0, &[1, 2, 3]);
    for step in 0..3000 {
        sim.step();
        for (id, n) in sim.nodes.iter() {
            let Some(g) = n.group.as_ref() else { continue };
            let files = n.files.iter().map(|(s, b)| (*s, b.clone())).collect();
            let rec = Engine::recover(wal_config(), files).unwrap().engine;
            let cfg = Config {
                id: *id,
                ..sim.cfg.clone()
            };
            let r = storage::restore(&rec, GROUP, cfg, n.snap_file.clone()).unwrap();
            assert_eq!(r.log(), g.log(), "step {step} node {id}");
            assert_eq!(r.membership(), g.membership(), "step {step} node {id}");
            assert_eq!(r.term(), g.term(), "step {step} node {id} term");
        }
    }
    assert!(!sim.applied.is_empty(), "the run made progress");
}

/// An idle group goes quiet after one last heartbeat (no messages, no timers, so a driver need
/// not tick it), wakes on a proposal, and fails over at once when the leader's node is reported
/// gone.
#[test]
fn idle_groups_go_quiet_and_wake_for_writes_and_failover() {
    let mut sim = Sim::new(11, &[1, 2, 3]);
    // Elect, commit something, let it settle.
    sim.converge();
    let run = |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
    run(&mut sim, 20);
    assert!(
        sim.nodes
            .values()
            .all(|n| n.group.as_ref().unwrap().is_quiet()),
        "every replica is quiet"
    );
    assert_eq!(run(&mut sim, 500), 0, "a quiet group sends nothing");
    // A write wakes it and commits.
    let leader = sim.leader();
    let before = sim.applied.len();
    let g = sim.group(leader);
    g.propose(b"wake".to_vec()).unwrap();
    sim.drain(leader);
    run(&mut sim, 20);
    assert!(sim.applied.len() > before, "the write committed");
    run(&mut sim, 20);
    assert_eq!(run(&mut sim, 200), 0, "and it went quiet again");
    // The leader's node dies; a quiet follower hears it from the node level and takes over
    // without waiting out an election timeout.
    sim.nodes.get_mut(&leader).unwrap().group = None;
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(follower).leader_lost();
    sim.drain(follower);
    run(&mut sim, 3);
    let g = sim.nodes[&follower].group.as_ref().unwrap();
    assert_eq!(g.role(), Role::Leader, "elected within a few ticks");
}

/// When every survivor hears that the leader's node is gone, only the designated successor (the
/// first member other than the lost leader) stands at once: one election, one new term, no split
/// vote (regression: all survivors campaigned together and split the vote, so failover waited
/// out an election timeout).
#[test]
fn a_lost_leader_is_replaced_by_one_election_without_a_split_vote() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, &[1, 2, 3, 4, 5]);
        sim.converge();
        let run =
            |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
        run(&mut sim, 20);
        let leader = sim.leader();
        let term = sim.group(leader).term();
        sim.nodes.get_mut(&leader).unwrap().group = None;
        let survivors: Vec<NodeId> = sim
            .nodes
            .keys()
            .copied()
            .filter(|&id| id != leader)
            .collect();
        for &id in &survivors {
            sim.group(id).leader_lost();
            sim.drain(id);
        }
        run(&mut sim, 3);
        let successor = survivors[0];
        assert_eq!(
            sim.group(successor).role(),
            Role::Leader,
            "seed {seed}: the designated successor leads within 3 ticks"
        );
        assert_eq!(
            sim.group(successor).term(),
            term + 1,
            "seed {seed}: one election"
        );
    }
}

/// A replica that restarts while its group is quiet learns the leader and catches up: its
/// pre-vote is refused (the leader lives), but it wakes the quiet leader, which answers with an
/// append (regression: the restarted replica used to ask forever, never told who leads).
#[test]
fn a_replica_restarted_under_a_quiet_leader_catches_up() {
    for seed in 0..30 {
        restart_under_quiet_leader(seed);
    }
}

fn restart_under_quiet_leader(seed: u64) {
    let mut sim = Sim::new(seed, &[1, 2, 3]);
    sim.converge();
    let run = |sim: &mut Sim, ticks: usize| -> usize { (0..ticks).map(|_| sim.round(true)).sum() };
    run(&mut sim, 20);
    let leader = sim.leader();
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    let cfg = Config {
        id: follower,
        ..sim.cfg.clone()
    };
    sim.nodes.get_mut(&follower).unwrap().restart(cfg);
    run(&mut sim, 200);
    let leader = sim.leader();
    let g = sim.nodes[&follower].group.as_ref().unwrap();
    assert_eq!(
        g.leader(),
        Some(leader),
        "seed {seed}: the restarted replica follows the leader"
    );
    assert_eq!(
        g.commit_index(),
        sim.nodes[&leader].group.as_ref().unwrap().commit_index(),
        "seed {seed}: and has caught up"
    );
    assert_eq!(
        sim.nodes[&leader].group.as_ref().unwrap().role(),
        Role::Leader
    );
}

/// A leader cut off from its followers steps down within an election timeout (check quorum),
/// refusing writes from then on, while the majority side elects a new leader.
#[test]
fn a_leader_cut_off_from_its_quorum_steps_down() {
    let mut sim = Sim::new(5, &[1, 2, 3]);
    sim.converge();
    let leader = sim.leader();
    sim.isolate(leader);
    // A client write reaches the cut-off leader (waking the quiet group); the followers' node
    // failure detector reports the leader's node unreachable.
    let g = sim.group(leader);
    g.propose(b"lost".to_vec()).unwrap();
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(follower).leader_lost();
    for _ in 0..40 {
        sim.round(true);
    }
    let old = sim.nodes[&leader].group.as_ref().unwrap();
    assert_ne!(old.role(), Role::Leader, "the cut-off leader stepped down");
    let leaders = sim
        .nodes
        .values()
        .filter(|n| n.group.as_ref().unwrap().role() == Role::Leader)
        .count();
    assert_eq!(leaders, 1, "the majority side has a leader");
    assert!(
        sim.applied.values().all(|e| e.data[..] != b"lost"[..]),
        "the cut-off leader never committed"
    );
}

/// With pre-vote, a follower cut off while the group is busy keeps timing out without raising
/// its term, so when the link heals the working leader is not deposed.
#[test]
fn pre_vote_keeps_a_rejoining_replica_from_deposing_the_leader() {
    let mut sim = Sim::new(2, &[1, 2, 3]); // even seeds run with pre-vote
    assert!(sim.cfg.pre_vote);
    sim.converge();
    let leader = sim.leader();
    let term = sim.nodes[&leader].group.as_ref().unwrap().term();
    let cut = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.isolate(cut);
    let busy_round = |sim: &mut Sim| {
        let g = sim.group(leader);
        let _ = g.propose(b"busy".to_vec());
        sim.round(true);
    };
    for _ in 0..100 {
        busy_round(&mut sim);
    }
    assert_eq!(
        sim.nodes[&cut].group.as_ref().unwrap().term(),
        term,
        "no term inflation"
    );
    sim.cut.clear();
    for _ in 0..30 {
        busy_round(&mut sim);
    }
    assert_eq!(sim.leader(), leader, "the leader kept its place");
    assert_eq!(sim.nodes[&leader].group.as_ref().unwrap().term(), term);
}

/// Read-index: a leader confirms a read only with a quorum. One cut off from its followers never
/// confirms the read it was asked for (a new leader may already have newer writes), and reports
/// it failed when it steps down; a connected leader confirms reads.
#[test]
fn reads_need_a_quorum_and_fail_when_leadership_is_lost() {
    let mut sim = Sim::new(4, &[1, 2, 3]);
    sim.converge();
    let leader = sim.leader();
    let g = sim.group(leader);
    g.read_index(1).unwrap();
    sim.reads.insert(1, 0);
    sim.drain(leader);
    sim.round(false);
    assert_eq!(sim.confirmed_reads, 1, "a connected leader confirms");
    sim.isolate(leader);
    let g = sim.group(leader);
    g.propose(b"wake".to_vec()).unwrap();
    g.read_index(2).unwrap();
    sim.reads.insert(2, 0);
    let follower = *sim.nodes.keys().find(|&&id| id != leader).unwrap();
    sim.group(follower).leader_lost();
    for _ in 0..40 {
        sim.round(true);
    }
    assert_eq!(
        sim.confirmed_reads, 1,
        "the cut-off leader confirmed nothing"
    );
    assert!(
        !sim.reads.contains_key(&2),
        "its read was reported failed on stepping down"
    );
}

/// Regression (found by `raft_soak`, seed 1855): a leader probing below a follower's snapshot
/// got refusals with hint 0 forever; a follower now answers an Append that starts below its
/// commit index with its commit index.
#[test]
fn a_probe_below_a_followers_snapshot_is_answered_with_its_commit() {
    run_seeds(1855..1856, false);
}

/// A 3-voter group with a spare replica 4 (knowing the first voters, waiting to be added),
/// converged, with `leader` leading.
fn group_with_spare(seed: u64) -> (Sim, NodeId) {
    let mut sim = Sim::with_changes(seed, &[1, 2, 3], true);
    sim.converge();
    let leader = sim.leader();
    (sim, leader)
}

fn applied_marker(sim: &Sim, data: &[u8]) -> bool {
    sim.applied.values().any(|e| e.data[..] == *data)
}

#[test]
fn a_learner_gets_the_log_but_never_counts_or_stands_for_election() {
    let (mut sim, leader) = group_with_spare(3);
    sim.group(leader)
        .propose_conf(ConfChange::AddLearner(4))
        .unwrap();
    sim.drain(leader);
    for _ in 0..30 {
        sim.round(true);
    }
    let last = sim.group(leader).last_index();
    assert_eq!(sim.group(4).last_index(), last, "the learner holds the log");
    assert_eq!(sim.group(4).membership().learners, vec![4]);
    // With both other voters cut off, the leader and the learner do not make a quorum.
    for v in [1, 2, 3].into_iter().filter(|&v| v != leader) {
        sim.isolate(v);
    }
    sim.group(leader).propose(b"alone".to_vec()).unwrap();
    sim.drain(leader);
    let term4 = sim.group(4).term();
    for _ in 0..5 {
        sim.round(true);
    }
    assert!(
        !applied_marker(&sim, b"alone"),
        "a learner's copy does not commit"
    );
    // However long it goes without a leader, a learner never stands for election.
    sim.isolate(4);
    for _ in 0..200 {
        sim.group(4).tick();
        sim.drain(4);
    }
    assert_eq!(
        sim.group(4).term(),
        term4,
        "the learner never raised its term"
    );
    assert_eq!(sim.group(4).role(), Role::Follower);
}

#[test]
fn a_change_waits_for_the_previous_one_and_for_the_leaders_first_commit() {
    let (mut sim, leader) = group_with_spare(5);
    let g = sim.group(leader);
    g.propose_conf(ConfChange::AddLearner(4)).unwrap();
    assert_eq!(
        g.propose_conf(ConfChange::Promote(4)),
        Err(ConfError::Pending),
        "the previous change is not committed"
    );
    assert!(matches!(
        g.propose_conf(ConfChange::AddLearner(4)),
        Err(ConfError::Pending | ConfError::Invalid(_))
    ));
    sim.drain(leader);
    for _ in 0..5 {
        sim.round(true);
    }
    let g = sim.group(leader);
    assert!(g.propose_conf(ConfChange::Promote(4)).is_ok());
    assert_eq!(g.membership().voters, vec![1, 2, 3, 4]);
    // A follower refuses, naming the leader.
    let follower = [1, 2, 3].into_iter().find(|&v| v != leader).unwrap();
    assert_eq!(
        sim.group(follower).propose_conf(ConfChange::Remove(4)),
        Err(ConfError::NotLeader {
            leader: Some(leader)
        })
    );
    // A new leader may not change anything before its own no-op commits.
    let mut g = Group::new(Config {
        id: 1,
        members: vec![1, 2, 3],
        election_ticks: 5,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 48,
        pre_vote: false,
        seed: 1,
    });
    elect(&mut g, &[2]);
    assert_eq!(g.role(), Role::Leader);
    assert_eq!(
        g.propose_conf(ConfChange::Remove(3)),
        Err(ConfError::Pending)
    );
}

#[test]
fn a_leader_that_removes_itself_steps_down_once_that_commits() {
    // An even seed: pre-vote on, as the shard threads run it.
    let (mut sim, leader) = group_with_spare(8);
    sim.group(leader)
        .propose_conf(ConfChange::Remove(leader))
        .unwrap();
    sim.drain(leader);
    // Until the removal commits it still leads (without counting itself).
    assert_eq!(sim.group(leader).role(), Role::Leader);
    for _ in 0..60 {
        sim.round(true);
    }
    assert_ne!(sim.group(leader).role(), Role::Leader);
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&v| v != leader).collect();
    let new = sim.leader();
    assert!(rest.contains(&new), "one of the remaining voters leads");
    assert_eq!(sim.group(new).membership().voters, rest);
    sim.group(new).propose(b"after".to_vec()).unwrap();
    sim.drain(new);
    for _ in 0..5 {
        sim.round(true);
    }
    assert!(applied_marker(&sim, b"after"));
    // The removed replica, cut off from the news, campaigns in ever higher terms: nobody
    // listens, and the leader keeps its term.
    let term = sim.group(new).term();
    for _ in 0..100 {
        sim.group(leader).tick();
        sim.round(false);
    }
    assert_eq!(
        sim.group(new).term(),
        term,
        "the removed replica disrupted nothing"
    );
    assert_eq!(sim.group(new).role(), Role::Leader);
}

/// Moves messages between `a` and `b` (dropping those `lose` picks, and any to others) until
/// none is left; returns the Snapshot chunks delivered.
fn exchange(a: &mut Group, b: &mut Group, mut lose: impl FnMut(&Envelope) -> bool) -> usize {
    let mut net: Vec<Envelope> = a.take_ready().messages;
    net.extend(b.take_ready().messages);
    let mut chunks = 0;
    while let Some(env) = net.pop() {
        if lose(&env) {
            continue;
        }
        let g = match env.to {
            t if t == a.id() => &mut *a,
            t if t == b.id() => &mut *b,
            _ => continue,
        };
        chunks += matches!(env.msg, Msg::Snapshot { .. }) as usize;
        g.step(env.from, env.msg);
        net.extend(g.take_ready().messages);
    }
    chunks
}

#[test]
fn a_snapshot_travels_in_chunks_and_a_lost_chunk_is_resent() {
    let cfg = |id| Config {
        id,
        members: vec![1, 2, 3],
        election_ticks: 5,
        heartbeat_ticks: 2,
        max_batch: 8,
        snapshot_chunk_bytes: 100,
        pre_vote: false,
        seed: 4,
    };
    let mut leader = Group::new(cfg(1));
    let term = elect(&mut leader, &[3]);
    for i in 0..50 {
        leader.propose(format!("entry {i}").into_bytes()).unwrap();
    }
    let last = leader.last_index();
    // Replica 3 holds everything (2 is away): it all commits and is applied.
    leader.take_ready();
    leader.step(
        3,
        Msg::AppendReply {
            term,
            success: true,
            last,
            ctx: 0,
        },
    );
    assert_eq!(
        leader.take_ready().committed.last().map(|e| e.index),
        Some(last)
    );
    let state = vec![7u8; 1000];
    leader.compact(last, state.clone());
    let blob_len = leader.snapshot_blob().len();
    assert!(blob_len > 1000);
    // Replica 2 comes back empty: a heartbeat finds it behind, and the snapshot follows in
    // chunks of 100 bytes; the third chunk is lost once and comes again with a heartbeat.
    let mut follower = Group::new(cfg(2));
    while leader.take_ready().messages.iter().all(|e| e.to != 2) {
        leader.tick();
    }
    let mut lost = false;
    let mut delivered = exchange(&mut leader, &mut follower, |_| false);
    let mut dropper = |e: &Envelope| {
        let hit = !lost && matches!(e.msg, Msg::Snapshot { offset: 200, .. });
        lost |= hit;
        hit
    };
    // The first heartbeat's refusal starts the transfer; keep heartbeating until installed.
    for _ in 0..50 {
        if follower.snapshot_id().index == last {
            break;
        }
        leader.tick();
        delivered += exchange(&mut leader, &mut follower, &mut dropper);
    }
    assert!(lost, "a chunk was lost on the way");
    assert_eq!(
        follower.snapshot_id().index,
        last,
        "the snapshot was installed"
    );
    assert_eq!(follower.snapshot_blob().len(), blob_len);
    let (m, got) = conf::split_snapshot(follower.snapshot_blob()).unwrap();
    assert_eq!((m.voters, &got[..]), (vec![1, 2, 3], &state[..]));
    assert!(
        delivered >= blob_len.div_ceil(100),
        "{delivered} chunks for {blob_len} bytes"
    );
    assert_eq!(
        leader.progress(2),
        Some(last),
        "the leader knows it caught up"
    );
}

/// The leader walks the group to a new set of voters with `conf::next_change` while writes
/// flow and replicas are cut off and crash: the group ends with exactly the target's voters,
/// every safety check holding on the way, and keeps committing.
#[test]
fn a_group_moves_to_new_replicas_under_writes_and_faults() {
    for seed in 0..100 {
        let mut sim = Sim::with_changes(seed * 2, &[1, 2, 3], true);
        sim.converge();
        let target = [2u64, 4, 5];
        let mut moved = false;
        for round in 0..3000 {
            if round % 3 == 1 {
                // Faults all along: cut one off, crash one, or heal and restart everyone.
                let id = 1 + sim.rng.below(5);
                let down = sim.nodes.values().any(|n| n.group.is_none());
                match sim.rng.below(3) {
                    0 if sim.cut.is_empty() => sim.isolate(id),
                    1 if !down => sim.nodes.get_mut(&id).expect("node").group = None,
                    _ => {
                        sim.cut.clear();
                        for id in 1..=5 {
                            let cfg = Config {
                                id,
                                ..sim.cfg.clone()
                            };
                            let n = sim.nodes.get_mut(&id).expect("node");
                            if n.group.is_none() {
                                n.restart(cfg);
                            }
                        }
                    }
                }
            }
            let leaders: Vec<NodeId> = (1..=5)
                .filter(|id| {
                    sim.nodes[id]
                        .group
                        .as_ref()
                        .is_some_and(|g| g.role() == Role::Leader)
                })
                .collect();
            for l in leaders {
                let g = sim.group(l);
                let _ = g.propose(format!("w{round}").into_bytes());
                let next = conf::next_change(
                    &target,
                    g.membership(),
                    |id| g.progress(id),
                    g.commit_index(),
                );
                if let Some(c) = next {
                    let _ = g.propose_conf(c);
                }
                sim.drain(l);
            }
            sim.round(true);
            let done = (1..=5).any(|id| {
                sim.nodes[&id].group.as_ref().is_some_and(|g| {
                    let mut v = g.membership().voters.clone();
                    v.sort_unstable();
                    g.role() == Role::Leader
                        && v == target
                        && g.membership().learners.is_empty()
                        && g.commit_index() >= g.last_index()
                })
            });
            if done {
                moved = true;
                break;
            }
        }
        assert!(
            moved,
            "seed {}: the group never reached {target:?}",
            seed * 2
        );
        sim.converge();
    }
}
